"""Several records per LibreOffice document (pipeline.schedules), on real LibreOffice and real PDFs.

What must hold: each record gets exactly its own pages (its own policy number, its own page count in the
footer), its company seal lands on its own 盖章, and one record LibreOffice cannot convert costs only that
record.
"""

from __future__ import annotations

import contextlib
import copy
import html
import json
import re
import shutil
import subprocess
import zipfile
from io import BytesIO
from pathlib import Path

import pikepdf
import pytest
from docx import Document
from docxtpl import DocxTemplate
from pypdf import PdfReader

from archive.audit.checks import normalise, page_texts
from archive.index import Index
from archive.store import LocalStore
from bench.synth import make_batch
from core.errors import ConversionFailed, IssuanceError
from core.products import load_registry
from core.records import Policy, parse_record
from pipeline.documents import DocumentMaker
from pipeline.render import _ENV, policy_context
from pipeline.report import ARCHIVED, REJECTED
from pipeline.schedules import ComposedTemplate, RecordPages, concatenate, split
from pipeline.sealing import SEAL_ANCHOR, SEAL_OVER, SealAnchors
from stamps import find_seals, load_seal_registry
from tests.conftest import write_batch
from usecases.filing import Filing
from usecases.run import run_batch

KEY = b"test-hmac-key-0123456789abcdef!!"


@pytest.fixture(scope="module")
def seals():
    return load_seal_registry()


@pytest.fixture(scope="module")
def sealing_maker(registry, pool, tmp_path_factory, seals):
    return DocumentMaker(
        registry=registry, converter=pool, cache_dir=tmp_path_factory.mktemp("composed-cache"), seals=seals
    )


@pytest.fixture(scope="module")
def synth_many(tmp_path_factory) -> list[dict]:
    batch = make_batch(tmp_path_factory.mktemp("many"), 24, seed=33, images_per_record=1)
    return [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]


def _policies(synth_records: list[dict], product: str, n: int) -> list[Policy]:
    out = []
    for data in synth_records:
        if data.get("kind") == "policy" and data.get("product_code") == product:
            record, reasons = parse_record(data)
            assert not reasons
            out.append(record)
        if len(out) == n:
            break
    assert len(out) == n
    return out


