"""SQL for the values a policy is findable by across its life (issue 25; table ``lookups``).

A policy row and its parties hold the CURRENT names, plate, VIN and ID numbers (as keyed hashes); an
endorsement that changes one of them (``core.lifecycle.LOOKUP_FIELDS``) updates those columns and
writes both the old and the new value here, so that ``Index.find`` finds the policy by either. Property
addresses are looked up only here, as keyed hashes, from the issue on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Connection

from archive.index import schema as s
from archive.index.schema import as_utc
from core.lifecycle import LOOKUP_FIELDS, LookupChange
from core.privacy import mask_id

# Where an indexed field's current value lives besides ``lookups``: the policy column and, for a party,
# the party's role and the column of ``parties``.
_POLICY_COLUMN = {
    "applicant.name": "applicant_name",
    "insured.name": "insured_name",
    "vehicle.plate": "plate",
    "vehicle.vin": "vin",
}
_PARTY = {
    "applicant.name": ("applicant", "name"),
    "insured.name": ("insured", "name"),
    "applicant.id_no": ("applicant", "id_no"),
    "insured.id_no": ("insured", "id_no"),
}


@dataclass(frozen=True)
class Lifecycle:
    """What an endorsement does to the policy's index rows: a new status, and changed indexed fields."""

    since: datetime  # the endorsement's effective_at: when the new values hold
    status: str | None = None  # issued | surrendered | cancelled; None: unchanged
    status_since: datetime | None = None
    status_by: str | None = None
    changes: tuple[LookupChange, ...] = ()


@dataclass(frozen=True)
class HistoryRow:
    """One value of an indexed field and the version that set it (hashed values show as ``None``)."""

    field: str
    value: str | None
    version: int
    since: datetime


def normalised(field: str, value: str) -> str:
    """The form a value is stored and looked up in: whitespace collapsed; plates and VINs upper case."""
    text = " ".join(value.split())
    return text.upper() if field in ("vehicle.plate", "vehicle.vin") else text


def stored_value(field: str, value: str, identity: Callable[[str], str]) -> str:
    text = normalised(field, value)
    return identity(text) if LOOKUP_FIELDS[field] == "hashed" else text


def apply(
    conn: Connection,
    *,
    policy_no: str,
    version: int,
    previous_since: datetime,
    change: Lifecycle,
    identity: Callable[[str], str],
) -> dict[str, Any]:
    """Write ``change``'s lookups and party updates; return the ``policies`` columns to update."""
    values: dict[str, Any] = {}
    if change.status is not None:
        values.update(
            status=change.status, status_since=as_utc(change.status_since), status_by=change.status_by
        )
    for c in change.changes:
        old = stored_value(c.field, c.old, identity)
        new = stored_value(c.field, c.new, identity)
        known = set(
            conn.scalars(
                select(s.lookups.c.value).where(
                    and_(s.lookups.c.policy_no == policy_no, s.lookups.c.field == c.field)
                )
            )
        )
        rows = []
        if old not in known:  # the value the policy was issued with: findable from the start
            rows.append(
                {
                    "policy_no": policy_no,
                    "field": c.field,
                    "value": old,
                    "version": 1,
                    "since": as_utc(previous_since),
                }
            )
        rows.append(
            {
                "policy_no": policy_no,
                "field": c.field,
                "value": new,
                "version": version,
                "since": as_utc(change.since),
            }
        )
        conn.execute(insert(s.lookups), rows)
        if c.field in _POLICY_COLUMN:
            values[_POLICY_COLUMN[c.field]] = normalised(c.field, c.new)
        if c.field in _PARTY:
            role, what = _PARTY[c.field]
            where = and_(s.parties.c.policy_no == policy_no, s.parties.c.role == role)
            if what == "name":
                conn.execute(update(s.parties).where(where).values(name=normalised(c.field, c.new)))
            else:
                masked = mask_id(c.new)
                conn.execute(update(s.parties).where(where).values(id_hmac=new, id_masked=masked))
                if role == "insured":
                    values["insured_id_masked"] = masked
    return values


def issued_rows(
    policy_no: str, *, address: str | None, since: datetime, identity: Callable[[str], str]
) -> list[dict[str, Any]]:
    """Rows for a new policy: only its property address (the other fields are columns already)."""
    if not address:
        return []
    value = stored_value("property.address", address, identity)
    return [
        {
            "policy_no": policy_no,
            "field": "property.address",
            "value": value,
            "version": 1,
            "since": as_utc(since),
        }
    ]


def matching(field_names: Sequence[str], value: str) -> Any:
    """``SELECT policy_no`` of every policy that has had ``value`` in one of ``field_names``."""
    return select(s.lookups.c.policy_no).where(
        and_(s.lookups.c.field.in_(list(field_names)), s.lookups.c.value == value)
    )


def history(conn: Connection, policy_no: str) -> list[HistoryRow]:
    """The values of the fields an endorsement changed, oldest first (a field never changed, such as the
    address a property policy was issued with, is not history)."""
    rows = list(
        conn.execute(
            select(s.lookups)
            .where(s.lookups.c.policy_no == policy_no)
            .order_by(s.lookups.c.version, s.lookups.c.field)
        )
    )
    changed = {r.field for r in rows if r.version > 1}
    return [
        HistoryRow(
            r.field, r.value if LOOKUP_FIELDS.get(r.field) == "clear" else None, r.version, as_utc(r.since)
        )
        for r in rows
        if r.field in changed
    ]
