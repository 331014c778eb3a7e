"""A policy's life after issue: its state, what each endorsement type may do to it, and what it does.

Contract v1.1 (../shared/contract/README.md, "v1.1 endorsement types"; DOMAIN.md, "The policy
lifecycle"): ``change`` 一般批改, ``surrender`` 退保 (ends the policy from ``effective_at``), ``cancel`` 注销
(void from inception), ``add_clauses`` 增加附加险 and ``reinstate`` 复效. A policy's state is its issued
record with every endorsement since applied in order (``PolicyState.of`` then ``after`` for each);
``problems`` says why an endorsement may not follow a state, as ``(field, message)`` pairs that never
echo a value (it may be an ID number or an address).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.records import Endorsement, Policy, parse_record

IN_FORCE, SURRENDERED, CANCELLED = "issued", "surrendered", "cancelled"

STATUS_WORDS = {IN_FORCE: "有效", SURRENDERED: "已退保", CANCELLED: "已注销"}

# Fields the archive looks policies up by (contract README, "changes[].field"): an endorsement that
# changes one must carry its current value as ``old``, and the policy stays findable by both values.
# Values of the hashed ones are kept only as keyed hashes (DESIGN.md invariant 9).
LOOKUP_FIELDS = {
    "applicant.name": "clear",
    "insured.name": "clear",
    "vehicle.plate": "clear",
    "vehicle.vin": "clear",
    "applicant.id_no": "hashed",
    "insured.id_no": "hashed",
    "property.address": "hashed",
}

FIELD_WORDS = {
    "applicant.name": "投保人名称",
    "insured.name": "被保险人名称",
    "vehicle.plate": "号牌号码",
    "vehicle.vin": "车架号",
    "applicant.id_no": "投保人证件号码",
    "insured.id_no": "被保险人证件号码",
    "property.address": "标的地址",
}

# After a surrender or a cancellation only these may follow (contract README).
_AFTER_END = ("change", "add_clauses", "reinstate")


@dataclass(frozen=True)
class PolicyState:
    """A policy as it stands after its endorsements so far."""

    policy: Policy  # the record with every change applied: the current names, plate, address, …
    status: str = IN_FORCE
    status_since: datetime | None = None
    status_by: str | None = None  # the endorsement number that set the status
    premium: Decimal = Decimal(0)  # total premium including every endorsement's premium_delta
    clauses: tuple[str, ...] = ()  # every clause attached: the policy's and those added since

    @classmethod
    def of(cls, policy: Policy) -> PolicyState:
        return cls(policy=policy, premium=policy.total_premium, clauses=tuple(policy.clauses))

    @property
    def ended(self) -> bool:
        return self.status in (SURRENDERED, CANCELLED)

    def status_words(self) -> str:
        """``已退保 surrendered by endorsement E…``: a refusal names the status and what set it."""
        return status_words(self.status) + (f" by endorsement {self.status_by}" if self.status_by else "")


def status_words(status: str) -> str:
    """``已退保 surrendered``: the status as the centre's people read it."""
    return f"{STATUS_WORDS.get(status, status)} {status}"


def not_reissued(policy_no: str, status: str, status_by: str | None) -> str:
    """Why a surrendered or cancelled policy is not reissued (DOMAIN.md: never reissued as in force)."""
    by = f" by endorsement {status_by}" if status_by else ""
    return (
        f"policy {policy_no} is {status_words(status)}{by}; a {status} policy is never reissued as in force"
    )


