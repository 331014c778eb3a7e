"""Audits on a real archive: the bundled sample batch filed with real LibreOffice and real seals.

Each check passes on the clean archive and fails on a defect planted the way it would happen: bytes
changed behind the store's back, a ledger row edited in the database, a policy filed without an image,
and — tested on the check functions directly, with doctored PDFs — a clause page missing, a strip gone,
a seal of another version, an ID number in the metadata, JavaScript, an attachment, encryption.
Seals are found at 75 dpi here (enough for these seals, and twice as fast as the default 150).
"""

from __future__ import annotations

import copy
import html
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.actions import JavaScript
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject
from sqlalchemy import select, update

from archive.audit import (
    AuditRequest,
    LotCriteria,
    lot_findings,
    recorded_audit,
    redraw,
    run_audit,
    sanity_check,
)
from archive.audit.checks import (
    ARCHIVE_ITEM,
    AUTHENTICITY,
    CHECKS,
    EXEMPTION_ITEM,
    INTEGRITY,
    SECURITY,
    Auditor,
    Messages,
    SealedDocument,
    active_content,
    clause_check,
    font_findings,
    integrity,
    metadata_findings,
    normalise,
    outline,
    page_texts,
    schedule_text_check,
    seal_checks,
    security,
    shows,
)
from archive.audit.report import report_key
from archive.audit.sampling import select_lot
from archive.index import Index
from archive.index import schema as s
from archive.serials import issue_range, mark_used, void
from archive.store import LocalStore
from bench.synth import make_batch
from cli.main import main
from core.manifest import sha256_hex
from core.privacy import mask_address, mask_id, mask_name
from core.records import parse_record
from core.wording import CHINA_TIME
from pipeline.documents import DocumentMaker
from stamps import load_seal_registry, stamp_pdf
from tests.conftest import REPO, add_users
from usecases.filing import Filing
from usecases.run import run_batch

KEY = b"audit-test-hmac-key-0123456789ab"
DPI = 75
SAMPLE = REPO / "examples" / "sample-batch" / "batch.jsonl"
BEIJING = "26110105120260000002"  # 110105: sealed with beijing-policy v2; schedule + 2 clauses, 11 pages
PA_TWO_CLAUSES = "PPA20260804026000006"  # schedule + 个人意外伤害保险条款 (5) + 附加…医疗保险条款 (4)
ENDORSED = "PDAA264403050260000001"  # two versions: issue and endorsement
CHENGDU = ("PPA20260127026000003", PA_TWO_CLAUSES)  # branch 510107: a lot of two


@pytest.fixture(scope="module")
def sealing_maker(registry, pool, tmp_path_factory):
    return DocumentMaker(
        registry=registry,
        converter=pool,
        cache_dir=tmp_path_factory.mktemp("audit-cache"),
        seals=load_seal_registry(),
    )


@pytest.fixture(scope="module")
def template(sealing_maker, tmp_path_factory) -> Path:
    """The sample batch filed once (6 policies, 3 endorsements); tests work on copies of it."""
    root = tmp_path_factory.mktemp("audit-template")
    index = Index.open(f"sqlite:///{root / 'index.sqlite'}", hmac_key=KEY)
    filing = Filing(store=LocalStore(root / "archive"), index=index, maker=sealing_maker, operator="tester")
    report = run_batch(SAMPLE, filing=filing, workers=3)
    assert report.counts()["archived"] == 9
    index.close()
    return root


@dataclass(frozen=True)
class Archived:
    root: Path
    store: LocalStore
    index: Index
    auditor: Auditor


@pytest.fixture
def archive(template, tmp_path, registry):
    root = tmp_path / "copy"
    shutil.copytree(template, root)
    store = LocalStore(root / "archive")
    index = Index.open(f"sqlite:///{root / 'index.sqlite'}", hmac_key=KEY)
    auditor = Auditor(
        store=store,
        index=index,
        products=registry,
        seals=load_seal_registry(),
        seal_dpi=DPI,
        thumbnail_width=48,
    )
    yield Archived(root, store, index, auditor)
    index.close()


def _customer(archive: Archived, policy_no: str) -> bytes:
    newest = archive.index.versions(policy_no)[-1]
    return archive.store.get(newest.customer_key, sha256=newest.customer_sha256)


def _flip_one_byte(archive: Archived, key: str) -> None:
    path = archive.store.root / key
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _rewrite(pdf: bytes, change) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(BytesIO(pdf)))
    change(writer)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _failed(result) -> set[str]:
    return set(result.failed)


# --- the clean archive -------------------------------------------------------------------------------


def test_every_check_passes_on_the_clean_archive(archive):
    policies = [m.policy_no for m in select_lot(archive.index, LotCriteria())]
    results = archive.auditor.check_many(policies, workers=2)
    assert len(results) == 6
    for result in results:
        assert not result.defective, (result.policy_no, [c for c in result.checks if not c.passed])
        assert [c.name for c in result.checks] == list(CHECKS)
        assert all(c.evidence for c in result.checks)
        assert result.score == result.max_score == 20
        assert result.thumbnails and all(t.png.startswith(b"\x89PNG") for t in result.thumbnails)
    endorsed = next(r for r in results if r.policy_no == ENDORSED)
    assert endorsed.versions == 2
    assert any("批单 EDAA" in line for line in endorsed.check("company_seal").evidence)
    beijing = next(r for r in results if r.policy_no == BEIJING)
    assert any("beijing-policy@v2" in line for line in beijing.check("cross_page_seal").evidence)
    assert archive.auditor.ledger_problems() == []
    assert sanity_check(archive.store, archive.index) == ()


# --- the shape: small checks that file messages under their property ----------------------------------


ID_NUMBER = "110105196205172122"


