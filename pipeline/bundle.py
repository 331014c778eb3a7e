"""Bundles: what a version of a policy files in the archive.

- the **customer copy**: the sealed schedule with its clauses, then every endorsement so far (sealed);
- the **archive copy**: the customer copy followed by the underwriting image pages (影像资料), which
  never go into the customer's copy (DESIGN.md invariant 5);
- the **manifest**: the record, SHA-256 and size of every part, template and seal versions, times, batch
  and clerk — enough for an auditor to check the version without the index.

Both PDFs carry bookmarks (保单, 条款 → one per clause, 批单, 影像资料 → one per image) and metadata
with document numbers only, never names or ID numbers.

A PDF is put together by qpdf (through pikepdf) without decoding any stream: what an earlier version's
pages draw goes into the next version byte for byte, and the work costs little more than a copy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from io import BytesIO
from typing import Any

import pikepdf

from pipeline.documents import PRODUCER, SAVE_OPTIONS, bookmark
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
    """The number of pages of ``pdf``."""
    with _open(pdf) as document:
        return len(document.pages)


def append_endorsement(customer: bytes, endorsement: bytes, *, endorsement_no: str, title: str) -> bytes:
    """The customer copy after an endorsement: everything so far, then the sealed endorsement."""
    with _open(customer) as document, _open(endorsement) as added:
        info = _info(document)
        first = _append(document, added)
        with document.open_outline() as outline:
            outline.root.append(bookmark(document, f"批单 {endorsement_no}", first))
        return _finish(document, title=title, subject=info.get("/Subject", ""), previous=info, added=added)


def archive_copy(
    customer: bytes, *, images: bytes | None, entries: Sequence[ImageEntry], title: str
) -> bytes:
    """The archive copy: the customer copy followed by the image pages, bookmarked by kind."""
    with _open(customer) as document:
        return archive_copy_of(document, images=images, entries=entries, title=title)


def archive_copy_of(
    document: pikepdf.Pdf, *, images: bytes | None, entries: Sequence[ImageEntry], title: str
) -> bytes:
    """``archive_copy`` of a customer copy still open (``DocumentMaker``'s ``follow_up``): no second
    reading of its bytes. ``document`` gains the image pages."""
    with ExitStack() as stack:
        info = _info(document)
        added = None
        if images:
            added = stack.enter_context(_open(images))
            first = _append(document, added)
            labels = [_image_label(entry) for entry in entries]
            _bookmark_images(document, "影像资料", first=first, entries=entries, labels=labels)
        subject = info.get("/Subject", "")
        return _finish(document, title=f"{title}（档案件）", subject=subject, previous=info, added=added)


def add_images(bundle: bytes, *, images: bytes, entries: Sequence[ImageEntry]) -> bytes:
    """A supplement: the previous archive copy with late-filed image pages added at the end."""
    with _open(bundle) as document, _open(images) as added:
        info = _info(document)
        first = _append(document, added)
        labels = [IMAGE_KIND_LABELS.get(entry.kind, entry.kind) for entry in entries]
        _bookmark_images(document, "补充影像资料", first=first, entries=entries, labels=labels)
        return _finish(
            document,
            title=info.get("/Title", ""),
            subject=info.get("/Subject", ""),
            previous=info,
            added=added,
        )


def _open(pdf: bytes) -> pikepdf.Pdf:
    # Streams are read from the source when the document that copied them is saved: keep it open till then.
    return pikepdf.open(BytesIO(pdf))


def _append(document: pikepdf.Pdf, added: pikepdf.Pdf) -> int:
    """Copy ``added``'s pages (not its outline or document data) to the end; their first index."""
    first = len(document.pages)
    document.pages.extend(added.pages)
    return first


def _image_label(entry: ImageEntry) -> str:
    label = IMAGE_KIND_LABELS.get(entry.kind, entry.kind)
    if entry.kind == "other" and entry.label:
        label = f"{label}（{entry.label}）"
    return label


def _bookmark_images(
    document: pikepdf.Pdf,
    heading: str,
    *,
    first: int,
    entries: Sequence[ImageEntry],
    labels: Sequence[str],
) -> None:
    """After the existing outline: ``heading`` on page ``first``, one child per image on its first page."""
    parent = bookmark(document, heading, first)
    page = first
    for entry, label in zip(entries, labels, strict=True):
        parent.children.append(bookmark(document, label, page))
        page += entry.pages
    with document.open_outline() as outline:
        outline.root.append(parent)


def _info(document: pikepdf.Pdf) -> dict[str, str]:
    info = document.trailer.get("/Info")
    if not isinstance(info, pikepdf.Dictionary):
        return {}
    return {str(key): str(value) for key, value in info.items()}


def _finish(
    document: pikepdf.Pdf,
    *,
    title: str,
    subject: str,
    previous: dict[str, str],
    added: pikepdf.Pdf | None,
) -> bytes:
    """Save ``document`` with new document information, the outline shown on opening, and a version
    no older than ``added``'s.

    The information is the title, the subject, the producer and the previous document's /Issuance*
    keys (template versions), nothing else of it: those carry document numbers only.
    """
    fields = {
        "/Title": title,
        "/Subject": subject,
        "/Producer": PRODUCER,
        **{key: value for key, value in previous.items() if key.startswith("/Issuance")},
    }
    document.trailer.Info = document.make_indirect(
        pikepdf.Dictionary({key: pikepdf.String(value) for key, value in fields.items()})
    )
    document.Root.PageMode = pikepdf.Name.UseOutlines
    versions = [document.pdf_version] + ([added.pdf_version] if added is not None else [])
    out = BytesIO()
    document.save(out, min_version=_newest(*versions), **SAVE_OPTIONS)
    return out.getvalue()


def _newest(*versions: str) -> str:
    def number(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split(".") if part.isdigit())

    return max(versions, key=number)


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
