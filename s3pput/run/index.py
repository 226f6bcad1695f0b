"""The folder index: what a web page needs to show each image of one source directory,
in one JSON object beside its manifest, ``PREFIX/DIR/.s3pput-index.json``::

    {"version": 1,
     "images": {
       "1": {"source": "0001_anna.png", "width": 300, "height": 450,
             "placeholder": {"thumbhash": "1QcSHQRnh493V4dIh4eXh1h4kJUI"},
             "original": {"key": "avatar/female/original/1.png",
                          "content_type": "image/png", "bytes": 53211},
             "thumbnails": {"thumbnail": [
                 {"key": "avatar/female/thumbnail/1.png", "format": "jpeg",
                  "content_type": "image/jpeg", "width": 200, "height": 300}]}}}}

An image's entry is named by its number (``--rename sequential``) or by its file name
(``--rename keep``); ``width`` and ``height`` are its upright size; ``placeholder`` is
absent when none could be made; ``bytes`` is the original as stored (after
``--strip-metadata``); ``thumbnails`` maps each ``--thumbnail`` name to its formats in the
order given.

Who writes it: the statter, at the end of a real run, for the images the run uploaded.
Each entry goes first to a spool (SQLite, on disk: memory stays bounded whatever the
number of images), then each folder's index is merged: read with its ETag, the run's
entries put over the ones it holds (an image uploaded again replaces its entry; the rest
stay), written only if the index is still the version read (``If-Match``, or
``If-None-Match: *`` when there was none). When another run wrote it meanwhile (412), it
is read and merged again, at most ``INDEX_ATTEMPTS`` rounds: two runs that overlap never
lose each other's entries. An index that would not change is not written, and a run that
uploaded nothing writes none.

When the journal is kept, the spool is kept too, per endpoint, bucket and prefix in the
state directory (the one run at a time that ``overlap.hold_run_lock`` allows there owns
it): the entries of an index that could not be written stay in it, and the next run
writes them, even if it uploads nothing. Without the journal (``--no-state``) it is a
temporary file. On a store that does not honour conditional writes an index is replaced
plainly: two runs writing one folder's index within the same moment may lose entries.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from ..config import Config
from ..errors import FileError, PreconditionFailed, S3pputError
from ..jobs import UPLOADED, Result
from ..keys import encode_name, image_folder, join_key

INDEX_NAME = ".s3pput-index.json"
INDEX_VERSION = 1
INDEX_ATTEMPTS = 8  # compare-and-swap rounds before a folder's index is given up
BACKOFF_SECONDS = 0.05  # the first wait after a lost round (jittered, doubling, capped)
BACKOFF_MAX_SECONDS = 1.0
WRITERS = 16  # folders merged at once: each costs a GET and a PUT in series
JSON = {"ContentType": "application/json"}


def index_key(original_key: str) -> str:
    """The key of the index of the folder an original (``PREFIX/DIR/original/N``) is in."""
    return join_key(image_folder(original_key), [INDEX_NAME])


def entry_of(result: Result) -> Tuple[str, str, dict]:
    """(index key, entry name, entry) of an uploaded image's RESULT."""
    image = result.image
    name = result.key.rsplit("/", 1)[-1]
    entry_name = str(result.number) if result.number is not None else name
    thumbnails: Dict[str, list] = {}
    for rendition in image.thumbnails:
        thumbnails.setdefault(rendition.folder, []).append(
            {"key": rendition.key, "format": rendition.format,
             "content_type": rendition.content_type, "width": rendition.width,
             "height": rendition.height})
    entry = {"source": encode_name(os.path.basename(result.display)),
             "width": image.width, "height": image.height}
    if image.thumbhash:
        entry["placeholder"] = {"thumbhash": image.thumbhash}
    entry["original"] = {"key": result.key, "content_type": image.content_type,
                         "bytes": image.stored_bytes}
    entry["thumbnails"] = thumbnails
    return index_key(result.key), entry_name, entry


def spool_path(cfg: Config) -> Optional[str]:
    """Where the run's index entries wait: beside the run lock of its endpoint, bucket
    and prefix when the journal is kept, else None (a temporary file)."""
    if cfg.state_file is None:
        return None
    from ..overlap import run_lock_path

    return run_lock_path(cfg.bucket, cfg.endpoint_url, cfg.prefix)[:-len(".lock")] + \
        ".index.sqlite"


class IndexSpool:
    """The index entries a run has to write (and those an earlier run could not), on
    disk, by folder."""

    def __init__(self, path: Optional[str]):
        self.temporary = path is None
        if path is None:
            handle, path = tempfile.mkstemp(prefix="s3pput-index-", suffix=".sqlite")
            os.close(handle)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS entries (index_key TEXT NOT NULL, "
                        "name TEXT NOT NULL, entry TEXT NOT NULL, "
                        "PRIMARY KEY (index_key, name)) WITHOUT ROWID")

    def add(self, results: Iterable[Result]) -> None:
        """Keep the entries of the uploaded images among RESULTS (one transaction)."""
        rows = [entry_of(result) for result in results
                if result.outcome == UPLOADED and result.image is not None]
        if not rows:
            return
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
                            [(key, name, json.dumps(entry, ensure_ascii=False))
                             for key, name, entry in rows])
        self.db.execute("COMMIT")

    def __bool__(self) -> bool:
        return self.db.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is not None

    def folders(self) -> Iterator[Tuple[str, Dict[str, dict]]]:
        """(index key, {entry name: entry}) for each folder, one folder in memory at a
        time."""
        keys = [row[0] for row in self.db.execute(
            "SELECT DISTINCT index_key FROM entries ORDER BY index_key")]
        for key in keys:
            yield key, {name: json.loads(entry) for name, entry in self.db.execute(
                "SELECT name, entry FROM entries WHERE index_key=?", (key,))}

    def forget(self, key: str, names: Iterable[str]) -> None:
        """The entries NAMES of the index at KEY are written: drop them."""
        self.db.executemany("DELETE FROM entries WHERE index_key=? AND name=?",
                            [(key, name) for name in names])

    def close(self) -> None:
        """Close; a temporary spool, or one with nothing left to write, is removed."""
        left = bool(self)
        self.db.close()
        if self.temporary or not left:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.remove(self.path + suffix)
                except FileNotFoundError:
                    pass


