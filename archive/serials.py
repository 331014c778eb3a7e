"""The print-serial registry (单证管理): pre-printed numbered forms, from issue to reconciliation.

A serial's life, one row in ``print_serials``:

- **issued** to a clerk (and branch) by ``issue_range`` (``issuance serials issue FROM TO --to CLERK``);
- **used** by one document, ``policy_no`` + version (``mark_used``, or ``mark_used_many`` for a batch's
  documents in one transaction, called after they are filed; and by a reissue for its new serial); a
  serial a document used but nobody issued is recorded as used with ``registered`` false. Before a
  document is filed, ``filing_refusals`` refuses a voided serial, one another policy used, and (with
  ``[serials] unknown = "refuse"``) one never issued to anyone; a use by a clerk other than the one the
  form was issued to is filed, with a ``serials.other_clerk`` ledger event, and reported;
- **voided**: by a reissue (the lost or damaged form; ``voided_by_version`` names the reissue version of
  the same policy), by ``void`` with its own ledger event, or, for blank forms lost or spoilt, by
  ``void_blank`` (``issuance serials void``); with when and why; the row stays, so the voided serial
  remains searchable;
- **reconciled** (核销): ``reconciled_at`` set by ``reconcile`` on a used or voided serial.

The serial format: 1–32 characters of ``A–Z``, ``0–9`` and ``-``, ending in a run of digits; the part
before the run is the prefix, e.g. ``BJ2026-0000123`` (prefix ``BJ2026-``, number 123, width 7) or all
digits, ``202611010500000123``. A range ``FROM TO`` keeps the prefix and the zero-padded width of its
ends. Serials are compared upper-cased and stripped. Serials that documents arrive with (the record
contract allows any text of up to 32 characters) are registered as they come, format or not.

The overdue rates (超期未核销率 and 超期未回收率, DOMAIN.md) are ``report``'s, defined in
``OVERDUE_DEFINITION`` and ``RETURN_DEFINITION``.

The rules live here; the SQL is the index's (``archive/index/serials.py``, through ``Index``'s public
methods), as for every table.

Serials are not personal data, but the ledger scrubs anything shaped like an ID number: an 18-digit
serial appears masked in ledger events, in clear in this registry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from archive.index import Index, LedgerEvent, as_utc

# The registry's row types and states are the index's (it owns the SQL); they are re-exported here, where
# callers have always found them.
from archive.index.serials import (
    BLANK_LOST,
    BLANK_SPOILT,
    ISSUED,
    USED,
    VOIDED,
    DocumentSerial,
    OtherClerkUse,
    SerialRecord,
    SerialUse,
    VoidedSerial,
)
from core.errors import IndexConflict, IndexUnavailable, SerialError, SerialFormatError, UsageError

__all__ = [
    "BLANK_REASONS",
    "DEFAULT_OVERDUE_DAYS",
    "ISSUED",
    "MAX_RANGE",
    "OVERDUE_DEFINITION",
    "RETURN_DEFINITION",
    "UNKNOWN_SERIALS",
    "USED",
    "VOIDED",
    "DocumentSerial",
    "IssuedBlock",
    "IssuedRange",
    "OtherClerkUse",
    "Reconciled",
    "SerialRecord",
    "SerialReport",
    "SerialUse",
    "VoidedBlank",
    "expand_range",
    "filing_refusals",
    "issue_range",
    "issued_blocks",
    "lookup",
    "mark_used",
    "mark_used_many",
    "normalise",
    "parse_serial",
    "reconcile",
    "report",
    "void",
    "void_blank",
]

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")
MAX_RANGE = 10_000  # serials per ``issue_range``: a box of forms, not a typo of three extra digits
DEFAULT_OVERDUE_DAYS = 30
SUBJECT = "print-serials"  # the ledger subject of registry events (a serial may look like an ID number)
OVERDUE_DEFINITION = (
    "超期未核销率 = overdue / (awaiting + reconciled), over the serials used or voided in the period "
    "(by the earlier of the two dates); reconciled = reconciled by the end of the period; awaiting = not "
    "reconciled by then; overdue = awaiting and used or voided more than {days} days before the end of "
    "the period"
)
RETURN_DEFINITION = (
    "超期未回收率 = overdue unreturned / (usable and issued out + used), over the forms issued to a clerk "
    "in the period, in their state at its end; used = used by the end of the period (a later void "
    "keeps it used); usable and issued out = neither used nor voided by then; overdue unreturned = usable "
    "and issued out, and issued more than {days} days before the end of the period (a form voided blank, "
    "lost or spoilt, is returned and counts in neither)"
)
BLANK_REASONS = (BLANK_LOST, BLANK_SPOILT)  # why a blank form is voided (``void_blank``)
# ``[serials] unknown``: a serial never issued to anyone is "record"ed (filed, counted as unregistered)
# or "refuse"d at filing (DOMAIN.md: "refused, not quietly accepted", when the centre turns it on)
UNKNOWN_SERIALS = ("record", "refuse")
_SERIAL = re.compile(r"(?P<prefix>[A-Z0-9-]*?)(?P<digits>[0-9]+)")
_ANY = re.compile(r"\S(.{0,30}\S)?")


@dataclass(frozen=True)
class IssuedRange:
    first: str
    last: str
    count: int
    adopted: int  # serials documents had already used unregistered, now registered as issued


@dataclass(frozen=True)
class IssuedBlock:
    """Forms issued to a clerk together, as the registry holds them: consecutive numbers of one prefix
    and width, issued at one moment to one clerk (one ``issue_range``, or adjacent ones of that moment),
    with each number's state and the policy that used it."""

    prefix: str
    width: int
    first: int
    last: int
    issued_to: str
    issued_at: datetime | None
    states: dict[int, tuple[str, str | None]]  # number -> (state, policy_no)

    def serial(self, number: int) -> str:
        return f"{self.prefix}{number:0{self.width}d}"

    def holds(self, serial: str) -> bool:
        try:
            prefix, number, width = parse_serial(serial)
        except SerialFormatError:
            return False
        return (prefix, width) == (self.prefix, self.width) and self.first <= number <= self.last