def test_the_messages_collector_files_each_check_under_its_property():
    messages = Messages()
    retention = messages.check("retention")
    retention.evidence("3 objects retained")
    retention.problem("a key has no retention")
    messages.check("ledger_chain").evidence("intact")
    # results in the report's order, problems first, personal data masked on the way out
    messages.check("keys_clean").problem(f"key holds {ID_NUMBER}")
    assert [(r.name, r.aspect, r.passed, r.evidence) for r in messages.results()] == [
        ("ledger_chain", AUTHENTICITY, True, ("intact",)),
        ("keys_clean", SECURITY, False, (f"key holds {mask_id(ID_NUMBER)}",)),
        ("retention", SECURITY, False, ("a key has no retention", "3 objects retained")),
    ]
    assert messages.problems(INTEGRITY) == []
    # a check that could not complete: what it found so far is dropped, the reason fails it
    messages.fail("retention", "the check could not complete: OSError: gone")
    assert messages.result("retention").evidence == ("the check could not complete: OSError: gone",)
    assert messages.problems(SECURITY) == [
        ("keys_clean", f"key holds {mask_id(ID_NUMBER)}"),
        ("retention", "the check could not complete: OSError: gone"),
    ]
    with pytest.raises(ValueError):
        messages.check("no_such_check")


def test_a_check_reports_a_planted_problem_under_its_property(archive):
    (version,) = archive.index.versions(BEIJING)
    (archive.store.root / version.bundle_key).unlink()  # lost from the store
    policy, _pictures = archive.auditor.read_policy(BEIJING)
    messages = Messages()
    integrity.objects_present(policy, messages)
    security.keys_clean(policy, messages)
    assert messages.problems() == [("objects_present", f"{version.bundle_key} is missing from the store")]
    assert [(r.name, r.aspect, r.passed) for r in messages.results()] == [
        ("objects_present", INTEGRITY, False),
        ("keys_clean", SECURITY, True),
    ]
    # the runner files it the same way among every check
    result = archive.auditor.check_policy(BEIJING)
    present = result.check("objects_present")
    assert present.aspect == INTEGRITY and not present.passed
    assert f"{version.bundle_key} is missing from the store" in present.evidence


class _StoreWithoutHead(LocalStore):
    """A store whose ``head`` fails (a network error on S3, say): ``get`` still works."""

    def head(self, key: str):
        raise OSError("head is unavailable")


def test_a_check_that_cannot_complete_fails_alone(archive, registry):
    auditor = Auditor(
        store=_StoreWithoutHead(archive.store.root),
        index=archive.index,
        products=registry,
        seals=load_seal_registry(),
        seal_dpi=DPI,
        thumbnail_width=0,
    )
    result = auditor.check_policy(PA_TWO_CLAUSES)
    assert _failed(result) == {"objects_present", "retention"}  # the two that ask the store's head
    assert result.check("retention").evidence == (
        "the check could not complete: OSError: head is unavailable",
    )
    assert [c.name for c in result.checks] == list(CHECKS)


# --- defects planted in the archive ------------------------------------------------------------------


def test_an_object_altered_by_one_byte_fails_the_hash_check(archive):
    (version,) = archive.index.versions(BEIJING)
    _flip_one_byte(archive, version.bundle_key)
    result = archive.auditor.check_policy(BEIJING)
    assert "object_hashes" in _failed(result)
    hashes = result.check("object_hashes")
    assert any("does not match its SHA-256" in line for line in hashes.evidence)
    # what rests on the customer copy and the ledger still holds
    assert {"ledger_chain", "company_seal", "cross_page_seal", "clauses_match", "schedule_text"}.isdisjoint(
        _failed(result)
    )
    assert dict((i.item, i.points) for i in result.scores)[ARCHIVE_ITEM] == 0


def test_a_broken_ledger_link_fails_the_ledger_check(archive):
    ledger = s.ledger
    # an outside hand edits the ledger table behind the index's back: only SQL can do that
    with archive.index.engine.begin() as conn:
        seq = conn.execute(select(ledger.c.seq).where(ledger.c.subject == BEIJING)).scalar_one()
        conn.execute(update(ledger).where(ledger.c.seq == seq).values(prev_hash="1" * 64))
    result = archive.auditor.check_policy(BEIJING)
    assert _failed(result) == {"ledger_chain"}
    evidence = " ".join(result.check("ledger_chain").evidence)
    assert f"event {seq} (policy.archived) does not link to event {seq - 1}" in evidence
    assert archive.auditor.ledger_problems()  # the whole chain is broken too: a lot-level finding
    assert not archive.auditor.check_policy(PA_TWO_CLAUSES).defective  # other policies' events are intact


def test_a_missing_image_fails_the_image_check_and_the_scores(archive, sealing_maker, tmp_path):
    batch = make_batch(tmp_path / "late", 1, seed=31, images_per_record=1)  # AUTO-COMM needs four kinds
    filing = Filing(store=archive.store, index=archive.index, maker=sealing_maker, operator="tester")
    assert run_batch(batch, filing=filing, workers=1).counts()["archived"] == 1
    record = json.loads(batch.read_text(encoding="utf-8"))
    result = archive.auditor.check_policy(record["policy_no"])
    assert _failed(result) == {"required_images"}
    assert any(line.startswith("missing ") for line in result.check("required_images").evidence)
    scores = {i.item: i.points for i in result.scores}
    has_notice = any(image["kind"] == "exemption_notice" for image in record["images"])
    assert scores == {EXEMPTION_ITEM: 10 if has_notice else 0, ARCHIVE_ITEM: 0}


def test_a_swapped_pdf_is_caught_by_its_hashes(archive):
    """Behind the store's back, the customer copy loses a clause page and the index is fixed up to the
    new bytes: the manifest (and the ledger event that pins it) still name the original."""
    (version,) = archive.index.versions(PA_TWO_CLAUSES)
    doctored = _rewrite(_customer(archive, PA_TWO_CLAUSES), lambda w: w.remove_page(3))
    path = archive.store.root / version.customer_key
    os.chmod(path, 0o644)
    path.write_bytes(doctored)
    # the tamperer fixes up the index row too, with SQL behind the index's back
    with archive.index.engine.begin() as conn:
        conn.execute(
            update(s.documents)
            .where(s.documents.c.policy_no == PA_TWO_CLAUSES)
            .values(customer_sha256=sha256_hex(doctored), customer_size=len(doctored), customer_pages=9)
        )
    result = archive.auditor.check_policy(PA_TWO_CLAUSES)
    assert {"object_hashes", "clauses_match", "company_seal", "cross_page_seal"} <= _failed(result)
    assert "ledger_chain" not in _failed(result)


