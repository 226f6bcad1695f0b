"""The controller of requests in flight (``s3pput.run.concurrency``), fed with
observations: it grows while requests wait and latency stays flat, shrinks when latency
climbs without more throughput (never below twice the bandwidth-delay product), halves on
throttling (once per window), and keeps to its bounds. Against a simulated store (a
round trip, a service capacity, noise) it keeps the store busy and holds steady. And the
``Limiter`` really holds threads to the limit."""

from __future__ import annotations

import heapq
import random
import statistics
import threading
from typing import List, Tuple

from s3pput.run.concurrency import Controller, Limiter, MemoryBudget

RTT = 0.040


class Clock:
    now = 0.0


def feed(controller: Controller, count: int, latency: float = RTT, waited: bool = True,
         clock: Clock = Clock()):
    """COUNT requests of LATENCY finish, evenly spread, with the limit's worth in flight
    (so the rate they deliver is limit / latency)."""
    for _ in range(count):
        clock.now += latency / controller.limit
        controller.observe(latency, clock.now, waited=waited)
    return controller.limit


def test_slow_start_doubles_each_window_while_requests_wait_and_latency_is_flat():
    controller = Controller(16, 4, 256)
    limits = [feed(controller, controller.limit) for _ in range(4)]
    assert limits == [32, 64, 128, 256]


def test_it_never_grows_past_the_maximum():
    controller = Controller(16, 4, 100)
    for _ in range(10):
        feed(controller, controller.limit)
    assert controller.limit == 100


def test_it_does_not_grow_when_no_request_had_to_wait():
    controller = Controller(16, 4, 256)
    for _ in range(5):
        feed(controller, 16, waited=False)
    assert controller.limit == 16


def test_climbing_latency_without_more_throughput_shrinks_the_limit_and_ends_slow_start():
    controller = Controller(64, 4, 256)
    feed(controller, 64)  # base 40 ms, 1,600 requests/s -> 128
    assert controller.limit == 128
    feed(controller, 128, latency=RTT * 4)  # the store slowed down: 800 requests/s
    assert controller.limit == 128 - 128 // 5
    shrunk = controller.limit
    feed(controller, shrunk)  # flat again: grows by an eighth, no more doubling
    assert controller.limit == shrunk + shrunk // 8


def test_climbing_latency_never_shrinks_below_twice_the_bandwidth_delay_product():
    controller = Controller(64, 4, 512)
    feed(controller, 64)  # the first window (it includes the first round trip) -> 128
    feed(controller, 128)  # 128 at 40 ms: 3,200 requests/s, the floor 2 x 128 -> 256
    assert controller.limit == 256 and controller.floor() >= 256
    for _ in range(10):  # latency doubles (a busy store, a busy CPU), the rate holds
        feed(controller, controller.limit, latency=RTT * 2)
        assert controller.limit >= 256


def test_throttling_halves_at_once_and_only_once_per_window():
    controller = Controller(64, 4, 256)
    for _ in range(10):  # ten requests in flight all see the 503
        controller.throttle()
    assert controller.limit == 32
    feed(controller, 32)  # the throttled window ends without growing
    assert controller.limit == 32
    controller.throttle()  # a new window: a new halving
    assert controller.limit == 16


def test_throttling_never_goes_below_the_minimum():
    controller = Controller(8, 4, 256)
    for _ in range(5):
        controller.throttle()
        feed(controller, controller.limit)
    assert controller.limit >= 4


def test_limiter_holds_threads_to_the_limit():
    limiter = Limiter(Controller(3, 1, 3), fixed=True)
    in_flight, peak = [0], [0]
    lock = threading.Lock()
    release = threading.Event()
    entered = threading.Semaphore(0)

    def request():
        with limiter.request():
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            entered.release()
            release.wait(60)
            with lock:
                in_flight[0] -= 1

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for _ in range(3):
        assert entered.acquire(timeout=60)
    assert not entered.acquire(timeout=0.2)  # a fourth may not enter while three are in
    release.set()
    for thread in threads:
        thread.join(60)
    assert peak[0] == 3


def test_limiter_reports_latency_and_throttling_to_its_controller():
    now = [0.0]
    controller = Controller(8, 1, 64)
    limiter = Limiter(controller, clock=lambda: now[0])
    limiter.throttled()
    assert controller.limit == 4
    fixed = Limiter(Controller(8, 1, 64), fixed=True)
    fixed.throttled()
    assert fixed.limit == 8  # --inflight N is a fixed override


