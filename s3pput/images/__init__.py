"""Images: recognising them by content, thumbnails, metadata and facts for web pages.

One idea per module:

* ``formats``: what a file is, from its first bytes (no Pillow: the walker sniffs every
  file); the thumbnail output formats and their default qualities.
* ``decode``: opening an image once, as small as allowed, with its rotation.
* ``thumbnails``: thumbnail specs, and thumbnails plus facts from one decode.
* ``facts``: what a page needs to lay out an image (upright size, ThumbHash).
* ``metadata``: location and other metadata removed from originals without re-encoding.

The names below are importable from ``s3pput.images`` as before the split. Those that need
Pillow are loaded on first use, so ``from s3pput.images import sniff_image`` stays cheap.
"""

from __future__ import annotations

import importlib

from .formats import SIGNATURE_BYTES, ImageKind, normalize_format, sniff_image

__all__ = [
    "MAX_THUMBNAIL_SIDE",
    "SIGNATURE_BYTES",
    "SNIFF_BYTES",
    "ImageKind",
    "Thumbnail",
    "ThumbnailSpec",
    "make_thumbnails",
    "normalize_format",
    "parse_thumbnail_spec",
    "sniff_image",
]

#: The old name of SIGNATURE_BYTES, kept while callers move to the new one.
SNIFF_BYTES = SIGNATURE_BYTES

# Names served by a submodule that imports Pillow, imported when first asked for.
_LAZY = {
    "MAX_THUMBNAIL_SIDE": "thumbnails",
    "Thumbnail": "thumbnails",
    "ThumbnailSpec": "thumbnails",
    "make_thumbnails": "thumbnails",
    "parse_thumbnail_spec": "thumbnails",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
