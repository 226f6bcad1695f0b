"""Store errors in s3pput's terms: botocore's exceptions translated into typed errors.

``translate`` decides what a failure means for the run: ``ConfigError`` for what stops it
(credentials, profile, a missing bucket, an untrusted certificate), ``ConnectionFailure``
when the store did not answer, ``TransientError`` for what retries may cure,
``PreconditionFailed`` for a refused conditional write, ``FileError`` for the rest.
"""

from __future__ import annotations

import socket
import sys
from typing import Iterator
from urllib.parse import urlparse

from ..errors import (
    ConfigError,
    ConnectionFailure,
    CredentialsExpired,
    FatalError,
    FileError,
    PreconditionFailed,
    S3pputError,
    TransientError,
)
from . import lazy

# Error codes that say the run cannot go on at all, whatever the file.
FATAL_CODES = {
    "NoSuchBucket": "bucket {bucket!r} does not exist",
    "InvalidAccessKeyId": "the access key is not known to the store (bad credentials)",
    "SignatureDoesNotMatch": "the secret key does not match the access key (bad credentials)",
    "InvalidToken": "the session token is invalid (bad credentials)",
    "AuthorizationHeaderMalformed": "the region does not match the bucket's (use --region)",
    "PermanentRedirect": "the bucket is in another region or endpoint (use --region/"
                         "--endpoint-url)",
}
# The credentials expired: fetched again once (``CredentialsExpired``), then fatal.
EXPIRED_CODES = {"ExpiredToken", "TokenRefreshRequired"}
EXPIRED = "the credentials have expired"

THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "TooManyRequests",
                  "RequestLimitExceeded"}
# The bytes changed on the way (the store checked Content-MD5 or the signed SHA-256): a
# network that damages a body now and then is cured by sending it again.
DAMAGE_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "IncompleteBody"}
TRANSIENT_CODES = {"ServiceUnavailable", "InternalError", "RequestTimeout",
                   "RequestTimeTooSkewed", *THROTTLE_CODES, *DAMAGE_CODES}

# In a ClientError's response (``client`` puts it there): the store answered 200 with a
# body that was an <Error> or no XML, which botocore reports as a 500.
ANSWERED_200 = "S3pputAnswered200"

# A conditional write the store refused (409: AWS, when another conditional write to the
# key is under way).
PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}


