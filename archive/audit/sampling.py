"""Sampling plans (ISO 2859-1, normal inspection, single sampling), the lot, and the seeded sample.

What is promised:

- **The plan.** ``plan_for`` takes the lot size N, an inspection level (S-1…S-4, I, II, III) and an AQL
  (0.65, 1.0, 2.5, 4.0) and answers with the code letter (the standard's Table I), the sample size n and
  the acceptance and rejection numbers Ac/Re (Table II-A, normal inspection). An arrow in Table II-A
  sends the plan to the first plan below or above it *with that plan's sample size*: the tables here have
  the arrows already followed, as ``../shared/DOMAIN.md`` (beside the repository) gives them. When n
  reaches N the whole lot is inspected (n = N) with the same Ac/Re.
- **A fixed size.** ``fixed_plan`` draws exactly n (``--size``) and judges the sample with the Ac/Re of the
  largest standard plan at that AQL whose sample size is not above n (never a more lenient one than the
  standard gives a sample of that size); below the smallest plan, Ac 0 / Re 1.
- **The verdict.** d defects in the sample: accept when d ≤ Ac, reject when d ≥ Re.
- **The sample, reproducible by anyone.** The lot is sorted by policy number and the sample drawn with
  Python's ``random.Random(seed).sample(lot, n)``; the seed is recorded with the audit, so the same lot
  and seed give the same policies on any machine. Stratified by branch (``stratify="branch"``), n is
  apportioned over the branches in proportion to their share of the lot by the largest-remainder
  (Hamilton) method — each branch first gets ⌊n·Nᵢ/N⌋, then the policies still to place go one each to
  the branches with the largest remainders n·Nᵢ mod N, ties to the lower branch code — and then one
  generator ``random.Random(seed)`` draws each branch's share from its policies sorted by policy number,
  branch by branch in ascending branch-code order.
- **The lot.** ``select_lot`` reads the lot from the index (``Index.audit_lot``): policies with a version
  filed by a batch (``batch_id``), issued within a range of China-time days (both ends inclusive), of a
  branch, of a product; the criteria combine (AND), none at all means the whole archive.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from archive.index import Index

CHINA = ZoneInfo("Asia/Shanghai")

LEVELS = ("S-1", "S-2", "S-3", "S-4", "I", "II", "III")
AQLS = ("0.65", "1.0", "2.5", "4.0")
STRATA = ("branch",)
ACCEPT, REJECT = "accept", "reject"

# ISO 2859-1 Table I: (smallest lot, largest lot or None, code letters for LEVELS in order).
_CODE_LETTERS: tuple[tuple[int, int | None, str], ...] = (
    (2, 8, "AAAAAAB"),
    (9, 15, "AAAAABC"),
    (16, 25, "AABBBCD"),
    (26, 50, "ABBCCDE"),
    (51, 90, "BBCCCEF"),
    (91, 150, "BBCDDFG"),
    (151, 280, "BCDEEGH"),
    (281, 500, "BCDEFHJ"),
    (501, 1200, "CCEFGJK"),
    (1201, 3200, "CDEGHKL"),
    (3201, 10000, "CDFGJLM"),
    (10001, 35000, "CDFHKMN"),
    (35001, 150000, "DEGJLNP"),
    (150001, 500000, "DEGJMPQ"),
    (500001, None, "DEHKNQR"),
)

SAMPLE_SIZES: dict[str, int] = {
    "A": 2, "B": 3, "C": 5, "D": 8, "E": 13, "F": 20, "G": 32, "H": 50,
    "J": 80, "K": 125, "L": 200, "M": 315, "N": 500, "P": 800, "Q": 1250, "R": 2000,
}  # fmt: skip

# ISO 2859-1 Table II-A (normal inspection, single sampling), arrows followed: letter -> AQL ->
# (Ac, Re, sample size of the plan the arrow leads to, or None for the letter's own).
_TABLE_II_A: dict[str, dict[str, tuple[int, int, int | None]]] = {
    "A": {"0.65": (0, 1, 20), "1.0": (0, 1, 13), "2.5": (0, 1, 5), "4.0": (0, 1, 3)},
    "B": {"0.65": (0, 1, 20), "1.0": (0, 1, 13), "2.5": (0, 1, 5), "4.0": (0, 1, None)},
    "C": {"0.65": (0, 1, 20), "1.0": (0, 1, 13), "2.5": (0, 1, None), "4.0": (0, 1, 3)},
    "D": {"0.65": (0, 1, 20), "1.0": (0, 1, 13), "2.5": (0, 1, 5), "4.0": (1, 2, 13)},
    "E": {"0.65": (0, 1, 20), "1.0": (0, 1, None), "2.5": (1, 2, 20), "4.0": (1, 2, None)},
    "F": {"0.65": (0, 1, None), "1.0": (0, 1, 13), "2.5": (1, 2, None), "4.0": (2, 3, None)},
    "G": {"0.65": (0, 1, 20), "1.0": (1, 2, 50), "2.5": (2, 3, None), "4.0": (3, 4, None)},
    "H": {"0.65": (1, 2, 80), "1.0": (1, 2, None), "2.5": (3, 4, None), "4.0": (5, 6, None)},
    "J": {"0.65": (1, 2, None), "1.0": (2, 3, None), "2.5": (5, 6, None), "4.0": (7, 8, None)},
    "K": {"0.65": (2, 3, None), "1.0": (3, 4, None), "2.5": (7, 8, None), "4.0": (10, 11, None)},
    "L": {"0.65": (3, 4, None), "1.0": (5, 6, None), "2.5": (10, 11, None), "4.0": (14, 15, None)},
    "M": {"0.65": (5, 6, None), "1.0": (7, 8, None), "2.5": (14, 15, None), "4.0": (21, 22, None)},
    "N": {"0.65": (7, 8, None), "1.0": (10, 11, None), "2.5": (21, 22, None), "4.0": (21, 22, 315)},
    "P": {"0.65": (10, 11, None), "1.0": (14, 15, None), "2.5": (21, 22, 500), "4.0": (21, 22, 315)},
    "Q": {"0.65": (14, 15, None), "1.0": (21, 22, None), "2.5": (21, 22, 500), "4.0": (21, 22, 315)},
    "R": {"0.65": (21, 22, None), "1.0": (21, 22, 1250), "2.5": (21, 22, 500), "4.0": (21, 22, 315)},
}

SELECTION_RULE = (
    "lot sorted by policy number; random.Random(seed).sample(lot, n) (Python); stratified by branch: "
    "largest-remainder apportionment, then one random.Random(seed) draws each branch's share from its "
    "policies sorted by policy number, branches in ascending code order"
)


def normal_aql(aql: str | float) -> str:
    """The AQL as the tables name it (``"2.5"``); ``ValueError`` for one the tables do not hold."""
    try:
        value = float(aql)
    except (TypeError, ValueError) as e:
        raise ValueError(f"AQL must be one of {', '.join(AQLS)}") from e
    for known in AQLS:
        if abs(float(known) - value) < 1e-9:
            return known
    raise ValueError(f"AQL must be one of {', '.join(AQLS)}")


def code_letter(lot_size: int, level: str = "II") -> str:
    """ISO 2859-1 Table I: the sample-size code letter for a lot of ``lot_size`` at ``level``."""
    if level not in LEVELS:
        raise ValueError(f"inspection level must be one of {', '.join(LEVELS)}")
    if lot_size < 2:
        # the table starts at 2; a lot of one is inspected whole under any plan
        lot_size = 2
    column = LEVELS.index(level)
    for low, high, letters in _CODE_LETTERS:
        if low <= lot_size and (high is None or lot_size <= high):
            return letters[column]
    raise AssertionError("unreachable: the last row is open-ended")


@dataclass(frozen=True)
class SamplingPlan:
    """A single sampling plan applied to one lot.

    ``letter_size`` is the code letter's own sample size; ``plan_size`` the sample size of the plan an
    arrow led to (equal to ``letter_size`` without an arrow); ``sample_size`` what is drawn: ``plan_size``,
    the lot size under 100% inspection, or the fixed size asked for.
    """

    lot_size: int
    level: str | None  # None for a fixed sample size
    aql: str
    code_letter: str
    letter_size: int
    plan_size: int
    sample_size: int
    ac: int
    re: int
    full_inspection: bool
    fixed_size: bool

    def verdict(self, defects: int) -> str:
        """``accept`` when ``defects`` ≤ Ac, ``reject`` when it reaches Re."""
        return ACCEPT if defects <= self.ac else REJECT

    def as_json(self) -> dict[str, Any]:
        return {
            "lot_size": self.lot_size,
            "level": self.level,
            "aql": self.aql,
            "code_letter": self.code_letter,
            "letter_size": self.letter_size,
            "plan_size": self.plan_size,
            "sample_size": self.sample_size,
            "ac": self.ac,
            "re": self.re,
            "full_inspection": self.full_inspection,
            "fixed_size": self.fixed_size,
        }


def _check_lot(lot_size: int) -> None:
    if lot_size < 1:
        raise ValueError("the lot is empty: nothing to sample")


def plan_for(lot_size: int, *, level: str = "II", aql: str | float = "2.5") -> SamplingPlan:
    """The standard's plan for a lot: code letter, n (arrows followed, 100% when n ≥ N), Ac/Re."""
    _check_lot(lot_size)
    aql = normal_aql(aql)
    letter = code_letter(lot_size, level)
    ac, re, arrow_size = _TABLE_II_A[letter][aql]
    plan_size = arrow_size or SAMPLE_SIZES[letter]
    full = plan_size >= lot_size
    return SamplingPlan(
        lot_size=lot_size,
        level=level,
        aql=aql,
        code_letter=letter,
        letter_size=SAMPLE_SIZES[letter],
        plan_size=plan_size,
        sample_size=lot_size if full else plan_size,
        ac=ac,
        re=re,
        full_inspection=full,
        fixed_size=False,
    )


