"""Tests of the development tools, each run as its user runs it (a subprocess):
``python -m devtools.locals3`` (a local S3 server by hand) and ``python -m devtools.stress``
(``make test-stress``). What matters in both is that no process is left behind: each
process is told from a later one that reuses its pid by its start time (/proc)."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
from conftest import ROOT, make_s3_client

HANG_SECONDS = 120  # only ends a hang: weed answers within seconds


def start_time(pid: int) -> Optional[str]:
    """The start time of process PID (field 22 of /proc/PID/stat), None if it is gone or
    a zombie (it has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else fields[19]


def identity(pid: int) -> Tuple[int, str]:
    started = start_time(pid)
    assert started is not None, f"process {pid} is not running"
    return pid, started


def alive(process: Tuple[int, str]) -> bool:
    pid, started = process
    return start_time(pid) == started


def read_line(process: subprocess.Popen, what: str) -> str:
    """The next line PROCESS prints on stdout (a pipe); fail if it ends first."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(HANG_SECONDS):
            pytest.fail(f"no {what} within {HANG_SECONDS} s")
    line = process.stdout.readline()
    assert line, f"the process ended (exit {process.wait()}) before printing {what}"
    return line


def end(process: subprocess.Popen, others: List[Tuple[int, str]] = ()) -> None:
    """Clean up after a failed test: kill PROCESS's session and OTHERS, if still alive."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for other in others:
        if alive(other):
            os.kill(other[0], signal.SIGKILL)


# -- python -m devtools.locals3 ----------------------------------------------------------------

@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_locals3_by_hand_stops_its_server_on_sigterm_as_on_ctrl_c(signame):
    command = [sys.executable, "-m", "devtools.locals3", "by-hand"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    weed = []
    try:
        line = read_line(process, "endpoint line")
        found = re.match(r"SeaweedFS S3 on (http://127\.0\.0\.1:\d+) \(pid (\d+)\)", line)
        assert found, line
        endpoint, pid = found[1], int(found[2])
        weed.append(identity(pid))
        make_s3_client(endpoint).head_bucket(Bucket="by-hand")  # it serves, bucket made
        process.send_signal(getattr(signal, signame))
        assert process.wait(HANG_SECONDS) == 0
        assert not alive(weed[0]), f"weed (pid {pid}) still runs after {signame}"
    finally:
        end(process, weed)


# -- python -m devtools.stress -------------------------------------------------------------

INNER_TEST = """
import os, pathlib, time

def test_waits_for_the_go_then_fails():
    go = pathlib.Path(os.environ["STRESS_TEST_GO"])
    deadline = time.monotonic() + 120
    while not go.exists():
        assert time.monotonic() < deadline, "no go within 120 s"
        time.sleep(0.05)
    assert False, "fails on purpose"
"""


def start_stress(tmp_path: Path) -> Tuple[subprocess.Popen, List[Tuple[int, str]]]:
    """Start the stress runner on a one-test suite that waits for tmp_path/go (then
    fails); return it and its hogs once they run."""
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    command = [sys.executable, "-m", "devtools.stress", "--hogs", "2", "--",
               "-q", "-p", "no:cacheprovider", str(tmp_path / "test_inner.py")]
    env = {**os.environ, "STRESS_TEST_GO": str(tmp_path / "go")}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    line = read_line(process, "the stress runner's first line")
    found = re.match(r"stress: run 1 of 1, 2 CPU hogs \(pids (\d+), (\d+)\)", line)
    assert found, line
    hogs = [identity(int(pid)) for pid in found.groups()]
    return process, hogs


def children(pid: int) -> List[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(name))
    return found


def test_stress_stops_its_hogs_when_the_suite_fails(tmp_path):
    process, hogs = start_stress(tmp_path)
    try:
        assert all(alive(hog) for hog in hogs)
        (tmp_path / "go").touch()
        output = process.communicate(timeout=HANG_SECONDS)[0]
        assert process.returncode == 1, output
        assert "stress: run 1 FAILED" in output
        assert output.rstrip().endswith("stress: 0 of 1 runs in a row passed"), output
        assert not [hog for hog in hogs if alive(hog)]
    finally:
        end(process, hogs)


def test_stress_stops_its_hogs_and_the_suite_on_sigterm(tmp_path):
    process, hogs = start_stress(tmp_path)
    suite = []
    try:
        deadline = time.monotonic() + HANG_SECONDS
        while not suite:  # the suite (pytest) starts right after the line
            assert time.monotonic() < deadline, "no pytest child"
            suite = [(pid, started) for pid in children(process.pid)
                     if (started := start_time(pid)) and (pid, started) not in hogs]
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=HANG_SECONDS)[0]
        assert process.returncode == 130, output
        assert output.rstrip().endswith("stress: 0 of 1 runs in a row passed"), output
        assert not [p for p in hogs + suite if alive(p)]
    finally:
        end(process, hogs + suite)
