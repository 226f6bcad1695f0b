"""Tests of s3pput.images: every input is generated here, every output is decoded with
Pillow and checked for a property a wrong implementation would miss."""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib

import pytest
from pictures import encode
from PIL import Image, ImageChops, ImageCms, ImageFile, ImageFilter, ImageOps

from s3pput import images
from s3pput.errors import ImageError
from s3pput.images import (
    SNIFF_BYTES,
    Thumbnail,
    ThumbnailSpec,
    make_thumbnails,
    normalize_format,
    parse_thumbnail_spec,
    sniff_image,
)

RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)
BOX = ThumbnailSpec("thumbnail", 200, 300)


# --- helpers -------------------------------------------------------------------------


def decode(thumb: Thumbnail) -> Image.Image:
    image = Image.open(io.BytesIO(thumb.data))
    image.load()
    return image


def one(source, spec: ThumbnailSpec = BOX, **options) -> Image.Image:
    """Make a single thumbnail and return it decoded, after checking its declared size."""
    [thumb] = make_thumbnails(source, [spec], **options)
    image = decode(thumb)
    assert image.size == (thumb.width, thumb.height) == (spec.width, spec.height)
    return image


def near(pixel, expected, tolerance: int = 12) -> bool:
    pixel = pixel if isinstance(pixel, tuple) else (pixel,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


def stripes(size, colours, vertical_bands: bool = True) -> Image.Image:
    """Equal bands of ``colours``, side by side (or stacked)."""
    image = Image.new("RGB", size)
    n = len(colours)
    for i, colour in enumerate(colours):
        if vertical_bands:
            box = (size[0] * i // n, 0, size[0] * (i + 1) // n, size[1])
        else:
            box = (0, size[1] * i // n, size[0], size[1] * (i + 1) // n)
        image.paste(colour, box)
    return image


# --- sniff_image ---------------------------------------------------------------------

def _sample(fmt: str, mode: str = "RGB", **options) -> bytes:
    return encode(Image.new(mode, (8, 8), 0 if mode.startswith("I") else GREY), fmt,
                  **options)


@pytest.mark.parametrize("data, expected", [
    (_sample("JPEG"), ("JPEG", "image/jpeg", "jpg")),
    (_sample("PNG"), ("PNG", "image/png", "png")),
    (_sample("WEBP"), ("WEBP", "image/webp", "webp")),
    (_sample("GIF"), ("GIF", "image/gif", "gif")),
    (_sample("BMP"), ("BMP", "image/bmp", "bmp")),
    (_sample("TIFF"), ("TIFF", "image/tiff", "tiff")),  # little-endian, "II*\0"
    (_sample("TIFF", mode="I;16B"), ("TIFF", "image/tiff", "tiff")),  # big-endian "MM\0*"
    (_sample("TIFF", big_tiff=True), ("TIFF", "image/tiff", "tiff")),  # BigTIFF
], ids=["jpeg", "png", "webp", "gif", "bmp", "tiff-le", "tiff-be", "bigtiff"])
def test_sniff_image_recognises_formats_from_the_head_alone(data, expected):
    kind = sniff_image(data[:SNIFF_BYTES])
    assert tuple(kind) == expected
    assert (kind.format, kind.mime, kind.extension) == expected
    # The sniffed format is the one Pillow itself reads the file as.
    assert Image.open(io.BytesIO(data)).format == kind.format


def test_sniff_image_tiff_byte_orders_really_differ():
    # Guards the parametrised test above against both samples being little-endian.
    assert _sample("TIFF")[:2] == b"II" and _sample("TIFF", mode="I;16B")[:2] == b"MM"


@pytest.mark.parametrize("head", [
    b"",
    b"hello, world\n",
    b"BMW 320i, BMX bikes: text starting with BM is not a bitmap",
    b"RIFF\x24\x00\x00\x00WAVEfmt ",  # a WAV file: RIFF but not WebP
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3",
    b"\xff\xd8",  # too short to be a JPEG
    b"\x89PNG",  # truncated PNG signature
    b"GIF90a......",
    b"\x00" * 64,
], ids=["empty", "text", "bm-text", "wav", "pdf", "jpeg-2-bytes", "png-4-bytes",
        "gif-bad-version", "zeros"])
def test_sniff_image_rejects_non_images(head):
    assert sniff_image(head) is None


def test_sniff_image_ignores_bytes_past_the_head():
    assert sniff_image(b"x" * SNIFF_BYTES + _sample("PNG")) is None


# --- normalize_format, ThumbnailSpec, parse_thumbnail_spec ----------------------------

@pytest.mark.parametrize("name, expected", [
    ("jpeg", ("JPEG", "image/jpeg", "jpg")), ("JPG", ("JPEG", "image/jpeg", "jpg")),
    ("Png", ("PNG", "image/png", "png")), ("WebP", ("WEBP", "image/webp", "webp")),
])
def test_normalize_format_accepts_output_formats_in_any_case(name, expected):
    pillow_format, mime, extension = normalize_format(name)
    assert (pillow_format, mime, extension) == expected


@pytest.mark.parametrize("name", ["gif", "tiff", "", "jpeg2000", " jpeg"])
def test_normalize_format_rejects_others(name):
    with pytest.raises(ValueError, match="jpeg, png, webp, avif"):
        normalize_format(name)


@pytest.mark.parametrize("text, expected", [
    ("thumbnail=200x300", ThumbnailSpec("thumbnail", 200, 300)),
    ("small=64X64", ThumbnailSpec("small", 64, 64)),
    ("  a.b-c_9=1x10000 ", ThumbnailSpec("a.b-c_9", 1, 10000)),
    ("...=5x5", ThumbnailSpec("...", 5, 5)),
])
def test_parse_thumbnail_spec_good(text, expected):
    assert parse_thumbnail_spec(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "NAME=WIDTHxHEIGHT"),
    ("thumbnail", "NAME=WIDTHxHEIGHT"),
    ("thumbnail=200", "NAME=WIDTHxHEIGHT"),
    ("thumbnail=200x", "NAME=WIDTHxHEIGHT"),
    ("thumbnail=x300", "NAME=WIDTHxHEIGHT"),
    ("thumbnail=-2x300", "NAME=WIDTHxHEIGHT"),
    ("thumbnail=2.5x300", "NAME=WIDTHxHEIGHT"),
    ("thumbnail=200x300x3", "NAME=WIDTHxHEIGHT"),
    ("thumbnail:200x300", "NAME=WIDTHxHEIGHT"),
    ("thumbnail=\u0663x3", "NAME=WIDTHxHEIGHT"),  # an Arabic-Indic three
    ("a=b=200x300", "NAME=WIDTHxHEIGHT"),
    ("=200x300", "letters, digits"),
    (".=200x300", "letters, digits"),
    ("..=200x300", "letters, digits"),
    ("a/b=200x300", "letters, digits"),
    ("../up=200x300", "letters, digits"),
    ("with space=200x300", "letters, digits"),
    ("thumbnail=0x300", "from 1 to"),
    ("thumbnail=200x0", "from 1 to"),
    ("thumbnail=10001x300", "from 1 to"),
])
def test_parse_thumbnail_spec_bad(text, message):
    with pytest.raises(ValueError, match=message):
        parse_thumbnail_spec(text)


def test_thumbnail_spec_validates_when_built_directly():
    with pytest.raises(ValueError):
        ThumbnailSpec("a/b", 10, 10)
    with pytest.raises(ValueError):
        ThumbnailSpec("ok", 10, True)  # bool is an int, but not a size


# --- size and crop -------------------------------------------------------------------

def test_landscape_source_is_centre_cropped_to_the_middle_band():
    # Red | green | blue, 600x200: a 100x100 box must show only the green middle third.
    # Squashing the whole picture (resize without crop) would put red and blue bands in
    # the left and right thirds; padding (contain) would add background bands.
    source = encode(stripes((600, 200), [RED, GREEN, BLUE]), "PNG")
    thumb = one(source, ThumbnailSpec("t", 100, 100), fmt="png").convert("RGB")
    for x in (0, 2, 50, 97, 99):
        for y in (0, 50, 99):
            assert near(thumb.getpixel((x, y)), GREEN, 40), (x, y, thumb.getpixel((x, y)))


def test_portrait_source_into_landscape_box_keeps_the_middle_rows():
    source = encode(stripes((90, 900), [RED, GREEN, BLUE], vertical_bands=False), "JPEG",
                    quality=95)
    thumb = one(source, ThumbnailSpec("t", 300, 100))
    assert near(thumb.getpixel((150, 50)), GREEN, 30)
    assert near(thumb.getpixel((150, 2)), GREEN, 60)
    assert near(thumb.getpixel((150, 97)), GREEN, 60)


def test_crop_is_centred_not_anchored():
    # Five bands; a box a fifth as wide must show band 3 (index 2), not band 1 or 5.
    colours = [RED, (255, 255, 0), GREEN, (0, 255, 255), BLUE]
    source = encode(stripes((1000, 200), colours), "PNG")
    thumb = one(source, ThumbnailSpec("t", 50, 50), fmt="png").convert("RGB")
    assert near(thumb.getpixel((25, 25)), GREEN, 10)


def test_tiny_source_is_upscaled_to_fill_the_box():
    source = encode(Image.new("RGB", (10, 10), (20, 90, 200)), "PNG")
    thumb = one(source, BOX).convert("RGB")
    for point in [(0, 0), (199, 299), (100, 150), (0, 299)]:
        assert near(thumb.getpixel(point), (20, 90, 200), 10)


def test_several_specs_come_from_one_decode(monkeypatch):
    opened = []
    real_open = Image.open

    def counting_open(*args, **kwargs):
        opened.append(args)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    source = encode(stripes((1800, 600), [RED, GREEN, BLUE]), "JPEG", quality=95)
    specs = [BOX, ThumbnailSpec("square", 100, 100), ThumbnailSpec("wide", 64, 16)]
    thumbs = images.make_thumbnails(source, specs)
    assert len(opened) == 1
    assert [(t.name, t.width, t.height) for t in thumbs] == [
        ("thumbnail", 200, 300), ("square", 100, 100), ("wide", 64, 16)]
    assert [decode(t).size for t in thumbs] == [(200, 300), (100, 100), (64, 16)]
    # Each box is cropped for its own shape: the portrait and the square one show only
    # the green middle third, the wide one all three bands.
    portrait, square, wide = (decode(t) for t in thumbs)
    for x in (3, 100, 196):
        assert near(portrait.getpixel((x, 150)), GREEN, 40)
    for x in (3, 50, 96):
        assert near(square.getpixel((x, 50)), GREEN, 40)
    assert near(wide.getpixel((3, 8)), RED, 40)
    assert near(wide.getpixel((32, 8)), GREEN, 40)
    assert near(wide.getpixel((60, 8)), BLUE, 40)


def test_jpeg_draft_keeps_enough_detail_for_the_largest_box():
    # Fine detail, 1600x2400, with a 20x30 and a 400x600 box. Decoding at 1/8 (what the
    # small box alone would allow) and upscaling would blur the large one.
    noise = Image.effect_noise((400, 600), 60).resize((1600, 2400), Image.Resampling.BOX)
    detail = Image.merge("RGB", [noise, noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                 noise]).filter(ImageFilter.GaussianBlur(1))
    source = encode(detail, "JPEG", quality=95)
    thumbs = make_thumbnails(source, [ThumbnailSpec("s", 20, 30), ThumbnailSpec("l", 400, 600)],
                             fmt="png")
    reference = ImageOps.fit(Image.open(io.BytesIO(source)).convert("RGB"), (400, 600),
                             Image.Resampling.LANCZOS)
    too_small = Image.open(io.BytesIO(source))
    too_small.draft("RGB", (200, 300))  # what the 20x30 box alone would allow
    assert too_small.size == (200, 300)
    too_small = too_small.resize((400, 600), Image.Resampling.LANCZOS)
    large = decode(thumbs[1]).convert("RGB")
    assert _rms(large, reference) < 12 < _rms(too_small, reference)


def _rms(a: Image.Image, b: Image.Image) -> float:
    """Root-mean-square difference of two same-size RGB images, per sample."""
    histogram = ImageChops.difference(a, b).histogram()
    squares = sum((level % 256) ** 2 * count for level, count in enumerate(histogram))
    return math.sqrt(squares / (a.width * a.height * 3))


# --- orientation ---------------------------------------------------------------------

def _landscape_with_marker(size=(1200, 800)) -> Image.Image:
    """Grey, with a red square in the stored top-left corner."""
    image = Image.new("RGB", size, GREY)
    image.paste(RED, (0, 0, size[0] // 5, size[0] // 5))
    return image


def _with_orientation(image: Image.Image, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, fmt, exif=exif.tobytes())


def _corners(image: Image.Image) -> dict[str, tuple]:
    w, h = image.size
    rgb = image.convert("RGB")
    return {"top-left": rgb.getpixel((10, 10)), "top-right": rgb.getpixel((w - 11, 10)),
            "bottom-left": rgb.getpixel((10, h - 11)),
            "bottom-right": rgb.getpixel((w - 11, h - 11))}


# Orientation 6: the camera was turned clockwise; showing it means rotating the stored
# pixels 90 degrees clockwise, which moves the stored top-left to the top-right.
# Orientation 8: the other way, the stored top-left ends bottom-left.
# The box has the upright picture's shape, so nothing is cropped and every corner shows.
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation, box, marked", [
    (6, BOX, "top-right"), (8, BOX, "bottom-left"),
    (1, ThumbnailSpec("t", 300, 200), "top-left"),
    (3, ThumbnailSpec("t", 300, 200), "bottom-right")])
def test_exif_orientation_makes_the_thumbnail_upright(fmt, orientation, box, marked):
    source = _with_orientation(_landscape_with_marker(), fmt, orientation)
    corners = _corners(one(source, box))
    for corner, colour in corners.items():
        assert near(colour, RED if corner == marked else GREY, 30), (corner, corners)


def test_rotated_photo_is_cropped_in_its_upright_frame():
    # Stored 1800x600 with orientation 6 is an upright 600x1800 portrait. A 200x300 box
    # keeps its middle 600x900: upright rows 450..1350. The stored left end (upright top
    # rows) is red and must be cropped away; a blue mark at the stored top middle lands
    # at the upright right edge, half-way down, and must show there.
    stored = Image.new("RGB", (1800, 600), GREY)
    stored.paste(RED, (0, 0, 150, 600))
    stored.paste(BLUE, (800, 0, 1000, 100))
    thumb = one(_with_orientation(stored, "JPEG", 6), BOX).convert("RGB")
    assert near(thumb.getpixel((195, 150)), BLUE, 30)
    assert near(thumb.getpixel((5, 150)), GREY, 30)
    for y in (2, 297):
        for x in (5, 100, 195):
            assert near(thumb.getpixel((x, y)), GREY, 30), (x, y)


# --- transparency --------------------------------------------------------------------

BACKGROUND = (10, 200, 30)


def _transparent_sources() -> dict[str, bytes]:
    rgba = Image.new("RGBA", (40, 60), (255, 0, 0, 0))
    la = Image.new("LA", (40, 60), (0, 0))
    palette = Image.new("P", (40, 60), 0)
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    rgb_trns = Image.new("RGB", (40, 60), (1, 2, 3))
    return {
        "RGBA png": encode(rgba, "PNG"),
        "RGBA webp": encode(rgba, "WEBP", lossless=True),
        "LA png": encode(la, "PNG"),
        "P png with tRNS": encode(palette, "PNG", transparency=0),
        "P gif with transparency": encode(palette, "GIF", transparency=0),
        "RGB png with tRNS colour": encode(rgb_trns, "PNG", transparency=(1, 2, 3)),
    }


@pytest.mark.parametrize("name", list(_transparent_sources()))
def test_transparent_pixels_become_the_background_in_jpeg(name):
    source = _transparent_sources()[name]
    thumb = one(source, ThumbnailSpec("t", 40, 60), background=BACKGROUND)
    assert thumb.mode == "RGB"
    assert near(thumb.getpixel((20, 30)), BACKGROUND, 8), thumb.getpixel((20, 30))


def test_half_transparent_red_blends_with_the_background():
    source = encode(Image.new("RGBA", (40, 60), (255, 0, 0, 128)), "PNG")
    thumb = one(source, ThumbnailSpec("t", 40, 60), fmt="png")  # png: no JPEG error
    assert thumb.mode == "RGBA"  # kept for PNG...
    assert near(thumb.getpixel((20, 30)), (255, 0, 0, 128), 2)
    flat = one(source, ThumbnailSpec("t", 40, 60), background=(255, 255, 255))
    assert near(flat.getpixel((20, 30)), (255, 127, 127), 8)  # ...flattened for JPEG


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_alpha_is_kept_for_formats_that_have_it(fmt):
    image = Image.new("RGBA", (40, 60), (0, 0, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, 40, 30))  # top half transparent
    thumb = one(encode(image, "PNG"), ThumbnailSpec("t", 40, 60), fmt=fmt)
    assert thumb.mode == "RGBA"
    assert thumb.getpixel((20, 5))[3] < 10
    assert near(thumb.getpixel((20, 55)), (0, 0, 255, 255), 10)


# --- bit depth, grey, colour ----------------------------------------------------------

@pytest.mark.parametrize("mode, fmt, value, expected", [
    ("I;16", "PNG", 32768, 128),  # 16-bit grey PNG: mid-grey, not clipped to white
    ("I;16", "PNG", 65535, 255),
    ("I;16", "PNG", 8192, 32),
    ("I;16", "TIFF", 32768, 128),
    ("I;16B", "TIFF", 16384, 64),  # big-endian 16-bit TIFF
    ("I", "TIFF", 40000, 156),  # 32-bit integer holding 16-bit samples
    ("I", "TIFF", 100, 100),  # 32-bit integer holding 8-bit samples
    ("F", "TIFF", 0.5, 128),  # float in 0..1
    ("F", "TIFF", 200.0, 200),  # float in 0..255
])
def test_deep_grey_is_scaled_to_8_bits(mode, fmt, value, expected):
    source = encode(Image.new(mode, (30, 30), value), fmt)
    assert Image.open(io.BytesIO(source)).mode == mode  # the test really feeds that mode
    thumb = one(source, ThumbnailSpec("t", 30, 30), fmt="png")
    assert thumb.mode == "L"
    assert near(thumb.getpixel((15, 15)), expected, 1), thumb.getpixel((15, 15))


def test_16_bit_gradient_keeps_its_shades():
    gradient = Image.linear_gradient("L").resize((64, 64)).convert("I")
    source = encode(gradient.point(lambda v: v * 257).convert("I;16"), "PNG")
    thumb = one(source, ThumbnailSpec("t", 64, 64), fmt="png")
    top, bottom = thumb.getpixel((32, 1)), thumb.getpixel((32, 62))
    assert top < 20 and bottom > 235
    assert near(thumb.getpixel((32, 32)), 128, 12)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
@pytest.mark.parametrize("mode, fill, expected", [("L", 77, 77), ("1", 1, 255),
                                                  ("1", 0, 0)])
def test_grey_stays_grey(mode, fill, expected, fmt):
    source = encode(Image.new(mode, (60, 90), fill), "PNG")
    thumb = one(source, ThumbnailSpec("t", 40, 60), fmt=fmt)
    assert thumb.mode == ("RGB" if fmt == "webp" else "L")  # WebP has no grey mode
    assert near(thumb.getpixel((20, 30)), (expected,) * len(thumb.mode), 3)


def test_grey_jpeg_source_gives_grey_jpeg():
    source = encode(Image.new("L", (600, 900), 77), "JPEG")
    thumb = one(source)
    assert thumb.format == "JPEG" and thumb.mode == "L"
    assert near(thumb.getpixel((100, 150)), 77, 3)


def test_cmyk_jpeg_without_profile_is_converted_plainly():
    source = encode(Image.new("CMYK", (400, 600), (255, 0, 0, 0)), "JPEG", quality=95)
    # Pillow writes CMYK JPEGs the way Photoshop does: Adobe marker, inverted samples.
    assert b"Adobe" in source
    thumb = one(source)
    assert thumb.mode == "RGB"
    assert near(thumb.getpixel((100, 150)), (0, 255, 255), 12)  # cyan


# ICC profiles are built byte by byte: ImageCms.createProfile only makes sRGB, LAB and
# XYZ, and no profile file is assumed to be installed.

def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _icc(device_class: bytes, colour_space: bytes, pcs: bytes, tags: dict) -> bytes:
    """A minimal ICC v2.1 profile: header, tag table, tag data."""
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags.items():
        body += b"\0" * (-len(body) % 4)
        table += struct.pack(">4sII", signature, offset + len(data), len(body))
        data += body
    header = (struct.pack(">I4sI", offset + len(data), b"none", 0x02100000)
              + device_class + colour_space + pcs + b"\0" * 12 + b"acsp" + b"\0" * 28
              + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _desc(text: str) -> bytes:
    ascii_ = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 78


D50 = (0.9642, 1.0, 0.8249)
# Display P3 primaries adapted to D50 (the colorant tags of Apple's Display P3 profile).
P3_COLORANTS = ((0.515102, 0.241182, -0.001050), (0.291965, 0.692236, 0.041882),
                (0.157153, 0.066582, 0.784378))
SRGB_COLORANTS = ((0.4360747, 0.2225045, 0.0139322), (0.3850649, 0.7168786, 0.0971045),
                  (0.1430804, 0.0606169, 0.7141733))


def _wide_gamut_profile() -> bytes:
    """An RGB matrix/TRC profile with Display P3 primaries and a plain 2.2 gamma."""
    gamma = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256))
    return _icc(b"mntr", b"RGB ", b"XYZ ", {
        b"desc": _desc("wide gamut test"), b"wtpt": _xyz(*D50),
        b"rXYZ": _xyz(*P3_COLORANTS[0]), b"gXYZ": _xyz(*P3_COLORANTS[1]),
        b"bXYZ": _xyz(*P3_COLORANTS[2]),
        b"rTRC": gamma, b"gTRC": gamma, b"bTRC": gamma})


