"""The policy lifecycle (issue 25, contract v1.1) on real components: LibreOffice renders every
endorsement, the archive is a folder with SQLite or a real PostgreSQL index (``index_url`` runs each test
on both).

What is checked: each endorsement type is filed (or rejected naming its field) through ``run_batch``;
the index's status, the endorsement that set it and the values a policy is findable by; a change to an
indexed field whose ``old`` is not the current value is rejected; a surrendered or cancelled policy is
never reissued; backdating (倒签单) is rejected; an endorsement later in the same batch sees the state
the earlier ones left.
"""

from __future__ import annotations

import copy
import json
import subprocess
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from archive.index import Index, as_utc
from archive.reissue import ReissueRequest, reissue
from archive.store import LocalStore
from core import lifecycle
from core.errors import PolicyNotReissuable
from core.lifecycle import PolicyState
from core.records import parse_record
from pipeline.reissue import ReissueMarker
from pipeline.report import ARCHIVED, REJECTED
from stamps import load_seal_registry
from tests.conftest import write_batch
from usecases import run as run_module
from usecases.filing import Filing
from usecases.run import run_batch

KEY = b"lifecycle-test-hmac-key-012345678"


@pytest.fixture(scope="module")
def sealing_maker(registry, pool, tmp_path_factory):
    from pipeline.documents import DocumentMaker

    return DocumentMaker(
        registry=registry,
        converter=pool,
        cache_dir=tmp_path_factory.mktemp("lifecycle-cache"),
        seals=load_seal_registry(),
    )


@pytest.fixture
def filing(index_url, tmp_path, sealing_maker):
    index = Index.open(index_url, hmac_key=KEY)
    f = Filing(store=LocalStore(tmp_path / "archive"), index=index, maker=sealing_maker, operator="tester")
    yield f
    f.close()
    index.close()


def _at(dt: str, **shift: int) -> str:
    return (datetime.fromisoformat(dt) + timedelta(**shift)).isoformat()


def endorsement(policy: dict[str, Any], n: int, **fields: Any) -> dict[str, Any]:
    """An endorsement of ``policy`` approved a day after its start and effective the next midnight."""
    start = policy["period"]["start"]
    record = {
        "kind": "endorsement",
        "record_id": f"UW-LC-{policy['policy_no'][-6:]}-E{n}",
        "endorsement_no": f"EDAA{policy['policy_no'][-12:]}{n:06d}",
        "policy_no": policy["policy_no"],
        "effective_at": _at(start, days=10 + n),
        "changes": [{"field": "special_terms", "label": "特别约定", "old": "无", "new": "见批文"}],
        "premium_delta": "0.00",
        "text": "经投保人申请，本公司同意批改如下。其他保险条件不变。（样本 SPECIMEN）",
        "underwriting": {"approved_by": "UW001", "approved_at": _at(start, days=9 + n, hours=10)},
        "issued_by": "CLK0001",
    }
    record.update(fields)
    return record


def _run(filing: Filing, folder: Path, lines: list[dict[str, Any]], name: str) -> dict[int, Any]:
    batch = write_batch(folder, lines, name=name)
    report = run_batch(batch, filing=filing, workers=2)
    return {o.line: o for o in report.outcomes}


def _rejected_field(outcome: Any) -> str:
    assert outcome.status == REJECTED, outcome
    return outcome.reasons[0].field


def _found(filing: Filing, **criteria: str) -> list[str]:
    return [p.policy_no for p in filing.index.find(**criteria)]


def _pdftotext(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "copy.pdf"
    path.write_bytes(data)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True, text=True
    ).stdout


