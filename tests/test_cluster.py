"""``--cluster``: the putters on a Dask cluster, and the Python API (issue 11).

Against the real local S3 server: a ``LocalCluster`` of two worker processes
(``--cluster local:2``), or a scheduler and workers started here as the README tells a
user to (``dask scheduler``, ``dask worker tcp://...``). Results are read back with the
independent client. A run is kept mid-run, where a test needs it, by a ``FaultProxy``
that holds the answers to PUTs (``hold_answers``) until the test has acted; "mid-run" is
a state the test waits for (answers held, a worker holding connections), never a guess
of time.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import ROOT, cli_env, keys_of, make_tree
from faultproxy import FaultProxy
from test_reliability import (
    Run,
    alive,
    assert_adds_up,
    assert_bucket_holds,
    assert_rerun_put_only_what_was_missing,
    children,
    connections_to,
    descendants,
    identity,
    rerun_puts_only_what_is_missing,
    settled_keys,
    small_files,
    summary_of,
    wait_until,
)

pytest.importorskip("distributed", reason="--cluster needs dask[distributed] (the dev extra)")

MiB = 1024 * 1024


# -- helpers -------------------------------------------------------------------------------

def second_bucket(s3, bucket: str) -> str:
    other = bucket[:56] + "-c"
    s3.create_bucket(Bucket=other)
    return other


def described(s3, bucket: str) -> Dict[str, tuple]:
    """{key: (size, ETag, Content-Type, Content-Encoding, Cache-Control, metadata)}."""
    found = {}
    for key, item in keys_of(s3, bucket).items():
        head = s3.head_object(Bucket=bucket, Key=key)
        found[key] = (item["Size"], item["ETag"], head.get("ContentType"),
                      head.get("ContentEncoding"), head.get("CacheControl"),
                      tuple(sorted(head.get("Metadata", {}).items())))
    return found


def same_counts(local: dict, cluster: dict) -> None:
    for field in ("walked", "uploaded", "skipped", "failed", "bytes", "bytes_sent",
                  "walk_complete", "skipped_reasons"):
        assert local[field] == cluster[field], (field, local, cluster)
    assert sorted(map(json.dumps, local["failures"])) == \
        sorted(map(json.dumps, cluster["failures"]))


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dask_workers(pid: int) -> List[int]:
    """The Dask worker processes of the ``--cluster local:N`` run PID: its spawned
    children that are not its walker or statter (the processes that name themselves)."""
    found = []
    for child in children(pid):
        try:
            comm = Path(f"/proc/{child}/comm").read_text().strip()
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and not comm.startswith("s3pput-"):
            found.append(child)
    return found


def busy_worker(pid: int, port: int) -> int:
    """A Dask worker of run PID with job threads talking to PORT (the check before the
    run leaves at most one connection per worker), or 0."""
    for worker in dask_workers(pid):
        if connections_to(worker, port) >= 3:
            return worker
    return 0


# -- the same objects, locally and on the cluster ------------------------------------------

def test_same_tree_locally_and_with_cluster_local_2_gives_identical_objects(
        cli, s3, bucket, tmp_path):
    other = second_bucket(s3, bucket)
    files = {
        "index.html": b"<html>" + b"hello " * 500 + b"</html>",  # gzipped
        "css/site.css": b"body { color: red }\n" * 200,  # gzipped
        "data/blob.bin": os.urandom(10_000),
        "data/empty.txt": b"",
        "data/big.bin": os.urandom(6 * MiB),  # multipart: 5 MiB parts
        "names/ünïcode name #1+2.txt": b"hello",
        **{f"many/f{n:03d}.bin": os.urandom(512) for n in range(150)},  # several batches
    }
    make_tree(tmp_path / "src", files)
    members = {"archived/a.txt": b"from the archive", "archived/b.json": b'{"a": 1}'}
    with tarfile.open(tmp_path / "extra.tar", "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    options = ["--gzip", "--header", "Cache-Control: max-age=60", "--header",
               "x-amz-meta-origin: s3pput-test", "--multipart-threshold", "5",
               "--part-size", "5", "--json", "--no-state", "src", "extra.tar"]

    local = cli("--bucket", bucket, *options)
    on_cluster = cli("--bucket", other, "--cluster", "local:2", *options)

    assert local.returncode == 0, local.stderr[-3000:]
    assert on_cluster.returncode == 0, on_cluster.stderr[-3000:]
    assert on_cluster.stderr == "", on_cluster.stderr[-3000:]  # one voice: no Dask noise
    summary = summary_of(on_cluster.stdout)
    assert summary["uploaded"] == len(files) + len(members)
    same_counts(summary_of(local.stdout), summary)
    here, there = described(s3, bucket), described(s3, other)
    assert len(here) == len(files) + len(members)
    assert here == there
    assert here["index.html"][2:5] == ("text/html", "gzip", "max-age=60")
    assert here["data/big.bin"][1].endswith('-2"')  # multipart ETag, the same on both


def test_images_locally_and_with_cluster_local_2_same_numbers_manifests_thumbnails(
        cli, s3, bucket, tmp_path):
    from PIL import Image

    def image(colour, fmt):
        out = io.BytesIO()
        Image.new("RGB", (60, 90), colour).save(out, fmt)
        return out.getvalue()

    other = second_bucket(s3, bucket)
    files = {
        "people/0001_anna.png": image((255, 0, 0), "PNG"),
        "people/0002_bob.jpg": image((0, 255, 0), "JPEG"),
        "people/0003_carl.png": image((0, 0, 255), "PNG"),
        "people/broken.jpg": image((9, 9, 9), "JPEG")[:300],  # fails on a worker
        "people/notes.txt": b"not an image",  # skipped by the walker
        "animals/cat.jpg": image((255, 255, 0), "JPEG"),
        "animals/dog.webp": image((255, 0, 255), "WEBP"),
        "top.png": image((0, 255, 255), "PNG"),
    }
    make_tree(tmp_path / "src", files)
    options = ["--images", "--thumbnail", "thumbnail=20x30", "--thumbnail", "small=10x15",
               "--json", "--no-state", "src"]

    local = cli("--bucket", bucket, "--mapping-log", "local.csv", *options)
    on_cluster = cli("--bucket", other, "--mapping-log", "cluster.csv", "--cluster",
                     "local:2", *options)

    assert local.returncode == on_cluster.returncode == 1, on_cluster.stderr[-3000:]
    same_counts(summary_of(local.stdout), summary_of(on_cluster.stdout))
    assert summary_of(on_cluster.stdout)["failed"] == 1  # the truncated image, in both
    here, there = described(s3, bucket), described(s3, other)
    assert here == there
    assert "people/original/3.png" in here and "people/small/3.png" in here
    assert "people/.s3pput-manifest.json" in here  # same ETag: the same numbering
    for key in [key for key in here if key.endswith(".s3pput-manifest.json")]:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == \
            s3.get_object(Bucket=other, Key=key)["Body"].read()

    def mapping(name):
        with open(tmp_path / name, newline="") as handle:
            return sorted(map(tuple, csv.reader(handle)))

    assert mapping("local.csv") == mapping("cluster.csv")


# -- faults --------------------------------------------------------------------------------

def test_worker_killed_mid_run_its_batches_run_again_nothing_lost_then_rerun(
        cli, s3, s3server, bucket, tmp_path):
    files = small_files(200, dirs=4)
    src = make_tree(tmp_path / "src", files)
    state = tmp_path / "state.sqlite"
    with FaultProxy(s3server.port) as proxy:
        # 20 files go up, then every answer is held: each worker with a batch (64 files)
        # is in the middle of it, its 4 PUTs in flight, until the test releases them.
        proxy.hold_answers(methods=["PUT"], after=20)
        run = Run(cli, "--bucket", bucket, "--endpoint-url", proxy.url, "--json",
                  "--state", state, "--cluster", "local:2", "--inflight", "4", src)
        wait_until(lambda: proxy.faults_injected["held answer"] >= 1
                   and busy_worker(run.pid, proxy.port), "a worker in the middle of a batch",
                   run)
        os.kill(busy_worker(run.pid, proxy.port), signal.SIGKILL)
        proxy.release_answers()
        code = run.wait()
        puts = proxy.by_method["PUT"]
    stderr = run.stderr
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    summary = summary_of(run.stdout)
    assert_adds_up(summary)
    assert (summary["walked"], summary["uploaded"], summary["failed"]) == (len(files),) * 2 + (0,)
    assert_bucket_holds(s3, bucket, files)
    # The dead worker's batch ran again elsewhere: the files it had put already were put
    # again (idempotent), and each was counted once.
    assert puts > len(files), puts

    gone = sorted(files)[:5]
    for rel in gone:
        s3.delete_object(Bucket=bucket, Key=rel)
    present = {key for key in keys_of(s3, bucket)}
    again = cli("--bucket", bucket, "--json", "--state", state, "-v", src)
    assert_rerun_put_only_what_was_missing(again, bucket, files, present)
    assert summary_of(again.stdout)["uploaded"] == len(gone)
    assert_bucket_holds(s3, bucket, files)


@pytest.fixture
def dask_cluster(s3server, tmp_path):
    """A scheduler and two worker processes, started as the README says (``dask
    scheduler``, ``dask worker tcp://...``), with the credentials of the tests."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = cli_env(s3server.endpoint)
    env["PYTHONPATH"] = str(ROOT)
    started = []

    def start(*args):
        log = open(tmp_path / f"dask-{len(started)}.log", "w")
        started.append(subprocess.Popen([sys.executable, "-m", "dask", *args], env=env,
                                        cwd=tmp_path, stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL, start_new_session=True))
        return started[-1]

    scheduler = start("scheduler", "--host", "127.0.0.1", "--port", str(port),
                      "--no-dashboard")
    workers = start("worker", address, "--nworkers", "2", "--nthreads", "2", "--host",
                    "127.0.0.1", "--no-dashboard")

    def registered() -> int:
        return (tmp_path / "dask-0.log").read_text().count("Register worker")

    wait_until(lambda: registered() >= 2, "two workers registered with the scheduler")
    yield address, scheduler, workers
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def test_scheduler_killed_mid_run_exit_1_every_unfinished_file_named_then_rerun(
        cli, s3, s3server, bucket, tmp_path, dask_cluster):
    address, scheduler, workers = dask_cluster
    files = small_files(300)
    src = make_tree(tmp_path / "src", files)
    state = tmp_path / "state.sqlite"
    log = tmp_path / "run.log"
    with FaultProxy(s3server.port) as proxy:
        proxy.hold_answers(methods=["PUT"], after=20)  # the run cannot end meanwhile
        run = Run(cli, "--bucket", bucket, "--endpoint-url", proxy.url, "--json",
                  "--state", state, "--log-file", log, "--cluster", address,
                  "--inflight", "4", src)
        wait_until(lambda: proxy.faults_injected["held answer"] >= 1, "answers held", run)
        os.killpg(scheduler.pid, signal.SIGKILL)
        proxy.release_answers()
        code = run.wait()
        # The workers outlive their scheduler and may still be putting: end them, then
        # read what the bucket holds once nothing more can land.
        os.killpg(workers.pid, signal.SIGKILL)
        present = settled_keys(s3, bucket, proxy)
    stderr = run.stderr
    assert code == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "distributed" not in stderr, stderr[-3000:]
    summary = summary_of(run.stdout)
    assert_adds_up(summary)
    why = f"the connection to the Dask scheduler at {address} was lost"
    assert summary["errors"] == [why]
    assert summary["failed"] >= 1 and not summary["interrupted"]
    logged = log.read_text()
    for failure in summary["failures"]:
        assert failure["reason"] == f"lost: {why}", failure
        assert f"failed {failure['path']} -> " in logged
        assert f"failed {failure['path']} -> " in stderr
    rerun_puts_only_what_is_missing(cli, s3, bucket, state, src, files, present)


def test_ctrl_c_on_cluster_local_2_cancels_the_run_exit_130_no_process_left_then_rerun(
        cli, s3, s3server, bucket, tmp_path):
    files = small_files(300)
    src = make_tree(tmp_path / "src", files)
    state = tmp_path / "state.sqlite"
    with FaultProxy(s3server.port) as proxy:
        proxy.hold_answers(methods=["PUT"], after=20)  # the run cannot end meanwhile
        run = Run(cli, "--bucket", bucket, "--endpoint-url", proxy.url, "--json",
                  "--state", state, "--cluster", "local:2", "--inflight", "4", src)
        wait_until(lambda: proxy.faults_injected["held answer"] >= 1
                   and len(dask_workers(run.pid)) == 2, "uploads on both workers", run)
        processes = [identity(pid) for pid in descendants(run.pid)]
        os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl+C does
        proxy.release_answers()  # the uploads in flight finish
        code = run.wait()
        wait_until(lambda: not any(alive(process) for process in processes),
                   "every process of the run has ended")
        present = settled_keys(s3, bucket, proxy)
    stderr = run.stderr
    assert code == 130, stderr[-3000:]
    # Workers, walker and statter ignore the terminal's Ctrl+C (no traceback from any);
    # the main process stops them all.
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    summary = summary_of(run.stdout)
    assert_adds_up(summary)
    assert summary["interrupted"]
    if summary["failed"]:
        assert re.search(r"[\d,]+ files not finished: the run was stopped", stderr)
    rerun_puts_only_what_is_missing(cli, s3, bucket, state, src, files, present)


# -- refused up front ----------------------------------------------------------------------

def test_cluster_with_a_source_the_workers_cannot_see_exit_2_one_message(
        s3server, s3, bucket, tmp_path):
    # /proc/self/fd/N names the directory in the s3pput process, which holds descriptor
    # N, and nothing in the Dask workers it starts, which do not inherit it: what a
    # share that is not mounted on a worker looks like to that worker.
    make_tree(tmp_path / "src", {"a.txt": b"a", "b/c.txt": b"c"})
    fd = os.open(tmp_path / "src", os.O_RDONLY | os.O_DIRECTORY)
    held = os.dup2(fd, 200)
    os.close(fd)
    env = cli_env(s3server.endpoint, PYTHONPATH=str(ROOT))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "s3pput", "--no-progress", "--bucket", bucket,
             "--cluster", "local:2", f"/proc/self/fd/{held}"], env=env, cwd=tmp_path,
            pass_fds=(held,), capture_output=True, text=True, timeout=120)
    finally:
        os.close(held)
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_line(result.stderr)
    assert re.fullmatch(
        r"s3pput: error: the Dask worker tcp://127\.0\.0\.1:\d+ \(.+\) does not see SOURCE "
        r"'/proc/self/fd/200' as this machine does \(here a directory of 2 entries \(names "
        r"\w+\), there nothing readable \(No such file or directory\)\): every worker must "
        r"see the same files at the same path, e\.g\. the same network mount \(and 1 more "
        r"of 2 workers\)", line), line
    assert not keys_of(s3, bucket)


