"""The auditors' desk pages on a real archive: the bundled sample batch filed with real LibreOffice and
real seals, audited through Flask's test client by a signed-in auditor (issue 24).

One audit is drawn from the web form once per module (branch 510107: a lot of two, seed 5) and the
archive is copied for each test, so that a finding or a sign-off in one test is not seen by another.
Seals are found at 75 dpi here, as in tests/test_audit.py.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from archive.audit import AuditRequest, LotCriteria, draw, sanity_check
from archive.audit.report import json_bytes, report_from_json
from archive.index import Index
from archive.store import LocalStore
from archive.users import LocalAccounts
from cli.main import main
from core.config import load_settings
from core.manifest import sha256_hex
from core.privacy import mask_id
from desk.app import ROUTES, SESSION_COOKIE, create_app
from pipeline.documents import DocumentMaker
from stamps import load_seal_registry
from tests.conftest import REPO
from usecases.desk import Desk
from usecases.filing import Filing
from usecases.run import run_batch

KEY = "desk-audits-test-hmac-key-0123456789"
SAMPLE = REPO / "examples" / "sample-batch" / "batch.jsonl"
CHENGDU = ("PPA20260127026000003", "PPA20260804026000006")  # branch 510107: the lot of two
BEIJING = "26110105120260000002"  # branch 110105, not in the lot
PASSWORD = "correct-horse-battery"
USERS = {
    "li": (["auditor"], []),  # every branch
    "zhao": (["auditor"], ["110105"]),  # Beijing's auditor only
    "wang": (["clerk", "supervisor"], []),
}
DPI = 75


def _env(root: Path, index_url: str | None = None) -> dict[str, str]:
    return {
        "ISSUANCE_STORE": (root / "archive").as_uri(),
        "ISSUANCE_INDEX": index_url or f"sqlite:///{root / 'index.sqlite'}",
        "ISSUANCE_HMAC_KEY": KEY,
    }


@dataclass
class Browser:
    """A test client signed in as one user, with the session's form token."""

    client: FlaskClient
    csrf: str

    def get(self, url: str) -> Any:
        return self.client.get(url)

    def post(self, url: str, data: dict[str, str] | None = None, *, csrf: bool = True) -> Any:
        form = dict(data or {})
        if csrf:
            form["csrf"] = self.csrf
        return self.client.post(url, data=form)


@dataclass
class Desked:
    root: Path
    desk: Desk
    app: Flask
    audit_id: str

    def browser(self, name: str) -> Browser:
        token, session = self.desk.sign_in(name, PASSWORD)
        client = self.app.test_client()
        client.set_cookie(SESSION_COOKIE, token)
        return Browser(client, session.csrf)

    @property
    def index(self) -> Index:
        return self.desk.index

    def events(self, subject: str, action: str) -> list[Any]:
        return [e for e in self.index.ledger_entries(subject=subject) if e.action == action]


def _open(root: Path, index_url: str | None = None) -> tuple[Desk, Flask]:
    settings = load_settings(env=_env(root, index_url), base=root)
    desk = Desk(settings)
    try:
        app = create_app(settings, desk=desk)
        app.extensions["desk_audits"].seal_dpi = DPI
    except BaseException:
        desk.close()
        raise
    return desk, app


def _file_and_add_users(root: Path, maker: DocumentMaker, index_url: str) -> None:
    index = Index.open(index_url, hmac_key=KEY.encode())
    filing = Filing(store=LocalStore(root / "archive"), index=index, maker=maker, operator="tester")
    assert run_batch(SAMPLE, filing=filing, workers=3).counts()["archived"] == 9
    index.close()
    desk, _app = _open(root, index_url)
    accounts = LocalAccounts(desk.index)
    for name, (roles, branches) in USERS.items():
        accounts.add(name, roles=roles, branches=branches, password=PASSWORD, by="admin")
    desk.close()


def _draw(desked: Desked, **fields: str) -> tuple[Any, Any, str]:
    """POST the draw form as li; the redirect, the first look at the audit's page, and its id."""
    li = desked.browser("li")
    drawn = li.post("/audits", {"branch": "510107", "seed": "5", "level": "II", "aql": "2.5", **fields})
    assert drawn.status_code == 303, drawn.data.decode()
    audit_id = drawn.headers["Location"].rsplit("/", 1)[1]
    first = li.get(f"/audits/{audit_id}")
    desked.app.extensions["desk_audits"].wait(audit_id, timeout=300)
    return drawn, first, audit_id


