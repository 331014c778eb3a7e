"""Auditor spot checks (稽核抽查): sample a lot by ISO 2859-1, run the four-property checks, report, record.

    request = AuditRequest(criteria=LotCriteria(branch="110105"), level="II", aql="2.5")
    outcome = run_audit(auditor=Auditor(store=…, index=…, products=…, seals=…), request=request,
                        actor="auditor-li", out_dir=Path("audit"))
    outcome.report.verdict   # "accept" | "reject"

What an audit promises, in this order (the write order of a filing, DESIGN.md invariant 3):

1. **Draw.** The lot is read from the index (``sampling.select_lot``), the plan chosen
   (``plan_for`` or ``fixed_plan``), the seed taken or generated and the sample drawn
   (``draw_sample``): anyone with the lot's criteria and the seed draws the same policies.
2. **Check.** Every sampled policy gets every check (``checks.Auditor``); the ledger's whole chain is
   verified once; print serials in the lot are looked at for gaps and duplicates. Ledger problems and
   serial findings are lot-level findings: reported, not counted as defects of a policy.
3. **Judge.** d defective policies against Ac/Re: accept when d ≤ Ac, else reject.
4. **Report and record.** ``report.{html,json,csv}`` go to ``out_dir`` (if given), then to the store under
   ``audits/{audit_id}/`` (retained as long as the longest-kept sampled policy), and last an
   ``audit.completed`` ledger event (actor: the auditor; subject: the audit id) records the criteria,
   the plan, the seed, n, the sample and its digest, the defects, the verdict and each report's key and
   SHA-256. An audit that fails before the event is not an audit: nothing names it.

``recorded_audit`` reads an audit back (the ledger event, else the archived JSON) and ``redraw`` draws its
sample again from today's index, saying whether the lot and the sample are still the same.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archive import serials as serial_registry
from archive.audit.checks import Auditor, PolicyResult
from archive.audit.orphans import AUDIT_COMPLETED, Finding, sanity_check
from archive.audit.report import (
    FORMATS,
    AuditReport,
    LotFinding,
    SpooledResults,
    report_key,
    write_reports,
)
from archive.audit.sampling import (
    LotCriteria,
    LotMember,
    Sample,
    SamplingPlan,
    draw_sample,
    fixed_plan,
    lot_digest,
    new_seed,
    plan_for,
    sample_digest,
    select_lot,
    serial_series,
)
from archive.index import Index, LedgerEntry, LedgerEvent
from archive.store import ObjectStore
from core.errors import (
    AuditLotEmpty,
    AuditNotFound,
    ObjectCorrupt,
    ObjectMissing,
    SerialFormatError,
)
from core.manifest import sha256_hex
from core.wording import CHINA_TIME

__all__ = [
    "AuditOutcome",
    "AuditRequest",
    "Auditor",
    "Draw",
    "Finding",
    "LotCriteria",
    "RecordedAudit",
    "Redraw",
    "draw",
    "lot_findings",
    "recorded_audit",
    "redraw",
    "run_audit",
    "sanity_check",
]


@dataclass(frozen=True)
class AuditRequest:
    """What the auditor asked for: the lot, the plan (level and AQL, or a fixed size), seed, strata."""

    criteria: LotCriteria
    level: str = "II"
    aql: str = "2.5"
    size: int | None = None
    seed: int | None = None
    stratify: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"level": self.level, "aql": self.aql, "size": self.size, "stratify": self.stratify}


@dataclass(frozen=True)
class Draw:
    """A lot, its plan and the sample drawn from it."""

    lot: tuple[LotMember, ...]
    plan: SamplingPlan
    sample: Sample
    lot_sha256: str


def draw(index: Index, request: AuditRequest) -> Draw:
    """Select the lot, choose the plan and draw the sample (a new seed unless the request has one).

    ``AuditLotEmpty`` when the criteria select nothing; ``ValueError`` for a level, AQL or size the
    plans do not know.
    """
    lot = select_lot(index, request.criteria)
    if not lot:
        raise AuditLotEmpty(
            f"no archived policy matches the lot ({request.criteria.describe()})",
            hint="check the batch id, dates, branch and product with issuance find",
        )
    if request.size is not None:
        plan = fixed_plan(len(lot), size=request.size, aql=request.aql)
    else:
        plan = plan_for(len(lot), level=request.level, aql=request.aql)
    seed = request.seed if request.seed is not None else new_seed()
    sample = draw_sample(lot, n=plan.sample_size, seed=seed, stratify=request.stratify)
    return Draw(lot=lot, plan=plan, sample=sample, lot_sha256=lot_digest(lot))


# --- lot-level findings -----------------------------------------------------------------------------------


def lot_findings(
    index: Index, *, lot: Sequence[LotMember], ledger_problems: Sequence[str]
) -> tuple[LotFinding, ...]:
    """The ledger chain's problems, and duplicates and gaps in the lot's print serials.

    Two policies of the lot with the same serial are an error. Gaps are looked for only inside the
    blocks of forms issued to clerks (``archive.serials.issued_blocks``): between serials of unrelated
    blocks, or never issued, nothing is missing (issue 21, item 9). Inside a block, each number between
    the lot's first and last serial there that the lot does not hold is accounted for when the registry
    has it voided or used by another document; one still blank (issued, neither used nor voided) while
    a later form of the block was used is reported. Serials of the lot never issued to anyone
    (unregistered) are a warning.
    """
    findings = [LotFinding("error", "ledger_chain", problem) for problem in ledger_problems]
    serials = [m.print_serial for m in lot if m.print_serial]
    for series in serial_series(serials):
        for duplicate in series.duplicates:
            findings.append(
                LotFinding("error", "print_serials", f"serial {duplicate} is printed on more than one policy")
            )
    in_lot = set()
    for serial in serials:
        try:
            in_lot.add(serial_registry.normalise(serial))
        except SerialFormatError:
            continue
    for block in serial_registry.issued_blocks(index, in_lot):
        held = sorted(number for number in block.states if block.serial(number) in in_lot)
        if len(held) < 2:
            continue
        blank: list[int] = []
        voided = used = 0
        for number in range(held[0] + 1, held[-1]):
            if block.serial(number) in in_lot:
                continue
            state = block.states[number][0]
            if state == serial_registry.VOIDED:
                voided += 1
            elif state == serial_registry.USED:
                used += 1
            else:
                blank.append(number)
        if not blank:
            continue
        shown = [
            block.serial(a) if a == b else f"{block.serial(a)}–{block.serial(b)}" for a, b in _runs(blank)
        ]
        accounted = [f"{voided} voided"] if voided else []
        accounted += [f"{used} used by other documents"] if used else []
        when = f" on {block.issued_at.astimezone(CHINA_TIME):%Y-%m-%d}" if block.issued_at else ""
        findings.append(
            LotFinding(
                "warning",
                "print_serials",
                f"forms {block.serial(block.first)}–{block.serial(block.last)} issued to "
                f"{block.issued_to}{when}: {len(held)} used in the lot, {block.serial(held[0])}–"
                f"{block.serial(held[-1])}: {len(blank)} form(s) between them neither used nor voided "
                f"({', '.join(shown[:5])}{' …' if len(shown) > 5 else ''})"
                + (f"; {', '.join(accounted)} in the serial registry" if accounted else ""),
            )
        )
    # DOMAIN.md: a serial never issued to anyone is not quietly accepted; with [serials] unknown =
    # "record" it was filed, so the audit shows it (a warning: no rule makes it a defect)
    rows = index.serial_records(sorted(in_lot))
    unregistered = sorted(x for x in in_lot if x not in rows or not rows[x].registered)
    if unregistered:
        findings.append(
            LotFinding(
                "warning",
                "print_serials",
                f"unregistered serial: {len(unregistered)} serial(s) in the lot never issued to anyone "
                f"({', '.join(unregistered[:5])}{' …' if len(unregistered) > 5 else ''})",
            )
        )
    return tuple(findings)


def _runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted numbers as (first, last) runs of consecutive ones."""
    out: list[tuple[int, int]] = []
    for number in numbers:
        if out and out[-1][1] == number - 1:
            out[-1] = (out[-1][0], number)
        else:
            out.append((number, number))
    return out


