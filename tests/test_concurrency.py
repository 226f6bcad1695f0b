"""The controller of requests in flight (``s3pput.concurrency``), fed with observations:
it grows while requests wait and latency stays flat, shrinks when latency climbs, halves
on throttling (once per window), and keeps to its bounds. And the ``Limiter`` really holds
threads to the limit."""

from __future__ import annotations

import threading

from s3pput.run.concurrency import Controller, Limiter, MemoryBudget

RTT = 0.040


def feed(controller: Controller, count: int, latency: float = RTT, waited: bool = True):
    for _ in range(count):
        controller.observe(latency, waited=waited)
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


def test_climbing_latency_shrinks_the_limit_and_ends_slow_start():
    controller = Controller(64, 4, 256)
    feed(controller, 64)  # base 40 ms -> 128
    assert controller.limit == 128
    feed(controller, 128, latency=RTT * 2)  # queueing somewhere
    assert controller.limit == 128 - 128 // 5
    shrunk = controller.limit
    feed(controller, shrunk)  # flat again: grows by an eighth, no more doubling
    assert controller.limit == shrunk + shrunk // 8


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
