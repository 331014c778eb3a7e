"""Batched index writes on SQLite and a real PostgreSQL: ``archive_policies`` writes what
``archive_policy`` writes one by one, in one transaction that leaves nothing behind when it conflicts,
and ``mark_used_many`` answers what ``mark_used`` answers one by one."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text

from archive import serials
from archive.index import Index, LedgerEvent, NewPolicy, PartyFacts, PolicyFacts, VersionFacts, schema
from archive.serials import DocumentSerial, SerialUse, issue_range, mark_used, mark_used_many, void
from core.errors import IndexConflict, IndexUnavailable
from core.manifest import RecordFacts, StoredObject

KEY = b"batch-test-hmac-key-0123456789ab"
NOW = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
TABLES = (
    schema.policies,
    schema.parties,
    schema.documents,
    schema.records,
    schema.ledger,
    schema.ledger_head,
    schema.print_serials,
)
# what differs between two runs that write the same things: the moment of writing, and the hashes over it
WRITE_TIMES = {"records": {"archived_at"}, "ledger": {"at", "prev_hash", "hash"}, "ledger_head": {"hash"}}


def new_policy(n: int, *, record_id: str | None = None) -> NewPolicy:
    """A policy unlike its neighbours: 1 to 3 parties, a plate or none, images missing or not."""
    policy_no = f"PBATCH{n:06d}"
    id_no = f"11010519491231{n:03d}X"
    parties = [
        PartyFacts("applicant", 0, f"投保人{n}", "passport", f"E{n:08d}"),
        PartyFacts("insured", 0, f"被保险人{n}", "resident_id", id_no),
    ][: 1 + n % 2]
    parties += [PartyFacts("beneficiary", i, f"受益人{n}-{i}", "resident_id", id_no) for i in range(n % 3)]
    prefix = f"110105/2026/12/{policy_no}/v1-issue"
    record_id = record_id or f"R-{policy_no}"
    return NewPolicy(
        facts=PolicyFacts(
            policy_no=policy_no,
            proposal_no=f"T{n:011d}",
            product_code="AUTO-COMM" if n % 2 else "HOME-PROP",
            branch_code="110105",
            branch_name="北京分公司",
            applicant_name=parties[0].name,
            insured_name=parties[-1].name,
            insured_id_no=id_no,
            plate=None if n % 4 == 0 else f"京a{n:05d}",
            vin="LSVAU218XN2183294" if n % 2 else None,
            period_start=NOW + timedelta(days=n),
            period_end=NOW + timedelta(days=365 + n),
            total_premium=Decimal("1000.00") + n,
            currency="CNY",
            print_serial=f"S{n:04d}" if n % 3 else None,
            issued_at=NOW + timedelta(minutes=n),
            key_prefix=f"110105/2026/12/{policy_no}",
            retain_until=NOW + timedelta(days=6 * 365),
            parties=tuple(parties),
        ),
        version=VersionFacts(
            policy_no=policy_no,
            version=1,
            kind="issue",
            created_at=NOW + timedelta(minutes=n),
            customer=StoredObject(f"{prefix}/customer.pdf", f"{n:064x}", 100 + n, 3),
            bundle=StoredObject(f"{prefix}/bundle.pdf", f"{n + 1:064x}", 200 + n, 5 + n),
            manifest=StoredObject(f"{prefix}/manifest.json", f"{n + 2:064x}", 50 + n),
            retain_until=NOW + timedelta(days=6 * 365),
            record_id=record_id,
            batch_id="B-1",
            seal_id="SEAL-1" if n % 2 else None,
        ),
        record=RecordFacts(record_id, f"{n + 3:064x}", "policy", policy_no, "B-1", n),
        missing_images=["vehicle_license"] if n % 2 else [],
        # an ID number in the detail: the batch scrubs it as the single write does
        event=LedgerEvent("tester", "policy.archived", policy_no, {"version": 1, "line": n, "id": id_no}),
    )


def archive_one(index: Index, item: NewPolicy) -> Any:
    return index.archive_policy(
        facts=item.facts,
        version=item.version,
        record=item.record,
        missing_images=item.missing_images,
        event=item.event,
    )


def rows(index: Index, *, all_columns: bool = False) -> dict[str, list[tuple]]:
    """Every row of the tables these writes touch, in key order (less the write times, unless asked)."""
    out = {}
    with index.engine.connect() as conn:
        for table in TABLES:
            skip = set() if all_columns else WRITE_TIMES.get(table.name, set())
            columns = [c for c in table.columns if c.name not in skip]
            query = select(*columns).order_by(*table.primary_key.columns)
            out[table.name] = [tuple(row) for row in conn.execute(query)]
    return out


@contextmanager
def commits(index: Index) -> Iterator[list[None]]:
    """Count the transactions committed meanwhile: one per item in the list it yields."""
    seen: list[None] = []

    def count(_conn: Any) -> None:
        seen.append(None)

    event.listen(index.engine, "commit", count)
    try:
        yield seen
    finally:
        event.remove(index.engine, "commit", count)


@pytest.fixture
def index(index_url):
    ix = Index.open(index_url, hmac_key=KEY)
    yield ix
    ix.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def two_indexes(request, tmp_path: Path):
    """Two empty indexes on the same kind of database: one written one by one, one in a batch."""
    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path / name}" for name in ("single.sqlite", "batch.sqlite")]
    else:
        new_database = request.getfixturevalue("postgres_server")
        urls = [new_database(), new_database()]
    pair = [Index.open(url, hmac_key=KEY) for url in urls]
    yield pair
    for ix in pair:
        ix.close()


def test_a_batch_writes_what_archive_policy_writes_one_by_one(two_indexes):
    one_by_one, batched = two_indexes
    items = [new_policy(n) for n in (5, 1, 4, 2, 3, 7, 6, 8)]  # not in key order: the ledger keeps this one
    for ix in two_indexes:
        ix.append_event(LedgerEvent("tester", "batch.started", "B-1"))  # the chain does not start here
    singles = [archive_one(one_by_one, item) for item in items]
    with commits(batched) as committed:
        assert batched.archive_policies([]) == []
        entries = batched.archive_policies(items)
    assert len(committed) == 1

    written = rows(batched)
    assert written == rows(one_by_one)
    assert len(written["policies"]) == len(written["documents"]) == len(written["records"]) == len(items)
    assert len(written["parties"]) == sum(len(item.facts.parties) for item in items)
    assert len(written["ledger"]) == len(items) + 1 and written["ledger_head"] == [(1, len(items) + 1)]

    assert [(e.seq, e.actor, e.action, e.subject, e.detail) for e in entries] == [
        (e.seq, e.actor, e.action, e.subject, e.detail) for e in singles
    ]
    assert [e.subject for e in entries] == [item.facts.policy_no for item in items]
    assert "11010519491231005X" not in str(entries[0].detail)  # scrubbed
    stored = list(batched.ledger_entries())
    assert stored[1:] == entries  # what it returned is what it stored, times and hashes included
    assert [e.prev_hash for e in stored[1:]] == [e.hash for e in stored[:-1]]
    assert batched.verify_ledger() == [] and one_by_one.verify_ledger() == []
    (found,) = batched.find(id_no="11010519491231004X")
    assert found.policy_no == "PBATCH000004" and found.complete and found.plate is None


def test_a_conflicting_batch_leaves_nothing_behind(index):
    archive_one(index, new_policy(2))
    before = rows(index, all_columns=True)
    for batch in (
        [new_policy(1), new_policy(2), new_policy(3)],  # a policy indexed already
        [new_policy(1), new_policy(4, record_id="R-PBATCH000002")],  # a new policy, a record indexed already
        [new_policy(5), new_policy(6), new_policy(5)],  # one policy twice
    ):
        with pytest.raises(IndexConflict) as caught:
            index.archive_policies(batch)
        assert f"this batch of {len(batch)}" in str(caught.value)
        assert "nothing of the batch was written" in str(caught.value)
        assert rows(index, all_columns=True) == before

    # a batch of one says what archive_policy says
    with pytest.raises(IndexConflict) as single:
        archive_one(index, new_policy(2))
    with pytest.raises(IndexConflict) as batch_of_one:
        index.archive_policies([new_policy(2)])
    message = "policy PBATCH000002 or record R-PBATCH000002 is already indexed"
    assert str(single.value) == str(batch_of_one.value) == message
    assert rows(index, all_columns=True) == before

    # the caller's fallback: one by one, the conflict is found and the others are filed
    outcomes = []
    for item in (new_policy(1), new_policy(2), new_policy(3)):
        try:
            archive_one(index, item)
            outcomes.append("archived")
        except IndexConflict:
            outcomes.append("conflict")
    assert outcomes == ["archived", "conflict", "archived"]
    assert index.count("policies") == 3 and index.verify_ledger() == []


@pytest.mark.parametrize("table", ["policies", "records"])
def test_overlapping_batches_conflict_instead_of_deadlocking(table, request):
    """PostgreSQL makes an insert wait for an uncommitted row with the same key. A batch inserting in its
    own order could hold a key another writer needs while waiting for one that writer holds: a deadlock,
    which the index reports as unavailable (exit 3) and which stops the run. The other writer here takes
    the two keys in key order, as a batch does; the batch is given them the other way round."""
    index = Index.open(request.getfixturevalue("postgres_server")(), hmac_key=KEY)
    if table == "policies":
        batch = [new_policy(2), new_policy(1)]
        keys = [_policy_row(new_policy(n).facts) for n in (1, 2)]
    else:  # new policies, records indexed under other numbers: the same records, corrected, elsewhere
        batch = [new_policy(1, record_id="R-B"), new_policy(2, record_id="R-A")]
        keys = [_record_row(record_id) for record_id in ("R-A", "R-B")]
    other_writer = index.engine.connect()
    outcome: list[Any] = []

    def run_batch() -> None:
        try:
            outcome.append(index.archive_policies(batch))
        except BaseException as e:
            outcome.append(e)

    try:
        other_writer.begin()
        other_writer.execute(insert(schema.metadata.tables[table]), keys[0])
        worker = threading.Thread(target=run_batch)
        worker.start()
        _wait_until_blocked(index)
        # the batch must not hold the second key while it waits for the first
        other_writer.execute(insert(schema.metadata.tables[table]), keys[1])
        other_writer.commit()
        worker.join(timeout=30)
    finally:
        other_writer.close()
    try:
        (result,) = outcome
        assert isinstance(result, IndexConflict), result
        assert index.count("documents") == 0 and index.count("ledger") == 0
    finally:
        index.close()


def _record_row(record_id: str) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "content_sha256": "e" * 64,
        "kind": "policy",
        "policy_no": "P-ELSEWHERE",
        "version": 1,
        "archived_at": NOW,
    }


def _policy_row(facts: PolicyFacts) -> dict[str, Any]:
    """The NOT NULL columns of a policy row: another writer's insert, as far as the keys go."""
    return {
        "policy_no": facts.policy_no,
        "proposal_no": facts.proposal_no,
        "product_code": facts.product_code,
        "branch_code": facts.branch_code,
        "branch_name": facts.branch_name,
        "applicant_name": facts.applicant_name,
        "insured_name": facts.insured_name,
        "insured_id_masked": "***",
        "period_start": facts.period_start,
        "period_end": facts.period_end,
        "total_premium": facts.total_premium,
        "currency": facts.currency,
        "status": "issued",
        "complete": True,
        "missing_images": "",
        "issued_at": facts.issued_at,
        "key_prefix": facts.key_prefix,
        "current_version": 1,
        "retain_until": facts.retain_until,
    }


