"""Functional tests of ``s3pput --images`` against the real local S3 server.

Every image is generated here with Pillow (small, so the file stays fast). Results are read
back with the independent ``s3`` client: keys, bytes (MD5), Content-Type, the manifests;
thumbnails are downloaded and decoded with Pillow. Each source image is a distinct solid
colour, so a thumbnail's mean colour tells which source it was made from: a thumbnail under
the wrong number would show up as the wrong colour.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from conftest import body_of, keys_of, make_tree
from pictures import encode
from PIL import Image, ImageOps, ImageStat

MANIFEST = ".s3pput-manifest.json"
INDEX = ".s3pput-index.json"
PORTRAIT = (300, 450)  # 2:3, like the default 200x300 thumbnail box

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
YELLOW, MAGENTA, CYAN = (255, 255, 0), (255, 0, 255), (0, 255, 255)
ORANGE, PURPLE, GREY = (255, 128, 0), (128, 0, 255), (128, 128, 128)
DARK, PINK = (30, 30, 30), (255, 160, 200)


# -- helpers -------------------------------------------------------------------------------


def solid(colour, fmt: str = "PNG", size=PORTRAIT, **options) -> bytes:
    """An image of one colour, encoded as FMT."""
    return encode(Image.new("RGB", size, colour), fmt, **options)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_colour(image: Image.Image) -> Tuple[float, ...]:
    return tuple(ImageStat.Stat(image.convert("RGB")).mean)


def near(pixel, expected, tolerance: float = 25) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


def thumbnail_of(s3, bucket: str, key: str, size=(200, 300), fmt="JPEG") -> Image.Image:
    """Download and decode the thumbnail at KEY, checking its format and exact size."""
    image = decode(body_of(s3, bucket, key))
    assert image.format == fmt, key
    assert image.size == size, key
    return image


def content_type(s3, bucket: str, key: str) -> str:
    return s3.head_object(Bucket=bucket, Key=key)["ContentType"]


def summary_of(result) -> dict:
    """The one JSON object a ``--json`` run prints on stdout."""
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    return json.loads(lines[0])


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def counts(summary: dict) -> Tuple[int, int, int, int]:
    return summary["walked"], summary["uploaded"], summary["skipped"], summary["failed"]


def without_manifests(keys) -> set:
    """KEYS but the folders' manifests and indexes."""
    return {key for key in keys
            if key.rsplit("/", 1)[-1] not in (MANIFEST, INDEX)}


def manifest_files(s3, bucket: str, key: str) -> Dict[str, int]:
    return json.loads(body_of(s3, bucket, key))["files"]


def without_facts(line: str) -> str:
    """A plan line without the image facts that end it."""
    head, facts, _ = line.partition("): ")
    return head + ")" if facts else line


