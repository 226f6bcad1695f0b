"""Where s3pput's putter processes spend their CPU on the small-file workload: one extra,
untimed s3pput run under py-spy (``record --subprocesses --format raw``), summarised as
the top functions by own time (the function itself is running) and by cumulative time
(the function is on the stack), over the samples of the putter processes only.

Samples are taken with ``--gil``: only the thread holding the GIL is sampled, so a sample
is a moment of Python CPU work (py-spy's own idle detection counts threads blocked in a
socket read or a ``Condition.wait`` as busy here, which would drown the CPU in waiting).
CPU spent in C code that releases the GIL (hashing large buffers, Pillow) is not seen;
for 2 KiB files it is negligible. Putter processes are told apart from the walker, the statter and the main
process by the ``putter_main`` frame that their stacks carry; the stacks of a putter's
upload threads belong to the same process id.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

from . import datasets, verify
from .peers import VENV_BIN

TOP = 15
RATE = 200  # samples per second
_LINE = re.compile(r":\d+\)$")
ROLES = (("putter", "putter_main"), ("walker", "walker_main"), ("statter", "statter_main"))


def py_spy(log=print) -> Tuple[Optional[str], str]:
    """The py-spy binary (installed into the virtualenv with pip if missing), or why not."""
    found = shutil.which("py-spy", path=VENV_BIN) or shutil.which("py-spy")
    if found:
        return found, ""
    log("  py-spy is missing: pip install py-spy (into the virtualenv)")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"],
                          capture_output=True, text=True)
    found = shutil.which("py-spy", path=VENV_BIN)
    if found:
        return found, ""
    return None, f"py-spy could not be installed: {done.stderr.strip()[-300:]}"


def _function(frame: str) -> str:
    """``Store.put (s3pput/store.py:231)`` -> ``Store.put (s3pput/store.py)``."""
    return _LINE.sub(")", frame)


def parse_raw(text: str) -> Dict[int, List[Tuple[List[str], int]]]:
    """{process id: [(frames root first, samples)]} from py-spy's raw (collapsed) output,
    where each stack starts with ``process PID:"cmdline"`` for every process from the
    root down to the one sampled."""
    stacks: Dict[int, List[Tuple[List[str], int]]] = collections.defaultdict(list)
    for line in text.splitlines():
        line = line.rstrip()
        if not line or " " not in line:
            continue
        body, _, count = line.rpartition(" ")
        try:
            samples = int(count)
        except ValueError:
            continue
        pid, frames = None, []
        for part in body.split(";"):
            match = re.match(r'process (\d+):', part)
            if match and not frames:
                pid = int(match.group(1))
            else:
                frames.append(part)
        if pid is not None:
            stacks[pid].append((frames, samples))
    return stacks


def summarise(stacks: Dict[int, List[Tuple[List[str], int]]], top: int = TOP) -> dict:
    roles: Dict[int, str] = {}
    for pid, entries in stacks.items():
        roles[pid] = "main"
        for role, marker in ROLES:
            if any(marker in f for frames, _ in entries for f in frames):
                roles[pid] = role
                break
    per_role = collections.Counter()
    own, cumulative = collections.Counter(), collections.Counter()
    putter_samples = 0
    for pid, entries in stacks.items():
        for frames, samples in entries:
            per_role[roles[pid]] += samples
            if roles[pid] != "putter" or not frames:
                continue
            putter_samples += samples
            own[_function(frames[-1])] += samples
            for name in {_function(f) for f in frames}:
                cumulative[name] += samples

    def table(counter):
        return [dict(function=name, samples=n,
                     percent=round(100.0 * n / max(1, putter_samples), 1))
                for name, n in counter.most_common(top)]

    return dict(rate_hz=RATE, samples_by_role=dict(per_role),
                putter_processes=sum(1 for r in roles.values() if r == "putter"),
                putter_samples=putter_samples,
                putter_cpu_s=round(putter_samples / RATE, 2),
                top_own=table(own), top_cumulative=table(cumulative))


def render(summary: dict) -> str:
    lines = [f"py-spy --gil, {summary['rate_hz']} Hz, samples by process role: "
             + ", ".join(f"{k} {v}" for k, v in sorted(summary["samples_by_role"].items())),
             f"putter processes: {summary['putter_processes']}, "
             f"{summary['putter_samples']} samples (~{summary['putter_cpu_s']} s holding "
             f"the GIL); the run took {summary.get('wall_s')} s wall, "
             f"{summary.get('cpu_s')} CPU s in all processes under py-spy"]
    for title, key in (("own time", "top_own"), ("cumulative time", "top_cumulative")):
        lines.append(f"top {len(summary[key])} functions of the putters by {title}:")
        for n, item in enumerate(summary[key], 1):
            lines.append(f"  {n:2}. {item['percent']:5.1f}%  {item['samples']:6}  "
                         f"{item['function']}")
    return "\n".join(lines)


def profile_small(ctx) -> dict:
    """Run s3pput on the small tree once under py-spy and summarise its putters."""
    from .workloads import PREFIX, s3pput_summary

    s = ctx.settings
    if not ctx.available(["s3pput"]):
        return dict(error="s3pput is not available")
    binary, why = py_spy(ctx.log)
    if not binary:
        return dict(error=why)
    source = datasets.small_tree(s.data_dir, s.small_files, s.small_dirs, s.small_size,
                                 log=ctx.log)
    bucket = ctx.fresh_bucket("profile", "s3pput")
    run_dir = ctx.run_dir("profile-s3pput")
    raw_path = os.path.join(run_dir, "py-spy.raw.txt")
    argv = [binary, "record", "--subprocesses", "--gil", "--format", "raw",
            "--rate", str(RATE),
            "--output", raw_path, "--"] + ctx.commands.cold("s3pput", source, bucket, PREFIX)
    measured = ctx.run(argv, run_dir)
    if measured.returncode != 0 or not os.path.exists(raw_path):
        return dict(error=f"py-spy failed (exit {measured.returncode}): "
                          f"{measured.stderr.strip()[-400:]}", argv=argv)
    with open(raw_path) as handle:
        raw = handle.read()
    summary = summarise(parse_raw(raw))
    files = len(datasets.files_under(source))
    check = verify.check_tree(ctx.client, bucket, PREFIX, source,
                              datasets.files_under(source), sample=5, seed=0)
    summary.update(argv=argv, wall_s=round(measured.wall, 3), cpu_s=round(measured.cpu, 2),
                   files=files,
                   check=check.detail, check_ok=check.ok,
                   s3pput_summary=s3pput_summary(measured), raw=raw)
    summary["text"] = render(summary)
    ctx.log(summary["text"])
    return summary
