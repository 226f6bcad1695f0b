"""The store: every request s3pput makes goes through ``Store`` (``s3``).

``client`` makes the boto3 client and decides TLS trust, ``errors`` translates failures,
``s3`` holds the operations, ``lean`` the fast path beside boto3, ``multipart`` uploads and
copies in parts, ``dryrun`` the store that records instead of writing. botocore is imported
on first use only (``lazy``).
"""

from __future__ import annotations

from ..config import Config
from .client import lean_start, make_client, tls_verify
from .dryrun import DryRunStore
from .lean import proxy_configured
from .multipart import run_now
from .s3 import Access, Store

__all__ = ["Access", "DryRunStore", "Store", "make_client", "make_store", "run_now",
           "tls_verify"]


def make_store(cfg: Config, pool_size: int = 10) -> Store:
    """The store of a run, for the process that calls this: its client is made on first
    use, in that process (a dry run that only records never pays for one). Single PUTs
    and listing pages take the fast path unless ``--no-fast-put`` or a proxy is set."""
    def factory():
        return make_client(cfg, pool_size=pool_size)

    kind = DryRunStore if cfg.dry_run else Store
    fast = cfg.fast_put and not proxy_configured()
    return kind(factory, cfg.bucket, fast=fast, timeout=cfg.timeout,
                verify_ssl=tls_verify(cfg), lean=lean_start(cfg) if fast else None)

