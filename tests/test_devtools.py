"""Tests of the development tools, each run as its user runs it (a subprocess):
``python -m devtools.locals3`` (a local S3 server by hand). What matters is that no
process is left behind: each process is told from a later one that reuses its pid by its
start time (/proc)."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
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
