"""The S3 store: the few operations s3pput needs, each one request, retried by the run's
one policy (``retry``), with errors translated (``errors``). No walker or putter policy
lives here.

Every operation tries the lean path first (``lean``: signed here, on ``http.client``) and
sends the request through boto3's client only when the lean path cannot take it
(``lean.Unsupported``: a header it does not map, no credentials to sign with) or is off
(``--no-fast-put``, a proxy): on either path one attempt is one request, and the retries
are the policy's. ``dryrun`` has the store that records instead of writing; multipart
uploads and copies in parts are ``multipart``'s.
"""

from __future__ import annotations

import hashlib
import threading
from typing import (
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Set,
    Tuple,
    TypeVar,
)

from ..errors import (
    ConfigError,
    ConnectionFailure,
    FatalError,
    FileError,
    ListingBroken,
    PreconditionFailed,
    S3pputError,
)
from ..headers import from_http
from ..jobs import RemoteObject
from . import lazy, multipart
from .answers import Page
from .client import Clients
from .errors import not_implemented, translate
from .lean import LeanPath, Unsupported
from .multipart import md5_b64
from .retry import RetryPolicy

T = TypeVar("T")
MAX_PAGES_WITHOUT_PROGRESS = 100  # a listing that adds no key for this many pages loops


class Access(NamedTuple):
    """What the up-front check found out (``Store.check_bucket``)."""

    can_list: bool  # the credentials may list the bucket
    first_page: Optional[Page] = None  # the first page of the prefix asked