def _text(pdf: bytes, tmp_path: Path, page: int) -> str:
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf)
    result = subprocess.run(
        ["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(path), "-"],
        capture_output=True,
        check=True,
    )
    return result.stdout.decode("utf-8")


def test_each_record_gets_its_own_pages_footer_and_seal(
    sealing_maker, registry, pool, synth_many, seals, tmp_path
):
    policies = _policies(synth_many, "AUTO-COMM", 5)
    # the second schedule runs over two pages (a long list of special terms), the last over three
    terms = "示范特别约定（样本 SPECIMEN）。" * 12
    policies[1] = policies[1].model_copy(update={"special_terms": [terms] * 14})
    policies[4] = policies[4].model_copy(update={"special_terms": [terms] * 30})
    alone = [sealing_maker.policy_pdf(p) for p in policies]  # each converted as its own document
    converter = _RefusesOne(pool, policy_no="none")  # refuses nothing: counts what it is given
    maker = DocumentMaker(registry=registry, converter=converter, cache_dir=tmp_path / "cache", seals=seals)
    maker.policy_pdf(policies[0])  # the clauses converted and cached
    converter.seen.clear()
    together = maker.policy_pdfs(policies)
    assert all(not isinstance(d, Exception) for d in together)
    # one conversion made all five schedules: none was converted again to count its pages
    assert [n for n in converter.seen if n] == [5]
    for policy, one, doc in zip(policies, alone, together, strict=True):
        assert doc.pages == one.pages  # the same pages as when converted alone
        first = _text(doc.pdf, tmp_path, 1)
        assert policy.policy_no in first
        assert all(p.policy_no not in first for p in policies if p is not policy)
        report = find_seals(doc.pdf, seal=seals.seal_for(branch_code=policy.branch.code, document="policy"))
        assert report.ok, report
    for k, count in ((0, 1), (1, 2), (3, 1), (4, 3)):
        for page in range(1, count + 1):
            assert f"第{page}页共{count}页" in _text(together[k].pdf, tmp_path, page).replace(" ", "")
    # the company seal sits on the signature line of a long schedule's last page, not on its first
    assert policies[1].policy_no in _text(together[1].pdf, tmp_path, 2)
    assert policies[4].policy_no in _text(together[4].pdf, tmp_path, 3)


def test_seal_from_marks_matches_seal_from_text(sealing_maker, synth_many, tmp_path):
    """The company seal placed from LibreOffice's marks lands where reading the text back puts it."""
    policy = _policies(synth_many, "PA-ACC", 1)[0]
    template = sealing_maker.registry.products["PA-ACC"].schedule
    composed = ComposedTemplate(template, anchor=SEAL_ANCHOR, seal_over=SEAL_OVER)
    docx, pdf_path = tmp_path / "one.docx", tmp_path / "one.pdf"
    composed.write([policy_context(policy, registry=sealing_maker.registry)], docx)
    sealing_maker.converter.convert(docx, pdf_path)
    with pikepdf.open(pdf_path) as pdf:
        pages = split(pdf, 1)[0]
        assert pages.anchor is not None
        anchors = SealAnchors()
        from_marks = anchors.locate(template=template, composed=pdf, path=pdf_path, pages=pages)
        unmarked = RecordPages(pages=pages.pages, anchor=None)
        from_text = anchors.locate(template=template, composed=pdf, path=pdf_path, pages=unmarked)
    assert from_marks[0] == from_text[0]
    assert from_marks[1] == pytest.approx(from_text[1], abs=0.5)  # pt


class _RefusesOne:
    """LibreOffice as it is, except that it refuses any document holding ``policy_no``.

    A stand-in for a record LibreOffice cannot convert (a corrupt font reference, a layout loop): no
    record the contract allows triggers one on this machine, so the refusal is simulated here, around a
    real converter that does all the real work.
    """

    def __init__(self, converter, policy_no: str) -> None:
        self.converter, self.policy_no, self.seen = converter, policy_no, []

    def convert(self, docx: Path, pdf: Path, **kwargs) -> int:

        with zipfile.ZipFile(docx) as z:
            body = z.read("word/document.xml").decode("utf-8")
        self.seen.append(body.count("ISSDOC"))
        if self.policy_no in body:
            raise ConversionFailed(f"LibreOffice could not convert {docx.name}: simulated")
        return self.converter.convert(docx, pdf, **kwargs)


def test_one_record_libreoffice_refuses_costs_only_that_record(registry, pool, tmp_path, seals):
    batch = make_batch(tmp_path / "b", 6, seed=31, images_per_record=1)
    records = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    bad = next(r for r in records if r["kind"] == "policy")["policy_no"]
    converter = _RefusesOne(pool, bad)
    maker = DocumentMaker(registry=registry, converter=converter, cache_dir=tmp_path / "cache", seals=seals)
    index = Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}", hmac_key=KEY)
    filing = Filing(store=LocalStore(tmp_path / "archive"), index=index, maker=maker, operator="tester")
    report = run_batch(batch, filing=filing, workers=1, chunk=16)
    index.close()
    by_policy = {o.policy_no: o for o in report.outcomes if o.kind == "policy"}
    assert by_policy[bad].status == REJECTED
    assert [r.field for r in by_policy[bad].reasons] == ["document"]
    assert all(o.status == ARCHIVED for no, o in by_policy.items() if no != bad)
    assert max(converter.seen) > 1  # the group was tried together first, then one by one
    assert report.counts()["records"] == len(records)


def test_second_record_of_a_policy_in_one_batch_is_refused(local_archive_factory, tmp_path):
    batch = make_batch(tmp_path / "b", 3, seed=32, images_per_record=1)
    records = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    policy = next(r for r in records if r["kind"] == "policy")
    twin = copy.deepcopy(policy)
    twin["record_id"] = policy["record_id"] + "-TWIN"
    folder = batch.parent
    report = run_batch(
        write_batch(folder, [policy, twin], name="twins.jsonl"), filing=local_archive_factory(), workers=2
    )
    statuses = sorted((o.line, o.status) for o in report.outcomes)
    assert statuses == [(1, ARCHIVED), (2, REJECTED)]
    second = next(o for o in report.outcomes if o.line == 2)
    assert [r.field for r in second.reasons] == ["policy_no"]