def _wait_until_blocked(index: Index) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with index.engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return
        time.sleep(0.02)
    pytest.fail("the batch never waited for the other writer's row")


def test_archive_policies_on_a_database_that_is_down_is_a_component_error():
    index = Index.open(
        "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2", hmac_key=KEY, migrate=False
    )
    with pytest.raises(IndexUnavailable):
        index.archive_policies([new_policy(1)])


# --- the print-serial registry ---------------------------------------------------------------------------


def _serials_so_far(index: Index) -> None:
    """Forms BJ2026-0000001..6 issued; 5 used by P-OLD v1; 6 used by P-GONE v1, then voided."""
    issue_range(index, first="BJ2026-0000001", last="BJ2026-0000006", to="CLK1", by="stock", at=NOW)
    mark_used(index, serial="BJ2026-0000005", policy_no="P-OLD", version=1, at=NOW)
    mark_used(index, serial="BJ2026-0000006", policy_no="P-GONE", version=1, at=NOW)
    void(
        index,
        "BJ2026-0000006",
        policy_no="P-GONE",
        used_version=1,
        used_at=NOW,
        by_version=2,
        reason="第1次补发 (lost)",
        at=NOW,
        by="CLK1",
    )


USES = [
    DocumentSerial("bj2026-0000001", "P1", 1),
    DocumentSerial("UNREG-0001", "P2", 1),
    DocumentSerial("BJ2026-0000005", "P-OLD", 1),  # a re-run of an earlier use
    DocumentSerial("BJ2026-0000005", "P3", 1, by="nightly"),
    DocumentSerial(None, "P4", 1),
    DocumentSerial("  ", "P4", 1),
    DocumentSerial("BJ2026-0000001", "P1", 1),  # the same document twice in one batch
    DocumentSerial("unreg-0001", "P5", 2),  # another document on a serial used earlier in this batch
    DocumentSerial("BJ2026-0000006", "P6", 1),  # a voided form
    DocumentSerial("BJ2026-0000002", "P7", 1, by="CLK2"),
]
EXPECTED = [
    SerialUse("BJ2026-0000001", "used"),
    SerialUse("UNREG-0001", "unregistered"),
    SerialUse("BJ2026-0000005", "already"),
    SerialUse("BJ2026-0000005", "conflict", held_by=("P-OLD", 1)),
    None,
    None,
    SerialUse("BJ2026-0000001", "already"),
    SerialUse("UNREG-0001", "conflict", held_by=("P2", 1)),
    SerialUse("BJ2026-0000006", "conflict", held_by=("P-GONE", 1)),
    SerialUse("BJ2026-0000002", "used"),
]


