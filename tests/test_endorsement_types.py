"""How each endorsement type of contract v1.1 is printed and bundled, on real LibreOffice and real PDFs.

Each type has its own 批单 template (``[endorsement.types]`` in products.toml) whose wording says what
happened: 退保 from ``effective_at`` with the refund in figures and capitals, 注销 自始无效 with the premium
refunded, 增加附加险 with the added clauses listed and attached in full after the endorsement (the
cross-page seal over the endorsement and the clause pages together), 复效 from ``effective_at``. The
changes table and the endorsement text are printed as before. The records are built as models directly:
which types a batch accepts is ``pipeline.validate``'s business, not this file's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import pikepdf
import pytest
from pypdf import PdfReader, PdfWriter

from archive.index import Index
from archive.store import LocalStore
from core.errors import TemplateError
from core.products import DEFAULT_TEMPLATES_DIR, load_registry
from core.records import Endorsement, Policy, RawRecord, parse_record
from core.wording import amount_capitals, amount_figures, chinese_datetime
from pipeline.bundle import archive_copy, endorsement_parts
from pipeline.documents import ADDED_CLAUSES, DocumentMaker
from stamps import find_seals, load_seal_registry
from usecases.filing import Filing

KEY = b"endorsement-types-hmac-key-0123"
TEXT_AS_DATA = "A&B <公司> {{x}} 批文照印"
FIRST_CLAUSE = "AUTO-COMM-DAMAGE"
ADDED = ("AUTO-COMM-TPL", "AUTO-COMM-SEAT")


@pytest.fixture(scope="module")
def seals():
    return load_seal_registry()


@pytest.fixture(scope="module")
def sealing_maker(registry, pool, tmp_path_factory, seals):
    return DocumentMaker(
        registry=registry, converter=pool, cache_dir=tmp_path_factory.mktemp("types-cache"), seals=seals
    )


@pytest.fixture
def policy_data(records) -> dict:
    """A motor policy with one clause of its product's three, so that the other two can be added."""
    data = records["AUTO-COMM"]
    data["clauses"] = [FIRST_CLAUSE]
    return data


@pytest.fixture
def policy(policy_data) -> Policy:
    return _parsed(policy_data)


@pytest.fixture
def endorsement_data(records, policy_data) -> dict:
    data = records["endorsement"]
    data.update(policy_no=policy_data["policy_no"], text=TEXT_AS_DATA, images=[])
    return data


def _parsed(data: dict):
    record, reasons = parse_record(data)
    assert not reasons, reasons
    return record


def _of_type(data: dict, kind: str, policy: Policy) -> Endorsement:
    """The endorsement ``data`` as one of ``kind``, with the premium change that type carries."""
    update: dict = {"type": kind}
    if kind == "surrender":
        update["premium_delta"] = "-1234.56"
    elif kind == "cancel":
        update["premium_delta"] = str(-policy.total_premium)
    elif kind == "add_clauses":
        update.update(clauses_added=list(ADDED), premium_delta="88.00")
    elif kind == "reinstate":
        update["premium_delta"] = "0"
    return _parsed(dict(data, **update))


def _text(pdf: bytes, tmp_path: Path, first: int = 1, last: int | None = None) -> str:
    """The text of pages ``first``..``last`` (1-based), whitespace taken out: line breaks and the
    spacing LibreOffice puts between scripts are layout, not wording."""
    path = tmp_path / "text.pdf"
    path.write_bytes(pdf)
    result = subprocess.run(
        ["pdftotext", "-f", str(first), "-l", str(last or first), str(path), "-"],
        capture_output=True,
        check=True,
    )
    return re.sub(r"\s+", "", result.stdout.decode("utf-8"))


def _footer_total(page_text: str) -> int:
    """N of the page's footer 第k页共N页."""
    found = re.findall(r"第\d+页共(\d+)页", page_text)
    assert found, page_text[-200:]
    return int(found[-1])


def _slice(pdf: bytes, start: int, stop: int) -> bytes:
    reader = PdfReader(BytesIO(pdf))
    writer = PdfWriter()
    for i in range(start, stop):
        writer.add_page(reader.pages[i])
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _outline(pdf: bytes) -> list[tuple[int, str, int]]:
    """(depth, title, 0-based page) of every bookmark, in order."""
    out: list[tuple[int, str, int]] = []
    with pikepdf.open(BytesIO(pdf)) as document:
        pages = {page.objgen: n for n, page in enumerate(document.pages)}

        def walk(items, depth):
            for item in items:
                target = item.action.D[0] if item.action is not None else item.destination[0]
                out.append((depth, item.title, pages[target.objgen]))
                walk(item.children, depth + 1)

        with document.open_outline() as outline:
            walk(outline.root, 0)
    return out


