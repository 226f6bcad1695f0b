"""The statter: the one owner of counters and of everything the user reads.

Every other process of a run sends it messages (``jobs``); while a run goes on, only this
module prints, writes the log file, the journal and the image-mode reports (before a run
and after it, the command line says what stopped it, and ``run.execute`` warns once about
``--no-verify-ssl``). Output streams: the dry-run plan and the
human summary go to stdout, except with ``--json``, when stdout carries only the final JSON
object and everything else goes to stderr. Failures always go to stderr, and so does
progress.

``Statter`` is the role as a class: ``handle(message)`` per message (``serve`` takes them
from a queue), then ``finish(Finish)`` reconciles and returns the summary, so it is
testable without a process.
"""

from __future__ import annotations

import os
import queue
import sys
import time
from typing import IO, Dict, Optional

import humanize

from ..config import MAPPING_LOG, Config
from ..headers import PUBLIC_ACLS
from ..jobs import (
    CUT_LIMIT,
    CUT_STOP,
    FAILED,
    UPDATED,
    UPLOADED,
    Fatal,
    Finish,
    Note,
    Result,
    Results,
    Walked,
    WalkerDone,
)
from ..reports import facts_text
from ..stats import Stats, human_summary, json_summary
from .index import flush, open_spool

PLAIN_PROGRESS_EVERY = 10.0  # seconds between progress lines when not on a terminal


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
        self.closed: set = set()  # the streams whose reader went away

    def record(self, level: str, text: str) -> None:
        """Write TEXT to the log file only (timestamped), never to the terminal."""
        if self.file:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            self.file.write(f"{stamp} {level.upper():7} {text}\n")

    def _print(self, stream: IO, text: str, *, flush: bool = False) -> bool:
        """Write TEXT to STREAM; False if its reader has gone (``s3pput ... | head``): what
        it would have shown is dropped, and the run goes on (the uploads are the work)."""
        if id(stream) in self.closed:
            return False
        self.clear_progress()
        try:
            print(text, file=stream, flush=flush or stream is self.stderr)
        except BrokenPipeError:
            self.closed.add(id(stream))
            self.record("warning", f"{getattr(stream, 'name', 'a stream')} was closed by its "
                        "reader: the rest of what it would have shown was dropped")
            _quiet(stream)
            return False
        return True

    def error(self, text: str) -> None:
        self.record("error", text)
        self._print(self.stderr, f"s3pput: {text}")

    def warning(self, text: str) -> None:
        self.record("warning", text)
        if not self.quiet:
            self._print(self.stderr, f"s3pput: warning: {text}")

    def info(self, text: str) -> None:
        self.record("info", text)
        if self.verbose >= 1:
            self._print(self.stderr, text)

    def debug(self, text: str) -> None:
        self.record("debug", text)
        if self.verbose >= 2:
            self._print(self.stderr, text)

    def plan(self, text: str) -> None:
        """A line of the dry-run plan: the product of a dry run, shown unless --quiet."""
        self.record("plan", text)
        if not self.quiet:
            self._print(self.plan_stream, text)

    def summary(self, text: str) -> None:
        self.record("summary", text)
        if not self.quiet:
            self._print(self.plan_stream, text)

    def close(self) -> None:
        if self.file:
            self.file.close()


