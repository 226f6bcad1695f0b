"""WebP metadata: the EXIF and ``XMP `` chunks of its RIFF container.

A WebP with metadata is "extended" (a VP8X chunk first, whose flags say which optional
chunks follow); chunks are padded to even sizes and the RIFF header holds the total size.
Pure; what cannot be followed raises DamagedError.
"""

from __future__ import annotations

import struct

from s3pput.errors import ImageError

from .exif import (
    DamagedError,
    block_has_location,
    block_orientation_only,
    block_without_location,
    scan_has_location,
)
from .xmp import blank_xmp_location, xmp_has_location

__all__ = ["strip_webp", "webp_has_location"]

_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04
_WEBP_KEPT = {b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP", b"EXIF"}


def _webp_chunks(data: bytes) -> tuple[list[tuple[bytes, int, int]], int]:
    """(fourcc, body start, body end) of each chunk, and where the RIFF container ends."""
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = 8 + riff_size
    if end > len(data) or riff_size < 4:
        raise DamagedError("the RIFF size is larger than the file")
    chunks, pos = [], 12
    while pos + 8 <= end:
        kind, size = struct.unpack_from("<4sI", data, pos)
        if pos + 8 + size > end:
            raise DamagedError(f"WebP chunk {kind!r} runs past the end")
        chunks.append((kind, pos + 8, pos + 8 + size))
        pos += 8 + size + (size & 1)
    return chunks, end


def webp_has_location(data: bytes) -> bool:
    chunks, end = _webp_chunks(data)
    return any((kind == b"EXIF" and block_has_location(data[start:stop]))
               or (kind == b"XMP " and xmp_has_location(data[start:stop]))
               for kind, start, stop in chunks) or scan_has_location(data[end:])


def strip_webp(data: bytes, everything: bool) -> bytes:
    chunks, riff_end = _webp_chunks(data)
    if not everything:
        out = bytearray(data)
        for kind, start, stop in chunks:
            if kind == b"EXIF":
                out[start:stop] = block_without_location(data[start:stop])
            elif kind == b"XMP ":
                out[start:stop] = blank_xmp_location(data[start:stop])
        if scan_has_location(data[riff_end:]):
            raise ImageError("data after the WebP's end carries a location that cannot be "
                             "removed in place; strip all metadata instead")
        return bytes(out)
    body, flags_at, has_exif = bytearray(b"WEBP"), None, False
    for kind, start, stop in chunks:
        payload = data[start:stop]
        if kind == b"EXIF":
            payload = block_orientation_only(payload)
            if payload is None:
                continue
            has_exif = True
        elif kind not in _WEBP_KEPT:
            continue
        if kind == b"VP8X":
            flags_at = len(body) + 8
        body += kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)
    if flags_at is not None:
        flags = body[flags_at] & ~(_VP8X_EXIF | _VP8X_XMP)
        body[flags_at] = flags | (_VP8X_EXIF if has_exif else 0)
    return b"RIFF" + struct.pack("<I", len(body)) + bytes(body)
