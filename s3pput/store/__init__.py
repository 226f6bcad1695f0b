"""The store: every request s3pput makes goes through ``Store`` (``s3``).

``client`` makes the boto3 client and decides TLS trust, ``errors`` translates failures,
``retry`` is the one retry policy, ``s3`` holds the operations, ``lean`` the fast path
beside boto3 (``answers``: the XML it reads and writes), ``multipart`` uploads and copies in
parts, ``dryrun`` the store that records instead of writing. botocore is imported on first
use only (``lazy``).
"""

from __future__ import annotations

from ..config import Config
from .client import Clients, lean_start, make_client, tls_verify
from .dryrun import DryRunStore
from .lean import LeanPath, proxy_configured
from .multipart import run_now
from .s3 import Access, Store

__all__ = ["Access", "DryRunStore", "Store", "make_client", "make_store", "run_now",
           "tls_verify"]


def make_store(cfg: Config, pool_size: int = 10) -> Store:
    """The store of a run, for the process that calls this: its client is made on first
    use, in that process (a dry run that only records, or a run whose requests all take
    the lean path, never pays for one). Requests take the lean path unless
    ``--no-fast-put`` or a proxy is set."""
    kind = DryRunStore if cfg.dry_run else Store
    fast = cfg.fast_put and not proxy_configured()
    verify = tls_verify(cfg)
    lean = None
    start = lean_start(cfg) if fast else None
    if start is not None:
        route, credentials = start
        lean = LeanPath(route, lambda: credentials, cfg.timeout, verify, cfg.bucket)
    return kind(Clients(cfg, pool_size), cfg.bucket, retries=cfg.retries, lean=lean,
                fast=fast, timeout=cfg.timeout, verify_ssl=verify)
