"""Tests of tests/faultproxy.py, through it, against a small standard-library HTTP server.

The last section (skipped without .venv/bin/weed) runs boto3 through the proxy
against the session's SeaweedFS, the way the functional tests use it.
"""

import base64
import contextlib
import hashlib
import http.client
import io
import os
import pathlib
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from xml.etree import ElementTree

import pytest
from botocore.exceptions import ClientError, PaginationError

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from faultproxy import COMPLETE_MULTIPART_UPLOAD, COPY_OBJECT, UPLOAD_PART_COPY, FaultProxy  # noqa: E402

# The target: a tiny HTTP/1.1 server that records what reaches it


class Seen(NamedTuple):
    method: str
    path: str
    headers: dict  # lower-case name -> value
    client_port: int  # tells the proxy's upstream connections apart


def pattern(n):
    return (b"0123456789abcdef" * (n // 16 + 1))[:n]


S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def fake_listing(query):
    """A ListObjectsV2 answer of one key, as SeaweedFS lays it out; with max-keys=1 it is
    truncated with the store's own token, "page-2"."""
    truncated = "max-keys=1" in query.split("&")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ListBucketResult xmlns="{S3[1:-1]}"><Name>bkt</Name><Prefix></Prefix>'
        f"<IsTruncated>{str(truncated).lower()}</IsTruncated>"
        "<Contents><Key>a key</Key><Size>3</Size></Contents>"
        + ("<NextContinuationToken>page-2</NextContinuationToken>" if truncated else "")
        + "<KeyCount>1</KeyCount></ListBucketResult>"
    ).encode()


def listing(body):
    """(IsTruncated, [NextContinuationToken...], [Key...]) of a ListObjectsV2 answer."""
    root = ElementTree.fromstring(body)
    return (root.findtext(f"{S3}IsTruncated"),
            [e.text for e in root.iter(f"{S3}NextContinuationToken")],
            [e.text for e in root.iter(f"{S3}Key")])


class TargetHandler(BaseHTTPRequestHandler):
    """GET /bytes/N, /chunked, /close, /empty, /then-close; HEAD /bytes/N; GET /bkt?QUERY
    (a fake_listing, with Content-Length), /chunked-bkt?QUERY (the same, chunked),
    /nosuch?QUERY (404 NoSuchBucket); PUT and POST echo length and sha256 of the body
    (Content-Length or chunked), kept in server.bodies (PUT /refuse with Expect:
    100-continue refuses the body)."""

    protocol_version = "HTTP/1.1"  # keep-alive, and a 100 Continue for Expect: 100-continue
    disable_nagle_algorithm = True  # head and body go out in separate writes

    def log_message(self, *args):
        pass

    def _record(self):
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append(Seen(self.command, self.path, headers, self.client_address[1]))

    def _send(self, status, body, **headers):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def handle_expect_100(self):
        if self.path == "/refuse":  # a final answer before the body, which servers may give
            self._record()
            self._send(403, b"denied", Connection="close")
            return False
        return super().handle_expect_100()

    def _send_chunked(self, pieces, **headers):
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")

    def do_GET(self):
        self._record()
        path, _, query = self.path.partition("?")
        if path.startswith("/bytes/"):
            self._send(200, pattern(int(path.split("/")[2])))
        elif path == "/bkt":
            self._send(200, fake_listing(query), Content_Type="application/xml")
        elif path == "/chunked-bkt":
            xml = fake_listing(query)
            self._send_chunked([xml[:100], xml[100:]], Content_Type="application/xml")
        elif path == "/nosuch":
            self._send(404, b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code></Error>")
        elif self.path == "/chunked":
            self._send_chunked([b"first,", b"second,", pattern(70000)])
        elif self.path == "/close":  # body delimited by closing the connection
            self._send(200, None, Connection="close")
            self.wfile.write(pattern(100_000))
        elif self.path == "/empty":
            self._send(204, None)
        elif self.path == "/then-close":  # says nothing, but closes after the response
            self._send(200, b"bye")
            self.close_connection = True
        else:
            self._send(404, b"no such path")

    def do_HEAD(self):
        self._record()
        self._send(200, pattern(int(self.path.split("/")[2])))

    def do_PUT(self):
        self._record()
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):  # trailer fields
                pass
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.bodies.append(body)
        self._send(200, f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode())

    do_POST = do_PUT


def echo(body):
    """What the target answers to a PUT or POST of BODY."""
    return f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()


@pytest.fixture
def target():
    server = ThreadingHTTPServer(("127.0.0.1", 0), TargetHandler)
    server.daemon_threads = True
    server.seen = []
    server.bodies = []  # of PUTs and POSTs, as they reached the target
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(target):
    with FaultProxy(target.server_address[1], seed=1) as proxy:
        yield proxy


def connect(proxy, timeout=5):
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)


