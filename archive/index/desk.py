"""The desk's SQL (tables ``desk_sessions`` and ``reissue_requests``): what ``usecases.desk`` asks of
the index (issue 24). The rules (expiry, who may approve what) are the use cases'; this module only
reads and writes rows inside a connection or transaction its caller (``Index``) opened."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from archive.index import schema as s
from archive.index.schema import as_utc


@dataclass(frozen=True)
class SessionRow:
    token_sha256: str
    user_name: str
    csrf: str
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None = None
    ended_why: str | None = None


@dataclass(frozen=True)
class ReissueRequestRow:
    """A clerk's reissue request; ``request_id`` is 0 until the index numbers it."""

    request_id: int
    policy_no: str
    branch_code: str
    reason: str
    clerk: str
    requester_id_hmac: str | None
    requester_role: str | None
    new_serial: str | None
    status: str  # pending | refused | released
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None
    version: int | None = None


def _session(row: object) -> SessionRow:
    r = row._mapping  # type: ignore[attr-defined]
    return SessionRow(
        token_sha256=r["token_sha256"],
        user_name=r["user_name"],
        csrf=r["csrf"],
        created_at=as_utc(r["created_at"]),  # type: ignore[arg-type]
        last_seen_at=as_utc(r["last_seen_at"]),  # type: ignore[arg-type]
        ended_at=as_utc(r["ended_at"]),
        ended_why=r["ended_why"],
    )


def add_session(conn: Connection, row: SessionRow) -> None:
    conn.execute(insert(s.desk_sessions), [row.__dict__])


def session(conn: Connection, token_sha256: str) -> SessionRow | None:
    row = conn.execute(
        select(s.desk_sessions).where(s.desk_sessions.c.token_sha256 == token_sha256)
    ).one_or_none()
    return _session(row) if row is not None else None


def touch_session(conn: Connection, token_sha256: str, at: datetime) -> None:
    conn.execute(
        update(s.desk_sessions)
        .where(s.desk_sessions.c.token_sha256 == token_sha256, s.desk_sessions.c.ended_at.is_(None))
        .values(last_seen_at=at)
    )


def end_session(conn: Connection, token_sha256: str, at: datetime, why: str) -> bool:
    """End the session if it is open; whether it was."""
    done = conn.execute(
        update(s.desk_sessions)
        .where(s.desk_sessions.c.token_sha256 == token_sha256, s.desk_sessions.c.ended_at.is_(None))
        .values(ended_at=at, ended_why=why)
    )
    return bool(done.rowcount)


def end_sessions_of(conn: Connection, user_name: str, at: datetime, why: str) -> int:
    done = conn.execute(
        update(s.desk_sessions)
        .where(s.desk_sessions.c.user_name == user_name, s.desk_sessions.c.ended_at.is_(None))
        .values(ended_at=at, ended_why=why)
    )
    return int(done.rowcount or 0)


def _request(row: object) -> ReissueRequestRow:
    r = dict(row._mapping)  # type: ignore[attr-defined]
    for k in ("requested_at", "decided_at"):
        r[k] = as_utc(r[k])
    return ReissueRequestRow(**r)


def add_request(conn: Connection, row: ReissueRequestRow) -> ReissueRequestRow:
    values = dict(row.__dict__)
    del values["request_id"]
    number = conn.execute(insert(s.reissue_requests).values(**values)).inserted_primary_key[0]
    return replace(row, request_id=int(number))


def request(conn: Connection, request_id: int, *, lock: bool = False) -> ReissueRequestRow | None:
    query = select(s.reissue_requests).where(s.reissue_requests.c.request_id == request_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    return _request(row) if row is not None else None


def requests(
    conn: Connection, *, policy_no: str | None, status: str | None, limit: int
) -> list[ReissueRequestRow]:
    r = s.reissue_requests.c
    query = select(s.reissue_requests).order_by(r.request_id.desc()).limit(limit)
    if policy_no is not None:
        query = query.where(r.policy_no == policy_no)
    if status is not None:
        query = query.where(r.status == status)
    return [_request(row) for row in conn.execute(query)]


def store_request(conn: Connection, row: ReissueRequestRow) -> None:
    values = dict(row.__dict__)
    del values["request_id"]
    conn.execute(
        update(s.reissue_requests).where(s.reissue_requests.c.request_id == row.request_id).values(**values)
    )