def fixed_plan(lot_size: int, *, size: int, aql: str | float = "2.5") -> SamplingPlan:
    """Exactly ``size`` policies (all of a smaller lot), judged by the largest standard plan ≤ ``size``."""
    _check_lot(lot_size)
    if size < 1:
        raise ValueError("the sample size must be at least 1")
    aql = normal_aql(aql)
    plans = sorted(
        {
            (arrow or SAMPLE_SIZES[letter], ac, re)
            for letter, row in _TABLE_II_A.items()
            for ac, re, arrow in [row[aql]]
        }
    )
    chosen = plans[0]
    for plan in plans:
        if plan[0] <= size:
            chosen = plan
    plan_size, ac, re = chosen
    letter = next(k for k, v in SAMPLE_SIZES.items() if v == plan_size)
    full = size >= lot_size
    return SamplingPlan(
        lot_size=lot_size,
        level=None,
        aql=aql,
        code_letter=letter,
        letter_size=plan_size,
        plan_size=plan_size,
        sample_size=lot_size if full else size,
        ac=ac if plan_size <= size else 0,
        re=re if plan_size <= size else 1,
        full_inspection=full,
        fixed_size=True,
    )


# --- the lot ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotCriteria:
    """What makes a lot; every given criterion must hold (dates are China-time days, both inclusive)."""

    batch_id: str | None = None
    issued_from: date | None = None
    issued_to: date | None = None
    branch: str | None = None
    product: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "issued_from": self.issued_from.isoformat() if self.issued_from else None,
            "issued_to": self.issued_to.isoformat() if self.issued_to else None,
            "branch": self.branch,
            "product": self.product,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LotCriteria:
        def day(value: Any) -> date | None:
            return date.fromisoformat(value) if value else None

        return cls(
            batch_id=data.get("batch_id") or None,
            issued_from=day(data.get("issued_from")),
            issued_to=day(data.get("issued_to")),
            branch=data.get("branch") or None,
            product=data.get("product") or None,
        )

    def describe(self) -> str:
        """One line for people: ``batch 2026…, issued 2026-01-01–2026-03-31, branch 110105``."""
        parts = []
        if self.batch_id:
            parts.append(f"batch {self.batch_id}")
        if self.issued_from or self.issued_to:
            parts.append(f"issued {self.issued_from or '…'}–{self.issued_to or '…'}")
        if self.branch:
            parts.append(f"branch {self.branch}")
        if self.product:
            parts.append(f"product {self.product}")
        return ", ".join(parts) or "the whole archive"


