"""GIF metadata: comment and application extension blocks, removed whole.

A GIF is a flat list of blocks with no offsets between them, so a block can be cut out
without touching any other byte. XMP lives in an application extension ("XMP DataXMP"),
written so that its bytes also parse as the sub-blocks every GIF reader skips.
Pure; structures that cannot be followed raise ``DamagedError``.
"""

from __future__ import annotations

from s3pput.errors import ImageError

from .exif import DamagedError
from .xmp import xmp_has_location

__all__ = ["gif_has_location", "strip_gif"]

# Application extensions about showing the picture: the loop count and the ICC profile.
_KEPT_APPLICATIONS = (b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012")
_XMP_APPLICATION = b"XMP DataXMP"


def _blocks(data: bytes) -> tuple[list[tuple[int, int, int, bytes]], int]:
    """(kind, start, end, application id) of each block after the screen descriptor, and
    where the trailer byte ends. Kind is the extension label, or 0x2C for a picture."""
    if len(data) < 13:
        raise DamagedError("GIF header is cut short")
    pos = 13
    if data[10] & 0x80:  # global colour table
        pos += 3 << ((data[10] & 7) + 1)
    blocks = []
    while True:
        if pos >= len(data):
            raise DamagedError("GIF ends without its trailer")
        start, introducer = pos, data[pos]
        if introducer == 0x3B:
            return blocks, pos + 1
        application = b""
        if introducer == 0x21:
            kind = data[pos + 1]
            pos += 2
            if kind == 0xFF and pos < len(data) and data[pos] == 11:
                application = data[pos + 1:pos + 12]
        elif introducer == 0x2C:
            kind = 0x2C
            if pos + 10 > len(data):
                raise DamagedError("GIF picture descriptor is cut short")
            packed = data[pos + 9]
            pos += 10 + ((3 << ((packed & 7) + 1)) if packed & 0x80 else 0) + 1
        else:
            raise DamagedError(f"unknown GIF block 0x{introducer:02x} at byte {pos}")
        while True:  # sub-blocks, up to the empty one
            if pos >= len(data):
                raise DamagedError("GIF ends inside a block")
            size = data[pos]
            pos += 1 + size
            if size == 0:
                break
        blocks.append((kind, start, pos, application))


def gif_has_location(data: bytes) -> bool:
    """Whether an XMP block of the GIF holds a location property."""
    blocks, _ = _blocks(data)
    return any(application == _XMP_APPLICATION and xmp_has_location(data[start:end])
               for _, start, end, application in blocks)


def strip_gif(data: bytes, everything: bool) -> bytes:
    """XMP blocks with a location removed; with ``everything``, comments and application
    extensions other than the loop count and ICC profile too, and anything after the
    trailer."""
    blocks, end = _blocks(data)
    out, pos = bytearray(), 0
    for kind, start, stop, application in blocks:
        if not everything:
            drop = application == _XMP_APPLICATION and xmp_has_location(data[start:stop])
        else:
            drop = kind == 0xFE or (kind == 0xFF and application not in _KEPT_APPLICATIONS)
        if drop:
            out += data[pos:start]
            pos = stop
    out += data[pos:end]
    if not everything:
        trailer = data[end:]
        if xmp_has_location(trailer) or b"Exif\x00\x00" in trailer:
            raise ImageError("data after the GIF's end may carry a location that cannot be "
                             "removed; strip all metadata instead")
        out += trailer
    return bytes(out)
