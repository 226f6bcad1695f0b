"""Tests of s3pput.images.metadata: location (or all metadata) taken out of originals
without re-encoding. Every fixture is written here by Pillow or pillow-heif with a GPS
position in EXIF and in XMP; every result is decoded and compared with the original."""

from __future__ import annotations

import io
import struct

import pytest
from pictures import decoded, encode
from PIL import Image, PngImagePlugin
from test_images import _wide_gamut_profile

from s3pput.errors import ImageError
from s3pput.images.metadata import has_location, strip_metadata

pillow_heif = pytest.importorskip("pillow_heif")
pillow_heif.register_heif_opener()

ORIENTATION, GPS_IFD, MAKE = 0x0112, 0x8825, 0x010F
ICC = _wide_gamut_profile()
XMP = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
       b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
       b'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
       b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" exif:GPSLatitude="48,51.4833N" '
       b'xmp:CreatorTool="Camera App">\n'
       b'<exif:GPSLongitude>2,17.6667E</exif:GPSLongitude>\n'
       b'<photoshop:City>Paris</photoshop:City>\n'
       b'</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
# Bytes that betray the position, from EXIF (the datum is stored outside its entry) and
# from XMP.
LOCATION_MARKS = [b"WGS-84", b"GPSLatitude", b"GPSLongitude", b"48,51.4833N", b"Paris"]




def gps_exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[MAKE], exif[ORIENTATION] = "Camera Maker", orientation
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 29.0), "E", (2.0, 17.0, 40.0)
    gps[18] = "WGS-84"  # GPSMapDatum
    return exif.tobytes()


def picture() -> Image.Image:
    image = Image.linear_gradient("L").resize((64, 48))
    return Image.merge("RGB", [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                               Image.radial_gradient("L").resize((64, 48))])


def _png() -> bytes:
    text = PngImagePlugin.PngInfo()
    text.add_itxt("XML:com.adobe.xmp", XMP.decode())
    text.add_text("Comment", "secret comment")
    return encode(picture(), "PNG", exif=gps_exif(), icc_profile=ICC, pnginfo=text)


FIXTURES = {
    "jpeg": lambda: encode(picture(), "JPEG", quality=90, exif=gps_exif(), xmp=XMP,
                           icc_profile=ICC, comment=b"secret comment"),
    "png": _png,
    "webp": lambda: encode(picture(), "WEBP", quality=80, exif=gps_exif(), xmp=XMP,
                           icc_profile=ICC),
    "heic": lambda: encode(picture(), "HEIF", quality=80, exif=gps_exif(), xmp=XMP,
                           icc_profile=ICC),
    "avif": lambda: encode(picture(), "AVIF", quality=60, exif=gps_exif(), xmp=XMP,
                           icc_profile=ICC),
}


@pytest.fixture(scope="module", params=list(FIXTURES))
def original(request) -> tuple[str, bytes]:
    data = FIXTURES[request.param]()
    image = Image.open(io.BytesIO(data))
    assert image.getexif().get_ifd(GPS_IFD)[1] == "N"  # the fixture has it all
    assert all(mark in data for mark in LOCATION_MARKS)
    return request.param, data


def shown_orientation(name: str, image: Image.Image) -> int:
    """The orientation a viewer applies: the EXIF tag, or for HEIC its irot (pillow-heif
    applies it and reports the file's tag apart), for AVIF its irot (Pillow reports it)."""
    if name == "heic":
        return image.info["original_orientation"]
    return image.getexif()[ORIENTATION]


def assert_same_picture(name: str, before: bytes, after: bytes) -> None:
    old, new = decoded(before), decoded(after)
    assert (new.format, new.mode, new.size) == (old.format, old.mode, old.size)
    assert new.tobytes() == old.tobytes()
    assert new.info.get("icc_profile") == ICC
    assert shown_orientation(name, new) == shown_orientation(name, old) == 6


# --- both levels, every container --------------------------------------------------

def test_strip_location_removes_gps_and_keeps_everything_else(original):
    name, data = original
    assert has_location(data)
    stored = strip_metadata(data, "location")
    assert not has_location(stored)
    assert len(stored) == len(data)  # edited in place
    for mark in LOCATION_MARKS:
        assert mark not in stored, mark
    assert_same_picture(name, data, stored)
    exif = Image.open(io.BytesIO(stored)).getexif()
    assert exif.get_ifd(GPS_IFD) == {}
    assert exif[MAKE] == "Camera Maker" and b"Camera App" in stored
    if name in ("jpeg", "png"):
        assert b"secret comment" in stored


