"""Runs that overlap: two runs on one prefix (a cron job that outlasts its interval, two
machines fed from one share) never give one number to two files, and never overwrite
what they meant to create.

* On a store that honours conditional writes (``If-None-Match: *``, ``If-Match: <etag>``),
  manifests are replaced by compare-and-swap (``imagemode``) and keys that must be new are
  created only if absent (``transfer``). Whether the store honours them is found out at run
  time, once, the first time it matters, by ``probe``: never assumed.
* On a store that does not, image runs that number take turns under a ``LeaseLock``: an
  object under the prefix that a run writes, reads back after a short wait, renews while it
  numbers and removes at the end. ``WriteGuard`` chooses between the two for a walker.
* On one machine, ``hold_run_lock``: a second run on the same endpoint, bucket and prefix
  exits 2 naming the pid of the run that is on (an ``flock`` on a file in the state
  directory: the kernel drops it when that run ends, however it ends).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import re
import socket
import threading
import time
from typing import Callable, Optional
from urllib.parse import urlparse

from .errors import ConfigError, FatalError, FileError, PreconditionFailed, S3pputError
from .keys import join_key, normalize_prefix

PROBE_NAME = ".s3pput-probe"
LOCK_NAME = ".s3pput-lock.json"
LEASE_SECONDS = 60.0  # a lock not renewed for this long is stale: another run takes it
SETTLE_SECONDS = 2.0  # a lock is read back after this long: still ours, or lost the race
WRONG_ETAG = "0" * 32  # what no stored object has: If-Match with it must fail
JSON = {"ContentType": "application/json"}

Note = Callable[[str, str], None]


# -- is the store honouring conditional writes? ---------------------------------------

def probe(store, prefix: str, note: Note = lambda level, text: None) -> bool:
    """Whether STORE honours If-None-Match and If-Match on PUT, tried on a scratch key under
    PREFIX (removed after): a create must succeed, a second create must be refused, and a
    replace with a wrong ETag must be refused. Costs 4 requests (3 PUT, 1 DELETE). Sets
    ``store.honours_conditions``. Raises what the store answers if the scratch key cannot
    even be written (the manifest could not be either)."""
    key = join_key(prefix, [f"{PROBE_NAME}-{os.urandom(16).hex()}"])
    body = b"s3pput: a probe of conditional writes; safe to delete\n"

    def refused(**condition) -> bool:
        try:
            # Other bytes than the first create's: a create-only put that finds its own
            # bytes in place counts as done (``Store.put``), which would hide a refusal.
            store.put(key, body + b"again\n", JSON, **condition)
        except PreconditionFailed:
            return True
        except FileError:
            if store.honours_conditions is False:  # 501 NotImplemented to the header
                return False
            raise
        return False

    store.put(key, body, JSON, if_none_match=True)
    try:
        honoured = store.honours_conditions is not False and \
            refused(if_none_match=True) and refused(if_match=WRONG_ETAG)
    finally:
        try:
            store.delete(key)
        except FileError as err:
            note("warning", f"could not remove the scratch key {key} ({err.message}); it is "
                 "safe to delete")
    store.honours_conditions = honoured
    return honoured


# -- a lock in the bucket, for stores that do not honour them ---------------------------

def _describe(doc: Optional[dict]) -> str:
    if not doc:
        return "a run that left no trace"
    return (f"the run of pid {doc.get('pid', '?')} on host {doc.get('host', '?')} "
            f"(started {doc.get('started', '?')})")


class LeaseLock:
    """One run's lock under a prefix, on a store without conditional writes.

    As safe as such a store allows: there is no atomic "create if absent", so two runs that
    write the lock within about SETTLE seconds of each other both read it back, and only
    the last writer still finds itself there; the other exits 2. (Both go on only if one
    of them took longer than SETTLE between reading the lock and writing its own.) A lock
    is live while its
    holder renews it (every LEASE/4 seconds); one not renewed for LEASE seconds (its holder
    was killed) is taken over with a warning. Ages are judged by the wall clocks of the two
    machines: they must agree to within a few seconds (NTP)."""

    def __init__(self, store, key: str, note: Note = lambda level, text: None, *,
                 lease: float = LEASE_SECONDS, settle: float = SETTLE_SECONDS):
        self.store = store
        self.key = key
        self.note = note
        self.lease = lease
        self.settle = settle
        # The pid a user knows is the run's main process (the walker is its child).
        run = multiprocessing.parent_process()
        self.doc = {"version": 1, "owner": os.urandom(16).hex(), "host": socket.gethostname(),
                    "pid": run.pid if run is not None else os.getpid(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "lease": lease}
        self.since = 0.0  # time.monotonic() when it became ours (0: not ours)
        self.renewed = 0.0  # time.monotonic() of the last write that kept it ours
        self.lost = ""  # why it is no longer ours
        self.stop = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def _read(self) -> Optional[dict]:
        data = self.store.get(self.key)
        if data is None:
            return None
        try:
            doc = json.loads(data)
            return doc if isinstance(doc, dict) else {}
        except ValueError:
            return {}  # damaged: nobody's, so stale

    def _write(self, **extra) -> None:
        doc = dict(self.doc, renewed_at=time.time(), **extra)
        self.store.put(self.key, json.dumps(doc).encode("utf-8"), JSON)

    def _ours(self, doc: Optional[dict]) -> bool:
        return bool(doc) and doc.get("owner") == self.doc["owner"]

    def _age(self, doc: dict) -> float:
        try:
            return time.time() - float(doc.get("renewed_at", 0))
        except (TypeError, ValueError):
            return float("inf")

    def _live(self, doc: Optional[dict]) -> bool:
        if not doc or doc.get("released"):
            return False
        try:
            lease = float(doc.get("lease", LEASE_SECONDS))
        except (TypeError, ValueError):
            lease = LEASE_SECONDS
        return self._age(doc) < lease

    def acquire(self) -> None:
        """Make the lock ours, or raise ``ConfigError`` naming the run that holds it."""
        held = self._read()
        if self._live(held) and not self._ours(held):
            raise ConfigError(
                f"another run is numbering under this prefix: {_describe(held)} holds the lock "
                f"s3://{self.store.bucket}/{self.key} (renewed {self._age(held):.0f} s ago). "
                "This store does not honour conditional writes, so image runs on one prefix "
                f"take turns: run again when it has ended (a lock not renewed for "
                f"{self.lease:.0f} s is taken over)")
        if held is not None and not held.get("released") and not self._ours(held):
            self.note("warning", f"took over the stale lock s3://{self.store.bucket}/{self.key}"
                      f" of {_describe(held)}: not renewed for {self._age(held):.0f} s")
        self._write()
        time.sleep(self.settle)
        held = self._read()
        if not self._ours(held):
            raise ConfigError(
                f"another run took the lock s3://{self.store.bucket}/{self.key} at the same "
                f"moment: {_describe(held)}; run again when it has ended")
        self.since = self.renewed = time.monotonic()
        self.thread = threading.Thread(target=self._renew, daemon=True, name="lease")
        self.thread.start()

    def _renew(self) -> None:
        while not self.stop.wait(self.lease / 4) and self.renew():
            pass

    def renew(self) -> bool:
        """Write the lock again if it is still ours; False once it is not."""
        try:
            held = self._read()
            if not self._ours(held):
                self.lost = f"{_describe(held)} has it now"
                return False
            self._write()
            self.renewed = time.monotonic()
        except S3pputError as err:
            self.note("warning", f"could not renew the lock s3://{self.store.bucket}/"
                      f"{self.key}: {err}")
        return True

    def check(self) -> None:
        """Raise ``ConfigError`` unless the lock is still ours (before each manifest write)."""
        if not self.lost and time.monotonic() - self.renewed > self.lease:
            self.lost = f"not renewed for {self.lease:.0f} s"
        if self.lost:
            raise ConfigError(f"lost the lock s3://{self.store.bucket}/{self.key} "
                              f"({self.lost}); stopped numbering: run again")

    def release(self) -> None:
        """Remove the lock if it is still ours (or, without the right to delete, mark it
        released). Never raises: a lock left behind is stale after its lease."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        ours = self.since and not self.lost
        self.lost = self.lost or "released"  # a late writer's check() must fail now
        if not ours:
            return
        try:
            if self._ours(self._read()):
                try:
                    self.store.delete(self.key)
                except FileError:
                    self._write(released=True)
        except S3pputError as err:
            self.note("warning", f"could not remove the lock s3://{self.store.bucket}/"
                      f"{self.key} ({err}); it is stale {self.lease:.0f} s after its last "
                      "renewal")


