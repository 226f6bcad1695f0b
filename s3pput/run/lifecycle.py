"""The processes of a run: how they start, talk and stop (the roles live elsewhere).

::

    walker ──(batches of Job)──> PutQueues (one bounded queue per putter) ──> putter x N
       │                                                                       │
       └──(Walked notes, walk-time Results, WalkerDone)──> stat_queue <──(Results)┘──> statter

* The **walker** (``walker``/``imagemode`` for the walk, ``feed`` for its loop) announces
  every job to the statter before queueing it, and decides what metadata alone decides.
* Each **putter** (``putter``) owns one store client, made inside the process.
* The **statter** (``statter``) owns all counters and all output.
* With ``--cluster`` the putters are Dask tasks instead (``cluster``: the same walker and
  statter, a dispatcher in the main process in place of the putter processes).
* The main process only starts, watches and stops: on Ctrl+C/SIGTERM it sets ``stop``;
  workers ignore those signals and wind down themselves (in-flight uploads finish or are
  abandoned unrecorded within a few seconds); a worker that dies is noticed, the others
  go on (or are told to stop), and the run exits 1. When every worker has exited, main
  sends ``Finish`` and the statter reconciles: every announced job without a result is
  counted FAILED with the reason, so the counts always add up.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Dict, List, NamedTuple, Optional

from ..config import Config
from ..decide import needs_remote
from ..errors import FatalError
from ..jobs import STOP, Fatal, Finish, Note
from ..keys import normalize_prefix
from ..overlap import hold_run_lock
from ..store import Access

STOP_GRACE_SECONDS = 4.0  # after a stop, workers have this long before they are killed
STAT_QUEUE_MESSAGES = 512
PUT_QUEUE_BATCHES = 2  # batches waiting per putter


def _linux_process_setup(role: str) -> None:
    """Linux: get SIGKILL if the main process dies, so no orphan is ever left behind; and
    name the process after its role (``ps``, ``top`` and ``/proc/PID/comm`` show
    ``s3pput-walker``, ``s3pput-putter``, ``s3pput-statter``)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        libc.prctl(15, f"s3pput-{role}".encode()[:15])  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _worker_setup(role: str) -> None:
    # The main process coordinates shutdown; workers must not die half-way through a
    # request because the terminal sent the whole process group a Ctrl+C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _linux_process_setup(role)


