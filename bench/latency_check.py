"""The latency proxy's self-check: through a proxy process (``bench/latency.py``) in front
of a small upstream server of this module's own,

* a connection's first answer takes at least two round trips (set-up, then the request)
  and every later one at least one; after a client's half-close the answer still comes,
  then the end of the stream;
* bytes pass unchanged and in order, both ways (a CRC-32 over a stream whose 64 KiB
  blocks are numbered), with 1 and with 8 connections at once, and the throughput in
  MB/s is reported with the proxy's own CPU seconds (it must not be the bottleneck);
* a reader that stops reading makes the proxy stop too: it holds at most half its
  window (plus one read) for that direction.

    python -m bench.latency_check [--rtt 40] [--mib 256] [--connections 1,8]

Exit code 1 when a check fails. No check depends on the machine's speed (times are
lower bounds; the slow reader waits for the proxy to say it paused).
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from typing import List

from .latency import DEFAULT_WINDOW, READ_SIZE, LatencyProxy

BLOCK = 64 * 1024
_FILLER = bytes((i * 7919 + 13) % 251 for i in range(BLOCK - 8))


def block(index: int) -> bytes:
    """Block INDEX of the test stream: its number, then filler."""
    return struct.pack(">Q", index) + _FILLER


def stream_crc(blocks: int) -> int:
    crc = 0
    for index in range(blocks):
        crc = zlib.crc32(block(index), crc)
    return crc


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return bytes(data)


def _recv_crc(sock: socket.socket, size: int) -> int:
    """The CRC-32 of the next SIZE bytes read from SOCK."""
    crc = 0
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("closed early")
        crc = zlib.crc32(chunk, crc)
        size -= len(chunk)
    return crc


def _read_line(sock: socket.socket) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed early")
        line += chunk
    return bytes(line)


class Handler(socketserver.BaseRequestHandler):
    """``PING`` -> ``P`` (repeatable); ``UP n`` -> reads n blocks, answers their CRC;
    ``DOWN n`` -> sends n blocks."""

    def handle(self) -> None:
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                command = _read_line(sock).split()
                if command[0] == b"PING":
                    sock.sendall(b"P")
                elif command[0] == b"UP":
                    crc = _recv_crc(sock, int(command[1]) * BLOCK)
                    sock.sendall(struct.pack(">I", crc))
                elif command[0] == b"DOWN":
                    for index in range(int(command[1])):
                        sock.sendall(block(index))
        except (ConnectionError, OSError, IndexError):
            pass


class Upstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def check_latency(proxy: LatencyProxy, rtt_ms: float, problems: List[str]) -> dict:
    rtt = rtt_ms / 1000
    started = time.monotonic()
    with _connect(proxy.port) as sock:
        sock.sendall(b"PING\n")
        _recv_exactly(sock, 1)
        first = time.monotonic() - started
        later = []
        for _ in range(3):
            began = time.monotonic()
            sock.sendall(b"PING\n")
            _recv_exactly(sock, 1)
            later.append(time.monotonic() - began)
    with _connect(proxy.port) as sock:  # a half-close: the answer must still come back
        sock.sendall(b"PING\n")
        sock.shutdown(socket.SHUT_WR)
        try:
            answer = _recv_exactly(sock, 1) + sock.recv(1)
        except OSError as err:
            answer = repr(err).encode()
    if answer != b"P":
        problems.append(f"after a half-close the answer was {answer!r}, not b'P' then EOF")
    if first < 2 * rtt:
        problems.append(f"a new connection's first answer took {first * 1000:.1f} ms, "
                        f"less than 2 round trips ({2 * rtt_ms:.0f} ms)")
    if min(later) < rtt:
        problems.append(f"an answer took {min(later) * 1000:.1f} ms, less than the round "
                        f"trip ({rtt_ms:.0f} ms)")
    return dict(first_answer_ms=round(first * 1000, 2),
                later_answer_ms=round(min(later) * 1000, 2))


def _upload(port: int, blocks: int, expected: int, errors: List[str]) -> None:
    try:
        with _connect(port) as sock:
            sock.sendall(f"UP {blocks}\n".encode())
            for index in range(blocks):
                sock.sendall(block(index))
            crc = struct.unpack(">I", _recv_exactly(sock, 4))[0]
        if crc != expected:
            errors.append("upload: the server received other bytes than were sent")
    except OSError as err:
        errors.append(f"upload: {err}")


def _download(port: int, blocks: int, expected: int, errors: List[str]) -> None:
    try:
        with _connect(port) as sock:
            sock.sendall(f"DOWN {blocks}\n".encode())
            crc = _recv_crc(sock, blocks * BLOCK)
        if crc != expected:
            errors.append("download: the client received other bytes than were sent")
    except OSError as err:
        errors.append(f"download: {err}")


def check_throughput(proxy: LatencyProxy, mib: int, connections: int, direction: str,
                     problems: List[str]) -> dict:
    """MIB MiB in all, split over CONNECTIONS at once, one way; MB/s and proxy CPU."""
    blocks = max(1, mib * (1 << 20) // BLOCK // connections)
    expected = stream_crc(blocks)
    errors: List[str] = []
    work = _upload if direction == "up" else _download
    threads = [threading.Thread(target=work, args=(proxy.port, blocks, expected, errors))
               for _ in range(connections)]
    before = proxy.stats()
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    after = proxy.stats()
    problems.extend(f"{connections} connection(s): {e}" for e in errors)
    total = blocks * BLOCK * connections
    return dict(direction=direction, connections=connections, mib=round(total / (1 << 20)),
                seconds=round(wall, 3), mb_s=round(total / wall / 1e6, 1),
                proxy_cpu_s=round(after["cpu_s"] - before["cpu_s"], 3),
                ok=not errors)


def check_backpressure(proxy: LatencyProxy, problems: List[str]) -> dict:
    """A client that asks for 4x the window and reads nothing until the proxy has
    paused: the proxy holds at most half a window and one read, then passes on the
    rest."""
    blocks = 4 * DEFAULT_WINDOW // BLOCK
    before = proxy.stats()
    errors: List[str] = []
    with _connect(proxy.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(f"DOWN {blocks}\n".encode())
        deadline = time.monotonic() + 60
        while proxy.stats()["pauses"] == before["pauses"]:
            if time.monotonic() > deadline:  # a safety net only, never the verdict
                errors.append("the proxy never stopped reading from a sender whose "
                              "reader had stopped")
                break
            time.sleep(0.02)
        try:
            if _recv_crc(sock, blocks * BLOCK) != stream_crc(blocks):
                errors.append("bytes changed under backpressure")
        except OSError as err:
            errors.append(f"backpressure: {err}")
    peak = proxy.stats()["peak_pending"]
    if peak > DEFAULT_WINDOW // 2 + READ_SIZE:
        errors.append(f"the proxy held {peak:,} bytes for one direction, more than half "
                      f"its window ({DEFAULT_WINDOW // 2:,}) and one read")
    problems.extend(errors)
    return dict(peak_pending=peak, limit=DEFAULT_WINDOW // 2, ok=not errors)


def run_checks(rtt_ms: float = 40.0, mib: int = 256, connections=(1, 8),
               log=print) -> dict:
    """Every check above; the returned report has ``problems`` (empty when all held)."""
    problems: List[str] = []
    upstream = Upstream(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    report = dict(rtt_ms=rtt_ms, throughput=[])
    try:
        with LatencyProxy(upstream.server_address[1], rtt_ms) as proxy:
            report["latency"] = check_latency(proxy, rtt_ms, problems)
            log(f"  proxy at {rtt_ms:g} ms: first answer of a new connection "
                f"{report['latency']['first_answer_ms']} ms, later answers "
                f"{report['latency']['later_answer_ms']} ms")
            for count in connections:
                for direction in ("up", "down"):
                    result = check_throughput(proxy, mib, count, direction, problems)
                    report["throughput"].append(result)
                    log(f"  proxy at {rtt_ms:g} ms, {result['mib']} MiB {direction} over "
                        f"{count} connection(s): {result['mb_s']} MB/s, proxy CPU "
                        f"{result['proxy_cpu_s']} s{'' if result['ok'] else ' FAILED'}")
            report["backpressure"] = check_backpressure(proxy, problems)
            log(f"  backpressure: peak {report['backpressure']['peak_pending']:,} bytes "
                f"held for one direction (half the window: {DEFAULT_WINDOW // 2:,})")
            report["proxy"] = proxy.stats()
    finally:
        upstream.shutdown()
        upstream.server_close()
    report["problems"] = problems
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt", type=float, default=40.0, help="round trip, ms (40)")
    parser.add_argument("--mib", type=int, default=256, help="MiB per transfer (256)")
    parser.add_argument("--connections", default="1,8",
                        help="comma-separated connection counts (1,8)")
    args = parser.parse_args(argv)
    report = run_checks(args.rtt, args.mib,
                        [int(x) for x in args.connections.split(",") if x.strip()])
    for problem in report["problems"]:
        print(f"FAILED: {problem}")
    print("latency proxy self-check: " + ("FAILED" if report["problems"] else "ok"))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
