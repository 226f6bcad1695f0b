"""The command line: parse, call ``config`` to validate, run, and map the outcome to an
exit code.

This is the only place that exits. Exit codes: 0 every file uploaded or rightly skipped;
1 some files failed (or an unexpected error); 2 usage or fatal configuration error;
130 interrupted. Whatever goes wrong is said in one line on stderr (``-v`` adds the
traceback of anything but a usage error); no exception escapes ``main``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import List, Optional

from . import __version__
from .api import run
from .config import CANNED_ACLS, CHECKSUM_MODES, SSE_MODES, make_config
from .errors import S3pputError, UsageError
from .filters import EXCLUDE, INCLUDE, Rule
from .plan import PUT_MODES

EXIT_OK, EXIT_FAILED, EXIT_FATAL, EXIT_INTERRUPTED = 0, 1, 2, 130

__all__ = ["build_parser", "exit_code", "main", "make_config", "run_and_exit"]

EXAMPLES = """\
examples:
  # AWS: a tree into s3://my-bucket/avatar/ (credentials from the environment or ~/.aws)
  s3pput --bucket my-bucket --prefix avatar ./images --processes 8

  # DigitalOcean Spaces, with the .env file of this directory holding
  #   SPACES_ACCESS_KEY=DO00...  SPACES_SECRET_KEY=...  SPACES_BUCKET=my-space
  #   SPACES_ENDPOINT=https://fra1.digitaloceanspaces.com  SPACES_REGION=fra1
  s3pput --prefix site ./public --gzip --header 'Cache-Control: max-age=3600'

  # image mode, looking before leaping: nothing is written, plan.html shows the thumbnails
  s3pput --bucket my-bucket --prefix avatar ./images --images --dry-run --preview plan.html

  # cron: nightly, incremental (only new or changed files), one JSON summary per run
  0 3 * * * s3pput --bucket my-bucket --prefix logs /var/log/app --json >> /var/log/s3pput.jsonl

  # a tree on a shared mount, put by the workers of a Dask cluster (README)
  s3pput --bucket my-bucket --prefix avatar /mnt/photos --images --cluster tcp://sched:8786

  # a store whose certificate comes from your own CA (MinIO, Ceph, ...)
  s3pput --endpoint-url https://minio.internal:9000 --ca-bundle ca.pem --bucket b ./dir

credentials come from the standard AWS chain (environment, ~/.aws, --profile), or from a
.env file with SPACES_ACCESS_KEY / SPACES_SECRET_KEY (and SPACES_BUCKET, SPACES_REGION,
SPACES_ENDPOINT, SPACES_ACL).

exit codes: 0 all files uploaded or rightly skipped, 1 some files failed,
            2 usage or configuration error, 130 interrupted
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (``s3pput: error: ...``), like every other
    error, rather than the whole usage text."""

    def error(self, message):
        raise UsageError(f"{message} (see s3pput --help)")


class RuleAction(argparse.Action):
    """Keeps --include and --exclude in one list, in command-line order."""

    def __call__(self, parser, namespace, value, option_string=None):
        rules = list(getattr(namespace, "rules", None) or [])
        rules.append(Rule(INCLUDE if option_string == "--include" else EXCLUDE, value))
        namespace.rules = rules


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    where.add_argument("--ca-bundle", metavar="FILE",
                       help="trust the CA certificates in FILE (PEM) for TLS; default: "
                       "AWS_CA_BUNDLE, else ca_bundle in the profile, else the usual CAs")
    where.add_argument("--no-verify-ssl", action="store_true",
                       help="do not verify TLS certificates (insecure; warns)")
    where.add_argument("--checksums", default="auto", choices=CHECKSUM_MODES,
                       help="botocore's extra CRC checksums: auto = on for AWS, off for other "
                       "stores, which often mishandle them (Content-MD5 is always sent)")

    what = parser.add_argument_group("what to put")
    what.add_argument("--put", choices=PUT_MODES, default="update",
                      help="add: only absent keys; stupid: always; update (default): absent "
                      "or changed keys, and the headers of unchanged ones (in place)")
    what.add_argument("--dry-run", action="store_true",
                      help="write nothing; print what would be uploaded and why")
    what.add_argument("--limit", type=int, help="upload (or update the metadata of) at most N "
                      "files (skips do not count)")
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
    how.add_argument("--sse", choices=SSE_MODES, help="server-side encryption")
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
    images.add_argument("--thumbnail-format", metavar="jpeg|png|webp",
                        help="thumbnail format (default jpeg)")
    images.add_argument("--thumbnail-quality", type=int, metavar="Q",
                        help="thumbnail JPEG/WebP quality, 1 to 100 (default 85)")
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
    run.add_argument("--cluster", metavar="ADDRESS|local:N",
                     help="run the putters on a Dask cluster: the scheduler at ADDRESS "
                     "(tcp://HOST:8786; every worker must see SOURCE at the same path), or "
                     "local:N, N worker processes on this machine (pip install "
                     "'s3pput[cluster]'; --limit and --max-rate are refused; see README)")
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


def exit_code(summary) -> int:
    if summary.get("fatal"):
        return EXIT_FATAL
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary["failed"] or summary.get("errors") else EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    """Run s3pput with ARGV (default: the command line); return the exit code."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        summary = run(make_config(args))
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else EXIT_OK
    except KeyboardInterrupt:
        print("s3pput: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except S3pputError as err:
        # A per-file error that reaches this far stopped the run: fatal too.
        return _fail(args, str(err), EXIT_FATAL, trace=not isinstance(err, UsageError))
    except Exception as err:  # noqa: BLE001 - a defect, but still said in one line
        return _fail(args, f"unexpected {type(err).__name__}: {err} (a defect: please "
                     "report it; -v shows where)", EXIT_FAILED, trace=True)
    return exit_code(summary)


def _fail(args, message: str, code: int, *, trace: bool) -> int:
    """Say MESSAGE in one line (and, with --json, as the summary); return CODE."""
    message = " ".join(message.split())  # one line, whatever the message held
    print(f"s3pput: error: {message}", file=sys.stderr)
    if trace and args is not None and (args.verbose or args.debug):
        traceback.print_exc(file=sys.stderr)
    if args is not None and args.json:
        from .stats import Stats, json_summary

        stats = Stats(args.dry_run)
        stats.fatal = message
        summary = stats.as_dict()
        summary["error"] = message
        print(json_summary(summary))
    return code


def run_and_exit() -> None:
    """The console entry point: run ``main`` and exit at once with its code.

    Skips the interpreter's teardown of boto3 and friends (about 0.15 s, a third of an
    incremental run's wall time on a small tree): all output is flushed first and every
    worker process has already been joined.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe (s3pput ... | head): nobody is left to tell
            code = code or EXIT_FAILED
    os._exit(code)
