"""The run configuration: one frozen, validated ``Config``, made from the option table's
values (``options``), the environment and ``.env``.

Precedence for every setting: the value given (command line or ``put()`` keyword), then
the process environment, then a ``.env`` file in the working directory (the names
DigitalOcean Spaces users already have: ``SPACES_ACCESS_KEY``, ``SPACES_SECRET_KEY``,
``SPACES_BUCKET``, ``SPACES_REGION``, ``SPACES_ENDPOINT``, ``SPACES_ACL``), read by
python-dotenv with that library's rules.

Every value is checked here, before any request: a bad one is a ``UsageError`` whose
message names the option (or the variable it came from) and says what to write instead.
No network I/O; only local files are looked at (SOURCEs, ``.env``, the CA bundle, and the
directories the run will write to). What only the store or botocore can tell is checked
once, up front, by the run (``run.preflight``).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from . import checks
from .errors import UsageError
from .filters import Rule
from .headers import IMAGE_FACTS_META, parse_headers
from .journal import default_path as default_journal_path
from .options import BY_NAME, OPTIONS

MiB = 1024 * 1024
MAPPING_LOG = "s3pput-mapping.csv"  # image mode's CSV log in the working directory


@dataclass(frozen=True)
class Config:
    """Everything a run needs, as ``make_config`` makes it from the option table (there
    are no defaults here: every field comes from the table or the environment). Picklable;
    the secret never appears in its repr."""

    sources: Tuple[str, ...]
    bucket: str
    prefix: str
    endpoint_url: Optional[str]
    region: Optional[str]
    profile: Optional[str]
    access_key: Optional[str] = field(repr=False)
    secret_key: Optional[str] = field(repr=False)
    session_token: Optional[str] = field(repr=False)
    verify_ssl: bool  # False: --no-verify-ssl (see store.client.tls_verify)
    ca_bundle: Optional[str]  # --ca-bundle; None: botocore's own resolution
    checksums: str  # botocore request_checksum_calculation: auto|when_required|...
    put: str
    dry_run: bool
    limit: Optional[int]
    rules: Tuple[Rule, ...]
    content_type: str  # "guess", "magic" or a fixed type
    gzip: bool
    gzip_types: Tuple[str, ...]
    acl: Optional[str]
    put_params: Tuple[Tuple[str, str], ...]  # from --header, e.g. ("CacheControl", ..)
    metadata: Tuple[Tuple[str, str], ...]  # from --header x-amz-meta-NAME:VALUE
    sse: Optional[str]
    storage_class: Optional[str]
    processes: int
    inflight: Optional[int]  # requests in flight per putter; None: adaptive
    max_inflight: int  # the most the adaptive limit goes to, per putter
    multipart_threshold: int  # bytes
    part_size: int  # bytes (the preferred size: ``store.multipart`` may choose larger)
    retries: int
    fast_put: bool  # requests try the lean path first (``store.lean``)
    timeout: float
    max_rate: Optional[float]  # requests per second, all putters together
    cluster: Optional[str]  # --cluster: a Dask scheduler's address, or local:N
    follow_symlinks: bool
    state_file: Optional[str]  # SQLite journal; None: no journal
    verbose: int
    quiet: bool
    json: bool
    progress: bool
    log_file: Optional[str]
    # image mode
    images: bool
    rename: str
    # (folder name, width, height, formats): each size in each of its formats, e.g.
    # ("thumbnail", 200, 300, ("avif", "jpeg")); formats by their canonical names.
    thumbnails: Tuple[Tuple[str, int, int, Tuple[str, ...]], ...]
    # (format, quality) of every lossy thumbnail format: the given ones, else the defaults
    thumbnail_quality: Tuple[Tuple[str, int], ...]
    strip_metadata: Optional[str]  # image mode: "location" or "all" stripped from originals
    preview: Optional[str]
    mapping_log: Optional[str]

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



def endpoint_with_scheme(url: Optional[str]) -> Optional[str]:
    """``nyc3.digitaloceanspaces.com`` -> ``https://nyc3.digitaloceanspaces.com``."""
    if url and "://" not in url:
        return "https://" + url
    return url


IMAGE_OPTIONS = ("thumbnail", "rename", "thumbnail_format", "thumbnail_quality",
                 "strip_metadata", "mapping_log", "preview")