@pytest.fixture(scope="module")
def sealing_maker(registry, pool, tmp_path_factory):
    return DocumentMaker(
        registry=registry,
        converter=pool,
        cache_dir=tmp_path_factory.mktemp("desk-audit-cache"),
        seals=load_seal_registry(),
    )


@pytest.fixture(scope="module")
def template(sealing_maker, tmp_path_factory) -> tuple[Path, str, bytes]:
    """The sample batch filed, the users added, and one audit drawn from the desk's form."""
    root = tmp_path_factory.mktemp("desk-audits")
    _file_and_add_users(root, sealing_maker, f"sqlite:///{root / 'index.sqlite'}")
    desk, app = _open(root)
    try:
        _drawn, first, audit_id = _draw(Desked(root, desk, app, ""))
    finally:
        desk.close()
    return root, audit_id, first.data


@pytest.fixture
def desked(template, tmp_path) -> Any:
    root = tmp_path / "copy"
    shutil.copytree(template[0], root)
    desk, app = _open(root)
    yield Desked(root, desk, app, template[1])
    desk.close()


def _plan_of(page: str) -> dict[str, str]:
    found = {}
    for name in ("lot-size", "code-letter", "sample-size", "ac-re", "seed"):
        match = re.search(rf'id="{name}">([^<]*)<', page)
        assert match, name
        found[name] = match.group(1).strip()
    return found


# --- drawing a lot ---------------------------------------------------------------------------------------


def test_a_lot_drawn_on_the_desk_is_the_cli_audit_recorded_with_the_auditor(
    template, desked, capsys, monkeypatch
):
    _root, audit_id, first_look = template
    # the audit ran in the background: its page refreshed itself until the ledger recorded it
    assert b'<meta http-equiv="refresh" content="3">' in first_look
    li = desked.browser("li")
    page = li.get(f"/audits/{audit_id}").data.decode()
    assert _plan_of(page) == {
        "lot-size": "2",
        "code-letter": "A",
        "sample-size": "2 (全检 100%)",
        "ac-re": "0 / 1",
        "seed": "5",
    }
    (completed,) = desked.events(audit_id, "audit.completed")
    assert completed.actor == "li"
    # the draw `issuance audit` makes for the same lot and seed
    cli_draw = draw(desked.index, AuditRequest(criteria=LotCriteria(branch="510107"), seed=5))
    assert completed.detail["sample"] == list(cli_draw.sample.policy_nos) == list(CHENGDU)
    assert completed.detail["plan"] == cli_draw.plan.as_json()
    assert all(f'data-policy="{p}"' in page for p in CHENGDU)
    # and `issuance audit --redraw` reads the desk's audit back and draws the same sample
    monkeypatch.chdir(desked.root)
    for name, value in _env(desked.root).items():
        monkeypatch.setenv(name, value)
    assert main(["audit", "--redraw", audit_id]) == 0
    out = capsys.readouterr().out
    assert "lot N=2; level II, AQL 2.5 -> letter A, n=2, 100% inspection, Ac 0 / Re 1; seed 5" in out
    assert "same sample as recorded: 2 policies" in out and "audited by li" in out
    listed = li.get("/audits").data.decode()
    assert audit_id in listed and "未签核 not yet" in listed


def test_a_lot_without_policies_is_refused_before_anything_runs(desked):
    li = desked.browser("li")
    refused = li.post("/audits", {"branch": "999999", "level": "II", "aql": "2.5"})
    assert refused.status_code == 400 and "no archived policy matches" in refused.data.decode()
    assert li.post("/audits", {"branch": "510107", "level": "IX", "aql": "2.5"}).status_code == 400


# --- the sample ------------------------------------------------------------------------------------------


