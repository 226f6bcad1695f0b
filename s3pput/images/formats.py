"""Recognising images by their content, and the formats thumbnails are written in.

Pure and cheap: no Pillow, no I/O. The walker calls ``sniff_image`` on the first bytes of
every file in image mode, so importing this module must cost next to nothing.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "AVIF",
    "BMP",
    "DEFAULT_QUALITY",
    "GIF",
    "HEIC",
    "HEIF",
    "JPEG",
    "OUTPUT_FORMAT_NAMES",
    "PNG",
    "SIGNATURE_BYTES",
    "TIFF",
    "WEBP",
    "ImageKind",
    "format_name",
    "normalize_format",
    "sniff_image",
]

#: How many leading bytes ``sniff_image`` needs to decide: enough for an ISO-BMFF ``ftyp``
#: box (HEIC, HEIF, AVIF) with 60 compatible brands; real files list 3 to 8. Brands past
#: this many bytes are not looked at.
SIGNATURE_BYTES = 256


class ImageKind(NamedTuple):
    """An image format: Pillow's name for it, its MIME type and its usual file extension."""

    format: str  # Pillow's format name, e.g. "JPEG" ("HEIF" for HEIC and HEIF alike)
    mime: str  # e.g. "image/jpeg"
    extension: str  # without the dot, e.g. "jpg"


JPEG = ImageKind("JPEG", "image/jpeg", "jpg")
PNG = ImageKind("PNG", "image/png", "png")
WEBP = ImageKind("WEBP", "image/webp", "webp")
GIF = ImageKind("GIF", "image/gif", "gif")
BMP = ImageKind("BMP", "image/bmp", "bmp")
TIFF = ImageKind("TIFF", "image/tiff", "tiff")
# pillow-heif opens both under the format name "HEIF"; they differ in what a server
# should call them. HEIC is HEVC-coded HEIF, the iPhone default.
HEIC = ImageKind("HEIF", "image/heic", "heic")
HEIF = ImageKind("HEIF", "image/heif", "heif")
AVIF = ImageKind("AVIF", "image/avif", "avif")

# The sizes a BMP's second header (the DIB header) can have. "BM" alone is too weak a
# signature: plenty of text starts with it.
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}

# ISO-BMFF brands (ISO/IEC 23008-12, 23000-22, AV1-ISOBMFF). A coding brand says how the
# images are compressed; the structural brands say "HEIF image (sequence)" and nothing
# about the codec.
_HEVC_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis"}
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_STRUCTURAL_BRANDS = {b"mif1", b"msf1"}


def sniff_image(head: bytes) -> ImageKind | None:
    """Return the kind of image ``head`` starts, or None if it is not one we recognise.

    Decides from content only (magic numbers), never from a file name. ``head`` should be
    the first ``SIGNATURE_BYTES`` bytes of the file (or all of it, if shorter); bytes past
    that are ignored. Recognises JPEG, PNG, WebP, GIF, BMP, TIFF (both byte orders,
    classic and BigTIFF), and HEIC, HEIF and AVIF by the brands of their ``ftyp`` box (see
    ``_sniff_ftyp``). A match means "looks like", not "decodes": a truncated file still
    sniffs as its format.
    """
    head = bytes(head[:SIGNATURE_BYTES])
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return TIFF
    if head.startswith(b"BM") and len(head) >= 18:
        if int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
            return BMP
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    return None


def _sniff_ftyp(head: bytes) -> ImageKind | None:
    """The kind an ISO-BMFF file starting with an ``ftyp`` box is, from its brands.

    The major brand decides when it is a coding brand (``heic``... -> HEIC, ``avif``... ->
    AVIF). A structural major brand (``mif1``, ``msf1``), or any other major brand with a
    structural compatible brand, is decided by the compatible brands: a HEVC brand makes
    it HEIC, else an AVIF brand AVIF, else it is generic HEIF. Anything else (MP4, QuickTime,
    3GP videos...) is not an image. Reads only the box's own bytes, within ``head``.
    """
    size = int.from_bytes(head[0:4], "big")
    start = 8
    if size == 1:  # a 64-bit size follows the type; absurd for ftyp, but legal
        size, start = int.from_bytes(head[8:16], "big"), 16
    elif size == 0:  # "extends to the end of the file": only what we were given
        size = len(head)
    if size < start + 8 or len(head) < start + 8:  # too small for major + minor brand
        return None
    major = head[start:start + 4]
    end = min(size, len(head))
    compatible = {head[i:i + 4] for i in range(start + 8, end - 3, 4)}
    if major in _HEVC_BRANDS:
        return HEIC
    if major in _AVIF_BRANDS:
        return AVIF
    if major not in _HEIF_STRUCTURAL_BRANDS and not compatible & _HEIF_STRUCTURAL_BRANDS:
        return None
    if compatible & _HEVC_BRANDS:
        return HEIC
    if compatible & _AVIF_BRANDS:
        return AVIF
    return HEIF


_OUTPUT_FORMATS = {"jpeg": JPEG, "jpg": JPEG, "png": PNG, "webp": WEBP, "avif": AVIF}

#: The thumbnail format names a user may give, in the order help texts list them.
OUTPUT_FORMAT_NAMES = ("jpeg", "png", "webp", "avif")

#: The quality each thumbnail format is written at unless the caller says otherwise:
#: values that keep about the same fidelity to the picture (SSIM), so that the formats of
#: one ``<picture>`` look alike: WebP and AVIF were matched to JPEG 85 on 200x300
#: thumbnails of photos (see docs/). None where the format is lossless.
DEFAULT_QUALITY: dict[str, int | None] = {"jpeg": 85, "webp": 82, "avif": 66, "png": None}


def normalize_format(name: str) -> ImageKind:
    """Map a user's thumbnail format name (jpeg, jpg, png, webp, avif; any case) to its
    kind.

    The result unpacks as ``(pillow_format, mime, extension)``. Raises ValueError for any
    other name.
    """
    kind = _OUTPUT_FORMATS.get(str(name).lower())
    if kind is None:
        raise ValueError(f"unsupported thumbnail format {name!r}: use one of "
                         f"{', '.join(OUTPUT_FORMAT_NAMES)}")
    return kind


def format_name(kind: ImageKind) -> str:
    """The canonical user-facing name of an output kind: the key of ``DEFAULT_QUALITY``."""
    for name in OUTPUT_FORMAT_NAMES:
        if _OUTPUT_FORMATS[name] == kind:
            return name
    raise ValueError(f"{kind.format} is not a thumbnail format")
