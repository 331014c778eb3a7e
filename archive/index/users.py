"""The users' SQL (table ``users``): what ``archive.users`` asks of the index (issue 24, "Identity").

The rules (valid names, roles and branches, password hashing, the lockout) are ``archive.users``'; this
module only reads and writes rows, inside a connection or transaction its caller opened (``Index``'s
public methods). Roles and branch prefixes are stored comma-separated and sorted; times in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from archive.index import schema as s
from archive.index.schema import as_utc


@dataclass(frozen=True)
class UserRecord:
    """One user as the index holds it, password hash included: the domain never hands it out whole."""

    name: str
    display_name: str
    roles: frozenset[str]
    branches: tuple[str, ...]  # branch-code prefixes, sorted; empty: every branch
    enabled: bool
    password_hash: str | None
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime


def _row(user: UserRecord) -> dict[str, object]:
    return {
        "name": user.name,
        "display_name": user.display_name,
        "roles": ",".join(sorted(user.roles)),
        "branches": ",".join(sorted(user.branches)),
        "enabled": user.enabled,
        "password_hash": user.password_hash,
        "failed_logins": user.failed_logins,
        "locked_until": user.locked_until,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


def _record(row: object) -> UserRecord:
    r = row._mapping  # type: ignore[attr-defined]
    return UserRecord(
        name=r["name"],
        display_name=r["display_name"],
        roles=frozenset(x for x in r["roles"].split(",") if x),
        branches=tuple(x for x in r["branches"].split(",") if x),
        enabled=bool(r["enabled"]),
        password_hash=r["password_hash"],
        failed_logins=r["failed_logins"],
        locked_until=as_utc(r["locked_until"]),
        created_at=as_utc(r["created_at"]),  # type: ignore[arg-type]
        updated_at=as_utc(r["updated_at"]),  # type: ignore[arg-type]
    )


def lookup(conn: Connection, name: str, *, lock: bool = False) -> UserRecord | None:
    """The user named ``name``, or None; ``lock`` holds the row until the transaction ends."""
    query = select(s.users).where(s.users.c.name == name)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    return _record(row) if row is not None else None


def every(conn: Connection) -> list[UserRecord]:
    """Every user, sorted by name."""
    return [_record(r) for r in conn.execute(select(s.users).order_by(s.users.c.name))]


def add(conn: Connection, user: UserRecord) -> None:
    """Insert ``user``; an ``IntegrityError`` when the name is taken."""
    conn.execute(insert(s.users), [_row(user)])


def store(conn: Connection, user: UserRecord) -> None:
    """Write every field of ``user`` over its row (the name is the key and stays)."""
    values = _row(user)
    del values["name"]
    conn.execute(update(s.users).where(s.users.c.name == user.name).values(**values))
