"""The facts a web page needs to lay out and preview an image before it loads.

Pure: no Pillow, no I/O. ``thumbnails.render_image`` fills ``ImageFacts`` from the same
decode that makes the thumbnails; ``encode_thumbhash`` is the placeholder encoder, a
rewrite of the published ThumbHash algorithm (https://github.com/evanw/thumbhash) whose
output matches the reference implementation's byte for byte (tests hold its outputs).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from operator import mul

__all__ = ["PLACEHOLDER_SIDE", "ImageFacts", "encode_thumbhash", "thumbhash_base64"]

#: The longest side of the rendition a placeholder is computed from. ThumbHash keeps at
#: most 7 frequencies a side: more input pixels only cost time.
PLACEHOLDER_SIDE = 100


@dataclass(frozen=True)
class ImageFacts:
    """What a page needs to show an original: its upright size and a placeholder."""

    width: int  # as viewers show it: after EXIF orientation or irot/imir
    height: int
    # ThumbHash of the upright picture (alpha kept), standard base64 with padding (about
    # 25 bytes, 36 characters); None when not asked for.
    thumbhash: str | None = None


def thumbhash_base64(width: int, height: int, rgba: bytes) -> str:
    """``encode_thumbhash`` in standard base64 (RFC 4648, padded): the usual way to store
    and send a ThumbHash."""
    return base64.b64encode(encode_thumbhash(width, height, rgba)).decode("ascii")


def _round(value: float) -> int:
    # The reference rounds halves up (JavaScript's Math.round); Python's round() rounds
    # them to even, which would change bytes.
    return math.floor(value + 0.5)


def encode_thumbhash(width: int, height: int, rgba: bytes) -> bytes:
    """The ThumbHash of a ``width`` x ``height`` picture given as RGBA bytes, row by row,
    not premultiplied: 5 header bytes (6 with alpha) and the packed DCT coefficients.

    Both sides must be 1..PLACEHOLDER_SIDE; raises ValueError otherwise or when ``rgba``
    is not ``width * height * 4`` bytes.

    A frequency a picture does not contain (in a plain colour, or across a symmetric
    picture) comes out of the sums as rounding noise, which in the reference decides
    between two digits; here it is 0 exactly, so such a term is stored as the middle digit
    8 (or as 0 with a zero scale, for a channel with no variation). Everywhere else the
    bytes are the reference's.
    """
    if not (1 <= width <= PLACEHOLDER_SIDE and 1 <= height <= PLACEHOLDER_SIDE):
        raise ValueError(f"{width}x{height} does not fit in "
                         f"{PLACEHOLDER_SIDE}x{PLACEHOLDER_SIDE}")
    count = width * height
    if len(rgba) != count * 4:
        raise ValueError(f"expected {count * 4} RGBA bytes for {width}x{height}, "
                         f"got {len(rgba)}")
    reds, greens, blues = rgba[0::4], rgba[1::4], rgba[2::4]
    opaque = rgba[3::4] == b"\xff" * count
    if opaque:
        # Every pixel's weight is 1: composited on the average it is itself (the average
        # is multiplied by 1 - 1 = 0), so the average need not be known. The same float
        # operations as the general case below, in fewer steps.
        alphas = []
        has_alpha = False
        unit = 1 / 255
        red_f = [unit * value for value in reds]
        green_f = [unit * value for value in greens]
        blue_f = [unit * value for value in blues]
    else:
        alphas = [value / 255 for value in rgba[3::4]]
        # The average colour, weighted by alpha: what transparent pixels are composited
        # on.
        total_alpha = avg_r = avg_g = avg_b = 0.0
        for alpha, r, g, b in zip(alphas, reds, greens, blues, strict=True):
            avg_r += alpha / 255 * r
            avg_g += alpha / 255 * g
            avg_b += alpha / 255 * b
            total_alpha += alpha
        if total_alpha:
            avg_r, avg_g, avg_b = (avg_r / total_alpha, avg_g / total_alpha,
                                   avg_b / total_alpha)
        has_alpha = total_alpha < count
        red_f, green_f, blue_f = [], [], []
        for alpha, r, g, b in zip(alphas, reds, greens, blues, strict=True):
            red_f.append(avg_r * (1 - alpha) + alpha / 255 * r)
            green_f.append(avg_g * (1 - alpha) + alpha / 255 * g)
            blue_f.append(avg_b * (1 - alpha) + alpha / 255 * b)

    luma_limit = 5 if has_alpha else 7  # alpha takes some of the bits
    longest = max(width, height)
    luma_x = max(1, _round(luma_limit * width / longest))
    luma_y = max(1, _round(luma_limit * height / longest))

    # To luminance, yellow-blue and red-green.
    colours = list(zip(red_f, green_f, blue_f, strict=True))
    luma = [(red + green + blue) / 3 for red, green, blue in colours]
    yellow_blue = [(red + green) / 2 - blue for red, green, blue in colours]
    red_green = [red - green for red, green, _ in colours]

    l_dc, l_ac, l_scale = _dct(luma, width, height, max(3, luma_x), max(3, luma_y))
    p_dc, p_ac, p_scale = _dct(yellow_blue, width, height, 3, 3)
    q_dc, q_ac, q_scale = _dct(red_green, width, height, 3, 3)
    landscape = width > height
    header24 = (_round(63 * l_dc) | _round(31.5 + 31.5 * p_dc) << 6
                | _round(31.5 + 31.5 * q_dc) << 12 | _round(31 * l_scale) << 18
                | has_alpha << 23)
    header16 = ((luma_y if landscape else luma_x) | _round(63 * p_scale) << 3
                | _round(63 * q_scale) << 9 | landscape << 15)
    out = bytearray(header24.to_bytes(3, "little") + header16.to_bytes(2, "little"))
    factors = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = _dct(alphas, width, height, 5, 5)
        out.append(_round(15 * a_dc) | _round(15 * a_scale) << 4)
        factors.append(a_ac)
    nibbles = [_round(15 * factor) for channel in factors for factor in channel]
    nibbles.append(0)  # pads an odd count; zip drops it from an even one
    pairs = zip(nibbles[0::2], nibbles[1::2], strict=False)
    out += bytes(low | high << 4 for low, high in pairs)
    return bytes(out)


# Terms are means of samples within -1..1. Sums of 10,000 of them carry rounding errors near
# 1e-14; a real term below 1e-10 changes no digit unless its scale is too small to store.
_NOISE = 1e-10


def _dct(values: list[float], width: int, height: int, nx: int,
         ny: int) -> tuple[float, list[float], float]:
    """The DC term, the AC terms normalised to 0..1 and their scale, for the frequencies
    of the triangle ``cx * ny < nx * (ny - cy)``, row of ``cy`` by row.

    Separable: each row is first reduced against every horizontal cosine, then the row
    sums against each vertical one, which costs width*height*nx products instead of
    width*height per coefficient.
    """
    cos_x = [[math.cos(math.pi / width * cx * (x + 0.5)) for x in range(width)]
             for cx in range(nx)]
    cos_y = [[math.cos(math.pi / height * cy * (y + 0.5)) for y in range(height)]
             for cy in range(ny)]
    rows = [values[y * width:(y + 1) * width] for y in range(height)]
    row_sums = [[sum(map(mul, row, cosines)) for row in rows] for cosines in cos_x]
    dc, ac, scale = 0.0, [], 0.0
    for cy in range(ny):
        cx = 0
        while cx * ny < nx * (ny - cy):
            term = sum(map(mul, row_sums[cx], cos_y[cy])) / (width * height)
            if abs(term) < _NOISE:
                # Rounding noise of a frequency the picture lacks: left as it is, its sign
                # would pick the digit, and it varies with the order of the sums.
                term = 0.0
            if cx or cy:
                ac.append(term)
                scale = max(scale, abs(term))
            else:
                dc = term
            cx += 1
    if scale:
        ac = [0.5 + 0.5 / scale * term for term in ac]
    return dc, ac, scale
