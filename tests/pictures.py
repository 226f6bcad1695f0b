"""Pictures for tests: encoded from Pillow images, decoded back (whole, not lazily)."""

from __future__ import annotations

import io

from PIL import Image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    """IMAGE saved as FMT (Pillow's name: "JPEG", "PNG", "AVIF", "HEIF"...) with OPTIONS."""
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    """DATA decoded, pixels loaded."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
