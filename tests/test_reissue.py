"""Lost-policy reissue (补发) on real components: LibreOffice renders the mark, poppler reads it back, the
archive is a folder with SQLite or a real PostgreSQL index (``index_url`` runs each test on both).

What is checked: two reissues numbered 1 and 2 on their marks, of a policy with an endorsement; the text
of every reissued page is the original page's text plus the mark; the archived objects stay
byte-identical and are the reissued copy's prefix; the seals still pass ``stamps.find_seals``; serials are
voided and used and stay searchable; a tampered object is refused as an incident; the refusals and their
exit codes; the clerk's path on the command line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader, PdfWriter, Transformation
from pypdf.generic import NameObject, NumberObject, RectangleObject
from sqlalchemy import update

from archive.index import Index, as_utc, schema
from archive.reissue import ReissueRequest, reissue, reissues_of
from archive.serials import issue_range, lookup
from archive.store import LocalStore
from archive.users import LocalAccounts
from bench.synth import make_batch
from cli.main import main
from core.errors import (
    EXIT_INTEGRITY,
    PolicyNotFound,
    PolicyNotReissuable,
    SerialError,
    UsageError,
)
from core.manifest import ReissueMark
from pipeline.documents import DocumentMaker
from pipeline.reissue import ReissueMarker
from stamps import find_seals, load_seal_registry, marks
from stamps.marks import overlay_mark
from stamps.stamping import page_frames
from tests.conftest import add_users
from usecases.filing import Filing
from usecases.run import run_batch

KEY = "reissue-test-hmac-key-0123456789"
CHINA = ZoneInfo("Asia/Shanghai")
FIRST = datetime(2026, 3, 5, 10, 30, tzinfo=CHINA)
SECOND = datetime(2026, 3, 6, 16, 0, tzinfo=CHINA)


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sealing_maker(registry, pool, tmp_path_factory) -> DocumentMaker:
    return DocumentMaker(
        registry=registry,
        converter=pool,
        cache_dir=tmp_path_factory.mktemp("reissue-cache"),
        seals=load_seal_registry(),
    )


@pytest.fixture(scope="module")
def marker(pool, tmp_path_factory) -> ReissueMarker:
    return ReissueMarker(converter=pool, scratch_dir=tmp_path_factory.mktemp("marks"))


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    """One motor policy printed on a numbered form (18 pages with its clauses) and one endorsement."""
    return make_batch(
        tmp_path_factory.mktemp("reissue-batch"), 1, seed=61, endorsements=1, images_per_record=1
    )


@dataclass(frozen=True)
class Archived:
    store: LocalStore
    index: Index
    url: str
    policy_no: str
    printed_serial: str
    insured_id_no: str


@pytest.fixture
def archived(index_url, tmp_path, sealing_maker, batch) -> Archived:
    store = LocalStore(tmp_path / "store")
    index = Index.open(index_url, hmac_key=KEY.encode())
    filing = Filing(store=store, index=index, maker=sealing_maker, operator="tester")
    report = run_batch(batch, filing=filing, workers=2)
    assert report.counts()["archived"] == 2, report.outcomes
    policy = json.loads(batch.read_text(encoding="utf-8").splitlines()[0])
    yield Archived(
        store=store,
        index=index,
        url=index_url,
        policy_no=policy["policy_no"],
        printed_serial=policy["print_serial"],
        insured_id_no=policy["insured"]["id_no"],
    )
    index.close()


@pytest.fixture
def cli_env(archived, monkeypatch, tmp_path):
    """``issuance`` in this process, on the test's archive; the root logger is restored afterwards
    (``main`` installs its own handler)."""
    monkeypatch.setenv("ISSUANCE_STORE", f"file://{archived.store.root}")
    monkeypatch.setenv("ISSUANCE_INDEX", archived.url)
    monkeypatch.setenv("ISSUANCE_HMAC_KEY", KEY)
    monkeypatch.setenv("ISSUANCE_OPERATOR", "counter")
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# --- helpers ---------------------------------------------------------------------------------------------


def _objects(store: LocalStore) -> dict[str, bytes]:
    return {info.key: store.get(info.key) for info in store.list("")}


def _page_texts(pdf: bytes, tmp: Path) -> list[str]:
    path = tmp / f"text-{hashlib.sha256(pdf).hexdigest()[:8]}.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True)
    return out.stdout.decode("utf-8").split("\f")[:-1]


def _split_mark(page: str) -> tuple[list[str], str]:
    """The page's leading mark line(s) and the rest, as pdftotext gives them."""
    lines = page.split("\n")
    mark, i = [], 0
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith("补发件 REISSUED")):
        if lines[i].strip():
            mark.append(lines[i])
        i += 1
    return mark, "\n".join(lines[i:])


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _request(archived: Archived, **changes) -> ReissueRequest:
    values = {"policy_no": archived.policy_no, "reason": "lost", "clerk": "CLK0101"} | changes
    return ReissueRequest(**values)