def test_memory_budget_lets_an_oversized_body_go_alone():
    budget = MemoryBudget(100)
    budget.acquire(500)  # larger than the budget: alone, not never
    assert budget.used == 500
    got = threading.Event()
    thread = threading.Thread(target=lambda: (budget.acquire(10), got.set()))
    thread.start()
    assert not got.wait(0.2)
    budget.release(500)
    assert got.wait(60)
    thread.join()


def simulate(controller: Controller, *, capacity: float, rtt: float = RTT,
             noise: float = 0.0, seconds: float = 30.0, seed: int = 0):
    """A closed loop of requests against a simulated store: each request takes half of
    RTT to reach the store, waits its turn there (one request every 1/CAPACITY seconds),
    and half of RTT plus up to NOISE seconds (a busy CPU on either side) to come back.
    There is always more to send (every request waited). Returns (finish times, the
    limit after each)."""
    rng = random.Random(seed)
    flying: List[Tuple[float, float]] = []
    free_at = 0.0
    finished: List[float] = []
    limits: List[int] = []

    def send(now: float) -> None:
        nonlocal free_at
        free_at = max(now + rtt / 2, free_at) + 1 / capacity
        heapq.heappush(flying, (free_at + rtt / 2 + rng.uniform(0, noise), now))

    for _ in range(controller.limit):
        send(0.0)
    while flying:
        done, sent = heapq.heappop(flying)
        if done > seconds:
            break
        controller.observe(done - sent, done, waited=True)
        finished.append(done)
        limits.append(controller.limit)
        while len(flying) < controller.limit:
            send(done)
    return finished, limits


def rate_after(finished: List[float], start: float, end: float) -> float:
    return sum(start <= at < end for at in finished) / (end - start)


def test_a_saturated_store_is_kept_busy_and_the_limit_holds_steady():
    capacity = 1000.0  # requests a second: 40 in flight at 40 ms keep it busy
    finished, limits = simulate(Controller(32, 4, 256), capacity=capacity)
    assert rate_after(finished, 10, 30) >= 0.97 * capacity
    settled = limits[len(limits) // 3:]
    assert min(settled) >= capacity * RTT
    assert max(settled) <= 4 * capacity * (RTT + 1 / capacity) + 1  # nor runs away


def test_latency_raised_by_a_busy_machine_does_not_starve_a_saturated_store():
    # Up to 60 ms more on every round trip, whatever the limit (the client, the proxy and
    # the store share two cores): the median latency stays above 1.5 x the base, which
    # once shrank the limit to its minimum and the rate to a tenth.
    capacity = 1000.0
    finished, limits = simulate(Controller(32, 4, 256), capacity=capacity,
                                noise=1.5 * RTT)
    assert rate_after(finished, 10, 30) >= 0.95 * capacity
    assert min(limits[len(limits) // 3:]) >= capacity * RTT


def test_runs_of_the_same_saturated_workload_differ_by_less_than_a_tenth():
    rates = []
    for seed in range(8):
        finished, _ = simulate(Controller(32, 4, 256), capacity=1000.0, noise=RTT,
                               seed=seed)
        rates.append(rate_after(finished, 0, 30))
    assert (max(rates) - min(rates)) / statistics.median(rates) <= 0.10


def test_a_store_that_keeps_up_lets_the_limit_grow_to_the_maximum():
    _, limits = simulate(Controller(32, 4, 256), capacity=1e6, seconds=10)
    assert limits[-1] == 256


def test_more_putters_than_cores_become_one_per_core_with_their_requests_in_flight():
    from configs import from_argv

    from s3pput.run.local import LocalPutters, on_these_cores

    asked = from_argv(["--bucket", "bkt", "--processes", "8", "--max-inflight", "100", "."])
    kept = on_these_cores(asked, 2)
    assert (kept.processes, kept.inflight, kept.max_inflight) == (2, None, 400)
    fixed = on_these_cores(from_argv(["--bucket", "bkt", "--processes", "3", "--inflight",
                                      "10", "."]), 2)
    assert (fixed.processes, fixed.inflight) == (2, 20)  # 3 putters' worth, rounded up
    few = from_argv(["--bucket", "bkt", "--processes", "2", "."])
    assert on_these_cores(few, 4) is few
    assert LocalPutters(asked, cores=2).queue_count == 2