def read_mapping(path: Path) -> List[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def images_run(cli, bucket, src, *args, prefix="avatar"):
    return cli("--bucket", bucket, "--prefix", prefix, "--images", *args, src)


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "images"
    path.mkdir()
    return path


# -- key layout, numbering, bytes, types ---------------------------------------------------

# (relative path, colour, Pillow format, expected original key, expected Content-Type)
LAYOUT = [
    ("female/0001_x.png", RED, "PNG", "avatar/female/original/1.png", "image/png"),
    ("female/0002_y.png", GREEN, "PNG", "avatar/female/original/2.png", "image/png"),
    ("female/alpha.jpeg", BLUE, "JPEG", "avatar/female/original/3.jpeg", "image/jpeg"),
    ("female/zeta.JPEG", YELLOW, "JPEG", "avatar/female/original/4.jpeg", "image/jpeg"),
    ("a.gif", MAGENTA, "GIF", "avatar/original/1.gif", "image/gif"),
    ("b.png", CYAN, "PNG", "avatar/original/2.png", "image/png"),
    ("c.webp", ORANGE, "WEBP", "avatar/original/3.webp", "image/webp"),
    ("male/m.png", PURPLE, "PNG", "avatar/male/original/1.png", "image/png"),
    ("male/young/j.tiff", GREY, "TIFF", "avatar/male/young/original/1.tiff", "image/tiff"),
    ("male/young/k.bmp", DARK, "BMP", "avatar/male/young/original/2.bmp", "image/bmp"),
]


def test_s3pput_images_key_layout_numbering_bytes_and_types(cli, s3, bucket, src):
    # Written in reverse name order, so creation order (and mtime) disagree with names.
    files = {rel: solid(colour, fmt) for rel, colour, fmt, _, _ in reversed(LAYOUT)}
    make_tree(src, files)
    summary = summary_of(ok(images_run(cli, bucket, src, "--json")))
    assert counts(summary) == (len(LAYOUT), len(LAYOUT), 0, 0)

    found = keys_of(s3, bucket)
    expected = set()
    for _, _, _, original, _ in LAYOUT:
        expected |= {original, original.replace("/original/", "/thumbnail/")}
    assert without_manifests(found) == expected
    # one manifest and one index per source directory, under the prefix
    assert set(found) - expected == {
        f"avatar/{folder}{name}" for name in (MANIFEST, INDEX)
        for folder in ("", "female/", "male/", "male/young/")}
    assert manifest_files(s3, bucket, f"avatar/female/{MANIFEST}") == {
        "0001_x.png": 1, "0002_y.png": 2, "alpha.jpeg": 3, "zeta.JPEG": 4}

    for rel, colour, _, original, mime in LAYOUT:
        # the original, byte for byte, typed as what it is
        data = body_of(s3, bucket, original)
        assert md5(data) == md5(files[rel]), rel
        assert found[original]["ETag"].strip('"') == md5(files[rel])
        assert content_type(s3, bucket, original) == mime, rel
        # its thumbnail: same file name in the thumbnail folder, a 200x300 JPEG of it
        thumb_key = original.replace("/original/", "/thumbnail/")
        assert content_type(s3, bucket, thumb_key) == "image/jpeg", rel
        thumb = thumbnail_of(s3, bucket, thumb_key)
        assert near(mean_colour(thumb), colour), (rel, mean_colour(thumb), colour)


def test_s3pput_images_thumbnail_format_png(cli, s3, bucket, src):
    make_tree(src, {"face.jpg": solid(GREEN, "JPEG"), "logo.png": solid(BLUE)})
    ok(images_run(cli, bucket, src, "--thumbnail-format", "png"))
    for key, colour in (("avatar/thumbnail/1.jpg", GREEN), ("avatar/thumbnail/2.png", BLUE)):
        assert content_type(s3, bucket, key) == "image/png"
        thumb = thumbnail_of(s3, bucket, key, fmt="PNG")
        assert near(mean_colour(thumb), colour, 8)
    assert content_type(s3, bucket, "avatar/original/1.jpg") == "image/jpeg"


def test_s3pput_images_thumbnail_small_and_large(cli, s3, bucket, src):
    make_tree(src, {"p/one.png": solid(RED), "p/two.jpg": solid(CYAN, "JPEG")})
    ok(images_run(cli, bucket, src, "--thumbnail", "small=100x100",
                  "--thumbnail", "large=400x600"))
    assert without_manifests(keys_of(s3, bucket)) == {
        "avatar/p/original/1.png", "avatar/p/small/1.png", "avatar/p/large/1.png",
        "avatar/p/original/2.jpg", "avatar/p/small/2.jpg", "avatar/p/large/2.jpg"}
    for number, ext, colour in ((1, "png", RED), (2, "jpg", CYAN)):
        small = thumbnail_of(s3, bucket, f"avatar/p/small/{number}.{ext}", size=(100, 100))
        large = thumbnail_of(s3, bucket, f"avatar/p/large/{number}.{ext}", size=(400, 600))
        assert near(mean_colour(small), colour) and near(mean_colour(large), colour)


def test_s3pput_images_thumbnail_has_no_exif_or_gps_original_keeps_it(cli, s3, bucket, src):
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)  # GPSLatitudeRef, GPSLatitude
    gps[3], gps[4] = "E", (2.0, 17.0, 40.0)
    photo = solid(ORANGE, "JPEG", exif=exif.tobytes())
    assert decode(photo).getexif().get_ifd(0x8825)[1] == "N"  # the source really has GPS
    make_tree(src, {"me.jpg": photo})
    ok(images_run(cli, bucket, src))

    original = body_of(s3, bucket, "avatar/original/1.jpg")
    assert original == photo
    assert decode(original).getexif().get_ifd(0x8825)[1] == "N"

    data = body_of(s3, bucket, "avatar/thumbnail/1.jpg")
    thumb = thumbnail_of(s3, bucket, "avatar/thumbnail/1.jpg")
    assert len(thumb.getexif()) == 0
    assert "exif" not in thumb.info
    for marker in (b"Exif", b"GPS", b"Camera Maker"):
        assert marker not in data


