"""Content digests and S3 ETags, computed the way the store computes them.

A single PUT's ETag is the MD5 of the body. A multipart upload's ETag is
``md5(md5(part 1) + md5(part 2) + ...)-<number of parts>``, so it depends on the part size:
``etag_matches`` recomputes with the part size the remote ETag implies when it differs
from ours.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO, Callable, List, NamedTuple

MiB = 1024 * 1024
READ_SIZE = MiB


class Digest(NamedTuple):
    """MD5 of a whole body and of each part of it, for one part size."""

    size: int
    md5: str  # hex MD5 of the whole body
    part_size: int
    part_md5s: tuple  # raw MD5 digests of each part (one part if size <= part_size)

    def etag(self, multipart: bool) -> str:
        """The ETag the store gives this body, put whole or in parts of ``part_size``."""
        if not multipart:
            return self.md5
        return multipart_etag(self.part_md5s)


def multipart_etag(part_md5s: List[bytes]) -> str:
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def digest_stream(stream: BinaryIO, part_size: int) -> Digest:
    """Read STREAM to its end once, hashing the whole and each part."""
    whole = hashlib.md5()
    parts: List[bytes] = []
    size = 0
    while True:
        part = hashlib.md5()
        left = part_size
        while left:
            chunk = stream.read(min(READ_SIZE, left))
            if not chunk:
                break
            whole.update(chunk)
            part.update(chunk)
            left -= len(chunk)
        got = part_size - left
        if got:
            parts.append(part.digest())
            size += got
        if left:
            break
    if not parts:
        parts.append(hashlib.md5(b"").digest())
    return Digest(size, whole.hexdigest(), part_size, tuple(parts))


def digest_bytes(data: bytes, part_size: int) -> Digest:
    parts = [hashlib.md5(data[i:i + part_size]).digest()
             for i in range(0, len(data), part_size)] or [hashlib.md5(b"").digest()]
    return Digest(len(data), hashlib.md5(data).hexdigest(), part_size, tuple(parts))


# Part sizes common tools use (aws-cli/boto3 8 MiB, s3cmd 15 MiB, rclone/s5cmd 5-64 MiB...).
COMMON_PART_SIZES = tuple(n * MiB for n in (5, 8, 15, 16, 10, 25, 32, 50, 64, 100, 128))


def implied_part_sizes(size: int, parts: int) -> list:
    """The part sizes that give a multipart upload of SIZE bytes exactly PARTS parts,
    most likely first: the common sizes of popular tools, then the smallest whole number
    of MiB, then the exact ceiling."""
    if parts <= 1:
        return [max(size, 1)]
    exact = -(-size // parts)
    smallest_mib = -(-exact // MiB) * MiB
    found = []
    for candidate in (*COMMON_PART_SIZES, smallest_mib, exact):
        if candidate not in found and -(-size // candidate) == parts:
            found.append(candidate)
    return found


def etag_matches(remote_etag: str, digest: Digest,
                 redigest: Callable[[int], Digest]) -> bool:
    """Does REMOTE_ETAG describe the same content as DIGEST?

    DIGEST was computed with our part size; REDIGEST(part_size) recomputes it with another
    (re-reading the content) when the remote object was put in parts of another size.
    """
    remote_etag = remote_etag.strip('"')
    if "-" not in remote_etag:
        return remote_etag == digest.md5
    try:
        parts = int(remote_etag.rsplit("-", 1)[1])
    except ValueError:
        return False
    if len(digest.part_md5s) == parts and multipart_etag(list(digest.part_md5s)) == remote_etag:
        return True
    for part_size in implied_part_sizes(digest.size, parts):
        if part_size != digest.part_size and \
                redigest(part_size).etag(multipart=True) == remote_etag:
            return True
    return False
