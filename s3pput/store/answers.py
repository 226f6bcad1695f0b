"""The XML of S3's answers and requests, read and written for the lean path (pure).

A body that is not the XML the protocol promises raises ``ValueError`` saying what it was
(``a body that is not XML``; the caller says which request the store garbled);
``Page.truncated`` keeps what a listing said of itself, so that a truncated page without a
continuation token is seen, not taken as the end.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import unquote_plus
from xml.etree import ElementTree


class Page(NamedTuple):
    """One ListObjectsV2 page."""

    items: List[Tuple[str, int, str, str]]  # (key, size, ETag without quotes, storage class)
    token: str  # NextContinuationToken ("" when none)
    truncated: bool  # IsTruncated: more pages follow
    prefixes: int = 0  # CommonPrefixes on this page (a page of folders only is progress)


def _root(body: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError as err:
        raise ValueError("a body that is not XML") from err


def _tag(element: ElementTree.Element) -> str:
    return element.tag.rpartition("}")[2]


def parse_listing(body: bytes) -> Page:
    """A ListObjectsV2 answer. With ``encoding-type=url`` keys come form-encoded (a space
    as ``+``, a plus as ``%2B``): decoded as botocore decodes them."""
    root = _root(body)
    if _tag(root) != "ListBucketResult":
        raise ValueError(f"a <{_tag(root)}> body where a listing was due")
    encoded = (root.findtext("{*}EncodingType") or "") == "url"
    items = []
    for item in root.iterfind("{*}Contents"):
        key = item.findtext("{*}Key") or ""
        items.append((unquote_plus(key) if encoded else key, int(item.findtext("{*}Size") or 0),
                      (item.findtext("{*}ETag") or "").strip('"'),
                      item.findtext("{*}StorageClass") or ""))
    truncated = (root.findtext("{*}IsTruncated") or "false").strip().lower() == "true"
    token = root.findtext("{*}NextContinuationToken") or ""
    return Page(items, token, truncated, len(root.findall("{*}CommonPrefixes")))


def parse_error(body: bytes) -> Optional[Tuple[str, str]]:
    """(code, message) of an ``<Error>`` body, None when BODY is not one."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    if _tag(root) != "Error":
        return None
    return root.findtext("{*}Code") or root.findtext("Code") or "", \
        root.findtext("{*}Message") or root.findtext("Message") or ""


def parse_upload_id(body: bytes) -> str:
    """The UploadId of an InitiateMultipartUploadResult."""
    root = _root(body)
    upload_id = root.findtext("{*}UploadId") or ""
    if _tag(root) != "InitiateMultipartUploadResult" or not upload_id:
        raise ValueError(f"a <{_tag(root)}> body without an UploadId")
    return upload_id


def parse_completed(body: bytes) -> str:
    """The ETag (without quotes) of a CompleteMultipartUploadResult. An ``<Error>`` in a
    200 answer is what AWS documents for a failure after the answer began: it raises."""
    root = _root(body)
    if _tag(root) != "CompleteMultipartUploadResult":
        raise ValueError(f"a <{_tag(root)}> body where its result was due")
    return (root.findtext("{*}ETag") or "").strip('"')


def escape(text: str) -> str:
    """TEXT as XML character data (``xml.sax.saxutils.escape`` does the same, and costs
    every run 6 ms to import through ``urllib.request``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def complete_body(parts: Sequence[Tuple[int, str]]) -> bytes:
    """The CompleteMultipartUpload request of PARTS ((number, ETag) in order)."""
    inner = "".join(f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(etag)}</ETag>"
                    "</Part>" for number, etag in parts)
    return (f'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"{inner}</CompleteMultipartUpload>").encode("utf-8")
