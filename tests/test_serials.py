"""The print-serial registry (单证): the format, issue → use → void → reconcile, and the overdue rate on
a constructed set with known dates, on SQLite and a real PostgreSQL (``index_url``)."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from archive.index import SCHEMA_HEAD, Index
from archive.serials import (
    expand_range,
    issue_range,
    issued_blocks,
    lookup,
    mark_used,
    parse_serial,
    reconcile,
    report,
    void,
)
from cli.main import main
from core.errors import SerialError, SerialFormatError, UsageError

KEY = "serials-test-hmac-key-0123456789"
CHINA = ZoneInfo("Asia/Shanghai")


def at(day: str, clock: str = "10:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=CHINA)


@pytest.fixture
def index(index_url):
    ix = Index.open(index_url, hmac_key=KEY.encode())
    yield ix
    ix.close()


def test_serial_format_and_ranges():
    assert parse_serial(" bj2026-0000123 ") == ("BJ2026-", 123, 7)
    assert parse_serial("202611010500000123") == ("", 202611010500000123, 18)
    assert expand_range("BJ2026-0000098", "BJ2026-0000101") == [
        "BJ2026-0000098",
        "BJ2026-0000099",
        "BJ2026-0000100",
        "BJ2026-0000101",
    ]
    assert expand_range("0009", "0011") == ["0009", "0010", "0011"]
    for first, last, message in (
        ("BJ2026-0000123", "SH2026-0000130", "same prefix"),
        ("BJ2026-0000123", "BJ2026-00000130", "same prefix and the same number of digits"),
        ("BJ2026-0000130", "BJ2026-0000123", "ends"),
        ("BJ2026-0000001", "BJ2026-0100000", "at most"),
        ("BJ2026-ABC", "BJ2026-ABD", "followed by digits"),
        ("BJ 0001", "BJ 0002", "followed by digits"),
    ):
        with pytest.raises(SerialFormatError) as caught:
            expand_range(first, last)
        assert message in str(caught.value) and caught.value.exit_code == 2


def test_issue_use_void_reconcile(index):
    issued = issue_range(
        index, first="SH2026-0000001", last="SH2026-0000005", to="CLK0201", by="stock", branch="310115"
    )
    assert (issued.count, issued.adopted) == (5, 0)
    with pytest.raises(SerialError) as twice:
        issue_range(index, first="SH2026-0000005", last="SH2026-0000006", to="CLK0202", by="stock")
    assert "SH2026-0000005" in str(twice.value) and lookup(index, "SH2026-0000006") is None
    with pytest.raises(UsageError):
        issue_range(index, first="SH2026-0000010", last="SH2026-0000011", to=" ", by="stock")

    # the batch's hook: never refuses the policy
    assert mark_used(index, serial="sh2026-0000001", policy_no="P1", version=1).status == "used"
    assert mark_used(index, serial="SH2026-0000001", policy_no="P1", version=1).status == "already"
    assert mark_used(index, serial="202631011512345678", policy_no="P2", version=1).status == "unregistered"
    events = index.count("ledger")
    clash = mark_used(index, serial="SH2026-0000001", policy_no="P3", version=1, by="nightly")
    assert (clash.status, clash.held_by) == ("conflict", ("P1", 1))
    (incident,) = list(index.ledger_entries())[events:]
    assert (incident.action, incident.subject, incident.detail["held_by"]) == (
        "incident.serial_conflict",
        "P3",
        {"policy_no": "P1", "version": 1},
    )
    assert mark_used(index, serial=None, policy_no="P4", version=1) is None
    assert mark_used(index, serial="  ", policy_no="P4", version=1) is None
    unregistered = lookup(index, "202631011512345678")
    assert (unregistered.state, unregistered.registered, unregistered.policy_no) == ("used", False, "P2")

    # a box registered after a document used one of its forms: the form is adopted, its use kept
    late = issue_range(index, first="202631011512345677", last="202631011512345679", to="CLK0203", by="stock")
    assert (late.count, late.adopted) == (3, 1)
    adopted = lookup(index, "202631011512345678")
    assert (adopted.state, adopted.registered, adopted.issued_to, adopted.policy_no) == (
        "used",
        True,
        "CLK0203",
        "P2",
    )

    void(
        index,
        "SH2026-0000001",
        policy_no="P1",
        used_version=1,
        used_at=at("2026-03-01"),
        by_version=2,
        reason="第1次补发 (lost)",
        at=at("2026-03-05"),
        by="CLK0201",
    )
    voided = lookup(index, "SH2026-0000001")
    assert (voided.state, voided.voided_by_version, voided.void_reason) == ("voided", 2, "第1次补发 (lost)")
    assert voided.used_at is not None and voided.policy_no == "P1"  # still says which document used it
    (voiding,) = [e for e in index.ledger_entries(subject="print-serials") if e.action == "serials.voided"]
    assert voiding.detail == {"serial": "SH2026-0000001", "policy_no": "P1", "version": 2}

    with pytest.raises(SerialError) as blank:
        reconcile(index, ["SH2026-0000001", "SH2026-0000002", "SH2026-9999999"], by="audit")
    assert "SH2026-9999999" in str(blank.value) and "SH2026-0000002" in str(blank.value)
    assert lookup(index, "SH2026-0000001").reconciled_at is None  # all or nothing
    done = reconcile(index, ["SH2026-0000001", "202631011512345678"], by="audit", at=at("2026-03-10"))
    assert done.reconciled == ("SH2026-0000001", "202631011512345678") and done.already == ()
    again = reconcile(index, ["sh2026-0000001"], by="audit")
    assert again.reconciled == () and again.already == ("SH2026-0000001",)
    assert lookup(index, "SH2026-0000001").reconciled_at == at("2026-03-10")
    assert index.verify_ledger() == []


def _build_known_set(index: Index) -> None:
    """Serials with known dates around the period 2026-01-01 .. 2026-03-31, overdue after 30 days.

    The period ends 2026-04-01 00:00 China time; 30 days before is 2026-03-02 00:00.
    """
    issue_range(
        index, first="GZ2026-0000001", last="GZ2026-0000010", to="CLK0301", by="stock", at=at("2025-12-15")
    )
    issue_range(
        index, first="GZ2026-0000011", last="GZ2026-0000012", to="CLK0301", by="stock", at=at("2026-01-02")
    )
    uses = {
        "GZ2026-0000001": "2026-01-10",  # A reconciled 01-20: reconciled
        "GZ2026-0000002": "2026-02-01",  # B never reconciled: overdue
        "GZ2026-0000003": "2026-03-01T23:00",  # C one hour before the cut-off: overdue
        "GZ2026-0000004": "2026-03-02T01:00",  # D an hour after it: awaiting, not overdue
        "GZ2026-0000005": "2026-02-15",  # E voided 03-20 by a reissue, not reconciled: overdue (from its use)
        "GZ2026-0000006": "2026-03-10",  # F reconciled 04-05, after the period: awaiting, not overdue
        "GZ2026-0000007": "2026-01-05",  # G reconciled 04-02, after the period: awaiting, overdue
        "GZ2026-0000008": "2026-04-03",  # H used after the period: not counted
        "GZ2026-0000009": "2025-12-20",  # J used before --from: counted only without --from (overdue)
        # GZ2026-0000010 issued, never used; 11 and 12 issued in the period, never used
    }
    for serial, when in uses.items():
        day, _, clock = when.partition("T")
        mark_used(index, serial=serial, policy_no=f"P{serial[-2:]}", version=1, at=at(day, clock or "10:00"))
    mark_used(
        index, serial="UNREG-001", policy_no="P99", version=1, at=at("2026-02-20")
    )  # K overdue, unregistered
    void(
        index,
        "GZ2026-0000005",
        policy_no="P05",
        used_version=1,
        used_at=at("2026-02-15"),
        by_version=2,
        reason="第1次补发 (lost)",
        at=at("2026-03-20"),
        by="CLK0301",
    )
    reconcile(index, ["GZ2026-0000001"], by="audit", at=at("2026-01-20"))
    reconcile(index, ["GZ2026-0000006"], by="audit", at=at("2026-04-05"))
    reconcile(index, ["GZ2026-0000007"], by="audit", at=at("2026-04-02"))


def test_issued_blocks_are_the_ranges_as_issued(index):
    """The blocks that hold given serials, read whole from the registry: one clerk, one moment, one
    prefix and width, consecutive numbers; what was never issued to anyone is in none."""
    moment = at("2026-11-02")
    for first, last, clerk in (
        ("BJ2026-0000001", "BJ2026-0000004", "CLK0001"),
        ("BJ2026-0000005", "BJ2026-0000006", "CLK0002"),  # adjacent, another clerk
        ("BJ2026-0000009", "BJ2026-0000009", "CLK0001"),  # the same clerk and moment, not adjacent
        ("202611010500000001", "202611010500000003", "CLK0001"),
    ):
        issue_range(index, first=first, last=last, to=clerk, by="ops", at=moment)
    mark_used(index, serial="BJ2026-0000002", policy_no="PAC20261102000000001", version=1)
    mark_used(index, serial="BJ2026-0000007", policy_no="PAC20261102000000002", version=1)  # unregistered
    wanted = ["bj2026-0000003", "BJ2026-0000009", "BJ2026-0000007", "202611010500000002", "X Y"]
    blocks = issued_blocks(index, wanted)
    assert [(b.serial(b.first), b.serial(b.last), b.issued_to) for b in blocks] == [
        ("202611010500000001", "202611010500000003", "CLK0001"),
        ("BJ2026-0000001", "BJ2026-0000004", "CLK0001"),
        ("BJ2026-0000009", "BJ2026-0000009", "CLK0001"),
    ]
    assert blocks[1].issued_at == moment
    assert blocks[1].holds("bj2026-0000002") and not blocks[1].holds("BJ2026-0000005")
    assert blocks[1].states == {
        1: ("issued", None),
        2: ("used", "PAC20261102000000001"),
        3: ("issued", None),
        4: ("issued", None),
    }
    assert issued_blocks(index, ["BJ2026-0000007"]) == ()


def test_overdue_rate_on_a_known_set(index):
    _build_known_set(index)
    q1 = report(index, start=date(2026, 1, 1), end=date(2026, 3, 31))
    # population: A B C D E F G K = 8; reconciled by 04-01: A; overdue: B C E G K
    assert (q1.reconciled, q1.awaiting, q1.overdue) == (1, 7, 5)
    assert q1.rate == Fraction(5, 8)
    assert (q1.issued, q1.used, q1.voided, q1.unregistered) == (2, 8, 1, 1)
    assert q1.as_of == at("2026-04-01", "00:00")
    assert "more than 30 days before the end of the period" in q1.definition

    everything = report(index, end=date(2026, 3, 31))  # no --from: J counts too, and the December box
    assert (everything.reconciled, everything.awaiting, everything.overdue, everything.issued) == (
        1,
        8,
        6,
        12,
    )
    assert everything.rate == Fraction(6, 9)

    strict = report(index, start=date(2026, 1, 1), end=date(2026, 3, 31), overdue_days=0)
    assert strict.overdue == strict.awaiting == 7 and strict.rate == Fraction(7, 8)
    later = report(index, start=date(2026, 1, 1), end=date(2026, 4, 30))  # F and G reconciled in April now
    assert (later.reconciled, later.awaiting) == (3, 6) and later.rate == Fraction(
        5, 9
    )  # H joins, not overdue
    empty = report(index, start=date(2027, 1, 1), end=date(2027, 1, 31))
    assert empty.rate is None and empty.awaiting == empty.reconciled == 0
    with pytest.raises(UsageError):
        report(index, start=date(2026, 3, 1), end=date(2026, 2, 1))


def test_serial_commands(index, index_url, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ISSUANCE_INDEX", index_url)
    monkeypatch.setenv("ISSUANCE_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("ISSUANCE_HMAC_KEY", KEY)
    monkeypatch.setenv("ISSUANCE_OPERATOR", "stockroom")
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        _build_known_set(index)
        assert main(["serials", "report", "--from", "2026-01-01", "--to", "2026-03-31"]) == 0
        out = capsys.readouterr().out
        assert "超期未核销率 62.50% (5/8)" in out
        assert "overdue = awaiting and used or voided more than 30 days before the end of the period" in out
        assert main(["serials", "report", "--from", "2026-01-01", "--to", "2026-03-31", "--json"]) == 0
        body = json.loads(capsys.readouterr().out)
        assert (body["overdue"], body["awaiting"], body["reconciled"], body["overdue_rate"]) == (
            5,
            7,
            1,
            0.625,
        )

        assert main(["serials", "issue", "BJ2026-0000001", "BJ2026-0000003", "--to", "CLK0401"]) == 0
        assert "3 serials BJ2026-0000001..BJ2026-0000003 issued to CLK0401" in capsys.readouterr().out
        assert main(["serials", "issue", "BJ2026-0000003", "BJ2026-0000004", "--to", "CLK0401"]) == 2
        assert "registered already" in capsys.readouterr().err
        assert main(["serials", "reconcile", "GZ2026-0000002", "GZ2026-0000003"]) == 0
        assert "2 reconciled" in capsys.readouterr().out
        assert lookup(index, "GZ2026-0000002").reconciled_by == "stockroom"
        assert main(["serials", "reconcile", "BJ2026-0000001"]) == 2
        assert "neither used nor voided" in capsys.readouterr().err

        assert main(["find", "--serial", "GZ2026-0000005"]) == 0  # voided, its policy is not archived here
        found = capsys.readouterr().out
        assert "0 found" in found and "单证 GZ2026-0000005: VOIDED 已作废" in found
        assert "voided on 2026-03-20 10:00 by reissue v2 of P05 (clerk CLK0301): 第1次补发 (lost)" in found
        assert main(["find", "--serial", "BJ2026-0000002"]) == 0
        assert "issued to CLK0401" in capsys.readouterr().out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_an_index_at_0001_is_migrated_to_0002(index_url):
    """An archive indexed before issue 6 gains the registry and reissue tables on its next open."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, inspect, text

    from archive.index import MIGRATIONS, schema

    engine = create_engine(index_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    assert "print_serials" not in inspect(engine).get_table_names()
    engine.dispose()
    index = Index.open(index_url, hmac_key=KEY.encode())
    try:
        assert index.schema_version() == SCHEMA_HEAD
        with index.engine.connect() as conn:
            for table in (schema.print_serials, schema.reissues):
                row = conn.execute(text(f"SELECT * FROM {table.name} WHERE 1=0"))
                assert set(row.keys()) == {c.name for c in table.columns}, table.name
    finally:
        index.close()


def test_mark_used_never_fails_the_filed_document(index, caplog):
    from sqlalchemy import text

    with index.engine.begin() as conn:
        conn.execute(text("DROP TABLE print_serials"))  # the registry is unusable
    with caplog.at_level(logging.ERROR, logger="archive.serials"):
        use = mark_used(index, serial="BJ2026-0000001", policy_no="P1", version=1)
    assert use.status == "failed" and "BJ2026-0000001 of P1 v1 could not be recorded" in caplog.text