class WriteGuard:
    """How one walker keeps its manifest writes apart from other runs', decided once, the
    first time a manifest is to be written (``ready``, from any thread): by
    compare-and-swap (``cas``) when the store honours conditional writes, else under a
    ``LeaseLock`` (``check`` before each write; ``since`` says when it became ours: a
    manifest read before that must be read again). ``close`` removes the lock."""

    def __init__(self, store, prefix: str, note: Note = lambda level, text: None, *,
                 settle: float = SETTLE_SECONDS):
        self.store = store
        self.prefix = prefix
        self.note = note
        self.settle = settle
        self.cas: Optional[bool] = None  # None: not decided yet
        self.lock: Optional[LeaseLock] = None
        self.error = ""
        self.mutex = threading.Lock()

    def ready(self) -> "WriteGuard":
        with self.mutex:
            if self.error:
                raise ConfigError(self.error)
            if self.cas is None:
                try:
                    self._decide()
                except S3pputError as err:
                    self.error = err.message if isinstance(err, FatalError) else \
                        f"cannot find out whether the store honours conditional writes: {err}"
                    raise ConfigError(self.error) from err
        return self

    def _decide(self) -> None:
        if probe(self.store, self.prefix, self.note):
            self.cas = True
            return
        key = join_key(self.prefix, [LOCK_NAME])
        self.note("info", "the store does not honour conditional writes (If-None-Match, "
                  f"If-Match): numbering under the lock s3://{self.store.bucket}/{key}")
        self.lock = LeaseLock(self.store, key, self.note, settle=self.settle)
        self.lock.acquire()
        self.cas = False

    @property
    def since(self) -> float:
        return self.lock.since if self.lock is not None else 0.0

    def check(self) -> None:
        if self.lock is not None:
            self.lock.check()

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()


