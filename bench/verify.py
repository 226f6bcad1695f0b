"""Checking what a run left in the bucket, with a boto3 client of the harness's own (not
the tool's code): the key set and sizes from a listing, and the MD5 of a random sample of
objects downloaded and compared with their source files. A run that fails its check is
FAILED, however fast it was."""

from __future__ import annotations

import hashlib
import io
import os
import random
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from PIL import Image


@dataclass
class Check:
    ok: bool
    detail: str  # what was checked, or what was wrong
    objects: int = 0  # objects found


def md5_file(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def md5_object(client, bucket: str, key: str) -> str:
    return md5_and_type(client, bucket, key)[0]


def md5_and_type(client, bucket: str, key: str) -> Tuple[str, str]:
    """The MD5 of an object's bytes and its Content-Type, from one GET."""
    digest = hashlib.md5()
    answer = client.get_object(Bucket=bucket, Key=key)
    body = answer["Body"]
    for block in iter(lambda: body.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest(), answer.get("ContentType", "")


# The Content-Type an original must be stored with, by its (lower-cased) extension.
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
               ".heic": "image/heic", ".heif": "image/heif", ".avif": "image/avif"}


def image_type(name: str) -> Optional[str]:
    return IMAGE_TYPES.get(os.path.splitext(name)[1].lower())


def listing(client, bucket: str, prefix: str) -> Dict[str, int]:
    """{key: size} of every object under PREFIX."""
    found: Dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"]] = item["Size"]
    return found


def _compare_keys(found: Dict[str, int], expected: Dict[str, int]) -> Optional[str]:
    """None if FOUND has exactly the EXPECTED keys; else what differs (sizes are compared
    where EXPECTED gives one, i.e. is not negative)."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        return (f"expected {len(expected)} objects, found {len(found)}: "
                f"{len(missing)} missing (e.g. {missing[:2]}), "
                f"{len(extra)} unexpected (e.g. {extra[:2]})")
    wrong = [k for k, size in expected.items() if size >= 0 and found[k] != size]
    if wrong:
        return f"{len(wrong)} objects of the wrong size (e.g. {wrong[0]})"
    return None


def _sample_md5(client, bucket: str, pairs: List[Tuple[str, str]], sample: int,
                seed: int, content_types: Optional[Dict[str, str]] = None) -> Optional[str]:
    """None if every sampled (key, source path) pair has the same MD5 on both sides (and
    the Content-Type CONTENT_TYPES gives for the key, where it gives one)."""
    chosen = random.Random(seed).sample(pairs, min(sample, len(pairs)))
    for key, path in chosen:
        md5, stored_type = md5_and_type(client, bucket, key)
        if md5 != md5_file(path):
            return f"MD5 of {key} differs from {path}"
        wanted = (content_types or {}).get(key)
        if wanted and stored_type.split(";")[0].strip().lower() != wanted:
            return f"{key} is stored as Content-Type {stored_type!r}, not {wanted!r}"
    return None


def check_tree(client, bucket: str, prefix: str, source: str, relpaths: Iterable[str],
               *, sample: int, seed: int) -> Check:
    """Every file of SOURCE (RELPATHS) is at PREFIX/RELPATH with its size, and a sample of
    SAMPLE objects has the source's MD5."""
    relpaths = list(relpaths)
    expected = {f"{prefix}/{rel}": os.path.getsize(os.path.join(source, rel))
                for rel in relpaths}
    try:
        found = listing(client, bucket, prefix + "/")
        problem = _compare_keys(found, expected) or _sample_md5(
            client, bucket, [(f"{prefix}/{rel}", os.path.join(source, rel))
                             for rel in relpaths], sample, seed)
    except Exception as err:  # noqa: BLE001 - a check that cannot run is a failed check
        return Check(False, f"check failed: {type(err).__name__}: {err}")
    if problem:
        return Check(False, problem, len(found))
    return Check(True, f"{len(found)} objects, sizes match, "
                       f"{min(sample, len(relpaths))} MD5s match", len(found))


def check_images(client, bucket: str, prefix: str, source: str,
                 originals: Dict[str, str], thumbnails: Iterable[str],
                 box: Tuple[int, int], *, sample: int, seed: int) -> Check:
    """Image mode's result: ORIGINALS maps each original's key to its source file (a
    path relative to SOURCE; byte-for-byte copies, sampled by MD5, with the Content-Type
    of the key's extension: image/jpeg, image/png, image/heic, image/heif, image/avif);
    each of THUMBNAILS exists, and a sample of them decodes to a picture of exactly BOX
    pixels. Nothing else in any original/ and thumbnail/ folder under PREFIX (other
    objects, such as the manifests, are left alone)."""
    thumbnails = list(thumbnails)
    try:
        found = {k: v for k, v in listing(client, bucket, prefix + "/").items()
                 if "/original/" in k[len(prefix):] or "/thumbnail/" in k[len(prefix):]}
        expected = {key: os.path.getsize(os.path.join(source, name))
                    for key, name in originals.items()}
        expected.update({key: -1 for key in thumbnails})
        types = {key: image_type(key) for key in originals if image_type(key)}
        problem = _compare_keys(found, expected) or _sample_md5(
            client, bucket, [(key, os.path.join(source, name))
                             for key, name in originals.items()], sample, seed, types)
        if not problem:
            rng = random.Random(seed + 1)
            for key in rng.sample(thumbnails, min(sample, len(thumbnails))):
                data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                with Image.open(io.BytesIO(data)) as picture:
                    picture.load()
                    if picture.size != box:
                        problem = f"thumbnail {key} is {picture.size}, not {box}"
                        break
    except Exception as err:  # noqa: BLE001
        return Check(False, f"check failed: {type(err).__name__}: {err}")
    if problem:
        return Check(False, problem, len(found))
    return Check(True, f"{len(originals)} originals + {len(thumbnails)} thumbnails, "
                       f"{min(sample, len(originals))} MD5s, Content-Types and thumbnail "
                       "sizes match",
                 len(found))


def empty_bucket(client, bucket: str) -> None:
    """Delete every object of BUCKET (to give the server its disk back after large runs)."""
    keys = list(listing(client, bucket, ""))
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})