def test_s3pput_images_exif_orientation_6_gives_an_upright_thumbnail(cli, s3, bucket, src):
    # Stored landscape (450x300) as a phone stores a portrait photo, with Orientation=6:
    # "rotate 90 degrees clockwise to view". The stored top-left corner is then the
    # picture's top-right corner.
    stored = Image.new("RGB", (450, 300), BLUE)
    stored.paste(RED, (0, 0, 90, 90))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    photo = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    # Cross-check the expectation with Pillow's own reading of the orientation.
    upright = ImageOps.exif_transpose(decode(photo))
    assert upright.size == (300, 450)
    assert near(upright.getpixel((285, 15)), RED) and near(upright.getpixel((15, 15)), BLUE)
    make_tree(src, {"portrait.jpg": photo})
    ok(images_run(cli, bucket, src))

    assert body_of(s3, bucket, "avatar/original/1.jpg") == photo
    thumb = thumbnail_of(s3, bucket, "avatar/thumbnail/1.jpg").convert("RGB")
    # 300x450 -> 200x300 without cropping: the 90x90 marker becomes 60x60, top right
    assert near(thumb.getpixel((170, 30)), RED), thumb.getpixel((170, 30))
    for corner in ((30, 30), (30, 270), (170, 270)):
        assert near(thumb.getpixel(corner), BLUE), (corner, thumb.getpixel(corner))


# -- what is taken -------------------------------------------------------------------------

def test_s3pput_images_skips_non_images_and_counts_them(cli, s3, bucket, src):
    make_tree(src, {"0fake.jpg": b"this is text with a .jpg name\n" * 4,
                    "a.png": solid(RED), "b.png": solid(GREEN), "notes.txt": b"hello\n"})
    summary = summary_of(ok(images_run(cli, bucket, src, "--json")))
    assert counts(summary) == (4, 2, 2, 0)
    assert summary["skipped_reasons"] == {"not an image": 2}
    # the skipped files take no number: the images are 1 and 2
    assert without_manifests(keys_of(s3, bucket)) == {
        "avatar/original/1.png", "avatar/thumbnail/1.png",
        "avatar/original/2.png", "avatar/thumbnail/2.png"}
    assert body_of(s3, bucket, "avatar/original/1.png") == solid(RED)
    assert manifest_files(s3, bucket, f"avatar/{MANIFEST}") == {"a.png": 1, "b.png": 2}


def test_s3pput_images_rename_keep(cli, s3, bucket, src):
    files = {"female/0001_x.png": solid(RED), "Top.JPEG": solid(BLUE, "JPEG")}
    make_tree(src, files)
    ok(images_run(cli, bucket, src, "--rename", "keep"))
    assert without_manifests(keys_of(s3, bucket)) == {
        "avatar/female/original/0001_x.png", "avatar/female/thumbnail/0001_x.png",
        "avatar/original/Top.JPEG", "avatar/thumbnail/Top.JPEG"}
    assert body_of(s3, bucket, "avatar/female/original/0001_x.png") == files["female/0001_x.png"]
    assert near(mean_colour(thumbnail_of(s3, bucket, "avatar/thumbnail/Top.JPEG")), BLUE)


# -- stability across runs -----------------------------------------------------------------

