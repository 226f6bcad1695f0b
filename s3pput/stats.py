"""Counters, progress display, and the human and JSON summaries.

Only the statter process uses this module: it is the one owner of counters and output.
Output streams: the dry-run plan and the human summary go to stdout, except with
``--json``, when stdout carries only the final JSON object and everything else goes to
stderr. Failures always go to stderr. Progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import IO, Dict, List, Optional

import humanize

from .jobs import SKIPPED, UPLOADED, Result

PLAIN_PROGRESS_EVERY = 10.0  # seconds between progress lines when not on a terminal
MAX_FAILURES_IN_JSON = 1000


class Log:
    """Where messages go: the terminal streams and the optional log file."""

    def __init__(self, *, verbose: int, quiet: bool, json_mode: bool,
                 log_file: Optional[str], stdout: IO = None, stderr: IO = None):
        self.verbose = verbose
        self.quiet = quiet
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.plan_stream = self.stderr if json_mode else self.stdout
        self.file = open(log_file, "a", encoding="utf-8", errors="backslashreplace") \
            if log_file else None
        self.clear_progress = lambda: None

    def _to_file(self, level: str, text: str) -> None:
        if self.file:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            self.file.write(f"{stamp} {level.upper():7} {text}\n")

    def _print(self, stream: IO, text: str) -> None:
        self.clear_progress()
        print(text, file=stream, flush=stream is self.stderr)

    def error(self, text: str) -> None:
        self._to_file("error", text)
        self._print(self.stderr, f"s3pput: {text}")

    def warning(self, text: str) -> None:
        self._to_file("warning", text)
        if not self.quiet:
            self._print(self.stderr, f"s3pput: warning: {text}")

    def info(self, text: str) -> None:
        self._to_file("info", text)
        if self.verbose >= 1:
            self._print(self.stderr, text)

    def debug(self, text: str) -> None:
        self._to_file("debug", text)
        if self.verbose >= 2:
            self._print(self.stderr, text)

    def plan(self, text: str) -> None:
        """A line of the dry-run plan: the product of a dry run, shown unless --quiet."""
        self._to_file("plan", text)
        if not self.quiet:
            self._print(self.plan_stream, text)

    def summary(self, text: str) -> None:
        self._to_file("summary", text)
        if not self.quiet:
            self._print(self.plan_stream, text)

    def close(self) -> None:
        if self.file:
            self.file.close()


def count_files(sources, rules, follow_symlinks: bool, counted: List[int]) -> None:
    """Count the files under SOURCES (cheaply: no stat) into COUNTED[0], for the progress
    bar's total and ETA while the walk, which streams, has not finished."""
    import os

    from .filters import excluded_by

    def scan(path: str, rel: str) -> None:
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    if entry.is_dir(follow_symlinks=follow_symlinks):
                        scan(entry.path, child)
                    elif not excluded_by(rules, child):
                        counted[0] += 1
        except OSError:
            pass

    for source in sources:
        if os.path.isdir(source):
            scan(source, "")
        else:
            counted[0] += 1


class Progress:
    """Live progress: a tqdm bar on a terminal, a plain line every few seconds otherwise.

    On a terminal a background thread counts the files first, so the bar has a total and
    an ETA while the (streaming) walk is still going; the walk's count replaces it at the
    end."""

    def __init__(self, log: Log, enabled: bool, dry_run: bool, cfg=None):
        self.log = log
        self.enabled = enabled
        self.bar = None
        self.last_line = time.monotonic()
        self.dry_run = dry_run
        self.estimate = [0]
        if enabled and log.stderr.isatty():
            import threading

            from tqdm import tqdm

            self.bar = tqdm(total=0, unit="file", file=log.stderr, dynamic_ncols=True,
                            leave=False, desc="would put" if dry_run else "put")
            log.clear_progress = self.bar.clear
            if cfg is not None:
                threading.Thread(target=count_files, daemon=True,
                                 args=(cfg.sources, cfg.rules, cfg.follow_symlinks,
                                       self.estimate)).start()

    def update(self, stats: "Stats") -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.total = stats.walked if stats.walk_finished else \
                max(stats.walked, self.estimate[0])
            self.bar.n = stats.done
            self.bar.set_postfix_str(
                f"{humanize.naturalsize(stats.bytes)}, {stats.skipped} skipped, "
                f"{stats.failed} failed", refresh=False)
            self.bar.refresh()
            return
        now = time.monotonic()
        if now - self.last_line >= PLAIN_PROGRESS_EVERY:
            self.last_line = now
            print(f"s3pput: {stats.done:,}/{stats.walked:,} files done, "
                  f"{humanize.naturalsize(stats.bytes)}, {stats.files_per_second():.1f} files/s",
                  file=self.log.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.log.clear_progress = lambda: None


class Stats:
    """The counters of a run. ``walked == uploaded + skipped + failed`` at the end."""

    def __init__(self, dry_run: bool):
        self.dry_run = dry_run
        self.started = time.monotonic()
        self.walked = 0
        self.uploaded = 0
        self.skipped = 0
        self.failed = 0
        self.bytes = 0  # local bytes of the files uploaded
        self.bytes_sent = 0  # bytes written to the store (gzip, thumbnails included)
        self.skip_reasons: Counter = Counter()
        self.failures: List[Dict[str, str]] = []
        self.walk_complete = True
        self.walk_finished = False  # the walker has said it is done
        self.interrupted = False
        self.fatal: Optional[str] = None
        self.errors: List[str] = []  # problems of the run itself (a worker died...)

    @property
    def done(self) -> int:
        return self.uploaded + self.skipped + self.failed

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def files_per_second(self) -> float:
        return self.uploaded / max(self.seconds(), 1e-9)

    def count(self, result: Result) -> None:
        if result.outcome == UPLOADED:
            self.uploaded += 1
            self.bytes += result.size
            self.bytes_sent += result.sent
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
            "interrupted": self.interrupted,
            "fatal": self.fatal,
            "errors": self.errors,
        }


def human_summary(summary: Dict) -> str:
    """``put 1,204 files, 311.2 MB in 8.1 s (38.4 MB/s, 148.6 files/s), 12 skipped, ...``"""
    seconds = summary["seconds"]
    verb = "would put" if summary["dry_run"] else "put"
    rate = ""
    if not summary["dry_run"]:
        rate = (f" ({humanize.naturalsize(summary['bytes_per_second'])}/s, "
                f"{summary['files_per_second']:,.1f} files/s)")
    text = (f"{verb} {humanize.intcomma(summary['uploaded'])} files, "
            f"{humanize.naturalsize(summary['bytes'])} in {seconds:.1f} s{rate}, "
            f"{humanize.intcomma(summary['skipped'])} skipped, "
            f"{humanize.intcomma(summary['failed'])} failed")
    reasons = summary.get("skipped_reasons") or {}
    if reasons:
        text += " (skipped: " + ", ".join(f"{count:,} {reason}" for reason, count
                                          in sorted(reasons.items())) + ")"
    if summary.get("interrupted"):
        text += "; interrupted"
    return text


def json_summary(summary: Dict) -> str:
    return json.dumps(summary, sort_keys=True, ensure_ascii=False)
