"""``--put update`` of headers (issue 12): an unchanged file whose stored headers are not
the run's is updated in place, with one server-side copy and no body sent.

First the rules, at the Store seam (``decide``, ``headers``, ``Transfer``, the walker, the
journal and the statter over the recording ``FakeStore``); then the real command against
the real local server, with requests counted as they arrive at a ``FaultProxy`` in front
of it.

What the local server (SeaweedFS 4.48) keeps, found by asking it: Content-Type,
Content-Encoding, Cache-Control, Content-Disposition, Content-Language, Expires,
x-amz-meta-*, every storage class and SSE AES256, all of them through a copy onto itself
with ``MetadataDirective=REPLACE`` too; it honours ``x-amz-copy-source-if-match``. It
accepts and ignores canned ACLs (``get_object_acl`` shows the owner's FULL_CONTROL
whatever was asked), so for ``--grant`` what is checked is the ``x-amz-acl`` header the
copy carries. A copy onto itself keeps the ETag, multipart ones included (AWS gives a
copied object the MD5 of its body: that case is tested at the seam); a multipart copy
(``upload_part_copy``) gives an ETag that is not computed from the content, so only the
journal can recognise the content afterwards, which is tested against the server.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from configs import from_keywords, seam_config
from conftest import body_of, keys_of, make_tree
from fakestore import FakeStore
from faultproxy import FaultProxy

from s3pput import decide, headers
from s3pput.digest import digest_bytes
from s3pput.errors import FileError, UsageError
from s3pput.headers import parse_headers
from s3pput.jobs import (
    FAILED,
    SKIPPED,
    UNLISTED,
    UPDATED,
    UPLOADED,
    Finish,
    Job,
    JournalEntry,
    RemoteObject,
    Results,
    Source,
    Walked,
    WalkerDone,
)
from s3pput.journal import Journal
from s3pput.run.payload import RACY_NS
from s3pput.run.statter import Log, Statter
from s3pput.run.transfer import Transfer, UploadSlots
from s3pput.run.walker import Walker
from s3pput.store import make_store

MiB = 1024 * 1024


# -- helpers -------------------------------------------------------------------------------

config = seam_config


def write(path: Path, data: bytes) -> Path:
    """Writes a file that has settled: modified long enough ago that the journal may
    vouch for it by size and mtime (``transfer.RACY_NS``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    settled = time.time_ns() - 2 * RACY_NS
    os.utime(path, ns=(settled, settled))
    return path


def job_for(path: Path, key: str, *, remote=None, journal=None, seq: int = 1,
            thumbnails=()) -> Job:
    info = path.stat()
    return Job(seq, str(path), key, Source("file", str(path)), info.st_size,
               info.st_mtime_ns, remote, journal, thumbnail_keys=tuple(thumbnails))


def put_first(tmp_path: Path, store: FakeStore, path: Path, key: str, **options) -> tuple:
    """Put PATH under KEY with a run of OPTIONS; return (its journal entry, the listing's
    view of the object)."""
    result = Transfer(config(tmp_path, **options), store, UploadSlots()).process(
        job_for(path, key))
    assert result.outcome == UPLOADED, result.reason
    entry = JournalEntry(result.size, result.mtime_ns, result.md5, result.etag,
                         result.fingerprint)
    listed = next(item for item in store.list_objects("") if item.key == key)
    return entry, listed


class _Value:
    """multiprocessing.Value's interface, in one process."""

    def __init__(self, value):
        self.value = value
        self.lock = threading.Lock()

    def get_lock(self):
        return self.lock


# -- headers and plan: pure ----------------------------------------------------------------

def test_header_set_and_fingerprint_are_what_a_put_gives():
    cfg = from_keywords(["."], bucket="bkt", header=["Cache-Control: max-age=60",
                                                  "x-amz-meta-owner: ann"],
                        grant="public-read", storage_class="GLACIER_IR")
    wanted = headers.RunHeaders(cfg).for_type("text/html")
    assert wanted.headers == {"content-type": "text/html", "cache-control": "max-age=60",
                              "x-amz-meta-owner": "ann", "x-amz-acl": "public-read",
                              "x-amz-storage-class": "GLACIER_IR"}
    assert wanted.fingerprint.endswith("/public-read")
    assert headers.recorded_acl(wanted.fingerprint) == "public-read"
    assert headers.recorded_acl(headers.fingerprint({"content-type": "a/b"})) == ""
    assert headers.recorded_acl(None) is None
    # equal sets, equal fingerprints; any difference shows
    same = headers.fingerprint(dict(reversed(list(wanted.headers.items()))))
    assert same == wanted.fingerprint
    assert headers.fingerprint({**wanted.headers, "cache-control": "max-age=61"}) != same
    # a HEAD's raw headers give the same set (names in any case, dates in any RFC form)
    shown = headers.from_http({"Content-Type": "text/html", "Cache-Control": "max-age=60",
                               "x-amz-meta-owner": "ann", "ETag": '"e"',
                               "Expires": "Tue, 1 Jan 2030 00:00:00 +0000"})
    assert shown == {"content-type": "text/html", "cache-control": "max-age=60",
                     "x-amz-meta-owner": "ann", "expires": "Tue, 01 Jan 2030 00:00:00 GMT"}


def test_expires_is_checked_and_written_as_s3_answers_it():
    for given in ("2030-01-01T00:00:00Z", "Tue, 01 Jan 2030 00:00:00 GMT", "1893456000",
                  "2030-01-01T02:00:00+02:00"):
        params, _ = parse_headers([f"Expires: {given}"])
        assert params == (("Expires", "Tue, 01 Jan 2030 00:00:00 GMT"),), given
    with pytest.raises(UsageError, match="not a date"):
        parse_headers(["Expires: soon"])


@pytest.mark.parametrize("options, expected", [
    ({}, headers.NOTHING),
    ({"gzip": True}, headers.NOTHING),  # Content-Encoding goes with the content (ETag)
    ({"grant": "public-read"}, headers.NOTHING),  # neither a listing nor a HEAD shows it
    ({"storage_class": "STANDARD_IA"}, headers.LISTING),
    ({"storage_class": "STANDARD_IA", "grant": "private"}, headers.LISTING),
    ({"header": ["Cache-Control: no-cache"]}, headers.HEAD),
    ({"header": ["x-amz-meta-a: b"]}, headers.HEAD),
    ({"sse": "AES256"}, headers.HEAD),
    ({"content_type": "magic"}, headers.HEAD),
])
def test_what_a_run_asks_of_the_stored_headers(options, expected):
    assert headers.asks(from_keywords(["."], bucket="bkt", **options)) == expected


def _look(journal_fp, *, asks=headers.NOTHING, listed="", journal_etag="e", wanted="F",
          storage_class=None):
    """The verdict on unchanged content from the journal and the listing alone."""
    journal = None if journal_fp is False else JournalEntry(1, 1, "m", journal_etag, journal_fp)
    listed_object = RemoteObject("k", 1, "e", listed)
    rules = decide.Rules("update", True, asks, storage_class)
    job = Job(1, "f", "k", Source("file", "f"), 1, 1, listed_object, journal)
    evidence = decide.Evidence(listed_object, journal, same_content=True,
                               wanted=headers.Wanted({}, {"content-type": "x"}, wanted))
    got = decide.decide(rules, job, evidence)
    return got.action + (f", {got.headers}" if got.headers else "")


SAME = "skip, recorded"  # the journal recorded these very headers
ASSUMED = "skip"  # nothing says otherwise, and looking would cost what the run did not ask
DIFFERENT = "update metadata"
LOOK = "headers"  # only a HEAD can tell


def test_the_verdict_on_headers_takes_the_cheapest_evidence_first():
    # the journal recorded a fingerprint of this very object: it decides, or a HEAD tells
    assert _look("F", asks=headers.HEAD) == SAME
    assert _look("G") == LOOK
    # ... but not for another object than the one it recorded
    assert _look("G", journal_etag="other") == ASSUMED
    # unknown (no row, or an older journal): as much as the run asks, no more
    for journal_fp in (False, None):
        assert _look(journal_fp) == ASSUMED  # a plain re-run: no HEAD
        assert _look(journal_fp, asks=headers.HEAD) == LOOK
        assert _look(journal_fp, asks=headers.LISTING, listed="STANDARD_IA",
                     storage_class="STANDARD_IA") == ASSUMED
        assert _look(journal_fp, asks=headers.LISTING, listed="STANDARD",
                     storage_class="STANDARD_IA") == DIFFERENT
        assert _look(journal_fp, asks=headers.LISTING, storage_class="STANDARD_IA") == \
            LOOK  # the listing did not say


def test_same_headers_rules():
    wanted = {"content-type": "text/plain", "cache-control": "max-age=1", "x-amz-meta-a": "1"}
    same = dict(wanted)
    assert decide.same_headers(wanted, same, recorded_acl=None)
    # content headers and metadata: exactly, absent included
    assert not decide.same_headers(wanted, {**same, "cache-control": "max-age=2"},
                                 recorded_acl=None)
    assert not decide.same_headers(wanted, {**same, "content-language": "fr"}, recorded_acl=None)
    assert not decide.same_headers(wanted, {**same, "x-amz-meta-b": "2"}, recorded_acl=None)
    assert not decide.same_headers({**wanted, "expires": "x"}, same, recorded_acl=None)
    # settings: only when the run gives them; a storage class not shown is STANDARD
    shown = {**same, "x-amz-storage-class": "GLACIER", "x-amz-server-side-encryption": "aws:kms"}
    assert decide.same_headers(wanted, shown, recorded_acl=None)
    assert decide.same_headers({**wanted, "x-amz-storage-class": "STANDARD"}, same,
                             recorded_acl=None)
    assert not decide.same_headers({**wanted, "x-amz-storage-class": "STANDARD_IA"}, same,
                                 recorded_acl=None)
    assert not decide.same_headers({**wanted, "x-amz-server-side-encryption": "AES256"}, same,
                                 recorded_acl=None)
    # the ACL: only as the journal recorded it (None: unknown, taken as the same)
    acl = {**wanted, "x-amz-acl": "public-read"}
    assert decide.same_headers(acl, same, recorded_acl=None)
    assert decide.same_headers(acl, same, recorded_acl="public-read")
    assert not decide.same_headers(acl, same, recorded_acl="")
    assert not decide.same_headers(acl, same, recorded_acl="private")


# -- Transfer at the seam ------------------------------------------------------------------

def test_changed_header_on_an_unchanged_file_costs_a_head_and_one_copy(tmp_path):
    store = FakeStore()
    path = write(tmp_path / "a.txt", b"hello")
    entry, listed = put_first(tmp_path, store, path, "a.txt",
                              header=["Cache-Control: max-age=60"])
    cfg = config(tmp_path, header=["Cache-Control: max-age=86400"])
    store.calls.clear()
    result = Transfer(cfg, store, UploadSlots()).process(
        job_for(path, "a.txt", remote=listed, journal=entry))
    assert (result.outcome, result.reason) == (UPDATED, "metadata changed")
    assert store.calls == [("head", "a.txt"), ("copy", "a.txt")]
    stored = store.objects["a.txt"]
    assert stored.body == b"hello"
    assert stored.params == {"CacheControl": "max-age=86400", "ContentType": "text/plain"}
    # what the journal records: the new ETag, the content MD5, the new fingerprint
    assert result.etag == stored.etag and result.md5 == hashlib.md5(b"hello").hexdigest()
    assert result.fingerprint == headers.RunHeaders(cfg).for_type("text/plain").fingerprint
    assert result.sent == 0


def test_journal_fingerprint_equal_to_the_runs_costs_nothing_and_records_nothing(tmp_path):
    store = FakeStore()
    path = write(tmp_path / "a.txt", b"hello")
    options = {"header": ["Cache-Control: max-age=60"], "grant": "public-read"}
    entry, listed = put_first(tmp_path, store, path, "a.txt", **options)
    store.calls.clear()
    result = Transfer(config(tmp_path, **options), store, UploadSlots()).process(
        job_for(path, "a.txt", remote=listed, journal=entry))
    assert (result.outcome, result.reason) == (SKIPPED, "unchanged")
    assert store.calls == []
    assert (result.md5, result.fingerprint) == ("", "")  # no news: no journal write


def test_without_fingerprint_a_plain_run_never_asks_and_a_header_run_asks_once(tmp_path):
    store = FakeStore()
    path = write(tmp_path / "a.txt", b"hello")
    _, listed = put_first(tmp_path, store, path, "a.txt")
    store.calls.clear()
    plain = Transfer(config(tmp_path), store, UploadSlots()).process(
        job_for(path, "a.txt", remote=listed))  # no journal: the content is hashed
    assert (plain.outcome, store.calls) == (SKIPPED, [])
    assert plain.md5 and plain.fingerprint == ""  # the hash is news; the headers unknown
    asking = config(tmp_path, header=["Content-Language: en"])
    result = Transfer(asking, store, UploadSlots()).process(job_for(path, "a.txt", remote=listed))
    assert result.outcome == UPDATED
    assert store.calls == [("head", "a.txt"), ("copy", "a.txt")]
    again = Transfer(asking, store, UploadSlots()).process(
        job_for(path, "a.txt", remote=store.head("a.txt")))
    assert (again.outcome, again.reason) == (SKIPPED, "unchanged")
    assert again.fingerprint == result.fingerprint  # seen by the HEAD: recorded


def test_a_named_file_uses_the_head_it_costs_anyway(tmp_path):
    store = FakeStore()
    path = write(tmp_path / "a.txt", b"hello")
    put_first(tmp_path, store, path, "a.txt")
    store.calls.clear()
    result = Transfer(config(tmp_path, header=["x-amz-meta-owner: bob"]), store,
                      UploadSlots()).process(job_for(path, "a.txt", remote=UNLISTED))
    assert result.outcome == UPDATED
    assert store.calls == [("head", "a.txt"), ("copy", "a.txt")]
    assert store.objects["a.txt"].params["Metadata"] == {"owner": "bob"}


def test_changed_content_with_changed_headers_is_put_once_with_the_new_headers(tmp_path):
    store = FakeStore()
    path = write(tmp_path / "a.txt", b"hello")
    entry, listed = put_first(tmp_path, store, path, "a.txt",
                              header=["Cache-Control: max-age=60"])
    write(path, b"hello, world")
    store.calls.clear()
    result = Transfer(config(tmp_path, header=["Cache-Control: no-cache"]), store,
                      UploadSlots()).process(job_for(path, "a.txt", remote=listed, journal=entry))
    assert (result.outcome, result.reason) == (UPLOADED, "changed")
    assert store.calls == [("put", "a.txt")]
    assert store.objects["a.txt"].params["CacheControl"] == "no-cache"
    assert result.fingerprint


def test_limit_counts_copies_as_puts_and_a_failed_copy_fails_that_file_only(tmp_path):
    store = FakeStore()
    jobs = []
    for n in range(3):
        path = write(tmp_path / f"f{n}.txt", b"%d" % n)
        entry, listed = put_first(tmp_path, store, path, f"f{n}.txt")
        jobs.append(job_for(path, f"f{n}.txt", remote=listed, journal=entry, seq=n))
    cfg = config(tmp_path, header=["Cache-Control: no-cache"])
    store.fail("copy", FileError("AccessDenied: no", op="update metadata", key="f0.txt"))
    transfer = Transfer(cfg, store, UploadSlots(_Value(1)))
    results = [transfer.process(job) for job in jobs]
    assert [(r.outcome, r.reason) for r in results] == [
        (FAILED, "AccessDenied: no"),  # its slot was taken: a failed put counts too
        (SKIPPED, "limit reached"), (SKIPPED, "limit reached")]
    transfer = Transfer(cfg, store, UploadSlots(_Value(1)))
    results = [transfer.process(job) for job in jobs[1:]]
    assert [r.outcome for r in results] == [UPDATED, SKIPPED]


def test_an_object_replaced_since_the_listing_is_not_updated(tmp_path):
    store = FakeStore()
    path = write(tmp_path / "a.txt", b"hello")
    entry, listed = put_first(tmp_path, store, path, "a.txt")
    store.objects["a.txt"] = store.objects["a.txt"]._replace(etag="someone-else")
    result = Transfer(config(tmp_path, header=["Cache-Control: no-cache"]), store,
                      UploadSlots()).process(job_for(path, "a.txt", remote=listed,
                                                 journal=entry._replace(fingerprint="x")))
    assert result.outcome == FAILED and "changed since it was listed" in result.reason
    assert store.count("copy") == 0


def test_image_thumbnails_are_updated_with_their_original_and_before_it(tmp_path):
    path = write(tmp_path / "p.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    store = FakeStore({"o/1.png": path.read_bytes(), "t/1.png": b"thumb"})
    listed = next(item for item in store.list_objects("o/"))
    cfg = config(tmp_path, images=True, header=["Cache-Control: max-age=9"],
                 thumbnail_format="webp")
    result = Transfer(cfg, store, UploadSlots()).process(
        job_for(path, "o/1.png", remote=listed, thumbnails=[("thumbnail", "t/1.png")]))
    assert (result.outcome, result.extra_keys) == (UPDATED, ("t/1.png",))
    assert [call for call in store.calls if call[0] == "copy"] == \
        [("copy", "t/1.png"), ("copy", "o/1.png")]
    assert store.objects["o/1.png"].params == {"CacheControl": "max-age=9",
                                               "ContentType": "image/png"}
    assert store.objects["t/1.png"].params == {"CacheControl": "max-age=9",
                                               "ContentType": "image/webp"}


def test_dry_run_plans_the_update_and_writes_nothing(tmp_path):
    from s3pput.store import DryRunStore

    store = FakeStore()
    path = write(tmp_path / "a.txt", b"hello")
    entry, listed = put_first(tmp_path, store, path, "a.txt")
    cfg = config(tmp_path, dry_run=True, header=["Cache-Control: x"])
    dry = make_store(cfg)
    assert isinstance(dry, DryRunStore)
    dry.head = store.head  # it reads like the real store
    result = Transfer(cfg, dry, UploadSlots()).process(
        job_for(path, "a.txt", remote=listed, journal=entry))
    assert (result.outcome, result.etag) == (UPDATED, listed.etag)
    assert "CacheControl" not in store.objects["a.txt"].params


# -- the ETag keeps its meaning after a copy -----------------------------------------------

def test_a_copy_that_makes_a_multipart_etag_single_part_is_still_recognised(tmp_path):
    """AWS gives a copied object the MD5 of its body as ETag: the journal records that ETag
    (and the content's MD5 as far as it was known: a multipart upload takes none), and
    ``update`` recognises the content after, with the journal (no request) and without it
    (by hashing)."""
    data = os.urandom(3 * MiB + 5)
    path = write(tmp_path / "big.bin", data)
    store = FakeStore()
    parts = {"multipart_threshold": 1, "internal": {"part_size": MiB}}
    entry, listed = put_first(tmp_path, store, path, "big.bin", **parts)
    assert listed.etag.endswith("-4")
    journal = Journal(str(tmp_path / "state.sqlite"), write=True)
    cfg = config(tmp_path, header=["Cache-Control: no-cache"], **parts)
    result = Transfer(cfg, store, UploadSlots()).process(
        job_for(path, "big.bin", remote=listed, journal=entry))
    assert result.outcome == UPDATED
    assert result.etag == hashlib.md5(data).hexdigest() == store.objects["big.bin"].etag
    journal.record([result])
    recorded = journal.lookup("big.bin")
    assert (recorded.etag, recorded.md5, recorded.fingerprint) == \
        (result.etag, entry.md5, result.fingerprint)
    journal.close()
    now = store.head("big.bin")._replace(headers=None)  # as a listing shows it
    store.calls.clear()
    with_journal = Transfer(cfg, store, UploadSlots()).process(
        job_for(path, "big.bin", remote=now, journal=recorded))
    without = Transfer(cfg, store, UploadSlots()).process(job_for(path, "big.bin", remote=now))
    assert (with_journal.outcome, with_journal.reason) == (SKIPPED, "unchanged")
    assert (without.outcome, without.reason) == (SKIPPED, "unchanged")
    assert store.calls == [("head", "big.bin")]  # the hashing run asks for the headers once


def test_a_copy_in_parts_uses_the_runs_part_size_so_hashing_recognises_it(tmp_path):
    data = os.urandom(3 * MiB + 5)
    path = write(tmp_path / "big.bin", data)
    store = FakeStore({"big.bin": data})
    store.copy_limit = MiB  # as if above 5 GiB
    cfg = config(tmp_path, header=["Cache-Control: no-cache"], internal={"part_size": 2 * MiB})
    listed = next(iter(store.list_objects("")))
    result = Transfer(cfg, store, UploadSlots()).process(job_for(path, "big.bin", remote=listed))
    assert result.outcome == UPDATED
    assert result.etag == digest_bytes(data, 2 * MiB).etag(multipart=True)
    again = Transfer(cfg, store, UploadSlots()).process(
        job_for(path, "big.bin", remote=store.head("big.bin")))
    assert (again.outcome, again.reason) == (SKIPPED, "unchanged")


# -- the walker, the journal, the statter --------------------------------------------------

def _walk(tmp_path, store, journal, **options):
    walker = Walker(config(tmp_path, **options), store, spool_dir=str(tmp_path),
                    can_list=True, journal_lookup=journal.get)
    return {item.key: item for item in walker.jobs()}


def test_walker_skips_by_the_journals_fingerprint_and_hands_the_rest_to_putters(tmp_path):
    src = tmp_path / "src"
    store = FakeStore()
    journal = {}
    options = {"header": ["Cache-Control: max-age=60"]}
    for name in ("a.txt", "b.html", "c.unknown-ext"):
        entry, _ = put_first(tmp_path, store, write(src / name, name.encode()), name,
                             **options)
        journal[name] = entry
    store.calls.clear()
    same = _walk(tmp_path, store, journal, **options)
    assert all(item.outcome == SKIPPED for item in same.values())
    other = _walk(tmp_path, store, journal, header=["Cache-Control: no-store"])
    assert all(isinstance(item, Job) for item in other.values())
    # magic mode: a name that says nothing leaves the type (so the fingerprint) unknown
    magic = _walk(tmp_path, store, journal, content_type="magic", **options)
    assert isinstance(magic["c.unknown-ext"], Job) and magic["a.txt"].outcome == SKIPPED
    assert store.count("head") == 0 and store.count("copy") == 0


def test_walker_with_an_old_journal_skips_plain_runs_and_lists_storage_classes(tmp_path):
    src = tmp_path / "src"
    store = FakeStore()
    journal = {}
    for name in ("a.txt", "b.txt"):
        entry, _ = put_first(tmp_path, store, write(src / name, b"x" + name.encode()), name,
                             storage_class="STANDARD_IA" if name == "a.txt" else None)
        journal[name] = entry._replace(fingerprint=None)  # a journal of an older version
    plain = _walk(tmp_path, store, journal)
    assert {item.outcome for item in plain.values()} == {SKIPPED}
    classed = _walk(tmp_path, store, journal, storage_class="STANDARD_IA")
    assert classed["a.txt"].outcome == SKIPPED and isinstance(classed["b.txt"], Job)
    assert store.count("head") == 0


def test_journal_of_an_older_version_is_migrated_and_read_before_that(tmp_path):
    path = str(tmp_path / "old.sqlite")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE objects (key TEXT PRIMARY KEY, size INTEGER NOT NULL, "
               "mtime_ns INTEGER NOT NULL, md5 TEXT NOT NULL, etag TEXT NOT NULL, "
               "recorded_at REAL NOT NULL) WITHOUT ROWID")
    db.execute("INSERT INTO objects VALUES ('k', 1, 2, 'm', 'e', 0)")
    db.commit()
    db.close()
    reader = Journal(path, write=False)
    assert reader.lookup("k") == JournalEntry(1, 2, "m", "e", None)
    writer = Journal(path, write=True)  # the statter's: it adds the column
    assert writer.lookup("k") == JournalEntry(1, 2, "m", "e", None)
    assert reader.lookup("k") == JournalEntry(1, 2, "m", "e", None)
    from s3pput.jobs import Result
    writer.record([Result(1, "x", "k2", UPDATED, "metadata changed", size=3, mtime_ns=4,
                          md5="m2", etag="e2", fingerprint="f/private"),
                   Result(2, "y", "k3", SKIPPED, "unchanged", size=3, mtime_ns=4, etag="e3",
                          fingerprint="g"),  # headers seen, hash not computed
                   Result(3, "z", "k4", SKIPPED, "unchanged", size=3, mtime_ns=4, etag="e4")])
    assert writer.lookup("k2") == JournalEntry(3, 4, "m2", "e2", "f/private")
    assert writer.lookup("k3").fingerprint == "g"
    assert writer.lookup("k4") is None  # no news
    writer.close()
    reader.close()


def test_statter_counts_metadata_updates_apart_and_plans_them_in_dry_run(tmp_path):
    for dry_run in (False, True):
        cfg = config(tmp_path, json=True, dry_run=dry_run, verbose=1)
        out, err = io.StringIO(), io.StringIO()
        statter = Statter(cfg, Log(verbose=1, quiet=False, json_mode=True, log_file=None,
                                   stdout=out, stderr=err))
        path = write(tmp_path / "a", b"a")
        statter.handle(Walked(((1, "a", "a", 1), (2, "b", "b", 1))))
        statter.handle(Results((job_for(path, "a", seq=1).result(UPDATED, "metadata changed"),
                                job_for(path, "b", seq=2).result(UPLOADED, "new"))))
        statter.handle(WalkerDone(2))
        summary = statter.finish(Finish(False, ()))
        assert (summary["walked"], summary["uploaded"], summary["updated_metadata"],
                summary["skipped"], summary["failed"]) == (2, 1, 1, 0, 0)
        verb = "would update" if dry_run else "updated"
        assert f"{verb} metadata of {path} -> s3://bucket/a (metadata changed)" in \
            err.getvalue()
        assert json.loads(out.getvalue())["updated_metadata"] == 1
    from s3pput.stats import human_summary
    assert "updated the metadata of 1 file, 0 skipped" in human_summary(summary | {
        "dry_run": False})


# -- the real command against the real server ----------------------------------------------

@pytest.fixture
def proxy(s3server):
    """A FaultProxy in front of the server that injects nothing: it counts the requests
    (``copies``: those with x-amz-copy-source) and records their heads."""
    with FaultProxy(int(s3server.endpoint.rsplit(":", 1)[1]), record_heads=True) as proxy:
        yield proxy


@pytest.fixture
def src(tmp_path):
    return tmp_path / "src"


@pytest.fixture
def run(cli, bucket, src, proxy, tmp_path):
    """run(*options) -> the --json summary of a run on SRC through the proxy, with its own
    journal (``--no-state`` among OPTIONS turns it off); the proxy's counters start at 0."""
    def run(*options, check=True):
        proxy.reset_counters()
        state = () if "--no-state" in options else ("--state", tmp_path / "state.sqlite")
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--json", *state,
                     *options, src)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
            return summary_of(result)
        return result
    return run


def summary_of(result) -> dict:
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    return json.loads(lines[0])


def outcome(summary: dict) -> tuple:
    """(uploaded, updated_metadata, skipped, failed), with walked the sum of them."""
    counted = (summary["uploaded"], summary["updated_metadata"], summary["skipped"],
               summary["failed"])
    assert summary["walked"] == sum(counted), summary
    return counted


def puts(proxy) -> int:
    """PUT requests that send a body (copies aside)."""
    return proxy.by_method["PUT"] - proxy.copies


def test_a_header_changed_on_100_unchanged_files_costs_100_copies_and_no_put(
        run, proxy, s3, bucket, src):
    files = {f"d{n % 4}/f{n:03d}.txt": b"file %d" % n for n in range(100)}
    make_tree(src, files)
    assert outcome(run("--header", "Cache-Control: max-age=60")) == (100, 0, 0, 0)
    etags = {key: item["ETag"] for key, item in keys_of(s3, bucket).items()}

    changed = run("--header", "Cache-Control: max-age=86400")
    assert outcome(changed) == (0, 100, 0, 0)
    assert changed["bytes_sent"] == 0 and changed["skipped_reasons"] == {}
    # the journal says the headers differ: one HEAD each tells, then one copy each
    assert (proxy.copies, puts(proxy), proxy.by_method["POST"]) == (100, 0, 0)
    assert proxy.by_method["HEAD"] == 100  # one each (the up-front check is a LIST)
    assert proxy.by_method["GET"] == 1  # the listing's one page, which is the up-front check
    for key in files:
        info = s3.head_object(Bucket=bucket, Key=key)
        assert (info["CacheControl"], info["ContentType"]) == ("max-age=86400", "text/plain")
        assert info["ETag"] == etags[key]
    assert body_of(s3, bucket, "d3/f099.txt") == files["d3/f099.txt"]

    again = run("--header", "Cache-Control: max-age=86400")
    assert outcome(again) == (0, 0, 100, 0)
    assert (proxy.by_method["PUT"], proxy.by_method["HEAD"], proxy.by_method["GET"]) == (0, 0, 1)


def test_a_changed_file_with_changed_headers_is_reuploaded_once_then_nothing(
        run, proxy, s3, bucket, src):
    make_tree(src, {"a.txt": b"old", "b.txt": b"same"})
    run("--header", "Content-Language: en")
    (src / "a.txt").write_bytes(b"new content")
    result = run("--header", "Content-Language: fr")
    assert outcome(result) == (1, 1, 0, 0)
    assert (puts(proxy), proxy.copies) == (1, 1)
    assert proxy.by_method["HEAD"] == 1  # b.txt only: a.txt's size says "changed"
    for key in ("a.txt", "b.txt"):
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLanguage"] == "fr"
    assert body_of(s3, bucket, "a.txt") == b"new content"
    assert outcome(run("--header", "Content-Language: fr")) == (0, 0, 2, 0)
    assert (proxy.by_method["PUT"], proxy.by_method["HEAD"]) == (0, 0)


def _acl_on_copies(proxy) -> set:
    return {headers.get("x-amz-acl") for _, _, headers in proxy.request_heads
            if "x-amz-copy-source" in headers}


# (kind, first run's options, second run's options, check of a HEAD after the second,
#  whether a run without journal needs a HEAD per file to see them)
HEADER_KINDS = [
    ("content-type", ["--content-type", "text/x-one"], ["--content-type", "text/x-two"],
     lambda info: info["ContentType"] == "text/x-two", True),
    ("content-encoding", [], ["--header", "Content-Encoding: identity"],
     lambda info: info["ContentEncoding"] == "identity", True),
    ("cache-control", ["--header", "Cache-Control: max-age=1"],
     ["--header", "Cache-Control: max-age=2"],
     lambda info: info["CacheControl"] == "max-age=2", True),
    ("content-disposition", [], ["--header", "Content-Disposition: attachment"],
     lambda info: info["ContentDisposition"] == "attachment", True),
    ("content-language", ["--header", "Content-Language: en"],
     ["--header", "Content-Language: fr"],
     lambda info: info["ContentLanguage"] == "fr", True),
    ("expires", ["--header", "Expires: 2029-01-01"], ["--header", "Expires: 2030-01-01T00:00Z"],
     lambda info: info["ResponseMetadata"]["HTTPHeaders"]["expires"] ==
     "Tue, 01 Jan 2030 00:00:00 GMT", True),
    ("x-amz-meta", ["--header", "x-amz-meta-owner: ann"], ["--header", "x-amz-meta-owner: bob"],
     lambda info: info["Metadata"] == {"owner": "bob"}, True),
    ("storage-class", [], ["--storage-class", "STANDARD_IA"],
     lambda info: info["StorageClass"] == "STANDARD_IA", False),  # the listing shows it
    ("sse", [], ["--sse", "AES256"],
     lambda info: info["ServerSideEncryption"] == "AES256", True),
    ("acl", [], ["--grant", "public-read"], None, False),  # no HEAD shows it: journal only
    ("removed", ["--header", "Cache-Control: max-age=1", "--header", "x-amz-meta-a: 1"], [],
     lambda info: "CacheControl" not in info and info["Metadata"] == {}, False),
]


@pytest.mark.parametrize("kind, first, second, check, head_each",
                         HEADER_KINDS, ids=[kind[0] for kind in HEADER_KINDS])
def test_each_header_kind_is_updated_in_place_then_left_alone(
        run, proxy, s3, bucket, src, kind, first, second, check, head_each):
    make_tree(src, {"a.txt": b"a text", "b.html": b"<p>b</p>"})
    assert outcome(run(*first)) == (2, 0, 0, 0)
    etags = {key: item["ETag"] for key, item in keys_of(s3, bucket).items()}
    assert outcome(run(*second)) == (0, 2, 0, 0)
    assert (proxy.copies, puts(proxy)) == (2, 0)
    for key in ("a.txt", "b.html"):
        info = s3.head_object(Bucket=bucket, Key=key)
        assert info["ETag"] == etags[key] and info["ContentLength"] == len(body_of(
            s3, bucket, key))
        if check is not None:
            assert check(info), (key, info)
    if kind == "acl":  # SeaweedFS ignores canned ACLs: what can be seen is what was sent
        assert _acl_on_copies(proxy) == {"public-read"}
    # with the journal: nothing, without a request per file
    assert outcome(run(*second)) == (0, 0, 2, 0)
    assert (proxy.by_method["PUT"], proxy.by_method["HEAD"]) == (0, 0)
    # without it: the content is hashed, and what a HEAD (or the listing) shows is what
    # the run puts (no copy)
    assert outcome(run("--no-state", *second)) == (0, 0, 2, 0)
    assert (proxy.by_method["PUT"], proxy.by_method["HEAD"]) == (0, 2 if head_each else 0)


def test_dry_run_plans_metadata_updates_and_writes_nothing(cli, run, proxy, s3, bucket, src,
                                                           tmp_path):
    make_tree(src, {"a.txt": b"a", "d/b.txt": b"b"})
    run("--header", "Cache-Control: max-age=1")
    proxy.reset_counters()
    result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--dry-run",
                 "--state", tmp_path / "state.sqlite", "--header", "Cache-Control: max-age=2",
                 src)
    assert result.returncode == 0, result.stderr
    for name in ("a.txt", "d/b.txt"):
        assert f"would update metadata of {src / name} -> s3://{bucket}/{name} " \
               "(metadata changed)" in result.stdout
    assert "would update the metadata of 2 files, 0 skipped, 0 failed" in result.stdout
    assert (proxy.by_method["PUT"], proxy.by_method["POST"]) == (0, 0)
    assert proxy.by_method["HEAD"] == 2  # it reads like a real run
    assert {s3.head_object(Bucket=bucket, Key=key)["CacheControl"]
            for key in ("a.txt", "d/b.txt")} == {"max-age=1"}
    # and the journal is as it was: the real run finds the same work
    assert outcome(run("--header", "Cache-Control: max-age=2")) == (0, 2, 0, 0)


