"""The one place that imports boto3: the S3 store, and a dry-run store.

Everything else talks to the store through ``Store``'s small interface. ``DryRunStore``
reads like the real store (so decisions are the same) and records writes instead of
making them. Errors come out translated (``translate``): fatal configuration problems as
``ConfigError``, everything else as a per-file ``FileError``/``TransientError``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import os
import socket
import ssl
import threading
from collections import deque
from concurrent import futures
from concurrent.futures import Future
from typing import (
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)
from urllib.parse import urlparse, urlsplit

from . import lazy
from .config import Config
from .digest import multipart_etag
from .errors import (
    ConfigError,
    ConnectionFailure,
    FatalError,
    FileError,
    PreconditionFailed,
    S3pputError,
    TransientError,
)
from .fastput import Credentials, FastPut, Route, proxy_configured
from .headers import from_http
from .jobs import RemoteObject

# Error codes that say the run cannot go on at all, whatever the file.
FATAL_CODES = {
    "NoSuchBucket": "bucket {bucket!r} does not exist",
    "InvalidAccessKeyId": "the access key is not known to the store (bad credentials)",
    "SignatureDoesNotMatch": "the secret key does not match the access key (bad credentials)",
    "InvalidToken": "the session token is invalid (bad credentials)",
    "ExpiredToken": "the credentials have expired",
    "TokenRefreshRequired": "the credentials have expired",
    "AuthorizationHeaderMalformed": "the region does not match the bucket's (use --region)",
    "PermanentRedirect": "the bucket is in another region or endpoint (use --region/"
                         "--endpoint-url)",
}

TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                   "Throttling", "ThrottlingException", "RequestTimeTooSkewed", "500", "502",
                   "503", "504"}

THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "TooManyRequests",
                  "RequestLimitExceeded"}

# A conditional write the store refused (409: AWS, when another conditional write to the
# key is under way).
PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}

MULTIPART_RESERVED = 10_000  # S3's limit on parts per upload
COPY_LIMIT = 5 * 1024 ** 3  # S3's limit on what one CopyObject copies


def _is_local_host(url: Optional[str]) -> bool:
    host = urlparse(url).hostname if url else None
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


_SESSIONS: Dict[tuple, object] = {}


def _session(cfg: Config):
    """One boto3 session per process and credentials. Making a client reads the S3 service
    model (about 0.2 s of CPU); a session caches it, and forked workers inherit the main
    process's warm session, so each makes its own client in a few milliseconds.

    Raises ``ConfigError`` when botocore cannot build it (no such profile, an AWS config
    file it cannot parse)."""
    identity = (cfg.profile, cfg.access_key, cfg.secret_key)
    if identity not in _SESSIONS:
        try:
            session = lazy.boto3.session.Session(
                profile_name=cfg.profile, aws_access_key_id=cfg.access_key,
                aws_secret_access_key=cfg.secret_key)
        except lazy.botocore_exceptions.BotoCoreError as err:
            raise _fatal(err, cfg.bucket) from err
        # Timestamps stay strings: s3pput reads none, and dateutil parsing every
        # LastModified was most of the CPU of a listing (1,000 per page).
        session._session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=str)
        _SESSIONS[identity] = session
    return _SESSIONS[identity]


_TRUST: Dict[tuple, Union[bool, str]] = {}


def tls_verify(cfg: Config) -> Union[bool, str]:
    """The one trust setting for every connection of the run: the path of the CA bundle
    to trust, True for botocore's default bundle, or False (``--no-verify-ssl``: no checks).
    The boto3 client gets it as ``verify=``; the fast path builds its SSL context from it.

    The bundle is ``--ca-bundle``, else what botocore resolves itself (``AWS_CA_BUNDLE``,
    then ``ca_bundle`` in the profile), else ``REQUESTS_CA_BUNDLE`` (botocore's own last
    resort when a client is made without ``verify``), else botocore's default. Passing
    ``verify=True`` instead would silently drop the first three. A bundle that cannot be
    loaded is a ``ConfigError`` here, up front, not a TLS failure on every request."""
    if not cfg.verify_ssl:
        return False
    if (cfg.endpoint_url or "").startswith("http:"):
        return True  # plain HTTP: no certificate to check, no bundle to look up
    key = (cfg.profile, cfg.access_key, cfg.ca_bundle, cfg.endpoint_url)
    if key not in _TRUST:
        if cfg.ca_bundle:
            bundle, origin = cfg.ca_bundle, "--ca-bundle"
        else:
            bundle = _session(cfg)._session.get_config_variable("ca_bundle")
            origin = "AWS_CA_BUNDLE or ca_bundle in the AWS profile"
            if not bundle and os.environ.get("REQUESTS_CA_BUNDLE"):
                bundle, origin = os.environ["REQUESTS_CA_BUNDLE"], "REQUESTS_CA_BUNDLE"
        # Only HTTPS reads the bundle: a stale AWS_CA_BUNDLE stops no plain-HTTP run.
        if bundle and not (cfg.endpoint_url or "https:").startswith("http:"):
            try:
                ssl.create_default_context(cafile=bundle)
            except (OSError, ssl.SSLError, ValueError) as err:
                reason = getattr(err, "strerror", None) or getattr(err, "reason", None) \
                    or str(err)
                raise ConfigError(f"cannot use the CA bundle {bundle!r} ({origin}): {reason}; "
                                  "it must be a file of PEM certificates") from err
        _TRUST[key] = bundle or True
    return _TRUST[key]


def make_client(cfg: Config, *, pool_size: int = 10):
    """Build a boto3 S3 client for CFG. Call it inside the process that uses it.

    Raises ``ConfigError`` when botocore refuses the configuration."""
    if cfg.checksums == "auto":
        # Several S3-compatible stores mishandle the CRC32 trailers botocore sends by
        # default since 1.36; our own Content-MD5 protects every body anyway.
        checksums = "when_supported" if cfg.is_aws else "when_required"
    else:
        checksums = cfg.checksums
    addressing = "path" if _is_local_host(cfg.endpoint_url) else "auto"
    config = lazy.botocore_config.Config(
        region_name=cfg.region,
        max_pool_connections=max(10, pool_size),
        connect_timeout=min(cfg.timeout, 10),
        read_timeout=cfg.timeout,
        # adaptive: standard retries (exponential backoff with jitter, 5xx, throttling,
        # resets) plus a client-side rate limiter that slows down when throttled and
        # speeds up again after.
        retries={"mode": "adaptive", "total_max_attempts": cfg.retries + 1},
        # We always send Content-MD5, so signing the payload again with SHA-256 over
        # plain HTTP would only cost CPU.
        s3={"addressing_style": addressing, "payload_signing_enabled": False},
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
        tcp_keepalive=True,
        user_agent_extra="s3pput",
    )
    verify = tls_verify(cfg)
    try:
        return _session(cfg).client("s3", endpoint_url=cfg.endpoint_url, verify=verify,
                                    config=config)
    except lazy.botocore_exceptions.BotoCoreError as err:
        raise _fatal(err, cfg.bucket) from err
    except ValueError as err:  # botocore's word for an endpoint it cannot use
        raise ConfigError(f"cannot make an S3 client: {err}") from err


def error_code(err: BaseException) -> str:
    if isinstance(err, lazy.botocore_exceptions.ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def translate(err: BaseException, *, op: str, bucket: str, key: str = "",
              path: str = "") -> S3pputError:
    """Turn a boto3/botocore exception into one of ours (to be raised ``from err``):
    ``ConfigError`` for what stops the whole run (credentials, profile, missing bucket,
    an untrusted certificate), ``ConnectionFailure`` when the store did not answer,
    ``TransientError`` for what retries may cure, ``FileError`` for the rest."""
    if isinstance(err, S3pputError):
        return err
    if isinstance(err, lazy.botocore_exceptions.NoCredentialsError):
        return ConfigError("no credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                           "use --profile, or put SPACES_ACCESS_KEY/SPACES_SECRET_KEY in .env")
    if isinstance(err, lazy.botocore_exceptions.ProfileNotFound):
        name = err.kwargs.get("profile", "")
        return ConfigError(f"profile {name!r} not found in the AWS config files "
                           "(~/.aws/config, ~/.aws/credentials, or AWS_CONFIG_FILE/"
                           "AWS_SHARED_CREDENTIALS_FILE); check --profile or AWS_PROFILE")
    if isinstance(err, (lazy.botocore_exceptions.PartialCredentialsError,
                        lazy.botocore_exceptions.CredentialRetrievalError)):
        return ConfigError(f"incomplete credentials: {err}")
    if isinstance(err, lazy.botocore_exceptions.ConfigParseError):
        return ConfigError(f"cannot read the AWS config: {err}")
    if isinstance(err, (lazy.botocore_exceptions.InvalidRegionError,
                        lazy.botocore_exceptions.InvalidConfigError)):
        return ConfigError(str(err))
    if isinstance(err, lazy.botocore_exceptions.ClientError):
        code = error_code(err)
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = err.response.get("Error", {}).get("Message") or code or str(status)
        if code in FATAL_CODES:
            return ConfigError(FATAL_CODES[code].format(bucket=bucket))
        if code in PRECONDITION_CODES or status == 412:
            return PreconditionFailed(f"{code or status}: {message}", op=op, path=path,
                                      key=key)
        if code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            return TransientError(f"{code or status}: {message} (gave up after retries)",
                                  op=op, path=path, key=key)
        return FileError(f"{code or status}: {message}", op=op, path=path, key=key)
    if isinstance(err, lazy.botocore_exceptions.SSLError):
        return _tls_error(err)
    # ConnectionError: refused, unresolvable, connect timeout, proxy; HTTPClientError:
    # closed or reset mid-request, read timeout.
    if isinstance(err, (lazy.botocore_exceptions.ConnectionError,
                        lazy.botocore_exceptions.HTTPClientError)):
        return ConnectionFailure(f"{type(err).__name__}: {err} (gave up after retries)",
                                 endpoint=_endpoint_of(err), reason=_reason(err),
                                 op=op, path=path, key=key)
    return FileError(f"{type(err).__name__}: {err}", op=op, path=path, key=key)


def _fatal(err: BaseException, bucket: str) -> FatalError:
    """ERR translated, as a fatal error (while setting up, everything is fatal)."""
    ours = translate(err, op="", bucket=bucket)
    return ours if isinstance(ours, FatalError) else ConfigError(ours.message)


def _endpoint_of(err: BaseException) -> str:
    """scheme://host:port of the request botocore's ERR is about ("" if unknown)."""
    url = getattr(err, "kwargs", {}).get("endpoint_url") or ""
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""


