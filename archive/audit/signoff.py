"""What an auditor adds to an audit by hand: findings on sampled policies (e.g. 未签字, a notice not
signed) and the sign-off of the verdict, each a ledger event on the audit (subject: the audit id).

How manual findings count (the rule ``AuditReport.defects`` follows for checks): a sampled policy is
defective when any of its checks failed *or* an auditor recorded any finding on it, and it counts once
however many of either it has. The lot is judged again with that count against the same Ac/Re. The
severity is recorded for the reader; every manual finding makes its policy defective, as any failed
check does whatever the check.

The sign-off is the auditor's decision on the lot (accept or reject, with a comment; a decision other
than the verdict the counts give needs a comment saying why). Once signed off, an audit takes no more
findings. The sign-off is archived in a folder of its own beside the reports,
``audits/{audit_id}/signed-{time}/``: ``signoff.json`` (the decision, the counts, the manual findings, the
reports it completes by key and SHA-256) and the reports written again with the manual findings and the
sign-off (``report.{html,json,csv}``; ``archive.audit.report``). The store is immutable: the reports
written when the audit ran stay as they were, and a sign-off cut short before its ledger event leaves a
folder no event names, never a key a retry would have to overwrite. The event ``audit.signed_off`` pins
every file of the folder by its SHA-256.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archive.audit.checks import PROPERTIES
from archive.audit.sampling import ACCEPT, REJECT, SamplingPlan
from archive.index import LedgerEntry

AUDIT_FINDING = "audit.finding"
AUDIT_SIGNED_OFF = "audit.signed_off"
SIGNOFF_FORMAT = "issuance-audit-signoff/1"
SEVERITIES = {"critical": "严重 critical", "major": "一般 major", "minor": "轻微 minor"}
DECISIONS = (ACCEPT, REJECT)
MAX_TEXT = 500


def signed_key(audit_id: str, at: datetime, name: str) -> str:
    """Where a file of the sign-off at ``at`` is archived: ``audits/{audit_id}/signed-{time}/{name}``."""
    return f"audits/{audit_id}/signed-{at.astimezone(UTC):%Y%m%d-%H%M%S-%f}/{name}"


@dataclass(frozen=True)
class ManualFinding:
    """One finding an auditor recorded on one sampled policy."""

    seq: int  # the ledger event's sequence number: the finding's identity
    at: datetime
    auditor: str
    policy_no: str
    prop: str  # one of the four properties (四性)
    check: str | None  # the check it concerns, when one does
    severity: str
    text: str
    page: int | None  # 1-based page of the archive copy, when it concerns one

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "auditor": self.auditor,
            "policy_no": self.policy_no,
            "property": self.prop,
            "check": self.check,
            "severity": self.severity,
            "text": self.text,
            "page": self.page,
        }


@dataclass(frozen=True)
class SignOff:
    """The auditor's decision on the lot, as recorded."""

    seq: int
    at: datetime
    auditor: str
    decision: str  # accept | reject
    verdict: str  # what the counts gave when signed off
    defects: int
    comment: str
    key: str | None  # signoff.json's
    sha256: str | None
    reports: dict[str, Any]  # the reports written again at sign-off: format -> {"key", "sha256"}


def finding_detail(
    *, policy_no: str, position: int, prop: str, check: str | None, severity: str, text: str, page: int | None
) -> dict[str, Any]:
    """The ``audit.finding`` event's detail; ``ValueError`` for what an auditor cannot have meant.

    ``position`` (1-based place in the sample) is recorded beside the number: the ledger masks what looks
    like an ID number in a detail, and some policy numbers of 18 digits do.
    """
    text = " ".join(text.split())
    if prop not in PROPERTIES:
        raise ValueError(f"a finding belongs to one of the four properties {', '.join(PROPERTIES)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity is one of {', '.join(SEVERITIES)}")
    if not text:
        raise ValueError("say what was found (e.g. 免责事项说明书未签字 the notice is not signed)")
    if len(text) > MAX_TEXT:
        raise ValueError(f"a finding is at most {MAX_TEXT} characters")
    if page is not None and page < 1:
        raise ValueError("a page number starts at 1")
    return {
        "policy_no": policy_no,
        "position": position,
        "property": prop,
        "check": check,
        "severity": severity,
        "text": text,
        "page": page,
    }


