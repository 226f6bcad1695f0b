"""Opening an image once, as small as the thumbnails allow, and learning how to show it.

``decode`` is the one place pixels are decoded in image mode: it picks the decoder from the
content (HEIC/HEIF through pillow-heif, registered on first use; everything else through
Pillow's own plugins), refuses decompression bombs from the header, asks the decoder for
a reduced picture when it can give one (JPEG DCT scaling, a HEIF file's own thumbnail
image) and reports the rotation still to be applied. Raises ``ImageError`` for every
per-file failure.
"""

from __future__ import annotations

import io
import math
import os
import re
import threading
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Sequence, Union

from PIL import ExifTags, Image

from s3pput.errors import ImageError

from .formats import AVIF, HEIC, HEIF, SIGNATURE_BYTES, ImageKind, sniff_image

#: What ``decode`` (and so ``make_thumbnails``) accepts: the encoded bytes, a path, or a
#: binary file object.
ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]

#: The line a user needs when a HEIC/HEIF file arrives and pillow-heif is not installed.
HEIF_INSTALL_HINT = "pip install pillow-heif"

# EXIF orientation -> the transpose that makes the picture upright. 5 to 8 swap the sides.
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SWAPPING = {5, 6, 7, 8}


@dataclass
class Decoded:
    """A decoded picture and what is needed to show it as its viewers do."""

    image: Image.Image  # the loaded pixels, possibly reduced (see ``region``)
    # The part of ``image`` holding the whole picture: a JPEG decoded at 1/2, 1/4 or 1/8
    # has a partial last row and column.
    region: tuple[float, float]
    orientation: int  # the EXIF-style transform still to apply, 1 for none
    # The full picture's width and height as viewers show it (upright), whatever was
    # decoded.
    upright_size: tuple[int, int]


def decode(source: ImageSource, boxes: Sequence[tuple[int, int]], max_pixels: int,
           where: str) -> Decoded:
    """Decode the picture ``source`` holds (the primary image of a HEIF file, the first
    frame of an animation), no smaller than needed to cover every upright ``box``.

    Refuses, from the header and before decoding, pictures over ``max_pixels``. Raises
    ``ImageError`` (op "thumbnail", path ``where``) on any failure.
    """
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as file:
                return _decode_file(file, boxes, max_pixels, where)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return _decode_file(io.BytesIO(source), boxes, max_pixels, where)
        return _decode_file(source, boxes, max_pixels, where)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(_bomb_message(err, max_pixels), op="thumbnail", path=where) from err
    # Hostile or damaged files make decoders raise almost anything (OSError, SyntaxError,
    # struct.error, IndexError, RuntimeError from libheif...); every one of them means
    # "this file is not a usable image", a per-file failure, never a crash of the run.
    except Exception as err:  # noqa: BLE001
        raise ImageError(f"cannot decode image: {err or type(err).__name__}",
                         op="thumbnail", path=where) from err


def _decode_file(file: BinaryIO, boxes: Sequence[tuple[int, int]], max_pixels: int,
                 where: str) -> Decoded:
    if not getattr(file, "seekable", lambda: False)():
        file = io.BytesIO(file.read())
    start = file.tell()
    kind = sniff_image(file.read(SIGNATURE_BYTES))
    file.seek(start)
    formats = _decoder_for(kind, where)
    # We enforce our own limit below, with a clearer message; Pillow's warning for images
    # between its soft and hard limits would only be printed noise. Before Python 3.14
    # catch_warnings is not thread-safe; threads interleaving here can at worst leave this
    # one ignore filter installed, which nothing relies on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Leaving the block closes the file but keeps the decoded pixels.
        with Image.open(file, formats=formats) as image:
            full_size = image.size
            _check_pixels(full_size, max_pixels, where)
            region = _draft(image, boxes)
            image.load()
            # Read after loading: a PNG's eXIf chunk may follow its pixels.
            orientation = _orientation(image)
    upright = full_size[::-1] if orientation in SWAPPING else full_size
    return Decoded(image, region, orientation, upright)


def _decoder_for(kind: ImageKind | None, where: str) -> list[str] | None:
    """The Pillow formats allowed to open a file of ``kind`` (None: any).

    HEIF files go to pillow-heif only and AVIF files to Pillow's AVIF plugin only: both
    plugins accept the generic ``mif1`` brand, and the wrong one would fail or guess.
    """
    if kind in (HEIC, HEIF):
        _register_heif(kind, where)
        return ["HEIF"]
    if kind == AVIF:
        return ["AVIF"]
    return None


_heif_lock = threading.Lock()
_heif_registered = False


