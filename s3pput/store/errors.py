"""Store errors in s3pput's terms: botocore's exceptions translated into typed errors.

``translate`` decides what a failure means for the run: ``ConfigError`` for what stops it
(credentials, profile, a missing bucket, an untrusted certificate), ``ConnectionFailure``
when the store did not answer, ``TransientError`` for what retries may cure,
``PreconditionFailed`` for a refused conditional write, ``FileError`` for the rest.
"""

from __future__ import annotations

import socket
import ssl
from typing import Iterator
from urllib.parse import urlparse

from ..errors import (
    ConfigError,
    ConnectionFailure,
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