def test_the_sample_view_shows_the_archive_copy_beside_the_checks_and_records_the_read(desked):
    li = desked.browser("li")
    policy_no = CHENGDU[0]
    shown = li.get(f"/audits/{desked.audit_id}/policies/{policy_no}")
    assert shown.status_code == 200
    page = shown.data.decode()
    newest = desked.index.versions(policy_no)[-1]
    for n in range(1, newest.bundle_pages + 1):
        assert f"/audits/{desked.audit_id}/policies/{policy_no}/pages/{n}.png" in page
    assert "身份证人像面" in page and "免责事项说明书" in page  # the images, by their bookmarks
    required = page.split('data-check="required_images"', 1)[1].split("</tr>", 1)[0]
    assert "pages/7.png" in required  # the first image page, beside the image check
    assert f"/policies/{policy_no}/v{newest.version}/archive.pdf" in page
    # the schedule-text check's parties, masked: no ID number or address of the record in clear
    record = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[4])
    assert record["policy_no"] == policy_no
    parties = [record["applicant"], record["insured"], *record["beneficiaries"]]
    schedule = page.split('data-check="schedule_text"', 1)[1].split("</tr>", 1)[0]
    assert f"applicant ID number: {mask_id(record['applicant']['id_no'])}" in schedule
    assert not [v for p in parties for k in ("id_no", "address", "name") if (v := p.get(k)) and v in schedule]
    assert not [v for p in parties for k in ("id_no", "address") if (v := p.get(k)) and v in page]
    png = li.get(f"/audits/{desked.audit_id}/policies/{policy_no}/pages/7.png")
    assert png.status_code == 200 and png.data.startswith(b"\x89PNG")
    (read,) = desked.events(policy_no, "copy.read")
    assert read.actor == "li" and read.detail["copy"] == "archive"
    assert desked.audit_id in read.detail["purpose"]
    # a policy outside the sample is not reachable through the audit
    assert li.get(f"/audits/{desked.audit_id}/policies/{BEIJING}").status_code == 404


# --- findings and sign-off -------------------------------------------------------------------------------


def test_a_manual_finding_is_recorded_and_counted_as_a_defect(desked):
    li = desked.browser("li")
    base = f"/audits/{desked.audit_id}"
    before = li.get(base).data.decode()
    assert 'id="defects">0 / 2' in before and "接收 accept" in before
    text = "免责事项说明书未签字 <script>x</script>"
    added = li.post(
        f"{base}/policies/{CHENGDU[1]}/findings",
        {"check": "完整性:required_images", "severity": "major", "text": text, "page": "9"},
    )
    assert added.status_code == 303
    (finding,) = desked.events(desked.audit_id, "audit.finding")
    assert finding.actor == "li"
    assert {k: finding.detail[k] for k in ("policy_no", "property", "check", "severity", "text", "page")} == {
        "policy_no": CHENGDU[1],
        "property": "完整性",
        "check": "required_images",
        "severity": "major",
        "text": text,
        "page": 9,
    }
    after = li.get(base).data.decode()
    # one defective policy of two, Ac 0: the lot is rejected although every check passed
    assert 'id="check-defects">0' in after and 'id="defects">1 / 2' in after
    assert 'id="verdict">拒收 reject' in after
    sample = li.get(f"{base}/policies/{CHENGDU[1]}").data.decode()
    assert "&lt;script&gt;x&lt;/script&gt;" in sample and "<script>x" not in sample
    assert "拒收 reject" in li.get("/audits").data.decode()
    # a finding names a property and, if any, one of its checks
    wrong = li.post(
        f"{base}/policies/{CHENGDU[1]}/findings",
        {"check": "安全性:required_images", "severity": "major", "text": "x"},
    )
    assert wrong.status_code == 400 and len(desked.events(desked.audit_id, "audit.finding")) == 1