@pytest.fixture
def conn(proxy):
    """A keep-alive client connection through the proxy."""
    with contextlib.closing(connect(proxy)) as conn:
        yield conn


def get(conn, path, method="GET", body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


def read_response(stream):
    """Read one response (status, headers, body) by hand from a socket's makefile("rb")."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", 0))) if status >= 200 else b""
    return status, headers, body


def proxy_threads(proxy):
    return [t for t in threading.enumerate() if t.name.startswith(f"faultproxy:{proxy.port}:")]


def wait_until(condition, what, timeout=30):
    """Poll CONDITION until true; TIMEOUT only ends a hang, it measures nothing."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT"}


def tcp_state(local_port, remote_port):
    """The state of the loopback TCP socket local_port -> remote_port (from /proc/net/tcp):
    "CLOSE_WAIT" once the peer's FIN has arrived; None when there is no such socket."""
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            local, remote, state = line.split()[1:4]
            if int(local.split(":")[1], 16) == local_port and \
                    int(remote.split(":")[1], 16) == remote_port:
                return TCP_STATES.get(state, state)
    return None


# Passing traffic through unchanged


def test_several_requests_share_one_keep_alive_connection(proxy, target, conn):
    for n in (0, 1, 1000, 200_000, 5):
        assert get(conn, f"/bytes/{n}") == (200, pattern(n))
    assert len({seen.client_port for seen in target.seen}) == 1
    assert proxy.requests == 5 and proxy.by_method == {"GET": 5}


def test_put_3mb_with_expect_100_continue_from_http_client(proxy, target, conn):
    # http.client does not wait for the 100 Continue: it sends the body at once and
    # skips the interim 100 that the target sends back.
    body = os.urandom(3 * 1024 * 1024)
    headers = {"Expect": "100-continue", "Host": "bucket.example:9000"}
    status, answer = get(conn, "/key", "PUT", body, headers)
    assert (status, answer) == (200, f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode())
    assert get(conn, "/bytes/10") == (200, pattern(10))  # the connection is still in step
    assert target.seen[0].headers["host"] == "bucket.example:9000"  # not rewritten
    assert target.seen[0].headers["expect"] == "100-continue"


