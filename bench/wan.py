"""``python -m bench --wan``: the workloads of issue 9 at several round-trip times.

One local SeaweedFS, one latency proxy process in front of it (``bench/latency.py``),
its round trip set for each RTT of ``--rtt`` in turn; at RTT 0 the tools talk to the
server directly. At each RTT the workloads (small cold, unchanged rerun, one large file,
image mode's two layouts, and 20,000 small files cold) run as on loopback: every
contender a fresh bucket per run, taking turns, every run checked, and a run that did
not go through the proxy FAILED. Checks and request counters always go to the server
directly. Every run's client CPU (its process tree, getrusage(RUSAGE_CHILDREN)) is kept
and reported per file and per MiB, with the spread of the runs of each row.

Before the first RTT: the proxy's self-check (``bench/latency_check.py``), so that the
report shows the proxy is not the bottleneck, and one direct warm-up upload per tool.
The results: ``bench/results/wan-latest.{json,md}`` and the chart
``bench/results/wan-small.png``; ``--publish`` copies the table and chart into
``docs/bench/``.
"""

from __future__ import annotations

import dataclasses
import time

from . import datasets, latency_check, wan_report
from .latency import LatencyProxy
from .session import Session, load_average, log
from .settings import Settings
from .workloads import WAN_WORKLOADS, warm_up

SELF_CHECK_RTT_MS = 40.0  # the round trip of the figures


def _proxy_delta(before: dict, after: dict) -> dict:
    return dict(cpu_s=round(after["cpu_s"] - before["cpu_s"], 3),
                connections=after["accepted"] - before["accepted"],
                mb_up=round((after["bytes_up"] - before["bytes_up"]) / 1e6, 1),
                mb_down=round((after["bytes_down"] - before["bytes_down"]) / 1e6, 1),
                pauses=after["pauses"] - before["pauses"],
                failed_connects=after["failed_connects"] - before["failed_connects"])


def run_wan(settings: Settings) -> int:
    failed = False
    with Session(settings, "WAN quick" if settings.quick else "WAN") as session:
        document = session.document
        document["rtts"] = list(settings.rtts)
        if settings.proxy_check_mib:
            log(f"\n[latency proxy self-check, {SELF_CHECK_RTT_MS:g} ms]")
            check = latency_check.run_checks(SELF_CHECK_RTT_MS, settings.proxy_check_mib,
                                             log=log)
            document["proxy_check"] = check
            for problem in check["problems"]:
                log(f"  FAILED: {problem}")
            failed |= bool(check["problems"])
        if settings.warmup_runs and "small" in settings.workloads:
            log("\n[warm-up, direct]")
            ctx = session.context()
            source = datasets.small_tree(settings.data_dir, settings.small_files,
                                         settings.small_dirs, settings.small_size, log=log)
            warm_up(ctx, source, [(t, "") for t in ctx.available(settings.tools)])
        measured = dataclasses.replace(settings, warmup_runs=0)
        by_rtt = document["by_rtt"] = {}
        proxy = None
        try:
            for rtt in settings.rtts:
                log(f"\n===== round trip {rtt:g} ms "
                    f"{'(direct, no proxy)' if not rtt else '(through the latency proxy)'}")
                entry = by_rtt[f"{rtt:g}"] = dict(rtt_ms=rtt, load_start=load_average(),
                                                  workloads={})
                began = time.monotonic()
                if rtt:
                    if proxy is None:
                        proxy = LatencyProxy(session.server.port, rtt)
                    proxy.set_rtt(rtt)
                    before = proxy.stats()
                    ctx = session.context(proxy.endpoint, proxy, measured)
                else:
                    ctx = session.context(settings=measured)
                failed |= session.run_workloads(ctx, WAN_WORKLOADS, entry["workloads"])
                if rtt:
                    entry["proxy"] = _proxy_delta(before, proxy.stats())
                    log(f"  proxy at {rtt:g} ms: {entry['proxy']}")
                entry["seconds"] = round(time.monotonic() - began, 1)
                log(f"  round trip {rtt:g} ms: {entry['seconds']} s")
        finally:
            if proxy is not None:
                proxy.stop()
        document["targets"] = wan_report.targets(document)
    paths = wan_report.write(document, settings.results_dir)
    log("\n" + wan_report.render_text(document))
    if settings.publish:
        paths += wan_report.publish(settings.results_dir)
    log("\nwritten: " + ", ".join(paths) + f"; {document['seconds']} s in all")
    return 1 if failed else 0
