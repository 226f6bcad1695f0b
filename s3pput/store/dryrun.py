"""The store of a dry run: it reads like ``Store`` and writes nothing."""

from __future__ import annotations

import hashlib

from .s3 import Store


class DryRunStore(Store):
    """Reads like ``Store``; writes nothing (and keeps nothing: a dry run over a million
    files must not grow). The bodies of multipart uploads are not even read."""

    def put(self, key, data, params, *, md5=None, path="", if_none_match=False,
            if_match=None):
        return (md5 or hashlib.md5(data).digest()).hex()

    def put_multipart(self, key, parts, params, *, before_complete=lambda md5s: None,
                      path="", submit=None, if_none_match=False):
        return ""

    def copy_in_place(self, key, params, *, etag="", size=0, part_size=0, path=""):
        return etag

    def delete(self, key):
        pass