def test_expect_100_continue_is_passed_on_before_the_body_is_sent(proxy, target):
    # What botocore does: send the head, wait (up to 1 s) for 100 Continue, then the body.
    body = os.urandom(1_500_000)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        sock.sendall(
            b"PUT /key HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert read_response(stream)[0] == 100  # a timeout here means the 100 was held back
        sock.sendall(body)
        status, _, answer = read_response(stream)
        assert (status, answer) == (200, f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode())


def test_final_answer_instead_of_100_continue_is_passed_on_then_closed(proxy, target):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        sock.sendall(
            b"PUT /refuse HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
        )
        status, _, answer = read_response(stream)
        assert (status, answer) == (403, b"denied")
        assert stream.read() == b""  # closed: whether a body would follow is anyone's guess


def test_head_response_has_length_but_no_body(proxy, conn):
    conn.request("HEAD", "/bytes/1000")
    response = conn.getresponse()
    assert response.getheader("Content-Length") == "1000" and response.read() == b""
    assert get(conn, "/bytes/3") == (200, pattern(3))  # the HEAD did not eat this response


def test_chunked_204_and_close_delimited_responses(proxy, target, conn):
    assert get(conn, "/chunked") == (200, b"first,second," + pattern(70000))
    assert get(conn, "/empty") == (204, b"")
    assert get(conn, "/close") == (200, pattern(100_000))
    assert get(conn, "/bytes/7") == (200, pattern(7))  # http.client reconnects after the close
    assert proxy.requests == 4


def test_upstream_closed_by_target_is_reopened(proxy, target, conn):
    assert get(conn, "/then-close") == (200, b"bye")
    # the target's FIN has reached the proxy's upstream socket
    upstream = (target.seen[0].client_port, target.server_address[1])
    wait_until(lambda: tcp_state(*upstream) == "CLOSE_WAIT", "the target's FIN")
    assert get(conn, "/bytes/4") == (200, pattern(4))
    assert len({seen.client_port for seen in target.seen}) == 2


def test_unreachable_target_gives_502():
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with FaultProxy(port) as proxy, contextlib.closing(connect(proxy)) as conn:
        assert get(conn, "/")[0] == 502


def test_only_loopback_targets_are_accepted():
    with pytest.raises(ValueError):
        FaultProxy(80, target_host="192.0.2.1")


# Faults


def test_fail_fraction_1_answers_s3_xml_error_without_forwarding(proxy, target, conn):
    proxy.fail_fraction(1.0)
    conn.request("PUT", "/key", body=b"x" * 5000)
    response = conn.getresponse()
    body = response.read()
    assert response.status == 503
    assert body.startswith(b"<?xml") and b"<Error><Code>SlowDown</Code><Message>" in body
    assert int(response.getheader("Content-Length")) == len(body)
    assert response.getheader("Connection") == "keep-alive"
    assert target.seen == []
    proxy.clear()
    assert get(conn, "/bytes/5") == (200, pattern(5))  # the dropped body left the connection in step
    assert proxy.faults_injected == {"fail": 1}


def test_fail_with_expect_sends_100_then_the_error_after_the_body(proxy, target):
    proxy.fail_fraction(1.0, status=500, code="InternalError")
    body = b"y" * 2_000_000
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        sock.sendall(
            b"PUT /key HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert read_response(stream)[0] == 100
        sock.sendall(body)
        status, _, answer = read_response(stream)
        assert status == 500 and b"<Code>InternalError</Code>" in answer
        proxy.clear()
        sock.sendall(b"GET /bytes/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        assert read_response(stream)[::2] == (200, pattern(2))
    assert [seen.method for seen in target.seen] == ["GET"]


def test_fail_only_chosen_methods(proxy, target, conn):
    proxy.fail_fraction(1.0, methods=["put"])
    assert get(conn, "/bytes/1") == (200, pattern(1))
    assert get(conn, "/key", "PUT", b"abc")[0] == 503
    assert [seen.method for seen in target.seen] == ["GET"]


def fail_pattern(proxy, n):
    """Which of n requests on one connection were answered with the injected 503."""
    with contextlib.closing(connect(proxy)) as conn:
        return [get(conn, "/bytes/1")[0] == 503 for _ in range(n)]


def test_fail_fraction_half_fails_about_half(proxy, target):
    proxy.fail_fraction(0.5)
    failed = sum(fail_pattern(proxy, 200))
    assert 60 <= failed <= 140
    assert proxy.faults_injected["fail"] == failed
    assert len(target.seen) == 200 - failed


def test_same_seed_same_faults(target):
    patterns = []
    for seed in (7, 7, 8):
        with FaultProxy(target.server_address[1], seed=seed) as proxy:
            proxy.fail_fraction(0.5)
            patterns.append(fail_pattern(proxy, 40))
    assert patterns[0] == patterns[1] != patterns[2]


def test_reset_closes_with_rst(proxy, target, conn):
    proxy.reset_fraction(1.0)
    with pytest.raises(ConnectionResetError):  # http.client.RemoteDisconnected is one too
        get(conn, "/bytes/1")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /bytes/1 HTTP/1.1\r\nHost: h\r\n\r\n")
        with pytest.raises(ConnectionResetError):  # a FIN would read as b"" instead
            sock.recv(100)
    assert target.seen == []
    assert proxy.faults_injected == {"reset": 2}


def test_blackhole_times_out_the_client_and_stop_ends_every_thread(target):
    proxy = FaultProxy(target.server_address[1]).start()
    idle = connect(proxy)
    assert get(idle, "/bytes/1")[0] == 200  # an idle keep-alive connection stays open too
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(TimeoutError), contextlib.closing(connect(proxy, timeout=1)) as waiting:
        get(waiting, "/bytes/1")
    assert time.monotonic() - started >= 0.9  # no answer came: the client gave up
    assert proxy.faults_injected == {"blackhole": 1} and len(target.seen) == 1
    # Stopping does not wait for the clients to hang up (the idle one never would): every
    # thread ends though a client is still connected. (The long timeout only ends a hang.)
    proxy.stop(timeout=30)
    assert proxy_threads(proxy) == []
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        get(idle, "/bytes/1")
    idle.close()


def test_delay_then_clear(proxy, conn):
    proxy.delay(0.4)
    started = time.monotonic()
    assert get(conn, "/bytes/1") == (200, pattern(1))
    assert time.monotonic() - started >= 0.4
    proxy.clear()
    assert get(conn, "/bytes/1") == (200, pattern(1))
    assert proxy.faults_injected == {"delay": 1}  # the second request was not delayed


def test_hold_answers_lets_some_through_then_holds_answers_until_release(proxy, target, conn):
    proxy.hold_answers(methods=["GET"], after=1)
    assert get(conn, "/bytes/1") == (200, pattern(1))  # the one let through
    assert get(conn, "/bytes/2", "HEAD")[0] == 200  # not a held method
    answers = []
    held = threading.Thread(target=lambda: answers.append(get(conn, "/bytes/3")))
    held.start()
    wait_until(lambda: len(target.seen) == 3, "the held request at the target")
    assert proxy.faults_injected == {"held answer": 1}
    assert answers == []  # the target has answered; the client still waits
    proxy.release_answers()
    held.join(30)
    assert answers == [(200, pattern(3))]


def test_release_answers_passes_on_every_held_answer_and_holds_no_more(proxy, target):
    proxy.hold_answers()
    answers = []

    def ask(n):
        with contextlib.closing(connect(proxy, timeout=30)) as conn:
            answers.append(get(conn, f"/bytes/{n}"))

    waiting = [threading.Thread(target=ask, args=(n,)) for n in (1, 2, 3)]
    for thread in waiting:
        thread.start()
    wait_until(lambda: len(target.seen) == 3, "three requests at the target")
    wait_until(lambda: proxy.faults_injected["held answer"] == 3, "three held answers")
    assert answers == []
    proxy.release_answers()
    for thread in waiting:
        thread.join(30)
    assert sorted(answers) == [(200, pattern(n)) for n in (1, 2, 3)]
    with contextlib.closing(connect(proxy)) as conn:
        assert get(conn, "/bytes/4") == (200, pattern(4))  # not held
    assert proxy.faults_injected == {"held answer": 3}


def test_release_answers_keep_holding_holds_the_later_requests(proxy, target, conn):
    proxy.hold_answers()
    answers = []
    first = threading.Thread(target=lambda: answers.append(get(conn, "/bytes/1")))
    first.start()
    wait_until(lambda: proxy.faults_injected["held answer"] == 1, "the first held request")
    proxy.release_answers(keep_holding=True)
    first.join(30)
    assert answers == [(200, pattern(1))]
    second = threading.Thread(target=lambda: answers.append(get(conn, "/bytes/2")))
    second.start()
    wait_until(lambda: len(target.seen) == 2, "the second request at the target")
    assert proxy.faults_injected == {"held answer": 2} and len(answers) == 1  # held in its turn
    proxy.release_answers()
    second.join(30)
    assert answers == [(200, pattern(1)), (200, pattern(2))]


def test_held_answer_ends_when_the_proxy_stops(target):
    proxy = FaultProxy(target.server_address[1]).start()
    proxy.hold_answers()
    failed = []

    def ask():
        with contextlib.closing(connect(proxy, timeout=30)) as conn:
            try:
                get(conn, "/bytes/1")
            except (ConnectionError, http.client.HTTPException) as err:
                failed.append(err)

    waiting = threading.Thread(target=ask)
    waiting.start()
    wait_until(lambda: proxy.faults_injected["held answer"] == 1, "the held request")
    proxy.stop(timeout=30)
    waiting.join(30)
    assert len(failed) == 1 and proxy_threads(proxy) == []


def test_connections_counts_open_client_connections(proxy, target):
    assert proxy.connections == 0
    first, second = connect(proxy), connect(proxy)
    assert get(first, "/bytes/1")[0] == 200 and get(second, "/bytes/1")[0] == 200
    assert proxy.connections == 2  # both were served, both are still open
    first.close()
    wait_until(lambda: proxy.connections == 1, "the proxy to see the first close")
    second.close()
    wait_until(lambda: proxy.connections == 0, "the proxy to see the second close")


def test_counters_count_and_reset(proxy, conn):
    get(conn, "/bytes/1")
    get(conn, "/bytes/1", "HEAD")
    get(conn, "/key", "PUT", b"abc")
    proxy.fail_fraction(1.0)
    get(conn, "/key", "PUT", b"abc")
    assert proxy.requests == 4
    assert proxy.by_method == {"GET": 1, "HEAD": 1, "PUT": 2}
    assert proxy.faults_injected == {"fail": 1}
    proxy.reset_counters()
    assert (proxy.requests, proxy.by_method, proxy.faults_injected) == (0, {}, {})


# Stores that misbehave (DESIGN.md, "Stores that misbehave")


def test_list_token_loop_answers_every_listing_truncated_with_the_same_token(proxy, target,
                                                                            conn):
    proxy.list_token_loop()
    first_page = ("true", ["s3pput-loop"], ["a key"])
    status, body = get(conn, "/bkt?list-type=2&prefix=")
    assert status == 200 and listing(body) == first_page  # added: the store said false
    assert listing(get(conn, "/bkt?list-type=2&max-keys=1")[1]) == first_page  # replaced
    # The next page, asked with the token: forwarded without it, so the first page again.
    assert listing(get(conn, "/bkt?list-type=2&continuation-token=s3pput-loop&prefix=")[1]) \
        == first_page
    assert target.seen[-1].path == "/bkt?list-type=2&prefix="
    assert listing(get(conn, "/chunked-bkt?list-type=2")[1]) == first_page  # a chunked answer
    assert get(conn, "/bytes/5") == (200, pattern(5))  # the rewritten answers kept it in step
    assert proxy.faults_injected == {"looped token": 4}
    proxy.clear()
    assert listing(get(conn, "/bkt?list-type=2")[1]) == ("false", [], ["a key"])


def test_list_token_loop_leaves_other_requests_and_answers_alone(proxy, target, conn):
    proxy.list_token_loop("a&b c")  # escaped in the XML, decoded in the query
    assert listing(get(conn, "/bkt?list-type=2&continuation-token=a%26b%20c")[1]) == \
        ("true", ["a&b c"], ["a key"])
    assert target.seen[-1].path == "/bkt?list-type=2"
    get(conn, "/bkt?list-type=2&continuation-token=page-2")  # the store's own token: kept
    assert target.seen[-1].path == "/bkt?list-type=2&continuation-token=page-2"
    assert listing(get(conn, "/bkt?prefix=")[1]) == ("false", [], ["a key"])  # a v1 listing
    status, body = get(conn, "/nosuch?list-type=2")  # an error answer passes unchanged
    assert status == 404 and b"<Code>NoSuchBucket</Code>" in body
    assert get(conn, "/bytes/3") == (200, pattern(3))
    assert proxy.faults_injected == {"looped token": 2}


def test_list_token_missing_answers_truncated_listings_without_a_token(proxy, target, conn):
    proxy.list_token_missing()
    assert listing(get(conn, "/bkt?list-type=2")[1]) == ("true", [], ["a key"])
    assert listing(get(conn, "/bkt?list-type=2&max-keys=1")[1]) == ("true", [], ["a key"])
    get(conn, "/bkt?list-type=2&continuation-token=s3pput-loop")  # a request is not rewritten
    assert target.seen[-1].path == "/bkt?list-type=2&continuation-token=s3pput-loop"
    assert listing(get(conn, "/chunked-bkt?list-type=2")[1]) == ("true", [], ["a key"])
    assert proxy.faults_injected == {"missing token": 4}


def test_garbage_answer_is_200_with_a_body_that_is_not_xml(proxy, target, conn):
    proxy.garbage_answer(method="GET", query_part="list-type=2", body=b"<html>not xml")
    conn.request("GET", "/bkt?list-type=2&prefix=a")
    response = conn.getresponse()
    body = response.read()
    assert (response.status, body) == (200, b"<html>not xml")
    assert response.getheader("Content-Type") == "application/xml"  # says XML, is not
    with pytest.raises(ElementTree.ParseError):
        ElementTree.fromstring(body)
    assert target.seen == []  # answered by the proxy
    assert listing(get(conn, "/bkt?prefix=a")[1])[2] == ["a key"]  # other queries pass
    assert get(conn, "/bytes/3") == (200, pattern(3))
    assert proxy.faults_injected == {"garbage answer": 1}


def changed_offsets(sent, received):
    assert len(received) == len(sent)
    return [i for i, (a, b) in enumerate(zip(sent, received)) if a != b]


def test_flip_body_bytes_changes_one_byte_of_each_body_and_keeps_the_length(proxy, target,
                                                                            conn):
    proxy.flip_body_bytes(1.0)
    bodies = [os.urandom(3 * 1024 * 1024) for _ in range(3)]  # read in many 64 KiB pieces
    for body in bodies:
        status, answer = get(conn, "/key", "PUT", body)
        assert status == 200 and answer != echo(body)
    offsets = [changed_offsets(sent, got) for sent, got in zip(bodies, target.bodies)]
    assert all(len(changed) == 1 for changed in offsets)
    assert any(changed[0] >= 64 * 1024 for changed in offsets)  # not in the first piece
    assert get(conn, "/key", "POST", b"abc") == (200, echo(b"abc"))  # only PUTs (the default)
    assert get(conn, "/key", "PUT", b"")[0] == 200  # nothing to change: not counted
    assert get(conn, "/bytes/4") == (200, pattern(4))
    assert proxy.faults_injected == {"flipped byte": 3}


def test_flip_body_bytes_after_100_continue_and_in_a_chunked_body(proxy, target):
    proxy.flip_body_bytes(1.0, methods=["PUT", "POST"])
    body = os.urandom(1_000_000)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        sock.sendall(b"PUT /key HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        assert read_response(stream)[0] == 100  # botocore's way: the body after the 100
        for start in range(0, len(body), 100_000):
            sock.sendall(body[start:start + 100_000])
        status, _, answer = read_response(stream)
        assert status == 200 and int(answer.split()[0]) == len(body)
        chunks = [os.urandom(5000), os.urandom(70_000), os.urandom(3)]
        sock.sendall(b"POST /key HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n")
        status, _, answer = read_response(stream)
        assert status == 200 and int(answer.split()[0]) == 75_003
    assert len(changed_offsets(body, target.bodies[0])) == 1
    changed = changed_offsets(b"".join(chunks), target.bodies[1])
    assert len(changed) == 1 and changed[0] < 5000  # in the first chunk, framing intact
    assert proxy.faults_injected == {"flipped byte": 2}


COPY_REQUESTS = {  # operation -> (method, target, headers)
    COPY_OBJECT: ("PUT", "/bkt/copy", {"x-amz-copy-source": "/bkt/src"}),
    UPLOAD_PART_COPY: ("PUT", "/bkt/big?partNumber=1&uploadId=u1",
                       {"x-amz-copy-source": "/bkt/src"}),
    COMPLETE_MULTIPART_UPLOAD: ("POST", "/bkt/big?uploadId=u1", {}),
}
COMPLETE_XML = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>" \
               b"</CompleteMultipartUpload>"


@pytest.mark.parametrize("operation", sorted(COPY_REQUESTS))
def test_fail_with_200_answers_200_with_an_error_body_to_one_operation(proxy, target, conn,
                                                                       operation):
    proxy.fail_with_200(1.0, operations=[operation])
    passed = []
    for name, (method, path, headers) in sorted(COPY_REQUESTS.items()):
        status, answer = get(conn, path, method, COMPLETE_XML if method == "POST" else b"",
                             headers)
        assert status == 200
        if name == operation:
            assert answer.startswith(b"<?xml")
            assert b"<Error><Code>InternalError</Code><Message>" in answer
            assert b"<RequestId>FAULTPROXY" in answer
        else:
            assert b"<Error>" not in answer
            passed.append(path)
    get(conn, "/bkt/big?partNumber=2&uploadId=u1", "PUT", b"part")  # UploadPart: no copy
    get(conn, "/bkt/plain", "PUT", b"object")  # PutObject
    assert [seen.path for seen in target.seen] == \
        passed + ["/bkt/big?partNumber=2&uploadId=u1", "/bkt/plain"]
    assert proxy.faults_injected == {"200 error": 1}


def test_fail_with_200_fraction_and_code(target):
    with FaultProxy(target.server_address[1], seed=5) as proxy, \
            contextlib.closing(connect(proxy)) as conn:
        proxy.fail_with_200(0.5, code="SlowDown")  # the three operations
        answers = [get(conn, "/bkt/copy", "PUT", b"", {"x-amz-copy-source": "/bkt/src"})
                   for _ in range(100)]
        failed = sum(b"<Code>SlowDown</Code>" in answer for _, answer in answers)
        assert {status for status, _ in answers} == {200}
        assert 25 <= failed <= 75 and proxy.faults_injected == {"200 error": failed}
        assert len(target.seen) == 100 - failed
        with pytest.raises(ValueError):
            proxy.fail_with_200(operations=["PutObject"])


def signed_by(key):
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/s3/"
                             "aws4_request, SignedHeaders=host, Signature=00"}


def presigned(path, key):
    return (f"{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={key}%2F20260101"
            "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=60&X-Amz-Signature=00")


def test_expire_credentials_refuses_one_key_after_its_requests(proxy, target, conn):
    proxy.expire_credentials("OLDKEY", after=2)
    assert get(conn, "/bytes/1", headers=signed_by("OLDKEY"))[0] == 200
    assert get(conn, presigned("/bytes/1", "OLDKEY"))[0] == 200
    status, answer = get(conn, "/bytes/1", headers=signed_by("OLDKEY"))
    assert status == 400 and b"<Code>ExpiredToken</Code>" in answer
    assert get(conn, presigned("/bytes/1", "OLDKEY"))[0] == 400
    assert get(conn, "/key", "PUT", b"x" * 1000, signed_by("OLDKEY"))[0] == 400  # body dropped
    assert get(conn, "/bytes/2", headers=signed_by("NEWKEY")) == (200, pattern(2))
    assert get(conn, presigned("/bytes/2", "NEWKEY"))[0] == 200
    assert get(conn, "/bytes/2") == (200, pattern(2))  # unsigned
    assert len(target.seen) == 5
    assert proxy.expired_refusals == {"OLDKEY": 3}
    assert proxy.faults_injected == {"expired credentials": 3}
    assert proxy.by_access_key == {"OLDKEY": 5, "NEWKEY": 2}
    proxy.expire_credentials("OLDKEY", after=1, status=403, code="InvalidAccessKeyId")
    assert get(conn, "/bytes/1", headers=signed_by("OLDKEY"))[0] == 200  # counted anew
    status, answer = get(conn, "/bytes/1", headers=signed_by("OLDKEY"))
    assert status == 403 and b"<Code>InvalidAccessKeyId</Code>" in answer
    proxy.clear()
    assert get(conn, "/bytes/1", headers=signed_by("OLDKEY"))[0] == 200


def test_settings_for_misbehaving_stores_leave_the_three_draws_alone(target):
    patterns = []
    for extra in (False, True):
        with FaultProxy(target.server_address[1], seed=7) as proxy:
            proxy.fail_fraction(0.5)
            if extra:
                proxy.flip_body_bytes(0.5, methods=None)
                proxy.fail_with_200(0.5)
                proxy.garbage_answer(query_part="never", fraction=0.5)
            patterns.append(fail_pattern(proxy, 40))
    assert patterns[0] == patterns[1]


# SeaweedFS + boto3 through the proxy: the shared `s3server` and `bucket` fixtures
# (tests/conftest.py) start one `weed mini` per session and mark these tests `server`.

WEED = pathlib.Path(sys.executable).parent / "weed"
needs_weed = pytest.mark.skipif(not WEED.exists(), reason=f"SeaweedFS test: needs {WEED}")


def s3_client(endpoint, access_key="test"):
    import boto3
    from botocore.config import Config

    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": 10},  # 10 retries: 11 attempts
        # Only the injected faults may cost an attempt: a slow answer on a busy machine
        # must not time out and be retried (the tests count the attempts).
        connect_timeout=60,
        read_timeout=60,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=config,
        aws_access_key_id=access_key, aws_secret_access_key="test",
    )  # fmt: skip


@needs_weed
def test_seaweedfs_boto3_through_proxy(s3server, bucket):
    with FaultProxy(s3server.port) as proxy:
        s3 = s3_client(proxy.url)
        s3.put_object(Bucket=bucket, Key="plain", Body=b"hello")
        big = os.urandom(2 * 1024 * 1024)
        s3.put_object(Bucket=bucket, Key="file-like", Body=io.BytesIO(big))
        assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"hello"
        assert s3.get_object(Bucket=bucket, Key="file-like")["Body"].read() == big
        assert s3.head_object(Bucket=bucket, Key="file-like")["ContentLength"] == len(big)

        parts = [os.urandom(5 * 1024 * 1024), os.urandom(5 * 1024 * 1024)]
        upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")
        etags = [
            s3.upload_part(
                Bucket=bucket, Key="multi", UploadId=upload["UploadId"], PartNumber=n,
                Body=io.BytesIO(part),
            )["ETag"]
            for n, part in enumerate(parts, 1)
        ]  # fmt: skip
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key="multi", UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
        )  # fmt: skip
        assert done["ETag"].strip('"').endswith("-2")
        assert s3.get_object(Bucket=bucket, Key="multi")["Body"].read() == b"".join(parts)

        listed = s3.list_objects_v2(Bucket=bucket)
        assert sorted(o["Key"] for o in listed["Contents"]) == ["file-like", "multi", "plain"]
        assert proxy.faults_injected == {}
        assert proxy.by_method == {"PUT": 4, "POST": 2, "GET": 4, "HEAD": 1}


@needs_weed
def test_seaweedfs_boto3_retries_get_puts_through_faults(s3server, bucket):
    with FaultProxy(s3server.port, seed=3) as proxy:
        s3 = s3_client(proxy.url)
        proxy.fail_fraction(0.3, methods=["PUT"])
        keys = [f"retried/{i:02d}" for i in range(20)]
        with ThreadPoolExecutor(10) as pool:  # in parallel: SlowDown backoff is 0-1 s, then 0-2 s...
            list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=key.encode()), keys))
        failed = proxy.faults_injected["fail"]
        assert failed > 0
        assert proxy.by_method["PUT"] == 20 + failed  # each failure cost one more attempt

        proxy.clear()
        proxy.reset_fraction(0.3, methods=["PUT"])
        more = [f"reset/{i:02d}" for i in range(10)]
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=key.encode()), more))
        assert proxy.faults_injected["reset"] > 0

        proxy.clear()
        listed = s3.list_objects_v2(Bucket=bucket)
        assert sorted(o["Key"] for o in listed["Contents"]) == sorted(keys + more)
        for key in keys + more:  # what the target stored is what was sent
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()


