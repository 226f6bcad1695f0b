"""The putter: one process's share of the uploads.

A ``Putter`` takes batches of jobs from its own queue and runs each job through one
``Transfer`` on worker threads that share the process's store client, sending the results
to the statter in batches. How many requests are in flight is the ``Transfer``'s
``Limiter``'s to say (``concurrency``): the putter keeps a few more job threads than that
limit, so that the next jobs' files are read and hashed while requests are out, and
starts more threads as the limit grows. It is the role as a class: ``run(next_batch)``
with any source of batches and any sink of results, testable without processes.

Promises: every job taken from the queue gets exactly one result, unless the run is
stopped (then unstarted jobs get none: the statter reports them as not finished) or a
``FatalError`` ends the run (reported once, through ``on_fatal``).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple

from ..config import Config
from ..errors import FatalError
from ..jobs import STOP, Job, Result, Results
from ..store import make_store
from .concurrency import MEMORY_PER_PUTTER, Controller, Limiter, MemoryBudget
from .transfer import PARTS_IN_FLIGHT, Transfer, UploadSlots

RESULT_FLUSH_SECONDS = 0.1  # results wait at most this long before they are sent
POLL_SECONDS = 0.2  # how often a waiting thread looks at the stop flag
HEADROOM = 8  # job threads beyond the limit of requests in flight (reading, hashing)
# Requests in flight per putter before the controller has learnt (from 16, the slow start
# cost about a tenth of small-file throughput at 40 ms over 9 runs), and the fewest it
# goes down to (throttling halves, down to this).
INITIAL_INFLIGHT = 32
MIN_INFLIGHT = 4  # ... the fewest it goes down to (throttling halves, down to this)


def make_transfer(cfg: Config, stop, slots_value=None, rate_state=None
                  ) -> Tuple[Transfer, int]:
    """The one ``Transfer`` of a putter process (a local putter, or a Dask worker): its
    store client (made on first use, in the calling process), its limit of requests in
    flight, its memory budget and the threads for the parts of multipart uploads; and the
    most job threads a ``Putter`` over it may run. STOP is the run's stop event; SLOTS_VALUE
    and RATE_STATE the shared ``--limit`` and ``--max-rate`` state (None: none)."""
    fixed = cfg.inflight is not None
    most = cfg.inflight if fixed else cfg.max_inflight
    start = most if fixed else min(INITIAL_INFLIGHT, most)
    limiter = Limiter(Controller(start, min(MIN_INFLIGHT, start), most), fixed=fixed)
    part_threads = 2 * PARTS_IN_FLIGHT
    store = make_store(cfg, most + HEADROOM + part_threads)
    store.on_throttle = limiter.throttled
    transfer = Transfer(cfg, store, UploadSlots(slots_value), stop, rate_state,
                        limiter=limiter, budget=MemoryBudget(MEMORY_PER_PUTTER),
                        parts=ThreadPoolExecutor(part_threads, thread_name_prefix="part"))
    return transfer, most + HEADROOM


class Putter:
    def __init__(self, transfer: Transfer, send: Callable[[Results], None], stop,
                 max_threads: int, on_fatal: Callable[[str], None]):
        """SEND delivers a batch of results to the statter; STOP is the run's stop event;
        at most MAX_THREADS jobs run at once; ON_FATAL(message) is called once if a job
        raises ``FatalError`` (the run is then stopped)."""
        self.transfer = transfer
        self.send = send
        self.stop = stop
        self.max_threads = max_threads
        self.on_fatal = on_fatal
        self.workers: List[threading.Thread] = []
        self.local: "queue.Queue[Optional[Job]]" = queue.Queue()
        # Jobs handed over and not started yet: kept near the number of job threads, so
        # that a putter takes no more from the walker than it is about to do.
        self.backlog = 0
        self.room = threading.Condition()
        self.pending: List[Result] = []
        self.lock = threading.Lock()
        self.fatal = threading.Event()
        self.done = threading.Event()

    def flush(self) -> None:
        with self.lock:
            batch = tuple(self.pending)
            self.pending.clear()
        if batch:
            self.send(Results(batch))

    def _work(self) -> None:
        while True:
            job = self.local.get()
            if job is None:
                return
            with self.room:
                self.backlog -= 1
                if self.backlog <= len(self.workers) // 2:
                    self.room.notify()
            if self.stop.is_set():
                continue  # not attempted: the statter reports it as not finished
            try:
                result = self.transfer.process(job)
            except FatalError as err:
                if not self.fatal.is_set():
                    self.fatal.set()
                    self.on_fatal(str(err))
                self.stop.set()
                continue
            with self.lock:
                self.pending.append(result)

    def _flusher(self) -> None:
        while not self.done.wait(RESULT_FLUSH_SECONDS):
            self.flush()

    def _hand_over(self, job: Job) -> bool:
        """Give JOB to the job threads once one is about to be free; False if the run
        stopped meanwhile. When as many jobs wait as there are threads, the next waits
        until half of them have started: one wake-up of this thread per half a backlog,
        not one per job (each costs a GIL hand-off)."""
        with self.room:
            if self.backlog >= len(self.workers):
                while self.backlog > len(self.workers) // 2:
                    if self.stop.is_set():
                        return False
                    self.room.wait(POLL_SECONDS)
            self.backlog += 1
        self.local.put(job)
        return True

    def _grow(self) -> None:
        """Start job threads up to the limit of requests in flight plus ``HEADROOM``."""
        wanted = min(self.max_threads, self.transfer.limiter.limit + HEADROOM)
        while len(self.workers) < wanted:
            thread = threading.Thread(target=self._work, daemon=True,
                                      name=f"job-{len(self.workers)}")
            thread.start()
            self.workers.append(thread)

    def serve(self, next_batch: Callable[[float], object], grace: float) -> None:
        """Run batches from NEXT_BATCH(timeout) (a tuple of jobs, ``STOP``, or raises
        ``queue.Empty``) until ``STOP`` or the run stops; then wait for the jobs under way
        (at most GRACE seconds once the run is stopped) and send the last results."""
        self._grow()
        flusher = threading.Thread(target=self._flusher, daemon=True)
        flusher.start()
        while not self.stop.is_set():
            try:
                batch = next_batch(POLL_SECONDS)
            except queue.Empty:
                continue
            if batch is STOP:
                break
            for job in batch:
                self._grow()
                if not self._hand_over(job):
                    break
        workers = list(self.workers)
        if self.stop.is_set():
            _drain(self.local)  # stopped: what waits is not attempted
        for _ in workers:
            self.local.put(None)
        deadline = None  # set once the run is stopped: jobs under way get GRACE seconds
        for thread in workers:
            while thread.is_alive():
                if deadline is None and self.stop.is_set():
                    deadline = time.monotonic() + grace
                if deadline is not None and time.monotonic() > deadline:
                    break  # abandoned: its job gets no result (reported as not finished)
                thread.join(POLL_SECONDS)
        self.done.set()
        flusher.join()
        self.flush()


def _drain(local: "queue.Queue") -> None:
    try:
        while True:
            local.get_nowait()
    except queue.Empty:
        pass


def putter_report(transfer: Transfer) -> str:
    """What a putter says at ``-vv`` when it ends: its requests in flight, and the retries
    its requests needed, by kind (``throttled``, ``damaged in transit``, ...)."""
    controller = transfer.limiter.controller
    retried = transfer.store.retry.retried if hasattr(transfer.store, "retry") else {}
    retries = ", ".join(f"{count} {kind}" for kind, count in sorted(retried.items())) \
        or "none"
    return (f"requests in flight: limit {controller.limit} at the end, {controller.peak} at "
            f"most, halved {controller.halvings} times for throttling; retries: {retries}")
