"""Doing one job inside a putter: gather the evidence the verdict asks for, then carry out
the verdict (``decide``): put, update the headers in place, or skip.

``Transfer.process(job)`` always returns exactly one ``Result``: it turns every per-file
error into a FAILED result, and lets only ``FatalError`` through (the run must stop).

A key the run means to create and never overwrite (every key under ``--put add``; the
original and thumbnails of a newly numbered image, ``Job.create_only``) is put with
``If-None-Match: *``: if another writer stored it since the listing, its bytes stay
(``decide.refused_create`` says what becomes of the file).
"""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import Executor, Future
from typing import Callable, Dict, List, Optional, Tuple

from ..config import Config
from ..content import SNIFF_BYTES
from ..decide import (
    ADD,
    COMPARE,
    HEADERS,
    LIMIT,
    LOOKUP,
    SEEN,
    SKIP,
    TYPE,
    UPDATE_METADATA,
    Evidence,
    Rules,
    Verdict,
    decide,
    refused_create,
)
from ..digest import Digest, etag_matches, multipart_etag
from ..errors import (
    ConnectionFailure,
    FatalError,
    FileError,
    PreconditionFailed,
    S3pputError,
    TransientError,
)
from ..headers import RunHeaders, stored_size, thumbnail_params, type_by_name, with_size
from ..jobs import FAILED, SKIPPED, UPDATED, UPLOADED, Job, RemoteObject, Result
from ..keys import renditions
from ..sources import open_source
from ..store import Store, run_now
from ..store.multipart import part_size_for
from .concurrency import Controller, Limiter, MemoryBudget, PartWindow, RateLimiter
from .imageput import Rendered, render
from .payload import Changed, Payload, images, location_matters, reads_whole, sniffed_type


class UploadSlots:
    """The ``--limit`` budget, shared by all putters (None: unlimited)."""

    def __init__(self, shared_value=None):
        self.value = shared_value

    def take(self) -> bool:
        if self.value is None:
            return True
        with self.value.get_lock():
            if self.value.value <= 0:
                return False
            self.value.value -= 1
            return True


class Breaker:
    """Fail fast while the endpoint is unreachable.

    After ``THRESHOLD`` jobs in a row failed on connection errors (each after all its
    retries), further jobs fail at once for ``PAUSE`` seconds, then one job probes again.
    This bounds the time a run takes when the server dies, instead of retrying every
    remaining file for its full backoff.
    """

    THRESHOLD = 3
    PAUSE = 5.0

    def __init__(self):
        self.lock = threading.Lock()
        self.failures = 0
        self.open_until = 0.0
        self.reason = ""

    def check(self) -> None:
        with self.lock:
            if self.failures < self.THRESHOLD:
                return
            now = time.monotonic()
            if now < self.open_until:
                raise Unreachable(f"not attempted: the store is unreachable ({self.reason})")
            self.open_until = now + self.PAUSE  # let this one job probe

    def record(self, error: Optional[BaseException]) -> None:
        with self.lock:
            if error is None:
                self.failures = 0
            elif isinstance(error, Unreachable):
                return  # our own fast failure is no news about the store
            elif isinstance(error, ConnectionFailure):
                self.failures += 1
                self.reason = error.message
                if self.failures >= self.THRESHOLD:
                    self.open_until = max(self.open_until, time.monotonic() + self.PAUSE)


class Unreachable(TransientError):
    """A job failed fast by the ``Breaker``, without a request."""


# Parts of one file in flight at once (s5cmd sends 5, the AWS CLI 10): enough to keep
# a long fat link busy with 8 MiB parts, few enough to hold only a few parts in memory.
PARTS_IN_FLIGHT = 8


class _Work:
    """What one job holds while it is processed: its payload, opened at most once within
    the putter's memory budget, and its digest once hashed."""

    def __init__(self, transfer: "Transfer", job: Job):
        self.transfer = transfer
        self.job = job
        self.payload: Optional[Payload] = None
        self.digest: Optional[Digest] = None
        self.held = 0

    def open(self) -> Payload:
        if self.payload is None:
            self.held = self.transfer.memory_of(self.job)
            self.transfer.budget.acquire(self.held)
            self.payload = Payload(self.job, self.transfer.cfg)
        return self.payload

    def close(self) -> None:
        if self.payload is not None:
            self.payload.close()
        if self.held:
            self.transfer.budget.release(self.held)
            self.held = 0


