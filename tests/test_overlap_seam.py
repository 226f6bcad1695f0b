"""Runs that overlap, at the Store seam (no server, no processes but where two are the
point): the manifest's compare-and-swap loop, create-only puts, the probe, the lock object,
and two writers of one journal or one mapping log. ``FakeStore`` honours conditional writes
as S3 does (or ignores them, or answers 501); ``FakeStore.before`` lets another writer act
at an exact moment.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import pytest
from configs import from_keywords
from fakestore import FakeStore
from PIL import Image

from s3pput import overlap
from s3pput.config import Config
from s3pput.errors import ConfigError, FileError
from s3pput.jobs import FAILED, SKIPPED, UPLOADED, Job, Result, Source
from s3pput.journal import Journal
from s3pput.reports import MAPPING_FIELDS, MappingLog
from s3pput.run import imagemode
from s3pput.run.imagemode import ImageWalker
from s3pput.run.transfer import Transfer, UploadSlots

MANIFEST = "avatar/photos/.s3pput-manifest.json"
LOCK = "avatar/.s3pput-lock.json"


def png(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (30, 45), colour).save(out, "PNG")
    return out.getvalue()


def tree(tmp_path: Path, *names: str) -> Path:
    src = tmp_path / "src"
    for index, name in enumerate(names):
        path = src / "photos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png((index * 40, 0, 0)))
    return src


def image_config(src: Path, **options) -> Config:
    return from_keywords([src], bucket="bucket", prefix="avatar", images=True,
                         rename="sequential", no_progress=True, **options)


def walk(store, cfg, notes=None):
    """The walker's jobs and results, by source name; NOTES collects (level, text)."""
    note = (lambda level, text: notes.append((level, text))) if notes is not None else \
        (lambda level, text: None)
    walker = ImageWalker(cfg, store, can_list=True, note=note)
    walker.guard.settle = 0  # the lock's read-back wait: nothing races in these tests
    return {Path(item.display).name: item for item in walker.jobs()}


def manifest(store, key: str = MANIFEST) -> dict:
    return json.loads(store.objects[key].body)["files"]


def stored(body: bytes):
    return FakeStore({"k": body}).objects["k"]


def other_run_numbers(store, files: dict, key: str = MANIFEST):
    """Another run's manifest write, as a FakeStore hook (straight into its objects: a
    hook's own calls would set off the next hooks)."""
    def write():
        body = json.dumps({"version": 1, "next": max(files.values()) + 1, "files": files})
        store.objects[key] = stored(body.encode())
    return write


# -- the manifest: compare-and-swap ----------------------------------------------------------

def test_manifest_is_created_if_none_match_and_a_probe_runs_once_before(tmp_path):
    store = FakeStore()
    jobs = walk(store, image_config(tree(tmp_path, "a.png", "b.png")))
    assert {name: job.number for name, job in jobs.items()} == {"a.png": 1, "b.png": 2}
    assert all(job.create_only for job in jobs.values())
    assert manifest(store) == {"a.png": 1, "b.png": 2}
    assert (MANIFEST, "if-none-match") in store.conditional
    assert store.count("delete") == 1 and store.honours_conditions is True
    assert not [key for key in store.objects if overlap.PROBE_NAME in key]


def test_manifest_is_replaced_if_match_the_version_read_and_old_names_are_not_new(tmp_path):
    store = FakeStore({MANIFEST: json.dumps({"files": {"a.png": 1}, "next": 2}).encode()})
    jobs = walk(store, image_config(tree(tmp_path, "a.png", "b.png")))
    assert (jobs["a.png"].number, jobs["a.png"].create_only) == (1, False)
    assert (jobs["b.png"].number, jobs["b.png"].create_only) == (2, True)
    assert store.conditional[-1] == (MANIFEST, "if-match")


def test_a_lost_round_reads_again_and_numbers_after_what_the_other_run_took(tmp_path):
    store = FakeStore()
    # between our read and our write, another run numbers x and y
    store.before("put", other_run_numbers(store, {"x.png": 1, "y.png": 2}), key=MANIFEST)
    notes = []
    jobs = walk(store, image_config(tree(tmp_path, "a.png", "b.png")), notes)
    assert {name: job.number for name, job in jobs.items()} == {"a.png": 3, "b.png": 4}
    assert manifest(store) == {"x.png": 1, "y.png": 2, "a.png": 3, "b.png": 4}
    assert [op for op, key in store.calls if key == MANIFEST] == \
        ["get", "put", "get", "put"]  # ours refused, read again, ours stored
    assert any("written by another run meanwhile" in text for _, text in notes)


