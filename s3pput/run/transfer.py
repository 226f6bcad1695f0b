"""Doing one job inside a putter: decide, read, transform, put.

``Transfer.run(job)`` always returns exactly one ``Result``: it turns every per-file error
into a FAILED result, and lets only ``FatalError`` through (the run must stop).

A file is never stored half-written: a single PUT sends bytes that were read completely
between two identical ``fstat``s, with their Content-MD5; a multipart upload is completed
only if the file is unchanged after its last part was read, and aborted otherwise.

A key the run means to create and never overwrite (every key under ``--put add``; the
original and thumbnails of a newly numbered image, ``Job.create_only``) is put with
``If-None-Match: *``: if another writer stored it since the listing, its bytes stay; the
file is SKIPPED "exists" (``add``) or FAILED "exists already: not overwritten" (a new
number).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from concurrent.futures import Executor, Future
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

from .. import plan
from ..config import Config
from ..content import SNIFF_BYTES, GzipReader, gzip_bytes, should_gzip
from ..digest import Digest, digest_bytes, digest_stream, etag_matches, multipart_etag
from ..errors import (
    ConnectionFailure,
    FatalError,
    FileError,
    PreconditionFailed,
    S3pputError,
    TransientError,
)
from ..headers import (
    RunHeaders,
    content_type_of,
    put_params,
    recorded_acl,
    thumbnail_params,
    type_by_name,
)
from ..jobs import FAILED, SKIPPED, UNLISTED, UPDATED, UPLOADED, Job, RemoteObject, Result
from ..sources import open_source
from ..store import Store, run_now
from .concurrency import Controller, Limiter, MemoryBudget


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


class RateLimiter:
    """At most RATE requests per second from all putters together (None: no limit).

    SHARED is a ``multiprocessing.Value("d")`` holding the next free time slot
    (``time.monotonic`` is one clock for every process), so the cap holds however the
    jobs happen to be spread over the putters."""

    def __init__(self, rate: Optional[float], shared=None):
        self.interval = 1.0 / rate if rate else 0.0
        self.shared = shared

    def wait(self) -> None:
        if not self.interval or self.shared is None:
            return
        with self.shared.get_lock():
            now = time.monotonic()
            at = max(now, self.shared.value)
            self.shared.value = at + self.interval
        if at > now:
            time.sleep(at - now)


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


RACY_NS = 2_000_000_000  # a file modified this recently may still change within its tick
RACY = -1  # the journal's mtime of such a file: it never equals a real one


class Changed(FileError):
    """The file changed while it was being read."""


def images():
    """The thumbnailer, imported on first use: Pillow costs a putter about 40 ms of CPU
    at start, which a run without images (or a re-run that puts nothing) need not pay."""
    from .. import images as module

    return module


def _content_type(cfg: Config, job: Job, name: str, head: bytes) -> str:
    """The Content-Type JOB's file (called NAME, starting with HEAD) is put with."""
    kind = images().sniff_image(head) if job.thumbnail_keys else None
    return content_type_of(cfg, name, head, kind.mime if kind else "")


def _same_file(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ino) == \
        (after.st_size, after.st_mtime_ns, after.st_ino)


