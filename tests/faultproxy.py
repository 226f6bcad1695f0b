"""A fault-injecting HTTP/1.1 reverse proxy for functional tests.

FaultProxy sits on the loopback interface between an S3 client (boto3 over
plain http) and a local S3 server, and for each request it may answer with an
S3 error itself, reset the connection, delay the response, swallow the
request, or hold the response back until the test releases it; it can also act
out the misbehaviours of real S3-compatible stores (see below). Everything else
passes through unchanged: message heads are parsed only to find where each
message ends, and no byte is rewritten unless a setting below says so (SigV4
signs the Host header, so the proxy never touches it).

    with FaultProxy(s3_port, seed=1) as proxy:
        proxy.fail_fraction(0.3, methods=["PUT"])
        run_cli("--endpoint-url", proxy.url, ...)
        assert proxy.faults_injected["fail"] > 0

Two settings make a race deterministic or a store forgetful, without touching the random
draws: ``gate(method, path_part)`` holds matching requests until the test opens it (so
the test can act while a request is in flight: wait on ``Gate.wait_for``, never on
time), ``strip_request_headers(*names)`` drops those request headers on the way (a
store that ignores them; SigV4 signs them, so only a store that does not check
signatures accepts the result, as SeaweedFS without an identities config does), and
``refuse_request_headers(status, code, *names)`` answers requests carrying them with that
error (a store that does not implement them).

``hold_answers(methods, after)`` is how a test makes a run slow on purpose without
guessing how slow: unlike a gate it lets the requests reach the store (the work is done)
and holds their answers until ``release_answers()``, so a run stays "mid-run", every
request of it in flight, for as long as the test needs, however fast or busy the machine.

Stores that misbehave (DESIGN.md, "Stores that misbehave"), one setting each:

- ``list_token_loop(token)``: every ListObjectsV2 answer says IsTruncated=true with
  NextContinuationToken TOKEN, and a request carrying that token is forwarded without
  it: the listing never ends, each page is the first one again with the same token.
- ``list_token_missing()``: every ListObjectsV2 answer says IsTruncated=true and has no
  NextContinuationToken.
- ``garbage_answer(method, query_part, body)``: matching requests are answered by the
  proxy with "200 OK" and a body that is not XML (nothing is forwarded).
- ``flip_body_bytes(fraction, methods)``: one byte of the request body is changed on
  the way (length kept): a store that checks Content-MD5 answers 400 BadDigest.
- ``fail_with_200(fraction, code, operations)``: CopyObject, UploadPartCopy or
  CompleteMultipartUpload requests are answered by the proxy with "200 OK" and an S3
  ``<Error>`` body (as AWS documents they may be), without forwarding them: the store
  is untouched.
- ``expire_credentials(access_key, after, status, code)``: once AFTER requests signed
  with ACCESS_KEY have passed, every later one is answered with that S3 error (400
  ExpiredToken by default); other keys pass.

The rewriting ones (list_token_loop, flip_body_bytes, like strip_request_headers)
change signed bytes: only a store that does not check signatures accepts the result,
as SeaweedFS without an identities config does.

Which requests a fault hits is drawn from one random.Random(seed), three draws
per request whatever faults are set: the same sequence of requests meets the
same faults. The settings for misbehaving stores draw from a second generator
derived from the seed, four draws per request whatever is set, so they leave the
first sequence as it always was. With several client connections at once the order
of requests, and so which ones are hit, depends on scheduling; the fraction still holds.

Each client connection is served by its own thread with its own upstream
connection, reopened when the target has closed it. Requests on a connection
are handled one after the other (pipelined requests wait their turn).
Protocol upgrades (101 Switching Protocols, CONNECT) are not supported.
"""

import collections
import gzip
import http
import ipaddress
import random
import re
import selectors
import socket
import struct
import threading
import time
from typing import NamedTuple, Optional
from urllib.parse import unquote, unquote_plus
from xml.sax.saxutils import escape

_CHUNK = 64 * 1024  # bytes read from a socket at a time
_MAX_HEAD = 64 * 1024  # longest request or response head accepted
_TICK = 0.1  # seconds between looks at the stop flag while waiting
_CONNECT_TIMEOUT = 5.0

# How a message body ends, besides a byte count (an int).
CHUNKED = "chunked"
UNTIL_EOF = "until-eof"

# Fault kinds, the keys of FaultProxy.faults_injected.
FAIL, RESET, DELAY, BLACKHOLE = "fail", "reset", "delay", "blackhole"
HELD_ANSWER = "held answer"  # a request whose answer hold_answers held back
# requests a gate held; requests that lost headers; requests refused for their headers
HELD, STRIPPED, REFUSED = "held", "stripped", "refused"
# ListObjectsV2 answers given list_token_loop's token; ... made truncated without a token
LOOPED_TOKEN, MISSING_TOKEN = "looped token", "missing token"
GARBAGE = "garbage answer"  # requests answered 200 with garbage_answer's body
FLIPPED = "flipped byte"  # request bodies forwarded with one byte changed
ERROR_200 = "200 error"  # requests answered "200 OK" with an <Error> body
EXPIRED = "expired credentials"  # requests refused for their access key

