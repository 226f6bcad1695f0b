"""Images: recognising them by content and making thumbnails.

Pure with respect to the rest of s3pput: bytes or a file go in, bytes come out. Nothing here
talks to S3 or prints. Per-file failures (corrupt, truncated, too large) raise
``ImageError``; bad arguments (an unknown output format, a bad spec) raise ``ValueError``.

Thumbnailing is the CPU-bound hot path of image mode, so ``make_thumbnails`` decodes each
source once, as small as the largest box allows (JPEG DCT scaling), and does crop and scale
in one ``resize`` call per box.
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple, Sequence, Union

from PIL import ExifTags, Image, ImageCms

from s3pput.errors import ImageError

__all__ = [
    "MAX_THUMBNAIL_SIDE",
    "SNIFF_BYTES",
    "ImageKind",
    "Thumbnail",
    "ThumbnailSpec",
    "make_thumbnails",
    "normalize_format",
    "parse_thumbnail_spec",
    "sniff_image",
]

#: What ``make_thumbnails`` accepts: the encoded bytes, a path, or a binary file object.
ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]

#: How many leading bytes ``sniff_image`` needs to decide. The longest check (BMP's DIB
#: header size) ends at byte 18; the rest is headroom so callers need not change when a
#: format with a longer signature is added.
SNIFF_BYTES = 32


class ImageKind(NamedTuple):
    """An image format: Pillow's name for it, its MIME type and its usual file extension."""

    format: str  # Pillow's format name, e.g. "JPEG"
    mime: str  # e.g. "image/jpeg"
    extension: str  # without the dot, e.g. "jpg"


JPEG = ImageKind("JPEG", "image/jpeg", "jpg")
PNG = ImageKind("PNG", "image/png", "png")
WEBP = ImageKind("WEBP", "image/webp", "webp")
GIF = ImageKind("GIF", "image/gif", "gif")
BMP = ImageKind("BMP", "image/bmp", "bmp")
TIFF = ImageKind("TIFF", "image/tiff", "tiff")

# The sizes a BMP's second header (the DIB header) can have. "BM" alone is too weak a
# signature: plenty of text starts with it.
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


def sniff_image(head: bytes) -> ImageKind | None:
    """Return the kind of image ``head`` starts, or None if it is not one we recognise.

    Decides from content only (magic numbers), never from a file name. ``head`` should be
    the first ``SNIFF_BYTES`` bytes of the file (or all of it, if shorter). Recognises JPEG,
    PNG, WebP, GIF, BMP and TIFF (both byte orders, classic and BigTIFF). A match means
    "looks like", not "decodes": a truncated file still sniffs as its format.
    """
    head = bytes(head[:SNIFF_BYTES])
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
    return None


_OUTPUT_FORMATS = {"jpeg": JPEG, "jpg": JPEG, "png": PNG, "webp": WEBP}


def normalize_format(name: str) -> ImageKind:
    """Map a user's thumbnail format name (jpeg, jpg, png, webp; any case) to its kind.

    The result unpacks as ``(pillow_format, mime, extension)``. Raises ValueError for any
    other name.
    """
    kind = _OUTPUT_FORMATS.get(str(name).lower())
    if kind is None:
        raise ValueError(f"unsupported thumbnail format {name!r}: use jpeg, png or webp")
    return kind


# A thumbnail name becomes one segment of an S3 key ("avatar/<name>/000001.jpg"), so it
# must not contain "/" nor be a segment that means something in paths.
_SPEC_NAME = re.compile(r"[A-Za-z0-9._-]+")
# [0-9], not \d: \d also matches other scripts' digits, which int() would accept.
_SPEC = re.compile(r"(?P<name>[^=]*)=(?P<width>[0-9]+)[xX](?P<height>[0-9]+)")

#: The largest box side accepted, so that a typo cannot ask for a gigapixel thumbnail.
MAX_THUMBNAIL_SIDE = 10_000