def test_s3pput_images_stable_numbers_across_runs(cli, s3, bucket, src, tmp_path):
    first = {"female/b.png": RED, "female/d.png": GREEN, "female/f.png": BLUE,
             "female/h.png": YELLOW, "m.png": MAGENTA}
    make_tree(src, {rel: solid(colour) for rel, colour in first.items()})
    ok(images_run(cli, bucket, src))
    assert manifest_files(s3, bucket, f"avatar/female/{MANIFEST}") == {
        "b.png": 1, "d.png": 2, "f.png": 3, "h.png": 4}
    h_bytes = body_of(s3, bucket, "avatar/female/original/4.png")
    h_thumb = body_of(s3, bucket, "avatar/female/thumbnail/4.png")
    unchanged_before = {key: body_of(s3, bucket, key) for key in (
        "avatar/female/original/1.png", "avatar/female/thumbnail/1.png",
        "avatar/female/original/3.png", "avatar/female/thumbnail/3.png",
        "avatar/original/1.png", "avatar/thumbnail/1.png")}

    # New files (one sorting before all old ones), one changed, one deleted.
    (src / "female/h.png").unlink()
    make_tree(src, {"female/a.png": solid(CYAN), "female/e.png": solid(ORANGE),
                    "female/z.png": solid(PURPLE), "female/d.png": solid(PINK)})
    second = summary_of(ok(images_run(cli, bucket, src, "--put", "update", "--json")))
    assert counts(second) == (7, 4, 3, 0)
    assert second["skipped_reasons"] == {"unchanged": 3}

    numbers = manifest_files(s3, bucket, f"avatar/female/{MANIFEST}")
    # old numbers kept (the deleted file's too: it is never given away); new files get
    # the next free numbers in name order
    assert numbers == {"b.png": 1, "d.png": 2, "f.png": 3, "h.png": 4,
                       "a.png": 5, "e.png": 6, "z.png": 7}
    assert manifest_files(s3, bucket, f"avatar/{MANIFEST}") == {"m.png": 1}

    # every current file is at its number, with its current content and its thumbnail
    current = {"b.png": RED, "d.png": PINK, "f.png": BLUE, "a.png": CYAN,
               "e.png": ORANGE, "z.png": PURPLE}
    for name, colour in current.items():
        key = f"avatar/female/original/{numbers[name]}.png"
        assert body_of(s3, bucket, key) == (src / "female" / name).read_bytes(), name
        thumb = thumbnail_of(s3, bucket, key.replace("/original/", "/thumbnail/"))
        assert near(mean_colour(thumb), colour), (name, mean_colour(thumb))
    # the changed file kept its number and was re-uploaded: original and thumbnail
    assert body_of(s3, bucket, "avatar/female/original/2.png") == solid(PINK)
    # number 4 still holds the deleted file's objects: nobody else was given it
    assert body_of(s3, bucket, "avatar/female/original/4.png") == h_bytes
    assert body_of(s3, bucket, "avatar/female/thumbnail/4.png") == h_thumb
    # the unchanged ones were not rewritten
    for key, data in unchanged_before.items():
        assert body_of(s3, bucket, key) == data, key
    assert without_manifests(keys_of(s3, bucket)) == {
        f"avatar/female/{folder}/{n}.png" for folder in ("original", "thumbnail")
        for n in range(1, 8)} | {"avatar/original/1.png", "avatar/thumbnail/1.png"}

    # The mapping log (appended by both runs) never gives one key to two sources, nor two
    # numbers to one source, and agrees with the manifest.
    rows = read_mapping(tmp_path / "s3pput-mapping.csv")
    assert len(rows) == 5 + 7
    sources_of: Dict[str, set] = {}
    numbers_of: Dict[str, set] = {}
    for row in rows:
        sources_of.setdefault(row["original_key"], set()).add(row["source"])
        for key in row["thumbnail_keys"].split():
            sources_of.setdefault(key, set()).add(row["source"])
        numbers_of.setdefault(row["source"], set()).add(row["number"])
        assert row["original_key"].endswith(f"/original/{row['number']}.png"), row
        assert row["thumbnail_keys"] == \
            row["original_key"].replace("/original/", "/thumbnail/"), row
    assert all(len(sources) == 1 for sources in sources_of.values()), sources_of
    assert all(len(found) == 1 for found in numbers_of.values()), numbers_of
    for name, number in numbers.items():
        assert numbers_of[str(src / "female" / name)] == {str(number)}
    outcomes = {(Path(row["source"]).name, row["outcome"], row["reason"])
                for row in rows[5:]}
    assert outcomes == {("a.png", "uploaded", "new"), ("e.png", "uploaded", "new"),
                        ("z.png", "uploaded", "new"), ("d.png", "uploaded", "changed"),
                        ("b.png", "skipped", "unchanged"), ("f.png", "skipped", "unchanged"),
                        ("m.png", "skipped", "unchanged")}


