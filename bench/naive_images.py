"""THE NAIVE REFERENCE for image mode: not s3pput, and deliberately not optimised.

This is what a straightforward script does to upload originals plus thumbnails (the
issue's yardstick for ``s3pput --images``): for each image, open it with Pillow at full
size, ``ImageOps.fit(img, (200, 300), Image.LANCZOS)``, save the thumbnail as JPEG
quality 85, and upload the original bytes and the thumbnail with boto3, from a
``ThreadPoolExecutor`` in one process sharing one client. Keys: ``PREFIX/original/NAME``
and ``PREFIX/thumbnail/NAME``. HEIC/HEIF is read through pillow-heif registered as a
Pillow opener (``register_heif_opener()``, as its documentation shows; a full decode of
the primary image), AVIF by Pillow itself; originals get the Content-Type of their
extension.

    python -m bench.naive_images --endpoint-url URL --bucket B --prefix P [--workers 8] DIR

Credentials come from the environment. Prints one JSON line: images, failed, seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import mimetypes
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.config
from PIL import Image, ImageOps

THUMBNAIL_SIZE = (200, 300)
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                 ".heic": "image/heic", ".heif": "image/heif", ".avif": "image/avif"}

try:  # what a script that reads iPhone photos does first
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - the bench extra has it; HEIC then fails per file
    pass
else:
    register_heif_opener()


def content_type(name: str) -> str:
    return (CONTENT_TYPES.get(os.path.splitext(name)[1].lower())
            or mimetypes.guess_type(name)[0] or "application/octet-stream")


def thumbnail(data: bytes) -> bytes:
    """The naive thumbnail: full decode, LANCZOS fit, JPEG q85."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        fitted = ImageOps.fit(image, THUMBNAIL_SIZE, Image.LANCZOS)
    out = io.BytesIO()
    fitted.save(out, "JPEG", quality=85)
    return out.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("source")
    args = parser.parse_args(argv)

    client = boto3.client("s3", endpoint_url=args.endpoint_url, config=botocore.config.Config(
        s3={"addressing_style": "path"}, max_pool_connections=args.workers,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required"))
    names = sorted(n for n in os.listdir(args.source) if not n.startswith("."))

    def upload(name: str) -> None:
        with open(os.path.join(args.source, name), "rb") as handle:
            data = handle.read()
        small = thumbnail(data)
        client.put_object(Bucket=args.bucket, Key=f"{args.prefix}/original/{name}", Body=data,
                          ContentType=content_type(name))
        client.put_object(Bucket=args.bucket, Key=f"{args.prefix}/thumbnail/{name}",
                          Body=small, ContentType="image/jpeg")

    started = time.perf_counter()
    failed = 0
    with ThreadPoolExecutor(args.workers) as pool:
        for future in [pool.submit(upload, name) for name in names]:
            try:
                future.result()
            except Exception as err:  # noqa: BLE001
                failed += 1
                print(f"failed: {err}", file=sys.stderr)
    print(json.dumps(dict(images=len(names), failed=failed,
                          seconds=round(time.perf_counter() - started, 3))))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
