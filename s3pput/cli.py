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
from typing import Any, Dict, List, Optional

from . import __version__
from .config import make_config
from .errors import S3pputError, UsageError
from .filters import EXCLUDE, INCLUDE, Rule
from .options import COUNT, FLAG, GROUPS, LIST, OPTIONS, RULE, VALUE, defaults, help_of
from .run import execute

EXIT_OK, EXIT_FAILED, EXIT_FATAL, EXIT_INTERRUPTED = 0, 1, 2, 130

__all__ = ["build_parser", "exit_code", "main", "run_and_exit", "values_from_argv"]

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

  # image mode for public pages: AVIF, WebP and JPEG thumbnails, no GPS in the originals
  s3pput --bucket my-bucket --prefix avatar ./images --images --grant public-read \\
         --thumbnail-format avif,webp,jpeg --strip-metadata location

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


# How argparse takes each kind of option of the table.
ACTIONS = {FLAG: "store_true", COUNT: "count", LIST: "append", RULE: RuleAction}


def build_parser() -> argparse.ArgumentParser:
    """The command line, made from the option table (``options``)."""
    parser = Parser(
        prog="s3pput", description="Put local files, trees and tar archives into S3 or any "
        "S3-compatible store, in parallel.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="directory, file, or .tar/.tar.gz archive to upload")
    parser.add_argument("--version", action="version", version=f"s3pput {__version__}")
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for option in OPTIONS:
        flags = sorted(option.flags, key=lambda flag: (flag.startswith("--"), flag))
        settings: Dict[str, Any] = dict(help=help_of(option))
        if option.kind != RULE:
            settings["dest"] = option.name
        if option.kind == VALUE:
            settings.update(default=option.default, metavar=option.metavar)
            if option.parse is not str:
                settings["type"] = option.parse
            if option.choices:
                settings["choices"] = option.choices
        else:
            settings["action"] = ACTIONS[option.kind]
            if option.kind == RULE:
                settings.update(dest="rules", metavar=option.metavar)
            elif option.kind == LIST:
                settings.update(metavar=option.metavar)
            elif option.kind == COUNT:
                settings["default"] = option.default
        groups[option.group].add_argument(*flags, **settings)
    return parser


def values_from_argv(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """The option values of a command line ARGV (default: this process's), complete as
    ``options.defaults`` makes them: what ``put()`` gives for the same options."""
    namespace = vars(build_parser().parse_args(argv))
    values = defaults()
    values["sources"] = list(namespace["sources"])
    values["rules"] = list(namespace.get("rules") or [])
    for option in OPTIONS:
        if option.kind != RULE:
            value = namespace[option.name]
            values[option.name] = list(value or []) if option.kind == LIST else value
    return values


def exit_code(summary) -> int:
    if summary.get("fatal"):
        return EXIT_FATAL
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary["failed"] or summary.get("errors") else EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    """Run s3pput with ARGV (default: the command line); return the exit code."""
    values = None
    try:
        values = values_from_argv(argv)
        summary = execute(make_config(values))
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else EXIT_OK
    except KeyboardInterrupt:
        print("s3pput: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except S3pputError as err:
        # A per-file error that reaches this far stopped the run: fatal too.
        return _fail(values, str(err), EXIT_FATAL, trace=not isinstance(err, UsageError))
    except Exception as err:  # noqa: BLE001 - a defect, but still said in one line
        return _fail(values, f"unexpected {type(err).__name__}: {err} (a defect: please "
                     "report it; -v shows where)", EXIT_FAILED, trace=True)
    return exit_code(summary)


def _fail(values, message: str, code: int, *, trace: bool) -> int:
    """Say MESSAGE in one line (and, with --json, as the summary); return CODE."""
    message = " ".join(message.split())  # one line, whatever the message held
    try:
        print(f"s3pput: error: {message}", file=sys.stderr)
    except BrokenPipeError:
        pass  # nobody reads stderr any more; the exit code still tells
    if trace and values is not None and (values["verbose"] or values["debug"]):
        traceback.print_exc(file=sys.stderr)
    if values is not None and values["json"]:
        from .stats import Stats, json_summary

        stats = Stats(values["dry_run"])
        stats.fatal = message
        summary = stats.as_dict()
        summary["error"] = message
        try:
            print(json_summary(summary))
        except BrokenPipeError:
            pass
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