@dataclass(frozen=True)
class ThumbnailSpec:
    """One thumbnail size: a box of ``width`` x ``height`` pixels stored under ``name``.

    Construction validates: ``name`` is a safe single key segment (letters, digits,
    ``-``, ``_``, ``.``; not ``.`` or ``..``) and both sides are 1..MAX_THUMBNAIL_SIDE.
    """

    name: str
    width: int
    height: int

    def __post_init__(self) -> None:
        if not _SPEC_NAME.fullmatch(self.name) or self.name in (".", ".."):
            raise ValueError(
                f"thumbnail name {self.name!r} must be letters, digits, '-', '_' or '.' "
                "(and not '.' or '..')")
        for side in (self.width, self.height):
            if isinstance(side, bool) or not isinstance(side, int) \
                    or not 1 <= side <= MAX_THUMBNAIL_SIDE:
                raise ValueError(f"thumbnail {self.name!r}: width and height must be whole "
                                 f"numbers from 1 to {MAX_THUMBNAIL_SIDE}, not {side!r}")


def parse_thumbnail_spec(text: str) -> ThumbnailSpec:
    """Parse ``NAME=WIDTHxHEIGHT`` (as given to ``--thumbnail``), e.g. ``thumbnail=200x300``.

    Raises ValueError with a message fit for the command line on anything else.
    """
    match = _SPEC.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"bad thumbnail spec {text!r}: expected NAME=WIDTHxHEIGHT, "
                         "e.g. thumbnail=200x300")
    return ThumbnailSpec(match["name"], int(match["width"]), int(match["height"]))


@dataclass(frozen=True)
class Thumbnail:
    """One encoded thumbnail, exactly ``width`` x ``height``, with no metadata."""

    name: str  # the spec's name: the key folder it is stored under
    data: bytes = field(repr=False)  # the encoded image
    mime: str  # Content-Type for the upload
    format: str  # Pillow format name, e.g. "JPEG"
    extension: str  # file extension without the dot, e.g. "jpg"
    width: int
    height: int


def make_thumbnails(source: ImageSource, specs: Sequence[ThumbnailSpec], *,
                    fmt: str = "JPEG", quality: int = 85,
                    background: tuple[int, int, int] = (255, 255, 255),
                    max_pixels: int = 100_000_000,
                    path_for_errors: str = "") -> list[Thumbnail]:
    """Decode ``source`` once and return one thumbnail per spec, in the order of ``specs``.

    Promises, for every thumbnail:

    * it is exactly the spec's box: the picture is scaled (Lanczos) to cover the box and
      centre-cropped, so there are no bands; pictures smaller than the box are upscaled;
    * it is upright: the EXIF orientation is applied before cropping;
    * colours are sRGB: CMYK and other RGB spaces go through their embedded ICC profile
      when it is usable (CMYK without one is converted plainly), 16-bit samples are scaled
      to 8 bits, grey stays grey;
    * transparency is kept for PNG and WebP and flattened onto ``background`` for JPEG;
    * only the first frame of an animation is used;
    * it carries no metadata: no EXIF (so no GPS), no XMP, no comment, no ICC profile.

    ``fmt`` is jpeg/jpg/png/webp in any case; ``quality`` (1..100) applies to JPEG and WebP.

    Raises ``ImageError`` (op "thumbnail", path ``path_for_errors``) when the source cannot
    be decoded (corrupt, truncated, not an image) or has more than ``max_pixels`` pixels;
    that check reads only the header. Pillow's process-wide ``Image.MAX_IMAGE_PIXELS``
    still refuses images over twice its value (about 179 MP by default) whatever
    ``max_pixels`` says. Raises ValueError for bad arguments.
    """
    kind = normalize_format(fmt)
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1..100, not {quality}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, not {max_pixels}")
    if not specs:
        return []
    where = path_for_errors or (os.fspath(source) if isinstance(source, (str, os.PathLike))
                                else "")
    image, region, orientation = _decode(source, specs, max_pixels, where)
    icc = image.info.get("icc_profile")
    try:
        image = _to_working_mode(image)
        return [_render(image, region, orientation, icc, spec, kind, quality, background)
                for spec in specs]
    except (OSError, ValueError) as err:
        raise ImageError(f"cannot make thumbnail: {err}", op="thumbnail",
                         path=where) from err


