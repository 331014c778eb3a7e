"""The SQL index on SQLite and on a real PostgreSQL: one transaction per version, keyed-hash identities,
search, and a hash-chained ledger that reveals tampering."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from archive.index import SCHEMA_HEAD, Index, LedgerEvent, PartyFacts, PolicyFacts, VersionFacts, schema
from core.errors import IndexConflict
from core.manifest import RecordFacts, StoredObject

KEY = b"test-hmac-key-0123456789abcdef"
ID = "11010519491231002X"
NOW = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def facts(policy_no: str = "PTEST0000001", *, id_no: str = ID, plate: str | None = "京A12345") -> PolicyFacts:
    return PolicyFacts(
        policy_no=policy_no,
        proposal_no="T" + policy_no[1:],
        product_code="AUTO-COMM",
        branch_code="110105",
        branch_name="北京分公司",
        applicant_name="样本甲",
        insured_name="样本乙",
        insured_id_no=id_no,
        plate=plate,
        vin="LSVAU218XN2183294",
        period_start=NOW,
        period_end=NOW + timedelta(days=365),
        total_premium=Decimal("3456.78"),
        currency="CNY",
        print_serial="S0001",
        issued_at=NOW,
        key_prefix=f"110105/2026/12/{policy_no}",
        retain_until=NOW + timedelta(days=6 * 365),
        parties=(
            PartyFacts("applicant", 0, "样本甲", "passport", "E12345678"),
            PartyFacts("insured", 0, "样本乙", "resident_id", id_no),
        ),
    )


def version(policy_no: str, n: int, kind: str = "issue", record_id: str | None = None) -> VersionFacts:
    prefix = f"110105/2026/12/{policy_no}/v{n}-{kind}"
    return VersionFacts(
        policy_no=policy_no,
        version=n,
        kind=kind,
        created_at=NOW,
        customer=StoredObject(f"{prefix}/customer.pdf", "a" * 64, 100, 3),
        bundle=StoredObject(f"{prefix}/bundle.pdf", "b" * 64, 200, 5),
        manifest=StoredObject(f"{prefix}/manifest.json", "c" * 64, 50),
        retain_until=NOW + timedelta(days=6 * 365),
        record_id=record_id,
    )


def record(record_id: str, policy_no: str, kind: str = "policy") -> RecordFacts:
    return RecordFacts(record_id, "d" * 64, kind, policy_no, "B1", 1)


def archive(index: Index, policy_no: str = "PTEST0000001", **kw) -> None:
    index.archive_policy(
        facts=facts(policy_no, **kw),
        version=version(policy_no, 1, record_id=f"R-{policy_no}"),
        record=record(f"R-{policy_no}", policy_no),
        missing_images=["vehicle_license"],
        event=LedgerEvent("tester", "policy.archived", policy_no, {"version": 1}),
    )


@pytest.fixture
def index(index_url):
    ix = Index.open(index_url, hmac_key=KEY)
    yield ix
    ix.close()


def test_migrated_schema_matches_the_code(index):
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from archive.index import MIGRATIONS, SCHEMA_HEAD

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert index.schema_version() == head == SCHEMA_HEAD  # the head an index at head skips Alembic for
    with index.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            row = conn.execute(text(f"SELECT * FROM {table.name} WHERE 1=0"))
            assert set(row.keys()) == {c.name for c in table.columns}, table.name
    Index.open(str(index.engine.url.render_as_string(hide_password=False)), hmac_key=KEY)  # again: no-op


def test_an_index_behind_the_head_is_migrated_on_opening(index):
    """An index that stopped at an older migration is brought up to the head when a command opens it
    (the shortcut past Alembic is taken only at the head)."""
    url = str(index.engine.url.render_as_string(hide_password=False))
    with index.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE reissues")
        conn.exec_driver_sql("DROP TABLE print_serials")
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    again = Index.open(url, hmac_key=KEY)
    try:
        assert again.schema_version() == SCHEMA_HEAD
        with again.engine.connect() as conn:
            conn.execute(text("SELECT * FROM print_serials WHERE 1=0"))
    finally:
        again.close()


def test_archive_find_and_read_back(index):
    archive(index)
    (found,) = index.find(id_no=ID.lower())  # normalised before hashing
    assert found.policy_no == "PTEST0000001" and found.id_masked == "110***********002X"
    assert found.missing_images == ("vehicle_license",) and not found.complete
    assert found.period_start == NOW and found.versions == 1
    assert index.find(plate="京a12345")[0].policy_no == "PTEST0000001"
    assert index.find(name="样本甲")[0].policy_no == "PTEST0000001"  # the applicant, via parties
    assert index.find(id_no="E12345678")[0].policy_no == "PTEST0000001"
    assert index.find(branch="110105", issued_from=NOW, issued_to=NOW + timedelta(seconds=1))
    assert index.find(issued_to=NOW) == []  # exclusive
    assert index.find(id_no="110105194912310011") == []
    assert index.record("R-PTEST0000001").content_sha256 == "d" * 64


def test_no_raw_id_number_in_the_database(index, index_url, tmp_path):
    archive(index)
    with index.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                assert not any(ID in str(v) or "E12345678" in str(v) for v in row), table.name
    if index_url.startswith("sqlite"):
        raw = (tmp_path / "index.sqlite").read_bytes()
        wal = tmp_path / "index.sqlite-wal"
        raw += wal.read_bytes() if wal.exists() else b""
        assert ID.encode() not in raw and b"E12345678" not in raw


def test_same_policy_twice_is_a_conflict_and_changes_nothing(index):
    archive(index)
    before = index.count("ledger")
    with pytest.raises(IndexConflict):
        archive(index)
    assert index.count("ledger") == before and index.count("documents") == 1


def test_versions_are_consecutive(index):
    archive(index)
    index.archive_version(
        version=version("PTEST0000001", 2, "endorsement", "E-1"),
        record=record("E-1", "PTEST0000001", "endorsement"),
        event=LedgerEvent("tester", "endorsement.archived", "PTEST0000001"),
    )
    with pytest.raises(IndexConflict):  # version 2 again
        index.archive_version(
            version=version("PTEST0000001", 2, "supplement"),
            record=None,
            event=LedgerEvent("tester", "x", "PTEST0000001"),
        )
    index.archive_version(
        version=version("PTEST0000001", 3, "supplement"),
        record=None,
        event=LedgerEvent("tester", "supplement.archived", "PTEST0000001"),
        missing_images=[],
    )
    (found,) = index.find(policy_no="ptest0000001")
    assert found.versions == 3 and found.complete
    assert [v.kind for v in index.versions("PTEST0000001")] == ["issue", "endorsement", "supplement"]


def test_ledger_chain_detects_tampering(index):
    for i in range(4):
        archive(index, f"PTEST000000{i}")
    assert index.verify_ledger() == []
    with index.engine.begin() as conn:
        conn.execute(text("UPDATE ledger SET actor = 'mallory' WHERE seq = 2"))
    assert any("event 2 was altered" in p for p in index.verify_ledger())
    with index.engine.begin() as conn:
        conn.execute(text("UPDATE ledger SET actor = 'tester' WHERE seq = 2"))
        conn.execute(text("DELETE FROM ledger WHERE seq = 3"))
    problems = index.verify_ledger()
    assert any("event 3 is missing" in p for p in problems)
    assert any("event 4 does not link" in p for p in problems)


def test_ledger_detail_is_scrubbed(index):
    entry = index.append_event(
        LedgerEvent("clerk", "lookup", "PTEST0000001", {"asked_for": ID, "phone": "13812345678"})
    )
    assert ID not in str(entry.detail) and "13812345678" not in str(entry.detail)


def test_concurrent_appends_keep_one_chain(index):
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(8):
                index.append_event(LedgerEvent(f"w{n}", "tick", f"S{n}", {"i": i}))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert index.count("ledger") == 32 and index.verify_ledger() == []


def test_unreachable_database_is_a_component_error(tmp_path):
    from core.errors import ComponentUnavailable

    with pytest.raises(ComponentUnavailable):
        Index.open("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2", hmac_key=KEY)