@pytest.mark.parametrize("options, message", [
    (["--cluster", "tcp://127.0.0.1:{free}"],
     r"no Dask scheduler answers at tcp://127\.0\.0\.1:\d+: Connection refused \(start one "
     r"with `dask scheduler`, or check the address\)"),
    (["--cluster", "local:0"], r"--cluster 'local:0': write local:N with N worker processes"),
    (["--cluster", "ftp://sched:21"], r"--cluster 'ftp://sched:21': the scheme must be one of"),
    (["--cluster", "tcp://sched:99999"],
     r"--cluster 'tcp://sched:99999' is not a scheduler address \(the port is not a number"),
    (["--cluster", "local:2", "--limit", "5"], r"--limit cannot be used with --cluster"),
    (["--cluster", "local:2", "--max-rate", "10"], r"--max-rate cannot be used with --cluster"),
    (["--cluster", "local:2", "archive.tar.gz"],
     r"SOURCE 'archive\.tar\.gz' is a compressed archive, which cannot be used with --cluster"),
])
def test_cluster_refused_up_front_exit_2_one_message(cli, s3, bucket, tmp_path, options,
                                                      message):
    make_tree(tmp_path / "src", {"a.txt": b"a"})
    with tarfile.open(tmp_path / "archive.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "src" / "a.txt", "a.txt")
    options = [option.format(free=free_port()) for option in options]
    sources = [] if "archive.tar.gz" in options else ["src"]
    result = cli("--bucket", bucket, *options, *sources)
    assert result.returncode == 2, result.stderr[-3000:]
    assert re.fullmatch("s3pput: error: " + message + ".*", one_line(result.stderr)), \
        result.stderr
    assert not keys_of(s3, bucket)


def test_cluster_without_dask_installed_says_how_to_install_it(monkeypatch):
    import importlib.util

    from s3pput import checks
    from s3pput.errors import UsageError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "distributed" else real(name, *rest))
    with pytest.raises(UsageError, match=r"pip install 's3pput\[cluster\]'"):
        checks.cluster_address("local:2")


