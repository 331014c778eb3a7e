"""真实性 (authenticity): the ledger, the hashes, the index against the manifests, and the seals.

- ``ledger_chain``: each of the policy's ledger events is recomputed (its hash over its content and the
  hash before it) and linked to the event before it in the global chain; every version has its event,
  and an event that records a manifest's key or SHA-256 agrees with the index.
- ``object_hashes``: every manifest hashes to what the index holds, every part to what its manifest
  holds (read through ``ObjectStore.get(key, sha256=…)``), and index and manifest name the same hashes.
- ``index_matches``: the index's policy row and version rows say what the manifests say (number,
  product, branch, insured, period, premium, serial, kind, seal), and the PDFs' metadata names the
  policy.
- ``company_seal`` / ``cross_page_seal``: ``stamps.find_seals``' checks (``SealFinder``) on the newest
  customer copy, split into its documents by the page counts the manifests record (the policy —
  schedule and clauses — then each endorsement), each against the seal id and version its manifest
  records (``load_seal_registry().get``): the company seal on the schedule and on each endorsement; a
  strip on every page of a multi-page document, and the strips of every group reassemble into that
  registered version. Poppler renders the newest customer copy once, at the seals' resolution, and
  hands its pages over one at a time to the seal finders and the thumbnails (``seal_checks``).
- ``signatures``: every PDF a version filed is checked by pyHanko's validator (``stamps.signing``): its
  last signature intact, valid, covering the whole file, by the certificate its manifest records,
  chaining to a trusted root, valid when it signed, its timestamp matching; earlier signatures inside
  it (the customer copy's inside the archive copy, the original's inside a reissued copy) intact and
  valid. A version filed unsigned (no key was configured) is said to be so.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from io import BytesIO
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from archive.audit.checks.base import AuditedPolicy, CheckResult, Messages, PageSink, SealedDocument
from archive.index import as_utc
from core.errors import IssuanceError
from stamps.finding import SealFinder
from stamps.poppler import stream_pages
from stamps.signing import check_signatures
from stamps.stamping import page_frames

logger = logging.getLogger(__name__)

__all__ = [
    "SealFindings",
    "SealedDocument",
    "index_matches",
    "ledger_chain",
    "object_hashes",
    "seal_checks",
    "seals",
    "signatures",
]

_SIGNED_PARTS = ("customer.pdf", "bundle.pdf", "reissue.pdf")


def ledger_chain(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("ledger_chain")
    events = policy.sources.index.ledger_trail(policy.policy_no)
    if not events:
        found.problem("the ledger holds no event for this policy")
    for e in events:
        if not e.intact:
            found.problem(f"event {e.seq} ({e.action}) was altered: its hash does not match its content")
        if e.before is None:
            found.problem(f"event {e.seq - 1}, before event {e.seq}, is missing from the ledger")
        elif e.prev_hash != e.before:
            found.problem(f"event {e.seq} ({e.action}) does not link to event {e.seq - 1}")
    if events and not found.problems:
        found.evidence(
            f"{len(events)} event(s) {', '.join(str(e.seq) for e in events)}: hashes recomputed, each "
            "linked to the event before it"
        )
    details = []
    for e in events:
        try:
            details.append((e, json.loads(e.detail)))
        except ValueError:
            found.problem(f"event {e.seq} has a detail that is not JSON")
    for v in policy.versions:
        row = v.row
        # the event that filed the version (incidents about it name its version too: not those)
        mine = [
            (e, d)
            for e, d in details
            if not e.action.startswith("incident.")
            and (d.get("version") == row.version or d.get("manifest") == row.manifest_key)
        ]
        mine.sort(key=lambda pair: (pair[1].get("manifest") != row.manifest_key, pair[0].seq))
        if not mine:
            found.problem(f"{v.label} ({row.kind}) has no ledger event")
            continue
        e, d = mine[0]
        if d.get("manifest") not in (None, row.manifest_key):
            found.problem(f"event {e.seq} names another manifest for {v.label}")
        elif d.get("manifest_sha256") not in (None, row.manifest_sha256):
            found.problem(f"event {e.seq} records another manifest SHA-256 for {v.label} than the index")
        else:
            pinned = " and its SHA-256" if d.get("manifest_sha256") else ""
            found.evidence(f"{v.label} ({row.kind}) ← event {e.seq} {e.action}, manifest{pinned} as indexed")
    incidents = [f"{e.action} (event {e.seq})" for e, _ in details if e.action.startswith("incident.")]
    if incidents:
        found.evidence("incidents recorded for this policy: " + ", ".join(incidents))
    whole = policy.sources.ledger_problems()
    found.evidence(
        "whole chain verified: intact" if not whole else f"whole chain: {len(whole)} problem(s) (lot finding)"
    )


def object_hashes(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("object_hashes")
    for v in policy.versions:
        row = v.row
        if v.manifest_problem:
            found.problem(f"{v.label} manifest: {v.manifest_problem}")
            continue
        found.evidence(f"{v.label} manifest.json sha256 {row.manifest_sha256[:12]}… = index")
        declared = {p["name"]: p for p in v.manifest.get("parts", [])}  # type: ignore[union-attr]
        indexed = {
            "customer.pdf": (row.customer_key, row.customer_sha256),
            "bundle.pdf": (row.bundle_key, row.bundle_sha256),
        }
        for name in [*indexed, *(n for n in declared if n not in indexed)]:
            part = declared.get(name)
            obj = v.parts[name]
            if part is None:
                found.problem(f"{v.label} manifest does not list {name}")
            elif name in indexed and (part["key"], part["sha256"]) != indexed[name]:
                found.problem(f"{v.label} {name}: the manifest and the index name different objects")
            if obj.problem:
                found.problem(f"{v.label} {name}: {obj.problem}")
            elif part is not None:
                found.evidence(
                    f"{v.label} {obj.key.rsplit('/', 1)[-1]} sha256 {part['sha256'][:12]}… verified"
                )


def index_matches(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("index_matches")
    row, record = policy.row, policy.record
    if record is None:
        found.problem("the issue version's manifest holds no readable record")
        return
    compare: list[tuple[str, Any, Any]] = [
        ("policy number", row.policy_no, record.get("policy_no")),
        ("product", row.product_code, record.get("product_code")),
        ("branch", row.branch_code, (record.get("branch") or {}).get("code")),
        ("insured", row.insured_name, (record.get("insured") or {}).get("name")),
        ("applicant", row.applicant_name, (record.get("applicant") or {}).get("name")),
        ("print serial", row.print_serial or None, record.get("print_serial") or None),
    ]
    try:
        compare.append(
            ("total premium", Decimal(str(row.total_premium)), Decimal(str(record["total_premium"])))
        )
        compare.append(
            ("period start", as_utc(row.period_start), datetime.fromisoformat(record["period"]["start"]))
        )
        compare.append(
            ("period end", as_utc(row.period_end), datetime.fromisoformat(record["period"]["end"]))
        )
    except (KeyError, TypeError, ValueError, InvalidOperation):
        found.problem("the record's premium or period cannot be read")
    for what, indexed, recorded in compare:
        if indexed != recorded:
            found.problem(f"{what}: the index and the manifest's record differ")
    if not found.problems:
        found.evidence("policy row = record: number, product, branch, parties, period, premium, serial")
    for v in policy.versions:
        m = v.manifest
        if m is None:
            continue
        facts = [
            ("policy number", m.get("policy_no"), row.policy_no),
            ("version", m.get("version"), v.row.version),
            ("kind", m.get("kind"), v.row.kind),
            ("batch", m.get("batch_id"), v.row.batch_id),
            ("seal id", (m.get("seal") or {}).get("id"), v.row.seal_id),
            ("seal version", (m.get("seal") or {}).get("version"), v.row.seal_version),
        ]
        wrong = [what for what, a, b in facts if a != b]
        if wrong:
            found.problem(f"{v.label}: index and manifest differ in {', '.join(wrong)}")
        else:
            seal = m.get("seal") or {}
            sealed = f", seal {seal.get('id')}@v{seal.get('version')}" if seal else ""
            found.evidence(f"{v.label} row = manifest ({v.row.kind}{sealed})")
        for name in ("customer.pdf", "bundle.pdf"):
            if v.parts[name].data is None:
                continue
            subject = str((v.parts[name].reader.metadata or {}).get("/Subject", ""))
            if subject != row.policy_no:
                found.problem(f"{v.label} {name}: its metadata names {subject or 'no policy'}")


def seals(policy: AuditedPolicy, messages: Messages) -> None:
    """``company_seal`` and ``cross_page_seal`` on the newest customer copy. Its one rendering also
    serves its usability check (``policy.rendered``) and its thumbnails, a page at a time (issue 21,
    item 10); when it cannot be done, both seal checks fail with the reason and the rest go on."""
    customer = policy.customer
    if customer.data is None:
        unreadable = "the newest customer copy cannot be read (see object_hashes)"
        messages.fail("company_seal", unreadable)
        messages.fail("cross_page_seal", unreadable)
        return
    try:
        findings = seal_checks(
            customer.data,
            documents=policy.documents,
            dpi=policy.sources.seal_dpi,
            on_page=policy.on_customer_page,
            reader=customer.reader,
            messages=messages,
        )
    except Exception as e:  # both seal checks fail with the reason; the rest go on
        logger.warning("audit step failed: %s", e)
        logger.debug("audit step", exc_info=True)
        reason = f"could not complete: {type(e).__name__}: {e}"
        messages.fail("company_seal", reason)
        messages.fail("cross_page_seal", reason)
        if isinstance(e, IssuanceError) and customer.key:
            policy.rendered[customer.key] = f"poppler cannot render it ({e})"
    else:
        if customer.key:
            policy.rendered[customer.key] = findings.pages_rendered


@dataclass(frozen=True)
class SealFindings:
    """The two seal checks, the cross-page groups found per document (for the fanned-edge pictures),
    and how many pages of the customer copy poppler rendered for them (every one, or it raised)."""

    company: CheckResult
    cross_page: CheckResult
    groups: tuple[tuple[SealedDocument, tuple[tuple[int, int], ...]], ...]
    pages_rendered: int = 0


def signatures(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("signatures")
    seen: set[str] = set()
    for v in policy.versions:
        if v.manifest is None:
            continue  # object_hashes says why
        recorded = v.manifest.get("signature")
        for name in _SIGNED_PARTS:
            part = v.parts.get(name)
            if part is None or part.data is None or part.key in seen:
                continue  # absent or unreadable: object_hashes says so; shared: checked once
            seen.add(part.key)
            where = f"{v.label} {name}"
            if not recorded:
                found.evidence(f"{where}: issued unsigned (no signing key was configured) — 未签名")
                continue
            try:
                checks = check_signatures(
                    part.data,
                    roots=list(policy.sources.trust_roots),
                    require_timestamp=recorded.get("level") == "PAdES-B-T",
                )
            except IssuanceError as e:
                found.problem(f"{where}: {e}")
                continue
            if not checks:
                found.problem(f"{where} carries no signature, though its manifest records one")
                continue
            *earlier, last = checks
            for check in earlier:
                if not (check.intact and check.valid):
                    found.problem(
                        f"{where}: the earlier signature {check.field}: {'; '.join(check.problems)}"
                    )
            for problem in last.problems:
                found.problem(f"{where}: {problem}")
            if last.fingerprint and last.fingerprint != recorded.get("fingerprint"):
                found.problem(
                    f"{where} is signed by another certificate ({last.fingerprint[:16]}…) than its manifest "
                    f"records ({str(recorded.get('fingerprint'))[:16]}…)"
                )
            elif last.ok:
                when = last.timestamped_at or last.signed_at
                stamped = "timestamped" if last.timestamped_at else "signing time claimed"
                found.evidence(
                    f"{where}: signed by {last.signer} (sha256 {last.fingerprint[:16]}…), {stamped} "
                    f"{when:%Y-%m-%d %H:%M:%S} UTC, covers the whole file"
                    + (f"; {len(earlier)} earlier signature(s) inside intact" if earlier else "")
                )


def seal_checks(
    customer: bytes,
    *,
    documents: Sequence[SealedDocument],
    dpi: float,
    on_page: PageSink | None = None,
    reader: PdfReader | None = None,
    messages: Messages | None = None,
) -> SealFindings:
    """``company_seal`` and ``cross_page_seal`` on the documents of one customer copy.

    Poppler renders the copy once, page after page (``stream_pages``); each page goes to the
    ``SealFinder`` of its document (the company seal looked for on ``anchor_pages`` only, where it
    counts) and then to ``on_page(page, image)``, and is let go: one page's pixels at a time.
    ``IssuanceError`` when poppler cannot render every page, ``ValueError`` when a document's pages
    are not in the copy. The findings go to ``messages`` when given (a new collector otherwise).
    """
    if messages is None:
        messages = Messages()
    frames = page_frames(reader or PdfReader(BytesIO(customer)))
    finders: list[tuple[SealedDocument, SealFinder]] = []
    for doc in documents:
        if not 0 <= doc.start < doc.stop <= len(frames):
            raise ValueError(
                f"{doc.label}: pages {doc.start + 1}–{doc.stop} are not in the customer copy "
                f"({len(frames)} pages)"
            )
        if doc.seal is not None:
            finder = SealFinder(
                frames[doc.start : doc.stop], seal=doc.seal, dpi=dpi, company_pages=doc.anchor_pages
            )
            finders.append((doc, finder))
    rendered = 0
    with tempfile.TemporaryDirectory(prefix="audit-seals-") as tmp:
        path = Path(tmp) / "document.pdf"
        path.write_bytes(customer)
        for page, image in enumerate(stream_pages(path, dpi=dpi)):
            for doc, finder in finders:
                if doc.start <= page < doc.stop:
                    finder.add(page - doc.start, image)
            if on_page is not None:
                on_page(page, image)
            rendered += 1
    if rendered != len(frames):
        raise IssuanceError(f"poppler rendered {rendered} of {len(frames)} pages")
    reports = {id(doc): finder.report() for doc, finder in finders}
    company = messages.check("company_seal")
    strips = messages.check("cross_page_seal")
    groups = []
    for doc in documents:
        pages = f"pages {doc.start + 1}–{doc.stop}"
        if doc.seal is None:
            missing = f"{doc.label}: seal {doc.seal_ref or '(none recorded)'} is not in the seal registry"
            company.problem(missing)
            strips.problem(missing)
            continue
        report = reports[id(doc)]
        groups.append((doc, tuple(g.pages for g in report.groups)))
        found = [p for p in report.pages if p.company_seal]
        allowed = doc.anchor_pages if doc.anchor_pages is not None else doc.stop - doc.start
        on_anchor = [p for p in found if p.page < allowed]
        if not on_anchor:
            where = "schedule" if doc.kind == "policy" else "endorsement"
            company.problem(f"{doc.label}: no company seal {doc.seal.ref} on the {where} ({pages})")
        else:
            best = max(on_anchor, key=lambda p: p.company_score)
            company.evidence(
                f"{doc.label}: company seal {doc.seal.ref} on page {doc.start + best.page + 1} "
                f"(match {best.company_score:.2f})"
            )
        cross = [p for p in report.problems if not p.startswith("no company")]
        if cross:
            for p in cross:
                strips.problem(f"{doc.label} ({pages}): {_shift_pages(p, doc.start)}")
        elif report.groups:
            for g in report.groups:
                strips.evidence(
                    f"{doc.label}: strips on pages {doc.start + g.pages[0] + 1}–{doc.start + g.pages[1]} "
                    f"reassemble {doc.seal.ref} (similarity {g.similarity:.3f}, weakest strip "
                    f"{g.weakest_strip:.2f})"
                )
        else:
            strips.evidence(f"{doc.label}: one page, no cross-page seal expected and none found")
    return SealFindings(
        company=company.result(),
        cross_page=strips.result(),
        groups=tuple(groups),
        pages_rendered=rendered,
    )


def _shift_pages(problem: str, offset: int) -> str:
    """find_seals numbers pages within the document it was given; report them in the customer copy."""
    if offset == 0:
        return problem

    def shift(match: re.Match[str]) -> str:
        return str(int(match.group(0)) + offset)

    return re.sub(r"(?<=page )\d+|(?<=pages )\d+|(?<=-)\d+(?=:)", shift, problem)
