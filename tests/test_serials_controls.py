"""The print-serial controls of issue 25 (item 5), on SQLite and a real PostgreSQL (``index_url``):
超期未回收率 on a constructed set with hand-counted figures; blank forms voided as lost or spoilt
(``issuance serials void``, checked user, ledger event, reported); at filing, through real batch runs on
real LibreOffice, a voided serial and another policy's serial refused naming ``print_serial`` before
anything is stored, an unregistered one recorded (or refused with ``[serials] unknown = "refuse"``), and a
form used by a clerk other than the one it was issued to reported."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from archive.audit import lot_findings
from archive.audit.sampling import LotMember
from archive.index import Index
from archive.serials import filing_refusals, issue_range, lookup, mark_used, report, void, void_blank
from archive.store import LocalStore
from bench.synth import make_batch
from cli.main import main
from core.config import load_settings
from core.errors import ConfigError, SerialError, UsageError
from pipeline.report import ALREADY_ARCHIVED, ARCHIVED, REJECTED
from tests.conftest import add_users, write_batch
from usecases.filing import Filing
from usecases.run import run_batch

KEY = "serials-controls-hmac-key-0123456789"
CHINA = ZoneInfo("Asia/Shanghai")


def at(day: str, clock: str = "10:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=CHINA)


@pytest.fixture
def index(index_url):
    ix = Index.open(index_url, hmac_key=KEY.encode())
    yield ix
    ix.close()


# --- 超期未回收率 on a constructed set --------------------------------------------------------------------


def _build_issued_set(index: Index) -> None:
    """Forms with known dates around the period 2026-01-01 .. 2026-03-31, overdue after 30 days: the
    period ends 2026-04-01 00:00 China time, the cut-off is 2026-03-02 00:00."""

    def issue(first: str, last: str, when: datetime, to: str = "CLK-A") -> None:
        issue_range(index, first=first, last=last, to=to, by="stock", at=when)

    def use(serial: str, when: datetime, policy: str, by: str = "CLK-A") -> None:
        mark_used(index, serial=serial, policy_no=policy, version=1, at=when, by=by)

    issue("R-0001", "R-0003", at("2025-12-10"))  # before the period: only without --from
    use("R-0002", at("2026-01-05"), "P02")  # R-0001, R-0003 stay blank
    issue("R-0011", "R-0018", at("2026-01-10"))  # in the period, before the cut-off
    use("R-0011", at("2026-01-20"), "P11")  # used
    use("R-0012", at("2026-04-05"), "P12")  # used after the period: blank at its end, overdue
    # R-0013 blank: overdue
    void_blank(index, ["R-0014"], reason="lost", by="ops", at=at("2026-02-01"))  # returned: in neither
    void_blank(index, ["R-0015"], reason="spoilt", by="ops", at=at("2026-04-03"))  # after: blank, overdue
    use("R-0016", at("2026-02-01"), "P16")  # used, then voided by a reissue: still used
    void(
        index,
        "R-0016",
        policy_no="P16",
        used_version=1,
        used_at=at("2026-02-01"),
        by_version=2,
        reason="第1次补发 (lost)",
        at=at("2026-03-15"),
        by="CLK-A",
    )
    # R-0017 blank: overdue
    use("R-0018", at("2026-03-20"), "P18", by="CLK-B")  # used, by another clerk
    issue("R-0021", "R-0023", at("2026-03-02", "01:00"))  # an hour after the cut-off
    # R-0021 blank: usable and out, not overdue
    use("R-0022", at("2026-03-10"), "P22", by="clk-a")  # used; the same clerk, spelt in lower case
    void_blank(index, ["R-0023"], reason="spoilt", by="ops", at=at("2026-03-05"))  # in neither
    issue("R-0031", "R-0031", at("2026-03-01", "23:00"))  # an hour before the cut-off: blank, overdue
    issue("R-0041", "R-0041", at("2026-04-02"))  # after the period: not counted
    use("UNREG-9", at("2026-02-10"), "P99")  # never issued: not in the population


def test_unreturned_rate_on_a_known_set(index):
    _build_issued_set(index)
    q1 = report(index, start=date(2026, 1, 1), end=date(2026, 3, 31))
    # issued in Q1: R-0011..18, R-0021..23, R-0031 (12 forms). Used by 04-01: 11, 16, 18, 22 = 4.
    # Neither used nor voided then: 12, 13, 15, 17, 21, 31 = 6; of them issued before 03-02: all but 21.
    # 14 and 23 were voided blank in the period: in neither.
    assert (q1.out_used, q1.out_blank, q1.unreturned) == (4, 6, 5)
    assert q1.return_rate == Fraction(5, 10)
    assert (q1.voided_lost, q1.voided_spoilt) == (1, 1)  # R-0014; R-0023 (R-0015 is voided in April)
    assert [(u.serial, u.issued_to, u.used_by, u.policy_no) for u in q1.other_clerk] == [
        ("R-0018", "CLK-A", "CLK-B", "P18")
    ]
    assert "overdue unreturned = usable and issued out, and issued more than 30 days" in q1.return_definition

    # no --from: the December box joins: R-0002 used, R-0001 and R-0003 blank and overdue
    everything = report(index, end=date(2026, 3, 31))
    assert (everything.out_used, everything.out_blank, everything.unreturned) == (5, 8, 7)
    assert everything.return_rate == Fraction(7, 13)
    # no grace: every form still out at the end is overdue
    strict = report(index, start=date(2026, 1, 1), end=date(2026, 3, 31), overdue_days=0)
    assert (strict.out_blank, strict.unreturned) == (6, 6) and strict.return_rate == Fraction(6, 10)
    # April: R-0012 used, R-0015 voided spoilt, R-0041 issued (blank, not overdue on 04-30)
    april = report(index, start=date(2026, 4, 1), end=date(2026, 4, 30))
    assert (april.out_used, april.out_blank, april.unreturned, april.voided_spoilt) == (0, 1, 0, 1)
    assert april.return_rate == Fraction(0, 1)
    assert report(index, start=date(2027, 1, 1), end=date(2027, 1, 31)).return_rate is None

    # the ledger names the other clerk's use once; a use by the same clerk in other letters is none
    (other,) = [e for e in index.ledger_entries(subject="print-serials") if e.action == "serials.other_clerk"]
    assert other.detail == {
        "serial": "R-0018",
        "issued_to": "CLK-A",
        "used_by": "CLK-B",
        "policy_no": "P18",
        "version": 1,
    }
    assert index.verify_ledger() == []


@pytest.fixture
def cli_env(index_url, monkeypatch, tmp_path):
    monkeypatch.setenv("ISSUANCE_INDEX", index_url)
    monkeypatch.setenv("ISSUANCE_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("ISSUANCE_HMAC_KEY", KEY)
    monkeypatch.setenv("ISSUANCE_OPERATOR", "stockroom")
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_serials_report_command_shows_both_rates(index, cli_env, capsys):
    _build_issued_set(index)
    assert main(["serials", "report", "--from", "2026-01-01", "--to", "2026-03-31"]) == 0
    out = capsys.readouterr().out
    assert "超期未回收率 50.00% (5/10)" in out
    assert "R-0018: issued to CLK-A, used by CLK-B (P18 v1)" in out
    assert "超期未回收率 = overdue unreturned / (usable and issued out + used)" in out
    assert main(["serials", "report", "--from", "2026-01-01", "--to", "2026-03-31", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert (
        body["issued_out_usable"],
        body["issued_out_used"],
        body["overdue_unreturned"],
        body["unreturned_rate"],
        body["voided_lost"],
        body["voided_spoilt"],
    ) == (6, 4, 5, 0.5, 1, 1)
    assert [u["serial"] for u in body["other_clerk"]] == ["R-0018"]
    with pytest.raises(SystemExit):
        main(["serials", "report", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the description
    assert "超期未回收率 = overdue unreturned / (usable and issued out + used)" in shown
    assert "overdue unreturned = usable and issued out, and issued more than --overdue-days" in shown


# --- voiding blank forms -----------------------------------------------------------------------------------


def test_void_lost_or_spoilt_blank_forms(index, cli_env, capsys):
    add_users({"ops1": ["operator"], "clerk1": ["clerk"]})
    issue_range(index, first="V-0001", last="V-0005", to="CLK-A", by="stock")
    mark_used(index, serial="V-0005", policy_no="P5", version=1)

    assert main(["serials", "void", "V-0001", "--reason", "lost", "--by", "clerk1"]) == 2
    assert "needs the role operator" in capsys.readouterr().err
    assert main(["serials", "void", "V-0001", "--reason", "lost", "--by", "nobody"]) == 2
    capsys.readouterr()
    assert main(["serials", "void", "V-0001", "V-0005", "--reason", "lost", "--by", "ops1"]) == 2
    assert (
        "used by a document (reissue the policy to void its form): V-0005 (P5 v1)" in capsys.readouterr().err
    )
    assert main(["serials", "void", "V-0001", "V-9999", "--reason", "lost", "--by", "ops1"]) == 2
    assert "not in the registry: V-9999" in capsys.readouterr().err
    assert lookup(index, "V-0001").state == "issued"  # all or none, and nothing for the refused users

    assert main(["serials", "void", "v-0001", "V-0002", "--reason", "lost", "--by", "ops1"]) == 0
    assert "2 voided (lost)" in capsys.readouterr().out
    assert main(["serials", "void", "V-0002", "V-0003", "--reason", "spoilt", "--by", "ops1"]) == 0
    assert "1 voided (spoilt), 1 were already" in capsys.readouterr().out
    row = lookup(index, "V-0002")
    assert (row.state, row.void_reason, row.voided_by, row.policy_no) == ("voided", "lost", "ops1", None)
    events = [
        (e.actor, e.detail)
        for e in index.ledger_entries(subject="print-serials")
        if e.action == "serials.voided_blank"
    ]
    assert events == [
        ("ops1", {"reason": "lost", "count": 2, "serials": ["V-0001", "V-0002"]}),
        ("ops1", {"reason": "spoilt", "count": 1, "serials": ["V-0003"]}),
    ]
    counted = report(index)
    assert (counted.voided_lost, counted.voided_spoilt, counted.voided) == (2, 1, 3)
    assert main(["find", "--serial", "V-0003"]) == 0
    found = capsys.readouterr().out
    assert (
        "单证 V-0003: VOIDED 已作废" in found and " by ops1: spoilt" in found and "voided blank on" in found
    )
    with pytest.raises(UsageError):
        void_blank(index, ["V-0004"], reason="burnt", by="ops1")
    with pytest.raises(SerialError):
        void_blank(index, ["V-0005"], reason="spoilt", by="ops1")


def test_filing_refusals_and_unknown_serials(index):
    """The check filing asks before anything is stored (the pipeline tests below go through it too)."""
    issue_range(index, first="F-0001", last="F-0003", to="CLK-A", by="stock")
    mark_used(index, serial="F-0001", policy_no="P1", version=1)
    void_blank(index, ["F-0002"], reason="spoilt", by="ops")
    claims = [
        ("f-0001", "P1"),  # the same policy again (a re-run): fine
        ("F-0001", "P2"),  # another policy's
        ("F-0002", "P3"),  # voided
        ("F-0003", "P4"),  # issued, blank: fine
        ("F-0003", "P5"),  # the form P4 of this very group is printed on
        ("NEVER-1", "P6"),  # never issued
        (None, "P7"),
        ("  ", "P8"),
    ]
    recorded = filing_refusals(index, claims)
    assert [r is None for r in recorded] == [True, False, False, True, False, True, True, True]
    assert "already used by P1 v1" in recorded[1]
    assert "voided" in recorded[2] and "(spoilt)" in recorded[2]
    assert "used by P4 earlier in this batch" in recorded[4]
    refused = filing_refusals(index, claims, unknown="refuse")
    assert refused[:5] == recorded[:5] and refused[6:] == [None, None]
    assert "NEVER-1 was never issued to anyone" in refused[5]
    with pytest.raises(UsageError):
        filing_refusals(index, claims, unknown="ignore")


def test_serials_unknown_setting(tmp_path):
    env = {"ISSUANCE_HMAC_KEY": KEY}
    assert load_settings(env=env, base=tmp_path).unknown_serials == "record"
    (tmp_path / "issuance.toml").write_text('[serials]\nunknown = "refuse"\n', encoding="utf-8")
    assert load_settings(env=env, base=tmp_path).unknown_serials == "refuse"
    assert load_settings(
        env={**env, "ISSUANCE_SERIALS_UNKNOWN": "record"}, base=tmp_path
    ).unknown_serials == ("record")
    (tmp_path / "issuance.toml").write_text('[serials]\nunknown = "ignore"\n', encoding="utf-8")
    with pytest.raises(ConfigError):
        load_settings(env=env, base=tmp_path)


# --- at filing, through real batch runs ------------------------------------------------------------------


def _objects_of(store: LocalStore, policy_no: str) -> list[str]:
    return [info.key for info in store.list("") if f"/{policy_no}/" in info.key]


def _by_line(run) -> dict[int, object]:
    return {o.line: o for o in run.outcomes}


def test_a_voided_or_taken_serial_is_refused_at_filing(index_url, maker, tmp_path):
    folder = tmp_path / "b"
    batch = make_batch(folder, 6, seed=41, images_per_record=1, endorsements=1)
    records = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    a, z, b, c, d, e, endorsement = records
    assert endorsement["kind"] == "endorsement" and endorsement["policy_no"] == a["policy_no"]
    for record, serial in (
        (a, "R-0001"),  # issued to A's own clerk
        (z, "R-0004"),  # filed by an earlier batch
        (b, "R-0003"),  # voided blank, lost
        (c, "R-0002"),  # issued to A's clerk, used by C's
        (d, "UNKNOWN-77"),  # never issued: recorded, unregistered
        (e, "R-0004"),  # Z's
        (endorsement, "R-0003"),  # voided
    ):
        record["print_serial"] = serial
    assert a["issued_by"] != c["issued_by"]
    index = Index.open(index_url, hmac_key=KEY.encode())
    store = LocalStore(tmp_path / "archive")
    filing = Filing(store=store, index=index, maker=maker, operator="tester")
    try:
        issue_range(index, first="R-0001", last="R-0005", to=a["issued_by"], by="stock")
        void_blank(index, ["R-0003"], reason="lost", by="ops")
        first = run_batch(write_batch(folder, [z], name="first.jsonl"), filing=filing, workers=2)
        assert [o.status for o in first.outcomes] == [ARCHIVED]

        second = write_batch(folder, [a, b, c, d, e, endorsement], name="second.jsonl")
        run = run_batch(second, filing=filing, workers=2)
        lines = _by_line(run)
        assert [lines[n].status for n in range(1, 7)] == [
            ARCHIVED,
            REJECTED,
            ARCHIVED,
            ARCHIVED,
            REJECTED,
            REJECTED,
        ]
        for n, said in (
            (2, "R-0003 was voided"),
            (5, f"R-0004 is already used by {z['policy_no']} v1"),
            (6, "voided"),
        ):
            assert [r.field for r in lines[n].reasons] == ["print_serial"], n
            assert said in lines[n].reasons[0].message, n
        counts = run.counts()
        assert (counts["records"], counts[ARCHIVED], counts[REJECTED]) == (6, 3, 3)
        # refused before anything was stored or indexed
        for refused in (b, e):
            assert (
                _objects_of(store, refused["policy_no"]) == []
                and index.policy_row(refused["policy_no"]) is None
            )
        assert len(index.versions(a["policy_no"])) == 1  # the endorsement added no version
        assert (
            lookup(index, "R-0003").state == "voided" and lookup(index, "R-0004").policy_no == z["policy_no"]
        )

        # a re-run behaves the same, and every serial is used exactly once
        again = run_batch(second, filing=filing, workers=2)
        lines = _by_line(again)
        assert [lines[n].status for n in range(1, 7)] == [
            ALREADY_ARCHIVED,
            REJECTED,
            ALREADY_ARCHIVED,
            ALREADY_ARCHIVED,
            REJECTED,
            REJECTED,
        ]
        assert all([r.field for r in lines[n].reasons] == ["print_serial"] for n in (2, 5, 6))
        used = {s: lookup(index, s) for s in ("R-0001", "R-0002", "UNKNOWN-77")}
        assert [(r.policy_no, r.version, r.registered) for r in used.values()] == [
            (a["policy_no"], 1, True),
            (c["policy_no"], 1, True),
            (d["policy_no"], 1, False),
        ]
        actions = [entry.action for entry in index.ledger_entries()]
        assert "incident.serial_conflict" not in actions
        others = [e.detail["serial"] for e in index.ledger_entries() if e.action == "serials.other_clerk"]
        assert others == ["R-0004", "R-0002"]  # Z's and C's clerks used forms issued to A's, once each

        # reported: the unregistered use, the other clerk's, the void
        counted = report(index)
        assert (counted.unregistered, counted.voided_lost) == (1, 1)
        assert [(u.serial, u.issued_to, u.used_by, u.policy_no) for u in counted.other_clerk] == [
            ("R-0004", a["issued_by"], z["issued_by"], z["policy_no"]),
            ("R-0002", a["issued_by"], c["issued_by"], c["policy_no"]),
        ]
        # and shown by the audit, as a warning that fails nothing
        lot = [
            LotMember(r["policy_no"], r["branch"]["code"], r["product_code"], r["print_serial"])
            for r in (a, z, c, d)
        ]
        findings = lot_findings(index, lot=lot, ledger_problems=())
        assert [(f.level, f.check) for f in findings] == [("warning", "print_serials")]
        assert (
            "unregistered serial: 1 serial(s) in the lot never issued to anyone (UNKNOWN-77)"
            in findings[0].message
        )

        # a centre that refuses serials never issued to anyone
        more = make_batch(tmp_path / "m", 2, seed=42, images_per_record=1)
        f, g = (json.loads(line) for line in more.read_text(encoding="utf-8").splitlines())
        f["print_serial"], g["print_serial"] = "UNKNOWN-88", "R-0005"
        strict = Filing(store=store, index=index, maker=maker, operator="tester", unknown_serials="refuse")
        refused = run_batch(write_batch(more.parent, [f, g], name="strict.jsonl"), filing=strict, workers=2)
        lines = _by_line(refused)
        assert (lines[1].status, lines[2].status) == (REJECTED, ARCHIVED)
        assert [r.field for r in lines[1].reasons] == ["print_serial"]
        assert "UNKNOWN-88 was never issued to anyone" in lines[1].reasons[0].message
        assert lookup(index, "UNKNOWN-88") is None and _objects_of(store, f["policy_no"]) == []
        assert index.verify_ledger() == []
    finally:
        filing.close()
        index.close()


def test_unregistered_serials_are_an_audit_warning_only(index):
    issue_range(index, first="W-0001", last="W-0002", to="CLK-A", by="stock")
    mark_used(index, serial="W-0001", policy_no="P1", version=1)
    mark_used(index, serial="NOBODY-1", policy_no="P2", version=1)
    lot = [LotMember("P1", "110105", "PA-ACC", "W-0001"), LotMember("P2", "110105", "PA-ACC", "nobody-1")]
    findings = lot_findings(index, lot=lot, ledger_problems=())
    assert [(f.level, f.check, f.message) for f in findings] == [
        (
            "warning",
            "print_serials",
            "unregistered serial: 1 serial(s) in the lot never issued to anyone (NOBODY-1)",
        )
    ]
    assert lot_findings(index, lot=lot[:1], ledger_problems=()) == ()