def test_plate_change_finds_by_old_and_new_and_a_wrong_old_is_rejected(filing, records, batch_dir):
    motor = records["AUTO-COMM"]
    old_plate = motor["vehicle"]["plate"]
    new_plate = "粤BD73521"
    wrong = endorsement(
        motor,
        1,
        changes=[{"field": "vehicle.plate", "label": "号牌号码", "old": "粤B00000", "new": new_plate}],
    )
    right = endorsement(
        motor,
        2,
        changes=[{"field": "vehicle.plate", "label": "号牌号码", "old": old_plate, "new": new_plate}],
    )
    # the next change must start from the new plate: the batch's checks see the state line 3 left
    stale = endorsement(
        motor,
        3,
        changes=[{"field": "vehicle.plate", "label": "号牌号码", "old": old_plate, "new": "粤B99999"}],
    )
    out = _run(filing, batch_dir, [motor, wrong, right, stale], "plates.jsonl")
    assert out[1].status == ARCHIVED
    assert _rejected_field(out[2]) == "changes[0].old"
    assert out[3].status == ARCHIVED, out[3]
    assert _rejected_field(out[4]) == "changes[0].old"

    assert _found(filing, plate=new_plate) == [motor["policy_no"]]
    assert _found(filing, plate=old_plate) == [motor["policy_no"]]
    assert _found(filing, plate="粤B99999") == []
    assert filing.index.policy_row(motor["policy_no"]).plate == new_plate
    history = filing.index.lookup_history(motor["policy_no"])
    assert [(h.field, h.value, h.version) for h in history] == [
        ("vehicle.plate", old_plate, 1),
        ("vehicle.plate", new_plate, 2),
    ]
    assert history[1].since == datetime.fromisoformat(right["effective_at"])


def test_name_and_id_changes_keep_the_policy_findable_by_both(filing, records, batch_dir):
    accident = records["PA-ACC"]
    old_name, old_id = accident["insured"]["name"], accident["insured"]["id_no"]
    new_id = "11010519491231002X"  # GB 11643 check digit right (the standard's own example)
    # the applicant is another person: only the history can find the insured's old name and number
    accident["applicant"] = dict(accident["applicant"], name="司马·𠮷安", id_no="110105198001010016")
    change = endorsement(
        accident,
        1,
        changes=[
            {"field": "insured.name", "label": "被保险人姓名", "old": old_name, "new": "阿依古丽·买买提"},
            {"field": "insured.id_no", "label": "被保险人证件号码", "old": old_id, "new": new_id},
        ],
    )
    out = _run(filing, batch_dir, [accident, change], "names.jsonl")
    assert [o.status for o in out.values()] == [ARCHIVED, ARCHIVED], out
    number = accident["policy_no"]
    assert number in _found(filing, name="阿依古丽·买买提")
    assert number in _found(filing, name=old_name)
    assert number in _found(filing, id_no=new_id)
    assert number in _found(filing, id_no=old_id)
    row = filing.index.policy_row(number)
    assert row.insured_name == "阿依古丽·买买提"
    # ID numbers stay keyed hashes in the history: the page shows that they changed, not what to
    history = filing.index.lookup_history(number)
    assert {(h.field, h.value) for h in history if h.field == "insured.id_no"} == {("insured.id_no", None)}
    with filing.index.engine.connect() as conn:
        stored = " ".join(str(v) for r in conn.exec_driver_sql("SELECT * FROM lookups") for v in r)
    assert new_id not in stored and old_id not in stored


