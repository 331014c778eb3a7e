"""安全性 (security): no personal data in keys or metadata, retention set as the law requires, no
active content.

- ``keys_clean``: every object key passes ``archive.store.check_key_privacy`` (no ID or phone shapes).
- ``metadata_clean``: no PDF's document information or XMP holds an ID-number or phone shape
  (``core.privacy.scrub`` would change it) or a party's name.
- ``retention``: every object's ``head().retain_until`` is set and not before the rule's date
  (``archive.store.retention_until``, 《保险法》第87条).
- ``no_active_content``: no PDF is encrypted, and none holds JavaScript, launch actions or embedded
  files (every object reachable from the trailer is looked at).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from io import BytesIO
from typing import Any

from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

from archive.audit.checks.base import AuditedPolicy, Messages, all_keys, pdfs
from archive.index import as_utc
from archive.store import check_key_privacy, retention_until
from core.errors import UnsafeKey
from core.privacy import scrub
from core.wording import CHINA_TIME

logger = logging.getLogger(__name__)

__all__ = [
    "active_content",
    "keys_clean",
    "metadata_clean",
    "metadata_findings",
    "no_active_content",
    "retention",
]


def keys_clean(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("keys_clean")
    keys = all_keys(policy.versions)
    for key in keys:
        try:
            check_key_privacy(key, document_numbers=(policy.row.policy_no,))
        except UnsafeKey as e:
            found.problem(f"an object key of this policy is unsafe: {e.message}")
    found.evidence(f"{len(keys)} keys pass the key rule (no ID or phone shapes)")


def metadata_clean(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("metadata_clean")
    record = policy.record
    names = _party_names(record)
    documents = [
        n
        for n in (
            (record or {}).get("policy_no"),
            (record or {}).get("proposal_no"),
            *(v.row.endorsement_no for v in policy.versions),
        )
        if isinstance(n, str)
    ]
    for label, obj in pdfs(policy.versions):
        if obj.data is None:
            found.problem(f"{label}: cannot be read")
            continue
        findings = metadata_findings(obj.data, names=names, documents=documents, reader=obj.reader)
        if findings:
            for finding in findings:
                found.problem(f"{label}: {finding}")
        else:
            found.evidence(f"{label}: metadata holds document numbers only")


def retention(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("retention")
    row = policy.row
    try:
        period = (policy.record or {})["period"]
        rule = retention_until(datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"]))
    except (KeyError, TypeError, ValueError):
        rule = retention_until(as_utc(row.period_start), as_utc(row.period_end))
    keys = all_keys(policy.versions)
    earliest: datetime | None = None
    for key in keys:
        info = policy.sources.store.head(key)
        if info is None:
            found.problem(f"{key}: missing, so its retention is unknown")
        elif info.retain_until is None:
            found.problem(f"{key}: no retention set")
        elif info.retain_until < rule:
            found.problem(f"{key}: retained until {_day(info.retain_until)}, before the rule's date")
        else:
            earliest = info.retain_until if earliest is None else min(earliest, info.retain_until)
    if as_utc(row.retain_until) < rule:
        found.problem(f"the index keeps the policy until {_day(as_utc(row.retain_until))} only")
    if earliest is not None:
        found.evidence(
            f"{len(keys) - len(found.problems)} of {len(keys)} objects retained until {_day(earliest)} "
            f"or later (rule: ≥ {_day(rule)}, 《保险法》第87条)"
        )


def no_active_content(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("no_active_content")
    for label, obj in pdfs(policy.versions):
        if obj.data is None:
            found.problem(f"{label}: cannot be read")
            continue
        findings = active_content(obj.data, reader=obj.reader)
        if findings:
            found.problem(f"{label}: {', '.join(findings)}")
        else:
            found.evidence(f"{label}: not encrypted, no JavaScript, actions or embedded files")


def metadata_findings(
    pdf: bytes, *, names: Sequence[str], documents: Sequence[str] = (), reader: PdfReader | None = None
) -> list[str]:
    """What in the PDF's document information or XMP is personal data: ID/phone shapes or party names.

    ``documents`` are the policy's own document numbers (printed in the title): not personal data,
    however many digits they hold. ``reader``: ``pdf`` parsed already.
    """
    reader = reader or PdfReader(BytesIO(pdf))
    fields: list[tuple[str, str]] = [(str(k), str(v)) for k, v in (reader.metadata or {}).items()]
    try:
        xmp = reader.trailer["/Root"].get("/Metadata")
        if xmp is not None:
            fields.append(("XMP", xmp.get_object().get_data().decode("utf-8", "replace")))
    except Exception:  # an unreadable XMP stream: nothing to leak from it
        logger.debug("unreadable XMP metadata", exc_info=True)
    found = []
    for key, value in fields:
        if scrub(value, keep=documents) != value:
            found.append(f"{key} holds an ID-number or phone-number shape")
        for name in names:
            if len(name) >= 2 and name in value:
                found.append(f"{key} holds a party's name")
                break
    return found


_ACTIONS = {"/JavaScript": "JavaScript", "/Launch": "a launch action", "/ImportData": "an import action"}


def active_content(pdf: bytes, *, reader: PdfReader | None = None) -> list[str]:
    """Encryption, JavaScript, launch actions and embedded files, looking at every reachable object.
    ``reader``: ``pdf`` parsed already."""
    reader = reader or PdfReader(BytesIO(pdf))
    if reader.is_encrypted:
        return ["the PDF is encrypted"]
    found: set[str] = set()
    seen: set[tuple[int, int]] = set()
    stack: list[Any] = [reader.trailer]
    while stack:
        obj = stack.pop()
        if isinstance(obj, IndirectObject):
            ref = (obj.idnum, obj.generation)
            if ref in seen:
                continue
            seen.add(ref)
            try:
                obj = obj.get_object()
            except Exception:  # a dangling reference hides nothing
                continue
        if isinstance(obj, DictionaryObject):
            if "/JS" in obj or obj.get("/S") in _ACTIONS:
                found.add(_ACTIONS.get(str(obj.get("/S")), "JavaScript"))
            if "/EmbeddedFiles" in obj or "/EF" in obj or obj.get("/Type") == "/EmbeddedFile":
                found.add("an embedded file")
            if obj.get("/Subtype") == "/FileAttachment":
                found.add("a file attachment")
            if "/JavaScript" in obj:
                found.add("JavaScript")
            stack.extend(v for k, v in obj.items() if k != "/Parent")
        elif isinstance(obj, ArrayObject):
            stack.extend(obj)
    return sorted(found)


def _day(moment: datetime) -> str:
    """A moment as its China-time date and time, the way retention dates are read."""
    return f"{moment.astimezone(CHINA_TIME):%Y-%m-%d %H:%M} (UTC+8)"


def _party_names(record: dict[str, Any] | None) -> list[str]:
    if not record:
        return []
    names = [(record.get(role) or {}).get("name") for role in ("applicant", "insured")]
    names += [b.get("name") for b in record.get("beneficiaries") or []]
    return sorted({n for n in names if isinstance(n, str) and n})
