"""The S3 store: the few operations s3pput needs, with errors translated (``errors``).

Everything else talks to the store through ``Store``'s small interface; ``dryrun`` has the
store that records instead of writing. Single PUTs, parts and listing pages try the lean
path first (``lean``); multipart uploads and copies in parts are ``multipart``'s.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

from ..errors import (
    ConfigError,
    ConnectionFailure,
    FatalError,
    FileError,
    PreconditionFailed,
    S3pputError,
)
from ..headers import from_http
from ..jobs import RemoteObject
from . import lazy, multipart
from .errors import FATAL_CODES, THROTTLE_CODES, _not_implemented, error_code, translate
from .lean import Credentials, FastPut, Route
from .multipart import md5_b64


class Access(NamedTuple):
    """What the up-front check found out (``Store.check_bucket``)."""

    can_list: bool  # the credentials may list the bucket
    first_page: Optional[tuple] = None  # (items, continuation token) of the prefix asked



class Store:
    """The S3 store: the few operations s3pput needs, with errors translated."""

    def __init__(self, client_factory: Callable[[], object], bucket: str, *,
                 fast: bool = False, timeout: float = 60.0,
                 verify_ssl: Union[bool, str] = True,
                 lean: Optional[Tuple[Route, Credentials]] = None):
        """CLIENT_FACTORY makes the boto3 client on first use (a dry run that only
        records never pays for one). FAST: try ``fastput.FastPut`` first for single-part
        PUTs and listing pages; LEAN: its route and credentials, to start it without a
        client (``lean_start``)."""
        self.client_factory = client_factory
        self.bucket = bucket
        self.fast = fast
        self.timeout = timeout
        self.verify_ssl = verify_ssl
        self.lean = lean
        self._client = None
        self._fast_lane: Optional[FastPut] = None
        self._lock = threading.Lock()
        # Whether the store honours If-None-Match/If-Match on PUT: None until known. False
        # once it answered 501 NotImplemented to them (then If-None-Match is no longer
        # sent); True once ``overlap.probe`` saw it refuse what it must refuse.
        self.honours_conditions: Optional[bool] = None
        # Called (from any thread) whenever the store answers 503/429/SlowDown, by either
        # path: the putter's concurrency controller backs off on it.
        self.on_throttle: Callable[[], None] = lambda: None

    @property
    def client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = self.client_factory()
                    client.meta.events.register("needs-retry.s3", self._note_throttle)
                    if self.fast and self._fast_lane is None:
                        self._fast_lane = FastPut.of_client(
                            client, self.bucket, self.timeout, self.verify_ssl,
                            on_throttle=lambda: self.on_throttle())
                    self._client = client
        return self._client

    def close(self) -> None:
        """Close this thread's fast-path connection (the process keeps no socket it will
        not use again: a forked child would inherit it)."""
        if self._fast_lane is not None:
            self._fast_lane.close()

    def _note_throttle(self, response=None, **_ignored) -> None:
        """botocore's needs-retry event: tell ``on_throttle`` about throttling answers
        (the retry decision itself stays botocore's: this returns None)."""
        if response is None:
            return
        http, parsed = response
        code = (parsed or {}).get("Error", {}).get("Code", "")
        if getattr(http, "status_code", 0) in (429, 503) or code in THROTTLE_CODES:
            self.on_throttle()

    @property
    def fast_lane(self) -> Optional[FastPut]:
        """The lean path (None without ``fast``): made without a client when ``lean``
        says how, else beside the client (which is then made)."""
        if self._fast_lane is None and self.fast:
            if self.lean is not None:
                with self._lock:
                    if self._fast_lane is None:
                        route, credentials = self.lean
                        self._fast_lane = FastPut(route, lambda: credentials, self.timeout,
                                                  self.verify_ssl,
                                                  on_throttle=lambda: self.on_throttle())
            else:
                self.client  # noqa: B018 - makes the client, and the lane beside it
        return self._fast_lane

    def _fail(self, err: BaseException, op: str, key: str = "", path: str = ""):
        raise translate(err, op=op, bucket=self.bucket, key=key, path=path) from err

    def check_bucket(self, prefix: Optional[str] = None) -> "Access":
        """Check endpoint, trust, credentials and bucket once, before anything is written;
        return whether listing is allowed, and the first page of PREFIX's listing when a
        PREFIX is given (the walker goes on from there).

        When all is well this costs one request, a LIST (of PREFIX's first page, or of one
        key), on the fast path when it may; a HEAD of the bucket only when the LIST is
        refused, to tell a missing bucket, another region or bad credentials from a
        missing list permission.

        Raises ``ConfigError`` with one clear message when the run cannot work: up front,
        every failure is fatal (an unreachable endpoint too, after the client's retries).
        """
        try:
            return self._check_bucket(prefix)
        except FatalError:
            raise
        except ConnectionFailure as err:
            raise ConfigError(f"cannot reach {err.endpoint or 'the endpoint'}: {err.reason} "
                              "(check --endpoint-url, and that the store is up)") from err
        except S3pputError as err:
            raise ConfigError(f"cannot use bucket {self.bucket!r}: {err.message}") from err

    def _check_bucket(self, prefix: Optional[str]) -> "Access":
        try:
            if self.fast_lane is not None:
                page = self.fast_lane.list_page(prefix or "",
                                                max_keys=0 if prefix is not None else 1)
                if page is not None:
                    return Access(True, page if prefix is not None else None)
            if prefix is None:
                self._boto3_page("", MaxKeys=1)
                return Access(True)
            return Access(True, self._boto3_page(prefix))
        except lazy.botocore_exceptions.ClientError as err:
            # A missing bucket, another region, or no permission to list: the HEAD of the
            # bucket tells which (and names the region); bad credentials are final.
            if error_code(err) in FATAL_CODES and error_code(err) not in (
                    "NoSuchBucket", "PermanentRedirect"):
                self._fail(err, "check bucket")
            return Access(self._head_bucket(err))
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "check bucket")

    def _head_bucket(self, refused: lazy.botocore_exceptions.ClientError) -> bool:
        """The LIST was REFUSED: ask the bucket itself why. A missing bucket and another
        region are fatal; a bucket that exists but may not be listed is not (its keys are
        then asked for one HEAD each): returns False."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except lazy.botocore_exceptions.ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or error_code(err) in ("404", "NoSuchBucket"):
                raise ConfigError(f"bucket {self.bucket!r} does not exist") from err
            if status == 301:
                region = err.response.get("ResponseMetadata", {}).get(
                    "HTTPHeaders", {}).get("x-amz-bucket-region")
                hint = f"--region {region}" if region else "--region"
                raise ConfigError(f"bucket {self.bucket!r} is in another region: use "
                                  f"{hint}") from err
            if status not in (400, 403):
                self._fail(err, "check bucket")
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "check bucket")
        if error_code(refused) == "AccessDenied":
            return False
        self._fail(refused, "check bucket")
        return False

    def head(self, key: str) -> Optional[RemoteObject]:
        """What the store holds under KEY (None: nothing), its headers included."""
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except lazy.botocore_exceptions.ClientError as err:
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            self._fail(err, "head", key)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "head", key)
        raw = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return RemoteObject(key, int(answer["ContentLength"]), answer["ETag"].strip('"'),
                            answer.get("StorageClass", ""), from_http(raw))

    def list_objects(self, prefix: str, delimiter: str = "",
                     first_page: Optional[tuple] = None) -> Iterator[RemoteObject]:
        """Stream the objects under PREFIX, one page (1,000 keys) per request. S3 lists in
        UTF-8 byte order; not every compatible store does, so callers assume no order.
        Each page tries the fast path first (botocore's parser costs about 25 ms a page).
        FIRST_PAGE: (items, continuation token) already read (``check_bucket``'s)."""
        if first_page is not None:
            items, token = first_page
            for item in items:
                yield RemoteObject(*item)
            if not token:
                return
        else:
            token = ""
        while True:
            page = self.fast_lane.list_page(prefix, token, delimiter) \
                if self.fast_lane is not None else None
            if page is None:
                page = self._list_page(prefix, token, delimiter)
            items, token = page
            for item in items:
                yield RemoteObject(*item)
            if not token:
                return

    def _list_page(self, prefix: str, token: str, delimiter: str = ""):
        try:
            return self._boto3_page(prefix, token, delimiter)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "list", prefix)

    def _boto3_page(self, prefix: str, token: str = "", delimiter: str = "", **extra):
        """One ListObjectsV2 page through boto3: ([(key, size, etag)], next token or "");
        botocore's errors as they are."""
        request = {"Bucket": self.bucket, "Prefix": prefix, **extra}
        if delimiter:
            request["Delimiter"] = delimiter
        if token:
            request["ContinuationToken"] = token
        page = self.client.list_objects_v2(**request)
        items = [(item["Key"], int(item["Size"]), item["ETag"].strip('"'),
                  item.get("StorageClass", "")) for item in page.get("Contents", ())]
        next_token = page.get("NextContinuationToken") or ""
        return items, next_token if page.get("IsTruncated") else ""

    def get(self, key: str) -> Optional[bytes]:
        found = self.get_with_etag(key)
        return found[0] if found is not None else None

    def get_with_etag(self, key: str) -> Optional[Tuple[bytes, str]]:
        """(the body under KEY, its ETag without quotes), or None when there is none: the
        ETag to replace exactly this version with ``put(..., if_match=etag)``."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            return answer["Body"].read(), answer.get("ETag", "").strip('"')
        except lazy.botocore_exceptions.ClientError as err:
            if error_code(err) in ("NoSuchKey", "404"):
                return None
            self._fail(err, "get", key)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "get", key)
        return None

    def delete(self, key: str) -> None:
        """Remove KEY (a key that is not there is no error)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "delete", key)

    def put(self, key: str, data: bytes, params: Dict, *, md5: Optional[bytes] = None,
            path: str = "", if_none_match: bool = False, if_match: Optional[str] = None) -> str:
        """Put DATA under KEY in one request; return the ETag. The store checks the MD5
        (MD5: DATA's raw MD5 when the caller has it already).

        IF_NONE_MATCH: only if KEY does not exist (``If-None-Match: *``); IF_MATCH (an ETag):
        only if KEY still holds that version. A refusal raises ``PreconditionFailed``. A
        store that answers 501 NotImplemented to the headers is remembered
        (``honours_conditions = False``): If-None-Match is then dropped and the PUT sent
        again as a plain one; If-Match is never dropped (a ``FileError`` says why)."""
        digest = md5 or hashlib.md5(data).digest()
        try:
            return self._put(key, data, params, digest, path, if_none_match, if_match)
        except PreconditionFailed:
            if if_none_match and self._holds(key, digest.hex()):
                return digest.hex()
            raise

    def _put(self, key: str, data: bytes, params: Dict, digest: bytes, path: str,
             if_none_match: bool, if_match: Optional[str]) -> str:
        conditional = dict(params)
        if if_none_match and self.honours_conditions is not False:
            conditional["IfNoneMatch"] = "*"
        if if_match:
            conditional["IfMatch"] = f'"{if_match}"'
        if self.fast_lane is not None:
            etag = self.fast_lane.put(key, data, digest, conditional)
            if etag is not None:
                return etag
        try:
            answer = self.client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                            ContentMD5=md5_b64(digest), **conditional)
        except Exception as err:  # noqa: BLE001 - translated
            if conditional.keys() - params.keys() and _not_implemented(err):
                self.honours_conditions = False
                if if_match:
                    raise FileError("the store does not support conditional writes (501 "
                                    "NotImplemented to If-Match)", op="put", path=path,
                                    key=key) from err
                return self._put(key, data, params, digest, path, False, None)
            self._fail(err, "put", key, path)
        return answer.get("ETag", "").strip('"') or digest.hex()

    def put_multipart(self, key: str, parts: Iterable[bytes], params: Dict, *,
                      before_complete: Callable[[List[bytes]], None] = lambda md5s: None,
                      path: str = "", submit: Optional[Callable] = None,
                      window: int = 1, if_none_match: bool = False) -> str:
        """Put the bytes of PARTS under KEY as a multipart upload; return the ETag
        (``multipart.upload``)."""
        return multipart.upload(self, key, parts, params, before_complete=before_complete,
                                path=path, submit=submit, window=window,
                                if_none_match=if_none_match)

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
        changed). Tags are kept as they are."""
        request = {name: value for name, value in params.items() if name != "Tagging"}
        source = {"Bucket": self.bucket, "Key": key}
        condition = {"CopySourceIfMatch": f'"{etag}"'} if etag else {}
        try:
            if size > self.copy_limit:
                return multipart.copy_in_parts(self, key, request, source, condition, size,
                                               part_size)
            answer = self.client.copy_object(Bucket=self.bucket, Key=key, CopySource=source,
                                             MetadataDirective="REPLACE", **condition,
                                             **request)
        except lazy.botocore_exceptions.ClientError as err:
            if error_code(err) == "PreconditionFailed":
                raise FileError("the stored object changed since it was compared; its "
                                "metadata was not updated (run again)", op="update metadata",
                                path=path, key=key) from err
            self._fail(err, "update metadata", key, path)
        except Exception as err:  # noqa: BLE001 - translated
            self._fail(err, "update metadata", key, path)
        return answer.get("CopyObjectResult", {}).get("ETag", "").strip('"') or etag