def test_rows_edited_behind_the_index_are_found_through_its_api(archive):
    """The ledger check and the sanity checker read the index through its audit methods
    (``Index.ledger_trail``, ``version_gaps``, ``ledger_subjects``): what an outside hand changes in
    the tables with SQL, they report."""
    ledger, policies = s.ledger, s.policies
    with archive.index.engine.begin() as conn:  # the outside hand
        seq = conn.execute(select(ledger.c.seq).where(ledger.c.subject == BEIJING)).scalar_one()
        conn.execute(update(ledger).where(ledger.c.seq == seq).values(detail='{"version": 1}'))
        conn.execute(ledger.delete().where(ledger.c.seq == seq - 1))
        conn.execute(update(policies).where(policies.c.policy_no == ENDORSED).values(current_version=5))
    stray = "audits/AUD-1/report.json"
    archive.store.put(stray, b"{}", sha256=sha256_hex(b"{}"))
    ledger_check = archive.auditor.check_policy(BEIJING).check("ledger_chain")
    assert not ledger_check.passed
    assert ledger_check.evidence[:2] == (
        f"event {seq} (policy.archived) was altered: its hash does not match its content",
        f"event {seq - 1}, before event {seq}, is missing from the ledger",
    )
    assert [
        (f.level, f.kind, f.key, f.policy_no, f.message) for f in sanity_check(archive.store, archive.index)
    ] == [
        ("error", "version_gap", None, ENDORSED, "the policy row says version 5, its documents go to 2"),
        (
            "warning",
            "unrecorded_audit",
            stray,
            None,
            "audit AUD-1 has no audit.completed ledger event (an audit that did not finish)",
        ),
    ]


# --- defects in doctored PDFs, on the check functions directly ----------------------------------------


def test_a_missing_clause_page_fails_the_clause_check(archive, registry):
    customer = _customer(archive, PA_TWO_CLAUSES)
    expected = ["PA-ACC-MAIN", "PA-ACC-MED"]

    def check(pdf: bytes, pages: int):
        return clause_check(
            page_texts(pdf),
            policy_pages=pages,
            bookmarks=outline(PdfReader(BytesIO(pdf))),
            expected=expected,
            registry=registry,
        )

    clean = check(customer, 10)
    assert clean.passed, clean.evidence
    missing = check(_rewrite(customer, lambda w: w.remove_page(3)), 9)  # 个人意外伤害保险条款 page 3 of 5
    assert not missing.passed
    assert "个人意外伤害保险条款 (pages 2–5) is incomplete: page(s) 3 of 5 missing" in missing.evidence
    whole_clause = check(_rewrite(customer, lambda w: [w.remove_page(6) for _ in range(4)]), 6)
    assert not whole_clause.passed
    assert any("attached clauses are 个人意外伤害保险条款;" in line for line in whole_clause.evidence)
    listed_other = clause_check(
        page_texts(customer),
        policy_pages=10,
        bookmarks=outline(PdfReader(BytesIO(customer))),
        expected=["PA-ACC-MAIN"],
        registry=registry,
    )
    assert not listed_other.passed  # the schedule lists two clauses, the record one


def test_a_strip_removed_from_one_page_fails_the_cross_page_check(archive):
    seal = load_seal_registry().get("beijing-policy", 2)
    customer = _customer(archive, BEIJING)

    def drop_strip(writer: PdfWriter) -> None:
        page = writer.pages[4]
        contents = page[NameObject("/Contents")]
        page[NameObject("/Contents")] = ArrayObject(list(contents)[:-1])  # the stamp is the last stream

    doc = [SealedDocument("保单", 0, 11, seal.ref, seal, "policy", 1)]
    clean = seal_checks(customer, documents=doc, dpi=DPI)
    assert clean.company.passed and clean.cross_page.passed
    found = seal_checks(_rewrite(customer, drop_strip), documents=doc, dpi=DPI)
    assert found.company.passed and not found.cross_page.passed
    assert any(line.startswith("保单 (pages 1–11): page 5:") for line in found.cross_page.evidence)


def test_a_seal_of_another_version_fails_both_seal_checks(archive, registry, pool, tmp_path):
    seals = load_seal_registry()
    v1, v2 = seals.get("beijing-policy", 1), seals.get("beijing-policy", 2)
    sealed_v2 = _customer(archive, BEIJING)

    def check(pdf: bytes, recorded):
        return seal_checks(
            pdf, documents=[SealedDocument("保单", 0, 11, recorded.ref, recorded, "policy", 1)], dpi=DPI
        )

    # the manifest says v1, the PDF carries v2
    wrong = check(sealed_v2, v1)
    assert not wrong.company.passed and not wrong.cross_page.passed
    # and the other way round: the same policy made without seals, then sealed with v1
    line = next(ln for ln in SAMPLE.read_text(encoding="utf-8").splitlines() if BEIJING in ln)
    policy, _ = parse_record(json.loads(line))
    unsealed = DocumentMaker(registry=registry, converter=pool, cache_dir=tmp_path).policy_pdf(policy).pdf
    assert len(PdfReader(BytesIO(unsealed)).pages) == 11
    sealed_v1 = stamp_pdf(
        unsealed, seal=v1, anchor="保险人（盖章）", anchor_pages=range(1), cross_page=True
    ).pdf
    assert check(sealed_v1, v1).cross_page.passed
    other_way = check(sealed_v1, v2)
    assert not other_way.company.passed and not other_way.cross_page.passed
    # a seal the registry does not hold fails with that reason
    unknown = seal_checks(sealed_v2, documents=[SealedDocument("保单", 0, 11, "gone@v9", None)], dpi=DPI)
    assert not unknown.company.passed and "not in the seal registry" in unknown.company.evidence[0]


def test_personal_data_in_pdf_metadata_fails_the_metadata_check(archive):
    customer = _customer(archive, BEIJING)
    assert metadata_findings(customer, names=["阎浩然"]) == []
    with_id = _rewrite(customer, lambda w: w.add_metadata({"/Author": "110105196205172122"}))
    assert metadata_findings(with_id, names=[]) == ["/Author holds an ID-number or phone-number shape"]
    with_phone = _rewrite(customer, lambda w: w.add_metadata({"/Keywords": "联系 13800000541"}))
    assert metadata_findings(with_phone, names=[])
    with_name = _rewrite(customer, lambda w: w.add_metadata({"/Title": "阎浩然的保单"}))
    assert metadata_findings(with_name, names=["阎浩然"]) == ["/Title holds a party's name"]


