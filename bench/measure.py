"""Running one command and measuring it: wall time, CPU seconds of the whole process tree,
and (on request) the peak memory of the tree, sampled from /proc.

CPU comes from ``getrusage(RUSAGE_CHILDREN)`` before and after: it covers the child and
every descendant it waited for (s3pput's walker, putters and statter are joined by its
main process), and nothing else, because the harness runs one command at a time and the
local server, also a child, is only reaped at the very end.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

SAMPLE_SECONDS = 0.05


@dataclass
class Measured:
    argv: List[str]
    returncode: Optional[int]  # None: killed after the timeout
    wall: float  # seconds
    cpu_user: float
    cpu_sys: float
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")
    peak_rss: Optional[int] = None  # bytes, sum of VmRSS over the process tree
    peak_pss: Optional[int] = None  # bytes, sum of Pss (shared pages counted once)
    peak_processes: int = 0
    server_cpu: float = float("nan")  # CPU seconds of the local server during the run
    # with a latency proxy in between: its CPU seconds and the connections it accepted
    proxy_cpu: Optional[float] = None
    proxy_connections: Optional[int] = None
    # [(pid, peak VmRSS bytes)] of each process of the tree, the root first, then its
    # descendants in order of process id (for a fork-only tree: order of start)
    process_peaks: List[tuple] = field(default_factory=list)

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys


def _children_map() -> Dict[int, List[int]]:
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: split after the last ")"
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid: int) -> List[int]:
    """PID and all its descendants alive now."""
    children = _children_map()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def _status_kib(pid: int, field_name: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(field_name):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeMemorySampler(threading.Thread):
    """Every 50 ms, the sum of VmRSS (and of Pss) over a process and its descendants;
    keeps the peaks."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self.per_process: Dict[int, int] = {}
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            tree = process_tree(self.pid)
            each = {p: _status_kib(p, b"VmRSS:") * 1024 for p in tree}
            for p, value in each.items():
                self.per_process[p] = max(self.per_process.get(p, 0), value)
            rss = sum(each.values())
            pss = sum(_pss_kib(p) for p in tree) * 1024
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, len(tree))
            self.samples += 1
            self._halt.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _rusage():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def _kill_tree(process: subprocess.Popen) -> None:
    """Kill the process group of a command this harness started (its own session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(argv: List[str], *, env: Dict[str, str], cwd: str, timeout: float,
        sample_memory: bool = False, out_dir: str) -> Measured:
    """Run ARGV to completion (or kill it after TIMEOUT seconds) and measure it. Its
    stdout and stderr go to files in OUT_DIR (no pipe for the harness to drain)."""
    os.makedirs(out_dir, exist_ok=True)
    out_path = os.path.join(out_dir, "stdout.txt")
    err_path = os.path.join(out_dir, "stderr.txt")
    user0, sys0 = _rusage()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        sampler = TreeMemorySampler(process.pid) if sample_memory else None
        if sampler:
            sampler.start()
        try:
            returncode: Optional[int] = process.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(process)
            process.wait()
            returncode = None
        except BaseException:  # Ctrl+C: the command must not outlive the harness
            _kill_tree(process)
            raise
        wall = time.perf_counter() - started
        if sampler:
            sampler.stop()
    user1, sys1 = _rusage()
    with open(out_path, errors="replace") as handle:
        stdout = handle.read()
    with open(err_path, errors="replace") as handle:
        stderr = handle.read()
    return Measured(argv, returncode, wall, user1 - user0, sys1 - sys0, stdout, stderr,
                    peak_rss=sampler.peak_rss if sampler else None,
                    peak_pss=sampler.peak_pss if sampler else None,
                    peak_processes=sampler.peak_processes if sampler else 0,
                    process_peaks=sorted(sampler.per_process.items(),
                                         key=lambda kv: (kv[0] != process.pid, kv[0]))
                    if sampler else [])


def time_to_first_line(argv: List[str], *, env: Dict[str, str], cwd: str, prefix: str,
                       timeout: float) -> Optional[float]:
    """Seconds from start until ARGV prints a line starting with PREFIX; then the command
    is interrupted (SIGINT, as a user's Ctrl+C) and reaped. None if no such line came."""
    env = dict(env, PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    found: Optional[float] = None
    timer = threading.Timer(timeout, _kill_tree, (process,))
    timer.start()
    try:
        for line in process.stdout:
            if line.decode(errors="replace").startswith(prefix):
                found = time.perf_counter() - started
                break
        process.send_signal(signal.SIGINT)
        # keep draining so that the child never blocks on a full pipe while stopping
        drain = threading.Thread(target=lambda: process.stdout.read(), daemon=True)
        drain.start()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            _kill_tree(process)
            process.wait()
        drain.join(5)
    finally:
        timer.cancel()
        if process.poll() is None:
            _kill_tree(process)
            process.wait()
    return found
