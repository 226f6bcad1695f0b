"""The lean path: signed like botocore signs, stored like boto3 stores, every refusal of
the store the typed error it means, and ``Unsupported`` (before anything is sent) for a
request it cannot say, which then goes to boto3."""

from __future__ import annotations

import datetime
import hashlib
import os
from unittest import mock

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import pytest
from configs import from_keywords
from conftest import ACCESS_KEY, SECRET_KEY, body_of, make_s3_client

from s3pput.errors import ConfigError, FileError, S3pputError, TransientError
from s3pput.store.lean import Credentials, LeanPath, Route, Signer, Unsupported

CREDENTIALS = botocore.credentials.ReadOnlyCredentials("AKIDEXAMPLE", "secret/example", None)


@pytest.mark.parametrize("path, extra", [
    ("/bucket/plain.txt", {}),
    ("/bucket/a%20b/%23x%2By%3F%25z%E2%82%AC.txt", {"x-amz-meta-owner": "me"}),
    ("/bucket/k", {"cache-control": "max-age=60", "x-amz-acl": "public-read"}),
])
def test_signature_is_the_one_botocore_computes(path, extra):
    stamp = "20261121T101010Z"
    headers = {"host": "127.0.0.1:9000", "content-length": "3",
               "content-md5": "rL0Y20zC+Fzt72VPzMSk2A==", "content-type": "text/plain", **extra}
    ours = dict(headers)
    Signer("us-east-1").sign("PUT", path, ours, CREDENTIALS, stamp=stamp)

    request = botocore.awsrequest.AWSRequest(
        method="PUT", url=f"http://127.0.0.1:9000{path}", data=b"foo", headers=headers)
    # what s3pput's clients say: no payload signing (the body has its Content-MD5)
    request.context["client_config"] = botocore.config.Config(
        s3={"payload_signing_enabled": False})
    pinned = datetime.datetime(2026, 11, 21, 10, 10, 10)
    with mock.patch("botocore.auth.get_current_datetime", return_value=pinned):
        botocore.auth.S3SigV4Auth(CREDENTIALS, "s3", "us-east-1").add_auth(request)
    assert request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert ours["authorization"] == request.headers["Authorization"]


def lean_path(client, bucket: str, access_key=ACCESS_KEY, secret_key=SECRET_KEY) -> LeanPath:
    """The lean path beside CLIENT, as the store makes it: its route from a URL the client
    presigns; the credentials given."""
    url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "K"})
    credentials = Credentials(access_key, secret_key)
    return LeanPath(Route.from_url(url, client.meta.region_name), lambda: credentials, 10,
                    True, bucket)


@pytest.fixture
def fast(s3server, bucket):
    return lean_path(make_s3_client(s3server.endpoint), bucket)


@pytest.mark.parametrize("key", ["plain.txt", "dir/with space/#hash+plus?q%pct",
                                 "unicode/caf\u00e9-\u6f22\u5b57-\U0001F600.txt", "empty"])
def test_put_stores_the_bytes_under_the_key(fast, s3, bucket, key):
    data = b"" if key == "empty" else key.encode() * 50
    md5 = hashlib.md5(data).digest()
    etag = fast.put(key, data, md5, {"ContentType": "text/plain",
                                     "CacheControl": "max-age=60",
                                     "Metadata": {"owner": "me"}})
    assert etag == md5.hex()
    assert body_of(s3, bucket, key) == data
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "text/plain"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"owner": "me"}


def test_many_puts_reuse_one_connection(fast, s3, bucket):
    for n in range(20):
        data = b"x" * n
        assert fast.put(f"many/{n}", data, hashlib.md5(data).digest(), {})
    assert len(s3.list_objects_v2(Bucket=bucket, Prefix="many/")["Contents"]) == 20
    assert fast.local.conn is not None  # still open, for the next request


def test_parts_of_a_multipart_upload_go_up_on_the_lean_path(fast, s3, bucket):
    """An UploadPart is a PUT with ``partNumber`` and ``uploadId`` in its (signed) query:
    the parts' ETags complete the upload into the object boto3 reads back."""
    key = "parts/with space+plus"
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    chunks = [os.urandom(5 * 1024 * 1024), b"tail"]
    etags = []
    for number, data in enumerate(chunks, 1):
        md5 = hashlib.md5(data).digest()
        etag = fast.put(key, data, md5, {}, query={"partNumber": str(number),
                                                   "uploadId": upload})
        assert etag == md5.hex()
        etags.append(etag)
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": f'"{e}"'} for n, e in enumerate(etags, 1)]})
    assert body_of(s3, bucket, key) == b"".join(chunks)
    whole = hashlib.md5(b"".join(bytes.fromhex(e) for e in etags)).hexdigest()
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"') == f"{whole}-2"


