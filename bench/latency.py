"""A network with a round-trip time, on loopback: a TCP proxy that holds every chunk it
reads for RTT/2 before writing it on, in each direction.

    python -m bench.latency --upstream 127.0.0.1:8333 --rtt 40 [--port 0] [--window MIB]

Promises:

* Every chunk read from one side is written to the other side RTT/2 seconds later, never
  earlier, and in the order it was read (one queue per direction). A request and its
  answer therefore take at least one RTT, as over a real link.
* Connection set-up costs a round trip as well: the first client->server bytes of a
  connection are delivered no earlier than 1.5 RTT after the connection was accepted,
  when a real client's first byte (sent once its SYN had been answered) would arrive.
* Bounded memory, and a TCP window: a direction holding more than WINDOW/2 bytes (queued
  or in the socket write buffer) stops reading from its source until half of that has
  gone. One connection then carries at most WINDOW bytes per round trip, as a real TCP
  connection with a window of WINDOW does (default 4 MiB, Linux's largest default send
  buffer: about 105 MB/s per connection at 40 ms).
* Cheap: one asyncio loop in its own process, one timer per direction armed only while
  bytes wait, reads of up to 256 KiB (asyncio's read size), TCP_NODELAY both ways, no
  Python work per byte. Bandwidth, loss and jitter are not emulated.
* Half-closes are passed on in order (a client's shutdown(SHUT_WR) reaches the server
  after RTT/2 and the answer still comes back).

Control, one line at a time on stdin (answers are one JSON line each on stdout; the
first stdout line is ``{"listening": PORT}``): ``rtt MS`` sets the round trip of the
connections accepted from then on; ``stats`` answers counters and the proxy's own CPU
seconds. The proxy exits when stdin closes, so it never outlives the harness.

``LatencyProxy`` runs it from the harness; ``python -m bench.latency_check`` checks it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Optional

try:  # libuv's loop: the same asyncio API at a fraction of the CPU per event
    import uvloop
except ImportError:  # pragma: no cover - the bench extras install it
    uvloop = None

# Due times are kept on the monotonic clock, not loop.time(): uvloop's is cached per
# loop iteration and counts whole milliseconds, which could let a chunk out early.
clock = time.monotonic
TIMER_SLACK = 0.001  # a timer that fired early is re-armed at least this far ahead

READ_SIZE = 256 * 1024  # the most asyncio reads in one recv (Linux selector loop)
DEFAULT_WINDOW = 4 << 20  # the TCP window emulated; a direction holds half of it
EOF = b""  # queued like data: a half-close, passed on in order
CLOSE = None  # queued like data: the source socket is gone, close the target


class Counters:
    def __init__(self) -> None:
        self.accepted = self.active = self.failed_connects = self.pauses = 0
        self.bytes_up = self.bytes_down = 0
        self.peak_pending = 0

    def as_dict(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return dict(accepted=self.accepted, active=self.active,
                    failed_connects=self.failed_connects, pauses=self.pauses,
                    bytes_up=self.bytes_up, bytes_down=self.bytes_down,
                    peak_pending=self.peak_pending,
                    cpu_s=round(usage.ru_utime + usage.ru_stime, 4))


class End(asyncio.Protocol):
    """One socket of a proxied connection. What it reads goes into ``outgoing``; when its
    write buffer drains, the direction writing into it (``incoming``) may read again. It
    closes once it has both read and been written an EOF."""

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.outgoing: Optional["Direction"] = None
        self.incoming: Optional["Direction"] = None
        self.eof_in = self.eof_out = self.closed_here = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                      socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.outgoing.push(data)

    def eof_received(self) -> bool:
        self.eof_in = True
        self.outgoing.push(EOF)
        self.close_if_ended()
        return True  # keep the socket open for what the other side still sends

    def wrote_eof(self) -> None:
        self.eof_out = True
        self.close_if_ended()

    def close_if_ended(self) -> None:
        if self.eof_in and self.eof_out and not self.closed_here:
            self.closed_here = True
            self.transport.close()

    def resume_writing(self) -> None:
        self.incoming.maybe_resume()

    def connection_lost(self, exc) -> None:
        if not self.closed_here:  # a reset, or a close without a FIN first
            self.outgoing.push(CLOSE)


class Direction:
    """One direction of one connection: what SOURCE reads reaches TARGET DELAY seconds
    later (never earlier), in order. ``not_before`` holds back the first delivery (the
    connection's set-up round trip)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, source: End, target: End,
                 delay: float, window: int, counters: Counters, upstream: bool,
                 not_before: float = 0.0):
        self.loop = loop
        self.source, self.target = source, target
        source.outgoing, target.incoming = self, self
        self.delay = delay
        self.window = window
        self.counters = counters
        self.upstream = upstream
        self.not_before = not_before
        self.queue: collections.deque = collections.deque()  # (due, bytes, EOF or CLOSE)
        self.queued = 0  # bytes in the queue
        self.timer: Optional[asyncio.TimerHandle] = None
        self.paused = False

    def push(self, data) -> None:
        now = clock()
        due = max(now, self.not_before) + self.delay
        self.queue.append((due, data))
        if self.timer is None:
            self.timer = self.loop.call_later(due - now, self.deliver)
        if not data:
            return
        self.queued += len(data)
        if self.upstream:
            self.counters.bytes_up += len(data)
        else:
            self.counters.bytes_down += len(data)
        pending = self.pending()
        if pending > self.counters.peak_pending:
            self.counters.peak_pending = pending
        if pending > self.window and not self.paused:
            self.paused = True
            self.counters.pauses += 1
            self.source.transport.pause_reading()

    def pending(self) -> int:
        target = self.target.transport
        return self.queued + (target.get_write_buffer_size() if target else 0)

    def deliver(self) -> None:
        """Write whatever is due, then re-arm the timer for the next chunk."""
        self.timer = None
        target = self.target.transport
        if target is None:  # upstream still connecting: connected() delivers
            return
        now = clock()
        queue = self.queue
        while queue and queue[0][0] <= now:
            data = queue.popleft()[1]
            if data:
                self.queued -= len(data)
                if not target.is_closing():
                    target.write(data)
            elif data is CLOSE:
                self.target.closed_here = True
                target.close()
            elif target.is_closing():
                pass
            elif target.can_write_eof():
                target.write_eof()
                self.target.wrote_eof()
            else:
                target.close()
        if queue:
            self.timer = self.loop.call_later(max(queue[0][0] - now, TIMER_SLACK),
                                              self.deliver)
        self.maybe_resume()

    def maybe_resume(self) -> None:
        if self.paused and self.pending() <= self.window // 2:
            self.paused = False
            if not self.source.transport.is_closing():
                self.source.transport.resume_reading()


