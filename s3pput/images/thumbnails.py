"""Thumbnails, and the facts about an image, from one decode.

Pure with respect to the rest of s3pput: bytes or a file go in, bytes come out. Nothing here
talks to S3 or prints. Per-file failures (corrupt, truncated, too large) raise
``ImageError``; bad arguments (an unknown output format, a bad spec) raise ``ValueError``.

Thumbnailing is the CPU-bound hot path of image mode, so each source is decoded once, as
small as the largest box allows (see ``decode``), and each box is cropped and scaled in one
``resize`` call, then encoded in every format asked for.
"""

from __future__ import annotations

import functools
import io
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from PIL import Image, ImageCms

from s3pput.errors import ImageError

from .decode import SWAPPING, UPRIGHT, ImageSource, cover_scale, decode, stored_box
from .facts import PLACEHOLDER_SIDE, ImageFacts, thumbhash_base64
from .formats import DEFAULT_QUALITY, JPEG, ImageKind, format_name, normalize_format

__all__ = [
    "MAX_THUMBNAIL_SIDE",
    "ImageSource",
    "RenderedImage",
    "Thumbnail",
    "ThumbnailSpec",
    "make_thumbnails",
    "parse_thumbnail_spec",
    "render_image",
]

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


@dataclass(frozen=True)
class RenderedImage:
    """What one decode of an original gives: its thumbnails and its facts."""

    # For each spec in the order given, one thumbnail per format in the order given.
    thumbnails: list[Thumbnail]
    facts: ImageFacts


def make_thumbnails(source: ImageSource, specs: Sequence[ThumbnailSpec], *,
                    fmt: str = "JPEG", quality: int | None = None,
                    background: tuple[int, int, int] = (255, 255, 255),
                    max_pixels: int = 100_000_000,
                    path_for_errors: str = "") -> list[Thumbnail]:
    """Decode ``source`` once and return one thumbnail per spec, in the order of ``specs``.

    ``render_image`` with one format and no facts: see its promises. ``fmt`` is
    jpeg/jpg/png/webp/avif in any case; ``quality`` (1..100) applies to JPEG, WebP and
    AVIF, and defaults to the format's ``DEFAULT_QUALITY``. No specs: no decode, [].
    """
    name = format_name(normalize_format(fmt))
    _check_quality(quality)
    _check_max_pixels(max_pixels)
    if not specs:
        return []
    return render_image(source, specs, formats=[name], quality=quality,
                        background=background, max_pixels=max_pixels,
                        path_for_errors=path_for_errors, thumbhash=False).thumbnails


