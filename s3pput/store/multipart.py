"""Multipart uploads and copies: the parts of one object, a window of them at a time.

Functions over a ``Store``: its client for creating, completing and aborting an upload, its
lean path (then the client) for each part.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections import deque
from concurrent import futures
from concurrent.futures import Future
from typing import Callable, Deque, Dict, Iterable, List, Optional

from ..digest import multipart_etag
from ..errors import FileError, PreconditionFailed
from . import lazy
from .errors import _not_implemented, translate

MULTIPART_RESERVED = 10_000  # S3's limit on parts per upload
COPY_LIMIT = 5 * 1024 ** 3  # S3's limit on what one CopyObject copies


def md5_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def run_now(operation: Callable) -> Future:
    """``operation()`` done at once, in this thread, as a finished Future."""
    future: Future = Future()
    try:
        future.set_result(operation())
    except BaseException as err:  # noqa: BLE001 - handed over in the future
        future.set_exception(err)
    return future


def upload(store, key: str, parts: Iterable[bytes], params: Dict, *,
                  before_complete: Callable[[List[bytes]], None] = lambda md5s: None,
                  path: str = "", submit: Optional[Callable] = None,
                  window: int = 1, if_none_match: bool = False) -> str:
    """Put the bytes of PARTS under KEY as a multipart upload; return the ETag.

    Parts are read from PARTS in order, in the calling thread, and go up through
    SUBMIT(operation) -> Future (default: at once, in this thread), at most WINDOW at
    a time. BEFORE_COMPLETE(part md5s, in order) may raise to abandon the upload. On
    any failure the parts still in flight are waited for and the upload is aborted:
    nothing appears under KEY. IF_NONE_MATCH: complete it only if KEY does not exist
    (as ``put``; a refusal aborts the upload and raises ``PreconditionFailed``).
    """
    run = submit or run_now
    try:
        upload = store.client.create_multipart_upload(Bucket=store.bucket, Key=key, **params)
    except Exception as err:  # noqa: BLE001 - translated
        store._fail(err, "put", key, path)
    upload_id = upload["UploadId"]
    in_flight: Deque[Future] = deque()
    finished: List[tuple] = []  # (md5, etag) of each part, in part order
    try:
        for number, data in enumerate(parts, 1):
            if number > MULTIPART_RESERVED:
                raise FileError(f"more than {MULTIPART_RESERVED:,} parts: use a larger "
                                "--part-size", op="put", path=path, key=key)
            while len(in_flight) >= window:
                finished.append(in_flight.popleft().result())
            in_flight.append(run(functools.partial(
                _upload_part, store, key, upload_id, number, data, path)))
        while in_flight:
            finished.append(in_flight.popleft().result())
        before_complete([md5 for md5, _ in finished])
        complete = dict(
            Bucket=store.bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for
                                       number, (_, etag) in enumerate(finished, 1)]})
        if if_none_match and store.honours_conditions is not False:
            try:
                answer = store.client.complete_multipart_upload(**complete,
                                                               IfNoneMatch="*")
            except lazy.botocore_exceptions.ClientError as err:
                if not _not_implemented(err):
                    raise
                store.honours_conditions = False
                answer = store.client.complete_multipart_upload(**complete)
        else:
            answer = store.client.complete_multipart_upload(**complete)
    except BaseException as err:
        futures.wait(in_flight)  # their requests cannot be recalled: let them end
        abort(store, key, upload_id)
        if isinstance(err, Exception):
            failure = translate(err, op="put", bucket=store.bucket, key=key, path=path)
            if isinstance(failure, PreconditionFailed):
                mine = multipart_etag([md5 for md5, _ in finished])
                if store._holds(key, mine):
                    return mine
            raise failure from err
        raise
    return answer.get("ETag", "").strip('"')


def _upload_part(store, key: str, upload_id: str, number: int, data: bytes,
                 path: str) -> tuple:
    """One part; returns (its raw MD5, its ETag)."""
    digest = hashlib.md5(data).digest()
    if store.fast_lane is not None:
        # botocore would also hash each part with SHA-256 to sign it over plain HTTP
        # (a second pass over every byte): the lean path signs UNSIGNED-PAYLOAD and
        # relies on Content-MD5, as for single PUTs.
        etag = store.fast_lane.put(key, data, digest, {}, query={
            "partNumber": str(number), "uploadId": upload_id})
        if etag is not None:
            return digest, f'"{etag}"'
    try:
        answer = store.client.upload_part(Bucket=store.bucket, Key=key, Body=data,
                                         PartNumber=number, UploadId=upload_id,
                                         ContentMD5=md5_b64(digest))
    except Exception as err:  # noqa: BLE001 - translated
        store._fail(err, "put", key, path)
    return digest, answer["ETag"]



def copy_in_parts(store, key: str, request: Dict, source: Dict, condition: Dict,
                   size: int, part_size: int) -> str:
    part_size = max(part_size, -(-size // MULTIPART_RESERVED))
    upload_id = store.client.create_multipart_upload(Bucket=store.bucket, Key=key,
                                                    **request)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, part_size), 1):
            end = min(start + part_size, size) - 1
            answer = store.client.upload_part_copy(
                Bucket=store.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                CopySource=source, CopySourceRange=f"bytes={start}-{end}", **condition)
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        answer = store.client.complete_multipart_upload(
            Bucket=store.bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": parts})
    except BaseException:
        abort(store, key, upload_id)
        raise
    return answer.get("ETag", "").strip('"')


def abort(store, key: str, upload_id: str) -> None:
    try:
        store.client.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload_id)
    except Exception:  # noqa: BLE001 - best effort; the upload is abandoned either way
        pass
