"""The fast path for PUTs (single objects and the parts of multipart uploads) and listing
pages: a lean first attempt beside the boto3 client.

Why: botocore's request pipeline (events, endpoint rules, user agent, signing through
generic request objects, response parsing through the email package) costs about 1 ms of
CPU per PutObject, several times the request itself, and that is what limits small-file
throughput. This path costs about a tenth of that.

What it shares with the client: the credentials (refreshed through the client's own
provider), the region, the endpoint and the addressing style (a ``Route``, taken from a
URL the client presigns), TLS verification. What it does itself: an AWS Signature Version
4 signature of the request (UNSIGNED-PAYLOAD; the body is protected by its Content-MD5),
one keep-alive connection per thread, and reading a 200 answer (or a 412 to a
conditional PUT: ``If-None-Match``/``If-Match`` are plain headers, and the refusal is
definitive).

It can also start before any client exists (``store.lean_start``): when the route and
the credentials are plain settings (a custom endpoint and a region; keys given as such),
a run's first requests leave without importing botocore and building a client from the
S3 service model, about 0.35 s of CPU on the machines this was measured on; botocore is
then loaded only if a request needs the full client.

Promise: ``put`` either stores the object and returns its ETag, raises
``PreconditionFailed`` when the store refuses a conditional PUT (412), or returns None, and
the caller then sends the request through the full boto3 client, with its retries, error
parsing and adaptive rate limiting. Any surprise (an error status, a reset, a timeout, a
header it does not map, a chunked answer) returns None; a throttling answer also closes
the fast path for a while, so that throttled traffic is paced by boto3.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import threading
import time
from typing import Callable, Dict, NamedTuple, Optional, Tuple, Union
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

from ..errors import PreconditionFailed

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
THROTTLE_STATUSES = (429, 503)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                   "all_proxy")
MAX_ANSWER_HEAD = 64 * 1024


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


def parse_listing(xml: bytes):
    """A ListObjectsV2 answer -> ([(key, size, etag, storage class)], next continuation
    token or "").

    With ``encoding-type=url`` keys come form-encoded (a space as ``+``, a plus as
    ``%2B``): decoded as botocore decodes them."""
    root = ElementTree.fromstring(xml)
    encoded = (root.findtext("{*}EncodingType") or "") == "url"
    items = []
    for item in root.iterfind("{*}Contents"):
        key = item.findtext("{*}Key") or ""
        items.append((unquote_plus(key) if encoded else key, int(item.findtext("{*}Size") or 0),
                      (item.findtext("{*}ETag") or "").strip('"'),
                      item.findtext("{*}StorageClass") or ""))
    truncated = (root.findtext("{*}IsTruncated") or "false").lower() == "true"
    token = root.findtext("{*}NextContinuationToken") or ""
    if truncated and not token:
        raise ValueError("a truncated listing without a continuation token")
    return items, token if truncated else ""


class FastPut:
    """The fast path of one putter process (its threads share it)."""

    PAUSE_AFTER_THROTTLE = 10.0

    def __init__(self, route: Route, credentials: Callable[[], Optional[object]],
                 timeout: float, verify_ssl: Union[bool, str], on_throttle=lambda: None):
        """CREDENTIALS() gives the credentials to sign with now (None: the lean path
        cannot sign; boto3 takes over). VERIFY_SSL is the run's trust setting
        (``store.tls_verify``), the very value the client is made with: a CA bundle path,
        True (botocore's default bundle) or False (no checks). ON_THROTTLE() is called on
        every throttling answer (429, 503)."""
        self.credentials = credentials
        self.on_throttle = on_throttle
        self.route = route
        self.scheme, self.netloc, self.host, self.port, self.path_prefix, region = route
        self.signer = Signer(region)
        self.timeout = timeout
        self.ssl_context = None
        if self.scheme == "https" and verify_ssl is False:
            self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        elif self.scheme == "https":
            import botocore.httpsession  # True -> the bundle botocore itself uses

            self.ssl_context = ssl.create_default_context(
                cafile=botocore.httpsession.get_cert_path(verify_ssl))
        self.local = threading.local()
        self.closed_until = 0.0

    @classmethod
    def of_client(cls, client, bucket: str, timeout: float, verify_ssl: Union[bool, str],
                  on_throttle=lambda: None) -> "FastPut":
        """The fast path beside CLIENT: its route from a URL it presigns, its credentials
        from its own provider (refreshed as the client refreshes them)."""
        url = client.generate_presigned_url("put_object",
                                            Params={"Bucket": bucket, "Key": "K"})
        route = Route.from_url(url, client.meta.region_name)
        provider = client._request_signer._credentials

        def credentials():
            return provider.get_frozen_credentials() if provider is not None else None

        return cls(route, credentials, timeout, verify_ssl, on_throttle)

    # -- connections ---------------------------------------------------------------------
    def _socket(self) -> Tuple[socket.socket, bool]:
        """This thread's connection, and whether it was used before."""
        sock = getattr(self.local, "sock", None)
        if sock is not None:
            return sock, True
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        self.local.sock = sock
        return sock, False

    def close(self) -> None:
        """Close the calling thread's connection."""
        self._drop()

    def _drop(self) -> None:
        sock = getattr(self.local, "sock", None)
        self.local.sock = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # -- the request ---------------------------------------------------------------------
    def _headers(self, data: bytes, md5: bytes, params: Dict) -> Optional[Dict[str, str]]:
        headers = {"host": self.netloc, "content-length": str(len(data)),
                   "content-md5": base64.b64encode(md5).decode("ascii")}
        for name, value in params.items():
            if name == "Metadata":
                headers.update({f"x-amz-meta-{k.lower()}": v for k, v in value.items()})
            elif name in HEADERS:
                headers[HEADERS[name]] = value
            else:
                return None  # e.g. Expires: botocore formats it
        for value in headers.values():
            # Only what survives SigV4's canonical form unchanged goes this way.
            if not isinstance(value, str) or not value.isascii() or \
                    " ".join(value.split()) != value:
                return None
        return headers

    def put(self, key: str, data: bytes, md5: bytes, params: Dict,
            query: Optional[Dict[str, str]] = None) -> Optional[str]:
        """Put DATA (whose raw MD5 is MD5) under KEY; return the ETag, or None.

        QUERY: the request's query parameters; ``{"partNumber": N, "uploadId": U}`` makes
        it an UploadPart (for which PARAMS is empty). A 412 answer to a conditional PUT
        (``IfNoneMatch``/``IfMatch`` in PARAMS) is definitive and raises
        ``PreconditionFailed``; any other refusal, 501 included, returns None (boto3 then
        says what it is)."""
        if time.monotonic() < self.closed_until:
            return None
        headers = self._headers(data, md5, params)
        credentials = self.credentials() if headers is not None else None
        if credentials is None:
            return None
        path = self.path_prefix + quote(key, safe="/~")
        query_string = canonical_query(query) if query else ""
        self.signer.sign("PUT", path, headers, credentials, query=query_string)
        target = f"{path}?{query_string}" if query_string else path
        message = (f"PUT {target} HTTP/1.1\r\n"
                   + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                   + "\r\n").encode("ascii") + data
        for attempt in (1, 2):
            reused = False  # until _socket() says otherwise: a new connection can fail too
            try:
                sock, reused = self._socket()
                sock.sendall(message)
                status, answer = self._read_answer(sock)
            except (OSError, ValueError):
                self._drop()
                if attempt == 1 and reused:
                    continue  # the server closed an idle keep-alive connection: once more
                return None
            if status == 200:
                return answer.get("etag", "").strip('"') or md5.hex()
            if status == 412 and CONDITIONS.intersection(params):
                raise PreconditionFailed("412 PreconditionFailed: the condition did not hold",
                                         op="put", key=key)
            if status in THROTTLE_STATUSES:
                self._throttled()
            return None
        return None

    def _throttled(self) -> None:
        self.closed_until = time.monotonic() + self.PAUSE_AFTER_THROTTLE
        self.on_throttle()

    def list_page(self, prefix: str, token: str = "", delimiter: str = "",
                  max_keys: int = 0):
        """One ListObjectsV2 page: ([(key, size, etag, storage class)], next token or ""),
        or None to say "ask boto3 for this page" (tokens are the same either way)."""
        if time.monotonic() < self.closed_until:
            return None
        credentials = self.credentials()
        if credentials is None:
            return None
        params = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if token:
            params["continuation-token"] = token
        if delimiter:
            params["delimiter"] = delimiter
        if max_keys:
            params["max-keys"] = str(max_keys)
        query = canonical_query(params)
        path = self.path_prefix.rstrip("/") or "/"
        headers = {"host": self.netloc}
        self.signer.sign("GET", path, headers, credentials, query=query)
        message = (f"GET {path}?{query} HTTP/1.1\r\n"
                   + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                   + "\r\n").encode("ascii")
        for attempt in (1, 2):
            reused = False  # until _socket() says otherwise: a new connection can fail too
            try:
                sock, reused = self._socket()
                sock.sendall(message)
                status, answer, body = self._read_answer(sock, keep_body=True)
            except (OSError, ValueError):
                self._drop()
                if attempt == 1 and reused:
                    continue
                return None
            if status != 200:
                if status in THROTTLE_STATUSES:
                    self._throttled()
                return None
            try:
                return parse_listing(body)
            except (ValueError, ElementTree.ParseError):
                return None
        return None

    def _read_answer(self, sock: socket.socket, keep_body: bool = False):
        """Read one answer (a Content-Length or chunked body); return (status, headers)
        or, with KEEP_BODY, (status, headers, body). Raise ValueError on anything it
        cannot read (the connection is then dropped)."""
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            buffer += chunk
            if len(buffer) > MAX_ANSWER_HEAD:
                raise ValueError("answer head too long")
        head, _, body = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1 answer: {lines[0]!r}")
        answer = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        reader = _BodyReader(sock, body)
        if answer.get("transfer-encoding", "").lower() == "chunked":
            content = reader.chunked()
        elif "transfer-encoding" in answer:
            raise ValueError(f"transfer-encoding {answer['transfer-encoding']}")
        else:
            content = reader.exactly(int(answer.get("content-length", "0")))
        if reader.extra or answer.get("connection", "").lower() == "close" or \
                version == "HTTP/1.0":
            self._drop()
        if keep_body:
            return int(status), answer, content
        return int(status), answer


class _BodyReader:
    """Reads an answer's body from a socket, starting with what was read past the head."""

    def __init__(self, sock: socket.socket, pending: bytes):
        self.sock = sock
        self.pending = pending
        self.extra = False  # bytes beyond the body arrived (the connection is unusable)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in the answer body")
        self.pending += chunk

    def exactly(self, size: int) -> bytes:
        while len(self.pending) < size:
            self._more()
        body, rest = self.pending[:size], self.pending[size:]
        self.pending = rest
        self.extra = bool(rest)
        return body

    def line(self) -> bytes:
        while b"\r\n" not in self.pending:
            if len(self.pending) > MAX_ANSWER_HEAD:
                raise ValueError("chunk header too long")
            self._more()
        line, _, self.pending = self.pending.partition(b"\r\n")
        return line

    def chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self.line().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.line():  # trailers, up to the empty line
                    pass
                self.extra = bool(self.pending)
                return b"".join(parts)
            parts.append(self.exactly(size))
            self.extra = False
            if self.line():
                raise ValueError("chunk not followed by CRLF")