# The S3 operations the settings for misbehaving stores tell apart (see s3_operation).
LIST_OBJECTS_V2 = "ListObjectsV2"
COPY_OBJECT = "CopyObject"
UPLOAD_PART_COPY = "UploadPartCopy"
COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
OPERATIONS = frozenset({LIST_OBJECTS_V2, COPY_OBJECT, UPLOAD_PART_COPY, COMPLETE_MULTIPART_UPLOAD})


class _Stopped(Exception):
    """The proxy is stopping, or a peer hung up in the middle of a message."""


class Head(NamedTuple):
    """A parsed request or response head: start line plus headers."""

    raw: bytes  # the head exactly as received, blank line included
    start: list  # the start line split in three: method/target/version or version/status/reason
    headers: dict  # lower-case name -> value (repeated headers joined with ", ")

    def tokens(self, name):
        """The comma-separated, lower-cased tokens of a header (Connection, Transfer-Encoding)."""
        return {t.strip().lower() for t in self.headers.get(name, "").split(",") if t.strip()}

    def keeps_alive(self):
        """Whether the sender of this message means to keep the connection open after it."""
        connection = self.tokens("connection")
        if "close" in connection:
            return False
        version = self.start[0] if self.start[0].startswith("HTTP/") else self.start[2]
        return version != "HTTP/1.0" or "keep-alive" in connection


def parse_head(raw):
    """Split a head (bytes ending in a blank line) into its start line and headers."""
    lines = raw.decode("latin-1").split("\r\n")
    start = lines[0].split(" ", 2)
    if len(start) < 3:  # a status line may lack its reason phrase
        start += [""] * (3 - len(start))
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Head(raw, start, headers)


def request_body(head):
    """How the body of a request ends: CHUNKED or a byte count (0: no body)."""
    if "chunked" in head.tokens("transfer-encoding"):
        return CHUNKED
    return int(head.headers.get("content-length", "0"))


def response_body(method, head):
    """How the body of a response to `method` ends: a byte count, CHUNKED or UNTIL_EOF."""
    status = int(head.start[1])
    if method == "HEAD" or status < 200 or status in (204, 304):
        return 0  # these never have a body, whatever Content-Length says
    if "chunked" in head.tokens("transfer-encoding"):
        return CHUNKED
    if "content-length" in head.headers:
        return int(head.headers["content-length"])
    return UNTIL_EOF


def without_headers(head, names):
    """HEAD with the header fields NAMES (lower-case) left out; HEAD itself if it has none."""
    if not names.intersection(head.headers):
        return head
    lines = head.raw.split(b"\r\n")
    kept = [lines[0]] + [line for line in lines[1:]
                         if line.partition(b":")[0].strip().lower().decode("latin-1")
                         not in names]
    return parse_head(b"\r\n".join(kept))


def with_header(head, name, value):
    """HEAD with the header field NAME: VALUE added at its end."""
    return parse_head(head.raw[:-2] + f"{name}: {value}\r\n\r\n".encode("latin-1"))


def with_target(head, target):
    """The request HEAD with its request target replaced by TARGET."""
    method, _, version = head.start
    rest = head.raw[head.raw.index(b"\r\n"):]
    return parse_head(f"{method} {target} {version}".encode("latin-1") + rest)


def query_params(target):
    """The (decoded name, decoded value) pairs of a request target's query, in order."""
    query = target.partition("?")[2]
    return [(unquote_plus(name), unquote_plus(value))
            for name, _, value in (part.partition("=") for part in query.split("&") if part)]


def without_query_param(target, name, value):
    """TARGET without the query parameters NAME=VALUE (compared decoded); the other
    parameters are kept byte for byte, in order."""
    path, _, query = target.partition("?")
    kept = [part for part in query.split("&") if part
            and tuple(map(unquote_plus, part.partition("=")[::2])) != (name, value)]
    return f"{path}?{'&'.join(kept)}" if kept else path


def s3_operation(head):
    """Which of OPERATIONS the request HEAD is, or None. ListObjectsV2: a GET with
    list-type=2 in the query (an object GET never has it); CopyObject: a PUT with
    x-amz-copy-source and no uploadId; UploadPartCopy: a PUT with x-amz-copy-source,
    partNumber and uploadId; CompleteMultipartUpload: a POST with uploadId."""
    method, target = head.start[0], head.start[1]
    params = query_params(target)
    names = {name for name, _ in params}
    if method == "GET" and ("list-type", "2") in params:
        return LIST_OBJECTS_V2
    if method == "PUT" and "x-amz-copy-source" in head.headers:
        if "uploadId" not in names:
            return COPY_OBJECT
        return UPLOAD_PART_COPY if "partNumber" in names else None
    if method == "POST" and "uploadId" in names:
        return COMPLETE_MULTIPART_UPLOAD
    return None