def test_s3pput_images_mapping_log_file(cli, s3, bucket, src, tmp_path):
    make_tree(src, {"x/p.png": solid(RED), "x/q.png": solid(GREEN)})
    log = tmp_path / "logs-map.csv"
    ok(images_run(cli, bucket, src, "--mapping-log", log))
    assert not (tmp_path / "s3pput-mapping.csv").exists()
    rows = read_mapping(log)
    assert sorted((row["source"], row["number"], row["original_key"], row["thumbnail_keys"],
                   row["outcome"]) for row in rows) == [
        (str(src / "x/p.png"), "1", "avatar/x/original/1.png", "avatar/x/thumbnail/1.png",
         "uploaded"),
        (str(src / "x/q.png"), "2", "avatar/x/original/2.png", "avatar/x/thumbnail/2.png",
         "uploaded")]


def _objects(s3, bucket) -> Dict[str, tuple]:
    return {key: (item["ETag"], item["LastModified"])
            for key, item in keys_of(s3, bucket).items()}


def test_s3pput_images_unchanged_rerun_does_no_thumbnail_work(cli, s3, bucket, src):
    make_tree(src, {"a.png": solid(RED), "b.jpg": solid(GREEN, "JPEG"),
                    "sub/c.png": solid(BLUE)})
    ok(images_run(cli, bucket, src))
    # If a re-run made thumbnails again, it would put them back over this junk.
    s3.put_object(Bucket=bucket, Key="avatar/thumbnail/1.png", Body=b"junk, not a thumbnail")
    before = _objects(s3, bucket)

    again = summary_of(ok(images_run(cli, bucket, src, "--put", "update", "--json")))
    assert counts(again) == (3, 0, 3, 0)
    assert again["skipped_reasons"] == {"unchanged": 3}
    assert again["bytes_sent"] == 0
    added = summary_of(ok(images_run(cli, bucket, src, "--put", "add", "--json")))
    assert counts(added) == (3, 0, 3, 0)
    assert added["skipped_reasons"] == {"exists": 3}
    assert added["bytes_sent"] == 0

    assert body_of(s3, bucket, "avatar/thumbnail/1.png") == b"junk, not a thumbnail"
    assert _objects(s3, bucket) == before


@pytest.mark.parametrize("force", [["--put", "stupid"], ["--no-skip-existing"]],
                         ids=["put-stupid", "no-skip-existing"])
def test_s3pput_images_put_stupid_reputs_everything(cli, s3, bucket, src, force):
    make_tree(src, {"a.png": solid(RED), "sub/c.jpg": solid(BLUE, "JPEG")})
    ok(images_run(cli, bucket, src))
    s3.put_object(Bucket=bucket, Key="avatar/thumbnail/1.png", Body=b"junk")
    s3.put_object(Bucket=bucket, Key="avatar/sub/original/1.jpg", Body=b"junk")

    summary = summary_of(ok(images_run(cli, bucket, src, *force, "--json")))
    assert counts(summary) == (2, 2, 0, 0)
    assert summary["skipped_reasons"] == {}
    assert near(mean_colour(thumbnail_of(s3, bucket, "avatar/thumbnail/1.png")), RED)
    assert body_of(s3, bucket, "avatar/sub/original/1.jpg") == solid(BLUE, "JPEG")
    # forcing re-puts, it does not renumber
    assert manifest_files(s3, bucket, f"avatar/{MANIFEST}") == {"a.png": 1}
    assert without_manifests(keys_of(s3, bucket)) == {
        "avatar/original/1.png", "avatar/thumbnail/1.png",
        "avatar/sub/original/1.jpg", "avatar/sub/thumbnail/1.jpg"}


# -- dry run and preview -------------------------------------------------------------------

DRY_TREE = {"female/0001_x.png": RED, "female/0002_y.jpeg": GREEN, "top.PNG": BLUE}
DRY_KEYS = {"female/0001_x.png": "female/{}/1.png", "female/0002_y.jpeg": "female/{}/2.jpeg",
            "top.PNG": "{}/1.png"}


