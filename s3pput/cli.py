"""The command line: parse, validate, run, and map the outcome to an exit code.

This is the only place that exits. Exit codes: 0 every file uploaded or rightly skipped;
1 some files failed; 2 usage or fatal configuration error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from . import __version__
from .config import (
    CANNED_ACLS,
    Config,
    MiB,
    endpoint_with_scheme,
    lookup,
    parse_headers,
    positive,
    read_dotenv,
    validate,
)
from .errors import FatalError, UsageError
from .filters import EXCLUDE, INCLUDE, Rule
from .journal import default_path as default_journal_path
from .plan import PUT_MODES

EXIT_OK, EXIT_FAILED, EXIT_FATAL, EXIT_INTERRUPTED = 0, 1, 2, 130

EXAMPLES = """\
examples:
  s3pput --bucket B --prefix avatar ./images --processes 8
  s3pput --bucket B --prefix site ./public --gzip --header 'Cache-Control: max-age=3600'
  s3pput --bucket B --prefix avatar ./images --images --dry-run --preview plan.html
  s3pput --bucket B --prefix backup ./photos.tar.gz --put add
  s3pput --endpoint-url https://nyc3.digitaloceanspaces.com --bucket B ./dir
  0 3 * * * s3pput --bucket B --prefix logs /var/log/app --json >> /var/log/s3pput.jsonl

credentials come from the standard AWS chain (environment, ~/.aws, --profile), or from a
.env file with SPACES_ACCESS_KEY / SPACES_SECRET_KEY (and SPACES_BUCKET, SPACES_REGION,
SPACES_ENDPOINT, SPACES_ACL).

exit codes: 0 all files uploaded or rightly skipped, 1 some files failed,
            2 usage or configuration error, 130 interrupted