def render_image(source: ImageSource, specs: Sequence[ThumbnailSpec], *,
                 formats: Iterable[str] = ("jpeg",),
                 quality: int | Mapping[str, int] | None = None,
                 background: tuple[int, int, int] = (255, 255, 255),
                 max_pixels: int = 100_000_000, path_for_errors: str = "",
                 thumbhash: bool = True) -> RenderedImage:
    """Decode ``source`` once; return each spec's thumbnail in each of ``formats`` and the
    image's facts (upright size; its ThumbHash unless ``thumbhash`` is false).

    Thumbnails come spec by spec in the order of ``specs``, each in the order of
    ``formats`` (jpeg/jpg/png/webp/avif, any case; a repeated format is made once).
    Promises, for every thumbnail:

    * it is exactly the spec's box: the picture is scaled (Lanczos) to cover the box and
      centre-cropped, so there are no bands; pictures smaller than the box are upscaled;
    * it is upright, turned exactly once: by the EXIF orientation, or for HEIC/HEIF and
      AVIF by their irot/imir properties only (an EXIF tag in those is ignored);
    * colours are sRGB: CMYK and other RGB spaces (Display P3...) go through their
      embedded ICC profile when it is usable (CMYK without one is converted plainly),
      16-bit and 10-bit samples are scaled to 8 bits, grey stays grey;
    * transparency is kept for PNG, WebP and AVIF and flattened onto ``background`` for
      JPEG;
    * only the first frame of an animation is used, and the primary image of a HEIF file;
    * it carries no metadata: no EXIF (so no GPS), no XMP, no comment, no ICC profile.

    ``quality`` is 1..100 for every lossy format, or a mapping of format names to 1..100;
    formats it leaves out get ``DEFAULT_QUALITY``. The facts' ThumbHash is computed from
    the upright picture, scaled to fit PLACEHOLDER_SIDE, in sRGB, with its alpha.

    Raises ``ImageError`` (op "thumbnail", path ``path_for_errors``) when the source cannot
    be decoded (corrupt, truncated, not an image, HEIC without pillow-heif) or has more
    than ``max_pixels`` pixels; that check reads only the header. Pillow's process-wide
    ``Image.MAX_IMAGE_PIXELS`` still refuses images over twice its value (about 179 MP by
    default) whatever ``max_pixels`` says. Raises ValueError for bad arguments.
    """
    kinds = _output_kinds(formats)
    qualities = _qualities(kinds, quality)
    _check_max_pixels(max_pixels)
    where = path_for_errors or (os.fspath(source) if isinstance(source, (str, os.PathLike))
                                else "")
    boxes = [(spec.width, spec.height) for spec in specs]
    if thumbhash:
        boxes.append((PLACEHOLDER_SIDE, PLACEHOLDER_SIDE))
    decoded = decode(source, boxes, max_pixels, where)
    icc = decoded.image.info.get("icc_profile")
    try:
        image = _to_working_mode(decoded.image)
        thumbnails = []
        for spec in specs:
            picture = _upright(image, decoded.region, decoded.orientation, icc,
                               (spec.width, spec.height))
            for kind in kinds:
                thumbnails.append(_thumbnail(picture, spec.name, kind, qualities[kind],
                                             background))
        placeholder = (_thumbhash(image, decoded.region, decoded.orientation, icc)
                       if thumbhash else None)
    # Encoders report failures as OSError, ValueError or (libavif) RuntimeError.
    except (OSError, ValueError, RuntimeError) as err:
        raise ImageError(f"cannot make thumbnail: {err}", op="thumbnail",
                         path=where) from err
    width, height = decoded.upright_size
    return RenderedImage(thumbnails, ImageFacts(width, height, placeholder))


def _output_kinds(formats: Iterable[str]) -> list[ImageKind]:
    if isinstance(formats, str):
        formats = [formats]
    kinds: list[ImageKind] = []
    for name in formats:
        kind = normalize_format(name)
        if kind not in kinds:
            kinds.append(kind)
    if not kinds:
        raise ValueError("at least one thumbnail format is needed")
    return kinds


def _check_quality(quality: int | None) -> int | None:
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int)
                                or not 1 <= quality <= 100):
        raise ValueError(f"quality must be 1..100, not {quality!r}")
    return quality


def _check_max_pixels(max_pixels: int) -> None:
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, not {max_pixels}")


def _qualities(kinds: list[ImageKind],
               quality: int | Mapping[str, int] | None) -> dict[ImageKind, int | None]:
    """Each kind's encoder quality: the caller's where given, else the default."""
    if quality is None or isinstance(quality, Mapping):
        given = {format_name(normalize_format(name)): _check_quality(value)
                 for name, value in (quality or {}).items()}
    else:
        given = {name: _check_quality(quality) for name, default in DEFAULT_QUALITY.items()
                 if default is not None}
    return {kind: given.get(format_name(kind), DEFAULT_QUALITY[format_name(kind)])
            for kind in kinds}


