"""Which ``--processes``/``--inflight`` suits s3pput on this machine: the small workload
with several s3pput settings and s5cmd, on one server, taking turns, median of the runs.

    python -m bench.sweep [--runs 5] [--settings 2x8,2x16,3x8,3x16,4x8]

(``PxI`` = ``--processes P --inflight I``; ``default`` = s3pput's own defaults). Prints a
table of files/s and the ratio to s5cmd; writes nothing but its temporary buckets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

from . import datasets, peers, verify
from .settings import ROOT, Settings
from .workloads import PREFIX, Context, rotate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settings", default="default,2x8,2x16,3x8,3x16,4x8,4x16")
    parser.add_argument("--small-files", type=int, default=Settings.small_files)
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from devtools.locals3 import LocalS3

    settings = Settings(small_files=args.small_files)
    source = datasets.small_tree(settings.data_dir, settings.small_files,
                                 settings.small_dirs, settings.small_size)
    relpaths = datasets.files_under(source)
    work_dir = tempfile.mkdtemp(prefix="s3pput-sweep-")
    server = LocalS3(metrics=True).start()
    try:
        env = peers.environment(server.endpoint, os.path.join(work_dir, "config"))
        tools = peers.discover(["s3pput", "s5cmd"], env)
        commands = peers.Commands(tools, server.endpoint, settings)
        ctx = Context(settings=settings, server=server, client=server.client(), tools=tools,
                      commands=commands, env=env, work_dir=work_dir)
        contenders = [c.strip() for c in args.settings.split(",")]
        if tools["s5cmd"].available:
            contenders.append("s5cmd")

        def argv_for(who: str, bucket: str):
            if who == "s5cmd":
                return commands.cold("s5cmd", source, bucket, PREFIX)
            extra = [] if who == "default" else \
                ["--processes", who.split("x")[0], "--inflight", who.split("x")[1]]
            return commands.s3pput(source, bucket, PREFIX, "--put", "stupid", "--no-state",
                                   *extra)

        rates = {c: [] for c in contenders}
        for who in contenders:  # warm-up, not counted
            ctx.run(argv_for(who, ctx.fresh_bucket("sweep-warm", "x")), ctx.run_dir("warm"))
        for turn in range(args.runs):
            for who in rotate(contenders, turn):
                bucket = ctx.fresh_bucket("sweep", who.replace("x", "-"))
                measured = ctx.run(argv_for(who, bucket), ctx.run_dir(f"sweep-{who}"))
                check = verify.check_tree(ctx.client, bucket, PREFIX, source, relpaths,
                                          sample=5, seed=turn)
                rate = len(relpaths) / measured.wall if check.ok else float("nan")
                rates[who].append(rate)
                print(f"run {turn + 1} {who:<8} {rate:8.1f} files/s "
                      f"CPU {measured.cpu:.2f} s {'' if check.ok else check.detail}",
                      flush=True)
        base = statistics.median(rates["s5cmd"]) if "s5cmd" in rates else None
        print(f"\n{'setting':<10}{'files/s':>10}{'x s5cmd':>9}   runs")
        for who, values in rates.items():
            median = statistics.median(values)
            ratio = f"{median / base:.2f}" if base else "-"
            print(f"{who:<10}{median:10.1f}{ratio:>9}   "
                  + " ".join(f"{v:.0f}" for v in values))
    finally:
        server.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
