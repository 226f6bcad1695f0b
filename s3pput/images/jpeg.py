"""JPEG metadata: the APPn and COM segments before and between the picture's scans.

A JPEG is a chain of marker segments; the picture is the entropy-coded data after each
SOS, copied here byte for byte and never decoded. EXIF lives in an APP1 segment, XMP in
another (and, when large, in "extended XMP" APP1 segments), the ICC profile in APP2,
Adobe's colour transform in APP14. Pure; what cannot be followed raises DamagedError.
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

__all__ = ["jpeg_has_location", "strip_jpeg"]

_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_EXTENSION_ID = b"http://ns.adobe.com/xmp/extension/\x00"


def _jpeg_segments(data: bytes, start: int = 0) -> tuple[list[tuple[int, int, int]], int]:
    """The marker segments of the JPEG at ``start``: (marker, start, end) each, and where
    the picture ends (after EOI). Entropy-coded data is skipped, not decoded."""
    if data[start:start + 2] != b"\xff\xd8":
        raise DamagedError("no JPEG start marker")
    segments, pos, end = [], start + 2, len(data)
    while True:
        if pos >= end or data[pos] != 0xFF:
            raise DamagedError(f"no JPEG marker at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            raise DamagedError("JPEG ends inside a marker")
        marker, begin = data[pos], pos - 1
        pos += 1
        if marker == 0xD9:  # EOI
            return segments, pos
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if pos + 2 > end:
            raise DamagedError("JPEG ends inside a segment")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2 or pos + length > end:
            raise DamagedError(f"JPEG segment at byte {begin} has a bad length")
        segments.append((marker, begin, pos + length))
        pos += length
        if marker == 0xDA:  # scan data follows, up to the next marker that is not RSTn
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= end:
                    raise DamagedError("JPEG ends inside its picture data")
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    pos += 2 if following != 0xFF else 1
                    continue
                break


def _jpeg_payload(data: bytes, segment: tuple[int, int, int]) -> bytes:
    return data[segment[1] + 4:segment[2]]


def _jpeg_xmp_spans(data: bytes, segments) -> list[list[tuple[int, int]]]:
    """The byte spans of each XMP packet of one JPEG: the main packet's, and for each
    extended packet (cut into several segments, a property may straddle two) its chunks
    in order."""
    packets, extended = [], {}
    for marker, begin, end in segments:
        payload = data[begin + 4:end]
        if marker != 0xE1:
            continue
        if payload.startswith(_XMP_ID):
            packets.append([(begin + 4 + len(_XMP_ID), end)])
        elif payload.startswith(_XMP_EXTENSION_ID):
            head = len(_XMP_EXTENSION_ID)
            if len(payload) < head + 40:
                raise DamagedError("an extended XMP segment is too short")
            guid = payload[head:head + 32]
            (offset,) = struct.unpack_from(">I", payload, head + 36)
            extended.setdefault(guid, []).append((offset, begin + 4 + head + 40, end))
    for chunks in extended.values():
        packets.append([(start, end) for _, start, end in sorted(chunks)])
    return packets


def _jpeg_in_place(data: bytearray, segments: list[tuple[int, int, int]]) -> None:
    """Empty GPS and blank XMP location in the APP1 segments of one JPEG, in place."""
    for marker, begin, end in segments:
        payload = bytes(data[begin + 4:end])
        if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
            data[begin + 4:end] = block_without_location(payload)
    for spans in _jpeg_xmp_spans(bytes(data), segments):
        whole = blank_xmp_location(b"".join(bytes(data[start:end]) for start, end in spans))
        for start, end in spans:
            data[start:end], whole = whole[:end - start], whole[end - start:]


def jpeg_has_location(data: bytes) -> bool:
    segments, picture_end = _jpeg_segments(data)
    for marker, begin, end in segments:
        payload = data[begin + 4:end]
        if marker == 0xE1 and payload.startswith(b"Exif\x00\x00") and block_has_location(payload):
            return True
    if any(xmp_has_location(b"".join(data[start:end] for start, end in spans))
           for spans in _jpeg_xmp_spans(data, segments)):
        return True
    return scan_has_location(data[picture_end:])


def strip_jpeg(data: bytes, everything: bool) -> bytes:
    segments, picture_end = _jpeg_segments(data)
    if not everything:
        out = bytearray(data)
        _jpeg_in_place(out, segments)
        # Pictures appended after this one (MPO pairs, previews) are edited the same way.
        pos = picture_end
        while (pos := data.find(b"\xff\xd8\xff", pos)) >= 0:
            try:
                inner, inner_end = _jpeg_segments(data, pos)
            except DamagedError:
                pos += 1
                continue
            _jpeg_in_place(out, inner)
            pos = inner_end
        if scan_has_location(bytes(out[picture_end:])):
            raise ImageError("data after the picture (an appended video or other file) "
                             "carries a location that cannot be removed in place; "
                             "strip all metadata instead")
        return bytes(out)
    out = bytearray(data[:2])
    pos = 2
    for marker, begin, end in segments:
        out += data[pos:begin]  # entropy-coded data between segments
        pos = end
        payload = _jpeg_payload(data, (marker, begin, end))
        if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
            kept = block_orientation_only(payload)
            if kept is not None:
                out += b"\xff\xe1" + struct.pack(">H", len(kept) + 2) + kept
        elif _jpeg_keeps(marker, payload):
            out += data[begin:end]
    out += data[pos:picture_end]
    return bytes(out)


def _jpeg_keeps(marker: int, payload: bytes) -> bool:
    """At level "all": coding segments, JFIF, ICC profile chunks and Adobe's colour
    transform (needed to decode CMYK and YCCK) stay; other APPn and COM go."""
    if marker == 0xFE:
        return False
    if 0xE0 <= marker <= 0xEF:
        return ((marker == 0xE0 and payload.startswith(b"JFIF\x00"))
                or (marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"))
                or (marker == 0xEE and payload.startswith(b"Adobe")))
    return True