def test_results_of_a_batch_are_forwarded_once_each_whatever_a_worker_sends():
    from s3pput.jobs import FAILED, UPLOADED, Job, Source
    from s3pput.run.cluster import results_once

    batch = tuple(Job(seq, f"f{seq}", f"k{seq}", Source("file", f"f{seq}"), 1, 0, None)
                  for seq in (3, 4, 5))
    sent = [batch[0].result(UPLOADED, "new"), batch[1].result(UPLOADED, "new"),
            batch[0].result(FAILED, "again"), batch[2].result(UPLOADED, "new"),
            Job(9, "f9", "k9", Source("file", "f9"), 1, 0, None).result(UPLOADED, "new")]
    once = results_once(batch, sent)
    assert [(result.seq, result.reason) for result in once] == \
        [(3, "new"), (4, "new"), (5, "new")]


def test_without_cluster_dask_is_never_imported(cli, s3server, bucket, tmp_path):
    make_tree(tmp_path / "src", {"a.txt": b"a"})
    env = cli_env(s3server.endpoint, PYTHONPATH=str(ROOT))
    for args in (["--help"], ["--bucket", bucket, "--dry-run", "--no-state", "src"]):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "s3pput", *args],
                                env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "| s3pput.cli" in result.stderr  # the import log is there
        assert not re.search(r"\|\s+(dask|distributed)(\.\S+)?$", result.stderr, re.M)
    result = subprocess.run([sys.executable, "-c", "import sys; from s3pput import put; "
                             "print(sorted({'dask', 'distributed'} & set(sys.modules)))"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


# -- the Python API ------------------------------------------------------------------------

def test_python_api_put_returns_the_summary_and_raises_typed_errors(
        s3server, s3, bucket, tmp_path, monkeypatch, capfd):
    from distributed import Client, LocalCluster

    from s3pput import put
    from s3pput.errors import ConfigError, UsageError

    for name in [name for name in os.environ if name.startswith(("AWS_", "SPACES_",
                                                                 "S3PPUT_"))]:
        monkeypatch.delenv(name)
    for name, value in cli_env(s3server.endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    files = {"a.txt": b"alpha", "d/b.html": b"<p>beta</p>", "d/e/c.bin": os.urandom(100)}
    make_tree(tmp_path / "src", files)

    summary = put(["src"], bucket=bucket, prefix="here", no_progress=True, no_state=True)
    assert (summary["walked"], summary["uploaded"], summary["failed"]) == (3, 3, 0)
    assert_bucket_holds(s3, bucket, files, prefix="here/")
    assert "put 3 files" in capfd.readouterr().out  # the command line's summary

    # A client the caller already has: its cluster runs the putters.
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
            Client(cluster, set_as_default=False) as client:
        summary = put(tmp_path / "src", bucket=bucket, prefix="there", cluster=client,
                      quiet=True, no_state=True, header="Cache-Control: max-age=5",
                      exclude=["*.bin"])
        assert (summary["walked"], summary["uploaded"], summary["failed"]) == (2, 2, 0)
        assert set(keys_of(s3, bucket, "there/")) == {"there/a.txt", "there/d/b.html"}
        assert s3.head_object(Bucket=bucket, Key="there/d/b.html")["CacheControl"] == \
            "max-age=5"
        assert client.status == "running"  # the caller's client is left as it was

    with pytest.raises(UsageError, match="--part-size must be at least 5"):
        put(["src"], bucket=bucket, part_size=1)
    with pytest.raises(UsageError, match="put='sideways'"):
        put(["src"], bucket=bucket, put="sideways")
    with pytest.raises(UsageError, match="their order decides"):
        put(["src"], bucket=bucket, include=["*.txt"], exclude=["*"])
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket-here' does not exist"):
        put(["src"], bucket="no-such-bucket-here", no_state=True)
    with pytest.raises(TypeError, match="no_such_option"):
        put(["src"], bucket=bucket, no_such_option=True)