# -- one run at a time per bucket and prefix on one machine -----------------------------

def run_lock_path(bucket: str, endpoint_url: Optional[str], prefix: str) -> str:
    """The lock file of (endpoint, bucket, prefix), in the state directory
    (``$XDG_STATE_HOME/s3pput/``, by default ``~/.local/state/s3pput/``)."""
    from .journal import default_path

    host = urlparse(endpoint_url).netloc if endpoint_url else "aws"
    name = re.sub(r"[^A-Za-z0-9._@-]", "_", f"{bucket}@{host}")
    digest = hashlib.sha256(normalize_prefix(prefix).encode("utf-8", "surrogateescape"))
    digest = digest.hexdigest()
    return os.path.join(os.path.dirname(default_path(bucket, endpoint_url)), "runs",
                        f"{name}.{digest[:16]}.lock")


class RunLock:
    """This machine's lock of one (endpoint, bucket, prefix); ``release`` or process exit
    drops it."""

    def __init__(self, fd: Optional[int]):
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays (unlinking races)
            self.fd = None


def hold_run_lock(cfg) -> RunLock:
    """Take this machine's lock of the run's endpoint, bucket and prefix, or raise
    ``ConfigError`` naming the pid of the run that holds it. A dry run writes nothing and
    takes no lock. The lock is an ``flock``: it ends with the process that holds it,
    however that ends (the worker processes inherit it and die with their parent)."""
    if cfg.dry_run:
        return RunLock(None)
    path = run_lock_path(cfg.bucket, cfg.endpoint_url, cfg.prefix)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ConfigError(f"cannot make the run lock {path}: {err.strerror or err} (set "
                          "XDG_STATE_HOME to a writable directory)") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        where = f"s3://{cfg.bucket}/{normalize_prefix(cfg.prefix)}".rstrip("/")
        raise ConfigError(f"another s3pput run (pid {pid}) is putting into {where} from this "
                          f"machine; run again when it has ended (lock file {path})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return RunLock(fd)