def test_mark_used_many_answers_what_mark_used_answers(two_indexes):
    one_by_one, batched = two_indexes
    uses = [replace(use, at=NOW + timedelta(hours=i)) for i, use in enumerate(USES)]
    for ix in two_indexes:
        _serials_so_far(ix)
    singles = [
        mark_used(one_by_one, serial=u.serial, policy_no=u.policy_no, version=u.version, at=u.at, by=u.by)
        for u in uses
    ]
    events = batched.count("ledger")
    with commits(batched) as committed:
        assert mark_used_many(batched, []) == []
        assert mark_used_many(batched, uses) == singles == EXPECTED
    assert len(committed) == 1

    assert rows(batched) == rows(one_by_one)
    incidents = list(batched.ledger_entries())[events:]
    assert [(e.actor, e.action, e.subject, e.detail) for e in incidents] == [
        (
            "nightly",
            "incident.serial_conflict",
            "P3",
            {"serial": "BJ2026-0000005", "version": 1, "held_by": {"policy_no": "P-OLD", "version": 1}},
        ),
        (
            "issuance",
            "incident.serial_conflict",
            "P5",
            {"serial": "UNREG-0001", "version": 2, "held_by": {"policy_no": "P2", "version": 1}},
        ),
        (
            "issuance",
            "incident.serial_conflict",
            "P6",
            {"serial": "BJ2026-0000006", "version": 1, "held_by": {"policy_no": "P-GONE", "version": 1}},
        ),
        (  # issued to CLK1, used by CLK2 (issue 25, item 5)
            "CLK2",
            "serials.other_clerk",
            "print-serials",
            {
                "serial": "BJ2026-0000002",
                "issued_to": "CLK1",
                "used_by": "CLK2",
                "policy_no": "P7",
                "version": 1,
            },
        ),
    ]
    used = serials.lookup(batched, "BJ2026-0000002")
    assert (used.state, used.policy_no, used.used_by, used.used_at) == ("used", "P7", "CLK2", uses[9].at)
    assert batched.verify_ledger() == [] and one_by_one.verify_ledger() == []


