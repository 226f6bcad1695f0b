"""Image mode's walk: numbering, manifests and the jobs for originals + thumbnails.

Layout: a file ``female/0001_x.png`` numbered 1 goes to ``PREFIX/female/original/1.png``
and its thumbnails to ``PREFIX/female/thumbnail/1.png`` (one folder per ``--thumbnail``
spec, the same file name in each; a size in several formats as ``card/1.avif``,
``card/1.webp``...: see ``keys.thumbnail_keys``). Files directly under SOURCE go to
``PREFIX/original/N.ext``. The folder's index of facts is the statter's (``index``).

Numbering (``--rename sequential``): within each source directory, images are numbered
1, 2, 3... in alphabetical order of their names, the first time they are seen. The
mapping is kept in the bucket, one small JSON object per directory,
``PREFIX/<dir>/.s3pput-manifest.json``: ``{"version": 1, "next": N, "files": {name:
number}}``. A later run keeps every number, gives new files the next free numbers (in name
order), and never reuses the number of a deleted file, so two different source files are
never mapped to one key. The manifest is written before the directory's images are
queued: a run that dies half-way leaves numbers reserved, never reassigned.

Runs that overlap (``overlap``): a manifest is replaced by compare-and-swap, created with
``If-None-Match: *`` and replaced with ``If-Match: <the ETag read>``; when another run
wrote it meanwhile, it is read again and the new names are numbered after what the other
run took. The keys of a newly numbered image are created only if absent (``Job.create_only``).
On a store that does not honour conditional writes, runs that number take turns under a
lock object instead (``overlap.WriteGuard``).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Deque, Dict, Iterator, List, Optional, Set, Tuple

from ..config import Config
from ..decide import NOT_AN_IMAGE, needs_remote
from ..errors import FileError, ListingBroken, PreconditionFailed
from ..headers import content_type_of
from ..images import SNIFF_BYTES, sniff_image
from ..jobs import FAILED, SKIPPED, UNLISTED, Job, Remote, RemoteObject, Result
from ..keys import ORIGINAL_FOLDER, check_key, join_key, renditions, thumbnail_keys
from ..overlap import WriteGuard
from ..sources import Entry, walk_directories
from ..store import Store
from .walker import WalkerBase, skip_early

MANIFEST_NAME = ".s3pput-manifest.json"
LOOKAHEAD = 64  # directories whose manifest and listing are asked for ahead of their jobs
MANIFEST_ATTEMPTS = 8  # compare-and-swap rounds before a directory is given up as busy
BACKOFF_SECONDS = 0.05  # the first wait after a lost round (jittered, doubling, capped)
BACKOFF_MAX_SECONDS = 1.0


class Manifest:
    """The name -> number mapping of one source directory."""

    def __init__(self, files: Optional[Dict[str, int]] = None, next_number: int = 1):
        self.files: Dict[str, int] = dict(files or {})
        self.next = max([next_number, *[n + 1 for n in self.files.values()]])
        self.changed = False

    @classmethod
    def parse(cls, data: Optional[bytes]) -> "Manifest":
        if not data:
            return cls()
        try:
            doc = json.loads(data)
            files = {str(name): int(number) for name, number in doc["files"].items()}
            return cls(files, int(doc.get("next", 1)))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise FileError(f"manifest is damaged ({err}); not renumbering over it",
                            op="manifest") from err

    def number(self, name: str) -> int:
        """NAME's number, giving it the next free one if it has none. Callers give new
        names in alphabetical order, so a first run numbers 1, 2, 3... by name."""
        if name not in self.files:
            self.files[name] = self.next
            self.next += 1
            self.changed = True
        return self.files[name]

    def dumps(self) -> bytes:
        doc = {"version": 1, "next": self.next, "files": dict(sorted(self.files.items()))}
        return json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8")


def _extension(name: str, sniffed_extension: str) -> str:
    base, dot, ext = name.rpartition(".")
    if dot and base and ext:
        return ext.lower()
    return sniffed_extension


def _sniff(entry: Entry) -> Tuple[Optional[object], Optional[str]]:
    """(image kind, None), or (None, why it is not taken)."""
    try:
        with open(entry.source.path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except FileNotFoundError:
        return None, "vanished while walking"
    except OSError as err:
        return None, f"cannot read: {err.strerror or err}"
    kind = sniff_image(head)
    return kind, None if kind else NOT_AN_IMAGE


class ImageWalker(WalkerBase):
    """Turns SOURCE directories into image jobs (original + thumbnails)."""

    def __init__(self, cfg: Config, store: Store, **common):
        super().__init__(cfg, store, **common)
        self.layout = renditions(cfg.thumbnails)  # (folder, format) of each thumbnail
        # With --rename keep, a size stored in several formats names its files by the
        # original's stem: a.png and a.jpg of one folder would share them.
        self.by_stem = cfg.rename != "sequential" and \
            any(len(formats) > 1 for *_, formats in cfg.thumbnails)
        # With several SOURCEs, the same folder may come from two of them: names seen
        # per folder, so that two files never get one number (and one key).
        self.seen: Optional[Dict[Tuple[str, ...], set]] = {} if len(cfg.sources) > 1 else None
        # Found out the first time a manifest is written (never on runs that write none).
        self.guard = WriteGuard(store, self.prefix, self.note)

    def jobs(self) -> Iterator[object]:
        """Directory by directory: what the walk decides at once, then the directory's
        jobs. What the store holds for a directory (its manifest, written back with new
        numbers, and the listing of its originals: round trips) is asked for ``LOOKAHEAD``
        directories ahead, on threads, so that many small folders cost no more round trips
        in series than a few large ones; jobs still come out in walk order."""
        pending: Deque[tuple] = deque()  # (reldir, images, future of the remote state)
        pool = ThreadPoolExecutor(LOOKAHEAD, thread_name_prefix="folder")
        try:
            for source in self.cfg.sources:
                if not os.path.isdir(source):
                    yield Result(self._next_seq(), source, "", FAILED,
                                 "--images takes directories as SOURCE")
                    continue
                for reldir, entries in walk_directories(
                        source, follow_symlinks=self.cfg.follow_symlinks,
                        rules=self.cfg.rules, pruned=self.pruned):
                    images = []
                    yield from self._screen(reldir, entries, images)
                    # A folder that another SOURCE fed already has its manifest updated
                    # first: one writer of a manifest at a time within a run.
                    while any(item[0] == reldir for item in pending):
                        yield from self._directory_jobs(*pending.popleft())
                    if images:
                        names = [entry.parts[-1] for entry, _ in images]
                        pending.append((reldir, images,
                                        pool.submit(self._remote_state, reldir, names)))
                    while len(pending) > LOOKAHEAD or (pending and pending[0][2].done()):
                        yield from self._directory_jobs(*pending.popleft())
            while pending:
                yield from self._directory_jobs(*pending.popleft())
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            self.guard.close()

    def _screen(self, reldir: Tuple[str, ...], entries: List[Entry],
                images: list) -> Iterator[Result]:
        """Yield the outcomes the walk knows at once (filtered, special, not an image...);
        append (entry, image kind) of the images to IMAGES."""
        for entry in entries:
            key, known = self.screen(entry, check=False)  # its own keys are checked below
            if known is not None:
                yield known
            if known is not None or not key:
                continue
            if self.seen is not None:
                names = self.seen.setdefault(reldir, set())
                if entry.parts[-1] in names:
                    yield self.outcome(entry, key, FAILED,
                                       "another SOURCE has a file of this name in the same "
                                       "folder; both would get the same number")
                    continue
                names.add(entry.parts[-1])
            kind, why_not = _sniff(entry)
            if kind is None:
                yield self.outcome(entry, key, SKIPPED if why_not == NOT_AN_IMAGE else FAILED,
                                   why_not)
                continue
            images.append((entry, kind))

    def _remote_state(self, reldir: Tuple[str, ...], names: List[str]):
        """What the store says of one directory (on a lookahead thread): its numbers (or
        why it has none), the names this run numbered, and the listing of its originals."""
        numbers, new, error = self._numbers(reldir, names)
        return numbers, new, error, None if error else self._originals(reldir)

    def _directory_jobs(self, reldir: Tuple[str, ...], images: list,
                        remote_state: Future) -> Iterator[object]:
        numbers, new, error, remote = remote_state.result()
        if error:
            for entry, _ in images:
                yield self.outcome(entry, "", FAILED, error)
            return
        stems: Dict[str, str] = {}  # --rename keep, several formats: stem -> its file
        for entry, kind in images:
            name = entry.parts[-1]
            if self.cfg.rename == "sequential":
                stored_name = f"{numbers[name]}.{_extension(name, kind.extension)}"
            else:
                stored_name = name
            original = join_key(self.prefix, [*reldir, ORIGINAL_FOLDER, stored_name])
            keys = [original, *thumbnail_keys(self.prefix, reldir, stored_name,
                                              self.cfg.thumbnails)]
            try:
                for key in keys:
                    check_key(key, path=entry.display)
            except FileError as err:
                yield self.outcome(entry, keys[0], FAILED, err.message)
                continue
            if self.by_stem:
                clash = stems.setdefault(name.rpartition(".")[0] or name, name)
                if clash != name:
                    yield self.outcome(entry, original, FAILED,
                                       f"its thumbnails would have the keys of {clash}'s "
                                       "(the same name but for the extension, with several "
                                       "formats per size and --rename keep)")
                    continue
            thumbnails = tuple(zip((folder for folder, _ in self.layout), keys[1:],
                                   strict=True))
            job = Job(self._next_seq(), entry.display, original, entry.source, entry.size,
                      entry.mtime_ns, self.remote_of(original, remote),
                      self.journal_lookup(original), numbers.get(name), thumbnails,
                      create_only=name in new)
            yield skip_early(self.rules, job, self.headers,
                             content_type_of(self.cfg, name, b"", kind.mime)) or job

    def _numbers(self, reldir, names: List[str]) -> Tuple[Dict[str, int], Set[str], str]:
        """({name: number} for this directory (empty with --rename keep), the names this
        run numbered, error): the error says why the manifest could not be read or
        written."""
        if self.cfg.rename != "sequential":
            return {}, set(), ""
        manifest_key = join_key(self.prefix, [*reldir, MANIFEST_NAME])
        try:
            numbers, new = self._update_manifest(manifest_key, names)
        except FileError as err:
            return {}, set(), f"not numbered: manifest {manifest_key}: {err.message}"
        return numbers, new, ""

    def _update_manifest(self, key: str, names: List[str]) -> Tuple[Dict[str, int], Set[str]]:
        """Number NAMES in the manifest at KEY and store it, as one compare-and-swap: read
        it (and its ETag), number the new names, write it only if it is still the version
        read (or still absent). A lost round (another run wrote it) reads again after a
        short jittered wait, so the new names are numbered after what the other run took.
        Returns ({name: number}, the names numbered here); a dry run writes nothing."""
        for attempt in range(MANIFEST_ATTEMPTS):
            read_at = time.monotonic()
            found = self.store.get_with_etag(key)
            data, etag = found if found is not None else (None, None)
            manifest = Manifest.parse(data)
            new = {name for name in names if name not in manifest.files}
            numbers = {name: manifest.number(name) for name in sorted(names)}
            if not manifest.changed or self.cfg.dry_run:
                return numbers, new
            guard = self.guard.ready()  # the first write of the run probes the store
            if not guard.cas:
                if read_at < guard.since:
                    continue  # read before the lock was ours: read again under it
                guard.check()
                self.store.put(key, manifest.dumps(), {"ContentType": "application/json"})
                return numbers, new
            try:
                self.store.put(key, manifest.dumps(), {"ContentType": "application/json"},
                               if_none_match=etag is None, if_match=etag)
                return numbers, new
            except PreconditionFailed:
                self.note("debug", f"manifest {key} was written by another run meanwhile; "
                          "reading it again")
                time.sleep(random.uniform(0, min(BACKOFF_MAX_SECONDS,
                                                 BACKOFF_SECONDS * 2 ** attempt)))
        raise FileError(f"other runs wrote it {MANIFEST_ATTEMPTS} times while this run "
                        "numbered; run again")

    def _originals(self, reldir) -> Optional["FolderListing"]:
        """What the original folder of this directory holds (one LIST request per 1,000
        keys); None when listing is not possible or not needed."""
        if not needs_remote(self.cfg.put) or not self.can_list:
            return None
        folder = join_key(self.prefix, [*reldir, ORIGINAL_FOLDER]) + "/"
        return FolderListing(self.store.list_objects(folder, delimiter="/"))


class FolderListing:
    """The objects of one folder, answering ``lookup(key)`` as a ``ListingIndex`` does
    (``UNLISTED`` for what a listing the store broke did not cover)."""

    def __init__(self, items):
        self.items: Dict[str, RemoteObject] = {}
        self.broken = ""
        try:
            for item in items:
                self.items[item.key] = item
        except ListingBroken as err:
            self.broken = err.message

    def lookup(self, key: str) -> Remote:
        found = self.items.get(key)
        return UNLISTED if found is None and self.broken else found
