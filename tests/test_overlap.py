"""Runs that overlap, against the real local server (issue 8 §1).

Two image runs on one prefix from two "machines" (each its own state directory and working
directory), ``--put add`` racing another writer, a store that ignores conditional writes
(the fault proxy strips the headers; SeaweedFS without an identities config does not check
signatures, so the stripped requests are accepted), the lock object such a store is
guarded by, and a second run on one machine. Races are made deterministic with the fault
proxy's gates (a request is held until the test opens its gate): no test sleeps to
synchronise. Results are read back with the independent client.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, body_of, cli_env, keys_of, make_tree
from faultproxy import FaultProxy
from PIL import Image

MANIFEST = ".s3pput-manifest.json"
LOCK = ".s3pput-lock.json"
PROBE = ".s3pput-probe"


def jpeg(index: int) -> bytes:
    """A small JPEG of its own colour (so its bytes are its own)."""
    colour = ((index * 37) % 256, (index * 91) % 256, (index * 151) % 256)
    out = io.BytesIO()
    Image.new("RGB", (40, 60), colour).save(out, "JPEG", quality=90)
    return out.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Started:
    """One s3pput run in the background, as on a machine of its own: its own state
    directory (journal, run locks) and working directory (mapping log)."""

    def __init__(self, endpoint: str, home: Path, *args):
        home.mkdir(parents=True, exist_ok=True)
        env = cli_env(endpoint, XDG_STATE_HOME=str(home / "state"))
        env["PYTHONPATH"] = str(ROOT)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "s3pput", "--no-progress", "--processes", "2",
             *map(str, args)], cwd=home, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.pid = self.process.pid

    def finish(self, timeout: float = 120) -> subprocess.CompletedProcess:
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            raise AssertionError(f"the run did not end within {timeout} s\n{err}") from None
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)


def summary_of(result) -> dict:
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    return json.loads(lines[0])


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def opened(gate, count: int = 1):
    """Wait until COUNT requests are held at GATE, then let them through."""
    assert gate.wait_for(count), f"{count} requests never reached the gate"
    gate.open()


# -- stores that honour conditional writes (SeaweedFS does) --------------------------------

def test_two_image_runs_from_two_machines_on_one_prefix_store_all_60_numbered_apart(
        s3server, s3, bucket, tmp_path):
    machines = {}
    for name, first in (("left", 0), ("right", 100)):
        files = {f"photos/{name}-{i:02}.jpg": jpeg(first + i) for i in range(30)}
        make_tree(tmp_path / name / "images", files)
        machines[name] = files
    with FaultProxy(s3server.port) as proxy:
        # Both runs read the manifest (absent) and number their 30 names 1..30 before
        # either writes it: the race that lost 30 images, made certain.
        gate = proxy.gate("PUT", f"/{MANIFEST}")
        runs = {name: Started(proxy.url, tmp_path / name, "--bucket", bucket, "--prefix",
                              "avatar", "--images", "--json", tmp_path / name / "images")
                for name in machines}
        opened(gate, 2)
        results = {name: run.finish() for name, run in runs.items()}
    for result in results.values():
        summary = summary_of(ok(result))
        assert (summary["uploaded"], summary["failed"]) == (30, 0)

    manifest = json.loads(body_of(s3, bucket, f"avatar/photos/{MANIFEST}"))["files"]
    sources = {rel.split("/")[-1]: data for files in machines.values()
               for rel, data in files.items()}
    assert set(manifest) == set(sources)
    assert sorted(manifest.values()) == list(range(1, 61))  # none shared, none skipped
    stored = keys_of(s3, bucket, "avatar/")
    assert set(stored) == {f"avatar/photos/{MANIFEST}", "avatar/photos/.s3pput-index.json",
                           *(f"avatar/photos/original/{n}.jpg" for n in range(1, 61)),
                           *(f"avatar/photos/thumbnail/{n}.jpg" for n in range(1, 61))}
    for name, number in manifest.items():  # each under the number its manifest gives it
        assert md5(body_of(s3, bucket, f"avatar/photos/original/{number}.jpg")) == \
            md5(sources[name]), name
    for name in machines:  # and each machine's mapping log says the same
        with open(tmp_path / name / "s3pput-mapping.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 30
        for row in rows:
            number = manifest[Path(row["source"]).name]
            assert (row["number"], row["original_key"]) == \
                (str(number), f"avatar/photos/original/{number}.jpg")


@pytest.mark.parametrize("path", ["fast", "boto3"])
def test_put_add_racing_another_writer_keeps_its_bytes_and_skips_exists(
        s3server, s3, bucket, tmp_path, path):
    src = make_tree(tmp_path / "src", {"f.txt": b"ours", "g.txt": b"g"})
    with FaultProxy(s3server.port) as proxy:
        # The listing said f.txt is absent; another writer stores it while our PUT is on
        # its way.
        gate = proxy.gate("PUT", f"/{bucket}/f.txt")
        run = Started(proxy.url, tmp_path / "home", "--bucket", bucket, "--put", "add",
                      "--json", *(["--no-fast-put"] if path == "boto3" else []), src)
        assert gate.wait_for(1)
        s3.put_object(Bucket=bucket, Key="f.txt", Body=b"theirs")
        gate.open()
        result = run.finish()
    summary = summary_of(ok(result))
    assert (summary["uploaded"], summary["skipped"], summary["failed"]) == (1, 1, 0)
    assert summary["skipped_reasons"] == {"exists": 1}
    assert body_of(s3, bucket, "f.txt") == b"theirs"
    assert body_of(s3, bucket, "g.txt") == b"g"


def test_new_image_racing_another_writer_fails_exists_already_and_keeps_its_bytes(
        s3server, s3, bucket, tmp_path):
    src = make_tree(tmp_path / "src", {"a.jpg": jpeg(1)})
    with FaultProxy(s3server.port) as proxy:
        # a.jpg is numbered 1; before its thumbnail is put, another writer stores one there
        gate = proxy.gate("PUT", "/avatar/thumbnail/1.jpg")
        run = Started(proxy.url, tmp_path / "home", "--bucket", bucket, "--prefix", "avatar",
                      "--images", "--json", src)
        assert gate.wait_for(1)
        s3.put_object(Bucket=bucket, Key="avatar/thumbnail/1.jpg", Body=b"theirs")
        gate.open()
        result = run.finish()
    assert result.returncode == 1, result.stderr
    [failure] = summary_of(result)["failures"]
    assert failure["reason"] == "exists already: not overwritten (avatar/thumbnail/1.jpg)"
    assert body_of(s3, bucket, "avatar/thumbnail/1.jpg") == b"theirs"
    assert "avatar/original/1.jpg" not in keys_of(s3, bucket)  # nothing put after it


def test_extra_requests_a_probe_once_per_run_that_numbers_and_none_otherwise(
        s3server, s3, bucket, tmp_path):
    src = make_tree(tmp_path / "src", {f"p{i}.jpg": jpeg(i) for i in range(3)})
    images = ("--bucket", bucket, "--prefix", "avatar", "--images", "--json", src)
    with FaultProxy(s3server.port) as proxy:
        ok(Started(proxy.url, tmp_path / "home", *images).finish())
        first = proxy.by_method
        proxy.reset_counters()
        ok(Started(proxy.url, tmp_path / "home", *images).finish())  # nothing new
        rerun = proxy.by_method
        proxy.reset_counters()
        plain = make_tree(tmp_path / "plain", {f"{i}.txt": b"x" for i in range(3)})
        ok(Started(proxy.url, tmp_path / "home", "--bucket", bucket, "--put", "add",
                   "--json", plain).finish())
        add = proxy.by_method
    # 3 originals + 3 thumbnails + the manifest + the folder index, and the probe: 3 PUT
    # and 1 DELETE
    assert (first["PUT"], first["DELETE"]) == (3 * 2 + 1 + 1 + 3, 1)
    assert (rerun["PUT"], rerun["DELETE"]) == (0, 0)
    assert (add["PUT"], add["DELETE"]) == (3, 0)  # If-None-Match rides on the PUTs
    assert not [key for key in keys_of(s3, bucket) if PROBE in key]


# -- a store that does not honour them: the lock object ------------------------------------

def lock_doc(renewed_at: float, lease: float = 60, **fields) -> bytes:
    doc = {"version": 1, "owner": "another-run", "host": "elsewhere", "pid": 4242,
           "started": "2026-01-01T00:00:00+0000", "lease": lease, "renewed_at": renewed_at}
    return json.dumps({**doc, **fields}).encode()


def forgetful(proxy):
    """PROXY as a store that ignores If-None-Match and If-Match."""
    proxy.strip_request_headers("if-none-match", "if-match")
    return proxy


def test_probe_finds_a_store_that_ignores_the_headers_and_numbers_under_a_lock(
        s3server, s3, bucket, tmp_path):
    src = make_tree(tmp_path / "src", {"a.jpg": jpeg(1), "b.jpg": jpeg(2)})
    with forgetful(FaultProxy(s3server.port)) as proxy:
        # the lock must exist while the manifest is written
        gate = proxy.gate("PUT", f"/{MANIFEST}")
        run = Started(proxy.url, tmp_path / "home", "--bucket", bucket, "--prefix", "avatar",
                      "--images", "--json", "-v", src)
        assert gate.wait_for(1)
        lock = json.loads(body_of(s3, bucket, f"avatar/{LOCK}"))
        gate.open()
        result = ok(run.finish())
        stripped = proxy.faults_injected["stripped"]
    assert summary_of(result)["uploaded"] == 2
    assert "the store does not honour conditional writes" in result.stderr
    assert (lock["pid"], lock["host"]) == (run.pid, socket.gethostname())
    # the probe's two creates (a second create that succeeds ends it), and the
    # create-only PUTs of the two new images (thumbnail and original each), and the
    # folder index's create
    assert stripped == 2 + 2 * 2 + 1
    stored = keys_of(s3, bucket)
    assert f"avatar/{LOCK}" not in stored  # removed at the end
    assert not [key for key in stored if PROBE in key]
    assert json.loads(body_of(s3, bucket, f"avatar/{MANIFEST}"))["files"] == \
        {"a.jpg": 1, "b.jpg": 2}


def test_live_lock_of_another_run_exits_2_naming_it(s3server, s3, bucket, tmp_path):
    src = make_tree(tmp_path / "src", {"a.jpg": jpeg(1)})
    s3.put_object(Bucket=bucket, Key=f"avatar/{LOCK}", Body=lock_doc(time.time(), 3600))
    with forgetful(FaultProxy(s3server.port)) as proxy:
        result = Started(proxy.url, tmp_path / "home", "--bucket", bucket, "--prefix",
                         "avatar", "--images", src).finish()
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert "another run is numbering under this prefix: the run of pid 4242 on host " \
           "elsewhere" in line, line
    assert json.loads(body_of(s3, bucket, f"avatar/{LOCK}"))["owner"] == "another-run"
    assert set(keys_of(s3, bucket)) == {f"avatar/{LOCK}"}  # nothing numbered, nothing put


def test_stale_lock_is_taken_over_with_a_warning(s3server, s3, bucket, tmp_path):
    src = make_tree(tmp_path / "src", {"a.jpg": jpeg(1)})
    s3.put_object(Bucket=bucket, Key=f"avatar/{LOCK}", Body=lock_doc(time.time() - 7200))
    with forgetful(FaultProxy(s3server.port)) as proxy:
        result = ok(Started(proxy.url, tmp_path / "home", "--bucket", bucket, "--prefix",
                            "avatar", "--images", src).finish())
    assert "warning: took over the stale lock" in result.stderr
    assert "the run of pid 4242 on host elsewhere" in result.stderr
    stored = keys_of(s3, bucket)
    assert f"avatar/{LOCK}" not in stored and "avatar/original/1.jpg" in stored


def test_second_image_run_while_the_first_holds_the_lock_exits_2_naming_it(
        s3server, s3, bucket, tmp_path):
    first_src = make_tree(tmp_path / "first" / "images", {"a.jpg": jpeg(1)})
    second_src = make_tree(tmp_path / "second" / "images", {"b.jpg": jpeg(2)})
    images = ("--bucket", bucket, "--prefix", "avatar", "--images")
    with forgetful(FaultProxy(s3server.port)) as proxy:
        gate = proxy.gate("PUT", f"/{MANIFEST}")  # the first run holds the lock meanwhile
        first = Started(proxy.url, tmp_path / "first", *images, first_src)
        assert gate.wait_for(1)
        second = Started(proxy.url, tmp_path / "second", *images, second_src).finish()
        gate.open()
        first_result = ok(first.finish())
    assert second.returncode == 2, second.stderr
    assert f"the run of pid {first.pid} on host {socket.gethostname()}" in second.stderr
    assert "put 1 file," in first_result.stdout
    manifest = json.loads(body_of(s3, bucket, f"avatar/{MANIFEST}"))["files"]
    assert manifest == {"a.jpg": 1}


# -- one machine -----------------------------------------------------------------------------

def test_second_run_on_one_machine_exits_2_naming_the_first_pid_and_a_dry_run_may_look(
        s3server, s3, bucket, tmp_path):
    src = make_tree(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b"})
    home = tmp_path / "home"
    args = ("--bucket", bucket, "--prefix", "logs", src)
    with FaultProxy(s3server.port) as proxy:
        gate = proxy.gate("PUT", f"/{bucket}/logs/a.txt")
        first = Started(proxy.url, home, *args)
        assert gate.wait_for(1)
        second = Started(proxy.url, home, *args).finish()
        dry = Started(proxy.url, home, "--dry-run", *args).finish()
        other_prefix = Started(proxy.url, home, "--bucket", bucket, "--prefix", "other",
                               src).finish()
        gate.open()
        ok(first.finish())
    assert second.returncode == 2, second.stderr
    [line] = second.stderr.splitlines()
    assert f"another s3pput run (pid {first.pid}) is putting into s3://{bucket}/logs from " \
           "this machine" in line, line
    ok(dry)
    ok(other_prefix)
    assert set(keys_of(s3, bucket)) == {"logs/a.txt", "logs/b.txt", "other/a.txt",
                                        "other/b.txt"}


def test_store_answering_501_to_the_headers_is_remembered_and_numbers_under_the_lock(
        s3server, s3, bucket, tmp_path):
    src = make_tree(tmp_path / "src", {f"p{i}.jpg": jpeg(i) for i in range(4)})
    with FaultProxy(s3server.port) as proxy:
        # as Backblaze B2 answers If-None-Match
        proxy.refuse_request_headers(501, "NotImplemented", "if-none-match", "if-match")
        result = ok(Started(proxy.url, tmp_path / "home", "--bucket", bucket, "--prefix",
                            "avatar", "--images", "--json", "-v", src).finish())
        refused = proxy.faults_injected["refused"]
    assert summary_of(result)["uploaded"] == 4
    assert "the store does not honour conditional writes" in result.stderr
    # the probe's first create (fast path, then boto3), then in each putter the creates
    # in flight before its first 501 came back; every one was sent again without
    assert 2 <= refused <= 2 + 2 * 8
    stored = keys_of(s3, bucket)
    assert len([key for key in stored if "/original/" in key]) == 4
    assert f"avatar/{LOCK}" not in stored


@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multipart"])
def test_a_create_only_put_that_finds_its_own_bytes_in_place_has_succeeded(
        s3server, s3, bucket, multipart):
    """A retried request whose first attempt landed, or a batch run again on another
    Dask worker, meets its own object: success. Other bytes in place: a conflict."""
    from configs import from_keywords

    from s3pput.errors import PreconditionFailed
    from s3pput.store import make_store

    store = make_store(from_keywords(
        ["."], environ={"SPACES_ACCESS_KEY": "k", "SPACES_SECRET_KEY": "s"}, bucket=bucket,
        endpoint_url=s3server.endpoint, region="us-east-1"))
    mine = [b"m" * (5 * 1024 * 1024), b"tail"] if multipart else [b"mine"]

    def create(parts):
        if multipart:
            return store.put_multipart("k", iter(parts), {}, if_none_match=True)
        return store.put("k", parts[0], {}, if_none_match=True)

    first = create(mine)
    assert create(mine) == first == s3.head_object(Bucket=bucket, Key="k")["ETag"].strip('"')
    with pytest.raises(PreconditionFailed):
        create([b"o" * len(part) for part in mine])
    assert body_of(s3, bucket, "k") == b"".join(mine)
