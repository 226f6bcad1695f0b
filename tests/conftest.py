"""Fixtures: one real local S3 server (SeaweedFS) for the session, a bucket per test,
an independent boto3 client to check results, and a runner for the real CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import boto3
import botocore.config
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.locals3 import LocalS3  # noqa: E402

ACCESS_KEY, SECRET_KEY, REGION = "test-access", "test-secret", "us-east-1"


def pytest_collection_modifyitems(items):
    for item in items:
        if "s3server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)


def pytest_configure(config):
    config.addinivalue_line("markers", "server: needs the local S3 server")


@pytest.fixture(scope="session")
def s3server():
    server = LocalS3(metrics=True).start()
    yield server
    server.stop()


def make_s3_client(endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
    """An independent client to check what the CLI did."""
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name=REGION,
        config=botocore.config.Config(
            s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
            response_checksum_validation="when_required"))


AUTH_KEY, AUTH_SECRET = "AKTESTAUTH", "secret-of-the-auth-server"


@pytest.fixture(scope="session")
def authserver(s3server):
    """A second server that enforces credentials (AUTH_KEY/AUTH_SECRET)."""
    identities = {"identities": [{
        "name": "admin",
        "credentials": [{"accessKey": AUTH_KEY, "secretKey": AUTH_SECRET}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    server = LocalS3(s3_config=identities).start()
    yield server
    server.kill()  # nothing to keep: SIGKILL saves the seconds a graceful stop takes
    server.stop()


@pytest.fixture(scope="session")
def s3(s3server):
    return make_s3_client(s3server.endpoint)


@pytest.fixture
def bucket(request, s3):
    """A fresh bucket named after the test."""
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    name = f"t-{name}-{abs(hash(request.node.nodeid)) % 10**6}"
    s3.create_bucket(Bucket=name)
    return name


STATE_HOME = Path(os.environ.get("PYTEST_STATE_HOME", "/tmp/s3pput-test-state"))


def cli_env(endpoint: str, **extra) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SPACES_", "S3PPUT_"))}
    # journals of test runs go to a scratch place, never the user's home
    env["XDG_STATE_HOME"] = str(STATE_HOME)
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_REGION=REGION, AWS_ENDPOINT_URL=endpoint, AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    env.update(extra)
    return env


class CLI:
    """Runs the real ``s3pput`` command against the local server."""

    def __init__(self, endpoint: str, cwd: Path):
        self.endpoint = endpoint
        self.cwd = cwd

    def __call__(self, *args, env: Optional[Dict[str, str]] = None, timeout: float = 120,
                 cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "s3pput", "--no-progress", "--processes", "2",
                   *map(str, args)]
        full_env = cli_env(self.endpoint, **(env or {}))
        full_env["PYTHONPATH"] = str(ROOT)
        return subprocess.run(command, cwd=cwd or self.cwd, env=full_env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli(s3server, tmp_path):
    return CLI(s3server.endpoint, tmp_path)


def make_tree(root: Path, files: Dict[str, bytes]) -> Path:
    """Write FILES ({relative path: content}) under ROOT and return ROOT."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def keys_of(s3, bucket: str, prefix: str = "") -> Dict[str, dict]:
    """{key: listing entry} of everything under PREFIX, read with the independent client."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"]] = item
    return found


def body_of(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