@pytest.fixture
def local_archive_factory(tmp_path, sealing_maker):
    opened = []

    def make() -> Filing:
        index = Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}", hmac_key=KEY)
        opened.append(index)
        return Filing(
            store=LocalStore(tmp_path / "archive"), index=index, maker=sealing_maker, operator="tester"
        )

    yield make
    for index in opened:
        index.close()


def test_a_template_with_several_sections_is_not_composed(tmp_path):
    """Its inner sections would keep footers that no record was rendered into: one document per record."""

    doc = Document()
    doc.add_paragraph("{{ policy_no }} 样本 SPECIMEN")
    doc.add_section()
    doc.add_paragraph("保险人（盖章）")
    doc.save(tmp_path / "two-sections.docx")
    assert not ComposedTemplate(
        tmp_path / "two-sections.docx", anchor="保险人（盖章）", seal_over="盖章"
    ).composable
    one = Document()
    one.add_paragraph("{{ policy_no }} 样本 SPECIMEN")
    one.save(tmp_path / "one-section.docx")
    assert ComposedTemplate(
        tmp_path / "one-section.docx", anchor="保险人（盖章）", seal_over="盖章"
    ).composable


def test_records_render_exactly_as_docxtpls_own_part_renderer(registry, synth_many):
    """``ComposedTemplate`` renders each part with its own, cheaper steps: the XML must be what docxtpl's
    ``render_xml_part`` makes of the same part and context, values with tabs, line breaks and docxtpl's
    escaped braces among them."""

    for product in sorted(registry.products):
        policy = _policies(synth_many, product, 1)[0]
        plain = policy_context(policy, registry=registry)
        odd = dict(plain, policy_no=f"{policy.policy_no}\t样本\nSPECIMEN {{_{{ x }}_}} a\ab\fc")
        composed = ComposedTemplate(
            registry.products[product].schedule, anchor="保险人（盖章）", seal_over="盖章"
        )
        reference = DocxTemplate(registry.products[product].schedule)
        reference.render_init()
        sources = [(composed._body, reference.docx._part)]
        sources += [(source, part) for _kind, source, _alone, part in composed._parts.values()]
        sources += [(alone, part) for _kind, _source, alone, part in composed._parts.values()]
        assert len(sources) >= 3
        broken = dict(plain, policy_no=f"{policy.policy_no}\n样本 SPECIMEN")  # a line break alone
        for context in (plain, odd, broken):
            for source, part in sources:
                expected = reference.render_xml_part(source, part, context, _ENV)
                assert composed._render_part(source, part, context) == expected
        assert "<w:tab/>" in composed._render_part(composed._body, reference.docx._part, odd)


def test_customer_copies_assembled_in_one_document_are_the_copies_made_alone(
    registry, pool, seals, synth_many, monkeypatch, tmp_path
):
    """Customer copies of one composed document that end with the same sealed clauses are assembled in
    one document in turn (``pipeline.assembly.CopyBases``): each must be, byte for byte (bar the file
    identifier), the copy made in a document of its own from the same converted PDF, with nothing of the
    copies before it, nor of a copy that failed once made in it."""

    class Replayed:
        """LibreOffice, but the composed schedules' PDF of the first call given again (its font subsets
        differ from one conversion to the next)."""

        def __init__(self) -> None:
            self.first: bytes | None = None

        def convert(self, docx: Path, pdf: Path) -> int:
            if docx.name != "documents.docx":  # the clauses
                return pool.convert(docx, pdf)
            if self.first is None:
                pool.convert(docx, pdf)
                self.first = pdf.read_bytes()
            pdf.write_bytes(self.first)
            return len(pikepdf.open(BytesIO(self.first)).pages)

    maker = DocumentMaker(registry=registry, converter=Replayed(), cache_dir=tmp_path / "cache", seals=seals)
    policies = _policies(synth_many, "AUTO-COMM", 6)
    built = []
    base_for = maker.bases.base_for

    def counted(tail):
        base = base_for(tail)
        built.append(base)
        return base

    monkeypatch.setattr(maker.bases, "base_for", counted)
    failing = policies[1].policy_no

    def fails_once_made(
        at: int, pdf: bytes
    ) -> bytes:  # sealed, bookmarked and saved in its base, then refused
        if policies[at].policy_no == failing:
            raise IssuanceError("a copy that fails half-way")
        return pdf

    together = maker.policy_pdfs(policies, follow_up=fails_once_made)
    assert isinstance(together[1], IssuanceError)
    assert len({id(b) for b in built}) < len(policies)  # some copies did share one
    monkeypatch.setattr(maker.bases, "assembling", contextlib.nullcontext)  # a base of its own for each copy
    alone = maker.policy_pdfs(policies)

    def unidentified(pdf: bytes) -> bytes:
        return re.sub(rb"/ID \[<[0-9a-f]+><[0-9a-f]+>\]", b"", pdf)

    for policy, a, b in zip(policies, together, alone, strict=True):
        if policy.policy_no == failing:
            continue
        assert unidentified(a.pdf) == unidentified(b.pdf)
        others = [p.policy_no.encode() for p in policies if p is not policy]
        assert not any(no in a.pdf for no in others)