def test_rounds_are_bounded_then_the_directory_fails_not_numbered(tmp_path, monkeypatch):
    monkeypatch.setattr(imagemode, "BACKOFF_SECONDS", 0.0)
    store = FakeStore()
    for round_ in range(imagemode.MANIFEST_ATTEMPTS):
        store.before("put", other_run_numbers(store, {f"x{round_}.png": round_ + 1}),
                     key=MANIFEST)
    jobs = walk(store, image_config(tree(tmp_path, "a.png")))
    assert jobs["a.png"].outcome == FAILED
    assert jobs["a.png"].reason.startswith(f"not numbered: manifest {MANIFEST}: other runs "
                                           "wrote it 8 times")
    assert "a.png" not in manifest(store)


def test_a_run_that_writes_no_manifest_costs_no_probe(tmp_path):
    store = FakeStore({MANIFEST: json.dumps({"files": {"a.png": 1}, "next": 2}).encode()})
    walk(store, image_config(tree(tmp_path, "a.png")))
    assert {op for op, _ in store.calls} == {"get", "list"}


def test_a_dry_run_numbers_without_writing_or_probing(tmp_path):
    store = FakeStore()
    jobs = walk(store, image_config(tree(tmp_path, "a.png"), dry_run=True))
    assert jobs["a.png"].number == 1
    assert {op for op, _ in store.calls} == {"get", "list"}


# -- a store that ignores conditional writes: the lock ---------------------------------------

def test_a_store_ignoring_conditions_numbers_under_the_lock_and_removes_it(tmp_path):
    store = FakeStore(conditions="ignore")
    notes = []
    jobs = walk(store, image_config(tree(tmp_path, "a.png")), notes)
    assert jobs["a.png"].number == 1
    assert store.honours_conditions is False
    assert ("put", LOCK) in store.calls and ("delete", LOCK) in store.calls
    assert LOCK not in store.objects
    assert any("does not honour conditional writes" in text for _, text in notes)
    # the manifest read before the lock was ours is read again under it
    assert [op for op, key in store.calls if key == MANIFEST] == ["get", "get", "put"]


def test_a_store_answering_501_numbers_under_the_lock(tmp_path):
    store = FakeStore(conditions="501")
    jobs = walk(store, image_config(tree(tmp_path, "a.png")))
    assert jobs["a.png"].number == 1 and LOCK not in store.objects
    assert store.honours_conditions is False


def test_what_another_run_numbered_before_the_lock_was_ours_is_kept(tmp_path):
    store = FakeStore(conditions="ignore")
    store.before("put", other_run_numbers(store, {"x.png": 1}), key=LOCK)
    jobs = walk(store, image_config(tree(tmp_path, "a.png")))
    assert jobs["a.png"].number == 2
    assert manifest(store) == {"x.png": 1, "a.png": 2}


def lock_body(renewed_at: float, **fields) -> bytes:
    doc = {"owner": "other", "host": "elsewhere", "pid": 4242, "lease": 60,
           "renewed_at": renewed_at, **fields}
    return json.dumps(doc).encode()


def test_a_live_lock_of_another_run_stops_the_run_naming_it(tmp_path):
    store = FakeStore({LOCK: lock_body(time.time())}, conditions="ignore")
    with pytest.raises(ConfigError, match="the run of pid 4242 on host elsewhere"):
        walk(store, image_config(tree(tmp_path, "a.png")))
    assert MANIFEST not in store.objects
    assert json.loads(store.objects[LOCK].body)["owner"] == "other"


@pytest.mark.parametrize("held, warned", [
    (lock_body(time.time() - 3600), True),  # its holder stopped renewing it: stale
    (b"{not json", True),  # damaged: nobody's
    (lock_body(time.time(), released=True), False),  # released by a holder without delete
])
def test_a_stale_damaged_or_released_lock_is_taken(tmp_path, held, warned):
    store = FakeStore({LOCK: held}, conditions="ignore")
    notes = []
    jobs = walk(store, image_config(tree(tmp_path, "a.png")), notes)
    assert jobs["a.png"].number == 1
    took_over = [text for level, text in notes if level == "warning" and "stale" in text]
    assert bool(took_over) == warned


