"""The data sets, generated once into a cache directory and reused while their parameters
stay the same.

Each set lives in ``DATA_DIR/NAME/``, beside a stamp ``DATA_DIR/NAME.complete`` holding the
parameters it was made with (outside the set, so that no tool uploads it); a set is built
in ``NAME.tmp`` and renamed into place before its stamp is written, so an interrupted
generation is never taken for a complete one. Contents are deterministic (seeded) except
the large files, whose bytes do not matter (runs are checked against the files on disk).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from typing import Callable, List, Optional, Tuple

from PIL import Image, ImageChops, ImageDraw, ImageFilter

STAMP_SUFFIX = ".complete"


def cached(data_dir: str, name: str, params: dict, build: Callable[[str], None],
           log=print) -> str:
    """The directory of data set NAME built with PARAMS, building it if it is missing or
    was built with other parameters."""
    path = os.path.join(data_dir, name)
    stamp = path + STAMP_SUFFIX
    try:
        with open(stamp) as handle:
            if json.load(handle) == params:
                return path
    except (OSError, ValueError):
        pass
    tmp = path + ".tmp"
    if os.path.exists(stamp):
        os.remove(stamp)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(tmp)
    log(f"  generating data set {name} {params} ...")
    started = time.monotonic()
    build(tmp)
    os.rename(tmp, path)
    with open(stamp, "w") as handle:
        json.dump(params, handle)
    log(f"  ... {name} ready in {time.monotonic() - started:.1f} s")
    return path


def files_under(root: str) -> List[str]:
    """Relative paths of the regular files under ROOT, sorted."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


# -- small: many small files ---------------------------------------------------------------

def small_tree(data_dir: str, files: int, dirs: int, size: int, log=print) -> str:
    def build(root: str) -> None:
        rng = random.Random(5000)
        for n in range(files):
            folder = os.path.join(root, f"d{n % dirs:03d}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"f{n:06d}.bin"), "wb") as handle:
                handle.write(rng.randbytes(size))

    return cached(data_dir, f"small-{files}x{size}-{dirs}d",
                  dict(files=files, dirs=dirs, size=size, v=1), build, log)


# -- photos: photo-like images -------------------------------------------------------------

def photo(seed: int, size: Tuple[int, int]) -> Image.Image:
    """A photo-like RGB picture: soft colour gradients, blurred shapes, sensor-like noise
    (so that it compresses like a photograph, not like a flat test card)."""
    rng = random.Random(seed)
    width, height = size

    def gradient(kind: str) -> Image.Image:
        base = Image.linear_gradient("L") if kind == "linear" else Image.radial_gradient("L")
        base = base.rotate(rng.uniform(0, 360), resample=Image.BILINEAR, expand=False,
                           fillcolor=rng.randrange(256))
        return base.resize(size, Image.BILINEAR)

    channels = [gradient(rng.choice(("linear", "radial"))) for _ in range(3)]
    picture = Image.merge("RGB", channels)
    tint = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    picture = Image.blend(picture, tint, rng.uniform(0.2, 0.5))
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for _ in range(rng.randrange(12, 30)):
        colour = tuple(rng.randrange(256) for _ in range(3)) + (rng.randrange(90, 230),)
        x0, y0 = rng.randrange(-width // 4, width), rng.randrange(-height // 4, height)
        x1 = x0 + rng.randrange(width // 20, width // 2)
        y1 = y0 + rng.randrange(height // 20, height // 2)
        shape = rng.randrange(3)
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(rng.randrange(width), rng.randrange(height)) for _ in range(5)],
                         fill=colour)
    overlay = overlay.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 4.0)))
    picture = Image.alpha_composite(picture.convert("RGBA"), overlay).convert("RGB")
    noise = Image.merge("RGB", [Image.effect_noise(size, rng.uniform(4, 9))
                                for _ in range(3)])
    return ImageChops.add(picture, noise, 1.0, -128)


# Phone photos: how each format is written (the generator's settings, part of the cache
# key). HEIC as an iPhone saves it: HEVC in 512-pixel grid tiles, a 320-pixel thumbnail
# item inside the file, EXIF with the camera and a GPS position; quality 50 gives about
# the bytes per pixel of an iPhone's HEIC; x265's "fast" preset keeps generation at
# about 1 s of CPU per megapixel. AVIF as Android and Chrome export it: one image, no
# grid or thumbnail, EXIF; quality 65, libaom speed 8.
HEIC_SAVE = dict(quality=50, tile_size=512, thumbnails=[320], enc_params={"preset": "fast"})
AVIF_SAVE = dict(quality=65, speed=8)
PHOTO_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "HEIC": "HEIC", "AVIF": "avif"}