def _p3_to_srgb(rgb: tuple[int, int, int]) -> tuple[int, ...]:
    """Expected result, computed by hand: linearise, P3 -> XYZ -> sRGB, encode."""
    linear = [(v / 255) ** 2.2 for v in rgb]
    xyz = [sum(P3_COLORANTS[c][row] * linear[c] for c in range(3)) for row in range(3)]
    m = [[SRGB_COLORANTS[c][row] for c in range(3)] for row in range(3)]

    def det(a):
        return (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
                - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))

    def solve(col):  # Cramer's rule
        a = [row[:] for row in m]
        for r in range(3):
            a[r][col] = xyz[r]
        return det(a) / det(m)

    def encode_srgb(v):
        v = min(max(v, 0.0), 1.0)
        return 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055

    return tuple(round(255 * encode_srgb(solve(c))) for c in range(3))


def test_wide_gamut_rgb_is_converted_to_srgb():
    colour = (200, 100, 50)
    expected = _p3_to_srgb(colour)
    assert expected[0] > colour[0] + 10 and expected[2] < colour[2] - 10  # a real shift
    image = Image.new("RGB", (60, 90), colour)
    tagged = one(encode(image, "PNG", icc_profile=_wide_gamut_profile()),
                 ThumbnailSpec("t", 40, 60), fmt="png")
    assert near(tagged.getpixel((20, 30)), expected, 3), (tagged.getpixel((20, 30)), expected)
    untagged = one(encode(image, "PNG"), ThumbnailSpec("t", 40, 60), fmt="png")
    assert untagged.getpixel((20, 30)) == colour