@dataclass(frozen=True)
class Reconciled:
    reconciled: tuple[str, ...]
    already: tuple[str, ...]  # reconciled before: left as they were


@dataclass(frozen=True)
class VoidedBlank:
    voided: tuple[str, ...]
    already: tuple[str, ...]  # voided before: left as they were


@dataclass(frozen=True)
class SerialReport:
    """Counts for a period and the overdue rates; see ``OVERDUE_DEFINITION`` and ``RETURN_DEFINITION``."""

    start: date | None
    end: date
    as_of: datetime  # the end of the period, 24:00 China time of ``end``
    overdue_days: int
    issued: int
    used: int
    voided: int
    unregistered: int
    reconciled: int
    awaiting: int
    overdue: int
    out_blank: int = 0  # 超期未回收率: issued in the period, usable and issued out at its end
    out_used: int = 0  # … issued in the period and used by its end
    unreturned: int = 0  # … of out_blank, issued more than ``overdue_days`` before the end
    voided_lost: int = 0  # blank forms voided in the period as lost (``void_blank``)
    voided_spoilt: int = 0  # … as spoilt
    other_clerk: tuple[OtherClerkUse, ...] = ()  # forms used in the period by another clerk

    @property
    def rate(self) -> Fraction | None:
        """超期未核销率: overdue / (awaiting + reconciled), exact; None when nothing was used or voided."""
        total = self.awaiting + self.reconciled
        return Fraction(self.overdue, total) if total else None

    @property
    def return_rate(self) -> Fraction | None:
        """超期未回收率: unreturned / (out_blank + out_used), exact; None when no form counts."""
        total = self.out_blank + self.out_used
        return Fraction(self.unreturned, total) if total else None

    @property
    def definition(self) -> str:
        return OVERDUE_DEFINITION.format(days=self.overdue_days)

    @property
    def return_definition(self) -> str:
        return RETURN_DEFINITION.format(days=self.overdue_days)


# --- the format -----------------------------------------------------------------------------------


def normalise(serial: str) -> str:
    """Stripped and upper-cased; ``SerialFormatError`` for an empty or over-long serial."""
    value = (serial or "").strip().upper()
    if not _ANY.fullmatch(value):
        raise SerialFormatError(f"a print serial is 1–32 characters, not {len(value)}")
    return value


def parse_serial(serial: str) -> tuple[str, int, int]:
    """``(prefix, number, width)`` of a serial in the registry's format (see the module docstring)."""
    value = normalise(serial)
    match = _SERIAL.fullmatch(value)
    if match is None:
        raise SerialFormatError(
            f"print serial {value} is not a prefix of A–Z, 0–9, '-' followed by digits",
            hint="e.g. BJ2026-0000123 or 202611010500000123",
        )
    return match["prefix"], int(match["digits"]), len(match["digits"])