def test_mark_used_many_never_fails_the_filed_documents(index, caplog):
    with index.engine.begin() as conn:
        conn.execute(text("DROP TABLE print_serials"))  # the registry is unusable
    with caplog.at_level(logging.ERROR, logger="archive.serials"):
        uses = mark_used_many(
            index,
            [
                DocumentSerial("BJ2026-0000001", "P1", 1),
                DocumentSerial(None, "P2", 1),
                DocumentSerial("BJ2026-0000002", "P3", 2),
            ],
        )
    assert uses == [SerialUse("BJ2026-0000001", "failed"), None, SerialUse("BJ2026-0000002", "failed")]
    assert "serial BJ2026-0000001 of P1 v1" in caplog.text and "serial BJ2026-0000002 of P3 v2" in caplog.text
    assert "could not be recorded as used" in caplog.text


class _RacedIndex(Index):
    """An index where another writer records the second serial of a batch between the batch's read of
    the registry and its insert, which then fails as the database fails it (``IndexConflict``)."""

    def use_serials(self, claims: Any, *, incident: Any) -> list[SerialUse]:
        if len(claims) > 1:
            mark_used(self, serial=claims[1].serial, policy_no="P-OTHER", version=1)
            raise IndexConflict("another writer recorded one of these serials first")
        return super().use_serials(claims, incident=incident)