def _quiet(stream: IO) -> None:
    """Point a stream whose reader has gone at /dev/null, so that nothing more written to
    it (the interpreter's last flush included) fails."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class Progress:
    """Live progress: a tqdm bar on a terminal, a plain line every few seconds otherwise.

    On a terminal a background thread counts the files first (``sources.count_files``), so
    the bar has a total and an ETA while the (streaming) walk is still going; the walk's
    count replaces it at the end."""

    def __init__(self, log: Log, enabled: bool, dry_run: bool, cfg: Optional[Config] = None):
        self.log = log
        self.enabled = enabled
        self.bar = None
        self.last_line = time.monotonic()
        self.dry_run = dry_run
        self.estimate = [0]
        if enabled and log.stderr.isatty():
            import threading

            from tqdm import tqdm

            from ..sources import count_files

            self.bar = tqdm(total=0, unit="file", file=log.stderr, dynamic_ncols=True,
                            leave=False, desc="would put" if dry_run else "put")
            log.clear_progress = self.bar.clear
            if cfg is not None:
                threading.Thread(target=count_files, daemon=True,
                                 args=(cfg.sources, cfg.rules, cfg.follow_symlinks,
                                       self.estimate)).start()

    def update(self, stats: Stats) -> None:
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
            self.log._print(self.log.stderr, f"s3pput: {stats.done:,}/{stats.walked:,} files "
                            f"done, {humanize.naturalsize(stats.bytes)}, "
                            f"{stats.files_per_second():.1f} files/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.log.clear_progress = lambda: None


def report(log: Log, cfg: Config, result: Result) -> None:
    """Tell the user about one outcome, at the level it deserves. An uploaded image's line
    ends with its facts (``reports.facts_text``)."""
    target = f"s3://{cfg.bucket}/{result.key}"
    if result.outcome == FAILED:
        log.error(f"failed {result.display} -> {target}: {result.reason}")
    elif result.outcome == UPLOADED:
        extra = "".join(f", s3://{cfg.bucket}/{key}" for key in result.extra_keys)
        facts = facts_text(result.image, result.location, bool(cfg.strip_metadata))
        facts = f": {facts}" if facts else ""
        if cfg.dry_run:
            log.plan(f"would upload {result.display} -> {target}{extra} ({result.reason})"
                     f"{facts}")
        else:
            log.info(f"uploaded {result.display} -> {target}{extra} ({result.reason}){facts}")
    elif result.outcome == UPDATED:
        extra = "".join(f", s3://{cfg.bucket}/{key}" for key in result.extra_keys)
        verb = "would update" if cfg.dry_run else "updated"
        line = f"{verb} metadata of {result.display} -> {target}{extra} ({result.reason})"
        if result.location:
            line += ": " + facts_text(None, True, False)
        if cfg.dry_run:
            log.plan(line)
        else:
            log.info(line)
    else:
        log.info(f"skipped {result.display} -> {target} ({result.reason})")


def reconcile(log: Log, cfg: Config, stats: Stats, outstanding: Dict[int, tuple],
              finish: Finish) -> None:
    """Count every announced job that got no result as FAILED, with the reason.

    Lost jobs (a worker died) are named one by one, like any failure; jobs a stop left
    unstarted are counted in one line (and named in the log file and --json)."""
    stopped = finish.interrupted or stats.fatal
    if stopped:
        why = "not finished: the run was stopped"
        log.error(f"{len(outstanding):,} files {why}")
    elif finish.dead_putters:
        why = "lost: its putter process died (exit code " + \
            ", ".join(str(code) for code in finish.dead_putters) + ")"
    elif finish.lost:
        why = f"lost: {finish.lost}"
    elif finish.walker_code is not None:
        why = "lost: the walker process died before it was queued"
    else:
        why = "lost: no result was received"
    for seq, (display, key, size) in sorted(outstanding.items()):
        result = Result(seq, display, key, FAILED, why, size=size)
        stats.count(result)
        if stopped:
            log.record("error", f"failed {display} -> s3://{cfg.bucket}/{key}: {why}")
        else:
            report(log, cfg, result)


class Statter:
    """Counts and reports every message of a run; ``finish`` gives the summary."""

    def __init__(self, cfg: Config, log: Optional[Log] = None):
        from ..journal import Journal
        from ..reports import open_reports

        self.cfg = cfg
        self.log = log or Log(verbose=cfg.verbose, quiet=cfg.quiet, json_mode=cfg.json,
                              log_file=cfg.log_file)
        self.stats = Stats(cfg.dry_run)
        self.progress = Progress(self.log, cfg.progress and not cfg.quiet and not cfg.json,
                                 cfg.dry_run, cfg)
        # seq -> (display, key, size) of announced jobs without a result yet
        self.outstanding: Dict[int, tuple] = {}
        # A result can overtake its Walked note: they come from different processes, each
        # with its own feeder thread. Such early results are remembered until the note.
        self.early: set = set()
        self.journal = Journal(cfg.state_file, write=True) \
            if cfg.state_file and not cfg.dry_run else None
        self.mapping, self.preview = open_reports(cfg)
        if self.mapping is not None and self.mapping.left_out:
            self.log.warning(f"the mapping log {cfg.mapping_log or MAPPING_LOG} has the "
                             "columns of an older s3pput: its new rows go without "
                             f"{', '.join(self.mapping.left_out)} (a new file gets them)")
        # The folder indexes' entries, written at the end (``index``).
        self.index = open_spool(cfg) if cfg.images and not cfg.dry_run else None
        self.located = 0  # originals put that carry a location, when the run must know

    def serve(self, messages: "queue.Queue") -> Dict:
        """Handle MESSAGES until ``Finish``; return the summary."""
        while True:
            try:
                message = messages.get(timeout=0.5)
            except queue.Empty:
                self.progress.update(self.stats)
                continue
            if isinstance(message, Finish):
                return self.finish(message)
            self.handle(message)

    def handle(self, message) -> None:
        stats = self.stats
        if isinstance(message, Results):
            if self.journal is not None:
                self.journal.record(message.results)
            if self.index is not None:
                self.index.add(message.results)
            for result in message.results:
                if self.outstanding.pop(result.seq, None) is None:
                    self.early.add(result.seq)
                stats.count(result)
                report(self.log, self.cfg, result)
                if self.mapping is not None:
                    self.mapping.add(result)
                if self.preview is not None:
                    self.preview.add(result, facts_text(result.image, result.location,
                                                        bool(self.cfg.strip_metadata)))
                if result.location and result.outcome in (UPLOADED, UPDATED):
                    self.located += 1
        elif isinstance(message, Walked):
            for seq, display, key, size in message.notes:
                if seq in self.early:
                    self.early.discard(seq)
                else:
                    self.outstanding[seq] = (display, key, size)
            stats.walked += len(message.notes)
        elif isinstance(message, Note):
            getattr(self.log, message.level, self.log.warning)(message.text)
        elif isinstance(message, Fatal):
            if stats.fatal is None:
                stats.fatal = message.text
        elif isinstance(message, WalkerDone):
            stats.walk_complete = not message.cut
            stats.walk_finished = True
            if message.cut not in ("", CUT_LIMIT, CUT_STOP):
                stats.walk_stopped(f"after {message.walked:,} files: {message.cut}")
        self.progress.update(stats)

    def finish(self, finish: Finish) -> Dict:
        """Every worker has exited: reconcile, close the files, print the summary."""
        stats, log = self.stats, self.log
        self.progress.close()
        if self.index is not None:
            # Even after a stop: what was uploaded is in place, and a later run that finds
            # it unchanged would never add its entries.
            if not stats.fatal:
                try:
                    problem = flush(self.cfg, self.index)
                except Exception as err:  # noqa: BLE001 - a defect here must not lose the summary
                    problem = f"could not write the folder indexes: {type(err).__name__}: {err}"
                if problem:
                    stats.errors.append(problem)
            self.index.close()
        for closable in (self.journal, self.mapping, self.preview):
            if closable is not None:
                closable.close()
        if self.located and self.cfg.acl in PUBLIC_ACLS and not self.cfg.strip_metadata:
            many = self.located > 1
            now = "would be" if self.cfg.dry_run else "are" if many else "is"
            log.warning(f"{self.located:,} original{'s' if many else ''} carrying a location "
                        f"(GPS) put by this run {now} readable by anyone (ACL "
                        f"{self.cfg.acl}); --strip-metadata location stores originals "
                        "without it")
        stats.interrupted = finish.interrupted
        for code in finish.dead_putters:
            stats.errors.append(f"a putter process died (exit code {code})")
        if finish.lost:
            stats.errors.append(finish.lost)
        if finish.walker_code is not None:
            stats.walk_stopped(f"after {stats.walked:,} files: the walker process died (exit "
                               f"code {finish.walker_code})")
        for error in stats.errors:
            log.error(error)
        if self.outstanding:
            reconcile(log, self.cfg, stats, self.outstanding, finish)
        summary = stats.as_dict()
        if stats.fatal:
            log.error(stats.fatal)
        if self.cfg.json:
            log.record("summary", json_summary(summary))
            if not log._print(log.stdout, json_summary(summary), flush=True):
                # The summary is what --json promises: a run that could not deliver it is
                # not a success, whatever became of its files.
                lost = "the JSON summary could not be written: stdout was closed"
                summary["errors"].append(lost)
                log.error(lost)
        else:
            log.summary(human_summary(summary))
        log.close()
        return summary
