"""The five workloads of issue 5. Each takes the run's ``Context`` and returns a section
for the report: its rows (one per tool, or per tool and variant) with every run's
measurements and check, plus anything else worth keeping (floors, request counts).

Every measured run gets a fresh bucket (the rerun workload: one per tool, uploaded once
before measuring), tools take turns in a rotating order so that none always goes first,
and a run counts only if its check passes; otherwise the row is FAILED.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from . import datasets, measure, verify
from .peers import Commands, Tool
from .settings import ROOT, Settings

PREFIX = "bench"
NAIVE = "naive"  # the naive image reference (bench/naive_images.py)
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
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def available(self, names) -> List[str]:
        return [n for n in names if n in self.tools and self.tools[n].available]

    def fresh_bucket(self, workload: str, tool: str) -> str:
        name = f"{workload}-{tool}-{next(self._counter)}".lower().replace("_", "-")
        self.server.create_bucket(name)
        return name

    def run_dir(self, label: str) -> str:
        path = os.path.join(self.work_dir, "runs", f"{next(self._counter):04d}-{label}")
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
        measured = measure.run(argv, env=full_env, cwd=run_dir,
                               timeout=self.settings.run_timeout,
                               sample_memory=sample_memory, out_dir=run_dir)
        measured.server_cpu = self.server_cpu() - server_before
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


def rotate(items: List[str], turn: int) -> List[str]:
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
    record = dict(run=turn + 1, bucket=bucket, ok=ok, value=value,
                  wall_s=round(measured.wall, 4), cpu_s=round(measured.cpu, 4),
                  cpu_user_s=round(measured.cpu_user, 4), cpu_sys_s=round(measured.cpu_sys, 4),
                  server_cpu_s=round(measured.server_cpu, 3),
                  returncode=measured.returncode, check=check.detail,
                  failure="; ".join(why) or None)
    record.update(extra)
    return record


def make_row(workload: str, tool: str, unit: str, runs: List[dict], *, variant: str = "",
             higher_is_better: bool = True, argv: Optional[List[str]] = None,
             **extra) -> dict:
    """A table row: the medians of RUNS, or FAILED if any run failed its check."""
    ok = bool(runs) and all(r["ok"] for r in runs)
    row = dict(workload=workload, tool=tool, variant=variant, unit=unit,
               higher_is_better=higher_is_better, status="ok" if ok else "FAILED",
               runs=runs, argv=argv)
    if runs:
        row.update(value=statistics.median(r["value"] for r in runs),
                   wall_s=statistics.median(r["wall_s"] for r in runs),
                   cpu_s=statistics.median(r["cpu_s"] for r in runs),
                   server_cpu_s=statistics.median(r["server_cpu_s"] for r in runs))
    if not ok:
        row["failure"] = next((r["failure"] for r in runs if not r["ok"]), "no run")
    row.update(extra)
    return row


def unavailable_row(workload: str, tool: Tool, unit: str, variant: str = "") -> dict:
    return dict(workload=workload, tool=tool.name, variant=variant, unit=unit,
                status="unavailable", failure=tool.unavailable, runs=[])


def _say(ctx: Context, tool: str, turn: int, record: dict, unit: str) -> None:
    state = "ok" if record["ok"] else f"FAILED: {record['failure']}"
    ctx.log(f"    run {turn + 1} {tool:<8} {record['value']:>10.2f} {unit:<8} "
            f"wall {record['wall_s']:.2f} s, CPU {record['cpu_s']:.2f} s  {state}")


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
    problem = None
    if tool == "s3pput":
        problem = summary_problem(s3pput_summary(measured), uploaded=len(relpaths),
                                  failed=0)
    return run_record(turn, bucket, measured, check, rate(measured.wall), problem=problem,
                      requests=requests)


# -- 1. small: many small files, cold ------------------------------------------------------

def small(ctx: Context) -> dict:
    s = ctx.settings
    source = datasets.small_tree(s.data_dir, s.small_files, s.small_dirs, s.small_size,
                                 log=ctx.log)
    relpaths = datasets.files_under(source)
    tools = ctx.available(["s3pput", "s5cmd", "rclone", "aws"])
    runs: Dict[str, List[dict]] = {t: [] for t in tools}
    argvs: Dict[str, List[str]] = {}
    for _ in range(s.warmup_runs):
        for tool in tools:
            bucket = ctx.fresh_bucket("warmup", tool)
            measured = ctx.run(ctx.commands.cold(tool, source, bucket, PREFIX),
                               ctx.run_dir(f"warmup-{tool}"))
            ctx.log(f"    warm-up {tool:<8} wall {measured.wall:.2f} s (not counted)")
    for turn in range(s.runs):
        for tool in rotate(tools, turn):
            bucket = ctx.fresh_bucket("small", tool)
            argv = argvs[tool] = ctx.commands.cold(tool, source, bucket, PREFIX)
            record = cold_upload_turn(ctx, "small", tool, turn, argv, bucket, source,
                                      relpaths, s.md5_sample,
                                      rate=lambda wall: len(relpaths) / wall)
            runs[tool].append(record)
            _say(ctx, tool, turn, record, "files/s")
    rows = [make_row("small", t, "files/s", runs[t], argv=argvs.get(t)) for t in tools]
    rows += [unavailable_row("small", ctx.tools[t], "files/s") for t in ctx.tools
             if t in ("s3pput", "s5cmd", "rclone", "aws") and not ctx.tools[t].available]
    return dict(title=f"small: {len(relpaths):,} files x {s.small_size:,} B in "
                      f"{s.small_dirs} dirs, cold upload",
                files=len(relpaths), baseline="s5cmd", rows=rows)


# -- 2. rerun: the same tree again, nothing changed ----------------------------------------

def rerun(ctx: Context) -> dict:
    s = ctx.settings
    source = datasets.small_tree(s.data_dir, s.small_files, s.small_dirs, s.small_size,
                                 log=ctx.log)
    relpaths = datasets.files_under(source)
    tools = ctx.available(["s3pput", "s5cmd", "rclone", "aws"])
    buckets, states, initial, argvs = {}, {}, {}, {}
    runs: Dict[str, List[dict]] = {t: [] for t in tools}
    for tool in tools:
        # The first upload is the tool's own incremental command on an empty bucket, as a
        # user's first cron run would be; s3pput records its journal on the way.
        buckets[tool] = ctx.fresh_bucket("rerun", tool)
        states[tool] = os.path.join(ctx.work_dir, f"state-{tool}")
        argvs[tool] = ctx.commands.sync(tool, source, buckets[tool], PREFIX)
        before = ctx.requests(buckets[tool])
        measured = ctx.run(argvs[tool], ctx.run_dir(f"rerun-first-{tool}"),
                           state_dir=states[tool])
        time.sleep(METRICS_SETTLE_SECONDS)
        check = verify.check_tree(ctx.client, buckets[tool], PREFIX, source, relpaths,
                                  sample=s.md5_sample, seed=99)
        initial[tool] = run_record(-1, buckets[tool], measured, check,
                                   measured.wall,
                                   requests=diff_counts(before, ctx.requests(buckets[tool])))
        ctx.log(f"    first upload {tool:<8} wall {measured.wall:.2f} s  "
                f"{'ok' if initial[tool]['ok'] else 'FAILED: ' + initial[tool]['failure']}")
    for turn in range(s.runs):
        for tool in rotate(tools, turn):
            bucket = buckets[tool]
            before = ctx.requests(bucket)
            measured = ctx.run(argvs[tool], ctx.run_dir(f"rerun-{tool}"),
                               state_dir=states[tool])
            time.sleep(METRICS_SETTLE_SECONDS)
            requests = diff_counts(before, ctx.requests(bucket))
            check = verify.check_tree(ctx.client, bucket, PREFIX, source, relpaths,
                                      sample=s.md5_sample, seed=turn)
            problem = None if initial[tool]["ok"] else \
                f"the first upload failed: {initial[tool]['failure']}"
            if tool == "s3pput" and problem is None:
                problem = summary_problem(s3pput_summary(measured), uploaded=0, failed=0,
                                          skipped=len(relpaths))
            if problem is None and requests.get("PUT"):
                problem = f"re-uploaded {requests['PUT']} objects of an unchanged tree"
            record = run_record(turn, bucket, measured, check, measured.wall,
                                problem=problem, requests=requests)
            runs[tool].append(record)
            _say(ctx, tool, turn, record, "s")
    rows = [make_row("rerun", t, "s", runs[t], higher_is_better=False, argv=argvs[t],
                     first_upload=initial[t],
                     requests=runs[t][len(runs[t]) // 2]["requests"] if runs[t] else {})
            for t in tools]
    rows += [unavailable_row("rerun", ctx.tools[t], "s") for t in ctx.tools
             if t in ("s3pput", "s5cmd", "rclone", "aws") and not ctx.tools[t].available]
    return dict(title=f"rerun: the same {len(relpaths):,} files, already uploaded, "
                      "nothing changed", files=len(relpaths), baseline="s5cmd", rows=rows)


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
            ctx.log(f"    floor {what} failed: {measured.stderr.strip()[-300:]}")
            return dict(error=measured.stderr.strip()[-300:])
        results.append(json.loads(measured.stdout.strip().splitlines()[-1]))
    return dict(what=what, images=results[0]["images"],
                cpu_s_per_image=statistics.median(r["cpu_s_per_image"] for r in results),
                runs=results)


def photos(ctx: Context) -> dict:
    s = ctx.settings
    sets = [("JPEG", s.photos_jpeg), ("PNG", s.photos_png)]
    rows, floors = [], {}
    contenders = ctx.available(["s3pput"]) + [NAIVE]
    for fmt, count in sets:
        if count <= 0:
            continue
        source = datasets.photos(s.data_dir, count, fmt, tuple(s.photo_size), log=ctx.log)
        names = sorted(os.listdir(source))
        ctx.log(f"  {fmt}: {len(names)} images")
        runs: Dict[str, List[dict]] = {c: [] for c in contenders}
        argvs: Dict[str, List[str]] = {}
        for turn in range(s.runs):
            for who in rotate(contenders, turn):
                bucket = ctx.fresh_bucket(f"photos-{fmt}", who)
                run_dir = ctx.run_dir(f"photos-{fmt}-{who}")
                env = None
                if who == "s3pput":
                    argv = ctx.commands.images(source, bucket, PREFIX,
                                               os.path.join(run_dir, "mapping.csv"))
                    # image mode numbers the files of a directory 1, 2, 3... in the
                    # alphabetical order of their names, keeping the (lower-cased)
                    # extension; the thumbnail has the same name in its folder
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
                check = verify.check_images(
                    ctx.client, bucket, PREFIX, source,
                    {f"{PREFIX}/original/{k}": n for k, n in numbered.items()},
                    [f"{PREFIX}/thumbnail/{k}" for k in numbered], (200, 300),
                    sample=s.md5_sample, seed=turn)
                problem = None
                if who == "s3pput":
                    problem = summary_problem(s3pput_summary(measured),
                                              uploaded=len(names), failed=0)
                record = run_record(turn, bucket, measured, check,
                                    len(names) / measured.wall, problem=problem,
                                    cpu_s_per_image=round(measured.cpu / len(names), 5))
                runs[who].append(record)
                _say(ctx, who, turn, record, "images/s")
        for who in contenders:
            row = make_row("photos", who, "images/s", runs[who], variant=fmt,
                           argv=argvs.get(who))
            if runs[who]:
                row["cpu_s_per_image"] = statistics.median(r["cpu_s_per_image"]
                                                           for r in runs[who])
            rows.append(row)
        if "s3pput" in ctx.tools and not ctx.tools["s3pput"].available:
            rows.append(unavailable_row("photos", ctx.tools["s3pput"], "images/s", fmt))
        floors[fmt] = {what: _floor(ctx, what, source)
                       for what in ("decode", "naive-thumbnail", "s3pput-thumbnail")}
        for what, floor in floors[fmt].items():
            if floor and "cpu_s_per_image" in floor:
                ctx.log(f"    floor {fmt} {what:<17} {floor['cpu_s_per_image'] * 1000:.2f} "
                        "ms CPU/image")
    return dict(title=f"photos: originals + 200x300 thumbnails ({s.photos_jpeg} JPEG q90, "
                      f"{s.photos_png} PNG, about {s.photo_size[0]}x{s.photo_size[1]})",
                baseline=NAIVE, rows=rows, floors=floors,
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
            bucket = ctx.fresh_bucket("large", tool)
            argv = argvs[tool] = ctx.commands.cold(tool, source, bucket, PREFIX)
            record = cold_upload_turn(ctx, "large", tool, turn, argv, bucket, source,
                                      relpaths, s.large_md5_sample,
                                      rate=lambda wall: total / wall / 1e6)
            runs[tool].append(record)
            _say(ctx, tool, turn, record, "MB/s")
            try:
                verify.empty_bucket(ctx.client, bucket)  # give the disk back
            except Exception as err:  # noqa: BLE001 - only housekeeping
                ctx.log(f"    (could not empty {bucket}: {err})")
    rows = [make_row("large", t, "MB/s", runs[t], argv=argvs.get(t)) for t in tools]
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


WORKLOADS = dict(small=small, rerun=rerun, photos=photos, large=large, walk=walk)
