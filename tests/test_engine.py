"""The transfer engine against the real server (issue 9): the number of requests in flight
backs off when the store throttles and nothing is lost; parts of one file go up in
parallel with S3's multipart ETag, and a run killed in the middle of them is completed by
the next run. Slowness and throttling are made on purpose by the fault proxy; nothing here
depends on how fast the machine is."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time

from conftest import body_of, keys_of, make_tree
from faultproxy import FaultProxy
from test_reliability import Run, assert_bucket_holds, small_files, wait_until

MiB = 1024 * 1024
LIMIT_LINE = re.compile(r"putter (\d+): requests in flight: limit (\d+) at the end, (\d+) at "
                        r"most, halved (\d+) times for throttling")


def test_throttled_store_halves_the_requests_in_flight_and_nothing_is_lost(
        cli, s3, s3server, bucket, tmp_path):
    files = small_files(200, size=64)
    src = make_tree(tmp_path / "src", files)
    with FaultProxy(s3server.port, seed=3) as proxy:
        proxy.fail_fraction(0.2, 503, "SlowDown", methods=["PUT"])
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--json", "-vv",
                     "--no-state", "--retries", "10", src, timeout=300)
        injected = proxy.faults_injected["fail"]
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert (summary["uploaded"], summary["failed"]) == (200, 0)
    assert injected >= 2
    putters = {int(m[1]): (int(m[2]), int(m[3]), int(m[4]))
               for m in LIMIT_LINE.finditer(result.stderr)}
    # putters start as the walker wants them: one at least, two when the first fell behind
    assert 1 <= len(putters) <= 2, result.stderr[-2000:]
    # every SlowDown reached a controller: at least one halving in all, and never below
    # the floor of 4 requests in flight
    assert sum(halvings for _, _, halvings in putters.values()) >= 1, putters
    assert all(limit >= 4 for limit, _, _ in putters.values()), putters
    assert_bucket_holds(s3, bucket, files)


def test_fixed_inflight_is_a_fixed_limit(cli, s3, s3server, bucket, tmp_path):
    src = make_tree(tmp_path / "src", small_files(40, size=16))
    with FaultProxy(s3server.port, seed=4) as proxy:
        proxy.fail_fraction(0.2, 503, "SlowDown", methods=["PUT"])
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "-vv", "--no-state",
                     "--inflight", "3", "--retries", "10", src, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = LIMIT_LINE.findall(result.stderr)
    assert 1 <= len(lines) <= 2, result.stderr[-2000:]
    assert [(limit, most, halved) for _, limit, most, halved in lines] == \
        [("3", "3", "0")] * len(lines)


def multipart_etag(data: bytes, part_size: int) -> str:
    parts = [hashlib.md5(data[at:at + part_size]).digest()
             for at in range(0, len(data), part_size)]
    return f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


def test_parts_of_one_file_are_in_flight_together_and_the_etag_is_s3s(
        cli, s3, s3server, bucket, tmp_path):
    data = os.urandom(4 * 5 * MiB + 1234)  # five parts of 5 MiB
    src = make_tree(tmp_path / "src", {"big.bin": data})
    with FaultProxy(s3server.port) as proxy:
        # Part uploads are PUTs with ?partNumber=; hold them until four are in flight.
        gate = proxy.gate("PUT", "partNumber=")
        run = Run(cli, "--bucket", bucket, "--endpoint-url", proxy.url, "--json",
                  "--no-state", "--multipart-threshold", "5", "--part-size", "5", src)
        wait_until(lambda: gate.held >= 4, "four parts of one file in flight at once", run)
        gate.open()
        assert run.wait() == 0, run.stderr[-3000:]
    etag = s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].strip('"')
    assert etag == multipart_etag(data, 5 * MiB)
    assert body_of(s3, bucket, "big.bin") == data


def test_run_killed_while_parts_go_up_is_completed_by_the_next_run(
        cli, s3, s3server, bucket, tmp_path):
    data = os.urandom(3 * 5 * MiB)
    src = make_tree(tmp_path / "src", {"big.bin": data, "small.txt": b"small"})
    state = tmp_path / "state.sqlite"
    with FaultProxy(s3server.port) as proxy:
        gate = proxy.gate("PUT", "partNumber=")
        run = Run(cli, "--bucket", bucket, "--endpoint-url", proxy.url, "--json",
                  "--state", state, "--multipart-threshold", "5", "--part-size", "5", src)
        wait_until(lambda: gate.held >= 2, "parts in flight", run)
        os.killpg(run.pid, signal.SIGKILL)  # a crash in the middle of the upload
        run.wait()
        gate.open()
    assert "big.bin" not in keys_of(s3, bucket)  # never half-written
    again = cli("--bucket", bucket, "--json", "--state", state, "--multipart-threshold", "5",
                "--part-size", "5", src)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["failed"] == 0
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].strip('"') == \
        multipart_etag(data, 5 * MiB)
    assert body_of(s3, bucket, "big.bin") == data
    # and the run after that finds it unchanged: the multipart ETag is understood
    third = cli("--bucket", bucket, "--json", "--state", state, "--multipart-threshold", "5",
                "--part-size", "5", src)
    assert json.loads(third.stdout)["skipped_reasons"] == {"unchanged": 2}


def test_putters_start_when_the_walk_first_has_a_job_for_one(cli, s3, bucket, tmp_path):
    """An unchanged tree is decided by the walker alone: a rerun forks no putter, however
    many --processes allow; a run with work starts them as the walk needs them."""
    files = small_files(120, size=32)
    src = make_tree(tmp_path / "src", files)
    settled = time.time() - 3600  # not modified just before the run: the journal vouches
    for path in src.rglob("*"):
        os.utime(path, (settled, settled))
    first = cli("--bucket", bucket, "--processes", "8", "-vv", "--json", src)
    assert first.returncode == 0, first.stderr[-2000:]
    started = {int(m[1]) for m in LIMIT_LINE.finditer(first.stderr)}
    assert started and started == set(range(len(started)))  # putter 0, 1, ... in order
    again = cli("--bucket", bucket, "--processes", "8", "-vv", "--json", src)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["skipped"] == 120
    assert LIMIT_LINE.search(again.stderr) is None  # no putter ever started
    assert_bucket_holds(s3, bucket, files)


def test_the_walker_lists_on_with_the_connection_of_the_up_front_check(cli, s3server, bucket,
                                                                       tmp_path):
    """The check reads the listing's first page; the walker, forked after it, asks for the
    second on the same keep-alive connection: one connection, not a second handshake."""
    src = make_tree(tmp_path / "src", {f"d/{n:04d}.txt": b"%d" % n for n in range(1005)})
    first = cli("--bucket", bucket, src)
    assert first.returncode == 0, first.stderr[-2000:]
    with FaultProxy(s3server.port) as proxy:
        again = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--json", src)
        accepted, gets, others = proxy.accepted, proxy.by_method["GET"], proxy.requests
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["skipped"] == 1005
    assert (gets, others) == (2, 2)  # the listing's two pages, and nothing else
    assert accepted == 1
