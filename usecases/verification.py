"""Answering a verification code (电子保单验真): ``issuance verify --code``, later the desk's public page.

The QR code on page 1 of an issued document leads to ``<public URL>/verify/<code>``; the code names one
version of one policy (``core.verification``). The answer says whether that is a document this centre
issued, which policy and version it is, and the policy's state, showing what anyone holding the paper
may see: names masked, never an ID number, a phone or an address.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from archive.index import CodedVersion, Index
from core import lifecycle
from core.config import Settings
from core.errors import UnknownVerificationCode
from core.privacy import mask_name
from core.products import DEFAULT_TEMPLATES_DIR, load_registry
from core.verification import normalise_code
from usecases.session import Archive

__all__ = ["KIND_TEXT", "STATUS_TEXT", "VerifiedDocument", "VoidedSerial", "verify_code"]

CHINA = ZoneInfo("Asia/Shanghai")
# the policy's state as the answer names it (surrender and cancellation: contract v1.1)
STATUS_TEXT = {
    "in_force": "有效 in force",
    "not_yet_in_force": "未起保 not yet in force",
    "expired": "已满期 expired",
    "surrendered": "已退保 surrendered",
    "cancelled": "已注销 cancelled",
}
KIND_TEXT = {
    "issue": "保险单 policy",
    "endorsement": "批单 endorsement",
    "supplement": "补充影像 supplement",
    "reissue": "补发 reissue",
}


@dataclass(frozen=True)
class VoidedSerial:
    """A print serial (单证) a reissue voided: paper printed on it is no longer the policy's."""

    serial: str
    voided_at: datetime
    reissue_version: int


@dataclass(frozen=True)
class VerifiedDocument:
    """What a verification code names: an issued version of a policy, and the policy's state."""

    code: str
    policy_no: str
    product_code: str
    product_name: str
    branch_code: str
    branch_name: str
    period_start: datetime
    period_end: datetime  # exclusive, as in the record contract
    version: int
    kind: str
    endorsement_no: str | None
    issued_at: datetime
    current_version: int
    status: str  # a key of STATUS_TEXT
    applicant: str  # masked
    insured: str  # masked
    reissues: int
    voided_serials: tuple[VoidedSerial, ...]

    @property
    def is_current(self) -> bool:
        return self.version == self.current_version

    def as_json(self) -> dict[str, Any]:
        return {
            "verified": True,
            "code": self.code,
            "policy_no": self.policy_no,
            "product_code": self.product_code,
            "product_name": self.product_name,
            "branch_code": self.branch_code,
            "branch_name": self.branch_name,
            "period_start": self.period_start.astimezone(CHINA).isoformat(),
            "period_end": self.period_end.astimezone(CHINA).isoformat(),
            "version": self.version,
            "kind": self.kind,
            "endorsement_no": self.endorsement_no,
            "issued_at": self.issued_at.astimezone(CHINA).isoformat(),
            "current_version": self.current_version,
            "is_current": self.is_current,
            "status": self.status,
            "applicant": self.applicant,
            "insured": self.insured,
            "reissues": self.reissues,
            "voided_serials": [
                {
                    "serial": v.serial,
                    "voided_at": v.voided_at.astimezone(CHINA).isoformat(),
                    "reissue_version": v.reissue_version,
                }
                for v in self.voided_serials
            ],
        }


def verify_code(
    settings: Settings, code: str, *, now: datetime | None = None, index: Index | None = None
) -> VerifiedDocument:
    """The issued document version ``code`` names; ``UnknownVerificationCode`` when none has it.
    ``index``: an open index to ask (the desk's), else one is opened for this answer."""
    wanted = normalise_code(code)
    if wanted is None:
        raise UnknownVerificationCode(
            "that is not a verification code",
            hint="a code is 20 letters and digits 2-7, the end of the URL in the document's QR code",
        )
    with contextlib.ExitStack() as stack:
        if index is None:
            index = stack.enter_context(Archive(settings)).index
        found = index.version_by_code(wanted)
        if found is None:
            raise UnknownVerificationCode(
                f"no document issued by this centre has the verification code {wanted}",
                hint="check the code against the QR code; a document without a known code is not genuine",
            )
        reissues = index.reissues(found.policy_no)
    registry = load_registry(settings.templates_dir or DEFAULT_TEMPLATES_DIR)
    product = registry.products.get(found.product_code)
    return VerifiedDocument(
        code=wanted,
        policy_no=found.policy_no,
        product_code=found.product_code,
        product_name=product.name if product is not None else found.product_code,
        branch_code=found.branch_code,
        branch_name=found.branch_name,
        period_start=found.period_start,
        period_end=found.period_end,
        version=found.version,
        kind=found.kind,
        endorsement_no=found.endorsement_no,
        issued_at=found.created_at,
        current_version=found.current_version,
        status=_status(found, now or datetime.now(UTC)),
        applicant=mask_name(found.applicant_name),
        insured=mask_name(found.insured_name),
        reissues=len(reissues),
        voided_serials=tuple(
            VoidedSerial(r.old_serial, _utc(r.reissued_at), r.version) for r in reissues if r.old_serial
        ),
    )


def _status(found: CodedVersion, now: datetime) -> str:
    start, end = found.period_start, found.period_end
    if found.status == lifecycle.CANCELLED:
        return "cancelled"  # void from inception
    if found.status == lifecycle.SURRENDERED and (found.status_since is None or now >= found.status_since):
        return "surrendered"  # ended from the surrender's effective_at; in force until then
    if now < start:
        return "not_yet_in_force"
    if now >= end:
        return "expired"
    return "in_force"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
