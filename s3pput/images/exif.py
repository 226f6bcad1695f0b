"""EXIF's TIFF structure, edited in place: the location emptied without moving a byte.

An EXIF block is a little TIFF file: a header, then image file directories (IFDs) of
12-byte entries whose larger values live elsewhere in the block, found by offsets. The GPS
position is its own IFD, pointed to by tag 0x8825 of IFD0. Emptying that IFD where it lies
(no entries, its values zeroed) keeps every other offset valid, so the same edit works in
any container: a JPEG segment, a PNG or WebP chunk, a HEIF item, a TIFF file.

Pure: bytes in, bytes out. Structures that cannot be followed raise ``DamagedError``.
"""

from __future__ import annotations

import re
import struct

from .xmp import blank_xmp_location, xmp_has_location

__all__ = ["DamagedError", "block_has_location", "block_orientation_only",
           "block_without_location", "empty_gps", "exif_orientation", "has_gps",
           "minimal_exif_tiff", "scan_has_location", "tiff_start", "xmp_ranges"]

GPS_IFD_TAG = 0x8825
ORIENTATION_TAG = 0x0112
XMP_TAG = 0x02BC  # XMLPacket: TIFF files (and some EXIF blocks) carry XMP here
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
               13: 4}
_MAX_IFDS = 64  # a longer chain (or a loop) is damage, not a picture


class DamagedError(ValueError):
    """A metadata structure that cannot be followed; the message says where."""


def tiff_start(block: bytes) -> int:
    """Where the TIFF header starts in an EXIF block: after an ``Exif\\0\\0`` prefix (JPEG
    and some other writers), else at 0."""
    return 6 if block[:6] == b"Exif\x00\x00" else 0


def _order(tiff: bytes) -> str:
    if tiff[:4] in (b"II*\x00", b"MM\x00*"):
        return "<" if tiff[:2] == b"II" else ">"
    raise DamagedError("EXIF does not start with a TIFF header")


def _read(fmt: str, tiff: bytes, offset: int) -> tuple:
    try:
        return struct.unpack_from(fmt, tiff, offset)
    except struct.error:
        raise DamagedError(f"EXIF offset {offset} is past its end ({len(tiff)} bytes)") \
            from None


def _entries(tiff: bytes, order: str, ifd: int) -> list[tuple[int, int, int, int, int]]:
    """(tag, type, count, where its value is, entry offset) for each entry of the IFD at
    ``ifd``, values located and bounds-checked."""
    (count,) = _read(order + "H", tiff, ifd)
    if ifd + 2 + 12 * count > len(tiff):
        raise DamagedError(f"EXIF directory at {ifd} runs past the end")
    entries = []
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, n = _read(order + "HHI", tiff, entry)
        size = _TYPE_SIZES.get(kind)
        if size is None:
            raise DamagedError(f"EXIF tag 0x{tag:04x} has unknown type {kind}")
        where = entry + 8
        if size * n > 4:
            (where,) = _read(order + "I", tiff, entry + 8)
            if where + size * n > len(tiff):
                raise DamagedError(f"EXIF tag 0x{tag:04x} points past the end")
        entries.append((tag, kind, n * size, where, entry))
    return entries


def _ifd_chain(tiff: bytes, order: str) -> list[int]:
    """The offsets of IFD0, IFD1, ... (the main chain)."""
    (offset,) = _read(order + "I", tiff, 4)
    chain: list[int] = []
    while offset and len(chain) < _MAX_IFDS:
        if offset in chain:
            raise DamagedError("EXIF directories form a loop")
        chain.append(offset)
        (count,) = _read(order + "H", tiff, offset)
        (offset,) = _read(order + "I", tiff, offset + 2 + 12 * count)
    return chain


def _pointer(tiff: bytes, order: str, where: int) -> int:
    (value,) = _read(order + "I", tiff, where)
    return value


def _gps_ifds(tiff: bytes, order: str) -> list[int]:
    found = []
    for ifd in _ifd_chain(tiff, order):
        for tag, _, _, where, _ in _entries(tiff, order, ifd):
            if tag == GPS_IFD_TAG:
                found.append(_pointer(tiff, order, where))
    return [offset for offset in found if offset]