def test_mark_used_many_after_another_writer_used_a_serial_first(index_url):
    """The batch read the registry, another writer inserted one of its serials, the batch's insert fails:
    each is recorded on its own, and that one is a conflict rather than a failure."""
    index = _RacedIndex.open(index_url, hmac_key=KEY)
    try:
        uses = mark_used_many(index, [DocumentSerial("RACE-1", "P1", 1), DocumentSerial("RACE-2", "P2", 1)])
        assert uses == [
            SerialUse("RACE-1", "unregistered"),
            SerialUse("RACE-2", "conflict", held_by=("P-OTHER", 1)),
        ]
        assert index.verify_ledger() == []
    finally:
        index.close()


def test_a_first_use_another_writer_commits_meanwhile_is_an_index_conflict(index_url):
    """On PostgreSQL the registry's read locks only the rows that exist: another writer may insert a
    serial's first use before the batch inserts it. The batch then writes nothing (``IndexConflict``)
    and ``mark_used_many`` records each serial on its own. (SQLite holds the whole database from BEGIN:
    no other writer gets in.)"""
    if index_url.startswith("sqlite"):
        pytest.skip("SQLite lets no other writer in during a transaction")
    index = Index.open(index_url, hmac_key=KEY)
    other = Index.open(index_url, hmac_key=KEY)
    claims = [DocumentSerial("RACE-1", "P1", 1, at=NOW), DocumentSerial("RACE-2", "P2", 1, at=NOW)]

    def other_writer_first(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO print_serials") and not raced:
            raced.append(mark_used(other, serial="RACE-2", policy_no="P-OTHER", version=1))

    raced: list[SerialUse | None] = []
    event.listen(index.engine, "before_cursor_execute", other_writer_first)
    try:
        with pytest.raises(IndexConflict):
            index.use_serials(claims, incident=lambda claim, use: LedgerEvent("t", "t", claim.policy_no))
        assert raced == [SerialUse("RACE-2", "unregistered")]
        assert serials.lookup(index, "RACE-1") is None  # nothing of the batch was written
        assert mark_used_many(index, claims) == [
            SerialUse("RACE-1", "unregistered"),
            SerialUse("RACE-2", "conflict", held_by=("P-OTHER", 1)),
        ]
    finally:
        event.remove(index.engine, "before_cursor_execute", other_writer_first)
        index.close()
        other.close()
