"""The local state journal: what s3pput put, so that re-runs need not re-read files.

One SQLite file per endpoint and bucket (default ``$XDG_STATE_HOME/s3pput/``, that is
``~/.local/state/s3pput/BUCKET@HOST.sqlite``; ``--state FILE`` chooses another,
``--no-state`` turns it off). Only the statter writes it, in one transaction per batch of
results, in WAL mode: a crash at any instant leaves it consistent (at worst the last
batch is missing, which costs a re-hash, never a wrong skip). The walker reads it. Runs
on other prefixes of the bucket share it: their statters take turns (each transaction
takes the write lock up front, ``BEGIN IMMEDIATE``, and waits up to 30 s for it).

A row says: when KEY was put (or found unchanged), the local file had SIZE and MTIME_NS
and content MD5, and the store answered ETAG. ``decide`` trusts it only while the local
size and mtime are the same *and* the store still shows that ETag. FINGERPRINT
(``headers.fingerprint``) says which headers the object was put with (or was seen to
have); NULL means unknown. Journals made before that column existed get it on first
write (``ALTER TABLE``), NULL in every row.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from typing import Iterable, Optional
from urllib.parse import urlparse

from .jobs import SKIPPED, UPDATED, UPLOADED, JournalEntry, Result

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    etag TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    fingerprint TEXT
) WITHOUT ROWID
"""


def default_path(bucket: str, endpoint_url: Optional[str]) -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                           ".local", "state")
    host = urlparse(endpoint_url).netloc if endpoint_url else "aws"
    name = re.sub(r"[^A-Za-z0-9._@-]", "_", f"{bucket}@{host}")
    return os.path.join(base, "s3pput", name + ".sqlite")


class Journal:
    """Reader or (single) writer of one journal file."""

    def __init__(self, path: str, *, write: bool):
        self.path = path
        self.write = write
        if write:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(SCHEMA)
            if "fingerprint" not in self._columns():
                self.db.execute("ALTER TABLE objects ADD COLUMN fingerprint TEXT")
        elif os.path.exists(path):
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30,
                                      isolation_level=None)
        else:
            self.db = None

    def _columns(self) -> set:
        return {row[1] for row in self.db.execute("PRAGMA table_info(objects)")}

    def lookup(self, key: str) -> Optional[JournalEntry]:
        if self.db is None:
            return None
        try:
            row = self.db.execute("SELECT size, mtime_ns, md5, etag, fingerprint FROM objects "
                                  "WHERE key=?", (key,)).fetchone()
        except sqlite3.OperationalError:
            # No table yet (the writer has not started), or a journal of an older version
            # that the writer has not migrated yet: its rows have no fingerprint.
            try:
                row = self.db.execute("SELECT size, mtime_ns, md5, etag FROM objects "
                                      "WHERE key=?", (key,)).fetchone()
            except sqlite3.OperationalError:
                return None
        return JournalEntry(*row) if row else None

    def record(self, results: Iterable[Result]) -> None:
        """Remember uploads and in-place updates, and unchanged files whose hash was just
        computed or whose headers were just seen."""
        now = time.time()
        rows = [(r.key, r.size, r.mtime_ns, r.md5, r.etag, now, r.fingerprint or None)
                for r in results
                if r.etag and r.mtime_ns and (r.outcome in (UPLOADED, UPDATED) or (
                    r.outcome == SKIPPED and (r.md5 or r.fingerprint)))]
        if not rows or self.db is None:
            return
        self.db.execute("BEGIN IMMEDIATE")  # the write lock now, or wait for it
        self.db.executemany("INSERT OR REPLACE INTO objects (key, size, mtime_ns, md5, etag, "
                            "recorded_at, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.execute("COMMIT")

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
