"""PDF/A-2b kept through assembly, and the structural self-check that says so (``stamps.pdfa``).

A policy with images and an endorsement is filed with real LibreOffice and real seals; every copy
that leaves the system (customer copy, archive copy with its image pages, the endorsement version's
copies, a reissued copy) passes the self-check. The self-check names each planted fault, and the
audit's 可用性 checks report it. The self-check is not a validation (no validator is installed here):
these tests hold the pipeline to what it checks.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from datetime import date
from io import BytesIO
from pathlib import Path

import pikepdf
import pytest
from PIL import Image

from archive.audit.checks import USABILITY, Auditor, Messages
from archive.audit.checks.usability import pdfa_structure
from archive.index import Index
from archive.store import LocalStore
from bench.synth import make_batch
from core.manifest import ReissueMark
from pipeline.bundle import late_images, supplement_part
from pipeline.clauses import ClauseLibrary
from pipeline.convert import PDF_A_2B, Converter
from pipeline.documents import PRODUCER, DocumentMaker
from pipeline.reissue import ReissueMarker
from stamps import load_seal_registry
from stamps.keys import Pkcs12Key, write_specimen_pkcs12
from stamps.pdfa import claims_pdfa, pdfa_problems
from stamps.signing import PdfSigner, check_signatures
from usecases.filing import Filing
from usecases.run import run_batch

KEY = b"pdfa-test-hmac-key-0123456789abcd"


@dataclass(frozen=True)
class Filed:
    root: Path
    policy_no: str
    copies: dict[str, bytes]  # what leaves the system, by name


@pytest.fixture(scope="module")
def filed(registry, pool, tmp_path_factory) -> Filed:
    """One motor policy with image pages, then an endorsement of it; and a reissued copy of the newest
    customer copy (its mark converted by LibreOffice too). Every copy is signed last, as with signing
    configured: PDF/A-2b must hold after the signature too (the audit's tests cover unsigned copies)."""
    root = tmp_path_factory.mktemp("pdfa")
    write_specimen_pkcs12(root / "signer.p12", b"specimen")
    signer = PdfSigner(Pkcs12Key.open(root / "signer.p12", b"specimen"))
    maker = DocumentMaker(
        registry=registry, converter=pool, cache_dir=root / "cache", seals=load_seal_registry()
    )
    batch = make_batch(root / "batch", 1, seed=61, endorsements=1, images_per_record=2)
    store = LocalStore(root / "store")
    index = Index.open(f"sqlite:///{root / 'index.sqlite'}", hmac_key=KEY)
    try:
        filing = Filing(store=store, index=index, maker=maker, operator="tester", signer=signer)
        report = run_batch(batch, filing=filing, workers=2)
        assert report.counts()["archived"] == 2, report.outcomes
        policy_no = json.loads(batch.read_text(encoding="utf-8").splitlines()[0])["policy_no"]
        v1, v2 = index.versions(policy_no)
        copies = {
            "customer copy": store.get(v1.customer_key),
            "archive copy": store.get(v1.bundle_key),
            "endorsed customer copy": store.get(v2.customer_key),
            "endorsed archive copy": store.get(v2.bundle_key),
        }
    finally:
        index.close()
    marker = ReissueMarker(converter=pool, scratch_dir=root)
    copies["reissued copy"] = signer.sign(
        marker.mark(copies["endorsed customer copy"], ReissueMark(number=1, on=date(2026, 12, 5))).pdf
    )
    return Filed(root=root, policy_no=policy_no, copies=copies)


def _saved(pdf: bytes, change, **save) -> bytes:
    with pikepdf.open(BytesIO(pdf)) as document:
        change(document)
        out = BytesIO()
        document.save(out, **save)
        return out.getvalue()


# --- what the pipeline makes ----------------------------------------------------------------------------


def test_every_copy_that_leaves_passes_the_self_check(filed):
    for name, pdf in filed.copies.items():
        assert pdfa_problems(pdf) == [], name
        last = check_signatures(pdf)[-1]  # signed last, over the whole file
        assert last.intact and last.valid and last.whole_file, name
    # the archive copies are incremental updates of the customer copies: two revisions or more
    assert filed.copies["archive copy"].startswith(filed.copies["customer copy"])
    assert filed.copies["reissued copy"].startswith(filed.copies["endorsed customer copy"])


def test_the_xmp_packet_follows_each_copys_document_information(filed):
    for name, pdf in filed.copies.items():
        with pikepdf.open(BytesIO(pdf)) as document:
            info = document.docinfo
            assert document.Root.OutputIntents[0].S == "/GTS_PDFA1", name
            assert "/Filter" not in document.Root.Metadata, name
            meta = document.open_metadata()
            assert meta["pdfaid:part"] == "2" and meta["pdfaid:conformance"] == "B", name
            assert meta["dc:title"] == str(info.Title), name
            assert meta["dc:description"] == str(info.Subject), name
            assert meta["pdf:Producer"] == str(info.Producer) == PRODUCER, name
    with pikepdf.open(BytesIO(filed.copies["archive copy"])) as document:
        assert str(document.docinfo.Title).endswith("（档案件）")  # the update changed the title …
        assert document.open_metadata()["dc:title"] == str(document.docinfo.Title)  # … and its XMP


def test_late_images_keep_the_archive_copy_pdfa(filed, tmp_path):
    """A supplement (``issuance attach``) is an update that keeps the title: its XMP is written anew
    and still agrees."""
    scan = tmp_path / "late.jpg"
    Image.new("RGB", (400, 300), (200, 220, 240)).save(scan, quality=85)
    images, entries = late_images([scan], kind="other", label="补充", policy_no=filed.policy_no)
    bundle = filed.copies["endorsed archive copy"]
    supplement = supplement_part(bundle, images=images, entries=entries).data
    assert supplement.startswith(bundle)
    assert pdfa_problems(supplement) == []


# --- the self-check names each fault ------------------------------------------------------------------


def _helvetica_page(document: pikepdf.Pdf) -> None:
    font = document.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
    )
    page = pikepdf.Page(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=[0, 0, 595, 842],
            Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F9=font)),
            Contents=document.make_stream(b"BT /F9 12 Tf 72 720 Td (not embedded) Tj ET"),
        )
    )
    document.pages.append(page)