@needs_weed
def test_seaweedfs_looping_token_makes_boto3s_paginator_raise(s3server, bucket):
    with FaultProxy(s3server.port) as proxy:
        s3 = s3_client(proxy.url)
        for key in ("a", "b"):  # before "s3pput-loop": SeaweedFS would list nothing after it
            s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        proxy.list_token_loop()
        pages = []
        with pytest.raises(PaginationError, match="same next token was received twice"):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                pages.append(page)
        assert [[o["Key"] for o in page["Contents"]] for page in pages] == [["a", "b"]] * 2
        assert all(page["IsTruncated"] and page["NextContinuationToken"] == "s3pput-loop"
                   for page in pages)
        assert proxy.faults_injected == {"looped token": 2}


@needs_weed
def test_seaweedfs_missing_token_ends_boto3s_paginator_quietly(s3server, bucket):
    with FaultProxy(s3server.port) as proxy:
        s3 = s3_client(proxy.url)
        s3.put_object(Bucket=bucket, Key="only", Body=b"x")
        proxy.list_token_missing()
        answer = s3.list_objects_v2(Bucket=bucket)
        assert answer["IsTruncated"] is True and "NextContinuationToken" not in answer
        assert [o["Key"] for o in answer["Contents"]] == ["only"]
        # boto3 stops after the page, saying nothing: a hand-written loop must raise.
        assert len(list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket))) == 1
        assert proxy.faults_injected == {"missing token": 2}


