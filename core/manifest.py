"""The manifest format: what a version of a policy files, as ``pipeline`` hands it to ``archive``.

A version is its parts (customer copy, archive copy) and a manifest naming each part's key, SHA-256 and
size, the record, templates, seal, images and times: enough for an auditor to check the version without
the index. The types here are what both sides of that hand-over speak.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any

MANIFEST_FORMAT = "issuance-manifest/1"


@dataclass(frozen=True, eq=False)
class Hashed:
    """The SHA-256 of a bytes object, computed from it (``hashed``) and holding on to it.

    Given as the ``sha256`` of a put together with the very bytes it was computed from, a store takes it
    as it is instead of hashing the bytes again to check it: a policy's parts are megabytes, hashed once
    for their keys and manifest. The bytes are immutable and held here, so they are what was hashed; with
    any other bytes the hash is checked as usual.
    """

    data: bytes
    hexdigest: str


def hashed(data: bytes) -> Hashed:
    """``data``'s SHA-256, to give a store with the same ``data`` (``PutItem``, ``put``)."""
    return Hashed(data, sha256_hex(data))


def sha256_hex(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data``, in the form every store method takes and returns."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Part:
    """One file of a version, ready to upload.

    ``extends`` is a part whose bytes this one's begin with (the customer copy, for the archive copy that
    is an incremental update of it): the SHA-256 then goes on from where that part's ended, over the
    added bytes only, once it is checked that they do begin so.
    """

    name: str  # customer.pdf | bundle.pdf | manifest.json
    data: bytes
    pages: int = 0
    extends: Part | None = field(default=None, repr=False, compare=False)

    @cached_property
    def _digest(self) -> Any:  # hashlib's sha256 object, fed with all of ``data``
        base = self.extends
        if base is not None and self.data.startswith(base.data):
            digest = base._digest.copy()
            digest.update(memoryview(self.data)[len(base.data) :])
            return digest
        return hashlib.sha256(self.data)

    @cached_property
    def hashed(self) -> Hashed:
        """The SHA-256, computed once: for the key, the manifest, and the store, which takes it as it is."""
        return Hashed(self.data, self._digest.hexdigest())

    @property
    def sha256(self) -> str:
        return self.hashed.hexdigest

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class ImageEntry:
    """An image page's place in the archive copy, for its bookmark and the manifest."""

    index: int
    kind: str
    label: str | None
    source_sha256: str
    source_size: int
    pages: int


def manifest(
    *,
    policy_no: str,
    version: int,
    kind: str,
    record: dict[str, Any] | None,
    record_sha256: str | None,
    parts: Sequence[tuple[Part, str]],
    images: Sequence[ImageEntry],
    templates: dict[str, str],
    seal: dict[str, str] | None,
    batch_id: str | None,
    operator: str,
    clerk: str | None,
    created_at: datetime,
    missing_images: Sequence[str],
    previous: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Part:
    """The version's manifest.json; ``parts`` pairs each uploaded part with its object key."""
    body = {
        "format": MANIFEST_FORMAT,
        "policy_no": policy_no,
        "version": version,
        "kind": kind,
        "created_at": created_at.isoformat(),
        "batch_id": batch_id,
        "operator": operator,
        "clerk": clerk,
        "record_sha256": record_sha256,
        "record": record,
        "parts": [
            {"name": part.name, "key": key, "sha256": part.sha256, "size": part.size, "pages": part.pages}
            for part, key in parts
        ],
        "images": [
            {
                "index": e.index,
                "kind": e.kind,
                "label": e.label,
                "source_sha256": e.source_sha256,
                "source_size": e.source_size,
                "pages": e.pages,
            }
            for e in images
        ],
        "missing_images": list(missing_images),
        "templates": templates,
        "seal": seal,
        "previous_version": previous,
        **(extra or {}),
    }
    data = json.dumps(body, ensure_ascii=False, indent=2, sort_keys=False).encode("utf-8") + b"\n"
    return Part("manifest.json", data)


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size: int
    pages: int = 0


@dataclass(frozen=True)
class RecordFacts:
    record_id: str
    content_sha256: str
    kind: str
    policy_no: str
    batch_id: str | None
    line: int | None


@dataclass(frozen=True)
class ReissueMark:
    """What the mark says. ``number`` is the policy's reissue count (1 for the first 补发)."""

    number: int
    on: date
    serial: str | None = None  # the new print serial the copy is printed on
    old_serial: str | None = None  # the serial this reissue voids

    @property
    def label(self) -> str:
        """The mark in one line, for messages and the manifest (the template decides the real layout)."""
        parts = ["补发件 REISSUED", f"第{self.number}次补发", f"补发日期 {self.on.isoformat()}"]
        if self.serial:
            parts.append(f"单证流水号 {self.serial}")
        if self.old_serial:
            parts.append(f"原单证 {self.old_serial} 作废")
        return " · ".join(parts)


@dataclass(frozen=True)
class MarkPlacement:
    """Where the mark went on one page: visual frame, pt, origin bottom-left (as ``stamps`` has it)."""

    page: int
    x: float
    y: float
    scale: float
    clear_of_text: bool  # False: the top margin was too small even at MIN_SCALE


@dataclass(frozen=True)
class MarkedCopy:
    """The reissued copy and how it was made."""

    pdf: bytes
    pages: int
    mark_pdf: bytes  # the one-page mark as LibreOffice rendered it
    template_version: str  # sha256:… of reissue-mark.docx
    placements: tuple[MarkPlacement, ...]
    original_size: int  # the original is pdf[:original_size], byte for byte
