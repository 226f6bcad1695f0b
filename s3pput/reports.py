"""Files the statter writes for image mode: the CSV mapping log and the HTML preview.

Both are written as results arrive (memory stays bounded whatever the number of images).
"""

from __future__ import annotations

import base64
import csv
import fcntl
import html
import io
import os
from typing import Optional

from .jobs import FAILED, Result

MAPPING_FIELDS = ["source", "number", "original_key", "thumbnail_keys", "outcome", "reason"]


class MappingLog:
    """CSV of source file -> number and keys, appended to by every real run.

    Runs that share the file (two runs from one working directory) never interleave
    within a row: each row is one ``write`` to a file opened in append mode, which the
    kernel appends whole; the header is written once, by whoever finds the file empty
    while holding an ``flock`` on it."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self.fd).st_size == 0:
                self._write(MAPPING_FIELDS)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _write(self, row: list) -> None:
        text = io.StringIO()
        csv.writer(text).writerow(row)
        os.write(self.fd, text.getvalue().encode("utf-8", "backslashreplace"))

    def add(self, result: Result) -> None:
        if not result.key or (result.number is None and not result.extra_keys):
            return
        self._write([result.display, "" if result.number is None else result.number,
                     result.key, " ".join(result.extra_keys), result.outcome, result.reason])

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
figcaption b {{ display: block; }}
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

    def add(self, result: Result, mime: str = "image/jpeg") -> None:
        keys = [result.key, *result.extra_keys]
        caption = "".join(f"<b>{html.escape(key)}</b>" for key in keys if key)
        source = html.escape(result.display)
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


def preview_mime(thumbnail_format: str) -> str:
    from .images import normalize_format

    return normalize_format(thumbnail_format).mime


def open_reports(cfg) -> "tuple[Optional[MappingLog], Optional[PreviewSheet]]":
    mapping = None
    if cfg.images and not cfg.dry_run:
        mapping = MappingLog(cfg.mapping_log or "s3pput-mapping.csv")
    preview = PreviewSheet(cfg.preview, cfg.bucket) if cfg.preview else None
    return mapping, preview
