"""The auditors' desk (issue 24): draw a lot and audit it, go through the sample with the archive copy's
pages beside each check, record manual findings, sign off the verdict, download the reports.

The audit itself is ``usecases.audit.sampled_audit``, the code path of ``issuance audit``: the same ISO
2859-1 draw, checks and reports, recorded with the signed-in auditor as the actor. It renders every
sampled page to find the seals (tens of seconds for a handful of policies), so the desk runs it in a
background thread of its process and the page that follows it refreshes until the ledger records it.

Who may do what: the ``audit`` permission; an auditor limited to branches draws lots of one of those
branches only and opens only audits of such lots; an archive copy is read only by an auditor of its
policy's branch (``view_archive_copy``). Every view of a sampled policy's archive copy (``copy.read``),
every download of a report (``audit.report_read``), finding (``audit.finding``), sign-off
(``audit.signed_off``) and failed run (``audit.failed``) is a ledger event naming the auditor.

Findings and sign-off are ledger events, checked and appended under one lock of this desk process: a
finding after the sign-off is refused. (Two desk processes on one index could race between the check
and the append; the desk runs as one process.)
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from archive.audit import AuditRequest, LotCriteria, draw, new_audit_id
from archive.audit.checks import CHECKS, PROPERTIES, CheckResult, outline
from archive.audit.orphans import AUDIT_COMPLETED
from archive.audit.report import FORMATS, WRITERS, report_from_json
from archive.audit.sampling import AQLS, LEVELS, STRATA, SamplingPlan
from archive.audit.signoff import (
    AUDIT_FINDING,
    AUDIT_SIGNED_OFF,
    SEVERITIES,
    ManualFinding,
    SignOff,
    check_decision,
    finding_detail,
    judged,
    manual_findings,
    signed_key,
    signed_off,
    signoff_bytes,
)
from archive.index import LedgerEntry, LedgerEvent
from archive.users import User
from core.errors import (
    AuditNotFound,
    ComponentUnavailable,
    IssuanceError,
    NotPermitted,
    PolicyNotFound,
    UsageError,
)
from core.manifest import sha256_hex
from usecases.audit import sampled_audit
from usecases.desk import Desk, may, require

logger = logging.getLogger(__name__)

AUDIT_FAILED = "audit.failed"
AUDIT_REPORT_READ = "audit.report_read"
REPORT_TYPES = {"html": "text/html", "json": "application/json", "csv": "text/csv"}
SIGNOFF = "signoff"  # the download name of signoff.json
# pages shown beside a check's result: the documents' first pages for the seals, every clause's first
# page for the clause and cross-page checks, the image pages for the images
CHECK_PAGES = {
    "company_seal": "documents",
    "cross_page_seal": "clauses",
    "clauses_match": "clauses",
    "schedule_text": "documents",
    "required_images": "images",
}
IMAGE_GROUPS = ("影像资料", "补充影像资料")
REPORTS_KEPT = 32  # archived report JSONs kept in memory (immutable, verified when read)
# audits checked at once by one desk: each keeps a core busy rendering pages, and the desk serves pages too
MAX_RUNNING = 2
JOBS_KEPT = timedelta(hours=1)  # a finished job is shown from the ledger; kept a while for its page


@dataclass(frozen=True)
class AuditSummary:
    """One recorded audit, as the list shows it."""

    audit_id: str
    at: datetime
    auditor: str
    criteria: LotCriteria
    lot_size: int
    sample_size: int
    verdict: str  # with the manual findings counted
    findings: int
    signoff: SignOff | None


@dataclass(frozen=True)
class SampledPolicy:
    """One sampled policy: its checks as the report recorded them, and the auditors' findings."""

    position: int  # 1-based place in the sample
    policy_no: str
    branch_code: str
    product_code: str
    versions: int
    checks: tuple[CheckResult, ...]
    score: int
    max_score: int
    findings: tuple[ManualFinding, ...]

    @property
    def failed(self) -> bool:
        return any(not c.passed for c in self.checks)

    @property
    def defective(self) -> bool:
        return self.failed or bool(self.findings)