def _dry_tree(src):
    make_tree(src, {rel: solid(colour, "JPEG" if rel.endswith("jpeg") else "PNG")
                    for rel, colour in DRY_TREE.items()})


def test_s3pput_images_dry_run_writes_nothing_and_prints_the_plan(cli, s3, bucket, src):
    _dry_tree(src)
    result = ok(images_run(cli, bucket, src, "--dry-run"))
    assert keys_of(s3, bucket) == {}  # not even a manifest
    plan = sorted(line for line in result.stdout.splitlines()
                  if line.startswith("would upload"))
    expected = sorted(
        f"would upload {src / rel} -> s3://{bucket}/avatar/{pattern.format('original')}, "
        f"s3://{bucket}/avatar/{pattern.format('thumbnail')} (new)"
        for rel, pattern in DRY_KEYS.items())
    assert [without_facts(line) for line in plan] == expected
    # each line ends with the image's facts: its size, its thumbnail's, its placeholder
    assert all(re.search(r"\(new\): 300x450, thumbnail 200x300 jpeg, thumbhash [A-Za-z0-9+/]+=*$",
                         line) for line in plan), plan
    assert re.search(r"^would put 3 files, .*, 0 skipped, 0 failed", result.stdout, re.M)

    # the real run does what the plan said
    ok(images_run(cli, bucket, src))
    assert without_manifests(keys_of(s3, bucket)) == {
        f"avatar/{pattern.format(folder)}" for pattern in DRY_KEYS.values()
        for folder in ("original", "thumbnail")}


def test_s3pput_images_dry_run_after_a_run_plans_the_next_numbers_and_writes_nothing(
        cli, s3, bucket, src):
    make_tree(src, {"b.png": solid(RED), "d.png": solid(GREEN)})
    ok(images_run(cli, bucket, src))
    before = _objects(s3, bucket)
    manifest_before = body_of(s3, bucket, f"avatar/{MANIFEST}")
    make_tree(src, {"a.png": solid(BLUE), "d.png": solid(PINK)})  # one new, one changed

    result = images_run(cli, bucket, src, "--dry-run", "--json")
    summary = summary_of(ok(result))
    assert counts(summary) == (3, 2, 1, 0)
    assert summary["skipped_reasons"] == {"unchanged": 1}
    plan = sorted(without_facts(line) for line in result.stderr.splitlines()
                  if line.startswith("would upload"))
    assert plan == [
        f"would upload {src / 'a.png'} -> s3://{bucket}/avatar/original/3.png, "
        f"s3://{bucket}/avatar/thumbnail/3.png (new)",
        f"would upload {src / 'd.png'} -> s3://{bucket}/avatar/original/2.png, "
        f"s3://{bucket}/avatar/thumbnail/2.png (changed)"]
    # the manifest (and everything else) is untouched by the dry run
    assert body_of(s3, bucket, f"avatar/{MANIFEST}") == manifest_before
    assert _objects(s3, bucket) == before

    ok(images_run(cli, bucket, src))
    assert manifest_files(s3, bucket, f"avatar/{MANIFEST}") == {"a.png": 3, "b.png": 1,
                                                                 "d.png": 2}
    assert body_of(s3, bucket, "avatar/original/3.png") == solid(BLUE)
    assert body_of(s3, bucket, "avatar/original/2.png") == solid(PINK)


def test_s3pput_images_dry_run_preview_html(cli, s3, bucket, src, tmp_path):
    _dry_tree(src)
    ok(images_run(cli, bucket, src, "--dry-run", "--preview", "plan.html"))
    assert keys_of(s3, bucket) == {}
    page = (tmp_path / "plan.html").read_text(encoding="utf-8")
    # self-contained: every src/href is inline data, nothing points elsewhere
    links = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', page, re.I)
    assert links and all(link.startswith("data:") for link in links), links
    assert not re.search(r"https?://|url\(", page.replace("s3://", ""), re.I)
    for pattern in DRY_KEYS.values():
        for folder in ("original", "thumbnail"):
            assert f"avatar/{pattern.format(folder)}" in page
    images = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == len(DRY_TREE)
    colours = []
    for data in images:
        thumb = decode(base64.b64decode(data))
        assert thumb.format == "JPEG" and thumb.size == (200, 300)
        colours.append(mean_colour(thumb))
    for colour in DRY_TREE.values():
        assert any(near(found, colour) for found in colours), (colour, colours)