def _slice(pdf: bytes, start: int, stop: int) -> bytes:
    reader = PdfReader(BytesIO(pdf))
    writer = PdfWriter()
    for i in range(start, stop):
        writer.add_page(reader.pages[i])
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


# --- the reissue -----------------------------------------------------------------------------------------


def test_reissue_twice_marks_every_page_and_keeps_the_original(archived, marker, tmp_path):
    store, index = archived.store, archived.index
    issue_range(index, first="BJ2026-0000100", last="BJ2026-0000109", to="CLK0101", by="stock", branch=None)
    before = _objects(store)
    v1, v2 = index.versions(archived.policy_no)
    assert (v1.kind, v2.kind) == ("issue", "endorsement")
    original = store.get(v2.customer_key, sha256=v2.customer_sha256)

    first = reissue(
        store=store,
        index=index,
        marker=marker,
        request=_request(archived, requester_id_no=archived.insured_id_no, new_serial="bj2026-0000100"),
        operator="counter",
        now=FIRST,
    )
    second = reissue(
        store=store,
        index=index,
        marker=marker,
        request=_request(archived, reason="damaged", clerk="CLK0102", new_serial="BJ2026-0000101"),
        operator="counter",
        now=SECOND,
    )

    # two new versions; each reissue starts from the unmarked customer copy (schedule, clauses, endorsement)
    assert [v.kind for v in index.versions(archived.policy_no)] == [
        "issue",
        "endorsement",
        "reissue",
        "reissue",
    ]
    assert (first.version, first.reissue_no, second.version, second.reissue_no) == (3, 1, 4, 2)
    assert first.source_sha256 == second.source_sha256 == v2.customer_sha256
    assert first.requester_role in ("applicant", "insured") and second.requester_role is None
    # the originals are byte-identical, and each reissued copy begins with the original's bytes
    after = _objects(store)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {
        first.copy.key,
        first.manifest.key,
        second.copy.key,
        second.manifest.key,
    }
    for done in (first, second):
        assert done.pdf[: len(original)] == original
        assert after[done.copy.key] == done.pdf and hashlib.sha256(done.pdf).hexdigest() == done.copy.sha256

    # page by page: the reissued text is the original's plus the mark, and the mark is on every page
    original_pages = _page_texts(original, tmp_path)
    assert len(original_pages) == v2.customer_pages == 19
    for done, number, day, serials in (
        (first, 1, "2026-03-05", ("BJ2026-0000100", archived.printed_serial)),
        (second, 2, "2026-03-06", ("BJ2026-0000101", "BJ2026-0000100")),
    ):
        pages = _page_texts(done.pdf, tmp_path)
        assert len(pages) == len(original_pages)
        for page, (marked, plain) in enumerate(zip(pages, original_pages, strict=True)):
            mark, rest = _split_mark(marked)
            assert rest == plain.lstrip("\n"), f"reissue {number}, page {page + 1}"
            (line,) = mark
            squeezed = _squeeze(line)
            assert f"第{number}次补发" in squeezed and f"补发日期{day}" in squeezed
            assert f"单证流水号{serials[0]}" in squeezed and f"原单证{serials[1]}作废" in squeezed
            assert squeezed == _squeeze(done.mark)

    # the manifest: what, why, who, from what; the requester only as an HMAC
    raw = store.get(first.manifest.key, sha256=first.manifest.sha256)
    assert archived.insured_id_no.encode() not in raw
    body = json.loads(raw)
    facts = body["reissue"]
    assert body["kind"] == "reissue" and body["version"] == 3 and body["clerk"] == "CLK0101"
    assert facts["number"] == 1 and facts["reason"] == "lost" and facts["date"] == "2026-03-05"
    assert facts["requester_id_hmac"] == index.identity(archived.insured_id_no)
    assert (facts["old_serial"], facts["new_serial"]) == (archived.printed_serial, "BJ2026-0000100")
    assert facts["source"] == {
        "version": 2,
        "customer_key": v2.customer_key,
        "sha256": v2.customer_sha256,
        "size": v2.customer_size,
    }
    assert facts["copy"]["original_size"] == len(original)
    assert {p["name"]: p["key"] for p in body["parts"]} == {
        "customer.pdf": v2.customer_key,
        "bundle.pdf": v2.bundle_key,
        "reissue.pdf": first.copy.key,
    }
    assert [(s["kind"], s["pages"]) for s in facts["seals_as_issued"]] == [
        ("issue", [0, v1.customer_pages]),
        ("endorsement", [v1.customer_pages, v2.customer_pages]),
    ]
    rows = reissues_of(index, archived.policy_no)
    assert [(r.reissue_no, r.version, r.clerk, r.reason, r.new_serial) for r in rows] == [
        (1, 3, "CLK0101", "lost", "BJ2026-0000100"),
        (2, 4, "CLK0102", "damaged", "BJ2026-0000101"),
    ]

    # serials: the printed form voided by reissue 1, its replacement voided by reissue 2, all searchable
    printed = lookup(index, archived.printed_serial)
    assert (printed.state, printed.registered, printed.policy_no, printed.version) == (
        "voided",
        False,
        archived.policy_no,
        1,
    )
    assert printed.voided_by_version == 3 and printed.voided_by == "CLK0101" and "lost" in printed.void_reason
    assert printed.used_at == as_utc(v1.created_at)  # used when v1 was filed, not when it was voided
    replaced = lookup(index, "BJ2026-0000100")
    assert (replaced.state, replaced.version, replaced.voided_by_version) == ("voided", 3, 4)
    current = lookup(index, "BJ2026-0000101")
    assert (current.state, current.policy_no, current.version, current.used_by) == (
        "used",
        archived.policy_no,
        4,
        "CLK0102",
    )
    assert [p.policy_no for p in index.find(serial=archived.printed_serial)] == [archived.policy_no]

    # the ledger: clerk, reason, time, requester as HMAC, serials; intact; no ID number in it
    events = [e for e in index.ledger_entries(subject=archived.policy_no) if e.action == "policy.reissued"]
    assert [(e.actor, e.detail["reason"], e.detail["reissue_no"]) for e in events] == [
        ("CLK0101", "lost", 1),
        ("CLK0102", "damaged", 2),
    ]
    assert events[0].detail["requester_id_hmac"] == index.identity(archived.insured_id_no)
    assert events[0].detail["at"] == FIRST.astimezone(events[0].at.tzinfo).isoformat()
    assert events[1].detail["new_serial"] == "BJ2026-0000101"
    assert all(archived.insured_id_no not in json.dumps(e.detail) for e in index.ledger_entries())
    assert index.verify_ledger() == []

    if archived.url.startswith("sqlite"):  # the pixels do not depend on the database: check them once
        seals = load_seal_registry()
        for part in facts["seals_as_issued"]:
            start, stop = part["pages"]
            seal = seals.get(part["seal"]["id"], int(part["seal"]["version"]))
            found = find_seals(_slice(second.pdf, start, stop), seal=seal)
            assert found.ok, (part, found.problems)


