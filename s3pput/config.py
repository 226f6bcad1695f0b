"""One frozen, validated run configuration, built from arguments, environment and ``.env``.

Precedence for every setting: command line, then the process environment, then a ``.env``
file in the working directory (the names DigitalOcean Spaces users already have:
``SPACES_ACCESS_KEY``, ``SPACES_SECRET_KEY``, ``SPACES_BUCKET``, ``SPACES_REGION``,
``SPACES_ENDPOINT``, ``SPACES_ACL``), read by python-dotenv with that library's rules.

Every option is checked here, before any request: a bad value is a ``UsageError`` whose
message names the option (or the variable it came from) and says what to write instead.
This module does no network I/O; it only looks at local files (SOURCEs, ``.env``, the CA
bundle, and the directories the run will write to). What only the store or botocore can
tell (does the profile exist, is the endpoint reachable, does the bucket exist) is checked
once, up front, by ``store``.
"""

from __future__ import annotations

import io
import ipaddress
import math
import os
import re
import stat
import tarfile
from dataclasses import dataclass, field
from datetime import timezone
from typing import Dict, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from .errors import UsageError
from .filters import Rule
from .journal import default_path as default_journal_path
from .keys import normalize_prefix
from .sources import is_archive

MiB = 1024 * 1024

CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read",
               "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control",
               "log-delivery-write")
SSE_MODES = ("AES256", "aws:kms")
CHECKSUM_MODES = ("auto", "when_required", "when_supported")

# S3's own limits: one PUT or one part carries at most 5 GiB.
MAX_PUT_MiB = 5 * 1024
MIN_PART_MiB = 5
# Sanity bounds that catch typos (--processes 800000) long before the machine does.
MAX_PROCESSES = 1024
MAX_INFLIGHT = 1024
MAX_RETRIES = 100
# --cluster: the schemes of Dask's scheduler addresses, and its default port
CLUSTER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
DASK_PORT = 8786

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

# botocore's own rule for bucket names (plus S3's minimum of 3): AWS wants 3-63 lowercase
# letters, digits, '.' and '-'; other stores (and old AWS buckets) also allow A-Z and '_'.
BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{3,255}")
# A region is one DNS label (botocore's rule): us-east-1, fra1, auto.
REGION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# DNS names (with "_", as docker-compose service names have them); IP literals aside.
HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
# type/subtype, optionally with parameters: text/html; charset=utf-8
MIME_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;.*)?")
STORAGE_CLASS = re.compile(r"[A-Z][A-Z0-9_]*")
SQLITE_MAGIC = b"SQLite format 3\x00"


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
    verify_ssl: bool = True  # False: --no-verify-ssl (see store.tls_verify)
    ca_bundle: Optional[str] = None  # --ca-bundle; None: botocore's own resolution
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
    fast_put: bool = True  # single-part PUTs try the lean path first (store.lean)
    timeout: float = 60.0
    max_rate: Optional[float] = None  # requests per second, all putters together
    cluster: Optional[str] = None  # --cluster: a Dask scheduler's address, or local:N
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


# -- the sources of settings ---------------------------------------------------------------

def read_dotenv(directory: str) -> Dict[str, str]:
    """The settings of ``DIRECTORY/.env`` ({} if there is none), read by python-dotenv.

    A line python-dotenv cannot parse (an unclosed quote, a name with a space) is a
    ``UsageError`` naming the line, never silently dropped: the value the user meant would
    be missing. Values never appear in the message (the file holds secrets).
    """
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    path = os.path.join(directory, ".env")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {path}: {err}") from err
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise UsageError(f"{path} line {binding.original.line} cannot be parsed: check "
                             "its quotes (a value with spaces or '#' needs them, and every "
                             "quote its closing twin) and that it reads NAME=VALUE")
    values = dotenv_values(stream=io.StringIO(text))
    return {name: value for name, value in values.items() if value is not None}