def format_unavailable(fmt: str) -> Optional[str]:
    """Why photos of FMT cannot be written (and read) here, or None."""
    if fmt == "HEIC":
        try:
            import pillow_heif  # noqa: F401
        except ImportError:
            return ("pillow-heif is not installed (pip install pillow-heif; the bench "
                    "extra has it)")
    if fmt == "AVIF":
        from PIL import features

        if not features.check("avif"):
            return "this Pillow has no AVIF codec (Pillow 11.3+ wheels have it)"
    return None


def _register_heif() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def phone_exif(n: int, maker: str, model: str) -> bytes:
    """EXIF as a phone writes it: camera, time, upright orientation, a GPS position."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = maker, model, 1  # Make, Model, Orientation
    exif[0x0131], exif[0x0132] = "bench", f"2024:06:01 12:{n // 60 % 60:02d}:{n % 60:02d}"
    exif.get_ifd(0x8769)[0x9003] = exif[0x0132]  # DateTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 31.0, round(1 + n % 59 + 0.25, 2))
    gps[3], gps[4] = "E", (13.0, 24.0, round(1 + n * 7 % 59 + 0.5, 2))
    return exif.tobytes()


def photos(data_dir: str, count: int, fmt: str, size: Tuple[int, int], log=print) -> str:
    """COUNT photo-like images in one directory (every 4th landscape): JPEG at quality 90,
    PNG, or phone-like HEIC (named as an iPhone names them, IMG_0001.HEIC) and AVIF
    (see HEIC_SAVE, AVIF_SAVE)."""
    extension = PHOTO_EXTENSIONS[fmt]
    why_not = format_unavailable(fmt)
    if why_not:
        raise RuntimeError(f"cannot make {fmt} photos: {why_not}")
    if fmt == "HEIC":
        _register_heif()

    def build(root: str) -> None:
        for n in range(count):
            dims = size if n % 4 else (size[1], size[0])
            picture = photo(1000 + n, dims)
            path = os.path.join(root, f"IMG_{n + 1:04d}.{extension}" if fmt == "HEIC"
                                else f"IMG_{n + 1:05d}.{extension}")
            if fmt == "JPEG":
                picture.save(path, "JPEG", quality=90)
            elif fmt == "PNG":
                picture.save(path, "PNG")
            elif fmt == "HEIC":
                picture.save(path, "HEIF", exif=phone_exif(n, "Apple", "iPhone 15"),
                             **HEIC_SAVE)
            else:
                picture.save(path, "AVIF", exif=phone_exif(n, "Google", "Pixel 8"),
                             **AVIF_SAVE)

    params = dict(count=count, fmt=fmt, size=list(size), v=1)
    if fmt == "HEIC":
        params.update(save=HEIC_SAVE)
    elif fmt == "AVIF":
        params.update(save=AVIF_SAVE)
    return cached(data_dir, f"photos-{fmt.lower()}-{count}-{size[0]}x{size[1]}",
                  json.loads(json.dumps(params)), build, log)


def image_tree(data_dir: str, folders: int, per_folder: int, size: Tuple[int, int],
               log=print) -> str:
    """FOLDERS folders of PER_FOLDER photo-like JPEGs (quality 85) each; picture n is the
    same whatever the layout, so layouts differ only in folders."""
    def build(root: str) -> None:
        for n in range(folders * per_folder):
            folder = os.path.join(root, f"f{n // per_folder:03d}")
            os.makedirs(folder, exist_ok=True)
            photo(2000 + n, size).save(os.path.join(folder, f"IMG_{n + 1:05d}.jpg"),
                                       "JPEG", quality=85)

    return cached(data_dir, f"images-{folders}x{per_folder}-{size[0]}x{size[1]}",
                  dict(folders=folders, per_folder=per_folder, size=list(size), v=1),
                  build, log)


# -- large: a few big files ----------------------------------------------------------------

def large_files(data_dir: str, count: int, mib: int, log=print) -> str:
    def build(root: str) -> None:
        chunk = 8 * 1024 * 1024
        for n in range(count):
            with open(os.path.join(root, f"large-{n:02d}.bin"), "wb") as handle:
                left = mib * 1024 * 1024
                while left:
                    step = min(chunk, left)
                    handle.write(os.urandom(step))
                    left -= step

    return cached(data_dir, f"large-{count}x{mib}MiB", dict(count=count, mib=mib, v=1),
                  build, log)


# -- walk: a huge tree of empty files ------------------------------------------------------

def walk_tree(data_dir: str, files: int, dirs: int, log=print) -> str:
    def build(root: str) -> None:
        flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
        per_dir, extra = divmod(files, dirs)
        for d in range(dirs):
            folder = os.path.join(root, f"dir{d:04d}")
            os.mkdir(folder)
            for n in range(per_dir + (1 if d < extra else 0)):
                os.close(os.open(os.path.join(folder, f"empty{n:06d}"), flags, 0o644))

    return cached(data_dir, f"walk-{files}-{dirs}d", dict(files=files, dirs=dirs, v=1),
                  build, log)