def expand_range(first: str, last: str, *, limit: int = MAX_RANGE) -> list[str]:
    """Every serial from ``first`` to ``last`` inclusive: same prefix, same zero-padded width."""
    p1, n1, w1 = parse_serial(first)
    p2, n2, w2 = parse_serial(last)
    if (p1, w1) != (p2, w2):
        raise SerialFormatError(
            f"{normalise(first)} and {normalise(last)} are not one range",
            hint="both ends need the same prefix and the same number of digits",
        )
    if n2 < n1:
        raise SerialFormatError(f"the range ends ({normalise(last)}) before it starts ({normalise(first)})")
    if n2 - n1 + 1 > limit:
        raise SerialFormatError(f"{n2 - n1 + 1} serials in one range; at most {limit}")
    return [f"{p1}{n:0{w1}d}" for n in range(n1, n2 + 1)]


# --- reads -------------------------------------------------------------------------------------------


def lookup(index: Index, serial: str) -> SerialRecord | None:
    """The serial's registry row, or None if the registry has never seen it."""
    return index.serial(normalise(serial))


def issued_blocks(index: Index, serials: Iterable[str]) -> tuple[IssuedBlock, ...]:
    """The blocks of forms issued to clerks that hold any of ``serials``, in serial order.

    A serial the registry does not hold as issued to someone (unknown, or used unregistered) is in no
    block; so are serials not in the registry's format. Each block is read whole, whatever part of it
    ``serials`` name, from the rows issued at the same moment.
    """
    wanted: set[str] = set()
    for serial in serials:
        try:
            parse_serial(serial)
        except SerialFormatError:
            continue
        wanted.add(normalise(serial))
    # the rows of one moment, by clerk, prefix and width, cut where the numbers stop being consecutive
    runs: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
    for row in index.serials_issued_alongside(sorted(wanted)):
        try:
            prefix, number, width = parse_serial(row.serial)
        except SerialFormatError:
            continue
        runs.setdefault((row.issued_at, row.issued_to, prefix, width), []).append((number, row))
    blocks: list[IssuedBlock] = []
    for (at, clerk, prefix, width), numbered in runs.items():
        numbered.sort(key=lambda pair: pair[0])
        start = 0
        for i in range(1, len(numbered) + 1):
            if i < len(numbered) and numbered[i][0] == numbered[i - 1][0] + 1:
                continue
            part = numbered[start:i]
            start = i
            block = IssuedBlock(
                prefix=prefix,
                width=width,
                first=part[0][0],
                last=part[-1][0],
                issued_to=clerk,
                issued_at=at,
                states={number: (row.state, row.policy_no) for number, row in part},
            )
            if any(row.serial in wanted for _, row in part):
                blocks.append(block)
    return tuple(sorted(blocks, key=lambda b: (b.prefix, b.width, b.first)))


# --- writes ------------------------------------------------------------------------------------------


def issue_range(
    index: Index,
    *,
    first: str,
    last: str,
    to: str,
    by: str,
    branch: str | None = None,
    at: datetime | None = None,
) -> IssuedRange:
    """Register the forms ``first``..``last`` as issued to clerk ``to``, in one transaction with its
    ledger event. A serial the registry holds as issued already refuses the whole range
    (``SerialError``); one a document used before it was registered is registered now, state kept."""
    clerk = (to or "").strip()
    if not clerk:
        raise UsageError("say whom the forms are issued to", hint="--to CLERK_ID")
    if branch is not None and not re.fullmatch(r"[0-9]{6}", branch):
        raise UsageError(f"branch {branch!r} is not a 6-digit branch code")
    serials = expand_range(first, last)

    def refuse_registered(known: dict[str, SerialRecord]) -> None:
        taken = sorted(serial for serial, row in known.items() if row.registered)
        if taken:
            shown = ", ".join(taken[:5]) + (" …" if len(taken) > 5 else "")
            raise SerialError(
                f"{len(taken)} of these serials are registered already: {shown}",
                hint="nothing was registered; issue the range without them",
            )

    adopted = index.register_serials(
        serials,
        to=clerk,
        branch=branch,
        at=as_utc(at) or datetime.now(UTC),
        by=by,
        check=refuse_registered,
        event=LedgerEvent(
            by,
            "serials.issued",
            SUBJECT,
            {"first": serials[0], "last": serials[-1], "count": len(serials), "to": clerk, "branch": branch},
        ),
    )
    return IssuedRange(first=serials[0], last=serials[-1], count=len(serials), adopted=adopted)