_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def access_key(head):
    """The access key the request HEAD is signed with, or None: SigV4's Credential=KEY/...
    in the Authorization header or X-Amz-Credential=KEY/... in a presigned query (SigV2:
    "AWS KEY:signature", or AWSAccessKeyId=KEY)."""
    authorization = head.headers.get("authorization", "")
    if authorization.startswith("AWS4-"):
        found = _CREDENTIAL.search(authorization)
        return found.group(1) if found else None
    if authorization.startswith("AWS "):
        return authorization[4:].partition(":")[0].strip() or None
    for name, value in query_params(head.start[1]):
        if name.lower() == "x-amz-credential":
            return value.partition("/")[0] or None
        if name == "AWSAccessKeyId":
            return value or None
    return None


_IS_TRUNCATED = re.compile(rb"<IsTruncated>[^<]*</IsTruncated>|<IsTruncated\s*/>")
_NEXT_TOKEN = re.compile(rb"<NextContinuationToken>[^<]*</NextContinuationToken>"
                         rb"|<NextContinuationToken\s*/>")
_LIST_RESULT = re.compile(rb"<ListBucketResult\b[^>]*>")


def truncated_listing(xml, token):
    """The ListObjectsV2 answer XML with IsTruncated true and NextContinuationToken TOKEN
    (None: no NextContinuationToken at all); None if XML is not a ListBucketResult. Only
    those two elements change; the rest stays byte for byte."""
    start = _LIST_RESULT.search(xml)
    if start is None or b"</ListBucketResult>" not in xml:
        return None
    wanted = b"<IsTruncated>true</IsTruncated>"
    if token is not None:
        wanted += f"<NextContinuationToken>{escape(token)}</NextContinuationToken>".encode()
    xml = _NEXT_TOKEN.sub(b"", xml)
    found = _IS_TRUNCATED.search(xml)
    at, end = (found.start(), found.end()) if found else (start.end(), start.end())
    return xml[:at] + wanted + xml[end:]


class Gate:
    """Holds the requests of METHOD whose decoded target contains PATH_PART, from the
    moment their head arrives until ``open()``; ``held`` counts the ones that arrived."""

    def __init__(self, method, path_part, stopping):
        self.method = method.upper()
        self.path_part = path_part
        self.held = 0
        self.opened = False
        self._stopping = stopping
        self._condition = threading.Condition()

    def matches(self, head):
        return head.start[0] == self.method and self.path_part in unquote(head.start[1])

    def hold(self):
        with self._condition:
            self.held += 1
            self._condition.notify_all()
            while not self.opened:
                if self._stopping.is_set():
                    raise _Stopped("proxy stopping")
                self._condition.wait(_TICK)

    def wait_for(self, count=1, timeout=60.0):
        """Wait until COUNT requests have arrived (held, or passed after ``open``); True
        if they did within TIMEOUT seconds (a bound against hanging, not a measure)."""
        with self._condition:
            return self._condition.wait_for(lambda: self.held >= count, timeout)

    def open(self):
        """Let held requests, and every later one, through."""
        with self._condition:
            self.opened = True
            self._condition.notify_all()


def expects_continue(head):
    return head.headers.get("expect", "").lower() == "100-continue"


class Conn:
    """A socket with a read buffer; every wait gives up when `stopping` is set."""

    def __init__(self, sock, stopping):
        self.sock = sock
        self.buf = bytearray()
        self._stopping = stopping
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)

    def fill(self):
        """Wait for data and add it to the buffer; False when the peer has closed."""
        while not self._selector.select(_TICK):
            if self._stopping.is_set():
                raise _Stopped("proxy stopping")
        data = self.sock.recv(_CHUNK)
        self.buf += data
        return bool(data)

    def has_input(self):
        """Whether reading now would not block: buffered bytes, data or EOF pending."""
        return bool(self.buf) or bool(self._selector.select(0))

    def take(self, n):
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_head(self):
        """The next message head, or None if the peer closed cleanly before one began."""
        while True:
            while self.buf.startswith(b"\r\n"):  # stray CRLFs between messages are allowed
                del self.buf[:2]
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                return parse_head(self.take(end + 4))
            if len(self.buf) > _MAX_HEAD:
                raise _Stopped("message head too long")
            if not self.fill():
                if self.buf:
                    raise _Stopped("peer closed in the middle of a head")
                return None

    def read_line(self):
        while b"\n" not in self.buf:
            if len(self.buf) > _MAX_HEAD:
                raise _Stopped("line too long")
            if not self.fill():
                raise _Stopped("peer closed in the middle of a line")
        return self.take(self.buf.index(b"\n") + 1)

    def read_some(self, limit):
        """Between 1 and `limit` bytes; b"" only at EOF."""
        if not self.buf and not self.fill():
            return b""
        return self.take(limit)

    def send(self, data):
        self.sock.sendall(data)

    def shutdown(self):
        """Wake any thread blocked on this socket (used by FaultProxy.stop)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def reset(self):
        """Close abruptly: SO_LINGER with a zero timeout makes close() send a TCP RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self):
        self._selector.close()
        self.sock.close()