# --- the audit ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditOutcome:
    """The report, where its files went, and the ledger entry that records the audit."""

    report: AuditReport
    files: dict[str, Path]
    keys: dict[str, str]
    entry: LedgerEntry


def new_audit_id(now: datetime) -> str:
    """``AUD-20261123-054512-3fa9c1``: sortable, safe as a key segment and as a ledger subject."""
    return f"AUD-{now.astimezone(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def run_audit(
    *,
    auditor: Auditor,
    request: AuditRequest,
    actor: str,
    out_dir: Path | None = None,
    workers: int = 1,
    on_result: Callable[[PolicyResult], None] | None = None,
    on_drawn: Callable[[Draw], None] | None = None,
    redraw_of: str | None = None,
    audit_id: str | None = None,
    now: datetime | None = None,
) -> AuditOutcome:
    """Draw, check, judge, report and record one audit (see the module docstring for the order).

    ``audit_id`` defaults to a new one (``new_audit_id``); reports go to ``out_dir/report.*``.
    """
    index, store = auditor.index, auditor.store
    drawn = draw(index, request)
    if on_drawn:
        on_drawn(drawn)
    # each result goes to a temporary file as it comes: the audit holds a few policies' evidence at a
    # time, whatever the sample size (issue 21, item 10)
    results = SpooledResults(
        auditor.check_each(drawn.sample.policy_nos, workers=workers, on_result=on_result)
    )
    findings = lot_findings(index, lot=drawn.lot, ledger_problems=auditor.ledger_problems())
    moment = now or datetime.now(UTC)
    audit_id = audit_id or new_audit_id(moment)
    keys = {fmt: report_key(audit_id, fmt) for fmt in FORMATS}
    report = AuditReport(
        audit_id=audit_id,
        auditor=actor,
        created_at=moment,
        criteria=request.criteria,
        plan=drawn.plan,
        sample=drawn.sample,
        lot_sha256=drawn.lot_sha256,
        results=results,
        findings=findings,
        redraw_of=redraw_of,
        report_keys=keys,
    )
    # an audit report is evidence about its sample: kept as long as the longest-kept sampled policy
    retain = index.longest_retention(drawn.sample.policy_nos)
    stored = {}
    with tempfile.TemporaryDirectory(prefix="audit-report-") as scratch:
        files = write_reports(report, out_dir if out_dir is not None else Path(scratch))
        for fmt, path in files.items():  # one report's bytes at a time: the store takes bytes
            data = path.read_bytes()
            content_type = {"html": "text/html", "json": "application/json", "csv": "text/csv"}[fmt]
            digest = sha256_hex(data)
            store.put(keys[fmt], data, sha256=digest, retain_until=retain, content_type=content_type)
            stored[fmt] = {"key": keys[fmt], "sha256": digest}
            del data
    if out_dir is None:
        files = {}
    plan = drawn.plan
    entry = index.append_event(
        LedgerEvent(
            actor=actor,
            action=AUDIT_COMPLETED,
            subject=audit_id,
            detail={
                "criteria": request.criteria.as_json(),
                "request": request.as_json(),
                "plan": plan.as_json(),
                "seed": drawn.sample.seed,
                "n": plan.sample_size,
                "lot_size": plan.lot_size,
                "lot_sha256": drawn.lot_sha256,
                "sample": list(drawn.sample.policy_nos),
                "sample_sha256": sample_digest(drawn.sample.policy_nos),
                "defects": report.defects,
                "verdict": report.verdict,
                "reports": stored,
                "redraw_of": redraw_of,
            },
        )
    )
    return AuditOutcome(report=report, files=files, keys=keys, entry=entry)