def test_two_runs_writing_the_lock_at_once_only_the_last_writer_goes_on(tmp_path):
    store = FakeStore(conditions="ignore")
    lock = overlap.LeaseLock(store, LOCK, settle=0)
    # after our write, before our read-back, another run writes its own lock
    store.before("put", lambda: None, key=LOCK)
    store.before("get", lambda: None, key=LOCK)
    store.before("get", lambda: store.objects.__setitem__(
        LOCK, stored(lock_body(time.time()))), key=LOCK)
    with pytest.raises(ConfigError, match="took the lock .* at the same moment: the run of "
                                          "pid 4242"):
        lock.acquire()


def test_a_lock_taken_by_another_run_is_lost_and_stops_numbering():
    store = FakeStore(conditions="ignore")
    lock = overlap.LeaseLock(store, LOCK, settle=0)
    lock.acquire()
    try:
        lock.check()
        assert lock.renew()
        store.put(LOCK, lock_body(time.time()), {})  # another run thought it stale
        assert not lock.renew()
        with pytest.raises(ConfigError, match="lost the lock .*pid 4242 on host elsewhere .*"
                                              "has it now"):
            lock.check()
    finally:
        lock.release()
    assert json.loads(store.objects[LOCK].body)["owner"] == "other"  # theirs, kept


def test_a_lock_not_renewed_for_its_lease_is_lost():
    store = FakeStore(conditions="ignore")
    lock = overlap.LeaseLock(store, LOCK, settle=0, lease=30)
    lock.acquire()
    lock.renewed -= 31  # as if every renewal since had failed
    with pytest.raises(ConfigError, match="not renewed for 30 s"):
        lock.check()
    lock.release()


def test_release_without_the_right_to_delete_marks_the_lock_released():
    store = FakeStore(conditions="ignore")
    lock = overlap.LeaseLock(store, LOCK, settle=0)
    lock.acquire()
    store.fail("delete", FileError("AccessDenied: Access Denied"))
    lock.release()
    assert json.loads(store.objects[LOCK].body)["released"] is True


# -- the probe -------------------------------------------------------------------------------

@pytest.mark.parametrize("conditions, honoured, puts", [
    ("honour", True, 3), ("ignore", False, 2), ("501", False, 1)])
def test_probe_tells_stores_apart_and_removes_its_scratch_key(conditions, honoured, puts):
    store = FakeStore(conditions=conditions)
    assert overlap.probe(store, "avatar") is honoured
    assert store.honours_conditions is honoured
    assert store.count("put") == puts and store.count("delete") == 1
    assert store.objects == {}


def test_probe_that_cannot_remove_its_key_warns_and_still_answers():
    store = FakeStore()
    store.fail("delete", FileError("AccessDenied: Access Denied"))
    notes = []
    assert overlap.probe(store, "avatar", lambda level, text: notes.append((level, text)))
    [(level, text)] = notes
    assert level == "warning" and "could not remove the scratch key avatar/.s3pput-probe-" \
        in text


def test_a_probe_that_cannot_write_stops_the_run_once(tmp_path):
    store = FakeStore()
    store.fail("put", FileError("AccessDenied: Access Denied", op="put"))
    with pytest.raises(ConfigError, match="cannot find out whether the store honours "
                                          "conditional writes: put: AccessDenied"):
        walk(store, image_config(tree(tmp_path, "a.png")))


# -- create-only puts ------------------------------------------------------------------------

def file_job(tmp_path: Path, key: str, data: bytes, **fields) -> Job:
    path = tmp_path / "files" / key.replace("/", "_")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    info = path.stat()
    return Job(1, str(path), key, Source("file", str(path)), info.st_size, info.st_mtime_ns,
               None, **fields)


def run(tmp_path, store, job, *, internal=None, **options) -> Result:
    """JOB done by the Transfer of ``put([TMP_PATH], bucket="bucket", **OPTIONS)``;
    INTERNAL replaces fields no option sets that low (1 MiB parts)."""
    cfg = from_keywords([tmp_path], bucket="bucket", no_progress=True, **options)
    if internal:
        cfg = dataclasses.replace(cfg, **internal)
    return Transfer(cfg, store, UploadSlots()).process(job)


def test_add_puts_if_none_match_and_a_key_stored_since_the_listing_is_skipped_exists(
        tmp_path):
    store = FakeStore({"k": b"theirs"})  # the listing said absent (remote None)
    result = run(tmp_path, store, file_job(tmp_path, "k", b"ours"), put="add")
    assert (result.outcome, result.reason) == (SKIPPED, "exists")
    assert store.objects["k"].body == b"theirs"
    result = run(tmp_path, store, file_job(tmp_path, "new", b"ours"), put="add")
    assert result.outcome == UPLOADED and ("new", "if-none-match") in store.conditional


