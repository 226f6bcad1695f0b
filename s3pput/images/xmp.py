"""XMP packets: location properties found, and blanked without changing the length.

A property is blanked by overwriting it, from ``<`` to ``>`` for an element or the whole
``name="value"`` for an attribute, with spaces: whitespace between elements and between
attributes is insignificant in XML, so the packet stays well formed and keeps its byte
length, which is what lets a HEIF item or a JPEG segment be edited in place.

Location properties are matched by local name whatever their prefix: every name starting
with ``GPS`` in any case (``exif:GPSLatitude``, DJI's ``drone-dji:GpsLatitude``...), and
the IPTC/Photoshop place names (``photoshop:City``, ``Iptc4xmpCore:Location``,
``Iptc4xmpExt:LocationShown``...). Pure: bytes in, bytes out.
"""

from __future__ import annotations

import re

__all__ = ["XmpError", "blank_xmp_location", "empty_xmp_packet", "xmp_has_location"]


class XmpError(ValueError):
    """A packet that cannot be searched as bytes (UTF-16 or UTF-32)."""

_NAMES = (rb"(?:[Gg][Pp][Ss][A-Za-z0-9_]*|City|State|Country|CountryCode|CountryName|"
          rb"ProvinceState|Sublocation|Location|LocationCreated|LocationShown|WorldRegion)")
_QUALIFIED = rb"[A-Za-z_][A-Za-z0-9_.-]*:" + _NAMES
# <p:Name .../>  or  <p:Name ...> ... </p:Name>  (these properties do not nest themselves)
_ELEMENT = re.compile(rb"<(" + _QUALIFIED + rb")(?=[\s/>])[^>]*?(?:/>|>.*?</\1\s*>)",
                      re.DOTALL)
# p:Name="value" as an attribute, after the whitespace that separates attributes
_ATTRIBUTE = re.compile(rb"(?<=\s)" + _QUALIFIED + rb"\s*=\s*(?:\"[^\"]*\"|'[^']*')")


def _check_encoding(packet: bytes) -> None:
    # XMP may be UTF-16 or UTF-32, where these byte patterns never match: refuse rather
    # than report "no location" for a packet that was not read.
    if b"<\x00" in packet or b"\x00<" in packet:
        raise XmpError("XMP in UTF-16 or UTF-32 cannot be checked or edited in place")


def xmp_has_location(packet: bytes) -> bool:
    """Whether ``packet`` holds a location property (see the module's list)."""
    _check_encoding(packet)
    return bool(_ELEMENT.search(packet) or _ATTRIBUTE.search(packet))


def blank_xmp_location(packet: bytes) -> bytes:
    """``packet`` with each location property overwritten by spaces: same length."""
    _check_encoding(packet)

    def spaces(match: re.Match) -> bytes:
        # Keep line breaks, so that line-oriented tools still see the same lines.
        return re.sub(rb"[^\r\n]", b" ", match[0])

    return _ATTRIBUTE.sub(spaces, _ELEMENT.sub(spaces, packet))


_EMPTY = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
          b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/><?xpacket end="w"?>')
_EMPTY_SHORT = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'


def empty_xmp_packet(length: int) -> bytes:
    """An XMP packet with no properties, padded with spaces to exactly ``length`` bytes
    (only spaces if even the shortest empty packet does not fit)."""
    for packet in (_EMPTY, _EMPTY_SHORT):
        if len(packet) <= length:
            # The padding goes inside the packet wrapper, where XMP expects it.
            if packet is _EMPTY:
                head, tail = packet.split(b"<?xpacket end")
                return head + b" " * (length - len(packet)) + b"<?xpacket end" + tail
            return packet + b" " * (length - len(packet))
    return b" " * length
