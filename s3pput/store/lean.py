"""The lean path: S3 requests signed here (AWS Signature Version 4, UNSIGNED-PAYLOAD; each
body protected by its Content-MD5) and sent on keep-alive connections, one per thread, beside
the boto3 client.

Why: botocore's request pipeline (events, endpoint rules, user agent, signing through
generic request objects, response parsing) costs about 1 ms of CPU per PutObject, several
times the request itself, and that is what limits small-file throughput; this path costs
a fraction of it (``docs/design.md`` has the figures). Its HTTP/1.1 framing is ``http1``'s.

What it shares with the client: the credentials (``Clients.credentials``: botocore's own
provider, refreshed as botocore refreshes it), the region, the endpoint and the addressing
style (a ``Route``, from a URL the client presigns, or from the settings alone when they
say it all: ``client.lean_start``), TLS trust (``client.tls_verify``).

Promise: each operation sends one request and either returns what the store answered,
raises the typed error the answer means (``errors.from_answer``; ``ConnectionFailure``
when none came), or raises ``Unsupported`` before sending anything (a header it does not
map, no credentials to sign with): the caller then sends that request through boto3.
Retries are the caller's (``retry``): a connection the server closed while idle is
reopened once at once, nothing more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from http import HTTPStatus
from typing import (
    TYPE_CHECKING,
    Callable,
    Dict,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import quote, urlsplit

from ..errors import ConnectionFailure, S3pputError
from ..headers import from_http
from ..jobs import RemoteObject
from . import lazy
from .answers import (
    Page,
    complete_body,
    parse_completed,
    parse_error,
    parse_listing,
    parse_upload_id,
)
from .errors import from_answer, is_tls_error, malformed, reason_of, tls_error
from .http1 import BadAnswer, Connection

if TYPE_CHECKING:
    import ssl

T = TypeVar("T")
_STATUSES = {status.value for status in HTTPStatus}

# PutObject parameters sent as plain headers.
HEADERS = {
    "ContentType": "content-type",
    "ContentEncoding": "content-encoding",
    "CacheControl": "cache-control",
    "ContentDisposition": "content-disposition",
    "ContentLanguage": "content-language",
    "ACL": "x-amz-acl",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "StorageClass": "x-amz-storage-class",
    "Tagging": "x-amz-tagging",
    "WebsiteRedirectLocation": "x-amz-website-redirect-location",
    "IfNoneMatch": "if-none-match",
    "IfMatch": "if-match",
}
CONDITIONS = {"IfNoneMatch", "IfMatch"}  # what makes a PUT conditional
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                   "all_proxy")


def proxy_configured() -> bool:
    """The fast path does not speak to proxies; boto3 does, so it gets every request."""
    return any(os.environ.get(name) for name in PROXY_VARIABLES)


class Route(NamedTuple):
    """Where the lean path sends the requests of one bucket."""

    scheme: str  # "http" or "https"
    netloc: str  # host[:port], as sent in the Host header
    host: str
    port: int
    path_prefix: str  # what comes before a key: "/bucket/" (path style) or "/"
    region: str  # the region requests are signed for

    @classmethod
    def from_url(cls, url: str, region: str) -> "Route":
        """The route of URL, the URL of the key ``K`` (as a client presigns it)."""
        parts = urlsplit(url)
        return cls(parts.scheme, parts.netloc, parts.hostname or "",
                   parts.port or (443 if parts.scheme == "https" else 80),
                   parts.path[:-1], region or "us-east-1")


class Credentials(NamedTuple):
    """A key pair, as botocore's frozen credentials have it (the signer reads these)."""

    access_key: str
    secret_key: str
    token: Optional[str] = None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


class Signer:
    """AWS Signature Version 4 for S3 requests with an unsigned payload."""

    def __init__(self, region: str):
        self.region = region
        self.keys: Dict[Tuple[str, str], bytes] = {}  # (secret, date) -> signing key

    def _key(self, secret: str, date: str) -> bytes:
        key = self.keys.get((secret, date))
        if key is None:
            key = _hmac(("AWS4" + secret).encode("utf-8"), date)
            for part in (self.region, "s3", "aws4_request"):
                key = _hmac(key, part)
            self.keys = {(secret, date): key}  # one day's key is all we ever need
        return key

    def sign(self, method: str, path: str, headers: Dict[str, str], credentials,
             stamp: str = "", query: str = "") -> None:
        """Add the signature headers to HEADERS (lower-case names; all of them signed).
        QUERY is the canonical query string (see ``canonical_query``); STAMP
        (``20260101T120000Z``) is the request time, now by default."""
        stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        date = stamp[:8]
        headers["x-amz-date"] = stamp
        headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        names = sorted(headers)
        canonical = "\n".join([
            method, path, query,
            "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names),
            ";".join(names), "UNSIGNED-PAYLOAD"])
        scope = f"{date}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                             hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
        signature = hmac.new(self._key(credentials.secret_key, date),
                             to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}")