def _pdffonts(pdf: bytes, tmp_path: Path) -> tuple[int, list[str]]:
    """The fonts ``pdffonts`` lists and the names of those it marks not embedded (Type 3 aside)."""
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf)
    rows = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    fonts = [line.split() for line in rows.splitlines()[2:] if line.strip()]
    missing = [f[0] for f in fonts if "Type 3" not in " ".join(f) and f[-5] != "yes"]
    return len(fonts), missing


def test_a_font_left_unembedded_fails_the_fonts_check(archive, tmp_path):
    """The fonts are read from the parsed PDF; they must be the ones pdffonts lists."""
    customer = _customer(archive, BEIJING)

    def helvetica_page(writer: PdfWriter) -> None:
        page = writer.add_blank_page(595, 842)
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        fonts = DictionaryObject({NameObject("/F9"): writer._add_object(font)})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
        content = DecodedStreamObject()
        content.set_data(b"BT /F9 12 Tf 72 720 Td (not embedded) Tj ET")
        page[NameObject("/Contents")] = writer._add_object(content)

    doctored = _rewrite(customer, helvetica_page)
    clean = font_findings(PdfReader(BytesIO(customer)))
    assert clean[0] > 0 and clean[1] == [] and clean == _pdffonts(customer, tmp_path)
    found = font_findings(PdfReader(BytesIO(doctored)))
    assert found == (clean[0] + 1, ["Helvetica"]) == _pdffonts(doctored, tmp_path)


def test_javascript_attachments_and_encryption_fail_the_active_content_check(archive):
    customer = _customer(archive, BEIJING)
    assert active_content(customer) == []
    script = JavaScript("app.alert('x');")
    assert active_content(_rewrite(customer, lambda w: w.add_open_action(script))) == ["JavaScript"]
    assert active_content(_rewrite(customer, lambda w: w.add_attachment("a.txt", b"hello"))) == [
        "an embedded file"
    ]
    assert active_content(_rewrite(customer, lambda w: w.encrypt("secret"))) == ["the PDF is encrypted"]


def test_the_schedule_text_must_hold_the_record(archive):
    customer = _customer(archive, BEIJING)
    (version,) = archive.index.versions(BEIJING)
    record = json.loads(archive.store.get(version.manifest_key))["record"]
    texts = page_texts(customer)
    assert schedule_text_check(texts, schedule_pages=1, record=record).passed
    changed = dict(record, total_premium="1073.65", insured=dict(record["insured"], name="王五"))
    result = schedule_text_check(texts, schedule_pages=1, record=changed)
    assert not result.passed
    assert "the schedule (pages 1–1) does not show the record's insured name (王*)" in result.evidence
    assert "the schedule (pages 1–1) does not show the record's total premium" in result.evidence


# Names that wrap in the schedule's 被保险人名称 cell next to punctuation (AUTO-COMM template): after
# the name's own hyphen, which pdftotext's reading order drops, and inside the quoted word, whose rest
# it puts after the next cell's label 证件类型.
WRAPPED_NAMES = (
    'Eastern Pearl Import Export O\'Brien-Smith & Co. "Quoted"',
    'Jade River O\'Brien-Smith & Co. "Quoted"',
)


def test_a_name_wrapping_next_to_punctuation_is_read_as_printed(archive, sealing_maker, tmp_path):
    batch = make_batch(tmp_path / "wrap", 4, seed=31, images_per_record=4)  # lines 1 and 4: AUTO-COMM
    lines = batch.read_text(encoding="utf-8").splitlines()
    records = [json.loads(lines[0]), json.loads(lines[3])]
    for record, name in zip(records, WRAPPED_NAMES, strict=True):
        assert record["product_code"] == "AUTO-COMM"
        record["applicant"]["name"] = record["insured"]["name"] = name
    batch.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    filing = Filing(store=archive.store, index=archive.index, maker=sealing_maker, operator="tester")
    assert run_batch(batch, filing=filing, workers=1).counts()["archived"] == 2
    for record, name in zip(records, WRAPPED_NAMES, strict=True):
        customer = _customer(archive, record["policy_no"])
        texts = page_texts(customer)
        assert normalise(name) not in texts[0]  # the name does wrap: read in reading order, it is not there
        result = archive.auditor.check_policy(record["policy_no"])
        assert result.check("schedule_text").passed, result.check("schedule_text").evidence
        assert f"insured name: {mask_name(name)} (across lines)" in result.check("schedule_text").evidence
        # a name that differs from the printed one in a letter or a punctuation mark is still a defect
        for other in (name.replace("Smith", "Smyth"), name.replace('"Quoted"', "“Quoted”")):
            changed = dict(record, insured=dict(record["insured"], name=other))
            check = schedule_text_check(texts, schedule_pages=1, record=changed, pdf=customer)
            assert not check.passed
            missing = f"the schedule (pages 1–1) does not show the record's insured name ({mask_name(other)})"
            assert missing in check.evidence


# A PA-ACC policy as the sample's line 5 (its second beneficiary is the applicant: the same name and ID
# number printed twice), with beneficiaries' addresses (contract v1.1): a long one with a rare glyph that
# wraps in its cell, and one that is the applicant's address, printed twice too.
LONG_ADDRESS = (
    "四川省成都市武侯区示范路𠮷祥巷1288号17栋3单元2104室"
    "（示范花园小区东区，近样本地铁站B出口，物业服务中心北侧，门牌以现场为准）"
)


def _with_addresses() -> dict:
    record = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[4])
    assert record["policy_no"] == CHENGDU[0] and len(record["beneficiaries"]) == 2
    record.pop("print_serial")
    record |= {"record_id": "SAMPLE-005-ADDR", "policy_no": "PPA20260127026000099"}
    record["proposal_no"] = "TPA20260127026000099"
    first, second = record["beneficiaries"]
    first["address"] = LONG_ADDRESS
    assert (second["name"], second["id_no"]) == (record["applicant"]["name"], record["applicant"]["id_no"])
    second["address"] = record["applicant"]["address"]
    return record