def xmp_ranges(tiff: bytes) -> list[tuple[int, int]]:
    """The (start, end) of each XMP packet held in tag 700 of the main IFDs."""
    order = _order(tiff)
    return [(where, where + size) for ifd in _ifd_chain(tiff, order)
            for tag, _, size, where, _ in _entries(tiff, order, ifd) if tag == XMP_TAG]


def has_gps(tiff: bytes) -> bool:
    """Whether the TIFF structure ``tiff`` holds a GPS IFD with at least one entry.
    Raises DamagedError."""
    order = _order(tiff)
    return any(_entries(tiff, order, ifd) for ifd in _gps_ifds(tiff, order))


def empty_gps(tiff: bytes) -> bytes:
    """``tiff`` with every GPS IFD emptied in place (no entries; its entries and their
    values overwritten with zeros): the same length, every other byte and offset
    unchanged. Raises DamagedError."""
    order = _order(tiff)
    out = bytearray(tiff)
    for ifd in _gps_ifds(tiff, order):
        entries = _entries(tiff, order, ifd)
        for _, _, size, where, entry in entries:
            if where != entry + 8:  # the value lives outside the entry
                out[where:where + size] = bytes(size)
        end = ifd + 2 + 12 * len(entries) + 4
        out[ifd:end] = bytes(end - ifd)  # count 0, next IFD 0, old entries zeroed
    return bytes(out)


def exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of IFD0, or None if there is none. Raises DamagedError when
    IFD0 cannot be read."""
    order = _order(tiff)
    chain = _ifd_chain(tiff, order)
    if not chain:
        return None
    for tag, kind, _, where, _ in _entries(tiff, order, chain[0]):
        if tag == ORIENTATION_TAG and kind == 3:
            (value,) = _read(order + "H", tiff, where)
            return value
    return None


def minimal_exif_tiff(orientation: int | None, big_endian: bool = False) -> bytes:
    """A TIFF structure with one IFD holding only ``orientation`` (none if None)."""
    order = ">" if big_endian else "<"
    header = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(order + "I", 8)
    if orientation is None:
        return header + struct.pack(order + "HI", 0, 0)
    return header + struct.pack(order + "HHHIHHI", 1, ORIENTATION_TAG, 3, 1, orientation,
                                0, 0)


# --- EXIF blocks as containers hold them -------------------------------------------

def block_has_location(block: bytes) -> bool:
    """Whether an EXIF block (with or without its ``Exif\\0\\0`` prefix) holds a GPS
    position, in its GPS IFD or in XMP tag 700."""
    tiff = block[tiff_start(block):]
    return has_gps(tiff) or any(xmp_has_location(tiff[start:end])
                                     for start, end in xmp_ranges(tiff))


def block_without_location(block: bytes) -> bytes:
    """An EXIF block with its GPS IFD emptied and XMP tag 700's location blanked, in
    place: the same length, every offset still valid."""
    start = tiff_start(block)
    tiff = bytearray(empty_gps(block[start:]))
    for begin, end in xmp_ranges(bytes(tiff)):
        tiff[begin:end] = blank_xmp_location(bytes(tiff[begin:end]))
    return block[:start] + bytes(tiff)


def block_orientation_only(block: bytes) -> bytes | None:
    """An EXIF block (same prefix, same byte order) holding only the orientation of
    ``block``, or None when it has none."""
    start = tiff_start(block)
    orientation = exif_orientation(block[start:])
    if orientation is None:
        return None
    return block[:start] + minimal_exif_tiff(orientation, block[start:start + 2] == b"MM")


def scan_has_location(trailer: bytes) -> bool:
    """Whether bytes of no known structure (after the end of a picture: a second picture,
    an appended video) look like they hold a location: EXIF with GPS, XMP location
    properties, a QuickTime or 3GPP location box."""
    if b"\xa9xyz" in trailer or b"loci" in trailer or xmp_has_location(trailer):
        return True
    for found in re.finditer(rb"Exif\x00\x00", trailer):
        try:
            if has_gps(trailer[found.end():]):
                return True
        except DamagedError:
            continue
    return False