def test_plain_reruns_cost_no_head_with_a_journal_an_older_journal_or_none(
        run, proxy, bucket, src, tmp_path):
    make_tree(src, {f"f{n:02d}.bin": b"%d" % n for n in range(20)})
    run()
    assert outcome(run()) == (0, 0, 20, 0)
    assert (proxy.by_method["HEAD"], proxy.by_method["PUT"], proxy.by_method["GET"]) == (0, 0, 1)
    # a journal of the version before fingerprints: migrated, and still no HEAD
    db = sqlite3.connect(tmp_path / "state.sqlite")
    db.execute("ALTER TABLE objects DROP COLUMN fingerprint")
    db.commit()
    db.close()
    assert outcome(run()) == (0, 0, 20, 0)
    assert (proxy.by_method["HEAD"], proxy.by_method["PUT"]) == (0, 0)
    db = sqlite3.connect(tmp_path / "state.sqlite")
    assert db.execute("SELECT COUNT(*) FROM objects WHERE fingerprint IS NULL").fetchone() == \
        (20,)
    db.close()
    assert outcome(run("--no-state")) == (0, 0, 20, 0)  # hashing: no HEAD either
    assert (proxy.by_method["HEAD"], proxy.by_method["PUT"]) == (0, 0)
    # a run that asks for a header a listing cannot show looks once where it does not know
    assert outcome(run("--header", "x-amz-meta-k: v")) == (0, 20, 0, 0)
    assert (proxy.by_method["HEAD"], proxy.copies) == (20, 20)
    assert outcome(run("--header", "x-amz-meta-k: v")) == (0, 0, 20, 0)
    assert (proxy.by_method["HEAD"], proxy.by_method["PUT"]) == (0, 0)