def _javascript(document: pikepdf.Pdf) -> None:
    document.Root.OpenAction = pikepdf.Dictionary(
        S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert('x');")
    )


def _retitled(document: pikepdf.Pdf) -> None:
    document.docinfo["/Title"] = "另一个标题"


def _first_id_changed(pdf: bytes) -> bytes:
    """The last revision's trailer with one digit of its /ID's first string changed (same length)."""
    at = pdf.rindex(b"/ID")
    match = re.compile(rb"/ID\s*\[\s*<([0-9A-Fa-f])").match(pdf, at)
    assert match is not None
    digit = match.start(1)
    return pdf[:digit] + (b"0" if pdf[digit : digit + 1] != b"0" else b"1") + pdf[digit + 1 :]


def test_the_self_check_names_each_planted_fault(filed):
    customer = filed.copies["customer copy"]
    assert pdfa_problems(customer) == []  # each fault below is the only one
    planted = {
        "6.2.3 output intent: the catalog has no GTS_PDFA1 output intent": _saved(
            customer, lambda d: d.Root.__delitem__("/OutputIntents")
        ),
        "6.6.2.1 metadata: the catalog has no XMP metadata stream": _saved(
            customer, lambda d: d.Root.__delitem__("/Metadata")
        ),
        "6.6.2.1 metadata: /Info /Title disagrees with its XMP equivalent dc:title": _saved(
            customer, _retitled
        ),
        "6.2.11.4.1 fonts not embedded: Helvetica": _saved(customer, _helvetica_page),
        "6.5.1 actions: JavaScript in the open action": _saved(customer, _javascript),
        "6.1.3 encryption: the PDF is encrypted": _saved(
            customer, lambda d: None, encryption=pikepdf.Encryption(owner="owner", user="")
        ),
        "6.1.3 file trailer: the /ID's first string is not the same in every revision": _first_id_changed(
            filed.copies["archive copy"]
        ),
    }
    for problem, pdf in planted.items():
        assert problem in pdfa_problems(pdf), problem
    # a PDF/A claim of another part is named too
    other = _saved(
        customer,
        lambda d: d.Root.Metadata.write(d.Root.Metadata.read_bytes().replace(b"part>2<", b"part>3<")),
    )
    assert (
        "6.6.4 metadata: the XMP packet does not identify PDF/A-2b (pdfaid:part 2, conformance B)"
        in pdfa_problems(other)
    )


def test_an_invisible_signature_widget_is_no_fault(filed):
    """The signature field the signing step adds: zero-size, Print + Locked, no appearance."""

    def signature_widget(document: pikepdf.Pdf) -> None:
        widget = document.make_indirect(
            pikepdf.Dictionary(
                Type=pikepdf.Name.Annot,
                Subtype=pikepdf.Name.Widget,
                FT=pikepdf.Name.Sig,
                T=pikepdf.String("Signature1"),
                Rect=[0, 0, 0, 0],
                F=132,
                P=document.pages[0].obj,
            )
        )
        document.pages[0].obj.Annots = document.make_indirect(pikepdf.Array([widget]))
        document.Root.AcroForm = pikepdf.Dictionary(Fields=[widget], SigFlags=3)

    assert pdfa_problems(_saved(filed.copies["customer copy"], signature_widget)) == []

    def hidden_note(document: pikepdf.Pdf) -> None:
        note = pikepdf.Dictionary(
            Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Text, Rect=[0, 0, 20, 20], F=2
        )
        document.pages[0].obj.Annots = pikepdf.Array([document.make_indirect(note)])

    problems = pdfa_problems(_saved(filed.copies["customer copy"], hidden_note))
    assert "6.3.2 annotations: page 1: a Text annotation is not set to print, or is hidden" in problems


def test_the_self_check_is_fast_enough_for_an_audit(filed):
    pdf = filed.copies["endorsed archive copy"]
    runs = 20
    began = time.perf_counter()
    for _ in range(runs):
        pdfa_problems(pdf)
    per_copy = (time.perf_counter() - began) / runs
    assert per_copy < 0.25, per_copy  # generous for a loaded two-core machine


