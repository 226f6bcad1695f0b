"""The one option table: every option of s3pput written once.

Each ``Option`` says its command-line flags, its kind and type, its default, the
environment (and ``.env``) names it is read from when not given, its help, and the check
of its value. The command line (``cli``), the Python API (``api.put``) and the run
configuration (``config.make_config``) are all made from this table, so their options and
defaults agree by construction: ``values_from_keywords`` is what ``put(**options)``
gives, ``cli.values_from_argv`` what a command line gives; both are complete dicts of
option name -> value that ``make_config`` turns into a ``Config``.

Precedence for options with environment names: the value given (command line or
keyword), then the process environment, then ``.env`` in the working directory
(``config`` does the looking up, so that messages can say where a value came from).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from . import checks
from .decide import PUT_MODES
from .errors import UsageError
from .filters import EXCLUDE, INCLUDE, Rule
from .images.formats import DEFAULT_QUALITY

# Kinds of option
VALUE = "value"  # takes one value: --bucket B
FLAG = "flag"  # on or off: --dry-run
COUNT = "count"  # repeatable switch: -v -v
LIST = "list"  # repeatable value, in order: --header H --header H
RULE = "rule"  # --include/--exclude: one ordered list of filter rules (``rules``)

# Groups, in the order --help shows them
DESTINATION = "destination"
WHAT = "what to put"
HOW = "how objects are stored"
IMAGES = "image mode"
RUNNING = "running"
OUTPUT = "output"
COMPAT = "compatibility with the DigitalOcean uploader script"

CPU_COUNT = os.cpu_count() or 2


class Option(NamedTuple):
    name: str  # the put() keyword and the key of the values dict
    flags: Tuple[str, ...]  # command-line spellings, the long one first
    group: str
    help: str  # what it does; the default and environment names are added by ``help_of``
    kind: str = VALUE
    parse: Callable[[str], Any] = str  # a value from text (command line, environment)
    default: Any = None
    choices: Tuple[str, ...] = ()
    env: Tuple[str, ...] = ()  # environment, then .env, names; the first one set wins
    metavar: Optional[str] = None
    check: Optional[Callable[[Any, str], None]] = None  # check(value, flag) raises UsageError
    shown_default: str = ""  # how help states a default that is computed (e.g. CPU count)

    @property
    def flag(self) -> str:
        return self.flags[0]


def _positive(**bounds) -> Callable[[Any, str], None]:
    return lambda value, flag: checks.positive(value, flag, **bounds)


OPTIONS: Tuple[Option, ...] = (
    # -- destination
    Option("bucket", ("--bucket",), DESTINATION, "destination bucket",
           env=("S3PPUT_BUCKET", "SPACES_BUCKET")),
    Option("prefix", ("--prefix",), DESTINATION,
           "key prefix: keys are PREFIX/relative/path (slashes normalised)", default="",
           check=lambda value, flag: checks.check_prefix(value)),
    Option("endpoint_url", ("--endpoint-url",), DESTINATION,
           "S3-compatible endpoint (a bare host gets https://)",
           env=("AWS_ENDPOINT_URL", "SPACES_ENDPOINT"), metavar="URL"),
    Option("region", ("--region",), DESTINATION, "region",
           env=("AWS_REGION", "AWS_DEFAULT_REGION", "SPACES_REGION")),
    Option("profile", ("--profile",), DESTINATION, "AWS profile from ~/.aws/config",
           metavar="NAME", check=checks.check_profile),
    Option("ca_bundle", ("--ca-bundle",), DESTINATION,
           "trust the CA certificates in FILE (PEM) for TLS; default: AWS_CA_BUNDLE, else "
           "ca_bundle in the profile, else the usual CAs", metavar="FILE",
           check=checks.check_ca_bundle),
    Option("no_verify_ssl", ("--no-verify-ssl",), DESTINATION,
           "do not verify TLS certificates (insecure; warns)", kind=FLAG, default=False),
    Option("checksums", ("--checksums",), DESTINATION,
           "botocore's extra CRC checksums: auto = on for AWS, off for other stores, which "
           "often mishandle them (Content-MD5 is always sent)", default="auto",
           choices=("auto", "when_required", "when_supported")),
    # -- what to put
    Option("put", ("--put",), WHAT,
           "add: only absent keys; stupid: always; update: absent or changed keys, and the "
           "headers of unchanged ones (in place)", default="update",
           choices=PUT_MODES),
    Option("dry_run", ("--dry-run",), WHAT,
           "write nothing; print what would be uploaded and why", kind=FLAG, default=False),
    Option("limit", ("--limit",), WHAT,
           "upload (or update the metadata of) at most N files (skips do not count)",
           parse=int, metavar="N", check=_positive(allow_zero=True)),
    Option("include", ("--include",), WHAT,
           "take paths matching GLOB (repeatable; the last matching --include/--exclude "
           "decides)", kind=RULE, metavar="GLOB"),
    Option("exclude", ("--exclude",), WHAT, "leave out paths matching GLOB (repeatable)",
           kind=RULE, metavar="GLOB"),
    Option("follow_symlinks", ("--follow-symlinks",), WHAT,
           "follow symbolic links (loops are detected); default: skip them", kind=FLAG,
           default=False),
    # -- how objects are stored
    Option("content_type", ("--content-type",), HOW,
           "guess: by file name; magic: by name, then by content; TYPE: this type for "
           "every file", default="guess", metavar="guess|magic|TYPE",
           check=lambda value, flag: checks.check_content_type(value)),
    Option("gzip", ("--gzip",), HOW, "gzip-compress files of the --gzip-type types (stored "
           "with Content-Encoding: gzip)", kind=FLAG, default=False),
    Option("gzip_type", ("--gzip-type",), HOW,
           "content types to gzip (repeatable; default guess: text-like types)", kind=LIST,
           metavar="TYPE|guess|all", check=checks.check_gzip_types),
    Option("grant", ("--grant",), HOW, "canned ACL: " + ", ".join(checks.CANNED_ACLS),
           env=("SPACES_ACL",), metavar="ACL", check=checks.check_acl),
    Option("header", ("--header",), HOW,
           "set a header: Cache-Control, Content-Disposition, Content-Language, "
           "Content-Type, Expires, x-amz-meta-* ... (repeatable)", kind=LIST,
           metavar="NAME:VALUE"),
    Option("sse", ("--sse",), HOW, "server-side encryption", choices=("AES256", "aws:kms")),
    Option("storage_class", ("--storage-class",), HOW,
           "storage class (STANDARD, STANDARD_IA, ...)", check=checks.check_storage_class),
    Option("multipart_threshold", ("--multipart-threshold",), HOW,
           "files larger than this go up in parts", parse=int, default=8, metavar="MiB",
           check=_positive(maximum=checks.MAX_PUT_MiB)),
    Option("part_size", ("--part-size",), HOW,
           "multipart part size, at least 5 (larger when a file would need more than "
           "10,000 parts)", parse=int, default=8, metavar="MiB", check=checks.check_part_size),
    # -- image mode
    Option("images", ("--images",), IMAGES,
           "upload images as original + thumbnails under numbered names", kind=FLAG,
           default=False),
    Option("rename", ("--rename",), IMAGES,
           "image names: sequential (default with --images) or keep",
           choices=("sequential", "keep")),
    Option("thumbnail", ("--thumbnail",), IMAGES,
           "thumbnail folder and size, optionally its own formats, e.g. "
           "card=400x600:avif,jpeg (repeatable; default thumbnail=200x300)", kind=LIST,
           metavar="NAME=WxH[:FORMAT,...]"),
    Option("thumbnail_format", ("--thumbnail-format",), IMAGES,
           "thumbnail format, or several for <picture> (avif,webp,jpeg: each stored as "
           "NUMBER.EXT); sizes without formats of their own get these (default jpeg)",
           metavar="FORMAT[,FORMAT...]", check=checks.check_thumbnail_formats),
    Option("thumbnail_quality", ("--thumbnail-quality",), IMAGES,
           "quality 1 to 100 of every lossy thumbnail format (Q), or per format "
           "(avif=60,jpeg=85) (default " + ",".join(
               f"{name}={quality}" for name, quality in DEFAULT_QUALITY.items() if quality)
           + ": they look alike)",
           metavar="Q|FORMAT=Q,...", check=checks.check_thumbnail_quality),
    Option("strip_metadata", ("--strip-metadata",), IMAGES,
           "remove from the stored originals, without re-encoding: location (GPS, XMP "
           "places), or all (every EXIF, XMP and comment but the orientation and the colour "
           "profile); a file that cannot be stripped fails", choices=("location", "all")),
    Option("preview", ("--preview",), IMAGES,
           "with --dry-run: write an HTML contact sheet of the thumbnails",
           metavar="FILE.html"),
    Option("mapping_log", ("--mapping-log",), IMAGES,
           "CSV log of source -> keys (default: s3pput-mapping.csv)", metavar="FILE.csv"),
    # -- running
    Option("processes", ("--processes", "--workers"), RUNNING,
           "putter processes; at most one per usable core, a larger N gives each one's "
           "share of requests in flight to the putters kept",
           parse=int, default=CPU_COUNT, shown_default="CPU count",
           check=_positive(maximum=checks.MAX_PROCESSES)),
    Option("inflight", ("--inflight",), RUNNING,
           "requests in flight per putter process, fixed (default: adaptive, following the "
           "network's latency and throughput)", parse=int,
           check=_positive(maximum=checks.MAX_INFLIGHT)),
    Option("max_inflight", ("--max-inflight",), RUNNING,
           "the most requests in flight per putter process the adaptive limit may reach",
           parse=int, default=256, check=_positive(maximum=checks.MAX_INFLIGHT)),
    Option("retries", ("--retries",), RUNNING,
           "retries of a failed request, with exponential backoff", parse=int, default=6,
           check=_positive(allow_zero=True, maximum=checks.MAX_RETRIES)),
    Option("timeout", ("--timeout",), RUNNING,
           "seconds before a silent connection is abandoned", parse=float, default=60.0,
           check=_positive()),
    Option("no_fast_put", ("--no-fast-put",), RUNNING,
           "send every request through boto3's full client (slower for small files; see "
           "README)", kind=FLAG, default=False),
    Option("max_rate", ("--max-rate",), RUNNING, "at most N requests per second in all",
           parse=float, metavar="N", check=_positive()),
    Option("cluster", ("--cluster",), RUNNING,
           "run the putters on a Dask cluster: the scheduler at ADDRESS (tcp://HOST:8786; "
           "every worker must see SOURCE at the same path), or local:N, N worker processes "
           "on this machine (pip install 's3pput[cluster]'; --limit and --max-rate are "
           "refused; see README)", metavar="ADDRESS|local:N"),
    Option("state", ("--state",), RUNNING,
           "journal of what was put, to skip re-reading unchanged files (SQLite; default "
           "~/.local/state/s3pput/BUCKET@HOST.sqlite)", metavar="FILE"),
    Option("no_state", ("--no-state",), RUNNING, "keep no journal", kind=FLAG,
           default=False),
    # -- output
    Option("verbose", ("--verbose", "-v"), OUTPUT, "list every file (-vv: and exclusions)",
           kind=COUNT, default=0),
    Option("quiet", ("--quiet", "-q"), OUTPUT, "only errors", kind=FLAG, default=False),
    Option("log_file", ("--log-file",), OUTPUT, "append every outcome to FILE",
           metavar="FILE"),
    Option("json", ("--json",), OUTPUT, "stdout carries only the final JSON summary",
           kind=FLAG, default=False),
    Option("no_progress", ("--no-progress",), OUTPUT, "no progress display", kind=FLAG,
           default=False),
    # -- compatibility
    Option("no_skip_existing", ("--no-skip-existing",), COMPAT, "same as --put stupid",
           kind=FLAG, default=False),
    Option("debug", ("--debug",), COMPAT, "same as -v", kind=FLAG, default=False),
)

BY_NAME: Dict[str, Option] = {option.name: option for option in OPTIONS}
GROUPS = (DESTINATION, WHAT, HOW, IMAGES, RUNNING, OUTPUT, COMPAT)


def help_of(option: Option) -> str:
    """The --help text of OPTION: what it does, its default, where else it is read from."""
    text = option.help
    default = option.shown_default or (
        option.default if option.kind == VALUE and option.default not in (None, "") else "")
    if default != "" and "default" not in text:
        text += f" (default {default})"
    if option.env:
        text += " (env " + " or ".join(option.env) + ")"
    return text


def defaults() -> Dict[str, Any]:
    """Every option's value when none is given (and no SOURCE, no rule yet)."""
    values: Dict[str, Any] = {"sources": [], "rules": []}
    for option in OPTIONS:
        if option.kind == RULE:
            continue
        values[option.name] = [] if option.kind == LIST else option.default
    return values


