"""Functional tests of the real ``s3pput`` command against a real local S3 server.

Each test is named after the command line it runs; every result is checked with an
independent boto3 client (``s3``): keys, bytes, ETags, Content-Type, Content-Encoding,
headers and metadata.

What the local server (SeaweedFS) can and cannot show, found by asking it:

* canned ACLs: accepted on PUT and ignored (``get_object_acl`` always answers the owner's
  FULL_CONTROL, anonymous reads are not opened up), so ``--grant`` is checked on the wire,
  through a recording proxy, as the ``x-amz-acl`` header of every write;
* ``--sse AES256`` and ``--storage-class`` are kept and reported by HEAD (single and
  multipart); ``--sse aws:kms`` is answered with a 500 InternalError, so it is not tested.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Tuple

import boto3.s3.transfer
import pytest
from conftest import (
    AUTH_KEY,
    AUTH_SECRET,
    ROOT,
    body_of,
    cli_env,
    keys_of,
    make_s3_client,
    make_tree,
)

from s3pput.digest import digest_bytes

MiB = 1024 * 1024


# -- helpers -------------------------------------------------------------------------------

def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def big(size: int, seed: int = 0) -> bytes:
    """SIZE bytes of test data, different for each call (a random block in each 65 KiB)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    noise = os.urandom(1024)
    data = (noise + block) * (size // (len(noise) + len(block)) + 1)
    return data[:size]


def summary_of(result) -> dict:
    """The one JSON object a ``--json`` run prints on stdout."""
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    summary = json.loads(lines[0])
    assert isinstance(summary, dict)
    return summary


def counts(summary: dict) -> Tuple[int, int, int, int]:
    return summary["walked"], summary["uploaded"], summary["skipped"], summary["failed"]


def head(s3, bucket: str, key: str) -> dict:
    return s3.head_object(Bucket=bucket, Key=key)


def etag(s3, bucket: str, key: str) -> str:
    return head(s3, bucket, key)["ETag"].strip('"')


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def run_clean(args, *, cwd: Path, env: Dict[str, str], timeout: float = 120):
    """Run the CLI with exactly ENV (plus PATH/PYTHONPATH/HOME): no AWS_* variables."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
            "HOME": str(cwd), "LANG": os.environ.get("LANG", "C.UTF-8"), **env}
    command = [sys.executable, "-m", "s3pput", "--no-progress", "--processes", "2",
               *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src"
    path.mkdir()
    return path


SMALL_TREE = {
    "a.txt": b"alpha\n",
    "d/b.txt": b"bravo\n" * 10,
    "d/e/c.bin": bytes(range(256)),
    "d/empty": b"",
}
SMALL_BYTES = sum(map(len, SMALL_TREE.values()))


# -- a tree, keys, prefixes, output --------------------------------------------------------

def test_s3pput_bucket_prefix_avatar_tree_then_again_with_json_then_quiet(cli, s3, bucket,
                                                                         src):
    make_tree(src, SMALL_TREE)
    first = ok(cli("--bucket", bucket, "--prefix", "avatar", src))
    found = keys_of(s3, bucket)
    assert set(found) == {"avatar/" + rel for rel in SMALL_TREE}
    for rel, data in SMALL_TREE.items():
        key = "avatar/" + rel
        assert body_of(s3, bucket, key) == data
        assert found[key]["ETag"].strip('"') == md5(data)
        assert found[key]["Size"] == len(data)
    assert head(s3, bucket, "avatar/a.txt")["ContentType"].startswith("text/plain")
    plain = head(s3, bucket, "avatar/d/e/c.bin")
    assert plain["ContentType"] == "application/octet-stream"
    assert "ContentEncoding" not in plain and "ServerSideEncryption" not in plain
    assert plain.get("StorageClass", "STANDARD") == "STANDARD"
    assert plain["Metadata"] == {}
    assert head(s3, bucket, "avatar/d/empty")["ContentLength"] == 0
    # progress-free output: the human summary, and nothing else, on stdout
    assert re.fullmatch(r"put 4 files, \S+ \S+ in [\d.]+ s \(.*/s, [\d.,]+ files/s\), "
                        r"0 skipped, 0 failed\n", first.stdout), first.stdout

    again = ok(cli("--bucket", bucket, "--prefix", "avatar", "--json", "-v", src))
    summary = json.loads(again.stdout)  # stdout is the JSON object and nothing else
    assert again.stdout.count("\n") == 1
    for name in ("walked", "uploaded", "skipped", "failed", "bytes", "seconds", "dry_run"):
        assert name in summary
    assert counts(summary) == (4, 0, 4, 0)
    assert summary["walked"] == summary["uploaded"] + summary["skipped"] + summary["failed"]
    assert summary["skipped_reasons"] == {"unchanged": 4}
    assert summary["bytes"] == 0 and summary["dry_run"] is False
    assert isinstance(summary["seconds"], (int, float)) and summary["seconds"] >= 0
    # -v lists every outcome on stderr instead
    assert again.stderr.count(" (unchanged)") == 4, again.stderr

    (src / "new.txt").write_bytes(b"new")
    quiet = ok(cli("--bucket", bucket, "--prefix", "avatar", "-q", src))
    assert quiet.stdout == "" and quiet.stderr == ""
    assert body_of(s3, bucket, "avatar/new.txt") == b"new"


def test_s3pput_json_counts_bytes(cli, s3, bucket, src):
    make_tree(src, SMALL_TREE)
    summary = summary_of(ok(cli("--bucket", bucket, "--json", src)))
    assert counts(summary) == (4, 4, 0, 0)
    assert summary["bytes"] == SMALL_BYTES
    assert set(keys_of(s3, bucket)) == set(SMALL_TREE)  # no prefix: the relative paths


def test_s3pput_prefix_with_extra_slashes_is_normalised(cli, s3, bucket, src):
    make_tree(src, SMALL_TREE)
    ok(cli("--bucket", bucket, "--prefix", "/a//b/", f"{src}/"))
    found = set(keys_of(s3, bucket))
    assert found == {"a/b/" + rel for rel in SMALL_TREE}
    assert not any(key.startswith("/") or "//" in key for key in found)


def test_s3pput_single_file_source(cli, s3, bucket, src):
    make_tree(src, SMALL_TREE)
    ok(cli("--bucket", bucket, "--prefix", "one", src / "d" / "b.txt"))
    assert set(keys_of(s3, bucket)) == {"one/b.txt"}
    assert body_of(s3, bucket, "one/b.txt") == SMALL_TREE["d/b.txt"]
    # a named file is looked up with HEAD: unchanged on the second run
    again = summary_of(ok(cli("--bucket", bucket, "--prefix", "one", "--json",
                              src / "d" / "b.txt")))
    assert counts(again) == (1, 0, 1, 0)
    assert again["skipped_reasons"] == {"unchanged": 1}


ODD_NAMES = {
    "with space.txt": b"1",
    "hash#1.txt": b"2",
    "100%.txt": b"3",
    "a+b.txt": b"4",
    "what?.txt": b"5",
    "caf\u00e9.txt": b"6",
    "\u65e5\u672c\u8a9e.txt": b"7",
    "smile\U0001F600.txt": b"8",
    "dir with space/x=y&z.txt": b"9",
    "semi;colon,comma's.txt": b"10",
}


def test_s3pput_names_with_spaces_hash_percent_plus_question_unicode(cli, s3, bucket, src):
    make_tree(src, ODD_NAMES)
    latin1 = os.fsencode(src) + b"/caf\xe9.bin"  # not valid UTF-8
    with open(latin1, "wb") as handle:
        handle.write(b"latin-1 name")
    first = summary_of(ok(cli("--bucket", bucket, "--prefix", "odd", "--json", src)))
    assert counts(first) == (11, 11, 0, 0)
    expected = {"odd/" + rel: data for rel, data in ODD_NAMES.items()}
    expected["odd/caf%E9.bin"] = b"latin-1 name"
    assert set(keys_of(s3, bucket)) == set(expected)
    for key, data in expected.items():
        assert body_of(s3, bucket, key) == data
    # the second run finds every one of them in the listing: nothing is put again
    again = summary_of(ok(cli("--bucket", bucket, "--prefix", "odd", "--json", src)))
    assert counts(again) == (11, 0, 11, 0)


def test_s3pput_put_add_file_next_to_a_directory_of_the_same_name(cli, s3, bucket, src):
    # S3 lists "photos-old" < "photos.txt" < "photos/1.jpg" (byte order); SeaweedFS lists
    # the directory first. Present keys must be found whatever order the store lists in.
    make_tree(src, {"photos.txt": b"index v1", "photos/1.jpg": b"1", "photos-old": b"o"})
    for key in ("photos.txt", "photos/1.jpg", "photos-old"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"edited remotely")
    result = summary_of(ok(cli("--bucket", bucket, "--put", "add", "--json", src)))
    for key in ("photos.txt", "photos/1.jpg", "photos-old"):
        assert body_of(s3, bucket, key) == b"edited remotely", key
    assert counts(result) == (3, 0, 3, 0)


def test_s3pput_dry_run_with_a_non_utf8_name_and_strict_stdout(cli, s3, bucket, src):
    # A user's terminal: UTF-8 with strict errors (not the C locale's surrogateescape).
    with open(os.fsencode(src) + b"/caf\xe9.bin", "wb") as handle:
        handle.write(b"x")
    make_tree(src, {"plain.txt": b"y"})
    result = cli("--bucket", bucket, "--dry-run", src, env={"PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 0, result.stderr
    assert "-> s3://%s/caf%%E9.bin (new)" % bucket in result.stdout
    assert "would put 2 files" in result.stdout
    assert keys_of(s3, bucket) == {}


# -- dry run -------------------------------------------------------------------------------

def test_s3pput_dry_run_writes_nothing(cli, s3, bucket, src):
    make_tree(src, SMALL_TREE)
    result = ok(cli("--bucket", bucket, "--prefix", "p", "--dry-run", src))
    assert keys_of(s3, bucket) == {}
    plan = [line for line in result.stdout.splitlines() if line.startswith("would upload")]
    assert sorted(plan) == sorted(f"would upload {src / rel} -> s3://{bucket}/p/{rel} (new)"
                                  for rel in SMALL_TREE)
    assert re.search(r"^would put 4 files, .*, 0 skipped, 0 failed", result.stdout, re.M)


def test_s3pput_dry_run_json_then_real_run_report_the_same_counts(cli, s3, bucket, src):
    make_tree(src, {"same.txt": b"same", "changed.txt": b"local", "new.txt": b"new",
                    "new2.txt": b"new2"})
    s3.put_object(Bucket=bucket, Key="same.txt", Body=b"same")
    s3.put_object(Bucket=bucket, Key="changed.txt", Body=b"REMOTE")  # other size
    before = {key: item["ETag"] for key, item in keys_of(s3, bucket).items()}

    dry = cli("--bucket", bucket, "--dry-run", "--json", src)
    planned = summary_of(ok(dry))
    assert {key: item["ETag"] for key, item in keys_of(s3, bucket).items()} == before
    assert planned["dry_run"] is True
    assert counts(planned) == (4, 3, 1, 0)
    # with --json the plan goes to stderr, one line per file that would be put
    plan = sorted(line for line in dry.stderr.splitlines() if line.startswith("would upload"))
    assert plan == sorted([
        f"would upload {src / 'changed.txt'} -> s3://{bucket}/changed.txt (changed)",
        f"would upload {src / 'new.txt'} -> s3://{bucket}/new.txt (new)",
        f"would upload {src / 'new2.txt'} -> s3://{bucket}/new2.txt (new)",
    ])

    real = summary_of(ok(cli("--bucket", bucket, "--json", src)))
    assert real["dry_run"] is False
    assert counts(real) == counts(planned)
    assert real["skipped_reasons"] == planned["skipped_reasons"] == {"unchanged": 1}
    assert body_of(s3, bucket, "changed.txt") == b"local"
    assert body_of(s3, bucket, "new2.txt") == b"new2"


def test_s3pput_dry_run_put_stupid_says_forced(cli, s3, bucket, src):
    make_tree(src, {"x.txt": b"x", "y.txt": b"y"})
    s3.put_object(Bucket=bucket, Key="x.txt", Body=b"x")
    result = cli("--bucket", bucket, "--dry-run", "--put", "stupid", "--json", src)
    assert counts(summary_of(ok(result))) == (2, 2, 0, 0)
    assert sorted(line for line in result.stderr.splitlines()
                  if line.startswith("would upload")) == [
        f"would upload {src / 'x.txt'} -> s3://{bucket}/x.txt (forced)",
        f"would upload {src / 'y.txt'} -> s3://{bucket}/y.txt (forced)"]
    assert set(keys_of(s3, bucket)) == {"x.txt"}


# -- --limit -------------------------------------------------------------------------------

def test_s3pput_limit_2(cli, s3, bucket, src):
    make_tree(src, {f"f{n}.txt": b"%d" % n for n in range(6)})
    first = summary_of(ok(cli("--bucket", bucket, "--limit", "2", "--json", src)))
    assert first["uploaded"] == 2
    assert len(keys_of(s3, bucket)) == 2
    # update: the two present files are skipped as unchanged and do not use up the limit
    second = summary_of(ok(cli("--bucket", bucket, "--limit", "2", "--json", src)))
    assert second["uploaded"] == 2
    assert second["skipped_reasons"].get("unchanged") == 2
    assert second["walked"] == second["uploaded"] + second["skipped"] + second["failed"]
    found = keys_of(s3, bucket)
    assert len(found) == 4
    for key in found:
        assert body_of(s3, bucket, key) == (src / key).read_bytes()


# -- put modes -----------------------------------------------------------------------------

def test_s3pput_put_add(cli, s3, bucket, src):
    make_tree(src, {"old.txt": b"second version", "same.txt": b"s", "new.txt": b"new"})
    s3.put_object(Bucket=bucket, Key="old.txt", Body=b"first")
    s3.put_object(Bucket=bucket, Key="same.txt", Body=b"s")
    result = summary_of(ok(cli("--bucket", bucket, "--put", "add", "--json", src)))
    assert counts(result) == (3, 1, 2, 0)
    assert result["skipped_reasons"] == {"exists": 2}
    assert body_of(s3, bucket, "old.txt") == b"first"  # present: never overwritten
    assert body_of(s3, bucket, "new.txt") == b"new"


def test_s3pput_put_stupid(cli, s3, bucket, src):
    make_tree(src, {"a.txt": b"local a", "b.txt": b"local b"})
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"tampered")  # other bytes, other size
    s3.put_object(Bucket=bucket, Key="b.txt", Body=b"local b")  # the same bytes
    result = summary_of(ok(cli("--bucket", bucket, "--put", "stupid", "--json", src)))
    assert counts(result) == (2, 2, 0, 0)
    assert body_of(s3, bucket, "a.txt") == b"local a"
    assert body_of(s3, bucket, "b.txt") == b"local b"


def test_s3pput_put_update_small_and_multipart(cli, s3, bucket, src):
    big_data = big(9 * MiB, seed=1)
    make_tree(src, {"same.txt": b"same", "changed.txt": b"version 1", "big.bin": big_data})
    first = summary_of(ok(cli("--bucket", bucket, "--put", "update", "--json", src)))
    assert counts(first) == (3, 3, 0, 0)
    # 9 MiB goes up in two 8 MiB parts, and the ETag is the one S3 computes for that
    assert etag(s3, bucket, "big.bin") == \
        digest_bytes(big_data, 8 * MiB).etag(multipart=True)
    assert etag(s3, bucket, "big.bin").endswith("-2")
    assert body_of(s3, bucket, "big.bin") == big_data

    (src / "changed.txt").write_bytes(b"version 2")  # same size: only the content differs
    (src / "new.txt").write_bytes(b"new")
    second = summary_of(ok(cli("--bucket", bucket, "--put", "update", "--json", src)))
    assert counts(second) == (4, 2, 2, 0)
    assert second["skipped_reasons"] == {"unchanged": 2}  # same.txt and big.bin
    assert body_of(s3, bucket, "changed.txt") == b"version 2"
    assert body_of(s3, bucket, "new.txt") == b"new"

    changed_big = bytearray(big_data)
    changed_big[5 * MiB] ^= 0xFF  # same size, one byte in the first part differs
    (src / "big.bin").write_bytes(bytes(changed_big))
    third = summary_of(ok(cli("--bucket", bucket, "--json", src)))  # update is the default
    assert counts(third) == (4, 1, 3, 0)
    assert body_of(s3, bucket, "big.bin") == bytes(changed_big)
    assert etag(s3, bucket, "big.bin") == \
        digest_bytes(bytes(changed_big), 8 * MiB).etag(multipart=True)


def test_s3pput_put_update_recognises_an_object_put_in_5_mib_parts(cli, s3, bucket, src):
    data = big(9 * MiB, seed=2)
    make_tree(src, {"big.bin": data})
    five = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB,
                                            multipart_chunksize=5 * MiB)
    s3.upload_file(str(src / "big.bin"), bucket, "big.bin", Config=five)
    remote = etag(s3, bucket, "big.bin")
    assert remote == digest_bytes(data, 5 * MiB).etag(multipart=True)
    assert remote != digest_bytes(data, 8 * MiB).etag(multipart=True)
    result = summary_of(ok(cli("--bucket", bucket, "--json", src)))
    assert counts(result) == (1, 0, 1, 0)
    assert result["skipped_reasons"] == {"unchanged": 1}
    assert etag(s3, bucket, "big.bin") == remote


# -- gzip ----------------------------------------------------------------------------------

def test_s3pput_gzip(cli, s3, bucket, src):
    html = b"<html><body>" + b"<p>hello gzip</p>" * 2000 + b"</body></html>"
    text = b"line of a big text file\n" * (9 * MiB // 24 + 1)  # > 8 MiB: multipart
    jpg, blob = os.urandom(3000), os.urandom(2000)
    already = gzip.compress(b"compressed already\n" * 100)
    make_tree(src, {"index.html": html, "big.txt": text, "photo.jpg": jpg,
                    "blob.bin": blob, "old.txt.gz": already})
    ok(cli("--bucket", bucket, "--gzip", src))
    for key, data, ctype in (("index.html", html, "text/html"),
                             ("big.txt", text, "text/plain")):
        stored = body_of(s3, bucket, key)
        assert stored[:2] == b"\x1f\x8b"
        assert len(stored) < len(data)
        assert gzip.decompress(stored) == data
        info = head(s3, bucket, key)
        assert info["ContentEncoding"] == "gzip"
        assert info["ContentType"].startswith(ctype)
    # the default --gzip-type guess leaves images, binaries and gzip files alone
    for key, data, ctype in (("photo.jpg", jpg, "image/jpeg"),
                             ("blob.bin", blob, "application/octet-stream"),
                             ("old.txt.gz", already, "application/gzip")):
        assert body_of(s3, bucket, key) == data
        info = head(s3, bucket, key)
        assert "ContentEncoding" not in info
        assert info["ContentType"] == ctype

    again = summary_of(ok(cli("--bucket", bucket, "--put", "update", "--gzip", "--json",
                              src)))
    assert counts(again) == (5, 0, 5, 0)
    assert again["skipped_reasons"] == {"unchanged": 5}

    (src / "index.html").write_bytes(html.replace(b"hello", b"HELLO"))
    third = summary_of(ok(cli("--bucket", bucket, "--gzip", "--json", src)))
    assert counts(third) == (5, 1, 4, 0)
    assert gzip.decompress(body_of(s3, bucket, "index.html")) == \
        html.replace(b"hello", b"HELLO")


def test_s3pput_gzip_gzip_type_all(cli, s3, bucket, src):
    jpg, blob = os.urandom(3000), b"\0" * 5000
    make_tree(src, {"photo.jpg": jpg, "blob.bin": blob, "a.txt": b"text " * 100})
    ok(cli("--bucket", bucket, "--gzip", "--gzip-type", "all", src))
    for key, data in (("photo.jpg", jpg), ("blob.bin", blob), ("a.txt", b"text " * 100)):
        assert gzip.decompress(body_of(s3, bucket, key)) == data
        assert head(s3, bucket, key)["ContentEncoding"] == "gzip"
    assert head(s3, bucket, "photo.jpg")["ContentType"] == "image/jpeg"


# -- include / exclude ---------------------------------------------------------------------

def test_s3pput_exclude_all_include_jpg_exclude_tmp_exclude_base_name(cli, s3, bucket, src):
    make_tree(src, {"a.jpg": b"1", "b.png": b"2", "tmp/c.jpg": b"3", "d/e.jpg": b"4",
                    "d/f.txt": b"5", "x.tmp": b"6", "d/deeper/drop.jpg": b"7"})
    result = ok(cli("--bucket", bucket, "--exclude", "*", "--include", "*.jpg",
                    "--exclude", "tmp/*", "--exclude", "drop.jpg", "--json", src))
    assert set(keys_of(s3, bucket)) == {"a.jpg", "d/e.jpg"}
    # excluded files are not walked files: the counts are of the two JPEGs
    assert counts(summary_of(result)) == (2, 2, 0, 0)


# -- content types -------------------------------------------------------------------------

def png_bytes() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 128, 255)).save(out, "PNG")
    return out.getvalue()


def test_s3pput_content_type_magic_and_fixed(cli, s3, bucket, src):
    # --content-type guess (the default) is checked by the other tests
    make_tree(src, {"page.html": b"<html></html>", "avatar": png_bytes(), "blob": b"\0\1"})
    ok(cli("--bucket", bucket, "--prefix", "magic", "--content-type", "magic", src))
    ok(cli("--bucket", bucket, "--prefix", "fixed", "--content-type", "text/x-fixed", src))

    def ctype(key):
        return head(s3, bucket, key)["ContentType"]

    assert ctype("magic/avatar") == "image/png"  # no extension: libmagic reads the bytes
    assert ctype("magic/page.html") == "text/html"
    assert ctype("magic/blob") == "application/octet-stream"
    assert {ctype(f"fixed/{name}") for name in ("page.html", "avatar", "blob")} == \
        {"text/x-fixed"}
    assert body_of(s3, bucket, "magic/avatar") == png_bytes()


# -- headers, ACL, encryption, storage class -----------------------------------------------

def test_s3pput_header_cache_control_content_disposition_meta(cli, s3, bucket, src):
    make_tree(src, {"r.txt": b"report", "big.bin": big(6 * MiB)})
    ok(cli("--bucket", bucket, "--header", "Cache-Control: max-age=60",
           "--header", 'Content-Disposition: attachment; filename="report.txt"',
           "--header", "x-amz-meta-owner: me", "--header", "Content-Language: fr",
           "--multipart-threshold", "5", "--part-size", "5", src))
    for key in ("r.txt", "big.bin"):  # a single PUT and a multipart upload
        info = head(s3, bucket, key)
        assert info["CacheControl"] == "max-age=60"
        assert info["ContentDisposition"] == 'attachment; filename="report.txt"'
        assert info["ContentLanguage"] == "fr"
        assert info["Metadata"] == {"owner": "me"}
    assert etag(s3, bucket, "big.bin").endswith("-2")  # 5 MiB + 1 MiB


class _Recorder(BaseHTTPRequestHandler):
    """Forwards each request to the server unchanged, recording its method, path and
    headers (SigV4 signs the Host header, which is passed on as it came)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _relay(self):
        length = int(self.headers.get("Content-Length") or 0)
        assert "chunked" not in self.headers.get("Transfer-Encoding", "")
        body = self.rfile.read(length) if length else None
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() != "expect"}
        self.server.seen.append((self.command, self.path,
                                 {name.lower(): value for name, value in headers.items()}))
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.target_port,
                                              timeout=30)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() in ("transfer-encoding", "connection", "content-length"):
                    continue
                self.send_header(name, value)
            if self.command == "HEAD":
                self.send_header("Content-Length", answer.getheader("Content-Length", "0"))
                self.end_headers()
            else:
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay


