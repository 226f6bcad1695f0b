"""HTTP/1.1 framing for the lean path: one keep-alive connection, a request sent as its head
and its body in one ``sendmsg`` (never concatenated), an answer read into a reused buffer.

Why not ``http.client``: a whole lean PUT (headers, signature, framing, answer) costs 270
us of CPU through it against 151 us with this framing (2 KiB bodies, one thread, medians
of 3 x 1,500 PUTs to a local SeaweedFS, 2026-12-01: ``python -m bench.lean_http``), most
of the difference in building and parsing ``email.message`` headers; at a few hundred
microseconds of client CPU per small file in all, that is a third of it.

What it reads: a status line and headers (up to ``MAX_HEAD`` bytes), then a body framed by
Content-Length, by chunked transfer coding (trailers skipped) or, failing both, by the
closing of the connection; no body after a HEAD or a 1xx/204/304. An answer it cannot
read raises ``BadAnswer`` (the connection is then closed: nothing can be trusted on it).
After ``Connection: close``, an HTTP/1.0 answer or a body read to the end, the connection
is not reused (``reusable``).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Dict, Optional, Tuple

if TYPE_CHECKING:
    import ssl

MAX_HEAD = 64 * 1024  # the longest answer head (status line and headers) accepted
READ_SIZE = 64 * 1024


class BadAnswer(ValueError):
    """The bytes that came back are not an HTTP/1 answer that can be read."""


class Connection:
    """One HTTP/1.1 connection to HOST:PORT (TLS with CONTEXT), used by one thread."""

    def __init__(self, host: str, port: int, timeout: float,
                 context: Optional[ssl.SSLContext] = None):
        sock = socket.create_connection((host, port), timeout=timeout)
        # Without Nagle: a head and a small body must not wait for the server's delayed
        # ACK of an earlier segment (40 ms on Linux).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls = context is not None
        self.sock = context.wrap_socket(sock, server_hostname=host) if context else sock
        self.pending = bytearray()  # bytes read past the last answer
        self.chunk = bytearray(READ_SIZE)
        self.view = memoryview(self.chunk)
        self.reusable = True

    def close(self) -> None:
        self.reusable = False
        try:
            self.sock.close()
        except OSError:
            pass

    # -- sending ---------------------------------------------------------------------------
    def send(self, head: bytes, body=None) -> None:
        """Send a request: HEAD (its head, blank line included) and BODY (bytes or any
        buffer, or None), without copying the body."""
        if body is None or not len(body):
            self.sock.sendall(head)
            return
        if self.tls:  # an SSL socket has no sendmsg
            self.sock.sendall(head)
            self.sock.sendall(body)
            return
        view = memoryview(body).cast("B")
        sent = self.sock.sendmsg([head, view])
        if sent < len(head):
            self.sock.sendall(memoryview(head)[sent:])
            self.sock.sendall(view)
        elif sent < len(head) + view.nbytes:
            self.sock.sendall(view[sent - len(head):])

    # -- reading ---------------------------------------------------------------------------
    def _more(self) -> None:
        got = self.sock.recv_into(self.view)
        if not got:
            raise ConnectionError("the connection was closed by the server")
        self.pending += self.view[:got]

    def _take(self, count: int) -> bytes:
        while len(self.pending) < count:
            self._more()
        taken = bytes(self.pending[:count])
        del self.pending[:count]
        return taken

    def _line(self) -> bytes:
        while True:
            end = self.pending.find(b"\r\n")
            if end >= 0:
                line = bytes(self.pending[:end])
                del self.pending[:end + 2]
                return line
            if len(self.pending) > MAX_HEAD:
                raise BadAnswer("a line of the answer is too long")
            self._more()

    def read_answer(self, method: str) -> Tuple[int, Dict[str, str], bytes]:
        """The answer to the request just sent: (status, headers with lower-case names,
        body)."""
        while True:
            end = self.pending.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.pending) > MAX_HEAD:
                raise BadAnswer("the answer's head is too long")
            self._more()
        lines = bytes(self.pending[:end]).decode("latin-1").split("\r\n")
        del self.pending[:end + 4]
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise BadAnswer(f"not an HTTP/1 answer: {lines[0][:80]!r}")
        status = int(rest[:3])
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                name = name.strip().lower()
                value = value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "close" in headers.get("connection", "").lower() or \
                (version == "HTTP/1.0" and "keep-alive" not in
                 headers.get("connection", "").lower()):
            self.reusable = False
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in headers:
            try:
                body = self._take(int(headers["content-length"]))
            except ValueError as err:
                raise BadAnswer(f"Content-Length {headers['content-length']!r}") from err
        else:
            body = self._to_the_end()
        return status, headers, body

    def _chunked(self) -> bytes:
        parts = []
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text or b"0", 16)
            except ValueError as err:
                raise BadAnswer(f"chunk size {size_text[:20]!r}") from err
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._take(size))
            if self._line():
                raise BadAnswer("a chunk not followed by CRLF")

    def _to_the_end(self) -> bytes:
        self.reusable = False
        while True:
            try:
                self._more()
            except ConnectionError:
                break
        body = bytes(self.pending)
        self.pending.clear()
        return body
