"""Finding seals again (what auditors run): a sealed document passes, a tampered one fails.

Tampering is done the way it would happen to a real file: pages swapped or replaced, a strip dropped
from one page's content, a document sealed with another seal or another version of the same seal.
"""

from __future__ import annotations

from io import BytesIO

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, NameObject

from stamps import find_seals, load_seal_registry, stamp_pdf
from usecases.render import render_batch


@pytest.fixture(scope="module")
def seals():
    return load_seal_registry()


@pytest.fixture(scope="module")
def policy(synth_dir, maker, tmp_path_factory) -> bytes:
    """The longest real policy of the synthetic batch: schedule then clauses, from LibreOffice."""
    out = tmp_path_factory.mktemp("find-real")
    render_batch(synth_dir / "batch.jsonl", out_dir=out, maker=maker, workers=2)
    longest = max(out.glob("*/policy.pdf"), key=lambda p: len(PdfReader(p).pages))
    return longest.read_bytes()


@pytest.fixture(scope="module")
def sealed(policy, seals) -> bytes:
    return stamp_pdf(policy, seal=seals.get("beijing-policy", 2)).pdf


def rewrite(pdf: bytes, change) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(BytesIO(pdf)))
    change(writer)
    buf = BytesIO()
    writer.write(buf)
    return buf.getvalue()


def test_sealed_policy_passes(sealed, seals):
    report = find_seals(sealed, seal=seals.get("beijing-policy", 2))
    assert report.ok, report.problems
    assert report.seal == "beijing-policy@v2"
    assert [p.company_seal for p in report.pages].count(True) == 1 and report.pages[0].company_seal
    assert all(p.strip for p in report.pages)
    (group,) = report.groups
    assert group.ok and group.similarity >= 0.95 and group.weakest_strip >= 0.9
    x, y = report.pages[0].company_xy_pt
    assert 400 < x < 460 and 100 < y < 180  # on the signature line, bottom right of the schedule


def test_strip_removed_from_one_page_fails(sealed, seals):
    def drop_strip(writer: PdfWriter) -> None:
        page = writer.pages[4]
        contents = page[NameObject("/Contents")]
        page[NameObject("/Contents")] = ArrayObject(list(contents)[:-1])  # the stamp is the last stream

    report = find_seals(rewrite(sealed, drop_strip), seal=seals.get("beijing-policy", 2))
    assert not report.ok
    assert [p.page for p in report.pages if not p.strip] == [4]
    assert not report.groups[0].ok
    assert any("page 5" in problem for problem in report.problems)


def test_swapped_pages_fail(sealed, seals):
    def swap(writer: PdfWriter) -> None:
        pages = writer.root_object["/Pages"]["/Kids"]
        pages[3], pages[4] = pages[4], pages[3]

    report = find_seals(rewrite(sealed, swap), seal=seals.get("beijing-policy", 2))
    assert not report.ok
    assert {p.page for p in report.pages if not p.strip} == {3, 4}


def test_page_replaced_by_an_unsealed_one_fails(sealed, policy, seals):
    def replace(writer: PdfWriter) -> None:
        writer.insert_page(PdfReader(BytesIO(policy)).pages[6], index=6)
        writer.remove_page(7)

    report = find_seals(rewrite(sealed, replace), seal=seals.get("beijing-policy", 2))
    assert not report.ok
    assert [p.page for p in report.pages if not p.strip] == [6]


@pytest.mark.parametrize(("stamped_with", "checked_with"), [(2, 1), (1, 2)])
def test_another_version_of_the_seal_fails(policy, seals, stamped_with, checked_with):
    # Versions 1 and 2 differ only by the serial number on the lower arc.
    pdf = stamp_pdf(policy, seal=seals.get("beijing-policy", stamped_with)).pdf
    report = find_seals(pdf, seal=seals.get("beijing-policy", checked_with))
    assert not report.ok
    assert not report.groups[0].ok
    assert not report.company_seal_found


def test_another_seal_fails(sealed, seals):
    report = find_seals(sealed, seal=seals.get("company-policy"))
    assert not report.ok
    assert not any(p.strip for p in report.pages[1:-1])


def test_missing_company_seal_is_reported(policy, seals):
    seal = seals.get("beijing-policy")
    pdf = stamp_pdf(policy, seal=seal, anchor=None).pdf
    report = find_seals(pdf, seal=seal)
    assert not report.ok and report.groups[0].ok
    assert report.problems == ("no company seal beijing-policy@v2 on any page",)
    assert find_seals(pdf, seal=seal, expect_company_seal=False).ok


def test_unsealed_document_fails_everything(policy, seals):
    report = find_seals(policy, seal=seals.get("beijing-policy"))
    assert not report.ok
    assert not report.company_seal_found
    assert not any(p.strip for p in report.pages)
    assert report.groups[0].similarity < 0.1