def error_code(err: BaseException) -> str:
    if isinstance(err, lazy.botocore_exceptions.ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def from_answer(status: int, code: str, message: str, *, op: str, bucket: str,
                key: str = "", path: str = "") -> S3pputError:
    """What an error answer of the store (STATUS, and the CODE and MESSAGE of its XML
    body) means, on either path: ``ConfigError`` for what stops the run,
    ``CredentialsExpired``, ``PreconditionFailed``, ``TransientError`` (retried: 5xx,
    throttling, a damaged body) or ``FileError`` (this file only)."""
    failure = _from_answer(status, code, message or code or str(status),
                           dict(op=op, path=path, key=key), bucket)
    failure.code, failure.status = code, status
    return failure


def _from_answer(status: int, code: str, message: str, where: dict,
                 bucket: str) -> S3pputError:
    if code in FATAL_CODES:
        return ConfigError(FATAL_CODES[code].format(bucket=bucket))
    if code in EXPIRED_CODES:
        return CredentialsExpired(f"{EXPIRED} ({code}: {message})", **where)
    if code in PRECONDITION_CODES or status == 412:
        return PreconditionFailed(f"{code or status}: {message}", **where)
    throttle = code in THROTTLE_CODES or status in (429, 503)
    if status == 501 or code == "NotImplemented":  # definitive: the store cannot do this
        return FileError(f"{code or status}: {message}", **where)
    if code in TRANSIENT_CODES or status >= 500 or throttle:
        kind = "throttled" if throttle else "damaged in transit" if code in DAMAGE_CODES \
            else f"{status or code}"
        return TransientError(f"{code or status}: {message}", kind=kind, throttle=throttle,
                              **where)
    return FileError(f"{code or status}: {message}", **where)


def malformed(what: str, *, op: str, key: str = "", path: str = "") -> TransientError:
    """An answer that is not what the protocol promises (``LIST answered 200 with a body
    that is not XML``): the store's fault, said as it happened; retried like a 5xx."""
    return TransientError(what, kind="malformed answer", op=op, key=key, path=path)


def translate(err: BaseException, *, op: str, bucket: str, key: str = "",
              path: str = "") -> S3pputError:
    """Turn a boto3/botocore exception into one of ours (to be raised ``from err``):
    ``ConfigError`` for what stops the whole run (credentials, profile, missing bucket,
    an untrusted certificate), ``ConnectionFailure`` when the store did not answer,
    ``TransientError`` for what retries may cure, ``FileError`` for the rest."""
    if isinstance(err, S3pputError):
        return err
    exceptions = lazy.botocore_exceptions
    if isinstance(err, exceptions.NoCredentialsError):
        return ConfigError("no credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                           "use --profile, or put SPACES_ACCESS_KEY/SPACES_SECRET_KEY in .env")
    if isinstance(err, exceptions.ProfileNotFound):
        name = err.kwargs.get("profile", "")
        return ConfigError(f"profile {name!r} not found in the AWS config files "
                           "(~/.aws/config, ~/.aws/credentials, or AWS_CONFIG_FILE/"
                           "AWS_SHARED_CREDENTIALS_FILE); check --profile or AWS_PROFILE")
    if isinstance(err, (exceptions.PartialCredentialsError,
                        exceptions.CredentialRetrievalError)):
        return ConfigError(f"incomplete credentials: {err}")
    if isinstance(err, exceptions.ConfigParseError):
        return ConfigError(f"cannot read the AWS config: {err}")
    if isinstance(err, (exceptions.InvalidRegionError, exceptions.InvalidConfigError)):
        return ConfigError(str(err))
    if isinstance(err, exceptions.ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        answered = err.response.get(ANSWERED_200)
        request = getattr(err, "operation_name", "") or op
        if answered == "a body that is not XML":
            return malformed(f"{request} answered 200 with a body that is not XML", op=op,
                             key=key, path=path)
        failure = from_answer(status if isinstance(status, int) else 0, error_code(err),
                              err.response.get("Error", {}).get("Message", ""), op=op,
                              bucket=bucket, key=key, path=path)
        if answered:
            failure.message = f"{request} answered 200 with {answered}: {failure.message}"
        return failure
    if isinstance(err, lazy.botocore_parsers.ResponseParserError):
        return malformed(f"{op} answered with a body that is not XML", op=op, key=key,
                         path=path)
    if isinstance(err, exceptions.SSLError):
        return tls_error(err)
    # ConnectionError: refused, unresolvable, connect timeout, proxy; HTTPClientError:
    # closed or reset mid-request, read timeout.
    if isinstance(err, (exceptions.ConnectionError, exceptions.HTTPClientError)):
        return ConnectionFailure(f"{type(err).__name__}: {err}", endpoint=_endpoint_of(err),
                                 reason=reason_of(err), op=op, path=path, key=key)
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


def is_tls_error(err: BaseException) -> bool:
    """Whether ERR is a TLS failure (there is none before ``ssl`` is imported: only HTTPS
    imports it, and a plain-HTTP run never pays for that)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(err, ssl.SSLError)


def reason_of(err: BaseException) -> str:
    """The root cause of a connection failure in a few words ("Connection refused",
    "Name or service not known", "timed out")."""
    for cause in _causes(err):
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name ({cause.strerror or cause})"
        if isinstance(cause, OSError) and not is_tls_error(cause) \
                and cause.strerror:
            return cause.strerror
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return "timed out"
    return str(err)


def tls_error(err: BaseException, endpoint: str = "") -> ConfigError:
    """The one message of a TLS failure: an untrusted certificate (and how to trust it),
    or a handshake that failed (plain HTTP on an https:// endpoint...)."""
    import ssl

    endpoint = endpoint or _endpoint_of(err) or "the endpoint"
    for cause in _causes(err):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ConfigError(
                f"the TLS certificate of {endpoint} is not trusted "
                f"({cause.verify_message or cause.reason}): give its CA with --ca-bundle "
                "FILE (or AWS_CA_BUNDLE, or ca_bundle in the profile); --no-verify-ssl "
                "turns the checks off (insecure)")
    reason = next((cause.reason or str(cause) for cause in _causes(err)
                   if is_tls_error(cause)), str(err))
    return ConfigError(f"TLS failed with {endpoint} ({reason}); does it serve HTTPS? "
                       "(use http:// for a plain HTTP endpoint)")


def not_implemented(err: S3pputError) -> bool:
    """Whether ERR is the store saying it does not implement what was asked (501)."""
    return err.status == 501 or err.code == "NotImplemented"