def _cmyk_profile_showing_cyan_as_magenta() -> bytes:
    """A CMYK profile (lut8, 2 grid points, Lab PCS) that renders cyan ink as magenta
    and magenta ink as cyan, so that using it and ignoring it give opposite colours."""
    def rgb(c, m, y, k):  # the naive conversion, with cyan and magenta swapped
        return tuple(round(255 * (1 - ink) * (1 - k)) for ink in (m, c, y))

    corners = [(c, m, y, k) for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)]
    grid = Image.new("RGB", (16, 1))
    grid.putdata([rgb(*corner) for corner in corners])
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"),
                                     ImageCms.createProfile("LAB"), "RGB", "LAB")
    lab = ImageCms.applyTransform(grid, to_lab)
    clut = b"".join(bytes(lab.getpixel((i, 0))) for i in range(16))
    ramp = bytes(range(256))
    identity = b"".join(_s15(float(r == c)) for r in range(3) for c in range(3))
    a2b0 = b"mft1\0\0\0\0" + bytes([4, 3, 2, 0]) + identity + ramp * 4 + clut + ramp * 3
    return _icc(b"prtr", b"CMYK", b"Lab ", {b"desc": _desc("cmyk test"),
                                           b"wtpt": _xyz(*D50), b"A2B0": a2b0})