def _crop_box(region: tuple[float, float], box: tuple[int, int]) -> tuple[float, ...]:
    """The centred part of ``region`` with the box's aspect ratio, as large as fits."""
    scale = cover_scale(region, box)
    # min(): float rounding must never push the box past the image, which resize refuses.
    crop_w, crop_h = min(region[0], box[0] / scale), min(region[1], box[1] / scale)
    left, top = (region[0] - crop_w) / 2, (region[1] - crop_h) / 2
    return (left, top, left + crop_w, top + crop_h)


# The modes resize handles at full quality and that the rest of _upright understands.
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


def _upright(image: Image.Image, region: tuple[float, float], orientation: int,
             icc: bytes | None, box: tuple[int, int]) -> Image.Image:
    """Crop and scale the picture to cover the upright ``box``, in sRGB, upright."""
    stored = stored_box(box, orientation in SWAPPING)
    # One resize call does crop and scale; reducing_gap lets Pillow shrink by an integer
    # factor first (cheap box averaging) when the picture is much larger than the box.
    thumb = image.resize(stored, Image.Resampling.LANCZOS, box=_crop_box(region, stored),
                         reducing_gap=3.0)
    return _finish(thumb, orientation, icc)


def _finish(thumb: Image.Image, orientation: int, icc: bytes | None) -> Image.Image:
    # These steps cost per output pixel, so they run on the small image: colour
    # conversion commutes with scaling closely enough, and transposing is exact.
    thumb = _to_srgb(thumb, icc)
    if orientation in UPRIGHT:
        thumb = thumb.transpose(UPRIGHT[orientation])
    return thumb


def _thumbnail(picture: Image.Image, name: str, kind: ImageKind, quality: int | None,
               background: tuple[int, int, int]) -> Thumbnail:
    if kind == JPEG and picture.mode in ("LA", "RGBA"):
        picture = _flatten(picture, background)
    return Thumbnail(name, _encode(picture, kind, quality), kind.mime, kind.format,
                     kind.extension, picture.width, picture.height)


def _thumbhash(image: Image.Image, region: tuple[float, float], orientation: int,
               icc: bytes | None) -> str:
    """The ThumbHash of the whole upright picture, from a rendition that fits
    PLACEHOLDER_SIDE (never enlarged)."""
    scale = min(1.0, PLACEHOLDER_SIDE / max(region))
    size = (max(1, min(PLACEHOLDER_SIDE, round(region[0] * scale))),
            max(1, min(PLACEHOLDER_SIDE, round(region[1] * scale))))
    small = image.resize(size, Image.Resampling.LANCZOS, box=(0, 0, *region),
                         reducing_gap=3.0)
    small = _finish(small, orientation, icc).convert("RGBA")
    return thumbhash_base64(small.width, small.height, small.tobytes())


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

#: libaom's speed (0 slowest .. 10) for AVIF thumbnails.
AVIF_SPEED = 6


def _flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite an image with alpha onto an opaque ``background`` colour (RGB result)."""
    canvas = Image.new("RGB", image.size, tuple(background))
    canvas.paste(image.convert("RGBA"), mask=image.getchannel("A"))
    return canvas


def _encode(image: Image.Image, kind: ImageKind, quality: int | None) -> bytes:
    """Encode with no metadata. Pillow copies ``info`` (EXIF, comment, XMP, ICC) through
    resize and convert and some encoders write parts of it back, so it is emptied first."""
    image.info = {}
    options: dict[str, object] = {}
    if kind.format == "JPEG":
        # optimize and progressive cost CPU for a few percent of size on small images.
        options = {"quality": quality, "optimize": False, "progressive": False}
    elif kind.format == "WEBP":
        options = {"quality": quality}
    elif kind.format == "AVIF":
        # libaom's default speed: the faster settings lose most of AVIF's size advantage
        # over WebP. One thread: a thumbnail is too small to split, and the putters
        # already keep every core busy.
        options = {"quality": quality, "speed": AVIF_SPEED, "max_threads": 1}
    out = io.BytesIO()
    image.save(out, kind.format, **options)
    return out.getvalue()
