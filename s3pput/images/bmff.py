"""Where a HEIF or AVIF file keeps its metadata items: ISO-BMFF boxes, read not written.

HEIF (ISO/IEC 23008-12) and AVIF store EXIF and XMP as items of the file-level ``meta``
box: ``iinf`` says each item's type (``Exif``, or ``mime`` with a content type such as
``application/rdf+xml`` for XMP), ``iloc`` says which byte ranges of the file (or of the
``idat`` box) hold it. ``metadata_items`` returns those ranges, so that an edit which keeps
every length can be written straight back. Pure; structures it cannot follow raise
``DamagedError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .exif import DamagedError

__all__ = ["Item", "metadata_items"]

XMP_CONTENT_TYPE = "application/rdf+xml"


@dataclass(frozen=True)
class Item:
    """One EXIF or XMP item: what it is and the file byte ranges holding its data."""

    item_id: int
    kind: str  # "exif" or "xmp"
    extents: tuple[tuple[int, int], ...]  # (start, end) in the file, in data order
    encoding: str = ""  # the XMP item's content encoding ("" = none; else compressed)


class _Reader:
    """Bounded big-endian reads from ``data[start:end]``."""

    def __init__(self, data: bytes, start: int, end: int):
        self.data, self.pos, self.end = data, start, end

    def take(self, size: int) -> bytes:
        if self.pos + size > self.end:
            raise DamagedError("a HEIF box ends early")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big") if size else 0

    def cstring(self) -> str:
        stop = self.data.find(b"\x00", self.pos, self.end)
        if stop < 0:  # a last string may end with its box instead of a NUL
            stop = self.end
        text = self.data[self.pos:stop].decode("utf-8", "replace")
        self.pos = min(stop + 1, self.end)
        return text


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, box end) of each box in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise DamagedError("a HEIF box ends early")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise DamagedError(f"HEIF box {kind!r} has a bad size")
        yield kind, pos + header, pos + size
        pos += size
    if pos != end:
        raise DamagedError("trailing bytes after the last HEIF box")


def metadata_items(data: bytes) -> list[Item]:
    """The EXIF and XMP items of the file-level ``meta`` box, with their byte ranges.

    Items stored in another file (a data reference) or built from other items are not in
    these bytes and are left out; a file with no ``meta`` box has none. Raises
    DamagedError when the boxes cannot be followed or a range falls outside the file.
    """
    meta = next(((start, end) for kind, start, end in _boxes(data, 0, len(data))
                 if kind == b"meta"), None)
    if meta is None:
        return []
    children = {}
    idat = None
    for kind, start, end in _boxes(data, meta[0] + 4, meta[1]):  # meta is a FullBox
        if kind == b"idat":
            idat = (start, end)
        children.setdefault(kind, (start, end))
    if b"iinf" not in children or b"iloc" not in children:
        return []
    kinds = _item_kinds(data, *children[b"iinf"])
    found = []
    for item_id, method, reference, extents in _locations(data, *children[b"iloc"]):
        if item_id not in kinds or reference != 0 or method == 2:
            continue
        if method == 1:
            if idat is None:
                raise DamagedError("a HEIF item is in an idat box the file lacks")
            base, limit = idat
        else:
            base, limit = 0, len(data)
        ranges = []
        for offset, length in extents:
            start = base + offset
            end = limit if length == 0 else start + length
            if not base <= start <= end <= limit:
                raise DamagedError(f"HEIF item {item_id} lies outside the file")
            ranges.append((start, end))
        kind, encoding = kinds[item_id]
        found.append(Item(item_id, kind, tuple(ranges), encoding))
    return found


def _item_kinds(data: bytes, start: int, end: int) -> dict[int, tuple[str, str]]:
    """item_ID -> ("exif" | "xmp", content encoding) from ``iinf``."""
    reader = _Reader(data, start, end)
    version = reader.uint(1)
    reader.take(3)
    reader.uint(2 if version == 0 else 4)  # entry count: the boxes that follow say it
    kinds = {}
    for kind, box_start, box_end in _boxes(data, reader.pos, end):
        if kind != b"infe":
            continue
        entry = _Reader(data, box_start, box_end)
        infe_version = entry.uint(1)
        entry.take(3)
        if infe_version >= 2:
            item_id = entry.uint(2 if infe_version == 2 else 4)
            entry.uint(2)  # protection index
            item_type = entry.take(4)
            entry.cstring()  # item name
            if item_type == b"Exif":
                kinds[item_id] = ("exif", "")
                continue
            if item_type != b"mime":
                continue
        else:  # versions 0 and 1 know only MIME-typed items
            item_id = entry.uint(2)
            entry.uint(2)
            entry.cstring()
        content_type = entry.cstring()
        encoding = entry.cstring() if entry.pos < box_end else ""
        if content_type.split(";")[0].strip().lower() == XMP_CONTENT_TYPE:
            kinds[item_id] = ("xmp", encoding)
    return kinds


def _locations(data: bytes, start: int, end: int):
    """(item_ID, construction method, data reference, [(offset, length)]) from ``iloc``."""
    reader = _Reader(data, start, end)
    version = reader.uint(1)
    reader.take(3)
    if version > 2:
        raise DamagedError(f"iloc version {version} is not one HEIF defines")
    sizes = reader.uint(1)
    offset_size, length_size = sizes >> 4, sizes & 15
    sizes = reader.uint(1)
    base_size, index_size = sizes >> 4, (sizes & 15) if version else 0
    if not {offset_size, length_size, base_size, index_size} <= {0, 4, 8}:
        raise DamagedError("iloc field sizes are not 0, 4 or 8")
    count = reader.uint(2 if version < 2 else 4)
    for _ in range(count):
        item_id = reader.uint(2 if version < 2 else 4)
        method = reader.uint(2) & 15 if version else 0
        reference = reader.uint(2)
        base = reader.uint(base_size)
        extents = []
        for _ in range(reader.uint(2)):
            reader.uint(index_size)
            offset = reader.uint(offset_size)
            extents.append((base + offset, reader.uint(length_size)))
        yield item_id, method, reference, extents
