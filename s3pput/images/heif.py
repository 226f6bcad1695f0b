"""HEIF and AVIF metadata: the Exif and XMP items, edited where they lie.

Removing or resizing an item would mean rewriting the ``iloc`` offsets of every item
after it (and the ``mdat`` size), so every edit here keeps each item's length: the GPS IFD
emptied in place, XMP properties overwritten with spaces; at level "all" the EXIF
replaced by one holding only the orientation (zero-padded) and the XMP by an empty packet
(space-padded). The coded pictures and the ``colr`` profile are not touched. Pure; what
cannot be followed raises DamagedError.
"""

from __future__ import annotations

import struct
import zlib

from s3pput.errors import ImageError

from .bmff import metadata_items
from .exif import (
    DamagedError,
    block_has_location,
    block_without_location,
    exif_orientation,
    minimal_exif_tiff,
    tiff_start,
)
from .xmp import blank_xmp_location, empty_xmp_packet, xmp_has_location

__all__ = ["heif_has_location", "strip_heif"]

def _item_data(data: bytes, extents) -> bytes:
    return b"".join(data[start:end] for start, end in extents)


def heif_has_location(data: bytes) -> bool:
    for item in metadata_items(data):
        payload = _item_data(data, item.extents)
        if item.kind == "exif" and block_has_location(_heif_exif_block(payload)):
            return True
        if item.kind == "xmp" and _heif_xmp(item, payload) and xmp_has_location(payload):
            return True
    return False


def _heif_exif_block(payload: bytes) -> bytes:
    """The EXIF block of an Exif item: after its 4-byte offset to the TIFF header."""
    if len(payload) < 4:
        raise DamagedError("an Exif item is too short")
    (skip,) = struct.unpack_from(">I", payload, 0)
    if 4 + skip > len(payload):
        raise DamagedError("an Exif item's header offset points past its end")
    return payload[4 + skip:]


def _heif_xmp(item, payload: bytes) -> bool:
    """Whether an XMP item can be read as it is (not compressed)."""
    if item.encoding and item.encoding.lower() not in ("", "identity"):
        try:
            inflated = zlib.decompress(payload, 47)  # zlib or gzip
        except zlib.error:
            inflated = b""
        if xmp_has_location(inflated) or not inflated:
            raise ImageError(f"a {item.encoding}-compressed XMP item may carry a location "
                             "and cannot be edited in place")
        return False
    return True


def strip_heif(data: bytes, everything: bool) -> bytes:
    out = bytearray(data)
    for item in metadata_items(data):
        payload = _item_data(data, item.extents)
        if item.kind == "exif":
            block = _heif_exif_block(payload)
            head = payload[:len(payload) - len(block)]
            tiff_at = tiff_start(block)
            if not everything:
                new = head + block_without_location(block)
            else:
                tiff = block[tiff_at:]
                kept = minimal_exif_tiff(exif_orientation(tiff), tiff[:2] == b"MM")
                if len(kept) > len(tiff):
                    kept = minimal_exif_tiff(None, tiff[:2] == b"MM")[:len(tiff)]
                new = head + block[:tiff_at] + kept + bytes(len(tiff) - len(kept))
        elif not _heif_xmp(item, payload):
            continue
        elif not everything:
            new = blank_xmp_location(payload)
        else:
            new = empty_xmp_packet(len(payload))
        assert len(new) == len(payload)  # every HEIF edit keeps the item's length
        for start, end in item.extents:
            out[start:end], new = new[:end - start], new[end - start:]
    return bytes(out)
