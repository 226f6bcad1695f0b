"""The lifecycle of a run: check, start, watch, stop, reconcile. One for every run, whoever
puts (the roles live elsewhere).

::

    walker ──(batches of Job)──> put queues ──> putters (processes here, or Dask workers)
       │                                              │
       └──(Walked notes, walk-time Results, WalkerDone)──> stat_queue <──(Results)──> statter

* The **walker** (``walker``/``imagemode`` for the walk, ``feed`` for its loop) announces
  every job to the statter before queueing it, and decides what metadata alone decides.
* The **putters** do the uploads: ``local.LocalPutters`` (processes of this machine, each
  with its own store client) or ``cluster.DaskPutters`` (tasks on a Dask cluster). Both
  are ``Putters``: ``start``, ``serve`` (until the walk is over and every job is back),
  ``cancel`` (on Ctrl+C) and ``close``.
* The **statter** (``statter``) owns all counters and all output.
* The main process only starts, watches and stops: on Ctrl+C/SIGTERM it sets ``stop``;
  workers ignore those signals and wind down themselves (in-flight uploads finish or are
  abandoned unrecorded within a few seconds); a worker that dies is noticed, the others
  go on (or are told to stop), and the run exits 1. When every worker has exited, main
  sends ``Finish`` and the statter reconciles: every announced job without a result is
  counted FAILED with the reason, so the counts always add up.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Dict, Iterator, NamedTuple, Optional, Protocol, Tuple

from ..config import Config
from ..decide import needs_remote
from ..errors import FatalError
from ..jobs import STOP, Finish, Note
from ..store import Access

STOP_GRACE_SECONDS = 4.0  # after a stop, workers have this long before they are killed
STAT_QUEUE_MESSAGES = 512
PUT_QUEUE_BATCHES = 2  # batches waiting per putter


class Ending(NamedTuple):
    """How the putters ended, for the statter's reconciliation."""

    dead: Tuple[int, ...] = ()  # exit codes of putter processes that died
    walker_code: Optional[int] = None  # the walker's exit code if it died
    lost: str = ""  # why jobs without a result were lost, when known (a lost scheduler)


class Putters(Protocol):
    """Who puts: ``local.LocalPutters`` or ``cluster.DaskPutters``."""

    start_method: str  # how the run's processes start: "fork" or "spawn"
    queue_count: int  # the put queues the walker feeds
    on_demand: bool  # started as the walker wants them (``PutQueues``), not all at once

    def start(self, core: "Core") -> None:
        """Start putting (the walker and the statter run already)."""

    def serve(self, core: "Core") -> Ending:
        """Watch until the walk is over and every queued job is back, or the run stops."""

    def cancel(self, core: "Core") -> None:
        """The run is interrupted: stop the uploads under way as soon as possible."""

    def close(self, core: "Core") -> None:
        """Every putter has ended or is made to."""


def run(cfg: Config, access: Access, putters: Putters, walker_store=None) -> Dict:
    """Run the walker, PUTTERS and the statter to the end; return the summary.
    WALKER_STORE: a store for the walker to go on with (the up-front check's, its
    connection open), when the walker is forked; else the walker makes its own."""
    ctx = multiprocessing.get_context(putters.start_method)
    core = Core(ctx, cfg, access, putters.queue_count, on_demand=putters.on_demand,
                walker_store=walker_store if putters.start_method == "fork" else None)
    interrupted, ending = False, Ending()
    try:
        with Interrupt(core.stop) as interrupt:
            core.start()
            putters.start(core)
            ending = putters.serve(core)
            interrupted = interrupt.count > 0
    except KeyboardInterrupt:
        interrupted = True
        core.stop.set()
        putters.cancel(core)
    finally:
        putters.close(core)
        walker_code = core.close()
    if ending.walker_code is None and walker_code is not None:
        ending = ending._replace(walker_code=walker_code)
    summary = core.finish(Finish(interrupted, ending.dead, ending.walker_code, ending.lost))
    summary["interrupted"] = interrupted
    return summary


# -- what every run has ----------------------------------------------------------------------