# --- reading an audit back, and redrawing it ---------------------------------------------------------------


@dataclass(frozen=True)
class RecordedAudit:
    """What an audit recorded about its draw, from its ledger event (or its archived JSON report)."""

    audit_id: str
    source: str  # "ledger" | "report"
    auditor: str
    at: datetime | None
    request: AuditRequest
    lot_size: int
    lot_sha256: str | None
    sample: tuple[str, ...]
    sample_sha256: str | None
    defects: int | None
    verdict: str | None


def recorded_audit(index: Index, store: ObjectStore, *, audit_id: str) -> RecordedAudit:
    """The audit's criteria, plan request and seed; ``AuditNotFound`` when nothing records it."""
    entry = next((e for e in index.ledger_entries(subject=audit_id) if e.action == AUDIT_COMPLETED), None)
    if entry is not None:
        d = entry.detail
        request = d.get("request") or {}
        return RecordedAudit(
            audit_id=audit_id,
            source="ledger",
            auditor=entry.actor,
            at=entry.at,
            request=AuditRequest(
                criteria=LotCriteria.from_json(d.get("criteria") or {}),
                level=request.get("level") or "II",
                aql=str(request.get("aql") or "2.5"),
                size=request.get("size"),
                seed=int(d["seed"]),
                stratify=request.get("stratify"),
            ),
            lot_size=int(d.get("lot_size") or 0),
            lot_sha256=d.get("lot_sha256"),
            sample=tuple(d.get("sample") or ()),
            sample_sha256=d.get("sample_sha256"),
            defects=d.get("defects"),
            verdict=d.get("verdict"),
        )
    try:
        data = json.loads(store.get(report_key(audit_id, "json")))
    except (ObjectMissing, ObjectCorrupt, ValueError) as e:
        raise AuditNotFound(
            f"no audit {audit_id} is recorded "
            f"(no {AUDIT_COMPLETED} ledger event, no readable archived report)",
            hint="audit ids look like AUD-20261123-054512-3fa9c1; the report names its id",
        ) from e
    plan = data.get("plan") or {}
    return RecordedAudit(
        audit_id=audit_id,
        source="report",
        auditor=str(data.get("auditor", "")),
        at=datetime.fromisoformat(data["created_at"]) if data.get("created_at") else None,
        request=AuditRequest(
            criteria=LotCriteria.from_json(data.get("criteria") or {}),
            level=plan.get("level") or "II",
            aql=str(plan.get("aql") or "2.5"),
            size=plan.get("sample_size") if plan.get("fixed_size") else None,
            seed=int(data["seed"]),
            stratify=data.get("stratify"),
        ),
        lot_size=int(data.get("lot_size") or 0),
        lot_sha256=data.get("lot_sha256"),
        sample=tuple(data.get("sample") or ()),
        sample_sha256=sample_digest(data.get("sample") or ()),
        defects=data.get("defects"),
        verdict=data.get("verdict"),
    )


@dataclass(frozen=True)
class Redraw:
    """A recorded audit drawn again: today's lot and sample, and whether they match what was recorded."""

    recorded: RecordedAudit
    drawn: Draw
    same_lot: bool
    same_sample: bool


def redraw(index: Index, recorded: RecordedAudit) -> Redraw:
    """Draw the recorded audit's sample again with its criteria, plan and seed."""
    drawn = draw(index, recorded.request)
    same_lot = (
        recorded.lot_sha256 == drawn.lot_sha256
        if recorded.lot_sha256
        else len(drawn.lot) == recorded.lot_size
    )
    expected = recorded.sample_sha256 or sample_digest(recorded.sample)
    return Redraw(
        recorded=recorded,
        drawn=drawn,
        same_lot=same_lot,
        same_sample=sample_digest(drawn.sample.policy_nos) == expected,
    )