def _lookup(data: Any, path: str) -> tuple[bool, Any]:
    """``(found, value)`` for a dotted path (``vehicle.plate``, ``beneficiaries.0.name``) in a record."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _assign(data: Any, path: str, value: str) -> None:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def changed(policy: Policy, endorsement: Endorsement) -> tuple[Policy | None, list[tuple[str, str]]]:
    """The policy with the endorsement's changes applied, or ``None`` and why not.

    A change whose ``field`` names no field of the policy (a label such as a coverage wording the core
    system keeps elsewhere) changes nothing here; one that names a field sets it, and the result must
    still be a valid record. A looked-up field must carry the current value as ``old``.
    """
    data = policy.model_dump(mode="json")
    problems: list[tuple[str, str]] = []
    applied = False
    for i, change in enumerate(endorsement.changes):
        found, value = _lookup(data, change.field)
        if change.field in LOOKUP_FIELDS:
            if not found or not isinstance(value, str):
                problems.append((f"changes[{i}].field", f"the policy has no {change.field} to change"))
                continue
            if not _same(change.old, value):
                problems.append(
                    (
                        f"changes[{i}].old",
                        f"is not the policy's current {change.field} (an indexed field: old must be "
                        "the value the archive holds now)",
                    )
                )
                continue
        if found and (value is None or isinstance(value, str)):  # a section or a list is not set whole
            _assign(data, change.field, change.new)
            applied = True
    if problems:
        return None, problems
    if not applied:
        return policy, []
    result, reasons = parse_record(data)
    if not isinstance(result, Policy) or reasons:
        by_field = {c.field: i for i, c in enumerate(endorsement.changes)}
        out = []
        for field, message in reasons:
            i = by_field.get(field.replace("[", ".").replace("]", ""))
            out.append((f"changes[{i}].new" if i is not None else "changes", f"{field}: {message}"))
        return None, out or [("changes", "the changed policy is not a valid record")]
    return result, []


def problems(
    state: PolicyState, endorsement: Endorsement, *, clause_codes: Collection[str]
) -> list[tuple[str, str]]:
    """Why ``endorsement`` may not follow ``state`` (contract v1.1); empty when it may.

    ``clause_codes``: every clause code that exists for the policy's product.
    """
    out: list[tuple[str, str]] = []
    kind = endorsement.type
    policy = state.policy
    if endorsement.clauses_added is not None and kind != "add_clauses":
        out.append(("clauses_added", "is only for an endorsement of type add_clauses"))
    if state.ended and kind not in _AFTER_END:
        out.append(
            (
                "type",
                f"a {kind} may not follow: the policy is {state.status_words()} "
                f"(only {', '.join(_AFTER_END)} may)",
            )
        )
    if kind == "surrender":
        if endorsement.premium_delta > 0:
            out.append(("premium_delta", "a surrender refunds premium: must be 0 or less"))
    elif kind == "cancel":
        if endorsement.premium_delta != -state.premium:
            out.append(
                (
                    "premium_delta",
                    f"a cancellation refunds the whole premium: must be -{state.premium} (the total "
                    "premium with earlier endorsements)",
                )
            )
    elif kind == "add_clauses":
        if not endorsement.clauses_added:
            out.append(("clauses_added", "required for an endorsement of type add_clauses"))
        for i, code in enumerate(endorsement.clauses_added or ()):
            if code not in clause_codes:
                out.append((f"clauses_added[{i}]", f"clause {code} does not exist for {policy.product_code}"))
            elif code in state.clauses:
                out.append((f"clauses_added[{i}]", f"clause {code} is attached to the policy already"))
    elif kind == "reinstate" and state.status != SURRENDERED:
        out.append(
            ("type", f"only a surrendered policy can be reinstated; this one is {status_words(state.status)}")
        )
    _, change_problems = changed(policy, endorsement)
    return out + change_problems


def after(state: PolicyState, endorsement: Endorsement) -> PolicyState:
    """The state once ``endorsement`` is filed (``problems`` found none)."""
    policy, _ = changed(state.policy, endorsement)
    new = replace(
        state,
        policy=policy or state.policy,
        premium=state.premium + endorsement.premium_delta,
    )
    if endorsement.type == "surrender":
        return replace(
            new,
            status=SURRENDERED,
            status_since=endorsement.effective_at,
            status_by=endorsement.endorsement_no,
        )
    if endorsement.type == "cancel":
        # void from inception: the status holds from the start of the period
        return replace(
            new,
            status=CANCELLED,
            status_since=state.policy.period.start,
            status_by=endorsement.endorsement_no,
        )
    if endorsement.type == "reinstate":
        return replace(
            new, status=IN_FORCE, status_since=endorsement.effective_at, status_by=endorsement.endorsement_no
        )
    if endorsement.type == "add_clauses":
        return replace(new, clauses=(*state.clauses, *(endorsement.clauses_added or ())))
    return new


def fold(policy: Policy, endorsements: Iterable[Endorsement]) -> PolicyState:
    """The state after ``endorsements`` (already filed, in version order)."""
    state = PolicyState.of(policy)
    for endorsement in endorsements:
        state = after(state, endorsement)
    return state


@dataclass(frozen=True)
class LookupChange:
    """One indexed field an endorsement changed: the archive keeps both values findable."""

    field: str
    old: str
    new: str


def lookup_changes(endorsement: Endorsement) -> tuple[LookupChange, ...]:
    """The endorsement's changes to looked-up fields (``problems`` checked their ``old`` values)."""
    return tuple(
        LookupChange(c.field, c.old, c.new)
        for c in endorsement.changes
        if c.field in LOOKUP_FIELDS and not _same(c.old, c.new)
    )
