"""The index's reads for the archive audit (``archive/audit/``): the lot, the ledger trail of one
policy, the objects the index claims, version gaps, and how long a sample is kept.

The index is the only owner of SQL (DESIGN.md, "Seams"): the audit reaches these through ``Index``'s
public methods and gets plain values back, never a row of a table it would have to know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from archive.index import schema as s
from archive.index.chain import GENESIS, as_utc, row_hash


@dataclass(frozen=True)
class LotPolicy:
    """One policy of an audit's lot: what sampling, stratification and the serial check need."""

    policy_no: str
    branch_code: str
    product_code: str
    print_serial: str | None


@dataclass(frozen=True)
class TrailEvent:
    """One ledger event about a subject, as stored, with what the index finds when it checks it.

    ``intact``: its hash, recomputed over its content and ``prev_hash``, is the hash stored.
    ``before``: the stored hash of the event before it in the global chain (``GENESIS`` for the first
    event), or None when that event is not in the ledger.
    """

    seq: int
    action: str
    detail: str  # the JSON text as stored: the audit parses it and says when it cannot
    prev_hash: str
    hash: str
    intact: bool
    before: str | None


@dataclass(frozen=True)
class ClaimedObject:
    """An object an index row names: a version's customer copy, archive copy or manifest, or a
    reissue's marked copy (``part``: customer | bundle | manifest | reissued)."""

    key: str
    policy_no: str
    version: int
    kind: str | None  # the version's kind; None for a reissued copy
    part: str
    sha256: str
    size: int


@dataclass(frozen=True)
class VersionGap:
    """A policy whose row's current version is not the highest version of its documents."""

    policy_no: str
    current_version: int
    top: int | None  # None: no document row at all


def lot(
    engine: Engine,
    *,
    batch_id: str | None = None,
    issued_from: datetime | None = None,
    issued_before: datetime | None = None,
    branch: str | None = None,
    product: str | None = None,
) -> tuple[LotPolicy, ...]:
    """Policies with a version filed by ``batch_id``, issued in [``issued_from``, ``issued_before``),
    of ``branch`` and ``product`` (every given criterion holds), sorted by policy number."""
    p, d = s.policies, s.documents
    conditions = []
    if batch_id:
        conditions.append(p.c.policy_no.in_(select(d.c.policy_no).where(d.c.batch_id == batch_id)))
    if issued_from:
        conditions.append(p.c.issued_at >= issued_from)
    if issued_before:
        conditions.append(p.c.issued_at < issued_before)
    if branch:
        conditions.append(p.c.branch_code == branch.strip())
    if product:
        conditions.append(p.c.product_code == product.strip())
    query = select(p.c.policy_no, p.c.branch_code, p.c.product_code, p.c.print_serial).where(*conditions)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(p.c.policy_no)).all()
    return tuple(LotPolicy(r.policy_no, r.branch_code, r.product_code, r.print_serial) for r in rows)


def longest_retention(engine: Engine, policy_nos: Sequence[str]) -> datetime | None:
    """The latest ``retain_until`` of the given policies (None for none, or none indexed)."""
    if not policy_nos:
        return None
    p = s.policies
    with engine.connect() as conn:
        latest = conn.execute(
            select(func.max(p.c.retain_until)).where(p.c.policy_no.in_(policy_nos))
        ).scalar()
    return as_utc(latest) if latest is not None else None


def ledger_trail(engine: Engine, subject: str) -> list[TrailEvent]:
    """The ledger events about ``subject`` in order, each checked against its hash and its predecessor."""
    led = s.ledger
    with engine.connect() as conn:
        events = list(conn.execute(select(led).where(led.c.subject == subject).order_by(led.c.seq)))
        wanted = {e.seq - 1 for e in events if e.seq > 1}
        previous = {
            r.seq: r.hash for r in conn.execute(select(led.c.seq, led.c.hash).where(led.c.seq.in_(wanted)))
        }
    out = []
    for e in events:
        digest = row_hash(e)
        before = GENESIS if e.seq == 1 else previous.get(e.seq - 1)
        out.append(TrailEvent(e.seq, e.action, e.detail, e.prev_hash, e.hash, digest == e.hash, before))
    return out


def ledger_subjects(engine: Engine, action: str) -> set[str]:
    """The subjects of every ledger event with ``action``."""
    led = s.ledger
    with engine.connect() as conn:
        return set(conn.execute(select(led.c.subject).where(led.c.action == action)).scalars())


def claimed_objects(engine: Engine) -> list[ClaimedObject]:
    """Every object key an index row names, version by version, then the reissued copies."""
    d, r = s.documents, s.reissues
    claims: list[ClaimedObject] = []
    with engine.connect() as conn:
        for row in conn.execute(select(d).order_by(d.c.policy_no, d.c.version)):
            for part in ("customer", "bundle", "manifest"):
                claims.append(
                    ClaimedObject(
                        key=getattr(row, f"{part}_key"),
                        policy_no=row.policy_no,
                        version=row.version,
                        kind=row.kind,
                        part=part,
                        sha256=getattr(row, f"{part}_sha256"),
                        size=getattr(row, f"{part}_size"),
                    )
                )
        for row in conn.execute(select(r)):
            claims.append(
                ClaimedObject(
                    key=row.copy_key,
                    policy_no=row.policy_no,
                    version=row.version,
                    kind=None,
                    part="reissued",
                    sha256=row.copy_sha256,
                    size=row.copy_size,
                )
            )
    return claims


def version_gaps(engine: Engine) -> list[VersionGap]:
    """Policies whose current version is not their highest document version."""
    p, d = s.policies, s.documents
    newest = select(d.c.policy_no, func.max(d.c.version).label("top")).group_by(d.c.policy_no).subquery()
    query = select(p.c.policy_no, p.c.current_version, newest.c.top).join(
        newest, newest.c.policy_no == p.c.policy_no, isouter=True
    )
    with engine.connect() as conn:
        return [
            VersionGap(r.policy_no, r.current_version, r.top)
            for r in conn.execute(query)
            if r.top != r.current_version
        ]
