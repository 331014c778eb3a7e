"""The four-property checks (四性检测, DA/T 70-2018) on one archived policy, each with its evidence.

Every check is named, belongs to one property and answers pass or fail with the evidence it used, in
words an auditor can follow. A policy is defective when any check fails.

One module per property holds its checks, each a small function that adds its messages to the
policy's collector (``Messages``), as paperless-ngx's sanity checker does:

- ``authenticity`` (真实性): ledger_chain, object_hashes, index_matches, company_seal, cross_page_seal;
- ``integrity`` (完整性): objects_present, clauses_match, required_images, parts_reconcile;
- ``usability`` (可用性): renders, fonts_embedded, pdfa_structure, schedule_text;
- ``security`` (安全性): keys_clean, metadata_clean, retention, no_active_content.

``base`` holds what they share (the named checks, the collector, the results, the policy as read);
``pdftext`` the PDF text and bookmarks they compare; ``pages`` where the documents and images lie in
the newest copies, and the thumbnails; ``auditor`` the runner (``Auditor``), which reads a policy once,
calls every check on it in turn (``RUN_ORDER``), and scores it.
"""

from __future__ import annotations

from archive.audit.checks.auditor import RUN_ORDER, Auditor, scores
from archive.audit.checks.authenticity import SealFindings, seal_checks
from archive.audit.checks.base import (
    ARCHIVE_ITEM,
    AUTHENTICITY,
    CHECKS,
    EXEMPTION_ITEM,
    INTEGRITY,
    POINTS,
    PROPERTIES,
    SECURITY,
    USABILITY,
    AuditedPolicy,
    CheckResult,
    Found,
    IndexedVersion,
    Messages,
    PolicyResult,
    ScoreItem,
    SealedDocument,
    StoredPart,
    Thumbnail,
)
from archive.audit.checks.integrity import clause_check, clause_footers, schedule_page_count
from archive.audit.checks.pages import Layout, Pictures, thumbnail_png
from archive.audit.checks.pdftext import OutlineItem, normalise, outline, page_lines, page_texts, shows, spans
from archive.audit.checks.security import active_content, metadata_findings
from archive.audit.checks.usability import PartyField, font_findings, party_fields, schedule_text_check

__all__ = [
    "ARCHIVE_ITEM",
    "AUTHENTICITY",
    "CHECKS",
    "EXEMPTION_ITEM",
    "INTEGRITY",
    "POINTS",
    "PROPERTIES",
    "RUN_ORDER",
    "SECURITY",
    "USABILITY",
    "AuditedPolicy",
    "Auditor",
    "CheckResult",
    "Found",
    "IndexedVersion",
    "Layout",
    "Messages",
    "OutlineItem",
    "PartyField",
    "Pictures",
    "PolicyResult",
    "ScoreItem",
    "SealFindings",
    "SealedDocument",
    "StoredPart",
    "Thumbnail",
    "active_content",
    "clause_check",
    "clause_footers",
    "font_findings",
    "metadata_findings",
    "normalise",
    "outline",
    "page_lines",
    "page_texts",
    "party_fields",
    "schedule_page_count",
    "schedule_text_check",
    "scores",
    "seal_checks",
    "shows",
    "spans",
    "thumbnail_png",
]
