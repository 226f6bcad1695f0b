"""What image mode adds to putting an original: its thumbnails, each size in each of its
formats, and the facts a web page needs (``jobs.StoredImage``), from as few decodes as the
run's sizes allow.

Promises of ``render``:

* the thumbnails come in the order of ``keys.renditions`` (size by size, each in the order
  of its formats), so that they pair with ``Job.thumbnail_keys`` one to one;
* sizes that share their formats share one decode (``images.render_image``); a run whose
  sizes all have the same formats decodes each original once;
* a dry run decodes once, as small as the placeholder allows, and encodes nothing, unless
  ``--preview`` asks for the first thumbnail (then only that one is made): a thumbnail is
  exactly its box, so the facts need no thumbnail;
* the facts are the original's upright size and its ThumbHash, and each thumbnail's key,
  format, Content-Type and size.

Failures are the images package's ``ImageError`` (corrupt, truncated, too large, HEIC
without pillow-heif): per file.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..config import Config
from ..jobs import Job, Rendition, StoredImage
from ..keys import renditions


class Rendered(NamedTuple):
    """An original's thumbnails and facts."""

    thumbnails: List[Tuple[Rendition, Optional[bytes]]]  # the bytes: None in a dry run
    width: int  # upright
    height: int
    thumbhash: Optional[str]
    preview: Optional[bytes]  # --preview: the first thumbnail's bytes

    def facts(self, content_type: str, stored_bytes: int) -> StoredImage:
        """The facts of the original, stored as CONTENT_TYPE in STORED_BYTES bytes."""
        return StoredImage(self.width, self.height, self.thumbhash, content_type,
                           stored_bytes, tuple(rendition for rendition, _ in self.thumbnails))


def _mime(fmt: str) -> str:
    from ..images.formats import normalize_format

    return normalize_format(fmt).mime


def _groups(sizes: Sequence[tuple]) -> Dict[Tuple[str, ...], list]:
    """The sizes by their formats, in first-seen order: one decode per group."""
    groups: Dict[Tuple[str, ...], list] = {}
    for size in sizes:
        groups.setdefault(size[3], []).append(size)
    return groups


def render(cfg: Config, job: Job, source) -> Rendered:
    """The thumbnails and facts of JOB's original, read from SOURCE (its bytes, or its
    path); see the module's promises."""
    from ..images import ThumbnailSpec
    from ..images.thumbnails import render_image

    keys = [key for _, key in job.thumbnail_keys]
    layout = renditions(cfg.thumbnails)
    sizes = {name: (width, height) for name, width, height, _ in cfg.thumbnails}
    quality = dict(cfg.thumbnail_quality)
    options = dict(quality=quality, path_for_errors=job.display)
    if cfg.dry_run:
        # The thumbnails are exactly their boxes: the facts need no thumbnail made.
        first, fmt = layout[0]
        specs = [ThumbnailSpec(first, *sizes[first])] if cfg.preview else []
        made = render_image(source, specs, formats=[fmt], **options)
        thumbnails = [(Rendition(name, key, fmt, _mime(fmt), *sizes[name]), None)
                      for (name, fmt), key in zip(layout, keys, strict=True)]
        preview = made.thumbnails[0].data if made.thumbnails else None
        return Rendered(thumbnails, made.facts.width, made.facts.height, made.facts.thumbhash,
                        preview)
    made_by: Dict[Tuple[str, str], object] = {}
    facts = None
    for formats, group in _groups(cfg.thumbnails).items():
        specs = [ThumbnailSpec(name, width, height) for name, width, height, _ in group]
        made = render_image(source, specs, formats=formats, thumbhash=facts is None,
                            **options)
        facts = facts or made.facts
        for thumbnail in made.thumbnails:
            made_by[(thumbnail.name, thumbnail.mime)] = thumbnail
    thumbnails = []
    for (name, fmt), key in zip(layout, keys, strict=True):
        thumbnail = made_by[(name, _mime(fmt))]
        thumbnails.append((Rendition(name, key, fmt, thumbnail.mime, thumbnail.width,
                                     thumbnail.height), thumbnail.data))
    return Rendered(thumbnails, facts.width, facts.height, facts.thumbhash, None)