def test_cmyk_jpeg_uses_its_embedded_profile():
    cyan_ink = Image.new("CMYK", (400, 600), (255, 0, 0, 0))
    source = encode(cyan_ink, "JPEG", quality=95,
                    icc_profile=_cmyk_profile_showing_cyan_as_magenta())
    thumb = one(source)
    assert thumb.mode == "RGB"
    assert near(thumb.getpixel((100, 150)), (255, 0, 255), 20), thumb.getpixel((100, 150))


def test_unusable_profile_falls_back_to_plain_conversion():
    # An RGB profile on CMYK pixels cannot be applied; the picture must still come out.
    source = encode(Image.new("CMYK", (40, 60), (0, 255, 0, 0)), "JPEG", quality=95,
                    icc_profile=_wide_gamut_profile())
    assert near(one(source, ThumbnailSpec("t", 40, 60)).getpixel((20, 30)), (255, 0, 255),
                12)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "MPO"])
def test_animation_gives_its_first_frame(fmt):
    frames = [Image.new("RGB", (60, 90), colour) for colour in (RED, GREEN, BLUE)]
    options = {"lossless": True} if fmt == "WEBP" else {}
    source = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100,
                    **options)
    assert getattr(Image.open(io.BytesIO(source)), "n_frames", 1) == 3
    thumb = one(source, ThumbnailSpec("t", 40, 60)).convert("RGB")
    assert near(thumb.getpixel((20, 30)), RED, 12)


