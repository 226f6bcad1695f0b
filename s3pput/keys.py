"""Pure key naming: prefix joining, name encoding, image keys.

Promises: a key never starts with ``/``, never contains ``//``, never has a ``.`` or ``..``
segment, is valid UTF-8, and is at most 1,024 bytes long (``check_key``).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from .errors import FileError, UsageError

MAX_KEY_BYTES = 1024
ORIGINAL_FOLDER = "original"  # image mode: the folder of the originals (thumbnails: theirs)


def normalize_prefix(prefix: str) -> str:
    """Return PREFIX without leading/trailing/doubled slashes; reject ``.``/``..`` segments."""
    parts = [part for part in (prefix or "").split("/") if part]
    bad = [part for part in parts if part in (".", "..")]
    if bad:
        raise UsageError(f"--prefix {prefix!r} has a {bad[0]!r} segment; keys cannot have one")
    return "/".join(parts)


def encode_name(name: str) -> str:
    """Return a file name as a key segment.

    File names that are not valid UTF-8 reach Python as ``surrogateescape`` strings. S3 keys
    must be UTF-8, so each undecodable byte becomes ``%XX`` (upper-case hex), e.g. the
    Latin-1 name ``caf\\xe9.jpg`` becomes the key segment ``caf%E9.jpg``. Valid names are kept
    exactly as they are on disk (no Unicode normalisation: NFC and NFD names stay distinct).
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return _percent_encode_invalid(name.encode("utf-8", "surrogateescape"))


def _percent_encode_invalid(raw: bytes) -> str:
    """Decode RAW as UTF-8, writing every byte that is not part of valid UTF-8 as %XX."""
    out = []
    while raw:
        try:
            out.append(raw.decode("utf-8"))
            break
        except UnicodeDecodeError as err:
            out.append(raw[: err.start].decode("utf-8"))
            out.extend(f"%{byte:02X}" for byte in raw[err.start: err.end])
            raw = raw[err.end:]
    return "".join(out)


def join_key(prefix: str, parts: Iterable[str]) -> str:
    """Join a normalised prefix and relative path segments into a key."""
    segments = [prefix] if prefix else []
    segments.extend(part for part in parts if part)
    return "/".join(segments)


def check_key(key: str, *, path: str = "") -> str:
    """Return KEY if S3 accepts it, else raise a per-file ``FileError`` saying why."""
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise FileError(f"key is {size} bytes long; S3 allows at most {MAX_KEY_BYTES}",
                        op="name", path=path)
    if not key or key.startswith("/") or "//" in key:
        raise FileError(f"invalid key {key!r}", op="name", path=path)
    if any(segment in (".", "..") for segment in key.split("/")):
        raise FileError(f"key {key!r} has a '.' or '..' segment", op="name", path=path)
    return key


def image_keys(prefix: str, reldir: Sequence[str], number: int, extension: str,
               folders: Sequence[str]) -> list[str]:
    """Keys of one image in each folder: ``prefix/reldir/FOLDER/NUMBER.ext``.

    The same file name is used in every folder, so an app can swap ``original`` for
    ``thumbnail`` to find the thumbnail of an original.
    """
    name = f"{number}.{extension.lower()}" if extension else str(number)
    return [join_key(prefix, [*reldir, folder, name]) for folder in folders]


def renditions(thumbnails: Sequence[tuple]) -> list[tuple[str, str]]:
    """(folder, format) of every thumbnail of an image, in the order they are made and
    named: size by size, each in the order of its formats. THUMBNAILS: the run's
    (name, width, height, formats) sizes."""
    return [(name, fmt) for name, _, _, formats in thumbnails for fmt in formats]


def thumbnail_keys(prefix: str, reldir: Sequence[str], stored_name: str,
                   thumbnails: Sequence[tuple]) -> list[str]:
    """Keys of one image's thumbnails, in the order of ``renditions``.

    A size in one format keeps the original's file name (``thumbnail/1.heic`` holding a
    JPEG: the layout of the DigitalOcean uploader, an app swaps ``original`` for the
    folder). A size in several formats stores each under the original's stem with the
    format's own extension (``card/1.avif``, ``card/1.webp``, ``card/1.jpg``), so an app
    computes every key from the number (or, with ``--rename keep``, from the stem).
    """
    from .images.formats import normalize_format

    base, dot, _ = stored_name.rpartition(".")
    stem = base if dot and base else stored_name
    keys = []
    for name, _, _, formats in thumbnails:
        for fmt in formats:
            file_name = stored_name if len(formats) == 1 else \
                f"{stem}.{normalize_format(fmt).extension}"
            keys.append(join_key(prefix, [*reldir, name, file_name]))
    return keys


def image_folder(original_key: str) -> str:
    """The key prefix of the source directory an original came from (``PREFIX/DIR``, ""
    at the top of a bucket): where its folder's manifest and index are."""
    return original_key.rsplit("/", 2)[0] if original_key.count("/") >= 2 else ""
