"""The contract's rules that JSON Schema cannot express (../shared/contract/README.md).

Each violation is a ``Reason`` naming the field (``applicant.id_no``, ``coverages[1].premium``,
``images[0].path``) and saying what is wrong, never repeating an ID number. The checks run on a record
that already parsed (``core.records``); cross-record rules (an endorsement's policy) get the
policy's state from the caller (``core.lifecycle``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from core import lifecycle
from core.lifecycle import PolicyState
from core.privacy import resident_id_problem, uscc_problem, vin_problem
from core.products import ProductRegistry
from core.records import Endorsement, Image, Party, Policy
from pipeline.images import ImageProblem, image_problem, resolve_image_path


@dataclass(frozen=True)
class Reason:
    """Why a record was rejected: the field, in the contract's dotted form, and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


# Unicode's control characters (general category Cc: U+0000-U+001F and U+007F-U+009F), less tab and
# newline. A pattern, not unicodedata.category for each character, which is slow on the thread that reads
# the batch (docs/performance.md); a test checks the two agree.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Unicode's format characters (category Cf, as of Unicode 14.0): invisible, yet they change what is
# printed. U+202E prints the rest of a line reversed on the sealed policy, U+200B splits a name unseen
# (issue 21, item 8). Variation selectors (Mn) and U+00B7 (Po) are not among them: names use both.
_FORMAT = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
_UNPRINTABLE = re.compile(f"{_CONTROL.pattern[:-1]}{_FORMAT.pattern[1:]}")


def _codes(characters: Iterable[str]) -> str:
    return ", ".join(f"U+{ord(c):04X}" for c in sorted(set(characters)))


def control_characters(data: Any, path: str = "") -> list[Reason]:
    """Characters that cannot be printed as written, in every text field, each reason naming the field.

    Control characters other than newline and tab cannot be printed (nor stored in .docx XML); format
    characters would print something other than what the record says, or hide part of it.
    """
    if isinstance(data, str):
        if not _UNPRINTABLE.search(data):
            return []
        reasons = []
        if control := _CONTROL.findall(data):
            reasons.append(Reason(path or "record", f"contains control characters ({_codes(control)})"))
        if invisible := _FORMAT.findall(data):
            reasons.append(
                Reason(
                    path or "record",
                    f"contains invisible format characters ({_codes(invisible)}) that change what is printed",
                )
            )
        return reasons
    if isinstance(data, Mapping):
        return [r for k, v in data.items() for r in control_characters(v, f"{path}.{k}" if path else str(k))]
    if isinstance(data, list | tuple):
        return [r for i, v in enumerate(data) for r in control_characters(v, f"{path}[{i}]")]
    return []


def _party(party: Party, field: str) -> list[Reason]:
    problem = None
    if party.id_type == "resident_id":
        problem = resident_id_problem(party.id_no)
    elif party.id_type == "uscc":
        problem = uscc_problem(party.id_no)
    return [Reason(f"{field}.id_no", problem)] if problem else []


def _images(images: Iterable[Image], batch_dir: Path) -> list[Reason]:
    reasons = []
    for i, image in enumerate(images):
        if image.kind == "other" and not (image.label or "").strip():
            reasons.append(Reason(f"images[{i}].label", "an image of kind 'other' needs a label"))
        try:
            real = resolve_image_path(batch_dir, image.path)
        except ImageProblem as e:
            reasons.append(Reason(f"images[{i}].path", str(e)))
            continue
        problem = image_problem(real)
        if problem:
            reasons.append(Reason(f"images[{i}].path", problem))
    return reasons


# 倒签单 (DOMAIN.md, "Controls"; contract README): cover never starts before underwriting approved it.
BACKDATED = "backdated (倒签单): {what} is earlier than underwriting.approved_at"

_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")


def _document_numbers(policy: Policy) -> list[Reason]:
    """A document number goes into object keys and URLs: it must not carry a party's ID or phone number.

    Any arrangement of capitals and digits is a document number (contract README); only the record's
    own personal data, compared exactly, makes one unusable as a key.
    """
    values = [p.id_no for p in (policy.applicant, policy.insured, *policy.beneficiaries)]
    values += [p.phone for p in (policy.applicant, policy.insured) if p.phone]
    personal = [v for v in (_NOT_ALNUM.sub("", v).upper() for v in values) if len(v) >= 9]
    # record_id is no key, but the index and the report hold it in clear (DESIGN.md invariant 9)
    return [
        Reason(name, "contains a party's ID or phone number: a document number must carry no personal data")
        for name in ("record_id", "policy_no", "proposal_no")
        if any(v in _NOT_ALNUM.sub("", getattr(policy, name)).upper() for v in personal)
    ]


