"""The Python API: ``put``, on the same engine the command line runs (``run``).

::

    from s3pput import put

    summary = put(["./images"], bucket="my-bucket", prefix="avatar", images=True)
    print(summary["uploaded"], "uploaded,", summary["failed"], "failed")

``put`` takes the command line's long options as keywords, dashes written as underscores
(``endpoint_url=``, ``no_progress=True``, ``header=["Cache-Control: max-age=60"]``), with
the command line's defaults; whatever is not given comes from the environment and
``.env`` as for the command line. ``cluster`` is None (this machine), ``"local:N"``, a
Dask scheduler's address, or a ``distributed.Client`` the caller already has.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Iterable, Mapping, Union

from .config import Config, make_config
from .errors import FatalError, UsageError
from .filters import EXCLUDE, INCLUDE, Rule
from .overlap import hold_run_lock

PathLike = Union[str, "os.PathLike[str]"]


def put(sources: Union[PathLike, Iterable[PathLike]], *, cluster=None, **options) -> Dict:
    """Put SOURCES (directories, files, tar archives) into the store; return the run's
    summary: the dict ``--json`` prints (``walked``, ``uploaded``, ``skipped``,
    ``failed``, ``failures``, ``errors``, ...).

    OPTIONS are the command line's long options with underscores: ``bucket="b"``,
    ``images=True``, ``put="add"``, ``processes=4``, ``header=[...]``. Filters are
    ``include=[GLOB, ...]`` or ``exclude=[GLOB, ...]``, or, when both kinds are needed,
    ``rules=[("exclude", "*"), ("include", "*.jpg")]`` (their order decides). Output is the
    command line's (``quiet=True`` for none but errors).

    Raises ``UsageError`` for a bad option value and ``ConfigError`` when the world
    disagrees (no such bucket, bad credentials, no Dask scheduler answers, a worker cannot
    see a SOURCE), before anything is written; ``FatalError`` when a run had to stop half
    way (credentials revoked: the summary is the error's ``summary``); ``TypeError`` for a
    keyword that is not an option; ``KeyboardInterrupt`` once a run stopped by Ctrl+C or
    SIGTERM has wound down. Files that failed are not errors: they are in the summary.

    With ``cluster=`` in a script, guard the script's entry point with ``if __name__ ==
    "__main__":``: Dask's worker processes start by spawn, which imports the main module.
    """
    client = None
    if cluster is not None and not isinstance(cluster, str):
        client, cluster = cluster, _address_of(cluster)
    cfg = make_config(_arguments(sources, cluster, options))
    summary = run(cfg, client)
    if summary.get("fatal"):
        error = FatalError(summary["fatal"])
        error.summary = summary
        raise error
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    return summary


def run(cfg: Config, client=None) -> Dict:
    """Run the validated configuration CFG; return the summary. The one engine of the
    command line and of ``put``: the pipeline of this machine's processes, or with
    ``cfg.cluster`` the putters on a Dask cluster (CLIENT: one the caller has)."""
    if not cfg.verify_ssl:
        print("s3pput: warning: TLS certificates are not verified (--no-verify-ssl)",
              file=sys.stderr)
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    # One run at a time per bucket and prefix on this machine: a second one exits 2 naming
    # the first one's pid.
    run_lock = hold_run_lock(cfg)
    try:
        if cfg.cluster is None:
            from .run.lifecycle import run as run_here

            return run_here(cfg)
        # Only here is Dask imported: a run without --cluster never loads it.
        from .run.cluster import run as run_on_cluster

        return run_on_cluster(cfg, client)
    finally:
        run_lock.release()


def _address_of(client) -> str:
    """The scheduler address of a ``distributed.Client`` (for messages and checks)."""
    scheduler = getattr(client, "scheduler", None)
    address = getattr(scheduler, "address", None)
    if not hasattr(client, "submit") or not isinstance(address, str):
        raise TypeError(f"cluster must be None, 'local:N', a scheduler address or a "
                        f"distributed.Client, not {type(client).__name__}")
    return address


def _arguments(sources, cluster, options: Mapping) -> argparse.Namespace:
    """The namespace the command line's parser would make for SOURCES and OPTIONS."""
    from .cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["-"])  # every default, and a SOURCE replaced below
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    args.sources = [os.fsdecode(source) for source in sources]
    if not args.sources:
        raise UsageError("no SOURCE: give at least one directory, file or archive")
    args.cluster = cluster
    # argparse lists no actions publicly; _actions is the stable way everyone reads them.
    by_name = {option[2:].replace("-", "_"): action
               for action in parser._actions for option in action.option_strings
               if option.startswith("--") and action.dest not in ("help", "version")}
    options = dict(options)
    args.rules = _rules(options.pop("rules", None), options.pop("include", None),
                        options.pop("exclude", None))
    for name, value in options.items():
        action = by_name.get(name)
        if action is None:
            raise TypeError(f"put() got an unexpected keyword argument {name!r}")
        setattr(args, action.dest, _value(name, action, value))
    return args


def _value(name: str, action: argparse.Action, value):
    """VALUE for option NAME as argparse would have made it from the command line."""
    if isinstance(action, argparse._AppendAction):
        items = [value] if isinstance(value, str) else list(value)
        return [_typed(name, action, item) for item in items]
    if action.nargs == 0:  # a flag: --gzip, --dry-run, -v (a count)
        return value if isinstance(action, argparse._CountAction) else bool(value)
    return _typed(name, action, value)


def _typed(name: str, action: argparse.Action, value):
    if isinstance(value, str) and action.type is not None:
        try:
            value = action.type(value)
        except ValueError as err:
            raise UsageError(f"{name}={value!r}: {err}") from err
    if action.choices is not None and value not in action.choices:
        raise UsageError(f"{name}={value!r}: use one of "
                         + ", ".join(map(repr, action.choices)))
    return value


def _rules(rules, include, exclude):
    """The include/exclude rules, in the order that decides (``filters``)."""
    if rules is not None:
        if include is not None or exclude is not None:
            raise UsageError("give either rules=[...] or include=/exclude=, not both")
        ordered = []
        for rule in rules:
            kind, pattern = rule
            if kind not in (INCLUDE, EXCLUDE):
                raise UsageError(f"rules: {kind!r} is neither {INCLUDE!r} nor {EXCLUDE!r}")
            ordered.append(Rule(kind, pattern))
        return ordered or None
    if include is not None and exclude is not None:
        raise UsageError("include= and exclude= together: their order decides, so give "
                         "them as rules=[('exclude', '*'), ('include', '*.jpg')]")
    kind, patterns = (INCLUDE, include) if include is not None else (EXCLUDE, exclude)
    if patterns is None:
        return None
    return [Rule(kind, pattern) for pattern in ([patterns] if isinstance(patterns, str)
                                                else patterns)] or None
