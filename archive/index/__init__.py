"""The archive's SQL index: SQLite by default, PostgreSQL by URL, through SQLAlchemy.

What it promises:

- One transaction per archived version: the policy row (or its update), its parties, the document
  version, the record row that makes re-runs idempotent, and the ledger event commit together or not at
  all (DESIGN.md invariant 3: the index row and the ledger event are one step here, which is stricter).
  ``archive_policies`` puts several new policies in one transaction, all or nothing, for throughput.
- Raw ID numbers never reach the database: ``identity()`` turns one into an HMAC-SHA256 with the
  centre's secret key (exact lookup) and ``mask_id`` into a display form. Phones and addresses are not
  stored.
- The ledger is append-only and hash-chained; ``verify_ledger`` finds a changed, removed or reordered
  event.
- The schema is migrated with Alembic to the newest version on ``Index.open``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, func, insert, select, union, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, ProgrammingError, SQLAlchemyError

from archive.index import audits, desk, lookups, stats
from archive.index import schema as s
from archive.index import serials as registry
from archive.index import users as people
from archive.index.audits import ClaimedObject, LotPolicy, TrailEvent, VersionGap
from archive.index.chain import GENESIS, row_hash
from archive.index.chain import entry_hash as _entry_hash
from archive.index.lookups import HistoryRow, Lifecycle
from archive.index.schema import as_utc
from archive.index.stats import RejectionFacts
from core.errors import IndexConflict, IndexUnavailable, IssuanceError, SerialError
from core.manifest import RecordFacts, StoredObject
from core.privacy import mask_id, scrub
from core.verification import normalise_code, verification_code

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision: an index already there is opened without loading Alembic (a third of a
# second of imports, paid by every command). tests/test_index.py checks it against the migrations.
SCHEMA_HEAD = "0008"
_LEDGER_HEAD_FOR_UPDATE = (
    select(s.ledger_head.c.seq, s.ledger_head.c.hash).where(s.ledger_head.c.id == 1).with_for_update()
)


@dataclass(frozen=True)
class PartyFacts:
    role: str  # applicant | insured | beneficiary
    seq: int
    name: str
    id_type: str
    id_no: str  # in clear only in memory: the index stores its HMAC and masked form


@dataclass(frozen=True)
class PolicyFacts:
    policy_no: str
    proposal_no: str
    product_code: str
    branch_code: str
    branch_name: str
    applicant_name: str
    insured_name: str
    insured_id_no: str
    plate: str | None
    vin: str | None
    period_start: datetime
    period_end: datetime
    total_premium: Decimal
    currency: str
    print_serial: str | None
    issued_at: datetime
    key_prefix: str
    retain_until: datetime
    parties: tuple[PartyFacts, ...]
    property_address: str | None = None  # in clear only in memory: looked up by keyed hash (lookups)


@dataclass(frozen=True)
class VersionFacts:
    policy_no: str
    version: int
    kind: str  # issue | endorsement | supplement | reissue
    created_at: datetime
    customer: StoredObject
    bundle: StoredObject
    manifest: StoredObject
    retain_until: datetime
    record_id: str | None = None
    endorsement_no: str | None = None
    batch_id: str | None = None
    seal_id: str | None = None
    seal_version: str | None = None
    # what the statistics count by (issue 25): the endorsement's type, who issued the record (a
    # reissue's clerk), and when underwriting approved it
    endorsement_type: str | None = None
    clerk: str | None = None
    approved_at: datetime | None = None


@dataclass(frozen=True)
class LedgerEvent:
    actor: str
    action: str
    subject: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewPolicy:
    """Version 1 of a new policy, as ``archive_policies`` takes it: what ``archive_policy`` takes."""

    facts: PolicyFacts
    version: VersionFacts
    record: RecordFacts
    missing_images: Sequence[str]
    event: LedgerEvent


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class PolicySummary:
    """What ``issuance find`` shows: no clear ID numbers, no phones, no addresses."""

    policy_no: str
    product_code: str
    branch_code: str
    insured_name: str
    id_masked: str
    plate: str | None
    period_start: datetime
    period_end: datetime
    versions: int
    complete: bool
    missing_images: tuple[str, ...]
    status: str  # issued | surrendered | cancelled (core.lifecycle)
    issued_at: datetime
    print_serial: str | None
    status_by: str | None = None  # the endorsement that set the status
    status_since: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "policy_no": self.policy_no,
            "product_code": self.product_code,
            "branch_code": self.branch_code,
            "insured_name": self.insured_name,
            "id_masked": self.id_masked,
            "plate": self.plate,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "versions": self.versions,
            "complete": self.complete,
            "missing_images": list(self.missing_images),
            "status": self.status,
            "status_by": self.status_by,
            "status_since": self.status_since.isoformat() if self.status_since else None,
        }


def _database_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """A database that went away mid-run is a component failure (exit 3), not a crash with a traceback."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (OperationalError, InterfaceError) as e:
            raise IndexUnavailable(f"the index at {self.describe()} is unavailable: {e.orig or e}") from e

    return wrapper