def _file_one(archive: Archived, maker: DocumentMaker, folder: Path, record: dict) -> None:
    shutil.copytree(SAMPLE.parent, folder)  # the images the record names
    batch = folder / "one.jsonl"
    batch.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    filing = Filing(store=archive.store, index=archive.index, maker=maker, operator="tester")
    assert run_batch(batch, filing=filing, workers=1).counts()["archived"] == 1


def _party_values(record: dict) -> list[str]:
    parties = [record["applicant"], record["insured"], *record.get("beneficiaries", [])]
    return [p[k] for p in parties for k in ("name", "id_no", "address") if p.get(k)]


def test_every_party_on_the_schedule_is_compared_and_shown_masked(archive, sealing_maker, tmp_path):
    record = _with_addresses()
    _file_one(archive, sealing_maker, tmp_path / "batch", record)
    check = archive.auditor.check_policy(record["policy_no"]).check("schedule_text")
    assert check.passed, check.evidence
    first, second = record["beneficiaries"]
    applicant, insured = record["applicant"], record["insured"]
    for line in (
        f"applicant name: {mask_name(applicant['name'])}",
        f"applicant ID number: {mask_id(applicant['id_no'])}",
        f"applicant address: {mask_address(applicant['address'])}",
        f"insured name: {mask_name(insured['name'])}",
        f"insured ID number: {mask_id(insured['id_no'])}",
        f"insured address: {mask_address(insured['address'])}",
        f"beneficiary 1 name: {mask_name(first['name'])}",
        f"beneficiary 1 ID number: {mask_id(first['id_no'])}",
        f"beneficiary 2 name: {mask_name(second['name'])}",  # the applicant's: printed twice
        f"beneficiary 2 ID number: {mask_id(second['id_no'])}",
        f"beneficiary 2 address: {mask_address(second['address'])}",
    ):
        assert line in check.evidence, line
    # the long address wraps; read in reading order or line by line, it is there
    assert f"beneficiary 1 address: {mask_address(LONG_ADDRESS)}" in {
        line.removesuffix(" (across lines)") for line in check.evidence
    }
    evidence = "\n".join(check.evidence)
    assert not [v for v in _party_values(record) if v in evidence]  # nothing in clear


def _doctored(record: dict, change) -> dict:
    out = copy.deepcopy(record)
    change(out)
    return out


def _edit(role: str, key: str, old: str, new: str, index: int = 0):
    def change(record: dict) -> None:
        party = record[role][index] if role == "beneficiaries" else record[role]
        assert old in party[key]
        party[key] = party[key].replace(old, new, 1)

    return change


# What a forger changes on the printed schedule, and what the check says of it.
DOCTORED = {
    "beneficiary address": (
        _edit("beneficiaries", "address", "2104室", "2105室"),
        "the schedule (pages 1–1) does not show the record's beneficiary 1 address "
        f"({mask_address(LONG_ADDRESS)})",
    ),
    "insured ID number": (
        _edit("insured", "id_no", "0602107566", "0602107556"),
        "the schedule (pages 1–1) does not show the record's insured ID number (510***********7566)",
    ),
    "beneficiary name": (
        _edit("beneficiaries", "name", "林思远", "林思源"),
        "the schedule (pages 1–1) does not show the record's beneficiary 1 name (林*远)",
    ),
    # the beneficiary's address is the applicant's: the applicant's row alone must not vouch for both
    "address printed twice": (
        _edit("beneficiaries", "address", "2803室", "2808室", index=1),
        "the schedule (pages 1–1) shows the value of applicant address, beneficiary 2 address "
        "(四川省成都市****) fewer than 2 times: one of them is not what the record says",
    ),
}


def test_a_doctored_party_on_the_schedule_fails_naming_the_party_and_field(sealing_maker):
    """Schedules printed with one party value changed, checked against the record: each is a defect
    naming the party and the field; the schedule printed from the record passes."""
    record = _with_addresses()
    genuine = sealing_maker.policy_pdf(parse_record(record)[0]).pdf
    assert schedule_text_check(page_texts(genuine), schedule_pages=1, record=record, pdf=genuine).passed
    for what, (change, problem) in DOCTORED.items():
        policy, reasons = parse_record(_doctored(record, change))
        assert not reasons, what
        forged = sealing_maker.policy_pdf(policy).pdf
        check = schedule_text_check(page_texts(forged), schedule_pages=1, record=record, pdf=forged)
        assert not check.passed, what
        assert [line for line in check.evidence if "schedule (pages" in line] == [problem], what
    # without the beneficiaries' table (another product's schedule), they are not looked for
    forged = sealing_maker.policy_pdf(parse_record(_doctored(record, DOCTORED["beneficiary name"][0]))[0]).pdf
    assert schedule_text_check(
        page_texts(forged), schedule_pages=1, record=record, pdf=forged, beneficiaries=False
    ).passed


def test_a_party_value_inside_a_longer_one_vouches_for_nothing():
    """Each printed value vouches for one party: a value found only inside a longer one that is
    another party's, or printed once for two parties, is missing."""
    record = {
        "policy_no": "P1",
        "applicant": {
            "name": "王五",
            "id_no": "110105196205172122",
            "address": "北京市朝阳区示范路1号2栋301室（东门）",
        },
        "insured": {
            "name": "王五",
            "id_no": "110105196205172122",
            "address": "北京市朝阳区示范路1号2栋301室",
        },
    }
    printed = "保险单号P1投保人王五110105196205172122北京市朝阳区示范路1号2栋301室（东门）"
    insured = "被保险人王五110105196205172122"
    check = schedule_text_check(
        (printed + insured + "北京市朝阳区示范路1号2栋302室",), schedule_pages=1, record=record
    )
    assert (
        "the schedule (pages 1–1) does not show the record's insured address (北京市朝阳区****)"
        in check.evidence
    )
    check = schedule_text_check(
        (printed + insured + "北京市朝阳区示范路1号2栋301室",), schedule_pages=1, record=record
    )
    assert not [line for line in check.evidence if "address" in line and "schedule" in line]
    check = schedule_text_check(
        (printed + "被保险人王六110105196205172122北京市朝阳区示范路1号2栋301室",),
        schedule_pages=1,
        record=record,
    )
    assert (
        "the schedule (pages 1–1) shows the value of applicant name, insured name (王*) fewer than 2 times: "
        "one of them is not what the record says"
    ) in check.evidence