@dataclass(frozen=True)
class AuditView:
    """An audit as its page shows it: the lot, the plan, the sample, findings, verdict, sign-off."""

    audit_id: str
    auditor: str
    at: datetime
    criteria: LotCriteria
    plan: SamplingPlan
    seed: int
    lot_sha256: str
    policies: tuple[SampledPolicy, ...]
    lot_findings: tuple[dict[str, str], ...]
    check_defects: int  # policies with a failed check (the report's count)
    defects: int  # with the manual findings counted
    verdict: str
    report_verdict: str  # the report's, before manual findings
    reports: dict[str, Any]  # format -> {"key", "sha256"}
    signoff: SignOff | None

    @property
    def findings(self) -> tuple[ManualFinding, ...]:
        return tuple(f for p in self.policies for f in p.findings)

    def policy(self, policy_no: str) -> SampledPolicy:
        number = policy_no.strip().upper()
        for p in self.policies:
            if p.policy_no == number:
                return p
        raise PolicyNotFound(f"policy {number[:32]} is not in the sample of {self.audit_id}")


@dataclass(frozen=True)
class ArchivePage:
    """One page of an archive copy and what its bookmarks call it."""

    number: int  # 1-based
    label: str
    group: str  # documents | images


@dataclass(frozen=True)
class SampleView:
    """A sampled policy read for the audit: its checks and findings, and its archive copy's pages."""

    audit: AuditView
    policy: SampledPolicy
    row: Any  # the index's policy row
    version: int  # the newest version, whose archive copy is shown
    pages: tuple[ArchivePage, ...]
    beside: dict[str, tuple[ArchivePage, ...]]  # check name -> pages shown beside its result


@dataclass
class AuditJob:
    """An audit running in the desk's background thread."""

    audit_id: str
    auditor: str
    criteria: LotCriteria
    started_at: datetime
    state: str = "drawing"  # drawing | checking | failed | done
    done: int = 0
    total: int | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def lot_request(
    *,
    batch_id: str = "",
    issued_from: str = "",
    issued_to: str = "",
    branch: str = "",
    product: str = "",
    level: str = "II",
    aql: str = "2.5",
    size: str = "",
    seed: str = "",
    stratify: str = "",
) -> AuditRequest:
    """An ``AuditRequest`` from a form's fields, checked as ``issuance audit`` checks its options."""

    def day(text: str, name: str) -> date | None:
        try:
            return date.fromisoformat(text.strip()) if text.strip() else None
        except ValueError:
            raise UsageError(f"{name} is a date YYYY-MM-DD") from None

    def number(text: str, name: str, *, low: int | None) -> int | None:
        try:
            value = int(text.strip()) if text.strip() else None
        except ValueError:
            raise UsageError(f"{name} is a whole number") from None
        if value is not None and low is not None and value < low:
            raise UsageError(f"{name} is at least {low}")
        return value

    start, end = day(issued_from, "issued from"), day(issued_to, "issued to")
    if start and end and end < start:
        raise UsageError("issued to is before issued from")
    if level not in LEVELS:
        raise UsageError(f"inspection level is one of {', '.join(LEVELS)}")
    if aql not in AQLS:
        raise UsageError(f"AQL is one of {', '.join(AQLS)}")
    if stratify and stratify not in STRATA:
        raise UsageError("a sample is stratified by branch, or not at all")
    for text, name, longest in ((batch_id, "batch", 64), (branch, "branch", 6), (product, "product", 32)):
        if len(text.strip()) > longest:
            raise UsageError(f"{name} is at most {longest} characters")
    return AuditRequest(
        criteria=LotCriteria(
            batch_id=batch_id.strip() or None,
            issued_from=start,
            issued_to=end,
            branch=branch.strip() or None,
            product=product.strip() or None,
        ),
        level=level,
        aql=aql,
        size=number(size, "sample size", low=1),
        seed=number(seed, "seed", low=None),  # any integer, as ``issuance audit --seed``
        stratify=stratify or None,
    )