def test_surrender_then_reissue_refused_then_reinstate(filing, records, batch_dir, pool, tmp_path):
    motor = records["AUTO-COMM"]
    total = Decimal(motor["total_premium"])
    surrender = endorsement(motor, 1, type="surrender", premium_delta=f"-{total / 2:.2f}")
    again = endorsement(motor, 2, type="surrender", premium_delta="-1.00")
    adding = endorsement(motor, 3, type="add_clauses", clauses_added=["AUTO-COMM-SEAT"])
    out = _run(filing, batch_dir, [motor, surrender, again, adding], "surrender.jsonl")
    assert out[2].status == ARCHIVED, out[2]
    assert _rejected_field(out[3]) == "type"
    assert (
        "surrendered" in out[3].reasons[0].message
        and surrender["endorsement_no"] in out[3].reasons[0].message
    )
    assert _rejected_field(out[4]) == "clauses_added[0]"  # already attached at issue

    number = motor["policy_no"]
    row = filing.index.policy_row(number)
    assert (row.status, row.status_by) == ("surrendered", surrender["endorsement_no"])
    # stored in UTC like every time in the index (SQLite keeps no zone): the same moment read back
    assert as_utc(row.status_since) == datetime.fromisoformat(surrender["effective_at"])
    found = filing.index.find(policy_no=number)[0]
    assert (found.status, found.status_by) == ("surrendered", surrender["endorsement_no"])

    marker = ReissueMarker(converter=pool, scratch_dir=tmp_path / "marks")
    with pytest.raises(PolicyNotReissuable) as refused:
        reissue(
            store=filing.store,
            index=filing.index,
            marker=marker,
            request=ReissueRequest(policy_no=number, reason="lost", clerk="CLK0001"),
            operator="tester",
        )
    assert "surrendered" in str(refused.value) and surrender["endorsement_no"] in str(refused.value)
    assert len(filing.index.versions(number)) == 2  # nothing filed by the refusal

    reinstate = endorsement(motor, 4, type="reinstate", premium_delta=f"{total / 2:.2f}")
    second = endorsement(motor, 5, type="reinstate")
    out = _run(filing, batch_dir, [reinstate, second], "reinstate.jsonl")
    assert out[1].status == ARCHIVED, out[1]
    assert _rejected_field(out[2]) == "type"  # only a surrendered policy is reinstated
    row = filing.index.policy_row(number)
    assert (row.status, row.status_by) == ("issued", reinstate["endorsement_no"])
    copy_text = _pdftotext(filing.store.get(filing.index.versions(number)[-1].customer_key), tmp_path)
    assert surrender["endorsement_no"] in copy_text and reinstate["endorsement_no"] in copy_text


def test_cancel_refunds_the_whole_premium_with_earlier_endorsements(filing, records, batch_dir):
    home = records["HOME-PROP"]
    total = Decimal(home["total_premium"])
    extra = endorsement(home, 1, premium_delta="100.00")
    short = endorsement(home, 2, type="cancel", premium_delta=f"-{total:.2f}")
    whole = endorsement(home, 3, type="cancel", premium_delta=f"-{total + 100:.2f}")
    after = endorsement(home, 4, type="surrender", premium_delta="0.00")
    out = _run(filing, batch_dir, [home, extra, short, whole, after], "cancel.jsonl")
    assert out[2].status == ARCHIVED
    assert _rejected_field(out[3]) == "premium_delta"
    assert out[4].status == ARCHIVED, out[4]
    assert _rejected_field(out[5]) == "type"
    row = filing.index.policy_row(home["policy_no"])
    assert (row.status, row.status_by) == ("cancelled", whole["endorsement_no"])
    # void from inception: the status holds from the start of the period
    assert as_utc(row.status_since) == datetime.fromisoformat(home["period"]["start"])
    # found by its property address (kept as a keyed hash only), which is no history: it never changed
    assert _found(filing, address=" " + home["property"]["address"]) == [home["policy_no"]]
    assert filing.index.lookup_history(home["policy_no"]) == []
    with filing.index.engine.connect() as conn:
        stored = " ".join(str(v) for r in conn.exec_driver_sql("SELECT * FROM lookups") for v in r)
    assert home["property"]["address"] not in stored