def _causes(err: BaseException) -> Iterator[BaseException]:
    """ERR and what it wraps: botocore's ``error`` argument, urllib3's ``reason`` and
    exception arguments, ``__cause__`` and ``__context__``."""
    seen, todo = set(), [err]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [getattr(current, "kwargs", {}).get("error"), getattr(current, "reason", None),
                 current.__cause__, current.__context__,
                 *getattr(current, "args", ())]
        todo.extend(item for item in inner if isinstance(item, BaseException))


def _reason(err: BaseException) -> str:
    """The root cause of a connection failure in a few words ("Connection refused",
    "Name or service not known", "timed out")."""
    for cause in _causes(err):
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name ({cause.strerror or cause})"
        if isinstance(cause, OSError) and not isinstance(cause, ssl.SSLError) \
                and cause.strerror:
            return cause.strerror
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return "timed out"
    return str(err)


def _tls_error(err: BaseException) -> ConfigError:
    endpoint = _endpoint_of(err) or "the endpoint"
    for cause in _causes(err):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ConfigError(
                f"the TLS certificate of {endpoint} is not trusted "
                f"({cause.verify_message or cause.reason}): give its CA with --ca-bundle "
                "FILE (or AWS_CA_BUNDLE, or ca_bundle in the profile); --no-verify-ssl "
                "turns the checks off (insecure)")
    reason = next((cause.reason or str(cause) for cause in _causes(err)
                   if isinstance(cause, ssl.SSLError)), str(err))
    return ConfigError(f"TLS failed with {endpoint} ({reason}); does it serve HTTPS? "
                       "(use http:// for a plain HTTP endpoint)")