# --- metadata ------------------------------------------------------------------------

def _photo_with_metadata() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)  # GPSLatitudeRef, GPSLatitude
    gps[3], gps[4] = "E", (2.0, 17.0, 40.0)
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/'
           b'1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>')
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(Image.new("RGB", (400, 600), GREY), "JPEG", exif=exif.tobytes(),
                  comment=b"secret comment", xmp=xmp, icc_profile=icc)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_thumbnails_carry_no_metadata(fmt):
    source = _photo_with_metadata()
    original = Image.open(io.BytesIO(source))  # the fixture really has all of it
    assert original.getexif().get_ifd(0x8825)[1] == "N"
    assert {"exif", "comment", "xmp", "icc_profile"} <= set(original.info)

    [thumb] = make_thumbnails(source, [BOX], fmt=fmt)
    image = decode(thumb)
    assert len(image.getexif()) == 0
    assert not {"exif", "comment", "xmp", "icc_profile"} & set(image.info)
    for marker in (b"Exif", b"GPS", b"Camera Maker", b"secret comment", b"xmpmeta"):
        assert marker not in thumb.data


# --- formats and sources ---------------------------------------------------------------

@pytest.mark.parametrize("fmt, pillow_format, mime, extension", [
    ("jpg", "JPEG", "image/jpeg", "jpg"), ("PNG", "PNG", "image/png", "png"),
    ("webp", "WEBP", "image/webp", "webp")])
