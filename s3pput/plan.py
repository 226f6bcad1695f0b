"""Pure decisions: should this job be put, and why.

The put-mode truth table (the only place it is written down):

==========  ===============  ========================  ========================
mode        key absent       present, same content     present, other content
==========  ===============  ========================  ========================
add         put ("new")      skip ("exists")           skip ("exists")
stupid      put ("forced")   put ("forced")            put ("forced")
update      put ("new")      skip ("unchanged")        put ("changed")
==========  ===============  ========================  ========================

``stupid`` never asks the store. ``add`` needs only to know whether the key exists.
``update`` compares content, cheapest evidence first:

1. sizes differ (when the stored size is the local size: no gzip) -> changed, no hashing;
2. the journal recorded this key with the same local size and mtime, and the store still
   has the ETag the journal recorded -> unchanged, no hashing;
3. otherwise hash the local content and compare with the stored ETag (``digest``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from .jobs import JournalEntry, RemoteObject

ADD, STUPID, UPDATE = "add", "stupid", "update"
PUT_MODES = (ADD, STUPID, UPDATE)

NEW, CHANGED, FORCED = "new", "changed", "forced"
UNCHANGED, EXISTS = "unchanged", "exists"
LIMIT = "limit reached"


def needs_remote(mode: str) -> bool:
    """Whether MODE needs to know what the store holds (``stupid`` puts blindly)."""
    return mode != STUPID


class Decision(NamedTuple):
    put: bool
    reason: str


# What ``first_look`` may answer besides a Decision: the content must be compared.
COMPARE = "compare"


def first_look(mode: str, remote: Optional[RemoteObject], *, size: int, mtime_ns: int,
               journal: Optional[JournalEntry], size_comparable: bool):
    """Decide from metadata alone, or return COMPARE when only content can tell.

    SIZE and MTIME_NS describe the local file; SIZE_COMPARABLE says whether the stored
    object's size should equal the local size (False with gzip).
    """
    if mode == STUPID:
        return Decision(True, FORCED)
    if remote is None:
        return Decision(True, NEW)
    if mode == ADD:
        return Decision(False, EXISTS)
    if size_comparable and remote.size != size:
        return Decision(True, CHANGED)
    if (journal is not None and journal.size == size and journal.mtime_ns == mtime_ns
            and journal.etag == remote.etag):
        return Decision(False, UNCHANGED)
    return COMPARE


def after_compare(same_content: bool) -> Decision:
    """The ``update`` decision once the content has been compared."""
    return Decision(False, UNCHANGED) if same_content else Decision(True, CHANGED)