def test_the_sign_off_is_recorded_archived_and_ends_the_findings(desked):
    li = desked.browser("li")
    base = f"/audits/{desked.audit_id}"
    li.post(
        f"{base}/policies/{CHENGDU[0]}/findings",
        {"check": "真实性:", "severity": "minor", "text": "投保人声明页未签字", "page": "10"},
    )
    # the counts give reject: accepting the lot needs a reason
    assert li.post(f"{base}/sign-off", {"decision": "accept", "comment": ""}).status_code == 400
    signed = li.post(f"{base}/sign-off", {"decision": "reject", "comment": "声明页缺签字"})
    assert signed.status_code == 303
    (event,) = desked.events(desked.audit_id, "audit.signed_off")
    assert event.actor == "li"
    assert (event.detail["decision"], event.detail["verdict"], event.detail["defects"]) == (
        "reject",
        "reject",
        1,
    )
    assert event.detail["key"].startswith(f"audits/{desked.audit_id}/signed-")
    archived = desked.desk.archive.store.get(event.detail["key"], sha256=event.detail["sha256"])
    signoff = json.loads(archived)
    assert signoff["decision"] == "reject" and signoff["signed_off_by"] == "li"
    assert [f["text"] for f in signoff["manual_findings"]] == ["投保人声明页未签字"]
    assert signoff["defective"] == [CHENGDU[0]]
    page = li.get(base).data.decode()
    assert 'id="signed-by">li<' in page and "声明页缺签字" in page
    # once signed off: no finding, no second sign-off
    late = li.post(
        f"{base}/policies/{CHENGDU[1]}/findings", {"check": "完整性:", "severity": "major", "text": "late"}
    )
    assert late.status_code == 403
    assert li.post(f"{base}/sign-off", {"decision": "reject", "comment": "again"}).status_code == 403
    assert len(desked.events(desked.audit_id, "audit.finding")) == 1
    # the reports and the sign-off download as archived, each download recorded
    downloaded = li.get(f"{base}/signoff.json")
    assert downloaded.status_code == 200 and downloaded.data == archived
    assert "attachment" in downloaded.headers["Content-Disposition"]
    for fmt in ("html", "json", "csv"):
        report = li.get(f"{base}/report.{fmt}")
        pinned = desked.events(desked.audit_id, "audit.completed")[0].detail["reports"][fmt]
        assert report.status_code == 200 and sha256_hex(report.data) == pinned["sha256"]
    # the reports written again at sign-off: the finding counted, the decision stated
    signed_json = li.get(f"{base}/signed/report.json")
    assert sha256_hex(signed_json.data) == event.detail["reports"]["json"]["sha256"]
    again = json.loads(signed_json.data)
    assert (again["defects"], again["verdict"], again["sign_off"]["decision"]) == (1, "reject", "reject")
    assert [f["text"] for f in again["manual_findings"]] == ["投保人声明页未签字"]
    assert again["policies"] == json.loads(li.get(f"{base}/report.json").data)["policies"]
    signed_html = li.get(f"{base}/signed/report.html").data.decode()
    assert "拒收 REJECT" in signed_html and "投保人声明页未签字" in signed_html
    assert "声明页缺签字" in signed_html  # the comment
    signed_csv = li.get(f"{base}/signed/report.csv").data.decode("utf-8-sig").splitlines()
    assert signed_csv[0].endswith(",manual_findings") and "投保人声明页未签字" in signed_csv[1]
    reads = [e.detail["report"] for e in desked.events(desked.audit_id, "audit.report_read")]
    assert reads == ["signoff", "html", "json", "csv", "signed json", "json", "signed html", "signed csv"]
    # the sign-off is claimed by the audit: the sanity checker finds nothing unrecorded
    assert sanity_check(desked.desk.archive.store, desked.index) == ()


def test_an_archived_report_reads_back_as_the_report_it_was(desked):
    """What sign-off rewrites from: the archived JSON read back writes the same bytes again."""
    pinned = desked.events(desked.audit_id, "audit.completed")[0].detail["reports"]["json"]
    original = desked.desk.archive.store.get(pinned["key"], sha256=pinned["sha256"])
    assert json_bytes(report_from_json(json.loads(original))) == original


# --- who may do what -------------------------------------------------------------------------------------


def _audit_urls(audit_id: str) -> list[tuple[str, str]]:
    """Every auditors' route with its parameters filled in: (method, url)."""
    values = {"audit_id": audit_id, "policy_no": CHENGDU[0], "page_no": "1", "fmt": "json"}
    urls = []
    for rule, who in ROUTES.items():
        if not rule.startswith("/audits"):
            continue
        assert who == "audit", rule
        url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], rule)
        posted = rule.endswith(("/findings", "/sign-off")) or rule == "/audits"
        urls += [("POST", url)] if posted else []
        urls += [] if rule.endswith(("/findings", "/sign-off")) else [("GET", url)]
    return urls


