"""The putters as processes of this machine (``--processes N``), forked by the main
process: each owns one store client, its own limit of requests in flight and its own
memory budget (``putter.make_transfer``), and reads its own put queue. There are never
more of them than usable cores (``on_these_cores``)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import replace
from typing import List, Optional

from ..checks import MAX_INFLIGHT
from ..config import Config
from ..jobs import Fatal, Note
from .lifecycle import (
    STOP_GRACE_SECONDS,
    Core,
    Ending,
    PutQueues,
    signals_blocked,
    worker_setup,
)
from .putter import putter_report

IDLE_WALKER_SECONDS = 2.0  # a walker left without putters is stopped after this long


def usable_cores() -> int:
    """The cores this process may run on (its affinity, e.g. under ``taskset`` or a
    container's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def on_these_cores(cfg: Config, cores: int) -> Config:
    """CFG with at most CORES putter processes. Putters beyond the cores only take turns on
    them (each one's Python holds a core while it frames, hashes and parses), so the
    putters kept carry the requests in flight of those they stand for: ``--processes 8``
    on two cores is two putters with four times ``--inflight``/``--max-inflight`` each."""
    if cfg.processes <= cores:
        return cfg
    share = -(-cfg.processes // cores)
    return replace(cfg, processes=cores,
                   inflight=None if cfg.inflight is None
                   else min(MAX_INFLIGHT, cfg.inflight * share),
                   max_inflight=min(MAX_INFLIGHT, cfg.max_inflight * share))


class LocalPutters:
    """``Putters`` of this machine: up to ``cfg.processes`` putter processes (no more than
    the usable cores, see ``on_these_cores``), each started when the walker first wants it
    (``PutQueues``): a rerun that the walker decides alone forks none, and its time does
    not grow with ``--processes``."""

    on_demand = True

    def __init__(self, cfg: Config, cores: Optional[int] = None):
        self.cfg = cfg = on_these_cores(cfg, cores or usable_cores())
        # Fork, unless this process runs other threads already (put() called by a program
        # with threads of its own): a child forked then inherits their locks in whatever
        # state they were in. Such a caller's workers start by spawn: slower, and safe.
        self.start_method = "fork" if threading.active_count() == 1 else "spawn"
        self.queue_count = cfg.processes
        self.processes: List[multiprocessing.Process] = []  # the ones started, in order
        self.rate_state = None

    def start(self, core: Core) -> None:
        self.rate_state = core.ctx.Value("d", 0.0) if self.cfg.max_rate else None
        self._start_wanted(core)

    def _start_wanted(self, core: Core) -> None:
        """Start the putters the walker wants and that are not started yet."""
        wanted = min(core.put_queues.wanted.value, self.cfg.processes)
        if len(self.processes) >= wanted:
            return
        with signals_blocked(core.ctx, signal.SIGINT, signal.SIGTERM):
            while len(self.processes) < wanted:
                index = len(self.processes)
                process = core.ctx.Process(
                    target=putter_process, name=f"s3pput-putter-{index}",
                    args=(self.cfg, index, core.put_queues, core.stat_queue, core.stop,
                          core.slots, self.rate_state))
                process.start()
                self.processes.append(process)

    def serve(self, core: Core) -> Ending:
        """Start putters as the walker wants them; wait for the walker and every putter to
        end; enforce the stop grace period; deal with workers that die."""
        walker, put_queues, stop = core.walker, core.put_queues, core.stop
        putters = self.processes
        stop_seen_at: Optional[float] = None
        idle_since: Optional[float] = None  # when the last putter ended while the walker ran
        dead: List[int] = []
        walker_code = None

        def note_deaths() -> None:
            nonlocal walker_code
            for index, process in enumerate(putters):
                if process.exitcode not in (None, 0) and put_queues.alive[index]:
                    put_queues.mark_dead(index)
                    dead.append(process.exitcode)
            if walker.exitcode not in (None, 0) and walker_code is None:
                # The walker died: nobody else will tell the putters that no more jobs come.
                walker_code = walker.exitcode
                put_queues.send_stops(stop)

        while walker.is_alive() or any(p.is_alive() for p in putters):
            # Woken at once when a process ends or the walker wants a putter (no fixed poll
            # on the way), and at least every 50 ms to look at the stop flag.
            ready = multiprocessing.connection.wait(
                [put_queues.wake, *(p.sentinel for p in (walker, core.statter, *putters)
                                    if p.is_alive())], 0.05)
            if put_queues.wake in ready:
                while put_queues.wake.poll():
                    put_queues.wake.recv_bytes()
                if not stop.is_set():
                    self._start_wanted(core)
            note_deaths()
            core.check_statter(*putters)
            if walker.is_alive() and putters and not any(p.is_alive() for p in putters) \
                    and len(putters) == self.cfg.processes:
                # Nobody is left to take jobs (or the walker hangs flushing to a dead
                # putter): stop the walker; its announced jobs are reconciled as lost.
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > IDLE_WALKER_SECONDS:
                    walker.kill()
            if stop.is_set():
                stop_seen_at = stop_seen_at or time.monotonic()
                if time.monotonic() - stop_seen_at > STOP_GRACE_SECONDS:
                    for process in (walker, *putters):
                        if process.is_alive():
                            process.kill()
        note_deaths()
        return Ending(tuple(dead), walker_code)

    def cancel(self, core: Core) -> None:
        for process in (core.walker, *self.processes):
            if process.is_alive():
                process.kill()

    def close(self, core: Core) -> None:
        for process in self.processes:
            process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join()


def putter_process(cfg: Config, index: int, put_queues: PutQueues, stat_queue, stop,
                   slots_value, rate_state) -> None:
    worker_setup("putter")
    from .putter import Putter, make_transfer

    put_queue = put_queues.queues[index]
    transfer, max_threads = make_transfer(cfg, stop, slots_value, rate_state)
    putter = Putter(transfer, stat_queue.put, stop, max_threads,
                    on_fatal=lambda text: stat_queue.put(Fatal(text)))
    putter.serve(lambda timeout: put_queue.get(timeout=timeout), STOP_GRACE_SECONDS - 1)
    stat_queue.put(Note("debug", f"putter {index}: {putter_report(transfer)}"))
    stat_queue.close()
    stat_queue.join_thread()
    if stop.is_set():
        put_queue.cancel_join_thread()
    # Threads still in a request after the grace period are abandoned: their jobs have no
    # result and are reported as not finished; os._exit does not wait for them.
    os._exit(0)
