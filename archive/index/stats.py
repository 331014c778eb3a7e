"""What the statistics read from the index (issue 25): counts aggregated in SQL over a time range.

Every query is bounded by an indexed time column (``policies.issued_at``, ``documents.created_at``,
``rejections.at``, ``print_serials.used_at``) and groups in the database, so that a month of a million
policies comes back as a few thousand rows. Timeliness needs China's working days, which SQL does not
know: the issue and endorsement versions come back counted by (approval date, issue date) in China
time, and ``usecases.stats`` judges each pair once.

The issue time: a policy's ``issued_at`` (the record's ``issued_at``, or the filing time when the record
had none); an endorsement's or reissue's ``created_at`` (the filing time: the index keeps no other).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, literal_column, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from archive.index import schema as s
from archive.index.schema import as_utc

GROUPS = ("branch", "product", "clerk", "day")
Key = str | date | None


@dataclass(frozen=True)
class RejectionFacts:
    """One rejected input line (``rejections``): its numbers as the batch report shows them (masked
    where they look like personal data), what it said of its branch, product and clerk (scrubbed), and
    the first field its reasons name."""

    at: datetime
    batch_id: str | None
    line: int | None
    kind: str | None
    record_id: str | None
    policy_no: str | None
    branch_code: str | None
    product_code: str | None
    clerk: str | None
    field: str | None


@dataclass(frozen=True)
class IssueCell:
    """Issue versions of one group, approved on ``approved_day`` and issued on ``issued_day`` (China
    dates; ``approved_day`` None: indexed before approval times were kept)."""

    key: Key
    approved_day: date | None
    issued_day: date
    versions: int
    complete: int  # of them, policies whose images are complete now
    exemption_kept: int  # of them, policies whose exemption notice (免责事项说明书) is not missing


@dataclass(frozen=True)
class LaterCell:
    """Endorsement or reissue versions of one group, by type and (approval date, filing date)."""

    key: Key
    kind: str  # endorsement | reissue
    endorsement_type: str | None
    approved_day: date | None
    issued_day: date
    versions: int


@dataclass(frozen=True)
class Cells:
    """Everything the statistics count for one range, grouped by one key (or none)."""

    issues: tuple[IssueCell, ...]
    later: tuple[LaterCell, ...]
    rejected: tuple[tuple[Key, int], ...]
    unregistered_serials: tuple[tuple[Key, int], ...]


def rejection_rows(rows: Sequence[RejectionFacts]) -> list[dict[str, Any]]:
    """``rejections`` rows, each value cut to its column (a rejected line's text may be any length)."""

    def cut(value: str | None, size: int) -> str | None:
        return value[:size] if value else None

    return [
        {
            "at": as_utc(r.at),
            "batch_id": cut(r.batch_id, 64),
            "line": r.line,
            "kind": cut(r.kind, 16),
            "record_id": cut(r.record_id, 64),
            "policy_no": cut(r.policy_no, 32),
            "branch_code": cut(r.branch_code, 6),
            "product_code": cut(r.product_code, 40),
            "clerk": cut(r.clerk, 20),
            "field": cut(r.field, 60),
        }
        for r in rows
    ]


def china_day(column: Any, dialect: str) -> ColumnElement[Any]:
    """The China date of a stored time as text ``YYYY-MM-DD``. Literal SQL, no bound parameters: the
    same expression in SELECT and GROUP BY must read the same to PostgreSQL."""
    if dialect == "postgresql":
        return func.to_char(
            func.timezone(literal_column("'Asia/Shanghai'"), column), literal_column("'YYYY-MM-DD'")
        )
    # SQLite keeps the UTC time as text; China has kept UTC+8, without daylight saving, since 1991
    return func.strftime(literal_column("'%Y-%m-%d'"), column, literal_column("'+8 hours'"))


def cells(conn: Connection, *, start: datetime, end: datetime, by: str | None) -> Cells:
    """The counts for [``start``, ``end``), grouped by ``by`` (one of ``GROUPS``, or None)."""
    if by is not None and by not in GROUPS:
        raise ValueError(f"statistics group by one of {', '.join(GROUPS)}, not {by!r}")
    dialect = conn.dialect.name
    start, end = as_utc(start), as_utc(end)
    p, d, r, rj, ps = s.policies, s.documents, s.reissues, s.rejections, s.print_serials

    def day(column: Any) -> ColumnElement[Any]:
        return china_day(column, dialect)

    def keyed(expressions: dict[str, Any]) -> list[Any]:
        return [] if by is None else [expressions[by].label("key")]

    # issue versions: the policy row carries the issue time and images, its version 1 the clerk and approval
    issued_day, approved_day = day(p.c.issued_at), day(d.c.approved_at)
    exemption_kept = (
        literal(",").concat(p.c.missing_images).concat(literal(",")).not_like("%,exemption_notice,%")
    )
    keys = keyed(
        {"branch": p.c.branch_code, "product": p.c.product_code, "clerk": d.c.clerk, "day": issued_day}
    )
    issues = (
        select(
            *keys,
            approved_day.label("approved_day"),
            issued_day.label("issued_day"),
            func.count().label("versions"),
            func.sum(case((p.c.complete.is_(True), 1), else_=0)).label("complete"),
            func.sum(case((exemption_kept, 1), else_=0)).label("exemption_kept"),
        )
        .select_from(p.join(d, and_(d.c.policy_no == p.c.policy_no, d.c.version == 1)))
        .where(p.c.issued_at >= start, p.c.issued_at < end)
        .group_by(*keys, approved_day, issued_day)
    )
    # endorsements and reissues, by when they were filed; a reissue indexed before versions carried
    # their clerk is counted by its reissue row's
    filed_day, later_approved = day(d.c.created_at), day(d.c.approved_at)
    clerk = func.coalesce(d.c.clerk, r.c.clerk)
    keys = keyed({"branch": p.c.branch_code, "product": p.c.product_code, "clerk": clerk, "day": filed_day})
    later = (
        select(
            *keys,
            d.c.kind,
            d.c.endorsement_type,
            later_approved.label("approved_day"),
            filed_day.label("issued_day"),
            func.count().label("versions"),
        )
        .select_from(
            d.join(p, p.c.policy_no == d.c.policy_no).outerjoin(
                r, and_(r.c.policy_no == d.c.policy_no, r.c.version == d.c.version)
            )
        )
        .where(d.c.created_at >= start, d.c.created_at < end, d.c.kind.in_(("endorsement", "reissue")))
        .group_by(*keys, d.c.kind, d.c.endorsement_type, later_approved, filed_day)
    )
    # rejected lines: an endorsement's line names no branch or product, its policy does (when the report
    # shows its number unmasked)
    keys = keyed(
        {
            "branch": func.coalesce(rj.c.branch_code, p.c.branch_code),
            "product": func.coalesce(rj.c.product_code, p.c.product_code),
            "clerk": rj.c.clerk,
            "day": day(rj.c.at),
        }
    )
    rejected = (
        select(*keys, func.count().label("n"))
        .select_from(rj.outerjoin(p, p.c.policy_no == rj.c.policy_no))
        .where(rj.c.at >= start, rj.c.at < end)
        .group_by(*keys)
    )
    # serials used in the range that were never issued to anyone (registered false)
    keys = keyed(
        {
            "branch": func.coalesce(p.c.branch_code, ps.c.branch_code),
            "product": p.c.product_code,
            "clerk": ps.c.used_by,
            "day": day(ps.c.used_at),
        }
    )
    unregistered = (
        select(*keys, func.count().label("n"))
        .select_from(ps.outerjoin(p, p.c.policy_no == ps.c.policy_no))
        .where(ps.c.registered.is_(False), ps.c.used_at >= start, ps.c.used_at < end)
        .group_by(*keys)
    )

    def key(row: Any) -> Key:
        if by is None:
            return None
        return _date(row.key) if by == "day" else row.key

    return Cells(
        issues=tuple(
            IssueCell(
                key(row),
                _date(row.approved_day),
                _date(row.issued_day),
                int(row.versions),
                int(row.complete or 0),
                int(row.exemption_kept or 0),
            )
            for row in conn.execute(issues)
        ),
        later=tuple(
            LaterCell(
                key(row),
                row.kind,
                row.endorsement_type,
                _date(row.approved_day),
                _date(row.issued_day),
                int(row.versions),
            )
            for row in conn.execute(later)
        ),
        rejected=tuple((key(row), int(row.n)) for row in conn.execute(rejected)),
        unregistered_serials=tuple((key(row), int(row.n)) for row in conn.execute(unregistered)),
    )


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None
