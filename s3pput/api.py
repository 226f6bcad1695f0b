"""The Python API: ``put``, on the same engine the command line runs.

::

    from s3pput import put

    summary = put(["./images"], bucket="my-bucket", prefix="avatar", images=True)
    print(summary["uploaded"], "uploaded,", summary["failed"], "failed")

``put`` takes the command line's long options as keywords, dashes written as underscores
(``endpoint_url=``, ``no_progress=True``, ``header=["Cache-Control: max-age=60"]``), with
the command line's defaults: both are made from one option table (``options``); whatever
is not given comes from the environment and ``.env`` as for the command line. ``cluster``
is None (this machine), ``"local:N"``, a Dask scheduler's address, or a
``distributed.Client`` the caller already has.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, Union

from .config import make_config
from .errors import FatalError
from .options import values_from_keywords
from .run import execute

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
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    values = values_from_keywords([os.fsdecode(source) for source in sources], options)
    values["cluster"] = cluster
    summary = execute(make_config(values), client)
    if summary.get("fatal"):
        error = FatalError(summary["fatal"])
        error.summary = summary
        raise error
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    return summary


def _address_of(client) -> str:
    """The scheduler address of a ``distributed.Client`` (for messages and checks)."""
    scheduler = getattr(client, "scheduler", None)
    address = getattr(scheduler, "address", None)
    if not hasattr(client, "submit") or not isinstance(address, str):
        raise TypeError(f"cluster must be None, 'local:N', a scheduler address or a "
                        f"distributed.Client, not {type(client).__name__}")
    return address