@pytest.fixture
def recorder(s3server):
    port = int(s3server.endpoint.rsplit(":", 1)[1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    server.seen = []
    server.target_port = port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_s3pput_grant_public_read(cli, s3, bucket, src, recorder):
    # SeaweedFS accepts and ignores canned ACLs (get_object_acl shows only the owner's
    # FULL_CONTROL whatever was asked), so what can be verified is what reaches the
    # server: every write carries x-amz-acl: public-read.
    make_tree(src, {"a.txt": b"a", "d/b.txt": b"b", "big.bin": big(6 * MiB)})
    endpoint = f"http://127.0.0.1:{recorder.server_address[1]}"
    ok(cli("--bucket", bucket, "--grant", "public-read", "--endpoint-url", endpoint,
           "--multipart-threshold", "5", "--part-size", "5", src))
    assert set(keys_of(s3, bucket)) == {"a.txt", "d/b.txt", "big.bin"}
    assert body_of(s3, bucket, "d/b.txt") == b"b"
    single = [(path, headers) for method, path, headers in recorder.seen
              if method == "PUT" and "uploadId=" not in path]
    created = [(path, headers) for method, path, headers in recorder.seen
               if method == "POST" and "uploads" in path.partition("?")[2]]
    assert sorted(path.partition("?")[0].split("/", 2)[2] for path, _ in single) == \
        ["a.txt", "d/b.txt"]
    assert len(created) == 1 and "big.bin" in created[0][0]
    for path, headers in single + created:
        assert headers.get("x-amz-acl") == "public-read", (path, headers)


def test_s3pput_sse_aes256_storage_class_standard_ia(cli, s3, bucket, src):
    make_tree(src, {"a.txt": b"secret", "big.bin": big(6 * MiB)})
    ok(cli("--bucket", bucket, "--sse", "AES256", "--storage-class", "STANDARD_IA",
           "--multipart-threshold", "5", "--part-size", "5", src))
    for key in ("a.txt", "big.bin"):  # a single PUT and a multipart upload
        info = head(s3, bucket, key)
        assert info["ServerSideEncryption"] == "AES256"
        assert info["StorageClass"] == "STANDARD_IA"
    assert body_of(s3, bucket, "a.txt") == b"secret"
    assert keys_of(s3, bucket)["big.bin"]["StorageClass"] == "STANDARD_IA"


# -- tar archives --------------------------------------------------------------------------

def make_tar(path: Path, members: Dict[str, bytes], mode: str) -> Path:
    with tarfile.open(path, mode) as archive:
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_600_000_000
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("suffix, mode", [(".tar", "w"), (".tar.gz", "w:gz")])
def test_s3pput_tar_source_with_a_member_over_8_mib(cli, s3, bucket, tmp_path, suffix, mode):
    data = big(9 * MiB, seed=3)
    members = {"a.txt": b"alpha", "./d/b.txt": b"bravo" * 100, "d/big.bin": data,
               "d/e/z.txt": b"after the big one"}
    archive = make_tar(tmp_path / f"photos{suffix}", members, mode)
    state = tmp_path / "state.sqlite"
    first = summary_of(ok(cli("--bucket", bucket, "--prefix", "backup", "--json",
                              "--state", state, archive)))
    assert counts(first) == (4, 4, 0, 0)
    expected = {"backup/a.txt": b"alpha", "backup/d/b.txt": b"bravo" * 100,
                "backup/d/big.bin": data, "backup/d/e/z.txt": b"after the big one"}
    assert set(keys_of(s3, bucket)) == set(expected)  # the archive's name is not in the keys
    for key, content in expected.items():
        assert body_of(s3, bucket, key) == content
    assert etag(s3, bucket, "backup/d/big.bin") == \
        digest_bytes(data, 8 * MiB).etag(multipart=True)
    assert head(s3, bucket, "backup/a.txt")["ContentType"].startswith("text/plain")
    # the journal records each member with its own mtime (a large member of a compressed
    # archive is spooled to a file of this run's: not that file's), so it vouches for
    # every member next time: nothing is read again
    with sqlite3.connect(state) as journal:
        recorded = dict(journal.execute("SELECT key, mtime_ns FROM objects"))
    assert recorded == {key: 1_600_000_000 * 10**9 for key in expected}
    again = summary_of(ok(cli("--bucket", bucket, "--prefix", "backup", "--json",
                              "--state", state, archive)))
    assert counts(again) == (4, 0, 4, 0)
    assert again["skipped_reasons"] == {"unchanged": 4}


# -- log file ------------------------------------------------------------------------------

def test_s3pput_log_file(cli, s3, bucket, src, tmp_path):
    make_tree(src, {"a.txt": b"a", "b.txt": b"b"})
    s3.put_object(Bucket=bucket, Key="b.txt", Body=b"b")
    log = tmp_path / "run.log"
    log.write_text("earlier line\n")
    ok(cli("--bucket", bucket, "--log-file", log, src))
    text = log.read_text()
    assert text.startswith("earlier line\n")  # appended to, not overwritten
    assert f"uploaded {src / 'a.txt'} -> s3://{bucket}/a.txt (new)" in text
    assert f"skipped {src / 'b.txt'} -> s3://{bucket}/b.txt (unchanged)" in text
    assert re.search(r"put 1 file, .*, 1 skipped, 0 failed", text)


# -- special files and links ---------------------------------------------------------------

def test_s3pput_skips_fifo_and_symlinks_by_default(cli, s3, bucket, src):
    make_tree(src, {"real.txt": b"real", "dir/inner.txt": b"inner"})
    os.mkfifo(src / "pipe")
    os.symlink(src / "real.txt", src / "link.txt")
    os.symlink(src / "dir", src / "dirlink")
    result = ok(cli("--bucket", bucket, "--json", "-v", src))
    summary = summary_of(result)
    assert set(keys_of(s3, bucket)) == {"real.txt", "dir/inner.txt"}
    assert counts(summary) == (5, 2, 3, 0)
    assert re.search(r"skipped .*pipe .*FIFO", result.stderr)
    assert re.search(r"skipped .*link\.txt .*symbolic link", result.stderr)
    assert re.search(r"skipped .*dirlink .*symbolic link", result.stderr)


def test_s3pput_follow_symlinks(cli, s3, bucket, src):
    make_tree(src, {"real.txt": b"real", "dir/inner.txt": b"inner"})
    os.symlink(src / "real.txt", src / "link.txt")
    os.symlink(src / "dir", src / "dirlink")
    os.symlink(src, src / "dir" / "loop")  # back to the top: not followed forever
    result = ok(cli("--bucket", bucket, "--follow-symlinks", "--json", src))
    assert set(keys_of(s3, bucket)) == {"real.txt", "link.txt", "dir/inner.txt",
                                        "dirlink/inner.txt"}
    assert body_of(s3, bucket, "link.txt") == b"real"
    assert body_of(s3, bucket, "dirlink/inner.txt") == b"inner"
    summary = summary_of(result)
    assert summary["uploaded"] == 4 and summary["failed"] == 0


# -- exit codes ----------------------------------------------------------------------------

def test_s3pput_follow_symlinks_broken_link_and_too_long_key_exit_1(cli, s3, bucket, src,
                                                                      tmp_path):
    # Tests may run as root, where chmod 000 does not stop reading: a link to nothing
    # (followed) and a key over S3's 1,024 bytes fail for anyone.
    deep = "/".join(["d" * 250] * 5) + "/f.txt"  # a valid path, a 1,260-byte key
    make_tree(src, {"good.txt": b"good", deep: b"too deep"})
    os.symlink(tmp_path / "nowhere", src / "dangling.txt")
    log = tmp_path / "fail.log"
    result = cli("--bucket", bucket, "--follow-symlinks", "--json", "--log-file", log, src)
    assert result.returncode == 1, result.stderr
    summary = summary_of(result)
    assert counts(summary) == (3, 1, 0, 2)
    assert sorted(failure["path"] for failure in summary["failures"]) == \
        sorted([str(src / "dangling.txt"), str(src / deep)])
    assert re.search(r"failed .*dangling\.txt .*broken symbolic link", result.stderr)
    assert re.search(r"failed .*/f\.txt .*1,?024", result.stderr)
    assert "dangling.txt" in log.read_text()
    assert set(keys_of(s3, bucket)) == {"good.txt"}


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_s3pput_bucket_nosuchbucket123_exit_2(cli, src, json_flag):
    make_tree(src, SMALL_TREE)
    result = cli("--bucket", "nosuchbucket123", *json_flag, src)
    assert result.returncode == 2
    assert "nosuchbucket123" in result.stderr and "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    if json_flag:
        summary = summary_of(result)
        assert "does not exist" in summary["error"] and "does not exist" in summary["fatal"]
        assert (summary["walked"], summary["uploaded"], summary["failed"]) == (0, 0, 0)
    else:
        assert result.stdout == ""


def test_s3pput_without_bucket_exit_2(cli, src):
    make_tree(src, SMALL_TREE)
    result = cli(src)
    assert result.returncode == 2
    assert "no bucket" in result.stderr


def test_s3pput_missing_source_exit_2(cli, bucket, s3, tmp_path):
    result = cli("--bucket", bucket, tmp_path / "does-not-exist")
    assert result.returncode == 2
    assert "does-not-exist" in result.stderr and "does not exist" in result.stderr
    assert keys_of(s3, bucket) == {}


@pytest.mark.parametrize("option", [
    ["--put", "sometimes"],
    ["--processes", "0"],
    ["--limit", "many"],
    ["--grant", "everyone-can-write"],
    ["--header", "X-Unknown: 1"],
    ["--part-size", "1"],
])
def test_s3pput_bad_option_value_exit_2(cli, bucket, s3, src, option):
    make_tree(src, SMALL_TREE)
    result = cli("--bucket", bucket, *option, src)
    assert result.returncode == 2, result.stderr
    assert "error" in result.stderr and option[0] in result.stderr
    assert keys_of(s3, bucket) == {}


# -- credentials ---------------------------------------------------------------------------

@pytest.fixture
def auth_bucket(request, authserver):
    client = make_s3_client(authserver.endpoint, AUTH_KEY, AUTH_SECRET)
    name = "auth-" + re.sub(r"[^a-z0-9]", "-", request.node.name.lower())[-40:].strip("-")
    client.create_bucket(Bucket=name)
    return client, name


@pytest.mark.parametrize("access_key, secret_key", [
    (AUTH_KEY, "wrong-secret"),
    ("AKUNKNOWN", "whatever"),
])
def test_s3pput_bad_credentials_exit_2_with_one_message(cli, src, authserver, auth_bucket,
                                                        access_key, secret_key):
    client, bucket = auth_bucket
    make_tree(src, {f"f{n}.txt": b"x" for n in range(10)})
    result = cli("--bucket", bucket, "--endpoint-url", authserver.endpoint, src,
                 env={"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "credentials" in lines[0]
    assert "f0.txt" not in result.stderr
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_s3pput_reads_spaces_settings_from_dotenv(src, tmp_path, authserver, auth_bucket):
    client, bucket = auth_bucket
    make_tree(src, SMALL_TREE)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / ".env").write_text(
        f"# DigitalOcean names\n"
        f"SPACES_ACCESS_KEY={AUTH_KEY}\n"
        f"export SPACES_SECRET_KEY=\"{AUTH_SECRET}\"\n"
        f"SPACES_BUCKET={bucket}\n"
        f"SPACES_REGION=us-east-1\n"
        f"SPACES_ENDPOINT={authserver.endpoint}\n")
    result = run_clean(["--prefix", "env", "--json", src], cwd=workdir, env={})
    assert result.returncode == 0, result.stderr
    assert counts(summary_of(result)) == (4, 4, 0, 0)
    listed = {item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {"env/" + rel for rel in SMALL_TREE}
    # and the secret really matters: a wrong one in .env is one fatal error
    (workdir / ".env").write_text(
        f"SPACES_ACCESS_KEY={AUTH_KEY}\nSPACES_SECRET_KEY=wrong\nSPACES_BUCKET={bucket}\n"
        f"SPACES_REGION=us-east-1\nSPACES_ENDPOINT={authserver.endpoint}\n")
    result = run_clean(["--prefix", "env2", src], cwd=workdir, env={})
    assert result.returncode == 2
    assert "credentials" in result.stderr


def test_s3pput_command_line_bucket_beats_dotenv(cli, s3, bucket, src, tmp_path):
    make_tree(src, {"a.txt": b"a"})
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / ".env").write_text("SPACES_BUCKET=nosuchbucket123\n")
    ok(cli("--bucket", bucket, src, cwd=workdir))
    assert set(keys_of(s3, bucket)) == {"a.txt"}
    # and without --bucket the .env bucket is the one used (and it does not exist)
    result = cli(src, cwd=workdir)
    assert result.returncode == 2 and "nosuchbucket123" in result.stderr


def closed_early(cli, *args, lines: int) -> Tuple[int, str]:
    """Run the CLI with ARGS, its stdout read for LINES lines and then closed (as
    ``s3pput ... | head`` does); return (exit code, stderr)."""
    env = cli_env(cli.endpoint)
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.Popen([sys.executable, "-m", "s3pput", "--no-progress", *map(str, args)],
                               cwd=cli.cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    for _ in range(lines):
        process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read().decode()
    return process.wait(timeout=120), stderr


def test_s3pput_piped_into_head_drops_the_rest_and_the_run_goes_on(cli, s3, bucket, src):
    files = {f"f{n:03d}.txt": b"%d" % n for n in range(300)}
    make_tree(src, files)
    code, stderr = closed_early(cli, "--bucket", bucket, "--dry-run", src, lines=2)
    assert (code, stderr) == (0, "")  # no traceback, no "defect"
    code, stderr = closed_early(cli, "--bucket", bucket, "--json", src, lines=0)
    assert code == 1  # what --json promises could not be delivered
    assert stderr.strip() == "s3pput: the JSON summary could not be written: stdout was closed"
    assert set(keys_of(s3, bucket)) == set(files)  # every upload was made all the same