def test_strip_all_keeps_only_orientation_and_profile(original):
    name, data = original
    stored = strip_metadata(data, "all")
    assert not has_location(stored)
    for mark in LOCATION_MARKS + [b"Camera Maker", b"Camera App", b"secret comment"]:
        assert mark not in stored, mark
    assert_same_picture(name, data, stored)
    assert set(Image.open(io.BytesIO(stored)).getexif()) <= {ORIENTATION}
    if name in ("heic", "avif"):
        assert len(stored) == len(data)  # items keep their lengths


def test_stripping_twice_changes_nothing_more(original):
    _, data = original
    for level in ("location", "all"):
        once = strip_metadata(data, level)
        assert strip_metadata(once, level) == once


def test_a_file_without_metadata_is_returned_as_it_is():
    for data in (encode(picture(), "JPEG"), encode(picture(), "PNG"),
                 encode(picture(), "WEBP"), encode(picture(), "BMP")):
        assert not has_location(data)
        assert strip_metadata(data, "location") == data


# --- containers' special cases ------------------------------------------------------

def test_jpeg_extended_xmp_split_inside_a_property_is_blanked():
    packet = XMP.replace(b"<photoshop:City>Paris</photoshop:City>",
                         b"<exif:GPSAltitude>35/1</exif:GPSAltitude>" + b" " * 200)
    cut = packet.index(b"GPSAltitude>35") + 6  # inside the element's name
    guid = b"0123456789ABCDEF0123456789ABCDEF"

    def extension(offset: int, chunk: bytes) -> bytes:
        body = (b"http://ns.adobe.com/xmp/extension/\x00" + guid
                + struct.pack(">II", len(packet), offset) + chunk)
        return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body

    plain = encode(picture(), "JPEG", quality=90)
    data = plain[:2] + extension(cut, packet[cut:]) + extension(0, packet[:cut]) + plain[2:]
    assert b"<exif:GPSAltitude>" not in data  # no segment holds the whole start tag
    assert has_location(data)
    stored = strip_metadata(data, "location")
    assert not has_location(stored) and len(stored) == len(data)
    assert decoded(stored).tobytes() == decoded(data).tobytes()


def test_mpo_second_picture_loses_its_location_too():
    frames = [Image.new("RGB", (32, 24), colour) for colour in ((200, 10, 10), (10, 200, 10))]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:], exif=gps_exif())
    assert data.count(b"WGS-84") == 2  # each picture carries the position
    stored = strip_metadata(data, "location")
    assert b"WGS-84" not in stored and not has_location(stored)
    image = Image.open(io.BytesIO(stored))
    assert image.n_frames == 2
    image.seek(1)
    assert image.getexif().get_ifd(GPS_IFD) == {}
    everything = strip_metadata(data, "all")  # the first picture alone, a plain JPEG
    assert getattr(Image.open(io.BytesIO(everything)), "n_frames", 1) == 1
    assert decoded(everything).tobytes() == decoded(data).tobytes()


def test_location_after_the_picture_fails_level_location_only():
    # A phone's "motion photo": a video appended after the JPEG, with its own position.
    video = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 8 + b"\x00\x00\x00\x1c\xa9xyz+48.85+002.35/"
    data = encode(picture(), "JPEG", quality=90) + video
    assert has_location(data)
    with pytest.raises(ImageError, match="strip all metadata instead") as caught:
        strip_metadata(data, "location", path_for_errors="PXL_0001.jpg")
    assert (caught.value.op, caught.value.path) == ("strip metadata", "PXL_0001.jpg")
    stored = strip_metadata(data, "all")
    assert b"\xa9xyz" not in stored and decoded(stored).tobytes() == decoded(data).tobytes()


def test_png_compressed_xmp_is_blanked():
    text = PngImagePlugin.PngInfo()
    text.add_itxt("XML:com.adobe.xmp", XMP.decode(), zip=True)
    data = encode(picture(), "PNG", pnginfo=text)
    assert b"GPSLatitude" not in data and has_location(data)  # only compressed
    stored = strip_metadata(data, "location")
    assert not has_location(stored)
    reopened = decoded(stored)
    assert reopened.tobytes() == decoded(data).tobytes()
    assert "Camera App" in reopened.info["XML:com.adobe.xmp"]