def test_storage_class_is_compared_from_the_listing_without_a_head(run, proxy, s3, bucket,
                                                                   src):
    make_tree(src, {f"f{n}.txt": b"%d" % n for n in range(10)})
    run("--no-state")
    assert outcome(run("--no-state", "--storage-class", "STANDARD_IA")) == (0, 10, 0, 0)
    assert (proxy.by_method["HEAD"], proxy.copies, puts(proxy)) == (0, 10, 0)
    assert {item["StorageClass"] for item in keys_of(s3, bucket).values()} == {"STANDARD_IA"}
    assert outcome(run("--no-state", "--storage-class", "STANDARD_IA")) == (0, 0, 10, 0)
    assert (proxy.by_method["HEAD"], proxy.by_method["PUT"]) == (0, 0)


def test_a_multipart_object_is_updated_by_one_copy_and_recognised_after(run, proxy, s3,
                                                                        bucket, src):
    data = os.urandom(6 * MiB)
    make_tree(src, {"big.bin": data})
    parts = ("--multipart-threshold", "5", "--part-size", "5")
    run(*parts)
    before = s3.head_object(Bucket=bucket, Key="big.bin")["ETag"]
    assert before.endswith('-2"')
    assert outcome(run(*parts, "--header", "Content-Disposition: inline")) == (0, 1, 0, 0)
    assert (proxy.copies, puts(proxy), proxy.by_method["POST"]) == (1, 0, 0)
    info = s3.head_object(Bucket=bucket, Key="big.bin")
    assert (info["ETag"], info["ContentDisposition"]) == (before, "inline")
    for state in ((), ("--no-state",)):
        assert outcome(run(*parts, *state, "--header", "Content-Disposition: inline")) == \
            (0, 0, 1, 0)
        assert proxy.by_method["PUT"] == 0