def manual_findings(entries: Iterable[LedgerEntry], sample: Sequence[str]) -> list[ManualFinding]:
    """The findings among an audit's ledger events, oldest first; each names its policy by its place in
    ``sample`` (see ``finding_detail``)."""
    found = []
    for e in entries:
        if e.action != AUDIT_FINDING:
            continue
        d = e.detail
        position = d.get("position")
        if isinstance(position, int) and 1 <= position <= len(sample):
            policy_no = sample[position - 1]
        else:
            policy_no = str(d.get("policy_no", ""))
        found.append(
            ManualFinding(
                seq=e.seq,
                at=e.at,
                auditor=e.actor,
                policy_no=policy_no,
                prop=str(d.get("property", "")),
                check=d.get("check"),
                severity=str(d.get("severity", "")),
                text=str(d.get("text", "")),
                page=d.get("page"),
            )
        )
    return found


def signed_off(entries: Iterable[LedgerEntry]) -> SignOff | None:
    """The audit's sign-off among its ledger events (the first: there is one at most)."""
    for e in entries:
        if e.action == AUDIT_SIGNED_OFF:
            d = e.detail
            return SignOff(
                seq=e.seq,
                at=e.at,
                auditor=e.actor,
                decision=str(d.get("decision", "")),
                verdict=str(d.get("verdict", "")),
                defects=int(d.get("defects") or 0),
                comment=str(d.get("comment", "")),
                key=d.get("key"),
                sha256=d.get("sha256"),
                reports=dict(d.get("reports") or {}),
            )
    return None


def judged(
    plan: SamplingPlan, *, failed_checks: Iterable[str], findings: Iterable[ManualFinding]
) -> tuple[frozenset[str], str]:
    """The defective policies (a failed check or a manual finding; each counts once) and the verdict."""
    defective = frozenset(failed_checks) | {f.policy_no for f in findings}
    return defective, plan.verdict(len(defective))


def check_decision(decision: str, comment: str, *, verdict: str) -> str:
    """The comment as kept; ``ValueError`` for an unknown decision or an override without a reason."""
    comment = " ".join(comment.split())
    if decision not in DECISIONS:
        raise ValueError(f"the decision is {ACCEPT} or {REJECT}")
    if len(comment) > MAX_TEXT:
        raise ValueError(f"a comment is at most {MAX_TEXT} characters")
    if decision != verdict and not comment:
        raise ValueError(
            f"the counts give {verdict}: a decision to {decision} the lot needs a comment saying why"
        )
    return comment


def signoff_bytes(
    *,
    audit_id: str,
    auditor: str,
    at: datetime,
    decision: str,
    comment: str,
    plan: SamplingPlan,
    failed_checks: Sequence[str],
    findings: Sequence[ManualFinding],
    reports: dict[str, Any],
    signed_reports: dict[str, Any],
) -> bytes:
    """``signoff.json``: the decision, the counts it rests on, the manual findings, the reports it
    completes (their keys and SHA-256 as the audit recorded them) and those written again with it."""
    defective, verdict = judged(plan, failed_checks=failed_checks, findings=findings)
    data = {
        "format": SIGNOFF_FORMAT,
        "audit_id": audit_id,
        "signed_off_by": auditor,
        "signed_off_at": at.isoformat(),
        "decision": decision,
        "comment": comment,
        "verdict": verdict,
        "sample_size": plan.sample_size,
        "ac": plan.ac,
        "re": plan.re,
        "defects": len(defective),
        "defective": sorted(defective),
        "failed_checks": sorted(set(failed_checks)),
        "manual_findings": [f.as_json() for f in findings],
        "reports": reports,
        "signed_reports": signed_reports,
    }
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