# --- conversion and the clause cache --------------------------------------------------------------------


def test_the_pool_converts_to_pdfa_2b_by_default(pool):
    assert pool.pdf_version == PDF_A_2B


def test_what_libreoffice_converts_comes_without_its_structure_tree(pool, synth_records, registry, tmp_path):
    """LibreOffice tags every PDF/A it writes (thousands of structure elements in a composed document,
    which made every later open of it tens of times dearer); level B needs none, so the converter drops
    the tree and what points into it, and the file still claims PDF/A-2b and passes the self-check."""
    from core.records import parse_record
    from pipeline.render import TemplateCache, policy_context, render_docx

    policy, _ = parse_record(next(r for r in synth_records if r["product_code"] == "AUTO-COMM"))
    docx = tmp_path / "schedule.docx"
    render_docx(
        template=registry.products[policy.product_code].schedule,
        context=policy_context(policy, registry=registry),
        out=docx,
        cache=TemplateCache(),
    )
    pool.convert(docx, tmp_path / "schedule.pdf")
    data = (tmp_path / "schedule.pdf").read_bytes()
    with pikepdf.open(BytesIO(data)) as pdf:
        assert "/StructTreeRoot" not in pdf.Root and "/MarkInfo" not in pdf.Root
        assert all("/StructParents" not in page.obj for page in pdf.pages)
        assert not any(
            o.get("/Type") == "/StructElem" for o in pdf.objects if isinstance(o, pikepdf.Dictionary)
        )
        assert claims_pdfa(pdf)
    assert pdfa_problems(data) == []


class _Saying:
    """A converter that says which PDF version it writes and counts its conversions."""

    def __init__(self, pool, pdf_version: int) -> None:
        self.pool, self.pdf_version, self.calls = pool, pdf_version, 0

    def convert(self, docx: Path, pdf: Path) -> int:
        self.calls += 1
        return self.pool.convert(docx, pdf)


def test_clauses_cached_for_another_pdf_version_are_not_reused(registry, pool, tmp_path):
    plain, pdfa = _Saying(pool, 0), _Saying(pool, PDF_A_2B)
    code = next(iter(registry.clauses))
    ClauseLibrary(registry=registry, converter=plain, cache_dir=tmp_path).pdf_bytes(code)
    ClauseLibrary(registry=registry, converter=pdfa, cache_dir=tmp_path).pdf_bytes(code)
    assert (plain.calls, pdfa.calls) == (1, 1)
    again = _Saying(pool, PDF_A_2B)
    ClauseLibrary(registry=registry, converter=again, cache_dir=tmp_path).pdf_bytes(code)
    assert again.calls == 0  # the same version's cached PDF is reused


# --- the audit -------------------------------------------------------------------------------------------


def test_the_audit_reports_copies_filed_without_pdfa(filed, registry, tmp_path):
    """A policy filed by a converter left at plain PDF (as every copy archived before PDF/A-2b was):
    the 可用性 self-check fails and names what is missing; the clean policy passes it."""
    root = tmp_path / "copy"
    shutil.copytree(filed.root, root)
    store = LocalStore(root / "store")
    index = Index.open(f"sqlite:///{root / 'index.sqlite'}", hmac_key=KEY)
    try:
        with Converter(workdir=tmp_path / "lo", pdf_version=0) as plain:
            maker = DocumentMaker(
                registry=registry, converter=plain, cache_dir=tmp_path / "cache", seals=load_seal_registry()
            )
            batch = make_batch(tmp_path / "batch", 1, seed=62, images_per_record=1)
            filing = Filing(store=store, index=index, maker=maker, operator="tester")
            assert run_batch(batch, filing=filing, workers=1).counts()["archived"] == 1
        plain_policy = json.loads(batch.read_text(encoding="utf-8"))["policy_no"]
        auditor = Auditor(
            store=store,
            index=index,
            products=registry,
            seals=load_seal_registry(),
            seal_dpi=75,
            thumbnail_width=0,
        )
        clean = auditor.check_policy(filed.policy_no).check("pdfa_structure")
        assert clean.passed and clean.aspect == USABILITY
        assert "v1 archive copy: PDF/A-2b structural self-check found nothing" in clean.evidence

        result = auditor.check_policy(plain_policy)
        found = result.check("pdfa_structure")
        assert not found.passed and found.aspect == USABILITY
        assert (
            "v1 archive copy: 6.2.3 output intent: the catalog has no GTS_PDFA1 output intent"
            in found.evidence
        )
        assert "v1 customer copy: 6.6.2.1 metadata: the catalog has no XMP metadata stream" in found.evidence
        assert {"renders", "fonts_embedded"}.isdisjoint(result.failed)  # it is only not PDF/A

        # the check on its own, as the other checks are called
        policy, _pictures = auditor.read_policy(plain_policy)
        messages = Messages()
        pdfa_structure(policy, messages)
        assert [(r.name, r.passed) for r in messages.results()] == [("pdfa_structure", False)]
    finally:
        index.close()