def test_add_multipart_completes_only_if_absent_else_aborts_and_skips(tmp_path):
    store = FakeStore({"big": b"theirs"})
    job = file_job(tmp_path, "big", os.urandom(3 * 1024 * 1024))
    result = run(tmp_path, store, job, put="add", multipart_threshold=1,
                 internal={"part_size": 1024 * 1024})
    assert (result.outcome, result.reason) == (SKIPPED, "exists")
    assert store.aborted == ["big"] and store.objects["big"].body == b"theirs"


def image_job(tmp_path, key="avatar/original/1.png", thumb="avatar/thumbnail/1.png",
              **fields) -> Job:
    return file_job(tmp_path, key, png((10, 200, 10)),
                    thumbnail_keys=(("thumbnail", thumb),), number=1, **fields)


def test_a_new_number_whose_thumbnail_exists_fails_exists_already_and_puts_nothing(tmp_path):
    store = FakeStore({"avatar/thumbnail/1.png": b"theirs"})
    result = run(tmp_path, store, image_job(tmp_path, create_only=True), images=True)
    assert (result.outcome, result.reason) == \
        (FAILED, "exists already: not overwritten (avatar/thumbnail/1.png)")
    assert set(store.objects) == {"avatar/thumbnail/1.png"}
    assert store.objects["avatar/thumbnail/1.png"].body == b"theirs"


def test_a_new_number_whose_original_exists_fails_exists_already(tmp_path):
    store = FakeStore({"avatar/original/1.png": b"theirs"})
    result = run(tmp_path, store, image_job(tmp_path, create_only=True), images=True)
    assert (result.outcome, result.reason) == (FAILED, "exists already: not overwritten")
    assert store.objects["avatar/original/1.png"].body == b"theirs"


def test_an_old_number_is_put_plainly_in_update_mode(tmp_path):
    store = FakeStore({"avatar/thumbnail/1.png": b"from a run that died half-way"})
    result = run(tmp_path, store, image_job(tmp_path), images=True)
    assert result.outcome == UPLOADED and store.conditional == []


def test_add_keeps_a_thumbnail_in_place_and_puts_the_missing_original(tmp_path):
    store = FakeStore({"avatar/thumbnail/1.png": b"theirs"})
    result = run(tmp_path, store, image_job(tmp_path), images=True, put="add")
    assert result.outcome == UPLOADED
    assert store.objects["avatar/thumbnail/1.png"].body == b"theirs"
    assert "avatar/original/1.png" in store.objects


# -- one machine: two writers of one journal, of one mapping log -----------------------------

def together(target, *args):
    """Two processes running TARGET(*args, writer number, go) that start writing at once."""
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    writers = [ctx.Process(target=target, args=(*args, n, go)) for n in range(2)]
    for writer in writers:
        writer.start()
    go.set()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0


def _journal_writer(path: str, batches: int, writer: int, go) -> None:
    journal = Journal(path, write=True)
    go.wait()
    for batch in range(batches):
        journal.record([Result(0, "", f"w{writer}/b{batch}/{n}", UPLOADED, "new", size=1,
                               mtime_ns=1, md5="m", etag="e") for n in range(20)])
    journal.close()


def test_two_runs_writing_one_journal_lose_no_row(tmp_path):
    path = str(tmp_path / "journal.sqlite")
    Journal(path, write=True).close()
    together(_journal_writer, path, 150)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM objects").fetchone() == (2 * 150 * 20,)


def _mapping_writer(path: str, rows: int, writer: int, go) -> None:
    log = MappingLog(path)
    go.wait()
    for row in range(rows):
        # long names: rows cross any buffer boundary
        log.add(Result(row, f"writer{writer}/{'x' * (row % 300)}/{row}.jpg",
                       f"avatar/original/{row}.jpg", UPLOADED, "new", number=row,
                       extra_keys=(f"avatar/thumbnail/{row}.jpg",)))
    log.close()


def test_two_runs_appending_one_mapping_log_never_interleave_within_a_row(tmp_path):
    path = str(tmp_path / "mapping.csv")
    together(_mapping_writer, path, 3000)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == MAPPING_FIELDS and MAPPING_FIELDS not in rows[1:]
    for writer in range(2):
        mine = [row for row in rows[1:] if row[0].startswith(f"writer{writer}/")]
        assert [row[1] for row in mine] == [str(n) for n in range(3000)]
        assert all(row[0].endswith(f"/{row[1]}.jpg") and len(row) == len(MAPPING_FIELDS)
                   for row in mine)
    assert len(rows) == 1 + 2 * 3000