def _lookup(environ: Mapping[str, str], dotenv: Mapping[str, str], *names: str
            ) -> Tuple[Optional[str], str]:
    """(value, where it came from) for the first of NAMES set in the environment, else in
    ``.env``; (None, "") if none is."""
    for source, suffix in ((environ, ""), (dotenv, " in .env")):
        for name in names:
            if source.get(name):
                return source[name], name + suffix
    return None, ""


def _setting(given: Optional[str], option: str, environ, dotenv, *names
             ) -> Tuple[Optional[str], str]:
    """The command line's value if given, else the environment's, else ``.env``'s; and
    where it came from, for messages."""
    if given is not None:
        return given, option
    return _lookup(environ, dotenv, *names)


def endpoint_with_scheme(url: Optional[str]) -> Optional[str]:
    """``nyc3.digitaloceanspaces.com`` -> ``https://nyc3.digitaloceanspaces.com``."""
    if url and "://" not in url:
        return "https://" + url
    return url


# -- checks of single values ---------------------------------------------------------------

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
        elif lowered == "expires":
            params.append((HEADER_PARAMS[lowered], http_date(value, header)))
        elif lowered in HEADER_PARAMS:
            params.append((HEADER_PARAMS[lowered], value))
        else:
            known = ", ".join(sorted(HEADER_PARAMS)) + ", x-amz-meta-*"
            raise UsageError(f"--header {name!r} is not supported; use one of: {known}")
    return tuple(params), tuple(metadata)


def http_date(value: str, header: str) -> str:
    """VALUE (an HTTP date, ISO 8601, or seconds since 1970) as the HTTP date botocore
    sends and S3 answers with: ``--put update`` compares the stored Expires with it."""
    from email.utils import format_datetime

    from botocore.utils import parse_to_aware_datetime

    try:
        when = parse_to_aware_datetime(value)
    except (ValueError, TypeError, OverflowError) as err:
        raise UsageError(f"--header {header!r}: not a date; write an HTTP date (Tue, 01 Jan "
                         "2030 00:00:00 GMT) or ISO 8601 (2030-01-01T00:00:00Z)") from err
    return format_datetime(when.astimezone(timezone.utc), usegmt=True)


def positive(value, option: str, *, allow_zero: bool = False, maximum=None):
    """VALUE if it is a finite number > 0 (>= 0 with ALLOW_ZERO) and at most MAXIMUM."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number, not {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{option} must be {'>= 0' if allow_zero else '> 0'}, not {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{option} must be at most {maximum}, not {value}")
    return value


def check_bucket_name(bucket: str, origin: str) -> None:
    if not bucket:
        raise UsageError("no bucket: give --bucket, or set S3PPUT_BUCKET (or SPACES_BUCKET)")
    if not BUCKET_NAME.fullmatch(bucket):
        raise UsageError(f"{bucket!r} ({origin}) is not a valid bucket name: use 3-63 "
                         "letters, digits, '.' and '-' (lowercase for AWS), e.g. my-bucket")


def check_region(region: Optional[str], origin: str) -> None:
    if region is not None and not REGION_NAME.fullmatch(region):
        raise UsageError(f"region {region!r} ({origin}) is not valid: a region is letters, "
                         "digits and '-', e.g. us-east-1 or fra1")


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOST_NAME.fullmatch(host))


def check_endpoint(url: Optional[str], given: Optional[str], origin: str) -> None:
    """URL (GIVEN, with a scheme added) must be http(s)://HOST[:PORT][/PATH]."""
    if url is None:
        return
    problem = ""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when it is not a number in 0..65535
    except ValueError:
        problem = "the port is not a number from 1 to 65535"
    else:
        if parts.scheme not in ("http", "https"):
            problem = f"the scheme must be http or https, not {parts.scheme!r}"
        elif parts.username is not None:
            problem = "credentials do not belong in the URL"
        elif not _is_host(parts.hostname or ""):
            problem = f"{parts.hostname!r} is not a host name" if parts.hostname else "no host"
        elif port == 0:
            problem = "the port is not a number from 1 to 65535"
        elif parts.query or parts.fragment or url.endswith(("?", "#")):
            problem = "it has a query or a fragment"
    if problem:
        raise UsageError(f"endpoint {given!r} ({origin}) is not a URL ({problem}): write "
                         "http(s)://HOST[:PORT], e.g. https://fra1.digitaloceanspaces.com")


