"""``issuance render`` writes previews only (issue 24 item 4), on real LibreOffice through the command:
every page says 预览 PREVIEW — 非正式保单, the seal is the SPECIMEN seal and never the registered one
(looked for the way the audit does, by pixels), and there is no signature and no QR code."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from pipeline.preview import SPECIMEN_SEAL
from stamps import find_seals, load_seal_registry
from tests.conftest import REPO

ISSUANCE = [sys.executable, "-m", "cli.main"]
MARK = "预览 PREVIEW — 非正式保单"


@pytest.fixture(scope="module")
def previews(synth_dir: Path, synth_records: list[dict], tmp_path_factory: pytest.TempPathFactory):
    """The endorsement and its policy rendered by ``issuance render``: {kind: (pdf path, record)}, and
    what the command printed."""
    tmp = tmp_path_factory.mktemp("preview")
    result = subprocess.run(
        [*ISSUANCE, "render", str(synth_dir / "batch.jsonl"), "-o", "out", "--no-progress", "--workers", "1"],
        capture_output=True,
        text=True,
        cwd=tmp,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    endorsement = next(r for r in synth_records if r["kind"] == "endorsement")
    policy = next(
        r for r in synth_records if r["kind"] == "policy" and r["policy_no"] == endorsement["policy_no"]
    )
    folder = tmp / "out" / policy["policy_no"]
    return {
        "stdout": result.stdout,
        "policy": (folder / "policy.pdf", policy),
        "endorsement": (folder / f"endorsement-{endorsement['endorsement_no']}.pdf", endorsement),
    }


def _page_texts(pdf: Path) -> list[str]:
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, check=True
    ).stdout.decode()
    return text.split("\f")[:-1]  # pdftotext ends every page with a form feed


@pytest.mark.parametrize("kind", ["policy", "endorsement"])
def test_every_page_is_marked_preview(previews, kind):
    pdf, _ = previews[kind]
    pages = _page_texts(pdf)
    assert len(pages) == len(PdfReader(pdf).pages)
    if kind == "policy":
        assert len(pages) > 1  # schedule and clauses: the mark must be on the clause pages too
    for n, text in enumerate(pages, 1):
        assert MARK in text, f"{kind} page {n} has no preview mark"


@pytest.mark.parametrize("kind", ["policy", "endorsement"])
def test_nothing_of_an_issued_copy(previews, kind, tmp_path):
    pdf, _ = previews[kind]
    branch = previews["policy"][1]["branch"]["code"]  # an endorsement is sealed for its policy's branch
    registered = load_seal_registry().seal_for(branch_code=branch, document=kind)
    report = find_seals(pdf, seal=registered)
    assert not report.company_seal_found
    assert not any(page.company_seal or page.strip for page in report.pages), report.pages
    assert "/AcroForm" not in PdfReader(pdf).trailer["/Root"]  # no signature field
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            "200",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            "-png",
            str(pdf),
            str(tmp_path / "p1"),
        ],
        check=True,
        capture_output=True,
    )
    buf = io.BytesIO()
    Image.open(tmp_path / "p1.png").convert("L").save(buf, "PNG")
    qr = subprocess.run(["zbarimg", "--raw", "-q", "-"], input=buf.getvalue(), capture_output=True)
    assert qr.returncode == 4 and not qr.stdout, qr.stdout  # 4: no symbol found


@pytest.mark.parametrize("kind", ["policy", "endorsement"])
def test_the_specimen_seal_stands_in(previews, kind):
    pdf, _ = previews[kind]
    report = find_seals(pdf, seal=SPECIMEN_SEAL)
    assert report.company_seal_found, report.problems
    assert report.ok, report.problems


def test_the_command_says_it_wrote_previews(previews):
    assert "previews rendered" in previews["stdout"] and "预览" in previews["stdout"]