def test_tampered_object_is_refused_and_recorded(archived, cli_env, tmp_path, capsys):
    store, index = archived.store, archived.index
    v2 = index.versions(archived.policy_no)[-1]
    path = store.root / v2.customer_key
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    add_users({"CLK0101": ["clerk"]})
    objects, events = {i.key for i in store.list("")}, index.count("ledger")

    out = tmp_path / "reissued.pdf"
    code = main(["reissue", archived.policy_no, "--reason", "lost", "--by", "CLK0101", "-o", str(out)])
    assert code == EXIT_INTEGRITY == 4
    assert "does not match its SHA-256" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".reissued.pdf*"))
    assert {i.key for i in store.list("")} == objects and len(index.versions(archived.policy_no)) == 2
    assert lookup(index, archived.printed_serial).state == "used"  # filed with the policy, not voided
    (incident,) = list(index.ledger_entries())[events:]
    assert (incident.actor, incident.action, incident.subject) == (
        "CLK0101",
        "incident.hash_mismatch",
        archived.policy_no,
    )
    assert incident.detail == {
        "key": v2.customer_key,
        "version": 2,
        "expected_sha256": v2.customer_sha256,
        "actual_sha256": hashlib.sha256(bytes(data)).hexdigest(),
        "during": "reissue",
    }
    assert index.verify_ledger() == []


