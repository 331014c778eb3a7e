"""The print-serial registry (单证管理): pre-printed numbered forms, from issue to reconciliation.

A serial's life, one row in ``print_serials``:

- **issued** to a clerk (and branch) by ``issue_range`` (``issuance serials issue FROM TO --to CLERK``);
- **used** by one document, ``policy_no`` + version (``mark_used``, or ``mark_used_many`` for a batch's
  documents in one transaction, called after they are filed; and by a reissue for its new serial); a
  serial a document used but nobody issued is recorded as used with ``registered`` false, never refused:
  the policy is already filed, and the form exists;
- **voided**: by a reissue (the lost or damaged form; ``voided_by_version`` names the reissue version of
  the same policy), with when and why; the row stays, so the voided serial remains searchable;
- **reconciled** (核销): ``reconciled_at`` set by ``reconcile`` on a used or voided serial.

The serial format: 1–32 characters of ``A–Z``, ``0–9`` and ``-``, ending in a run of digits; the part
before the run is the prefix, e.g. ``BJ2026-0000123`` (prefix ``BJ2026-``, number 123, width 7) or all
digits, ``202611010500000123``. A range ``FROM TO`` keeps the prefix and the zero-padded width of its
ends. Serials are compared upper-cased and stripped. Serials that documents arrive with (the record
contract allows any text of up to 32 characters) are registered as they come, format or not.

The overdue rate (超期未核销率, DOMAIN.md) is ``report``'s, defined in ``OVERDUE_DEFINITION``.

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

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from archive.index import Index, LedgerEvent, as_utc
from archive.index import schema as s
from core.errors import SerialError, SerialFormatError, UsageError

__all__ = [
    "DEFAULT_OVERDUE_DAYS",
    "MAX_RANGE",
    "OVERDUE_DEFINITION",
    "DocumentSerial",
    "IssuedBlock",
    "IssuedRange",
    "Reconciled",
    "SerialRecord",
    "SerialReport",
    "SerialUse",
    "expand_range",
    "issue_range",
    "issued_blocks",
    "lookup",
    "mark_used",
    "mark_used_many",
    "normalise",
    "parse_serial",
    "reconcile",
    "report",
]

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")
ISSUED, USED, VOIDED = "issued", "used", "voided"
MAX_RANGE = 10_000  # serials per ``issue_range``: a box of forms, not a typo of three extra digits
DEFAULT_OVERDUE_DAYS = 30
SUBJECT = "print-serials"  # the ledger subject of registry events (a serial may look like an ID number)
OVERDUE_DEFINITION = (
    "超期未核销率 = overdue / (awaiting + reconciled), over the serials used or voided in the period "
    "(by the earlier of the two dates); reconciled = reconciled by the end of the period; awaiting = not "
    "reconciled by then; overdue = awaiting and used or voided more than {days} days before the end of "
    "the period"
)
_SERIAL = re.compile(r"(?P<prefix>[A-Z0-9-]*?)(?P<digits>[0-9]+)")
_ANY = re.compile(r"\S(.{0,30}\S)?")


@dataclass(frozen=True)
class SerialRecord:
    """One serial as the registry knows it (times in UTC)."""

    serial: str
    state: str  # issued | used | voided
    registered: bool
    issued_to: str | None
    branch_code: str | None
    issued_at: datetime | None
    issued_by: str | None
    used_at: datetime | None
    policy_no: str | None
    version: int | None
    used_by: str | None
    voided_at: datetime | None
    void_reason: str | None
    voided_by: str | None
    voided_by_version: int | None
    reconciled_at: datetime | None
    reconciled_by: str | None

    def as_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class SerialUse:
    """What ``mark_used`` did: ``status`` is used | unregistered | already | conflict | failed."""

    serial: str
    status: str
    held_by: tuple[str, int] | None = None  # for a conflict: the document that holds the serial


@dataclass(frozen=True)
class DocumentSerial:
    """The form document ``policy_no`` v``version`` was printed on, as ``mark_used_many`` takes it."""

    serial: str | None
    policy_no: str
    version: int
    at: datetime | None = None  # when it was used; None: now
    by: str | None = None


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
class SerialReport:
    """Counts for a period and the overdue rate; see ``OVERDUE_DEFINITION``."""

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

    @property
    def rate(self) -> Fraction | None:
        """overdue / (awaiting + reconciled), exact; None when nothing was used or voided."""
        total = self.awaiting + self.reconciled
        return Fraction(self.overdue, total) if total else None

    @property
    def definition(self) -> str:
        return OVERDUE_DEFINITION.format(days=self.overdue_days)


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


def _record(row: Any) -> SerialRecord:
    return SerialRecord(
        serial=row.serial,
        state=row.state,
        registered=bool(row.registered),
        issued_to=row.issued_to,
        branch_code=row.branch_code,
        issued_at=as_utc(row.issued_at),
        issued_by=row.issued_by,
        used_at=as_utc(row.used_at),
        policy_no=row.policy_no,
        version=row.version,
        used_by=row.used_by,
        voided_at=as_utc(row.voided_at),
        void_reason=row.void_reason,
        voided_by=row.voided_by,
        voided_by_version=row.voided_by_version,
        reconciled_at=as_utc(row.reconciled_at),
        reconciled_by=row.reconciled_by,
    )


def lookup(index: Index, serial: str) -> SerialRecord | None:
    """The serial's registry row, or None if the registry has never seen it."""
    with index.engine.connect() as conn:
        row = conn.execute(
            select(s.print_serials).where(s.print_serials.c.serial == normalise(serial))
        ).first()
    return None if row is None else _record(row)