def test_policies_that_share_clauses_and_seal_get_the_clauses_sealed_once(sealing_maker, synth_many, seals):
    """The clause pages of policies with the same clauses, seal and schedule length are sealed once per
    run (``DocumentMaker.sealed_clauses``, ``stamps.sealed_pages``) and drawn the same in every copy; each
    copy holds one stencil, and the audit's seal check passes on it."""
    first, *others = _policies(synth_many, "HOME-PROP", 3)
    policies = [first, *(p.model_copy(update={"branch": first.branch}) for p in others)]
    seal = seals.seal_for(branch_code=first.branch.code, document="policy")
    before = sealing_maker.sealed_clauses.sealings
    docs = sealing_maker.policy_pdfs(policies)
    assert sealing_maker.sealed_clauses.sealings - before <= 1  # once, or not at all if an earlier test did
    clause_pages = []
    for doc in docs:
        pdf = pikepdf.open(BytesIO(doc.pdf))
        streams = [o for o in pdf.objects if isinstance(o, pikepdf.Stream)]
        assert sum(1 for o in streams if o.get("/ImageMask") is True) == 1
        clause_pages.append([b"".join(s.read_bytes() for s in p.obj.Contents) for p in pdf.pages[1:]])
        assert find_seals(doc.pdf, seal=seal).ok
    assert clause_pages[0] == clause_pages[1] == clause_pages[2] and len(clause_pages[0]) >= 2


def _fonts_of(page: pikepdf.Page) -> set[tuple[int, int]]:
    fonts = page.obj.Resources.get("/Font", {})
    return {fonts[name].objgen for name in fonts}


def _clause_pages(doc: bytes, policy: Policy) -> list[range]:
    """The pages (0-based) of each clause of ``policy``'s customer copy, from where its bookmarks point."""

    reader = PdfReader(BytesIO(doc))
    outline = reader.outline
    at = next(k for k, item in enumerate(outline) if not isinstance(item, list) and item.title == "条款")
    first = [reader.get_destination_page_number(item) for item in outline[at + 1]]
    assert len(first) == len(policy.clauses)
    bounds = [*first, len(reader.pages)]
    return [range(bounds[k], bounds[k + 1]) for k in range(len(first))]


def test_a_products_clauses_are_converted_together_and_embed_their_fonts_once(
    registry, pool, synth_many, seals, tmp_path
):
    """A customer copy's clauses come from one LibreOffice document: their pages read as each clause's
    own PDF does (footers counting each clause's own pages), and share one set of embedded fonts."""
    policy = _policies(synth_many, "AUTO-COMM", 1)[0]
    assert len(policy.clauses) >= 2
    maker = DocumentMaker(registry=registry, converter=pool, cache_dir=tmp_path / "cache", seals=seals)
    doc = maker.policy_pdf(policy)
    assert maker.clauses.conversions == 1  # the product's clauses, together; none on its own
    assert len(list((tmp_path / "cache" / "clauses").glob("together-*.pdf"))) == 1
    ranges = _clause_pages(doc.pdf, policy)
    for code, pages in zip(policy.clauses, ranges, strict=True):
        alone = maker.clauses.pdf_bytes(code)  # the clause converted as its own document
        assert len(pages) == len(pikepdf.open(BytesIO(alone)).pages)
        for k, page in enumerate(pages, 1):
            assert _text(doc.pdf, tmp_path, page + 1) == _text(alone, tmp_path, k)
    # the clauses' pages draw on the same font programs; converted apart they would share none
    pdf = pikepdf.open(BytesIO(doc.pdf))
    shared = _fonts_of(pdf.pages[ranges[0][0]]) & _fonts_of(pdf.pages[ranges[1][0]])
    assert shared, "the clauses embed their fonts each"
    assert find_seals(doc.pdf, seal=seals.seal_for(branch_code=policy.branch.code, document="policy")).ok