# EXIF orientation -> the transpose that makes the picture upright. 5 to 8 swap the sides.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _decode(source: ImageSource, specs: Sequence[ThumbnailSpec], max_pixels: int,
            where: str) -> tuple[Image.Image, tuple[float, float], int]:
    """Open and decode the first frame, no larger than the largest box needs.

    Returns the loaded image, the region of it that holds the picture (a JPEG decoded at
    1/2, 1/4 or 1/8 has a partial last row and column) and the EXIF orientation.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    try:
        # We enforce our own limit below, with a clearer message; Pillow's warning for
        # images between its soft and hard limits would only be printed noise. Before
        # Python 3.14 catch_warnings is not thread-safe; threads interleaving here can at
        # worst leave this one ignore filter installed, which nothing relies on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Leaving the block closes the file but keeps the decoded pixels.
            with Image.open(source) as image:
                _check_pixels(image.size, max_pixels, where)
                region = _draft(image, specs)
                image.load()
                orientation = _orientation(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(_bomb_message(err, max_pixels), op="thumbnail", path=where) from err
    # Hostile or damaged files make Pillow's decoders raise almost anything (OSError,
    # SyntaxError, struct.error, IndexError, ...); every one of them means "this file is
    # not a usable image", which is a per-file failure, never a crash of the run.
    except Exception as err:  # noqa: BLE001
        raise ImageError(f"cannot decode image: {err or type(err).__name__}",
                         op="thumbnail", path=where) from err
    return image, region, orientation


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


def _draft(image: Image.Image, specs: Sequence[ThumbnailSpec]) -> tuple[float, float]:
    """Ask a JPEG decoder to scale by 1/2, 1/4 or 1/8 while decoding, as far as every box
    still gets at least as many source pixels as it has; return the picture's region.

    DCT scaling skips most of the decoding work, which is where a thumbnail's time goes.
    Other formats ignore drafts and decode at full size.
    """
    width, height = image.size
    if image.format not in ("JPEG", "MPO"):
        return float(width), float(height)
    # A JPEG's EXIF is read at open, so the orientation is known before decoding.
    swapped = _orientation(image) in (5, 6, 7, 8)
    scale = max(_cover_scale((width, height), _stored_box(spec, swapped)) for spec in specs)
    wanted = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
    drafted = image.draft(None, wanted)
    if drafted is None:
        return float(width), float(height)
    _, (_, _, right, bottom) = drafted
    return right, bottom


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, 1 (as stored) when absent, unknown or unreadable."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    # Damaged EXIF must not cost the picture: orientation is the only tag we use.
    except Exception:  # noqa: BLE001
        return 1
    return value if value in _UPRIGHT else 1


def _stored_box(spec: ThumbnailSpec, swapped: bool) -> tuple[int, int]:
    """The box as it lies on the stored (not yet upright) pixels."""
    return (spec.height, spec.width) if swapped else (spec.width, spec.height)


def _cover_scale(size: tuple[float, float], box: tuple[int, int]) -> float:
    """The scale at which a picture of ``size`` just covers ``box``."""
    return max(box[0] / size[0], box[1] / size[1])


def _crop_box(region: tuple[float, float], box: tuple[int, int]) -> tuple[float, ...]:
    """The centred part of ``region`` with the box's aspect ratio, as large as fits."""
    scale = _cover_scale(region, box)
    # min(): float rounding must never push the box past the image, which resize refuses.
    crop_w, crop_h = min(region[0], box[0] / scale), min(region[1], box[1] / scale)
    left, top = (region[0] - crop_w) / 2, (region[1] - crop_h) / 2
    return (left, top, left + crop_w, top + crop_h)


# The modes resize handles at full quality and that the rest of _render understands.
_WORKING_MODES = {"L", "LA", "RGB", "RGBA", "CMYK"}


