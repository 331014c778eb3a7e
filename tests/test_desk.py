"""The desk's rules through its pages (Flask's test client; the browser tests are test_desk_browser.py).

A real archive: three sample policies filed by the real pipeline (LibreOffice, seals, the SPECIMEN
signature), the index on SQLite and on a real PostgreSQL (``index_url``). What is checked: sign-in and
its CSRF token, sessions (idle expiry by the desk's clock, sign-out, a disabled user), the clerk's
search (an ID number only by POST and never in the log), the branch limit, the reissue with a
supervisor's approval (four eyes, the requester checked against the applicant and the insured, a branch
without approval), the ledger events naming the user, the security headers, the public pages.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archive.index import Index
from archive.serials import issue_range
from archive.users import LocalAccounts
from cli.main import main
from core.config import load_settings
from desk.app import create_app
from usecases.desk import Desk

KEY = "desk-test-hmac-key-0123456789abcdef"
SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample-batch" / "batch.jsonl"
# 440305 motor (and line 7, its plate change); 510107 accident ×2; 440305 home (and line 15, its surrender)
CHOSEN = ("SAMPLE-001", "SAMPLE-005", "SAMPLE-006", "SAMPLE-004", "SAMPLE-007", "SAMPLE-015")
POLICY = "PPA20260127026000003"  # SAMPLE-005, branch 510107
OTHER_BRANCH = "PDAA264403050260000001"  # SAMPLE-001, branch 440305, plate 粤BD74443
APPLICANT_ID = "510107196105290559"  # SAMPLE-005's applicant (样本 SPECIMEN)
INSURED_ID = "510107200602107566"
PASSWORD = "desk-test-password"
SURRENDERED_APPLICANT_ID = "440305198507319480"  # SAMPLE-004's applicant (样本 SPECIMEN)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filed(request, tmp_path_factory) -> dict:
    """The three sample policies filed with the real pipeline; users of each role."""
    base = tmp_path_factory.mktemp(f"desk-{request.param}")
    index_url = (
        f"sqlite:///{base / 'index.sqlite'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_server")()
    )
    records = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if _record_id(line) in CHOSEN]
    shutil.copytree(SAMPLE.parent, base / "inbox")  # the records' images lie beside the batch
    batch = base / "inbox" / "batch.jsonl"
    batch.write_text("\n".join(records) + "\n", encoding="utf-8")
    env = {
        "ISSUANCE_STORE": (base / "archive").as_uri(),
        "ISSUANCE_INDEX": index_url,
        "ISSUANCE_HMAC_KEY": KEY,
        "ISSUANCE_SCRATCH": str(base / "scratch"),
        "ISSUANCE_CACHE": str(base / "cache"),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        for name, value in env.items():
            mp.setenv(name, value)
        assert main(["signer", "specimen"]) == 0
        assert main(["run", str(batch)]) == 0
        settings = load_settings(base=base, env=dict(env))
    index = Index.open(index_url, hmac_key=KEY.encode())
    accounts = LocalAccounts(index)
    for name, roles, branches in [
        ("clerk51", ["clerk"], ["51"]),
        ("clerk44", ["clerk"], ["44"]),
        ("super51", ["supervisor"], ["51"]),
        ("super51b", ["supervisor"], ["5101"]),
        ("auditor", ["auditor"], []),
        ("operator", ["operator"], []),
        ("admin", ["admin"], []),
    ]:
        accounts.add(name, roles=roles, branches=branches, display_name=None, password=PASSWORD, by="test")
    index.close()
    return {"settings": settings, "index_url": index_url, "base": base}


def _record_id(line: str) -> str | None:
    try:
        return json.loads(line).get("record_id")
    except ValueError:
        return None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def desk(filed, clock):
    with Desk(filed["settings"], clock=clock) as d:
        yield d


@pytest.fixture
def app(filed, desk):
    return create_app(filed["settings"], desk=desk)


def _hidden(html: str, name: str = "csrf") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name} in the page"
    return found.group(1)


def sign_in(app, name: str, password: str = PASSWORD):
    client = app.test_client()
    login = client.get("/login")
    answer = client.post("/login", data={"name": name, "password": password, "csrf": _hidden(login.text)})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(client, path: str = "/") -> str:
    return _hidden(client.get(path).text)


def ledger(filed, action: str) -> list:
    index = Index.open(filed["index_url"], hmac_key=KEY.encode())
    try:
        return [e for e in index.ledger_entries() if e.action == action]
    finally:
        index.close()


# --- signing in ----------------------------------------------------------------------------------------


def test_pages_need_a_session_and_sign_in_needs_the_forms_token(app):
    client = app.test_client()
    answer = client.get("/policies?q=x")
    assert answer.status_code == 401 and 'name="password"' in answer.text
    client.get("/login")
    refused = client.post("/login", data={"name": "clerk51", "password": PASSWORD, "csrf": "forged"})
    assert refused.status_code == 403
    assert "issuance_session" not in (refused.headers.get("Set-Cookie") or "")


def test_session_cookie_and_security_headers(app):
    client = app.test_client()
    login = client.get("/login")
    answer = client.post(
        "/login", data={"name": "clerk51", "password": PASSWORD, "csrf": _hidden(login.text)}
    )
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith("issuance_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"


def test_cookies_are_secure_behind_an_https_proxy(filed, desk):
    app = create_app(filed["settings"], desk=desk, proxied=True)
    client = app.test_client()
    https = {"X-Forwarded-Proto": "https"}
    login = client.get("/login", headers=https)
    answer = client.post(
        "/login",
        data={"name": "clerk51", "password": PASSWORD, "csrf": _hidden(login.text)},
        headers=https,
    )
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith("issuance_session="))
    assert "Secure" in cookie


def test_wrong_password_is_refused_alike_for_unknown_names(app):
    for name in ("clerk51", "nobody-here"):
        client = app.test_client()
        login = client.get("/login")
        answer = client.post(
            "/login", data={"name": name, "password": "wrong-password!", "csrf": _hidden(login.text)}
        )
        assert answer.status_code == 401
        assert "Name or password not accepted" in answer.text


def test_idle_session_expires_by_the_clock_and_sign_out_ends_it(app, clock, filed):
    client = sign_in(app, "clerk51")
    assert client.get("/").status_code == 200
    clock.now += timedelta(minutes=filed["settings"].session_minutes + 1)
    expired = client.get("/")
    assert expired.status_code == 401 and "without use" in expired.text
    client = sign_in(app, "clerk51")
    cookie = client.get_cookie("issuance_session").value
    assert client.post("/logout", data={"csrf": csrf_of(client)}).status_code == 303
    replay = app.test_client()
    replay.set_cookie("issuance_session", cookie)
    assert replay.get("/").status_code == 401
    assert ledger(filed, "desk.signed_out") and ledger(filed, "desk.session_expired")


def test_a_disabled_user_is_signed_out_at_once(app, desk):
    accounts = LocalAccounts(desk.index)
    accounts.add("temp-clerk", roles=["clerk"], branches=["51"], display_name=None, password=PASSWORD, by="t")
    client = sign_in(app, "temp-clerk")
    assert client.get("/").status_code == 200
    accounts.disable("temp-clerk", by="test")
    assert client.get("/").status_code == 401


# --- finding ------------------------------------------------------------------------------------------


def test_find_by_number_plate_and_name_within_the_branches(app):
    clerk = sign_in(app, "clerk51")
    assert POLICY in clerk.get(f"/policies?q={POLICY}").text
    assert POLICY in clerk.get("/policies?q=欧阳·𠮷祥").text
    # the motor policy is at 440305: not a branch-51 clerk's, found by its own branch's clerk
    assert OTHER_BRANCH not in clerk.get("/policies?q=粤BD74443").text
    assert OTHER_BRANCH in sign_in(app, "clerk44").get("/policies?q=粤BD74443").text
    assert clerk.get(f"/policies/{OTHER_BRANCH}").status_code == 403


def test_a_changed_plate_finds_the_policy_by_old_and_new_and_the_page_lists_both(app):
    clerk = sign_in(app, "clerk44")
    for plate in ("粤BD74443", "粤BD73521"):  # sample line 7 changes the first to the second
        assert OTHER_BRANCH in clerk.get(f"/policies?q={plate}").text, plate
    page = clerk.get(f"/policies/{OTHER_BRANCH}").text
    history = page[page.index('id="history"') :]
    assert history.index("粤BD74443") < history.index("粤BD73521")
    assert "号牌号码" in history


def test_a_surrendered_policy_shows_it_and_is_never_reissued(app):
    clerk = sign_in(app, "clerk44")
    found = clerk.get("/policies?q=261101120260000005").text
    assert "已退保" in found and "EHP20261127026000015" in found
    page = clerk.get("/policies/261101120260000005").text
    assert "已退保" in page and "EHP20261127026000015" in page and "不予补发" in page
    assert 'action="/policies/261101120260000005/reissue"' not in page  # no form to ask with
    asked = clerk.post(
        "/policies/261101120260000005/reissue",
        data={"reason": "lost", "requester_id_no": SURRENDERED_APPLICANT_ID, "csrf": csrf_of(clerk)},
    )
    assert asked.status_code == 409
    assert "surrendered" in asked.text and "EHP20261127026000015" in asked.text


def test_the_public_page_says_surrendered_from_the_surrender_on(app, desk):
    """The QR code of the original schedule answers 已退保 once the surrender is effective (2026-12-01)."""
    first = desk.index.versions("261101120260000005")[0]
    page = app.test_client().get(f"/verify/{first.verify_code}")
    assert page.status_code == 200 and "已退保 surrendered" in page.text


def test_find_by_id_number_only_by_post_and_never_logged(app, caplog, filed):
    clerk = sign_in(app, "clerk51")
    with caplog.at_level(logging.DEBUG):
        answer = clerk.post(
            "/policies/by-id", data={"id_no": INSURED_ID, "csrf": csrf_of(clerk, "/policies")}
        )
    assert answer.status_code == 200 and POLICY in answer.text
    assert INSURED_ID not in caplog.text
    assert INSURED_ID not in answer.text  # the page shows the masked form
    by_url = clerk.get(f"/policies/by-id?id_no={INSURED_ID}")  # a number in a URL is not searched
    assert by_url.status_code != 200 and POLICY not in by_url.text
    searched = ledger(filed, "desk.searched_by_id")
    assert searched and INSURED_ID not in json.dumps([e.detail for e in searched])


def test_roles_are_refused_what_is_not_theirs(app):
    operator = sign_in(app, "operator")
    assert operator.get(f"/policies?q={POLICY}").status_code == 403
    assert operator.get(f"/policies/{POLICY}").status_code == 403
    auditor = sign_in(app, "auditor")
    assert auditor.get(f"/policies?q={POLICY}").status_code == 403  # auditors sample, they do not search
    assert auditor.get(f"/policies/{POLICY}").status_code == 200
    assert auditor.get(f"/policies/{POLICY}/v1/archive.pdf").status_code == 200
    assert sign_in(app, "clerk51").get(f"/policies/{POLICY}/v1/archive.pdf").status_code == 403


def test_the_policy_page_its_pages_and_copy_are_recorded(app, filed):
    clerk = sign_in(app, "clerk51")
    page = clerk.get(f"/policies/{POLICY}")
    assert page.status_code == 200
    assert "510***********0559" in page.text and APPLICANT_ID not in page.text
    thumbnail = clerk.get(f"/policies/{POLICY}/v1/pages/1.png")
    assert thumbnail.status_code == 200 and thumbnail.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert clerk.get(f"/policies/{POLICY}/v1/pages/99.png").status_code == 404
    pdf = clerk.get(f"/policies/{POLICY}/v1/customer.pdf")
    assert pdf.data.startswith(b"%PDF") and pdf.headers["Cache-Control"] == "no-store"
    viewed = [e for e in ledger(filed, "desk.policy_viewed") if e.subject == POLICY]
    read = [e for e in ledger(filed, "copy.read") if e.subject == POLICY and e.detail["copy"] == "customer"]
    assert viewed[-1].actor == "clerk51" and read[-1].actor == "clerk51"


# --- reissue with approval ------------------------------------------------------------------------------


def _request(client, requester: str, serial: str | None = None):
    data = {"reason": "lost", "requester_id_no": requester, "csrf": csrf_of(client, f"/policies/{POLICY}")}
    if serial:
        data["new_serial"] = serial
    return client.post(f"/policies/{POLICY}/reissue", data=data)


def test_reissue_needs_the_customer_and_a_second_person(app, filed):
    clerk = sign_in(app, "clerk51")
    stranger = _request(clerk, "110101199001011237")
    assert stranger.status_code == 409 and "not the applicant" in stranger.text

    asked = _request(clerk, APPLICANT_ID)
    assert asked.status_code == 303
    request_path = asked.headers["Location"]
    number = int(request_path.rsplit("/", 1)[1])
    assert "pending" in clerk.get(request_path).text
    assert clerk.get(f"/reissues/{number}/copy.pdf").status_code == 409  # not released before approval
    # the clerk cannot approve (no supervisor role), a supervisor of another branch neither
    assert (
        clerk.post(
            f"/reissues/{number}/decision", data={"decision": "approve", "csrf": csrf_of(clerk)}
        ).status_code
        == 403
    )
    supervisor = sign_in(app, "super51")
    assert POLICY in supervisor.get("/reissues").text
    no_token = supervisor.post(f"/reissues/{number}/decision", data={"decision": "approve"})
    assert no_token.status_code == 403
    approved = supervisor.post(
        f"/reissues/{number}/decision", data={"decision": "approve", "csrf": csrf_of(supervisor)}
    )
    assert approved.status_code == 303
    page = clerk.get(request_path).text
    assert "released" in page and 'id="print"' in page
    copy = clerk.get(f"/reissues/{number}/copy.pdf")
    assert copy.status_code == 200 and copy.data.startswith(b"%PDF")
    # reissued without a new form: the old serial is void and no serial is current
    policy_page = clerk.get(f"/policies/{POLICY}").text
    assert (
        '<span class="mono" id="serial">—</span><br><span class="mono">202651010772057290</span>'
        in policy_page
    )
    again = supervisor.post(
        f"/reissues/{number}/decision", data={"decision": "approve", "csrf": csrf_of(supervisor)}
    )
    assert again.status_code == 409  # decided already: never filed twice
    actors = {
        e.action: e.actor for e in ledger(filed, "reissue.approved") + ledger(filed, "reissue.requested")
    }
    assert actors == {"reissue.approved": "super51", "reissue.requested": "clerk51"}
    printed = [e for e in ledger(filed, "copy.read") if e.detail.get("copy") == "reissue"]
    assert printed[-1].actor == "clerk51" and printed[-1].detail["purpose"] == "print"


def test_a_supervisor_does_not_approve_their_own_request(app):
    supervisor = sign_in(app, "super51b")
    asked = _request(supervisor, INSURED_ID)
    number = int(asked.headers["Location"].rsplit("/", 1)[1])
    own = supervisor.post(
        f"/reissues/{number}/decision", data={"decision": "approve", "csrf": csrf_of(supervisor)}
    )
    assert own.status_code == 409 and "another person" in own.text
    refused = sign_in(app, "super51").post(
        f"/reissues/{number}/decision",
        data={"decision": "refuse", "note": "<b>证件不符</b>", "csrf": csrf_of(supervisor)},
    )
    assert refused.status_code == 403  # the form token is the session's: another's is refused


def test_a_branch_without_approval_releases_at_once(filed, clock):
    settings = filed["settings"].__class__(
        **{**filed["settings"].__dict__, "no_approval_branches": ("5101",)}
    )
    with Desk(settings, clock=clock) as desk:
        app = create_app(settings, desk=desk)
        issue_range(
            desk.index, first="DESK2026-000101", last="DESK2026-000102", to="clerk51", by="t", branch=None
        )
        old = desk.index.policy_row(POLICY).print_serial
        clerk = sign_in(app, "clerk51")
        asked = _request(clerk, INSURED_ID, serial="DESK2026-000101")
        assert asked.status_code == 303
        assert "released" in clerk.get(asked.headers["Location"]).text
        # the policy page names the form the policy is on now, and the old one as void
        page = clerk.get(f"/policies/{POLICY}").text
        assert re.search(r'id="serial">DESK2026-000101<', page)
        assert re.search(rf'{old}</span> <span class="status bad">作废 void', page)


# --- the public -------------------------------------------------------------------------------------------


def test_public_verification_by_code_and_by_upload(app, desk):
    code = desk.index.versions(POLICY)[0].verify_code
    page = app.test_client().get(f"/verify/{code}")
    assert page.status_code == 200 and POLICY in page.text
    assert "欧阳·𠮷祥" not in page.text and INSURED_ID not in page.text
    assert app.test_client().get("/verify/AAAAAAAAAAAAAAAAAAAA").status_code == 404
    pdf = desk.archive.store.get(desk.index.versions(POLICY)[0].customer_key)
    client = app.test_client()
    form = client.get("/verify")
    data = {"csrf": _hidden(form.text)}
    from io import BytesIO

    checked = client.post(
        "/verify", data={**data, "pdf": (BytesIO(pdf), "p.pdf")}, content_type="multipart/form-data"
    )
    assert checked.status_code == 200 and "是 yes" in checked.text and "有效 valid" in checked.text
    tampered = pdf.replace(b"/Producer", b"/Producex", 1) if b"/Producer" in pdf else pdf + b"\n%x\n"
    client = app.test_client()
    form = client.get("/verify")
    checked = client.post(
        "/verify",
        data={"csrf": _hidden(form.text), "pdf": (BytesIO(tampered), "p.pdf")},
        content_type="multipart/form-data",
    )
    assert "否 no" in checked.text