def test_the_reports_show_a_doctored_party_masked_never_in_clear(archive, sealing_maker, tmp_path):
    """The customer copy swapped for one with a beneficiary's address and the insured's ID number
    changed (the index fixed up behind its back): the audit finds it, and none of its reports (JSON,
    HTML, CSV) holds an ID number, an address or a name in clear."""
    record = _with_addresses()
    _file_one(archive, sealing_maker, tmp_path / "batch", record)
    doctored = _doctored(record, DOCTORED["beneficiary address"][0])
    doctored = _doctored(doctored, DOCTORED["insured ID number"][0])
    forged = sealing_maker.policy_pdf(parse_record(doctored)[0]).pdf
    (version,) = archive.index.versions(record["policy_no"])
    # the forger rewrites the copy, the manifest's line for it (the record stays) and the index row,
    # behind their backs: only the ledger's pin on the manifest and the text are left to tell
    manifest = json.loads(archive.store.get(version.manifest_key))
    (part,) = [p for p in manifest["parts"] if p["name"] == "customer.pdf"]
    part |= {"sha256": sha256_hex(forged), "size": len(forged)}
    rewritten = json.dumps(manifest, ensure_ascii=False).encode("utf-8")
    for key, data in ((version.customer_key, forged), (version.manifest_key, rewritten)):
        os.chmod(archive.store.root / key, 0o644)
        (archive.store.root / key).write_bytes(data)
    with archive.index.engine.begin() as conn:
        conn.execute(
            update(s.documents)
            .where(s.documents.c.policy_no == record["policy_no"])
            .values(
                customer_sha256=sha256_hex(forged),
                customer_size=len(forged),
                manifest_sha256=sha256_hex(rewritten),
                manifest_size=len(rewritten),
            )
        )
    request = AuditRequest(criteria=LotCriteria(branch="510107"), seed=4)
    out = tmp_path / "reports"
    report = run_audit(
        auditor=archive.auditor, request=request, actor="auditor-li", out_dir=out, workers=2
    ).report
    (result,) = [r for r in report.results if r.policy_no == record["policy_no"]]
    check = result.check("schedule_text")
    assert not check.passed
    assert DOCTORED["beneficiary address"][1] in check.evidence
    assert DOCTORED["insured ID number"][1] in check.evidence
    files = {
        "json": json.dumps(json.loads((out / "report.json").read_text(encoding="utf-8")), ensure_ascii=False),
        "html": html.unescape((out / "report.html").read_text(encoding="utf-8")),
        "csv": (out / "report.csv").read_text(encoding="utf-8-sig"),
    }
    clear = _party_values(record) + _party_values(doctored)
    for fmt, text in files.items():
        assert not [v for v in clear if v in text], fmt
    # what they do show, masked: the failed check's first line in all three, every line in two
    for text in files.values():
        assert DOCTORED["insured ID number"][1] in text
    for fmt in ("json", "html"):
        assert DOCTORED["beneficiary address"][1] in files[fmt]
    assert f"beneficiary 2 ID number: {mask_id(record['beneficiaries'][1]['id_no'])}" in files["json"]


def test_line_breaks_and_hyphenation_are_no_differences():
    assert shows('O\'Brien-\nSmith&Co."Quoted"', 'O\'Brien-Smith & Co. "Quoted"')
    assert shows('O\'Brien-Smith&Co."Quo-\nted"', 'O\'Brien-Smith & Co. "Quoted"')  # hyphenated
    assert shows('O\'Brien-Smith&Co."Qu\u00ad\noted"', 'O\'Brien-Smith & Co. "Quoted"')  # soft hyphen
    assert shows('证件类型\nO\'Brien-Smith&\nCo."Quoted"\n居民身份证', 'O\'Brien-Smith &  Co. "Quoted"')
    assert not shows('O\'Brien-Smith&Co."Quoted"', 'O\'BrienSmith & Co. "Quoted"')  # not at a line end
    assert not shows('O\'Brien-Smith&Co."Quo-ted"', 'O\'Brien-Smith & Co. "Quoted"')
    assert not shows("O'Brien-\nSmyth&Co.", "O'Brien-Smith & Co.")
    assert not shows("anything", "  ")