def test_clauses_that_differ_in_more_than_their_text_are_converted_one_by_one(
    registry, pool, synth_many, seals, tmp_path
):
    """Clauses whose styles differ cannot be put in one document faithfully: each is converted alone, and
    the customer copy is made all the same."""

    templates = tmp_path / "templates"
    shutil.copytree(registry.folder, templates)
    policy = _policies(synth_many, "AUTO-COMM", 1)[0]
    odd = templates / "clauses" / f"{policy.clauses[1]}.docx"
    with zipfile.ZipFile(odd) as z:
        parts = {i.filename: z.read(i) for i in z.infolist()}
    parts["word/styles.xml"] = parts["word/styles.xml"].replace(b"<w:styles ", b"<w:styles  ", 1)
    with zipfile.ZipFile(odd, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    other = load_registry(templates)
    sources = [other.clauses[code].path for code in other.products["AUTO-COMM"].clause_codes]
    why = concatenate(sources, tmp_path / "together.docx")
    assert why is not None and odd.name in why and not (tmp_path / "together.docx").exists()

    maker = DocumentMaker(registry=other, converter=pool, cache_dir=tmp_path / "cache", seals=seals)
    doc = maker.policy_pdf(policy)
    assert maker.clauses.conversions == len(set(policy.clauses))
    assert not list((tmp_path / "cache" / "clauses").glob("together-*.pdf"))
    ranges = _clause_pages(doc.pdf, policy)
    pdf = pikepdf.open(BytesIO(doc.pdf))
    assert not _fonts_of(pdf.pages[ranges[0][0]]) & _fonts_of(pdf.pages[ranges[1][0]])
    assert find_seals(doc.pdf, seal=seals.seal_for(branch_code=policy.branch.code, document="policy")).ok


def test_spoilt_clause_pdfs_in_the_cache_are_converted_again(registry, pool, synth_many, seals, tmp_path):
    """A cached clause PDF spoilt on disk (it passes for a PDF at a glance) is converted again, the
    clauses converted together and a clause on its own alike: no policy of the product is refused for it."""
    policy = _policies(synth_many, "AUTO-COMM", 1)[0]
    first = DocumentMaker(registry=registry, converter=pool, cache_dir=tmp_path / "cache", seals=seals)
    first.policy_pdf(policy)
    first.clauses.pdf_bytes(policy.clauses[0])
    folder = tmp_path / "cache" / "clauses"
    (joint,) = folder.glob("together-*.pdf")
    (own,) = folder.glob(f"{policy.clauses[0]}-*.pdf")
    for spoilt in (joint, own):
        spoilt.write_bytes(b"%PDF-1.6\nnot a PDF after all\n")
    maker = DocumentMaker(registry=registry, converter=pool, cache_dir=tmp_path / "cache", seals=seals)
    doc = maker.policy_pdf(policy)
    assert maker.clauses.conversions == 1
    ranges = _clause_pages(doc.pdf, policy)
    pdf = pikepdf.open(BytesIO(doc.pdf))
    assert _fonts_of(pdf.pages[ranges[0][0]]) & _fonts_of(pdf.pages[ranges[1][0]])  # together again
    assert find_seals(doc.pdf, seal=seals.seal_for(branch_code=policy.branch.code, document="policy")).ok
    assert len(pikepdf.open(BytesIO(maker.clauses.pdf_bytes(policy.clauses[0]))).pages) > 0
    assert maker.clauses.conversions == 2
    for spoilt in (joint, own):
        assert pikepdf.open(spoilt).pages  # what the cache holds now opens


# Beneficiaries as contract v1.1 allows them: an address is optional. A long address with a rare glyph
# (U+20BB7) and 号/栋/室, a name with ``·`` and full-width letters, template-like text, one without.
_BENEFICIARIES = (
    {
        "name": "欧阳·𠮷祥",
        "id_type": "resident_id",
        "id_no": "510107200204061742",
        "relation": "配偶",
        "share_percent": "50.00",
        "address": "四川省成都市武侯区示范路𠮷祥巷1288号17栋3单元2104室"
        "（示范花园小区东区，近样本地铁站B出口，物业服务中心北侧，门牌以现场为准）",
    },
    {
        "name": "Ａｂｄｕｌｌａ·买买提·𡈼",
        "id_type": "passport",
        "id_no": "E12345678",
        "relation": "子女",
        "share_percent": "30.00",
    },
    {
        "name": "林思远",
        "id_type": "resident_id",
        "id_no": "510107196105290559",
        "relation": "父母",
        "share_percent": "20.00",
        "address": "四川省成都市武侯区样本街8号 A&B <x> {{y}} 栋302室",
    },
)


def _words(pdf: bytes, tmp_path: Path, page: int) -> list[tuple[str, float, float, float]]:
    """Each word on ``page`` as pdftotext lays it out: (text, left, top, right)."""
    path = tmp_path / "words.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-bbox", "-f", str(page), "-l", str(page), str(path), "-"],
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    found = re.findall(
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>', out
    )
    return [(html.unescape(w), float(x0), float(top), float(x1)) for x0, top, x1, w in found]