def test_output_format_is_what_it_says(fmt, pillow_format, mime, extension):
    source = encode(Image.new("RGB", (60, 90), GREEN), "JPEG")
    [thumb] = make_thumbnails(source, [BOX], fmt=fmt)
    assert (thumb.format, thumb.mime, thumb.extension) == (pillow_format, mime, extension)
    assert decode(thumb).format == pillow_format
    assert sniff_image(thumb.data).format == pillow_format


def test_jpeg_quality_is_applied():
    noisy = encode(Image.effect_noise((200, 300), 50).convert("RGB"), "PNG")
    low = make_thumbnails(noisy, [BOX], quality=20)[0].data
    high = make_thumbnails(noisy, [BOX], quality=95)[0].data
    assert len(low) * 2 < len(high)


def test_bad_arguments_are_value_errors_not_image_errors():
    source = _sample("PNG")
    with pytest.raises(ValueError, match="jpeg, png, webp, avif"):
        make_thumbnails(source, [BOX], fmt="gif")
    with pytest.raises(ValueError, match="quality"):
        make_thumbnails(source, [BOX], quality=0)
    assert make_thumbnails(source, []) == []


def test_source_may_be_a_path_or_a_file(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(Image.new("RGB", (60, 90), BLUE), "PNG"))
    for source in (path, str(path)):
        assert near(one(source).convert("RGB").getpixel((100, 150)), BLUE, 12)
    with path.open("rb") as file:
        assert near(one(file).convert("RGB").getpixel((100, 150)), BLUE, 12)