@dataclass(frozen=True)
class LotMember:
    """One policy of the lot: what sampling, stratification and the serial check need."""

    policy_no: str
    branch_code: str
    product_code: str
    print_serial: str | None


def select_lot(index: Index, criteria: LotCriteria) -> tuple[LotMember, ...]:
    """The lot's policies, sorted by policy number (China-time days, both ends inclusive)."""
    issued_from = datetime.combine(criteria.issued_from, time(), CHINA) if criteria.issued_from else None
    issued_before = (
        datetime.combine(criteria.issued_to + timedelta(days=1), time(), CHINA)
        if criteria.issued_to
        else None
    )
    rows = index.audit_lot(
        batch_id=criteria.batch_id,
        issued_from=issued_from,
        issued_before=issued_before,
        branch=criteria.branch,
        product=criteria.product,
    )
    return tuple(LotMember(r.policy_no, r.branch_code, r.product_code, r.print_serial) for r in rows)


def lot_digest(lot: Sequence[LotMember]) -> str:
    """SHA-256 over the lot's sorted policy numbers: a redraw can tell whether the lot is still the same."""
    return _digest(m.policy_no for m in lot)


def sample_digest(policy_nos: Sequence[str]) -> str:
    return _digest(policy_nos)


def _digest(policy_nos: Any) -> str:
    return hashlib.sha256("\n".join(sorted(policy_nos)).encode("utf-8")).hexdigest()