def row_for_update(conn: Connection, serial: str) -> Any | None:
    """The serial's row, locked for the rest of ``conn``'s transaction (PostgreSQL; SQLite locks it all)."""
    return conn.execute(
        select(s.print_serials).where(s.print_serials.c.serial == serial).with_for_update()
    ).first()


def issued_blocks(index: Index, serials: Iterable[str]) -> tuple[IssuedBlock, ...]:
    """The blocks of forms issued to clerks that hold any of ``serials``, in serial order.

    A serial the registry does not hold as issued to someone (unknown, or used unregistered) is in no
    block; so are serials not in the registry's format. Each block is read whole, whatever part of it
    ``serials`` name, from the rows issued at the same moment (``issued_at`` is indexed).
    """
    wanted: set[str] = set()
    for serial in serials:
        try:
            parse_serial(serial)
        except SerialFormatError:
            continue
        wanted.add(normalise(serial))
    t = s.print_serials
    issued = t.c.registered.is_(True) & t.c.issued_to.is_not(None) & t.c.issued_at.is_not(None)
    with index.engine.connect() as conn:
        moments = {
            row.issued_at
            for chunk in _chunks(sorted(wanted), 500)
            for row in conn.execute(select(t.c.issued_at).where(t.c.serial.in_(chunk), issued))
        }
        rows = [
            row
            for chunk in _chunks(sorted(moments), 500)
            for row in conn.execute(
                select(t.c.serial, t.c.state, t.c.policy_no, t.c.issued_to, t.c.issued_at).where(
                    t.c.issued_at.in_(chunk), issued
                )
            )
        ]
    # the rows of one moment, by clerk, prefix and width, cut where the numbers stop being consecutive
    runs: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
    for row in rows:
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
                issued_at=as_utc(at),
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
    when = as_utc(at) or datetime.now(UTC)
    t = s.print_serials
    with index.engine.begin() as conn:
        known = {
            row.serial: row
            for chunk in _chunks(serials, 500)
            for row in conn.execute(select(t.c.serial, t.c.registered).where(t.c.serial.in_(chunk)))
        }
        taken = sorted(k for k, row in known.items() if row.registered)
        if taken:
            shown = ", ".join(taken[:5]) + (" …" if len(taken) > 5 else "")
            raise SerialError(
                f"{len(taken)} of these serials are registered already: {shown}",
                hint="nothing was registered; issue the range without them",
            )
        values = {
            "registered": True,
            "issued_to": clerk,
            "branch_code": branch,
            "issued_at": when,
            "issued_by": by,
        }
        fresh = [x for x in serials if x not in known]
        for chunk in _chunks(fresh, 500):
            conn.execute(insert(t), [{"serial": x, "state": ISSUED, **values} for x in chunk])
        adopted = [x for x in serials if x in known]
        for chunk in _chunks(adopted, 500):
            conn.execute(update(t).where(t.c.serial.in_(chunk)).values(**values))
        index._append(  # the event commits with the rows
            conn,
            LedgerEvent(
                by,
                "serials.issued",
                SUBJECT,
                {
                    "first": serials[0],
                    "last": serials[-1],
                    "count": len(serials),
                    "to": clerk,
                    "branch": branch,
                },
            ),
        )
    return IssuedRange(first=serials[0], last=serials[-1], count=len(serials), adopted=len(adopted))


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
      names both documents ("conflict").

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
        results = list(_mark_used(index, claims))
    except SQLAlchemyError as e:
        if isinstance(e, IntegrityError) and len(claims) > 1:
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


