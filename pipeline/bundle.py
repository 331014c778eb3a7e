"""Bundles: what a version of a policy files in the archive.

- the **customer copy**: the sealed schedule with its clauses, then every endorsement so far (sealed);
- the **archive copy**: the customer copy followed by the underwriting image pages (影像资料), which
  never go into the customer's copy (DESIGN.md invariant 5);
- the **manifest**: the record, SHA-256 and size of every part, template and seal versions, times, batch
  and clerk — enough for an auditor to check the version without the index.

Both PDFs carry bookmarks (保单, 条款 → one per clause, 批单, 影像资料 → one per image) and metadata
with document numbers only, never names or ID numbers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from io import BytesIO
from typing import Any

from pypdf import PdfReader, PdfWriter

from pipeline.documents import PRODUCER
from pipeline.records import IMAGE_KIND_LABELS

MANIFEST_FORMAT = "issuance-manifest/1"


@dataclass(frozen=True)
class Part:
    """One file of a version, ready to upload."""

    name: str  # customer.pdf | bundle.pdf | manifest.json
    data: bytes
    pages: int = 0

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

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


def page_count(pdf: bytes) -> int:
    return len(PdfReader(BytesIO(pdf)).pages)


def _finish(writer: PdfWriter, *, title: str, subject: str, extra: dict[str, str]) -> bytes:
    writer.add_metadata({"/Title": title, "/Subject": subject, "/Producer": PRODUCER, **extra})
    writer.page_mode = "/UseOutlines"
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _metadata_extra(reader: PdfReader) -> dict[str, str]:
    meta = reader.metadata or {}
    return {k: str(v) for k, v in meta.items() if k.startswith("/Issuance")}


def append_endorsement(customer: bytes, endorsement: bytes, *, endorsement_no: str, title: str) -> bytes:
    """The customer copy after an endorsement: everything so far, then the sealed endorsement."""
    previous = PdfReader(BytesIO(customer))
    writer = PdfWriter(clone_from=previous)
    first = len(writer.pages)
    writer.append(PdfReader(BytesIO(endorsement)), import_outline=False)
    writer.add_outline_item(title=f"批单 {endorsement_no}", page_number=first)
    return _finish(
        writer,
        title=title,
        subject=str((previous.metadata or {}).get("/Subject", "")),
        extra=_metadata_extra(previous),
    )


def archive_copy(
    customer: bytes, *, images: bytes | None, entries: Sequence[ImageEntry], title: str
) -> bytes:
    """The archive copy: the customer copy followed by the image pages, bookmarked by kind."""
    previous = PdfReader(BytesIO(customer))
    writer = PdfWriter(clone_from=previous)
    if images:
        first = len(writer.pages)
        writer.append(PdfReader(BytesIO(images)), import_outline=False)
        parent = writer.add_outline_item(title="影像资料", page_number=first)
        page = first
        for entry in entries:
            label = IMAGE_KIND_LABELS.get(entry.kind, entry.kind)
            if entry.kind == "other" and entry.label:
                label = f"{label}（{entry.label}）"
            writer.add_outline_item(title=label, page_number=page, parent=parent)
            page += entry.pages
    subject = str((previous.metadata or {}).get("/Subject", ""))
    return _finish(writer, title=f"{title}（档案件）", subject=subject, extra=_metadata_extra(previous))


def add_images(bundle: bytes, *, images: bytes, entries: Sequence[ImageEntry]) -> bytes:
    """A supplement: the previous archive copy with late-filed image pages added at the end."""
    previous = PdfReader(BytesIO(bundle))
    writer = PdfWriter(clone_from=previous)
    first = len(writer.pages)
    writer.append(PdfReader(BytesIO(images)), import_outline=False)
    parent = writer.add_outline_item(title="补充影像资料", page_number=first)
    page = first
    for entry in entries:
        writer.add_outline_item(
            title=IMAGE_KIND_LABELS.get(entry.kind, entry.kind), page_number=page, parent=parent
        )
        page += entry.pages
    meta = previous.metadata or {}
    return _finish(
        writer,
        title=str(meta.get("/Title", "")),
        subject=str(meta.get("/Subject", "")),
        extra=_metadata_extra(previous),
    )


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