def test_add_clauses_checks_and_state(filing, records, batch_dir):
    accident = records["PA-ACC"]
    assert "PA-ACC-MED" not in accident["clauses"]
    missing = endorsement(accident, 1, type="add_clauses")
    unknown = endorsement(accident, 2, type="add_clauses", clauses_added=["AUTO-COMM-SEAT"])
    stray = endorsement(accident, 3, clauses_added=["PA-ACC-MED"])
    good = endorsement(accident, 4, type="add_clauses", clauses_added=["PA-ACC-MED"], premium_delta="30.00")
    twice = endorsement(accident, 5, type="add_clauses", clauses_added=["PA-ACC-MED"])
    out = _run(filing, batch_dir, [accident, missing, unknown, stray, good, twice], "clauses.jsonl")
    assert _rejected_field(out[2]) == "clauses_added"
    assert _rejected_field(out[3]) == "clauses_added[0]"
    assert _rejected_field(out[4]) == "clauses_added"
    assert out[5].status == ARCHIVED, out[5]
    assert _rejected_field(out[6]) == "clauses_added[0]"
    state = filing.archived_policy(accident["policy_no"])
    assert state.clauses == (*accident["clauses"], "PA-ACC-MED")
    assert state.premium == Decimal(accident["total_premium"]) + Decimal("30.00")


def test_backdating_is_rejected(filing, records, batch_dir):
    motor = records["AUTO-COMM"]
    backdated = copy.deepcopy(records["HOME-PROP"])
    backdated["underwriting"]["approved_at"] = _at(backdated["period"]["start"], hours=9)
    late = endorsement(motor, 1)
    late["underwriting"]["approved_at"] = _at(late["effective_at"], minutes=1)
    out = _run(filing, batch_dir, [motor, backdated, late], "backdated.jsonl")
    assert _rejected_field(out[2]) == "period.start"
    assert "倒签单" in out[2].reasons[0].message
    assert _rejected_field(out[3]) == "effective_at"
    assert filing.index.policy_row(backdated["policy_no"]) is None


def test_state_folds_in_order_and_refuses_without_echoing_values(records):
    """The pure rules, without the archive: a value that could be an ID number is never echoed."""
    policy, reasons = parse_record(records["PA-ACC"])
    assert not reasons
    state = PolicyState.of(policy)
    old_id = policy.insured.id_no
    bad, _ = parse_record(
        endorsement(
            records["PA-ACC"],
            1,
            changes=[
                {"field": "insured.id_no", "label": "证件号码", "old": "110105194912310021", "new": old_id}
            ],
        )
    )
    found = lifecycle.problems(state, bad, clause_codes=("PA-ACC-MAIN", "PA-ACC-MED"))
    assert [f for f, _ in found] == ["changes[0].old"]
    assert old_id not in json.dumps(found, ensure_ascii=False)
    assert "110105194912310021" not in json.dumps(found, ensure_ascii=False)
    # a change that makes the record invalid names the change's new value
    short, _ = parse_record(
        endorsement(
            records["AUTO-COMM"],
            1,
            changes=[
                {
                    "field": "vehicle.plate",
                    "label": "号牌",
                    "old": records["AUTO-COMM"]["vehicle"]["plate"],
                    "new": "粤B1",
                }
            ],
        )
    )
    motor, _ = parse_record(records["AUTO-COMM"])
    assert [f for f, _ in lifecycle.problems(PolicyState.of(motor), short, clause_codes=())] == [
        "changes[0].new"
    ]


def test_rejected_lines_are_written_for_the_statistics_a_chunk_at_a_time(filing, batch_dir, monkeypatch):
    """A batch of many rejections keeps flat memory: the rows go to the index as they fill a chunk."""
    monkeypatch.setattr(run_module, "REJECTIONS_CHUNK", 3)
    written: list[int] = []
    record = filing.index.record_rejections

    def spy(rows):
        written.append(len(rows))
        return record(rows)

    monkeypatch.setattr(filing.index, "record_rejections", spy)
    lines = [f'{{"kind": "policy", "record_id": "JUNK-{n}"}}' for n in range(7)]
    out = _run(filing, batch_dir, lines, "junk.jsonl")
    assert all(o.status == REJECTED for o in out.values())
    assert sum(written) == 7 and written[:2] == [3, 3]
    with filing.index.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM rejections").scalar() == 7