def _mark_used(index: Index, claims: Sequence[DocumentSerial]) -> list[SerialUse]:
    with index.engine.begin() as conn:
        results = use_serials(conn, claims)
        incidents = [
            LedgerEvent(
                claim.by or "issuance",
                "incident.serial_conflict",
                claim.policy_no,
                {
                    "serial": use.serial,
                    "version": claim.version,
                    "held_by": {"policy_no": use.held_by[0], "version": use.held_by[1]}
                    if use.held_by
                    else None,
                },
            )
            for claim, use in zip(claims, results, strict=True)
            if use.status == "conflict"
        ]
        index._append_many(conn, incidents)  # the incidents commit with the checks
    return results


def use_serial(
    conn: Connection, serial: str, *, policy_no: str, version: int, at: datetime, by: str | None
) -> SerialUse:
    """``mark_used``'s change inside a caller's transaction (a reissue uses its new serial this way)."""
    (use,) = use_serials(conn, [DocumentSerial(serial, policy_no, version, at=at, by=by)])
    return use


def use_serials(conn: Connection, claims: Sequence[DocumentSerial]) -> list[SerialUse]:
    """``use_serial`` for each of ``claims`` (normalised serials, ``at`` given), in order: the rows read
    with one query and written with one statement per kind of change."""
    t = s.print_serials
    wanted = sorted({claim.serial for claim in claims})
    # locked in serial order: two writers with overlapping serials queue up instead of deadlocking
    held = {
        row.serial: (row.state, row.policy_no, row.version)
        for chunk in _chunks(wanted, 500)
        for row in conn.execute(
            select(t.c.serial, t.c.state, t.c.policy_no, t.c.version)
            .where(t.c.serial.in_(chunk))
            .order_by(t.c.serial)
            .with_for_update()
        )
    }
    fresh: list[dict[str, Any]] = []
    issued: list[dict[str, Any]] = []
    results: list[SerialUse] = []
    for claim in claims:
        serial = claim.serial
        assert serial is not None
        mine = (USED, claim.policy_no, claim.version)
        used = {
            "state": USED,
            "used_at": as_utc(claim.at),  # SQLite keeps no zone: everything is stored in UTC
            "policy_no": claim.policy_no,
            "version": claim.version,
            "used_by": claim.by,
        }
        state = held.get(serial)
        if state is None:
            fresh.append({"serial": serial, "registered": False, **used})
            held[serial] = mine
            results.append(SerialUse(serial, "unregistered"))
        elif state[0] == ISSUED:
            issued.append({"target": serial, **used})
            held[serial] = mine
            results.append(SerialUse(serial, "used"))
        elif state == mine:
            results.append(SerialUse(serial, "already"))
        else:
            results.append(SerialUse(serial, "conflict", held_by=(state[1], state[2]) if state[1] else None))
    if fresh:
        conn.execute(insert(t), fresh)
    if issued:
        conn.execute(update(t).where(t.c.serial == bindparam("target")), issued)
    return results


