"""A run: ``execute(cfg)`` is the one engine of the command line and of ``put()``.

``lifecycle`` starts, watches and stops a run, whoever puts: ``local`` (putter processes
of this machine) or ``cluster`` (tasks on a Dask cluster, which run ``tasks`` on the
workers). The roles: ``walker``/``imagemode`` (the walk), ``feed`` (the walker's loop),
``putter``, ``transfer`` and ``payload`` (the uploads), ``concurrency`` (requests in flight
and memory), ``statter`` (counters and all output).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from ..config import Config
from ..decide import needs_remote
from ..keys import normalize_prefix
from ..overlap import hold_run_lock
from ..store import Access
from . import lifecycle

if TYPE_CHECKING:
    from ..store import Store


def execute(cfg: Config, client=None) -> Dict:
    """Run the validated configuration CFG; return the summary (``Stats.as_dict``). The
    one engine of the command line and of ``put``: the putters are processes of this
    machine, or with ``cfg.cluster`` tasks on a Dask cluster (CLIENT: one the caller has).
    """
    if not cfg.verify_ssl:
        print("s3pput: warning: TLS certificates are not verified (--no-verify-ssl)",
              file=sys.stderr)
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    # One run at a time per bucket and prefix on this machine: a second one exits 2 naming
    # the first one's pid.
    run_lock = hold_run_lock(cfg)
    try:
        access, store = preflight(cfg)
        try:
            if cfg.cluster is None:
                from .local import LocalPutters

                # The walker goes on with the check's store, and with its connection, which
                # is open already: one round trip less before the listing's next page.
                walker_store = store if not cfg.images and needs_remote(cfg.put) else None
                return lifecycle.run(cfg, access, LocalPutters(cfg), walker_store)
            # Only here is Dask imported: a run without --cluster never loads it.
            from .cluster import connected_putters

            with connected_putters(cfg, client) as putters:
                return lifecycle.run(cfg, access, putters)
        finally:
            store.close()
    finally:
        run_lock.release()


def preflight(cfg: Config) -> Tuple[Access, "Store"]:
    """Check endpoint, bucket and credentials once, up front (``Store.check_bucket``):
    with the first page of the listing the walker will need, if it needs one. Returns the
    store that checked, its connection open (the caller closes it).

    Raises ``ConfigError`` with one message for the user when the run cannot work.
    """
    from ..store import make_store

    store = make_store(cfg, pool_size=2)
    try:
        access = store.check_bucket(listing_prefix(cfg))
    except BaseException:
        store.close()
        raise
    store.park()  # for the walker's listing thread, if the walker goes on with it
    return access, store


def listing_prefix(cfg: Config) -> Optional[str]:
    """The prefix the plain walker lists (once per run), or None if it lists nothing:
    image mode lists per folder; ``stupid`` needs nothing; files and archives get HEADs."""
    if cfg.images or not needs_remote(cfg.put) or \
            not any(os.path.isdir(source) for source in cfg.sources):
        return None
    prefix = normalize_prefix(cfg.prefix)
    return prefix + "/" if prefix else ""
