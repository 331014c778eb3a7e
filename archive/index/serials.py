"""The print-serial registry's SQL (table ``print_serials``): what ``archive.serials`` asks of the index.

The rules (the serial format, what is refused and why, the overdue rate's definition) are
``archive.serials``'; this module only reads and writes rows, inside a transaction its caller opened
(``Index``'s public methods, or an index commit that voids or uses a serial with its version). Every
time is stored in UTC (SQLite keeps no zone).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from archive.index import schema as s
from archive.index.schema import as_utc

ISSUED, USED, VOIDED = "issued", "used", "voided"
BLANK_LOST, BLANK_SPOILT = "lost", "spoilt"  # a blank form's void reason (a reissue's names the reissue)
_CHUNK = 500  # serials per IN (…): well under every driver's limit on bound parameters


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
    """What a use of a serial did: ``status`` is used | unregistered | already | conflict | failed."""

    serial: str
    status: str
    held_by: tuple[str, int] | None = None  # for a conflict: the document that holds the serial
    # for "used": the clerk the form was issued to (a use by another clerk is reported); not compared
    issued_to: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DocumentSerial:
    """The form document ``policy_no`` v``version`` was printed on, as ``mark_used_many`` takes it."""

    serial: str | None
    policy_no: str
    version: int
    at: datetime | None = None  # when it was used; None: now
    by: str | None = None


@dataclass(frozen=True)
class VoidedSerial:
    """A form voided: ``serial``, which document ``policy_no`` v``used_version`` was printed on (filed at
    ``used_at``), voided because version ``by_version`` replaces it, for ``reason``, at ``at`` by ``by``."""

    serial: str
    policy_no: str
    used_version: int
    used_at: datetime
    by_version: int
    reason: str
    at: datetime
    by: str


@dataclass(frozen=True)
class IssuedSerial:
    """A serial issued to a clerk, as the blocks of ``archive.serials.issued_blocks`` are built from."""

    serial: str
    state: str
    policy_no: str | None
    issued_to: str
    issued_at: datetime


@dataclass(frozen=True)
class SerialCounts:
    """The registry's counts for a period (see ``archive.serials.OVERDUE_DEFINITION`` and
    ``RETURN_DEFINITION``)."""

    issued: int
    used: int
    voided: int
    unregistered: int
    reconciled: int
    awaiting: int
    overdue: int
    out_blank: int  # issued in the period, neither used nor voided at its end (usable, issued out)
    out_used: int  # issued in the period, used by its end
    unreturned: int  # out_blank, issued before ``overdue_before`` (超期未回收)
    voided_lost: int  # blank forms voided in the period as lost
    voided_spoilt: int  # … as spoilt


@dataclass(frozen=True)
class OtherClerkUse:
    """A form used by a clerk other than the one it was issued to."""

    serial: str
    issued_to: str
    used_by: str
    policy_no: str | None
    version: int | None
    used_at: datetime | None


def record_of(row: Any) -> SerialRecord:
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


# --- reads -------------------------------------------------------------------------------------------------


def lookup(conn: Connection, serial: str) -> SerialRecord | None:
    row = conn.execute(select(s.print_serials).where(s.print_serials.c.serial == serial)).first()
    return None if row is None else record_of(row)


def records(conn: Connection, serials: Sequence[str], *, lock: bool = False) -> dict[str, SerialRecord]:
    """The rows the registry holds of ``serials``, by serial; ``lock``: locked in serial order for the
    rest of the transaction (PostgreSQL; SQLite's BEGIN IMMEDIATE holds the whole database already), so
    that two writers with overlapping serials queue up instead of deadlocking."""
    t = s.print_serials
    found: dict[str, SerialRecord] = {}
    for chunk in _chunks(sorted(set(serials)), _CHUNK):
        query = select(t).where(t.c.serial.in_(chunk)).order_by(t.c.serial)
        for row in conn.execute(query.with_for_update() if lock else query):
            found[row.serial] = record_of(row)
    return found


def issued_alongside(conn: Connection, serials: Iterable[str]) -> list[IssuedSerial]:
    """Every serial issued to a clerk at the same moment (``issued_at``, indexed) as one of ``serials``."""
    t = s.print_serials
    issued = t.c.registered.is_(True) & t.c.issued_to.is_not(None) & t.c.issued_at.is_not(None)
    moments = {
        row.issued_at
        for chunk in _chunks(sorted(set(serials)), _CHUNK)
        for row in conn.execute(select(t.c.issued_at).where(t.c.serial.in_(chunk), issued))
    }
    return [
        IssuedSerial(row.serial, row.state, row.policy_no, row.issued_to, as_utc(row.issued_at))
        for chunk in _chunks(sorted(moments), _CHUNK)
        for row in conn.execute(
            select(t.c.serial, t.c.state, t.c.policy_no, t.c.issued_to, t.c.issued_at).where(
                t.c.issued_at.in_(chunk), issued
            )
        )
    ]


def newest_used(conn: Connection, policy_no: str) -> tuple[str, int] | None:
    """The serial the registry has as used by ``policy_no``'s newest version that used one, and that
    version (1 where the row names none)."""
    t = s.print_serials
    row = conn.execute(
        select(t.c.serial, t.c.version)
        .where(t.c.policy_no == policy_no, t.c.state == USED)
        .order_by(t.c.version.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.serial, row.version or 1)


def counts(
    conn: Connection, *, start: datetime | None, end: datetime, overdue_before: datetime
) -> SerialCounts:
    """Counts of the half-open period [``start``, ``end``) (no ``start``: since the beginning), exactly
    as ``archive.serials.OVERDUE_DEFINITION`` says; ``end`` is also the moment of the reconciliation
    state, and a serial disposed of before ``overdue_before`` and still awaiting is overdue."""
    t = s.print_serials

    def within(column: Any) -> Any:
        conditions = [column < end]
        if start is not None:
            conditions.append(column >= start)
        return and_(*conditions)

    def count_if(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    disposed = func.coalesce(t.c.used_at, t.c.voided_at)  # the earlier of the two: a void follows a use
    reconciled = and_(t.c.reconciled_at.is_not(None), t.c.reconciled_at < end)
    awaiting = or_(t.c.reconciled_at.is_(None), t.c.reconciled_at >= end)
    totals = conn.execute(
        select(
            count_if(and_(t.c.registered.is_(True), within(t.c.issued_at))),
            count_if(within(t.c.used_at)),
            count_if(within(t.c.voided_at)),
            count_if(and_(t.c.registered.is_(False), within(t.c.used_at))),
        )
    ).one()
    population = conn.execute(
        select(
            count_if(reconciled), count_if(awaiting), count_if(and_(awaiting, disposed < overdue_before))
        ).where(within(disposed))
    ).one()
    # 超期未回收率's population: forms issued to a clerk in the period, in their state at its end
    used_by_end = and_(t.c.used_at.is_not(None), t.c.used_at < end)
    blank_at_end = and_(
        or_(t.c.used_at.is_(None), t.c.used_at >= end), or_(t.c.voided_at.is_(None), t.c.voided_at >= end)
    )
    out = conn.execute(
        select(
            count_if(blank_at_end),
            count_if(used_by_end),
            count_if(and_(blank_at_end, t.c.issued_at < overdue_before)),
        ).where(t.c.registered.is_(True), t.c.issued_to.is_not(None), within(t.c.issued_at))
    ).one()
    blank_void = and_(t.c.used_at.is_(None), within(t.c.voided_at))
    voids = conn.execute(
        select(
            count_if(and_(blank_void, t.c.void_reason == BLANK_LOST)),
            count_if(and_(blank_void, t.c.void_reason == BLANK_SPOILT)),
        )
    ).one()
    return SerialCounts(*(int(n) for n in (*totals, *population, *out, *voids)))


def other_clerk_uses(conn: Connection, *, start: datetime | None, end: datetime) -> list[OtherClerkUse]:
    """Forms used in [``start``, ``end``) by a clerk other than the one they were issued to (compared
    case-blind, as directory names are), oldest use first."""
    t = s.print_serials
    conditions = [
        t.c.registered.is_(True),
        t.c.issued_to.is_not(None),
        t.c.used_by.is_not(None),
        func.lower(func.trim(t.c.issued_to)) != func.lower(func.trim(t.c.used_by)),
        t.c.used_at < end,
    ]
    if start is not None:
        conditions.append(t.c.used_at >= start)
    query = (
        select(t.c.serial, t.c.issued_to, t.c.used_by, t.c.policy_no, t.c.version, t.c.used_at)
        .where(*conditions)
        .order_by(t.c.used_at, t.c.serial)
    )
    return [
        OtherClerkUse(r.serial, r.issued_to, r.used_by, r.policy_no, r.version, as_utc(r.used_at))
        for r in conn.execute(query)
    ]


# --- writes ------------------------------------------------------------------------------------------------


def register(
    conn: Connection,
    serials: Sequence[str],
    *,
    known: Iterable[str],
    to: str,
    branch: str | None,
    at: datetime,
    by: str,
) -> None:
    """Register ``serials`` as issued to clerk ``to``: new rows, and the ``known`` ones (used before they
    were registered) updated with their state kept."""
    t = s.print_serials
    values = {
        "registered": True,
        "issued_to": to,
        "branch_code": branch,
        "issued_at": as_utc(at),
        "issued_by": by,
    }
    seen = set(known)
    for chunk in _chunks([x for x in serials if x not in seen], _CHUNK):
        conn.execute(insert(t), [{"serial": x, "state": ISSUED, **values} for x in chunk])
    for chunk in _chunks(sorted(seen), _CHUNK):
        conn.execute(update(t).where(t.c.serial.in_(chunk)).values(**values))


def use_serials(conn: Connection, claims: Sequence[DocumentSerial]) -> list[SerialUse]:
    """Record that each of ``claims`` (normalised serials, ``at`` given) was printed on its serial, in
    order: the rows read with one query and written with one statement per kind of change.

    - issued serial: now used ("used");
    - unknown serial: recorded as used, unregistered ("unregistered");
    - used by this same document already: nothing changes ("already");
    - used by another document, or voided: nothing changes ("conflict", naming the holder).
    """
    t = s.print_serials
    rows = records(conn, [c.serial for c in claims if c.serial], lock=True)
    held = {serial: (row.state, row.policy_no, row.version) for serial, row in rows.items()}
    fresh: list[dict[str, Any]] = []
    issued: list[dict[str, Any]] = []
    results: list[SerialUse] = []
    for claim in claims:
        serial = claim.serial
        assert serial is not None
        mine = (USED, claim.policy_no, claim.version)
        used = {
            "state": USED,
            "used_at": as_utc(claim.at),
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
            results.append(SerialUse(serial, "used", issued_to=rows[serial].issued_to))
        elif state == mine:
            results.append(SerialUse(serial, "already"))
        else:
            results.append(SerialUse(serial, "conflict", held_by=(state[1], state[2]) if state[1] else None))
    if fresh:
        conn.execute(insert(t), fresh)
    if issued:
        conn.execute(update(t).where(t.c.serial == bindparam("target")), issued)
    return results


def use_serial(
    conn: Connection, serial: str, *, policy_no: str, version: int, at: datetime, by: str | None
) -> SerialUse:
    """``use_serials`` for one serial (a reissue uses its new serial inside its own commit)."""
    (use,) = use_serials(conn, [DocumentSerial(serial, policy_no, version, at=at, by=by)])
    return use


def void_serial(conn: Connection, void: VoidedSerial) -> None:
    """Void ``void.serial`` (a reissue voids the policy's old form). A serial the registry never saw
    (issued before the registry, or by a batch that did not record it) is entered as used by the document
    that printed it, at the time that version was filed, unregistered, and voided."""
    t = s.print_serials
    values = {
        "state": VOIDED,
        "voided_at": as_utc(void.at),
        "void_reason": void.reason,
        "voided_by": void.by,
        "voided_by_version": void.by_version,
    }
    serial = void.serial
    locked = conn.execute(select(t.c.serial).where(t.c.serial == serial).with_for_update()).first()
    if locked is None:
        conn.execute(
            insert(t).values(
                serial=serial,
                registered=False,
                used_at=as_utc(void.used_at),
                policy_no=void.policy_no,
                version=void.used_version,
                **values,
            )
        )
    else:
        conn.execute(update(t).where(t.c.serial == serial).values(**values))


def void_blank(conn: Connection, serials: Sequence[str], *, reason: str, at: datetime, by: str) -> None:
    """Void blank forms (issued, never used) for ``reason`` (lost | spoilt); they name no document."""
    t = s.print_serials
    for chunk in _chunks(serials, _CHUNK):
        conn.execute(
            update(t)
            .where(t.c.serial.in_(chunk))
            .values(state=VOIDED, voided_at=as_utc(at), void_reason=reason, voided_by=by)
        )


def reconcile(conn: Connection, serials: Sequence[str], *, at: datetime, by: str) -> None:
    t = s.print_serials
    for chunk in _chunks(serials, _CHUNK):
        conn.execute(
            update(t).where(t.c.serial.in_(chunk)).values(reconciled_at=as_utc(at), reconciled_by=by)
        )


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