def test_a_copy_in_parts_gets_a_new_etag_that_the_journal_recognises(run, proxy, s3, bucket,
                                                                     src, s3server, tmp_path):
    """Above 5 GiB a copy goes in parts (``upload_part_copy``); the limit is lowered here to
    copy 6 MiB that way, in this process, against the server. SeaweedFS then gives an ETag
    that is not computed from the content: the journal records it with the content's MD5,
    and the next run recognises the content without reading it."""
    from conftest import ACCESS_KEY, REGION, SECRET_KEY

    data = os.urandom(6 * MiB)
    path = write(src / "big.bin", data)
    parts = ("--multipart-threshold", "5", "--part-size", "5")
    run(*parts)
    state = str(tmp_path / "state.sqlite")
    cfg = from_keywords([src], environ={"SPACES_ACCESS_KEY": ACCESS_KEY,
                                        "SPACES_SECRET_KEY": SECRET_KEY},
                        bucket=bucket, endpoint_url=proxy.url, region=REGION, no_progress=True,
                        multipart_threshold=5, part_size=5, state=state,
                        header=["Content-Disposition: inline"])
    store = make_store(cfg)
    store.copy_limit = MiB
    listed = next(iter(store.list_objects("")))
    reader = Journal(state, write=False)
    job = job_for(path, "big.bin", remote=listed, journal=reader.lookup("big.bin"))
    reader.close()
    proxy.reset_counters()
    result = Transfer(cfg, store, UploadSlots()).process(job)
    assert (result.outcome, result.reason) == (UPDATED, "metadata changed"), result.reason
    assert proxy.by_method["PUT"] == proxy.copies == 2  # two part copies, no body sent
    assert proxy.by_method["POST"] == 2  # create and complete the upload
    info = s3.head_object(Bucket=bucket, Key="big.bin")
    assert info["ContentDisposition"] == "inline" and info["ETag"].strip('"') == result.etag
    assert result.etag != listed.etag and result.md5 == job.journal.md5
    assert body_of(s3, bucket, "big.bin") == data
    writer = Journal(state, write=True)
    writer.record([result])
    writer.close()
    assert outcome(run(*parts, "--header", "Content-Disposition: inline")) == (0, 0, 1, 0)
    assert (proxy.by_method["PUT"], proxy.by_method["HEAD"]) == (0, 0)


def test_image_mode_updates_originals_and_thumbnails_alike(run, proxy, s3, bucket, src):
    from PIL import Image

    for name, colour in (("a.png", "red"), ("b.png", "blue")):
        out = io.BytesIO()
        Image.new("RGB", (40, 60), colour).save(out, "PNG")
        write(src / name, out.getvalue())
    run("--images", "--header", "Cache-Control: max-age=1")
    assert outcome(run("--images", "--header", "Cache-Control: max-age=2")) == (0, 2, 0, 0)
    assert (proxy.copies, puts(proxy)) == (4, 0)  # 2 originals, 2 thumbnails
    for key, ctype in (("original/1.png", "image/png"), ("original/2.png", "image/png"),
                       ("thumbnail/1.png", "image/jpeg"), ("thumbnail/2.png", "image/jpeg")):
        info = s3.head_object(Bucket=bucket, Key=key)
        assert (info["CacheControl"], info["ContentType"]) == ("max-age=2", ctype), key
    assert outcome(run("--images", "--header", "Cache-Control: max-age=2")) == (0, 0, 2, 0)
    assert proxy.by_method["PUT"] == 0