class PutQueues:
    """One bounded queue per putter, and which putters are alive.

    Not one shared queue: a ``multiprocessing.Queue``'s read lock is held by whichever
    reader waits on it, and a putter killed while holding it would block every other
    putter forever. With one reader per queue, a dead putter only loses what was queued
    for it (the statter names those jobs), and the walker sends to the live ones.
    """

    def __init__(self, ctx, count: int):
        self.queues = [ctx.Queue(maxsize=PUT_QUEUE_BATCHES) for _ in range(count)]
        self.alive = ctx.Array("b", [1] * count, lock=False)
        self.next = 0

    def send(self, item, stop) -> bool:
        """Give ITEM to a live putter with room (waiting while all are busy); False if
        the run stops or no putter is left."""
        count = len(self.queues)
        while not stop.is_set():
            if not any(self.alive):
                return False
            for step in range(count):
                index = (self.next + step) % count
                if not self.alive[index]:
                    continue
                try:
                    self.queues[index].put_nowait(item)
                except queue.Full:
                    continue
                self.next = (index + 1) % count
                return True
            time.sleep(0.005)
        return False

    def send_stops(self, stop) -> None:
        """Tell every live putter that no more jobs come."""
        for index, q in enumerate(self.queues):
            while self.alive[index] and not stop.is_set():
                try:
                    q.put(STOP, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def mark_dead(self, index: int) -> None:
        self.alive[index] = 0

    def abandon(self) -> None:
        """At exit: do not wait to flush items to queues that nobody will read."""
        for index, q in enumerate(self.queues):
            if not self.alive[index]:
                q.cancel_join_thread()


# -- the processes -------------------------------------------------------------------------

def walker_process(cfg: Config, access, spool_dir: str, put_queues: PutQueues,
                   stat_queue, stop, slots_value) -> None:
    _worker_setup("walker")
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

        store = make_store(cfg, 2) if needs_remote(cfg.put) else None
        walker = Walker(cfg, store, spool_dir=spool_dir, first_page=access.first_page,
                        **options)
    feeder = Feeder(lambda batch: put_queues.send(batch, stop), stat_queue.put, stop,
                    slots_value)
    feeder.feed(walker.jobs())
    put_queues.send_stops(stop)
    put_queues.abandon()


def putter_process(cfg: Config, index: int, put_queues: PutQueues, stat_queue, stop,
                   slots_value, rate_state) -> None:
    _worker_setup("putter")
    from .putter import Putter, make_transfer

    put_queue = put_queues.queues[index]
    transfer, max_threads = make_transfer(cfg, stop, slots_value, rate_state)
    putter = Putter(transfer, stat_queue.put, stop, max_threads,
                    on_fatal=lambda text: stat_queue.put(Fatal(text)))
    putter.serve(lambda timeout: put_queue.get(timeout=timeout), STOP_GRACE_SECONDS - 1)
    controller = transfer.limiter.controller
    stat_queue.put(Note("debug", f"putter {index}: requests in flight: limit "
                        f"{controller.limit} at the end, {controller.peak} at most, halved "
                        f"{controller.halvings} times for throttling"))
    stat_queue.close()
    stat_queue.join_thread()
    if stop.is_set():
        put_queue.cancel_join_thread()
    # Threads still in a request after the grace period are abandoned: their jobs have no
    # result and are reported as not finished; os._exit does not wait for them.
    os._exit(0)


def statter_process(cfg: Config, stat_queue, reply) -> None:
    _worker_setup("statter")
    from .statter import Statter

    # Paths that are not valid UTF-8 (surrogate-escaped) must print, not kill the statter.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="backslashreplace")
    reply.send(Statter(cfg).serve(stat_queue))
    reply.close()


# -- main ----------------------------------------------------------------------------------

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


def preflight(cfg: Config) -> Access:
    """Check endpoint, bucket and credentials once, up front (``Store.check_bucket``):
    with the first page of the listing the walker will need, if it needs one.

    Raises ``ConfigError`` with one message for the user when the run cannot work.
    """
    from ..store import make_store

    store = make_store(cfg, pool_size=2)
    try:
        return store.check_bucket(listing_prefix(cfg))
    finally:
        store.close()


def listing_prefix(cfg: Config) -> Optional[str]:
    """The prefix the plain walker lists (once per run), or None if it lists nothing:
    image mode lists per folder; ``stupid`` needs nothing; files and archives get HEADs."""
    if cfg.images or not needs_remote(cfg.put) or \
            not any(os.path.isdir(source) for source in cfg.sources):
        return None
    prefix = normalize_prefix(cfg.prefix)
    return prefix + "/" if prefix else ""


def execute(cfg: Config, client=None) -> Dict:
    """Run the validated configuration CFG; return the summary (``Stats.as_dict``). The
    one engine of the command line and of ``put``: the processes of this machine, or with
    ``cfg.cluster`` the putters on a Dask cluster (CLIENT: one the caller has)."""
    if not cfg.verify_ssl:
        print("s3pput: warning: TLS certificates are not verified (--no-verify-ssl)",
              file=sys.stderr)
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    # One run at a time per bucket and prefix on this machine: a second one exits 2 naming
    # the first one's pid.
    run_lock = hold_run_lock(cfg)
    try:
        if cfg.cluster is None:
            return run(cfg)
        # Only here is Dask imported: a run without --cluster never loads it.
        from .cluster import run as run_on_cluster

        return run_on_cluster(cfg, client)
    finally:
        run_lock.release()


def run(cfg: Config) -> Dict:
    """Run the whole pipeline on this machine; return the final summary (see
    ``Stats.as_dict``)."""
    access = preflight(cfg)
    # Fork, unless this process runs other threads already (put() called by a program
    # with threads of its own): a child forked then inherits their locks in whatever
    # state they were in. Such a caller's workers start by spawn: slower, and safe.
    ctx = multiprocessing.get_context("fork" if threading.active_count() == 1 else "spawn")
    put_queues = PutQueues(ctx, cfg.processes)
    rate_state = ctx.Value("d", 0.0) if cfg.max_rate else None
    slots = ctx.Value("q", cfg.limit) if cfg.limit is not None else None
    core = Core.make(ctx, cfg, access, put_queues, slots)
    stat_queue, stop, reply_recv, spool_dir = \
        core.stat_queue, core.stop, core.reply_recv, core.spool_dir
    statter, walker = core.statter, core.walker
    putters = [ctx.Process(target=putter_process, name=f"s3pput-putter-{n}",
                           args=(cfg, n, put_queues, stat_queue, stop, slots, rate_state))
               for n in range(cfg.processes)]
    workers = [walker, *putters]
    interrupted = False
    try:
        with Interrupt(stop) as interrupt:
            statter.start()
            for process in workers:
                process.start()
            dead, walker_code = _watch(walker, putters, put_queues, stop, statter)
            interrupted = interrupt.count > 0
    except KeyboardInterrupt:
        interrupted = True
        dead, walker_code = [], None
        for process in workers:
            if process.is_alive():
                process.kill()
    finally:
        for process in workers:
            process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join()
        shutil.rmtree(spool_dir, ignore_errors=True)
    summary = finish(statter, stat_queue, reply_recv,
                     Finish(interrupted, tuple(dead), walker_code))
    summary["interrupted"] = interrupted
    return summary


class Core(NamedTuple):
    """What every run has, whoever puts: the statter and the walker (not started yet),
    the queue to the statter, the stop event, the statter's reply, a spool directory."""

    stat_queue: object
    stop: object
    reply_recv: object
    spool_dir: str
    statter: object
    walker: object

    @classmethod
    def make(cls, ctx, cfg: Config, access, put_queues: PutQueues, slots) -> "Core":
        # Bounded too: if the statter falls behind, workers wait instead of buffering
        # without limit (a million results must not pile up in memory).
        stat_queue = ctx.Queue(maxsize=STAT_QUEUE_MESSAGES)
        stop = ctx.Event()
        reply_recv, reply_send = ctx.Pipe(duplex=False)
        spool_dir = tempfile.mkdtemp(prefix="s3pput-")
        statter = ctx.Process(target=statter_process, name="s3pput-statter",
                              args=(cfg, stat_queue, reply_send))
        walker = ctx.Process(target=walker_process, name="s3pput-walker",
                             args=(cfg, access, spool_dir, put_queues, stat_queue, stop,
                                   slots))
        return cls(stat_queue, stop, reply_recv, spool_dir, statter, walker)


def finish(statter, stat_queue, reply_recv, message: Finish) -> Dict:
    """Every worker has exited: send the statter MESSAGE and return its summary."""
    stat_queue.put(message)
    summary = None
    while statter.is_alive() or reply_recv.poll():
        if reply_recv.poll(0.2):
            summary = reply_recv.recv()
            break
    statter.join(5)
    if statter.is_alive():
        statter.kill()
    if summary is None:
        raise FatalError("the statter process did not report; the outcome is unknown")
    return summary


def _watch(walker, putters, put_queues: PutQueues, stop, statter):
    """Wait for every worker to end; enforce the stop grace period; deal with workers
    that die. Return (exit codes of dead putters, the walker's exit code if it died)."""
    stop_seen_at = None
    idle_since = None  # when the last putter ended while the walker still ran
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
        # Woken at once when a process ends (no fixed poll on the way out of a run), and
        # at least every 50 ms to look at the stop flag.
        multiprocessing.connection.wait(
            [p.sentinel for p in (walker, statter, *putters) if p.is_alive()], 0.05)
        note_deaths()
        if not statter.is_alive():
            # Without the statter nobody can count or report: stop everything.
            for process in (walker, *putters):
                if process.is_alive():
                    process.kill()
            raise FatalError(f"the statter process died (exit code {statter.exitcode}); "
                             "the outcome is unknown")
        if walker.is_alive() and not any(p.is_alive() for p in putters):
            # Nobody is left to take jobs (or the walker hangs flushing to a dead putter):
            # stop the walker; its announced jobs are reconciled as lost.
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 2.0:
                walker.kill()
        if stop.is_set():
            stop_seen_at = stop_seen_at or time.monotonic()
            if time.monotonic() - stop_seen_at > STOP_GRACE_SECONDS:
                for process in (walker, *putters):
                    if process.is_alive():
                        process.kill()
    note_deaths()
    return dead, walker_code