def test_print_serial_gaps_are_looked_for_inside_issued_ranges_only(archive):
    """Forms issued to clerks: two boxes far apart (no gap between them), and a box with a gap."""
    moment = datetime(2026, 11, 2, 9, tzinfo=CHINA_TIME)
    boxes = (
        ("BJ2026-0000001", "BJ2026-0000010", "CLK0001", moment),
        ("BJ2026-0050001", "BJ2026-0050010", "CLK0001", moment + timedelta(days=30)),
        ("SH2026-0000001", "SH2026-0000010", "CLK0003", moment),
    )
    for first, last, clerk, at in boxes:
        issue_range(archive.index, first=first, last=last, to=clerk, by="ops", at=at)
    everything = {m.policy_no for m in select_lot(archive.index, LotCriteria())}
    others = sorted(everything - {*CHENGDU, BEIJING})
    used = {
        CHENGDU[0]: "SH2026-0000001",
        CHENGDU[1]: "SH2026-0000005",
        BEIJING: "SH2026-0000005",  # a duplicate
        others[0]: "BJ2026-0000002",  # a serial of each of the two unrelated boxes
        others[1]: "BJ2026-0050003",
    }  # others[2] keeps the sample's serial: never issued to anyone
    policies = s.policies
    # the serials are written into the policy rows behind the index's back, as forms printed outside
    # the system's control would be: the archive files no duplicate serial, so SQL must plant it
    with archive.index.engine.begin() as conn:
        for policy_no, serial in used.items():
            conn.execute(
                update(policies).where(policies.c.policy_no == policy_no).values(print_serial=serial)
            )
    for policy_no, serial in used.items():
        mark_used(archive.index, serial=serial, policy_no=policy_no, version=1)
    # SH2026-0000002 voided, -0000003 used by a policy outside the lot, -0000004 still blank
    void(
        archive.index,
        "SH2026-0000002",
        policy_no="PZZ20261102000000001",
        used_version=1,
        used_at=moment,
        by_version=2,
        reason="spoilt",
        at=moment,
        by="CLK0003",
    )
    mark_used(archive.index, serial="SH2026-0000003", policy_no="PZZ20261102000000002", version=1)

    lot = select_lot(archive.index, LotCriteria())
    (unissued,) = [m.print_serial for m in lot if m.policy_no == others[2]]
    findings = lot_findings(archive.index, lot=lot, ledger_problems=["event 9 was altered"])
    assert [(f.level, f.check, f.message) for f in findings] == [
        ("error", "ledger_chain", "event 9 was altered"),
        ("error", "print_serials", "serial SH2026-0000005 is printed on more than one policy"),
        (
            "warning",
            "print_serials",
            "forms SH2026-0000001–SH2026-0000010 issued to CLK0003 on 2026-11-02: 2 used in the lot, "
            "SH2026-0000001–SH2026-0000005: 1 form(s) between them neither used nor voided "
            "(SH2026-0000004); 1 voided, 1 used by other documents in the serial registry",
        ),
        (  # others[2]'s serial (issue 25, item 5)
            "warning",
            "print_serials",
            f"unregistered serial: 1 serial(s) in the lot never issued to anyone ({unissued})",
        ),
    ]
    # once the blank form is voided, the gap is accounted for
    void(
        archive.index,
        "SH2026-0000004",
        policy_no="PZZ20261102000000001",
        used_version=1,
        used_at=moment,
        by_version=2,
        reason="lost",
        at=moment,
        by="CLK0003",
    )
    findings = lot_findings(archive.index, lot=lot, ledger_problems=[])
    assert [f.check for f in findings] == ["print_serials"] * 2  # the duplicate and the unregistered only


# --- the audit: verdict, report, ledger, redraw ------------------------------------------------------------


