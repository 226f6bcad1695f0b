"""The exception hierarchy of s3pput.

Three families, because the CLI maps them to different outcomes:

* ``UsageError`` / ``ConfigError`` (``FatalError`` subclasses): the run cannot start or
  cannot go on at all (bad option, missing bucket, bad credentials). Reported once, exit 2.
* ``FileError``: one file cannot be put (unreadable, vanished, invalid key, corrupt image,
  permanent store error). Reported with the file, the run goes on, exit 1 at the end.
  ``TransientError`` (and its ``ConnectionFailure``) is a ``FileError`` that retries did
  not cure; ``PreconditionFailed`` is a conditional write the store refused: the class,
  never the message text, says which kind it is.
* Skips are decisions, not exceptions (see ``decide``).

Anything else that reaches ``cli.main`` is a defect: it is still said in one line (and exit
code 1; ``-v`` adds the traceback).

Every error carries what was being done (``op``), and where relevant the local path and the
key, and formats its own one-line message.
"""

from __future__ import annotations


class S3pputError(Exception):
    """Base of all s3pput errors; ``str(err)`` is the one line a user reads."""

    def __init__(self, message: str, *, op: str = "", path: str = "", key: str = ""):
        super().__init__(message)
        self.message = message
        self.op = op
        self.path = path
        self.key = key
        self.code = ""  # the store's error code, when the store answered one
        self.status = 0  # the HTTP status it answered with

    def __str__(self) -> str:
        where = " ".join(part for part in (self.op, self.path and f"{self.path!s}",
                                             self.key and f"-> {self.key}") if part)
        return f"{where}: {self.message}" if where else self.message


class FatalError(S3pputError):
    """The whole run must stop: reported once, exit code 2."""


class UsageError(FatalError):
    """A bad command line or option value (found by ``config`` before any request)."""


class ConfigError(FatalError):
    """The options are well formed but the world disagrees: no such bucket or profile, bad
    credentials, an unreachable endpoint, an untrusted certificate."""


class FileError(S3pputError):
    """One file cannot be put; the run goes on and exits 1."""


class ImageError(FileError):
    """An image cannot be decoded or thumbnailed (corrupt, truncated, too large)."""


class PreconditionFailed(FileError):
    """The store refused a conditional write (412 PreconditionFailed, or 409
    ConditionalRequestConflict under a race): with ``If-None-Match: *`` the key exists
    already; with ``If-Match`` the object is no longer the version that was read. A
    definitive answer, never retried as such: the caller decides (skip, fail, read again)."""


class TransientError(FileError):
    """A failure that may go away when retried (timeouts, resets, 500/503, a body damaged
    on the way, an answer the store garbled). ``kind`` names it for the retry counters
    (``-vv``); ``throttle`` says the store asked to slow down (503 SlowDown, 429)."""

    def __init__(self, message: str, *, kind: str = "", throttle: bool = False, **where):
        super().__init__(message, **where)
        self.kind = kind or "transient"
        self.throttle = throttle


class CredentialsExpired(S3pputError):
    """The store refused the credentials as expired (ExpiredToken, TokenRefreshRequired)
    while the credential provider thought them fresh: the request is retried once with
    freshly fetched credentials, and only when those are refused too is the run stopped."""


class ListingBroken(FileError):
    """The store's listing cannot be followed to its end (a continuation token it gave
    before, a truncated page without a token, pages that add no key): it is stopped, and
    what it did not cover is asked for key by key."""


class ConnectionFailure(TransientError):
    """No answer from the store at all (refused, unresolvable, reset, timed out): the
    kind of failure that says the endpoint is unreachable, not that one file is bad.
    ``endpoint`` is the store's ``scheme://host:port``, ``reason`` the cause in a few words
    (``Connection refused``), both for messages."""

    def __init__(self, message: str, *, endpoint: str = "", reason: str = "", **where):
        where.setdefault("kind", "connection")
        super().__init__(message, **where)
        self.endpoint = endpoint
        self.reason = reason or message
