"""The walker's logic: SOURCEs in, jobs out (``lifecycle`` runs it in its own process).

For each SOURCE it walks the files (``sources``), applies the include/exclude rules
(``filters``), names the keys (``keys``), and attaches what the destination already holds:
for a directory tree, from **one listing** of the destination prefix (one LIST request per
1,000 keys, kept on disk: see ``ListingIndex``); for named files and archive members, the
putter asks with a HEAD request instead (``UNLISTED``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

from ..config import Config
from ..decide import SKIP, Evidence, Rules, decide, needs_remote
from ..errors import FileError, ListingBroken
from ..filters import excluded_by
from ..headers import RunHeaders, type_by_name
from ..jobs import FAILED, SKIPPED, UNLISTED, Job, Remote, RemoteObject, Result
from ..keys import check_key, join_key, normalize_prefix
from ..sources import Entry, file_entry, is_archive, walk_archive, walk_tree
from ..store import Store
from .feed import FLUSH


class ListingIndex:
    """What the store holds under a prefix, from one listing read page by page (1,000
    keys a request) on a thread of its own while the walk goes on: in a dict up to
    ``SPILL_AFTER`` keys, then moved to a temporary SQLite table, so memory stays bounded
    whatever the number of keys.

    A key that is present is answered as soon as its page has arrived; "absent" is
    answered only once the whole listing has been read. No order is assumed: S3 lists in
    UTF-8 byte order, but some compatible stores do not (SeaweedFS lists ``a/1`` before
    ``a.txt``), and a merge that trusted the order would call present keys absent. A
    listing that fails raises its error from the next lookup that needs it; a listing the
    store broke (``ListingBroken``: a token that loops...) answers ``UNLISTED`` for what it
    did not cover, so that a putter asks for those keys with a HEAD each (``broken`` says
    why).
    """

    SPILL_AFTER = 100_000

    def __init__(self, listing: Iterator[RemoteObject], path: str, *,
                 spill_after: int = SPILL_AFTER):
        self.path = path
        self.spill_after = spill_after
        self.done = False
        self.error: Optional[BaseException] = None
        self.broken = ""  # the store's fault that stopped the listing
        self.memory: Dict[str, RemoteObject] = {}
        self.db: Optional[sqlite3.Connection] = None
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(listing,), daemon=True,
                                       name="listing")
        self.thread.start()

    def _spill(self) -> None:
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE remote (key TEXT PRIMARY KEY, size INTEGER, etag TEXT,"
                        " storage_class TEXT) WITHOUT ROWID")
        self._store(self.memory.values())
        self.memory = {}

    def _store(self, rows) -> None:
        self.db.executemany("INSERT OR REPLACE INTO remote VALUES (?, ?, ?, ?)",
                            (row[:4] for row in rows))

    def _add(self, rows: List[RemoteObject]) -> None:
        with self.condition:
            if self.db is None and len(self.memory) + len(rows) > self.spill_after:
                self._spill()
            if self.db is not None:
                self._store(rows)
            else:
                self.memory.update((row.key, row) for row in rows)
            self.condition.notify_all()

    def _read(self, listing: Iterator[RemoteObject]) -> None:
        rows: List[RemoteObject] = []
        try:
            for item in listing:
                rows.append(item)
                if len(rows) >= 1000:
                    self._add(rows)
                    rows = []
            self._add(rows)
        except ListingBroken as err:
            self._add(rows)  # what did arrive is true
            self.broken = err.message
        except BaseException as err:  # noqa: BLE001 - handed to the walker's next lookup
            self._add(rows)  # what did arrive is true
            self.error = err
        with self.condition:
            self.done = True
            self.condition.notify_all()

    def _find(self, key: str) -> Optional[RemoteObject]:
        if self.db is None:
            return self.memory.get(key)
        row = self.db.execute("SELECT key, size, etag, storage_class FROM remote WHERE key=?",
                              (key,)).fetchone()
        return RemoteObject(*row) if row else None

    def pending(self, key: str) -> bool:
        """Whether ``lookup(key)`` would wait (the key has not come, the listing goes on)."""
        with self.condition:
            return not self.done and self._find(key) is None

    def lookup(self, key: str) -> Remote:
        with self.condition:
            while True:
                found = self._find(key)
                if found is not None:
                    return found
                if self.done:
                    if self.error is not None:
                        raise self.error
                    return UNLISTED if self.broken else None
                self.condition.wait()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


Output = Union[Job, Result]


def skip_early(rules: Rules, job: Job, headers: RunHeaders, ctype: Optional[str] = None
               ) -> Optional[Result]:
    """The SKIPPED result of JOB when what the walk knows decides it already (``decide``
    with the listing's entry and the journal row; CTYPE: the Content-Type the file is put
    with, when the walker knows it, else from the name when that decides it), else None:
    a putter gathers the rest.

    The walker calls this so that the files a re-run does not touch never travel to a
    putter: an unchanged tree costs a walk and a listing, nothing more.
    """
    if job.remote is UNLISTED:  # only a putter's HEAD can tell
        return None
    ctype = ctype or type_by_name(headers.cfg, job.key.rsplit("/", 1)[-1])
    wanted = headers.for_type(ctype) if ctype else None
    verdict = decide(rules, job, Evidence(job.remote, job.journal, wanted=wanted))
    if verdict.action != SKIP:
        return None
    return job.result(SKIPPED, verdict.reason, mtime_ns=job.mtime_ns,
                      etag=job.remote.etag if job.remote else "")


class WalkerBase:
    """What every walker has: the run's settings, the store to read, the journal to
    consult, a way to tell the user things, and the sequence numbers of jobs."""

    def __init__(self, cfg: Config, store: Optional[Store], *, can_list: bool,
                 journal_lookup: Callable = lambda key: None,
                 note: Callable[[str, str], None] = lambda level, text: None):
        self.cfg = cfg
        self.store = store
        self.can_list = can_list
        self.journal_lookup = journal_lookup
        self.note = note
        self.prefix = normalize_prefix(cfg.prefix)
        self.seq = 0
        self.headers = RunHeaders(cfg)
        self.rules = Rules.of(cfg)
        self.told: set = set()  # the store's listing faults the user was told about

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def outcome(self, entry: Entry, key: str, outcome: str, reason: str) -> Result:
        """The one result of ENTRY when the walk decides it already (no job is made)."""
        return Result(self._next_seq(), entry.display, key, outcome, reason, size=entry.size)

    def pruned(self, path: str, why: str) -> None:
        """The walk left out the directory PATH as a whole (noted at -vv)."""
        self.note("debug", f"excluded {path}/ ({why})")

    def remote_of(self, key: str, index) -> Remote:
        """What the job of KEY carries about the store: nothing to know (stupid), the
        listing's answer (INDEX: a ``ListingIndex`` or ``FolderListing``), or UNLISTED (a
        putter asks)."""
        if not needs_remote(self.cfg.put):
            return None
        if index is None:
            return UNLISTED
        found = index.lookup(key)
        if found is UNLISTED and index.broken and index.broken not in self.told:
            self.told.add(index.broken)
            self.note("warning", f"{index.broken}: the listing was stopped there; the files "
                      "it did not cover are looked up with one HEAD each (slower, and "
                      "every reason stays true)")
        return found

    def screen(self, entry: Entry, *, check: bool = True) -> Tuple[str, Optional[Result]]:
        """Apply the filters, the walk's own verdict and (with CHECK) the key rules to
        ENTRY: ("", None) when the filters leave it out (noted at -vv), (key, a Result)
        when its outcome is known already (a special file, an error, an invalid key), else
        (key, None)."""
        if entry.parts:
            why = excluded_by(self.cfg.rules, "/".join(entry.parts))
            if why:
                self.note("debug", f"excluded {entry.display} ({why})")
                return "", None
        key = join_key(self.prefix, entry.parts)
        if entry.problem:
            return key, self.outcome(entry, key, entry.outcome, entry.problem)
        if check:
            try:
                check_key(key, path=entry.display)
            except FileError as err:
                return key, self.outcome(entry, key, FAILED, err.message)
        return key, None


class Walker(WalkerBase):
    """Turns the configured SOURCEs into jobs (and results for files that cannot be jobs)."""

    def __init__(self, cfg: Config, store: Optional[Store], *, spool_dir: str,
                 first_page: Optional[tuple] = None, **common):
        """FIRST_PAGE: the listing's first page, read by the up-front check."""
        super().__init__(cfg, store, **common)
        self.spool_dir = spool_dir
        self.first_page = first_page
        self.index: Optional[ListingIndex] = None

    def listing_for_tree(self) -> Optional[ListingIndex]:
        """The index of the destination prefix, made once per run (sources share it)."""
        if not (needs_remote(self.cfg.put) and self.can_list and self.store is not None):
            return None
        if self.index is None:
            listing = self.store.list_objects(self.prefix + "/" if self.prefix else "",
                                              first_page=self.first_page)
            self.index = ListingIndex(listing, os.path.join(self.spool_dir, "listing.sqlite"))
        return self.index

    def jobs(self) -> Iterator[Output]:
        for source in self.cfg.sources:
            if os.path.isdir(source):
                listing = self.listing_for_tree()
                for entry in walk_tree(source, follow_symlinks=self.cfg.follow_symlinks,
                                       rules=self.cfg.rules, pruned=self.pruned):
                    yield from self._emit(entry, listing)
            elif is_archive(source):
                for entry in walk_archive(source, self.spool_dir):
                    yield from self._emit(entry, None)
            else:
                name = os.path.basename(os.path.normpath(source))
                # A file named on the command line is followed even if it is a link.
                entry = file_entry(source, (name,), follow_symlinks=True)
                yield from self._emit(entry, None)

    def _emit(self, entry: Entry, listing: Optional[ListingIndex]) -> Iterator[Output]:
        key, known = self.screen(entry)
        if known is not None:
            yield known
        if known is not None or not key:
            return
        if listing is not None and listing.pending(key):
            yield FLUSH  # the jobs queued so far go out while this one waits for the listing
        job = Job(self._next_seq(), entry.display, key, entry.source, entry.size,
                  entry.mtime_ns, self.remote_of(key, listing), self.journal_lookup(key))
        yield skip_early(self.rules, job, self.headers) or job