def _top(words: list[tuple[str, float, float, float]], text: str) -> float:
    (top,) = [t for w, _x0, t, _x1 in words if w == text]
    return top


def test_the_pa_schedule_prints_each_beneficiarys_address_under_its_row(sealing_maker, synth_many, tmp_path):
    """Where a beneficiary has an address, a row under theirs prints it whole, wrapped inside the table;
    a beneficiary without one gets no row, so a table without addresses is the table it always was."""
    data = next(r for r in synth_many if r.get("product_code") == "PA-ACC")
    given = dict(copy.deepcopy(data), beneficiaries=[dict(b) for b in _BENEFICIARIES])
    bare = dict(
        copy.deepcopy(data),
        beneficiaries=[{k: v for k, v in b.items() if k != "address"} for b in _BENEFICIARIES],
    )
    bare["policy_no"] = data["policy_no"][:-1] + ("8" if data["policy_no"][-1] != "8" else "9")
    policies = []
    for record in (given, bare):
        policy, reasons = parse_record(record)
        assert not reasons
        policies.append(policy)
    together = sealing_maker.policy_pdfs(policies)  # one composed document, as a batch renders them
    alone = sealing_maker.policy_pdf(policies[0])  # and on its own: docxtpl's renderer
    right_margin = 28 / 25.4 * 72
    for doc in (together[0], alone):
        words = _words(doc.pdf, tmp_path, 1)
        width = float(PdfReader(BytesIO(doc.pdf)).pages[0].mediabox.width)
        text = page_texts(doc.pdf)[0]  # reading order, whitespace removed
        first, third = _BENEFICIARIES[0], _BENEFICIARIES[2]
        for b in (first, third):
            assert normalise(b["address"]) in text  # all of it, as written
        # the long one wraps inside its cell
        assert _top(words, "四川省成都市武侯区示范路𠮷祥巷") < min(
            t for w, _a, t, _b in words if w.endswith("为准）")
        )
        # each address lies under its own beneficiary's row, before the next one's
        start = [(t, x0, x1) for w, x0, t, x1 in words if w.startswith("四川省成都市武侯区")]
        assert len(start) == 2
        assert _top(words, first["id_no"]) < start[0][0] < _top(words, "E12345678")
        assert _top(words, third["id_no"]) < start[1][0] < min(t for w, _a, t, _b in words if w == "承保险别")
        name_column = min(x0 for w, x0, _t, _x1 in words if w.startswith("欧阳·"))
        assert all(x0 > name_column + 40 for _t, x0, _x1 in start)  # beside the 地址 label, not under it
        assert max(x1 for _w, _x0, _t, x1 in words) <= width - right_margin + 2  # inside the margins
        assert sum(w == "地" for w, *_ in words) == 4  # applicant, insured, two beneficiaries
    bare_words = _words(together[1].pdf, tmp_path, 1)
    assert sum(w == "地" for w, *_ in bare_words) == 2  # applicant and insured only: no empty rows
    assert not [w for w, *_ in bare_words if w.startswith("四川省成都市武侯区示范路𠮷")]