def canonical_query(params: Dict[str, str]) -> str:
    """The query string in SigV4's canonical form (sorted, every byte but A-Za-z0-9-_.~
    percent-encoded); it is also what is sent."""
    return "&".join(f"{quote(name, safe='~')}={quote(value, safe='~')}"
                    for name, value in sorted(params.items()))


class Unsupported(Exception):
    """The lean path cannot send this request (the caller uses boto3); nothing was sent."""


class Answer(NamedTuple):
    status: int
    headers: Dict[str, str]  # lower-case names
    body: bytes


def ssl_context(verify_ssl: Union[bool, str]) -> ssl.SSLContext:
    """The SSL context of the run's trust setting (``client.tls_verify``): a CA bundle
    path, True (botocore's default bundle) or False (no checks)."""
    import ssl  # only HTTPS pays for it

    if verify_ssl is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # True: the bundle botocore itself uses
    return ssl.create_default_context(cafile=lazy.botocore_httpsession.get_cert_path(
        verify_ssl))


class LeanPath:
    """The lean path of one process (its threads share it; each has its own connection,
    and a connection a thread has parked goes to the next thread that needs one)."""

    def __init__(self, route: Route, credentials: Callable[[], Optional[Credentials]],
                 timeout: float, verify_ssl: Union[bool, str], bucket: str):
        """CREDENTIALS() gives the credentials to sign with now (None: none; boto3 takes
        over). VERIFY_SSL is the run's trust setting, the very value the client is made
        with."""
        self.route = route
        self.credentials = credentials
        self.timeout = timeout
        self.bucket = bucket
        self.signer = Signer(route.region)
        self.context = ssl_context(verify_ssl) if route.scheme == "https" else None
        self.local = threading.local()
        self.parked: List[Connection] = []  # open, idle, and no thread's
        self.lock = threading.Lock()

    # -- connections ---------------------------------------------------------------------
    def _connection(self) -> Tuple[Connection, bool]:
        """This thread's connection (a parked one if it has none), and whether it was used
        before."""
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            return conn, True
        with self.lock:
            conn = self.parked.pop() if self.parked else None
        if conn is not None:
            self.local.conn = conn
            return conn, True
        conn = Connection(self.route.host, self.route.port, self.timeout, self.context)
        self.local.conn = conn
        return conn, False

    def park(self) -> None:
        """Leave the calling thread's connection open for the next thread that needs one
        (in this process, or in a child forked meanwhile: the up-front check's connection
        goes on with the walker's listing, without a new handshake)."""
        conn = getattr(self.local, "conn", None)
        self.local.conn = None
        if conn is not None and conn.reusable:
            with self.lock:
                self.parked.append(conn)

    def close(self) -> None:
        """Close the calling thread's connection and the parked ones. (In a process that
        forked, closing its copies sends nothing to the server: a child goes on with its
        own.)"""
        conn = getattr(self.local, "conn", None)
        self.local.conn = None
        with self.lock:
            parked, self.parked = self.parked, []
        for each in (conn, *parked):
            if each is not None:
                each.close()

    # -- one request ---------------------------------------------------------------------
    def send(self, method: str, key: Optional[str], *, query: Optional[Dict[str, str]] = None,
             headers: Optional[Dict[str, str]] = None, body=None, op: str) -> Answer:
        """Sign and send one request for KEY (None: the bucket itself) and read its answer.
        BODY is bytes or any buffer (sent as it is, not copied)."""
        credentials = self.credentials()
        if credentials is None:
            raise Unsupported("no credentials to sign with")
        path = self.route.path_prefix + quote(key, safe="/~") if key is not None else \
            (self.route.path_prefix.rstrip("/") or "/")
        query_string = canonical_query(query) if query else ""
        signed = {"host": self.route.netloc, **(headers or {})}
        if body is not None:
            signed["content-length"] = str(memoryview(body).nbytes)
        self.signer.sign(method, path, signed, credentials, query=query_string)
        target = f"{path}?{query_string}" if query_string else path
        head = "".join([f"{method} {target} HTTP/1.1\r\n",
                        *(f"{name}: {value}\r\n" for name, value in signed.items()),
                        "\r\n"]).encode("latin-1")
        for attempt in (1, 2):
            reused = False  # until _connection() says otherwise: a new one can fail too
            try:
                conn, reused = self._connection()
                conn.send(head, body)
                status, answer_headers, data = conn.read_answer(method)
            except (OSError, BadAnswer) as err:
                self.close()
                if attempt == 1 and reused and not isinstance(err, (TimeoutError, BadAnswer)):
                    continue  # the server closed an idle keep-alive connection: once more
                raise self._unreachable(err, op, key) from err
            if not conn.reusable:
                self.close()
            return Answer(status, answer_headers, data)
        raise AssertionError("unreachable")

    def _unreachable(self, err: BaseException, op: str, key: Optional[str]) -> S3pputError:
        endpoint = f"{self.route.scheme}://{self.route.netloc}"
        if is_tls_error(err):
            return tls_error(err, endpoint)
        reason = reason_of(err)
        return ConnectionFailure(f"{type(err).__name__}: {reason} ({endpoint})",
                                 endpoint=endpoint, reason=reason, op=op, key=key or "")

    def failure(self, answer: Answer, op: str, key: str = "") -> S3pputError:
        """The typed error of an answer that is not a success."""
        code, message = parse_error(answer.body) or \
            ("", answer.headers.get("x-amz-error-message", ""))
        if not message and answer.status in _STATUSES:
            message = HTTPStatus(answer.status).phrase
        return from_answer(answer.status, code or str(answer.status), message, op=op,
                           bucket=self.bucket, key=key)

    # -- the operations ------------------------------------------------------------------
    def put(self, key: str, body, md5: bytes, params: Dict,
            query: Optional[Dict[str, str]] = None) -> str:
        """Put BODY (whose raw MD5 is MD5) under KEY; return the ETag. QUERY
        ``{"partNumber": N, "uploadId": U}`` makes it an UploadPart."""
        headers = put_headers(params)
        headers["content-md5"] = base64.b64encode(md5).decode("ascii")
        answer = self.send("PUT", key, query=query, headers=headers, body=body, op="put")
        if answer.status != 200:
            raise self.failure(answer, "put", key)
        return (answer.headers.get("etag") or "").strip('"') or md5.hex()

    def list_page(self, prefix: str, token: str = "", delimiter: str = "",
                  max_keys: int = 0) -> Page:
        params = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if token:
            params["continuation-token"] = token
        if delimiter:
            params["delimiter"] = delimiter
        if max_keys:
            params["max-keys"] = str(max_keys)
        answer = self.send("GET", None, query=params, op="list")
        return self._parsed(answer, parse_listing, "ListObjectsV2", "list", prefix)

    def head(self, key: str) -> Optional[RemoteObject]:
        answer = self.send("HEAD", key, op="head")
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise self.failure(answer, "head", key)
        headers = answer.headers
        return RemoteObject(key, int(headers.get("content-length") or 0),
                            (headers.get("etag") or "").strip('"'),
                            headers.get("x-amz-storage-class") or "",
                            from_http(dict(headers.items())))

    def get(self, key: str) -> Optional[Tuple[bytes, str]]:
        answer = self.send("GET", key, op="get")
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise self.failure(answer, "get", key)
        return answer.body, (answer.headers.get("etag") or "").strip('"')

    def delete(self, key: str) -> None:
        answer = self.send("DELETE", key, op="delete")
        if answer.status not in (200, 204, 404):
            raise self.failure(answer, "delete", key)

    def create_multipart(self, key: str, params: Dict) -> str:
        answer = self.send("POST", key, query={"uploads": ""}, headers=put_headers(params),
                           op="put")
        return self._parsed(answer, parse_upload_id, "CreateMultipartUpload", "put", key)

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[Tuple[int, str]],
                           *, if_none_match: bool = False) -> str:
        """Complete the upload; return the object's ETag. A 200 whose body is an
        ``<Error>`` (AWS documents it: the failure came after the answer began) is that
        error, never a success."""
        headers = {"if-none-match": "*"} if if_none_match else {}
        answer = self.send("POST", key, query={"uploadId": upload_id}, headers=headers,
                           body=complete_body(parts), op="put")
        error = parse_error(answer.body) if answer.status == 200 else None
        if error is not None:
            failure = from_answer(500, *error, op="put", bucket=self.bucket, key=key)
            failure.message = f"CompleteMultipartUpload answered 200 with an <Error> body: " \
                f"{failure.message}"
            raise failure
        return self._parsed(answer, parse_completed, "CompleteMultipartUpload", "put", key)

    def _parsed(self, answer: Answer, parse: Callable[[bytes], T], request: str, op: str,
                key: str) -> T:
        """What PARSE reads of a 200 ANSWER to REQUEST; the typed error of any other, and
        a body that is not what was due said as such (``errors.malformed``)."""
        if answer.status != 200:
            raise self.failure(answer, op, key)
        try:
            return parse(answer.body)
        except ValueError as err:
            raise malformed(f"{request} answered 200 with {err}", op=op, key=key) from err

    def abort_multipart(self, key: str, upload_id: str) -> None:
        answer = self.send("DELETE", key, query={"uploadId": upload_id}, op="put")
        if answer.status not in (200, 204, 404):
            raise self.failure(answer, "put", key)


def put_headers(params: Dict) -> Dict[str, str]:
    """The headers of PutObject PARAMS; ``Unsupported`` for one the lean path does not
    map (Expires: botocore formats it) or a value SigV4's canonical form would change."""
    headers: Dict[str, str] = {}
    for name, value in params.items():
        if name == "Metadata":
            headers.update({f"x-amz-meta-{k.lower()}": v for k, v in value.items()})
        elif name in HEADERS:
            headers[HEADERS[name]] = value
        else:
            raise Unsupported(name)
    for value in headers.values():
        if not isinstance(value, str) or not value.isascii() or \
                " ".join(value.split()) != value:
            raise Unsupported(value)
    return headers