def test_refusals_change_nothing(archived, marker):
    store, index = archived.store, archived.index
    issue_range(index, first="BJ2026-0000200", last="BJ2026-0000201", to="CLK0101", by="stock")
    reissue(
        store=store,
        index=index,
        marker=marker,
        request=_request(archived, new_serial="BJ2026-0000200"),
        operator="counter",
    )
    objects, events, versions = {i.key for i in store.list("")}, index.count("ledger"), 3

    def refused(error: type[Exception], code: int, **changes) -> str:
        with pytest.raises(error) as caught:
            reissue(
                store=store, index=index, marker=marker, request=_request(archived, **changes), operator="x"
            )
        assert caught.value.exit_code == code
        return str(caught.value)

    assert "not in the archive" in refused(PolicyNotFound, 2, policy_no="PNOSUCHPOLICY01")
    assert "clerk" in refused(UsageError, 2, clerk="   ")
    assert "unknown reason" in refused(UsageError, 2, reason="stolen")
    assert "already used by" in refused(SerialError, 2, new_serial="BJ2026-0000200")
    assert "not in the registry" in refused(SerialError, 2, new_serial="BJ2026-9999999")
    with index.engine.begin() as conn:
        conn.execute(
            update(schema.policies)
            .where(schema.policies.c.policy_no == archived.policy_no)
            .values(status="cancelled")
        )
    assert "cancelled" in refused(PolicyNotReissuable, 1, new_serial="BJ2026-0000201")
    assert {i.key for i in store.list("")} == objects
    assert index.count("ledger") == events and len(index.versions(archived.policy_no)) == versions
    assert lookup(index, "BJ2026-0000201").state == "issued"


