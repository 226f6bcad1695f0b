"""The picklable messages that cross process boundaries.

Data flows one way: walker -> put_queue -> putters -> stat_queue -> statter. Every job the
walker queues is first announced to the statter (``Walked``), so that the statter can name
every file that never got a result (a putter died, the run was interrupted) and the counts
always add up.
"""

from __future__ import annotations

from enum import Enum
from typing import Dict, NamedTuple, Optional, Tuple, Union


class Source(NamedTuple):
    """Where a job's bytes come from."""

    kind: str  # "file": a local file at path; "tar": a member of the archive at path;
    #            "inline": the bytes are carried in data (small members of compressed
    #            archives); "spool": a temporary copy at path (large members of them)
    path: str  # local file or archive path (bytes-safe: produced by os.fsdecode)
    offset: int = 0  # "tar": byte offset of the member's data in the archive
    data: Optional[bytes] = None  # "inline": the content itself


class RemoteObject(NamedTuple):
    """What the store says about one key (from a listing or a HEAD)."""

    key: str
    size: int
    etag: str  # without quotes; "<md5>" or "<md5 of part md5s>-<parts>"
    storage_class: str = ""  # as a listing shows it ("" when not known)
    headers: Optional[Dict[str, str]] = None  # from a HEAD: its header set (``headers``)


class JournalEntry(NamedTuple):
    """What an earlier run recorded after putting a key (see ``journal``)."""

    size: int  # local size when it was put
    mtime_ns: int  # local mtime when it was put
    md5: str  # hex MD5 of the local content (before gzip)
    etag: str  # the ETag the store returned
    fingerprint: Optional[str] = None  # of the headers it was put with; None: unknown


class Unlisted(Enum):
    """The type of ``UNLISTED``: nobody listed the key, so a putter asks the store with a
    HEAD request. An enum member survives pickling as the same object: ``is`` works."""

    UNLISTED = "unlisted"


UNLISTED = Unlisted.UNLISTED

# What the walker knows of a key: the stored object, None (absent: we listed it) or
# UNLISTED (ask the store).
Remote = Union[RemoteObject, None, Unlisted]


class Job(NamedTuple):
    """One local file to put: everything a putter needs, decided by the walker."""

    seq: int  # walk order number, unique in the run; names the job in every message
    display: str  # the local path as the user knows it (for messages)
    key: str  # destination key of the original
    source: Source  # how to read the bytes
    size: int  # local size in bytes at walk time
    mtime_ns: int  # local mtime at walk time (change detection)
    remote: Remote  # RemoteObject | None | UNLISTED (see above)
    journal: Optional[JournalEntry] = None  # the last recorded put of this key, if any
    number: Optional[int] = None  # image mode: the file's sequence number
    # image mode: (spec name, key) of each thumbnail, one per size and format, in the
    # order of ``keys.renditions``
    thumbnail_keys: Tuple[Tuple[str, str], ...] = ()
    create_only: bool = False  # image mode: a number this run gave: its keys must be new
    #                            (put with If-None-Match: *; if one exists: FAILED, kept)

    def result(self, outcome: str, reason: str, **fields) -> "Result":
        """This job's one outcome. Image jobs always name their number and thumbnail keys
        (for the mapping log and the plan), whatever the outcome."""
        if self.thumbnail_keys:
            fields.setdefault("number", self.number)
            fields.setdefault("extra_keys", tuple(key for _, key in self.thumbnail_keys))
        fields.setdefault("size", self.size)
        return Result(self.seq, self.display, self.key, outcome, reason, **fields)


class Rendition(NamedTuple):
    """One thumbnail of an image as stored (or as a dry run would store it)."""

    folder: str  # the --thumbnail name
    key: str
    format: str  # "jpeg", "png", "webp" or "avif"
    content_type: str
    width: int
    height: int


class StoredImage(NamedTuple):
    """What a web page needs to show one image that image mode put: its upright size, a
    placeholder, the original as stored and every thumbnail."""

    width: int  # as viewers show it (EXIF orientation or irot/imir applied)
    height: int
    thumbhash: Optional[str]  # standard base64; None when it could not be made
    content_type: str  # the original's
    stored_bytes: int  # the original's size as stored (after --strip-metadata)
    thumbnails: Tuple[Rendition, ...]


class Result(NamedTuple):
    """The single outcome of one job."""

    seq: int
    display: str
    key: str
    outcome: str  # UPLOADED, UPDATED, SKIPPED or FAILED
    reason: str  # why: "new", "changed", "forced", "metadata changed", "unchanged",
    #              "exists", or an error
    size: int = 0  # bytes of the local file
    sent: int = 0  # bytes written to the store (0 in dry-run and for skips)
    mtime_ns: int = 0  # as seen when it was read (for the journal)
    md5: str = ""  # hex MD5 of the local content, when it was computed
    etag: str = ""  # ETag of the stored object, when known
    extra_keys: Tuple[str, ...] = ()  # other objects written for this job (thumbnails)
    number: Optional[int] = None  # image mode: the sequence number given
    preview: Optional[bytes] = None  # --dry-run --preview: the first thumbnail's bytes
    fingerprint: str = ""  # of the stored object's headers, when this run knows it (journal)
    image: Optional[StoredImage] = None  # image mode, uploaded: the facts for the page
    location: bool = False  # image mode: the original read carries a location (GPS)


UPLOADED = "uploaded"
UPDATED = "updated"  # the stored content was kept; its headers were replaced in place
SKIPPED = "skipped"
FAILED = "failed"


class Walked(NamedTuple):
    """Walker -> statter: these jobs are about to be queued (seq, display, key, size)."""

    notes: Tuple[Tuple[int, str, str, int], ...]


class Results(NamedTuple):
    """Putter (or walker) -> statter: a batch of outcomes."""

    results: Tuple[Result, ...]


class Note(NamedTuple):
    """Any worker -> statter: a message for the user that is not a file outcome."""

    level: str  # "debug", "info", "warning", "error"
    text: str


class Fatal(NamedTuple):
    """Any worker -> statter and main: the run cannot go on (bad credentials mid-run...)."""

    text: str


class WalkerDone(NamedTuple):
    """Walker -> statter: the walk ended."""

    walked: int
    cut: str = ""  # why it ended early: "" (it did not), CUT_LIMIT, CUT_STOP or an error


CUT_LIMIT = "limit reached"
CUT_STOP = "stopped"


class Finish(NamedTuple):
    """Main -> statter: every worker has exited; reconcile, summarise, reply."""

    interrupted: bool
    dead_putters: Tuple[int, ...]  # exit codes of putters that died
    walker_code: Optional[int] = None  # the walker's exit code if it died
    lost: str = ""  # why the jobs without a result were lost, when main knows (the Dask
    #                 scheduler went away); also an error of the run


# Put on the put_queue once per putter after the last job.
STOP = None