def check_source(source: str) -> None:
    """SOURCE is a readable directory, file or tar archive."""
    if not os.path.lexists(source):
        raise UsageError(f"SOURCE {source!r} does not exist")
    if not os.path.exists(source):
        raise UsageError(f"SOURCE {source!r} is a broken symbolic link")
    mode = os.stat(source).st_mode
    if stat.S_ISDIR(mode):
        if not os.access(source, os.R_OK | os.X_OK):
            raise UsageError(f"SOURCE {source!r}: permission denied (cannot list it)")
        return
    if not stat.S_ISREG(mode):
        raise UsageError(f"SOURCE {source!r} is not a directory, a file or a tar archive")
    if not os.access(source, os.R_OK):
        raise UsageError(f"SOURCE {source!r}: permission denied (cannot read it)")
    if is_archive(source):
        try:
            readable = tarfile.is_tarfile(source)
        except (OSError, EOFError, tarfile.TarError) as err:
            raise UsageError(f"SOURCE {source!r} cannot be read: {err}") from err
        if not readable:
            raise UsageError(f"SOURCE {source!r} is named like a tar archive but is not one "
                             "(or is damaged)")


def check_output_file(path: Optional[str], option: str, *, make_dirs: bool = False) -> None:
    """The run can create or append to PATH. With MAKE_DIRS the missing directories will
    be created, so the nearest existing one must be writable."""
    if path is None:
        return
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        while not os.path.exists(parent) and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
    if not os.path.exists(parent):
        raise UsageError(f"{option} {path!r}: the directory {parent!r} does not exist")
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path!r}: {parent!r} is not a directory")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{option} {path!r} is not writable")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path!r}: the directory {parent!r} is not writable")


def check_journal(path: Optional[str], option: str, *, write: bool, explicit: bool) -> None:
    """PATH can hold s3pput's journal: an SQLite file (or nothing yet) that the run can
    write (the directories of the default path are created; a given path's must exist)."""
    if path is None:
        return
    if write:
        check_output_file(path, option, make_dirs=not explicit)
    elif os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a directory; give a file name")
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        try:
            with open(path, "rb") as handle:
                head = handle.read(len(SQLITE_MAGIC))
        except OSError as err:
            raise UsageError(f"{option} {path!r} cannot be read: {err}") from err
        if head != SQLITE_MAGIC:
            raise UsageError(f"{option} {path!r} is not an s3pput journal (not an SQLite "
                             "file); give another file name")


def check_ca_bundle(path: Optional[str]) -> None:
    """--ca-bundle names a readable file (its PEM content is checked by ``store``)."""
    if path is None:
        return
    if not os.path.exists(path):
        raise UsageError(f"--ca-bundle {path!r} does not exist")
    if not os.path.isfile(path):
        raise UsageError(f"--ca-bundle {path!r} is not a file (a PEM bundle of CA "
                         "certificates)")
    if not os.access(path, os.R_OK):
        raise UsageError(f"--ca-bundle {path!r}: permission denied")


def check_content_type(mode: str) -> None:
    if mode in ("guess", "magic"):
        if mode == "magic":
            try:
                import magic  # noqa: F401 - python-magic needs the libmagic library
            except ImportError as err:
                raise UsageError(f"--content-type magic needs libmagic ({err}); install it "
                                 "or use --content-type guess") from err
        return
    if not MIME_TYPE.fullmatch(mode):
        raise UsageError(f"--content-type {mode!r}: use guess, magic, or a type such as "
                         "text/html")


def check_gzip_types(types) -> None:
    for wanted in types:
        if wanted not in ("guess", "all") and not MIME_TYPE.fullmatch(wanted):
            raise UsageError(f"--gzip-type {wanted!r}: use guess, all, or a type such as "
                             "text/html")