class ListingGuard:
    """Follows one listing page by page and stops it, with the store's fault named, where
    it cannot end: a continuation token seen before, a truncated page without a token,
    or ``MAX_PAGES_WITHOUT_PROGRESS`` pages in a row that add no key (empty, or the keys
    of the page before). Bounded: it keeps a hash of each token and the last page's keys."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.tokens: Set[bytes] = set()
        self.pages = 0
        self.idle = 0
        self.previous: List[tuple] = []

    def next_token(self, page: Page) -> str:
        """The token of the page after PAGE ("" when PAGE was the last); raises
        ``ListingBroken`` when the listing cannot go on."""
        self.pages += 1
        where = f"the store's listing of {self.prefix or 'the bucket'!r}"
        if not page.truncated:
            return ""
        if not page.token:
            raise self._broken(f"{where} says page {self.pages} is truncated (IsTruncated) "
                               "but gives no continuation token")
        digest = hashlib.blake2b(page.token.encode("utf-8", "surrogateescape"),
                                 digest_size=16).digest()
        if digest in self.tokens:
            raise self._broken(f"{where} repeats its continuation token (page "
                               f"{self.pages} gives one it gave before)")
        self.tokens.add(digest)
        idle = (not page.items and not page.prefixes) or page.items == self.previous
        self.idle = self.idle + 1 if idle else 0
        self.previous = page.items
        if self.idle >= MAX_PAGES_WITHOUT_PROGRESS:
            raise self._broken(f"{where} gave {self.idle} pages in a row that add no key")
        return page.token

    def _broken(self, message: str) -> ListingBroken:
        return ListingBroken(message, op="list", key=self.prefix)


class Store:
    """The S3 store of one process (its threads share it)."""

    def __init__(self, clients: Clients, bucket: str, *, retries: int,
                 lean: Optional[LeanPath] = None, fast: bool = True,
                 timeout: float = 60.0, verify_ssl=True):
        """CLIENTS makes the boto3 client on first use (a dry run that only records, or a
        run whose requests all take the lean path, never pays for one). LEAN: the lean
        path when it can start without a client (``client.lean_start``); with FAST and no
        LEAN it is made beside the client; without FAST there is none."""
        self.clients = clients
        self.bucket = bucket
        self.fast = fast
        self.timeout = timeout
        self.verify_ssl = verify_ssl
        self._lean = lean
        self._lock = threading.Lock()
        self.retry = RetryPolicy(retries)
        self.retry.refresh = clients.refresh
        # Whether the store honours If-None-Match/If-Match on PUT: None until known. False
        # once it answered 501 NotImplemented to them (then If-None-Match is no longer
        # sent); True once ``overlap.probe`` saw it refuse what it must refuse.
        self.honours_conditions: Optional[bool] = None

    @property
    def client(self):
        return self.clients.client()

    @property
    def on_throttle(self) -> Callable[[], None]:
        return self.retry.on_throttle

    @on_throttle.setter
    def on_throttle(self, callback: Callable[[], None]) -> None:
        """Called (from any thread) whenever the store answers 503/429/SlowDown, on either
        path: the putter's concurrency controller backs off on it."""
        self.retry.on_throttle = callback

    @property
    def lean(self) -> Optional[LeanPath]:
        """The lean path (None without ``fast``): the one given, else made beside the
        client, its route from a URL the client presigns."""
        if self._lean is None and self.fast:
            with self._lock:
                if self._lean is None:
                    from .lean import Route

                    url = self.client.generate_presigned_url(
                        "put_object", Params={"Bucket": self.bucket, "Key": "K"})
                    route = Route.from_url(url, self.client.meta.region_name)
                    self._lean = LeanPath(route, self.clients.credentials, self.timeout,
                                          self.verify_ssl, self.bucket)
        return self._lean

    def park(self) -> None:
        """Leave this thread's lean connection open for the next thread that needs one,
        here or in a child forked meanwhile (``LeanPath.park``)."""
        if self._lean is not None:
            self._lean.park()

    def close(self) -> None:
        """Close this thread's lean connection and the parked ones (the process keeps no
        socket it will not use again: a forked child would inherit it)."""
        if self._lean is not None:
            self._lean.close()

    # -- one request, retried -------------------------------------------------------------
    def _attempt(self, op: str, key: str, lean_call: Optional[Callable[[LeanPath], T]],
                 boto_call: Callable[[object], T], path: str = "") -> T:
        try:
            lean = self.lean if lean_call is not None else None
            if lean is not None:
                try:
                    return lean_call(lean)
                except Unsupported:
                    pass
            return boto_call(self.client)
        except S3pputError:
            raise
        except Exception as err:  # noqa: BLE001 - translated
            raise translate(err, op=op, bucket=self.bucket, key=key, path=path) from err

    def request(self, op: str, key: str, lean_call: Optional[Callable[[LeanPath], T]],
                boto_call: Callable[[object], T], path: str = "") -> T:
        """One request (the lean path's LEAN_CALL, else boto3's BOTO_CALL), retried."""
        return self.retry.call(lambda: self._attempt(op, key, lean_call, boto_call, path))

    # -- the up-front check ----------------------------------------------------------------
    def check_bucket(self, prefix: Optional[str] = None) -> Access:
        """Check endpoint, trust, credentials and bucket once, before anything is written;
        return whether listing is allowed, and the first page of PREFIX's listing when a
        PREFIX is given (the walker goes on from there).

        When all is well this costs one request, a LIST (of PREFIX's first page, or of one
        key); a HEAD of the bucket only when the LIST is refused, to tell a missing bucket
        or another region from a missing list permission.

        Raises ``ConfigError`` with one clear message when the run cannot work: up front,
        every failure is fatal (an unreachable endpoint too, after its retries).
        """
        try:
            try:
                page = self.list_page(prefix or "", max_keys=0 if prefix is not None else 1)
            except ConfigError as err:
                if err.code == "PermanentRedirect":
                    self._head_bucket()
                raise
            except FileError as err:
                if err.code != "AccessDenied" and err.status != 403:
                    raise
                self._head_bucket()
                return Access(False)  # the bucket exists; its keys are asked one by one
            return Access(True, page if prefix is not None else None)
        except FatalError:
            raise
        except ConnectionFailure as err:
            raise ConfigError(f"cannot reach {err.endpoint or 'the endpoint'}: {err.reason} "
                              "(check --endpoint-url, and that the store is up)") from err
        except S3pputError as err:
            raise ConfigError(f"cannot use bucket {self.bucket!r}: {err.message}") from err

    def _head_bucket(self) -> None:
        """Ask the bucket itself why a LIST was refused: a missing bucket and another
        region are fatal (with the region named); a bucket that exists but may not be
        listed is not."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except lazy.botocore_exceptions.ClientError as err:
            metadata = err.response.get("ResponseMetadata", {})
            status = metadata.get("HTTPStatusCode")
            if status == 404:
                raise ConfigError(f"bucket {self.bucket!r} does not exist") from err
            if status == 301:
                region = metadata.get("HTTPHeaders", {}).get("x-amz-bucket-region")
                hint = f"--region {region}" if region else "--region"
                raise ConfigError(f"bucket {self.bucket!r} is in another region: use "
                                  f"{hint}") from err
            if status not in (400, 403):
                raise translate(err, op="check bucket", bucket=self.bucket) from err
        except Exception as err:  # noqa: BLE001 - translated
            raise translate(err, op="check bucket", bucket=self.bucket) from err

    # -- reading ---------------------------------------------------------------------------
    def head(self, key: str) -> Optional[RemoteObject]:
        """What the store holds under KEY (None: nothing), its headers included."""
        def boto(client):
            try:
                answer = client.head_object(Bucket=self.bucket, Key=key)
            except lazy.botocore_exceptions.ClientError as err:
                if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return None
                raise
            raw = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            return RemoteObject(key, int(answer["ContentLength"]), answer["ETag"].strip('"'),
                                answer.get("StorageClass", ""), from_http(raw))

        return self.request("head", key, lambda lean: lean.head(key), boto)

    def list_page(self, prefix: str, token: str = "", delimiter: str = "",
                  max_keys: int = 0) -> Page:
        """One ListObjectsV2 page, as the store answered it."""
        def boto(client):
            request = {"Bucket": self.bucket, "Prefix": prefix}
            if delimiter:
                request["Delimiter"] = delimiter
            if token:
                request["ContinuationToken"] = token
            if max_keys:
                request["MaxKeys"] = max_keys
            page = client.list_objects_v2(**request)
            items = [(item["Key"], int(item["Size"]), item["ETag"].strip('"'),
                      item.get("StorageClass", "")) for item in page.get("Contents", ())]
            return Page(items, page.get("NextContinuationToken") or "",
                        bool(page.get("IsTruncated")), len(page.get("CommonPrefixes", ())))

        return self.request("list", prefix,
                            lambda lean: lean.list_page(prefix, token, delimiter, max_keys),
                            boto)

    def list_objects(self, prefix: str, delimiter: str = "",
                     first_page: Optional[Page] = None) -> Iterator[RemoteObject]:
        """Stream the objects under PREFIX, one page (1,000 keys) per request. S3 lists in
        UTF-8 byte order; not every compatible store does, so callers assume no order.
        FIRST_PAGE: the first page, already read (``check_bucket``'s). A listing the store
        breaks ends with ``ListingBroken`` (``ListingGuard``), after what it did give."""
        guard = ListingGuard(prefix)
        page = first_page if first_page is not None else self.list_page(prefix, "", delimiter)
        while True:
            for item in page.items:
                yield RemoteObject(*item)
            token = guard.next_token(page)
            if not token:
                return
            page = self.list_page(prefix, token, delimiter)

    def get(self, key: str) -> Optional[bytes]:
        found = self.get_with_etag(key)
        return found[0] if found is not None else None

    def get_with_etag(self, key: str) -> Optional[Tuple[bytes, str]]:
        """(the body under KEY, its ETag without quotes), or None when there is none: the
        ETag to replace exactly this version with ``put(..., if_match=etag)``."""
        def boto(client):
            try:
                answer = client.get_object(Bucket=self.bucket, Key=key)
            except lazy.botocore_exceptions.ClientError as err:
                if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            return answer["Body"].read(), answer.get("ETag", "").strip('"')

        return self.request("get", key, lambda lean: lean.get(key), boto)

    # -- writing ---------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        """Remove KEY (a key that is not there is no error)."""
        self.request("delete", key, lambda lean: lean.delete(key),
                     lambda client: client.delete_object(Bucket=self.bucket, Key=key))

    def put(self, key: str, data, params: Dict, *, md5: Optional[bytes] = None,
            path: str = "", if_none_match: bool = False, if_match: Optional[str] = None) -> str:
        """Put DATA (bytes or a buffer) under KEY in one request; return the ETag. The
        store checks the MD5 (MD5: DATA's raw MD5 when the caller has it already).

        IF_NONE_MATCH: only if KEY does not exist (``If-None-Match: *``); IF_MATCH (an ETag):
        only if KEY still holds that version. A refusal raises ``PreconditionFailed``,
        except when a create-only put finds its own bytes in place (a retry whose first
        attempt landed): that is success. A store that answers 501 NotImplemented to the
        headers is remembered (``honours_conditions = False``): If-None-Match is then
        dropped and the PUT sent again as a plain one; If-Match is never dropped."""
        digest = md5 or hashlib.md5(data).digest()
        try:
            return self._put(key, data, params, digest, path, if_none_match, if_match)
        except PreconditionFailed:
            if if_none_match and self._holds(key, digest.hex()):
                return digest.hex()
            raise

    def _put(self, key: str, data, params: Dict, digest: bytes, path: str,
             if_none_match: bool, if_match: Optional[str]) -> str:
        conditional = dict(params)
        if if_none_match and self.honours_conditions is not False:
            conditional["IfNoneMatch"] = "*"
        if if_match:
            conditional["IfMatch"] = f'"{if_match}"'

        def boto(client):
            answer = client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data),
                                       ContentMD5=md5_b64(digest), **conditional)
            return answer.get("ETag", "").strip('"') or digest.hex()

        try:
            return self.request("put", key, lambda lean: lean.put(key, data, digest,
                                                                  conditional), boto, path)
        except FileError as err:
            if not (conditional.keys() - params.keys()) or not not_implemented(err):
                raise
            self.honours_conditions = False
            if if_match:
                raise FileError("the store does not support conditional writes (501 "
                                "NotImplemented to If-Match)", op="put", path=path,
                                key=key) from err
            return self._put(key, data, params, digest, path, False, None)

    def put_multipart(self, key: str, parts: Iterable, params: Dict, *,
                      before_complete: Callable[[List[bytes]], None] = lambda md5s: None,
                      path: str = "", submit: Optional[Callable] = None,
                      if_none_match: bool = False) -> str:
        """Put the bytes of PARTS under KEY as a multipart upload; return the ETag
        (``multipart.upload``)."""
        return multipart.upload(self, key, parts, params, before_complete=before_complete,
                                path=path, submit=submit, if_none_match=if_none_match)

    def _holds(self, key: str, etag: str) -> bool:
        """Whether KEY holds the object of ETAG: after a create-only write was refused, the
        object in place may be this very write's (a retry whose first attempt landed, a
        task run again elsewhere), which is success, not a conflict."""
        there = self.head(key)
        return there is not None and there.etag == etag

    copy_limit = multipart.COPY_LIMIT  # above it, a copy goes in parts (a test may lower it)

    def copy_in_place(self, key: str, params: Dict, *, etag: str = "", size: int = 0,
                      part_size: int = 8 * 1024 * 1024, path: str = "") -> str:
        """Give the object under KEY the headers of PARAMS (PutObject parameters) without
        sending its body; return its new ETag. One CopyObject of the object onto itself
        with ``MetadataDirective=REPLACE``; an object of SIZE above ``copy_limit`` is copied
        in parts of PART_SIZE (more if 10,000 would not do) by a multipart upload. With
        ETAG, only if the object still has that ETag (else a ``FileError``: nothing is
        changed). Tags are kept as they are. A 200 whose body is an ``<Error>`` is that
        error (retried as a 5xx), never a success."""
        request = {name: value for name, value in params.items() if name != "Tagging"}
        source = {"Bucket": self.bucket, "Key": key}
        condition = {"CopySourceIfMatch": f'"{etag}"'} if etag else {}
        try:
            if size > self.copy_limit:
                return multipart.copy_in_parts(self, key, request, source, condition, size,
                                               part_size, path)
            answer = self.request(
                "update metadata", key, None,
                lambda client: client.copy_object(Bucket=self.bucket, Key=key,
                                                  CopySource=source,
                                                  MetadataDirective="REPLACE", **condition,
                                                  **request), path)
        except PreconditionFailed as err:
            raise FileError("the stored object changed since it was compared; its metadata "
                            "was not updated (run again)", op="update metadata", path=path,
                            key=key) from err
        return answer.get("CopyObjectResult", {}).get("ETag", "").strip('"') or etag