class DeskAudits:
    """The auditors' use cases over a ``Desk``'s open archive."""

    def __init__(self, desk: Desk, *, seal_dpi: int = 150, workers: int | None = None) -> None:
        self.desk = desk
        self.seal_dpi = seal_dpi  # the resolution seals are found at (``issuance audit --seal-dpi``)
        self.workers = workers or max(1, desk.settings.workers)
        self._jobs: dict[str, AuditJob] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()  # jobs, and findings against the sign-off
        self._reports: dict[tuple[str, str], dict[str, Any]] = {}
        self._reports_lock = threading.Lock()

    # --- drawing and running ----------------------------------------------------------------------------

    def start(self, user: User, request: AuditRequest) -> str:
        """Check the lot, then audit it in a background thread; the audit's id at once.

        The lot must be within the auditor's branches. The seed is fixed here (a new one unless given),
        so that the lot checked now is the lot the audit draws from.
        """
        require(user, "audit")
        self._require_lot(user, request.criteria)
        try:
            drawn = draw(self.desk.index, request)  # AuditLotEmpty before anything starts
        except ValueError as e:
            raise UsageError(str(e)) from e
        request = AuditRequest(
            criteria=request.criteria,
            level=request.level,
            aql=request.aql,
            size=request.size,
            seed=drawn.sample.seed,
            stratify=request.stratify,
        )
        now = self.desk.clock()
        audit_id = new_audit_id(now)
        job = AuditJob(audit_id, user.name, request.criteria, now)
        thread = threading.Thread(
            target=self._run, args=(job, request, now), name=f"audit-{audit_id}", daemon=True
        )
        with self._lock:
            for old in [j for j in self._jobs.values() if j.state in ("done", "failed")]:
                if now - old.started_at > JOBS_KEPT:
                    del self._jobs[old.audit_id], self._threads[old.audit_id]
            running = [j for j in self._jobs.values() if j.state not in ("done", "failed")]
            if len(running) >= MAX_RUNNING:
                raise ComponentUnavailable(
                    f"{len(running)} audits are running on this desk; start this one when one has finished",
                    hint="their pages show how far they are",
                )
            self._jobs[audit_id] = job
            self._threads[audit_id] = thread
        thread.start()
        return audit_id

    def wait(self, audit_id: str, timeout: float | None = None) -> None:
        """Wait for the audit's thread (for tests and for shutting down)."""
        thread = self._threads.get(audit_id)
        if thread is not None:
            thread.join(timeout)

    def job(self, user: User, audit_id: str) -> AuditJob | None:
        """The background audit ``audit_id`` (None when this desk runs none by that id)."""
        require(user, "audit")
        job = self._jobs.get(audit_id)
        if job is not None:
            self._require_lot(user, job.criteria)
        return job

    def _run(self, job: AuditJob, request: AuditRequest, now: datetime) -> None:
        def drawn(d: Any) -> None:
            with job.lock:
                job.state, job.total = "checking", d.plan.sample_size

        def checked(_result: Any) -> None:
            with job.lock:
                job.done += 1

        try:
            with tempfile.TemporaryDirectory(prefix="audit-", dir=self.desk.scratch) as out:
                sampled_audit(
                    self.desk.settings,
                    request,
                    actor=job.auditor,
                    out_dir=Path(out),
                    workers=self.workers,
                    audit_id=job.audit_id,
                    now=now,
                    on_drawn=drawn,
                    on_result=checked,
                    seal_dpi=self.seal_dpi,
                )
        except Exception as e:  # the auditor reads why on the page that follows the audit
            message = e.message if isinstance(e, IssuanceError) else f"{type(e).__name__}: {e}"
            logger.exception("audit %s failed", job.audit_id)
            with job.lock:
                job.state, job.error = "failed", message
            try:
                self.desk.index.append_event(
                    LedgerEvent(job.auditor, AUDIT_FAILED, job.audit_id, {"error": message[:300]})
                )
            except IssuanceError:
                logger.exception("audit %s: its failure could not be recorded", job.audit_id)
            return
        with job.lock:
            job.state = "done"

    # --- reading --------------------------------------------------------------------------------------

    def audits(self, user: User, *, limit: int = 100) -> list[AuditSummary]:
        """Recorded audits of lots within the auditor's branches, newest first."""
        require(user, "audit")
        out = []
        for audit_id in sorted(self.desk.index.ledger_subjects(AUDIT_COMPLETED), reverse=True):
            entries = list(self.desk.index.ledger_entries(subject=audit_id))
            completed = _completed(entries)
            if completed is None:
                continue
            d = completed.detail
            criteria = LotCriteria.from_json(d.get("criteria") or {})
            if not self._may_see(user, criteria):
                continue
            findings = manual_findings(entries, d.get("sample") or ())
            verdict = str(d.get("verdict"))
            if findings:  # counted against the report's per-policy results, as the audit's page does
                verdict = self.audit(user, audit_id).verdict
            out.append(
                AuditSummary(
                    audit_id=audit_id,
                    at=completed.at,
                    auditor=completed.actor,
                    criteria=criteria,
                    lot_size=int(d.get("lot_size") or 0),
                    sample_size=int(d.get("n") or 0),
                    verdict=verdict,
                    findings=len(findings),
                    signoff=signed_off(entries),
                )
            )
            if len(out) >= limit:
                break
        return out

    def audit(self, user: User, audit_id: str) -> AuditView:
        """A recorded audit; ``AuditNotFound`` when no ``audit.completed`` event names it."""
        require(user, "audit")
        entries = list(self.desk.index.ledger_entries(subject=audit_id[:64]))
        completed = _completed(entries)
        if completed is None:
            raise AuditNotFound(f"no audit {audit_id[:64]} is recorded")
        criteria = LotCriteria.from_json(completed.detail.get("criteria") or {})
        self._require_lot(user, criteria)
        report = self._report(audit_id, completed.detail.get("reports") or {})
        recorded = report_from_json(report)
        sample = tuple(r.policy_no for r in recorded.results)
        findings = manual_findings(entries, sample)
        policies = [
            SampledPolicy(
                position=position,
                policy_no=r.policy_no,
                branch_code=r.branch_code,
                product_code=r.product_code,
                versions=r.versions,
                checks=r.checks,
                score=r.score,
                max_score=r.max_score,
                findings=tuple(f for f in findings if f.policy_no == r.policy_no),
            )
            for position, r in enumerate(recorded.results, 1)
        ]
        plan = recorded.plan
        failed = [p.policy_no for p in policies if p.failed]
        defective, verdict = judged(plan, failed_checks=failed, findings=findings)
        return AuditView(
            audit_id=audit_id,
            auditor=completed.actor,
            at=completed.at,
            criteria=criteria,
            plan=plan,
            seed=recorded.sample.seed,
            lot_sha256=recorded.lot_sha256,
            policies=tuple(policies),
            lot_findings=tuple(report.get("lot_findings") or ()),
            check_defects=len(failed),
            defects=len(defective),
            verdict=verdict,
            report_verdict=str(report.get("verdict")),
            reports=dict(completed.detail.get("reports") or {}),
            signoff=signed_off(entries),
        )

    def sample(self, user: User, audit_id: str, policy_no: str) -> SampleView:
        """A sampled policy with its archive copy's pages; recorded as a read of the archive copy."""
        view = self.audit(user, audit_id)
        sampled = view.policy(policy_no)
        row = self.desk.index.policy_row(sampled.policy_no)
        if row is None:
            raise PolicyNotFound(f"policy {sampled.policy_no} is no longer in the index")
        require(user, "view_archive_copy", row.branch_code)
        newest = self.desk.index.versions(row.policy_no)[-1]
        data = self.desk.archive.store.get(newest.bundle_key, sha256=newest.bundle_sha256)
        pages = _pages(data, newest.bundle_pages)
        self.desk.index.append_event(
            LedgerEvent(
                user.name,
                "copy.read",
                row.policy_no,
                {
                    "user": user.name,
                    "version": newest.version,
                    "kind": newest.kind,
                    "copy": "archive",
                    "sha256": newest.bundle_sha256,
                    "purpose": f"audit {audit_id}: pages and images",
                    "via": "desk",
                },
            )
        )
        return SampleView(
            audit=view,
            policy=sampled,
            row=row,
            version=newest.version,
            pages=pages,
            beside={check: _beside(group, pages) for check, group in CHECK_PAGES.items()},
        )

    def page_image(self, user: User, audit_id: str, policy_no: str, page: int) -> bytes:
        """A page of a sampled policy's newest archive copy as a thumbnail (its view is recorded once,
        when the sample page that shows it is opened)."""
        view = self.audit(user, audit_id)
        sampled = view.policy(policy_no)
        newest = self.desk.index.versions(sampled.policy_no)[-1]
        return self.desk.page_thumbnail(user, sampled.policy_no, newest.version, page, which="archive")

    def report(self, user: User, audit_id: str, fmt: str, *, signed: bool = False) -> tuple[str, bytes]:
        """A report (html, json, csv) as archived when the audit ran, or (``signed``) as written again at
        sign-off, or the sign-off itself (``signoff``), verified against the SHA-256 the ledger pins; the
        download is recorded."""
        view = self.audit(user, audit_id)
        if (signed or fmt == SIGNOFF) and view.signoff is None:
            raise AuditNotFound(f"audit {audit_id} is not signed off")
        if fmt == SIGNOFF and view.signoff is not None and view.signoff.key:
            key, digest = view.signoff.key, view.signoff.sha256
        elif fmt in FORMATS:
            reports = view.signoff.reports if signed and view.signoff else view.reports
            if fmt not in reports:
                raise AuditNotFound(f"audit {audit_id} has no such report")
            key, digest = reports[fmt]["key"], reports[fmt]["sha256"]
        else:
            raise AuditNotFound(f"audit {audit_id} has no report {fmt[:8]}")
        data = self.desk.archive.store.get(key, sha256=digest)
        name = f"signed {fmt}" if signed else fmt
        self.desk.index.append_event(
            LedgerEvent(user.name, AUDIT_REPORT_READ, audit_id, {"report": name, "key": key, "via": "desk"})
        )
        return key, data

    # --- findings and sign-off --------------------------------------------------------------------------

    def add_finding(
        self,
        user: User,
        audit_id: str,
        policy_no: str,
        *,
        prop: str,
        check: str | None,
        severity: str,
        text: str,
        page: int | None,
    ) -> LedgerEntry:
        """Record a finding on a sampled policy: it makes the policy defective (``archive.audit.signoff``)."""
        with self._lock:
            view = self.audit(user, audit_id)
            sampled = view.policy(policy_no)
            row = self.desk.index.policy_row(sampled.policy_no)
            require(user, "view_archive_copy", row.branch_code if row else sampled.branch_code)
            if view.signoff is not None:
                raise NotPermitted(
                    f"audit {audit_id} was signed off by {view.signoff.auditor}: it takes no more findings"
                )
            if check and (check not in CHECKS or CHECKS[check][0] != prop):
                raise UsageError(f"check {check[:40]} is not a check of {prop[:8]}")
            try:
                detail = finding_detail(
                    policy_no=sampled.policy_no,
                    position=sampled.position,
                    prop=prop,
                    check=check or None,
                    severity=severity,
                    text=text,
                    page=page,
                )
            except ValueError as e:
                raise UsageError(str(e)) from e
            return self.desk.index.append_event(LedgerEvent(user.name, AUDIT_FINDING, view.audit_id, detail))

    def sign_off(self, user: User, audit_id: str, *, decision: str, comment: str) -> SignOff:
        """The auditor's decision on the lot, once: the reports written again with the manual findings
        and the sign-off, and ``signoff.json``, archived in the sign-off's own folder beside the first
        reports (``archive.audit.signoff``), then the ``audit.signed_off`` event that pins them."""
        with self._lock:
            view = self.audit(user, audit_id)
            if view.signoff is not None:
                raise NotPermitted(f"audit {audit_id} was signed off already by {view.signoff.auditor}")
            try:
                comment = check_decision(decision, comment, verdict=view.verdict)
            except ValueError as e:
                raise UsageError(str(e)) from e
            findings = view.findings
            now = self.desk.clock()
            retain = self.desk.index.longest_retention([p.policy_no for p in view.policies])
            signoff_at = signed_key(view.audit_id, now, "signoff.json")
            signing = SignOff(
                seq=0,
                at=now,
                auditor=user.name,
                decision=decision,
                verdict=view.verdict,
                defects=view.defects,
                comment=comment,
                key=signoff_at,
                sha256=None,
                reports={},
            )
            signed = replace(
                report_from_json(self._report(audit_id, view.reports)),
                manual=findings,
                sign_off=signing,
                report_keys={fmt: signed_key(view.audit_id, now, f"report.{fmt}") for fmt in FORMATS},
            )
            stored: dict[str, dict[str, str]] = {}
            for fmt, write in WRITERS.items():
                out = BytesIO()
                write(signed, out)
                stored[fmt] = self._put(signed.report_keys[fmt], out.getvalue(), REPORT_TYPES[fmt], retain)
            data = signoff_bytes(
                audit_id=view.audit_id,
                auditor=user.name,
                at=now,
                decision=decision,
                comment=comment,
                plan=view.plan,
                failed_checks=[p.policy_no for p in view.policies if p.failed],
                findings=findings,
                reports=view.reports,
                signed_reports=stored,
            )
            pinned = self._put(signoff_at, data, "application/json", retain)
            entry = self.desk.index.append_event(
                LedgerEvent(
                    user.name,
                    AUDIT_SIGNED_OFF,
                    view.audit_id,
                    {
                        "decision": decision,
                        "verdict": view.verdict,
                        "defects": view.defects,
                        "findings": len(findings),
                        "comment": comment,
                        **pinned,
                        "reports": stored,
                    },
                )
            )
            result = signed_off([entry])
            assert result is not None
            return result

    def _put(self, key: str, data: bytes, content_type: str, retain: datetime | None) -> dict[str, str]:
        digest = sha256_hex(data)
        self.desk.archive.store.put(key, data, sha256=digest, retain_until=retain, content_type=content_type)
        return {"key": key, "sha256": digest}

    # --- who sees what ----------------------------------------------------------------------------------

    def _may_see(self, user: User, criteria: LotCriteria) -> bool:
        """An auditor limited to branches sees the lots of those branches only (a lot without a branch
        spans them all)."""
        if not user.branches:
            return may(user, "audit")
        return criteria.branch is not None and may(user, "audit", criteria.branch)

    def _require_lot(self, user: User, criteria: LotCriteria) -> None:
        if not self._may_see(user, criteria):
            where = criteria.branch or "every branch"
            raise NotPermitted(
                f"{user.name} audits branches {', '.join(user.branches)} only, not a lot of {where}",
                hint="choose a branch of yours for the lot",
            )

    def _report(self, audit_id: str, reports: dict[str, Any]) -> dict[str, Any]:
        pinned = reports.get("json") or {}
        if not pinned.get("key"):
            raise AuditNotFound(f"audit {audit_id} records no JSON report")
        cached = (pinned["key"], pinned.get("sha256", ""))
        with self._reports_lock:
            if cached in self._reports:
                return self._reports[cached]
        report = json.loads(self.desk.archive.store.get(pinned["key"], sha256=pinned.get("sha256")))
        with self._reports_lock:
            if len(self._reports) >= REPORTS_KEPT:
                self._reports.pop(next(iter(self._reports)))
            self._reports[cached] = report
        return report


