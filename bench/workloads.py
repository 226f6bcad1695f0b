"""The workloads: the five of issue 5 and, for the WAN runs of issue 9, image mode's
two layouts and (issue 19) a cold upload of 20,000 small files. Each takes the run's
``Context`` and returns a section for the report: its rows (one per contender, a tool
with a variant of its flags, or per tool and data set) with every run's measurements
(client CPU per file and per MiB, the spread of the runs) and check, plus anything else
worth keeping (floors, request counts).

Every measured run gets a fresh bucket (the reruns: one per contender, uploaded once
before measuring), contenders take turns in a rotating order so that none always goes
first, and a run counts only if its check passes; otherwise the row is FAILED. Behind a
latency proxy (``ctx.proxy``), a run must have gone through it, and the unmeasured first
uploads of the reruns go through it without delay.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from . import datasets, measure, report, verify
from .peers import Commands, Tool
from .settings import ROOT, Settings

PREFIX = "bench"
NAIVE = "naive"  # the naive image reference (bench/naive_images.py)
PEERS = ("s3pput", "s5cmd", "rclone", "aws")
MIB = 1 << 20
# Photo formats image mode is gaining (issue 18): while s3pput skips every one of them
# as "not an image", its row is "unsupported" (shown, not a failure); once it takes them,
# they are measured and checked like JPEG.
NEW_IMAGE_FORMATS = ("HEIC", "AVIF")
METRICS_SETTLE_SECONDS = 0.3  # let the server's counters catch up with the last answer


@dataclass
class Context:
    settings: Settings
    server: object  # devtools.locals3.LocalS3
    client: object  # the harness's own boto3 client, for checks
    tools: Dict[str, Tool]
    commands: Commands
    env: Dict[str, str]
    work_dir: str
    log: Callable[[str], None] = print
    proxy: Optional[object] = None  # bench.latency.LatencyProxy the tools connect to
    # set-up made once per endpoint and shared by the contexts of one session (see prepare)
    prepared: Dict[tuple, dict] = field(default_factory=dict)
    # numbers buckets and run directories; shared by the contexts of one session
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    # the sections measured so far at this endpoint and round trip (Session.run_workloads)
    sections: Dict[str, dict] = field(default_factory=dict)

    def available(self, names) -> List[str]:
        return [n for n in names if n in self.tools and self.tools[n].available]

    def contenders(self, names, peer_variants: bool = True) -> List[Tuple[str, str]]:
        """(tool, variant) for every variant of each available tool of NAMES; with
        PEER_VARIANTS false, the peers (not s3pput) only as configured."""
        return [(tool, variant) for tool in self.available(names)
                for variant in self.commands.variants(tool)
                [:None if peer_variants or tool == "s3pput" else 1]]

    def prepare(self, key: tuple, make: Callable[[], dict]) -> dict:
        """MAKE()'s result for KEY, made once per endpoint: a latency proxy keeps its
        endpoint for every round trip, so set-up such as a rerun's first upload (its
        bucket and s3pput's journal, which is per endpoint) serves them all."""
        key = (self.commands.endpoint, *key)
        if key not in self.prepared:
            self.prepared[key] = make()
        return self.prepared[key]

    def again(self, runs: List[dict], tool: Optional[str] = None) -> bool:
        """Whether a contender with these RUNS so far runs once more: not when its first
        run took longer than ``slow_run_seconds`` (a slow peer at a long round trip),
        unless TOOL is s3pput or the baseline, s5cmd, whose ratio is a target. (Image
        mode's layouts are compared with each other: one slow run shows the gap.)"""
        limit = self.settings.slow_run_seconds
        return (not runs or limit is None or tool in ("s3pput", "s5cmd")
                or runs[0]["wall_s"] <= limit)

    @contextlib.contextmanager
    def unthrottled(self):
        """Runs inside go through the proxy (same endpoint) without delay: for set-up
        that is not measured, such as a rerun's first upload."""
        if self.proxy is None:
            yield
            return
        rtt = self.proxy.rtt_ms
        self.proxy.set_rtt(0)
        try:
            yield
        finally:
            self.proxy.set_rtt(rtt)

    def fresh_bucket(self, workload: str, tool: str) -> str:
        name = f"{workload}-{tool}-{next(self.counter)}".lower().replace("_", "-")
        self.server.create_bucket(name)
        return name

    def discard(self, bucket: str) -> None:
        """Delete BUCKET with its objects once its run is checked. SeaweedFS gives every
        bucket a volume of its own and has a fixed number of them (78 on this machine's
        disk); only deleting a bucket gives its volume back. SeaweedFS deletes a bucket
        that still holds objects, with its volume, at once (0.4 s for 20,000 objects,
        where deleting them first takes 7 s); a store that refuses is emptied first."""
        try:
            try:
                self.client.delete_bucket(Bucket=bucket)
            except Exception:  # noqa: BLE001 - BucketNotEmpty on a strict store
                verify.empty_bucket(self.client, bucket)
                self.client.delete_bucket(Bucket=bucket)
        except Exception as err:  # noqa: BLE001 - only housekeeping
            self.log(f"    (could not delete bucket {bucket}: {err})")

    def run_dir(self, label: str) -> str:
        path = os.path.join(self.work_dir, "runs", f"{next(self.counter):04d}-{label}")
        os.makedirs(path)
        return path

    def run(self, argv: List[str], run_dir: str, *, state_dir: Optional[str] = None,
            sample_memory: bool = False, env: Optional[Dict[str, str]] = None
            ) -> measure.Measured:
        """Run one command with the tools' environment, in RUN_DIR (so that nothing, not
        even a ``.env`` file, is picked up from the checkout); s3pput's journal, when it
        keeps one, goes under STATE_DIR."""
        full_env = dict(env or self.env)
        full_env["XDG_STATE_HOME"] = state_dir or os.path.join(run_dir, "state")
        server_before = self.server_cpu()
        proxy_before = self.proxy.stats() if self.proxy else None
        measured = measure.run(argv, env=full_env, cwd=run_dir,
                               timeout=self.settings.run_timeout,
                               sample_memory=sample_memory, out_dir=run_dir)
        measured.server_cpu = self.server_cpu() - server_before
        if proxy_before is not None:
            proxy_after = self.proxy.stats()
            measured.proxy_cpu = proxy_after["cpu_s"] - proxy_before["cpu_s"]
            measured.proxy_connections = proxy_after["accepted"] - proxy_before["accepted"]
        return measured

    def server_cpu(self) -> float:
        """CPU seconds the local server has used so far (it shares the machine's cores
        with the tool under test, so its share bounds every tool's speed)."""
        try:
            with open(f"/proc/{self.server.process.pid}/stat", "rb") as handle:
                stat = handle.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            return float("nan")

    def requests(self, bucket: str) -> Dict[str, int]:
        try:
            return self.server.request_counts(bucket)
        except OSError:
            return {}


