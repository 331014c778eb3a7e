"""Rendering on real LibreOffice: what the customer's PDF says, and what the batch report counts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from core.privacy import uscc_check_char
from core.wording import amount_capitals
from tests.conftest import REPO, write_batch
from usecases.render import render_batch

ISSUANCE = [sys.executable, "-m", "cli.main"]


def pdf_text(path: Path) -> str:
    """Text as poppler extracts it (what a reader copying from the PDF gets)."""
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    ).stdout.decode()


def flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _single_coverage(record: dict, premium: str, sum_insured: str = "1000000.00") -> dict:
    record["coverages"] = [dict(record["coverages"][0], premium=premium, sum_insured=sum_insured)]
    record["total_premium"] = premium
    return record


@pytest.fixture
def tricky(records) -> list[dict]:
    """A motor policy with hostile text, a PA policy with a rare-glyph name, and the endorsement."""
    auto = records["AUTO-COMM"]
    first17 = "91110105MA01PEC1A"
    auto["applicant"] = {
        "name": 'A&B <示范> "{{x}}" {_{y}_} 贸易',
        "party_type": "organization",
        "id_type": "uscc",
        "id_no": first17 + uscc_check_char(first17),
        "address": "北京市朝阳区示范路1号",
    }
    auto["special_terms"] = ["{% for x in y %}不执行{% endfor %} & <b>原样</b>", "第一行\n第二行"]
    pa = records["PA-ACC"]
    pa["insured"]["name"] = "欧阳·𠮷祥"
    home = records["HOME-PROP"]
    home["property"]["address"] = (
        "广东省深圳市南山区样本街道示范社区科技园南区高新南七道样本大厦A座二十八层2808室（样本地址，"
        "仅用于演示很长的标的地址在表格单元格内自动换行而不越出右侧页边距的效果）"
    )
    return [auto, pa, home, records["endorsement"]]


@pytest.fixture
def rendered(tricky, batch_dir, maker, tmp_path):
    batch = write_batch(batch_dir, tricky, name="tricky.jsonl")
    out = tmp_path / "out"
    report = render_batch(batch, out_dir=out, maker=maker, workers=3)
    assert report.counts() == {"records": 4, "rendered": 4, "rejected": 0}, report.as_json()
    return out, {o.line: o for o in report.outcomes}


def test_text_is_data_never_template_code(rendered, tricky):
    out, _ = rendered
    text = pdf_text(out / tricky[0]["policy_no"] / "policy.pdf")
    assert 'A&B <示范> "{{x}}" {_{y}_} 贸易' in text
    assert "{% for x in y %}不执行{% endfor %} & <b>原样</b>" in text
    assert "第一行\n第二行" in text  # a newline in a special term is a line break


def test_rare_glyph_and_middle_dot_print_as_written(rendered, tricky):
    out, _ = rendered
    pdf = out / tricky[1]["policy_no"] / "policy.pdf"
    assert "欧阳·𠮷祥" in pdf_text(pdf)
    # and a real glyph was drawn for it: the embedded CJK font, not a fallback box (.notdef)
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    rows = fonts.splitlines()[2:]
    assert rows and all(" yes " in row for row in rows), fonts  # every font embedded
    assert all("NotoS" in row and "CJK" in row for row in rows), fonts  # and only the named CJK fonts


def test_endorsement_document(rendered, tricky):
    out, outcomes = rendered
    endorsement = tricky[3]
    path = out / endorsement["policy_no"] / f"endorsement-{endorsement['endorsement_no']}.pdf"
    text = flat(pdf_text(path))
    delta = Decimal(endorsement["premium_delta"])
    assert ("加费" if delta > 0 else "退费") in text
    assert flat(amount_capitals(abs(delta))) in text
    for change in endorsement["changes"]:
        assert flat(change["label"]) in text and flat(change["new"]) in text
    assert outcomes[4].templates == {"endorsement.docx": outcomes[4].templates["endorsement.docx"]}


def test_long_address_wraps_inside_its_cell(rendered, tricky):
    out, _ = rendered
    pdf = out / tricky[2]["policy_no"] / "policy.pdf"
    address = tricky[2]["property"]["address"]
    lines = [flat(line) for line in pdf_text(pdf).splitlines()]
    assert address in "".join(lines)  # all of it is there...
    assert not any(address in line for line in lines)  # ...on more than one line
    bbox = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", "-bbox", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    width = float(re.search(r'<page width="([\d.]+)"', bbox).group(1))
    right_edges = [float(x) for x in re.findall(r'xMax="([\d.]+)"', bbox)]
    right_margin_pt = 28 / 25.4 * 72
    assert max(right_edges) <= width - right_margin_pt + 2  # nothing runs into the seal margin


def test_schedule_then_every_clause_with_versions_recorded(rendered, tricky, registry):
    out, outcomes = rendered
    policy = tricky[0]
    pdf = out / policy["policy_no"] / "policy.pdf"
    reader = PdfReader(pdf)
    outline = [
        item.title if not isinstance(item, list) else [i.title for i in item] for item in reader.outline
    ]
    titles = [registry.clauses[c].title for c in policy["clauses"]]
    assert outline == ["保单", "条款", titles]
    text = flat(pdf_text(pdf))
    for code in policy["clauses"]:  # each clause is attached in full: its code line and its last article
        assert flat(f"条款代码：{code}") in text
    recorded = json.loads(reader.metadata["/IssuanceTemplates"])
    assert recorded == outcomes[1].templates
    assert set(recorded) == {"schedules/AUTO-COMM.docx", *(f"clauses/{c}.docx" for c in policy["clauses"])}
    assert all(v.startswith("sha256:") and len(v) == 71 for v in recorded.values())
    assert policy["applicant"]["id_no"] not in json.dumps(dict(reader.metadata), ensure_ascii=False)


def test_clause_pdfs_converted_once_per_version(maker, batch_dir, tricky, tmp_path):
    before = maker.clauses.conversions
    batch = write_batch(batch_dir, tricky[:3], name="again.jsonl")
    render_batch(batch, out_dir=tmp_path / "again", maker=maker, workers=2)
    assert maker.clauses.conversions == before  # every clause came from the cache


@pytest.mark.parametrize(
    ("premium", "capitals"),
    [
        ("0.05", "人民币伍分"),
        ("10.00", "人民币壹拾元整"),
        ("100010.50", "人民币壹拾万零壹拾元零伍角"),
        ("1000000.00", "人民币壹佰万元整"),
    ],
)
def test_total_premium_in_capitals_on_the_schedule(records, batch_dir, maker, tmp_path, premium, capitals):
    policy = _single_coverage(records["PA-ACC"], premium, sum_insured="2000000.00")
    batch = write_batch(batch_dir, [policy], name="amount.jsonl")
    render_batch(batch, out_dir=tmp_path / "out", maker=maker, workers=1)
    text = pdf_text(tmp_path / "out" / policy["policy_no"] / "policy.pdf")
    figures = f"{Decimal(premium):,.2f}"
    assert capitals in flat(text)
    assert f"¥{figures}" in text
    assert "2,000,000.00" in text


def test_period_wording_on_the_schedule(records, batch_dir, maker, tmp_path):
    policy = records["HOME-PROP"]
    policy["period"] = {"start": "2026-11-30T16:00:00Z", "end": "2027-12-01T00:00:00+08:00"}
    batch = write_batch(batch_dir, [policy], name="period.jsonl")
    render_batch(batch, out_dir=tmp_path / "out", maker=maker, workers=1)
    text = flat(pdf_text(tmp_path / "out" / policy["policy_no"] / "policy.pdf"))
    assert "自2026年12月1日零时起至2027年11月30日二十四时止" in text


def test_converter_killed_mid_batch_restarts_and_loses_nothing(synth_dir, maker, pool, tmp_path):
    from bench.synth import make_batch

    folder = tmp_path / "kill"
    batch = make_batch(folder, 6, seed=11, images_per_record=1)
    restarts_before = pool.stats.restarts
    killed: list[int] = []

    def kill_once(_outcome) -> None:
        if not killed:
            for pid in pool.soffice_pids:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    report = render_batch(batch, out_dir=tmp_path / "out", maker=maker, workers=3, on_record=kill_once)
    assert killed
    assert report.counts() == {"records": 6, "rendered": 6, "rejected": 0}
    assert pool.stats.restarts > restarts_before
    for outcome in report.outcomes:
        assert PdfReader(tmp_path / "out" / outcome.documents[0]).pages


# --- the command line -------------------------------------------------------------------------------


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ISSUANCE, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=600,
    )


def test_cli_sample_batch_report_counts_add_up(tmp_path):
    sample = REPO / "examples" / "sample-batch" / "batch.jsonl"
    result = _run(["render", str(sample), "-o", "out", "--workers", "2"], tmp_path)
    assert result.returncode == 1, result.stderr  # the sample holds bad records on purpose
    report = json.loads((tmp_path / "out-report.json").read_text(encoding="utf-8"))
    counts = report["counts"]
    lines = [i for i, line in enumerate(sample.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    assert counts["records"] == len(lines) == counts["rendered"] + counts["rejected"]
    assert [o["line"] for o in report["outcomes"]] == lines
    assert counts["rejected"] >= 5 and counts["rendered"] >= 7
    for outcome in report["outcomes"]:
        if outcome["status"] == "rejected":
            assert outcome["reasons"] and all(r["field"] and r["message"] for r in outcome["reasons"])
        else:
            assert all((tmp_path / "out" / d).is_file() for d in outcome["documents"])
    # no full ID number of any sample record in the report, the logs or the file names
    ids = set(re.findall(r'"id_no": "([0-9]{17}[0-9X])"', sample.read_text(encoding="utf-8")))
    assert ids
    seen = (tmp_path / "out-report.json").read_text(encoding="utf-8") + result.stderr + result.stdout
    seen += " ".join(str(p) for p in (tmp_path / "out").rglob("*"))
    assert not any(i in seen for i in ids)


def test_cli_all_good_exits_0(records, batch_dir, tmp_path):
    batch = write_batch(batch_dir, [records["HOME-PROP"]], name="good.jsonl")
    result = _run(["render", str(batch), "-o", "out", "--workers", "1", "--report", "r.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["counts"] == {
        "records": 1,
        "rendered": 1,
        "rejected": 0,
    }


def test_cli_unreadable_batch_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\x00\x01\x02binary")
    result = _run(["render", str(bad), "-o", "out"], tmp_path)
    assert result.returncode == 2
    assert "binary" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert _run(["render", "missing.jsonl", "-o", "out"], tmp_path).returncode == 2
    assert _run(["render"], tmp_path).returncode == 2  # usage


def test_cli_without_libreoffice_exits_3(records, batch_dir, tmp_path):
    batch = write_batch(batch_dir, [records["HOME-PROP"]], name="good.jsonl")
    result = _run(["render", str(batch), "-o", "out"], tmp_path, ISSUANCE_SOFFICE="/nonexistent/soffice")
    assert result.returncode == 3, result.stderr
    assert "libreoffice" in result.stderr.lower() and "Traceback" not in result.stderr
