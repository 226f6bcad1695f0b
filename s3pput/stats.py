"""The counters of a run and its summaries (human and JSON): pure data, no output.

The statter (``statter``) owns the one ``Stats`` of a run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Dict, List, Optional

import humanize

from .jobs import SKIPPED, UPDATED, UPLOADED, Result

MAX_FAILURES_IN_JSON = 1000


class Stats:
    """The counters of a run. ``walked == uploaded + updated_metadata + skipped + failed``
    at the end."""

    def __init__(self, dry_run: bool):
        self.dry_run = dry_run
        self.started = time.monotonic()
        self.walked = 0
        self.uploaded = 0
        self.updated_metadata = 0  # objects whose headers were replaced in place
        self.skipped = 0
        self.failed = 0
        self.bytes = 0  # local bytes of the files uploaded
        self.bytes_sent = 0  # bytes written to the store (gzip, thumbnails included)
        self.skip_reasons: Counter = Counter()
        self.failures: List[Dict[str, str]] = []
        self.walk_complete = True
        self.walk_error: Optional[str] = None  # why the walk stopped before its end
        self.walk_finished = False  # the walker has said it is done
        self.interrupted = False
        self.fatal: Optional[str] = None
        self.errors: List[str] = []  # problems of the run itself (a worker died...)

    @property
    def done(self) -> int:
        return self.uploaded + self.updated_metadata + self.skipped + self.failed

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def walk_stopped(self, why: str) -> None:
        """The walk ended early (WHY: "after N files: what went wrong"): an error of the
        run (exit 1), said in the summary line and in ``walk_error``."""
        self.walk_complete = False
        self.walk_error = f"walk stopped {why}; files after that were not looked at"
        self.errors.append(self.walk_error)

    def files_per_second(self) -> float:
        return self.uploaded / max(self.seconds(), 1e-9)

    def count(self, result: Result) -> None:
        if result.outcome == UPLOADED:
            self.uploaded += 1
            self.bytes += result.size
            self.bytes_sent += result.sent
        elif result.outcome == UPDATED:
            self.updated_metadata += 1
        elif result.outcome == SKIPPED:
            self.skipped += 1
            self.skip_reasons[result.reason] += 1
        else:
            self.failed += 1
            if len(self.failures) < MAX_FAILURES_IN_JSON:
                self.failures.append({"path": result.display, "key": result.key,
                                      "reason": result.reason})

    def as_dict(self) -> Dict:
        seconds = self.seconds()
        return {
            "walked": self.walked,
            "uploaded": self.uploaded,
            "updated_metadata": self.updated_metadata,
            "skipped": self.skipped,
            "failed": self.failed,
            "bytes": self.bytes,
            "bytes_sent": self.bytes_sent,
            "seconds": round(seconds, 3),
            "files_per_second": round(self.uploaded / seconds, 1) if seconds else 0.0,
            "bytes_per_second": round(self.bytes / seconds, 1) if seconds else 0.0,
            "dry_run": self.dry_run,
            "skipped_reasons": dict(self.skip_reasons),
            "failures": self.failures,
            "walk_complete": self.walk_complete,
            "walk_error": self.walk_error,
            "interrupted": self.interrupted,
            "fatal": self.fatal,
            "errors": self.errors,
        }


def _files(count: int) -> str:
    return f"{humanize.intcomma(count)} {'file' if count == 1 else 'files'}"


def human_summary(summary: Dict) -> str:
    """``put 1,204 files, 311.2 MB in 8.1 s (38.4 MB/s, 148.6 files/s), 12 skipped, ...``"""
    seconds = summary["seconds"]
    verb = "would put" if summary["dry_run"] else "put"
    rate = ""
    if not summary["dry_run"]:
        rate = (f" ({humanize.naturalsize(summary['bytes_per_second'])}/s, "
                f"{summary['files_per_second']:,.1f} files/s)")
    text = (f"{verb} {_files(summary['uploaded'])}, "
            f"{humanize.naturalsize(summary['bytes'])} in {seconds:.1f} s{rate}, ")
    if summary.get("updated_metadata"):
        text += (f"{'would update' if summary['dry_run'] else 'updated'} the metadata of "
                 f"{_files(summary['updated_metadata'])}, ")
    text += (f"{humanize.intcomma(summary['skipped'])} skipped, "
             f"{humanize.intcomma(summary['failed'])} failed")
    reasons = summary.get("skipped_reasons") or {}
    if reasons:
        text += " (skipped: " + ", ".join(f"{count:,} {reason}" for reason, count
                                          in sorted(reasons.items())) + ")"
    if summary.get("walk_error"):
        text += "; " + summary["walk_error"]
    if summary.get("interrupted"):
        text += "; interrupted"
    return text


def json_summary(summary: Dict) -> str:
    return json.dumps(summary, sort_keys=True, ensure_ascii=False)