def test_s3pput_images_preview_without_dry_run_is_a_usage_error(cli, s3, bucket, src,
                                                                tmp_path):
    _dry_tree(src)
    result = images_run(cli, bucket, src, "--preview", "plan.html")
    assert result.returncode == 2, result.stderr
    assert "--preview" in result.stderr and "--dry-run" in result.stderr
    assert keys_of(s3, bucket) == {}
    assert not (tmp_path / "plan.html").exists()


# -- failures ------------------------------------------------------------------------------

def test_s3pput_images_truncated_jpeg_fails_the_others_are_uploaded(cli, s3, bucket, src):
    photo = encode(Image.effect_noise(PORTRAIT, 40).convert("RGB"), "JPEG")
    make_tree(src, {"broken.jpg": photo[: len(photo) // 2], "good1.png": solid(RED),
                    "good2.png": solid(GREEN)})
    result = images_run(cli, bucket, src, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    summary = summary_of(result)
    assert counts(summary) == (3, 2, 0, 1)
    [failure] = summary["failures"]
    assert failure["path"] == str(src / "broken.jpg")
    assert "truncated" in failure["reason"]
    [line] = [line for line in result.stderr.splitlines() if "broken.jpg" in line]
    assert line.startswith(f"s3pput: failed {src / 'broken.jpg'}") and "truncated" in line
    # broken.jpg sorts first and keeps number 1, but neither of its objects is stored
    assert without_manifests(keys_of(s3, bucket)) == {
        "avatar/original/2.png", "avatar/thumbnail/2.png",
        "avatar/original/3.png", "avatar/thumbnail/3.png"}
    assert body_of(s3, bucket, "avatar/original/3.png") == solid(GREEN)
    assert near(mean_colour(thumbnail_of(s3, bucket, "avatar/thumbnail/2.png")), RED)


# -- habits of the DigitalOcean uploader ---------------------------------------------------

def test_s3pput_images_workers_and_debug_aliases(cli, s3, bucket, src):
    make_tree(src, {"a.png": solid(RED), "b.png": solid(GREEN)})
    quiet = ok(images_run(cli, bucket, src, "--workers", "3", "--no-state",
                          prefix="plain"))
    assert "uploaded " not in quiet.stderr
    loud = ok(images_run(cli, bucket, src, "--workers", "2", "--debug"))
    for n, name in ((1, "a.png"), (2, "b.png")):
        assert (f"uploaded {src / name} -> s3://{bucket}/avatar/original/{n}.png, "
                f"s3://{bucket}/avatar/thumbnail/{n}.png (new)") in loud.stderr
    assert without_manifests(keys_of(s3, bucket, "avatar/")) == {
        "avatar/original/1.png", "avatar/thumbnail/1.png",
        "avatar/original/2.png", "avatar/thumbnail/2.png"}
    # --workers is --processes: it is validated as such
    bad = images_run(cli, bucket, src, "--workers", "0")
    assert bad.returncode == 2 and "must be > 0" in bad.stderr


def test_s3pput_images_two_sources_with_the_same_name_never_share_a_key(cli, s3, bucket,
                                                                         tmp_path):
    first = make_tree(tmp_path / "one", {"a.png": solid("red"), "b.png": solid("green")})
    second = make_tree(tmp_path / "two", {"a.png": solid("blue"), "c.png": solid("white")})
    result = cli("--images", "--bucket", bucket, "--prefix", "avatar", "--json", first, second)
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert counts(summary) == (4, 3, 0, 1)
    assert "another SOURCE has a file of this name" in result.stderr
    assert str(second / "a.png") in result.stderr
    # the first a.png keeps number 1; the blue one was not stored anywhere
    assert near(mean_colour(decode(body_of(s3, bucket, "avatar/original/1.png"))), (255, 0, 0))
    originals = {k for k in keys_of(s3, bucket, "avatar/original/")}
    assert originals == {"avatar/original/1.png", "avatar/original/2.png",
                         "avatar/original/3.png"}
    colours = [mean_colour(decode(body_of(s3, bucket, key))) for key in sorted(originals)]
    assert not any(near(colour, (0, 0, 255)) for colour in colours)