class Transfer:
    """Runs jobs against a store; one per putter process, shared by its threads.

    Every request goes through ``request``: paced by ``--max-rate`` and held to the
    putter's limit of requests in flight (``concurrency.Limiter``). The bodies a putter
    holds at once are bounded by its ``MemoryBudget``: a single PUT holds its body, a
    multipart upload ``PARTS_IN_FLIGHT + 1`` parts (the ones in flight, the one being
    read)."""

    def __init__(self, cfg: Config, store: Store, slots: UploadSlots,
                 stop: Optional[threading.Event] = None, rate_state=None, *,
                 limiter: Optional[Limiter] = None, budget: Optional[MemoryBudget] = None,
                 parts: Optional[Executor] = None):
        """LIMITER: the requests in flight (default: unlimited); BUDGET: the bodies in
        memory (default: unlimited); PARTS: where the parts of a multipart upload go up
        (default: one after the other, in the job's thread)."""
        self.cfg = cfg
        self.store = store
        self.slots = slots
        self.stop = stop
        self.rate = RateLimiter(cfg.max_rate, rate_state)
        self.breaker = Breaker()
        self.limiter = limiter or Limiter(Controller(1 << 20, 1, 1 << 20), fixed=True)
        self.budget = budget or MemoryBudget(1 << 62)
        self.parts = parts
        self.headers = RunHeaders(cfg)
        self.rules = Rules.of(cfg)

    def request(self, operation: Callable, *args, **kwargs):
        """Make one store request, paced and within the limit of requests in flight."""
        self.rate.wait()
        with self.limiter.request():
            return operation(*args, **kwargs)

    def _submit_part(self, operation: Callable) -> Future:
        """Send one part's request on the part threads (or at once, without them)."""
        if self.parts is None:
            return run_now(functools.partial(self.request, operation))
        return self.parts.submit(self.request, operation)

    def part_size(self, job: Job) -> int:
        """The part size of JOB's file: ``--part-size``, or larger when the file would
        need more than S3's 10,000 parts (chosen up front, never found at part 10,001)."""
        return part_size_for(job.size, self.cfg.part_size)

    def memory_of(self, job: Job) -> int:
        """The bytes of body JOB holds at once (see the class docstring)."""
        if reads_whole(self.cfg, job):
            # the file, and a stripped copy of it
            return job.size * (2 if self.cfg.strip_metadata else 1)
        if job.size > self.cfg.multipart_threshold:  # what makes a Payload multipart
            return (PARTS_IN_FLIGHT + 1) * self.part_size(job)
        return job.size

    def process(self, job: Job) -> Result:
        """Do JOB; return its one result. Only ``FatalError`` escapes."""
        try:
            self.breaker.check()
            result = self._process(job)
            self.breaker.record(None)
        except FatalError:
            raise
        except S3pputError as err:
            self.breaker.record(err)
            result = job.result(FAILED, err.message)
        except Exception as err:  # noqa: BLE001 - a bug must fail one file, not the run
            result = job.result(FAILED, f"internal error: {type(err).__name__}: {err}")
        return result

    def _process(self, job: Job) -> Result:
        """Ask for the verdict, gathering the evidence it needs, then carry it out."""
        evidence = Evidence(job.remote, job.journal)
        work = _Work(self, job)
        try:
            while True:
                verdict = decide(self.rules, job, evidence)
                if verdict.action == LOOKUP:
                    evidence = evidence._replace(remote=self.request(self.store.head, job.key))
                elif verdict.action == COMPARE:
                    payload = work.open()
                    work.digest = payload.digest(self.part_size(job))
                    same = etag_matches(evidence.remote.etag, work.digest, payload.digest)
                    evidence = evidence._replace(same_content=same,
                                                 wanted=self.headers.for_type(payload.ctype))
                elif verdict.action == TYPE:
                    wanted = self.headers.for_type(self.content_type(job))
                    evidence = evidence._replace(wanted=wanted)
                elif verdict.action == HEADERS:
                    stored = self.stored_headers(job, evidence.remote)
                    evidence = evidence._replace(stored_headers=stored)
                else:
                    return self._carry_out(job, verdict, evidence, work)
        finally:
            work.close()

    def _carry_out(self, job: Job, verdict: Verdict, evidence: Evidence, work: _Work
                   ) -> Result:
        remote = evidence.remote
        hashed = work.digest is not None
        if hashed:
            mtime_ns, md5 = work.payload.mtime_ns(), work.payload.known_md5()
        else:  # unchanged content the journal vouched for, or no content compared
            mtime_ns = job.mtime_ns
            md5 = job.journal.md5 if job.journal is not None and remote else ""
        if verdict.action == SKIP:
            # A skip is recorded in the journal when it brings news: the hash, or headers
            # seen (and then their fingerprint, if they are the run's).
            news = hashed or verdict.headers == SEEN
            known = news and verdict.headers and evidence.wanted is not None
            return job.result(SKIPPED, verdict.reason, mtime_ns=mtime_ns,
                              md5=md5 if news else "", etag=remote.etag if remote else "",
                              fingerprint=evidence.wanted.fingerprint if known else "")
        if not self.slots.take():
            return job.result(SKIPPED, LIMIT)
        if verdict.action == UPDATE_METADATA:
            # A copy may make an original public (a new --grant): its location matters
            # too. Read before the copy, so that a file that cannot be read changes nothing.
            located = self.location(job, work.open()) if job.thumbnail_keys and \
                location_matters(self.cfg) else False
            etag = self.update_in_place(job, remote, evidence.wanted.params,
                                        evidence.stored_headers)
            return job.result(UPDATED, verdict.reason, mtime_ns=mtime_ns, md5=md5, etag=etag,
                              fingerprint=evidence.wanted.fingerprint, location=located)
        payload = work.open()
        image = None
        try:
            thumbnail_bytes, rendered = self.put_thumbnails(job, payload)
            params = self.put_params(payload)
            if rendered is not None:
                params = with_size(params, rendered.width, rendered.height)
                image = rendered.facts(payload.ctype, payload.stored_size())
            # The original goes last: once it is in place, so are its thumbnails, and
            # the next run may skip the image without looking at them.
            etag, sent = self.put(job, payload, work.digest, params)
        except PreconditionFailed as err:
            outcome, reason = refused_create(job)
            if outcome == FAILED and err.key and err.key != job.key:
                reason += f" ({err.key})"
            return job.result(outcome, reason)
        return job.result(UPLOADED, verdict.reason, sent=sent + thumbnail_bytes,
                          mtime_ns=payload.mtime_ns(), md5=payload.known_md5(), etag=etag,
                          preview=rendered.preview if rendered is not None else None,
                          fingerprint=self.headers.for_type(payload.ctype).fingerprint,
                          image=image, location=self.location(job, payload))

    def location(self, job: Job, payload: Payload) -> bool:
        """Whether JOB's original, as read, carries a location, when the run must know
        (``location_matters``); False otherwise."""
        return bool(job.thumbnail_keys) and location_matters(self.cfg) and payload.location()

    def content_type(self, job: Job) -> str:
        """The Content-Type JOB's file is put with: from its name when that decides it,
        else from its first bytes (read for this)."""
        name = job.key.rsplit("/", 1)[-1]
        ctype = None if job.thumbnail_keys else type_by_name(self.cfg, name)
        if ctype is None:
            handle = open_source(job.source, job.size, job.display)
            try:
                head = handle.read(SNIFF_BYTES)
            finally:
                handle.close()
            ctype = sniffed_type(self.cfg, job, name, head)
        return ctype

    def stored_headers(self, job: Job, remote: RemoteObject) -> Dict[str, str]:
        """The headers of the object REMOTE describes, from a HEAD now. Raises
        ``FileError`` if the object is no longer the one compared."""
        now = self.request(self.store.head, job.key)
        if now is None or now.etag != remote.etag or now.headers is None:
            raise FileError("the stored object changed since it was listed; not compared "
                            "(run again)", op="head", path=job.display, key=job.key)
        return now.headers

    def update_in_place(self, job: Job, remote: RemoteObject, params: Dict,
                        stored: Optional[Dict[str, str]] = None) -> str:
        """Give the job's objects the headers of PARAMS without sending their bodies; return
        the original's new ETag. Thumbnails first, the original last (as puts go: an
        original updated means its thumbnails are).

        In image mode each object keeps its own x-amz-meta-width/height (a copy replaces
        all metadata): from STORED (the original's HEAD, when the verdict made one), else
        from a HEAD of the object."""
        if job.thumbnail_keys:
            for (_, fmt), (_, key) in zip(renditions(self.cfg.thumbnails), job.thumbnail_keys,
                                          strict=True):
                thumbnail = thumbnail_params(params, images().normalize_format(fmt).mime)
                self.request(self.store.copy_in_place, key,
                             self.keep_size(thumbnail, self.stored_of(key)), path=job.display)
            params = self.keep_size(params, stored if stored is not None
                                    else self.stored_of(job.key))
        return self.request(self.store.copy_in_place, job.key, dict(params), etag=remote.etag,
                            size=remote.size, part_size=self.cfg.part_size, path=job.display)

    def stored_of(self, key: str) -> Optional[Dict[str, str]]:
        """The header set of the object under KEY now (None: there is none)."""
        found = self.request(self.store.head, key)
        return found.headers if found is not None else None

    @staticmethod
    def keep_size(params: Dict, stored: Optional[Dict[str, str]]) -> Dict:
        """PARAMS with the image size STORED shows, if it shows one."""
        size = stored_size(stored)
        return with_size(params, *size) if size is not None else params

    def create_only(self, job: Job) -> bool:
        """Whether JOB's keys are put only if absent (``If-None-Match: *``)."""
        return job.create_only or self.cfg.put == ADD

    def put_thumbnails(self, job: Job, payload: Payload) -> Tuple[int, Optional[Rendered]]:
        """Make and put the job's thumbnails (``imageput.render``), each with its size as
        x-amz-meta-width/height; return (bytes sent, what was rendered: None for a job
        that is no image). A dry run makes only what its plan and preview show."""
        if not job.thumbnail_keys:
            return 0, None
        # Decoded from the bytes in memory (read once), else from the file.
        source = payload.data if payload.data is not None else job.source.path
        rendered = render(self.cfg, job, source)
        sent = 0
        for rendition, data in rendered.thumbnails:
            if data is None:
                continue  # a dry run's
            params = with_size(thumbnail_params(self.put_params(payload),
                                                rendition.content_type),
                               rendition.width, rendition.height)
            try:
                self.request(self.store.put, rendition.key, data, params, path=job.display,
                             if_none_match=self.create_only(job))
            except PreconditionFailed:
                if job.create_only:
                    raise
                continue  # --put add: a thumbnail in place stays as it is
            sent += len(data)
        return sent, rendered

    def put_params(self, payload: Payload) -> Dict:
        """The PutObject parameters of the payload's original (a copy: callers add)."""
        return dict(self.headers.for_type(payload.ctype).params)

    def put(self, job: Job, payload: Payload, digest: Optional[Digest],
            params: Optional[Dict] = None) -> Tuple[str, int]:
        """Store the payload under the job's key with PARAMS (default: the run's for its
        type); return (ETag, bytes sent)."""
        params = params if params is not None else self.put_params(payload)
        if not payload.multipart:
            body = payload.body()
            etag = self.request(self.store.put, job.key, body, params,
                                md5=payload.body_md5(), path=job.display,
                                if_none_match=self.create_only(job))
            return etag, len(body)
        sent = [0]

        def counted_parts():
            for data in payload.parts(self.part_size(job)):
                sent[0] += len(data)
                yield data

        def before_complete(md5s: List[bytes]) -> None:
            # Every part was read and stored with its own MD5; the object is the file
            # only if the file did not change meanwhile.
            payload.check_unchanged(payload.stat0.st_size if payload.stat0 else job.size)
            if digest is not None and multipart_etag(md5s) != digest.etag(multipart=True):
                raise Changed("changed while being uploaded; upload abandoned",
                              op="put", path=job.display)

        window = PartWindow(self._submit_part, PARTS_IN_FLIGHT)
        etag = self.store.put_multipart(job.key, counted_parts(), params,
                                        before_complete=before_complete, path=job.display,
                                        submit=window.submit,
                                        if_none_match=self.create_only(job))
        return etag, sent[0]