class Payload:
    """The bytes of one job as they will be stored (gzipped or not), read on demand."""

    def __init__(self, job: Job, cfg: Config):
        self.job = job
        self.cfg = cfg
        name = job.key.rsplit("/", 1)[-1]
        self.handle: Optional[BinaryIO] = None
        self.head = b""
        self.multipart = job.size > cfg.multipart_threshold
        self.data: Optional[bytes] = None  # whole (stored) body, single PUT only
        self.local_md5 = ""
        self._body: Optional[bytes] = None
        self._body_md5: Optional[bytes] = None
        self.stat0: Optional[os.stat_result] = None
        self._open()
        self.ctype = _content_type(cfg, job, name, self.head)
        self.gzip = cfg.gzip and should_gzip(self.ctype, cfg.gzip_types)

    def _open(self) -> None:
        self.handle = open_source(self.job.source, self.job.size, self.job.display)
        if self.job.source.kind in ("file", "spool"):
            self.stat0 = os.fstat(self.handle.fileno())
        if not self.multipart:
            raw = self.handle.read()
            self._check_unchanged(len(raw))
            self.data = raw
            self.head = raw[:2048]
        else:
            self.head = self.handle.read(2048)
            self.handle.seek(0)

    def _check_unchanged(self, got: int) -> None:
        """Raise ``Changed`` if the file is not as it was when opened."""
        if self.stat0 is None:
            if got != self.job.size:
                raise Changed(f"archive member is {got} bytes, expected {self.job.size}",
                              op="read", path=self.job.display)
            return
        try:
            now = os.stat(self.job.source.path)
        except FileNotFoundError as err:
            raise Changed("vanished while being read", op="read",
                          path=self.job.display) from err
        if not _same_file(self.stat0, now) or got != self.stat0.st_size:
            raise Changed("changed while being read; not uploaded (run again)", op="read",
                          path=self.job.display)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()

    # -- the stored body -------------------------------------------------------------
    def body(self) -> bytes:
        """The stored body of a single PUT (made once)."""
        assert self.data is not None
        if self._body is None:
            self._body = gzip_bytes(self.data) if self.gzip else self.data
        return self._body

    def body_md5(self) -> bytes:
        """The raw MD5 of ``body()`` (computed once: large originals are costly)."""
        if self._body_md5 is None:
            self._body_md5 = hashlib.md5(self.body()).digest()
        return self._body_md5

    def stream(self) -> BinaryIO:
        """A fresh stream of the stored body (multipart)."""
        self.handle.seek(0)
        return GzipReader(self.handle) if self.gzip else self.handle

    def digest(self, part_size: int) -> Digest:
        if not self.multipart:
            digest = digest_bytes(self.body(), part_size)
            self._body_md5 = bytes.fromhex(digest.md5)
        else:
            digest = digest_stream(self.stream(), part_size)
        if not self.gzip:
            self.local_md5 = digest.md5
        return digest

    def parts(self, part_size: int) -> Iterator[bytes]:
        """The stored body in parts of PART_SIZE. No MD5 of the whole file is taken on the
        way: nothing decides by it (the journal vouches by size, mtime and ETag, and a
        multipart ETag is made of the parts' MD5s, which the parts' requests take), and a
        second pass over every byte, in the one thread that reads the parts, held a
        256 MiB upload at 40 ms to 62 MB/s against s5cmd's 110 (py-spy: a fifth of the
        samples in that update)."""
        stream = self.stream()
        while True:
            data = stream.read(part_size)
            if not data:
                break
            yield data

    def known_md5(self) -> str:
        """Hex MD5 of the local content (before gzip) if it was computed on the way, or
        is free (the body's MD5 without gzip); never re-reads or re-hashes for this."""
        if not self.local_md5 and self.data is not None and not self.gzip:
            self.local_md5 = self.body_md5().hex()
        return self.local_md5

    def mtime_ns(self) -> int:
        """The mtime of the content that was read (the walk's, for archive members), as the
        journal may trust it: ``RACY`` when the file was modified so shortly before it was
        read that a rewrite of the same size could still follow within the same tick of
        the file system's clock, unseen by size and mtime (git's "racy" rule). The journal
        then keeps the row, but the next run compares the content instead of trusting
        size and mtime (and records the real mtime once it is settled)."""
        if self.stat0 is None:
            return self.job.mtime_ns
        if time.time_ns() - self.stat0.st_mtime_ns < RACY_NS:
            return RACY
        return self.stat0.st_mtime_ns


