"""Multipart uploads and copies: the parts of one object, each one request of the store
(retried by its policy). How many parts are in flight at once is the caller's to say
(``submit``, see ``run.concurrency.PartWindow``); the part size is chosen up front from the
file's size (``part_size_for``), never found too small at part 10,001.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from concurrent import futures
from concurrent.futures import Future
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Tuple

from ..digest import multipart_etag
from ..errors import FileError, PreconditionFailed
from .errors import not_implemented

if TYPE_CHECKING:
    from .s3 import Store

MiB = 1024 * 1024
MULTIPART_RESERVED = 10_000  # S3's limit on parts per upload
COPY_LIMIT = 5 * 1024 ** 3  # S3's limit on what one CopyObject copies


def part_size_for(size: int, preferred: int) -> int:
    """The part size of an object of SIZE bytes: PREFERRED, or the smallest whole number of
    MiB above it that keeps the upload within S3's 10,000 parts (as s3transfer's
    ``ChunksizeAdjuster`` does)."""
    needed = -(-size // MULTIPART_RESERVED)
    if needed <= preferred:
        return preferred
    return -(-needed // MiB) * MiB


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


def upload(store: "Store", key: str, parts: Iterable, params: Dict, *,
           before_complete: Callable[[List[bytes]], None] = lambda md5s: None,
           path: str = "", submit: Optional[Callable] = None,
           if_none_match: bool = False) -> str:
    """Put the bytes of PARTS (bytes or buffers, read in order in the calling thread)
    under KEY as a multipart upload; return the ETag.

    Each part goes up through SUBMIT(operation) -> Future (default: at once, in this
    thread), which holds the caller's window of parts in flight. BEFORE_COMPLETE(part
    md5s, in order) may raise to abandon the upload. On any failure the parts still in
    flight are waited for and the upload is aborted: nothing appears under KEY.
    IF_NONE_MATCH: complete it only if KEY does not exist (a refusal aborts the upload and
    raises ``PreconditionFailed``, unless the object in place is this very upload's)."""
    run = submit or run_now
    upload_id = store.request(
        "put", key, lambda lean: lean.create_multipart(key, params),
        lambda client: client.create_multipart_upload(Bucket=store.bucket, Key=key,
                                                      **params)["UploadId"], path)
    sent: List[Future] = []
    finished: List[Tuple[bytes, str]] = []  # (md5, ETag) of each part, in part order
    try:
        for number, data in enumerate(parts, 1):
            if number > MULTIPART_RESERVED:
                raise FileError(f"more than {MULTIPART_RESERVED:,} parts (the file grew "
                                "while it was read?)", op="put", path=path, key=key)
            sent.append(run(functools.partial(_upload_part, store, key, upload_id, number,
                                              data, path)))
        finished = [future.result() for future in sent]
        before_complete([md5 for md5, _ in finished])
        etag = _complete(store, key, upload_id, [etag for _, etag in finished], path,
                         if_none_match)
    except BaseException as err:
        futures.wait(sent)  # their requests cannot be recalled: let them end
        abort(store, key, upload_id)
        if isinstance(err, PreconditionFailed) and finished:
            mine = multipart_etag([md5 for md5, _ in finished])
            if store._holds(key, mine):
                return mine
        raise
    return etag


def _complete(store: "Store", key: str, upload_id: str, etags: List[str], path: str,
              if_none_match: bool) -> str:
    numbered = list(enumerate(etags, 1))
    condition = if_none_match and store.honours_conditions is not False

    def boto(client):
        extra = {"IfNoneMatch": "*"} if condition else {}
        answer = client.complete_multipart_upload(
            Bucket=store.bucket, Key=key, UploadId=upload_id, **extra,
            MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag}
                                       for number, etag in numbered]})
        return answer.get("ETag", "").strip('"')

    try:
        return store.request("put", key, lambda lean: lean.complete_multipart(
            key, upload_id, numbered, if_none_match=condition), boto, path)
    except FileError as err:
        if not condition or not not_implemented(err):
            raise
        store.honours_conditions = False
        return _complete(store, key, upload_id, etags, path, False)


def _upload_part(store: "Store", key: str, upload_id: str, number: int, data,
                 path: str) -> Tuple[bytes, str]:
    """One part; returns (its raw MD5, its ETag). On the lean path the part is signed
    UNSIGNED-PAYLOAD and protected by its Content-MD5 (botocore would also hash it with
    SHA-256 to sign it over plain HTTP: a second pass over every byte)."""
    digest = hashlib.md5(data).digest()
    query = {"partNumber": str(number), "uploadId": upload_id}

    def boto(client):
        return client.upload_part(Bucket=store.bucket, Key=key, Body=bytes(data),
                                  PartNumber=number, UploadId=upload_id,
                                  ContentMD5=md5_b64(digest))["ETag"].strip('"')

    etag = store.request("put", key, lambda lean: lean.put(key, data, digest, {}, query),
                         boto, path)
    return digest, f'"{etag}"'


def copy_in_parts(store: "Store", key: str, request: Dict, source: Dict, condition: Dict,
                  size: int, part_size: int, path: str = "") -> str:
    """Copy the object under KEY onto itself in parts (above ``COPY_LIMIT``), with the
    headers of REQUEST; return the new ETag."""
    part_size = part_size_for(size, part_size)

    def call(operation: str, **kwargs):
        return store.request("update metadata", key, None,
                             lambda client: getattr(client, operation)(
                                 Bucket=store.bucket, Key=key, **kwargs), path)

    upload_id = call("create_multipart_upload", **request)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, part_size), 1):
            end = min(start + part_size, size) - 1
            answer = call("upload_part_copy", UploadId=upload_id, PartNumber=number,
                          CopySource=source, CopySourceRange=f"bytes={start}-{end}",
                          **condition)
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        answer = call("complete_multipart_upload", UploadId=upload_id,
                      MultipartUpload={"Parts": parts})
    except BaseException:
        abort(store, key, upload_id)
        raise
    return answer.get("ETag", "").strip('"')


def abort(store: "Store", key: str, upload_id: str) -> None:
    """Abort the upload, best effort (one attempt): it is abandoned either way."""
    try:
        store._attempt("put", key, lambda lean: lean.abort_multipart(key, upload_id),
                       lambda client: client.abort_multipart_upload(
                           Bucket=store.bucket, Key=key, UploadId=upload_id))
    except Exception:  # noqa: BLE001 - best effort
        pass
