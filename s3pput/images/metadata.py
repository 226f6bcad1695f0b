"""Location and other metadata removed from an original without re-encoding it.

``strip_metadata`` takes a file's bytes and returns the bytes to store in its place. The
picture's coded data is copied as it is, never decoded, so the pixels are the same bit for
bit; the orientation and the colour profile are always kept. Two levels:

* ``"location"``: the EXIF GPS directory emptied and XMP location properties (see
  ``xmp``) blanked, both in place: byte lengths stay the same, so no offset in the file
  changes and no container is rewritten. (Only where a container has no offsets does a
  length change: a PNG's compressed XMP is compressed again, a GIF's XMP block with a
  location is removed.) Data after the end of the picture is edited the same way if it
  is another JPEG; a location left in it (an appended video's) fails the file.
* ``"all"``: every EXIF, XMP, comment and text block removed, except the orientation (a
  new EXIF block holding only that tag, when the file had one) and the colour profile
  (JPEG APP2 ICC, PNG iCCP/sRGB/cICP, WebP ICCP, HEIF colr). JPEG, PNG and WebP lose those
  blocks; a HEIF or AVIF file keeps its items at their lengths, their content replaced by
  an EXIF block with only the orientation (zero-padded) and an empty XMP packet
  (space-padded), because removing items would mean rewriting the file's offsets. Data
  after the end of the picture (a second picture, an appended video) is dropped.

Supported: JPEG (and MPO), PNG, WebP, HEIC/HEIF/AVIF, GIF; TIFF for ``"location"`` only;
BMP has no metadata. Anything else, a damaged file, or a location the container does not allow to be
removed, raises ``ImageError`` (op "strip metadata") with the reason: such a file must not
be stored with its location. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import struct
import zlib

from s3pput.errors import ImageError

from .exif import DamagedError, block_has_location, block_without_location
from .formats import AVIF, BMP, GIF, HEIC, HEIF, JPEG, PNG, TIFF, WEBP, sniff_image
from .gif import gif_has_location, strip_gif
from .heif import heif_has_location, strip_heif
from .jpeg import jpeg_has_location, strip_jpeg
from .png import png_has_location, strip_png
from .webp import strip_webp, webp_has_location
from .xmp import XmpError

__all__ = ["ALL", "LEVELS", "LOCATION", "has_location", "strip_metadata"]

LOCATION = "location"
ALL = "all"
LEVELS = (LOCATION, ALL)

_OP = "strip metadata"


def strip_metadata(data: bytes, level: str = LOCATION, *, path_for_errors: str = "") -> bytes:
    """The bytes to store instead of ``data`` with the metadata of ``level`` removed (see
    the module's docstring); ``data`` itself when there is nothing to remove.

    Raises ValueError for an unknown level and ``ImageError`` (op "strip metadata", path
    ``path_for_errors``) when the file is not a supported image, is damaged, or carries a
    location that cannot be removed in place.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown metadata level {level!r}: use {' or '.join(LEVELS)}")
    data = bytes(data)
    kind = sniff_image(data)
    strip = _STRIPPERS.get(kind)
    try:
        if kind == BMP:
            return data
        if strip is None:
            raise ImageError("not an image whose metadata can be edited (JPEG, PNG, WebP, "
                             "HEIC/HEIF, AVIF, TIFF, GIF)")
        stored = strip(data, level == ALL)
    except ImageError as err:
        raise ImageError(err.message, op=_OP, path=path_for_errors) from err.__cause__
    except (DamagedError, XmpError, struct.error, IndexError, zlib.error) as err:
        raise ImageError(f"cannot edit {_name(kind)} metadata: {err}", op=_OP,
                         path=path_for_errors) from err
    return data if stored == data else stored


def has_location(data: bytes) -> bool:
    """Whether ``data`` carries a location: a non-empty EXIF GPS directory or an XMP
    location property, anywhere ``strip_metadata`` would look (and in data after the end
    of the picture). False for files that are not images it reads. Raises ``ImageError``
    when the file is damaged where the location would be."""
    data = bytes(data)
    kind = sniff_image(data)
    try:
        if kind in (JPEG, PNG, WEBP, GIF, TIFF, HEIC, HEIF, AVIF):
            return _LOCATORS[kind](data)
        return False
    except (DamagedError, XmpError, struct.error, IndexError, zlib.error) as err:
        raise ImageError(f"cannot read {_name(kind)} metadata: {err}", op="check metadata") \
            from err


def _name(kind) -> str:
    return kind.extension.upper() if kind else "image"


# --- TIFF ----------------------------------------------------------------------------

def _strip_tiff(data: bytes, everything: bool) -> bytes:
    if everything:
        raise ImageError("a TIFF keeps its metadata in the same directory as the picture's "
                         "layout; only the location can be stripped")
    return block_without_location(data)


_STRIPPERS = {JPEG: strip_jpeg, PNG: strip_png, WEBP: strip_webp, HEIC: strip_heif,
              HEIF: strip_heif, AVIF: strip_heif, TIFF: _strip_tiff, GIF: strip_gif}
_LOCATORS = {JPEG: jpeg_has_location, PNG: png_has_location, WEBP: webp_has_location,
             HEIC: heif_has_location, HEIF: heif_has_location, AVIF: heif_has_location,
             TIFF: block_has_location, GIF: gif_has_location}