def thumbnail_specs(values) -> Tuple[Tuple[str, int, int], ...]:
    """The --thumbnail NAME=WxH values (default thumbnail=200x300) as (name, w, h);
    names must be distinct and must not be the originals' folder."""
    from .images import parse_thumbnail_spec
    from .run.imagemode import ORIGINAL_FOLDER

    specs: Dict[str, Tuple[str, int, int]] = {}
    for value in values or ("thumbnail=200x300",):
        try:
            spec = parse_thumbnail_spec(value)
        except ValueError as err:
            raise UsageError(f"--thumbnail {value!r}: {err}") from err
        if spec.name in specs:
            first = "{}={}x{}".format(*specs[spec.name])
            raise UsageError(f"--thumbnail {value!r}: the name {spec.name!r} is given twice "
                             f"(also {first}); each size needs a name of its own")
        if spec.name == ORIGINAL_FOLDER:
            raise UsageError(f"--thumbnail {value!r}: {ORIGINAL_FOLDER!r} is the folder of "
                             "the originals; choose another name")
        specs[spec.name] = (spec.name, spec.width, spec.height)
    return tuple(specs.values())


def check_thumbnail_format(name: str) -> None:
    from .images import normalize_format

    try:
        normalize_format(name)
    except ValueError as err:
        raise UsageError(f"--thumbnail-format: {err}") from err


def check_cluster(value: str, args) -> str:
    """--cluster ``local:N`` (``local``: one worker per CPU) or a Dask scheduler's address
    (``tcp://HOST:PORT``; the scheme defaults to tcp, the port to 8786), normalised; and
    what cannot work when the putters are spread over machines is refused here. Whether a
    scheduler answers, and whether its workers see the SOURCEs and the store, is checked
    by ``cluster`` before the run."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise UsageError("--cluster needs Dask distributed, which is not installed: "
                         "pip install 's3pput[cluster]'")
    value = value.strip()
    if value == "local" or value.startswith("local:"):
        count = value[len("local:"):] if value != "local" else str(os.cpu_count() or 2)
        if not count.isdigit() or not 1 <= int(count) <= MAX_PROCESSES:
            raise UsageError(f"--cluster {value!r}: write local:N with N worker processes "
                             f"from 1 to {MAX_PROCESSES}, e.g. local:4")
        address = f"local:{int(count)}"
    else:
        address = _scheduler_address(value)
    # Shared by all putters through this machine's memory today; across machines they
    # would need a round trip to a shared counter per file.
    if args.limit is not None:
        raise UsageError("--limit cannot be used with --cluster (the workers on other "
                         "machines cannot share one count): run without one of them")
    if args.max_rate is not None:
        raise UsageError("--max-rate cannot be used with --cluster (the workers on other "
                         "machines cannot share one rate): run without one of them")
    for source in args.sources:
        if is_archive(source) and not source.lower().endswith(".tar"):
            raise UsageError(f"SOURCE {source!r} is a compressed archive, which cannot be "
                             "used with --cluster (only this machine unpacks it): extract "
                             "it where every worker sees it, or use an uncompressed .tar")
    return address


def _scheduler_address(value: str) -> str:
    """``HOST``, ``HOST:PORT`` or ``SCHEME://HOST[:PORT]`` as ``SCHEME://HOST:PORT``."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "tcp", value
    if scheme not in CLUSTER_SCHEMES:
        raise UsageError(f"--cluster {value!r}: the scheme must be one of "
                         f"{', '.join(CLUSTER_SCHEMES)}; write local:N or a Dask scheduler's "
                         "address such as tcp://scheduler.internal:8786")
    if scheme in ("inproc", "ucx"):
        return value  # addresses Dask makes itself (a client passed to the Python API)
    problem = ""
    try:
        parts = urlsplit("//" + rest)
        port = parts.port  # ValueError when it is not a number in 0..65535
    except ValueError:
        problem = "the port is not a number from 1 to 65535"
    else:
        host = parts.hostname or ""
        if not _is_host(host):
            problem = f"{host!r} is not a host name" if host else "no host"
        elif port == 0:
            problem = "the port is not a number from 1 to 65535"
        elif parts.path.strip("/") or parts.query or parts.fragment or parts.username:
            problem = "only SCHEME://HOST:PORT belongs in it"
    if problem:
        raise UsageError(f"--cluster {value!r} is not a scheduler address ({problem}): write "
                         "local:N or tcp://HOST:PORT, e.g. tcp://scheduler.internal:8786")
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port or DASK_PORT}"


