"""Stores that misbehave: the real CLI against SeaweedFS through a fault proxy that makes it
misbehave the ways real stores have (tests/faultproxy.py), every outcome checked with an
independent client: nothing corrupt or false is stored, every file is uploaded, skipped
with its true reason or named failed, and the run ends in bounded time.

The pure parts (the retry policy, the listing guard, what an answer means) are tested
without a server at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import body_of, keys_of, make_tree
from faultproxy import COMPLETE_MULTIPART_UPLOAD, COPY_OBJECT, FaultProxy

from s3pput.errors import ConfigError, CredentialsExpired, ListingBroken, TransientError
from s3pput.store.answers import Page
from s3pput.store.errors import from_answer
from s3pput.store.retry import RetryPolicy
from s3pput.store.s3 import MAX_PAGES_WITHOUT_PROGRESS, ListingGuard

MiB = 1024 * 1024


def summary(result) -> dict:
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    return json.loads(lines[-1])


def stored_like_the_tree(s3, bucket, tree: Path, prefix: str = "") -> None:
    """Every file of TREE is stored under its key with exactly its bytes."""
    files = {str(path.relative_to(tree)): path.read_bytes()
             for path in tree.rglob("*") if path.is_file()}
    keys = keys_of(s3, bucket, prefix)
    for rel, data in files.items():
        key = f"{prefix}{rel}"
        assert key in keys, key
        if "-" in keys[key]["ETag"]:  # multipart: its body is compared
            assert body_of(s3, bucket, key) == data, key
        else:
            assert keys[key]["ETag"].strip('"') == hashlib.md5(data).hexdigest(), key


def preload(s3, bucket: str, tree: Path, names) -> None:
    """Store the files NAMES of TREE directly (as an earlier run would have)."""
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: s3.put_object(Bucket=bucket, Key=name,
                                                 Body=(tree / name).read_bytes()), names))


@pytest.fixture
def big_listing(tmp_path, s3, bucket):
    """A tree of 1,010 files already stored and 10 new ones: its listing takes two pages."""
    tree = make_tree(tmp_path / "src", {f"old/{n:04d}.txt": f"old {n}".encode()
                                        for n in range(1010)})
    make_tree(tree, {f"new/{n}.txt": f"new {n}".encode() for n in range(10)})
    preload(s3, bucket, tree, [f"old/{n:04d}.txt" for n in range(1010)])
    return tree


# -- listings that cannot end -------------------------------------------------------------

LISTING_FAULTS = {
    "a token that repeats": ("list_token_loop", "repeats its continuation token"),
    "a truncated page without a token": (
        "list_token_missing", "truncated (IsTruncated) but gives no continuation token"),
}


@pytest.mark.parametrize("path", ["lean", "boto3"])
@pytest.mark.parametrize("fault", sorted(LISTING_FAULTS))
def test_a_listing_that_cannot_end_is_stopped_and_the_rest_looked_up_by_head(
        cli, s3server, s3, bucket, big_listing, fault, path):
    """Never a hang, never a false "new": the listing stops with the store's fault named,
    and what its first page did not cover is asked for with a HEAD each."""
    inject, said = LISTING_FAULTS[fault]
    fast = ["--no-fast-put"] if path == "boto3" else []
    with FaultProxy(s3server.port) as proxy:
        getattr(proxy, inject)()
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--no-state", "--json",
                     *fast, big_listing, timeout=120)
        lists, heads = proxy.by_method["GET"], proxy.by_method["HEAD"]
    assert result.returncode == 0, result.stderr
    done = summary(result)
    assert (done["walked"], done["uploaded"], done["skipped"], done["failed"]) == \
        (1020, 10, 1010, 0)
    assert done["skipped_reasons"] == {"unchanged": 1010}
    assert said in result.stderr
    assert "looked up with one HEAD each" in result.stderr
    # at most the two pages asked for (a repeated token is seen on the second), and a HEAD
    # for each file the first page did not cover: the 10 old ones beyond it and the 10 new
    assert lists <= 2 and heads == 20
    stored_like_the_tree(s3, bucket, big_listing)


@pytest.mark.parametrize("path", ["lean", "boto3"])
def test_a_listing_whose_body_is_not_xml_is_said_as_such(cli, s3server, s3, bucket, tmp_path,
                                                         path):
    tree = make_tree(tmp_path / "src", {"a.txt": b"a"})
    fast = ["--no-fast-put"] if path == "boto3" else []
    with FaultProxy(s3server.port) as proxy:
        proxy.garbage_answer("GET", "list-type=2")
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--retries", "1",
                     *fast, tree)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "ListObjectsV2 answered 200 with a body that is not XML" in line, line
    assert "500" not in line and "Internal Server Error" not in line
    assert keys_of(s3, bucket) == {}


def test_a_walk_that_stops_says_so_in_the_summary_and_exits_1(cli, s3server, s3, bucket,
                                                              big_listing):
    with FaultProxy(s3server.port) as proxy:
        proxy.garbage_answer("GET", "continuation-token")  # the second page
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--no-state",
                     "--retries", "1", "--json", big_listing, timeout=120)
    assert result.returncode == 1, result.stderr
    done = summary(result)
    assert done["walk_complete"] is False
    assert done["walk_error"].startswith("walk stopped after ")
    assert "ListObjectsV2 answered 200 with a body that is not XML" in done["walk_error"]
    assert done["walk_error"].endswith("files after that were not looked at")
    assert done["walked"] == done["uploaded"] + done["skipped"] + done["failed"]
    human = cli("--bucket", bucket, "--endpoint-url", s3server.endpoint, "--no-state",
                "--dry-run", big_listing)
    assert human.returncode == 0  # the store itself is fine: only the proxy broke it


# -- bodies damaged on the way, and requests that fail together ------------------------------

def test_bodies_damaged_in_transit_are_sent_again_and_nothing_corrupt_is_stored(
        cli, s3server, s3, bucket, tmp_path):
    files = {f"d{n % 4}/f{n:03d}.bin": os.urandom(1500 + n) for n in range(200)}
    files["big/twelve.bin"] = os.urandom(12 * MiB)  # in parts
    tree = make_tree(tmp_path / "src", files)
    with FaultProxy(s3server.port, seed=3) as proxy:
        proxy.flip_body_bytes(0.2, methods=("PUT",))
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--no-state",
                     "--retries", "10", "--multipart-threshold", "5", "--part-size", "5",
                     "--json", "-vv", tree, timeout=300)
        flipped = proxy.faults_injected["flipped byte"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert summary(result)["uploaded"] == len(files)
    assert flipped >= 20
    assert "damaged in transit" in result.stderr  # counted at -vv
    stored_like_the_tree(s3, bucket, tree)


def test_images_and_their_manifests_are_sent_again_when_damaged(cli, s3server, s3, bucket,
                                                               tmp_path):
    from PIL import Image

    src = tmp_path / "photos"
    src.mkdir()
    for n in range(12):
        Image.new("RGB", (64, 48), (n * 20, 0, 0)).save(src / f"p{n:02d}.png")
    with FaultProxy(s3server.port, seed=5) as proxy:
        proxy.flip_body_bytes(0.3, methods=("PUT",))
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--images", "--prefix",
                     "av", "--retries", "10", "--json", src, cwd=tmp_path, timeout=300)
        flipped = proxy.faults_injected["flipped byte"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert summary(result)["uploaded"] == 12 and flipped >= 3
    keys = keys_of(s3, bucket, "av/")
    for n in range(1, 13):
        original = body_of(s3, bucket, f"av/original/{n}.png")
        assert original == (src / f"p{n - 1:02d}.png").read_bytes()
        thumb = Image.open(__import__("io").BytesIO(body_of(s3, bucket,
                                                            f"av/thumbnail/{n}.png")))
        assert thumb.size == (200, 300)
    manifest = json.loads(body_of(s3, bucket, "av/.s3pput-manifest.json"))
    assert sorted(manifest["files"].values()) == list(range(1, 13))
    assert len(keys) == 26  # 12 originals, 12 thumbnails, the manifest and the index


def test_every_request_gets_its_retries_when_many_fail_together(cli, s3server, s3, bucket,
                                                                tmp_path):
    """botocore's per-client retry quota drains after a few dozen retries: here 60 header
    updates meet a CopyObject that fails half the time, and every one gets through."""
    tree = make_tree(tmp_path / "src", {f"f{n:02d}.txt": b"x" * n for n in range(60)})
    assert cli("--bucket", bucket, "--no-state", tree).returncode == 0
    with FaultProxy(s3server.port, seed=11) as proxy:
        proxy.fail_with_200(0.5, operations=(COPY_OBJECT,))
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--no-state",
                     "--retries", "25", "--header", "Cache-Control: max-age=60", "--json",
                     tree, timeout=300)
        copies = proxy.copies
    assert result.returncode == 0, result.stderr[-2000:]
    assert summary(result)["updated_metadata"] == 60
    assert copies > 60 + 20  # retried, each on its own
    for n in range(60):
        assert s3.head_object(Bucket=bucket, Key=f"f{n:02d}.txt")["CacheControl"] == \
            "max-age=60"


# -- 200 with an <Error> body ---------------------------------------------------------------

def test_a_copy_answered_200_with_an_error_body_fails_and_changes_nothing(cli, s3server, s3,
                                                                       bucket, tmp_path):
    tree = make_tree(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b"})
    assert cli("--bucket", bucket, "--no-state", tree).returncode == 0
    with FaultProxy(s3server.port) as proxy:
        proxy.fail_with_200(1.0, operations=(COPY_OBJECT,))
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--no-state",
                     "--retries", "1", "--header", "Cache-Control: no-cache", "--json", tree)
    assert result.returncode == 1
    done = summary(result)
    assert done["failed"] == 2
    for failure in done["failures"]:
        assert "CopyObject answered 200 with an <Error> body: InternalError" in \
            failure["reason"], failure
        assert "gave up after 1 retry" in failure["reason"]
    for key in ("a.txt", "b.txt"):
        assert "CacheControl" not in s3.head_object(Bucket=bucket, Key=key)


@pytest.mark.parametrize("path", ["lean", "boto3"])
def test_a_completion_answered_200_with_an_error_body_stores_nothing(cli, s3server, s3,
                                                                    bucket, tmp_path, path):
    tree = make_tree(tmp_path / "src", {"big.bin": os.urandom(11 * MiB)})
    fast = ["--no-fast-put"] if path == "boto3" else []
    with FaultProxy(s3server.port) as proxy:
        proxy.fail_with_200(1.0, operations=(COMPLETE_MULTIPART_UPLOAD,))
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--no-state",
                     "--retries", "1", "--multipart-threshold", "5", "--part-size", "5",
                     "--json", *fast, tree)
    assert result.returncode == 1
    [failure] = summary(result)["failures"]
    assert "CompleteMultipartUpload answered 200 with an <Error> body" in failure["reason"]
    assert keys_of(s3, bucket) == {}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted


def test_a_part_copy_answered_200_with_an_error_body_changes_nothing(s3server, s3, bucket,
                                                                    tmp_path):
    """Above 5 GiB a header update copies in parts (UploadPartCopy); its 200 with an
    <Error> body is a failure too, and the upload of the copy is aborted. (The limit is
    lowered at the Store seam: no 5 GiB file is needed.)"""
    from configs import from_keywords
    from conftest import ACCESS_KEY, REGION, SECRET_KEY
    from faultproxy import UPLOAD_PART_COPY

    from s3pput.errors import FileError
    from s3pput.store import make_store

    data = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="big.bin", Body=data, CacheControl="old")
    with FaultProxy(s3server.port) as proxy:
        proxy.fail_with_200(1.0, operations=(UPLOAD_PART_COPY,))
        store = make_store(from_keywords(
            [tmp_path], environ={"SPACES_ACCESS_KEY": ACCESS_KEY,
                                 "SPACES_SECRET_KEY": SECRET_KEY},
            bucket=bucket, endpoint_url=proxy.url, region=REGION, retries=1))
        store.copy_limit = MiB
        with pytest.raises(FileError, match="UploadPartCopy answered 200 with an <Error> body"):
            store.copy_in_place("big.bin", {"CacheControl": "new"}, size=len(data),
                                part_size=5 * MiB)
        injected = proxy.faults_injected["200 error"]
    assert injected == 2  # the first part copy, and its one retry
    assert s3.head_object(Bucket=bucket, Key="big.bin")["CacheControl"] == "old"
    assert body_of(s3, bucket, "big.bin") == data
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted


# -- credentials that expire early ------------------------------------------------------------

CREDENTIAL_PROCESS = """\
import json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
key = sys.argv[2] if len(sys.argv) > 2 else f"AKEXPIRING{n}"
print(json.dumps({"Version": 1, "AccessKeyId": key, "SecretAccessKey": "s3cr3t-never-shown",
                  "SessionToken": f"token-{n}", "Expiration": "2099-01-01T00:00:00Z"}))
