"""The contract every object store keeps: the protocol, its result types, the key rule, retention.

The helpers without a leading underscore below the public API (``verified_for_put`` …) are shared by the
backends in this package and are not meant for callers outside it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeAlias, runtime_checkable

from core.errors import ObjectConflict, ObjectCorrupt, RetentionViolation, UnsafeKey
from core.manifest import Hashed, sha256_hex

MAX_KEY_LENGTH = 512
# Leaves room under the usual 255-byte file-name limit for LocalStore's temp and sidecar names.
MAX_SEGMENT_LENGTH = 200
DEFAULT_CONTENT_TYPE = "application/octet-stream"


# --- what stores hand back ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PutResult:
    """The outcome of a put: ``created`` is False when the key already held exactly these bytes."""

    key: str
    created: bool
    sha256: str
    size: int


@dataclass(frozen=True)
class PutItem:
    """One object for ``put_many``: the arguments ``put`` takes, as a value."""

    key: str
    data: bytes
    sha256: str | Hashed
    retain_until: datetime | None = None
    content_type: str = DEFAULT_CONTENT_TYPE


# What put_many hands back for one item: what ``put`` would have returned, or the error ``put`` would
# have raised for that object's own fault (a key or hash it refuses, other bytes under the key, a
# stored copy that fails its hash). A failure of the store itself is raised for the whole call.
PutOutcome: TypeAlias = PutResult | ObjectConflict | ObjectCorrupt | UnsafeKey | ValueError
ITEM_ERRORS = (ObjectConflict, ObjectCorrupt, UnsafeKey, ValueError)


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object without reading it.

    ``head`` fills every field it can; ``sha256`` is None only for an object this store did not write
    (no recorded hash). ``list`` fills ``sha256`` and ``retain_until`` where the backend lists them
    cheaply (``LocalStore``) and leaves them None where it does not (S3 listings carry no user
    metadata): call ``head`` when you need them.
    """

    key: str
    size: int
    sha256: str | None
    retain_until: datetime | None
    modified: datetime


@dataclass(frozen=True)
class Leftover:
    """A temp file in a store's space that no key names: a put under way, or one a crash cut short."""

    path: str  # relative to the store's root
    size: int
    modified: datetime
    writer_alive: bool | None  # None: cannot tell (another machine or container, an older name)