def mark_used(
    index: Index,
    *,
    serial: str | None,
    policy_no: str,
    version: int,
    at: datetime | None = None,
    by: str | None = None,
) -> SerialUse | None:
    """Record that document ``policy_no`` v``version`` was printed on ``serial``. For the batch, after the
    version's index commit; never refuses the document.

    - issued serial: now used (``status`` "used");
    - unknown serial: recorded as used, unregistered ("unregistered");
    - used by this same document already: nothing changes ("already"; a re-run is harmless);
    - used by another document, or voided: nothing changes, an ``incident.serial_conflict`` ledger event
      names both documents ("conflict");
    - an issued serial used by a clerk (``by``) other than the one it was issued to: used, with a
      ``serials.other_clerk`` ledger event naming both clerks.

    ``serial`` None or blank: None, nothing recorded. If the index fails here, the error is logged and
    ``status`` is "failed": the document is filed already, and a serial's bookkeeping must not reject it.
    """
    (use,) = mark_used_many(index, [DocumentSerial(serial, policy_no, version, at=at, by=by)])
    return use


def mark_used_many(index: Index, uses: Sequence[DocumentSerial]) -> list[SerialUse | None]:
    """``mark_used`` for each of ``uses``, in order, in ONE transaction with the conflicts' incident
    events; the statuses in the order of ``uses`` (None where the serial is None or blank).

    Two documents of ``uses`` on one serial: the second gets "already" or "conflict" against the first,
    as it would one call later. If the index fails, every status is "failed" and the error is logged;
    if another writer recorded a first use of one of these serials meanwhile, each is recorded on its own.
    """
    todo = [
        (i, replace(use, serial=normalise(use.serial), at=as_utc(use.at) or datetime.now(UTC)))
        for i, use in enumerate(uses)
        if use.serial is not None and use.serial.strip()
    ]
    out: list[SerialUse | None] = [None] * len(uses)
    if not todo:
        return out
    claims = [claim for _, claim in todo]
    results: list[SerialUse | None]
    try:
        results = list(index.use_serials(claims, incident=_incident))
    except (IndexConflict, IndexUnavailable) as e:
        if isinstance(e, IndexConflict) and len(claims) > 1:
            # another writer used one of these serials first: each on its own, now seeing that writer's row
            results = [mark_used_many(index, [claim])[0] for claim in claims]
        else:
            logger.exception(
                "%s could not be recorded as used",
                ", ".join(f"serial {c.serial} of {c.policy_no} v{c.version}" for c in claims),
            )
            results = [SerialUse(claim.serial, "failed") for claim in claims]
    for (i, _), result in zip(todo, results, strict=True):
        out[i] = result
    return out


def _incident(claim: DocumentSerial, use: SerialUse) -> LedgerEvent | None:
    """The ledger's event for a document printed on a form another document holds (or a voided one), or
    on a form issued to another clerk; None for an ordinary use."""
    if use.status == "used" and _other_clerk(use.issued_to, claim.by):
        return LedgerEvent(
            claim.by or "issuance",
            "serials.other_clerk",
            SUBJECT,
            {
                "serial": use.serial,
                "issued_to": use.issued_to,
                "used_by": claim.by,
                "policy_no": claim.policy_no,
                "version": claim.version,
            },
        )
    if use.status != "conflict":
        return None
    return LedgerEvent(
        claim.by or "issuance",
        "incident.serial_conflict",
        claim.policy_no,
        {
            "serial": use.serial,
            "version": claim.version,
            "held_by": {"policy_no": use.held_by[0], "version": use.held_by[1]} if use.held_by else None,
        },
    )


def _other_clerk(issued_to: str | None, used_by: str | None) -> bool:
    """Whether a form issued to ``issued_to`` was used by someone else (names compared case-blind, as
    directory names are; an unnamed side is no evidence)."""
    if not issued_to or not used_by:
        return False
    return issued_to.strip().casefold() != used_by.strip().casefold()