def test_a_clerk_is_refused_every_audit_route(desked):
    wang = desked.browser("wang")
    urls = _audit_urls(desked.audit_id)
    assert len(urls) >= 9
    for method, url in urls:
        answer = wang.get(url) if method == "GET" else wang.post(url, {"text": "x", "decision": "accept"})
        assert answer.status_code == 403, (method, url)
    assert desked.events(desked.audit_id, "audit.finding") == []
    assert desked.events(desked.audit_id, "audit.signed_off") == []


def test_a_form_without_its_csrf_token_is_refused(desked):
    li = desked.browser("li")
    base = f"/audits/{desked.audit_id}"
    forms = [
        ("/audits", {"branch": "510107", "level": "II", "aql": "2.5"}),
        (f"{base}/policies/{CHENGDU[0]}/findings", {"check": "完整性:", "severity": "major", "text": "x"}),
        (f"{base}/sign-off", {"decision": "accept", "comment": ""}),
    ]
    for url, form in forms:
        assert li.post(url, form, csrf=False).status_code == 403, url
        assert li.client.post(url, data={**form, "csrf": "forged"}).status_code == 403, url
    assert [e.action for e in desked.index.ledger_entries(subject=desked.audit_id)] == ["audit.completed"]
    assert desked.app.extensions["desk_audits"].job(LocalAccounts(desked.index).get("li"), "x") is None


def test_an_auditor_of_other_branches_is_refused_this_lot_and_its_policies(desked):
    zhao = desked.browser("zhao")
    base = f"/audits/{desked.audit_id}"
    assert desked.audit_id not in zhao.get("/audits").data.decode()
    for url in (
        base,
        f"{base}/policies/{CHENGDU[0]}",
        f"{base}/policies/{CHENGDU[0]}/pages/1.png",
        f"{base}/report.html",
        f"/policies/{CHENGDU[0]}/v1/archive.pdf",
    ):
        assert zhao.get(url).status_code == 403, url
    finding = {"check": "完整性:", "severity": "major", "text": "x"}
    assert zhao.post(f"{base}/policies/{CHENGDU[0]}/findings", finding).status_code == 403
    assert zhao.post(f"{base}/sign-off", {"decision": "accept"}).status_code == 403
    # a lot is drawn within one's branches: not another's, not the whole archive
    assert zhao.post("/audits", {"branch": "510107", "level": "II", "aql": "2.5"}).status_code == 403
    assert zhao.post("/audits", {"branch": "", "level": "II", "aql": "2.5"}).status_code == 403
    assert [e.action for e in desked.index.ledger_entries(subject=desked.audit_id)] == ["audit.completed"]
    assert desked.events(CHENGDU[0], "copy.read") == []


# --- PostgreSQL ------------------------------------------------------------------------------------------


def test_draw_find_and_sign_off_on_postgresql(sealing_maker, postgres_server, tmp_path):
    url = postgres_server()
    _file_and_add_users(tmp_path, sealing_maker, url)
    desk, app = _open(tmp_path, url)
    try:
        desked = Desked(tmp_path, desk, app, "")
        _drawn, _first, audit_id = _draw(desked)
        li = desked.browser("li")
        page = li.get(f"/audits/{audit_id}").data.decode()
        assert _plan_of(page)["code-letter"] == "A" and 'id="defects">0 / 2' in page
        base = f"/audits/{audit_id}"
        finding = {"check": "完整性:required_images", "severity": "critical", "text": "未签字"}
        assert li.post(f"{base}/policies/{CHENGDU[0]}/findings", finding).status_code == 303
        assert 'id="defects">1 / 2' in li.get(base).data.decode()
        assert li.post(f"{base}/sign-off", {"decision": "reject", "comment": ""}).status_code == 303
        assert li.post(f"{base}/policies/{CHENGDU[1]}/findings", finding).status_code == 403
        actions = [e.action for e in desk.index.ledger_entries(subject=audit_id)]
        assert actions == ["audit.completed", "audit.finding", "audit.signed_off"]
        assert desk.index.verify_ledger() == []
    finally:
        desk.close()
