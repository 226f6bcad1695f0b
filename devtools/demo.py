"""``make demo``: the main job against an embedded local S3, start to end.

Starts SeaweedFS on loopback, makes a small sample tree of images, runs
``bin/s3pput --bucket demo --prefix avatar ./demo-images --processes 8`` (then once more in
image mode, and once more to show an incremental re-run), lists the resulting keys, and
stops the server. No account, no credentials.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from devtools.locals3 import LocalS3

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "demo-images"


def make_sample(root: Path) -> None:
    """A few photo-like images in two folders, and one file that is not an image."""
    rng = random.Random(7)
    for folder, count in (("female", 4), ("male", 3)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            image = Image.new("RGB", (640, 960), tuple(rng.randrange(256) for _ in range(3)))
            draw = ImageDraw.Draw(image)
            for _ in range(12):
                x, y = rng.randrange(640), rng.randrange(960)
                draw.ellipse((x, y, x + rng.randrange(40, 300), y + rng.randrange(40, 300)),
                             fill=tuple(rng.randrange(256) for _ in range(3)))
            suffix = ".jpg" if n % 2 == 0 else ".png"
            image.save(root / folder / f"{n + 1:04d}_{folder}{suffix}")
    (root / "README.txt").write_text("not an image: skipped in image mode\n")


def run(title: str, *args: str, env) -> None:
    command = [str(ROOT / "bin" / "s3pput"), *args]
    print(f"\n$ bin/s3pput {' '.join(args)}    # {title}", flush=True)
    code = subprocess.call(command, env=env, cwd=ROOT)
    print(f"(exit code {code})", flush=True)


def main() -> int:
    if not SAMPLE.exists():
        make_sample(SAMPLE)
    print(f"sample tree: {SAMPLE.relative_to(ROOT)}/ ({sum(1 for _ in SAMPLE.rglob('*.*'))} "
          "files)")
    with LocalS3(buckets=["demo"]) as server:
        access, secret = server.credentials()
        env = dict(os.environ, AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret,
                   AWS_REGION="us-east-1", AWS_ENDPOINT_URL=server.endpoint,
                   XDG_STATE_HOME=str(ROOT / ".venv" / "demo-state"))
        print(f"local S3 (SeaweedFS) on {server.endpoint}")
        run("the main job", "--bucket", "demo", "--prefix", "avatar", "./demo-images",
            "--processes", "8", "--no-progress", env=env)
        run("nothing changed: a re-run puts nothing", "--bucket", "demo", "--prefix",
            "avatar", "./demo-images", "--processes", "8", "--no-progress", env=env)
        run("image mode: originals + 200x300 thumbnails under numbered names", "--images",
            "--bucket", "demo", "--prefix", "avatars", "./demo-images", "--processes", "8",
            "--no-progress", "--mapping-log", ".venv/demo-mapping.csv", env=env)
        client = server.client()
        print("\nkeys in s3://demo:")
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="demo"):
            for item in page.get("Contents", ()):
                print(f"  {item['Key']:48} {item['Size']:>8} bytes")
    print("\nlocal S3 stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
