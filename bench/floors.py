"""CPU floors for the photo workload, each measured in one process, one image at a time,
with the files already in the page cache (so CPU, not disk, is what is timed):

* ``decode``: ``Image.open(p).load()``, a full decode: the floor a thumbnailer that
  decodes at full size cannot go under (HEIC/HEIF through pillow-heif registered as a
  Pillow opener: the primary image at full size, the thumbnail inside the file unused;
  AVIF through Pillow's own plugin);
* ``naive-thumbnail``: the naive reference's thumbnail (full decode, ``ImageOps.fit``
  LANCZOS, JPEG q85) without the upload;
* ``s3pput-thumbnail``: s3pput's own thumbnailer (``s3pput.images.make_thumbnails`` with
  the default 200x300 box), called as a library, without the upload. Nothing is
  registered with Pillow for it here: HEIC must be read by whatever s3pput does itself.

    python -m bench.floors decode|naive-thumbnail|s3pput-thumbnail DIR

Prints one JSON line: what, images, cpu_s, cpu_s_per_image, wall_s; or what and error
(exit code 1) when the images cannot be read that way.
"""

from __future__ import annotations

import json
import os
import sys
import time

from PIL import Image


def _measure(what: str, paths) -> dict:
    if what == "decode":
        try:
            from pillow_heif import register_heif_opener
        except ImportError:  # only HEIC needs it; it then fails with Pillow's error
            pass
        else:
            register_heif_opener()

        def one(path):
            with Image.open(path) as image:
                image.load()
    elif what == "naive-thumbnail":
        from .naive_images import thumbnail

        def one(path):
            with open(path, "rb") as handle:
                thumbnail(handle.read())
    elif what == "s3pput-thumbnail":
        from s3pput.images import ThumbnailSpec, make_thumbnails

        specs = [ThumbnailSpec("thumbnail", 200, 300)]

        def one(path):
            make_thumbnails(path, specs, fmt="jpeg", quality=85)
    else:
        raise SystemExit(f"unknown floor {what!r}")
    for path in paths:  # warm the page cache; not timed
        with open(path, "rb") as handle:
            handle.read()
    one(paths[0])  # imports and first-use set-up are not per-image costs; not timed
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for path in paths:
        one(path)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return dict(what=what, images=len(paths), cpu_s=round(cpu, 4),
                cpu_s_per_image=round(cpu / max(1, len(paths)), 6), wall_s=round(wall, 4))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise SystemExit(__doc__)
    what, folder = argv
    paths = [os.path.join(folder, n) for n in sorted(os.listdir(folder))
             if not n.startswith(".")]
    try:
        print(json.dumps(_measure(what, paths)))
    except Exception as err:  # noqa: BLE001 - e.g. s3pput cannot read the format (yet)
        message = f"{type(err).__name__}: {err}".replace(folder.rstrip("/") + "/", "")
        print(json.dumps(dict(what=what, error=message)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