# --- refusals ------------------------------------------------------------------------

def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds a few bytes of zeros."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _png_chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height, message", [
    # Over Pillow's own hard limit: refused inside Image.open, before the size is known.
    (100_000, 100_000, "image is 10,000 MP, over the 100 MP limit"),
    # Between Pillow's warning and hard limits: our check, with the dimensions.
    (10_000, 10_001, "image is 10000x10001 = 100.01 MP, over the 100 MP limit"),
])
def test_decompression_bomb_is_refused_before_decoding(width, height, message, monkeypatch):
    # Every decode of pixels goes through ImageFile.load: watch it (and check, on a
    # small image, that a decode would be seen).
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda image: decoded.append(image.size) or load(image))
    one(encode(Image.new("RGB", (20, 30)), "PNG"))
    assert decoded[:1] == [(20, 30)]
    decoded.clear()
    source = _png_header_only(width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no DecompressionBombWarning leaks out
        with pytest.raises(ImageError) as caught:
            make_thumbnails(source, [BOX], path_for_errors="bomb.png")
    assert decoded == []  # refused from the header alone: not one pixel was decoded
    assert caught.value.message == message
    assert (caught.value.op, caught.value.path) == ("thumbnail", "bomb.png")
    assert str(caught.value) == f"thumbnail bomb.png: {message}"


def test_pillow_limit_below_ours_is_reported_as_pillows():
    with pytest.raises(ImageError, match=r"Pillow's own limit \(PIL.Image.MAX_IMAGE_PIXELS\)"):
        make_thumbnails(_png_header_only(100_000, 100_000), [BOX], max_pixels=10**12)


def test_max_pixels_is_the_callers_limit():
    source = encode(Image.new("RGB", (200, 100)), "PNG")
    with pytest.raises(ImageError, match=r"200x100 = 0.02 MP, over the 0.01 MP limit"):
        make_thumbnails(source, [BOX], max_pixels=10_000)
    assert make_thumbnails(source, [BOX], max_pixels=20_000)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with_broken_second_chunk() -> bytes:
    """Opens fine; the pixel data continues in a chunk with a nonsense type, on which
    Pillow's decoder raises SyntaxError (not an OSError)."""
    pixels = zlib.compress(b"".join(b"\0" + bytes([i] * 16) for i in range(16)))
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", pixels[:20])
            + _png_chunk(b"\xf7#\x9fE", pixels[20:]) + _png_chunk(b"IEND", b""))