def _not_implemented(err: BaseException) -> bool:
    """Whether ERR is the store saying it does not implement what was asked (501)."""
    if not isinstance(err, lazy.botocore_exceptions.ClientError):
        return False
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 501 or error_code(err) == "NotImplemented"


def md5_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def run_now(operation: Callable) -> Future:
    """``operation()`` done at once, in this thread, as a finished Future."""
    future: Future = Future()
    try:
        future.set_result(operation())
    except BaseException as err:  # noqa: BLE001 - handed over in the future
        future.set_exception(err)
    return future


class Access(NamedTuple):
    """What the up-front check found out (``Store.check_bucket``)."""

    can_list: bool  # the credentials may list the bucket
    first_page: Optional[tuple] = None  # (items, continuation token) of the prefix asked


def lean_start(cfg: Config, environ=None) -> Optional[Tuple[Route, Credentials]]:
    """The fast path's route and credentials when they are plain settings, so that it can
    start before (and often without) botocore: None when botocore must resolve them.

    * Route: a custom endpoint (``--endpoint-url``) with nothing but scheme, host and port,
      and a region given (``--region``, ``AWS_REGION``...): botocore addresses any custom
      endpoint path-style in the URLs it presigns (``scheme://host:port/bucket/key``),
      which is how the fast path takes it from a client otherwise. For AWS itself (endpoint
      rules, regions, virtual hosts) and a region only a profile knows: botocore.
    * Credentials: keys given as settings, exactly the ones botocore would take first: the
      ``SPACES_*`` keys s3pput passes to the session, or, without ``--profile``,
      ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``) from the
      environment, the first provider of botocore's chain. Profiles, SSO, roles, instance
      metadata: botocore."""
    environ = os.environ if environ is None else environ
    if not cfg.endpoint_url or not cfg.region:
        return None
    parts = urlsplit(cfg.endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or \
            parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        return None
    route = Route.from_url(f"{parts.scheme}://{parts.netloc}/{cfg.bucket}/K", cfg.region)
    if cfg.access_key and cfg.secret_key:
        return route, Credentials(cfg.access_key, cfg.secret_key)
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if cfg.profile or not key or not secret or environ.get("AWS_CREDENTIAL_EXPIRATION"):
        return None
    token = environ.get("AWS_SESSION_TOKEN") or environ.get("AWS_SECURITY_TOKEN") or None
    return route, Credentials(key, secret, token)


class Store:
    """The S3 store: the few operations s3pput needs, with errors translated."""

    def __init__(self, client_factory: Callable[[], object], bucket: str, *,
                 fast: bool = False, timeout: float = 60.0,
                 verify_ssl: Union[bool, str] = True,
                 lean: Optional[Tuple[Route, Credentials]] = None):
        """CLIENT_FACTORY makes the boto3 client on first use (a dry run that only
        records never pays for one). FAST: try ``fastput.FastPut`` first for single-part
        PUTs and listing pages; LEAN: its route and credentials, to start it without a
        client (``lean_start``)."""
        self.client_factory = client_factory
        self.bucket = bucket
        self.fast = fast
        self.timeout = timeout
        self.verify_ssl = verify_ssl
        self.lean = lean
        self._client = None
        self._fast_lane: Optional[FastPut] = None
        self._lock = threading.Lock()
        # Whether the store honours If-None-Match/If-Match on PUT: None until known. False
        # once it answered 501 NotImplemented to them (then If-None-Match is no longer
        # sent); True once ``overlap.probe`` saw it refuse what it must refuse.
        self.honours_conditions: Optional[bool] = None
        # Called (from any thread) whenever the store answers 503/429/SlowDown, by either
        # path: the putter's concurrency controller backs off on it.
        self.on_throttle: Callable[[], None] = lambda: None

    @property
    def client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = self.client_factory()
                    client.meta.events.register("needs-retry.s3", self._note_throttle)
                    if self.fast and self._fast_lane is None:
                        self._fast_lane = FastPut.of_client(
                            client, self.bucket, self.timeout, self.verify_ssl,
                            on_throttle=lambda: self.on_throttle())
                    self._client = client
        return self._client

    def close(self) -> None:
        """Close this thread's fast-path connection (the process keeps no socket it will
        not use again: a forked child would inherit it)."""
        if self._fast_lane is not None:
            self._fast_lane.close()

    def _note_throttle(self, response=None, **_ignored) -> None:
        """botocore's needs-retry event: tell ``on_throttle`` about throttling answers
        (the retry decision itself stays botocore's: this returns None)."""
        if response is None:
            return
        http, parsed = response
        code = (parsed or {}).get("Error", {}).get("Code", "")
        if getattr(http, "status_code", 0) in (429, 503) or code in THROTTLE_CODES:
            self.on_throttle()

    @property
    def fast_lane(self) -> Optional[FastPut]:
        """The lean path (None without ``fast``): made without a client when ``lean``
        says how, else beside the client (which is then made)."""
        if self._fast_lane is None and self.fast:
            if self.lean is not None:
                with self._lock:
                    if self._fast_lane is None:
                        route, credentials = self.lean
                        self._fast_lane = FastPut(route, lambda: credentials, self.timeout,
                                                  self.verify_ssl,
                                                  on_throttle=lambda: self.on_throttle())
            else:
                self.client  # noqa: B018 - makes the client, and the lane beside it
        return self._fast_lane

    def _fail(self, err: BaseException, op: str, key: str = "", path: str = ""):
        raise translate(err, op=op, bucket=self.bucket, key=key, path=path) from err

    def check_bucket(self, prefix: Optional[str] = None) -> "Access":
        """Check endpoint, trust, credentials and bucket once, before anything is written;
        return whether listing is allowed, and the first page of PREFIX's listing when a
        PREFIX is given (the walker goes on from there).

        When all is well this costs one request, a LIST (of PREFIX's first page, or of one
        key), on the fast path when it may; a HEAD of the bucket only when the LIST is
        refused, to tell a missing bucket, another region or bad credentials from a
        missing list permission.

        Raises ``ConfigError`` with one clear message when the run cannot work: up front,
        every failure is fatal (an unreachable endpoint too, after the client's retries).
        """
        try:
            return self._check_bucket(prefix)
        except FatalError:
            raise
        except ConnectionFailure as err:
            raise ConfigError(f"cannot reach {err.endpoint or 'the endpoint'}: {err.reason} "
                              "(check --endpoint-url, and that the store is up)") from err
        except S3pputError as err:
            raise ConfigError(f"cannot use bucket {self.bucket!r}: {err.message}") from err

    def _check_bucket(self, prefix: Optional[str]) -> "Access":
        try:
            if self.fast_lane is not None:
                page = self.fast_lane.list_page(prefix or "",
                                                max_keys=0 if prefix is not None else 1)
                if page is not None:
                    return Access(True, page if prefix is not None else None)
            if prefix is None:
                self._boto3_page("", MaxKeys=1)
                return Access(True)
            return Access(True, self._boto3_page(prefix))
        except lazy.botocore_exceptions.ClientError as err:
            # A missing bucket, another region, or no permission to list: the HEAD of the
            # bucket tells which (and names the region); bad credentials are final.
            if error_code(err) in FATAL_CODES and error_code(err) not in (
                    "NoSuchBucket", "PermanentRedirect"):
                self._fail(err, "check bucket")
            return Access(self._head_bucket(err))
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "check bucket")

    def _head_bucket(self, refused: lazy.botocore_exceptions.ClientError) -> bool:
        """The LIST was REFUSED: ask the bucket itself why. A missing bucket and another
        region are fatal; a bucket that exists but may not be listed is not (its keys are
        then asked for one HEAD each): returns False."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except lazy.botocore_exceptions.ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or error_code(err) in ("404", "NoSuchBucket"):
                raise ConfigError(f"bucket {self.bucket!r} does not exist") from err
            if status == 301:
                region = err.response.get("ResponseMetadata", {}).get(
                    "HTTPHeaders", {}).get("x-amz-bucket-region")
                hint = f"--region {region}" if region else "--region"
                raise ConfigError(f"bucket {self.bucket!r} is in another region: use "
                                  f"{hint}") from err
            if status not in (400, 403):
                self._fail(err, "check bucket")
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "check bucket")
        if error_code(refused) == "AccessDenied":
            return False
        self._fail(refused, "check bucket")
        return False

    def head(self, key: str) -> Optional[RemoteObject]:
        """What the store holds under KEY (None: nothing), its headers included."""
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except lazy.botocore_exceptions.ClientError as err:
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            self._fail(err, "head", key)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "head", key)
        raw = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return RemoteObject(key, int(answer["ContentLength"]), answer["ETag"].strip('"'),
                            answer.get("StorageClass", ""), from_http(raw))

    def list_objects(self, prefix: str, delimiter: str = "",
                     first_page: Optional[tuple] = None) -> Iterator[RemoteObject]:
        """Stream the objects under PREFIX, one page (1,000 keys) per request. S3 lists in
        UTF-8 byte order; not every compatible store does, so callers assume no order.
        Each page tries the fast path first (botocore's parser costs about 25 ms a page).
        FIRST_PAGE: (items, continuation token) already read (``check_bucket``'s)."""
        if first_page is not None:
            items, token = first_page
            for item in items:
                yield RemoteObject(*item)
            if not token:
                return
        else:
            token = ""
        while True:
            page = self.fast_lane.list_page(prefix, token, delimiter) \
                if self.fast_lane is not None else None
            if page is None:
                page = self._list_page(prefix, token, delimiter)
            items, token = page
            for item in items:
                yield RemoteObject(*item)
            if not token:
                return

    def _list_page(self, prefix: str, token: str, delimiter: str = ""):
        try:
            return self._boto3_page(prefix, token, delimiter)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "list", prefix)

    def _boto3_page(self, prefix: str, token: str = "", delimiter: str = "", **extra):
        """One ListObjectsV2 page through boto3: ([(key, size, etag)], next token or "");
        botocore's errors as they are."""
        request = {"Bucket": self.bucket, "Prefix": prefix, **extra}
        if delimiter:
            request["Delimiter"] = delimiter
        if token:
            request["ContinuationToken"] = token
        page = self.client.list_objects_v2(**request)
        items = [(item["Key"], int(item["Size"]), item["ETag"].strip('"'),
                  item.get("StorageClass", "")) for item in page.get("Contents", ())]
        next_token = page.get("NextContinuationToken") or ""
        return items, next_token if page.get("IsTruncated") else ""

    def get(self, key: str) -> Optional[bytes]:
        found = self.get_with_etag(key)
        return found[0] if found is not None else None

    def get_with_etag(self, key: str) -> Optional[Tuple[bytes, str]]:
        """(the body under KEY, its ETag without quotes), or None when there is none: the
        ETag to replace exactly this version with ``put(..., if_match=etag)``."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            return answer["Body"].read(), answer.get("ETag", "").strip('"')
        except lazy.botocore_exceptions.ClientError as err:
            if error_code(err) in ("NoSuchKey", "404"):
                return None
            self._fail(err, "get", key)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "get", key)
        return None

    def delete(self, key: str) -> None:
        """Remove KEY (a key that is not there is no error)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "delete", key)

    def put(self, key: str, data: bytes, params: Dict, *, md5: Optional[bytes] = None,
            path: str = "", if_none_match: bool = False, if_match: Optional[str] = None) -> str:
        """Put DATA under KEY in one request; return the ETag. The store checks the MD5
        (MD5: DATA's raw MD5 when the caller has it already).

        IF_NONE_MATCH: only if KEY does not exist (``If-None-Match: *``); IF_MATCH (an ETag):
        only if KEY still holds that version. A refusal raises ``PreconditionFailed``. A
        store that answers 501 NotImplemented to the headers is remembered
        (``honours_conditions = False``): If-None-Match is then dropped and the PUT sent
        again as a plain one; If-Match is never dropped (a ``FileError`` says why)."""
        digest = md5 or hashlib.md5(data).digest()
        try:
            return self._put(key, data, params, digest, path, if_none_match, if_match)
        except PreconditionFailed:
            if if_none_match and self._holds(key, digest.hex()):
                return digest.hex()
            raise

    def _put(self, key: str, data: bytes, params: Dict, digest: bytes, path: str,
             if_none_match: bool, if_match: Optional[str]) -> str:
        conditional = dict(params)
        if if_none_match and self.honours_conditions is not False:
            conditional["IfNoneMatch"] = "*"
        if if_match:
            conditional["IfMatch"] = f'"{if_match}"'
        if self.fast_lane is not None:
            etag = self.fast_lane.put(key, data, digest, conditional)
            if etag is not None:
                return etag
        try:
            answer = self.client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                            ContentMD5=md5_b64(digest), **conditional)
        except Exception as err:  # noqa: BLE001 - translated
            if conditional.keys() - params.keys() and _not_implemented(err):
                self.honours_conditions = False
                if if_match:
                    raise FileError("the store does not support conditional writes (501 "
                                    "NotImplemented to If-Match)", op="put", path=path,
                                    key=key) from err
                return self._put(key, data, params, digest, path, False, None)
            self._fail(err, "put", key, path)
        return answer.get("ETag", "").strip('"') or digest.hex()

    def put_multipart(self, key: str, parts: Iterable[bytes], params: Dict, *,
                      before_complete: Callable[[List[bytes]], None] = lambda md5s: None,
                      path: str = "", submit: Optional[Callable] = None,
                      window: int = 1, if_none_match: bool = False) -> str:
        """Put the bytes of PARTS under KEY as a multipart upload; return the ETag.

        Parts are read from PARTS in order, in the calling thread, and go up through
        SUBMIT(operation) -> Future (default: at once, in this thread), at most WINDOW at
        a time. BEFORE_COMPLETE(part md5s, in order) may raise to abandon the upload. On
        any failure the parts still in flight are waited for and the upload is aborted:
        nothing appears under KEY. IF_NONE_MATCH: complete it only if KEY does not exist
        (as ``put``; a refusal aborts the upload and raises ``PreconditionFailed``).
        """
        run = submit or run_now
        try:
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **params)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "put", key, path)
        upload_id = upload["UploadId"]
        in_flight: Deque[Future] = deque()
        finished: List[tuple] = []  # (md5, etag) of each part, in part order
        try:
            for number, data in enumerate(parts, 1):
                if number > MULTIPART_RESERVED:
                    raise FileError(f"more than {MULTIPART_RESERVED:,} parts: use a larger "
                                    "--part-size", op="put", path=path, key=key)
                while len(in_flight) >= window:
                    finished.append(in_flight.popleft().result())
                in_flight.append(run(functools.partial(
                    self._upload_part, key, upload_id, number, data, path)))
            while in_flight:
                finished.append(in_flight.popleft().result())
            before_complete([md5 for md5, _ in finished])
            complete = dict(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for
                                           number, (_, etag) in enumerate(finished, 1)]})
            if if_none_match and self.honours_conditions is not False:
                try:
                    answer = self.client.complete_multipart_upload(**complete,
                                                                   IfNoneMatch="*")
                except lazy.botocore_exceptions.ClientError as err:
                    if not _not_implemented(err):
                        raise
                    self.honours_conditions = False
                    answer = self.client.complete_multipart_upload(**complete)
            else:
                answer = self.client.complete_multipart_upload(**complete)
        except BaseException as err:
            futures.wait(in_flight)  # their requests cannot be recalled: let them end
            self._abort(key, upload_id)
            if isinstance(err, Exception):
                failure = translate(err, op="put", bucket=self.bucket, key=key, path=path)
                if isinstance(failure, PreconditionFailed):
                    mine = multipart_etag([md5 for md5, _ in finished])
                    if self._holds(key, mine):
                        return mine
                raise failure from err
            raise
        return answer.get("ETag", "").strip('"')

    def _holds(self, key: str, etag: str) -> bool:
        """Whether KEY holds the object of ETAG: after a create-only write was refused, the
        object in place may be this very write's (a retry whose first attempt landed, a
        task run again elsewhere), which is success, not a conflict."""
        there = self.head(key)
        return there is not None and there.etag == etag

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytes,
                     path: str) -> tuple:
        """One part; returns (its raw MD5, its ETag)."""
        digest = hashlib.md5(data).digest()
        if self.fast_lane is not None:
            # botocore would also hash each part with SHA-256 to sign it over plain HTTP
            # (a second pass over every byte): the lean path signs UNSIGNED-PAYLOAD and
            # relies on Content-MD5, as for single PUTs.
            etag = self.fast_lane.put(key, data, digest, {}, query={
                "partNumber": str(number), "uploadId": upload_id})
            if etag is not None:
                return digest, f'"{etag}"'
        try:
            answer = self.client.upload_part(Bucket=self.bucket, Key=key, Body=data,
                                             PartNumber=number, UploadId=upload_id,
                                             ContentMD5=md5_b64(digest))
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "put", key, path)
        return digest, answer["ETag"]

    copy_limit = COPY_LIMIT  # above it, a copy goes in parts (a test may lower it)

    def copy_in_place(self, key: str, params: Dict, *, etag: str = "", size: int = 0,
                      part_size: int = 8 * 1024 * 1024, path: str = "") -> str:
        """Give the object under KEY the headers of PARAMS (PutObject parameters) without
        sending its body; return its new ETag. One CopyObject of the object onto itself
        with ``MetadataDirective=REPLACE``; an object of SIZE above ``copy_limit`` is copied
        in parts of PART_SIZE (more if 10,000 would not do) by a multipart upload. With
        ETAG, only if the object still has that ETag (else a ``FileError``: nothing is
        changed). Tags are kept as they are."""
        request = {name: value for name, value in params.items() if name != "Tagging"}
        source = {"Bucket": self.bucket, "Key": key}
        condition = {"CopySourceIfMatch": f'"{etag}"'} if etag else {}
        try:
            if size > self.copy_limit:
                return self._copy_in_parts(key, request, source, condition, size, part_size)
            answer = self.client.copy_object(Bucket=self.bucket, Key=key, CopySource=source,
                                             MetadataDirective="REPLACE", **condition,
                                             **request)
        except lazy.botocore_exceptions.ClientError as err:
            if error_code(err) == "PreconditionFailed":
                raise FileError("the stored object changed since it was compared; its "
                                "metadata was not updated (run again)", op="update metadata",
                                path=path, key=key) from err
            self._fail(err, "update metadata", key, path)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "update metadata", key, path)
        return answer.get("CopyObjectResult", {}).get("ETag", "").strip('"') or etag

    def _copy_in_parts(self, key: str, request: Dict, source: Dict, condition: Dict,
                       size: int, part_size: int) -> str:
        part_size = max(part_size, -(-size // MULTIPART_RESERVED))
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key,
                                                        **request)["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, part_size), 1):
                end = min(start + part_size, size) - 1
                answer = self.client.upload_part_copy(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                    CopySource=source, CopySourceRange=f"bytes={start}-{end}", **condition)
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            answer = self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts})
        except BaseException:
            self._abort(key, upload_id)
            raise
        return answer.get("ETag", "").strip('"')

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - best effort; the upload is abandoned either way
            pass


