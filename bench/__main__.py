"""``python -m bench``: one local SeaweedFS for the whole run, every workload, the table;
``python -m bench --wan``: the WAN runs through a latency proxy (``bench/wan.py``).

Exit code: 0 when every s3pput row passed its checks (peers may be unavailable or fail:
that is reported, not fatal), 1 when an s3pput run FAILED or a workload could not run,
2 on bad arguments. No timing is asserted: the quick run is a smoke test.
"""

from __future__ import annotations

import os
import sys
import traceback

from . import report
from .profile import profile_small
from .session import Session, log
from .settings import from_args
from .workloads import WORKLOADS


def main(argv=None) -> int:
    settings = from_args(argv)
    if settings.wan:
        from .wan import run_wan

        return run_wan(settings)
    with Session(settings, "quick" if settings.quick else "full") as session:
        document = session.document
        ctx = session.context()
        sections = document["workloads"] = {}
        failed = session.run_workloads(ctx, WORKLOADS, sections)
        document["targets"] = report.targets(sections)
        if "profile" in settings.workloads:
            log("\n[profile]")
            try:
                document["profile"] = profile_small(ctx)
            except Exception as err:  # noqa: BLE001
                traceback.print_exc()
                document["profile"] = dict(error=f"{type(err).__name__}: {err}")
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