# Parts of one file in flight at once (s5cmd sends 5, the AWS CLI 10): enough to keep
# a long fat link busy with 8 MiB parts, few enough to hold only a few parts in memory.
PARTS_IN_FLIGHT = 8


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

    def memory_of(self, job: Job) -> int:
        """The bytes of body JOB holds at once (see the class docstring)."""
        if job.size > self.cfg.multipart_threshold:  # what makes a Payload multipart
            return (PARTS_IN_FLIGHT + 1) * self.cfg.part_size
        return job.size

    def put_params(self, payload: Payload) -> Dict:
        return put_params(self.cfg, payload.ctype, payload.gzip)

    def run(self, job: Job) -> Result:
        """Do JOB; return its one result. Only ``FatalError`` escapes."""
        try:
            self.breaker.check()
            result = self._run(job)
            self.breaker.record(None)
        except FatalError:
            raise
        except S3pputError as err:
            self.breaker.record(err)
            result = self._failed(job, err.message)
        except Exception as err:  # noqa: BLE001 - a bug must fail one file, not the run
            result = job.result(FAILED, f"internal error: {type(err).__name__}: {err}")
        return result

    def _failed(self, job: Job, reason: str) -> Result:
        return job.result(FAILED, reason)

    def remote_of(self, job: Job) -> Optional[RemoteObject]:
        """What the store holds under the job's key: the walker's answer, or a HEAD."""
        if job.remote is not UNLISTED:
            return job.remote
        if not plan.needs_remote(self.cfg.put):
            return None
        return self.request(self.store.head, job.key)

    def _run(self, job: Job) -> Result:
        cfg = self.cfg
        remote = self.remote_of(job)
        decision = plan.first_look(cfg.put, remote, size=job.size, mtime_ns=job.mtime_ns,
                                   journal=job.journal, size_comparable=not cfg.gzip)
        if isinstance(decision, plan.Decision) and not decision.put:
            if decision.reason == plan.UNCHANGED:  # the journal vouches for the content
                return self.unchanged(job, remote, mtime_ns=job.mtime_ns,
                                      md5=job.journal.md5, hashed=False)
            return job.result(SKIPPED, decision.reason, mtime_ns=job.mtime_ns,
                              etag=remote.etag if remote else "")
        size_hint = self.memory_of(job)
        self.budget.acquire(size_hint)
        payload = None
        try:
            payload = Payload(job, cfg)
            digest = None
            if decision is plan.COMPARE:
                digest = payload.digest(cfg.part_size)
                same = etag_matches(remote.etag, digest, payload.digest)
                decision = plan.after_compare(same)
                if not decision.put:
                    return self.unchanged(job, remote, mtime_ns=payload.mtime_ns(),
                                          md5=payload.known_md5(), hashed=True,
                                          ctype=payload.ctype)
            if not self.slots.take():
                return job.result(SKIPPED, plan.LIMIT)
            try:
                thumbnail_bytes, preview = self.put_thumbnails(job, payload)
                # The original goes last: once it is in place, so are its thumbnails, and
                # the next run may skip the image without looking at them.
                etag, sent = self.put(job, payload, digest)
            except PreconditionFailed as err:
                return self._exists(job, err)
            return job.result(UPLOADED, decision.reason, sent=sent + thumbnail_bytes,
                              mtime_ns=payload.mtime_ns(), md5=payload.known_md5(), etag=etag,
                              preview=preview,
                              fingerprint=self.headers.for_type(payload.ctype).fingerprint)
        finally:
            if payload is not None:
                payload.close()
            self.budget.release(size_hint)

    def unchanged(self, job: Job, remote: RemoteObject, *, mtime_ns: int, md5: str,
                  hashed: bool, ctype: str = "") -> Result:
        """The result of JOB, whose content REMOTE has already: skipped when its headers
        are the run's, else updated in place (``plan.look_at_headers``, then a HEAD if
        needed). MD5: the content's, HASHED now or recorded by the journal; CTYPE: the
        file's Content-Type if known (else found from its name, or its first bytes).

        A skip is recorded in the journal when it brings news: the hash, or headers seen."""
        cfg = self.cfg
        wanted = self.headers.for_type(ctype or self.content_type(job))
        look = plan.look_at_headers(job.journal, remote, wanted=wanted.fingerprint,
                                    asks=self.headers.asks, storage_class=cfg.storage_class)
        seen = look == plan.HEAD
        if seen:
            stored = self.stored_headers(job, remote)
            acl = recorded_acl(plan.recorded_fingerprint(job.journal, remote))
            same = plan.same_headers(wanted.headers, stored, recorded_acl=acl)
            look = plan.SAME if same else plan.DIFFERENT
        if look != plan.DIFFERENT:
            news = hashed or seen
            return job.result(SKIPPED, plan.UNCHANGED, mtime_ns=mtime_ns,
                              md5=md5 if news else "", etag=remote.etag,
                              fingerprint=wanted.fingerprint
                              if news and look == plan.SAME else "")
        if not self.slots.take():
            return job.result(SKIPPED, plan.LIMIT)
        etag = self.update_in_place(job, remote, wanted.params)
        return job.result(UPDATED, plan.METADATA, mtime_ns=mtime_ns, md5=md5, etag=etag,
                          fingerprint=wanted.fingerprint)

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
            ctype = _content_type(self.cfg, job, name, head)
        return ctype

    def stored_headers(self, job: Job, remote: RemoteObject) -> Dict[str, str]:
        """The headers of the object REMOTE describes: the walker's HEAD if it made one,
        else a HEAD now. Raises ``FileError`` if the object is no longer the one compared."""
        if remote.headers is not None:
            return remote.headers
        now = self.request(self.store.head, job.key)
        if now is None or now.etag != remote.etag or now.headers is None:
            raise FileError("the stored object changed since it was listed; not compared "
                            "(run again)", op="head", path=job.display, key=job.key)
        return now.headers

    def update_in_place(self, job: Job, remote: RemoteObject, params: Dict) -> str:
        """Give the job's objects the headers of PARAMS without sending their bodies; return
        the original's new ETag. Thumbnails first, the original last (as puts go: an
        original updated means its thumbnails are)."""
        if job.thumbnail_keys:
            mime = images().normalize_format(self.cfg.thumbnail_format).mime
            for _, key in job.thumbnail_keys:
                self.request(self.store.copy_in_place, key, thumbnail_params(params, mime),
                             path=job.display)
        return self.request(self.store.copy_in_place, job.key, dict(params), etag=remote.etag,
                            size=remote.size, part_size=self.cfg.part_size, path=job.display)

    def create_only(self, job: Job) -> bool:
        """Whether JOB's keys are put only if absent (``If-None-Match: *``)."""
        return job.create_only or self.cfg.put == plan.ADD

    def _exists(self, job: Job, err: PreconditionFailed) -> Result:
        """The outcome when a key JOB was to create exists: another writer stored it
        after the listing (its bytes are kept)."""
        if job.create_only:
            where = f" ({err.key})" if err.key and err.key != job.key else ""
            return job.result(FAILED, f"exists already: not overwritten{where}")
        return job.result(SKIPPED, plan.EXISTS)

    def put_thumbnails(self, job: Job, payload: Payload) -> Tuple[int, Optional[bytes]]:
        """Make and put the job's thumbnails; return (bytes sent, preview bytes).

        In a dry run they are made only when a preview asks for them."""
        if not job.thumbnail_keys:
            return 0, None
        keys = [key for _, key in job.thumbnail_keys]
        if self.cfg.dry_run and not self.cfg.preview:
            return 0, None
        specs = [images().ThumbnailSpec(name, width, height)
                 for name, width, height in self.cfg.thumbnails]
        source = payload.data if payload.data is not None else job.source.path
        thumbnails = images().make_thumbnails(source, specs, fmt=self.cfg.thumbnail_format,
                                     quality=self.cfg.thumbnail_quality,
                                     path_for_errors=job.display)
        sent = 0
        for thumbnail, key in zip(thumbnails, keys, strict=True):
            params = self.put_params(payload)
            params["ContentType"] = thumbnail.mime
            params.pop("ContentEncoding", None)
            try:
                self.request(self.store.put, key, thumbnail.data, params, path=job.display,
                             if_none_match=self.create_only(job))
            except PreconditionFailed:
                if job.create_only:
                    raise
                continue  # --put add: a thumbnail in place stays as it is
            sent += len(thumbnail.data)
        return sent, thumbnails[0].data if self.cfg.preview else None

    def put(self, job: Job, payload: Payload, digest: Optional[Digest]) -> Tuple[str, int]:
        """Store the payload under the job's key; return (ETag, bytes sent)."""
        params = self.put_params(payload)
        if not payload.multipart:
            body = payload.body()
            etag = self.request(self.store.put, job.key, body, params,
                                md5=payload.body_md5(), path=job.display,
                                if_none_match=self.create_only(job))
            return etag, len(body)
        sent = [0]

        def counted_parts():
            for data in payload.parts(self.cfg.part_size):
                sent[0] += len(data)
                yield data

        def before_complete(md5s: List[bytes]) -> None:
            # Every part was read and stored with its own MD5; the object is the file
            # only if the file did not change meanwhile.
            payload._check_unchanged(payload.stat0.st_size if payload.stat0 else job.size)
            if digest is not None and multipart_etag(md5s) != digest.etag(multipart=True):
                raise Changed("changed while being uploaded; upload abandoned",
                              op="put", path=job.display)

        etag = self.store.put_multipart(job.key, counted_parts(), params,
                                        before_complete=before_complete, path=job.display,
                                        submit=self._submit_part, window=PARTS_IN_FLIGHT,
                                        if_none_match=self.create_only(job))
        return etag, sent[0]