class PutQueues:
    """One bounded queue per putter, which putters are wanted, and which are alive.

    Not one shared queue: a ``multiprocessing.Queue``'s read lock is held by whichever
    reader waits on it, and a putter killed while holding it would block every other
    putter forever. With one reader per queue, a dead putter only loses what was queued
    for it (the statter names those jobs), and the walker sends to the live ones.

    Putters are wanted on demand (ON_DEMAND): none until the walker has a job for one,
    then one more each time every wanted putter's queue is full, up to their number. An
    unchanged tree, decided by the walker alone, starts none; the walker wakes the main
    process (``wake``) to start each one it wants.
    """

    def __init__(self, ctx, count: int, *, on_demand: bool = False):
        self.queues = [ctx.Queue(maxsize=PUT_QUEUE_BATCHES) for _ in range(count)]
        self.alive = ctx.Array("b", [1] * count, lock=False)
        self.wanted = ctx.Value("i", 0 if on_demand else count, lock=False)
        self.wake, self._wake_send = ctx.Pipe(duplex=False) if on_demand else (None, None)
        self.next = 0

    def _want_one_more(self) -> None:
        self.wanted.value += 1
        self._wake_send.send_bytes(b"+")

    def send(self, item, stop) -> bool:
        """Give ITEM to a live putter with room (asking for one more while all are busy,
        then waiting); False if the run stops or no putter is left."""
        count = len(self.queues)
        while not stop.is_set():
            wanted = self.wanted.value
            if wanted == count and not any(self.alive[:wanted]):
                return False
            for step in range(wanted):
                index = (self.next + step) % wanted
                if not self.alive[index]:
                    continue
                try:
                    self.queues[index].put_nowait(item)
                except queue.Full:
                    continue
                self.next = (index + 1) % wanted
                return True
            if wanted < count:
                self._want_one_more()  # its queue is empty: the next round puts there
            else:
                time.sleep(0.005)
        return False

    def send_stops(self, stop) -> None:
        """Tell every wanted live putter that no more jobs come."""
        for index in range(self.wanted.value):
            while self.alive[index] and not stop.is_set():
                try:
                    self.queues[index].put(STOP, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def mark_dead(self, index: int) -> None:
        self.alive[index] = 0

    def abandon(self) -> None:
        """At exit: do not wait to flush items to queues that nobody will read."""
        for index, q in enumerate(self.queues):
            if not self.alive[index] or index >= self.wanted.value:
                q.cancel_join_thread()


class Core:
    """What every run has, whoever puts: the statter and walker processes, the queue to
    the statter, the put queues, the stop event, the statter's reply, a spool directory,
    and the shared ``--limit`` budget."""

    def __init__(self, ctx, cfg: Config, access: Access, queue_count: int, *,
                 on_demand: bool = False, walker_store=None):
        """WALKER_STORE: a store the (forked) walker takes over, connection and all."""
        self.ctx = ctx
        self.walker_store = walker_store
        self.cfg = cfg
        # Bounded too: if the statter falls behind, workers wait instead of buffering
        # without limit (a million results must not pile up in memory).
        self.stat_queue = ctx.Queue(maxsize=STAT_QUEUE_MESSAGES)
        self.put_queues = PutQueues(ctx, queue_count, on_demand=on_demand)
        self.stop = ctx.Event()
        self.slots = ctx.Value("q", cfg.limit) if cfg.limit is not None else None
        self.reply_recv, reply_send = ctx.Pipe(duplex=False)
        self.spool_dir = tempfile.mkdtemp(prefix="s3pput-")
        self.statter = ctx.Process(target=statter_process, name="s3pput-statter",
                                   args=(cfg, self.stat_queue, reply_send))
        self.walker = ctx.Process(target=walker_process, name="s3pput-walker",
                                  args=(cfg, access, self.spool_dir, self.put_queues,
                                        self.stat_queue, self.stop, self.slots,
                                        walker_store))

    def start(self) -> None:
        with signals_blocked(self.ctx, signal.SIGINT, signal.SIGTERM):
            self.statter.start()
            self.walker.start()
        if self.walker_store is not None:
            # The walker has the store now: this process lets go of its copy of the
            # connection (closing a copy sends nothing to the server) and never uses it.
            self.walker_store.close()
            self.walker_store = None

    def check_statter(self, *others) -> None:
        """Without the statter nobody can count or report: stop everything."""
        if not self.statter.is_alive():
            for process in (self.walker, *others):
                if process.is_alive():
                    process.kill()
            raise FatalError(f"the statter process died (exit code {self.statter.exitcode});"
                             " the outcome is unknown")

    def close(self) -> Optional[int]:
        """Wait for the walker (kill it after the grace period), remove the spool; return
        the walker's exit code if it died."""
        if not self.statter.is_alive():
            self.walker.kill()  # nobody would read what it has to say
        self.walker.join(STOP_GRACE_SECONDS)
        if self.walker.is_alive():
            self.walker.kill()
            self.walker.join()
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        return self.walker.exitcode or None

    def finish(self, message: Finish) -> Dict:
        """Every worker has exited: send the statter MESSAGE and return its summary."""
        self.stat_queue.put(message)
        summary = None
        while self.statter.is_alive() or self.reply_recv.poll():
            if self.reply_recv.poll(0.2):
                summary = self.reply_recv.recv()
                break
        self.statter.join(5)
        if self.statter.is_alive():
            self.statter.kill()
        if summary is None:
            raise FatalError("the statter process did not report; the outcome is unknown")
        return summary


# -- the processes ---------------------------------------------------------------------------

def linux_process_setup(role: str) -> None:
    """Linux: get SIGKILL if the main process dies, so no orphan is ever left behind; and
    name the process after its role (``ps``, ``top`` and ``/proc/PID/comm`` show
    ``s3pput-walker``, ``s3pput-putter``, ``s3pput-statter``)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        libc.prctl(15, f"s3pput-{role}".encode()[:15])  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def worker_setup(role: str) -> None:
    # The main process coordinates shutdown; workers must not die half-way through a
    # request because the terminal sent the whole process group a Ctrl+C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    linux_process_setup(role)


def walker_process(cfg: Config, access: Access, spool_dir: str, put_queues: PutQueues,
                   stat_queue, stop, slots_value, store=None) -> None:
    worker_setup("walker")
    from ..journal import Journal
    from ..store import make_store
    from .feed import Feeder

    journal = Journal(cfg.state_file, write=False) if cfg.state_file else None
    options = dict(can_list=access.can_list,
                   journal_lookup=journal.lookup if journal else (lambda key: None),
                   note=lambda level, text: stat_queue.put(Note(level, text)))
    if cfg.images:
        from .imagemode import LOOKAHEAD, ImageWalker

        walker = ImageWalker(cfg, make_store(cfg, LOOKAHEAD + 2), **options)
    else:
        from .walker import Walker

        if store is None and needs_remote(cfg.put):
            store = make_store(cfg, 2)
        walker = Walker(cfg, store, spool_dir=spool_dir, first_page=access.first_page,
                        **options)
    feeder = Feeder(lambda batch: put_queues.send(batch, stop), stat_queue.put, stop,
                    slots_value)
    feeder.feed(walker.jobs())
    put_queues.send_stops(stop)
    put_queues.abandon()


def statter_process(cfg: Config, stat_queue, reply) -> None:
    worker_setup("statter")
    from .statter import Statter

    # Paths that are not valid UTF-8 (surrogate-escaped) must print, not kill the statter.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="backslashreplace")
    reply.send(Statter(cfg).serve(stat_queue))
    reply.close()


# -- signals ---------------------------------------------------------------------------------

class Interrupt:
    """Turns SIGINT/SIGTERM into a stop request (a second one kills at once)."""

    def __init__(self, stop):
        self.stop = stop
        self.count = 0
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may set handlers (put() from a thread)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def handle(self, signum, frame) -> None:
        self.count += 1
        self.stop.set()
        if self.count > 1:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_blocked(ctx, *signals: int) -> Iterator[None]:
    """Block SIGNALS in this thread while child processes start. Children inherit the
    blocked mask, so a Ctrl+C that the terminal sends the whole process group never
    interrupts them half-way through their start (a spawned child's imports, a Dask
    worker in a task): the main process coordinates the stop. Here a blocked signal only
    waits: the handler gets it as soon as the block ends."""
    if ctx.get_start_method() == "spawn":
        from multiprocessing import resource_tracker

        # Started on first need, the tracker unblocks SIGINT and SIGTERM in the thread
        # that starts it (after blocking them for its own sake): start it first.
        resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