def _bmp_with_short_palette() -> bytes:
    """A palette BMP claiming 1000 colours: Pillow raises ValueError (not an OSError)."""
    image = Image.new("P", (8, 8), 3)
    image.putpalette(list(range(256)) * 3)  # not grey, so Pillow keeps the palette
    data = bytearray(encode(image, "BMP"))
    data[46:50] = struct.pack("<I", 1000)  # biClrUsed
    return bytes(data)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _photo_jpeg() -> bytes:
    return encode(Image.effect_noise((400, 600), 40).convert("RGB"), "JPEG")


@pytest.mark.parametrize("data, reason", [
    (_half(_photo_jpeg()), "truncated"),
    (_half(encode(Image.effect_noise((400, 600), 40), "PNG")), "truncated"),
    (_half(encode(Image.effect_noise((400, 600), 40).convert("RGB"), "WEBP")), None),
    (_half(encode(Image.effect_noise((400, 600), 40), "GIF")), None),
    (_photo_jpeg()[:200], None),  # headers only
    (b"this is not an image at all" * 10, "cannot identify"),
    (b"", "cannot identify"),
    (b"\x89PNG\r\n\x1a\n" + b"\xff" * 100, None),  # right magic, garbage after
    (b"\xff\xd8\xff" + bytes(range(256)) * 4, None),
    (_png_with_broken_second_chunk(), "broken PNG"),
    (_bmp_with_short_palette(), "palette"),
], ids=["jpeg-half", "png-half", "webp-half", "gif-half", "jpeg-headers", "text", "empty",
        "png-garbage", "jpeg-garbage", "png-syntaxerror", "bmp-valueerror"])
def test_damaged_input_raises_image_error_only(data, reason):
    with pytest.raises(ImageError, match=reason) as caught:
        make_thumbnails(data, [BOX], path_for_errors="damaged.jpg")
    assert caught.value.op == "thumbnail" and caught.value.path == "damaged.jpg"
    assert caught.value.__cause__ is not None  # raised from Pillow's error, kept for logs


def test_missing_file_is_an_image_error_naming_the_path(tmp_path):
    missing = tmp_path / "gone.jpg"
    with pytest.raises(ImageError) as caught:
        make_thumbnails(missing, [BOX])
    assert caught.value.path == str(missing)


def test_truncated_images_stay_refused_after_a_failure():
    # No global LOAD_TRUNCATED_IMAGES: a second attempt must fail the same way.
    from PIL import ImageFile

    data = _half(_photo_jpeg())
    for _ in range(2):
        with pytest.raises(ImageError):
            make_thumbnails(data, [BOX])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
