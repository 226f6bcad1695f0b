"""The bytes of one job as they will be stored: read once, checked unchanged, stripped of
metadata and gzipped on demand, hashed the way the store hashes them.

A file is never stored half-written: a single PUT sends bytes that were read completely
between two identical ``fstat``s; a multipart upload is completed only if the file is
unchanged after its last part was read (``Payload.check_unchanged``).

An image-mode original is read whole, whatever its size, when the run strips its metadata
(``--strip-metadata``: what is stored is the stripped bytes, which need the whole file) or
needs to know whether it carries a location (``location_matters``); it then goes up in
parts from memory if the stored bytes are over the multipart threshold.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from typing import BinaryIO, Iterator, Optional

from ..config import Config
from ..content import SNIFF_BYTES, GzipReader, gzip_bytes, should_gzip
from ..digest import Digest, digest_bytes, digest_stream
from ..errors import FileError, ImageError
from ..headers import PUBLIC_ACLS, content_type_of
from ..jobs import Job
from ..sources import open_source, read_whole

RACY_NS = 2_000_000_000  # a file modified this recently may still change within its tick
RACY = -1  # the journal's mtime of such a file: it never equals a real one


class Changed(FileError):
    """The file changed while it was being read."""


def images():
    """The thumbnailer, imported on first use: Pillow costs a putter about 40 ms of CPU
    at start, which a run without images (or a re-run that puts nothing) need not pay."""
    from .. import images as module

    return module


def sniffed_type(cfg: Config, job: Job, name: str, head: bytes) -> str:
    """The Content-Type JOB's file (called NAME, starting with HEAD) is put with."""
    kind = images().sniff_image(head) if job.thumbnail_keys else None
    return content_type_of(cfg, name, head, kind.mime if kind else "")


def location_matters(cfg: Config) -> bool:
    """Whether the run must know which originals carry a location: a dry run says so per
    original; a run that makes them readable by anyone (a public ACL) without
    --strip-metadata warns about them."""
    return cfg.images and (cfg.dry_run or (cfg.acl in PUBLIC_ACLS and not cfg.strip_metadata))


def reads_whole(cfg: Config, job: Job) -> bool:
    """Whether JOB's file is read whole into memory whatever its size: an image original
    whose stored bytes depend on all of it (stripped), or whose location is asked."""
    return bool(job.thumbnail_keys) and bool(cfg.strip_metadata or location_matters(cfg))


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
        self.whole = job.size <= cfg.multipart_threshold or reads_whole(cfg, job)
        self.strip = cfg.strip_metadata if job.thumbnail_keys else None
        self.data: Optional[bytes] = None  # the whole local content, when read whole
        self.local_md5 = ""
        self._body: Optional[bytes] = None
        self._body_md5: Optional[bytes] = None
        self.stat0: Optional[os.stat_result] = None
        self._open()
        self.ctype = sniffed_type(cfg, job, name, self.head)
        self.gzip = cfg.gzip and should_gzip(self.ctype, cfg.gzip_types)
        # Put in parts when what is stored is large: decided by the stored bytes when they
        # are in memory (a stripped original), else by the file's size.
        self.multipart = len(self.body()) > cfg.multipart_threshold \
            if self.data is not None else True

    def _open(self) -> None:
        source = self.job.source
        if self.whole and source.kind in ("file", "spool"):
            raw, self.stat0 = read_whole(source.path, self.job.display)
            self.check_unchanged(len(raw))
            self.data = raw
            self.head = raw[:SNIFF_BYTES]
            return
        self.handle = open_source(source, self.job.size, self.job.display)
        if source.kind in ("file", "spool"):
            self.stat0 = os.fstat(self.handle.fileno())
        if self.whole:
            raw = self.handle.read()
            self.check_unchanged(len(raw))
            self.data = raw
            self.head = raw[:SNIFF_BYTES]
        else:
            self.head = self.handle.read(SNIFF_BYTES)
            self.handle.seek(0)

    def check_unchanged(self, got: int) -> None:
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
        """The stored body of content read whole (made once): stripped of metadata, then
        gzipped, as the run asks; ``data`` itself when neither changes it. Raises
        ``ImageError`` for an original that cannot be stripped: it must not go up with
        its location."""
        assert self.data is not None
        if self._body is None:
            body = self.data
            if self.strip:
                body = self._stripped(body)
            self._body = gzip_bytes(body) if self.gzip else body
        return self._body

    def _stripped(self, data: bytes) -> bytes:
        from ..images.metadata import strip_metadata

        try:
            return strip_metadata(data, self.strip, path_for_errors=self.job.display)
        except ImageError as err:
            raise ImageError(f"not uploaded: its metadata ({self.strip}) cannot be stripped: "
                             f"{err.message}", op="strip metadata",
                             path=self.job.display) from err

    def location(self) -> bool:
        """Whether the original as read carries a location (a GPS position, an XMP place);
        metadata too damaged to tell counts as carrying one. Needs the content read whole
        (``reads_whole``)."""
        from ..images.metadata import has_location

        assert self.data is not None
        try:
            return has_location(self.data)
        except ImageError:
            return True

    def body_md5(self) -> bytes:
        """The raw MD5 of ``body()`` (computed once: large originals are costly)."""
        if self._body_md5 is None:
            self._body_md5 = hashlib.md5(self.body()).digest()
        return self._body_md5

    def stored_size(self) -> int:
        """The bytes the store holds once this is put: the stored body's, or the file's
        when it is streamed as it is."""
        return len(self.body()) if self.data is not None else self.job.size

    def stream(self) -> BinaryIO:
        """A fresh stream of the stored body (multipart)."""
        if self.data is not None:
            return io.BytesIO(self.body())
        self.handle.seek(0)
        return GzipReader(self.handle) if self.gzip else self.handle

    def digest(self, part_size: int) -> Digest:
        """The digest of the stored body, in parts of PART_SIZE."""
        if self.data is not None:
            digest = digest_bytes(self.body(), part_size)
            self._body_md5 = bytes.fromhex(digest.md5)
        else:
            digest = digest_stream(self.stream(), part_size)
        if self._stored_as_read():
            self.local_md5 = digest.md5
        return digest

    def _stored_as_read(self) -> bool:
        """The stored body is the local content itself (no gzip, nothing stripped)."""
        return not self.gzip and (self.data is None or self.body() is self.data)

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
        if not self.local_md5 and self.data is not None and self._stored_as_read():
            self.local_md5 = self.body_md5().hex()
        return self.local_md5

    def mtime_ns(self) -> int:
        """The mtime of the content that was read (the walk's, for archive members), as the
        journal may trust it: ``RACY`` when the file was modified so shortly before it was
        read that a rewrite of the same size could still follow within the same tick of
        the file system's clock, unseen by size and mtime (git's "racy" rule). The journal
        then keeps the row, but the next run compares the content instead of trusting
        size and mtime (and records the real mtime once it is settled)."""
        if self.stat0 is None or self.job.source.kind == "spool":
            # An archive member's own mtime: a spool file is this run's copy of it, written
            # just now, and would make every large member of a compressed archive "racy".
            return self.job.mtime_ns
        if time.time_ns() - self.stat0.st_mtime_ns < RACY_NS:
            return RACY
        return self.stat0.st_mtime_ns