def test_an_audit_reports_archives_itself_and_redraws(archive, tmp_path):
    request = AuditRequest(criteria=LotCriteria(), level="II", aql="2.5", seed=11)
    outcome = run_audit(
        auditor=archive.auditor, request=request, actor="auditor-li", out_dir=tmp_path / "r", workers=2
    )
    report = outcome.report
    assert (report.plan.lot_size, report.plan.code_letter, report.plan.sample_size) == (6, "A", 5)  # arrow: 5
    assert (report.defects, report.verdict) == (0, "accept")
    data = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert {
        k: data[k] for k in ("lot_size", "code_letter", "sample_size", "ac", "re", "seed", "verdict")
    } == {
        "lot_size": 6,
        "code_letter": "A",
        "sample_size": 5,
        "ac": 0,
        "re": 1,
        "seed": 11,
        "verdict": "accept",
    }
    assert [p["policy_no"] for p in data["policies"]] == list(report.sample.policy_nos)
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "接收 ACCEPT" in html and "data:image/png;base64," in html and report.audit_id in html
    csv_rows = (tmp_path / "r" / "report.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(csv_rows) == 6 and csv_rows[0].startswith("audit_id,policy_no")
    # archived beside the archive, byte for byte, and recorded in the ledger with the reports' hashes
    for fmt in ("html", "json", "csv"):
        stored = archive.store.get(report_key(report.audit_id, fmt))
        assert stored == (tmp_path / "r" / f"report.{fmt}").read_bytes()
        assert archive.store.head(report_key(report.audit_id, fmt)).retain_until is not None
    (event,) = [e for e in archive.index.ledger_entries(subject=report.audit_id)]
    assert (event.action, event.actor) == ("audit.completed", "auditor-li")
    assert event.detail["seed"] == 11 and event.detail["n"] == 5 and event.detail["verdict"] == "accept"
    for fmt, pinned in event.detail["reports"].items():
        assert pinned["sha256"] == sha256_hex((tmp_path / "r" / f"report.{fmt}").read_bytes())
    assert archive.index.verify_ledger() == []
    assert sanity_check(archive.store, archive.index) == ()  # the reports are claimed by the event
    # anyone can draw the same sample again from the record
    recorded = recorded_audit(archive.index, archive.store, audit_id=report.audit_id)
    again = redraw(archive.index, recorded)
    assert again.same_lot and again.same_sample
    assert again.drawn.sample.policy_nos == report.sample.policy_nos
    # without the ledger event (removed behind the index's back, only SQL can), the archived JSON
    # report says the same
    with archive.index.engine.begin() as conn:
        conn.execute(s.ledger.delete().where(s.ledger.c.subject == report.audit_id))
    from_report = recorded_audit(archive.index, archive.store, audit_id=report.audit_id)
    assert from_report.source == "report" and from_report.request == recorded.request
    assert redraw(archive.index, from_report).same_sample


def test_the_lot_verdict_flips_at_ac_plus_one_defects(archive, registry):
    request = AuditRequest(criteria=LotCriteria(branch="510107"), seed=3)  # N = 2: A, arrow to 5: 100%
    clean = run_audit(auditor=archive.auditor, request=request, actor="auditor-li", workers=2).report
    assert clean.plan.full_inspection and clean.sample.policy_nos == CHENGDU
    assert (clean.plan.ac, clean.plan.re, clean.defects, clean.verdict) == (0, 1, 0, "accept")
    version = archive.index.versions(CHENGDU[0])[-1]  # its newest: the added rider (sample line 14)
    _flip_one_byte(archive, version.bundle_key)
    auditor = Auditor(
        store=archive.store, index=archive.index, products=registry, seals=load_seal_registry(), seal_dpi=DPI
    )
    dirty = run_audit(auditor=auditor, request=request, actor="auditor-li", workers=2).report
    assert (dirty.defects, dirty.verdict) == (1, "reject")
    assert [r.policy_no for r in dirty.results if r.defective] == [CHENGDU[0]]


def test_an_audit_on_postgresql(sealing_maker, postgres_server, registry, tmp_path):
    index = Index.open(postgres_server(), hmac_key=KEY)
    store = LocalStore(tmp_path / "archive")
    filing = Filing(store=store, index=index, maker=sealing_maker, operator="tester")
    assert run_batch(SAMPLE, filing=filing, workers=3).counts()["archived"] == 9
    auditor = Auditor(store=store, index=index, products=registry, seals=load_seal_registry(), seal_dpi=DPI)
    # issued 2026-01-27 and 2026-08-04 (China time): both ends of the range are inclusive
    criteria = LotCriteria(issued_from=date(2026, 1, 27), issued_to=date(2026, 8, 4), product="PA-ACC")
    request = AuditRequest(criteria=criteria, seed=9, stratify="branch")
    report = run_audit(auditor=auditor, request=request, actor="auditor-li", workers=2).report
    assert report.sample.policy_nos == CHENGDU and report.sample.allocation == {"510107": 2}
    assert (report.defects, report.verdict) == (0, "accept")
    again = redraw(index, recorded_audit(index, store, audit_id=report.audit_id))
    assert again.same_lot and again.same_sample
    assert sanity_check(store, index) == ()
    index.close()


# --- the command line -------------------------------------------------------------------------------------


def test_the_command_line(archive, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ISSUANCE_STORE", archive.store.root.as_uri())
    monkeypatch.setenv("ISSUANCE_INDEX", f"sqlite:///{archive.root / 'index.sqlite'}")
    monkeypatch.setenv("ISSUANCE_HMAC_KEY", KEY.decode())
    common = ["--seal-dpi", str(DPI), "--no-progress", "--workers", "2"]
    audit = ["audit", "--branch", "510107", "--seed", "5", "-o", str(tmp_path / "rep"), *common]

    # the auditor must be a known, enabled user with role auditor: else refused, nothing drawn or recorded
    add_users({"wu.clerk": ["clerk"]})
    for by, refusal in (
        ("li", "no user named 'li' may run an audit: it needs a known user with the role auditor"),
        ("wu.clerk", "user 'wu.clerk' may not run an audit: it needs the role auditor (the user has clerk)"),
    ):
        assert main([*audit, "--by", by]) == 2
        assert refusal in capsys.readouterr().err
    assert not archive.index.ledger_subjects("audit.completed")
    assert not (tmp_path / "rep").exists()

    add_users({"li": ["auditor"]})
    code = main([*audit, "--by", "li"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lot N=2; level II, AQL 2.5 -> letter A, n=2, 100% inspection, Ac 0 / Re 1; seed 5" in out
    audit_id = json.loads((tmp_path / "rep" / "report.json").read_text(encoding="utf-8"))["audit_id"]

    assert main(["audit", "--redraw", audit_id]) == 0
    out = capsys.readouterr().out
    assert all(p in out for p in CHENGDU) and "same sample as recorded: 2 policies" in out

    assert main(["verify", CHENGDU[0], *common]) == 0
    capsys.readouterr()

    # orphans: an object nobody claims (warning), a claimed object gone (error)
    version = archive.index.versions(CHENGDU[0])[-1]  # its newest: the added rider (sample line 14)
    stray_key = version.customer_key.rsplit("/", 1)[0] + "/customer-000000000000.pdf"
    archive.store.put(stray_key, b"%PDF-1.7 stray", sha256=sha256_hex(b"%PDF-1.7 stray"))
    (archive.store.root / version.bundle_key).unlink()
    assert main(["audit", "--orphans", "--json"]) == 1
    findings = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(f["level"], f["kind"], f["key"]) for f in findings] == [
        ("error", "missing_object", version.bundle_key),
        ("warning", "orphan_object", stray_key),
    ]
    assert findings[0]["policy_no"] == CHENGDU[0]

    assert main(["verify", CHENGDU[0], *common]) == 1
    out = capsys.readouterr().out
    assert "defective" in out and "objects_present" in out


# --- added riders (issue 25, contract v1.1 add_clauses) ----------------------------------------------------

RIDER_POLICY = "PPA20260127026000003"  # sample line 14 adds PA-ACC-MED to it (EPA20260529026000014)


def test_an_added_riders_clauses_are_checked_whole_in_its_endorsement(archive, registry):
    check = archive.auditor.check_policy(RIDER_POLICY).check("clauses_match")
    assert check.passed, check.evidence
    assert any("批单 EPA20260529026000014 adds 附加意外伤害医疗保险条款" in line for line in check.evidence)


def _rider_policy(registry, pages: list[str], clauses_added: list[str]):
    """The facts ``added_clauses`` reads, for a customer copy whose pages are ``pages`` (page 1 the
    policy, page 2 the endorsement, the rest whatever the test puts there)."""
    record = {"kind": "endorsement", "endorsement_no": "E1", "clauses_added": clauses_added}
    return SimpleNamespace(
        versions=(
            SimpleNamespace(manifest={"record": {"kind": "policy"}}),
            SimpleNamespace(manifest={"record": record}),
        ),
        sources=SimpleNamespace(products=registry),
        texts=tuple(pages),
        endorsements=(("E1", 1, len(pages)),),
    )


def test_a_rider_with_a_clause_page_missing_or_not_added_fails(registry):
    title = registry.clauses["PA-ACC-MED"].title
    whole = ["保险单", "批单E1增加附加险", f"条款代码：PA-ACC-MED{title}第1页共2页", f"{title}第2页共2页"]
    messages = Messages()
    integrity.added_clauses(_rider_policy(registry, whole, ["PA-ACC-MED"]), messages)
    assert messages.check("clauses_match").result().passed
    # the rider's second page gone
    messages = Messages()
    integrity.added_clauses(_rider_policy(registry, whole[:3], ["PA-ACC-MED"]), messages)
    (problem,) = messages.check("clauses_match").problems
    assert "incomplete" in problem and "2 of 2 missing" in problem
    # clause pages the endorsement's record does not add
    messages = Messages()
    integrity.added_clauses(_rider_policy(registry, whole, []), messages)
    (problem,) = messages.check("clauses_match").problems
    assert problem == f"批单 E1 attaches {title}; its record adds none"