def typed(option: Option, value: Any, origin: str) -> Any:
    """VALUE of OPTION as the table's type makes it from text; ORIGIN (``name=``) names
    where it came from, for the message of a value that is not of the type or not one of
    the choices."""
    if isinstance(value, str) and option.parse is not str:
        try:
            value = option.parse(value)
        except ValueError as err:
            raise UsageError(f"{origin}{value!r}: not a valid "
                             f"{'whole number' if option.parse is int else 'number'}") from err
    if option.choices and value not in option.choices:
        raise UsageError(f"{origin}{value!r}: use one of "
                         + ", ".join(map(repr, option.choices)))
    return value


def values_from_keywords(sources: Iterable[str], keywords: Mapping[str, Any]
                         ) -> Dict[str, Any]:
    """The values ``put(SOURCES, **KEYWORDS)`` gives: the table's defaults, then each
    keyword as the command line would have given it. Filters come as ``include=`` or
    ``exclude=`` (one kind), or ``rules=[(kind, glob), ...]`` when their order matters.
    Raises ``TypeError`` for a keyword that is no option, ``UsageError`` for a bad value."""
    values = defaults()
    values["sources"] = list(sources)
    keywords = dict(keywords)
    values["rules"] = _rules(keywords.pop("rules", None), keywords.pop("include", None),
                             keywords.pop("exclude", None))
    for name, value in keywords.items():
        option = BY_NAME.get(name)
        if option is None:
            raise TypeError(f"put() got an unexpected keyword argument {name!r}")
        origin = f"{name}="
        if option.kind == LIST:
            items = [value] if isinstance(value, str) else list(value or ())
            values[name] = [typed(option, item, origin) for item in items]
        elif option.kind == FLAG:
            values[name] = bool(value)
        elif option.kind == COUNT:
            values[name] = int(value)
        else:
            values[name] = None if value is None else typed(option, value, origin)
    return values


def _rules(rules, include, exclude) -> List[Rule]:
    """The include/exclude rules of ``put()``, in the order that decides (``filters``)."""
    if rules is not None:
        if include is not None or exclude is not None:
            raise UsageError("give either rules=[...] or include=/exclude=, not both")
        ordered = []
        for kind, pattern in rules:
            if kind not in (INCLUDE, EXCLUDE):
                raise UsageError(f"rules: {kind!r} is neither {INCLUDE!r} nor {EXCLUDE!r}")
            ordered.append(Rule(kind, pattern))
        return ordered
    if include is not None and exclude is not None:
        raise UsageError("include= and exclude= together: their order decides, so give "
                         "them as rules=[('exclude', '*'), ('include', '*.jpg')]")
    kind, patterns = (INCLUDE, include) if include is not None else (EXCLUDE, exclude)
    if patterns is None:
        return []
    return [Rule(kind, pattern)
            for pattern in ([patterns] if isinstance(patterns, str) else patterns)]
