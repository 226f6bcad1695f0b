"""``make test-stress``: the whole test suite on a busy machine.

Runs ``python -m pytest -q tests`` (or the pytest arguments given after ``--``) with CPU
hogs running beside it: child processes that spin, one per ``--hogs`` (default 2, as many
as this machine's cores). A test that passes only when the machine is idle is a test that
depends on how fast the machine is; this is how such tests are found.

``--runs N`` runs the suite N times in a row (the hogs stay on) and stops at the first
failing run; the last line says how many runs in a row passed. The exit code is pytest's
(0 when every run passed).

The hogs are stopped by their process ids when the runs end, when a run fails, and on
Ctrl+C or SIGTERM; a hog also ends by itself as soon as its parent is gone (even after a
SIGKILL of this script), so none is ever left spinning.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent

# Spins until its parent (this script) is gone: then getppid() changes.
HOG = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(200_000):
        pass
"""


class Stopped(Exception):
    """SIGTERM (or SIGHUP) reached this script."""


def _raise_stopped(signum, frame):
    raise Stopped(signal.Signals(signum).name)


def start_hogs(count: int) -> List[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", HOG, str(os.getpid())],
                             stdin=subprocess.DEVNULL) for _ in range(count)]


def stop(processes: List[subprocess.Popen]) -> None:
    """Kill each of PROCESSES by its pid and reap it."""
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        process.wait()


def run_suite(pytest_args: List[str]) -> int:
    """One pytest run; on Ctrl+C or SIGTERM it is stopped as well (and the error re-raised)."""
    suite = subprocess.Popen([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT)
    try:
        return suite.wait()
    except BaseException:
        # Ctrl+C at a terminal reached pytest too; give it a moment to end cleanly.
        if suite.poll() is None:
            suite.send_signal(signal.SIGINT)
            try:
                suite.wait(30)
            except subprocess.TimeoutExpired:
                suite.kill()
                suite.wait()
        raise


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.stress",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--hogs", type=int, default=2, help="CPU hogs (default 2)")
    parser.add_argument("--runs", type=int, default=1, help="suite runs in a row (default 1)")
    parser.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                        help="arguments for pytest, after -- (default: -q tests)")
    args = parser.parse_args(argv)
    pytest_args = args.pytest_args or ["-q", "tests"]
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGHUP, _raise_stopped)
    hogs = start_hogs(args.hogs)
    passed, code = 0, 0
    try:
        for number in range(1, args.runs + 1):
            started = time.monotonic()
            print(f"stress: run {number} of {args.runs}, {args.hogs} CPU hogs "
                  f"(pids {', '.join(str(h.pid) for h in hogs)})", flush=True)
            code = run_suite(pytest_args)
            print(f"stress: run {number} {'passed' if code == 0 else 'FAILED'} "
                  f"in {time.monotonic() - started:.0f} s", flush=True)
            if code != 0:
                break
            passed += 1
    except (KeyboardInterrupt, Stopped) as why:
        print(f"stress: interrupted ({why or 'Ctrl+C'})", file=sys.stderr, flush=True)
        code = 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # nothing may cut the clean-up short
        stop(hogs)
    print(f"stress: {passed} of {args.runs} runs in a row passed", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
