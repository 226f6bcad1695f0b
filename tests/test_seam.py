"""Each rule of a run, tested once at the Store seam: ``Transfer`` (decisions, headers,
parts, abort-on-change, the breaker, --limit), the walkers (listing, journal, UNLISTED,
pruning), the walker's ``Feeder``, the ``Putter`` and the ``Statter``, over the recording
``FakeStore`` (tests/fakestore.py), without a server and without processes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from configs import from_keywords, seam_config
from fakestore import FakeStore

from s3pput import sources
from s3pput.content import gzip_bytes
from s3pput.digest import digest_bytes
from s3pput.errors import ConnectionFailure, FatalError, FileError
from s3pput.filters import EXCLUDE, INCLUDE, Rule
from s3pput.jobs import (
    FAILED,
    SKIPPED,
    STOP,
    UNLISTED,
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
from s3pput.run.concurrency import Controller, Limiter
from s3pput.run.feed import Feeder
from s3pput.run.payload import RACY, RACY_NS
from s3pput.run.putter import Putter
from s3pput.run.statter import Log, Statter
from s3pput.run.transfer import Breaker, Transfer, UploadSlots
from s3pput.run.walker import Walker

MiB = 1024 * 1024


config = seam_config


def job_for(path: Path, key: str, *, remote=None, seq: int = 1, journal=None) -> Job:
    info = path.stat()
    return Job(seq, str(path), key, Source("file", str(path)), info.st_size,
               info.st_mtime_ns, remote, journal)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def remote_of(key: str, data: bytes) -> RemoteObject:
    return RemoteObject(key, len(data), hashlib.md5(data).hexdigest())


# -- Transfer: decisions --------------------------------------------------------------------

def test_update_puts_an_absent_key_once_with_its_md5_and_type(tmp_path):
    store = FakeStore()
    path = write(tmp_path / "a.html", b"<p>hello</p>")
    result = Transfer(config(tmp_path), store, UploadSlots()).process(job_for(path, "a.html"))
    assert (result.outcome, result.reason) == (UPLOADED, "new")
    assert store.calls == [("put", "a.html")]
    stored = store.objects["a.html"]
    assert stored.body == b"<p>hello</p>"
    assert stored.params["ContentType"] == "text/html"
    assert result.etag == hashlib.md5(b"<p>hello</p>").hexdigest() == result.md5


def test_a_small_file_that_grows_while_it_is_read_is_not_put(tmp_path, monkeypatch):
    store = FakeStore()
    path = write(tmp_path / "log.txt", b"first line\n")
    job = job_for(path, "log.txt")
    real_read = os.read

    def read_then_append(fd, count):  # a writer appends just after the file was opened
        with open(path, "ab") as handle:
            handle.write(b"second line\n")
        return real_read(fd, count)

    monkeypatch.setattr(sources.os, "read", read_then_append)
    result = Transfer(config(tmp_path), store, UploadSlots()).process(job)
    assert result.outcome == FAILED and "changed while being read" in result.reason
    assert store.calls == []


def test_update_skips_same_content_after_hashing_and_records_the_md5(tmp_path):
    data = b"same"
    store = FakeStore({"k": data})
    path = write(tmp_path / "k", data)
    result = Transfer(config(tmp_path), store, UploadSlots()).process(
        job_for(path, "k", remote=remote_of("k", data)))
    assert (result.outcome, result.reason) == (SKIPPED, "unchanged")
    assert store.calls == []
    assert result.md5 == hashlib.md5(data).hexdigest()


def test_update_puts_changed_content_of_the_same_size(tmp_path):
    store = FakeStore({"k": b"old!"})
    path = write(tmp_path / "k", b"new!")
    result = Transfer(config(tmp_path), store, UploadSlots()).process(
        job_for(path, "k", remote=remote_of("k", b"old!")))
    assert (result.outcome, result.reason) == (UPLOADED, "changed")
    assert store.objects["k"].body == b"new!"


def test_update_trusts_the_journal_when_size_mtime_and_etag_agree(tmp_path):
    store = FakeStore({"k": b"stored"})
    path = write(tmp_path / "k", b"local!")  # differs, but the journal vouches
    info = path.stat()
    journal = JournalEntry(info.st_size, info.st_mtime_ns, "x", remote_of("k", b"stored").etag)
    result = Transfer(config(tmp_path), store, UploadSlots()).process(
        job_for(path, "k", remote=remote_of("k", b"stored"), journal=journal))
    assert (result.outcome, result.reason) == (SKIPPED, "unchanged")
    assert store.calls == []


def test_a_file_modified_just_before_it_was_read_is_journaled_as_racy(tmp_path):
    """A rewrite of the same size within the same tick of the file system's clock keeps
    size and mtime: the journal must not vouch for a file read that soon after a change
    (git's racy rule), and vouches once the file has settled."""
    store = FakeStore()
    path = write(tmp_path / "k", b"fresh")
    ahead = time.time_ns() + RACY_NS  # read within RACY_NS of it, however slow the read
    os.utime(path, ns=(ahead, ahead))
    fresh = Transfer(config(tmp_path), store, UploadSlots()).process(job_for(path, "k"))
    assert (fresh.outcome, fresh.mtime_ns) == (UPLOADED, RACY)
    settled = time.time_ns() - 2 * RACY_NS
    os.utime(path, ns=(settled, settled))
    again = Transfer(config(tmp_path), store, UploadSlots()).process(
        job_for(path, "k", remote=remote_of("k", b"fresh")))
    assert (again.outcome, again.mtime_ns) == (SKIPPED, settled)  # hashed, then recorded


def test_add_skips_a_present_key_without_any_request(tmp_path):
    store = FakeStore({"k": b"other"})
    path = write(tmp_path / "k", b"mine")
    result = Transfer(config(tmp_path, put="add"), store, UploadSlots()).process(
        job_for(path, "k", remote=remote_of("k", b"other")))
    assert (result.outcome, result.reason) == (SKIPPED, "exists")
    assert store.calls == []


def test_unlisted_key_costs_one_head_then_the_put(tmp_path):
    store = FakeStore()
    path = write(tmp_path / "k", b"data")
    result = Transfer(config(tmp_path), store, UploadSlots()).process(
        job_for(path, "k", remote=UNLISTED))
    assert result.outcome == UPLOADED
    assert store.calls == [("head", "k"), ("put", "k")]


def test_stupid_never_asks_the_store(tmp_path):
    data = b"same"
    store = FakeStore({"k": data})
    path = write(tmp_path / "k", data)
    result = Transfer(config(tmp_path, put="stupid"), store, UploadSlots()).process(
        job_for(path, "k", remote=UNLISTED))
    assert (result.outcome, result.reason) == (UPLOADED, "forced")
    assert store.calls == [("put", "k")]


def test_limit_budget_is_shared_and_skips_once_spent(tmp_path):
    store = FakeStore()
    slots = UploadSlots(_Value(1))
    transfer = Transfer(config(tmp_path), store, slots)
    first = transfer.process(job_for(write(tmp_path / "a", b"a"), "a", seq=1))
    second = transfer.process(job_for(write(tmp_path / "b", b"b"), "b", seq=2))
    assert first.outcome == UPLOADED
    assert (second.outcome, second.reason) == (SKIPPED, "limit reached")
    assert store.count("put") == 1


class _Value:
    """multiprocessing.Value's interface, in one process."""

    def __init__(self, value):
        self.value = value
        self.lock = threading.Lock()

    def get_lock(self):
        return self.lock


# -- Transfer: what is stored ---------------------------------------------------------------

def test_headers_acl_sse_storage_class_and_metadata_are_put(tmp_path):
    store = FakeStore()
    cfg = config(tmp_path, header=["Cache-Control: max-age=60", "Content-Disposition: inline",
                                   "x-amz-meta-owner: ann"], grant="public-read", sse="AES256",
                 storage_class="STANDARD_IA")
    path = write(tmp_path / "a.css", b"p{}")
    Transfer(cfg, store, UploadSlots()).process(job_for(path, "a.css"))
    assert store.objects["a.css"].params == {
        "CacheControl": "max-age=60", "ContentDisposition": "inline", "ContentType": "text/css",
        "ACL": "public-read", "ServerSideEncryption": "AES256",
        "StorageClass": "STANDARD_IA", "Metadata": {"owner": "ann"}}


def test_gzip_stores_deterministic_gzip_with_its_encoding(tmp_path):
    store = FakeStore()
    text = b"body { color: red }\n" * 100
    path = write(tmp_path / "a.css", text)
    result = Transfer(config(tmp_path, gzip=True), store, UploadSlots()).process(
        job_for(path, "a.css"))
    stored = store.objects["a.css"]
    assert stored.params["ContentEncoding"] == "gzip"
    assert stored.body == gzip_bytes(text) and gzip.decompress(stored.body) == text
    assert result.sent == len(stored.body) < len(text)


def test_multipart_parts_go_up_in_parallel_and_the_etag_is_s3s(tmp_path):
    """Two parts are in flight at the same moment (a barrier both must reach), and the
    stored object and its ETag are what S3 makes of the parts."""
    data = os.urandom(5 * MiB + 123)
    path = write(tmp_path / "big.bin", data)
    store = FakeStore()
    both_in_flight = threading.Barrier(2, timeout=60)
    entered = itertools.count()
    real_part = store._part

    def part(key, body):
        if next(entered) < 2:
            both_in_flight.wait()  # raises BrokenBarrierError if the parts were serial
        return real_part(key, body)

    store._part = part
    cfg = config(tmp_path, multipart_threshold=1, internal=dict(part_size=2 * MiB))
    with ThreadPoolExecutor(4) as pool:
        result = Transfer(cfg, store, UploadSlots(), parts=pool).process(job_for(path, "big.bin"))
    assert result.outcome == UPLOADED, result.reason
    stored = store.objects["big.bin"]
    assert stored.body == data and stored.parts == 3
    assert result.etag == stored.etag == digest_bytes(data, 2 * MiB).etag(multipart=True)


def test_multipart_of_a_file_that_changes_while_read_is_aborted(tmp_path):
    data = os.urandom(3 * MiB)
    path = write(tmp_path / "big.bin", data)
    store = FakeStore()
    real_part = store._part

    def part(key, body):
        if store.count("upload_part") == 1:
            with open(path, "ab") as handle:  # a writer appends while the parts go up
                handle.write(b"more")
        return real_part(key, body)

    store._part = part
    cfg = config(tmp_path, multipart_threshold=1, internal=dict(part_size=MiB))
    result = Transfer(cfg, store, UploadSlots()).process(job_for(path, "big.bin"))
    assert result.outcome == FAILED and "changed" in result.reason
    assert store.aborted == ["big.bin"] and "big.bin" not in store.objects


def test_a_file_that_would_need_more_than_10000_parts_gets_larger_parts_up_front(
        tmp_path, monkeypatch):
    from s3pput.store import multipart

    assert multipart.part_size_for(80 * 1024 * MiB, 8 * MiB) == 9 * MiB
    assert multipart.part_size_for(10 * MiB, 8 * MiB) == 8 * MiB
    monkeypatch.setattr(multipart, "MULTIPART_RESERVED", 4)  # as if 5 MiB+1 were 78 GiB
    data = os.urandom(5 * MiB + 1)
    path = write(tmp_path / "big.bin", data)
    store = FakeStore()
    cfg = config(tmp_path, multipart_threshold=1, internal=dict(part_size=MiB))
    result = Transfer(cfg, store, UploadSlots()).process(job_for(path, "big.bin"))
    assert result.outcome == UPLOADED, result.reason
    assert store.objects["big.bin"].parts == 3  # 2 MiB parts, chosen before the first
    assert result.etag == digest_bytes(data, 2 * MiB).etag(multipart=True)


# -- Transfer: errors -----------------------------------------------------------------------

def test_a_file_error_fails_that_file_and_a_fatal_error_stops_the_run(tmp_path):
    store = FakeStore()
    store.fail("put", FileError("AccessDenied: no", op="put", key="a"),
               FatalError("credentials expired"))
    transfer = Transfer(config(tmp_path), store, UploadSlots())
    result = transfer.process(job_for(write(tmp_path / "a", b"a"), "a"))
    assert (result.outcome, result.reason) == (FAILED, "AccessDenied: no")
    with pytest.raises(FatalError):
        transfer.process(job_for(write(tmp_path / "b", b"b"), "b"))


def test_breaker_fails_fast_after_three_connection_failures_in_a_row(tmp_path):
    store = FakeStore()
    store.fail("put", *[ConnectionFailure("EndpointConnectionError: refused")] * 3)
    transfer = Transfer(config(tmp_path), store, UploadSlots())
    for n in range(3):
        assert transfer.process(job_for(write(tmp_path / f"f{n}", b"x"), f"f{n}")).outcome == FAILED
    result = transfer.process(job_for(write(tmp_path / "g", b"x"), "g"))
    assert result.outcome == FAILED and "unreachable" in result.reason
    assert store.count("put") == 3  # the fourth file cost no request


def test_breaker_counts_connection_failures_by_type_not_by_wording():
    breaker = Breaker()
    for _ in range(5):
        breaker.record(FileError("EndpointConnectionError in the text, but not the type"))
    breaker.check()  # still closed
    for _ in range(3):
        breaker.record(ConnectionFailure("refused"))
    with pytest.raises(FileError, match="unreachable"):
        breaker.check()


# -- walkers --------------------------------------------------------------------------------

def test_walker_asks_the_listing_and_the_journal_and_skips_what_metadata_decides(tmp_path):
    src = tmp_path / "src"
    write(src / "same.txt", b"same")
    write(src / "new.txt", b"new")
    same = src / "same.txt"
    info = same.stat()
    etag = hashlib.md5(b"same").hexdigest()
    journal = {"p/same.txt": JournalEntry(info.st_size, info.st_mtime_ns, etag, etag)}
    store = FakeStore({"p/same.txt": b"same"})
    walker = Walker(config(tmp_path, prefix="p"), store, spool_dir=str(tmp_path),
                    can_list=True, journal_lookup=journal.get)
    items = {item.key: item for item in walker.jobs()}
    assert (items["p/same.txt"].outcome, items["p/same.txt"].reason) == (SKIPPED, "unchanged")
    assert isinstance(items["p/new.txt"], Job) and items["p/new.txt"].remote is None
    assert store.count("list") == 1 and store.count("head") == 0


def test_walker_leaves_named_files_to_a_head_and_stupid_to_nobody(tmp_path):
    path = write(tmp_path / "one.txt", b"1")
    store = FakeStore()
    cfg = from_keywords([path], bucket="bkt", no_progress=True)
    [job] = Walker(cfg, store, spool_dir=str(tmp_path), can_list=True).jobs()
    assert job.remote is UNLISTED
    stupid = from_keywords([path], bucket="bkt", put="stupid")
    [job] = Walker(stupid, None, spool_dir=str(tmp_path), can_list=True).jobs()
    assert job.remote is None and store.calls == []


def test_excluded_directory_is_not_walked_and_is_noted(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write(src / "keep.txt", b"k")
    write(src / "cache" / "deep" / "x.bin", b"x")
    opened = []
    real_scandir = os.scandir
    monkeypatch.setattr(sources.os, "scandir",
                        lambda path: opened.append(os.path.basename(path)) or real_scandir(path))
    notes = []
    cfg = config(tmp_path, put="stupid", exclude=["cache/*"])
    items = list(Walker(cfg, None, spool_dir=str(tmp_path), can_list=False,
                        note=lambda level, text: notes.append(text)).jobs())
    assert [item.key for item in items] == ["keep.txt"]
    assert "cache" not in opened and "deep" not in opened
    assert any("cache/" in text and "cache/*" in text for text in notes)


def test_an_include_after_the_exclude_keeps_the_directory_walked(tmp_path):
    src = tmp_path / "src"
    write(src / "cache" / "keep.jpg", b"j")
    write(src / "cache" / "drop.txt", b"t")
    cfg = config(tmp_path, put="stupid",
                 rules=[(EXCLUDE, "cache/*"), (INCLUDE, "*.jpg")])
    items = list(Walker(cfg, None, spool_dir=str(tmp_path), can_list=False).jobs())
    assert [item.key for item in items] == ["cache/keep.jpg"]


def test_count_files_follows_links_without_looping_and_skips_excluded(tmp_path):
    src = tmp_path / "src"
    write(src / "a" / "1.txt", b"1")
    write(src / "a" / "2.tmp", b"2")
    write(src / "b" / "3.txt", b"3")
    (src / "a" / "loop").symlink_to(src)  # a link back to the top
    counted = [0]
    sources.count_files([str(src)], (Rule(EXCLUDE, "*.tmp"),), True, counted)
    walked = list(sources.walk_tree(str(src), follow_symlinks=True))
    # the two .txt files, and the loop (a skipped entry: it is counted as walked too)
    assert counted[0] == 3 == len([e for e in walked if not e.display.endswith(".tmp")])
    assert [e.problem for e in walked if e.problem] == ["symbolic link loop, not followed"]


# -- the walker's feeder --------------------------------------------------------------------

def test_feeder_announces_every_item_before_it_is_queued(tmp_path):
    events = []
    stop = threading.Event()
    feeder = Feeder(lambda batch: events.append(("jobs", [j.seq for j in batch])) or True,
                    lambda message: events.append((type(message).__name__, message)), stop)
    path = write(tmp_path / "a", b"a")
    skipped = job_for(path, "s", seq=1).result(SKIPPED, "unchanged")
    done = feeder.feed([skipped, job_for(path, "a", seq=2)])
    assert done == WalkerDone(2, "")
    kinds = [kind for kind, _ in events]
    assert kinds == ["Walked", "Results", "jobs", "WalkerDone"]
    assert [note[0] for note in events[0][1].notes] == [1, 2]


def test_feeder_stops_walking_once_the_limit_is_spent(tmp_path):
    path = write(tmp_path / "a", b"a")
    feeder = Feeder(lambda batch: True, lambda message: None, threading.Event(), _Value(0))
    assert feeder.feed(job_for(path, "a", seq=n) for n in range(5)).cut == "limit reached"


# -- the putter -----------------------------------------------------------------------------

def test_putter_gives_every_job_one_result_and_grows_threads_with_the_limit(tmp_path):
    store = FakeStore()
    limiter = Limiter(Controller(4, 1, 64))
    transfer = Transfer(config(tmp_path, put="stupid"), store, UploadSlots(), limiter=limiter)
    jobs = [job_for(write(tmp_path / f"f{n}", b"%d" % n), f"f{n}", seq=n) for n in range(300)]
    batches: "queue.Queue" = queue.Queue()
    for start in range(0, len(jobs), 64):
        batches.put(tuple(jobs[start:start + 64]))
    batches.put(STOP)
    results = []
    putter = Putter(transfer, lambda message: results.extend(message.results),
                    threading.Event(), 72, on_fatal=lambda text: None)
    limiter.controller.limit = 32  # as if the controller had grown it meanwhile
    putter.serve(lambda timeout: batches.get(timeout=timeout), grace=1)
    assert sorted(r.seq for r in results) == list(range(300))
    assert all(r.outcome == UPLOADED for r in results)
    assert len(putter.workers) == 32 + 8


def test_putter_reports_a_fatal_error_once_and_stops(tmp_path):
    store = FakeStore()
    store.fail("put", *[FatalError("credentials expired")] * 10)
    stop = threading.Event()
    fatal = []
    transfer = Transfer(config(tmp_path, put="stupid"), store, UploadSlots())
    jobs = tuple(job_for(write(tmp_path / f"f{n}", b"x"), f"f{n}", seq=n) for n in range(10))
    batches: "queue.Queue" = queue.Queue()
    batches.put(jobs)
    batches.put(STOP)
    Putter(transfer, lambda message: None, stop, 4, on_fatal=fatal.append).serve(
        lambda timeout: batches.get(timeout=timeout), grace=1)
    assert fatal == ["credentials expired"] and stop.is_set()


# -- the statter ----------------------------------------------------------------------------

def test_statter_counts_early_results_once_and_names_lost_jobs(tmp_path):
    cfg = config(tmp_path, json=True)
    out, err = io.StringIO(), io.StringIO()
    statter = Statter(cfg, Log(verbose=0, quiet=False, json_mode=True, log_file=None,
                               stdout=out, stderr=err))
    path = write(tmp_path / "a", b"a")
    early = job_for(path, "a", seq=1).result(UPLOADED, "new")
    statter.handle(Results((early,)))  # overtook its Walked note
    statter.handle(Walked(((1, "a", "a", 1), (2, "b", "b", 1))))
    statter.handle(WalkerDone(2))
    summary = statter.finish(Finish(False, (9,)))
    assert (summary["walked"], summary["uploaded"], summary["failed"]) == (2, 1, 1)
    assert "putter process died" in summary["failures"][0]["reason"]
    assert "failed b -> s3://bucket/b" in err.getvalue()