def filing_refusals(
    index: Index, claims: Sequence[tuple[str | None, str]], *, unknown: str = "record"
) -> list[str | None]:
    """Before documents are filed: for each ``(serial, policy_no)`` of ``claims``, why its serial is
    refused (the message, naming the serial), or None. Refused: a voided serial; one used by another
    policy (the same policy's re-run keeps its serial: exactly once); one an earlier claim of
    ``claims`` names for another policy; with ``unknown`` "refuse", one never issued to anyone. A
    serial not in the registry's format is refused only if it is unknown and ``unknown`` is "refuse".

    A check, not a claim: the serial is marked used after the version's index commit, and two writers
    filing the same serial at the same moment both pass it; the later mark then records an
    ``incident.serial_conflict``, as before this check existed.
    """
    if unknown not in UNKNOWN_SERIALS:
        raise UsageError(f"[serials] unknown is one of {', '.join(UNKNOWN_SERIALS)}, not {unknown!r}")
    wanted: list[str | None] = []
    for serial, _ in claims:
        try:
            wanted.append(normalise(serial) if serial and serial.strip() else None)
        except SerialFormatError:
            wanted.append(None)  # validation rejects these first; nothing to look up
    if not any(wanted):
        return [None] * len(claims)  # no form to look up: the index is not asked
    rows = index.serial_records(sorted({x for x in wanted if x}))
    first: dict[str, str] = {}
    out: list[str | None] = []
    for value, (_, policy_no) in zip(wanted, claims, strict=True):
        out.append(None)
        if value is None:
            continue
        row = rows.get(value)
        if row is not None and row.state == VOIDED:
            when = f" on {row.voided_at.astimezone(CHINA):%Y-%m-%d}" if row.voided_at else ""
            out[-1] = (
                f"print serial {value} was voided{when} ({row.void_reason}): a voided form is never used"
            )
        elif row is not None and row.state == USED and row.policy_no != policy_no:
            out[-1] = f"print serial {value} is already used by {row.policy_no} v{row.version}"
        elif first.setdefault(value, policy_no) != policy_no:
            out[-1] = f"print serial {value} is used by {first[value]} earlier in this batch"
        elif row is None and unknown == "refuse":
            out[-1] = (
                f"print serial {value} was never issued to anyone; this centre refuses unregistered serials "
                '([serials] unknown = "refuse"): register the form with issuance serials issue'
            )
    return out


def void_blank(
    index: Index, serials: Iterable[str], *, reason: str, by: str, at: datetime | None = None
) -> VoidedBlank:
    """Void lost or spoilt blank forms (``reason``: lost | spoilt), all or none, with one
    ``serials.voided_blank`` ledger event.

    ``SerialError`` (nothing changed) if any is not in the registry or was used by a document (a used
    form is voided by reissuing its policy). Serials voided before are left as they were, in ``already``.
    """
    if reason not in BLANK_REASONS:
        raise UsageError(f"a blank form is voided as {' or '.join(BLANK_REASONS)}, not {reason!r}")
    wanted = list(dict.fromkeys(normalise(x) for x in serials))
    if not wanted:
        raise UsageError("name the serials to void")

    def refuse_used(rows: dict[str, SerialRecord]) -> None:
        unknown = [x for x in wanted if x not in rows]
        used = [x for x in wanted if x in rows and rows[x].state == USED]
        if unknown or used:
            problems = []
            if unknown:
                problems.append("not in the registry: " + ", ".join(unknown[:5]))
            if used:
                problems.append(
                    "used by a document (reissue the policy to void its form): "
                    + ", ".join(f"{x} ({rows[x].policy_no} v{rows[x].version})" for x in used[:5])
                )
            raise SerialError("; ".join(problems), hint="nothing was voided")

    done = index.void_blank_serials(
        wanted,
        reason=reason,
        at=as_utc(at) or datetime.now(UTC),
        by=by,
        check=refuse_used,
        event=lambda todo: LedgerEvent(
            by, "serials.voided_blank", SUBJECT, {"reason": reason, "count": len(todo), "serials": todo}
        ),
    )
    return VoidedBlank(voided=tuple(done), already=tuple(x for x in wanted if x not in done))


