"""The one verdict: is this file put, its headers updated in place, or skipped, and why.

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

``decide(cfg, job, evidence)`` is pure: it answers from what is known at that moment (the
listing entry or a HEAD, the journal row, the comparison of the content, the stored
headers), or names the one piece of evidence it still needs. The walker calls it with
what a listing and the journal tell (most of an unchanged tree is decided there, without
a putter); a putter gathers what the verdict asks for (``LOOKUP``: a HEAD; ``COMPARE``:
hash the file; ``TYPE``: the file's Content-Type; ``HEADERS``: a HEAD for the stored
headers) and asks again, until the verdict is ``PUT``, ``UPDATE`` or ``SKIP``.

``stupid`` never asks the store. ``add`` needs only to know whether the key exists.
``update`` compares content, cheapest evidence first:

1. sizes differ (when the stored size is the local size: no gzip, no --strip-metadata)
   -> changed, no hashing;
2. the journal recorded this key with the same local size and mtime, stored in the form
   the run stores it (as it is, or stripped of metadata: ``headers.stored_form``), and
   the store still has the ETag the journal recorded -> unchanged, no hashing;
3. otherwise what the run would store (gzipped, stripped) is hashed and compared with
   the stored ETag (``digest``).

Then, for unchanged content only, the headers the object is stored with against those the
run would put (``headers``: Content-Type, Content-Encoding, Cache-Control,
Content-Disposition, Content-Language, Expires, x-amz-meta-* but image mode's own width
and height, and the storage class, encryption and ACL when the run gives them), cheapest
evidence first:

1. the journal recorded the fingerprint of the headers it put, and the store still has
   the ETag the journal recorded: equal to the run's -> same; different -> a HEAD tells;
2. no fingerprint (no row, an older journal, another ETag): when the run sets headers
   that only a HEAD shows, a HEAD tells; when it sets only a storage class, the listing
   tells; when it sets none, they are taken as the same (a plain re-run costs no HEAD).

A HEAD compares what it shows (``same_headers``); the ACL, which no HEAD shows, is
compared with the one the journal recorded, and taken as the same when there is none.
Headers that differ are updated in place: one server-side copy of the object onto itself,
no body sent, counted as a put by ``--limit``.

Every reason a file is skipped is named here, with its wording.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, NamedTuple, Optional, Tuple

from .headers import (
    CONTENT_HEADERS,
    DEFAULT_STORAGE_CLASS,
    HEAD,
    IMAGE_FACTS_META,
    LISTING,
    META,
    SETTINGS,
    asks,
    recorded_acl,
    recorded_form,
    stored_form,
)
from .jobs import FAILED, SKIPPED, UNLISTED, JournalEntry, Remote, RemoteObject

if TYPE_CHECKING:
    from .config import Config
    from .headers import Wanted
    from .jobs import Job

ADD, STUPID, UPDATE = "add", "stupid", "update"
PUT_MODES = (ADD, STUPID, UPDATE)

# Why a file is put (or its headers updated)
NEW, CHANGED, FORCED = "new", "changed", "forced"
METADATA = "metadata changed"
# Why a file is skipped
UNCHANGED, EXISTS = "unchanged", "exists"
LIMIT = "limit reached"
NOT_AN_IMAGE = "not an image"
SYMLINK = "symbolic link, not followed (--follow-symlinks)"
LINK_LOOP = "symbolic link loop, not followed"
MEMBER_NOT_REGULAR = "archive member is not a regular file"


def not_regular(kind: str) -> str:
    """Why a special file (KIND: "a FIFO", "a socket", ...) is skipped."""
    return f"{kind}, not a regular file"


# What a verdict is
PUT = "put"  # store the file (and its thumbnails)
UPDATE_METADATA = "update metadata"  # replace the stored object's headers in place
SKIP = "skip"
# ... or the evidence it still needs
LOOKUP = "lookup"  # what the store holds under the key: a HEAD
COMPARE = "compare"  # whether the content is the stored one: hash the file
TYPE = "type"  # the file's Content-Type (its name, or its first bytes), for its headers
HEADERS = "headers"  # the stored object's headers: a HEAD
NEEDS = (LOOKUP, COMPARE, TYPE, HEADERS)


class Verdict(NamedTuple):
    action: str  # PUT, UPDATE_METADATA or SKIP; or one of NEEDS
    reason: str = ""  # NEW, CHANGED, FORCED, METADATA, UNCHANGED or EXISTS
    headers: str = ""  # how a SKIP or UPDATE knows the stored headers: "" (assumed or from
    #                    the listing), RECORDED (the journal's fingerprint) or SEEN (a HEAD)


RECORDED, SEEN = "recorded", "seen"


class Rules(NamedTuple):
    """What of a run's configuration the verdict depends on (``Rules.of(cfg)``, once)."""

    mode: str  # ADD, STUPID or UPDATE
    size_comparable: bool  # the stored size is the local size (no gzip, no stripping)
    asks: str  # what the run asks of the stored headers (``headers.asks``)
    storage_class: Optional[str]  # the one the run gives
    # How the run stores files when not as their local bytes (``headers.stored_form``): a
    # journal row vouches only for an object stored in the same form.
    form: str = ""
    # x-amz-meta-* names written per object, not per run (image mode's width and
    # height): never compared.
    own_metadata: frozenset = frozenset()

    @classmethod
    def of(cls, cfg: "Config") -> "Rules":
        form = stored_form(cfg)
        return cls(cfg.put, not cfg.gzip and not form, asks(cfg), cfg.storage_class, form,
                   IMAGE_FACTS_META if cfg.images else frozenset())


