"""TLS trust against the real server serving HTTPS with a certificate from a CA made here.

One trust setting covers every connection s3pput opens (``store.tls_verify``): the boto3
client and the fast path. Without the CA the run fails closed (exit 2, one line, nothing
written); each of the three standard ways to give the CA works (``--ca-bundle``,
``AWS_CA_BUNDLE``, ``ca_bundle`` in the profile); ``--no-verify-ssl`` works and warns.

How a test knows the fast path trusted the store too: it is tried first for every
single-part PUT, and a failure there is silent (boto3 then puts the file), so stored bytes
alone prove nothing. But the server logs every TLS handshake that fails
(``http: TLS handshake error from ...``): a run whose fast path distrusted the store leaves
such lines, a run where every connection trusted it leaves none. And the in-process test
asks the fast lane itself to put an object over TLS with the run's trust setting.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ipaddress
import re
import socket
import time
import zlib
from pathlib import Path

import pytest
from configs import from_argv
from conftest import ACCESS_KEY, CLI, REGION, SECRET_KEY, body_of, keys_of, make_tree
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devtools.locals3 import LocalS3
from s3pput.errors import ConfigError
from s3pput.store import make_store, tls_verify
from s3pput.store.lean import LeanPath

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                   "all_proxy")
# The fast path is used only without a proxy: make sure none is inherited.
NO_PROXY_ENV = {name: "" for name in PROXY_VARIABLES}

FILES = {f"dir/file{n}.txt": f"file {n} ".encode() * (n + 1) for n in range(8)}


# -- a certificate authority of our own ------------------------------------------------------

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory: Path, name: str):
    """A self-signed CA: (its key, its certificate), the certificate written to NAME.pem."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(f"s3pput test CA {name}")).issuer_name(_name(f"s3pput test CA {name}"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def make_server_cert(directory: Path, ca_key, ca_cert):
    """A certificate for IP 127.0.0.1 signed by the CA: (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file = directory / "server.pem", directory / "server-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """{"ca": our CA's certificate file, "other": an unrelated CA's, "cert"/"key": the
    server's certificate (for 127.0.0.1, signed by our CA) and key}."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = make_ca(directory, "ca")
    make_ca(directory, "other")
    cert, key = make_server_cert(directory, ca_key, ca_cert)
    return {"ca": directory / "ca.pem", "other": directory / "other.pem", "cert": cert,
            "key": key}


@pytest.fixture(scope="module")
def tls_server(pki):
    """SeaweedFS serving S3 over HTTPS with our certificate (and over plain HTTP, for the
    independent client and the counters)."""
    server = LocalS3(metrics=True, tls=(str(pki["cert"]), str(pki["key"]))).start()
    yield server
    server.kill()
    server.stop()


@pytest.fixture
def tls_bucket(request, tls_server):
    """A fresh bucket named after the test, on the HTTPS server."""
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[-40:].strip("-")
    name = f"tls-{name}-{zlib.crc32(request.node.nodeid.encode()) % 10**6}"
    tls_server.create_bucket(name)
    return name


@pytest.fixture
def tls_cli(tls_server, tmp_path):
    return CLI(tls_server.https_endpoint, tmp_path)


@pytest.fixture
def src(tmp_path):
    return make_tree(tmp_path / "src", FILES)


def handshake_failures(server: LocalS3) -> int:
    """How many TLS handshakes the server has logged as failed, counted once a handshake
    failed on purpose here (a connection closed at once) is in the log: lines of earlier
    connections are then in, too. Each call adds that one line of its own."""
    with socket.create_connection(("127.0.0.1", server.https_port), timeout=10) as sock:
        port = sock.getsockname()[1]
    marker = f"TLS handshake error from 127.0.0.1:{port}:"
    deadline = time.monotonic() + 60
    while marker not in server.log_text():
        assert time.monotonic() < deadline, "the server never logged the closed handshake"
        time.sleep(0.05)
    return server.log_text().count("TLS handshake error from")


def puts(server: LocalS3, bucket: str) -> int:
    """PUT requests the server has counted for BUCKET (its creation is one)."""
    return server.request_counts(bucket).get("PUT", 0)


def assert_stored(tls_server, bucket: str, puts_before: int) -> None:
    """Every file is in the bucket with its bytes (read over plain HTTP by an independent
    client), and each was PUT once: no failed attempt was repeated."""
    s3 = tls_server.client()
    assert set(keys_of(s3, bucket)) == set(FILES)
    for key, data in FILES.items():
        assert body_of(s3, bucket, key) == data
    assert puts(tls_server, bucket) - puts_before == len(FILES)


def profile_file(tmp_path: Path, ca: Path) -> Path:
    config = tmp_path / "aws-config"
    config.write_text(f"[profile private-ca]\nregion = {REGION}\n"
                      f"aws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
                      f"ca_bundle = {ca}\n")
    return config


# -- the command line --------------------------------------------------------------------

@pytest.mark.parametrize("trust", ["default", "other CA in --ca-bundle",
                                   "other CA in AWS_CA_BUNDLE"])
def test_s3pput_https_without_our_ca_fails_closed_exit_2_one_line(tls_cli, tls_server,
                                                                   tls_bucket, src, pki,
                                                                   trust):
    args, env = [], dict(NO_PROXY_ENV)
    if trust == "other CA in --ca-bundle":
        args = ["--ca-bundle", pki["other"]]
    elif trust == "other CA in AWS_CA_BUNDLE":
        env["AWS_CA_BUNDLE"] = str(pki["other"])
    before, puts_before = handshake_failures(tls_server), puts(tls_server, tls_bucket)
    result = tls_cli("--bucket", tls_bucket, *args, src, env=env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("s3pput: error: the TLS certificate of "
                           f"{tls_server.https_endpoint} is not trusted"), line
    assert "--ca-bundle" in line and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert keys_of(tls_server.client(), tls_bucket) == {}
    assert puts(tls_server, tls_bucket) == puts_before
    # the server saw the refused handshake(s): what the other tests count to be zero
    assert handshake_failures(tls_server) - before - 1 >= 1


@pytest.mark.parametrize("way", ["--ca-bundle", "AWS_CA_BUNDLE", "ca_bundle in the profile"])
def test_s3pput_https_with_our_ca_puts_everything_over_trusted_connections(
        tls_cli, tls_server, tls_bucket, src, pki, tmp_path, way):
    args, env = [], dict(NO_PROXY_ENV)
    if way == "--ca-bundle":
        args = ["--ca-bundle", pki["ca"]]
    elif way == "AWS_CA_BUNDLE":
        env["AWS_CA_BUNDLE"] = str(pki["ca"])
    else:
        env["AWS_CONFIG_FILE"] = str(profile_file(tmp_path, pki["ca"]))
        env["AWS_ACCESS_KEY_ID"] = env["AWS_SECRET_ACCESS_KEY"] = ""
        args = ["--profile", "private-ca"]
    before, puts_before = handshake_failures(tls_server), puts(tls_server, tls_bucket)
    result = tls_cli("--bucket", tls_bucket, "--no-state", *args, src, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert_stored(tls_server, tls_bucket, puts_before)
    # no connection of the run (boto3's or the fast path's) distrusted the server
    assert handshake_failures(tls_server) - before - 1 == 0


def test_s3pput_https_no_verify_ssl_works_and_warns(tls_cli, tls_server, tls_bucket, src):
    before, puts_before = handshake_failures(tls_server), puts(tls_server, tls_bucket)
    result = tls_cli("--bucket", tls_bucket, "--no-state", "--no-verify-ssl", src,
                     env=NO_PROXY_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "s3pput: warning: TLS certificates are not verified (--no-verify-ssl)"]
    assert_stored(tls_server, tls_bucket, puts_before)
    assert handshake_failures(tls_server) - before - 1 == 0


def test_s3pput_ca_bundle_that_is_not_pem_exit_2(tls_cli, tls_server, tls_bucket, src,
                                                  tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    result = tls_cli("--bucket", tls_bucket, "--ca-bundle", garbage, src, env=NO_PROXY_ENV)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"cannot use the CA bundle '{garbage}' (--ca-bundle)" in line
    assert keys_of(tls_server.client(), tls_bucket) == {}


# -- the fast lane itself ------------------------------------------------------------------

def run_config(tls_server, tmp_path, *argv):
    """The configuration a run with ARGV would have (SPACES_* keys: no process
    environment involved)."""
    return from_argv(["--bucket", "unused-bucket", "--no-state", "--endpoint-url",
                      tls_server.https_endpoint, *argv, tmp_path],
                     environ={"SPACES_ACCESS_KEY": ACCESS_KEY, "SPACES_SECRET_KEY": SECRET_KEY,
                              "AWS_REGION": REGION}, cwd=tmp_path)


@pytest.mark.parametrize("argv, trust", [(["--ca-bundle", "CA"], "CA"),
                                         (["--no-verify-ssl"], False)])
def test_fast_lane_puts_over_tls_with_the_runs_trust(tls_server, tls_bucket, pki, tmp_path,
                                                     monkeypatch, argv, trust):
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    argv = [pki["ca"] if item == "CA" else item for item in argv]
    cfg = run_config(tls_server, tmp_path, *argv)
    verify = tls_verify(cfg)
    assert verify == (str(pki["ca"]) if trust == "CA" else False)
    store = make_store(dataclasses.replace(cfg, bucket=tls_bucket))
    data = b"over TLS, by the lean path"
    md5 = hashlib.md5(data).digest()
    assert store.lean.put("fast.txt", data, md5, {}) == md5.hex()
    assert body_of(tls_server.client(), tls_bucket, "fast.txt") == data
    # and the check discriminates: with the default bundle the lean path cannot connect
    untrusting = LeanPath(store.lean.route, store.lean.credentials, 10, True, tls_bucket)
    with pytest.raises(ConfigError, match="is not trusted"):
        untrusting.put("no.txt", data, md5, {})
    assert "no.txt" not in keys_of(tls_server.client(), tls_bucket)