def _sort_key(name: str):
    """Numbers in their order (2 before 10), then names."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def parse_index(data: Optional[bytes], key: str) -> dict:
    """The index document in DATA (None: a new one). Raises ``FileError`` for anything
    that is not an index of this version or an older one: it is not overwritten."""
    if data is None:
        return {"version": INDEX_VERSION, "images": {}}
    try:
        doc = json.loads(data)
        images = doc["images"]
        version = int(doc.get("version", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise FileError(f"{key} is not an s3pput index ({err}); not overwritten: remove it "
                        "to have it written anew", op="index", key=key) from err
    if not isinstance(images, dict) or version > INDEX_VERSION:
        raise FileError(f"{key} is of another version ({version}) or not an s3pput index; "
                        "not overwritten", op="index", key=key)
    return doc


def dumps(doc: dict) -> bytes:
    images = {name: doc["images"][name] for name in sorted(doc["images"], key=_sort_key)}
    # Compact: a page fetches it, and a folder may hold many thousand images.
    return json.dumps({**doc, "version": INDEX_VERSION, "images": images},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def merge_index(store, key: str, entries: Dict[str, dict],
                pause=time.sleep) -> bool:
    """Put ENTRIES into the index at KEY as one compare-and-swap (see the module's
    docstring); return whether it was written (False: it held them already). Raises
    ``FileError`` when it cannot be read or written, or other runs kept winning."""
    for attempt in range(INDEX_ATTEMPTS):
        found = store.get_with_etag(key)
        data, etag = found if found is not None else (None, None)
        doc = parse_index(data, key)
        doc["images"].update(entries)
        body = dumps(doc)
        if body == data:
            return False
        try:
            store.put(key, body, JSON, if_none_match=etag is None, if_match=etag)
            return True
        except PreconditionFailed:
            pause(random.uniform(0, min(BACKOFF_MAX_SECONDS, BACKOFF_SECONDS * 2 ** attempt)))
        except FileError:
            if etag is None or store.honours_conditions is not False:
                raise
            # The store answered 501 to If-Match: it cannot compare and swap. Replace
            # plainly, as the only writer it can tell us we are.
            store.put(key, body, JSON)
            return True
    raise FileError(f"other runs wrote it {INDEX_ATTEMPTS} times while this run merged it",
                    op="index", key=key)


def write_indexes(spool: IndexSpool, store) -> Tuple[int, List[Tuple[str, str]]]:
    """Merge every folder's entries of SPOOL into its index in the store (``WRITERS``
    folders at once); return (indexes written, [(key, why) of those that failed]).
    Written entries leave the spool; failed ones stay in it."""
    written = 0
    failed: List[Tuple[str, str]] = []
    with ThreadPoolExecutor(WRITERS, thread_name_prefix="index") as pool:
        pending = []
        for key, entries in spool.folders():
            pending.append((key, list(entries), pool.submit(merge_index, store, key, entries)))
            if len(pending) >= 2 * WRITERS:  # a bounded number of folders in memory
                written += _settle(spool, pending.pop(0), failed)
        for item in pending:
            written += _settle(spool, item, failed)
    return written, failed


def _settle(spool: IndexSpool, item, failed: List[Tuple[str, str]]) -> int:
    key, names, future = item
    try:
        wrote = future.result()
    except S3pputError as err:
        failed.append((key, err.message))
        return 0
    spool.forget(key, names)
    return int(wrote)


def open_spool(cfg: Config) -> IndexSpool:
    """The run's spool (``spool_path``); a temporary one if the state directory will not
    hold it."""
    try:
        return IndexSpool(spool_path(cfg))
    except (OSError, sqlite3.Error):
        return IndexSpool(None)


def flush(cfg: Config, spool: IndexSpool) -> Optional[str]:
    """Write the indexes SPOOL has entries for (nothing, and no store made, when it has
    none); return the one error line of the run when some could not be written."""
    if not spool:
        return None
    from ..store import make_store

    store = make_store(cfg)
    try:
        _, failed = write_indexes(spool, store)
    finally:
        store.close()
    if not failed:
        return None
    key, why = failed[0]
    others = f" (and {len(failed) - 1:,} more)" if len(failed) > 1 else ""
    later = "this machine's next run on this prefix writes them" if not spool.temporary \
        else "with --no-state nothing keeps them: put those images again (--put stupid)"
    return (f"could not write the folder index s3://{cfg.bucket}/{key}{others}: {why}; the "
            f"facts of the images this run uploaded are missing from it ({later})")