def void(
    index: Index,
    serial: str,
    *,
    policy_no: str,
    used_version: int,
    used_at: datetime,
    by_version: int,
    reason: str,
    at: datetime,
    by: str,
) -> None:
    """Void ``serial``, the form document ``policy_no`` v``used_version`` was printed on, because version
    ``by_version`` replaces it, with a ``serials.voided`` ledger event. A serial the registry never saw is
    entered as used by that version at ``used_at``, unregistered, and voided. (A reissue voids its old
    form inside its own commit, with its ``policy.reissued`` event.)"""
    value = normalise(serial)
    index.void_serial(
        VoidedSerial(value, policy_no, used_version, as_utc(used_at), by_version, reason, as_utc(at), by),
        event=LedgerEvent(
            by, "serials.voided", SUBJECT, {"serial": value, "policy_no": policy_no, "version": by_version}
        ),
    )


def reconcile(index: Index, serials: Iterable[str], *, by: str, at: datetime | None = None) -> Reconciled:
    """Reconcile (核销) used or voided serials, all or none, with one ledger event.

    ``SerialError`` (nothing changed) if any is unknown or still only issued. Serials reconciled before
    are left as they were and reported in ``already``.
    """
    wanted = list(dict.fromkeys(normalise(x) for x in serials))
    if not wanted:
        raise UsageError("name the serials to reconcile")

    def refuse_unfinished(rows: dict[str, SerialRecord]) -> None:
        unknown = [x for x in wanted if x not in rows]
        blank = [x for x in wanted if x in rows and rows[x].state == ISSUED]
        if unknown or blank:
            problems = []
            if unknown:
                problems.append("not in the registry: " + ", ".join(unknown[:5]))
            if blank:
                problems.append("issued but neither used nor voided: " + ", ".join(blank[:5]))
            raise SerialError("; ".join(problems), hint="nothing was reconciled")

    done = index.reconcile_serials(
        wanted,
        at=as_utc(at) or datetime.now(UTC),
        by=by,
        check=refuse_unfinished,
        event=lambda todo: LedgerEvent(
            by, "serials.reconciled", SUBJECT, {"count": len(todo), "serials": todo}
        ),
    )
    return Reconciled(reconciled=tuple(done), already=tuple(x for x in wanted if x not in done))


# --- the report ----------------------------------------------------------------------------------------


def report(
    index: Index,
    *,
    start: date | None = None,
    end: date | None = None,
    overdue_days: int = DEFAULT_OVERDUE_DAYS,
    today: date | None = None,
) -> SerialReport:
    """Counts for the China-time dates ``start``..``end`` (inclusive; no ``start``: since the beginning;
    no ``end``: ``today``) and the overdue rate, exactly as ``OVERDUE_DEFINITION`` says:

    - issued, used, voided, unregistered: serials whose issue, use, void, or unregistered use falls in
      the period;
    - the rate's population: serials used or voided in the period, dated by the earlier of the two;
    - reconciled: of those, reconciled before the end of the period (a later reconciliation does not
      change a past period's report); awaiting: the others;
    - overdue: awaiting, and used or voided before ``end − overdue_days`` (24:00 of ``end`` minus the days);
    - 超期未回收率, as ``RETURN_DEFINITION`` says: over the forms issued to a clerk in the period, those
      used by its end (``out_used``) and those neither used nor voided then (``out_blank``), of which
      the ones issued before ``end − overdue_days`` are overdue unreturned (``unreturned``);
    - voided_lost, voided_spoilt: blank forms voided in the period (``void_blank``); other_clerk: the
      forms used in the period by a clerk other than the one they were issued to.
    """
    if overdue_days < 0:
        raise UsageError("--overdue-days must not be negative")
    end = end or today or datetime.now(CHINA).date()
    if start is not None and start > end:
        raise UsageError(f"the period starts ({start}) after it ends ({end})")
    as_of = datetime.combine(end + timedelta(days=1), time(), CHINA).astimezone(UTC)
    lo = datetime.combine(start, time(), CHINA).astimezone(UTC) if start else None
    counts = index.serial_counts(start=lo, end=as_of, overdue_before=as_of - timedelta(days=overdue_days))
    return SerialReport(
        start=start,
        end=end,
        as_of=as_of,
        overdue_days=overdue_days,
        issued=counts.issued,
        used=counts.used,
        voided=counts.voided,
        unregistered=counts.unregistered,
        reconciled=counts.reconciled,
        awaiting=counts.awaiting,
        overdue=counts.overdue,
        out_blank=counts.out_blank,
        out_used=counts.out_used,
        unreturned=counts.unreturned,
        voided_lost=counts.voided_lost,
        voided_spoilt=counts.voided_spoilt,
        other_clerk=tuple(index.serial_other_clerk_uses(start=lo, end=as_of)),
    )
