"""A recording fake at the Store seam: what s3pput would do to a store, without one.

``FakeStore`` keeps objects in a dict (key -> ``Stored``) and records every call as
``(operation, key)`` in ``calls``, so a unit test can say "this job cost one PUT and no
HEAD" and read back the exact bytes and parameters that were put. ETags are computed the
way S3 computes them (MD5, or ``md5(part md5s)-N``). ``fail`` makes the next calls of an
operation raise a given error; ``before`` runs a function just before the next call of an
operation (on a key), as another writer racing this one would. A HEAD shows the headers an
object was put with (``headers.header_set``); ``copy_in_place`` replaces them as AWS does: the copy gets the
MD5 of its body as ETag (a multipart ETag becomes a single-part one), or above
``copy_limit`` the multipart ETag of its copied parts.

Conditional writes (``if_none_match``, ``if_match``) are honoured as S3 honours them
(``PreconditionFailed``), unless made with ``conditions="ignore"`` (a store that drops the
headers) or ``conditions="501"`` (one that answers NotImplemented, as ``Store`` reports it).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional

from s3pput.digest import digest_bytes, multipart_etag
from s3pput.errors import FileError, PreconditionFailed
from s3pput.headers import header_set
from s3pput.jobs import RemoteObject
from s3pput.store import run_now


class Stored(NamedTuple):
    body: bytes
    params: dict
    etag: str
    parts: int  # 0 for a single PUT


class FakeStore:
    bucket = "fake"

    def __init__(self, objects: Optional[Dict[str, bytes]] = None, *,
                 conditions: str = "honour"):
        self.objects: Dict[str, Stored] = {
            key: Stored(body, {}, hashlib.md5(body).hexdigest(), 0)
            for key, body in (objects or {}).items()}
        self.calls: List[tuple] = []
        self.failures: Dict[str, List[BaseException]] = {}
        self.aborted: List[str] = []
        self.lock = threading.Lock()
        self.on_throttle: Callable[[], None] = lambda: None
        self.conditions = conditions
        self.honours_conditions: Optional[bool] = None
        self.hooks: Dict[tuple, List[Callable[[], None]]] = {}
        self.conditional: List[tuple] = []  # (key, "if-none-match" | "if-match") of puts

    def fail(self, operation: str, *errors: BaseException) -> None:
        """Make the next calls of OPERATION raise ERRORS, one each."""
        self.failures.setdefault(operation, []).extend(errors)

    def before(self, operation: str, hook: Callable[[], None], key: str = "") -> None:
        """Run HOOK() just before the next call of OPERATION (on KEY, if given) does
        anything."""
        self.hooks.setdefault((operation, key), []).append(hook)

    def _call(self, operation: str, key: str) -> None:
        hooks = self.hooks.get((operation, key)) or self.hooks.get((operation, ""))
        if hooks:
            hooks.pop(0)()
        with self.lock:
            self.calls.append((operation, key))
            pending = self.failures.get(operation)
            if pending:
                raise pending.pop(0)

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)

    # -- the Store interface -----------------------------------------------------------
    def head(self, key: str) -> Optional[RemoteObject]:
        self._call("head", key)
        stored = self.objects.get(key)
        if stored is None:
            return None
        return RemoteObject(key, len(stored.body), stored.etag,
                            stored.params.get("StorageClass", "STANDARD"),
                            header_set(stored.params))

    def get(self, key: str) -> Optional[bytes]:
        self._call("get", key)
        stored = self.objects.get(key)
        return stored.body if stored else None

    def get_with_etag(self, key: str):
        self._call("get", key)
        stored = self.objects.get(key)
        return (stored.body, stored.etag) if stored else None

    def delete(self, key: str) -> None:
        self._call("delete", key)
        self.objects.pop(key, None)

    def _check(self, key: str, if_none_match: bool, if_match: Optional[str]) -> None:
        """Refuse a conditional write as the configured store would."""
        if not (if_match or (if_none_match and self.honours_conditions is not False)):
            return
        if self.conditions == "501":
            self.honours_conditions = False
            if if_match:
                raise FileError("the store does not support conditional writes", key=key)
            return
        if self.conditions != "honour":
            return
        stored = self.objects.get(key)
        if (if_none_match and stored is not None) or \
                (if_match and (stored is None or stored.etag != if_match)):
            raise PreconditionFailed("412 PreconditionFailed", op="put", key=key)

    def list_objects(self, prefix: str, delimiter: str = "", first_page=None):
        assert first_page is None, "the fake has no up-front check"
        self._call("list", prefix)
        for key, stored in list(self.objects.items()):
            rest = key[len(prefix):]
            if key.startswith(prefix) and not (delimiter and delimiter in rest):
                yield RemoteObject(key, len(stored.body), stored.etag,
                                   stored.params.get("StorageClass", "STANDARD"))

    def put(self, key: str, data: bytes, params: dict, *, md5: Optional[bytes] = None,
            path: str = "", if_none_match: bool = False, if_match: Optional[str] = None) -> str:
        self._call("put", key)
        if md5 is not None:
            assert md5 == hashlib.md5(data).digest(), "Content-MD5 does not match the body"
        with self.lock:
            self._check(key, if_none_match, if_match)
            etag = hashlib.md5(data).hexdigest()
            self.objects[key] = Stored(bytes(data), dict(params), etag, 0)
        if if_none_match or if_match:
            self.conditional.append((key, "if-match" if if_match else "if-none-match"))
        return etag

    def put_multipart(self, key: str, parts: Iterable[bytes], params: dict, *,
                      before_complete=lambda md5s: None, path: str = "", submit=None,
                      if_none_match: bool = False) -> str:
        self._call("create_multipart", key)
        run = submit or run_now
        futures = []
        for data in parts:
            futures.append(run(lambda data=bytes(data): self._part(key, data)))
        bodies = [future.result() for future in futures]
        md5s = [hashlib.md5(body).digest() for body in bodies]
        try:
            before_complete(md5s)
        except BaseException:
            self.aborted.append(key)
            raise
        self._call("complete_multipart", key)
        etag = multipart_etag(md5s)
        with self.lock:
            try:
                self._check(key, if_none_match, None)
            except PreconditionFailed:
                self.aborted.append(key)
                raise
            self.objects[key] = Stored(b"".join(bodies), dict(params), etag, len(bodies))
        return etag

    copy_limit = 5 * 1024 ** 3

    def copy_in_place(self, key: str, params: dict, *, etag: str = "", size: int = 0,
                      part_size: int = 8 * 1024 * 1024, path: str = "") -> str:
        self._call("copy", key)
        stored = self.objects.get(key)
        if stored is None:
            raise FileError("NoSuchKey: The specified key does not exist.", key=key)
        if etag and etag != stored.etag:
            raise FileError("the stored object changed since it was compared", key=key)
        if size > self.copy_limit:
            new = digest_bytes(stored.body, part_size)
            new_etag, parts = new.etag(multipart=True), len(new.part_md5s)
        else:
            new_etag, parts = hashlib.md5(stored.body).hexdigest(), 0
        self.objects[key] = Stored(stored.body, dict(params), new_etag, parts)
        return new_etag

    def _part(self, key: str, data: bytes) -> bytes:
        self._call("upload_part", key)
        return bytes(data)