def _image_settings(values: Mapping[str, Any], metadata: Tuple[Tuple[str, str], ...]):
    """Image mode's options, checked only with --images (Pillow is not even loaded
    without it); given without --images they are a mistake. Returns (thumbnails, quality
    per lossy format)."""
    from .images.formats import DEFAULT_QUALITY

    if not values["images"]:
        for name in IMAGE_OPTIONS:
            if values[name] not in (None, []):
                raise UsageError(f"{BY_NAME[name].flag} only applies to image mode: add "
                                 "--images")
        return (("thumbnail", 200, 300, ("jpeg",)),), ()
    for name, _ in metadata:
        if f"x-amz-meta-{name}" in IMAGE_FACTS_META:
            raise UsageError(f"--header x-amz-meta-{name}: image mode writes it itself (the "
                             "image's size in pixels); choose another name")
    formats = checks.thumbnail_formats(values["thumbnail_format"] or "jpeg")
    given = checks.thumbnail_qualities(values["thumbnail_quality"]) \
        if values["thumbnail_quality"] is not None else {}
    quality = tuple((name, given.get(name, default))
                    for name, default in DEFAULT_QUALITY.items() if default is not None)
    return checks.thumbnail_specs(values["thumbnail"], formats), quality


def _credentials(environ: Mapping[str, str], dotenv: Mapping[str, str],
                 profile: Optional[str]) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """(access key, secret key, session token) to give the session, or Nones for
    botocore's own chain: a profile, or AWS_* keys in the environment, win; else the
    SPACES_* keys (environment, then ``.env``); else AWS_* keys written in ``.env`` (which
    python-dotenv reads, but botocore never would). Half a key pair is always a mistake:
    say which half is missing."""
    if not profile:
        access, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
        if access and not secret:
            raise UsageError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set "
                             "both (or neither)")
        if secret and not access:
            raise UsageError("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set "
                             "both (or neither)")
    if profile or environ.get("AWS_ACCESS_KEY_ID"):
        return None, None, None  # an explicit profile: botocore ignores the AWS_* variables
    for access_name, secret_name, token_name, sources in (
            ("SPACES_ACCESS_KEY", "SPACES_SECRET_KEY", "", (environ, dotenv)),
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", (dotenv,))):
        for source in sources:
            access, secret = source.get(access_name), source.get(secret_name)
            where = " in .env" if source is dotenv else ""
            if access and not secret:
                raise UsageError(f"{access_name}{where} is set but {secret_name} is not: set "
                                 "both (or neither)")
            if secret and not access:
                raise UsageError(f"{secret_name}{where} is set but {access_name} is not: set "
                                 "both (or neither)")
            if access:
                return access, secret, (source.get(token_name) if token_name else None) or None
    return None, None, None


def _check_cluster(value: str, values: Mapping[str, Any]) -> str:
    """The normalised --cluster address; what cannot work when the putters are spread
    over machines is refused here."""
    address = checks.cluster_address(value)
    # Shared by all putters through this machine's memory today; across machines they
    # would need a round trip to a shared counter per file.
    if values["limit"] is not None:
        raise UsageError("--limit cannot be used with --cluster (the workers on other "
                         "machines cannot share one count): run without one of them")
    if values["max_rate"] is not None:
        raise UsageError("--max-rate cannot be used with --cluster (the workers on other "
                         "machines cannot share one rate): run without one of them")
    for source in values["sources"]:
        if checks.is_archive(source) and not source.lower().endswith(".tar"):
            raise UsageError(f"SOURCE {source!r} is a compressed archive, which cannot be "
                             "used with --cluster (only this machine unpacks it): extract "
                             "it where every worker sees it, or use an uncompressed .tar")
    return address


def make_config(values: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None,
                cwd: Optional[str] = None) -> Config:
    """The validated run configuration of VALUES (every option of the table, as
    ``options.values_from_keywords`` or ``cli.values_from_argv`` make them), the
    environment and ``.env``; raise ``UsageError`` on the first bad value."""
    environ = os.environ if environ is None else environ
    dotenv = read_dotenv(cwd or os.getcwd())
    if not values["sources"]:
        raise UsageError("no SOURCE: give at least one directory, file or archive")
    put_params, metadata = parse_headers(values["header"])
    for option in OPTIONS:
        value = values.get(option.name)
        if option.check is not None and not option.env and value not in (None, []):
            option.check(value, option.flag)
    thumbnails, thumbnail_quality = _image_settings(values, metadata)
    if values["quiet"] and (values["verbose"] or values["debug"]):
        raise UsageError("--quiet and --verbose contradict each other")
    if values["preview"] and not values["dry_run"]:
        raise UsageError("--preview writes a contact sheet of a --dry-run; add --dry-run")
    if values["state"] and values["no_state"]:
        raise UsageError("--state and --no-state contradict each other")
    if values["ca_bundle"] and values["no_verify_ssl"]:
        raise UsageError("--ca-bundle and --no-verify-ssl contradict each other")

    def setting(name: str) -> Tuple[Optional[str], str]:
        option = BY_NAME[name]
        if values[name] is not None:
            return values[name], option.flag
        return _lookup(environ, dotenv, *option.env)

    bucket, bucket_origin = setting("bucket")
    checks.check_bucket_name(bucket or "", bucket_origin)
    given_endpoint, endpoint_origin = setting("endpoint_url")
    endpoint_url = endpoint_with_scheme(given_endpoint)
    checks.check_endpoint(endpoint_url, given_endpoint, endpoint_origin)
    region, region_origin = setting("region")
    checks.check_region(region, region_origin)
    acl, acl_origin = setting("grant")
    if acl is not None:
        checks.check_acl(acl, acl_origin)

    profile = values["profile"]
    access_key, secret_key, session_token = _credentials(environ, dotenv, profile)

    for source in values["sources"]:
        checks.check_source(source)
    cluster = values["cluster"]
    if cluster is not None:
        cluster = _check_cluster(cluster, values)
    dry_run, images = values["dry_run"], values["images"]
    state_file = None if values["no_state"] else (
        values["state"] or default_journal_path(bucket, endpoint_url))
    checks.check_journal(state_file, "--state", write=not dry_run,
                         explicit=bool(values["state"]))
    checks.check_output_file(values["log_file"], "--log-file")
    checks.check_output_file(values["preview"], "--preview")
    if images and not dry_run:
        checks.check_output_file(values["mapping_log"] or MAPPING_LOG, "--mapping-log")
    elif values["mapping_log"]:
        checks.check_output_file(values["mapping_log"], "--mapping-log")

    return Config(
        sources=tuple(values["sources"]),
        bucket=bucket,
        prefix=values["prefix"] or "",
        endpoint_url=endpoint_url,
        region=region,
        profile=profile,
        access_key=access_key,
        secret_key=secret_key,
        session_token=session_token,
        verify_ssl=not values["no_verify_ssl"],
        ca_bundle=values["ca_bundle"],
        checksums=values["checksums"],
        put="stupid" if values["no_skip_existing"] else values["put"],
        dry_run=dry_run,
        limit=values["limit"],
        rules=tuple(values["rules"]),
        content_type=values["content_type"],
        gzip=values["gzip"],
        gzip_types=tuple(values["gzip_type"] or ("guess",)),
        acl=acl,
        put_params=put_params,
        metadata=metadata,
        sse=values["sse"],
        storage_class=values["storage_class"],
        processes=values["processes"],
        inflight=values["inflight"],
        max_inflight=values["max_inflight"],
        multipart_threshold=values["multipart_threshold"] * MiB,
        part_size=values["part_size"] * MiB,
        retries=values["retries"],
        fast_put=not values["no_fast_put"],
        timeout=values["timeout"],
        max_rate=values["max_rate"],
        cluster=cluster,
        follow_symlinks=values["follow_symlinks"],
        state_file=state_file,
        verbose=values["verbose"] + (1 if values["debug"] else 0),
        quiet=values["quiet"],
        json=values["json"],
        progress=not values["no_progress"],
        log_file=values["log_file"],
        images=images,
        rename=values["rename"] or ("sequential" if images else "keep"),
        thumbnails=thumbnails,
        thumbnail_quality=thumbnail_quality,
        strip_metadata=values["strip_metadata"],
        preview=values["preview"],
        mapping_log=values["mapping_log"],
    )