def relay_body(src, dst, framing, flip=None):
    """Copy one message body from src to dst (None: discard it), byte for byte; with
    FLIP (a number in [0, 1)), change one byte: the one at FLIP times the length of a
    byte-counted body, or of the first chunk of a chunked one (the framing is kept).
    Returns whether a byte was changed (an empty body has none to change)."""
    if framing == CHUNKED:
        flipped = False
        while True:
            line = src.read_line()
            if dst:
                dst.send(line)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                break
            at = None if flip is None or flipped else _offset(flip, size)
            _relay_bytes(src, dst, size + 2, at)  # the chunk and its CRLF
            flipped = flipped or at is not None
        while True:  # trailer fields, up to the blank line
            line = src.read_line()
            if dst:
                dst.send(line)
            if line in (b"\r\n", b"\n"):
                return flipped
    if framing == UNTIL_EOF:
        while data := src.read_some(_CHUNK):
            if dst:
                dst.send(data)
        return False
    at = None if flip is None or not framing else _offset(flip, framing)
    _relay_bytes(src, dst, framing, at)
    return at is not None


def _offset(share, length):
    return min(int(share * length), length - 1)


def _relay_bytes(src, dst, length, at=None):
    """Copy LENGTH bytes from src to dst (None: discard them), inverting the one at offset AT."""
    offset = 0
    while offset < length:
        data = src.read_some(min(length - offset, _CHUNK))
        if not data:
            raise _Stopped("peer closed in the middle of a body")
        if at is not None and offset <= at < offset + len(data):
            changed = bytearray(data)
            changed[at - offset] ^= 0xFF
            data = bytes(changed)
        if dst:
            dst.send(data)
        offset += len(data)


def read_body(src, framing):
    """Read one message body from src and return its content (chunked framing and
    trailers removed)."""
    content = bytearray()
    if framing == CHUNKED:
        while size := int(src.read_line().split(b";")[0].strip(), 16):
            content += read_body(src, size)
            read_body(src, 2)  # the CRLF after the chunk
        while src.read_line() not in (b"\r\n", b"\n"):  # trailer fields
            pass
    elif framing == UNTIL_EOF:
        while data := src.read_some(_CHUNK):
            content += data
    else:
        while len(content) < framing:
            data = src.read_some(min(framing - len(content), _CHUNK))
            if not data:
                raise _Stopped("peer closed in the middle of a body")
            content += data
    return bytes(content)


def first_with_input(a, b, stopping):
    """Wait until a or b has something to read and return that one."""
    for conn in (a, b):
        if conn.buf:
            return conn
    with selectors.DefaultSelector() as selector:
        selector.register(a.sock, selectors.EVENT_READ, a)
        selector.register(b.sock, selectors.EVENT_READ, b)
        while not (events := selector.select(_TICK)):
            if stopping.is_set():
                raise _Stopped("proxy stopping")
        return events[0][0].data


class Rule(NamedTuple):
    """One fault setting: which share of requests, of which methods, it hits."""

    fraction: float
    methods: Optional[frozenset]  # upper-case methods; None: all
    status: int = 0  # for FAIL
    code: str = ""  # for FAIL
    seconds: float = 0.0  # for DELAY

    def hits(self, method, draw):
        return draw < self.fraction and (self.methods is None or method in self.methods)


class Decision(NamedTuple):
    """What the proxy does with one request."""

    blackhole: bool = False
    reset: bool = False
    fail: Optional[Rule] = None  # answer with this S3 XML error (status 200 included)
    answer: Optional[tuple] = None  # or with this (content type, body), status 200
    delay: float = 0.0
    answer_gate: Optional[threading.Event] = None  # set when the held answer may go
    target: Optional[str] = None  # forward with this request target instead
    flip: Optional[float] = None  # change a byte of the body (relay_body's FLIP)
    listing: Optional[tuple] = None  # (counter kind, token or None): rewrite the answer


class Canned(NamedTuple):
    """garbage_answer's setting: which requests, and the answer they get."""

    rule: Rule  # fraction and method
    query_part: str
    content_type: str
    body: bytes

    def hits(self, request, draw):
        return (self.rule.hits(request.start[0], draw)
                and self.query_part in unquote(request.start[1].partition("?")[2]))


