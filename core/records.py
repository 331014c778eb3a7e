"""The approved issuance record, as the core system hands it over (../shared/contract/, fixed).

The models mirror ``record.schema.json`` field for field (``extra="forbid"``: an unknown field is an
error, never silently dropped). Parsing is strict and goes through JSON semantics, so a number where
the contract wants a decimal string is refused: no floats anywhere near money.

Rules the schema cannot express (check digits, sums, cross-field rules) live in ``pipeline.validate``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

_DECIMAL_RE = re.compile(r"^-?[0-9]+(\.[0-9]{1,2})?$")


def _parse_amount(value: Any) -> Decimal:
    # The contract carries money as strings ("3456.78"): a JSON number may already have lost a cent.
    if not isinstance(value, str):
        raise ValueError('an amount is a string such as "3456.78", not a number')
    if not _DECIMAL_RE.match(value):
        raise ValueError("an amount has digits and at most two decimal places, such as 3456.78")
    return Decimal(value)


Amount = Annotated[Decimal, PlainValidator(_parse_amount), PlainSerializer(lambda d: str(d), return_type=str)]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,39}$")]
DocNo = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{8,32}$")]


def _text(min_length: int = 0, max_length: int | None = None) -> Any:
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Branch(_Model):
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
    name: _text(1, 60)


PartyType = Literal["person", "organization"]
IdType = Literal["resident_id", "passport", "hk_macao_permit", "taiwan_permit", "uscc", "other"]


class Party(_Model):
    name: _text(1, 100)
    party_type: PartyType
    id_type: IdType
    id_no: _text(1, 40)
    address: _text(0, 200) | None = None
    phone: _text(0, 30) | None = None


class Beneficiary(_Model):
    name: _text(1, 100)
    id_type: Literal["resident_id", "passport", "hk_macao_permit", "taiwan_permit", "other"]
    id_no: _text(1, 40)
    relation: _text(1, 20)
    share_percent: Amount
    address: _text(1, 200) | None = None  # contract v1.1


class Coverage(_Model):
    code: Code
    name: _text(1, 60)
    sum_insured: Amount
    premium: Amount
    deductible: _text(0, 60) | None = None


class Vehicle(_Model):
    plate: _text(7, 8)
    vin: Annotated[str, StringConstraints(pattern=r"^[A-HJ-NPR-Z0-9]{17}$")]
    engine_no: _text(1, 30)
    brand_model: _text(1, 60)
    registered_on: date
    usage: _text(1, 20)
    seats: Annotated[int, Field(ge=1, le=99)] | None = None


class Property(_Model):
    address: _text(1, 200)
    construction: _text(0, 40) | None = None
    occupancy: _text(0, 40) | None = None


ImageKind = Literal[
    "id_front",
    "id_back",
    "business_license",
    "vehicle_license",
    "driving_license",
    "exemption_notice",
    "applicant_declaration",
    "other",
]

IMAGE_KIND_LABELS: dict[str, str] = {
    "id_front": "身份证人像面",
    "id_back": "身份证国徽面",
    "business_license": "营业执照",
    "vehicle_license": "机动车行驶证",
    "driving_license": "驾驶证",
    "exemption_notice": "免责事项说明书（签字页）",
    "applicant_declaration": "投保人声明页",
    "other": "其他",
}


class Image(_Model):
    kind: ImageKind
    path: _text(1, 260)
    label: _text(0, 40) | None = None


class Approval(_Model):
    approved_by: _text(1, 20)
    approved_at: AwareDatetime


class Period(_Model):
    start: AwareDatetime
    end: AwareDatetime


class Policy(_Model):
    """保险单: one approved policy."""

    kind: Literal["policy"]
    record_id: _text(1, 64)
    policy_no: DocNo
    proposal_no: DocNo
    print_serial: _text(0, 32) | None = None
    product_code: Code
    branch: Branch
    applicant: Party
    insured: Party
    beneficiaries: tuple[Beneficiary, ...] = ()
    period: Period
    coverages: Annotated[tuple[Coverage, ...], Field(min_length=1)]
    total_premium: Amount
    currency: Literal["CNY"] = "CNY"
    special_terms: tuple[_text(0, 500), ...] = ()
    clauses: Annotated[tuple[Code, ...], Field(min_length=1)]
    vehicle: Vehicle | None = None
    property: Property | None = None
    underwriting: Approval
    issued_by: _text(1, 20)
    issued_at: AwareDatetime | None = None
    images: tuple[Image, ...] = ()


class Change(_Model):
    field: _text(1, 60)
    label: _text(1, 40)
    old: _text(0, 200)
    new: _text(0, 200)


EndorsementType = Literal["change", "surrender", "cancel", "add_clauses", "reinstate"]


class Endorsement(_Model):
    """批单: a change to an archived policy."""

    kind: Literal["endorsement"]
    record_id: _text(1, 64)
    endorsement_no: DocNo
    policy_no: DocNo
    print_serial: _text(0, 32) | None = None
    effective_at: AwareDatetime
    changes: Annotated[tuple[Change, ...], Field(min_length=1)]
    premium_delta: Amount
    text: _text(1, 2000)
    underwriting: Approval
    issued_by: _text(1, 20)
    issued_at: AwareDatetime | None = None
    images: tuple[Image, ...] = ()
    # contract v1.1: what kind of endorsement, and the clauses an ``add_clauses`` one attaches
    type: EndorsementType = "change"
    clauses_added: Annotated[tuple[Code, ...], Field(min_length=1)] | None = None


Record = Annotated[Policy | Endorsement, Field(discriminator="kind")]
_RECORD = TypeAdapter(Record)

# Friendlier words for pydantic's most common complaints; the field path already says where.
_MESSAGES = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field (not in the record contract)",
    "union_tag_invalid": 'must be "policy" or "endorsement"',
    "union_tag_not_found": 'missing: must be "policy" or "endorsement"',
    "timezone_aware": "must carry a UTC offset, e.g. 2026-12-01T00:00:00+08:00",
}


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("coverages", 0, "premium")`` → ``coverages[0].premium``, the form reasons use."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _shown_key(part)
    return out


def _shown_key(key: str) -> str:
    # an unknown key is the sender's text: quoted with escapes if it holds what would garble a report or
    # log line (a line break, U+202E), cut short if long
    if len(key) <= 64 and key.isprintable():
        return key
    return repr(key[:64] + ("…" if len(key) > 64 else ""))


def parse_record(data: dict[str, Any]) -> tuple[Policy | Endorsement | None, list[tuple[str, str]]]:
    """Parse one record; return it, or ``None`` and the reasons as ``(field, message)``.

    Messages never echo the offending value (it may be an ID number).
    """
    try:
        return _RECORD.validate_json(json.dumps(data, ensure_ascii=False)), []
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        deeper = {tuple(e["loc"][:-1]) for e in errors if e["loc"]}
        reasons: list[tuple[str, str]] = []
        for err in errors:
            loc = tuple(err["loc"])
            if err["type"] == "too_short" and any(
                d[: len(loc)] == loc and len(d) >= len(loc) for d in deeper
            ):
                continue  # "at least 1 item" only because the item itself failed: say that instead
            if loc and loc[0] in ("policy", "endorsement"):
                loc = loc[1:]  # the discriminator's branch name is not a field
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = ("kind",)
            message = _MESSAGES.get(err["type"], err["msg"])
            if message.startswith("Value error, "):
                message = message.removeprefix("Value error, ")
            reasons.append((field_path(loc) or "record", message))
        return None, reasons


@dataclass(frozen=True)
class RawRecord:
    """One input record before parsing: its line number and either its data or why it is unusable."""

    line: int
    data: dict[str, Any] | None
    problem: str | None = None


def content_hash(data: dict[str, Any]) -> str:
    """Hash of a record's content, independent of key order: same ``record_id`` + same hash = same record."""
    canonical = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
