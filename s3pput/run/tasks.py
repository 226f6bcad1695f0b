"""What a Dask worker runs for a run (``--cluster``): the tasks ``cluster`` submits.

Every task of a run that lands on a worker process goes to one ``Putter`` of that process
(``WorkerRun``, made by the run's first task there): the same job threads, ``Transfer``,
store client, limit of requests in flight and memory budget as a local putter process
(``putter.make_transfer``), so the same decisions, headers, thumbnails, ETags and fast
path; its threads and connections outlive each task. Nothing here imports Dask: the
functions are shipped to the workers by ``cluster``, which does.
"""

from __future__ import annotations

import hashlib
import os
import queue
import socket
import stat
import threading
from typing import Dict, List, Tuple

from .. import __version__
from ..config import Config
from ..errors import S3pputError
from ..jobs import STOP, Job, Result, Results
from .lifecycle import STOP_GRACE_SECONDS

TASK_POLL_SECONDS = 0.2  # how often a task waiting for its jobs looks at the run


class _Task:
    """The results of one task's jobs, as the worker's putter delivers them."""

    def __init__(self, jobs: Tuple[Job, ...]):
        self.left = {job.seq for job in jobs}
        self.results: List[Result] = []
        self.done = threading.Event()
        if not self.left:
            self.done.set()

    def add(self, result: Result) -> None:
        if result.seq in self.left:
            self.left.discard(result.seq)
            self.results.append(result)
            if not self.left:
                self.done.set()


class WorkerRun:
    """What one worker process keeps for one run: a ``Putter`` on a thread of its own,
    fed with the batches of the run's tasks on this worker, over the process's one
    ``Transfer`` (one store client; made here, on the run's first task, never shipped)."""

    def __init__(self, cfg: Config):
        from .putter import Putter, make_transfer

        self.stop = threading.Event()
        self.transfer, max_threads = make_transfer(cfg, self.stop)
        self.batches: "queue.Queue" = queue.Queue()
        self.tasks: Dict[int, _Task] = {}  # seq -> the task waiting for that job
        self.lock = threading.Lock()
        self.fatal = ""
        self.putter = Putter(self.transfer, self._deliver, self.stop, max_threads,
                             on_fatal=self._on_fatal)
        self.ended = threading.Event()
        threading.Thread(target=self._serve, daemon=True, name="s3pput-putter").start()

    def _serve(self) -> None:
        try:
            self.putter.serve(lambda timeout: self.batches.get(timeout=timeout),
                            STOP_GRACE_SECONDS - 1)
        finally:
            self.ended.set()

    def _on_fatal(self, text: str) -> None:
        self.fatal = self.fatal or text

    def _deliver(self, results: Results) -> None:
        with self.lock:
            for result in results.results:
                task = self.tasks.pop(result.seq, None)
                if task is not None:
                    task.add(result)

    def put_batch(self, jobs: Tuple[Job, ...]) -> Tuple[Tuple[Result, ...], str]:
        """Run JOBS on the putter; return their results once all are in (or, if the run
        stopped, those that are), and the fatal error that stopped it ("" if none)."""
        task = _Task(jobs)
        with self.lock:
            for job in jobs:
                self.tasks[job.seq] = task
        self.batches.put(jobs)
        while not task.done.wait(TASK_POLL_SECONDS):
            if self.ended.is_set():
                break  # stopped: the jobs not done get no result (the statter says so)
        with self.lock:
            for job in jobs:
                self.tasks.pop(job.seq, None)
        return tuple(task.results), self.fatal

    def close(self) -> None:
        self.stop.set()
        self.batches.put(STOP)
        if self.transfer.parts is not None:
            self.transfer.parts.shutdown(wait=False)


_RUNS: Dict[str, WorkerRun] = {}
_STOPPED: set = set()  # runs stopped on this worker (a late task must not start one again)
_RUNS_LOCK = threading.Lock()


def _worker_run(run_id: str, cfg: Config) -> WorkerRun:
    with _RUNS_LOCK:
        run = _RUNS.get(run_id)
        if run is None:
            run = _RUNS[run_id] = WorkerRun(cfg)
            if run_id in _STOPPED:
                run.stop.set()
        return run


def run_batch(run_id: str, cfg: Config, cwd: str, jobs: Tuple[Job, ...]
              ) -> Tuple[Tuple[Result, ...], str]:
    """The Dask task: run JOBS on this worker; return (their results, a fatal error or
    ""). Relative SOURCE paths are the user's: they are taken from CWD, the working
    directory of the main process (every worker sees the same paths)."""
    return _worker_run(run_id, cfg).put_batch(tuple(_located(job, cwd) for job in jobs))


def _located(job: Job, cwd: str) -> Job:
    if job.source.kind in ("file", "tar") and not os.path.isabs(job.source.path):
        return job._replace(source=job.source._replace(
            path=os.path.join(cwd, job.source.path)))
    return job


def stop_run(run_id: str) -> None:
    """Run on every worker (``Client.run``) when the run stops: no job starts any more."""
    with _RUNS_LOCK:
        _STOPPED.add(run_id)
        run = _RUNS.get(run_id)
    if run is not None:
        run.stop.set()


def forget_run(run_id: str) -> None:
    """Run on every worker at the end: let go of the run's putter, threads and client."""
    with _RUNS_LOCK:
        run = _RUNS.pop(run_id, None)
        _STOPPED.discard(run_id)
    if run is not None:
        run.close()


def source_fingerprint(path: str) -> str:
    """What a process sees at PATH, in words: enough to tell the same SOURCE from a
    missing one, an empty mount point or another tree at the same path."""
    try:
        info = os.stat(path)
        if not stat.S_ISDIR(info.st_mode):
            return f"a file of {info.st_size:,} bytes"
        names = sorted(os.listdir(path))
    except OSError as err:
        return f"nothing readable ({err.strerror or err})"
    digest = hashlib.sha1("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest()
    return f"a directory of {len(names):,} entries (names {digest[:10]})"


def check_worker(cfg: Config, cwd: str, expected: Tuple[Tuple[str, str], ...],
                 version: str) -> Tuple[str, str]:
    """The check a worker passes before the run: (its host name, what is wrong or "")."""
    host = socket.gethostname()
    if version != __version__:
        return host, (f"runs s3pput {__version__}, this machine {version}: install the "
                      "same version everywhere")
    for source, seen_here in expected:
        seen_there = source_fingerprint(os.path.join(cwd, source))
        if seen_there != seen_here:
            return host, (f"does not see SOURCE {source!r} as this machine does (here "
                          f"{seen_here}, there {seen_there}): every worker must see the "
                          "same files at the same path, e.g. the same network mount")
    from ..store import make_store

    try:
        if cfg.content_type == "magic":
            from ..checks import check_content_type

            check_content_type(cfg.content_type)
        store = make_store(cfg, pool_size=1)
        try:
            store.check_bucket()
        finally:
            store.close()
    except S3pputError as err:
        return host, f"cannot run the uploads: {err}"
    return host, ""