@needs_weed
def test_seaweedfs_flipped_byte_gets_bad_digest_and_nothing_corrupt_is_stored(s3server,
                                                                              bucket, s3):
    body = os.urandom(2 * 1024 * 1024)
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    with FaultProxy(s3server.port, seed=2) as proxy:
        through = s3_client(proxy.url)
        proxy.flip_body_bytes(1.0)
        for sent in (body, io.BytesIO(body)):  # bytes; a file (with Expect: 100-continue)
            with pytest.raises(ClientError) as refused:
                through.put_object(Bucket=bucket, Key="checked", Body=sent, ContentMD5=md5)
            assert refused.value.response["Error"]["Code"] == "BadDigest"
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        through.put_object(Bucket=bucket, Key="unchecked", Body=body)  # no MD5: it is stored
        assert proxy.faults_injected == {"flipped byte": 3}
    with pytest.raises(ClientError) as missing:  # read directly, not through the proxy
        s3.head_object(Bucket=bucket, Key="checked")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    stored = s3.get_object(Bucket=bucket, Key="unchecked")["Body"].read()
    assert len(changed_offsets(body, stored)) == 1  # what the store was sent


@needs_weed
def test_seaweedfs_expired_credentials_refuse_one_key_and_pass_another(s3server, bucket):
    with FaultProxy(s3server.port) as proxy:
        old, new = s3_client(proxy.url, "old-key"), s3_client(proxy.url, "new-key")
        proxy.expire_credentials("old-key", after=1)
        old.put_object(Bucket=bucket, Key="k", Body=b"before")  # the one let through
        with pytest.raises(ClientError) as refused:
            old.put_object(Bucket=bucket, Key="k", Body=b"after")
        assert refused.value.response["Error"]["Code"] == "ExpiredToken"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert new.get_object(Bucket=bucket, Key="k")["Body"].read() == b"before"
        assert proxy.expired_refusals == {"old-key": 1}  # botocore does not retry it
        assert proxy.by_access_key == {"old-key": 2, "new-key": 1}