"""


def credential_profile(tmp_path: Path, *fixed_key: str) -> dict:
    """The environment of a run whose profile's keys come from a credential_process that
    gives a new key each time it is asked (or always FIXED_KEY)."""
    script = tmp_path / "creds.py"
    script.write_text(CREDENTIAL_PROCESS)
    config = tmp_path / "aws-config"
    args = " ".join([str(tmp_path / "calls"), *fixed_key])
    config.write_text(f"[profile expiring]\nregion = us-east-1\n"
                      f"credential_process = {sys.executable} {script} {args}\n")
    return {"AWS_CONFIG_FILE": str(config), "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": ""}


def test_keys_the_store_expires_early_are_fetched_again_and_the_run_goes_on(
        cli, s3server, s3, bucket, tmp_path):
    tree = make_tree(tmp_path / "src", {f"f{n:03d}.txt": b"e" * n for n in range(150)})
    with FaultProxy(s3server.port) as proxy:
        proxy.expire_credentials("AKEXPIRING1", after=40)
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--profile",
                     "expiring", "--no-state", "--json", tree,
                     env=credential_profile(tmp_path), timeout=120)
        used = proxy.by_access_key
        refused = proxy.expired_refusals
    assert result.returncode == 0, result.stderr
    assert summary(result)["uploaded"] == 150
    assert refused.get("AKEXPIRING1", 0) >= 1
    assert used.get("AKEXPIRING2", 0) >= 1  # asked again, and went on with the new key
    assert int((tmp_path / "calls").read_text()) >= 2
    stored_like_the_tree(s3, bucket, tree)


def test_keys_refused_again_when_fresh_stop_the_run_once(cli, s3server, s3, bucket, tmp_path):
    tree = make_tree(tmp_path / "src", {f"f{n:02d}.txt": b"f" for n in range(30)})
    with FaultProxy(s3server.port) as proxy:
        proxy.expire_credentials("AKREVOKED", after=5)
        result = cli("--bucket", bucket, "--endpoint-url", proxy.url, "--profile",
                     "expiring", "--no-state", tree,
                     env=credential_profile(tmp_path, "AKREVOKED"), timeout=120)
    assert result.returncode == 2
    assert "the credentials have expired" in result.stderr
    assert "fresh credentials were refused too" in result.stderr
    assert "s3cr3t-never-shown" not in result.stderr + result.stdout


# -- the pure parts ---------------------------------------------------------------------------

def test_retries_mean_what_the_option_says_with_seconds_of_backoff_at_the_top():
    waits = []
    policy = RetryPolicy(6, sleep=waits.append, uniform=lambda low, high: high)
    attempts = []

    def always_throttled():
        attempts.append(1)
        raise TransientError("SlowDown: slow down", kind="throttled", throttle=True)

    throttles = []
    policy.on_throttle = lambda: throttles.append(1)
    with pytest.raises(TransientError, match=r"slow down \(gave up after 6 retries\)"):
        policy.call(always_throttled)
    assert len(attempts) == 7 and len(throttles) == 7
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]  # the caps of full jitter
    assert policy.retried == {"throttled": 6}
    capped = RetryPolicy(10, sleep=waits.append)
    assert max(capped.wait(n) for n in range(10) for _ in range(50)) <= 20.0


def test_the_policy_does_not_retry_what_cannot_pass_and_refreshes_expired_keys_once():
    policy = RetryPolicy(5, sleep=lambda seconds: None)
    with pytest.raises(ValueError):
        policy.call(lambda: (_ for _ in ()).throw(ValueError("a defect")))
    refreshed = []
    policy.refresh = lambda since: refreshed.append(since) or True
    answers = iter([CredentialsExpired("the credentials have expired"), "ok"])

    def once_expired():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert policy.call(once_expired) == "ok" and len(refreshed) == 1
    with pytest.raises(ConfigError, match="fresh credentials were refused too"):
        policy.call(lambda: (_ for _ in ()).throw(CredentialsExpired("expired")))


@pytest.mark.parametrize("pages, fault", [
    ([Page([("a", 1, "e", "")], "t1", True), Page([("b", 1, "e", "")], "t1", True)],
     "repeats its continuation token"),
    ([Page([("a", 1, "e", "")], "", True)], "gives no continuation token"),
    ([Page([], f"t{n}", True) for n in range(MAX_PAGES_WITHOUT_PROGRESS + 1)],
     "pages in a row that add no key"),
])
def test_the_listing_guard_names_the_stores_fault(pages, fault):
    guard = ListingGuard("avatar/")
    with pytest.raises(ListingBroken, match=fault):
        for page in pages:
            guard.next_token(page)


def test_the_listing_guard_follows_a_listing_that_ends():
    guard = ListingGuard("")
    assert guard.next_token(Page([("a", 1, "e", "")], "t1", True)) == "t1"
    assert guard.next_token(Page([], "t2", True, prefixes=3)) == "t2"  # folders: progress
    assert guard.next_token(Page([("b", 1, "e", "")], "", False)) == ""


@pytest.mark.parametrize("status, code, kind", [
    (400, "BadDigest", "damaged in transit"),
    (400, "InvalidDigest", "damaged in transit"),
    (400, "XAmzContentSHA256Mismatch", "damaged in transit"),
    (503, "SlowDown", "throttled"),
    (429, "TooManyRequests", "throttled"),
    (500, "InternalError", "500"),
])
def test_answers_that_may_pass_are_transient(status, code, kind):
    error = from_answer(status, code, "m", op="put", bucket="b", key="k")
    assert isinstance(error, TransientError) and error.kind == kind
    assert error.throttle == (kind == "throttled")


def test_a_store_that_does_not_implement_something_is_answered_at_once():
    error = from_answer(501, "NotImplemented", "m", op="put", bucket="b")
    assert not isinstance(error, TransientError) and error.status == 501


def test_expired_keys_are_their_own_kind_and_bad_keys_are_fatal():
    assert isinstance(from_answer(400, "ExpiredToken", "m", op="put", bucket="b"),
                      CredentialsExpired)
    assert isinstance(from_answer(403, "InvalidAccessKeyId", "m", op="put", bucket="b"),
                      ConfigError)


# -- keys that are hard to carry, on two stores that decode listings differently -------------

HARD_NAMES = ["plus+sign.txt", "pct%20.txt", "pct%2B.txt", "a space.txt", "q?.txt",
              "hash#.txt", "amp&.txt", "eq=.txt", "quote'.txt", 'dq".txt', "tilde~.txt",
              "bang!.txt", "star*.txt", "paren().txt", "comma,.txt", "semi;.txt", "at@.txt",
              "dollar$.txt", "-leading.txt", "trailing ", "smile\U0001F600.txt",
              "tab\t.txt", "dir with space/x+y.txt"]


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's S3 in server mode, on a free loopback port (its own decoding of
    ``EncodingType=url`` listings; s3pput's putters reach it over HTTP like any store)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


@pytest.mark.parametrize("store", ["seaweedfs", "moto"])
def test_hard_keys_are_stored_exactly_and_skipped_by_a_rerun(cli, s3server, bucket, tmp_path,
                                                            store, request):
    from conftest import make_s3_client

    endpoint = s3server.endpoint if store == "seaweedfs" else \
        request.getfixturevalue("moto_endpoint")
    client = make_s3_client(endpoint)
    if store == "moto":
        client.create_bucket(Bucket=bucket)
    tree = make_tree(tmp_path / "src", {name: name.encode("utf-8") for name in HARD_NAMES})
    args = ["--bucket", bucket, "--endpoint-url", endpoint, "--prefix", "hard", "--json"]
    first = cli(*args, tree)
    assert first.returncode == 0, first.stderr
    assert summary(first)["uploaded"] == len(HARD_NAMES)
    stored = keys_of(client, bucket, "hard/")
    assert set(stored) == {f"hard/{name}" for name in HARD_NAMES}
    for name in HARD_NAMES:
        assert body_of(client, bucket, f"hard/{name}") == name.encode("utf-8")
    again = cli(*args, "--no-state", tree)  # no journal: the listing alone must find them
    assert again.returncode == 0, again.stderr
    assert summary(again)["skipped_reasons"] == {"unchanged": len(HARD_NAMES)}
