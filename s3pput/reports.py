"""Files the statter writes for image mode: the CSV mapping log and the HTML preview; and
the one line of facts about an image that the plan, the log and the preview show.

Both files are written as results arrive (memory stays bounded whatever the number of
images).
"""

from __future__ import annotations

import base64
import csv
import fcntl
import html
import io
import os
from typing import Optional

from .jobs import FAILED, Result, StoredImage

# The columns of the mapping log. Those after "reason" came with the image facts (for an
# uploaded image; empty otherwise): upright width and height, the ThumbHash, and per
# thumbnail, in the order of thumbnail_keys, its WxH and its Content-Type.
MAPPING_FIELDS = ["source", "number", "original_key", "thumbnail_keys", "outcome", "reason",
                  "width", "height", "thumbhash", "thumbnail_sizes", "thumbnail_types"]


def facts_text(image: Optional[StoredImage], location: bool, stripped: bool) -> str:
    """``300x450, thumbnail 200x300 jpeg, card 400x600 avif+jpeg, thumbhash ...`` and
    whether the original carries a location (STRIPPED: it is stripped); "" for nothing."""
    parts = []
    if image is not None:
        parts.append(f"{image.width}x{image.height}")
        folders: dict = {}
        for rendition in image.thumbnails:
            folders.setdefault((rendition.folder, rendition.width, rendition.height),
                               []).append(rendition.format)
        parts.extend(f"{folder} {width}x{height} {'+'.join(formats)}"
                     for (folder, width, height), formats in folders.items())
        if image.thumbhash:
            parts.append(f"thumbhash {image.thumbhash}")
    if location:
        parts.append("location stripped" if stripped else "carries a location (GPS)")
    return ", ".join(parts)


class MappingLog:
    """CSV of source file -> number, keys and facts, appended to by every real run.

    Runs that share the file (two runs from one working directory) never interleave
    within a row: each row is one ``write`` to a file opened in append mode, which the
    kernel appends whole; the header is written once, by whoever finds the file empty
    while holding an ``flock`` on it.

    Rows always have the columns of the file's header: a file begun by an older s3pput
    (the first six columns) keeps getting rows of those six, so that whatever reads it
    goes on reading it; ``left_out`` names the columns its rows go without (a new file
    gets them all)."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            header = self._header()
            if header is None:
                self._write(MAPPING_FIELDS)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        known = header is not None and header and set(header) <= set(MAPPING_FIELDS)
        self.fields = header if known else MAPPING_FIELDS
        self.left_out = [name for name in MAPPING_FIELDS if name not in self.fields]

    def _header(self) -> Optional[list]:
        """The columns of the file's first line; None when the file is empty."""
        head = os.pread(self.fd, 64 * 1024, 0)
        if not head:
            return None
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
        return next(csv.reader([first]), [])

    def _write(self, row: list) -> None:
        text = io.StringIO()
        csv.writer(text).writerow(row)
        os.write(self.fd, text.getvalue().encode("utf-8", "backslashreplace"))

    def add(self, result: Result) -> None:
        if not result.key or (result.number is None and not result.extra_keys):
            return
        row = {"source": result.display,
               "number": "" if result.number is None else result.number,
               "original_key": result.key, "thumbnail_keys": " ".join(result.extra_keys),
               "outcome": result.outcome, "reason": result.reason}
        image = result.image
        if image is not None:
            row.update(width=image.width, height=image.height, thumbhash=image.thumbhash or "",
                       thumbnail_sizes=" ".join(f"{t.width}x{t.height}"
                                                for t in image.thumbnails),
                       thumbnail_types=" ".join(t.content_type for t in image.thumbnails))
        self._write([row.get(name, "") for name in self.fields])

    def close(self) -> None:
        os.close(self.fd)


PAGE_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>s3pput preview: {title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; background: #fafafa; }}
h1 {{ font-size: 1.2em; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 14px; }}
figure {{ margin: 0; width: 220px; background: #fff; padding: 8px; border: 1px solid #ddd; }}
figure img {{ display: block; max-width: 100%; background: #eee; }}
figcaption {{ font-size: 11px; overflow-wrap: anywhere; margin-top: 6px; }}
figcaption b, figcaption i {{ display: block; }}
.failed {{ border-color: #c33; color: #a22; }}
</style></head><body>
<h1>s3pput dry run: thumbnails that would be uploaded to s3://{title}</h1>
<div class="grid">
"""


class PreviewSheet:
    """A self-contained HTML contact sheet: each thumbnail inline, with its target keys."""

    def __init__(self, path: str, bucket: str):
        self.path = path
        self.handle = open(path, "w", encoding="utf-8")
        self.handle.write(PAGE_HEAD.format(title=html.escape(bucket)))
        self.count = 0

    def add(self, result: Result, facts: str = "") -> None:
        """Show RESULT's thumbnail (its first) with its keys and FACTS (``facts_text``)."""
        keys = [result.key, *result.extra_keys]
        caption = "".join(f"<b>{html.escape(key)}</b>" for key in keys if key)
        if facts:
            caption += f"<i>{html.escape(facts)}</i>"
        source = html.escape(result.display)
        image = result.image
        mime = image.thumbnails[0].content_type if image and image.thumbnails \
            else "image/jpeg"
        if result.outcome == FAILED:
            self.handle.write(f'<figure class="failed"><figcaption>{source}<br>'
                              f'{html.escape(result.reason)}</figcaption></figure>\n')
            return
        if not result.preview:
            return
        data = base64.b64encode(result.preview).decode("ascii")
        self.handle.write(f'<figure><img src="data:{mime};base64,{data}" alt="{source}">'
                          f'<figcaption>{caption}from {source}</figcaption></figure>\n')
        self.count += 1

    def close(self) -> None:
        self.handle.write(f"</div>\n<p>{self.count} thumbnails.</p>\n</body></html>\n")
        self.handle.close()


def open_reports(cfg) -> "tuple[Optional[MappingLog], Optional[PreviewSheet]]":
    mapping = None
    if cfg.images and not cfg.dry_run:
        mapping = MappingLog(cfg.mapping_log or "s3pput-mapping.csv")
    preview = PreviewSheet(cfg.preview, cfg.bucket) if cfg.preview else None
    return mapping, preview
