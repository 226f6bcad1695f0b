"""How many requests a putter keeps in flight: a controller that follows the network.

Throughput of small objects is requests in flight / round-trip time, until CPU or the
store caps it; so the right number of requests in flight is not a constant. ``Controller``
finds it (pure: fed with observations, it answers a limit), and ``Limiter`` holds a
putter's requests to that limit and observes them.

The rule, in the spirit of TCP Vegas and BBR:

* Every *window* (about one limit's worth of finished requests), look at the median
  latency of its requests against the least latency seen lately (the base: the network's
  round trip plus the store's service time, without queueing), and at the rate the window
  delivered (requests finished per second).
* A throttling answer (503 SlowDown, 429) in the window: halve the limit. Throttling is
  the only signal that takes the limit below the floor (next point).
* The *floor* is ``GAIN`` bandwidth-delay products: the best rate of recent windows x
  the least latency of the run. Below it, more requests in flight still buy throughput
  (by Little's law the limit is under the floor while the mean latency is under ``GAIN``
  round trips), so a window whose requests waited grows, whatever its latency says.
* Latency climbing (median above ``TOLERANCE`` x base + ``SLACK``) above the floor:
  requests are queueing somewhere, so shrink by a fifth, down to the floor at most.
  Latency alone is a poor witness on a small machine: a busy store, or the client's own
  CPU shared with other work, raises it whatever the limit is, and a pure Vegas rule then
  shrinks until the store is no longer kept busy.
* Otherwise, if requests had to wait for a slot (the limit was what held them back): grow,
  doubling while nothing has gone wrong yet (slow start), then by an eighth; but not past
  ``CEILING_GAIN`` bandwidth-delay products (the base drifts up under a queue that never
  drains, the least latency of the run does not).
* Always within [minimum, maximum]; ``maximum`` is ``--max-inflight`` (memory bounds the
  bodies in flight separately, see ``MemoryBudget``). ``--inflight N`` fixes the limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Callable, Deque, Iterator, List, Optional

TOLERANCE = 1.5  # median latency above this many times the base means queueing
SLACK = 0.003  # seconds: noise of a loaded machine that is not queueing
BASE_WINDOWS = 20  # the base is the least latency of this many recent windows
MIN_WINDOW = 8  # requests a window needs before it is judged
RATE_WINDOWS = 10  # the best rate is the highest of this many recent windows
GAIN = 2  # the floor is this many bandwidth-delay products (BBR's in-flight gain)
CEILING_GAIN = 4  # latency alone never grows the limit past this many
MEMORY_PER_PUTTER = 256 * 1024 * 1024  # bodies one putter holds in memory at once


class Controller:
    """The limit of requests in flight, adjusted once per window of observations."""

    def __init__(self, initial: int, minimum: int, maximum: int):
        self.minimum = max(1, minimum)
        self.maximum = max(self.minimum, maximum)
        self.limit = min(max(initial, self.minimum), self.maximum)
        self.peak = self.limit  # the highest limit so far (for -vv)
        self.halvings = 0  # times the limit was halved for throttling (for -vv)
        self.slow_start = True
        self.latencies: List[float] = []
        self.throttled = False  # the limit was halved for throttling in this window
        self.waited = False
        self.bases: Deque[float] = deque(maxlen=BASE_WINDOWS)
        self.rates: Deque[float] = deque(maxlen=RATE_WINDOWS)
        self.least = math.inf  # the least latency of the run: the round trip itself
        self.window_started: Optional[float] = None

    def throttle(self) -> int:
        """The store asked us to slow down (503 SlowDown, 429): halve the limit at once,
        once per window (the requests in flight meanwhile were sent at the old limit)."""
        if not self.throttled:
            self.throttled = True
            self.halvings += 1
            self.limit = max(self.minimum, self.limit // 2)
            self.slow_start = False
        return self.limit

    def observe(self, latency: float, now: float, *, waited: bool = False) -> int:
        """One finished request: LATENCY seconds in flight, finished at NOW (seconds on
        any steady clock); WAITED: some request had to wait for a slot meanwhile. Returns
        the (possibly new) limit."""
        if self.window_started is None:
            self.window_started = now - latency
        self.latencies.append(latency)
        self.waited |= waited
        if len(self.latencies) >= max(MIN_WINDOW, self.limit):
            return self._end_window(now)
        return self.limit

    def floor(self) -> int:
        """``GAIN`` bandwidth-delay products: the fewest requests in flight that keep the
        best recent rate going at the run's least latency (the minimum before any)."""
        return self._products(GAIN)

    def ceiling(self) -> int:
        """``CEILING_GAIN`` bandwidth-delay products: beyond it, requests only queue."""
        return self._products(CEILING_GAIN)

    def _products(self, gain: float) -> int:
        if not self.rates:
            return self.minimum
        return max(self.minimum, math.ceil(gain * max(self.rates) * self.least))

    def _end_window(self, now: float) -> int:
        latencies = sorted(self.latencies)
        median = latencies[len(latencies) // 2]
        self.bases.append(latencies[0])
        self.least = min(self.least, latencies[0])
        elapsed = now - self.window_started
        if elapsed > 0:
            self.rates.append(len(latencies) / elapsed)
        base = min(self.bases)
        target = self.floor()
        climbing = median > base * TOLERANCE + SLACK
        if self.throttled:
            pass  # already halved; latencies of a throttled window say nothing more
        elif climbing and self.limit > target:
            self.limit = max(self.minimum, target, self.limit - max(1, self.limit // 5))
            self.slow_start = False
        elif self.waited and (self.limit < target
                              or (not climbing and self.limit < self.ceiling())):
            if climbing:
                self.slow_start = False
            step = self.limit if self.slow_start else max(1, self.limit // 8)
            self.limit = min(self.maximum, self.limit + step)
            self.peak = max(self.peak, self.limit)
        self.latencies = []
        self.throttled = self.waited = False
        self.window_started = now
        return self.limit


class Limiter:
    """Holds a putter's requests to the controller's limit (threads wait for a slot) and
    reports each request's latency and any throttling back to it. Thread-safe."""

    def __init__(self, controller: Controller, *, fixed: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.controller = controller
        self.fixed = fixed
        self.clock = clock
        self.in_flight = 0
        self.waiting = 0
        self.condition = threading.Condition()

    @property
    def limit(self) -> int:
        return self.controller.limit

    def throttled(self) -> None:
        """The store answered 503 SlowDown or 429 (any thread may call this)."""
        if not self.fixed:
            with self.condition:
                self.controller.throttle()

    @contextmanager
    def request(self) -> Iterator[None]:
        """Hold one slot for the duration of a request."""
        with self.condition:
            waited = self.in_flight >= self.controller.limit
            self.waiting += waited
            while self.in_flight >= self.controller.limit:
                self.condition.wait()
            self.waiting -= waited
            self.in_flight += 1
        started = self.clock()
        try:
            yield
        finally:
            now = self.clock()
            with self.condition:
                self.in_flight -= 1
                if not self.fixed:
                    self.controller.observe(now - started, now,
                                            waited=waited or self.waiting > 0)
                # Wake only as many waiters as there are free slots (one, unless the
                # limit grew): waking them all would cost each request hundreds of
                # thread switches once the limit is in the hundreds.
                self.condition.notify(max(1, self.controller.limit - self.in_flight))


class MemoryBudget:
    """At most MAX_BYTES of bodies held at once by one putter's requests (a body larger
    than the budget may go alone). Thread-safe."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used = 0
        self.condition = threading.Condition()

    @contextmanager
    def hold(self, size: int) -> Iterator[None]:
        self.acquire(size)
        try:
            yield
        finally:
            self.release(size)

    def acquire(self, size: int) -> None:
        with self.condition:
            while self.used and self.used + size > self.max_bytes:
                self.condition.wait()
            self.used += size

    def release(self, size: int) -> None:
        with self.condition:
            self.used -= size
            self.condition.notify_all()


class RateLimiter:
    """At most RATE requests per second from all putters together (None: no limit).

    SHARED is a ``multiprocessing.Value("d")`` holding the next free time slot
    (``time.monotonic`` is one clock for every process), so the cap holds however the
    jobs happen to be spread over the putters."""

    def __init__(self, rate: Optional[float], shared=None):
        self.interval = 1.0 / rate if rate else 0.0
        self.shared = shared

    def wait(self) -> None:
        if not self.interval or self.shared is None:
            return
        with self.shared.get_lock():
            now = time.monotonic()
            at = max(now, self.shared.value)
            self.shared.value = at + self.interval
        if at > now:
            time.sleep(at - now)


class PartWindow:
    """At most WINDOW parts of one multipart upload in flight: ``submit`` waits for a free
    place before it hands the part's request to SUBMIT (so that the parts read ahead, and
    the memory they hold, are bounded too)."""

    def __init__(self, submit: Callable[[Callable], Future], window: int):
        self._submit = submit
        self.places = threading.BoundedSemaphore(max(1, window))

    def submit(self, operation: Callable) -> Future:
        self.places.acquire()
        future = self._submit(operation)
        future.add_done_callback(lambda _: self.places.release())
        return future
