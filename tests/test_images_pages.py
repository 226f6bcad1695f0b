"""Image mode for the photos people have now, against the real local S3 server: HEIC and
AVIF in, AVIF/WebP/JPEG out (several formats per size), location stripped on request, and
the facts a web page needs (x-amz-meta-width/height, the folder index, the mapping log).

Every input is made here, small: an iPhone-like HEIC (irot plus an EXIF orientation tag),
a 10-bit Display P3 HEIC, a burst whose primary image is not the first, an AVIF, JPEGs
with a GPS position. Everything is read back with the independent client and decoded.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json

import pytest
from conftest import body_of, keys_of, make_tree
from pictures import decoded, encode
from PIL import Image
from test_images import _p3_to_srgb, _wide_gamut_profile, near
from test_images_modern import ORIENTATION, assert_looks_like, quadrants, shown_as, ten_bit_heic

pillow_heif = pytest.importorskip("pillow_heif")
pillow_heif.register_heif_opener()  # the tests decode HEIC themselves

INDEX = ".s3pput-index.json"
GPS_IFD = 0x8825
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
P3_ORANGE = (200, 100, 50)




def exif(orientation: int = 0, gps: bool = False) -> bytes:
    tags = Image.Exif()
    tags[0x010F] = "Phone Maker"  # Make
    if orientation:
        tags[ORIENTATION] = orientation
    if gps:
        where = tags.get_ifd(GPS_IFD)
        where[1], where[2], where[3], where[4] = "N", (48.0, 51.0, 29.0), "E", (2.0, 17.0, 40.0)
    return tags.tobytes()


def has_gps(data: bytes) -> bool:
    return bool(decoded(data).getexif().get_ifd(GPS_IFD))


def photos() -> dict:
    """File name -> bytes, in the order they are numbered (upper case sorts first)."""
    burst = [Image.new("RGB", (60, 40), colour) for colour in (RED, GREEN, BLUE)]
    return {
        # stored landscape, shown portrait: irot, and the EXIF tag an iPhone also writes
        "IMG_0001.HEIC": encode(quadrants((96, 64)), "HEIF", quality=90,
                                exif=exif(orientation=6)),
        "IMG_0002.HEIC": ten_bit_heic(P3_ORANGE, size=(40, 60), icc=_wide_gamut_profile()),
        "IMG_0003.HEIC": encode(burst[0], "HEIF", save_all=True, append_images=burst[1:],
                                primary_index=1),
        "gps.jpg": encode(quadrants((60, 90)), "JPEG", quality=95, exif=exif(gps=True)),
        "photo.avif": encode(quadrants((90, 60)), "AVIF", quality=90),
    }


def ok(result, code: int = 0):
    assert result.returncode == code, \
        f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def summary_of(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def counts(summary: dict) -> tuple:
    return (summary["walked"], summary["uploaded"], summary["updated_metadata"],
            summary["skipped"], summary["failed"])


def head(s3, bucket: str, key: str) -> dict:
    return s3.head_object(Bucket=bucket, Key=key)


def size_meta(s3, bucket: str, key: str) -> tuple:
    metadata = head(s3, bucket, key)["Metadata"]
    return int(metadata["width"]), int(metadata["height"])


def stamps(s3, bucket: str, prefix: str = "") -> dict:
    return {key: (item["ETag"], item["LastModified"])
            for key, item in keys_of(s3, bucket, prefix).items()}


# -- HEIC, AVIF, GPS JPEG in; several formats out; the facts everywhere ------------------

SIZES = ["--thumbnail", "card=60x90", "--thumbnail", "icon=20x20:png",
         "--thumbnail-format", "avif,webp,jpeg"]
CARD = [("avif", "AVIF", "image/avif"), ("webp", "WEBP", "image/webp"),
        ("jpg", "JPEG", "image/jpeg")]
# number, original's extension, Content-Type, upright size
ORIGINALS = {"IMG_0001.HEIC": (1, "heic", "image/heic", (64, 96)),
             "IMG_0002.HEIC": (2, "heic", "image/heic", (40, 60)),
             "IMG_0003.HEIC": (3, "heic", "image/heic", (60, 40)),
             "gps.jpg": (4, "jpg", "image/jpeg", (60, 90)),
             "photo.avif": (5, "avif", "image/avif", (90, 60))}


def test_phone_photos_go_up_with_every_format_and_the_facts_a_page_needs(cli, s3, bucket,
                                                                          tmp_path):
    files = photos()
    src = make_tree(tmp_path / "photos", files)
    summary = summary_of(ok(cli("--images", "--bucket", bucket, "--prefix", "u", *SIZES,
                                "--json", src)))
    assert counts(summary) == (5, 5, 0, 0, 0)

    index = json.loads(body_of(s3, bucket, f"u/{INDEX}"))
    assert index["version"] == 1 and sorted(index["images"]) == ["1", "2", "3", "4", "5"]
    for name, (number, ext, ctype, upright) in ORIGINALS.items():
        original = f"u/original/{number}.{ext}"
        assert body_of(s3, bucket, original) == files[name], name  # byte for byte
        assert head(s3, bucket, original)["ContentType"] == ctype, name
        assert size_meta(s3, bucket, original) == upright, name
        # several formats: NUMBER.EXT each; one format: the original's name (PNG bytes)
        card = {fmt: decoded(body_of(s3, bucket, f"u/card/{number}.{suffix}"))
                for suffix, fmt, _ in CARD}
        icon = decoded(body_of(s3, bucket, f"u/icon/{number}.{ext}"))
        assert icon.format == "PNG" and icon.size == (20, 20), name
        for suffix, fmt, mime in CARD:
            key = f"u/card/{number}.{suffix}"
            assert (card[fmt].format, card[fmt].size) == (fmt, (60, 90)), key
            assert head(s3, bucket, key)["ContentType"] == mime, key
            assert size_meta(s3, bucket, key) == (60, 90), key
        assert head(s3, bucket, f"u/icon/{number}.{ext}")["ContentType"] == "image/png"

        entry = index["images"][str(number)]
        assert (entry["source"], entry["width"], entry["height"]) == (name, *upright)
        assert entry["original"] == {"key": original, "content_type": ctype,
                                     "bytes": len(files[name])}
        assert entry["thumbnails"] == {
            "card": [{"key": f"u/card/{number}.{suffix}", "format": fmt.lower(),
                      "content_type": mime, "width": 60, "height": 90}
                     for suffix, fmt, mime in CARD],
            "icon": [{"key": f"u/icon/{number}.{ext}", "format": "png",
                      "content_type": "image/png", "width": 20, "height": 20}]}
        placeholder = base64.b64decode(entry["placeholder"]["thumbhash"])
        assert 5 <= len(placeholder) <= 30, name
        portrait = upright[1] > upright[0]
        assert bool(placeholder[4] & 0x80) == (not portrait), name  # ThumbHash's landscape bit

        # upright once: irot only for the HEIC, whatever its EXIF tag says
        if name == "IMG_0001.HEIC":
            for image in card.values():
                assert_looks_like(image, shown_as(quadrants((96, 64)), 6).resize((60, 90)))
        elif name in ("gps.jpg", "photo.avif"):
            for image in card.values():
                assert_looks_like(image, quadrants(upright).resize((60, 90)))
    # 10-bit Display P3 in sRGB; the burst's primary image (green), not its first (red)
    assert near(card_pixel(s3, bucket, 2), _p3_to_srgb(P3_ORANGE), 6)
    assert near(card_pixel(s3, bucket, 3), GREEN, 12)

    rows = list(csv.DictReader(open(tmp_path / "s3pput-mapping.csv", encoding="utf-8")))
    [row] = [row for row in rows if row["source"].endswith("IMG_0001.HEIC")]
    assert (row["width"], row["height"]) == ("64", "96")
    assert row["thumbhash"] == index["images"]["1"]["placeholder"]["thumbhash"]
    assert row["thumbnail_keys"].split() == ["u/card/1.avif", "u/card/1.webp", "u/card/1.jpg",
                                             "u/icon/1.heic"]
    assert row["thumbnail_sizes"] == "60x90 60x90 60x90 20x20"
    assert row["thumbnail_types"] == "image/avif image/webp image/jpeg image/png"

    # A rerun that uploads nothing writes nothing, the index included.
    before = stamps(s3, bucket)
    again = summary_of(ok(cli("--images", "--bucket", bucket, "--prefix", "u", *SIZES,
                              "--json", src)))
    assert counts(again) == (5, 0, 0, 5, 0)
    assert stamps(s3, bucket) == before


def card_pixel(s3, bucket, number: int) -> tuple:
    return decoded(body_of(s3, bucket, f"u/card/{number}.jpg")).convert("RGB").getpixel((30, 45))


def test_a_corrupt_heic_fails_alone_and_the_others_go_up(cli, s3, bucket, tmp_path):
    good = encode(Image.new("RGB", (30, 45), BLUE), "HEIF", quality=80)
    src = make_tree(tmp_path / "p", {"a.HEIC": good, "b.heic": good[:200]})
    result = ok(cli("--images", "--bucket", bucket, "--thumbnail", "t=20x30", src), code=1)
    assert "b.heic" in result.stderr and "a.HEIC" not in result.stderr
    assert set(keys_of(s3, bucket)) == {"original/1.heic", "t/1.heic", ".s3pput-manifest.json",
                                        INDEX}
    assert decoded(body_of(s3, bucket, "t/1.heic")).format == "JPEG"


# -- location: stripped on request, warned about otherwise --------------------------------

def gps_tree(tmp_path):
    heic = encode(quadrants((48, 32)), "HEIF", quality=80, exif=exif(orientation=6, gps=True))
    jpeg = encode(quadrants((48, 32)), "JPEG", quality=90, exif=exif(orientation=6, gps=True))
    plain = encode(Image.new("RGB", (30, 45), RED), "PNG")
    files = {"home.jpg": jpeg, "home.heic": heic, "plain.png": plain}
    assert has_gps(jpeg) and has_gps(heic)
    return make_tree(tmp_path / "gps", files), files


def test_strip_metadata_location_stores_originals_without_gps_and_reruns_skip_them(
        cli, s3, bucket, tmp_path):
    src, files = gps_tree(tmp_path)
    args = ["--images", "--bucket", bucket, "--thumbnail", "t=20x30", "--grant",
            "public-read", "--strip-metadata", "location", "--json", src]
    result = ok(cli(*args))
    assert counts(summary_of(result)) == (3, 3, 0, 0, 0)
    assert "location" not in result.stderr  # stripped: nothing to warn about
    for key, name in (("original/1.heic", "home.heic"), ("original/2.jpg", "home.jpg")):
        stored = body_of(s3, bucket, key)
        assert not has_gps(stored) and has_gps(files[name]), key
        before, after = decoded(files[name]), decoded(stored)
        assert after.tobytes() == before.tobytes(), key  # not re-encoded: the same pixels
        assert head(s3, bucket, key)["ETag"].strip('"') == hashlib.md5(stored).hexdigest()
    assert decoded(body_of(s3, bucket, "original/2.jpg")).getexif()[ORIENTATION] == 6
    assert body_of(s3, bucket, "original/3.png") == files["plain.png"]  # nothing to strip
    index = json.loads(body_of(s3, bucket, INDEX))
    assert index["images"]["2"]["original"]["bytes"] == len(body_of(s3, bucket,
                                                                     "original/2.jpg"))

    # Unchanged stripped originals are skipped: by the journal, and without it by what
    # would be stored (sizes say nothing: stripping keeps a JPEG's length).
    before = stamps(s3, bucket)
    assert counts(summary_of(ok(cli(*args)))) == (3, 0, 0, 3, 0)
    assert counts(summary_of(ok(cli("--no-state", *args)))) == (3, 0, 0, 3, 0)
    assert stamps(s3, bucket) == before
    # Asked to stop stripping, the originals go up again as they are.
    plain_args = [arg for arg in args if arg not in ("--strip-metadata", "location")]
    assert counts(summary_of(ok(cli(*plain_args)))) == (3, 2, 0, 1, 0)
    assert body_of(s3, bucket, "original/2.jpg") == files["home.jpg"]


def test_a_file_that_cannot_be_stripped_fails_and_is_not_uploaded(cli, s3, bucket, tmp_path):
    tiff = encode(Image.new("RGB", (30, 45), GREEN), "TIFF", exif=exif(gps=True))
    src = make_tree(tmp_path / "t", {"scan.tiff": tiff, "z.png": encode(
        Image.new("RGB", (30, 45), RED), "PNG")})
    result = ok(cli("--images", "--bucket", bucket, "--thumbnail", "t=20x30",
                    "--strip-metadata", "all", "--json", src), code=1)
    [failure] = summary_of(result)["failures"]
    assert failure["path"].endswith("scan.tiff")
    assert "cannot be stripped" in failure["reason"] and "TIFF" in failure["reason"]
    assert not any(key.endswith("/1.tiff") for key in keys_of(s3, bucket))
    assert "original/2.png" in keys_of(s3, bucket)


def test_public_originals_with_a_location_are_warned_about_once(cli, s3, bucket, tmp_path):
    src, _ = gps_tree(tmp_path)
    args = ["--images", "--bucket", bucket, "--thumbnail", "t=20x30", src]
    plan = ok(cli("--dry-run", "--preview", tmp_path / "plan.html", *args))
    located = [line for line in plan.stdout.splitlines() if "carries a location" in line]
    assert sorted(line.split()[2].rsplit("/", 1)[-1] for line in located) == \
        ["home.heic", "home.jpg"]
    page = (tmp_path / "plan.html").read_text(encoding="utf-8")
    assert page.count("carries a location") == 2
    assert page.count("32x48, t 20x30 jpeg, thumbhash ") == 2  # upright, under each thumbnail

    shared = ok(cli(*args, env={"SPACES_ACL": "public-read"}))  # the uploader's .env habit
    warnings = [line for line in shared.stderr.splitlines() if "location" in line]
    assert warnings == ["s3pput: warning: 2 originals carrying a location (GPS) put by this "
                        "run are readable by anyone (ACL public-read); --strip-metadata "
                        "location stores originals without it"]
    assert has_gps(body_of(s3, bucket, "original/2.jpg"))  # told, not changed


# -- headers: the per-image sizes are kept and never count as a change --------------------

def test_sizes_survive_an_update_in_place_and_never_count_as_a_change(cli, s3, bucket,
                                                                       tmp_path):
    src = make_tree(tmp_path / "h", {"a.png": encode(Image.new("RGB", (30, 45), RED), "PNG")})
    run = ["--images", "--bucket", bucket, "--thumbnail", "t=20x30", "--json", src]
    ok(cli("--header", "Cache-Control: max-age=1", *run))
    # Without the journal a HEAD compares headers: the sizes are not the run's to compare.
    same = summary_of(ok(cli("--no-state", "--header", "Cache-Control: max-age=1", *run)))
    assert counts(same) == (1, 0, 0, 1, 0)
    changed = summary_of(ok(cli("--no-state", "--header", "Cache-Control: max-age=2", *run)))
    assert counts(changed) == (1, 0, 1, 0, 0)
    for key, size in (("original/1.png", (30, 45)), ("t/1.png", (20, 30))):
        assert head(s3, bucket, key)["CacheControl"] == "max-age=2"
        assert size_meta(s3, bucket, key) == size, key


# -- the index: merged, written once per change, failures said once ----------------------

def test_the_index_merges_with_what_it_holds_and_a_failed_write_is_healed(cli, s3, bucket,
                                                                          tmp_path):
    src = make_tree(tmp_path / "m", {"a.png": encode(Image.new("RGB", (30, 45), RED), "PNG")})
    run = ["--images", "--bucket", bucket, "--thumbnail", "t=20x30", src]
    ok(cli(*run))
    # an entry another run (another machine) wrote stays
    index = json.loads(body_of(s3, bucket, INDEX))
    index["images"]["7"] = {"source": "elsewhere.png", "width": 1, "height": 1}
    s3.put_object(Bucket=bucket, Key=INDEX, Body=json.dumps(index).encode())
    make_tree(src, {"b.png": encode(Image.new("RGB", (45, 30), BLUE), "PNG")})
    ok(cli(*run))
    merged = json.loads(body_of(s3, bucket, INDEX))["images"]
    assert sorted(merged) == ["1", "2", "7"] and (merged["2"]["width"], merged["2"]["height"]) \
        == (45, 30)

    # An index that cannot be written is an error of the run, said once; the next run
    # writes what is missing, though it uploads nothing.
    s3.put_object(Bucket=bucket, Key=INDEX, Body=b"not json")
    make_tree(src, {"c.png": encode(Image.new("RGB", (30, 30), GREEN), "PNG"),
                    "d.png": encode(Image.new("RGB", (30, 30), GREEN), "PNG")})
    failed = cli(*run)
    assert failed.returncode == 1
    [line] = [line for line in failed.stderr.splitlines() if INDEX in line]
    assert "not an s3pput index" in line and "next run" in line
    assert body_of(s3, bucket, INDEX) == b"not json"  # not overwritten
    s3.delete_object(Bucket=bucket, Key=INDEX)
    summary = summary_of(ok(cli("--json", *run)))
    assert summary["uploaded"] == 0
    assert sorted(json.loads(body_of(s3, bucket, INDEX))["images"]) == ["3", "4"]


# -- bad values: one line, exit 2 ------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["--thumbnail-format", "avif,gif"], "--thumbnail-format: unsupported thumbnail format"),
    (["--thumbnail", "card=60x90:webp,webp"], "webp is given twice"),
    (["--thumbnail-quality", "png=50"], "png is lossless"),
    (["--strip-metadata", "gps"], "invalid choice: 'gps' (choose from 'location', 'all')"),
])
def test_bad_image_option_values_exit_2_with_one_line(cli, bucket, tmp_path, args, says):
    result = cli("--images", "--bucket", bucket, *args, tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("s3pput: error: ") and says in line, line
