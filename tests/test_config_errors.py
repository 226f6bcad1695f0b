"""Every bad configuration gets one line on stderr saying what to fix, and exit code 2.

The table below is a user's worst afternoon: each row is a command line (with its
environment and ``.env``) run by the real CLI against the real local server. Each must
exit 2 with exactly one line on stderr, ``s3pput: error: ...`` naming the culprit, no
traceback, nothing on stdout, and no request that writes: the server's own counters of
PUT/POST/DELETE requests (over every bucket) do not move, and the test's bucket stays
empty. Below the table: reading ``.env`` by python-dotenv's rules, ``--json`` and ``-v``
on a fatal error, and ``main`` catching what nothing else did.
"""

from __future__ import annotations

import os
import shlex
import socket
from typing import Dict, NamedTuple

import pytest
from configs import from_argv
from conftest import keys_of, make_tree
from faultproxy import FaultProxy

from s3pput import cli as s3pput_cli
from s3pput.errors import UsageError

WRITES = ("PUT", "POST", "DELETE")


class Case(NamedTuple):
    command: str  # the arguments, as typed in a shell; {placeholders} filled per test
    expect: str  # what the one line must say
    env: Dict[str, str] = {}
    dotenv: str = ""  # the .env of the working directory


# {bucket}: an empty bucket that exists; {src}: a small tree; {tmp}: a scratch directory
# holding afile (a regular file), fifo, dangling (a link to nothing), bad.tar.gz (not a
# tar), notes.txt (text), garbage.pem (not PEM), aws-config (profile "other" only),
# aws-config-broken (not an ini file); {refused}: a loopback port that refuses
# connections; {work}: the working directory.
B = "--bucket {bucket}"
NO_KEYS = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
CASES = {
    # where to
    "no bucket at all": Case("{src}", "no bucket: give --bucket"),
    "bucket with a space": Case("--bucket 'my bucket' {src}",
                                "'my bucket' (--bucket) is not a valid bucket name"),
    "bucket too short": Case("--bucket ab {src}", "'ab' (--bucket) is not a valid bucket"),
    "bucket with a slash from the environment": Case(
        "{src}", "'a/b' (S3PPUT_BUCKET) is not a valid bucket name",
        env={"S3PPUT_BUCKET": "a/b"}),
    "bucket that does not exist": Case("--bucket nosuchbucket123 {src}",
                                       "bucket 'nosuchbucket123' does not exist"),
    "region with a space": Case(B + " --region 'us east 1' {src}",
                                "region 'us east 1' (--region) is not valid"),
    "region with a space in .env": Case(
        B + " {src}", "region 'fra 1' (SPACES_REGION in .env) is not valid",
        env={"AWS_REGION": ""}, dotenv="SPACES_REGION='fra 1'\n"),
    "endpoint that is not a URL": Case(B + " --endpoint-url 'not a url' {src}",
                                       "endpoint 'not a url' (--endpoint-url) is not a URL"),
    "endpoint with an ftp scheme": Case(B + " --endpoint-url ftp://127.0.0.1/ {src}",
                                        "scheme must be http or https"),
    "endpoint with a port out of range": Case(
        B + " --endpoint-url http://127.0.0.1:99999 {src}",
        "the port is not a number from 1 to 65535"),
    "endpoint that is empty": Case(B + " --endpoint-url '' {src}",
                                   "endpoint '' (--endpoint-url) is not a URL"),
    "endpoint that refuses connections": Case(
        B + " --endpoint-url http://127.0.0.1:{refused} {src}",
        "cannot reach http://127.0.0.1:{refused}: Connection refused"),
    "endpoint whose host does not resolve": Case(
        B + " --endpoint-url http://s3pput-test.invalid:9000 {src}",
        "cannot reach http://s3pput-test.invalid:9000: cannot resolve the host name"),
    # who
    "profile that does not exist": Case(
        B + " --profile nosuchprofile {src}", "profile 'nosuchprofile' not found",
        env={"AWS_CONFIG_FILE": "{tmp}/aws-config"}),
    "profile name that is empty": Case(B + " --profile '' {src}", "--profile needs a"),
    "AWS config file that cannot be parsed": Case(
        B + " --profile other {src}", "cannot read the AWS config",
        env={"AWS_CONFIG_FILE": "{tmp}/aws-config-broken"}),
    "no credentials anywhere": Case(B + " {src}", "no credentials found", env=NO_KEYS),
    "access key without its secret": Case(
        B + " {src}", "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
        env={"AWS_SECRET_ACCESS_KEY": ""}),
    "secret without its access key": Case(
        B + " {src}", "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
        env={"AWS_ACCESS_KEY_ID": ""}),
    "Spaces key without its secret in .env": Case(
        B + " {src}", "SPACES_ACCESS_KEY in .env is set but SPACES_SECRET_KEY is not",
        env=NO_KEYS, dotenv="SPACES_ACCESS_KEY=DO00EXAMPLE\n"),
    # .env
    ".env with an unclosed quote": Case(
        "{src}", ".env line 2 cannot be parsed: check its quotes",
        dotenv="SPACES_REGION=fra1\nSPACES_BUCKET=\"my-space\nSPACES_ACL=private\n"),
    ".env with a space in a name": Case("{src}", ".env line 1 cannot be parsed",
                                        dotenv="SPACES BUCKET=my-space\n"),
    ".env with a bad ACL": Case(B + " {src}", "'public' (SPACES_ACL in .env) is not a canned",
                                dotenv="SPACES_ACL=public # everyone may read\n"),
    # trust
    "CA bundle that does not exist": Case(B + " --ca-bundle {tmp}/nope.pem {src}",
                                          "--ca-bundle '{tmp}/nope.pem' does not exist"),
    "CA bundle that is a directory": Case(B + " --ca-bundle {tmp} {src}",
                                          "--ca-bundle '{tmp}' is not a file"),
    "CA bundle that is not PEM": Case(
        B + " --endpoint-url https://127.0.0.1:{refused} --ca-bundle {tmp}/garbage.pem {src}",
        "cannot use the CA bundle '{tmp}/garbage.pem' (--ca-bundle)"),
    "AWS_CA_BUNDLE that does not exist": Case(
        B + " --endpoint-url https://127.0.0.1:{refused} {src}",
        "cannot use the CA bundle '{tmp}/nope.pem' (AWS_CA_BUNDLE or ca_bundle",
        env={"AWS_CA_BUNDLE": "{tmp}/nope.pem"}),
    "CA bundle and no verification at once": Case(
        B + " --ca-bundle {tmp}/garbage.pem --no-verify-ssl {src}",
        "--ca-bundle and --no-verify-ssl contradict each other"),
    # what
    "SOURCE that does not exist": Case(B + " {tmp}/nothing-here",
                                       "SOURCE '{tmp}/nothing-here' does not exist"),
    "SOURCE that is a FIFO": Case(B + " {tmp}/fifo",
                                  "SOURCE '{tmp}/fifo' is not a directory, a file or a tar"),
    "SOURCE that is a broken link": Case(B + " {tmp}/dangling",
                                         "SOURCE '{tmp}/dangling' is a broken symbolic link"),
    "SOURCE named like a tar that is none": Case(
        B + " {tmp}/bad.tar.gz", "SOURCE '{tmp}/bad.tar.gz' is named like a tar archive"),
    "no SOURCE": Case(B, "the following arguments are required: SOURCE"),
    "an option that does not exist": Case(B + " --frobnicate {src}",
                                          "unrecognized arguments: --frobnicate"),
    "prefix with a dot-dot segment": Case(B + " --prefix a/../b {src}", "segment"),
    "put mode that does not exist": Case(B + " --put sometimes {src}",
                                         "argument --put: invalid choice: 'sometimes'"),
    "checksums mode that does not exist": Case(B + " --checksums maybe {src}",
                                               "argument --checksums: invalid choice"),
    "encryption that does not exist": Case(B + " --sse AES128 {src}",
                                           "argument --sse: invalid choice"),
    "ACL that does not exist": Case(B + " --grant everyone {src}",
                                    "'everyone' (--grant) is not a canned ACL"),
    "header that is not supported": Case(B + " --header 'X-Unknown: 1' {src}",
                                         "--header 'X-Unknown' is not supported"),
    "header without a colon": Case(B + " --header Cache-Control {src}",
                                   "expected NAME:VALUE"),
    "content type that is no type": Case(B + " --content-type html {src}",
                                         "--content-type 'html': use guess, magic, or a"),
    "gzip type that is no type": Case(B + " --gzip --gzip-type css {src}",
                                      "--gzip-type 'css': use guess, all, or a type"),
    "storage class with a space": Case(B + " --storage-class 'standard ia' {src}",
                                       "--storage-class 'standard ia': use a storage class"),
    # numbers
    "zero processes": Case(B + " --processes 0 {src}", "--processes must be > 0, not 0"),
    "a hundred thousand processes": Case(B + " --processes 100000 {src}",
                                         "--processes must be at most 1024"),
    "negative inflight": Case(B + " --inflight -1 {src}", "--inflight must be > 0"),
    "negative retries": Case(B + " --retries -1 {src}", "--retries must be >= 0"),
    "timeout that is not a number": Case(B + " --timeout nan {src}",
                                         "--timeout must be a finite number"),
    "zero timeout": Case(B + " --timeout 0 {src}", "--timeout must be > 0"),
    "infinite rate": Case(B + " --max-rate inf {src}", "--max-rate must be a finite number"),
    "limit that is a word": Case(B + " --limit many {src}",
                                 "argument --limit: invalid int value: 'many'"),
    "negative limit": Case(B + " --limit -1 {src}", "--limit must be >= 0"),
    "parts below S3's minimum": Case(B + " --part-size 4 {src}",
                                     "--part-size must be at least 5 MiB"),
    "parts above S3's maximum": Case(B + " --part-size 6000 {src}",
                                     "--part-size must be at most 5120"),
    "zero multipart threshold": Case(B + " --multipart-threshold 0 {src}",
                                     "--multipart-threshold must be > 0"),
    # where the run writes locally
    "log file in a directory that does not exist": Case(
        B + " --log-file {tmp}/no-dir/run.log {src}",
        "--log-file '{tmp}/no-dir/run.log': the directory '{tmp}/no-dir' does not exist"),
    "log file that is a directory": Case(B + " --log-file {tmp} {src}",
                                         "--log-file '{tmp}' is a directory"),
    "log file under a regular file": Case(B + " --log-file {tmp}/afile/run.log {src}",
                                          "'{tmp}/afile' is not a directory"),
    "log file in a directory nobody may write": Case(
        B + " --log-file /proc/self/s3pput.log {src}", "is not writable"),
    "journal in a directory that does not exist": Case(
        B + " --state {tmp}/no-dir/state.sqlite {src}",
        "--state '{tmp}/no-dir/state.sqlite': the directory '{tmp}/no-dir' does not exist"),
    "journal that is a text file": Case(B + " --state {tmp}/notes.txt {src}",
                                        "--state '{tmp}/notes.txt' is not an s3pput journal"),
    "journal and no journal at once": Case(B + " --state {tmp}/s.sqlite --no-state {src}",
                                           "--state and --no-state contradict each other"),
    "mapping log in a directory that does not exist": Case(
        B + " --images --mapping-log {tmp}/no-dir/map.csv {src}",
        "--mapping-log '{tmp}/no-dir/map.csv': the directory '{tmp}/no-dir' does not"),
    # image mode
    "thumbnail format bmp": Case(B + " --images --thumbnail-format bmp {src}",
                                 "--thumbnail-format: unsupported thumbnail format 'bmp'"),
    "thumbnail quality 0": Case(B + " --images --thumbnail-quality 0 {src}",
                                "--thumbnail-quality must be from 1 to 100, not 0"),
    "thumbnail quality 101": Case(B + " --images --thumbnail-quality 101 {src}",
                                  "--thumbnail-quality must be from 1 to 100, not 101"),
    "two thumbnails of one name": Case(
        B + " --images --thumbnail t=10x10 --thumbnail t=20x20 {src}",
        "--thumbnail 't=20x20': the name 't' is given twice (also t=10x10)"),
    "thumbnail named like the originals": Case(
        B + " --images --thumbnail original=10x10 {src}", "is the folder of the originals"),
    "thumbnail of 20000 pixels": Case(B + " --images --thumbnail big=20000x10 {src}",
                                      "whole numbers from 1 to 10000"),
    "thumbnail without image mode": Case(B + " --thumbnail t=10x10 {src}",
                                         "--thumbnail only applies to image mode: add"),
    "preview of a real run": Case(B + " --images --preview {tmp}/plan.html {src}",
                                  "--preview writes a contact sheet of a --dry-run"),
    # output
    "quiet and verbose at once": Case(B + " -q -v {src}", "--quiet and --verbose contradict"),
}


