"""One retry policy for every request of a run, on the lean path and on boto3's alike.

Each request gets ``--retries`` retries of what may pass (``TransientError``: 5xx, 503
SlowDown and 429, resets and timeouts, a body damaged on the way, an answer the store
garbled), whatever other requests meet meanwhile, with exponential backoff and full
jitter: the wait before retry N (from 0) is drawn uniformly from 0 to
``min(CAP_SECONDS, BASE_SECONDS * 2**N)``, so that requests that failed together do not
come back together. botocore's own retries are off (one attempt per client call, see
``client``): its per-client retry quota drains after a few dozen retries when many
requests fail at once, and its waits are tens of milliseconds.

Expired credentials (``CredentialsExpired``: ExpiredToken while the provider thought them
fresh, a revoked session, a skewed clock) are fetched again once and the request retried
at once; when fresh ones are refused too, the run stops (``ConfigError``).
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter
from typing import Callable, Optional, TypeVar

from ..errors import ConfigError, CredentialsExpired, TransientError

BASE_SECONDS = 0.25
CAP_SECONDS = 20.0

T = TypeVar("T")


class RetryPolicy:
    """Retries of one store's requests (thread-safe). ``retried`` counts them by kind
    (``throttled``, ``damaged in transit``, ``connection``, ``500``...) for ``-vv``."""

    def __init__(self, retries: int, *, base: float = BASE_SECONDS, cap: float = CAP_SECONDS,
                 sleep: Callable[[float], None] = time.sleep,
                 uniform: Callable[[float, float], float] = random.uniform):
        self.retries = retries
        self.base = base
        self.cap = cap
        self.sleep = sleep
        self.uniform = uniform
        self.retried: Counter = Counter()
        self.lock = threading.Lock()
        self.on_throttle: Callable[[], None] = lambda: None
        # refresh(since) fetches fresh credentials unless they were fetched after SINCE
        # (time.monotonic); False when there is nothing to fetch them from.
        self.refresh: Optional[Callable[[float], bool]] = None

    def wait(self, retry: int) -> float:
        """The wait before retry RETRY (0 for the first): full jitter under the cap."""
        return self.uniform(0.0, min(self.cap, self.base * 2 ** retry))

    def call(self, attempt: Callable[[], T]) -> T:
        """ATTEMPT() until it returns, retrying what may pass; raises the last error, its
        message saying how many retries it had."""
        retry = 0
        refreshed = False
        while True:
            started = time.monotonic()
            try:
                return attempt()
            except CredentialsExpired as err:
                if refreshed or self.refresh is None or not self.refresh(started):
                    raise ConfigError(f"{err.message}; fresh credentials were refused too"
                                      if refreshed else err.message) from err
                refreshed = True
                with self.lock:
                    self.retried["credentials refreshed"] += 1
            except TransientError as err:
                if err.throttle:
                    self.on_throttle()
                if retry >= self.retries:
                    raise gave_up(err, retry) from err
                with self.lock:
                    self.retried[err.kind] += 1
                self.sleep(self.wait(retry))
                retry += 1


def gave_up(err: TransientError, retries: int) -> TransientError:
    """ERR, its message saying that RETRIES retries did not cure it."""
    final = copy.copy(err)
    final.message = f"{err.message} (gave up after {retries} " \
        f"{'retry' if retries == 1 else 'retries'})"
    final.args = (final.message,)
    return final