def label(tool: str, variant: str) -> str:
    """How a contender is named in logs and tables: ``s3pput --processes 8``."""
    return f"{tool} {variant}".strip()


def rotate(items: list, turn: int) -> list:
    if not items:
        return items
    turn %= len(items)
    return items[turn:] + items[:turn]


def diff_counts(before: Dict[str, int], after: Dict[str, int]) -> Dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(before) | set(after))
            if after.get(k, 0) - before.get(k, 0)}


def s3pput_summary(measured: measure.Measured) -> Optional[dict]:
    """The final JSON summary s3pput printed with --json (its last stdout line)."""
    for line in reversed(measured.stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def summary_problem(summary: Optional[dict], **expected) -> Optional[str]:
    if summary is None:
        return "no JSON summary on stdout"
    wrong = {k: (summary.get(k), v) for k, v in expected.items() if summary.get(k) != v}
    if wrong:
        return "summary says " + ", ".join(f"{k}={got} (expected {want})"
                                           for k, (got, want) in wrong.items())
    return None


def run_record(turn: int, bucket: str, measured: measure.Measured, check: verify.Check,
               value: float, *, problem: Optional[str] = None, **extra) -> dict:
    """One measured run, as kept in the results file."""
    ok = check.ok and measured.returncode == 0 and problem is None
    why = []
    if measured.returncode is None:
        why.append("killed after the timeout")
    elif measured.returncode != 0:
        why.append(f"exit code {measured.returncode}: "
                   + " | ".join(measured.stderr.strip().splitlines()[-3:])[:300])
    if problem:
        why.append(problem)
    if not check.ok:
        why.append(check.detail)
    if measured.proxy_connections == 0:
        ok = False
        why.append("no connection went through the latency proxy")
    record = dict(run=turn + 1, bucket=bucket, ok=ok, value=value,
                  wall_s=round(measured.wall, 4), cpu_s=round(measured.cpu, 4),
                  cpu_user_s=round(measured.cpu_user, 4), cpu_sys_s=round(measured.cpu_sys, 4),
                  server_cpu_s=round(measured.server_cpu, 3),
                  returncode=measured.returncode, check=check.detail,
                  failure="; ".join(why) or None)
    if measured.proxy_cpu is not None:
        record.update(proxy_cpu_s=round(measured.proxy_cpu, 3),
                      proxy_connections=measured.proxy_connections)
    record.update(extra)
    return record


def make_row(workload: str, tool: str, unit: str, runs: List[dict], *, variant: str = "",
             higher_is_better: bool = True, argv: Optional[List[str]] = None,
             files: Optional[int] = None, nbytes: Optional[int] = None, **extra) -> dict:
    """A table row: the medians of RUNS, or FAILED if any run failed its check.

    With FILES (and NBYTES, the bytes of those files), each run and the row get the
    client's CPU seconds per file and per MiB (``cpu_s_per_file``, ``cpu_s_per_mib``:
    the tool's whole process tree, from the kernel's accounting). With two runs or more,
    the row gets the spread of its figure over the runs that passed: ``spread``,
    max/min - 1 (0.08: the best run was 8% above the worst), with ``value_min`` and
    ``value_max``."""
    ok = bool(runs) and all(r["ok"] for r in runs)
    row = dict(workload=workload, tool=tool, variant=variant, unit=unit,
               higher_is_better=higher_is_better, status="ok" if ok else "FAILED",
               runs=runs, argv=argv)
    if files is not None:
        row["files"] = files
    if nbytes is not None:
        row["bytes"] = nbytes
    for r in runs:
        if files:
            r["cpu_s_per_file"] = round(r["cpu_s"] / files, 7)
        if nbytes:
            r["cpu_s_per_mib"] = round(r["cpu_s"] / (nbytes / MIB), 6)
    if runs:
        row.update({key: statistics.median(r[key] for r in runs)
                    for key in ("value", "wall_s", "cpu_s", "server_cpu_s", "proxy_cpu_s",
                                "cpu_s_per_file", "cpu_s_per_mib")
                    if key in runs[0]})
    values = [r["value"] for r in runs if r["ok"] and r.get("value")]
    if len(values) >= 2:
        row.update(spread=round(max(values) / min(values) - 1, 4),
                   value_min=min(values), value_max=max(values))
    if not ok:
        row["failure"] = next((r["failure"] for r in runs if not r["ok"]), "no run")
    row.update(extra)
    return row


def unavailable_row(workload: str, tool: Tool, unit: str, variant: str = "") -> dict:
    return dict(workload=workload, tool=tool.name, variant=variant, unit=unit,
                status="unavailable", failure=tool.unavailable, runs=[])


def left_out_row(workload: str, tool: str, unit: str, variant: str, why: str) -> dict:
    """A contender deliberately not run (too slow to be worth it), with the reason."""
    return dict(workload=workload, tool=tool, variant=variant, unit=unit,
                status="left out", failure=why, runs=[])


def _say(ctx: Context, tool: str, turn: int, record: dict, unit: str) -> None:
    state = "ok" if record["ok"] else f"FAILED: {record['failure']}"
    proxy = f", proxy CPU {record['proxy_cpu_s']:.2f} s" if "proxy_cpu_s" in record else ""
    ctx.log(f"    run {turn + 1} {tool:<8} {record['value']:>10.2f} {unit:<8} "
            f"wall {record['wall_s']:.2f} s, CPU {record['cpu_s']:.2f} s{proxy}  {state}")


def cold_upload_turn(ctx: Context, workload: str, tool: str, turn: int, argv, bucket: str,
                     source: str, relpaths, sample: int, rate) -> dict:
    """Run one cold upload of SOURCE into BUCKET, count its requests, check the bucket
    (and s3pput's own summary) and return the run's record; RATE(wall) is its figure."""
    before = ctx.requests(bucket)
    measured = ctx.run(argv, ctx.run_dir(f"{workload}-{tool}"))
    time.sleep(METRICS_SETTLE_SECONDS)
    requests = diff_counts(before, ctx.requests(bucket))
    check = verify.check_tree(ctx.client, bucket, PREFIX, source, relpaths,
                              sample=sample, seed=turn)
    ctx.discard(bucket)
    problem = None
    if tool == "s3pput":
        problem = summary_problem(s3pput_summary(measured), uploaded=len(relpaths),
                                  failed=0)
    return run_record(turn, bucket, measured, check, rate(measured.wall), problem=problem,
                      requests=requests)


# -- 1. small: many small files, cold ------------------------------------------------------

def warm_up(ctx: Context, source: str, contenders: List[Tuple[str, str]]) -> None:
    """``warmup_runs`` unmeasured cold uploads of SOURCE by each contender: the first
    uploads into a fresh server and a cold page cache are slower for whoever goes first."""
    for _ in range(ctx.settings.warmup_runs):
        for tool, variant in contenders:
            bucket = ctx.fresh_bucket("warmup", tool)
            measured = ctx.run(ctx.commands.cold(tool, source, bucket, PREFIX, variant),
                               ctx.run_dir(f"warmup-{tool}"))
            ctx.discard(bucket)
            ctx.log(f"    warm-up {label(tool, variant):<8} wall {measured.wall:.2f} s "
                    "(not counted)")


def cold_tree(ctx: Context, workload: str, files: int, dirs: int,
              leave_out: Callable[[str, str, int], Optional[str]] = lambda *_: None
              ) -> dict:
    """Every contender's cold upload of FILES small files in DIRS directories, taking
    turns; LEAVE_OUT(tool, variant, files) says why a contender is not run, or None."""
    s = ctx.settings
    source = datasets.small_tree(s.data_dir, files, dirs, s.small_size, log=ctx.log)
    relpaths = datasets.files_under(source)
    nbytes = len(relpaths) * s.small_size
    everyone = ctx.contenders(list(PEERS))
    why_not = {c: leave_out(c[0], c[1], len(relpaths)) for c in everyone}
    for (tool, variant), why in why_not.items():
        if why:
            ctx.log(f"    {label(tool, variant)}: left out: {why}")
    contenders = [c for c in everyone if not why_not[c]]
    runs: Dict[tuple, List[dict]] = {c: [] for c in contenders}
    argvs: Dict[tuple, List[str]] = {}
    warm_up(ctx, source, contenders)
    for turn in range(s.runs):
        for tool, variant in rotate(contenders, turn):
            if not ctx.again(runs[tool, variant], tool):
                continue
            bucket = ctx.fresh_bucket(workload, tool)
            argv = argvs[tool, variant] = ctx.commands.cold(tool, source, bucket, PREFIX,
                                                            variant)
            record = cold_upload_turn(ctx, workload, tool, turn, argv, bucket, source,
                                      relpaths, s.md5_sample,
                                      rate=lambda wall: len(relpaths) / wall)
            runs[tool, variant].append(record)
            _say(ctx, label(tool, variant), turn, record, "files/s")
    rows = [make_row(workload, t, "files/s", runs[t, v], variant=v, argv=argvs.get((t, v)),
                     files=len(relpaths), nbytes=nbytes)
            if not why_not[t, v] else left_out_row(workload, t, "files/s", v, why_not[t, v])
            for t, v in everyone]
    rows += [unavailable_row(workload, ctx.tools[t], "files/s") for t in ctx.tools
             if t in PEERS and not ctx.tools[t].available]
    return dict(title=f"{workload}: {len(relpaths):,} files x {s.small_size:,} B in "
                      f"{dirs} dirs, cold upload",
                files=len(relpaths), bytes=nbytes, baseline="s5cmd", rows=rows)


def small(ctx: Context) -> dict:
    return cold_tree(ctx, "small", ctx.settings.small_files, ctx.settings.small_dirs)


def many(ctx: Context) -> dict:
    """WAN (issue 19): the small workload at ten times the files (20,000), cold. s3pput
    and s5cmd always run; a peer runs at a round trip only if its rate in this round
    trip's small workload predicts at most ``many_peer_seconds`` for these files (rclone
    with its defaults and the AWS CLI would take minutes at 40 ms)."""
    s = ctx.settings
    limit = s.many_peer_seconds

    def leave_out(tool: str, variant: str, files: int) -> Optional[str]:
        if tool in ("s3pput", "s5cmd") or limit is None:
            return None
        small_rows = ctx.sections.get("small", {})
        row = report.find_row(ctx.sections, "small", tool, variant)
        if not row or row.get("status") != "ok" or not row.get("value"):
            return ("no figure of the small workload at this round trip to predict its "
                    "time from" + (f" ({row['status']})" if row else ""))
        seconds = files / row["value"]
        if seconds <= limit:
            return None
        shown = f"{seconds:,.0f}" if seconds >= 10 else f"{seconds:.1f}"
        return (f"{row['value']:,.0f} files/s on {small_rows.get('files', 0):,} files "
                f"here, so about {shown} s for {files:,} "
                f"(over {limit:g} s, --many-peer-seconds)")

    section = cold_tree(ctx, "many", s.many_files, s.many_dirs, leave_out)
    section["peer_limit_s"] = limit
    return section


# -- 2. rerun: the same tree again, nothing changed ----------------------------------------

def first_upload(ctx: Context, workload: str, name: str, argv: List[str], bucket: str,
                 state_dir: str, check: Callable[[int], verify.Check]) -> dict:
    """A rerun's unmeasured first upload: the contender's own incremental command on an
    empty BUCKET, as a user's first cron run would be (s3pput records its journal on the
    way), without delay behind a proxy; checked with CHECK(seed)."""
    before = ctx.requests(bucket)
    with ctx.unthrottled():
        measured = ctx.run(argv, ctx.run_dir(f"{workload}-first-{name}"), state_dir=state_dir)
    time.sleep(METRICS_SETTLE_SECONDS)
    record = run_record(-1, bucket, measured, check(99), measured.wall,
                        requests=diff_counts(before, ctx.requests(bucket)))
    ctx.log(f"    first upload {name:<8} wall {measured.wall:.2f} s  "
            f"{'ok' if record['ok'] else 'FAILED: ' + record['failure']}")
    return record


def rerun_turn(ctx: Context, workload: str, tool: str, turn: int, argv: List[str],
               bucket: str, state_dir: str, check: Callable[[int], verify.Check],
               initial: dict, files: int) -> dict:
    """One measured rerun over an unchanged tree: it must put nothing (server counters)
    and s3pput must say it skipped every file."""
    before = ctx.requests(bucket)
    measured = ctx.run(argv, ctx.run_dir(f"{workload}-{tool}"), state_dir=state_dir)
    time.sleep(METRICS_SETTLE_SECONDS)
    requests = diff_counts(before, ctx.requests(bucket))
    problem = None if initial["ok"] else f"the first upload failed: {initial['failure']}"
    if tool == "s3pput" and problem is None:
        problem = summary_problem(s3pput_summary(measured), uploaded=0, failed=0,
                                  skipped=files)
    if problem is None and requests.get("PUT"):
        problem = f"re-uploaded {requests['PUT']} objects of an unchanged tree"
    return run_record(turn, bucket, measured, check(turn), measured.wall, problem=problem,
                      requests=requests)


def rerun(ctx: Context) -> dict:
    s = ctx.settings
    source = datasets.small_tree(s.data_dir, s.small_files, s.small_dirs, s.small_size,
                                 log=ctx.log)
    relpaths = datasets.files_under(source)
    # s3pput's variants are rows; the peers' variants (concurrency) do not touch a rerun
    contenders = ctx.contenders(list(PEERS), peer_variants=False)

    def check(bucket: str):
        return lambda seed: verify.check_tree(ctx.client, bucket, PREFIX, source, relpaths,
                                              sample=s.md5_sample, seed=seed)

    def set_up(tool: str) -> dict:
        # the variants of a tool share one bucket and journal: a rerun changes nothing
        bucket = ctx.fresh_bucket("rerun", tool)
        state = os.path.join(ctx.work_dir, f"state-{bucket}")
        argv = ctx.commands.sync(tool, source, bucket, PREFIX)
        return dict(bucket=bucket, state=state,
                    initial=first_upload(ctx, "rerun", tool, argv, bucket, state,
                                         check(bucket)))

    prepared = {tool: ctx.prepare(("rerun", s.small_files, s.small_dirs, s.small_size, tool),
                                  lambda tool=tool: set_up(tool))
                for tool in dict.fromkeys(t for t, _ in contenders)}
    argvs = {(t, v): ctx.commands.sync(t, source, prepared[t]["bucket"], PREFIX, v)
             for t, v in contenders}
    runs: Dict[tuple, List[dict]] = {c: [] for c in contenders}
    for turn in range(s.runs):
        for c in rotate(contenders, turn):
            if not ctx.again(runs[c], c[0]):
                continue
            prep = prepared[c[0]]
            record = rerun_turn(ctx, "rerun", c[0], turn, argvs[c], prep["bucket"],
                                prep["state"], check(prep["bucket"]), prep["initial"],
                                len(relpaths))
            runs[c].append(record)
            _say(ctx, label(*c), turn, record, "s")
    rows = [make_row("rerun", t, "s", runs[t, v], variant=v, higher_is_better=False,
                     argv=argvs[t, v], files=len(relpaths),
                     nbytes=len(relpaths) * s.small_size,
                     first_upload=prepared[t]["initial"],
                     requests=runs[t, v][len(runs[t, v]) // 2]["requests"]
                     if runs[t, v] else {})
            for t, v in contenders]
    rows += [unavailable_row("rerun", ctx.tools[t], "s") for t in ctx.tools
             if t in PEERS and not ctx.tools[t].available]
    return dict(title=f"rerun: the same {len(relpaths):,} files, already uploaded, "
                      "nothing changed", files=len(relpaths),
                bytes=len(relpaths) * s.small_size, baseline="s5cmd", rows=rows)


# -- 3. photos: originals + thumbnails ------------------------------------------------------

def _floor(ctx: Context, what: str, source: str) -> Optional[dict]:
    """Median over the runs of one CPU floor (bench/floors.py), in its own process."""
    results = []
    env = dict(ctx.env, PYTHONPATH=ROOT)
    for _ in range(ctx.settings.runs):
        run_dir = ctx.run_dir(f"floor-{what}")
        measured = ctx.run([sys.executable, "-m", "bench.floors", what, source], run_dir,
                           env=env)
        if measured.returncode != 0:
            try:
                error = json.loads(measured.stdout.strip().splitlines()[-1])["error"]
            except (ValueError, KeyError, IndexError, TypeError):
                error = measured.stderr.strip()[-300:]
            ctx.log(f"    floor {what} failed: {error}")
            return dict(what=what, error=error)
        results.append(json.loads(measured.stdout.strip().splitlines()[-1]))
    return dict(what=what, images=results[0]["images"],
                cpu_s_per_image=statistics.median(r["cpu_s_per_image"] for r in results),
                runs=results)


def _not_read(fmt: str, summary: Optional[dict], count: int) -> Optional[str]:
    """Why s3pput's run of a NEW_IMAGE_FORMATS set counts as "unsupported" (it skipped
    every file as not an image, as image mode did before it read FMT), or None."""
    if fmt not in NEW_IMAGE_FORMATS or not summary:
        return None
    reasons = summary.get("skipped_reasons") or {}
    if summary.get("uploaded") == 0 and reasons.get("not an image") == count:
        return (f"s3pput skipped all {count} {fmt} files as 'not an image': image mode "
                f"does not read {fmt} yet (issue 18); measured once it does")
    return None


def photo_sets(s: Settings) -> List[Tuple[str, int, Tuple[int, int]]]:
    """(format, count, size) of each photo set of this run."""
    return [(fmt, count, tuple(size)) for fmt, count, size in (
        ("JPEG", s.photos_jpeg, s.photo_size), ("PNG", s.photos_png, s.photo_size),
        ("HEIC", s.photos_heic, s.phone_photo_size),
        ("AVIF", s.photos_avif, s.phone_photo_size)) if count > 0]


def photos(ctx: Context) -> dict:
    s = ctx.settings
    rows, floors, notes = [], {}, []
    contenders = ctx.available(["s3pput"]) + [NAIVE]
    for fmt, count, size in photo_sets(s):
        why_not = datasets.format_unavailable(fmt)
        if why_not:
            ctx.log(f"  {fmt}: left out: {why_not}")
            notes.append(f"{fmt} left out: {why_not}")
            rows += [dict(workload="photos", tool=who, variant=fmt, unit="images/s",
                          status="unavailable", failure=why_not, runs=[])
                     for who in contenders]
            continue
        source = datasets.photos(s.data_dir, count, fmt, size, log=ctx.log)
        names = sorted(os.listdir(source))
        nbytes = sum(os.path.getsize(os.path.join(source, n)) for n in names)
        ctx.log(f"  {fmt}: {len(names)} images, {nbytes / MIB:,.1f} MiB")
        runs: Dict[str, List[dict]] = {c: [] for c in contenders}
        argvs: Dict[str, List[str]] = {}
        unsupported: Optional[str] = None
        for turn in range(s.runs):
            for who in rotate(contenders, turn):
                if who == "s3pput" and unsupported:
                    continue  # one run shows it; the rest would show the same
                bucket = ctx.fresh_bucket(f"photos-{fmt}", who)
                run_dir = ctx.run_dir(f"photos-{fmt}-{who}")
                env = None
                if who == "s3pput":
                    argv = ctx.commands.images(source, bucket, PREFIX,
                                               os.path.join(run_dir, "mapping.csv"))
                    # image mode numbers the files of a directory 1, 2, 3... in the
                    # alphabetical order of their names, keeping the (lower-cased)
                    # extension (IMG_0001.HEIC -> 1.heic); the thumbnail has the same
                    # name in its folder
                    numbered = {f"{i + 1}{os.path.splitext(n)[1].lower()}": n
                                for i, n in enumerate(names)}
                else:
                    argv = [sys.executable, "-m", "bench.naive_images", "--endpoint-url",
                            ctx.server.endpoint, "--bucket", bucket, "--prefix", PREFIX,
                            "--workers", str(s.naive_workers), source]
                    env = dict(ctx.env, PYTHONPATH=ROOT)
                    numbered = {n: n for n in names}
                argvs[who] = argv
                measured = ctx.run(argv, run_dir, env=env)
                # originals by MD5 and with their Content-Type (image/heic, image/avif..)
                check = verify.check_images(
                    ctx.client, bucket, PREFIX, source,
                    {f"{PREFIX}/original/{k}": n for k, n in numbered.items()},
                    [f"{PREFIX}/thumbnail/{k}" for k in numbered], (200, 300),
                    sample=s.md5_sample, seed=turn)
                ctx.discard(bucket)
                problem = None
                if who == "s3pput":
                    summary = s3pput_summary(measured)
                    unsupported = _not_read(fmt, summary, len(names))
                    problem = unsupported or summary_problem(summary, uploaded=len(names),
                                                             failed=0)
                record = run_record(turn, bucket, measured, check,
                                    len(names) / measured.wall, problem=problem,
                                    cpu_s_per_image=round(measured.cpu / len(names), 5))
                runs[who].append(record)
                _say(ctx, who, turn, record, "images/s")
        for who in contenders:
            row = make_row("photos", who, "images/s", runs[who], variant=fmt,
                           argv=argvs.get(who), files=len(names), nbytes=nbytes,
                           size=list(size))
            if runs[who]:
                row["cpu_s_per_image"] = statistics.median(r["cpu_s_per_image"]
                                                           for r in runs[who])
            if who == "s3pput" and unsupported:
                # shown, not counted: no figure, no ratio, not a failure of the run
                row.update(status="unsupported", failure=unsupported, value=None,
                           cpu_s_per_image=None)
            rows.append(row)
        if "s3pput" in ctx.tools and not ctx.tools["s3pput"].available:
            rows.append(unavailable_row("photos", ctx.tools["s3pput"], "images/s", fmt))
        floors[fmt] = {what: _floor(ctx, what, source)
                       for what in ("decode", "naive-thumbnail", "s3pput-thumbnail")}
        for what, floor in floors[fmt].items():
            if floor and "cpu_s_per_image" in floor:
                ctx.log(f"    floor {fmt} {what:<17} {floor['cpu_s_per_image'] * 1000:.2f} "
                        "ms CPU/image")
    sets = ", ".join(f"{count} {fmt}" + (" q90" if fmt == "JPEG" else "")
                     + (f" {size[0]}x{size[1]}" if size != tuple(s.photo_size) else "")
                     for fmt, count, size in photo_sets(s))
    return dict(title=f"photos: originals + 200x300 thumbnails ({sets}; about "
                      f"{s.photo_size[0]}x{s.photo_size[1]} unless said; HEIC and AVIF "
                      "phone-like)",
                baseline=NAIVE, rows=rows, floors=floors, notes=notes,
                naive_workers=s.naive_workers)


# -- 4. large: a few big files, multipart --------------------------------------------------

def large(ctx: Context) -> dict:
    s = ctx.settings
    source = datasets.large_files(s.data_dir, s.large_files, s.large_mib, log=ctx.log)
    relpaths = datasets.files_under(source)
    total = sum(os.path.getsize(os.path.join(source, r)) for r in relpaths)
    tools = ctx.available(["s3pput", "s5cmd"])
    runs: Dict[str, List[dict]] = {t: [] for t in tools}
    argvs: Dict[str, List[str]] = {}
    for turn in range(s.runs):
        for tool in rotate(tools, turn):
            if not ctx.again(runs[tool], tool):
                continue
            bucket = ctx.fresh_bucket("large", tool)
            argv = argvs[tool] = ctx.commands.cold(tool, source, bucket, PREFIX)
            record = cold_upload_turn(ctx, "large", tool, turn, argv, bucket, source,
                                      relpaths, s.large_md5_sample,
                                      rate=lambda wall: total / wall / 1e6)
            runs[tool].append(record)
            _say(ctx, tool, turn, record, "MB/s")
    rows = [make_row("large", t, "MB/s", runs[t], argv=argvs.get(t), files=len(relpaths),
                     nbytes=total) for t in tools]
    rows += [unavailable_row("large", ctx.tools[t], "MB/s") for t in ("s3pput", "s5cmd")
             if t in ctx.tools and not ctx.tools[t].available]
    return dict(title=f"large: {len(relpaths)} files x {s.large_mib} MiB, multipart",
                bytes=total, baseline="s5cmd", rows=rows)


# -- 5. walk: a huge tree of empty files, dry run ------------------------------------------

def walk(ctx: Context) -> dict:
    s = ctx.settings
    rows = []
    if not ctx.available(["s3pput"]):
        missing = ctx.tools.get("s3pput") or Tool("s3pput", unavailable="not selected")
        return dict(title="walk", rows=[unavailable_row("walk", missing, "files/s")])
    for files, dirs in s.walk_sizes:
        source = datasets.walk_tree(s.data_dir, files, dirs, log=ctx.log)
        bucket = ctx.fresh_bucket("walk", "s3pput")
        argv = ctx.commands.walk(source, bucket)
        runs = []
        for turn in range(s.walk_runs):
            measured = ctx.run(argv, ctx.run_dir(f"walk-{files}"), sample_memory=True)
            problem = summary_problem(s3pput_summary(measured), walked=files,
                                      uploaded=files, failed=0, dry_run=True)
            # a dry run writes nothing: the check is that the bucket is still empty
            found = verify.listing(ctx.client, bucket, "")
            check = verify.Check(not found, "bucket still empty" if not found else
                                 f"a dry run wrote {len(found)} objects", len(found))
            record = run_record(turn, bucket, measured, check, files / measured.wall,
                                problem=problem,
                                us_per_file=round(measured.wall / files * 1e6, 3),
                                peak_rss_mb=round(measured.peak_rss / 1e6, 1),
                                peak_pss_mb=round(measured.peak_pss / 1e6, 1),
                                processes=measured.peak_processes,
                                process_peaks_mb=[round(rss / 1e6, 1) for _, rss
                                                  in measured.process_peaks])
            runs.append(record)
            _say(ctx, "s3pput", turn, record, "files/s")
            ctx.log(f"      peak memory of the process tree: RSS sum "
                    f"{record['peak_rss_mb']} MB, PSS sum {record['peak_pss_mb']} MB "
                    f"({record['processes']} processes; each one's peak RSS, main first: "
                    f"{record['process_peaks_mb']} MB)")
        first = measure.time_to_first_line(
            ctx.commands.walk(source, bucket, quiet=False),
            env=dict(ctx.env, XDG_STATE_HOME=os.path.join(ctx.work_dir, "walk-state")),
            cwd=ctx.run_dir(f"walk-first-{files}"), prefix="would upload",
            timeout=min(120.0, s.run_timeout))
        ctx.log(f"    first decision (first dry-run plan line) after "
                f"{'?' if first is None else f'{first:.2f}'} s")
        row = make_row("walk", "s3pput", "files/s", runs, variant=f"{files:,} files",
                       argv=argv, files=files, dirs=dirs,
                       first_decision_s=None if first is None else round(first, 3))
        row["us_per_file"] = statistics.median(r["us_per_file"] for r in runs)
        row["process_peaks_mb"] = max((r["process_peaks_mb"] for r in runs),
                                      key=lambda peaks: sum(peaks))
        for key in ("peak_rss_mb", "peak_pss_mb", "processes"):  # the worst run's peak
            row[key] = max(r[key] for r in runs)
        rows.append(row)
    # The cost of the extra files between consecutive sizes, free of the fixed start-up
    # cost (imports, bucket check, process start) that dominates small trees.
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["files"])
    marginal = [dict(from_files=a["files"], to_files=b["files"],
                     us_per_extra_file=round((b["wall_s"] - a["wall_s"])
                                             / (b["files"] - a["files"]) * 1e6, 3))
                for a, b in zip(ok, ok[1:])]
    return dict(title="walk: s3pput --dry-run --put stupid -q over trees of empty files",
                rows=rows, marginal=marginal)


# -- 6. images (WAN): the same JPEGs in many small folders and in one big one ------------

def _image_layout(ctx: Context, folders: int, per_folder: int) -> dict:
    """A layout's source tree and the keys image mode must give it: in each folder the
    images numbered 1, 2, 3... in name order, a thumbnail of the same name beside."""
    s = ctx.settings
    source = datasets.image_tree(s.data_dir, folders, per_folder, tuple(s.image_size),
                                 log=ctx.log)
    originals: Dict[str, str] = {}
    by_folder: Dict[str, List[str]] = {}
    for rel in datasets.files_under(source):
        by_folder.setdefault(os.path.dirname(rel), []).append(rel)
    for folder, rels in by_folder.items():
        for number, rel in enumerate(sorted(rels), 1):
            ext = os.path.splitext(rel)[1].lower()
            originals["/".join(filter(None, (PREFIX, folder, "original", f"{number}{ext}")))] \
                = rel
    thumbnails = [k.replace("/original/", "/thumbnail/") for k in originals]
    return dict(name=f"{folders} x {per_folder}", folders=folders, per_folder=per_folder,
                source=source, originals=originals, thumbnails=thumbnails,
                bytes=sum(os.path.getsize(os.path.join(source, rel))
                          for rel in originals.values()))


def _time_ratios(rows: List[dict], reference: dict) -> None:
    """Each row's time as a multiple of REFERENCE's (median of the same turns' ratios)."""
    theirs = {r["run"]: r["value"] for r in reference["runs"]}
    for row in rows:
        pairs = [r["value"] / theirs[r["run"]] for r in row["runs"]
                 if r["run"] in theirs and theirs[r["run"]]]
        ok = row["status"] == "ok" and reference["status"] == "ok" and pairs
        row["time_ratio"] = round(statistics.median(pairs), 3) if ok else None


def images(ctx: Context) -> dict:
    """s3pput --images over the same JPEGs in each of ``image_layouts`` (by default 100
    folders of 2 and 1 folder of 200): cold (``--put stupid --no-state``) and unchanged
    rerun (``--put update`` with its journal). What a folder costs shows as the time of
    many folders against one."""
    s = ctx.settings
    if not ctx.available(["s3pput"]):
        missing = ctx.tools.get("s3pput") or Tool("s3pput", unavailable="not selected")
        return dict(title="images", rows=[unavailable_row("images", missing, "s")])
    layouts = [_image_layout(ctx, folders, per) for folders, per in s.image_layouts]

    def check(layout: dict, bucket: str):
        return lambda seed: verify.check_images(
            ctx.client, bucket, PREFIX, layout["source"], layout["originals"],
            layout["thumbnails"], (200, 300), sample=s.md5_sample, seed=seed)

    cold_runs: Dict[str, List[dict]] = {lay["name"]: [] for lay in layouts}
    warm_runs: Dict[str, List[dict]] = {lay["name"]: [] for lay in layouts}
    argvs: Dict[tuple, List[str]] = {}
    for turn in range(s.runs):
        for layout in rotate(layouts, turn):
            name, count = layout["name"], len(layout["originals"])
            if not ctx.again(cold_runs[name]):
                continue
            bucket = ctx.fresh_bucket("images", "cold")
            run_dir = ctx.run_dir("images-cold")
            argv = argvs["cold", name] = ctx.commands.images(
                layout["source"], bucket, PREFIX, os.path.join(run_dir, "mapping.csv"))
            measured = ctx.run(argv, run_dir)
            problem = summary_problem(s3pput_summary(measured), uploaded=count, failed=0)
            checked = check(layout, bucket)(turn)
            ctx.discard(bucket)
            record = run_record(turn, bucket, measured, checked, measured.wall,
                                problem=problem)
            cold_runs[name].append(record)
            _say(ctx, f"cold {name}", turn, record, "s")
    def set_up(layout: dict) -> dict:
        bucket = ctx.fresh_bucket("images", "rerun")
        state = os.path.join(ctx.work_dir, f"state-{bucket}")
        argv = ctx.commands.images(layout["source"], bucket, PREFIX,
                                   os.path.join(ctx.work_dir, f"{bucket}.csv"), put="update")
        return dict(bucket=bucket, state=state, argv=argv,
                    initial=first_upload(ctx, "images", layout["name"], argv, bucket, state,
                                         check(layout, bucket)))

    prepared = {lay["name"]: ctx.prepare(("images", lay["source"]),
                                         lambda lay=lay: set_up(lay)) for lay in layouts}
    for turn in range(s.runs):
        for layout in rotate(layouts, turn):
            name = layout["name"]
            if not ctx.again(warm_runs[name]):
                continue
            prep = prepared[name]
            argvs["rerun", name] = prep["argv"]
            record = rerun_turn(ctx, "images", "s3pput", turn, prep["argv"], prep["bucket"],
                                prep["state"], check(layout, prep["bucket"]),
                                prep["initial"], len(layout["originals"]))
            warm_runs[name].append(record)
            _say(ctx, f"rerun {name}", turn, record, "s")
    rows = []
    reference = min(layouts, key=lambda lay: lay["folders"])["name"]
    for phase, runs in (("cold", cold_runs), ("rerun", warm_runs)):
        phase_rows = [make_row("images", "s3pput", "s", runs[lay["name"]],
                               variant=f"{phase}, {lay['name']}", higher_is_better=False,
                               argv=argvs.get((phase, lay["name"])), phase=phase,
                               layout=lay["name"], images=len(lay["originals"]),
                               files=len(lay["originals"]), nbytes=lay["bytes"])
                      for lay in layouts]
        _time_ratios(phase_rows, next(r for r in phase_rows if r["layout"] == reference))
        rows += phase_rows
    return dict(title=f"images: s3pput --images, the same JPEGs "
                      f"({s.image_size[0]}x{s.image_size[1]}) as folders x images: "
                      + ", ".join(lay["name"] for lay in layouts),
                reference_layout=reference, rows=rows)


WORKLOADS = dict(small=small, rerun=rerun, photos=photos, large=large, walk=walk)
WAN_WORKLOADS = dict(small=small, rerun=rerun, large=large, images=images, many=many)
