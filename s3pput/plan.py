"""Pure decisions: should this job be put, and why.

The put-mode truth table (the only place it is written down):

==========  ===============  ==============================  ========================
mode        key absent       present, same content           present, other content
==========  ===============  ==============================  ========================
add         put ("new")      skip ("exists")                 skip ("exists")
stupid      put ("forced")   put ("forced")                  put ("forced")
update      put ("new")      same headers: skip              put ("changed")
                             ("unchanged"); other headers:
                             update in place ("metadata
                             changed")
==========  ===============  ==============================  ========================

``stupid`` never asks the store. ``add`` needs only to know whether the key exists.
``update`` compares content, cheapest evidence first:

1. sizes differ (when the stored size is the local size: no gzip) -> changed, no hashing;
2. the journal recorded this key with the same local size and mtime, and the store still
   has the ETag the journal recorded -> unchanged, no hashing;
3. otherwise hash the local content and compare with the stored ETag (``digest``).

Then, for unchanged content only, ``update`` compares the headers the object is stored
with against those the run would put (``headers``: Content-Type, Content-Encoding,
Cache-Control, Content-Disposition, Content-Language, Expires, x-amz-meta-*, and the
storage class, encryption and ACL when the run gives them), cheapest evidence first
(``look_at_headers``):

1. the journal recorded the fingerprint of the headers it put, and the store still has
   the ETag the journal recorded: equal to the run's -> same; different -> a HEAD tells;
2. no fingerprint (no row, an older journal, another ETag): when the run sets headers
   that only a HEAD shows, a HEAD tells; when it sets only a storage class, the listing
   tells; when it sets none, they are taken as the same (a plain re-run costs no HEAD).

A HEAD compares what it shows (``same_headers``); the ACL, which no HEAD shows, is
compared with the one the journal recorded, and taken as the same when there is none.
Headers that differ are updated in place: one server-side copy of the object onto itself,
no body sent, counted as a put by ``--limit``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from .headers import CONTENT_HEADERS, DEFAULT_STORAGE_CLASS, HEAD, LISTING, META, SETTINGS
from .jobs import JournalEntry, RemoteObject

ADD, STUPID, UPDATE = "add", "stupid", "update"
PUT_MODES = (ADD, STUPID, UPDATE)

NEW, CHANGED, FORCED = "new", "changed", "forced"
METADATA = "metadata changed"
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


# What ``look_at_headers`` answers.
SAME = "same"  # the journal recorded these very headers
ASSUMED = "assumed"  # nothing says otherwise, and looking would cost what the run did not ask
DIFFERENT = "different"
# or HEAD: only a HEAD can tell


def recorded_fingerprint(journal: Optional[JournalEntry], remote: RemoteObject
                         ) -> Optional[str]:
    """The fingerprint the journal recorded of the headers of the object REMOTE describes,
    None when unknown (no row, an older journal, or the row is of another object)."""
    return journal.fingerprint if journal is not None and journal.etag == remote.etag \
        else None


def look_at_headers(journal: Optional[JournalEntry], remote: RemoteObject, *, wanted: str,
                    asks: str, storage_class: Optional[str]) -> str:
    """Decide from the journal or the listing whether an object whose content is unchanged
    has the headers of fingerprint WANTED, or return HEAD when only a HEAD can tell.

    ASKS is ``headers.asks`` of the run; STORAGE_CLASS the one it gives (or None)."""
    recorded = recorded_fingerprint(journal, remote)
    if recorded is not None:
        return SAME if recorded == wanted else HEAD
    if asks == HEAD or (asks == LISTING and not remote.storage_class):
        return HEAD
    if asks == LISTING and remote.storage_class != storage_class:
        return DIFFERENT
    return ASSUMED


def same_headers(wanted: dict, stored: dict, *, recorded_acl: Optional[str]) -> bool:
    """Does an object showing STORED (a HEAD's header set) have the WANTED headers?

    Content headers and x-amz-meta-* must be exactly the wanted ones (a header the run does
    not put must be absent). Storage class and encryption are compared only when wanted;
    the ACL, which no HEAD shows, only with RECORDED_ACL (the journal's; None: unknown)."""
    names = {name for name in (*wanted, *stored)
             if name in CONTENT_HEADERS or name.startswith(META)}
    if any(wanted.get(name) != stored.get(name) for name in names):
        return False
    for name in SETTINGS:
        if name not in wanted:
            continue
        if name == "x-amz-acl":
            if recorded_acl is not None and recorded_acl != wanted[name]:
                return False
        elif stored.get(name, DEFAULT_STORAGE_CLASS if name == "x-amz-storage-class"
                        else "") != wanted[name]:
            return False
    return True