def test_the_clerks_path_on_the_command_line(archived, cli_env, tmp_path, capsys):
    with pytest.raises(SystemExit) as no_clerk:
        main(["reissue", archived.policy_no, "--reason", "lost", "-o", "x.pdf"])
    assert no_clerk.value.code == 2
    capsys.readouterr()

    assert (
        main(
            ["serials", "issue", "BJ2026-0000300", "BJ2026-0000349", "--to", "CLK0101", "--branch", "110105"]
        )
        == 0
    )
    assert "50 serials BJ2026-0000300..BJ2026-0000349 issued to CLK0101" in capsys.readouterr().out
    assert main(["find", "--policy-no", archived.policy_no]) == 0
    assert archived.policy_no in capsys.readouterr().out

    out = tmp_path / "reissued.pdf"
    request = [archived.policy_no, "--reason", "lost", "--new-serial", "BJ2026-0000300", "-o", str(out)]
    # the clerk named must be a known, enabled user with role clerk or supervisor, acting for the
    # policy's branch: else refused with exit 1, nothing filed, no serial used, no file written
    branch = archived.index.policy_row(archived.policy_no).branch_code
    other = "1" if not branch.startswith("1") else "2"
    add_users({"AUD0001": ["auditor"], "CLK0901": ["clerk"]})
    accounts = LocalAccounts(archived.index)
    accounts.disable("CLK0901", by="test")
    accounts.add("CLK0900", roles=["clerk"], branches=[other], password="a clerk of another branch", by="t")
    versions, events = len(archived.index.versions(archived.policy_no)), archived.index.count("ledger")
    for by, refusal in (
        ("CLK0101", "no user named 'CLK0101' may reissue a policy"),
        ("AUD0001", "user 'AUD0001' may not reissue a policy: it needs the role clerk or supervisor"),
        ("CLK0900", f"user 'CLK0900' may not reissue a policy for branch {branch}"),
        ("CLK0901", "user 'CLK0901' is disabled and may not reissue a policy"),
    ):
        assert main(["reissue", *request, "--by", by]) == 2
        assert refusal in capsys.readouterr().err
    assert len(archived.index.versions(archived.policy_no)) == versions and not out.exists()
    assert archived.index.count("ledger") == events
    assert lookup(archived.index, "BJ2026-0000300").state == "issued"

    add_users({"CLK0101": ["clerk"]})
    args = ["reissue", *request[:-2], "--by", "CLK0101"]
    assert main([*args, "--requester-id-no", archived.insured_id_no, "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"{archived.policy_no} reissued (第1次补发) as version 3" in said
    assert f"serial {archived.printed_serial} voided, serial BJ2026-0000300 used" in said
    (row,) = reissues_of(archived.index, archived.policy_no)
    assert out.read_bytes() == archived.store.get(row.copy_key, sha256=row.copy_sha256)
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(out), "-"], capture_output=True, check=True
    ).stdout
    assert text.decode().count("补发件 REISSUED") == row.copy_pages == 19

    # the voided serial stays searchable: it names the policy, the reissue that voided it, when and why
    assert main(["find", "--serial", archived.printed_serial]) == 0
    found = capsys.readouterr().out
    assert archived.policy_no in found and "1 found" in found
    assert f"单证 {archived.printed_serial}: VOIDED 已作废" in found
    assert (
        "voided on 2" in found
        and f"by reissue v3 of {archived.policy_no} (clerk CLK0101): 第1次补发 (lost)" in found
    )
    assert main(["find", "--serial", "BJ2026-0000300", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["policy_no"] == archived.policy_no
    assert lines[1]["serial"]["state"] == "used" and lines[1]["serial"]["version"] == 3
    assert archived.insured_id_no not in json.dumps(lines, ensure_ascii=False)


# --- reading an archived copy: who, which, why (issue 24, item 4) -------------------------------------------


def test_get_records_who_read_which_copy_and_why(archived, cli_env, tmp_path, capsys):
    index, policy_no = archived.index, archived.policy_no
    add_users({"CLK0101": ["clerk"], "AUD0001": ["auditor"], "OPS0001": ["operator"], "CLK0109": ["clerk"]})
    LocalAccounts(index).disable("CLK0109", by="test")
    out = tmp_path / "copy.pdf"
    get = ["get", policy_no, "-o", str(out)]

    def reads() -> list:
        return [e for e in index.ledger_entries(subject=policy_no) if e.action == "copy.read"]

    with pytest.raises(SystemExit) as no_purpose:  # the purpose is required, whoever reads
        main([*get, "--by", "CLK0101"])
    assert no_purpose.value.code == 2
    for by, copy, refusal in (
        ("nobody", "customer", "no user named 'nobody' may read the customer copy"),
        ("counter", "customer", "no user named 'counter' may read the customer copy"),  # the operator
        ("OPS0001", "customer", "it needs the role auditor or clerk or supervisor (the user has operator)"),
        ("CLK0101", "archive", "user 'CLK0101' may not read the archive copy: it needs the role auditor"),
        ("CLK0109", "customer", "user 'CLK0109' is disabled"),
    ):
        assert main([*get, "--copy", copy, "--by", by, "--purpose", "complaint C-118"]) == 2
        assert refusal in capsys.readouterr().err
    # an ID number in the purpose is refused, and not repeated in the message
    assert main([*get, "--by", "CLK0101", "--purpose", f"asked by {archived.insured_id_no}"]) == 2
    err = capsys.readouterr().err
    assert "ID or phone number" in err and archived.insured_id_no not in err
    assert not out.exists() and reads() == []

    assert main([*get, "--by", "CLK0101", "--purpose", "补发 at the counter", "--version", "1"]) == 0
    capsys.readouterr()
    v1 = index.versions(policy_no)[0]
    assert out.read_bytes() == archived.store.get(v1.customer_key, sha256=v1.customer_sha256)
    assert main([*get, "--copy", "archive", "--by", "AUD0001", "--purpose", "audit A-7"]) == 0
    capsys.readouterr()
    newest = index.versions(policy_no)[-1]
    first, second = reads()
    assert (first.actor, second.actor) == ("CLK0101", "AUD0001")
    assert first.detail == {
        "user": "CLK0101",
        "version": 1,
        "kind": v1.kind,
        "copy": "customer",
        "sha256": v1.customer_sha256,
        "purpose": "补发 at the counter",
    }
    assert (second.detail["version"], second.detail["copy"]) == (newest.version, "archive")
    assert second.detail["sha256"] == newest.bundle_sha256 and second.detail["purpose"] == "audit A-7"
    assert index.verify_ledger() == []


def test_attach_by_a_clerk_or_operator_only(archived, cli_env, batch, capsys):
    index, policy_no = archived.index, archived.policy_no
    (summary,) = index.find(policy_no=policy_no)
    kind, image = summary.missing_images[0], next((batch.parent / "images").iterdir())
    add_users({"AUD0001": ["auditor"], "OPS0001": ["operator"]})
    attach = ["attach", policy_no, kind, str(image)]
    versions = len(index.versions(policy_no))
    for by, refusal in (
        ([], "no user named 'counter' may attach images to a policy"),  # the operator, by default
        (["--by", "nobody"], "no user named 'nobody' may attach images"),
        (["--by", "AUD0001"], "it needs the role clerk or operator (the user has auditor)"),
    ):
        assert main([*attach, *by]) == 2
        assert refusal in capsys.readouterr().err
    assert len(index.versions(policy_no)) == versions
    assert main([*attach, "--by", "OPS0001"]) == 0
    assert f"filed as version {versions + 1} (supplement)" in capsys.readouterr().out
    assert len(index.versions(policy_no)) == versions + 1


# --- the mark on its own ------------------------------------------------------------------------------


def test_mark_sits_in_the_top_margin_of_rotated_and_landscape_pages(marker, sealing_maker, tmp_path):
    clause = sealing_maker.clauses.pdf_bytes("PA-ACC-MAIN")
    writer = PdfWriter()
    for rotation in (0, 90, 180, 270):  # a fresh reader per page: pypdf would share one clone otherwise
        page = writer.add_page(PdfReader(BytesIO(clause)).pages[0])
        page[NameObject("/Rotate")] = NumberObject(rotation)
    landscape = writer.add_page(PdfReader(BytesIO(clause)).pages[0])  # landscape: the A4 page shrunk onto it
    shrink = 595 / float(landscape.mediabox.height)
    landscape.add_transformation(Transformation().scale(shrink).translate((842 - 595.3 * shrink) / 2, 0))
    landscape.mediabox = RectangleObject([0, 0, 842, 595])
    buf = BytesIO()
    writer.write(buf)
    pdf = buf.getvalue()

    mark = ReissueMark(number=3, on=FIRST.date(), serial="BJ2026-0000123")
    marked, placements = overlay_mark(pdf, marker.render(mark))
    assert marked[: len(pdf)] == pdf and len(placements) == 5
    assert all(p.clear_of_text for p in placements), placements

    path = tmp_path / "rotated.pdf"
    path.write_bytes(marked)
    layout = subprocess.run(
        ["pdftotext", "-bbox", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    ).stdout.decode()
    word = re.compile(
        r'<word xMin="([-\d.]+)" yMin="([-\d.]+)" xMax="([-\d.]+)" yMax="([-\d.]+)">([^<]*)</word>'
    )
    frames = page_frames(PdfReader(BytesIO(marked)))
    assert [(round(f.width), round(f.height)) for f in frames] == [(595, 842), (842, 595)] * 2 + [(842, 595)]
    for number, (frame, page) in enumerate(zip(frames, layout.split("<page ")[1:], strict=True), start=1):
        words = [(*(float(v) for v in m.groups()[:4]), m.group(5)) for m in word.finditer(page)]
        (anchor,) = [w for w in words if w[4] == "REISSUED"]
        x0, top, x1, bottom, _ = anchor
        assert bottom < 36 and x1 - x0 > bottom - top, f"page {number}: upright, in the top margin"
        line = [w for w in words if abs(w[1] - top) < 1.5]
        assert _squeeze(" ".join(w[4] for w in line)) == _squeeze(mark.label), f"page {number}"
        rest = [w for w in words if w not in line]
        assert rest and min(w[1] for w in rest) > max(w[3] for w in line), f"page {number}: covers no text"
        centre = (min(w[0] for w in line) + max(w[2] for w in line)) / 2
        assert abs(centre - frame.width / 2) < 3, f"page {number}: centred on the visual page"


def test_the_word_boxes_are_read_without_the_output_profile_and_the_copy_is_the_same(
    archived, marker, monkeypatch, tmp_path
):
    """poppler builds colour transforms from the catalog's output profile again for every page; the
    copy it reads the words of has no /OutputIntents (an update of the archived bytes), and the reissued
    copy is byte for byte what it is when poppler reads the archived copy itself."""
    first = archived.index.versions(archived.policy_no)[0]
    pdf = archived.store.get(first.customer_key, sha256=first.customer_sha256)
    assert "/OutputIntents" in PdfReader(BytesIO(pdf)).trailer["/Root"]  # the pipeline's copies have one
    mark_pdf = marker.render(ReissueMark(number=1, on=FIRST.date(), serial="BJ2026-0000123"))
    poppler_read: list[bytes] = []
    layout = marks.text_bbox_layout

    def read_by_poppler(path: Path, *, first_page: int, last_page: int) -> str:
        poppler_read.append(path.read_bytes())
        return layout(path, first_page=first_page, last_page=last_page)

    monkeypatch.setattr(marks, "text_bbox_layout", read_by_poppler)
    marked, placements = overlay_mark(pdf, mark_pdf)
    (read,) = poppler_read
    assert read[: len(pdf)] == pdf and "/OutputIntents" not in PdfReader(BytesIO(read)).trailer["/Root"]
    assert len(placements) == first.customer_pages > 10

    archived_copy = tmp_path / "customer.pdf"
    archived_copy.write_bytes(pdf)
    monkeypatch.setattr(
        marks,
        "text_bbox_layout",
        lambda _path, *, first_page, last_page: layout(
            archived_copy, first_page=first_page, last_page=last_page
        ),
    )
    assert overlay_mark(pdf, mark_pdf) == (marked, placements)


def test_a_long_serial_wraps_and_the_mark_shrinks_to_a_tight_margin(marker, sealing_maker, tmp_path):
    writer = PdfWriter()
    for lift in (0, 40):  # the second page's text moved up to 33 pt below the top edge, like a schedule
        page = writer.add_page(PdfReader(BytesIO(sealing_maker.clauses.pdf_bytes("PA-ACC-MAIN"))).pages[0])
        page.add_transformation(Transformation().translate(0, lift))
    buf = BytesIO()
    writer.write(buf)
    pdf = buf.getvalue()
    new, old = "GUANGDONG-SHENZHEN-2026-00000002", "GUANGDONG-SHENZHEN-2026-00000001"  # 32 characters
    mark = ReissueMark(number=12, on=FIRST.date(), serial=new, old_serial=old)
    marked, (roomy, tight) = overlay_mark(pdf, marker.render(mark))
    assert roomy.scale == 1.0 and 0.6 <= tight.scale < 1.0 and roomy.clear_of_text and tight.clear_of_text
    for page in _page_texts(marked, tmp_path):
        assert _squeeze(mark.label) in _squeeze(page)  # two lines on the page, all of it text