class DryRunStore(Store):
    """Reads like ``Store``; writes nothing (and keeps nothing: a dry run over a million
    files must not grow). The bodies of multipart uploads are not even read."""

    def put(self, key, data, params, *, md5=None, path="", if_none_match=False,
            if_match=None):
        return (md5 or hashlib.md5(data).digest()).hex()

    def put_multipart(self, key, parts, params, *, before_complete=lambda md5s: None,
                      path="", submit=None, window=1, if_none_match=False):
        return ""

    def copy_in_place(self, key, params, *, etag="", size=0, part_size=0, path=""):
        return etag

    def delete(self, key):
        pass


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


def preflight(cfg: Config) -> Access:
    """Check endpoint, bucket and credentials once, up front (``Store.check_bucket``):
    with the first page of the listing the walker will need, if it needs one.

    Raises ``ConfigError`` with one message for the user when the run cannot work.
    """
    store = make_store(cfg, pool_size=2)
    try:
        return store.check_bucket(listing_prefix(cfg))
    finally:
        store.close()


def listing_prefix(cfg: Config) -> Optional[str]:
    """The prefix the plain walker lists (once per run), or None if it lists nothing:
    image mode lists per folder; ``stupid`` needs nothing; files and archives get HEADs."""
    from .keys import normalize_prefix
    from .plan import needs_remote

    if cfg.images or not needs_remote(cfg.put) or \
            not any(os.path.isdir(source) for source in cfg.sources):
        return None
    prefix = normalize_prefix(cfg.prefix)
    return prefix + "/" if prefix else ""
