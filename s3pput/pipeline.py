"""The processes of a run and how they start, talk and stop.

::

    walker ──(batches of Job)──> PutQueues (one bounded queue per putter) ──> putter x N
       │                                                                       │
       └──(Walked notes, walk-time Results, WalkerDone)──> stat_queue <──(Results)┘──> statter

* The **walker** announces every job to the statter (``Walked``) *before* queueing it,
  so the statter can always name a job that never got a result. It decides what
  metadata alone decides (``walker.skip_early``); only the rest travels to putters.
* Each **putter** owns one boto3 client, made inside the process, and keeps
  ``cfg.inflight`` requests in flight with threads sharing that client.
* The **statter** owns all counters and all output.
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
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

from .config import Config
from .errors import FatalError
from .fastput import proxy_configured
from .jobs import (
    CUT_LIMIT,
    CUT_STOP,
    FAILED,
    STOP,
    Fatal,
    Finish,
    Job,
    Note,
    Result,
    Results,
    Walked,
    WalkerDone,
)
from .journal import Journal
from .reports import open_reports, preview_mime
from .stats import Log, Progress, Stats, human_summary, json_summary
from .store import DryRunStore, Store, make_client, tls_verify
from .transfer import Transfer, UploadSlots

BATCH_JOBS = 64  # jobs per put_queue message (fewer, larger messages cost less CPU)
BATCH_BYTES = 8 * 1024 * 1024  # ... but never more bytes than one part in one batch
BATCH_SECONDS = 0.05  # a partial batch waits at most this long
RESULT_FLUSH_SECONDS = 0.1
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


def _make_store(cfg: Config, pool_size: int) -> Store:
    """A store whose client is made on first use, in the process that uses it."""
    def factory():
        return make_client(cfg, pool_size=pool_size)

    kind = DryRunStore if cfg.dry_run else Store
    return kind(factory, cfg.bucket, fast=cfg.fast_put and not proxy_configured(),
                timeout=cfg.timeout, verify_ssl=tls_verify(cfg))


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


# -- walker --------------------------------------------------------------------------------

def walker_main(cfg: Config, can_list: bool, spool_dir: str, put_queues: PutQueues,
                stat_queue, stop, slots_value) -> None:
    _worker_setup("walker")
    from .walker import Walker

    journal = Journal(cfg.state_file, write=False) if cfg.state_file else None
    options = dict(can_list=can_list,
                   journal_lookup=journal.lookup if journal else (lambda key: None),
                   note=lambda level, text: stat_queue.put(Note(level, text)))
    if cfg.images:
        from .imagemode import ImageWalker

        walker = ImageWalker(cfg, _make_store(cfg, 2), **options)
    else:
        store = _make_store(cfg, 2) if cfg.put != "stupid" else None
        walker = Walker(cfg, store, spool_dir=spool_dir, **options)
    walked, cut = 0, ""
    batch: List[Job] = []
    done_here: List[Result] = []  # outcomes the walker knows already (skips, walk errors)
    batch_bytes = 0
    batch_started = time.monotonic()

    def flush() -> bool:
        """Announce, then send: the walk-time results, then the batch of jobs."""
        nonlocal batch, batch_bytes, done_here
        if not batch and not done_here:
            return True
        items = [*done_here, *batch]
        stat_queue.put(Walked(tuple((i.seq, i.display, i.key, i.size) for i in items)))
        if done_here:
            stat_queue.put(Results(tuple(done_here)))
        ok = put_queues.send(tuple(batch), stop) if batch else True
        batch, batch_bytes, done_here = [], 0, []
        return ok

    try:
        for item in walker.jobs():
            if stop.is_set():
                cut = CUT_STOP
                break
            if slots_value is not None and slots_value.value <= 0:
                cut = CUT_LIMIT  # walking further is pointless
                break
            walked += 1
            if not batch and not done_here:
                batch_started = time.monotonic()
            if isinstance(item, Result):
                done_here.append(item)
            else:
                batch.append(item)
                batch_bytes += item.size
            if (len(batch) + len(done_here) >= BATCH_JOBS or batch_bytes >= BATCH_BYTES
                    or time.monotonic() - batch_started > BATCH_SECONDS):
                if not flush():
                    cut = CUT_STOP if stop.is_set() else "no putter process is left"
                    break
        else:
            if not flush():
                cut = CUT_STOP if stop.is_set() else "no putter process is left"
    except FatalError as err:
        stat_queue.put(Fatal(str(err)))
        stop.set()
        cut = CUT_STOP
    except Exception as err:  # noqa: BLE001 - report, then the run ends with what it has
        cut = f"walking stopped: {type(err).__name__}: {err}"
    if (batch or done_here) and not stop.is_set():
        flush()
    stat_queue.put(WalkerDone(walked, cut))
    put_queues.send_stops(stop)
    put_queues.abandon()


# -- putter --------------------------------------------------------------------------------

def putter_main(cfg: Config, index: int, put_queues: PutQueues, stat_queue, stop,
                slots_value, rate_state) -> None:
    _worker_setup("putter")
    put_queue = put_queues.queues[index]
    store = _make_store(cfg, cfg.inflight + 2)
    transfer = Transfer(cfg, store, UploadSlots(slots_value), stop, rate_state)
    local: "queue.Queue[Optional[Job]]" = queue.Queue(maxsize=cfg.inflight)
    pending: List[Result] = []
    lock = threading.Lock()
    fatal = threading.Event()

    def send(final: bool = False) -> None:
        with lock:
            batch = tuple(pending)
            pending.clear()
        if batch:
            stat_queue.put(Results(batch))

    def work() -> None:
        while True:
            job = local.get()
            if job is None:
                return
            if stop.is_set():
                continue  # not attempted: the statter reports it as interrupted
            try:
                result = transfer.run(job)
            except FatalError as err:
                if not fatal.is_set():
                    fatal.set()
                    stat_queue.put(Fatal(str(err)))
                stop.set()
                continue
            with lock:
                pending.append(result)

    def flusher() -> None:
        while not done.wait(RESULT_FLUSH_SECONDS):
            send()

    done = threading.Event()
    threads = [threading.Thread(target=work, daemon=True) for _ in range(cfg.inflight)]
    for thread in threads:
        thread.start()
    flush_thread = threading.Thread(target=flusher, daemon=True)
    flush_thread.start()
    while not stop.is_set():
        try:
            batch = put_queue.get(timeout=0.2)
        except queue.Empty:
            continue
        if batch is STOP:
            break
        for job in batch:
            while not stop.is_set():
                try:
                    local.put(job, timeout=0.2)
                    break
                except queue.Full:
                    continue
    for _ in threads:
        while True:
            try:
                local.put(None, timeout=0.2)
                break
            except queue.Full:
                if stop.is_set():
                    _drain(local)
    deadline = time.monotonic() + (STOP_GRACE_SECONDS - 1 if stop.is_set() else 1e9)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    done.set()
    flush_thread.join()
    send()
    stat_queue.close()
    stat_queue.join_thread()
    if stop.is_set():
        put_queue.cancel_join_thread()
    # Threads still in a request after the grace period are abandoned: their jobs have no
    # result and are reported as interrupted; os._exit does not wait for them.
    os._exit(0)


def _drain(local: "queue.Queue") -> None:
    try:
        while True:
            local.get_nowait()
    except queue.Empty:
        pass


# -- statter -------------------------------------------------------------------------------

def statter_main(cfg: Config, stat_queue, reply) -> None:
    _worker_setup("statter")
    # Paths that are not valid UTF-8 (surrogate-escaped) must print, not kill the statter.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="backslashreplace")
    log = Log(verbose=cfg.verbose, quiet=cfg.quiet, json_mode=cfg.json, log_file=cfg.log_file)
    stats = Stats(cfg.dry_run)
    progress = Progress(log, cfg.progress and not cfg.quiet and not cfg.json, cfg.dry_run, cfg)
    outstanding: Dict[int, tuple] = {}
    # A result can overtake its Walked note: they come from different processes, each
    # with its own feeder thread. Such early results are remembered until the note comes.
    early: set = set()
    journal = Journal(cfg.state_file, write=True) \
        if cfg.state_file and not cfg.dry_run else None
    mapping, preview = open_reports(cfg)
    preview_type = preview_mime(cfg.thumbnail_format) if preview else ""
    while True:
        try:
            message = stat_queue.get(timeout=0.5)
        except queue.Empty:
            progress.update(stats)
            continue
        if isinstance(message, Results):
            if journal is not None:
                journal.record(message.results)
            for result in message.results:
                if outstanding.pop(result.seq, None) is None:
                    early.add(result.seq)
                stats.count(result)
                report(log, cfg, result)
                if mapping is not None:
                    mapping.add(result)
                if preview is not None:
                    preview.add(result, preview_type)
        elif isinstance(message, Walked):
            for seq, display, key, size in message.notes:
                if seq in early:
                    early.discard(seq)
                else:
                    outstanding[seq] = (display, key, size)
            stats.walked += len(message.notes)
        elif isinstance(message, Note):
            getattr(log, message.level, log.warning)(message.text)
        elif isinstance(message, Fatal):
            if stats.fatal is None:
                stats.fatal = message.text
        elif isinstance(message, WalkerDone):
            stats.walk_complete = not message.cut
            stats.walk_finished = True
            if message.cut not in ("", CUT_LIMIT, CUT_STOP):
                stats.errors.append(message.cut)
        elif isinstance(message, Finish):
            break
        progress.update(stats)
    progress.close()
    for closable in (journal, mapping, preview):
        if closable is not None:
            closable.close()
    stats.interrupted = message.interrupted
    for code in message.dead_putters:
        stats.errors.append(f"a putter process died (exit code {code})")
    if message.walker_code is not None:
        stats.errors.append(f"the walker process died (exit code {message.walker_code}); "
                            "the walk is incomplete")
        stats.walk_complete = False
    for error in stats.errors:
        log.error(error)
    if outstanding:
        reconcile(log, cfg, stats, outstanding, message)
    summary = stats.as_dict()
    if stats.fatal:
        log.error(stats.fatal)
    if cfg.json:
        print(json_summary(summary), flush=True)
        log._to_file("summary", json_summary(summary))
    else:
        log.summary(human_summary(summary))
    log.close()
    reply.send(summary)
    reply.close()


def reconcile(log: Log, cfg: Config, stats: Stats, outstanding: Dict[int, tuple],
              finish: Finish) -> None:
    """Count every announced job that got no result as FAILED, with the reason.

    Lost jobs (a worker died) are named one by one, like any failure; jobs a stop left
    unstarted are counted in one line (and named in the log file and --json)."""
    stopped = finish.interrupted or stats.fatal
    if stopped:
        why = "not finished: the run was stopped"
        log.error(f"{len(outstanding):,} files {why}")
    elif finish.dead_putters:
        why = "lost: its putter process died (exit code " + \
            ", ".join(str(code) for code in finish.dead_putters) + ")"
    elif finish.walker_code is not None:
        why = "lost: the walker process died before it was queued"
    else:
        why = "lost: no result was received"
    for seq, (display, key, size) in sorted(outstanding.items()):
        result = Result(seq, display, key, FAILED, why, size=size)
        stats.count(result)
        if stopped:
            log._to_file("error", f"failed {display} -> s3://{cfg.bucket}/{key}: {why}")
        else:
            report(log, cfg, result)


def report(log: Log, cfg: Config, result: Result) -> None:
    """Tell the user about one outcome, at the level it deserves."""
    target = f"s3://{cfg.bucket}/{result.key}"
    if result.outcome == FAILED:
        log.error(f"failed {result.display} -> {target}: {result.reason}")
    elif result.outcome == "uploaded":
        extra = "".join(f", s3://{cfg.bucket}/{key}" for key in result.extra_keys)
        if cfg.dry_run:
            log.plan(f"would upload {result.display} -> {target}{extra} ({result.reason})")
        else:
            log.info(f"uploaded {result.display} -> {target}{extra} ({result.reason})")
    else:
        log.info(f"skipped {result.display} -> {target} ({result.reason})")


# -- main ----------------------------------------------------------------------------------

class Interrupt:
    """Turns SIGINT/SIGTERM into a stop request (a second one kills at once)."""

    def __init__(self, stop):
        self.stop = stop
        self.count = 0
        self.previous = {}

    def __enter__(self):
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


def preflight(cfg: Config) -> bool:
    """Check bucket and credentials once, up front; return whether listing works.

    Raises ``ConfigError`` with one message for the user when the run cannot work.
    """
    return Store(lambda: make_client(cfg), cfg.bucket).check_bucket()


def run(cfg: Config) -> Dict:
    """Run the whole pipeline; return the final summary (see ``Stats.as_dict``)."""
    can_list = preflight(cfg)
    ctx = multiprocessing.get_context("fork")
    put_queues = PutQueues(ctx, cfg.processes)
    rate_state = ctx.Value("d", 0.0) if cfg.max_rate else None
    # Bounded too: if the statter falls behind, workers wait instead of buffering
    # without limit (a million results must not pile up in memory).
    stat_queue = ctx.Queue(maxsize=STAT_QUEUE_MESSAGES)
    stop = ctx.Event()
    slots = ctx.Value("q", cfg.limit) if cfg.limit is not None else None
    reply_recv, reply_send = ctx.Pipe(duplex=False)
    spool_dir = tempfile.mkdtemp(prefix="s3pput-")
    statter = ctx.Process(target=statter_main, name="s3pput-statter",
                          args=(cfg, stat_queue, reply_send))
    walker = ctx.Process(target=walker_main, name="s3pput-walker",
                         args=(cfg, can_list, spool_dir, put_queues, stat_queue, stop, slots))
    putters = [ctx.Process(target=putter_main, name=f"s3pput-putter-{n}",
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
    stat_queue.put(Finish(interrupted, tuple(dead), walker_code))
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
    summary["interrupted"] = interrupted
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
        time.sleep(0.05)
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