def _register_heif(kind: ImageKind, where: str) -> None:
    """Add pillow-heif's opener to Pillow, once per process, when the first HEIF file
    arrives: importing it costs about 20 ms of CPU that runs without HEIC files need not
    pay. Raises ``ImageError`` with the install line when pillow-heif is missing."""
    global _heif_registered
    if _heif_registered:
        return
    with _heif_lock:
        if _heif_registered:
            return
        try:
            import pillow_heif
        except ImportError as err:
            raise ImageError(f"cannot decode {kind.extension.upper()}: pillow-heif is not "
                             f"installed ({HEIF_INSTALL_HINT})", op="thumbnail",
                             path=where) from err
        # Thumbnail images stay enabled: ``_draft`` decodes one instead of the picture when
        # it is large enough. One decode thread: more gave no saving of CPU time, and the
        # putters already keep every core busy.
        pillow_heif.register_heif_opener(thumbnails=True, decode_threads=1)
        _heif_registered = True


def _megapixels(pixels: float) -> str:
    return f"{pixels / 1_000_000:,.6g}"


def _check_pixels(size: tuple[int, int], max_pixels: int, where: str) -> None:
    """Refuse, from the header alone, an image larger than ``max_pixels``."""
    width, height = size
    if width * height > max_pixels:
        raise ImageError(f"image is {width}x{height} = {_megapixels(width * height)} MP, "
                         f"over the {_megapixels(max_pixels)} MP limit",
                         op="thumbnail", path=where)


def _bomb_message(err: Exception, max_pixels: int) -> str:
    # Pillow refuses very large images inside Image.open, before we can see the size; its
    # message carries the pixel count, which is all we can report.
    found = re.search(r"\((\d+) pixels\)", str(err))
    if found is not None and int(found[1]) > max_pixels:
        return (f"image is {_megapixels(int(found[1]))} MP, over the "
                f"{_megapixels(max_pixels)} MP limit")
    return (f"image is over Pillow's own limit (PIL.Image.MAX_IMAGE_PIXELS), which is "
            f"below the {_megapixels(max_pixels)} MP asked for: {err}")


def _draft(image: Image.Image, boxes: Sequence[tuple[int, int]]) -> tuple[float, float]:
    """Ask the decoder for a reduced picture, as far as every box still gets at least as
    many source pixels as it has; return the picture's region in what will be decoded.

    A JPEG decoder scales by 1/2, 1/4 or 1/8 while decoding (DCT scaling skips most of
    the work). pillow-heif decodes instead a thumbnail image stored in the file, when one
    is large enough and is a scaled copy of the primary image (same rotation, crop and
    colour profile): for a phone photo that is a fraction of the work. Other formats
    ignore drafts and decode at full size.
    """
    width, height = image.size
    if image.format not in ("JPEG", "MPO", "HEIF") or not boxes:
        return float(width), float(height)
    # A JPEG's EXIF is read at open, so its orientation is known before decoding.
    swapped = _orientation(image) in SWAPPING
    scale = max(cover_scale((width, height), stored_box(box, swapped)) for box in boxes)
    wanted = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
    drafted = image.draft(None, wanted)
    if drafted is None:
        return float(width), float(height)
    _, (_, _, right, bottom) = drafted
    return right, bottom


def _orientation(image: Image.Image) -> int:
    """The transform still to apply to the decoded pixels, as an EXIF orientation value
    (1, as stored, when none is needed, known or readable).

    HEIF and AVIF carry rotation and mirroring in ``irot``/``imir`` properties, and by the
    HEIF/MIAF rule these are the only rotation: an EXIF orientation tag in such a file is
    ignored, even when it stands alone. pillow-heif applies irot/imir while decoding
    (and keeps the file's tag in ``info["original_orientation"]``, which must not be
    applied again), so a HEIF picture needs nothing more. Pillow's AVIF plugin decodes
    the pixels as stored and reports irot/imir as the EXIF orientation, overwriting a
    lone EXIF tag with 1, so for AVIF as for the other formats the EXIF value is the one.
    """
    if image.format == "HEIF":
        return 1
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    # Damaged EXIF must not cost the picture: orientation is the only tag we use.
    except Exception:  # noqa: BLE001
        return 1
    return value if value in UPRIGHT else 1


def stored_box(box: tuple[int, int], swapped: bool) -> tuple[int, int]:
    """An upright box as it lies on the stored (not yet upright) pixels."""
    return (box[1], box[0]) if swapped else box


def cover_scale(size: tuple[float, float], box: tuple[int, int]) -> float:
    """The scale at which a picture of ``size`` just covers ``box``."""
    return max(box[0] / size[0], box[1] / size[1])