def _seal_covers(report, first: int, stop: int) -> bool:
    """Every page ``first``..``stop - 1`` carries its strip, in groups that run over them all and only
    them, each reassembling the seal."""
    covered = [p for group in report.groups for p in range(*group.pages)]
    return (
        covered == list(range(first, stop))
        and all(group.ok for group in report.groups)
        and all(report.pages[p].strip for p in range(first, stop))
    )


# --- the wording of each type --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["change", "surrender", "cancel", "add_clauses", "reinstate"])
def test_each_type_prints_its_own_wording(
    kind, sealing_maker, registry, seals, policy, endorsement_data, tmp_path
):
    endorsement = _of_type(endorsement_data, kind, policy)
    doc = sealing_maker.endorsement_pdf(endorsement, policy)
    page = _text(doc.pdf, tmp_path)
    effective = chinese_datetime(endorsement.effective_at)
    wording = {
        "surrender": [
            f"自{effective}起退保",
            "人民币壹仟贰佰叁拾肆元伍角陆分",
            "¥1,234.56",
        ],
        "cancel": [
            "本保险单自始无效",
            chinese_datetime(policy.period.start),
            amount_capitals(policy.total_premium),
            f"¥{amount_figures(policy.total_premium)}",
        ],
        "add_clauses": [
            "增加下列附加险条款",
            *[part for code in ADDED for part in (code, registry.clauses[code].title)],
            "加费",
            f"{amount_capitals(Decimal('88.00'))}（小写）¥88.00",
        ],
        "reinstate": [f"自{effective}起复效"],
    }
    for words in wording.get(kind, []):
        assert words in page, (kind, words)
    # no other type's wording on it
    for other, words in wording.items():
        if other != kind:
            assert words[0] not in page, (kind, other)
    # as on every 批单: the changes table and the endorsement text, the text printed exactly as written
    change = endorsement.changes[0]
    assert re.sub(r"\s+", "", change.label) in page and re.sub(r"\s+", "", change.new) in page
    assert re.sub(r"\s+", "", TEXT_AS_DATA) in page
    assert endorsement.endorsement_no in page
    # the type's own template is the one recorded
    template = registry.endorsement_template_for(kind)
    assert template.relative_to(registry.folder.resolve()).as_posix() in doc.templates
    assert doc.seal is not None
    seal = seals.seal_for(branch_code=policy.branch.code, document="endorsement")
    assert find_seals(doc.pdf, seal=seal).ok


# --- 增加附加险: the clauses attached in full, sealed across with the endorsement ------------------------


def test_added_clauses_follow_the_endorsement_sealed_across_with_it(
    sealing_maker, registry, seals, policy, endorsement_data, tmp_path
):
    endorsement = _of_type(endorsement_data, "add_clauses", policy)
    doc = sealing_maker.endorsement_pdf(endorsement, policy)
    own = _footer_total(_text(doc.pdf, tmp_path, 1))  # the endorsement's own pages, by its footer
    expected = own
    for attached, code in zip(doc.attached, ADDED, strict=True):
        clause = registry.clauses[code]
        assert (attached.code, attached.title, attached.page) == (code, clause.title, expected)
        start = _text(doc.pdf, tmp_path, attached.page + 1)
        assert clause.title in start and code in start
        expected += _footer_total(start)  # each clause in full: all the pages its own footer counts
    assert doc.pages == expected == _footer_total(_text(doc.pdf, tmp_path, doc.pages)) + doc.attached[-1].page
    # the clauses' template versions are recorded with the endorsement's
    for code in ADDED:
        path = registry.clauses[code].path.relative_to(registry.folder.resolve()).as_posix()
        assert doc.templates[path] == registry.clauses[code].content_hash
    # one cross-page seal over the endorsement's pages and the clauses' together; the company seal on
    # the endorsement
    seal = seals.seal_for(branch_code=policy.branch.code, document="endorsement")
    report = find_seals(doc.pdf, seal=seal)
    assert report.ok, report.problems
    assert _seal_covers(report, 0, doc.pages)
    assert report.pages[0].company_seal
    assert _outline(doc.pdf) == [
        (0, "批单", 0),
        (0, ADDED_CLAUSES, own),
        *[(1, a.title, a.page) for a in doc.attached],
    ]