class Evidence(NamedTuple):
    """What is known of one job when it is decided."""

    remote: Remote = UNLISTED  # the stored object, None (absent), or UNLISTED (not asked)
    journal: Optional[JournalEntry] = None  # the last recorded put of the key
    same_content: Optional[bool] = None  # the content compared; None: not yet
    wanted: Optional["Wanted"] = None  # the run's headers for this file; None: type unknown
    stored_headers: Optional[Dict[str, str]] = None  # a HEAD's header set; None: no HEAD


def needs_remote(mode: str) -> bool:
    """Whether MODE needs to know what the store holds (``stupid`` puts blindly)."""
    return mode != STUPID


def journal_vouches(job: "Job", remote: RemoteObject, journal: Optional[JournalEntry],
                    form: str = "") -> bool:
    """The journal recorded this very file (size, mtime) put as the object the store still
    shows (ETag), stored in the run's FORM: the content is unchanged without reading it.

    A row that does not say its form (no fingerprint) was stored as the local bytes by
    every version before stripping existed, but may be a hash-only row of a stripping
    run: it vouches only for runs that store the local bytes as they are."""
    if journal is None or journal.size != job.size or journal.mtime_ns != job.mtime_ns \
            or journal.etag != remote.etag:
        return False
    recorded = recorded_form(journal.fingerprint)
    return recorded == form if recorded is not None else not form


def decide(rules: Rules, job: "Job", evidence: Evidence) -> Verdict:
    """The verdict on JOB from EVIDENCE under the run's RULES: PUT, UPDATE_METADATA or SKIP
    with the reason, or the evidence still needed (one of ``NEEDS``). See the module
    docstring."""
    mode = rules.mode
    if mode == STUPID:
        return Verdict(PUT, FORCED)
    remote = evidence.remote
    if remote is UNLISTED:
        return Verdict(LOOKUP)
    if remote is None:
        return Verdict(PUT, NEW)
    if mode == ADD:
        return Verdict(SKIP, EXISTS)
    same = evidence.same_content
    if same is None:
        if rules.size_comparable and remote.size != job.size:
            return Verdict(PUT, CHANGED)
        if not journal_vouches(job, remote, evidence.journal, rules.form):
            return Verdict(COMPARE)
        same = True
    if not same:
        return Verdict(PUT, CHANGED)
    return _headers_verdict(rules, remote, evidence)


def _headers_verdict(rules: Rules, remote: RemoteObject, evidence: Evidence) -> Verdict:
    """The verdict on unchanged content: its headers decide."""
    wanted = evidence.wanted
    recorded = recorded_fingerprint(evidence.journal, remote)
    asked = rules.asks
    if recorded is not None:
        # Without the Content-Type the run's fingerprint is not known: it equals none.
        if wanted is not None and recorded == wanted.fingerprint:
            return Verdict(SKIP, UNCHANGED, RECORDED)
    elif asked == LISTING and remote.storage_class:
        if remote.storage_class == rules.storage_class:
            return Verdict(SKIP, UNCHANGED)
        # an update in place needs the run's headers, which the file's type decides
        return Verdict(UPDATE_METADATA, METADATA) if wanted is not None else Verdict(TYPE)
    elif asked not in (HEAD, LISTING):
        return Verdict(SKIP, UNCHANGED)  # nothing asked: taken as the same
    # Only the stored headers can tell.
    if wanted is None:
        return Verdict(TYPE)
    stored = evidence.stored_headers if evidence.stored_headers is not None \
        else remote.headers
    if stored is None:
        return Verdict(HEADERS)
    if same_headers(wanted.headers, stored, recorded_acl=recorded_acl(recorded),
                    ignored=rules.own_metadata):
        return Verdict(SKIP, UNCHANGED, SEEN)
    return Verdict(UPDATE_METADATA, METADATA, SEEN)


def recorded_fingerprint(journal: Optional[JournalEntry], remote: RemoteObject
                         ) -> Optional[str]:
    """The fingerprint the journal recorded of the headers of the object REMOTE describes,
    None when unknown (no row, an older journal, or the row is of another object)."""
    return journal.fingerprint if journal is not None and journal.etag == remote.etag \
        else None


def same_headers(wanted: dict, stored: dict, *, recorded_acl: Optional[str],
                 ignored: frozenset = frozenset()) -> bool:
    """Does an object showing STORED (a HEAD's header set) have the WANTED headers?

    Content headers and x-amz-meta-* must be exactly the wanted ones (a header the run does
    not put must be absent), but for the IGNORED ones (written per object). Storage class
    and encryption are compared only when wanted; the ACL, which no HEAD shows, only with
    RECORDED_ACL (the journal's; None: unknown)."""
    names = {name for name in (*wanted, *stored)
             if (name in CONTENT_HEADERS or name.startswith(META)) and name not in ignored}
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


def refused_create(job: "Job") -> Tuple[str, str]:
    """(outcome, reason) of JOB when a key it meant to create exists after all (another
    writer stored it since the listing; its bytes stay): ``add`` skips the file
    ("exists"); a newly numbered image (``Job.create_only``) cannot be skipped: it fails."""
    if job.create_only:
        return FAILED, "exists already: not overwritten"
    return SKIPPED, EXISTS