def test_webp_all_keeps_the_container_consistent():
    data = FIXTURES["webp"]()
    stored = strip_metadata(data, "all")
    assert struct.unpack_from("<I", stored, 4)[0] == len(stored) - 8  # RIFF size
    assert stored[12:16] == b"VP8X"
    flags = stored[20]
    assert flags & 0x08 and not flags & 0x04 and flags & 0x20  # EXIF, no XMP, ICC
    assert b"XMP " not in stored


def _gif_with(*blocks: bytes) -> bytes:
    frames = [Image.new("P", (16, 16), index) for index in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0)
    start = 13 + 3 * 2 ** ((data[10] & 7) + 1)  # after the global colour table
    return data[:start] + b"".join(blocks) + data[start:]


def test_gif_xmp_and_comments():
    magic = bytes([1]) + bytes(range(255, -1, -1)) + b"\x00"  # XMP's "magic trailer"
    xmp = b"\x21\xff\x0bXMP DataXMP" + XMP + magic
    comment = b"\x21\xfe\x0esecret comment\x00"
    data = _gif_with(xmp, comment)
    assert has_location(data)
    located = strip_metadata(data, "location")
    assert not has_location(located) and b"secret comment" in located
    everything = strip_metadata(data, "all")
    assert b"secret comment" not in everything and b"NETSCAPE2.0" in everything
    for stored in (located, everything):
        old, new = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(stored))
        assert new.n_frames == old.n_frames == 2
        for frame in range(2):
            old.seek(frame)
            new.seek(frame)
            assert new.convert("RGB").tobytes() == old.convert("RGB").tobytes()


def test_tiff_location_only():
    data = encode(picture(), "TIFF", exif=gps_exif())
    stored = strip_metadata(data, "location")
    assert not has_location(stored) and b"WGS-84" not in stored
    assert decoded(stored).tobytes() == decoded(data).tobytes()
    with pytest.raises(ImageError, match="only the location can be stripped"):
        strip_metadata(data, "all")


# --- refusals ------------------------------------------------------------------------

def _broken_gps_pointer(data: bytes) -> bytes:
    for order in "<>":
        entry = struct.pack(order + "HHI", GPS_IFD, 4, 1)
        if data.count(entry) == 1:
            at = data.index(entry) + 8
            return data[:at] + struct.pack(order + "I", 60000) + data[at + 4:]
    raise AssertionError("no GPS pointer")


def _heic_cut_after_meta(data: bytes) -> bytes:
    pos = 0
    while True:
        size, kind = struct.unpack_from(">I4s", data, pos)
        pos += size
        if kind == b"meta":
            return data[:pos + 8]


@pytest.mark.parametrize("data, reason", [
    (FIXTURES["jpeg"]()[:120], "cannot edit JPG metadata"),
    (_broken_gps_pointer(FIXTURES["jpeg"]()), "EXIF offset 60000 is past its end"),
    (FIXTURES["png"]()[:-30], "cannot edit PNG metadata"),
    (_heic_cut_after_meta(FIXTURES["heic"]()), "lies outside the file"),
    (encode(picture(), "JPEG", xmp=XMP.decode().encode("utf-16")), "UTF-16"),
    (b"not an image at all", "not an image whose metadata can be edited"),
], ids=["jpeg-cut", "gps-pointer", "png-cut", "heic-cut", "utf16-xmp", "text"])
def test_damaged_or_unsupported_files_fail_with_a_reason(data, reason):
    with pytest.raises(ImageError, match=reason) as caught:
        strip_metadata(data, "location", path_for_errors="photo")
    assert (caught.value.op, caught.value.path) == ("strip metadata", "photo")


def test_level_all_drops_exif_whose_gps_cannot_be_followed():
    data = _broken_gps_pointer(FIXTURES["jpeg"]())
    stored = strip_metadata(data, "all")
    assert dict(Image.open(io.BytesIO(stored)).getexif()) == {ORIENTATION: 6}


def test_unknown_level_is_a_value_error():
    with pytest.raises(ValueError, match="location or all"):
        strip_metadata(FIXTURES["jpeg"](), "gps")
