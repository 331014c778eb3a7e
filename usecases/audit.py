"""Auditors' work: a sampled audit of the archive, a redraw of a recorded one, orphans, one policy's
checks. The request types (``AuditRequest``, ``LotCriteria``) are the archive's, re-exported here."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from archive import audit
from archive.audit import AuditRequest, Draw, LotCriteria, new_audit_id
from archive.audit.checks import Auditor, PolicyResult
from core.config import Settings
from core.errors import UsageError
from core.products import DEFAULT_TEMPLATES_DIR, load_registry
from stamps import load_seal_registry
from stamps.keys import load_certificates
from usecases.identity import AUDIT_ROLES, require_user
from usecases.session import Archive

__all__ = [
    "AuditRequest",
    "Draw",
    "LotCriteria",
    "PolicyResult",
    "auditing",
    "new_audit_id",
    "orphan_findings",
    "redraw_audit",
    "sampled_audit",
    "verify_policy",
]


@contextlib.contextmanager
def auditing(settings: Settings, *, seal_dpi: int = 150, thumbnails: bool = True) -> Iterator[Auditor]:
    """An auditor on the archive of ``settings``, with the products and seals it checks against."""
    with Archive(settings) as archive:
        yield Auditor(
            store=archive.store,
            index=archive.index,
            products=load_registry(settings.templates_dir or DEFAULT_TEMPLATES_DIR),
            seals=load_seal_registry(),
            seal_dpi=seal_dpi,
            thumbnail_width=84 if thumbnails else 0,
            trust_roots=load_certificates(settings.trust_roots),
        )


def sampled_audit(
    settings: Settings,
    request: Any,
    *,
    actor: str | None,
    out_dir: Path,
    workers: int,
    audit_id: str,
    now: datetime,
    redraw_of: str | None = None,
    on_result: Callable[[PolicyResult], None] | None = None,
    on_drawn: Callable[[Draw], None] | None = None,
    seal_dpi: int = 150,
    thumbnails: bool = True,
) -> Any:
    """Draw the sample (ISO 2859-1), check every policy in it, write and archive the reports. The
    auditor (``actor``, default: the operator), whom the ledger names, must be a known, enabled user
    with role auditor (else ``NotPermitted``, nothing drawn or recorded)."""
    user = require_user(settings, actor or settings.operator, roles=AUDIT_ROLES, action="run an audit")
    with auditing(settings, seal_dpi=seal_dpi, thumbnails=thumbnails) as auditor:
        return audit.run_audit(
            auditor=auditor,
            request=request,
            actor=user.name,
            out_dir=out_dir,
            workers=workers,
            on_result=on_result,
            on_drawn=on_drawn,
            redraw_of=redraw_of,
            audit_id=audit_id,
            now=now,
        )


@dataclass(frozen=True)
class Redrawn:
    recorded: Any
    again: Any


def redraw_audit(settings: Settings, audit_id: str) -> Redrawn:
    """A recorded audit's sample drawn again from its seed: whether the lot and the sample are the same."""
    with Archive(settings) as archive:
        recorded = audit.recorded_audit(archive.index, archive.store, audit_id=audit_id)
        return Redrawn(recorded, audit.redraw(archive.index, recorded))


def orphan_findings(settings: Settings) -> list[Any]:
    """Objects without an index row, rows without objects, unfinished writes (``audit --orphans``)."""
    with Archive(settings) as archive:
        return audit.sanity_check(archive.store, archive.index)


def verify_policy(
    settings: Settings, policy_no: str, *, seal_dpi: int = 150, thumbnails: bool = True
) -> tuple[PolicyResult, list[str]]:
    """Every check of one archived policy, and the whole ledger chain's problems."""
    with auditing(settings, seal_dpi=seal_dpi, thumbnails=thumbnails) as auditor:
        if auditor.index.policy_row(policy_no) is None:
            raise UsageError(
                f"policy {policy_no} is not in the archive", hint="look it up with issuance find"
            )
        return auditor.check_policy(policy_no), auditor.ledger_problems()
