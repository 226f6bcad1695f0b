"""The headers an object is stored with: what a run puts, what a HEAD shows, and the
fingerprint the journal keeps of them (what ``--put update`` compares: see ``decide``).

An object's *header set* is a dict of lower-case HTTP names to values, holding only what
s3pput compares: ``content-type``, ``content-encoding``, ``cache-control``,
``content-disposition``, ``content-language``, ``expires`` (as an RFC 1123 date),
``x-amz-meta-NAME``, ``x-amz-storage-class``, ``x-amz-server-side-encryption`` and
``x-amz-acl``. Tagging and the website redirect are put but not compared. Image mode's
x-amz-meta-width/height (``IMAGE_FACTS_META``) are each object's own, not the run's.

Pure: no I/O. What a run puts depends only on the run and the file's Content-Type, so
``RunHeaders`` computes it (and its fingerprint) once per Content-Type.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timezone
from typing import TYPE_CHECKING, Dict, Mapping, NamedTuple, Optional, Tuple

from .content import DEFAULT_TYPE, content_type, should_gzip
from .errors import UsageError

if TYPE_CHECKING:
    from .config import Config

Headers = Dict[str, str]

# PutObject/CopyObject parameters -> the header each one sets.
PARAM_HEADERS = {
    "ContentType": "content-type",
    "ContentEncoding": "content-encoding",
    "CacheControl": "cache-control",
    "ContentDisposition": "content-disposition",
    "ContentLanguage": "content-language",
    "Expires": "expires",
    "StorageClass": "x-amz-storage-class",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "ACL": "x-amz-acl",
}
META = "x-amz-meta-"
# Canned ACLs that let anyone read an object (image mode warns about locations in them).
PUBLIC_ACLS = ("public-read", "public-read-write")
# What image mode writes on each original and thumbnail: its own size in pixels, so that
# a HEAD answers it. Per object, not per run: not in the run's headers (so not in their
# fingerprint), not compared in image mode (``decide.Rules.own_metadata``), kept by an
# update in place, and not a --header an image run may set.
IMAGE_FACTS_META = frozenset({META + "width", META + "height"})
# What an object has exactly as a put makes it: a header the run does not put must be
# absent from the object too.
CONTENT_HEADERS = ("content-type", "content-encoding", "cache-control", "content-disposition",
                   "content-language", "expires")
# Settings compared only when the run gives them: without them the store's default
# applies, and a lifecycle rule or a bucket policy may have changed it since.
SETTINGS = ("x-amz-storage-class", "x-amz-server-side-encryption", "x-amz-acl")
DEFAULT_STORAGE_CLASS = "STANDARD"  # what S3 means when it shows no storage class
LISTED = frozenset({"x-amz-storage-class"})  # what a listing shows besides size and ETag
UNSEEN = frozenset({"x-amz-acl"})  # what neither a listing nor a HEAD shows

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



# What a run asks for beyond the defaults (``asks``): nothing, only what a listing shows,
# or headers only a HEAD shows.
NOTHING, LISTING, HEAD = "", "listing", "head"


def put_params(cfg: Config, ctype: str, gzip: bool) -> Dict:
    """The PutObject parameters of a file of Content-Type CTYPE (GZIP: stored gzipped)."""
    params: Dict = dict(cfg.put_params)
    params["ContentType"] = ctype
    if gzip:
        params["ContentEncoding"] = "gzip"
    if cfg.acl:
        params["ACL"] = cfg.acl
    if cfg.sse:
        params["ServerSideEncryption"] = cfg.sse
    if cfg.storage_class:
        params["StorageClass"] = cfg.storage_class
    if cfg.metadata:
        params["Metadata"] = dict(cfg.metadata)
    return params


def thumbnail_params(params: Dict, mime: str) -> Dict:
    """The parameters of a thumbnail of an original put with PARAMS: its own type, never
    gzipped."""
    params = dict(params)
    params["ContentType"] = mime
    params.pop("ContentEncoding", None)
    return params


def with_size(params: Dict, width: int, height: int) -> Dict:
    """PARAMS (a copy) with an image's size as x-amz-meta-width and x-amz-meta-height,
    beside the run's own metadata."""
    params = dict(params)
    params["Metadata"] = {**params.get("Metadata", {}), "width": str(width),
                          "height": str(height)}
    return params


def stored_size(headers: Optional[Mapping[str, str]]) -> Optional[Tuple[int, int]]:
    """The (width, height) a header set shows as x-amz-meta-width/height, None when it
    shows none (or nonsense)."""
    try:
        return int(headers[META + "width"]), int(headers[META + "height"])
    except (KeyError, TypeError, ValueError):
        return None


def normal_date(value: str) -> str:
    """An HTTP date in the one form S3 answers with (``Tue, 01 Jan 2030 00:00:00 GMT``);
    VALUE itself if it is not an RFC 1123 date."""
    from email.utils import format_datetime, parsedate_to_datetime  # 6 ms: only when asked

    try:
        return format_datetime(parsedate_to_datetime(value), usegmt=True)
    except (TypeError, ValueError, IndexError):
        return value


