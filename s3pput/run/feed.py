"""The walker process's loop: what the walk yields is announced, batched and sent.

``Feeder.feed(items)`` takes the jobs and walk-time results a walker yields and, batch by
batch, first announces them to the statter (``Walked``), then sends the walk-time results
to the statter and the jobs to the putters. Announcing first is what lets the statter name
every job that never got a result. The role as a class: testable without processes.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, List

from ..errors import FatalError, S3pputError
from ..jobs import CUT_LIMIT, CUT_STOP, Fatal, Job, Result, Results, Walked, WalkerDone

BATCH_JOBS = 64  # jobs per put_queue message (fewer, larger messages cost less CPU)
BATCH_BYTES = 8 * 1024 * 1024  # ... but never more bytes than one part in one batch
BATCH_SECONDS = 0.05  # a partial batch waits at most this long
# What a walker yields before it waits (for the listing's next pages): what it has queued
# so far goes out now, not when the wait is over.
FLUSH = "flush"
NO_PUTTER = "no putter process is left"


class Feeder:
    def __init__(self, send_jobs: Callable[[tuple], bool], tell: Callable[[object], None],
                 stop, slots=None):
        """SEND_JOBS(batch) queues a batch for a putter (False: nobody takes it any more);
        TELL(message) sends a message to the statter; STOP is the run's stop event; SLOTS
        the shared ``--limit`` budget (None: unlimited)."""
        self.send_jobs = send_jobs
        self.tell = tell
        self.stop = stop
        self.slots = slots
        self.batch: List[Job] = []
        self.known: List[Result] = []  # outcomes the walker knows already (skips, errors)
        self.batch_bytes = 0
        self.started = time.monotonic()

    def flush(self) -> bool:
        """Announce, then send: the walk-time results, then the batch of jobs."""
        if not self.batch and not self.known:
            return True
        items = [*self.known, *self.batch]
        self.tell(Walked(tuple((i.seq, i.display, i.key, i.size) for i in items)))
        if self.known:
            self.tell(Results(tuple(self.known)))
        ok = self.send_jobs(tuple(self.batch)) if self.batch else True
        self.batch, self.batch_bytes, self.known = [], 0, []
        return ok

    def _full(self) -> bool:
        return (len(self.batch) + len(self.known) >= BATCH_JOBS
                or self.batch_bytes >= BATCH_BYTES
                or time.monotonic() - self.started > BATCH_SECONDS)

    def feed(self, items: Iterable[object]) -> WalkerDone:
        """Feed every item of ITEMS; return (and tell the statter) how the walk ended."""
        walked, cut = 0, ""
        try:
            for item in items:
                if self.stop.is_set():
                    cut = CUT_STOP
                    break
                if item is FLUSH:
                    if not self.flush():
                        cut = CUT_STOP if self.stop.is_set() else NO_PUTTER
                        break
                    continue
                if self.slots is not None and self.slots.value <= 0:
                    cut = CUT_LIMIT  # walking further is pointless
                    break
                walked += 1
                if not self.batch and not self.known:
                    self.started = time.monotonic()
                if isinstance(item, Result):
                    self.known.append(item)
                else:
                    self.batch.append(item)
                    self.batch_bytes += item.size
                if self._full() and not self.flush():
                    cut = CUT_STOP if self.stop.is_set() else NO_PUTTER
                    break
            else:
                if not self.flush():
                    cut = CUT_STOP if self.stop.is_set() else NO_PUTTER
        except FatalError as err:
            self.tell(Fatal(str(err)))
            self.stop.set()
            cut = CUT_STOP
        except S3pputError as err:  # a listing that failed: the run ends with what it has
            cut = str(err)
        except Exception as err:  # noqa: BLE001 - report, then the run ends with what it has
            cut = f"{type(err).__name__}: {err}"
        if (self.batch or self.known) and not self.stop.is_set():
            self.flush()
        done = WalkerDone(walked, cut)
        self.tell(done)
        return done