@pytest.fixture(scope="module")
def refused_port():
    """A loopback port that is bound but never listens: every connection to it is
    refused, for as long as the test holds it (no other program can take it meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def world(tmp_path):
    """The scratch files the table's commands refer to."""
    make_tree(tmp_path / "src", {"a.txt": b"a", "d/b.txt": b"b", "c.jpg": b"not a jpeg"})
    (tmp_path / "work").mkdir()
    (tmp_path / "afile").write_text("a file\n")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    (tmp_path / "bad.tar.gz").write_bytes(b"this is no gzip and no tar\n" * 40)
    (tmp_path / "notes.txt").write_text("my notes, not a journal\n")
    (tmp_path / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnonsense\n")
    (tmp_path / "aws-config").write_text(
        "[profile other]\nregion = us-east-1\naws_access_key_id = k\n"
        "aws_secret_access_key = s\n")
    (tmp_path / "aws-config-broken").write_text("this is [not an ini file\n[profile x\n")
    return tmp_path


def write_requests(proxy: FaultProxy) -> int:
    """PUT/POST/DELETE requests that reached the proxy in front of the server (counted as
    they arrive: no lag, and only this run's)."""
    return sum(proxy.by_method[kind] for kind in WRITES)


@pytest.mark.parametrize("name", list(CASES))
def test_s3pput_bad_configuration_exit_2_one_line(cli, s3server, s3, bucket, world,
                                                  refused_port, name):
    case = CASES[name]
    if name == "log file in a directory nobody may write" and \
            os.access("/proc/self", os.W_OK):
        pytest.skip("/proc/self is writable here")
    fill = {"bucket": bucket, "src": world / "src", "tmp": world, "refused": refused_port,
            "work": world / "work"}
    argv = [part.format(**fill) for part in shlex.split(case.command)]
    if case.dotenv:
        (world / "work" / ".env").write_text(case.dotenv)
    with FaultProxy(s3server.port) as proxy:
        env = {"AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254
               "AWS_ENDPOINT_URL": proxy.url,  # every request the run makes is seen
               **{key: value.format(**fill) for key, value in case.env.items()}}
        result = cli(*argv, env=env, cwd=world / "work")

    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("s3pput: error: "), lines[0]
    assert case.expect.format(**fill) in lines[0], lines[0]
    assert result.stdout == ""
    assert write_requests(proxy) == 0, proxy.by_method
    assert keys_of(s3, bucket) == {}


def test_the_table_holds_at_least_thirty_hostile_configurations():
    assert len(CASES) >= 30


# -- .env by python-dotenv's rules -----------------------------------------------------------

def make(tmp_path, argv, dotenv, environ=None):
    (tmp_path / ".env").write_text(dotenv)
    return from_argv([*argv, tmp_path], environ=environ, cwd=tmp_path)


def test_dotenv_quotes_comments_escapes_and_export(tmp_path):
    cfg = make(tmp_path, [], "\n".join([
        "# DigitalOcean Spaces",
        'SPACES_BUCKET="my-space" # the bucket',
        "export SPACES_ACCESS_KEY=DO00KEY",
        r'SPACES_SECRET_KEY="with \"quotes\", a \\ and # no comment"',
        "SPACES_REGION='fra1'   # single quotes",
        "SPACES_ENDPOINT = https://${SPACES_REGION}.digitaloceanspaces.com",
        "SPACES_ACL=public-read # comment after a bare value",
        "UNUSED",
    ]))
    assert cfg.bucket == "my-space"
    assert cfg.access_key == "DO00KEY"
    assert cfg.secret_key == 'with "quotes", a \\ and # no comment'
    assert cfg.region == "fra1"
    assert cfg.endpoint_url == "https://fra1.digitaloceanspaces.com"
    assert cfg.acl == "public-read"


def test_dotenv_single_quotes_keep_backslashes(tmp_path):
    cfg = make(tmp_path, ["--bucket", "bkt"], "SPACES_ACCESS_KEY=k\n"
               r"SPACES_SECRET_KEY='a\nb'" "\n")
    assert cfg.secret_key == "a\\nb"


def test_dotenv_error_names_the_line_but_never_the_secret(tmp_path):
    with pytest.raises(UsageError, match=r"\.env line 2 cannot be parsed") as caught:
        make(tmp_path, ["--bucket", "bkt"],
             "SPACES_ACCESS_KEY=k\nSPACES_SECRET_KEY=\"very-secret-value\n")
    assert "very-secret-value" not in str(caught.value)


def test_s3pput_reads_a_quoted_bucket_with_a_comment_from_dotenv(cli, s3, bucket, tmp_path):
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text(f'SPACES_BUCKET="{bucket}" # where it goes\n')
    result = cli(src, cwd=work)
    assert result.returncode == 0, result.stderr
    assert set(keys_of(s3, bucket)) == {"a.txt"}


# -- how a fatal error is said -------------------------------------------------------------

def test_s3pput_json_fatal_error_is_one_json_line_and_one_stderr_line(cli, src_tree):
    result = cli("--bucket", "nosuchbucket123", "--json", src_tree)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    [line] = result.stdout.splitlines()
    assert '"fatal": "bucket \'nosuchbucket123\' does not exist"' in line


def test_s3pput_verbose_adds_the_traceback_of_a_fatal_error(cli, src_tree, refused_port):
    result = cli("--bucket", "bkt", "--endpoint-url", f"http://127.0.0.1:{refused_port}",
                 "-v", src_tree)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"s3pput: error: cannot reach http://127.0.0.1:{refused_port}")
    assert "Traceback (most recent call last)" in result.stderr


def test_main_says_an_unexpected_error_in_one_line_and_exits_1(tmp_path, monkeypatch,
                                                               capsys):
    def broken_run(cfg):
        raise RuntimeError("something nobody foresaw\nover two lines")

    monkeypatch.setattr(s3pput_cli, "execute", broken_run)
    monkeypatch.chdir(tmp_path)
    code = s3pput_cli.main(["--bucket", "bkt", "--no-state", str(tmp_path)])
    assert code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("s3pput: error: unexpected RuntimeError: something nobody "
                           "foresaw over two lines")


def test_main_help_and_version_exit_0(capsys):
    assert s3pput_cli.main(["--version"]) == 0
    assert s3pput_cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--ca-bundle" in out


@pytest.fixture
def src_tree(tmp_path):
    return make_tree(tmp_path / "src", {"a.txt": b"a"})