def _completed(entries: Sequence[LedgerEntry]) -> LedgerEntry | None:
    return next((e for e in entries if e.action == AUDIT_COMPLETED), None)


def _pages(pdf: bytes, count: int) -> tuple[ArchivePage, ...]:
    """Each page of an archive copy with the title of the bookmark it falls under (保单, a clause's
    title, an image kind such as 身份证人像面)."""
    try:
        items = outline(PdfReader(BytesIO(pdf)))
    except Exception:  # an unreadable outline leaves the pages unlabelled; the checks say why
        items = ()
    marks: list[tuple[int, str, str]] = []
    for item in items:
        group = "images" if item.title in IMAGE_GROUPS else "documents"
        if item.page is not None:
            marks.append((item.page, item.title, group))
        for child in item.children:
            if child.page is not None:
                marks.append((child.page, child.title, group))
    marks.sort(key=lambda m: m[0])
    pages = []
    for n in range(count):
        label, group = "", "documents"
        for start, title, kind in marks:
            if start <= n:
                label, group = title, kind
        pages.append(ArchivePage(n + 1, label, group))
    return tuple(pages)


def _beside(group: str, pages: Sequence[ArchivePage]) -> tuple[ArchivePage, ...]:
    """The pages shown beside a check: the first page of each document, clause or image."""
    firsts = [p for i, p in enumerate(pages) if i == 0 or pages[i - 1].label != p.label]
    if group == "images":
        return tuple(p for p in firsts if p.group == "images")
    if group == "documents":
        return tuple(p for p in firsts if p.group == "documents" and not _is_clause(p.label))
    return tuple(p for p in firsts if p.group == "documents")


def _is_clause(label: str) -> bool:
    return label.endswith("条款")


__all__ = [
    "AQLS",
    "CHECKS",
    "LEVELS",
    "PROPERTIES",
    "SEVERITIES",
    "ArchivePage",
    "AuditJob",
    "AuditSummary",
    "AuditView",
    "DeskAudits",
    "SampleView",
    "SampledPolicy",
    "lot_request",
]
