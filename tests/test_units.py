"""Unit tests of the pure modules: keys, filters, plan, digest, content, config.

No server, no subprocess: each test is a use of one function, with the expected value
worked out independently (hashlib, gzip, the truth table written in ``plan``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os

import pytest
from configs import from_argv

from s3pput import content, decide, digest, filters, headers, keys
from s3pput.errors import FileError, UsageError
from s3pput.filters import EXCLUDE, INCLUDE, Rule
from s3pput.jobs import UNLISTED, Job, JournalEntry, RemoteObject, Source

MiB = 1024 * 1024


# -- keys ----------------------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    ("", ""),
    ("a", "a"),
    ("/a//b/", "a/b"),
    ("///", ""),
    ("avatar/", "avatar"),
    ("/x/y/z", "x/y/z"),
    ("a/...b/c", "a/...b/c"),  # "..." and "...b" are names, not "." or ".."
])
def test_normalize_prefix(given, expected):
    assert keys.normalize_prefix(given) == expected


@pytest.mark.parametrize("given", ["a/../b", "./a", "a/.", ".."])
def test_normalize_prefix_rejects_dot_segments(given):
    with pytest.raises(UsageError, match="segment"):
        keys.normalize_prefix(given)


def test_encode_name_keeps_valid_names_exactly():
    for name in ("plain.txt", "with space #1 %20 +?.txt", "caf\u00e9.jpg", "cafe\u0301.jpg",
                 "\u65e5\u672c.png", "\U0001F600.gif"):
        assert keys.encode_name(name) == name
    # NFC and NFD spellings stay distinct keys.
    assert keys.encode_name("caf\u00e9") != keys.encode_name("cafe\u0301")


def test_encode_name_percent_encodes_undecodable_bytes():
    # What os.listdir gives for a Latin-1 name on a UTF-8 system.
    latin1 = os.fsdecode(b"caf\xe9.jpg")
    assert keys.encode_name(latin1) == "caf%E9.jpg"
    mixed = os.fsdecode(b"\xff\xfe-d\xc3\xa9j\xc3\xa0-\x80.txt")  # valid UTF-8 in between
    assert keys.encode_name(mixed) == "%FF%FE-d\u00e9j\u00e0-%80.txt"
    encoded = keys.encode_name(os.fsdecode(b"x\xe9\xe9y"))
    assert encoded == "x%E9%E9y"
    encoded.encode("utf-8")  # a valid key: does not raise


@pytest.mark.parametrize("prefix, parts, expected", [
    ("", ["a.txt"], "a.txt"),
    ("", ["d", "e", "f.txt"], "d/e/f.txt"),
    ("p", ["a.txt"], "p/a.txt"),
    ("p/q", ["d", "a.txt"], "p/q/d/a.txt"),
    ("p", ["", "d", "", "a.txt"], "p/d/a.txt"),
])
def test_join_key(prefix, parts, expected):
    assert keys.join_key(prefix, parts) == expected


@pytest.mark.parametrize("raw_prefix", ["", "/", "a", "/a//b/", "//a///b//c//"])
@pytest.mark.parametrize("parts", [["x"], ["d", "x"], ["", "d", "", "x"]])
def test_join_key_with_normalized_prefix_never_gives_leading_or_double_slash(raw_prefix,
                                                                               parts):
    key = keys.join_key(keys.normalize_prefix(raw_prefix), parts)
    assert not key.startswith("/")
    assert "//" not in key
    assert key.endswith("x")
    assert keys.check_key(key) == key


def test_check_key_length_limit_is_in_utf8_bytes():
    assert keys.check_key("a" * 1024) == "a" * 1024
    with pytest.raises(FileError, match="1025 bytes"):
        keys.check_key("a" * 1025, path="/some/file")
    # 512 two-byte characters are 1,024 bytes; one more is too long.
    assert keys.check_key("\u00e9" * 512)
    with pytest.raises(FileError, match="1026 bytes") as caught:
        keys.check_key("\u00e9" * 513, path="/some/file")
    assert caught.value.path == "/some/file"


@pytest.mark.parametrize("bad", ["", "/a", "a//b", "a/./b", "a/../b", "..", "a/."])
def test_check_key_rejects_invalid_keys(bad):
    with pytest.raises(FileError):
        keys.check_key(bad)


def test_image_keys_use_the_same_name_in_every_folder():
    assert keys.image_keys("p", ["d"], 7, "JPG", ["original", "thumbnail"]) == \
        ["p/d/original/7.jpg", "p/d/thumbnail/7.jpg"]
    assert keys.image_keys("", [], 3, "", ["original"]) == ["original/3"]


# -- filters -------------------------------------------------------------------------------

def inc(pattern):
    return Rule(INCLUDE, pattern)


def exc(pattern):
    return Rule(EXCLUDE, pattern)


def test_no_rules_takes_everything():
    assert filters.excluded_by((), "a/b/c.txt") is None


def test_exclude_all_then_include_jpg_takes_only_jpgs():
    rules = (exc("*"), inc("*.jpg"))
    assert filters.excluded_by(rules, "a.jpg") is None
    assert filters.excluded_by(rules, "deep/dir/b.jpg") is None
    assert filters.excluded_by(rules, "a.png") == "--exclude '*'"
    assert filters.excluded_by(rules, "deep/a.jpg.txt") == "--exclude '*'"


def test_last_matching_rule_wins():
    # include then exclude: the exclude wins for what both match
    rules = (inc("*.jpg"), exc("tmp/*"))
    assert filters.excluded_by(rules, "tmp/a.jpg") == "--exclude 'tmp/*'"
    assert filters.excluded_by(rules, "keep/a.jpg") is None
    assert filters.excluded_by(rules, "other.txt") is None  # included by default
    # the same rules the other way round: the include wins for JPEGs under tmp/
    rules = (exc("tmp/*"), inc("*.jpg"))
    assert filters.excluded_by(rules, "tmp/a.jpg") is None
    assert filters.excluded_by(rules, "tmp/a.txt") == "--exclude 'tmp/*'"


def test_a_rule_that_does_not_match_does_not_decide():
    rules = (exc("*.tmp"), inc("*.jpg"))
    assert filters.excluded_by(rules, "x.tmp") == "--exclude '*.tmp'"


def test_patterns_without_slash_also_match_the_base_name():
    assert filters.excluded_by((exc("c.tmp"),), "a/b/c.tmp") == "--exclude 'c.tmp'"
    assert filters.excluded_by((exc("?.tmp"),), "a/b/c.tmp") == "--exclude '?.tmp'"
    # with a slash the pattern is anchored to the relative path
    assert filters.excluded_by((exc("b/c.tmp"),), "a/b/c.tmp") is None
    assert filters.excluded_by((exc("a/b/*.tmp"),), "a/b/c.tmp") == "--exclude 'a/b/*.tmp'"
    # "*" crosses "/"
    assert filters.excluded_by((exc("a/*.tmp"),), "a/b/c.tmp") == "--exclude 'a/*.tmp'"


def test_matching_is_case_sensitive():
    assert filters.excluded_by((exc("*.JPG"),), "a.jpg") is None
    assert filters.excluded_by((exc("*.[jJ][pP][gG]"),), "a.JPG") is not None


# -- decide --------------------------------------------------------------------------------

SIZE, MTIME = 100, 1_700_000_000_000_000_000
SAME_ETAG = "0" * 32


def remote(size=SIZE, etag=SAME_ETAG):
    return RemoteObject("k", size, etag)


def job(remote_object=UNLISTED, journal=None) -> Job:
    return Job(1, "f", "k", Source("file", "f"), SIZE, MTIME, remote_object, journal)


def rules(mode, *, size_comparable=True, asks=headers.NOTHING):
    return decide.Rules(mode, size_comparable, asks, None)


def verdict(mode, found, same_content=None, *, journal=None, size_comparable=True):
    """The verdict with what a listing (FOUND) and the journal tell, and the comparison of
    the content when it was made (SAME_CONTENT)."""
    return decide.decide(rules(mode, size_comparable=size_comparable), job(found, journal),
                         decide.Evidence(found, journal, same_content))


def as_a_putter_does(mode, present, same_content, *, size_comparable=True):
    """Decide, gathering the evidence the verdict asks for until it is a verdict."""
    found = remote() if present else None
    evidence = decide.Evidence(UNLISTED)
    while True:
        got = decide.decide(rules(mode, size_comparable=size_comparable), job(), evidence)
        if got.action == decide.LOOKUP:
            evidence = evidence._replace(remote=found)
        elif got.action == decide.COMPARE:
            evidence = evidence._replace(same_content=same_content)
        else:
            return got.action, got.reason


# The table of decide's docstring, cell by cell: (mode, state) -> verdict.
TABLE = {
    ("add", "absent"): ("put", "new"),
    ("add", "same"): ("skip", "exists"),
    ("add", "other"): ("skip", "exists"),
    ("stupid", "absent"): ("put", "forced"),
    ("stupid", "same"): ("put", "forced"),
    ("stupid", "other"): ("put", "forced"),
    ("update", "absent"): ("put", "new"),
    ("update", "same"): ("skip", "unchanged"),
    ("update", "other"): ("put", "changed"),
}


@pytest.mark.parametrize("mode, state", sorted(TABLE))
@pytest.mark.parametrize("size_comparable", [True, False])
def test_put_mode_truth_table(mode, state, size_comparable):
    got = as_a_putter_does(mode, state != "absent", state == "same",
                           size_comparable=size_comparable)
    assert got == TABLE[(mode, state)]


def test_modes_and_reasons_are_the_documented_names():
    assert decide.PUT_MODES == ("add", "stupid", "update")
    assert (decide.NEW, decide.CHANGED, decide.FORCED) == ("new", "changed", "forced")


def test_stupid_and_add_never_ask_for_content():
    for found in (None, remote(), UNLISTED):
        assert verdict("stupid", found) == ("put", "forced", "")
    assert verdict("add", remote(size=1)) == ("skip", "exists", "")
    assert verdict("add", UNLISTED).action == decide.LOOKUP


def test_update_size_shortcut_only_when_sizes_are_comparable():
    other_size = remote(size=SIZE + 1)
    assert verdict("update", other_size) == ("put", "changed", "")
    # gzip: the stored size is the compressed size; only the content can tell
    assert verdict("update", other_size, size_comparable=False).action == decide.COMPARE
    assert verdict("update", remote()).action == decide.COMPARE


def test_update_journal_shortcut():
    journal = JournalEntry(SIZE, MTIME, "m" * 32, SAME_ETAG)
    assert verdict("update", remote(), journal=journal)[:2] == ("skip", "unchanged")
    # anything that differs from the journal means the content must be compared
    for stale in (journal._replace(size=SIZE - 1), journal._replace(mtime_ns=MTIME + 1),
                  journal._replace(etag="f" * 32)):
        assert verdict("update", remote(), journal=stale).action == decide.COMPARE
    # the journal never overrides an absent key or a size change
    assert verdict("update", None, journal=journal)[:2] == ("put", "new")
    assert verdict("update", remote(size=SIZE + 5), journal=journal)[:2] == ("put", "changed")


# -- digest --------------------------------------------------------------------------------

def md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def aws_multipart_etag(data: bytes, part_size: int) -> str:
    """The S3 multipart ETag, written out independently of ``digest``."""
    parts = [data[i:i + part_size] for i in range(0, len(data), part_size)]
    return hashlib.md5(b"".join(md5(p) for p in parts)).hexdigest() + f"-{len(parts)}"


PATTERN = bytes(range(256)) * 37 + b"tail"  # not a multiple of any part size used


@pytest.mark.parametrize("data", [b"", b"x", PATTERN, PATTERN * 5])
@pytest.mark.parametrize("part_size", [1, 7, 1000, len(PATTERN), 10 ** 9])
def test_digest_stream_and_digest_bytes_agree(data, part_size, monkeypatch):
    monkeypatch.setattr(digest, "READ_SIZE", 13)  # reads that straddle part boundaries
    streamed = digest.digest_stream(io.BytesIO(data), part_size)
    whole = digest.digest_bytes(data, part_size)
    assert streamed == whole
    assert whole.size == len(data)
    assert whole.md5 == hashlib.md5(data).hexdigest()
    assert whole.etag(multipart=False) == hashlib.md5(data).hexdigest()
    if data:
        assert whole.etag(multipart=True) == aws_multipart_etag(data, part_size)


def test_multipart_etag_formula():
    a, b = b"a" * 10, b"b" * 3
    assert digest.multipart_etag([md5(a), md5(b)]) == \
        hashlib.md5(md5(a) + md5(b)).hexdigest() + "-2"
    assert digest.digest_bytes(a + b, 10).etag(multipart=True) == aws_multipart_etag(a + b, 10)


@pytest.mark.parametrize("size, parts, expected", [
    (9 * MiB, 2, [5 * MiB, 8 * MiB]),  # 5 MiB (the smallest S3 allows), boto3's 8 MiB
    (9 * MiB, 1, [9 * MiB]),
    (100 * MiB, 20, [5 * MiB]),
    (40 * MiB, 3, [15 * MiB, 16 * MiB, 14 * MiB]),  # s3cmd's 15 MiB parts come first
    (17 * MiB, 3, [8 * MiB, 6 * MiB]),
    (0, 1, [1]),
])
def test_implied_part_sizes(size, parts, expected):
    got = digest.implied_part_sizes(size, parts)
    assert got[:len(expected)] == expected
    for part_size in got:
        assert -(-size // part_size) == parts or parts == 1


def test_etag_matches_remote_put_by_s3cmd_in_15_mib_parts():
    data = (PATTERN * (40 * MiB // len(PATTERN) + 1))[:40 * MiB]
    remote_etag = aws_multipart_etag(data, 15 * MiB)
    ours = digest.digest_bytes(data, 8 * MiB)
    assert digest.etag_matches(remote_etag, ours,
                               lambda part_size: digest.digest_bytes(data, part_size))


def test_etag_matches_single_put():
    data = PATTERN
    ours = digest.digest_bytes(data, 8 * MiB)
    never = lambda size: pytest.fail("no recomputation for a single-PUT ETag")  # noqa: E731
    assert digest.etag_matches(hashlib.md5(data).hexdigest(), ours, never)
    assert digest.etag_matches('"%s"' % hashlib.md5(data).hexdigest(), ours, never)
    assert not digest.etag_matches(hashlib.md5(data + b"!").hexdigest(), ours, never)


def test_etag_matches_remote_put_in_5_mib_parts_when_ours_are_8_mib():
    data = (PATTERN * (9 * MiB // len(PATTERN) + 1))[:9 * MiB]
    remote_etag = aws_multipart_etag(data, 5 * MiB)
    assert remote_etag.endswith("-2")
    ours = digest.digest_bytes(data, 8 * MiB)
    assert ours.etag(multipart=True).endswith("-2")  # same part count, other ETag
    assert ours.etag(multipart=True) != remote_etag
    asked = []

    def redigest(part_size):
        asked.append(part_size)
        return digest.digest_stream(io.BytesIO(data), part_size)

    assert digest.etag_matches(remote_etag, ours, redigest)
    assert asked == [5 * MiB]
    # the same remote ETag does not match other content of the same size
    other = bytearray(data)
    other[-1] ^= 1
    other_digest = digest.digest_bytes(bytes(other), 8 * MiB)
    assert not digest.etag_matches(
        remote_etag, other_digest,
        lambda part_size: digest.digest_bytes(bytes(other), part_size))


def test_etag_matches_our_own_part_size_without_recomputing():
    data = PATTERN * 50
    ours = digest.digest_bytes(data, 1000)
    never = lambda size: pytest.fail("recomputed although our part size matched")  # noqa
    assert digest.etag_matches(aws_multipart_etag(data, 1000), ours, never)
    assert not digest.etag_matches("abc-notanumber", ours, never)


# -- content -------------------------------------------------------------------------------

def png_bytes() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("name, expected", [
    ("index.html", "text/html"),
    ("style.css", "text/css"),
    ("photo.jpg", "image/jpeg"),
    ("photo.JPG", "image/jpeg"),
    ("dir.with.dots/data.json", "application/json"),
    ("README", "application/octet-stream"),
    ("noext", "application/octet-stream"),
])
def test_content_type_guess_by_name(name, expected):
    assert content.content_type(name, png_bytes(), "guess") == expected


def test_content_type_magic_sniffs_only_when_the_name_says_nothing():
    png = png_bytes()
    assert content.content_type("avatar", png, "magic") == "image/png"
    assert content.content_type("avatar", png, "guess") == "application/octet-stream"
    # the name wins over the content
    assert content.content_type("avatar.jpg", png, "magic") == "image/jpeg"
    assert content.content_type("empty", b"", "magic") == "application/octet-stream"


def test_content_type_fixed():
    assert content.content_type("photo.jpg", png_bytes(), "text/x-mine") == "text/x-mine"


@pytest.mark.parametrize("name", ["notes.txt.gz", "site.tar.gz", "drawing.svgz",
                                  "dump.sql.bz2", "data.csv.xz"])
def test_content_type_of_compressed_files_is_not_the_inner_type(name):
    # mimetypes says ("text/plain", "gzip") for notes.txt.gz: the *stored bytes* are gzip.
    # Labelling them text/plain would make --gzip compress them a second time, and a
    # client would show compressed bytes as text.
    ctype = content.content_type(name, b"", "guess")
    assert ctype in ("application/gzip", "application/x-bzip2", "application/x-xz")
    assert not content.should_gzip(ctype, ("guess",))


@pytest.mark.parametrize("ctype, types, expected", [
    ("text/html", ("guess",), True),
    ("text/plain; charset=utf-8", ("guess",), True),
    ("text/x-anything", ("guess",), True),
    ("application/json", ("guess",), True),
    ("image/svg+xml", ("guess",), True),
    ("image/jpeg", ("guess",), False),
    ("application/octet-stream", ("guess",), False),
    ("application/gzip", ("guess",), False),
    ("image/jpeg", ("all",), True),
    ("application/octet-stream", ("all",), True),
    ("image/jpeg", ("image/jpeg",), True),
    ("image/jpeg", ("IMAGE/JPEG",), True),
    ("text/html", ("image/jpeg",), False),
    ("text/html", ("image/jpeg", "guess"), True),
])
def test_should_gzip(ctype, types, expected):
    assert content.should_gzip(ctype, types) is expected


def test_gzip_bytes_is_deterministic_real_gzip():
    data = b"hello gzip " * 1000
    first = content.gzip_bytes(data)
    assert first == content.gzip_bytes(data)
    assert gzip.decompress(first) == data
    assert first[:2] == b"\x1f\x8b"
    assert first[4:8] == b"\0\0\0\0"  # no timestamp in the header
    assert len(first) < len(data)
    assert gzip.decompress(content.gzip_bytes(b"")) == b""


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize("read_size", [-1, 1, 100, 1 << 16])
def test_gzip_reader_gives_the_same_bytes_as_gzip_bytes(chunk, read_size):
    data = os.urandom(20_000) + b"compressible " * 5_000
    reader = content.GzipReader(io.BytesIO(data), chunk=chunk)
    out = bytearray()
    while True:
        piece = reader.read(read_size)
        if not piece:
            break
        assert read_size < 0 or len(piece) <= read_size
        out += piece
    assert bytes(out) == content.gzip_bytes(data)
    # and its digest (what update compares) is the digest of gzip_bytes
    again = content.GzipReader(io.BytesIO(data), chunk=chunk)
    assert digest.digest_stream(again, 10_000) == \
        digest.digest_bytes(content.gzip_bytes(data), 10_000)


# -- config --------------------------------------------------------------------------------

def test_parse_headers_maps_names_to_put_parameters_and_metadata():
    params, metadata = headers.parse_headers([
        "Cache-Control: max-age=60",
        "content-disposition:attachment; filename=\"a b.txt\"",
        "Content-Language: fr",
        "Expires: Thu, 01 Dec 2044 16:00:00 GMT",
        "x-amz-meta-owner: me",
        "X-Amz-Meta-Project:  s3pput  ",
        "x-amz-meta-empty:",
    ])
    assert params == (("CacheControl", "max-age=60"),
                      ("ContentDisposition", 'attachment; filename="a b.txt"'),
                      ("ContentLanguage", "fr"),
                      ("Expires", "Thu, 01 Dec 2044 16:00:00 GMT"))
    assert metadata == (("owner", "me"), ("project", "s3pput"), ("empty", ""))
    assert headers.parse_headers(None) == ((), ())


@pytest.mark.parametrize("bad, message", [
    ("Cache-Control max-age=60", "expected NAME:VALUE"),
    (": value", "expected NAME:VALUE"),
    ("X-Unknown: 1", "not supported"),
    ("x-amz-meta-: v", "not supported"),
])
def test_parse_headers_errors(bad, message):
    with pytest.raises(UsageError, match=message):
        headers.parse_headers([bad])


def make(tmp_path, argv, environ=None, dotenv=None):
    """make_config as the CLI calls it, with a .env file in TMP_PATH as the cwd."""
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    return from_argv([*argv, tmp_path], environ=environ, cwd=tmp_path)


DOTENV = """\
SPACES_ACCESS_KEY=dotenv-key
SPACES_SECRET_KEY=dotenv-very-secret
SPACES_BUCKET=dotenv-bucket
SPACES_REGION=ams3
SPACES_ENDPOINT=ams3.digitaloceanspaces.com
SPACES_ACL=public-read
"""


def test_make_config_reads_spaces_names_from_dotenv(tmp_path):
    cfg = make(tmp_path, [], dotenv=DOTENV)
    assert cfg.access_key == "dotenv-key"
    assert cfg.secret_key == "dotenv-very-secret"
    assert cfg.bucket == "dotenv-bucket"
    assert cfg.region == "ams3"
    assert cfg.endpoint_url == "https://ams3.digitaloceanspaces.com"
    assert cfg.acl == "public-read"
    assert cfg.sources == (str(tmp_path),)


def test_make_config_environment_beats_dotenv(tmp_path):
    environ = {"S3PPUT_BUCKET": "env-bucket", "AWS_REGION": "env-region",
               "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "SPACES_ACL": "private"}
    cfg = make(tmp_path, [], environ=environ, dotenv=DOTENV)
    assert cfg.bucket == "env-bucket"
    assert cfg.region == "env-region"
    assert cfg.endpoint_url == "http://127.0.0.1:9"
    assert cfg.acl == "private"
    # SPACES_BUCKET in the environment also beats .env
    assert make(tmp_path, [], environ={"SPACES_BUCKET": "env-spaces"}).bucket == "env-spaces"


def test_make_config_aws_credentials_in_environment_beat_dotenv_keys(tmp_path):
    environ = {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "env-secret"}
    cfg = make(tmp_path, [], environ=environ, dotenv=DOTENV)
    # None: boto3's own chain finds the environment's keys
    assert cfg.access_key is None and cfg.secret_key is None
    assert make(tmp_path, ["--profile", "p"], dotenv=DOTENV).access_key is None


def test_make_config_reads_aws_keys_written_in_dotenv(tmp_path):
    """python-dotenv's file holds them as well as the SPACES_* names: taken, never dropped
    without a word (botocore itself would not read .env)."""
    dotenv = "AWS_ACCESS_KEY_ID=AKDOTENV\nAWS_SECRET_ACCESS_KEY=dotenv-secret\n" \
        "AWS_SESSION_TOKEN=dotenv-token\n"
    cfg = make(tmp_path, ["--bucket", "bkt"], dotenv=dotenv)
    assert (cfg.access_key, cfg.secret_key, cfg.session_token) == \
        ("AKDOTENV", "dotenv-secret", "dotenv-token")
    assert "dotenv-secret" not in repr(cfg) and "dotenv-token" not in repr(cfg)
    # the environment's keys still come first (botocore's chain takes them)
    environ = {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "env-secret"}
    assert make(tmp_path, ["--bucket", "bkt"], environ=environ, dotenv=dotenv).access_key \
        is None
    with pytest.raises(UsageError, match="AWS_ACCESS_KEY_ID in .env is set but "
                                         "AWS_SECRET_ACCESS_KEY is not"):
        make(tmp_path, ["--bucket", "bkt"], dotenv="AWS_ACCESS_KEY_ID=AKHALF\n")


def test_make_config_spaces_keys_in_environment_beat_dotenv(tmp_path):
    environ = {"SPACES_ACCESS_KEY": "env-key", "SPACES_SECRET_KEY": "env-secret"}
    cfg = make(tmp_path, [], environ=environ, dotenv=DOTENV)
    assert (cfg.access_key, cfg.secret_key) == ("env-key", "env-secret")


def test_make_config_command_line_beats_environment_and_dotenv(tmp_path):
    environ = {"S3PPUT_BUCKET": "env-bucket", "AWS_REGION": "env-region",
               "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "SPACES_ACL": "private"}
    cfg = make(tmp_path, ["--bucket", "cli-bucket", "--region", "cli-region",
                          "--endpoint-url", "http://127.0.0.1:8", "--grant",
                          "authenticated-read"], environ=environ, dotenv=DOTENV)
    assert cfg.bucket == "cli-bucket"
    assert cfg.region == "cli-region"
    assert cfg.endpoint_url == "http://127.0.0.1:8"
    assert cfg.acl == "authenticated-read"


def test_make_config_never_shows_the_secret(tmp_path):
    cfg = make(tmp_path, [], dotenv=DOTENV)
    assert cfg.secret_key == "dotenv-very-secret"
    assert "dotenv-very-secret" not in repr(cfg)
    assert "dotenv-very-secret" not in str(cfg)


def test_make_config_options(tmp_path):
    cfg = make(tmp_path, ["--bucket", "bkt", "--prefix", "/a//b/", "--put", "add",
                          "--limit", "0", "--exclude", "*", "--include", "*.jpg",
                          "--header", "Cache-Control: no-cache", "--header",
                          "x-amz-meta-owner: me", "--gzip", "--gzip-type", "image/jpeg",
                          "--part-size", "5", "--no-skip-existing"])
    assert cfg.bucket == "bkt"
    assert keys.normalize_prefix(cfg.prefix) == "a/b"
    assert cfg.put == "stupid"  # --no-skip-existing wins, as in the DigitalOcean script
    assert cfg.limit == 0
    assert cfg.rules == (Rule(EXCLUDE, "*"), Rule(INCLUDE, "*.jpg"))
    assert cfg.put_params == (("CacheControl", "no-cache"),)
    assert cfg.metadata == (("owner", "me"),)
    assert cfg.gzip and cfg.gzip_types == ("image/jpeg",)
    assert cfg.part_size == 5 * MiB


@pytest.mark.parametrize("argv, message", [
    ([], "no bucket"),
    (["--bucket", "ab"], "not a valid bucket"),
    (["--bucket", "bkt", "--grant", "world-writable"], "not a canned ACL"),
    (["--bucket", "bkt", "--prefix", "a/../b"], "segment"),
    (["--bucket", "bkt", "--processes", "0"], "--processes"),
    (["--bucket", "bkt", "--limit", "-1"], "--limit"),
    (["--bucket", "bkt", "--part-size", "4"], "at least 5 MiB"),
    (["--bucket", "bkt", "--header", "Bogus: 1"], "not supported"),
    (["--bucket", "bkt", "-q", "-v"], "contradict"),
])
def test_make_config_rejects_bad_values(tmp_path, argv, message):
    with pytest.raises(UsageError, match=message):
        make(tmp_path, argv)


def test_make_config_rejects_a_missing_source(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        from_argv(["--bucket", "bkt", tmp_path / "nope"], cwd=tmp_path)


# -- sources: reading a member of an uncompressed tar in place -----------------------------

def test_tar_member_window_reads_and_seeks_within_the_member(tmp_path):
    import tarfile

    from s3pput.jobs import Source
    from s3pput.sources import open_source, walk_archive

    payload = bytes(range(256)) * 40
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (("first.txt", b"first"), ("d/member.bin", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    entries = {"/".join(e.parts): e for e in walk_archive(str(archive), str(tmp_path))}
    entry = entries["d/member.bin"]
    assert entry.source.kind == "tar" and entry.size == len(payload)
    window = open_source(Source("tar", str(archive), entry.source.offset), entry.size, "x")
    try:
        assert window.read(10) == payload[:10]
        assert window.tell() == 10
        assert window.read() == payload[10:]
        assert window.read() == b""  # never past the member
        assert window.seek(0) == 0  # a multipart upload reads the member twice
        assert digest.digest_stream(window, 1000) == digest.digest_bytes(payload, 1000)
        window.seek(-6, io.SEEK_END)
        assert window.read() == payload[-6:]
    finally:
        window.close()


def test_listing_index_answers_present_keys_in_any_order_and_absent_ones_after_all(tmp_path):
    from s3pput.jobs import RemoteObject
    from s3pput.run.walker import ListingIndex

    # the order SeaweedFS lists in: a directory's contents before a sibling file
    listed = [RemoteObject(key, n, f"e{n}") for n, key in
              enumerate(["photos/1.jpg", "photos-old", "photos.txt", "z"])]
    pages = []

    def listing():
        for item in listed:
            pages.append(item.key)
            yield item

    for spill_after in (100, 1):  # in memory, and spilled to SQLite
        pages.clear()
        index = ListingIndex(listing(), str(tmp_path / f"index-{spill_after}.sqlite"),
                             spill_after=spill_after)
        assert index.lookup("photos-old") == listed[1]
        assert index.lookup("photos.txt") == listed[2]
        assert index.lookup("photos/1.jpg") == listed[0]
        assert index.lookup("photos/2.jpg") is None  # absent: only after the whole listing
        assert pages == [item.key for item in listed]
        assert index.lookup("z") == listed[3]
        assert (index.db is not None) == (spill_after == 1)
        index.close()


def test_listing_index_raises_the_listing_error_from_a_lookup_that_needs_it(tmp_path):
    from s3pput.jobs import RemoteObject
    from s3pput.run.walker import ListingIndex

    def listing():
        yield RemoteObject("a", 1, "e")
        raise FileError("AccessDenied", op="list")

    index = ListingIndex(listing(), str(tmp_path / "index.sqlite"))
    assert index.lookup("a") == RemoteObject("a", 1, "e")
    with pytest.raises(FileError, match="AccessDenied"):
        index.lookup("b")


def test_read_whole_gives_the_bytes_and_the_stat_from_before_reading(tmp_path, monkeypatch):
    from s3pput import sources

    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    data, info = sources.read_whole(str(path), "f.bin")
    assert (data, info.st_size, info.st_ino) == (b"0123456789", 10, path.stat().st_ino)
    monkeypatch.setattr(sources, "READ_AT_MOST", 3)  # in pieces, as above 1 GiB
    assert sources.read_whole(str(path), "f.bin")[0] == b"0123456789"
    path.write_bytes(b"")
    assert sources.read_whole(str(path), "f.bin")[0] == b""
    with pytest.raises(FileError, match="vanished"):
        sources.read_whole(str(tmp_path / "gone"), "gone")