# -- the whole configuration ---------------------------------------------------------------

IMAGE_OPTIONS = (("thumbnail", "--thumbnail"), ("rename", "--rename"),
                 ("thumbnail_format", "--thumbnail-format"),
                 ("thumbnail_quality", "--thumbnail-quality"), ("mapping_log", "--mapping-log"),
                 ("preview", "--preview"))


def check_image_options(args) -> Tuple[Tuple[str, int, int], ...]:
    """Image mode's options, checked only with --images (Pillow is not even loaded
    without it); given without --images they are a mistake. Returns the thumbnails."""
    if not args.images:
        for name, option in IMAGE_OPTIONS:
            if getattr(args, name) is not None:
                raise UsageError(f"{option} only applies to image mode: add --images")
        return (("thumbnail", 200, 300),)
    quality = args.thumbnail_quality
    if quality is not None and not 1 <= quality <= 100:
        raise UsageError(f"--thumbnail-quality must be from 1 to 100, not {quality}")
    if args.thumbnail_format is not None:
        check_thumbnail_format(args.thumbnail_format)
    return thumbnail_specs(args.thumbnail)


def _check_credentials(environ, profile, access_key, secret_key, access_origin) -> None:
    """Half a key pair is always a mistake: say which half is missing."""
    if access_origin:  # SPACES_* keys are the ones used
        if not secret_key:
            raise UsageError(f"{access_origin} is set but SPACES_SECRET_KEY is not: set both "
                             "(or neither)")
        return
    if secret_key:
        raise UsageError("SPACES_SECRET_KEY is set but SPACES_ACCESS_KEY is not: set both "
                         "(or neither)")
    if profile:
        return  # an explicit profile: botocore ignores the AWS_* variables
    access, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if access and not secret:
        raise UsageError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set "
                         "both (or neither)")
    if secret and not access:
        raise UsageError("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set "
                         "both (or neither)")