"""


class RuleAction(argparse.Action):
    """Keeps --include and --exclude in one list, in command-line order."""

    def __call__(self, parser, namespace, value, option_string=None):
        rules = list(getattr(namespace, "rules", None) or [])
        rules.append(Rule(INCLUDE if option_string == "--include" else EXCLUDE, value))
        namespace.rules = rules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s3pput", description="Put local files, trees and tar archives into S3 or any "
        "S3-compatible store, in parallel.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="directory, file, or .tar/.tar.gz archive to upload")
    parser.add_argument("--version", action="version", version=f"s3pput {__version__}")

    where = parser.add_argument_group("destination")
    where.add_argument("--bucket", help="bucket (env S3PPUT_BUCKET or SPACES_BUCKET)")
    where.add_argument("--prefix", default="", help="key prefix (keys are PREFIX/relative/path)")
    where.add_argument("--endpoint-url", help="S3-compatible endpoint "
                       "(env AWS_ENDPOINT_URL or SPACES_ENDPOINT)")
    where.add_argument("--region", help="region (env AWS_REGION or SPACES_REGION)")
    where.add_argument("--profile", help="AWS profile from ~/.aws/config")
    where.add_argument("--no-verify-ssl", action="store_true",
                       help="do not verify TLS certificates (insecure; warns)")
    where.add_argument("--checksums", default="auto",
                       choices=("auto", "when_required", "when_supported"),
                       help="botocore's extra CRC checksums: auto = on for AWS, off for other "
                       "stores, which often mishandle them (Content-MD5 is always sent)")

    what = parser.add_argument_group("what to put")
    what.add_argument("--put", choices=PUT_MODES, default="update",
                      help="add: only absent keys; stupid: always; update (default): absent "
                      "or changed keys")
    what.add_argument("--dry-run", action="store_true",
                      help="write nothing; print what would be uploaded and why")
    what.add_argument("--limit", type=int, help="upload at most N files (skips do not count)")
    what.add_argument("--include", action=RuleAction, dest="rules", metavar="GLOB",
                      help="take paths matching GLOB (repeatable; the last matching "
                      "--include/--exclude decides)")
    what.add_argument("--exclude", action=RuleAction, dest="rules", metavar="GLOB",
                      help="leave out paths matching GLOB (repeatable)")
    what.add_argument("--follow-symlinks", action="store_true",
                      help="follow symbolic links (loops are detected); default: skip them")

    how = parser.add_argument_group("how objects are stored")
    how.add_argument("--content-type", default="guess", metavar="guess|magic|TYPE",
                     help="guess: by file name (default); magic: by name, then by content; "
                     "TYPE: this type for every file")
    how.add_argument("--gzip", action="store_true",
                     help="gzip-compress files of the --gzip-type types "
                     "(stored with Content-Encoding: gzip)")
    how.add_argument("--gzip-type", action="append", metavar="TYPE|guess|all",
                     help="content types to gzip (repeatable; default guess: text-like types)")
    how.add_argument("--grant", metavar="ACL", help="canned ACL: " + ", ".join(CANNED_ACLS)
                     + " (env SPACES_ACL)")
    how.add_argument("--header", action="append", metavar="NAME:VALUE",
                     help="set a header: Cache-Control, Content-Disposition, Content-Language, "
                     "Content-Type, Expires, x-amz-meta-* ... (repeatable)")
    how.add_argument("--sse", choices=("AES256", "aws:kms"), help="server-side encryption")
    how.add_argument("--storage-class", help="storage class (STANDARD, STANDARD_IA, ...)")
    how.add_argument("--multipart-threshold", type=int, default=8, metavar="MiB",
                     help="files larger than this go up in parts (default 8)")
    how.add_argument("--part-size", type=int, default=8, metavar="MiB",
                     help="multipart part size (default 8, at least 5)")

    images = parser.add_argument_group("image mode")
    images.add_argument("--images", action="store_true",
                        help="upload images as original + thumbnails under numbered names")
    images.add_argument("--rename", choices=("sequential", "keep"),
                        help="image names: sequential (default with --images) or keep")
    images.add_argument("--thumbnail", action="append", metavar="NAME=WxH",
                        help="thumbnail folder and size (repeatable; default thumbnail=200x300)")
    images.add_argument("--thumbnail-format", default="jpeg", metavar="jpeg|png|webp",
                        help="thumbnail format (default jpeg)")
    images.add_argument("--thumbnail-quality", type=int, default=85, metavar="Q",
                        help="thumbnail JPEG/WebP quality (default 85)")
    images.add_argument("--preview", metavar="FILE.html",
                        help="with --dry-run: write an HTML contact sheet of the thumbnails")
    images.add_argument("--mapping-log", metavar="FILE.csv",
                        help="CSV log of source -> keys (default: s3pput-mapping.csv)")

    run = parser.add_argument_group("running")
    run.add_argument("--processes", "--workers", type=int, default=os.cpu_count() or 2,
                     help="putter processes (default: CPU count)")
    run.add_argument("--inflight", type=int,
                     help="requests in flight per putter process, fixed (default: adaptive, "
                     "following the network's latency and throughput)")
    run.add_argument("--max-inflight", type=int, default=256,
                     help="the most requests in flight per putter process the adaptive "
                     "limit may reach (default 256)")
    run.add_argument("--retries", type=int, default=6,
                     help="retries of a failed request, with exponential backoff (default 6)")
    run.add_argument("--timeout", type=float, default=60.0,
                     help="seconds before a silent connection is abandoned (default 60)")
    run.add_argument("--no-fast-put", action="store_true",
                     help="send every request through boto3's full client (slower for small "
                     "files; the fast path is a lean first attempt, see README)")
    run.add_argument("--max-rate", type=float, metavar="N",
                     help="at most N requests per second in all")
    run.add_argument("--state", metavar="FILE",
                     help="journal of what was put, to skip re-reading unchanged files "
                     "(SQLite; default ~/.local/state/s3pput/BUCKET@HOST.sqlite)")
    run.add_argument("--no-state", action="store_true", help="keep no journal")

    out = parser.add_argument_group("output")
    out.add_argument("-v", "--verbose", action="count", default=0,
                     help="list every file (-vv: and exclusions)")
    out.add_argument("-q", "--quiet", action="store_true", help="only errors")
    out.add_argument("--log-file", metavar="FILE", help="append every outcome to FILE")
    out.add_argument("--json", action="store_true",
                     help="stdout carries only the final JSON summary")
    out.add_argument("--no-progress", action="store_true", help="no progress display")

    compat = parser.add_argument_group("compatibility with the DigitalOcean uploader script")
    compat.add_argument("--no-skip-existing", action="store_true", help="same as --put stupid")
    compat.add_argument("--debug", action="store_true", help="same as -v")
    return parser


def make_config(args: argparse.Namespace, environ=None, cwd: Optional[str] = None) -> Config:
    """Build the validated run configuration from parsed arguments and the environment."""
    environ = os.environ if environ is None else environ
    dotenv = read_dotenv(cwd or os.getcwd())
    put_params, metadata = parse_headers(args.header)
    for value, option in ((args.limit, "--limit"),):
        positive(value, option, allow_zero=True)
    for value, option in ((args.processes, "--processes"), (args.inflight, "--inflight"),
                          (args.max_inflight, "--max-inflight"),
                          (args.timeout, "--timeout"), (args.max_rate, "--max-rate"),
                          (args.multipart_threshold, "--multipart-threshold"),
                          (args.part_size, "--part-size")):
        positive(value, option)
    positive(args.retries, "--retries", allow_zero=True)
    thumbnails = ()
    if args.images or args.thumbnail:
        thumbnails = _thumbnail_specs(args.thumbnail)
    bucket = args.bucket or lookup(environ, dotenv, "S3PPUT_BUCKET", "SPACES_BUCKET") or ""
    endpoint_url = endpoint_with_scheme(
        args.endpoint_url or lookup(environ, dotenv, "AWS_ENDPOINT_URL", "SPACES_ENDPOINT"))
    # SPACES_* keys are used unless a profile or AWS_* keys say otherwise.
    spaces_keys = not args.profile and not environ.get("AWS_ACCESS_KEY_ID")
    cfg = Config(
        sources=tuple(args.sources),
        bucket=bucket,
        prefix=args.prefix or "",
        endpoint_url=endpoint_url,
        region=args.region or lookup(environ, dotenv, "AWS_REGION", "AWS_DEFAULT_REGION",
                                     "SPACES_REGION"),
        profile=args.profile,
        access_key=lookup(environ, dotenv, "SPACES_ACCESS_KEY") if spaces_keys else None,
        secret_key=lookup(environ, dotenv, "SPACES_SECRET_KEY") if spaces_keys else None,
        verify_ssl=not args.no_verify_ssl,
        checksums=args.checksums,
        put="stupid" if args.no_skip_existing else args.put,
        dry_run=args.dry_run,
        limit=args.limit,
        rules=tuple(args.rules or ()),
        content_type=args.content_type,
        gzip=args.gzip,
        gzip_types=tuple(args.gzip_type or ("guess",)),
        acl=args.grant or lookup(environ, dotenv, "SPACES_ACL"),
        put_params=put_params,
        metadata=metadata,
        sse=args.sse,
        storage_class=args.storage_class,
        processes=args.processes,
        inflight=args.inflight,
        max_inflight=args.max_inflight,
        multipart_threshold=args.multipart_threshold * MiB,
        part_size=args.part_size * MiB,
        retries=args.retries,
        fast_put=not args.no_fast_put,
        timeout=args.timeout,
        max_rate=args.max_rate,
        follow_symlinks=args.follow_symlinks,
        state_file=None if args.no_state else (
            args.state or default_journal_path(bucket, endpoint_url)),
        verbose=args.verbose + (1 if args.debug else 0),
        quiet=args.quiet,
        json=args.json,
        progress=not args.no_progress,
        log_file=args.log_file,
        images=args.images,
        rename=args.rename or ("sequential" if args.images else "keep"),
        thumbnails=thumbnails or (("thumbnail", 200, 300),),
        thumbnail_format=args.thumbnail_format,
        thumbnail_quality=args.thumbnail_quality,
        preview=args.preview,
        mapping_log=args.mapping_log,
    )
    return validate(cfg)


def _thumbnail_specs(values) -> tuple:
    from .images import parse_thumbnail_spec

    specs = []
    for value in values or ("thumbnail=200x300",):
        try:
            spec = parse_thumbnail_spec(value)
        except ValueError as err:
            raise UsageError(f"--thumbnail {value!r}: {err}") from err
        specs.append((spec.name, spec.width, spec.height))
    return tuple(specs)


def exit_code(summary) -> int:
    if summary.get("fatal"):
        return EXIT_FATAL
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary["failed"] or summary.get("errors") else EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = make_config(args)
        if not cfg.verify_ssl:
            print("s3pput: warning: TLS certificates are not verified (--no-verify-ssl)",
                  file=sys.stderr)
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        from .pipeline import run

        summary = run(cfg)
    except FatalError as err:
        print(f"s3pput: error: {err}", file=sys.stderr)
        if getattr(args, "json", False):
            from .stats import Stats, json_summary

            stats = Stats(getattr(args, "dry_run", False))
            stats.fatal = str(err)
            summary = stats.as_dict()
            summary["error"] = str(err)
            print(json_summary(summary))
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("s3pput: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return exit_code(summary)


def run_and_exit() -> None:
    """The console entry point: run ``main`` and exit at once with its code.

    Skips the interpreter's teardown of boto3 and friends (about 0.15 s, a third of an
    incremental run's wall time on a small tree): all output is flushed first and every
    worker process has already been joined.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