def header_set(params: Mapping) -> Headers:
    """The header set that PutObject/CopyObject PARAMS give an object."""
    found: Headers = {}
    for name, value in params.items():
        if name == "Metadata":
            found.update((META + key.lower(), str(text)) for key, text in value.items())
        elif name in PARAM_HEADERS:
            found[PARAM_HEADERS[name]] = str(value).strip()
    if "expires" in found:
        found["expires"] = normal_date(found["expires"])
    return found


def from_http(raw: Mapping[str, str]) -> Headers:
    """The header set of a stored object from the headers of a HEAD answer."""
    found: Headers = {}
    for name, value in raw.items():
        name = name.lower()
        if name in CONTENT_HEADERS or name in SETTINGS or \
                (name.startswith(META) and len(name) > len(META)):
            found[name] = value.strip()
    if "expires" in found:
        found["expires"] = normal_date(found["expires"])
    return found


def fingerprint(headers: Headers, form: str = "") -> str:
    """A short fingerprint of a header set, equal for equal sets: 16 hex digits, then
    ``/ACL`` when there is one (S3 never shows an object's ACL, so the journal keeps it
    readable: see ``recorded_acl``), then ``#FORM`` when the run stores its files in
    another form than the local bytes (``stored_form``: the journal keeps which, so that
    its rows vouch only for objects stored the way the run would store them)."""
    shown = sorted((name, value) for name, value in headers.items() if name != "x-amz-acl")
    digest = hashlib.sha256(json.dumps(["s3pput headers 1", shown]).encode("utf-8"))
    acl = headers.get("x-amz-acl")
    return digest.hexdigest()[:16] + (f"/{acl}" if acl else "") + (f"#{form}" if form else "")


def recorded_acl(fingerprint_text: Optional[str]) -> Optional[str]:
    """The canned ACL a FINGERPRINT records ("" for none), None when there is none."""
    if fingerprint_text is None:
        return None
    return fingerprint_text.partition("#")[0].partition("/")[2]


def recorded_form(fingerprint_text: Optional[str]) -> Optional[str]:
    """The stored form a FINGERPRINT records ("" for the local bytes as they are), None
    when there is no fingerprint (an older journal, a row of a hash only)."""
    if fingerprint_text is None:
        return None
    return fingerprint_text.partition("#")[2]


def stored_form(cfg: Config) -> str:
    """How the run's files are stored, when not byte for byte as they are locally and
    that is not in their headers: ``strip-location`` or ``strip-all`` for originals in
    image mode with --strip-metadata; "" otherwise (gzip shows in Content-Encoding)."""
    return f"strip-{cfg.strip_metadata}" if cfg.images and cfg.strip_metadata else ""


def asks(cfg: Config) -> str:
    """What the run asks of the stored headers beyond what a plain run puts: ``HEAD``
    when it sets a header only a HEAD shows, ``LISTING`` when it sets only what listings
    show (a storage class, or that and an ACL), ``NOTHING`` otherwise. gzip is not a
    header option: its Content-Encoding goes with the content, compared by the ETag."""
    asked = {PARAM_HEADERS[name] for name, _ in cfg.put_params if name in PARAM_HEADERS}
    if cfg.metadata:
        asked.add(META)
    if cfg.content_type != "guess":
        asked.add("content-type")
    if cfg.acl:
        asked.add("x-amz-acl")
    if cfg.sse:
        asked.add("x-amz-server-side-encryption")
    if cfg.storage_class:
        asked.add("x-amz-storage-class")
    if asked - LISTED - UNSEEN:
        return HEAD
    return LISTING if asked & LISTED else NOTHING


def content_type_of(cfg: Config, name: str, head: bytes, image_mime: str = "") -> str:
    """The Content-Type a file called NAME starting with HEAD is put with (IMAGE_MIME: an
    image-mode original's sniffed type)."""
    return dict(cfg.put_params).get("ContentType") or image_mime or \
        content_type(name, head, cfg.content_type)


def type_by_name(cfg: Config, name: str) -> Optional[str]:
    """The Content-Type of a (non-image) file called NAME when the name or the run decides
    it; None when only its content can tell (``--content-type magic``, a name that says
    nothing)."""
    ctype = content_type_of(cfg, name, b"")
    if cfg.content_type == "magic" and ctype == DEFAULT_TYPE and \
            not dict(cfg.put_params).get("ContentType"):
        return None
    return ctype


class Wanted(NamedTuple):
    """What a run puts for one Content-Type."""

    params: Dict  # PutObject parameters
    headers: Headers  # the header set they give
    fingerprint: str


class RunHeaders:
    """What a run puts, per Content-Type (computed once for each), and what it asks."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.asks = asks(cfg)
        self.form = stored_form(cfg)
        self.cache: Dict[str, Wanted] = {}

    def for_type(self, ctype: str) -> Wanted:
        wanted = self.cache.get(ctype)
        if wanted is None:
            gzip = self.cfg.gzip and should_gzip(ctype, self.cfg.gzip_types)
            params = put_params(self.cfg, ctype, gzip)
            headers = header_set(params)
            wanted = self.cache[ctype] = Wanted(params, headers,
                                                fingerprint(headers, self.form))
        return wanted