def test_a_wrong_md5_is_refused_as_damage_in_transit_and_nothing_is_stored(fast, s3, bucket):
    with pytest.raises(TransientError) as refused:
        fast.put("bad-md5", b"data", hashlib.md5(b"other").digest(), {})
    assert refused.value.kind == "damaged in transit" and refused.value.code == "BadDigest"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="bad-md5")


def test_what_it_cannot_say_is_unsupported_and_nothing_is_sent(fast, s3, bucket):
    data = b"d"
    md5 = hashlib.md5(data).digest()
    for params in ({"Expires": "Wed, 21 Oct 2026 07:28:00 GMT"},
                   {"ContentDisposition": "attachment;  x"}, {"Metadata": {"who": "\u00e9"}}):
        with pytest.raises(Unsupported):
            fast.put("k", data, md5, params)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="k")


def test_an_error_answer_is_typed_and_the_connection_is_still_usable(s3server, s3, bucket):
    client = make_s3_client(s3server.endpoint)
    with pytest.raises(S3pputError) as refused:  # SeaweedFS: AccessDenied; AWS: NoSuchBucket
        lean_path(client, "no-such-bucket-here").put("k", b"d", hashlib.md5(b"d").digest(), {})
    assert refused.value.status in (403, 404)
    assert lean_path(client, bucket).put("k", b"d", hashlib.md5(b"d").digest(), {})


def test_wrong_credentials_are_fatal(authserver):
    client = make_s3_client(authserver.endpoint, "AK", "wrong-secret")
    with pytest.raises(ConfigError, match="bad credentials"):
        lean_path(client, "auth-bucket", "AK", "wrong-secret").put("k", b"d", hashlib.md5(b"d").digest(), {})


ODD_KEYS = ["plain.txt", "a b/c d.txt", "x+y=z&w.txt", "pct%41.txt", "q?#.txt",
            "caf\u00e9/\u6f22\u5b57.txt", "lt<gt>amp&.txt", "dir/sub/deep.txt", "dir.txt"]


