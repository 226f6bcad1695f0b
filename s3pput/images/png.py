"""PNG metadata: chunks, which a PNG reader finds by walking, never by offset.

EXIF is the eXIf chunk, XMP an iTXt chunk with the keyword ``XML:com.adobe.xmp`` (maybe
compressed), comments and other text tEXt/zTXt/iTXt; any chunk may be rewritten at a new
length as long as its CRC is recomputed. Pure; what cannot be followed raises
DamagedError.
"""

from __future__ import annotations

import struct
import zlib

from s3pput.errors import ImageError

from .exif import (
    DamagedError,
    block_has_location,
    block_orientation_only,
    block_without_location,
    scan_has_location,
)
from .xmp import blank_xmp_location, xmp_has_location

__all__ = ["png_has_location", "strip_png"]

# What a PNG keeps at level "all": how to decode and show it, nothing about it.
_PNG_KEPT = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP",
             b"sBIT", b"sRGB", b"cICP", b"mDCV", b"cLLI", b"mDCv", b"cLLi", b"bKGD",
             b"pHYs", b"acTL", b"fcTL", b"fdAT", b"hIST", b"sPLT"}
_PNG_TEXT = {b"tEXt", b"zTXt", b"iTXt"}


def _png_chunks(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(type, body) of each chunk up to IEND, and the bytes after IEND."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise DamagedError("no PNG signature")
    chunks, pos = [], 8
    while True:
        if pos + 12 > len(data):
            raise DamagedError("PNG ends before IEND")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if pos + 12 + length > len(data):
            raise DamagedError(f"PNG chunk {kind!r} runs past the end")
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            return chunks, data[pos:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_text(kind: bytes, body: bytes) -> tuple[bytes, bytes]:
    """(keyword, text) of a text chunk, the text decompressed."""
    keyword, _, rest = body.partition(b"\x00")
    if kind == b"tEXt":
        return keyword, rest
    if kind == b"zTXt":
        return keyword, zlib.decompress(rest[1:])
    compressed = rest[:1] == b"\x01"
    text = rest[2:].split(b"\x00", 2)[-1]  # after language and translated keyword
    return keyword, zlib.decompress(text) if compressed else text


def _png_text_location(kind: bytes, body: bytes) -> bool:
    keyword, text = _png_text(kind, body)
    if keyword.startswith(b"Raw profile type"):
        # ImageMagick's legacy form: a header line, a length line, then hex.
        hexed = b"".join(text.split(b"\n")[3:])
        raw = bytes.fromhex(hexed.decode("ascii", "replace"))
        return (b"Exif\x00\x00" in raw[:8] and block_has_location(raw[raw.find(b"Exif"):])) \
            or xmp_has_location(raw)
    return xmp_has_location(text)


def png_has_location(data: bytes) -> bool:
    chunks, trailer = _png_chunks(data)
    return any((kind == b"eXIf" and block_has_location(body))
               or (kind in _PNG_TEXT and _png_text_location(kind, body))
               for kind, body in chunks) or scan_has_location(trailer)


def strip_png(data: bytes, everything: bool) -> bytes:
    chunks, trailer = _png_chunks(data)
    out, resized = [], False
    for kind, body in chunks:
        if everything:
            if kind == b"eXIf":
                body = block_orientation_only(body)
                if body is None:
                    continue
            elif kind not in _PNG_KEPT and not kind[:1].isupper():
                continue  # ancillary and not about showing the picture
        elif kind == b"eXIf":
            body = block_without_location(body)
        elif kind in _PNG_TEXT and _png_text_location(kind, body):
            new = _png_xmp_blanked(kind, body)
            if new is None:
                continue  # a legacy raw profile: dropped whole
            resized |= len(new) != len(body)
            body = new
        out.append((kind, body))
    if resized:
        # Apple's iDOT chunk holds offsets into the IDAT data, which moved.
        out = [(kind, body) for kind, body in out if kind != b"iDOT"]
    if not everything and scan_has_location(trailer):
        raise ImageError("data after the PNG's end carries a location that cannot be "
                         "removed in place; strip all metadata instead")
    stored = data[:8] + b"".join(_png_chunk(kind, body) for kind, body in out)
    return stored + (b"" if everything else trailer)


def _png_xmp_blanked(kind: bytes, body: bytes) -> bytes | None:
    """A text chunk's body with XMP location blanked, or None for a chunk to drop."""
    keyword, _, rest = body.partition(b"\x00")
    if kind != b"iTXt":
        return None
    compressed = rest[:1] == b"\x01"
    language, translated, text = rest[2:].split(b"\x00", 2)
    if compressed:
        text = zlib.compress(blank_xmp_location(zlib.decompress(text)))
    else:
        text = blank_xmp_location(text)
    return keyword + b"\x00" + rest[:2] + language + b"\x00" + translated + b"\x00" + text