def check_policy(policy: Policy, *, registry: ProductRegistry, batch_dir: Path) -> list[Reason]:
    """Every contract rule for one policy record; an empty list means it may be issued."""
    reasons: list[Reason] = []
    reasons += _party(policy.applicant, "applicant")
    reasons += _party(policy.insured, "insured")
    for i, b in enumerate(policy.beneficiaries):
        if b.id_type == "resident_id" and (problem := resident_id_problem(b.id_no)):
            reasons.append(Reason(f"beneficiaries[{i}].id_no", problem))
        if b.share_percent <= 0:
            reasons.append(Reason(f"beneficiaries[{i}].share_percent", "must be more than 0"))
    if policy.beneficiaries:
        total_share = sum((b.share_percent for b in policy.beneficiaries), Decimal(0))
        if total_share != 100:
            reasons.append(Reason("beneficiaries", f"shares add up to {total_share}, not 100"))

    for i, c in enumerate(policy.coverages):
        if c.sum_insured <= 0:
            reasons.append(Reason(f"coverages[{i}].sum_insured", "must be positive"))
        if c.premium < 0:
            reasons.append(Reason(f"coverages[{i}].premium", "must not be negative"))
    total = sum((c.premium for c in policy.coverages), Decimal(0))
    if policy.total_premium != total:
        reasons.append(
            Reason("total_premium", f"is {policy.total_premium} but the coverage premiums add up to {total}")
        )

    if policy.period.start >= policy.period.end:
        reasons.append(Reason("period.end", "must be after period.start"))
    if policy.period.start < policy.underwriting.approved_at:
        reasons.append(Reason("period.start", BACKDATED.format(what="period.start")))
    reasons += _document_numbers(policy)

    product = registry.products.get(policy.product_code)
    if product is None:
        known = ", ".join(sorted(registry.products))
        reasons.append(Reason("product_code", f"unknown product {policy.product_code} (known: {known})"))
    else:
        seen: set[str] = set()
        for i, code in enumerate(policy.clauses):
            if code in seen:
                reasons.append(Reason(f"clauses[{i}]", f"clause {code} is listed twice"))
            elif code not in product.clause_codes:
                reasons.append(Reason(f"clauses[{i}]", f"clause {code} does not exist for {product.code}"))
            seen.add(code)
        for section in product.requires:
            if getattr(policy, section) is None:
                reasons.append(Reason(section, f"required for product {product.code}"))

    if policy.vehicle is not None and (problem := vin_problem(policy.vehicle.vin)):
        reasons.append(Reason("vehicle.vin", problem))

    reasons += _images(policy.images, batch_dir)
    return reasons


def check_endorsement(
    endorsement: Endorsement, *, state: PolicyState | None, registry: ProductRegistry, batch_dir: Path
) -> list[Reason]:
    """Contract rules for an endorsement; ``state`` is the policy it changes, as it stands after the
    endorsements archived or accepted earlier in the batch (``None``: no such policy)."""
    reasons: list[Reason] = []
    if endorsement.effective_at < endorsement.underwriting.approved_at:
        reasons.append(Reason("effective_at", BACKDATED.format(what="effective_at")))
    if state is None:
        if endorsement.clauses_added is not None and endorsement.type != "add_clauses":
            reasons.append(Reason("clauses_added", "is only for an endorsement of type add_clauses"))
        reasons.append(
            Reason(
                "policy_no",
                f"policy {endorsement.policy_no} is neither archived nor earlier in this batch",
            )
        )
    else:
        policy = state.policy
        if not (policy.period.start <= endorsement.effective_at < policy.period.end):
            reasons.append(Reason("effective_at", "is outside the policy's period of insurance"))
        codes = registry.clause_codes(policy.product_code)
        reasons += [Reason(f, m) for f, m in lifecycle.problems(state, endorsement, clause_codes=codes)]
    reasons += _images(endorsement.images, batch_dir)
    return reasons
