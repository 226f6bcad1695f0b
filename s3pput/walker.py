"""The walker's logic: SOURCEs in, jobs out (pipeline.py runs it in its own process).

For each SOURCE it walks the files (``sources``), applies the include/exclude rules
(``filters``), names the keys (``keys``), and attaches what the destination already holds:
for a directory tree, from **one streamed listing** merged in key order with the walk
(about one LIST request per 1,000 keys, memory bounded by one page); for named files and
archive members, the putter asks with a HEAD request instead (``UNLISTED``).
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, Optional, Union

from . import plan
from .config import Config
from .errors import FileError
from .filters import excluded_by
from .jobs import FAILED, UNLISTED, Job, RemoteObject, Result
from .keys import check_key, join_key, normalize_prefix
from .sources import Entry, file_entry, is_archive, walk_archive, walk_tree
from .store import Store


class SortedListing:
    """Answers "what does the store hold at KEY?" for keys asked in ascending order,
    by advancing one listing stream. A key asked out of order gets ``UNLISTED`` (the
    putter then asks the store itself), so a surprise in ordering costs a request, never
    a wrong decision."""

    def __init__(self, listing: Iterator[RemoteObject]):
        self.listing = listing
        self.current: Optional[RemoteObject] = next(self.listing, None)
        self.last_asked = ""

    def lookup(self, key: str):
        if key < self.last_asked:
            return UNLISTED
        self.last_asked = key
        while self.current is not None and self.current.key < key:
            self.current = next(self.listing, None)
        if self.current is not None and self.current.key == key:
            return self.current
        return None


Output = Union[Job, Result]


class Walker:
    """Turns the configured SOURCEs into jobs (and results for files that cannot be jobs)."""

    def __init__(self, cfg: Config, store: Optional[Store], *, can_list: bool,
                 spool_dir: str, journal_lookup: Callable = lambda key: None,
                 note: Callable[[str, str], None] = lambda level, text: None):
        self.cfg = cfg
        self.store = store
        self.can_list = can_list
        self.spool_dir = spool_dir
        self.journal_lookup = journal_lookup
        self.note = note
        self.prefix = normalize_prefix(cfg.prefix)
        self.seq = 0

    def needs_remote(self) -> bool:
        return self.cfg.put != plan.STUPID

    def listing_for_tree(self) -> Optional[SortedListing]:
        if not (self.needs_remote() and self.can_list and self.store is not None):
            return None
        return SortedListing(self.store.list_sorted(self.prefix + "/" if self.prefix else ""))

    def jobs(self) -> Iterator[Output]:
        for source in self.cfg.sources:
            if os.path.isdir(source):
                listing = self.listing_for_tree()
                for entry in walk_tree(source, follow_symlinks=self.cfg.follow_symlinks):
                    yield from self._emit(entry, listing)
            elif is_archive(source):
                for entry in walk_archive(source, self.spool_dir):
                    yield from self._emit(entry, None)
            else:
                name = os.path.basename(os.path.normpath(source))
                # A file named on the command line is followed even if it is a link.
                entry = file_entry(source, (name,), follow_symlinks=True)
                yield from self._emit(entry, None)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _emit(self, entry: Entry, listing: Optional[SortedListing]) -> Iterator[Output]:
        relpath = "/".join(entry.parts)
        if entry.parts:
            why = excluded_by(self.cfg.rules, relpath)
            if why:
                self.note("debug", f"excluded {entry.display} ({why})")
                return
        key = join_key(self.prefix, entry.parts)
        if entry.problem:
            yield Result(self._next_seq(), entry.display, key, entry.outcome, entry.problem)
            return
        try:
            check_key(key, path=entry.display)
        except FileError as err:
            yield Result(self._next_seq(), entry.display, key, FAILED, err.message,
                         size=entry.size)
            return
        if not self.needs_remote():
            remote = None
        elif listing is not None:
            remote = listing.lookup(key)
        else:
            remote = UNLISTED
        yield Job(self._next_seq(), entry.display, key, entry.source, entry.size,
                  entry.mtime_ns, remote, self.journal_lookup(key))
