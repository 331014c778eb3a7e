"""A second look at hostile input through the `issuance run` command (issue 21, beyond its listed items).

Each test is one case of the campaign that broke a promise: no personal data in the report or the index
whatever a line holds, and two runs of one batch at once end with every record archived exactly once and
no false rejection.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from bench.synth import make_batch
from tests.conftest import REPO, write_batch

KEY = "hostile-campaign-hmac-key-0123456789"
ISSUANCE = [sys.executable, "-m", "cli.main"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ISSUANCE_STORE": f"file://{tmp_path / 'archive'}",
        "ISSUANCE_INDEX": f"sqlite:///{tmp_path / 'index.sqlite'}",
        "ISSUANCE_HMAC_KEY": KEY,
        "ISSUANCE_WORKERS": "1",
        "ISSUANCE_SCRATCH": str(tmp_path / "scratch"),
    }


def _run(tmp_path: Path, batch: Path, report: str = "r.json") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ISSUANCE, "run", str(batch), "--report", report],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path),
        timeout=600,
        check=False,
    )


def _index_dump(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        return "\n".join(db.iterdump())


def test_a_rejected_line_does_not_echo_personal_data_into_the_report_or_the_index(tmp_path):
    """A record_id, policy_no or kind holding a party's ID or phone number: the record is refused naming
    the field, and neither the report nor the index holds the number (a CSV whose columns slipped, or a
    core system that keys approvals by phone, puts them there)."""
    folder = tmp_path / "b"
    lines = make_batch(folder, 3, seed=71, images_per_record=1).read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    id_no = records[0]["applicant"]["id_no"]
    phone = records[1]["applicant"]["phone"]
    other_id = records[2]["applicant"]["id_no"]
    records[0]["policy_no"] = id_no  # refused by validation, naming policy_no
    records[1]["record_id"] = f"UW-{phone}"
    records[2]["kind"] = other_id
    batch = write_batch(folder, records)
    result = _run(tmp_path, batch)
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "r.json").read_text("utf-8"))
    assert report["counts"] == {"records": 3, "archived": 0, "already_archived": 0, "rejected": 3}
    fields = [{r["field"] for r in o["reasons"]} for o in report["outcomes"]]
    assert "policy_no" in fields[0] and "record_id" in fields[1] and "kind" in fields[2]
    text = (tmp_path / "r.json").read_text("utf-8")
    for secret in (id_no, phone, other_id):
        assert secret not in text
        assert secret not in result.stderr
        assert secret not in _index_dump(tmp_path)


def test_a_batch_file_named_after_a_customer_keeps_the_numbers_out_of_the_report_and_index(tmp_path):
    """Counter staff name a small batch after its customer: the file name is recorded masked."""
    folder = tmp_path / "b"
    lines = make_batch(folder, 1, seed=72, images_per_record=1).read_text("utf-8").splitlines()
    record = json.loads(lines[0])
    id_no, phone = record["applicant"]["id_no"], record["applicant"]["phone"]
    batch = write_batch(folder, lines, name=f"张三_{id_no}_{phone}.jsonl")
    result = _run(tmp_path, batch)
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "r.json").read_text("utf-8")
    assert json.loads(report)["counts"]["archived"] == 1
    for secret in (id_no, phone):
        assert secret not in report
        assert secret not in result.stderr
        assert secret not in _index_dump(tmp_path)


def test_two_runs_of_one_batch_at_once_archive_each_record_once_with_no_false_rejection(tmp_path):
    folder = tmp_path / "b"
    batch = make_batch(folder, 12, seed=73, images_per_record=1, endorsements=2)
    runs = [
        subprocess.Popen(
            [*ISSUANCE, "run", str(batch), "--report", name],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a.json", "b.json")
    ]
    errors = [p.communicate(timeout=600)[1] for p in runs]
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        (records,) = db.execute("select count(*) from records").fetchone()
    assert records == 14
    for p, name, stderr in zip(runs, ("a.json", "b.json"), errors, strict=True):
        report = json.loads((tmp_path / name).read_text("utf-8"))
        assert report["counts"]["rejected"] == 0, [
            o for o in report["outcomes"] if o["status"] == "rejected"
        ][:2]
        assert report["counts"]["archived"] + report["counts"]["already_archived"] == 14
        assert p.returncode == 0, stderr


def test_render_reports_a_rejected_line_and_the_file_name_without_personal_data(tmp_path):
    """`issuance render` builds its report on its own path: the same rule holds there."""
    folder = tmp_path / "b"
    lines = make_batch(folder, 2, seed=74, images_per_record=1).read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    id_no = records[0]["applicant"]["id_no"]
    phone = records[1]["applicant"]["phone"]
    records[0]["policy_no"] = id_no
    records[1]["kind"] = phone
    batch = write_batch(folder, records, name=f"{id_no}.jsonl")
    result = subprocess.run(
        [*ISSUANCE, "render", str(batch), "-o", "out", "--report", "r.json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path),
        timeout=600,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    text = (tmp_path / "r.json").read_text("utf-8")
    assert json.loads(text)["counts"]["rejected"] == 2
    assert id_no not in text and phone not in text