def test_listing_pages_are_what_boto3_lists(fast, s3, bucket):
    for n, key in enumerate(ODD_KEYS):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * n)
    for n in range(7):
        s3.put_object(Bucket=bucket, Key=f"many/{n:02d}", Body=b"m" * n)
    expected = {item["Key"]: (item["Size"], item["ETag"].strip('"'), item["StorageClass"])
                for item in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    # page by page, 3 keys a page, following the continuation tokens
    got, token, pages = {}, "", 0
    while True:
        items, token, truncated, _ = fast.list_page("", token, max_keys=3)
        assert truncated == bool(token)
        pages += 1
        got.update((key, (size, etag, storage_class))
                   for key, size, etag, storage_class in items)
        if not token:
            break
    assert got == expected and len(got) == len(ODD_KEYS) + 7
    assert pages >= 5
    # a prefix and a delimiter: only the direct objects of dir/
    page = fast.list_page("dir/", delimiter="/")
    assert page.items == [] and page.token == "" and not page.truncated
    page = fast.list_page("many/", delimiter="/")
    assert sorted(item[0] for item in page.items) == [f"many/{n:02d}" for n in range(7)]


def test_listing_of_a_missing_bucket_is_fatal(s3server):
    client = make_s3_client(s3server.endpoint)
    with pytest.raises(ConfigError, match="does not exist"):
        lean_path(client, "no-such-bucket-here").list_page("")


def test_head_get_delete_and_a_multipart_upload_on_the_lean_path(fast, s3, bucket):
    assert fast.head("absent") is None and fast.get("absent") is None
    fast.delete("absent")  # no error
    upload = fast.create_multipart("big", {"ContentType": "application/x-big"})
    chunks = [os.urandom(5 * 1024 * 1024), b"end"]
    parts = []
    for number, data in enumerate(chunks, 1):
        md5 = hashlib.md5(data).digest()
        parts.append((number, fast.put("big", data, md5, {}, {"partNumber": str(number),
                                                              "uploadId": upload})))
    etag = fast.complete_multipart("big", upload, parts)
    assert etag == s3.head_object(Bucket=bucket, Key="big")["ETag"].strip('"')
    assert etag.endswith("-2") and body_of(s3, bucket, "big") == b"".join(chunks)
    found = fast.head("big")
    assert (found.size, found.etag) == (len(b"".join(chunks)), etag)
    assert found.headers["content-type"] == "application/x-big"
    assert fast.get("big") == (b"".join(chunks), etag)
    aborted = fast.create_multipart("never", {})
    fast.abort_multipart("never", aborted)
    fast.delete("big")
    assert fast.head("big") is None
    with pytest.raises(FileError):
        fast.complete_multipart("never", aborted, [(1, '"0"')])


# -- starting lean, without a client --------------------------------------------------------

@pytest.mark.parametrize("endpoint, bucket, region", [
    ("http://127.0.0.1:9000", "bkt", "us-east-1"),
    ("https://fra1.digitaloceanspaces.com", "my-space", "fra1"),
    ("http://minio.local:9000", "bkt.with.dots", "eu-central-1"),
    ("https://s3.example.com/", "b-c", "us-west-2"),
])
def test_lean_route_is_the_route_botocore_presigns(endpoint, bucket, region):
    from s3pput.store import lean_start

    cfg = from_keywords(["."], bucket=bucket, endpoint_url=endpoint, region=region)
    route, _ = lean_start(cfg, {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b").client(
        "s3", endpoint_url=endpoint, region_name=region)
    assert route == lean_path(client, bucket).route


@pytest.mark.parametrize("environ, spaces, profile, expected", [
    ({"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk"}, None, None, ("ak", "sk", None)),
    ({"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk", "AWS_SESSION_TOKEN": "tk"},
     None, None, ("ak", "sk", "tk")),
    ({"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk", "AWS_PROFILE": "other"},
     None, None, ("ak", "sk", None)),  # env keys beat AWS_PROFILE in botocore's chain
    ({}, ("dk", "ds"), None, ("dk", "ds", None)),  # SPACES_* keys, passed to the session
])
def test_lean_credentials_are_the_ones_botocore_resolves(tmp_path, monkeypatch, environ,
                                                         spaces, profile, expected):
    """For the same environment, the lean start's key pair is botocore's own answer."""
    from s3pput.store import lean_start

    config_file = tmp_path / "config"
    config_file.write_text("[profile other]\nregion = us-east-1\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_CREDENTIAL_EXPIRATION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    access, secret = spaces or (None, None)
    keys = {"SPACES_ACCESS_KEY": access, "SPACES_SECRET_KEY": secret} if spaces else {}
    cfg = from_keywords(["."], environ={**environ, **keys}, bucket="bkt",
                        endpoint_url="http://127.0.0.1:9", region="us-east-1", profile=profile)
    _, ours = lean_start(cfg, dict(environ))
    theirs = boto3.session.Session(aws_access_key_id=access, aws_secret_access_key=secret,
                                   profile_name=profile).get_credentials()
    assert tuple(ours) == tuple(theirs.get_frozen_credentials())[:3] == expected


def test_no_lean_start_where_botocore_must_decide():
    from s3pput.store import lean_start

    keys = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    base = dict(bucket="bkt", endpoint_url="http://127.0.0.1:9", region="us-east-1")

    def config(**options):
        return from_keywords(["."], **{**base, **options})

    assert lean_start(config(), keys) is not None
    assert lean_start(config(endpoint_url=None), keys) is None  # AWS rules
    assert lean_start(config(region=None), keys) is None  # a profile's region
    assert lean_start(config(profile="p"), keys) is None  # a profile's keys
    assert lean_start(config(), {}) is None  # the rest of botocore's chain
    assert lean_start(config(endpoint_url="http://h:9/base/path"), keys) is None


def test_a_lean_store_puts_and_lists_without_ever_making_a_client(s3server, s3, bucket):
    from s3pput.store import make_store

    cfg = from_keywords(["."], environ={"SPACES_ACCESS_KEY": "k", "SPACES_SECRET_KEY": "s"},
                        bucket=bucket, endpoint_url=s3server.endpoint, region="us-east-1")
    store = make_store(cfg)
    assert store.check_bucket("").can_list
    assert store.put("lean.txt", b"lean", {"ContentType": "text/plain"}) == \
        hashlib.md5(b"lean").hexdigest()
    assert [o.key for o in store.list_objects("")] == ["lean.txt"]
    assert store.clients._client is None  # botocore never needed
    assert body_of(s3, bucket, "lean.txt") == b"lean"