def _to_working_mode(image: Image.Image) -> Image.Image:
    """Return ``image`` in L, LA, RGB, RGBA or CMYK with 8 bits per sample.

    Transparency held outside an alpha band (a palette entry, a tRNS colour) becomes an
    alpha band; 16-bit and float samples are scaled, not clipped. CMYK stays CMYK so its
    profile can be applied to the small result rather than to the whole picture.
    """
    mode = image.mode
    if mode in ("L", "RGB") and "transparency" in image.info:
        return image.convert("LA" if mode == "L" else "RGBA")
    if mode in _WORKING_MODES:
        return image
    if mode == "La":
        return image.convert("LA")
    if mode.startswith("I") or mode == "F":
        return _grey_to_8bit(image)
    if mode == "1":
        return image.convert("L")
    # P, PA, RGBa, RGBX, YCbCr, LAB, HSV...: to RGB, keeping alpha wherever there is some.
    has_alpha = "A" in mode or "a" in mode or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer or float grey to L.

    A plain convert("L") clips: every 16-bit sample above 255 would turn white. I;16*
    modes are 16-bit by definition. I and F carry no bit depth, so the samples decide:
    any above 255 means 16-bit; float samples all within 0..1 mean the usual normalised
    range; anything else is taken as 8-bit.
    """
    if image.mode != "F":
        image = image.convert("I")
    highest = image.getextrema()[1]
    if highest > 255:
        image = image.point(lambda value: value / 256)
    elif image.mode == "F" and highest <= 1:
        image = image.point(lambda value: value * 255)
    return image.convert("L")


def _render(image: Image.Image, region: tuple[float, float], orientation: int,
            icc: bytes | None, spec: ThumbnailSpec, kind: ImageKind, quality: int,
            background: tuple[int, int, int]) -> Thumbnail:
    """Crop, scale, colour-manage, turn upright, flatten and encode one thumbnail."""
    box = _stored_box(spec, orientation in (5, 6, 7, 8))
    # One resize call does crop and scale; reducing_gap lets Pillow shrink by an integer
    # factor first (cheap box averaging) when the picture is much larger than the box.
    thumb = image.resize(box, Image.Resampling.LANCZOS, box=_crop_box(region, box),
                         reducing_gap=3.0)
    # The steps below cost per output pixel, so they run on the small image: colour
    # conversion commutes with scaling closely enough, and transposing is exact.
    thumb = _to_srgb(thumb, icc)
    if orientation in _UPRIGHT:
        thumb = thumb.transpose(_UPRIGHT[orientation])
    if kind.format == "JPEG" and thumb.mode in ("LA", "RGBA"):
        thumb = _flatten(thumb, background)
    return Thumbnail(spec.name, _encode(thumb, kind, quality), kind.mime, kind.format,
                     kind.extension, thumb.width, thumb.height)


def _to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Return ``image`` in sRGB (RGB or RGBA), through its ICC profile if usable; grey
    (L, LA) is returned as it is."""
    if image.mode in ("L", "LA"):
        return image
    transform = _transform_to_srgb(icc, image.mode) if icc else None
    if transform is not None:
        return ImageCms.applyTransform(image, transform)
    return image.convert("RGBA" if image.mode == "RGBA" else "RGB")


@functools.lru_cache(maxsize=16)
def _transform_to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A transform from ``icc`` to sRGB for pixels in ``mode``, or None if the profile is
    unusable (damaged, or for another colour space than the pixels).

    Cached because building a transform costs more than applying it to a thumbnail, and a
    batch of photos from one camera shares one profile.
    """
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if mode == "RGBA" else "RGB"
        return ImageCms.buildTransform(source, _SRGB, mode, out_mode)
    # A bad profile should cost the colour accuracy, not the picture: fall back to a
    # plain conversion.
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


_SRGB = ImageCms.createProfile("sRGB")


def _flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite an image with alpha onto an opaque ``background`` colour (RGB result)."""
    canvas = Image.new("RGB", image.size, tuple(background))
    canvas.paste(image.convert("RGBA"), mask=image.getchannel("A"))
    return canvas


def _encode(image: Image.Image, kind: ImageKind, quality: int) -> bytes:
    """Encode with no metadata. Pillow copies ``info`` (EXIF, comment, XMP, ICC) through
    resize and convert and some encoders write parts of it back, so it is emptied first."""
    image.info = {}
    options: dict[str, object] = {}
    if kind.format == "JPEG":
        # optimize and progressive cost CPU for a few percent of size on small images.
        options = {"quality": quality, "optimize": False, "progressive": False}
    elif kind.format == "WEBP":
        options = {"quality": quality}
    out = io.BytesIO()
    image.save(out, kind.format, **options)
    return out.getvalue()
