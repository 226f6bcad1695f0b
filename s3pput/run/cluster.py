"""The putters on a Dask cluster (``--cluster``): the cores and network cards of many
machines for one tree (on a mount they share), or many processes of one large machine.

::

    walker ──(batches)──> put_queue ──> dispatcher ══(a Dask task per batch)══> workers
       │                                    │ each task's results, once, as it finishes
       └──(Walked, walk-time Results)──> stat_queue <──┘──> statter

Only the putters move. The walker and the statter stay processes of the machine s3pput
was started on, as in a local run (one ``lifecycle``): one walk, one numbering, one decision
per file, one owner of output, journal and mapping log. In place of the putter processes
the **dispatcher** (``Dispatcher``, in the main process) takes the walker's batches and
submits each as a Dask task, with at most ``window`` batches in flight (backpressure: a
huge tree never piles up in the scheduler), and forwards each task's results to the
statter as it finishes.

On a **worker**, every task of the run goes to one ``Putter`` of that worker process
(``tasks``: what a worker runs).

Faults. A worker that dies has its tasks run again elsewhere by Dask (puts are
idempotent); whatever the reruns, each batch's results are forwarded once, so each file is
counted once. After ``distributed.scheduler.allowed-failures`` deaths a task fails
(KilledWorker) and its files fail with that reason. A scheduler that goes away ends the
run (exit 1; the statter names every file without a result). Ctrl+C cancels the run's
tasks and stops the jobs under way on the workers (exit 130).

Checked before the run (one message, exit 2): that a scheduler answers, that it has
workers, and that every worker runs this s3pput, sees each SOURCE as this machine does
(same path, same kind, same size or same names) and can use the store. Workers that join
later are not checked.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import socket
import time
import uuid
from asyncio import CancelledError
from typing import Dict, Iterator, Optional, Tuple

from .. import __version__
from ..config import Config
from ..errors import ConfigError
from ..jobs import FAILED, STOP, Fatal, Job, Note, Result, Results
from .lifecycle import Core, Ending, signals_blocked
from .tasks import check_worker, forget_run, run_batch, source_fingerprint, stop_run

CONNECT_SECONDS = 10.0  # for a scheduler to answer
CHECK_SECONDS = 120.0  # for every worker to answer the check before the run
LOCAL_THREADS_PER_WORKER = 4  # local:N: batches a worker process holds at once
BATCHES_PER_THREAD = 2  # batches in flight per worker thread: one running, one ready
POLL_SECONDS = 0.01  # how often the dispatcher sleeps when nothing happened


class DaskPutters:
    """``Putters`` on a Dask cluster: the dispatcher in this process, tasks on the workers.

    The walker and the statter start by spawn, not fork: a Dask client runs an event loop
    on a thread of this process (a LocalCluster its scheduler and nannies too, and a
    caller's client was there before we were), and a child forked while other threads run
    inherits their locks in whatever state they were in. Spawned children start clean;
    a local run still forks, before any thread exists."""

    start_method = "spawn"
    queue_count = 1  # the dispatcher is its one reader
    on_demand = False

    def __init__(self, client, cfg: Config, cwd: str, threads: int):
        self.client = client
        self.cfg = cfg
        self.cwd = cwd
        self.threads = threads
        self.dispatcher: Optional[Dispatcher] = None

    def start(self, core: Core) -> None:
        self.dispatcher = Dispatcher(self.client, self.cfg, self.cwd,
                                     core.put_queues.queues[0], core.stat_queue.put,
                                     core.stop, BATCHES_PER_THREAD * self.threads)
        core.stat_queue.put(Note("info", f"putters: the Dask cluster at {self.cfg.cluster}, "
                                 f"{len(self.client.nthreads())} workers, "
                                 f"{self.threads} threads"))

    def serve(self, core: Core) -> Ending:
        return Ending(lost=self.dispatcher.run(core))

    def cancel(self, core: Core) -> None:
        if self.dispatcher is not None:
            self.dispatcher.cancel()

    def close(self, core: Core) -> None:
        if self.dispatcher is not None:
            self.dispatcher.forget()
            # The dispatcher sits in reference cycles with Dask's loop: let go of the run's
            # queues here, so that they are freed (their semaphores unlinked) with the run,
            # not left to the resource tracker at exit.
            self.dispatcher.put_queue = self.dispatcher.tell = None
            self.dispatcher = None


@contextlib.contextmanager
def connected_putters(cfg: Config, client=None) -> Iterator[DaskPutters]:
    """The putters of the cluster of ``cfg.cluster`` (or of CLIENT's, a
    ``distributed.Client`` the caller has), its workers checked (see the module's
    docstring); the cluster and client made here are closed at the end."""
    cwd = os.getcwd()
    with _connected(cfg, client) as connected:
        threads = _check_workers(connected, cfg, cwd)
        yield DaskPutters(connected, cfg, cwd, threads)


@contextlib.contextmanager
def _connected(cfg: Config, client=None) -> Iterator[object]:
    """A client of the run's cluster: CLIENT as it is, or one made here (and closed at
    the end) of a new ``LocalCluster`` for ``local:N``, or of the scheduler at
    ``cfg.cluster``."""
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    address = cfg.cluster
    with contextlib.ExitStack() as made:
        made.enter_context(_dask_quiet())
        if address.startswith("local:"):
            try:
                # The threads of the cluster's event loop are made here and inherit the
                # block: the worker processes they start (and restart) ignore Ctrl+C.
                with signals_blocked(multiprocessing.get_context("spawn"), signal.SIGINT):
                    cluster = made.enter_context(LocalCluster(
                        n_workers=int(address[len("local:"):]), processes=True,
                        threads_per_worker=LOCAL_THREADS_PER_WORKER, host="127.0.0.1",
                        dashboard_address=None, silence_logs=logging.ERROR,
                        # no dashboard; its HTTP server still starts: not on port 8787
                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}))
            except Exception as err:  # noqa: BLE001 - said in one line
                raise ConfigError(f"cannot start a local Dask cluster: {err}") from err
            yield made.enter_context(Client(cluster, set_as_default=False))
            return
        _probe(address)
        try:
            connected = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ConfigError(f"no Dask scheduler answers at {address}: "
                              f"{' '.join(str(err).split())}") from err
        yield made.enter_context(connected)


@contextlib.contextmanager
def _dask_quiet() -> Iterator[None]:
    """Dask's own log lines in this process (tracebacks of a lost scheduler's reconnection
    attempts, a restarted worker) would interleave with the statter's output: s3pput says
    what matters itself, as per-file outcomes and errors of the run. (A caller's own
    client keeps its logging.)"""
    # Dask's logging configuration gives some of its loggers levels of their own.
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.split(".")[0] == "distributed"] + [logging.getLogger("distributed")]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in levels:
            logger.setLevel(level)


def _probe(address: str) -> None:
    """Fail at once, with the reason, when nothing listens at a tcp/tls ADDRESS (Dask
    itself would retry until its timeout)."""
    scheme, _, rest = address.partition("://")
    if scheme not in ("tcp", "tls"):
        return
    host, _, port = rest.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_SECONDS).close()
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise ConfigError(f"no Dask scheduler answers at {address}: {reason} (start one "
                          "with `dask scheduler`, or check the address)") from err


def _check_workers(client, cfg: Config, cwd: str) -> int:
    """Check every worker of CLIENT's cluster before the run (see the module's docstring);
    return their number of threads in all. Raises ``ConfigError``, naming the first worker
    that fails and how many others do."""
    address = cfg.cluster
    nthreads = client.nthreads()
    if not nthreads:
        raise ConfigError(f"the Dask scheduler at {address} has no workers: start "
                          f"`dask worker {address}` on each machine")
    expected = tuple((source, source_fingerprint(os.path.join(cwd, source)))
                     for source in cfg.sources)
    futures = {worker: client.submit(check_worker, cfg, cwd, expected, __version__,
                                     workers=[worker], allow_other_workers=False,
                                     pure=False, key=f"s3pput-check-{uuid.uuid4().hex}")
               for worker in nthreads}
    problems = []
    for worker, future in futures.items():
        try:
            host, problem = future.result(timeout=CHECK_SECONDS)
        except (Exception, CancelledError) as err:  # noqa: BLE001 - the worker's story
            host = "?"
            problem = (f"cannot run s3pput ({type(err).__name__}: {err}): install s3pput "
                       "(the same version) on every worker")
        if problem:
            problems.append(f"the Dask worker {worker} ({host}) {problem}")
    if problems:
        more = f" (and {len(problems) - 1} more of {len(futures)} workers)" \
            if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    return sum(nthreads.values())


def results_once(batch: Tuple[Job, ...], results) -> Tuple[Result, ...]:
    """Of RESULTS, at most one per job of BATCH, and none for a job not in it: whatever a
    worker (or a rerun) sent, the statter counts each file once."""
    expected = {job.seq for job in batch}
    once = []
    for result in results:
        if result.seq in expected:
            expected.discard(result.seq)
            once.append(result)
    return tuple(once)



class Dispatcher:
    """The putters' stand-in in the main process: the walker's batches in, one Dask task
    per batch, at most WINDOW in flight, each task's results out to the statter once."""

    def __init__(self, client, cfg: Config, cwd: str, put_queue, tell, stop, window: int):
        """TELL(message) sends to the statter; STOP is the run's stop event."""
        from distributed import as_completed

        self.client = client
        self.cfg = cfg
        self.cwd = cwd
        self.put_queue = put_queue
        self.tell = tell
        self.stop = stop
        self.window = max(2, window)
        self.run_id = uuid.uuid4().hex[:12]
        self.in_flight: Dict[object, Tuple[Job, ...]] = {}  # future -> its batch
        self.done = as_completed(loop=client.loop)  # the client need not be the default
        self.submitted = 0

    def run(self, core: Core) -> str:
        """Dispatch until the walk is over and every batch has come back, or the run stops;
        return "", or why the files without a result were lost (the scheduler went away).
        Raises ``FatalError`` if the statter dies."""
        walker = core.walker
        walk_over = False
        while True:
            if self.stop.is_set():
                self.cancel()
                return ""
            if self.client.status != "running":
                return self._lost()
            if not core.statter.is_alive():
                self.cancel()
                core.check_statter()
            busy = False
            while not walk_over and len(self.in_flight) < self.window:
                try:
                    batch = self.put_queue.get_nowait()
                except queue.Empty:
                    # A walker that has exited wrote all it ever will (it died if no STOP).
                    walk_over = walker.exitcode is not None
                    break
                busy = True
                if batch is STOP:
                    walk_over = True
                else:
                    self._submit(batch)
            for future in self.done.next_batch(block=False):
                busy = True
                lost = self._collect(future)
                if lost:
                    return lost
            if walk_over and not self.in_flight:
                return ""
            if not busy:
                time.sleep(POLL_SECONDS)

    def _submit(self, batch: Tuple[Job, ...]) -> None:
        future = self.client.submit(run_batch, self.run_id, self.cfg, self.cwd, batch,
                                    key=f"s3pput-{self.run_id}-{self.submitted}")
        self.submitted += 1
        self.in_flight[future] = batch
        self.done.add(future)

    def _collect(self, future) -> str:
        """Forward the results of a finished task; return why the run lost its files if
        the task could not tell (the scheduler went away), else ""."""
        batch = self.in_flight.pop(future, None)
        if batch is None:
            return ""  # forwarded already, or cancelled: a batch counts once
        fatal = ""
        try:
            results, fatal = future.result()
        except CancelledError:
            return self._lost()
        except Exception as err:  # noqa: BLE001 - the batch fails, the run goes on
            from distributed import KilledWorker

            why = "lost: the Dask workers that ran it died" if isinstance(err, KilledWorker) \
                else f"failed on a Dask worker: {type(err).__name__}: {err}"
            results = tuple(job.result(FAILED, why) for job in batch)
        self._forward(batch, results)
        if fatal:
            self.tell(Fatal(fatal))
            self.stop.set()
        return ""

    def _forward(self, batch: Tuple[Job, ...], results) -> None:
        once = results_once(batch, results)
        if once:
            self.tell(Results(once))

    def _lost(self) -> str:
        """The scheduler went away: nothing more comes back; the walk stops."""
        self.in_flight.clear()
        self.stop.set()
        return f"the connection to the Dask scheduler at {self.cfg.cluster} was lost"

    def cancel(self) -> None:
        """The run stops: cancel the tasks in flight, and stop the jobs under way."""
        futures = list(self.in_flight)
        self.in_flight.clear()
        if self.client.status != "running":
            return
        with contextlib.suppress(Exception):
            if futures:
                self.client.cancel(futures)
            self.client.run(stop_run, self.run_id, on_error="ignore")

    def forget(self) -> None:
        """At the end: every worker lets go of the run."""
        if self.client.status == "running":
            with contextlib.suppress(Exception):
                self.client.run(forget_run, self.run_id, on_error="ignore")