def _sqlite_pragmas(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN; take the write lock at BEGIN (IMMEDIATE) so two
    # processes appending to the ledger queue up instead of failing with "database is locked".
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Index:
    """The archive's index over one SQLAlchemy engine. Thread-safe; open one per process."""

    def __init__(self, engine: Engine, *, hmac_key: bytes) -> None:
        if len(hmac_key) < 16:
            raise IssuanceError("the HMAC key is too short (need at least 16 bytes)")
        self.engine = engine
        self._key = hmac_key

    @classmethod
    def open(cls, url: str, *, hmac_key: bytes, migrate: bool = True) -> Index:
        """Connect to ``url`` (an SQLAlchemy URL) and bring the schema to the newest migration."""
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            database = url.split("///", 1)[-1]
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5)
        try:
            engine = create_engine(url, **kwargs)
        except Exception as e:  # a malformed URL or a missing driver
            raise IndexUnavailable(f"cannot use the index at {_safe_url(url)}: {e}") from e
        if engine.dialect.name == "sqlite":
            _sqlite_pragmas(engine)
        index = cls(engine, hmac_key=hmac_key)
        if migrate:
            index.migrate()
        return index

    def describe(self) -> str:
        return _safe_url(str(self.engine.url))

    def migrate(self) -> None:
        """Bring the schema to the newest migration (nothing to do, and Alembic not loaded, when it is)."""
        try:
            if self.schema_version() == SCHEMA_HEAD:
                return
        except (OperationalError, ProgrammingError):
            pass  # no alembic_version table yet (a new index), or the server is down: Alembic says which
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                config.attributes["connection"] = conn
                config.attributes["hmac_key"] = self._key  # 0004 backfills verification codes with it
                command.upgrade(config, "head")
        except OperationalError as e:
            raise IndexUnavailable(f"cannot open the index at {self.describe()}: {e.orig}") from e

    def schema_version(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def close(self) -> None:
        self.engine.dispose()

    # --- identities ---------------------------------------------------------------------------------

    def identity(self, id_no: str) -> str:
        """Keyed hash of an ID number, the only form in which the index knows it."""
        normalised = id_no.strip().upper()
        return hmac.new(self._key, normalised.encode("utf-8"), hashlib.sha256).hexdigest()

    # --- reads ---------------------------------------------------------------------------------------

    @_database_errors
    def record(self, record_id: str) -> RecordFacts | None:
        return self.records([record_id]).get(record_id)

    @_database_errors
    def records(self, record_ids: Sequence[str]) -> dict[str, RecordFacts]:
        """``record`` for many record ids at once (one query): the ones indexed, by id."""
        if not record_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.records).where(s.records.c.record_id.in_(sorted(set(record_ids)))))
            return {
                row.record_id: RecordFacts(
                    record_id=row.record_id,
                    content_sha256=row.content_sha256,
                    kind=row.kind,
                    policy_no=row.policy_no,
                    batch_id=row.batch_id,
                    line=row.line,
                )
                for row in rows
            }

    @_database_errors
    def indexed_policies(self, policy_nos: Sequence[str]) -> set[str]:
        """Which of ``policy_nos`` the index holds (one query)."""
        if not policy_nos:
            return set()
        with self.engine.connect() as conn:
            column = s.policies.c.policy_no
            return set(conn.scalars(select(column).where(column.in_(sorted(set(policy_nos))))))

    @_database_errors
    def policy_row(self, policy_no: str) -> Any | None:
        with self.engine.connect() as conn:
            return conn.execute(select(s.policies).where(s.policies.c.policy_no == policy_no)).first()

    @_database_errors
    def versions(self, policy_no: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(s.documents)
                    .where(s.documents.c.policy_no == policy_no)
                    .order_by(s.documents.c.version)
                )
            )

    @_database_errors
    def find(
        self,
        *,
        policy_no: str | None = None,
        id_no: str | None = None,
        plate: str | None = None,
        name: str | None = None,
        branch: str | None = None,
        issued_from: datetime | None = None,
        issued_to: datetime | None = None,
        serial: str | None = None,
        address: str | None = None,
        limit: int = 200,
    ) -> list[PolicySummary]:
        """Policies matching every given criterion (exact matches; ``issued_to`` is exclusive).

        A plate, name, ID number or address finds a policy by its current value and by every value an
        endorsement changed (``lookups``)."""
        p = s.policies
        conditions = []
        if policy_no:
            conditions.append(p.c.policy_no == policy_no.strip().upper())
        if plate:
            value = lookups.normalised("vehicle.plate", plate)
            by_plate = union(
                select(p.c.policy_no).where(p.c.plate == value), lookups.matching(["vehicle.plate"], value)
            )
            conditions.append(p.c.policy_no.in_(by_plate))
        if address:
            by_address = lookups.matching(
                ["property.address"], lookups.stored_value("property.address", address, self.identity)
            )
            conditions.append(p.c.policy_no.in_(by_address))
        if branch:
            conditions.append(p.c.branch_code == branch.strip())
        if serial:
            conditions.append(p.c.print_serial == serial.strip())
        if issued_from:
            conditions.append(p.c.issued_at >= issued_from)
        if issued_to:
            conditions.append(p.c.issued_at < issued_to)
        if id_no:
            hashed = self.identity(id_no)
            by_id = union(
                select(s.parties.c.policy_no).where(s.parties.c.id_hmac == hashed),
                lookups.matching(["applicant.id_no", "insured.id_no"], hashed),
            )
            conditions.append(p.c.policy_no.in_(by_id))
        if name:
            # one IN over a UNION, not "insured_name = x OR policy_no IN (parties …)": under the OR
            # PostgreSQL can use neither index and reads every policy (docs/performance.md, the desk)
            by_name = union(
                select(p.c.policy_no).where(p.c.insured_name == name.strip()),
                select(s.parties.c.policy_no).where(s.parties.c.name == name.strip()),
                lookups.matching(
                    ["applicant.name", "insured.name"], lookups.normalised("insured.name", name)
                ),
            )
            conditions.append(p.c.policy_no.in_(by_name))
        query = select(p).where(and_(*conditions)).order_by(p.c.issued_at, p.c.policy_no).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            PolicySummary(
                policy_no=r.policy_no,
                product_code=r.product_code,
                branch_code=r.branch_code,
                insured_name=r.insured_name,
                id_masked=r.insured_id_masked,
                plate=r.plate,
                period_start=as_utc(r.period_start),
                period_end=as_utc(r.period_end),
                versions=r.current_version,
                complete=bool(r.complete),
                missing_images=tuple(k for k in r.missing_images.split(",") if k),
                status=r.status,
                issued_at=as_utc(r.issued_at),
                print_serial=r.print_serial,
                status_by=r.status_by,
                status_since=as_utc(r.status_since),
            )
            for r in rows
        ]

    # --- writes --------------------------------------------------------------------------------------

    @_database_errors
    def archive_policy(
        self,
        *,
        facts: PolicyFacts,
        version: VersionFacts,
        record: RecordFacts,
        missing_images: Sequence[str],
        event: LedgerEvent,
    ) -> LedgerEntry:
        """Version 1 of a new policy, in one transaction. ``IndexConflict`` if another writer won."""
        (entry,) = self.archive_policies([NewPolicy(facts, version, record, missing_images, event)])
        return entry

    @_database_errors
    def archive_policies(self, items: Sequence[NewPolicy]) -> list[LedgerEntry]:
        """Version 1 of each of ``items``, all in ONE transaction (one commit instead of one per policy):
        the rows and ledger events, in the given order, that ``archive_policy`` writes for each in turn.

        All or nothing: ``IndexConflict`` if another writer indexed one of these policies or records
        first (or ``items`` names one twice), and then nothing of the batch is written; ``archive_policy``
        one by one finds which it was.
        """
        if not items:
            return []
        # Rows go in in key order, table by table, so that two writers whose batches overlap take their
        # PostgreSQL unique-key waits in the same order: one of them gets a conflict, never a deadlock.
        ordered = sorted(items, key=lambda x: x.facts.policy_no)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(s.policies), [_policy_row(x) for x in ordered])
                parties = [self._party_row(x.facts.policy_no, p) for x in ordered for p in x.facts.parties]
                if parties:
                    conn.execute(insert(s.parties), parties)
                found_by = [
                    row
                    for x in ordered
                    for row in lookups.issued_rows(
                        x.facts.policy_no,
                        address=x.facts.property_address,
                        since=x.facts.issued_at,
                        identity=self.identity,
                    )
                ]
                if found_by:
                    conn.execute(insert(s.lookups), found_by)
                conn.execute(insert(s.documents), [self._version_values(x.version) for x in ordered])
                conn.execute(
                    insert(s.records),
                    [
                        _record_row(x.record, x.version.version)
                        for x in sorted(items, key=lambda x: x.record.record_id)
                    ],
                )
                return self._append_many(conn, [x.event for x in items])
        except IntegrityError as e:
            if len(items) == 1:
                (only,) = items
                raise IndexConflict(
                    f"policy {only.facts.policy_no} or record {only.record.record_id} is already indexed"
                ) from e
            raise IndexConflict(
                f"a policy or record of this batch of {len(items)} ({ordered[0].facts.policy_no} … "
                f"{ordered[-1].facts.policy_no}) is already indexed; nothing of the batch was written",
                hint="archive them one by one to find which",
            ) from e

    def _party_row(self, policy_no: str, party: PartyFacts) -> dict[str, Any]:
        return {
            "policy_no": policy_no,
            "role": party.role,
            "seq": party.seq,
            "name": party.name,
            "id_type": party.id_type,
            "id_hmac": self.identity(party.id_no),
            "id_masked": mask_id(party.id_no),
        }

    @_database_errors
    def archive_version(
        self,
        *,
        version: VersionFacts,
        record: RecordFacts | None,
        event: LedgerEvent,
        missing_images: Sequence[str] | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> LedgerEntry:
        """A later version (endorsement, supplement, reissue) of an indexed policy, in one transaction.

        ``missing_images`` given: the policy's completeness is updated too (a supplement clears kinds).
        ``lifecycle`` given (an endorsement): the new status, and the changed names, plate, VIN, ID
        numbers and address, findable by old and new value (``archive.index.lookups``).
        """
        try:
            with self.engine.begin() as conn:
                values: dict[str, Any] = {"current_version": version.version}
                if missing_images is not None:
                    values.update(complete=not missing_images, missing_images=",".join(missing_images))
                if lifecycle is not None:
                    issued_at = conn.scalar(
                        select(s.policies.c.issued_at).where(s.policies.c.policy_no == version.policy_no)
                    )
                    values.update(
                        lookups.apply(
                            conn,
                            policy_no=version.policy_no,
                            version=version.version,
                            previous_since=as_utc(issued_at) or lifecycle.since,
                            change=lifecycle,
                            identity=self.identity,
                        )
                    )
                changed = conn.execute(
                    update(s.policies)
                    .where(s.policies.c.policy_no == version.policy_no)
                    .where(s.policies.c.current_version == version.version - 1)
                    .values(**values)
                ).rowcount
                if changed != 1:
                    raise IndexConflict(
                        f"policy {version.policy_no} is not at version {version.version - 1} any more"
                    )
                self._insert_version(conn, version)
                if record is not None:
                    self._insert_record(conn, record, version.version)
                return self._append(conn, event)
        except IntegrityError as e:
            raise IndexConflict(f"version {version.version} of {version.policy_no} is already indexed") from e

    def _insert_version(self, conn: Connection, v: VersionFacts) -> None:
        conn.execute(insert(s.documents), self._version_values(v))

    @staticmethod
    def _insert_record(conn: Connection, record: RecordFacts, version: int) -> None:
        conn.execute(insert(s.records), _record_row(record, version))

    # --- batches ---------------------------------------------------------------------------------------

    @_database_errors
    def begin_batch(self, *, batch_id: str, input_name: str, input_sha256: str, operator: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(s.batches).values(
                    batch_id=batch_id,
                    input_name=input_name,
                    input_sha256=input_sha256,
                    started_at=datetime.now(UTC),
                    operator=operator,
                )
            )
            self._append(
                conn,
                LedgerEvent(
                    operator, "batch.started", batch_id, {"input": input_name, "sha256": input_sha256}
                ),
            )

    @_database_errors
    def finish_batch(
        self,
        *,
        batch_id: str,
        counts: dict[str, int],
        operator: str,
        ended: str = "finished",
        reason: str | None = None,
    ) -> None:
        """The batch's end row and ledger event: ``batch.finished``, or ``batch.interrupted`` /
        ``batch.aborted`` (with the reason) for a run that stopped before its last line."""
        if ended not in ("finished", "interrupted", "aborted"):
            raise ValueError(f"a batch ends finished, interrupted or aborted, not {ended!r}")
        detail: dict[str, Any] = dict(counts)
        if reason is not None:
            detail["reason"] = reason
        with self.engine.begin() as conn:
            conn.execute(
                update(s.batches)
                .where(s.batches.c.batch_id == batch_id)
                .values(
                    finished_at=datetime.now(UTC),
                    records=counts.get("records", 0),
                    archived=counts.get("archived", 0),
                    already_archived=counts.get("already_archived", 0),
                    rejected=counts.get("rejected", 0),
                    not_attempted=counts.get("not_attempted", 0),
                    ended=ended,
                    reason=reason[:500] if reason else None,
                )
            )
            self._append(conn, LedgerEvent(operator, f"batch.{ended}", batch_id, detail))

    @_database_errors
    def batch_row(self, batch_id: str) -> Any:
        """The batch's row (started, ended, counts), or None."""
        with self.engine.connect() as conn:
            return conn.execute(select(s.batches).where(s.batches.c.batch_id == batch_id)).one_or_none()

    # --- the ledger -----------------------------------------------------------------------------------

    @_database_errors
    def append_event(self, event: LedgerEvent) -> LedgerEntry:
        """Record an event on its own (an incident, a refusal, an audit)."""
        with self.engine.begin() as conn:
            return self._append(conn, event)

    def _append(self, conn: Connection, event: LedgerEvent) -> LedgerEntry:
        return self._append_many(conn, [event])[0]

    def _append_many(self, conn: Connection, events: Sequence[LedgerEvent]) -> list[LedgerEntry]:
        """Chain ``events``, in order, after the ledger's head inside ``conn``'s transaction.

        The head is read once, locked (a row lock on PostgreSQL; SQLite's BEGIN IMMEDIATE holds the write
        lock already) so that concurrent writers queue up; each event's hash covers its predecessor's.
        """
        if not events:
            return []
        head = conn.execute(_LEDGER_HEAD_FOR_UPDATE).one()
        seq, prev_hash = head.seq, head.hash
        rows: list[dict[str, Any]] = []
        for ledger_event in events:
            seq += 1
            at = datetime.now(UTC)
            # the ledger is read by auditors: no personal data in it, whatever a caller put in the detail
            detail = scrub(
                json.dumps(ledger_event.detail, ensure_ascii=False, sort_keys=True, default=str),
                keep=(ledger_event.subject,),  # the event's own document number is not personal data
            )
            digest = _entry_hash(
                prev_hash,
                seq=seq,
                at=at,
                actor=ledger_event.actor,
                action=ledger_event.action,
                subject=ledger_event.subject,
                detail=detail,
            )
            rows.append(
                {
                    "seq": seq,
                    "at": at,
                    "actor": ledger_event.actor,
                    "action": ledger_event.action,
                    "subject": ledger_event.subject,
                    "detail": detail,
                    "prev_hash": prev_hash,
                    "hash": digest,
                }
            )
            prev_hash = digest
        conn.execute(insert(s.ledger), rows)
        conn.execute(update(s.ledger_head).where(s.ledger_head.c.id == 1), {"seq": seq, "hash": prev_hash})
        return [LedgerEntry(**{**row, "detail": json.loads(row["detail"])}) for row in rows]

    def ledger_entries(self, *, subject: str | None = None) -> Iterator[LedgerEntry]:
        query = select(s.ledger).order_by(s.ledger.c.seq)
        if subject is not None:
            query = query.where(s.ledger.c.subject == subject)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                yield LedgerEntry(
                    row.seq,
                    as_utc(row.at),
                    row.actor,
                    row.action,
                    row.subject,
                    json.loads(row.detail),
                    row.prev_hash,
                    row.hash,
                )

    @_database_errors
    def verify_ledger(self) -> list[str]:
        """Walk the whole chain; return the problems found (empty: intact)."""
        problems: list[str] = []
        prev = GENESIS
        expected_seq = 1
        with self.engine.connect() as conn:
            head = conn.execute(select(s.ledger_head).where(s.ledger_head.c.id == 1)).one()
            for row in conn.execute(select(s.ledger).order_by(s.ledger.c.seq)):
                if row.seq != expected_seq:
                    problems.append(f"event {expected_seq} is missing (next is {row.seq})")
                if row.prev_hash != prev:
                    problems.append(f"event {row.seq} does not link to the event before it")
                digest = row_hash(row)
                if digest != row.hash:
                    problems.append(f"event {row.seq} was altered (its hash does not match its content)")
                prev = row.hash
                expected_seq = row.seq + 1
            if head.seq != expected_seq - 1 or head.hash != prev:
                problems.append("the chain's head does not match its last event (events removed at the end?)")
        return problems

    @_database_errors
    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(s.metadata.tables[table])).scalar_one()

    # --- helper "serials": the database's kind, and the print-serial registry (archive/index/serials.py) --

    @property
    def dialect(self) -> str:
        """The database's kind, as SQLAlchemy names it: ``sqlite`` (one machine) or ``postgresql``."""
        return self.engine.dialect.name

    @_database_errors
    def serial(self, serial: str) -> registry.SerialRecord | None:
        """The registry's row of ``serial`` (normalised by the caller), or None."""
        with self.engine.connect() as conn:
            return registry.lookup(conn, serial)

    @_database_errors
    def serials_issued_alongside(self, serials: Sequence[str]) -> list[registry.IssuedSerial]:
        """Every serial issued to a clerk at the same moment as one of ``serials``."""
        with self.engine.connect() as conn:
            return registry.issued_alongside(conn, serials)

    @_database_errors
    def newest_used_serial(self, policy_no: str) -> tuple[str, int] | None:
        """The serial the registry has as used by the policy's newest version that used one, and that
        version."""
        with self.engine.connect() as conn:
            return registry.newest_used(conn, policy_no)

    @_database_errors
    def register_serials(
        self,
        serials: Sequence[str],
        *,
        to: str,
        branch: str | None,
        at: datetime,
        by: str,
        check: Callable[[dict[str, registry.SerialRecord]], None],
        event: LedgerEvent,
    ) -> int:
        """Register ``serials`` as issued to clerk ``to``, with ``event``, in one transaction; how many
        of them the registry held already (used unregistered: registered now, their state kept).

        ``check`` sees the rows held already, locked, and raises to refuse: then nothing is written.
        """
        with self.engine.begin() as conn:
            known = registry.records(conn, serials, lock=True)
            check(known)
            registry.register(conn, serials, known=known, to=to, branch=branch, at=at, by=by)
            self._append(conn, event)
        return len(known)

    @_database_errors
    def use_serials(
        self,
        claims: Sequence[registry.DocumentSerial],
        *,
        incident: Callable[[registry.DocumentSerial, registry.SerialUse], LedgerEvent | None],
    ) -> list[registry.SerialUse]:
        """Record each of ``claims`` (normalised serials, ``at`` given) as printed on its serial, in
        order, in one transaction with the ``incident(claim, use)`` event of each use that has one (a
        conflict, a form used by another clerk; see ``archive.index.serials.use_serials`` for the
        statuses).

        ``IndexConflict``, nothing written, if another writer recorded a first use of one of these
        serials meanwhile; ``IndexUnavailable`` for any other failure of the database.
        """
        try:
            with self.engine.begin() as conn:
                uses = registry.use_serials(conn, claims)
                events = [incident(c, u) for c, u in zip(claims, uses, strict=True)]
                self._append_many(conn, [e for e in events if e is not None])
                return uses
        except IntegrityError as e:
            raise IndexConflict("another writer recorded one of these serials first") from e
        except (OperationalError, InterfaceError):
            raise
        except SQLAlchemyError as e:  # a registry the database cannot use (a table missing, say)
            raise IndexUnavailable(f"the serial registry at {self.describe()} is unusable: {e}") from e

    @_database_errors
    def void_serial(self, void: registry.VoidedSerial, *, event: LedgerEvent) -> None:
        """Void a serial (see ``archive.index.serials.void_serial``) with ``event``, in one transaction.
        A reissue voids its old form inside its own commit instead."""
        with self.engine.begin() as conn:
            registry.void_serial(conn, void)
            self._append(conn, event)

    @_database_errors
    def reconcile_serials(
        self,
        serials: Sequence[str],
        *,
        at: datetime,
        by: str,
        check: Callable[[dict[str, registry.SerialRecord]], None],
        event: Callable[[list[str]], LedgerEvent],
    ) -> list[str]:
        """Mark ``serials`` reconciled at ``at`` by ``by``, all in one transaction with ``event(done)``;
        ``done``, the ones not reconciled before, in the given order (no event when there are none).

        ``check`` sees the rows the registry holds of ``serials``, locked, and raises to refuse: then
        nothing is written.
        """
        with self.engine.begin() as conn:
            rows = registry.records(conn, serials, lock=True)
            check(rows)
            done = [x for x in serials if x in rows and rows[x].reconciled_at is None]
            if done:
                registry.reconcile(conn, done, at=at, by=by)
                self._append(conn, event(done))
        return done

    @_database_errors
    def serial_counts(
        self, *, start: datetime | None, end: datetime, overdue_before: datetime
    ) -> registry.SerialCounts:
        """The registry's counts for [``start``, ``end``) (see ``archive.index.serials.counts``)."""
        with self.engine.connect() as conn:
            return registry.counts(conn, start=start, end=end, overdue_before=overdue_before)

    # --- the audit's reads (helper "audit", issue 22): archive/audit/ asks these, never the engine ------

    @_database_errors
    def audit_lot(
        self,
        *,
        batch_id: str | None = None,
        issued_from: datetime | None = None,
        issued_before: datetime | None = None,
        branch: str | None = None,
        product: str | None = None,
    ) -> tuple[LotPolicy, ...]:
        """The policies an audit's criteria select (all of them hold), sorted by policy number."""
        return audits.lot(
            self.engine,
            batch_id=batch_id,
            issued_from=issued_from,
            issued_before=issued_before,
            branch=branch,
            product=product,
        )

    @_database_errors
    def longest_retention(self, policy_nos: Sequence[str]) -> datetime | None:
        """The latest ``retain_until`` among ``policy_nos`` (None when none is indexed)."""
        return audits.longest_retention(self.engine, policy_nos)

    @_database_errors
    def ledger_trail(self, subject: str) -> list[TrailEvent]:
        """The ledger events about ``subject``, each with its hash and its link to the event before it
        checked (``TrailEvent``)."""
        return audits.ledger_trail(self.engine, subject)

    @_database_errors
    def ledger_subjects(self, action: str) -> set[str]:
        """The subjects of the ledger events with ``action``."""
        return audits.ledger_subjects(self.engine, action)

    @_database_errors
    def claimed_objects(self) -> list[ClaimedObject]:
        """Every object an index row names (versions' copies and manifests, reissued copies)."""
        return audits.claimed_objects(self.engine)

    @_database_errors
    def version_gaps(self) -> list[VersionGap]:
        """Policies whose current version is not their highest document version."""
        return audits.version_gaps(self.engine)

    # --- helper "versions" (issue 22): what a reissue reads, and its one commit --------------------------

    @_database_errors
    def reissues(self, policy_no: str) -> list[Any]:
        """The policy's reissues (rows of ``reissues``), oldest first."""
        t = s.reissues
        with self.engine.connect() as conn:
            return list(conn.execute(select(t).where(t.c.policy_no == policy_no).order_by(t.c.reissue_no)))

    @_database_errors
    def reissue_count(self, policy_no: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(s.reissues).where(s.reissues.c.policy_no == policy_no)
            ).scalar_one()

    @_database_errors
    def party_roles(self, policy_no: str, *, id_hmac: str) -> set[str]:
        """The roles (applicant, insured, beneficiary) on ``policy_no`` of the person ``id_hmac`` names
        (an ``identity``): empty if none."""
        t = s.parties
        with self.engine.connect() as conn:
            query = select(t.c.role).where(t.c.policy_no == policy_no, t.c.id_hmac == id_hmac)
            return set(conn.scalars(query))

    @_database_errors
    def archive_reissue(
        self,
        *,
        version: VersionFacts,
        reissue: ReissueFacts,
        event: LedgerEvent,
        old_form_used: tuple[int, datetime],
        void_reason: str,
    ) -> LedgerEntry:
        """A reissue version (``archive.versions`` files it): the version row, the reissue row, the
        print-serial changes and the ledger event commit together or not at all.

        The serial changes: ``reissue.old_serial`` (the form the policy was on, used by the version and at
        the time ``old_form_used`` gives) is voided for ``void_reason``; ``reissue.new_serial`` becomes
        used by this version (``SerialError`` if another document took it meanwhile). ``IndexConflict``
        if the policy moved on meanwhile or the version is indexed already. Any error undoes everything.
        """
        policy_no = version.policy_no
        try:
            with self.engine.begin() as conn:
                changed = conn.execute(
                    update(s.policies)
                    .where(
                        s.policies.c.policy_no == policy_no,
                        s.policies.c.current_version == version.version - 1,
                    )
                    .values(current_version=version.version)
                ).rowcount
                if changed != 1:
                    raise IndexConflict(
                        f"policy {policy_no} changed while it was being reissued",
                        hint="run the reissue again",
                    )
                self._insert_version(conn, version)
                conn.execute(insert(s.reissues), _reissue_row(reissue))
                at = as_utc(reissue.reissued_at)
                if reissue.old_serial:
                    registry.void_serial(
                        conn,
                        registry.VoidedSerial(
                            reissue.old_serial,
                            policy_no=policy_no,
                            used_version=old_form_used[0],
                            used_at=old_form_used[1],
                            by_version=version.version,
                            reason=void_reason,
                            at=at,
                            by=reissue.clerk,
                        ),
                    )
                if reissue.new_serial:
                    use = registry.use_serial(
                        conn,
                        reissue.new_serial,
                        policy_no=policy_no,
                        version=version.version,
                        at=at,
                        by=reissue.clerk,
                    )
                    if use.status != "used":
                        raise SerialError(
                            f"serial {reissue.new_serial} was taken meanwhile; nothing was filed"
                        )
                return self._append(conn, event)
        except IntegrityError as e:
            raise IndexConflict(
                f"version {version.version} of {policy_no} is already indexed", hint="run the reissue again"
            ) from e

    # --- helper "qr" (issue 23): every version's verification code, and the version a code names ------

    def _version_values(self, v: VersionFacts) -> dict[str, Any]:
        """A version's row with its verification code: every writer of versions (new policy,
        endorsement, supplement, reissue) inserts through here, so no version goes without one."""
        return {**_version_row(v), "verify_code": verification_code(self._key, v.policy_no, v.version)}

    @_database_errors
    def version_by_code(self, code: str) -> CodedVersion | None:
        """The document version whose verification code ``code`` is (as typed or scanned: any case,
        or the whole URL), with what a verification answer shows of its policy; None if no version
        has it."""
        wanted = normalise_code(code)
        if wanted is None:
            return None
        d, p = s.documents, s.policies
        query = (
            select(
                d.c.policy_no,
                d.c.version,
                d.c.kind,
                d.c.endorsement_no,
                d.c.created_at,
                p.c.current_version,
                p.c.product_code,
                p.c.branch_code,
                p.c.branch_name,
                p.c.applicant_name,
                p.c.insured_name,
                p.c.period_start,
                p.c.period_end,
                p.c.status,
                p.c.print_serial,
                p.c.status_since,
            )
            .join(p, p.c.policy_no == d.c.policy_no)
            .where(d.c.verify_code == wanted)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        values = row._asdict()
        for name in ("created_at", "period_start", "period_end", "status_since"):
            values[name] = as_utc(values[name])
        return CodedVersion(**values)

    # --- helper "users" (issue 24): the people who act on the archive (archive/index/users.py) -------

    @_database_errors
    def user(self, name: str) -> people.UserRecord | None:
        """The user named ``name`` (password hash included, for ``archive.users`` only), or None."""
        with self.engine.connect() as conn:
            return people.lookup(conn, name)

    @_database_errors
    def users(self) -> list[people.UserRecord]:
        """Every user, sorted by name."""
        with self.engine.connect() as conn:
            return people.every(conn)

    @_database_errors
    def add_user(self, user: people.UserRecord, *, event: LedgerEvent) -> None:
        """Insert ``user`` with ``event``, in one transaction; ``IndexConflict`` when the name is taken."""
        try:
            with self.engine.begin() as conn:
                people.add(conn, user)
                self._append(conn, event)
        except IntegrityError as e:
            raise IndexConflict(f"a user named {user.name!r} exists already") from e

    @_database_errors
    def change_user(
        self,
        name: str,
        change: Callable[[people.UserRecord | None], tuple[people.UserRecord | None, Sequence[LedgerEvent]]],
    ) -> people.UserRecord | None:
        """Apply ``change`` to the user's row, locked, in one transaction: it sees the row (None: no such
        user) and returns the row to write (None: write nothing) and the ledger events to append with
        it; it raises to refuse, and then nothing is written. The row written (or None) is returned."""
        with self.engine.begin() as conn:
            new, events = change(people.lookup(conn, name, lock=True))
            if new is not None:
                people.store(conn, new)
            self._append_many(conn, events)
            return new

    # --- the desk (issue 24): sessions and reissue requests (archive/index/desk.py) ---------------

    @_database_errors
    def open_session(self, row: desk.SessionRow, *, event: LedgerEvent) -> None:
        """A new signed-in session with its sign-in event, in one transaction."""
        with self.engine.begin() as conn:
            desk.add_session(conn, row)
            self._append(conn, event)

    @_database_errors
    def desk_session(self, token_sha256: str) -> desk.SessionRow | None:
        with self.engine.connect() as conn:
            return desk.session(conn, token_sha256)

    @_database_errors
    def touch_session(self, token_sha256: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            desk.touch_session(conn, token_sha256, at)

    @_database_errors
    def end_session(self, token_sha256: str, *, at: datetime, why: str, event: LedgerEvent) -> bool:
        """End an open session and record ``event``; False (nothing recorded) when it had ended already."""
        with self.engine.begin() as conn:
            if not desk.end_session(conn, token_sha256, at, why):
                return False
            self._append(conn, event)
            return True

    @_database_errors
    def end_sessions_of(self, user_name: str, *, at: datetime, why: str) -> int:
        with self.engine.begin() as conn:
            return desk.end_sessions_of(conn, user_name, at, why)

    @_database_errors
    def add_reissue_request(
        self, row: desk.ReissueRequestRow, *, event: Callable[[desk.ReissueRequestRow], LedgerEvent]
    ) -> desk.ReissueRequestRow:
        """Number and insert ``row``, with the event ``event`` makes of the numbered row."""
        with self.engine.begin() as conn:
            numbered = desk.add_request(conn, row)
            self._append(conn, event(numbered))
            return numbered

    @_database_errors
    def reissue_request(self, request_id: int) -> desk.ReissueRequestRow | None:
        with self.engine.connect() as conn:
            return desk.request(conn, request_id)

    @_database_errors
    def reissue_requests(
        self, *, policy_no: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[desk.ReissueRequestRow]:
        """Requests, newest first, of one policy and/or in one status."""
        with self.engine.connect() as conn:
            return desk.requests(conn, policy_no=policy_no, status=status, limit=limit)

    @_database_errors
    def change_reissue_request(
        self,
        request_id: int,
        change: Callable[
            [desk.ReissueRequestRow | None], tuple[desk.ReissueRequestRow | None, Sequence[LedgerEvent]]
        ],
    ) -> desk.ReissueRequestRow | None:
        """As ``change_user``: ``change`` sees the locked row and returns the row to write and its events."""
        with self.engine.begin() as conn:
            new, events = change(desk.request(conn, request_id, lock=True))
            if new is not None:
                desk.store_request(conn, new)
            self._append_many(conn, events)
            return new

    @_database_errors
    def parties(self, policy_no: str) -> list[Any]:
        """The policy's parties (role, seq, name, id_type, masked ID; never the HMAC's input)."""
        t = s.parties
        query = (
            select(t.c.role, t.c.seq, t.c.name, t.c.id_type, t.c.id_masked)
            .where(t.c.policy_no == policy_no)
            .order_by(t.c.role, t.c.seq)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    @_database_errors
    def copy_by_sha256(self, sha256: str) -> tuple[str, int, str] | None:
        """``(policy_no, version, copy)`` of the issued PDF whose SHA-256 is ``sha256`` (a customer copy,
        an archive copy or a reissued copy), or None: is an uploaded file one this centre issued?"""
        d, r = s.documents, s.reissues
        with self.engine.connect() as conn:
            for column, copy in ((d.c.customer_sha256, "customer"), (d.c.bundle_sha256, "archive")):
                row = conn.execute(select(d.c.policy_no, d.c.version).where(column == sha256)).first()
                if row is not None:
                    return row.policy_no, row.version, copy
            row = conn.execute(select(r.c.policy_no, r.c.version).where(r.c.copy_sha256 == sha256)).first()
            return (row.policy_no, row.version, "reissue") if row is not None else None

    # --- helper "ops" (issue 24): what the operators' desk page reads (batches, serials by state) -------

    @_database_errors
    def recent_batches(self, *, limit: int = 50) -> list[Any]:
        """The newest ``limit`` batch rows (as ``batch_row``'s), newest first."""
        b = s.batches
        query = select(b).order_by(b.c.started_at.desc(), b.c.batch_id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    @_database_errors
    def serials_by_state(self) -> dict[tuple[str, bool], int]:
        """How many serials the registry holds now, by (state, reconciled)."""
        t = s.print_serials
        reconciled = t.c.reconciled_at.is_not(None)
        query = select(t.c.state, reconciled.label("reconciled"), func.count()).group_by(
            t.c.state, reconciled
        )
        with self.engine.connect() as conn:
            return {(state, bool(done)): int(n) for state, done, n in conn.execute(query)}

    # --- helper "serials" (issue 25): the registry's rows for filing's check, blank voids, other clerks ----

    @_database_errors
    def serial_records(self, serials: Sequence[str]) -> dict[str, registry.SerialRecord]:
        """The registry's rows of ``serials`` (normalised by the caller), by serial; unknown ones absent."""
        with self.engine.connect() as conn:
            return registry.records(conn, serials)

    @_database_errors
    def void_blank_serials(
        self,
        serials: Sequence[str],
        *,
        reason: str,
        at: datetime,
        by: str,
        check: Callable[[dict[str, registry.SerialRecord]], None],
        event: Callable[[list[str]], LedgerEvent],
    ) -> list[str]:
        """Void the blank forms ``serials`` for ``reason`` in one transaction with ``event(done)``;
        ``done``, those not voided before, in the given order (no event when there are none).
        ``check`` sees the rows, locked, and raises to refuse: then nothing is written."""
        with self.engine.begin() as conn:
            rows = registry.records(conn, serials, lock=True)
            check(rows)
            done = [x for x in serials if x in rows and rows[x].state == registry.ISSUED]
            if done:
                registry.void_blank(conn, done, reason=reason, at=at, by=by)
                self._append(conn, event(done))
        return done

    @_database_errors
    def serial_other_clerk_uses(
        self, *, start: datetime | None, end: datetime
    ) -> list[registry.OtherClerkUse]:
        """Forms used in [``start``, ``end``) by a clerk other than the one they were issued to."""
        with self.engine.connect() as conn:
            return registry.other_clerk_uses(conn, start=start, end=end)

    # --- the policy lifecycle (issue 25) ----------------------------------------------------------------

    @_database_errors
    def lookup_history(self, policy_no: str) -> list[HistoryRow]:
        """Every value the policy has been findable by since an endorsement changed one, oldest first."""
        with self.engine.connect() as conn:
            return lookups.history(conn, policy_no)

    # --- helper "stats" (issue 25): rejected lines, and what the statistics count (archive/index/stats.py)

    @_database_errors
    def record_rejections(self, rows: Sequence[RejectionFacts]) -> None:
        """A batch's rejected lines, in one insert (nothing to do for none)."""
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(s.rejections), stats.rejection_rows(rows))

    @_database_errors
    def stats_cells(self, *, start: datetime, end: datetime, by: str | None = None) -> stats.Cells:
        """What the statistics count for [``start``, ``end``), grouped by ``by`` (``stats.GROUPS``)."""
        with self.engine.connect() as conn:
            return stats.cells(conn, start=start, end=end, by=by)


# Rows as plain dicts for ``conn.execute(insert(table), rows)``: one statement for one row or many, and
# SQLAlchemy compiles it once; ``insert(...).values(**row)`` re-coerces every value on every call.
def _policy_row(item: NewPolicy) -> dict[str, Any]:
    facts, missing = item.facts, item.missing_images
    return {
        "policy_no": facts.policy_no,
        "proposal_no": facts.proposal_no,
        "product_code": facts.product_code,
        "branch_code": facts.branch_code,
        "branch_name": facts.branch_name,
        "applicant_name": facts.applicant_name,
        "insured_name": facts.insured_name,
        "insured_id_masked": mask_id(facts.insured_id_no),
        "plate": facts.plate.upper() if facts.plate else None,
        "vin": facts.vin,
        "period_start": as_utc(facts.period_start),
        "period_end": as_utc(facts.period_end),
        "total_premium": facts.total_premium,
        "currency": facts.currency,
        "print_serial": facts.print_serial,
        "status": "issued",
        "complete": not missing,
        "missing_images": ",".join(missing),
        "issued_at": as_utc(facts.issued_at),
        "key_prefix": facts.key_prefix,
        "current_version": item.version.version,
        "retain_until": as_utc(facts.retain_until),
    }


def _version_row(v: VersionFacts) -> dict[str, Any]:
    return {
        "policy_no": v.policy_no,
        "version": v.version,
        "kind": v.kind,
        "record_id": v.record_id,
        "endorsement_no": v.endorsement_no,
        "batch_id": v.batch_id,
        "created_at": as_utc(v.created_at),
        "customer_key": v.customer.key,
        "customer_sha256": v.customer.sha256,
        "customer_size": v.customer.size,
        "customer_pages": v.customer.pages,
        "bundle_key": v.bundle.key,
        "bundle_sha256": v.bundle.sha256,
        "bundle_size": v.bundle.size,
        "bundle_pages": v.bundle.pages,
        "manifest_key": v.manifest.key,
        "manifest_sha256": v.manifest.sha256,
        "manifest_size": v.manifest.size,
        "seal_id": v.seal_id,
        "seal_version": v.seal_version,
        "retain_until": as_utc(v.retain_until),
        "endorsement_type": v.endorsement_type,
        # the column holds the contract's issued_by (20); a desk user who reissues may have a longer name
        "clerk": v.clerk[:20] if v.clerk else None,
        "approved_at": as_utc(v.approved_at),
    }


def _record_row(record: RecordFacts, version: int) -> dict[str, Any]:
    return {
        "record_id": record.record_id,
        "content_sha256": record.content_sha256,
        "kind": record.kind,
        "policy_no": record.policy_no,
        "version": version,
        "batch_id": record.batch_id,
        "line": record.line,
        "archived_at": datetime.now(UTC),
    }


# --- helper "qr" (issue 23): what a verification code names ----------------------------------------------


@dataclass(frozen=True)
class CodedVersion:
    """The version a verification code names, and its policy as the index holds it (names in clear:
    whoever shows them masks them; the index holds no clear ID number to show)."""

    policy_no: str
    version: int
    kind: str  # issue | endorsement | supplement | reissue
    endorsement_no: str | None
    created_at: datetime
    current_version: int
    product_code: str
    branch_code: str
    branch_name: str
    applicant_name: str
    insured_name: str
    period_start: datetime
    period_end: datetime
    status: str  # issued | surrendered | cancelled
    print_serial: str | None
    status_since: datetime | None = None


# --- helper "versions" (issue 22): the reissue's row -----------------------------------------------------


@dataclass(frozen=True)
class ReissueFacts:
    """One row of ``reissues``: the marked copy a customer got, and why (``Index.archive_reissue``)."""

    policy_no: str
    version: int
    reissue_no: int
    reason: str  # lost | damaged | other
    clerk: str
    reissued_at: datetime
    requester_id_hmac: str | None
    source_version: int
    source_sha256: str
    copy: StoredObject
    old_serial: str | None
    new_serial: str | None


def _reissue_row(r: ReissueFacts) -> dict[str, Any]:
    return {
        "policy_no": r.policy_no,
        "version": r.version,
        "reissue_no": r.reissue_no,
        "reason": r.reason,
        "clerk": r.clerk,
        "reissued_at": as_utc(r.reissued_at),
        "requester_id_hmac": r.requester_id_hmac,
        "source_version": r.source_version,
        "source_sha256": r.source_sha256,
        "copy_key": r.copy.key,
        "copy_sha256": r.copy.sha256,
        "copy_size": r.copy.size,
        "copy_pages": r.copy.pages,
        "old_serial": r.old_serial,
        "new_serial": r.new_serial,
    }


def _safe_url(url: str) -> str:
    """An SQLAlchemy URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: say so without echoing it
        return "<unparseable index URL>"