@runtime_checkable
class ObjectStore(Protocol):
    """The archive's storage seam. Keys pass :func:`check_key`; times are timezone-aware."""

    def put(
        self,
        key: str,
        data: bytes,
        *,
        sha256: str | Hashed,
        retain_until: datetime | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> PutResult:
        """Store ``data`` under ``key`` once and for all; see the module docstring for the promises."""
        ...

    def put_many(self, items: Sequence[PutItem]) -> list[PutOutcome]:
        """``put`` each item, with the same promises, in one call; one outcome per item, in input order.

        An item ``put`` would refuse gets the error instead of a result (``ObjectConflict``,
        ``ObjectCorrupt``, ``UnsafeKey``, ``ValueError``), and the other items go on; a failure of the
        store itself (``StoreError``) is raised for the whole call, after which any item may or may not
        be stored (a re-run settles it: same bytes give ``created=False``). A key given twice behaves as
        a second put after the first.
        """
        ...

    def get(self, key: str, *, sha256: str | None = None) -> bytes:
        """Return the object's bytes after checking their SHA-256 (``sha256`` if given, else stored)."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Return what is known about ``key`` without reading the object, or None if it is absent."""
        ...

    def observed_sha256(self, key: str) -> str | None:
        """The SHA-256 of the bytes held under ``key`` now, read past every hash check, or None if there
        are none or they cannot be read: for the record of an incident (a copy that fails its hash)."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the objects whose key starts with ``prefix`` (a plain string prefix, as S3 has it)."""
        ...

    def delete(self, key: str, *, now: datetime | None = None) -> None:
        """Remove ``key`` unless it is inside retention at ``now``; a missing key is not an error."""
        ...

    def recover(self, key: str, *, retain_until: datetime | None = None) -> ObjectInfo | None:
        """Complete an object whose publishing was interrupted (its recorded hash missing); its info.

        Only the writer that crashed knows the object should exist; it calls this before trusting it.
        """
        ...

    def describe(self) -> str:
        """Where the objects live, fit for logs and messages: no credentials."""
        ...

    def leftovers(self) -> Iterator[Leftover]:
        """What puts left besides objects (temp files), for the audit (``audit --orphans``)."""
        ...

    def clear_leftovers(self) -> int:
        """Remove what puts of writers no longer alive left (a run killed mid-put); how many.

        Called by a run as it starts, so a crash's temp files do not outlive the next run."""
        ...


# --- keys ------------------------------------------------------------------------------------------

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
# Personal data in a key would leak into URLs, logs and listings (DOMAIN.md). A run counts when it is
# not glued to further digits: 17 digits plus a digit or X is a resident ID number's shape, 1[3-9] plus
# nine digits a mainland mobile number. Letters are a boundary, so "ID11010519900307123X" is refused.
_RESIDENT_ID_RUN = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
_MOBILE_RUN = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
_NO_PERSONAL_DATA = "keys must carry no personal data: use branch, date, policy number and version"


def check_key(key: str) -> str:
    """Return ``key`` unchanged if it is safe to store under, else raise ``UnsafeKey``.

    Safe means: a non-empty relative path of at most 512 characters; ``/``-separated segments of
    ``[A-Za-z0-9._-]``, none empty, none starting with ``.`` (which also rules out ``.`` and ``..``
    and keeps names free for the store's own temp and metadata files), each at most 200 characters.

    Digit runs are not judged here: a real policy number holds 18 or 20 digits in a row (contract
    README, "Document numbers"), so only the writer that builds a key knows which segment is a document
    number; it calls :func:`check_key_privacy`. The message never repeats the key.
    """
    if not isinstance(key, str) or not key:
        raise UnsafeKey(
            "object key is empty", hint="keys look like 110105/2026/12/<policy_no>/v1-issue/x.pdf"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise UnsafeKey(f"object key is longer than {MAX_KEY_LENGTH} characters")
    if key.startswith("/"):
        raise UnsafeKey("object key is absolute", hint="keys are relative to the store")
    for segment in key.split("/"):
        if not segment:
            raise UnsafeKey("object key has an empty segment (a leading, trailing or doubled '/')")
        if segment.startswith("."):
            raise UnsafeKey("object key has a segment starting with '.' ('.', '..' or a hidden name)")
        if not _SEGMENT.fullmatch(segment):
            raise UnsafeKey(
                "object key has characters outside [A-Za-z0-9._-]",
                hint="no spaces, no Chinese characters, no other punctuation",
            )
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise UnsafeKey(f"object key has a segment longer than {MAX_SEGMENT_LENGTH} characters")
    return key


def check_key_privacy(key: str, *, document_numbers: Collection[str] = ()) -> str:
    """Return ``key`` if no segment of it looks like personal data, else raise ``UnsafeKey``.

    A segment that is exactly one of ``document_numbers`` (the record's own policy number: validated,
    and not personal data however many digits it holds) is not judged by shape; every other segment
    (branch, year, month, version folder, part name) must hold no run shaped like a resident ID number
    or a mobile number. The message never repeats the key.
    """
    exempt = set(document_numbers)
    for segment in check_key(key).split("/"):
        if segment in exempt:
            continue
        if _RESIDENT_ID_RUN.search(segment):
            raise UnsafeKey(
                "object key contains an 18-character run shaped like a resident ID number",
                hint=_NO_PERSONAL_DATA,
            )
        if _MOBILE_RUN.search(segment):
            raise UnsafeKey(
                "object key contains an 11-digit run shaped like a mobile number", hint=_NO_PERSONAL_DATA
            )
    return key


def check_prefix(prefix: str) -> str:
    """A list prefix follows the key rules, except that it may be empty or end with '/'."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


# --- hashes and times ------------------------------------------------------------------------------

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def normal_sha256(sha256: str) -> str:
    value = sha256.strip().lower() if isinstance(sha256, str) else ""
    if not SHA256_HEX.fullmatch(value):
        raise ValueError("sha256 must be 64 hexadecimal characters")
    return value


def verified_for_put(key: str, data: bytes, sha256: str | Hashed) -> str:
    """The caller's hash, normalised, after checking it really is the hash of ``data`` (a ``Hashed`` of
    these very bytes is that already)."""
    if isinstance(sha256, Hashed):
        if sha256.data is data:
            return sha256.hexdigest
        sha256 = sha256.hexdigest
    expected = normal_sha256(sha256)
    if sha256_hex(data) != expected:
        raise ObjectCorrupt(
            f"the bytes given for {key} do not match the SHA-256 given with them",
            hint="nothing was stored; the document was damaged between hashing and storing",
        )
    return expected


def verified_for_get(key: str, data: bytes, expected: str | None, where: str) -> bytes:
    if expected is None:
        raise ObjectCorrupt(
            f"object {key} in {where} has no recorded SHA-256, so it cannot be verified",
            hint="pass the SHA-256 the index holds, or re-put the object",
        )
    if sha256_hex(data) != expected:
        raise ObjectCorrupt(
            f"object {key} in {where} does not match its SHA-256: the stored bytes were changed or damaged",
            hint="restore it from a backup and run the archive audit",
        )
    return data


def aware_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def now_utc(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else aware_utc(now, "now")


def _add_years(moment: datetime, years: int) -> datetime:
    # 29 February has no twin in most years; the next day keeps "at least N years" true.
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, month=3, day=1)


def retention_until(period_start: datetime, period_end: datetime) -> datetime:
    """Return the earliest moment an archived policy may be deleted (《保险法》第87条).

    At least 5 years after the contract ends for a term of one year or less, at least 10 years for a
    longer term. ``period_end`` is the instant cover ends: "至2027年11月30日二十四时止" is
    2027-12-01T00:00 in China time, and then 2026-12-01 to 2027-12-01 counts as one year. Both times
    must be timezone-aware; the result keeps ``period_end``'s zone.
    """
    start = aware_utc(period_start, "period_start")
    end = aware_utc(period_end, "period_end")
    if end <= start:
        raise ValueError("period_end must be after period_start")
    one_year_later = _add_years(period_start, 1).astimezone(UTC)
    years = 5 if end <= one_year_later else 10
    return _add_years(period_end, years)


def check_retention(key: str, retain_until: datetime | None, now: datetime) -> None:
    if retain_until is not None and now < retain_until:
        raise RetentionViolation(
            f"object {key} is under retention until {retain_until.isoformat()} and cannot be removed",
            hint="archived files are kept at least 5 or 10 years after the contract ends (《保险法》第87条)",
        )
