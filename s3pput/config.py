"""One frozen, validated run configuration, built from arguments, environment and ``.env``.

Precedence for every setting: command line, then the process environment, then a ``.env``
file in the working directory (the names DigitalOcean Spaces users already have:
``SPACES_ACCESS_KEY``, ``SPACES_SECRET_KEY``, ``SPACES_BUCKET``, ``SPACES_REGION``,
``SPACES_ENDPOINT``, ``SPACES_ACL``). This module does no network I/O.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

from .errors import UsageError
from .filters import Rule
from .keys import normalize_prefix
from .plan import PUT_MODES

MiB = 1024 * 1024

CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read",
               "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control",
               "log-delivery-write")
SSE_MODES = ("AES256", "aws:kms")

# Content types compressed by ``--gzip`` with the default ``--gzip-type guess``: text-like
# formats that shrink; images, video and archives are compressed already.
GZIP_GUESS_TYPES = frozenset({
    "application/javascript", "application/json", "application/x-javascript",
    "application/xml", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
    "application/ld+json", "application/manifest+json", "application/wasm",
    "image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon", "image/bmp",
    "text/css", "text/csv", "text/html", "text/javascript", "text/plain", "text/xml",
    "text/markdown", "font/ttf", "font/otf", "application/vnd.ms-fontobject",
})

# --header NAME:VALUE names that map onto PutObject parameters; x-amz-meta-* go to Metadata.
HEADER_PARAMS = {
    "cache-control": "CacheControl",
    "content-disposition": "ContentDisposition",
    "content-encoding": "ContentEncoding",
    "content-language": "ContentLanguage",
    "content-type": "ContentType",
    "expires": "Expires",
    "x-amz-tagging": "Tagging",
    "x-amz-website-redirect-location": "WebsiteRedirectLocation",
}


@dataclass(frozen=True)
class Config:
    """Everything a run needs. Picklable; the secret never appears in its repr."""

    sources: Tuple[str, ...]
    bucket: str
    prefix: str = ""
    endpoint_url: Optional[str] = None
    region: Optional[str] = None
    profile: Optional[str] = None
    access_key: Optional[str] = field(default=None, repr=False)
    secret_key: Optional[str] = field(default=None, repr=False)
    verify_ssl: bool = True
    checksums: str = "auto"  # botocore request_checksum_calculation: auto|when_required|...
    put: str = "update"
    dry_run: bool = False
    limit: Optional[int] = None
    rules: Tuple[Rule, ...] = ()
    content_type: str = "guess"  # "guess", "magic" or a fixed type
    gzip: bool = False
    gzip_types: Tuple[str, ...] = ("guess",)
    acl: Optional[str] = None
    put_params: Tuple[Tuple[str, str], ...] = ()  # from --header, e.g. ("CacheControl", ..)
    metadata: Tuple[Tuple[str, str], ...] = ()  # from --header x-amz-meta-NAME:VALUE
    sse: Optional[str] = None
    storage_class: Optional[str] = None
    processes: int = 2
    inflight: Optional[int] = None  # requests in flight per putter; None: adaptive
    max_inflight: int = 256  # the most the adaptive limit goes to, per putter
    memory_per_putter: int = 256 * MiB  # bodies held in memory at once by one putter
    multipart_threshold: int = 8 * MiB
    part_size: int = 8 * MiB
    retries: int = 8
    fast_put: bool = True  # single-part PUTs try the lean path first (fastput)
    timeout: float = 60.0
    max_rate: Optional[float] = None  # requests per second, all putters together
    follow_symlinks: bool = False
    state_file: Optional[str] = None  # SQLite journal; None: no journal
    verbose: int = 0
    quiet: bool = False
    json: bool = False
    progress: bool = True
    log_file: Optional[str] = None
    # image mode
    images: bool = False
    rename: str = "keep"
    thumbnails: Tuple[Tuple[str, int, int], ...] = (("thumbnail", 200, 300),)
    thumbnail_format: str = "jpeg"
    thumbnail_quality: int = 85
    preview: Optional[str] = None
    mapping_log: Optional[str] = None

    @property
    def is_aws(self) -> bool:
        return not self.endpoint_url or ".amazonaws.com" in self.endpoint_url


def parse_dotenv(text: str) -> Dict[str, str]:
    """Parse ``KEY=VALUE`` lines (``export``, quotes and ``#`` comments allowed)."""
    values: Dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name = name.strip()
        if name.startswith("export "):
            name = name[len("export "):].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def read_dotenv(directory: str) -> Dict[str, str]:
    path = os.path.join(directory, ".env")
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_dotenv(handle.read())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {path}: {err}") from err


def lookup(environ: Mapping[str, str], dotenv: Mapping[str, str], *names: str) -> Optional[str]:
    """The first of NAMES set in the environment, else in ``.env``."""
    for source in (environ, dotenv):
        for name in names:
            if source.get(name):
                return source[name]
    return None


def endpoint_with_scheme(url: Optional[str]) -> Optional[str]:
    """``nyc3.digitaloceanspaces.com`` -> ``https://nyc3.digitaloceanspaces.com``."""
    if url and "://" not in url:
        return "https://" + url
    return url


def parse_headers(headers) -> Tuple[Tuple[Tuple[str, str], ...], Tuple[Tuple[str, str], ...]]:
    """Split ``NAME:VALUE`` strings into PutObject parameters and user metadata."""
    params, metadata = [], []
    for header in headers or ():
        name, sep, value = header.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise UsageError(f"--header {header!r}: expected NAME:VALUE")
        lowered = name.lower()
        if lowered.startswith("x-amz-meta-") and len(lowered) > len("x-amz-meta-"):
            metadata.append((lowered[len("x-amz-meta-"):], value))
        elif lowered in HEADER_PARAMS:
            params.append((HEADER_PARAMS[lowered], value))
        else:
            known = ", ".join(sorted(HEADER_PARAMS)) + ", x-amz-meta-*"
            raise UsageError(f"--header {name!r} is not supported; use one of: {known}")
    return tuple(params), tuple(metadata)


def positive(value, option: str, *, allow_zero: bool = False):
    if value is None:
        return None
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{option} must be {'>= 0' if allow_zero else '> 0'}, not {value}")
    return value


def validate(cfg: Config) -> Config:
    """Check cross-field rules; return CFG unchanged or raise ``UsageError``."""
    if not cfg.bucket:
        raise UsageError("no bucket: give --bucket, or set S3PPUT_BUCKET (or SPACES_BUCKET)")
    if len(cfg.bucket) < 3 or "/" in cfg.bucket:
        raise UsageError(f"--bucket {cfg.bucket!r} is not a valid bucket name")
    if cfg.put not in PUT_MODES:
        raise UsageError(f"--put must be one of {', '.join(PUT_MODES)}")
    if cfg.acl is not None and cfg.acl not in CANNED_ACLS:
        raise UsageError(f"--grant {cfg.acl!r} is not a canned ACL; use one of: "
                         + ", ".join(CANNED_ACLS))
    if cfg.sse is not None and cfg.sse not in SSE_MODES:
        raise UsageError(f"--sse must be one of {', '.join(SSE_MODES)}")
    if cfg.quiet and cfg.verbose:
        raise UsageError("--quiet and --verbose contradict each other")
    if cfg.preview and not cfg.dry_run:
        raise UsageError("--preview writes a contact sheet of a --dry-run; add --dry-run")
    if cfg.part_size < 5 * MiB:
        raise UsageError("--part-size must be at least 5 MiB (an S3 limit)")
    for source in cfg.sources:
        if not os.path.lexists(source):
            raise UsageError(f"SOURCE {source!r} does not exist")
    normalize_prefix(cfg.prefix)
    return cfg