def void_serial(
    conn: Connection,
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
    """Void ``serial`` inside a caller's transaction (a reissue voids the policy's old form). A serial
    the registry never saw (issued before the registry, or by a batch that did not record it) is entered
    as used by ``policy_no`` v``used_version`` at ``used_at`` (when that version was filed), unregistered,
    and voided."""
    t = s.print_serials
    at = as_utc(at)
    values = {
        "state": VOIDED,
        "voided_at": at,
        "void_reason": reason,
        "voided_by": by,
        "voided_by_version": by_version,
    }
    if row_for_update(conn, serial) is None:
        conn.execute(
            insert(t).values(
                serial=serial,
                registered=False,
                used_at=as_utc(used_at),
                policy_no=policy_no,
                version=used_version,
                **values,
            )
        )
    else:
        conn.execute(update(t).where(t.c.serial == serial).values(**values))


def reconcile(index: Index, serials: Iterable[str], *, by: str, at: datetime | None = None) -> Reconciled:
    """Reconcile (核销) used or voided serials, all or none, with one ledger event.

    ``SerialError`` (nothing changed) if any is unknown or still only issued. Serials reconciled before
    are left as they were and reported in ``already``.
    """
    wanted = list(dict.fromkeys(normalise(x) for x in serials))
    if not wanted:
        raise UsageError("name the serials to reconcile")
    when = as_utc(at) or datetime.now(UTC)
    t = s.print_serials
    with index.engine.begin() as conn:
        rows = {
            row.serial: row
            for chunk in _chunks(wanted, 500)
            for row in conn.execute(select(t).where(t.c.serial.in_(chunk)).with_for_update())
        }
        unknown = [x for x in wanted if x not in rows]
        blank = [x for x in wanted if x in rows and rows[x].state == ISSUED]
        if unknown or blank:
            problems = []
            if unknown:
                problems.append("not in the registry: " + ", ".join(unknown[:5]))
            if blank:
                problems.append("issued but neither used nor voided: " + ", ".join(blank[:5]))
            raise SerialError("; ".join(problems), hint="nothing was reconciled")
        already = tuple(x for x in wanted if rows[x].reconciled_at is not None)
        todo = [x for x in wanted if rows[x].reconciled_at is None]
        for chunk in _chunks(todo, 500):
            conn.execute(update(t).where(t.c.serial.in_(chunk)).values(reconciled_at=when, reconciled_by=by))
        if todo:
            index._append(
                conn,
                LedgerEvent(by, "serials.reconciled", SUBJECT, {"count": len(todo), "serials": todo}),
            )
    return Reconciled(reconciled=tuple(todo), already=already)


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
    - overdue: awaiting, and used or voided before ``end − overdue_days`` (24:00 of ``end`` minus the days).
    """
    if overdue_days < 0:
        raise UsageError("--overdue-days must not be negative")
    end = end or today or datetime.now(CHINA).date()
    if start is not None and start > end:
        raise UsageError(f"the period starts ({start}) after it ends ({end})")
    as_of = datetime.combine(end + timedelta(days=1), time(), CHINA).astimezone(UTC)
    lo = datetime.combine(start, time(), CHINA).astimezone(UTC) if start else None
    cutoff = as_of - timedelta(days=overdue_days)
    t = s.print_serials

    def within(column: Any) -> Any:
        conditions = [column < as_of]
        if lo is not None:
            conditions.append(column >= lo)
        return and_(*conditions)

    def count_if(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    disposed = func.coalesce(t.c.used_at, t.c.voided_at)
    reconciled = and_(t.c.reconciled_at.is_not(None), t.c.reconciled_at < as_of)
    awaiting = or_(t.c.reconciled_at.is_(None), t.c.reconciled_at >= as_of)
    with index.engine.connect() as conn:
        counts = conn.execute(
            select(
                count_if(and_(t.c.registered.is_(True), within(t.c.issued_at))),
                count_if(within(t.c.used_at)),
                count_if(within(t.c.voided_at)),
                count_if(and_(t.c.registered.is_(False), within(t.c.used_at))),
            )
        ).one()
        population = conn.execute(
            select(
                count_if(reconciled), count_if(awaiting), count_if(and_(awaiting, disposed < cutoff))
            ).where(within(disposed))
        ).one()
    return SerialReport(
        start=start,
        end=end,
        as_of=as_of,
        overdue_days=overdue_days,
        issued=int(counts[0]),
        used=int(counts[1]),
        voided=int(counts[2]),
        unregistered=int(counts[3]),
        reconciled=int(population[0]),
        awaiting=int(population[1]),
        overdue=int(population[2]),
    )


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