# --- the seeded sample ------------------------------------------------------------------------------------


def new_seed() -> int:
    """A fresh seed to record with the audit (nine digits at most, easy to read out and type)."""
    return secrets.randbelow(10**9)


def apportion(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Largest-remainder (Hamilton) apportionment of ``n`` over strata of the given sizes.

    Each stratum gets ⌊n·Nᵢ/N⌋; the rest go one each to the largest remainders n·Nᵢ mod N, ties to the
    smaller key. Exact integer arithmetic; no stratum gets more than it holds when n ≤ N.
    """
    total = sum(sizes.values())
    if total < 1:
        raise ValueError("no strata to apportion over")
    if not 0 <= n <= total:
        raise ValueError("n must lie between 0 and the lot size")
    shares = {key: n * size // total for key, size in sizes.items()}
    left = n - sum(shares.values())
    by_remainder = sorted(sizes, key=lambda key: (-(n * sizes[key] % total), key))
    for key in by_remainder[:left]:
        shares[key] += 1
    return dict(sorted(shares.items()))


@dataclass(frozen=True)
class Sample:
    """The drawn policies (sorted by policy number) and, when stratified, each branch's share."""

    policy_nos: tuple[str, ...]
    seed: int
    stratify: str | None
    allocation: dict[str, int] | None


def draw_sample(lot: Sequence[LotMember], *, n: int, seed: int, stratify: str | None = None) -> Sample:
    """Draw ``n`` policies from ``lot`` as the module docstring describes; deterministic in ``seed``."""
    if stratify is not None and stratify not in STRATA:
        raise ValueError(f"stratify by one of: {', '.join(STRATA)}")
    ordered = sorted(lot, key=lambda m: m.policy_no)
    n = min(n, len(ordered))
    rng = random.Random(seed)
    if stratify is None:
        chosen = rng.sample([m.policy_no for m in ordered], n)
        return Sample(tuple(sorted(chosen)), seed, None, None)
    strata: dict[str, list[str]] = {}
    for member in ordered:
        strata.setdefault(member.branch_code, []).append(member.policy_no)
    allocation = apportion({key: len(v) for key, v in strata.items()}, n)
    chosen = []
    for key in sorted(strata):
        chosen += rng.sample(strata[key], allocation[key])
    return Sample(tuple(sorted(chosen)), seed, stratify, allocation)


# --- print serials (a lot-level integrity finding) ---------------------------------------------------------

SERIAL_DIGITS = 8


@dataclass(frozen=True)
class SerialSeries:
    """The print serials of one series (prefix) in a lot: how many, the range, and what is missing.

    A serial is split into its series prefix and its number: the number is the trailing run of digits,
    at most ``SERIAL_DIGITS`` long (a form series numbers its forms with up to eight digits), and the
    prefix everything before it (``2026110105`` + ``00012345``).
    """

    prefix: str
    count: int
    first: int
    last: int
    missing: int
    gaps: tuple[tuple[int, int], ...]  # the first few missing ranges, inclusive
    duplicates: tuple[str, ...]


def split_serial(serial: str) -> tuple[str, int] | None:
    """``(prefix, number)`` of a print serial, or None when it does not end in a digit."""
    digits = 0
    while digits < min(SERIAL_DIGITS, len(serial)) and serial[len(serial) - 1 - digits].isdigit():
        digits += 1
    if digits == 0:
        return None
    return serial[: len(serial) - digits], int(serial[len(serial) - digits :])


def serial_series(serials: Sequence[str], *, max_gaps: int = 5) -> tuple[SerialSeries, ...]:
    """Group serials by prefix and find the numbers missing between each series' first and last."""
    numbers: dict[str, list[tuple[int, str]]] = {}
    for serial in serials:
        split = split_serial(serial.strip())
        if split is not None:
            numbers.setdefault(split[0], []).append((split[1], serial.strip()))
    out = []
    for prefix in sorted(numbers):
        values = sorted(numbers[prefix])
        unique = sorted({number for number, _ in values})
        seen: set[int] = set()
        dupes: list[str] = []
        for number, serial in values:
            if number in seen and serial not in dupes:
                dupes.append(serial)
            seen.add(number)
        gaps = []
        missing = 0
        for a, b in pairwise(unique):
            if b - a > 1:
                missing += b - a - 1
                if len(gaps) < max_gaps:
                    gaps.append((a + 1, b - 1))
        out.append(
            SerialSeries(
                prefix=prefix,
                count=len(values),
                first=unique[0],
                last=unique[-1],
                missing=missing,
                gaps=tuple(gaps),
                duplicates=tuple(dupes),
            )
        )
    return tuple(out)