def make_config(args, environ: Optional[Mapping[str, str]] = None,
                cwd: Optional[str] = None) -> Config:
    """Build the validated run configuration from parsed arguments (``cli.build_parser``),
    the environment and ``.env``; raise ``UsageError`` on the first bad value."""
    environ = os.environ if environ is None else environ
    dotenv = read_dotenv(cwd or os.getcwd())
    put_params, metadata = parse_headers(args.header)

    positive(args.limit, "--limit", allow_zero=True)
    positive(args.processes, "--processes", maximum=MAX_PROCESSES)
    positive(args.inflight, "--inflight", maximum=MAX_INFLIGHT)
    positive(args.max_inflight, "--max-inflight", maximum=MAX_INFLIGHT)
    positive(args.retries, "--retries", allow_zero=True, maximum=MAX_RETRIES)
    positive(args.timeout, "--timeout")
    positive(args.max_rate, "--max-rate")
    positive(args.multipart_threshold, "--multipart-threshold", maximum=MAX_PUT_MiB)
    positive(args.part_size, "--part-size", maximum=MAX_PUT_MiB)
    if args.part_size < MIN_PART_MiB:
        raise UsageError(f"--part-size must be at least {MIN_PART_MiB} MiB (an S3 limit), "
                         f"not {args.part_size}")
    thumbnails = check_image_options(args)
    check_content_type(args.content_type)
    check_gzip_types(args.gzip_type or ())
    if args.storage_class is not None and not STORAGE_CLASS.fullmatch(args.storage_class):
        raise UsageError(f"--storage-class {args.storage_class!r}: use a storage class name "
                         "such as STANDARD, STANDARD_IA or GLACIER_IR")
    if args.quiet and (args.verbose or args.debug):
        raise UsageError("--quiet and --verbose contradict each other")
    if args.preview and not args.dry_run:
        raise UsageError("--preview writes a contact sheet of a --dry-run; add --dry-run")
    if args.state and args.no_state:
        raise UsageError("--state and --no-state contradict each other")
    if args.ca_bundle and args.no_verify_ssl:
        raise UsageError("--ca-bundle and --no-verify-ssl contradict each other")
    check_ca_bundle(args.ca_bundle)
    if args.profile is not None and not args.profile.strip():
        raise UsageError("--profile needs a profile name")

    bucket, bucket_origin = _setting(args.bucket, "--bucket", environ, dotenv,
                                     "S3PPUT_BUCKET", "SPACES_BUCKET")
    check_bucket_name(bucket or "", bucket_origin)
    given_endpoint, endpoint_origin = _setting(args.endpoint_url, "--endpoint-url", environ,
                                               dotenv, "AWS_ENDPOINT_URL", "SPACES_ENDPOINT")
    endpoint_url = endpoint_with_scheme(given_endpoint)
    check_endpoint(endpoint_url, given_endpoint, endpoint_origin)
    region, region_origin = _setting(args.region, "--region", environ, dotenv, "AWS_REGION",
                                     "AWS_DEFAULT_REGION", "SPACES_REGION")
    check_region(region, region_origin)
    acl, acl_origin = _setting(args.grant, "--grant", environ, dotenv, "SPACES_ACL")
    if acl is not None and acl not in CANNED_ACLS:
        raise UsageError(f"ACL {acl!r} ({acl_origin}) is not a canned ACL; use one of: "
                         + ", ".join(CANNED_ACLS))

    # SPACES_* keys are used unless a profile or AWS_* keys say otherwise.
    spaces_keys = not args.profile and not environ.get("AWS_ACCESS_KEY_ID")
    access_key, access_origin = _lookup(environ, dotenv, "SPACES_ACCESS_KEY") \
        if spaces_keys else (None, "")
    secret_key = _lookup(environ, dotenv, "SPACES_SECRET_KEY")[0] if spaces_keys else None
    _check_credentials(environ, args.profile, access_key, secret_key, access_origin)

    for source in args.sources:
        check_source(source)
    cluster = getattr(args, "cluster", None)
    if cluster is not None:
        cluster = check_cluster(cluster, args)
    normalize_prefix(args.prefix or "")
    state_file = None if args.no_state else (
        args.state or default_journal_path(bucket, endpoint_url))
    check_journal(state_file, "--state", write=not args.dry_run, explicit=bool(args.state))
    check_output_file(args.log_file, "--log-file")
    check_output_file(args.preview, "--preview")
    if args.images and not args.dry_run:
        check_output_file(args.mapping_log or "s3pput-mapping.csv", "--mapping-log")
    elif args.mapping_log:
        check_output_file(args.mapping_log, "--mapping-log")

    return Config(
        sources=tuple(args.sources),
        bucket=bucket,
        prefix=args.prefix or "",
        endpoint_url=endpoint_url,
        region=region,
        profile=args.profile,
        access_key=access_key,
        secret_key=secret_key,
        verify_ssl=not args.no_verify_ssl,
        ca_bundle=args.ca_bundle,
        checksums=args.checksums,
        put="stupid" if args.no_skip_existing else args.put,
        dry_run=args.dry_run,
        limit=args.limit,
        rules=tuple(args.rules or ()),
        content_type=args.content_type,
        gzip=args.gzip,
        gzip_types=tuple(args.gzip_type or ("guess",)),
        acl=acl,
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
        cluster=cluster,
        follow_symlinks=args.follow_symlinks,
        state_file=state_file,
        verbose=args.verbose + (1 if args.debug else 0),
        quiet=args.quiet,
        json=args.json,
        progress=not args.no_progress,
        log_file=args.log_file,
        images=args.images,
        rename=args.rename or ("sequential" if args.images else "keep"),
        thumbnails=thumbnails,
        thumbnail_format=args.thumbnail_format or "jpeg",
        thumbnail_quality=85 if args.thumbnail_quality is None else args.thumbnail_quality,
        preview=args.preview,
        mapping_log=args.mapping_log,
    )
