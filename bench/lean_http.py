"""``python -m bench.lean_http``: the CPU of one PUT on the lean path's own HTTP/1.1 framing
(``s3pput.store.http1``) against the same requests framed by ``http.client``.

One local SeaweedFS, one thread, one keep-alive connection each, N PUTs of 2 KiB (MD5s
computed before, the same ``Signer``), the modes alternated REPS times; the figure is the
thread's CPU time per PUT (``time.thread_time``), median over the repetitions. It is what
``s3pput/store/http1.py``'s docstring quotes.

    .venv/bin/python -m bench.lean_http [--puts 2000] [--reps 5]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import socket
import statistics
import time
from urllib.parse import quote

from devtools.locals3 import LocalS3
from s3pput.store.lean import Credentials, LeanPath, Route, Signer, canonical_query

BUCKET = "lean-http"
CREDENTIALS = Credentials("bench", "bench-secret")


class HttpClientPath:
    """The same requests as ``LeanPath.put``, framed by ``http.client``."""

    def __init__(self, route: Route):
        self.route = route
        self.signer = Signer(route.region)
        self.conn = http.client.HTTPConnection(route.host, route.port, timeout=60)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def put(self, key: str, body: bytes, md5: bytes) -> str:
        import base64

        path = self.route.path_prefix + quote(key, safe="/~")
        headers = {"host": self.route.netloc, "content-length": str(len(body)),
                   "content-md5": base64.b64encode(md5).decode("ascii")}
        self.signer.sign("PUT", path, headers, CREDENTIALS, query=canonical_query({}))
        self.conn.request("PUT", path, body=body, headers=headers)
        answer = self.conn.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
        return answer.getheader("etag", "")


def measure(put, count: int, bodies, md5s) -> float:
    started = time.thread_time()
    for n in range(count):
        put(f"f{n:06d}.bin", bodies[n % len(bodies)], md5s[n % len(md5s)])
    return (time.thread_time() - started) / count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    bodies = [os.urandom(2048) for _ in range(16)]
    md5s = [hashlib.md5(body).digest() for body in bodies]
    with LocalS3(buckets=[BUCKET]) as server:
        route = Route.from_url(f"{server.endpoint}/{BUCKET}/K", "us-east-1")
        results = {"http1 (s3pput)": [], "http.client": []}
        for _ in range(args.reps):
            lean = LeanPath(route, lambda: CREDENTIALS, 60.0, True, BUCKET)
            results["http1 (s3pput)"].append(
                measure(lambda k, b, m, lean=lean: lean.put(k, b, m, {}), args.puts, bodies,
                        md5s))
            lean.close()
            other = HttpClientPath(route)
            results["http.client"].append(measure(other.put, args.puts, bodies, md5s))
            other.conn.close()
    print(f"CPU per PUT of 2 KiB, one thread, {args.puts} PUTs, median of {args.reps}:")
    for name, values in results.items():
        print(f"  {name:16} {statistics.median(values) * 1e6:7.1f} us "
              f"[{min(values) * 1e6:.1f}-{max(values) * 1e6:.1f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