def _rule(fraction, methods, **extra):
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction!r}")
    methods = None if methods is None else frozenset(m.upper() for m in methods)
    return Rule(fraction, methods, **extra)


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FaultProxy:
    """An HTTP/1.1 reverse proxy on 127.0.0.1 that injects faults into chosen requests.

    Attributes: `port` and `url` once started; counters `requests`, `by_method`,
    `by_access_key` (requests per access key they are signed with), `faults_injected`
    and `expired_refusals` (requests refused per access key by expire_credentials)
    (Counters, so a missing key reads 0), and `copies` (the
    requests that carry x-amz-copy-source: server-side copies, PUTs in `by_method`);
    `connections`, the client connections open now, and `accepted`, those accepted. Requests are counted when their
    head arrives, before they are passed on: once a client has its answers, its
    requests are all counted. With
    `record_times=True`, `request_times` lists (time.monotonic() when the head
    arrived, method) of every request, in arrival order; with `record_heads=True`,
    `request_heads` lists (method, target, headers) of every request. Fault settings
    may change at any time while it runs; they apply to requests whose head
    arrives afterwards. Precedence per request: blackhole, reset, fail, expired
    credentials, garbage answer, 200 error (each answers without forwarding), then, for
    a forwarded request, the changes to it and its answer (list_token_*, flip_body_bytes,
    held answer and delay: these combine; a held answer is delayed after its release).
    A stopped proxy cannot be started again: make a new one.
    """

    def __init__(self, target_port, *, target_host="127.0.0.1", seed=0, record_times=False,
                 record_heads=False):
        if not _is_loopback(target_host):
            raise ValueError(f"FaultProxy only proxies to loopback, not {target_host!r}")
        self.target = (target_host, target_port)
        self.port = None
        self._random = random.Random(seed)
        # The draws of the settings for misbehaving stores: their own generator, so that
        # the first one's sequence (three draws a request) stays what it always was.
        self._store_random = random.Random(None if seed is None else f"store faults {seed!r}")
        self._lock = threading.Lock()  # guards fault settings, the random draws and counters
        self._stopping = threading.Event()
        self._listener = None
        self._threads = []
        self._conns = set()  # every open Conn, so stop() can wake their threads
        self._clients = 0  # client connections being served
        self._hold = self._answer_gate = None  # whose answers to hold, and their gate
        self._hold_passes = 0
        self._record_times = record_times
        self._record_heads = record_heads
        self.clear()
        self.reset_counters()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    # Life cycle

    def start(self):
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(_TICK)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept_loop, f"faultproxy:{self.port}:accept")
        return self

    def stop(self, timeout=2.0):
        """Close the listener and every connection; wait up to `timeout` s for the threads."""
        self._stopping.set()  # the accept loop sees it within _TICK and closes the listener
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.shutdown()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # Fault settings

    def fail_fraction(self, fraction, status=503, code="SlowDown", *, methods=None):
        """Answer `fraction` of requests (of `methods`, default all) with an S3 XML error
        instead of forwarding them; the request body is read and dropped."""
        with self._lock:
            self._fail = _rule(fraction, methods, status=status, code=code)

    def reset_fraction(self, fraction, *, methods=None):
        """Reset (TCP RST) the client connection on `fraction` of requests, after reading their head."""
        with self._lock:
            self._reset = _rule(fraction, methods)

    def delay(self, seconds, fraction=1.0, *, methods=None):
        """Wait `seconds` before passing on the response to `fraction` of forwarded requests."""
        with self._lock:
            self._delay = _rule(fraction, methods, seconds=seconds)

    def gate(self, method, path_part):
        """Hold every request of METHOD whose (decoded) target contains PATH_PART until the
        returned ``Gate`` is opened (``clear`` opens all gates)."""
        gate = Gate(method, path_part, self._stopping)
        with self._lock:
            self._gates.append(gate)
        return gate

    def strip_request_headers(self, *names):
        """Drop the request header fields NAMES before forwarding (a store ignoring them)."""
        with self._lock:
            self._strip = frozenset(name.lower() for name in names)

    def refuse_request_headers(self, status, code, *names):
        """Answer every request that carries one of the header fields NAMES with an S3 XML
        error (a store that does not implement them: 501 NotImplemented)."""
        with self._lock:
            self._refuse = (frozenset(name.lower() for name in names),
                            Rule(1.0, None, status=status, code=code))

    def blackhole(self, on=True):
        """Read every new request and never answer it (the connection stays open)."""
        with self._lock:
            self._blackhole = on

    def hold_answers(self, *, methods=None, after=0):
        """Let `after` more requests (of `methods`, default all) through, then hold the
        answer to every later one until `release_answers()`: the request reaches the
        target (the store does the work) but the client waits for its answer, for as long
        as the test needs. faults_injected["held answer"] counts the held requests."""
        with self._lock:
            self._hold = _rule(1.0, methods)
            self._hold_passes = after
            self._answer_gate = threading.Event()

    def release_answers(self, *, keep_holding=False):
        """Pass on every held answer; hold no more, or (keep_holding) hold the answers
        to later requests as before, until the next release."""
        with self._lock:
            if self._answer_gate is not None:
                self._answer_gate.set()
            if keep_holding and self._hold is not None:
                self._answer_gate = threading.Event()
            else:
                self._hold = self._answer_gate = None

    # Stores that misbehave

    def list_token_loop(self, token="s3pput-loop"):
        """Make listings never end: every ListObjectsV2 answer (a 200 ListBucketResult) is
        passed on with IsTruncated true and NextContinuationToken TOKEN (added, or
        replacing the store's), and a ListObjectsV2 request carrying continuation-token=TOKEN
        is forwarded without that parameter, so each answer is the first page again with
        the same token. faults_injected["looped token"] counts the rewritten answers.
        Replaces list_token_missing."""
        with self._lock:
            self._listing = (LOOPED_TOKEN, token)

    def list_token_missing(self):
        """Pass on every ListObjectsV2 answer (a 200 ListBucketResult) with IsTruncated
        true and no NextContinuationToken (the store's removed); faults_injected["missing
        token"] counts them. Replaces list_token_loop."""
        with self._lock:
            self._listing = (MISSING_TOKEN, None)

    def garbage_answer(self, method="GET", query_part="list-type=2", body=b"<html>not xml",
                       *, fraction=1.0, content_type="application/xml"):
        """Answer `fraction` of the requests of METHOD (None: all) whose decoded query
        contains QUERY_PART with "200 OK" and BODY (sent as CONTENT_TYPE), without
        forwarding them (the request body is read and dropped); faults_injected["garbage
        answer"] counts them."""
        rule = _rule(fraction, None if method is None else [method])
        with self._lock:
            self._garbage = Canned(rule, query_part, content_type, bytes(body))

    def flip_body_bytes(self, fraction=1.0, *, methods=("PUT",)):
        """Forward `fraction` of the requests of `methods` (None: all) with one byte of
        their body changed (inverted), the length and the framing kept: a store that
        checks Content-MD5 answers 400 BadDigest. Which byte is drawn too (in a chunked
        body, one of the first chunk). faults_injected["flipped byte"] counts the bodies
        changed (a request without a body has nothing to change and is not counted)."""
        with self._lock:
            self._flip = _rule(fraction, methods)

    def fail_with_200(self, fraction=1.0, code="InternalError", *,
                      operations=(COPY_OBJECT, UPLOAD_PART_COPY, COMPLETE_MULTIPART_UPLOAD)):
        """Answer `fraction` of the requests of `operations` (see s3_operation) with
        "200 OK" and an S3 XML <Error> body with CODE, as AWS documents CopyObject,
        UploadPartCopy and CompleteMultipartUpload may: the request is not forwarded (its
        body is read and dropped), so nothing changes in the store.
        faults_injected["200 error"] counts them."""
        operations = frozenset(operations)
        if not operations <= OPERATIONS:
            raise ValueError(f"unknown operations {sorted(operations - OPERATIONS)}")
        with self._lock:
            self._error_200 = (operations, _rule(fraction, None, status=200, code=code))

    def expire_credentials(self, access_key, after=0, status=400, code="ExpiredToken"):
        """Let AFTER more requests signed with ACCESS_KEY through this check (requests that
        blackhole, reset_fraction or fail_fraction take first do not count), then answer
        every later one with that S3 XML error instead of forwarding it; requests signed
        with other keys, or not signed, pass. The key is read from the Authorization
        header (Credential=KEY/...) or a presigned query (X-Amz-Credential=KEY/...). Calling
        it again for a key starts its count again. faults_injected["expired credentials"]
        counts the refusals, expired_refusals[ACCESS_KEY] those of each key."""
        with self._lock:
            self._expire[access_key] = [after, Rule(1.0, None, status=status, code=code)]

    def clear(self):
        """No more faults (held answers are released, gates opened)."""
        self.release_answers()
        with self._lock:
            self._fail = self._reset = self._delay = None
            self._blackhole = False
            gates, self._gates = getattr(self, "_gates", []), []
            self._strip = frozenset()
            self._refuse = (frozenset(), None)
            self._listing = self._garbage = self._flip = self._error_200 = None
            self._expire = {}
        for gate in gates:
            gate.open()

    # Counters

    @property
    def requests(self):
        with self._lock:
            return self._requests

    @property
    def by_method(self):
        with self._lock:
            return collections.Counter(self._by_method)

    @property
    def faults_injected(self):
        with self._lock:
            return collections.Counter(self._faults_injected)

    @property
    def by_access_key(self):
        """Requests per access key they are signed with (see expire_credentials)."""
        with self._lock:
            return collections.Counter(self._by_access_key)

    @property
    def expired_refusals(self):
        """Requests refused by expire_credentials, per access key."""
        with self._lock:
            return collections.Counter(self._expired_refusals)

    @property
    def connections(self):
        """Client connections open now. 0 once the clients are gone means that every
        request they sent through the proxy has been answered by the target (or was cut
        short before the target had all of it): nothing more will land."""
        with self._lock:
            return self._clients

    @property
    def accepted(self):
        """Client connections accepted since the counters were last reset."""
        with self._lock:
            return self._accepted

    @property
    def request_times(self):
        """[(monotonic seconds, method)] of each request so far (needs record_times=True)."""
        with self._lock:
            return list(self._times)

    @property
    def copies(self):
        with self._lock:
            return self._copies

    @property
    def request_heads(self):
        """[(method, target, {lower-case name: value})] of each request so far (needs
        record_heads=True)."""
        with self._lock:
            return list(self._heads)

    def reset_counters(self):
        with self._lock:
            self._times = []
            self._heads = []
            self._accepted = 0
            self._copies = 0
            self._requests = 0
            self._by_method = collections.Counter()
            self._by_access_key = collections.Counter()
            self._faults_injected = collections.Counter()
            self._expired_refusals = collections.Counter()

    # Serving

    def _spawn(self, target, name, *args):
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self):
        with self._listener:
            while not self._stopping.is_set():
                try:
                    sock, (_, client_port) = self._listener.accept()
                except socket.timeout:
                    continue
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._spawn(self._serve, f"faultproxy:{self.port}:client-{client_port}", sock)

    def _open(self, sock):
        conn = Conn(sock, self._stopping)
        with self._lock:
            self._conns.add(conn)
        if self._stopping.is_set():  # stop() may have missed it
            conn.shutdown()
        return conn

    def _close(self, conn):
        if conn:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _connect_upstream(self):
        sock = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._open(sock)

    def _decide(self, method, request=None):
        """Count the request (its Head: REQUEST) and draw the faults it meets."""
        key = operation = None
        if request is not None:
            key, operation = access_key(request), s3_operation(request)
        with self._lock:
            self._requests += 1
            self._by_method[method] += 1
            if key is not None:
                self._by_access_key[key] += 1
            if request is not None:
                if "x-amz-copy-source" in request.headers:
                    self._copies += 1
                if self._record_heads:
                    self._heads.append((method, request.start[1], dict(request.headers)))
            if self._record_times:
                self._times.append((time.monotonic(), method))
            # Always three draws, so later requests meet the same faults whatever is set.
            reset_draw, fail_draw, delay_draw = (self._random.random() for _ in range(3))
            # And always four from the other generator, for the same reason.
            flip_draw, where_draw, garbage_draw, error_draw = (
                self._store_random.random() for _ in range(4))
            garbage = self._garbage if request is not None else None
            operations, error_200 = self._error_200 or (frozenset(), None)
            if self._blackhole:
                decision = Decision(blackhole=True)
                kind = BLACKHOLE
            elif self._reset and self._reset.hits(method, reset_draw):
                decision, kind = Decision(reset=True), RESET
            elif self._fail and self._fail.hits(method, fail_draw):
                decision, kind = Decision(fail=self._fail), FAIL
            elif refusal := self._expired(key):
                decision, kind = Decision(fail=refusal), EXPIRED
                self._expired_refusals[key] += 1
            elif garbage and garbage.hits(request, garbage_draw):
                decision = Decision(answer=(garbage.content_type, garbage.body))
                kind = GARBAGE
            elif operation in operations and error_200.hits(method, error_draw):
                decision, kind = Decision(fail=error_200), ERROR_200
            elif self._delay and self._delay.hits(method, delay_draw):
                decision, kind = Decision(delay=self._delay.seconds), DELAY
            else:
                decision, kind = Decision(), None
            if kind:
                self._faults_injected[kind] += 1
            if kind not in (None, DELAY):
                return decision
            if self._hold and self._hold.hits(method, 0.0):
                if self._hold_passes > 0:
                    self._hold_passes -= 1
                else:
                    decision = decision._replace(answer_gate=self._answer_gate)
                    self._faults_injected[HELD_ANSWER] += 1
            if self._flip and self._flip.hits(method, flip_draw):
                decision = decision._replace(flip=where_draw)  # counted once it is done
            if self._listing and operation == LIST_OBJECTS_V2:
                decision = decision._replace(listing=self._listing)  # counted likewise
                mode, token = self._listing
                if mode == LOOPED_TOKEN:
                    target = without_query_param(request.start[1], "continuation-token", token)
                    if target != request.start[1]:
                        decision = decision._replace(target=target)
            return decision

    def _expired(self, key):
        """The error rule a request signed with KEY is refused with, or None (a pass is
        counted). Called with the lock held."""
        expiry = self._expire.get(key)
        if expiry is None:
            return None
        if expiry[0] > 0:
            expiry[0] -= 1
            return None
        return expiry[1]

    def _serve(self, sock):
        """Serve one client connection, request after request, until either side closes."""
        client, upstream = self._open(sock), None
        with self._lock:
            self._clients += 1
            self._accepted += 1
        try:
            while (request := client.read_head()) is not None:
                decision = self._decide(request.start[0], request)
                if decision.blackhole:
                    while client.fill():  # swallow everything until the client gives up
                        client.buf.clear()
                    return
                if decision.reset:
                    with self._lock:
                        self._conns.discard(client)
                    client.reset()
                    return
                if not (decision.fail or decision.answer):
                    request = self._pass_gates_and_strip(request)
                    if decision.target is not None:
                        request = with_target(request, decision.target)
                    decision = decision._replace(fail=self._refusal(request))
                if decision.answer:
                    keep_alive = self._answer(client, request, 200, *decision.answer)
                elif decision.fail:
                    keep_alive = self._answer_error(client, request, decision.fail)
                else:
                    upstream, keep_alive = self._forward(client, upstream, request, decision)
                if not keep_alive:
                    return
        except (_Stopped, OSError, ValueError):
            pass  # a peer hung up, sent something unparsable, or the proxy is stopping
        finally:
            self._close(client)
            self._close(upstream)
            with self._lock:
                self._clients -= 1

    def _pass_gates_and_strip(self, request):
        """Wait at every gate REQUEST matches; return it without the stripped headers."""
        with self._lock:
            gates = [gate for gate in self._gates if gate.matches(request)]
            strip = self._strip
            if gates:
                self._faults_injected[HELD] += 1
        for gate in gates:
            gate.hold()
        stripped = without_headers(request, strip)
        if stripped is not request:
            with self._lock:
                self._faults_injected[STRIPPED] += 1
        return stripped

    def _refusal(self, request):
        """The error rule REQUEST is refused with for its headers, or None."""
        with self._lock:
            names, rule = self._refuse
            if rule is None or not names.intersection(request.headers):
                return None
            self._faults_injected[REFUSED] += 1
            return rule

    def _answer_error(self, client, request, rule):
        """Drop the request body and answer with an S3-style XML error; True to keep the connection."""
        with self._lock:
            request_id = f"FAULTPROXY{self._requests:08d}"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{rule.code}</Code>"
            f"<Message>Fault injected by FaultProxy: {rule.status} {rule.code}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        return self._answer(client, request, rule.status, "application/xml", body, request_id)

    def _answer(self, client, request, status, content_type, body, request_id=None):
        """Drop the request body and answer with STATUS and BODY; True to keep the connection."""
        body_framing = request_body(request)
        if expects_continue(request) and body_framing:
            # botocore waits up to 1 s for this before sending the body anyway.
            client.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        relay_body(client, None, body_framing)
        if request_id is None:
            with self._lock:
                request_id = f"FAULTPROXY{self._requests:08d}"
        keep_alive = request.keeps_alive()
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Injected Fault"
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"x-amz-request-id: {request_id}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        ).encode()
        client.send(head + body)
        return keep_alive

    def _forward(self, client, upstream, request, decision):
        """Pass one request upstream and its response back; returns (upstream, keep_alive)."""
        if upstream and upstream.has_input():
            # Between responses an upstream connection has nothing to say: this is its EOF.
            self._close(upstream)
            upstream = None
        if upstream is None:
            try:
                upstream = self._connect_upstream()
            except OSError:
                client.send(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return None, False
        method = request.start[0]
        body_framing = request_body(request)
        upstream.send(request.raw)
        if body_framing and expects_continue(request):
            # The client may wait for a 100 Continue (botocore does, for up to 1 s) or send
            # its body at once (http.client). Follow whichever happens first.
            if first_with_input(client, upstream, self._stopping) is upstream:
                response = upstream.read_head()
                if response is None:
                    raise _Stopped("upstream closed before answering")
                if int(response.start[1]) != 100:
                    # A final answer before the body: the client may or may not send the body
                    # now, so nobody knows where the next request would begin. Close after it.
                    self._relay_response(upstream, client, method, response, decision)
                    self._close(upstream)
                    return None, False
                client.send(response.raw)
        if relay_body(client, upstream, body_framing, decision.flip):
            with self._lock:
                self._faults_injected[FLIPPED] += 1
        while True:
            response = upstream.read_head()
            if response is None:
                raise _Stopped("upstream closed before answering")
            if int(response.start[1]) >= 200:
                break
            client.send(response.raw)  # an interim 1xx (100 Continue): no body, a final one follows
        framing = self._relay_response(upstream, client, method, response, decision)
        if framing == UNTIL_EOF or not response.keeps_alive():
            self._close(upstream)
            return None, False
        return upstream, request.keeps_alive()

    def _relay_response(self, upstream, client, method, response, decision):
        if decision.answer_gate is not None:
            while not decision.answer_gate.wait(_TICK):
                if self._stopping.is_set():
                    raise _Stopped("proxy stopping")
        if decision.delay and self._stopping.wait(decision.delay):
            raise _Stopped("proxy stopping")
        framing = response_body(method, response)
        if decision.listing and int(response.start[1]) == 200 and framing:
            self._relay_listing(upstream, client, response, framing, decision.listing)
            return framing
        client.send(response.raw)
        relay_body(upstream, client, framing)
        return framing

    def _relay_listing(self, upstream, client, response, framing, listing):
        """Pass on a ListObjectsV2 answer made truncated as LISTING says (see
        list_token_loop); an answer that is not a ListBucketResult passes unchanged. The
        answer goes out with a Content-Length (a gzip one decoded)."""
        kind, token = listing
        body = read_body(upstream, framing)
        encoding = response.headers.get("content-encoding", "identity").lower()
        drop = {"content-length", "transfer-encoding", "trailer"}
        try:
            plain = {"identity": body, "": body, "gzip": None}[encoding]
            plain = gzip.decompress(body) if plain is None else plain
        except (KeyError, OSError, EOFError):
            plain = None  # an encoding the proxy cannot read: passed on as it is
        rewritten = None if plain is None else truncated_listing(plain, token)
        if rewritten is not None:
            body = rewritten
            drop.add("content-encoding")
            with self._lock:
                self._faults_injected[kind] += 1
        head = with_header(without_headers(response, drop), "Content-Length", len(body))
        client.send(head.raw + body)
