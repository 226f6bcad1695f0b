"""What an object is: its Content-Type, and whether and how it is gzip-compressed.

Compression is deterministic (no timestamp, no file name in the gzip header, fixed level),
so compressing the same content twice gives the same bytes and the same ETag: that is how
``--put update`` recognises an unchanged file that was stored gzipped.
"""

from __future__ import annotations

import io
import mimetypes
import zlib
from typing import Optional, Sequence

# Content types compressed by ``--gzip`` with the default ``--gzip-type guess``: text-like
# formats that shrink; images, video and archives are compressed already.
GZIP_GUESS_TYPES = frozenset({
    "application/javascript", "application/json", "application/x-javascript",
    "application/xml", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
    "application/ld+json", "application/manifest+json", "application/wasm",
    "image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon", "image/bmp",
    "text/css", "text/csv", "text/html", "text/javascript", "text/plain", "text/xml",
    "text/markdown", "font/ttf", "font/otf", "application/vnd.ms-fontobject",
})


DEFAULT_TYPE = "application/octet-stream"
SNIFF_BYTES = 2048
GZIP_LEVEL = 6

_magic = None

# What a file whose name ends in a compression suffix holds: the compressed stream, not
# the inner type mimetypes also reports ("notes.txt.gz" is gzip data, not text/plain).
# Naming it by the inner type would make --gzip compress it twice and clients show
# compressed bytes as text.
COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def _magic_type(head: bytes) -> Optional[str]:
    global _magic
    if _magic is None:
        import magic  # python-magic, loaded only when --content-type magic asks for it

        _magic = magic.Magic(mime=True)
    found = _magic.from_buffer(head)
    return found or None


def content_type(name: str, head: bytes, mode: str) -> str:
    """The Content-Type of a file called NAME starting with HEAD.

    MODE ``guess``: by the file name; ``magic``: by the name, then libmagic on the content
    when the name says nothing; anything else: that type for every file.
    """
    if mode not in ("guess", "magic"):
        return mode
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:
        return COMPRESSED_TYPES.get(encoding, DEFAULT_TYPE)
    if guessed:
        return guessed
    if mode == "magic" and head:
        return _magic_type(head[:SNIFF_BYTES]) or DEFAULT_TYPE
    return DEFAULT_TYPE


def should_gzip(ctype: str, gzip_types: Sequence[str]) -> bool:
    """Does ``--gzip-type`` select CTYPE? (``guess``: text-like types; ``all``: all.)"""
    base = ctype.split(";", 1)[0].strip().lower()
    for wanted in gzip_types:
        if wanted == "all" or wanted.lower() == base:
            return True
        if wanted == "guess" and (base in GZIP_GUESS_TYPES or base.startswith("text/")):
            return True
    return False


def _compressor():
    # wbits=31: zlib writes the gzip header and trailer itself, with mtime 0 and no name,
    # the same on every Python version.
    return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)


def gzip_bytes(data: bytes) -> bytes:
    """Deterministically gzip DATA."""
    compressor = _compressor()
    return compressor.compress(data) + compressor.flush()


class GzipReader(io.RawIOBase):
    """A readable stream of ``gzip_bytes`` of another stream, for files too large to hold."""

    def __init__(self, raw, chunk: int = 1024 * 1024):
        self.raw = raw
        self.chunk = chunk
        self.buffer = bytearray()
        self.compressor = _compressor()
        self.finished = False

    def readable(self) -> bool:
        return True

    def _fill(self, want: int) -> None:
        while len(self.buffer) < want and not self.finished:
            data = self.raw.read(self.chunk)
            if data:
                self.buffer += self.compressor.compress(data)
            else:
                self.buffer += self.compressor.flush()
                self.finished = True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            self._fill(1 << 62)
            size = len(self.buffer)
        else:
            self._fill(size)
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out
