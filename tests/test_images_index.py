"""Image mode's new options, key layout, verdict rules, folder index and mapping log, at
the seams (no server): configurations made as users make them (``configs``), the index's
compare-and-swap against ``FakeStore`` (which honours conditional writes as S3 does, or
answers 501), another writer acting at an exact moment (``FakeStore.before``)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from configs import from_argv, from_keywords
from fakestore import FakeStore
from PIL import Image

from s3pput import decide, headers, keys
from s3pput.errors import FileError, UsageError
from s3pput.jobs import (
    UPLOADED,
    Job,
    JournalEntry,
    RemoteObject,
    Rendition,
    Result,
    Source,
    StoredImage,
)
from s3pput.reports import MAPPING_FIELDS, MappingLog
from s3pput.run import index
from s3pput.run.imagemode import ImageWalker

KEY = "avatar/photos/.s3pput-index.json"


# -- options -------------------------------------------------------------------------------

def test_formats_per_run_and_per_size_and_qualities_per_format(tmp_path):
    cfg = from_argv(["--bucket", "bkt", "--images", "--thumbnail-format", "avif,webp,JPG",
                     "--thumbnail", "card=400x600", "--thumbnail", "icon=64x64:png",
                     "--thumbnail-quality", "80,avif=60", tmp_path])
    assert cfg.thumbnails == (("card", 400, 600, ("avif", "webp", "jpeg")),
                              ("icon", 64, 64, ("png",)))
    assert dict(cfg.thumbnail_quality) == {"jpeg": 80, "webp": 80, "avif": 60}
    plain = from_keywords([tmp_path], bucket="bkt", images=True, thumbnail_quality=70)
    assert plain.thumbnails == (("thumbnail", 200, 300, ("jpeg",)),)
    assert dict(plain.thumbnail_quality) == {"jpeg": 70, "webp": 70, "avif": 70}
    defaults = from_keywords([tmp_path], bucket="bkt", images=True)
    assert dict(defaults.thumbnail_quality) == {"jpeg": 85, "webp": 82, "avif": 66}
    assert defaults.strip_metadata is None


@pytest.mark.parametrize("options, message", [
    (dict(thumbnail_format="jpeg,png,jpg"), "jpeg is given twice"),
    (dict(thumbnail=["t=10x10:"]), "unsupported thumbnail format ''"),
    (dict(thumbnail_quality="avif=0"), "must be from 1 to 100, not 0"),
    (dict(thumbnail_quality="gif=50"), "unsupported thumbnail format 'gif'"),
    (dict(thumbnail_quality="high"), "write Q or FORMAT=Q pairs"),
    (dict(header=["x-amz-meta-width: 9"]), "image mode writes it itself"),
])
def test_bad_image_values_are_usage_errors_naming_the_option(tmp_path, options, message):
    with pytest.raises(UsageError, match=message):
        from_keywords([tmp_path], bucket="bkt", images=True, **options)


def test_strip_metadata_only_applies_to_image_mode(tmp_path):
    with pytest.raises(UsageError, match="--strip-metadata only applies to image mode"):
        from_keywords([tmp_path], bucket="bkt", strip_metadata="location")
    # without --images, x-amz-meta-width is a header like any other
    assert from_keywords([tmp_path], bucket="bkt", header=["x-amz-meta-width: 9"]).metadata \
        == (("width", "9"),)


# -- keys ----------------------------------------------------------------------------------

SIZES = (("thumbnail", 200, 300, ("jpeg",)), ("card", 400, 600, ("avif", "webp", "jpeg")))


def test_one_format_keeps_the_originals_name_several_get_their_own_extension():
    assert keys.thumbnail_keys("avatar", ["f"], "1.heic", SIZES) == [
        "avatar/f/thumbnail/1.heic", "avatar/f/card/1.avif", "avatar/f/card/1.webp",
        "avatar/f/card/1.jpg"]
    assert keys.thumbnail_keys("", [], "IMG_0001.HEIC", SIZES)[1:] == [
        "card/IMG_0001.avif", "card/IMG_0001.webp", "card/IMG_0001.jpg"]
    assert keys.renditions(SIZES) == [("thumbnail", "jpeg"), ("card", "avif"),
                                      ("card", "webp"), ("card", "jpeg")]


def png(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (30, 45), colour).save(out, "PNG")
    return out.getvalue()


def test_rename_keep_with_several_formats_never_gives_two_files_one_key(tmp_path):
    src = tmp_path / "src"
    (src / "photos").mkdir(parents=True)
    for name in ("a.png", "a.webp", "b.png"):
        (src / "photos" / name).write_bytes(png("red"))
    cfg = from_keywords([src], bucket="bucket", prefix="avatar", images=True, rename="keep",
                        thumbnail_format="avif,jpeg", no_progress=True)
    out = {item.display.rsplit("/", 1)[-1]: item
           for item in ImageWalker(cfg, FakeStore(), can_list=True).jobs()}
    assert [key for _, key in out["a.png"].thumbnail_keys] == [
        "avatar/photos/thumbnail/a.avif", "avatar/photos/thumbnail/a.jpg"]
    assert "would have the keys of a.png's" in out["a.webp"].reason
    assert isinstance(out["b.png"], Job)


# -- the verdict: stored forms and per-image metadata ----------------------------------------

def job(size=10, mtime_ns=5) -> Job:
    return Job(1, "a.jpg", "o/1.jpg", Source("file", "a.jpg"), size, mtime_ns,
               RemoteObject("o/1.jpg", size, "etag"))


def test_the_journal_vouches_only_for_objects_stored_in_the_runs_form():
    stripped = headers.fingerprint({"content-type": "image/jpeg"}, "strip-location")
    as_read = headers.fingerprint({"content-type": "image/jpeg"})
    assert headers.recorded_form(stripped) == "strip-location"
    assert headers.recorded_acl(stripped) == ""
    remote = job().remote
    for fingerprint, run_form, vouches in (
            (stripped, "strip-location", True), (stripped, "", False),
            (stripped, "strip-all", False), (as_read, "", True),
            (as_read, "strip-location", False), (None, "", True),
            (None, "strip-location", False)):
        entry = JournalEntry(10, 5, "md5", "etag", fingerprint)
        assert decide.journal_vouches(job(), remote, entry, run_form) == vouches, \
            (fingerprint, run_form)


def test_stripping_makes_sizes_incomparable_and_image_sizes_are_never_compared(tmp_path):
    rules = decide.Rules.of(from_keywords([tmp_path], bucket="bkt", images=True,
                                          strip_metadata="all"))
    assert (rules.size_comparable, rules.form) == (False, "strip-all")
    assert rules.own_metadata == headers.IMAGE_FACTS_META
    wanted = {"content-type": "image/png", "cache-control": "max-age=1"}
    shown = {**wanted, "x-amz-meta-width": "30", "x-amz-meta-height": "45"}
    assert decide.same_headers(wanted, shown, recorded_acl=None, ignored=rules.own_metadata)
    assert not decide.same_headers(wanted, shown, recorded_acl=None)  # plain mode compares


# -- the folder index ------------------------------------------------------------------------

def entry(width: int) -> dict:
    return {"source": f"{width}.png", "width": width, "height": 1}


def stored_images(store: FakeStore) -> dict:
    return json.loads(store.objects[KEY].body)["images"]


def test_the_index_is_created_if_absent_then_replaced_if_unchanged_since_read():
    store = FakeStore()
    assert index.merge_index(store, KEY, {"1": entry(1)})
    assert index.merge_index(store, KEY, {"2": entry(2), "10": entry(10)})
    assert store.conditional == [(KEY, "if-none-match"), (KEY, "if-match")]
    assert list(stored_images(store)) == ["1", "2", "10"]  # in the numbers' order
    # what it holds already is not written again
    assert not index.merge_index(store, KEY, {"2": entry(2)})
    assert store.count("put") == 2


def test_a_lost_round_reads_again_and_keeps_the_other_runs_entries():
    store = FakeStore()
    index.merge_index(store, KEY, {"1": entry(1)})

    def other_run():  # another run writes its entry between our read and our write
        store.objects[KEY] = FakeStore({KEY: index.dumps(
            {"images": {"1": entry(1), "2": entry(2)}})}).objects[KEY]
    store.before("put", other_run, KEY)
    assert index.merge_index(store, KEY, {"3": entry(3), "1": entry(100)}, pause=lambda s: None)
    assert stored_images(store) == {"1": entry(100), "2": entry(2), "3": entry(3)}
    assert store.count("get") == 3


def test_rounds_are_bounded_and_a_damaged_index_is_never_overwritten():
    store = FakeStore()
    index.merge_index(store, KEY, {"1": entry(1)})
    for round_ in range(index.INDEX_ATTEMPTS):
        store.before("put", lambda n=round_: store.objects.update(
            {KEY: FakeStore({KEY: index.dumps({"images": {f"x{n}": entry(n)}})}).objects[KEY]}),
            KEY)
    with pytest.raises(FileError, match="other runs wrote it 8 times"):
        index.merge_index(store, KEY, {"2": entry(2)}, pause=lambda s: None)
    damaged = FakeStore({KEY: b"{not json"})
    with pytest.raises(FileError, match="not an s3pput index"):
        index.merge_index(damaged, KEY, {"2": entry(2)})
    assert damaged.objects[KEY].body == b"{not json" and damaged.count("put") == 0


def test_a_store_without_conditional_writes_gets_the_index_replaced_plainly():
    store = FakeStore(conditions="501")
    assert index.merge_index(store, KEY, {"1": entry(1)})
    assert index.merge_index(store, KEY, {"2": entry(2)})
    assert list(stored_images(store)) == ["1", "2"]


def uploaded(number: int, key: str) -> Result:
    thumb = Rendition("t", key.replace("original", "t"), "jpeg", "image/jpeg", 20, 30)
    return Result(number, f"/src/photos/{number}.png", key, UPLOADED, "new", number=number,
                  image=StoredImage(30, 45, "AAAA", "image/png", 123, (thumb,)))


def test_the_spool_keeps_entries_by_folder_and_what_is_written_leaves_it(tmp_path):
    spool = index.IndexSpool(str(tmp_path / "spool.sqlite"))
    spool.add([uploaded(1, "avatar/photos/original/1.png"),
               uploaded(2, "avatar/photos/original/2.png"),
               uploaded(1, "avatar/original/1.png"),
               Result(9, "/src/notes.txt", "avatar/notes.txt", UPLOADED, "new")])
    folders = dict(spool.folders())
    assert sorted(folders) == ["avatar/.s3pput-index.json", KEY]
    assert folders[KEY]["2"] == {
        "source": "2.png", "width": 30, "height": 45, "placeholder": {"thumbhash": "AAAA"},
        "original": {"key": "avatar/photos/original/2.png", "content_type": "image/png",
                     "bytes": 123},
        "thumbnails": {"t": [{"key": "avatar/photos/t/2.png", "format": "jpeg",
                              "content_type": "image/jpeg", "width": 20, "height": 30}]}}
    store = FakeStore({KEY: b"damaged"})
    written, failed = index.write_indexes(spool, store)
    assert written == 1 and [key for key, _ in failed] == [KEY]
    assert [key for key, _ in spool.folders()] == [KEY]  # kept for the next run
    spool.close()
    assert (tmp_path / "spool.sqlite").exists()


# -- the mapping log -------------------------------------------------------------------------

def test_a_mapping_log_begun_by_an_older_version_keeps_its_columns(tmp_path):
    old = MAPPING_FIELDS[:6]
    path = tmp_path / "map.csv"
    path.write_text(",".join(old) + "\r\nx.png,1,o/1.png,t/1.png,uploaded,new\r\n")
    log = MappingLog(str(path))
    assert log.left_out == MAPPING_FIELDS[6:]
    log.add(uploaded(2, "o/2.png"))
    log.close()
    rows = list(csv.reader(open(path, newline="", encoding="utf-8")))
    assert rows[0] == old and rows[2] == ["/src/photos/2.png", "2", "o/2.png", "", "uploaded",
                                          "new"]
    fresh = MappingLog(str(tmp_path / "new.csv"))
    fresh.add(uploaded(2, "o/2.png"))
    fresh.close()
    header, row = list(csv.reader(open(tmp_path / "new.csv", newline="", encoding="utf-8")))
    assert header == MAPPING_FIELDS and fresh.left_out == []
    assert dict(zip(header, row))["thumbnail_sizes"] == "20x30"


# -- a stripped original in parts ------------------------------------------------------------

def gps_jpeg() -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 29.0)})
    out = io.BytesIO()
    Image.effect_noise((120, 90), 50).convert("RGB").save(out, "JPEG", quality=95,
                                                           exif=exif.tobytes())
    return out.getvalue()


def test_a_stripped_original_over_the_threshold_goes_up_in_parts_and_is_recognised(tmp_path):
    import dataclasses

    from s3pput.digest import digest_bytes
    from s3pput.images.metadata import has_location, strip_metadata
    from s3pput.run.transfer import Transfer, UploadSlots

    data = gps_jpeg()
    path = tmp_path / "src" / "a.jpg"
    path.parent.mkdir()
    path.write_bytes(data)
    cfg = from_keywords([tmp_path / "src"], bucket="bkt", images=True, no_progress=True,
                        strip_metadata="location", thumbnail=["t=10x10"])
    # parts of 1 KiB: what a 5 MiB part does to a large photo, with a small one
    cfg = dataclasses.replace(cfg, multipart_threshold=1024, part_size=1024)
    stat = path.stat()

    def job(remote):
        return Job(1, str(path), "o/1.jpg", Source("file", str(path)), stat.st_size,
                   stat.st_mtime_ns, remote, thumbnail_keys=(("t", "t/1.jpg"),), number=1)

    store = FakeStore()
    first = Transfer(cfg, store, UploadSlots()).process(job(None))
    stripped = strip_metadata(data, "location")
    assert first.outcome == UPLOADED and has_location(data) and not has_location(stripped)
    assert store.objects["o/1.jpg"].body == stripped and store.objects["o/1.jpg"].parts > 1
    assert first.etag == digest_bytes(stripped, 1024).etag(multipart=True)
    assert first.image.stored_bytes == len(stripped)
    listed = next(item for item in store.list_objects("o/"))
    again = Transfer(cfg, store, UploadSlots()).process(job(listed))
    assert (again.outcome, again.reason) == ("skipped", "unchanged")


def test_an_original_with_a_location_made_public_in_place_is_counted(tmp_path):
    from s3pput.run.transfer import Transfer, UploadSlots

    path = tmp_path / "src" / "a.jpg"
    path.parent.mkdir()
    path.write_bytes(gps_jpeg())
    store = FakeStore({"o/1.jpg": path.read_bytes(), "t/1.jpg": b"thumb"})
    store.objects["o/1.jpg"] = store.objects["o/1.jpg"]._replace(
        params={"ContentType": "image/jpeg", "Metadata": {"width": "120", "height": "90"}})
    listed = next(item for item in store.list_objects("o/"))
    stat = path.stat()
    private = headers.fingerprint({"content-type": "image/jpeg"})
    job = Job(1, str(path), "o/1.jpg", Source("file", str(path)), stat.st_size,
              stat.st_mtime_ns, listed, JournalEntry(stat.st_size, stat.st_mtime_ns, "",
                                                     listed.etag, private),
              number=1, thumbnail_keys=(("t", "t/1.jpg"),))
    cfg = from_keywords([tmp_path / "src"], bucket="bkt", images=True, grant="public-read",
                        thumbnail=["t=10x10"])
    result = Transfer(cfg, store, UploadSlots()).process(job)
    assert (result.outcome, result.location) == ("updated", True)
    # the copy keeps the original's size, which a copy would otherwise drop
    assert store.objects["o/1.jpg"].params["Metadata"] == {"width": "120", "height": "90"}
    assert store.objects["o/1.jpg"].params["ACL"] == "public-read"
