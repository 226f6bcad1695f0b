"""Checks of single option values and of the local files a run will read and write.

Each raises ``UsageError`` with a message that names the option (or the variable the value
came from) and says what to write instead. No network I/O: what only the store can tell
is checked once, up front, by the run (``run.preflight``).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from .errors import UsageError
from .keys import ORIGINAL_FOLDER, normalize_prefix
from .sources import is_archive

CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read",
               "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control",
               "log-delivery-write")

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
        import tarfile

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


def check_ca_bundle(path: Optional[str], option: str = "--ca-bundle") -> None:
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


def check_gzip_types(types, option: str = "--gzip-type") -> None:
    for wanted in types:
        if wanted not in ("guess", "all") and not MIME_TYPE.fullmatch(wanted):
            raise UsageError(f"--gzip-type {wanted!r}: use guess, all, or a type such as "
                             "text/html")


def thumbnail_formats(text: str, option: str = "--thumbnail-format") -> Tuple[str, ...]:
    """The thumbnail formats of TEXT, one or a comma list (``avif,webp,jpeg``), as their
    canonical names in the order given; each at most once."""
    from .images.formats import format_name, normalize_format

    found: List[str] = []
    for part in str(text).split(","):
        try:
            name = format_name(normalize_format(part.strip()))
        except ValueError as err:
            raise UsageError(f"{option}: {err}") from err
        if name in found:
            raise UsageError(f"{option} {text!r}: {name} is given twice; give each format "
                             "once")
        found.append(name)
    return tuple(found)


def check_thumbnail_formats(text: str, option: str) -> None:
    thumbnail_formats(text, option)


def thumbnail_specs(values, formats: Tuple[str, ...] = ("jpeg",)
                    ) -> Tuple[Tuple[str, int, int, Tuple[str, ...]], ...]:
    """The --thumbnail NAME=WxH[:FORMAT,...] values (default thumbnail=200x300) as (name,
    w, h, formats); a size without formats of its own gets FORMATS. Names must be distinct
    and must not be the originals' folder."""
    from .images import parse_thumbnail_spec

    specs: Dict[str, Tuple[str, int, int, Tuple[str, ...]]] = {}
    for value in values or ("thumbnail=200x300",):
        # A name is letters, digits, '-', '_' and '.': the first ':' starts the formats.
        size, sep, own = value.partition(":")
        try:
            spec = parse_thumbnail_spec(size)
        except ValueError as err:
            raise UsageError(f"--thumbnail {value!r}: {err}") from err
        if spec.name in specs:
            first = "{}={}x{}".format(*specs[spec.name][:3])
            raise UsageError(f"--thumbnail {value!r}: the name {spec.name!r} is given twice "
                             f"(also {first}); each size needs a name of its own")
        if spec.name == ORIGINAL_FOLDER:
            raise UsageError(f"--thumbnail {value!r}: {ORIGINAL_FOLDER!r} is the folder of "
                             "the originals; choose another name")
        spec_formats = thumbnail_formats(own, f"--thumbnail {value!r}") if sep else formats
        specs[spec.name] = (spec.name, spec.width, spec.height, spec_formats)
    return tuple(specs.values())


def thumbnail_qualities(value) -> Dict[str, int]:
    """--thumbnail-quality as {format: quality} for the lossy formats it names: Q (an
    int, or its text) for all of them, FORMAT=Q pairs for some (``avif=60,jpeg=85``), or
    both (``80,avif=60``: the pairs win). Formats it does not name are left out."""
    from .images.formats import DEFAULT_QUALITY, format_name, normalize_format

    option = "--thumbnail-quality"
    lossy = [name for name, default in DEFAULT_QUALITY.items() if default is not None]
    every: Optional[int] = None
    pairs: Dict[str, int] = {}
    parts = [value] if isinstance(value, int) else str(value).split(",")
    for part in parts:
        name, sep, number = str(part).strip().rpartition("=")
        try:
            quality = int(number)
        except ValueError:
            raise UsageError(f"{option} {value!r}: write Q or FORMAT=Q pairs with Q from 1 "
                             "to 100, e.g. 80 or avif=60,jpeg=85") from None
        if not 1 <= quality <= 100:
            raise UsageError(f"{option} must be from 1 to 100, not {quality}")
        if not sep:
            every = quality
            continue
        try:
            fmt = format_name(normalize_format(name.strip()))
        except ValueError as err:
            raise UsageError(f"{option} {value!r}: {err}") from err
        if DEFAULT_QUALITY[fmt] is None:
            raise UsageError(f"{option} {value!r}: {fmt} is lossless and has no quality; "
                             f"quality applies to {', '.join(lossy)}")
        pairs[fmt] = quality
    given = {name: every for name in lossy} if every is not None else {}
    given.update(pairs)
    return given


def check_thumbnail_quality(value, option: str) -> None:
    thumbnail_qualities(value)


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


def cluster_address(value: str) -> str:
    """--cluster ``local:N`` (``local``: one worker per CPU) or a Dask scheduler's address
    (``tcp://HOST:PORT``; the scheme defaults to tcp, the port to 8786), normalised.
    Whether a scheduler answers, and whether its workers see the SOURCEs and the store, is
    checked by ``run.cluster`` before the run."""
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
        return f"local:{int(count)}"
    return _scheduler_address(value)


def check_prefix(prefix: str) -> None:
    normalize_prefix(prefix or "")


def check_profile(profile: str, option: str) -> None:
    if not profile.strip():
        raise UsageError(f"{option} needs a profile name")


def check_acl(acl: str, origin: str) -> None:
    if acl not in CANNED_ACLS:
        raise UsageError(f"ACL {acl!r} ({origin}) is not a canned ACL; use one of: "
                         + ", ".join(CANNED_ACLS))


def check_storage_class(value: str, option: str) -> None:
    if not STORAGE_CLASS.fullmatch(value):
        raise UsageError(f"{option} {value!r}: use a storage class name such as STANDARD, "
                         "STANDARD_IA or GLACIER_IR")


def check_part_size(mib: int, option: str) -> None:
    positive(mib, option, maximum=MAX_PUT_MiB)
    if mib < MIN_PART_MiB:
        raise UsageError(f"{option} must be at least {MIN_PART_MiB} MiB (an S3 limit), "
                         f"not {mib}")