def test_the_customer_copy_lists_the_added_clauses(sealing_maker, seals, policy, endorsement_data, tmp_path):
    issued = sealing_maker.policy_pdf(policy)
    bundle = archive_copy(issued.pdf, images=None, entries=[], title="T")
    endorsement = _of_type(endorsement_data, "add_clauses", policy)
    doc = sealing_maker.endorsement_pdf(endorsement, policy)
    customer, archived = endorsement_parts(
        issued.pdf,
        bundle,
        doc.pdf,
        endorsement_no=endorsement.endorsement_no,
        title="T",
        images=None,
        entries=[],
        attached=doc.attached,
    )
    # previous pages + the endorsement's pages + the clause pages
    assert customer.pages == issued.pages + doc.pages == archived.pages
    tail = _outline(customer.data)[-1 - 1 - len(ADDED) :]
    assert tail == [
        (0, f"批单 {endorsement.endorsement_no}", issued.pages),
        (1, ADDED_CLAUSES, issued.pages + doc.attached[0].page),
        *[(2, a.title, issued.pages + a.page) for a in doc.attached],
    ]
    assert [t for _, t, _ in _outline(archived.data)[-len(ADDED) :]] == [a.title for a in doc.attached]
    # the endorsement's seal over its pages and the clauses' in the customer copy, as issued
    seal = seals.seal_for(branch_code=policy.branch.code, document="endorsement")
    report = find_seals(_slice(customer.data, issued.pages, customer.pages), seal=seal)
    assert report.ok and _seal_covers(report, 0, doc.pages)


def test_an_added_rider_is_filed_with_its_clauses(
    sealing_maker, registry, policy_data, endorsement_data, tmp_path
):
    """Through ``Filing.file_endorsement``: the archived customer copy holds the clause pages and names
    them; the archive copy likewise."""
    store = LocalStore(tmp_path / "archive")
    index = Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}", hmac_key=KEY)
    try:
        filing = Filing(store=store, index=index, maker=sealing_maker, operator="tester")
        batch_dir = tmp_path / "batch"
        batch_dir.mkdir()
        policy_data = dict(policy_data, images=[])
        policy = _parsed(policy_data)
        filing.file_policy(policy, raw=RawRecord(1, policy_data), batch_dir=batch_dir, batch_id=None)
        data = dict(endorsement_data, type="add_clauses", clauses_added=list(ADDED), premium_delta="88.00")
        endorsement = _parsed(data)
        filing.file_endorsement(endorsement, raw=RawRecord(2, data), batch_dir=batch_dir, batch_id=None)
        v1, v2 = index.versions(policy.policy_no)
        customer = store.get(v2.customer_key, sha256=v2.customer_sha256)
        added = _outline(customer)[-2 - len(ADDED) :]
        assert [(depth, title) for depth, title, _ in added] == [
            (0, f"批单 {endorsement.endorsement_no}"),
            (1, ADDED_CLAUSES),
            *((2, registry.clauses[code].title) for code in ADDED),
        ]
        assert added[0][2] == v1.customer_pages  # the endorsement follows the previous copy
        last = added[-1][2]  # the last clause runs to the end of the copy, in full
        assert v2.customer_pages == last + _footer_total(_text(customer, tmp_path, last + 1))
        assert v2.customer_pages > added[1][2] > v1.customer_pages
        bundle = store.get(v2.bundle_key, sha256=v2.bundle_sha256)
        assert ADDED_CLAUSES in [title for _, title, _ in _outline(bundle)]
    finally:
        index.close()


# --- the registry ------------------------------------------------------------------------------------------


def test_the_registry_names_a_template_per_type_and_refuses_unknown_types(tmp_path):
    registry = load_registry()
    assert registry.endorsement_template_for("surrender").name == "surrender.docx"
    folder = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES_DIR, folder)
    toml = folder / "products.toml"
    text = toml.read_text(encoding="utf-8")
    # a type not listed is printed on the default 批单
    toml.write_text(re.sub(r"(?m)^reinstate = .*\n", "", text), encoding="utf-8")
    assert load_registry(folder).endorsement_template_for("reinstate").name == "endorsement.docx"
    toml.write_text(text.replace("reinstate = ", "reinstated = "), encoding="utf-8")
    with pytest.raises(TemplateError, match="reinstated"):
        load_registry(folder)
    toml.write_text(text.replace("endorsements/cancel.docx", "endorsements/gone.docx"), encoding="utf-8")
    with pytest.raises(TemplateError, match=r"gone\.docx"):
        load_registry(folder)