class ClientEnd(End):
    """The accepted socket: opens its upstream connection at once and wires the two
    directions, the upstream one held back by a round trip (the set-up)."""

    def __init__(self, proxy: "Proxy"):
        super().__init__()
        self.proxy = proxy

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        proxy, loop = self.proxy, self.proxy.loop
        proxy.counters.accepted += 1
        proxy.counters.active += 1
        upstream = End()
        delay = proxy.rtt / 2
        Direction(loop, self, upstream, delay, proxy.window, proxy.counters, True,
                  not_before=clock() + proxy.rtt)
        Direction(loop, upstream, self, delay, proxy.window, proxy.counters, False)
        loop.create_task(self._connect(upstream))

    async def _connect(self, upstream: End) -> None:
        try:
            await self.proxy.loop.create_connection(lambda: upstream, *self.proxy.upstream)
        except OSError:
            self.proxy.counters.failed_connects += 1
            self.closed_here = True
            self.transport.close()
            return
        if self.outgoing.queue and self.outgoing.timer is None:
            self.outgoing.deliver()

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        self.proxy.counters.active -= 1


class Proxy:
    """The listening socket and what every connection shares: the upstream address, the
    round trip of new connections, the window, the counters."""

    def __init__(self, upstream: tuple, rtt_ms: float, window: int = DEFAULT_WINDOW):
        self.upstream = upstream
        self.rtt = rtt_ms / 1000.0
        self.window = window // 2  # what one direction may hold: half a round trip
        self.counters = Counters()
        self.loop = asyncio.get_running_loop()

    async def listen(self, port: int = 0) -> asyncio.AbstractServer:
        return await self.loop.create_server(lambda: ClientEnd(self), "127.0.0.1", port,
                                             backlog=1024, reuse_address=True)


async def _control(proxy: Proxy, server: asyncio.AbstractServer) -> None:
    """Serve the stdin commands until stdin closes."""
    reader = asyncio.StreamReader()
    await proxy.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                       sys.stdin)

    def say(doc: dict) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    say(dict(listening=server.sockets[0].getsockname()[1]))
    while True:
        line = (await reader.readline()).decode().split()
        if not line:
            if reader.at_eof():
                return
            continue
        if line[0] == "rtt" and len(line) == 2:
            proxy.rtt = float(line[1]) / 1000.0
            say(dict(rtt_ms=float(line[1])))
        elif line[0] == "stats":
            say(proxy.counters.as_dict())
        else:
            say(dict(error=f"unknown command: {' '.join(line)}"))


async def serve(upstream: tuple, rtt_ms: float, port: int, window: int) -> None:
    proxy = Proxy(upstream, rtt_ms, window)
    server = await proxy.listen(port)
    async with server:
        await _control(proxy, server)


def _host_port(text: str) -> tuple:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", type=_host_port, required=True, metavar="HOST:PORT")
    parser.add_argument("--rtt", type=float, default=40.0, help="round trip, ms (40)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (any)")
    parser.add_argument("--window", type=float, default=DEFAULT_WINDOW / (1 << 20),
                        help="the TCP window emulated, MiB (4): a direction holds at most half")
    parser.add_argument("--stdlib-loop", action="store_true",
                        help="asyncio's own loop even when uvloop is installed")
    args = parser.parse_args(argv)
    run = asyncio.run if args.stdlib_loop or uvloop is None else uvloop.run
    run(serve(args.upstream, args.rtt, args.port, int(args.window * (1 << 20))))
    return 0


# -- the harness's handle on a proxy process -------------------------------------------------

class LatencyProxy:
    """A proxy process in front of UPSTREAM_PORT on loopback. ``endpoint`` is where tools
    connect; ``set_rtt`` changes the round trip of later connections; ``stats`` returns
    its counters and CPU seconds; ``stop`` ends it (by closing its stdin, then by its
    process id)."""

    def __init__(self, upstream_port: int, rtt_ms: float, *,
                 window: int = DEFAULT_WINDOW, stdlib_loop: bool = False):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=root)
        self.rtt_ms = rtt_ms
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.latency", "--upstream", f"127.0.0.1:{upstream_port}",
             "--rtt", str(rtt_ms), "--window", str(window / (1 << 20))]
            + (["--stdlib-loop"] if stdlib_loop else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=root,
            start_new_session=True)
        first = self._answer()
        self.port = first["listening"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the latency proxy ended (exit {self.process.wait()})")
        return json.loads(line)

    def _ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def set_rtt(self, rtt_ms: float) -> None:
        self._ask(f"rtt {rtt_ms}")
        self.rtt_ms = rtt_ms

    def stats(self) -> dict:
        return self._ask("stats")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LatencyProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
