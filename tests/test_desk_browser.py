"""The desk in a real browser (issue 24, "Done when"): Debian's Chromium driven by Playwright against
``issuance serve`` running as a subprocess over the sample batch filed by the real pipeline (LibreOffice,
the SPECIMEN signer: real QR codes and signatures). A clerk finds, opens, reissues with a supervisor's
approval and prints; every route of ``desk.app.ROUTES`` is tried by every role; CSRF, lockout, session
expiry, logout; the public verification page for a QR code read back from a filed copy; security headers
and cookies; the README's screenshots.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from desk.app import ROUTES, create_app
from stamps.keys import load_certificates
from stamps.signing import check_signatures
from tests.desk_browser import (
    PASSWORD,
    PEOPLE,
    REPO,
    SAMPLE,
    DeskServer,
    FiledDesk,
    Person,
    desk_env,
    file_sample,
    form_token,
    free_port,
    issuance,
    launch,
    sign_in,
    texts,
)
from usecases.desk import PERMISSIONS

pytestmark = pytest.mark.timeout(900)

RECORDS = {}
for _line in SAMPLE.read_text(encoding="utf-8").splitlines():
    try:
        _record = json.loads(_line)
    except ValueError:
        continue  # line 12 is broken on purpose
    if _record.get("kind") == "policy":
        RECORDS.setdefault(_record["policy_no"], _record)

CAR = "PDAA264403050260000001"  # branch 440305, the sample's car policy with a plate (line 1)
PLATE = RECORDS[CAR]["vehicle"]["plate"]
QR_POLICY = "PPA20260127026000003"  # branch 510107: its filed copy's QR code is read back
MATRIX_POLICY = "PPA20260804026000006"  # branch 510107: the role matrix's policy and reissue request
MATRIX_BRANCH = RECORDS[MATRIX_POLICY]["branch"]["code"]
PICTURES = REPO / "examples" / "pictures"
LOCK_TEXT = "locked for 15 minutes"
NOT_ACCEPTED = "Name or password not accepted"


# --- fixtures: one filed sample, one server, one Chromium -----------------------------------------------


@pytest.fixture(scope="session")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiledDesk]:
    folder = tmp_path_factory.mktemp("desk")
    port = free_port()
    env = desk_env(folder, port=port)
    file_sample(folder, env)
    server = DeskServer(folder=folder, env=env, port=port, log=folder / "serve.log")
    try:
        yield FiledDesk(folder, env, server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator:
    """Contexts as needed (a clerk's and a supervisor's browser), all closed after the test."""
    made: list[BrowserContext] = []

    def make() -> BrowserContext:
        made.append(browser.new_context(viewport={"width": 1280, "height": 900}))
        return made[-1]

    try:
        yield make
    finally:
        for ctx in made:
            ctx.close()


def request_reissue(page: Page, desk: FiledDesk, policy_no: str, requester_id_no: str):
    """Fill the policy page's reissue form; the answer to its POST."""
    page.goto(f"{desk.url}/policies/{policy_no}")
    page.select_option("#reason", "lost")
    page.fill("#requester_id_no", requester_id_no)
    with page.expect_response(lambda r: r.url.endswith(f"/policies/{policy_no}/reissue")) as answer:
        page.click("#reissue button[type=submit]")
    page.wait_for_load_state()
    return answer.value


def approve(page: Page, desk: FiledDesk, request_id: int) -> None:
    """A supervisor approves ``request_id`` from the approvals queue."""
    page.goto(desk.url + "/reissues")
    row = page.locator("#queue tr", has=page.locator(f'a[href="/reissues/{request_id}"]'))
    with page.expect_navigation():
        row.locator("button[name=approve]").click()


@pytest.fixture(scope="module")
def released_request(desk: FiledDesk, browser: Browser) -> int:
    """A reissue of the matrix policy (branch 51) requested by clerk51 and approved by super51."""
    clerk_ctx, super_ctx = browser.new_context(), browser.new_context()
    try:
        clerk = sign_in(clerk_ctx, desk.url, "clerk51")
        answer = request_reissue(clerk, desk, MATRIX_POLICY, RECORDS[MATRIX_POLICY]["applicant"]["id_no"])
        assert answer.status == 303, clerk.content()
        request_id = int(re.search(r"/reissues/(\d+)$", clerk.url).group(1))
        approve(sign_in(super_ctx, desk.url, "super51"), desk, request_id)
        with desk.index() as index:
            assert index.reissue_request(request_id).status == "released"
        return request_id
    finally:
        clerk_ctx.close()
        super_ctx.close()


def signatures_of(data: bytes, desk: FiledDesk) -> list:
    """``check_signatures`` on a thread of its own: pyHanko runs an asyncio loop, which cannot start on
    the thread where Playwright's synchronous API keeps one running."""
    roots = list(load_certificates(desk.trust_roots()))
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(check_signatures, data, roots=roots).result()


def pdf_text(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True, timeout=60
    ).stdout


# --- 1. a clerk finds, opens, reissues with a supervisor's approval, and prints --------------------------


def test_clerk_finds_reissues_with_approval_and_prints(desk: FiledDesk, new_context, tmp_path: Path):
    record = RECORDS[CAR]
    insured_id = record["insured"]["id_no"]
    clerk_ctx = new_context()
    clerk = sign_in(clerk_ctx, desk.url, "clerk44")
    assert clerk.locator("[data-user=clerk44]").count() == 1

    # by plate (a GET: a plate may be in a URL)
    clerk.goto(desk.url + "/policies")
    clerk.fill("#q", PLATE)
    with clerk.expect_navigation():
        clerk.press("#q", "Enter")
    assert CAR in clerk.inner_text("#results")

    # by ID number: POSTed, never in the URL nor in the server's log
    clerk.fill("#id_no", insured_id)
    with clerk.expect_navigation():
        clerk.click("form[action='/policies/by-id'] button")
    assert clerk.url == desk.url + "/policies/by-id"
    assert insured_id not in clerk.url
    assert CAR in clerk.inner_text("#results")
    assert insured_id not in clerk.content()  # the results show it masked
    searches = texts(desk.ledger(), "desk.searched_by_id")
    assert ("clerk44", {"found": 1}) in searches

    # open it: the page images load
    with clerk.expect_navigation():
        clerk.click(f"#results a:has-text('{CAR}')")
    assert clerk.inner_text("#policy-no") == CAR
    for image in clerk.locator("#pages img").all():
        image.scroll_into_view_if_needed()
    clerk.wait_for_load_state("networkidle")
    widths = clerk.eval_on_selector_all("#pages img", "images => images.map(i => i.naturalWidth)")
    assert widths and all(w > 0 for w in widths), widths

    # a wrong requester ID number (a real one, of another policy) is refused, and nothing is filed
    with desk.index() as index:
        before = index.reissue_requests(policy_no=CAR)
    stranger = RECORDS["26110105120260000002"]["applicant"]["id_no"]
    refused = request_reissue(clerk, desk, CAR, stranger)
    assert refused.status == 409
    assert "not the applicant's or the insured's" in clerk.inner_text("#error-message")
    with desk.index() as index:
        assert index.reissue_requests(policy_no=CAR) == before
        assert [r for r in index.reissues(CAR)] == []

    # the customer's own ID number: a request waits for a supervisor
    asked = request_reissue(clerk, desk, CAR, insured_id)
    assert asked.status == 303
    request_id = int(re.search(r"/reissues/(\d+)$", clerk.url).group(1))
    assert insured_id not in clerk.url
    assert "pending" in clerk.inner_text("#request-status")
    assert clerk.locator("#print").count() == 0

    # the clerk cannot approve their own branch's request; the supervisor (another browser) does
    assert clerk_ctx.request.get(desk.url + "/reissues", max_redirects=0).status == 403
    supervisor = sign_in(new_context(), desk.url, "super44")
    approve(supervisor, desk, request_id)
    assert "released" in supervisor.inner_text("#request-status")

    # the clerk prints: the reissued copy is a PDF marked 补发 whose last signature is valid
    clerk.goto(f"{desk.url}/reissues/{request_id}")
    href = clerk.get_attribute("#print", "href")
    answer = clerk_ctx.request.get(desk.url + href)
    assert answer.status == 200 and answer.headers["content-type"] == "application/pdf"
    data = answer.body()
    assert data.startswith(b"%PDF-")
    copy = tmp_path / "reissued.pdf"
    copy.write_bytes(data)
    assert "补发" in pdf_text(copy)
    signatures = signatures_of(data, desk)
    assert signatures and signatures[-1].ok, signatures[-1].problems

    ledger = desk.ledger(subject=CAR)
    requested = texts(ledger, "reissue.requested")
    assert ("clerk44", {"request": request_id, "reason": "lost", "requester": "applicant"}) in requested
    assert ("super44", {"request": request_id, "version": 3}) in texts(ledger, "reissue.approved")
    reads = [(actor, d["copy"], d["purpose"]) for actor, d in texts(ledger, "copy.read")]
    assert ("clerk44", "reissue", "print") in reads
    assert ("clerk44", "reissue.requester_refused") in [(e.actor, e.action) for e in ledger]
    assert ("clerk44", {"version": 2}) in texts(ledger, "desk.policy_viewed")
    # the ID numbers typed went nowhere but into an HMAC; the access log has paths, no query strings
    log = desk.server.output()
    assert insured_id not in log and stranger not in log
    assert "GET /policies 200" in log and "?q=" not in log and PLATE not in log
    assert insured_id not in json.dumps([e.detail for e in desk.ledger()], ensure_ascii=False)
    with desk.index() as index:
        assert index.verify_ledger() == []  # the events went into the chain, which is intact
        first = next(v.verify_code for v in index.versions(CAR) if v.version == 1)

    # the original's QR code now tells the public it was reissued, and its print serial is void
    public = new_context().new_page()
    assert public.goto(f"{desk.url}/verify/{first}").status == 200
    facts = public.inner_text("#document")
    assert "1 次 times" in facts and "a newer version exists (3)" in facts
    assert f"{record['print_serial']} 作废 void" in facts


# --- 2. every route × every role ------------------------------------------------------------------------

# Every POST carries these fields (a route takes the ones it reads): well formed, so that the branch check
# is what answers rather than a form check before it, and harmless for the allowed roles: a refusal of a
# request decided already, a requester who is not the customer, a search.
FORM = {
    "decision": "refuse",
    "note": "role matrix",
    "reason": "lost",
    "requester_id_no": RECORDS["26110105120260000002"]["applicant"]["id_no"],
    "id_no": RECORDS[MATRIX_POLICY]["applicant"]["id_no"],
}
ARGUMENT = re.compile(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>")  # <converter(args):name>
SIGNED_OUT = None
OWN_USERS = {"lockme", "leaver"}  # the lockout and disable tests' own users stay out of the matrix


def route_matrix(desk: FiledDesk) -> tuple[dict[str, str], dict[str, set[str]]]:
    """``desk.app.ROUTES`` (who may open each rule) and each rule's methods, from the app as built."""
    app = create_app(desk.settings())
    try:
        methods: dict[str, set[str]] = {}
        for rule in app.url_map.iter_rules():
            if rule.rule in ROUTES:
                methods.setdefault(rule.rule, set()).update(rule.methods & {"GET", "POST"})
        return dict(ROUTES), methods
    finally:
        app.extensions["desk"].close()


def fill(rule: str, known: dict[str, str]) -> tuple[str, bool, bool]:
    """The rule with values: (path, every parameter known, bound to the matrix policy's branch).
    A parameter of a route added later gets ``1``, which fits an int converter and a text one."""
    all_known, bound = True, False

    def value(match: re.Match[str]) -> str:
        nonlocal all_known, bound
        name = match.group(1)
        if name in known:
            bound = bound or name in ("policy_no", "request_id")
            return known[name]
        all_known = False
        return "1"

    return ARGUMENT.sub(value, rule), all_known, bound


def expectation(person: Person | None, who: str, bound: bool) -> str:
    """What ``person`` should get: "allowed", "signin" (401), "role" (403), or "branch" (refused)."""
    if who == "public":
        return "allowed"
    if person is None:
        return "signin"
    if who == "signed-in":
        return "allowed"
    if person.role not in PERMISSIONS[who]:
        return "role"
    if bound and person.branch and not MATRIX_BRANCH.startswith(person.branch):
        return "branch"
    return "allowed"


def test_every_route_refuses_every_role_it_is_not_for(
    desk: FiledDesk, browser: Browser, released_request: int
):
    routes, methods = route_matrix(desk)
    assert routes and set(routes) == set(methods)
    with desk.index() as index:
        code = next(v.verify_code for v in index.versions(MATRIX_POLICY) if v.version == 1)
    known = {
        "policy_no": MATRIX_POLICY,
        "version": "1",
        "page_no": "1",
        "request_id": str(released_request),
        "code": code,
        "batch_id": next((desk.folder / "var" / "reports").glob("*.json")).stem,  # the filed sample's
    }
    people: list[Person | None] = [SIGNED_OUT, *(p for p in PEOPLE.values() if p.name not in OWN_USERS)]
    # logout ends the session it is tried with: it goes last
    order = sorted(routes, key=lambda rule: rule == "/logout")
    wrong, seen = [], []
    for person in people:
        ctx = browser.new_context()
        try:
            if person is not None:
                token = form_token(sign_in(ctx, desk.url, person.name).content())
            for rule in order:
                who = routes[rule]
                path, all_known, bound = fill(rule, known)
                expected = expectation(person, who, bound)
                for method in sorted(methods[rule]):
                    if method == "GET":
                        answer = ctx.request.get(desk.url + path, max_redirects=0)
                    else:
                        # with a good form token: a refusal must come from the role, not from CSRF
                        if who == "public":  # the sign-in form's token goes with its nonce cookie
                            form_page = ctx.request.get(desk.url + "/login", max_redirects=0)
                            form = {"csrf": form_token(form_page.text())}
                        else:
                            form = {**FORM, "csrf": token} if person is not None else dict(FORM)
                        answer = ctx.request.post(desk.url + path, form=form, max_redirects=0)
                    status = answer.status
                    seen.append((person and person.name, method, path, status))
                    if expected == "signin":
                        ok = status == 401 and (method == "POST" or 'id="password"' in answer.text())
                    elif expected == "role":
                        ok = status == 403
                    elif expected == "branch":
                        # a request of another branch is "not found" for its stranger, a policy is 403
                        ok = status in (403, 404)
                    else:
                        # the session is accepted and nothing breaks; "not 403" only where every value
                        # in the path is real (an unknown parameter's value may well be refused)
                        ok = status < 500 and (who == "public" or status != 401)
                        ok = ok and (status != 403 or not all_known)
                    if not ok:
                        wrong.append((person and person.name, method, path, expected, status))
        finally:
            ctx.close()
    assert not wrong, "\n".join(map(str, wrong))
    # the matrix did reach the pages: each role opened something only it may
    opened = {(name, path) for name, method, path, status in seen if method == "GET" and status == 200}
    assert ("clerk51", f"/policies/{MATRIX_POLICY}") in opened
    assert ("auditor1", f"/policies/{MATRIX_POLICY}/v1/archive.pdf") in opened
    assert ("super51", "/reissues") in opened
    assert ("clerk51", f"/reissues/{released_request}/copy.pdf") in opened
    assert ("operator1", "/operations/batches/" + known["batch_id"]) in opened


def test_a_clerk_of_another_branch_is_refused_the_policy(desk: FiledDesk, context: BrowserContext):
    sign_in(context, desk.url, "clerk51")
    for path in (f"/policies/{CAR}", f"/policies/{CAR}/v1/customer.pdf", f"/policies/{CAR}/v1/pages/1.png"):
        assert context.request.get(desk.url + path, max_redirects=0).status == 403, path
    page = context.new_page()
    page.goto(f"{desk.url}/policies?q={PLATE}")
    assert CAR not in page.content()  # a search finds only the user's branches
    assert "0 条结果" in page.inner_text("main")


# --- 3. CSRF ---------------------------------------------------------------------------------------------


class OtherOrigin:
    """A page on another origin (another port) with a form that posts to the desk, as an attacker's."""

    def __init__(self, folder: Path, html: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.html").write_text(html, encoding="utf-8")
        handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_forms_without_the_token_or_from_another_origin_are_refused(
    desk: FiledDesk, context: BrowserContext, tmp_path: Path
):
    record = RECORDS[QR_POLICY]
    target = f"{desk.url}/policies/{QR_POLICY}/reissue"
    fields = {"reason": "lost", "requester_id_no": record["applicant"]["id_no"]}
    page = sign_in(context, desk.url, "clerk51")
    token = form_token(page.content())

    def requests() -> list:
        with desk.index() as index:
            return index.reissue_requests(policy_no=QR_POLICY)

    before = requests()
    for form in (fields, {**fields, "csrf": "not-the-token"}, {**fields, "csrf": ""}):
        answer = context.request.post(target, form=form, max_redirects=0)
        assert answer.status == 403, form.get("csrf")
        assert "did not come from this desk" in answer.text()
    assert requests() == before

    # a page of another origin posts the same form with the clerk's cookie (same site: SameSite=Lax
    # lets the cookie go; the token is what refuses it), then of another site (no cookie at all)
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    html = f'<form method="post" action="{target}">{inputs}<button id="go">win a prize</button></form>'
    other = OtherOrigin(tmp_path / "evil", html)
    try:
        for host, refused in (("127.0.0.1", {403}), ("localhost", {401, 403})):
            evil = context.new_page()
            evil.goto(f"http://{host}:{other.port}/index.html")
            with evil.expect_response(lambda r: r.url == target) as answer:
                evil.click("#go")
            assert answer.value.status in refused, (host, answer.value.status)
    finally:
        other.close()
    assert requests() == before

    # the sign-in form too: the right password without the form's token opens no session
    bare = context.browser.new_context()
    try:
        form = {"name": "clerk51", "password": PASSWORD}
        assert bare.request.post(desk.url + "/login", form=form, max_redirects=0).status == 403
        assert not [c for c in bare.cookies() if c["name"] == "issuance_session"]
    finally:
        bare.close()

    # the same form with the session's token goes through: what refused the others was the token
    answer = context.request.post(target, form={**fields, "csrf": token}, max_redirects=0)
    assert answer.status == 303
    assert len(requests()) == len(before) + 1


# --- 4. lockout ------------------------------------------------------------------------------------------


def login_attempt(page: Page, desk: FiledDesk, name: str, password: str) -> int:
    page.goto(desk.url + "/login")
    page.fill("#name", name)
    page.fill("#password", password)
    with page.expect_response(
        lambda r: r.url.startswith(desk.url + "/login") and r.request.method == "POST"
    ) as a:
        page.click("form button[type=submit]")
    page.wait_for_load_state()
    return a.value.status


def test_ten_wrong_passwords_lock_the_account(desk: FiledDesk, context: BrowserContext):
    page = context.new_page()
    for _ in range(10):
        assert login_attempt(page, desk, "lockme", "wrong-password-123") == 401
        assert NOT_ACCEPTED in page.inner_text("main")
    assert login_attempt(page, desk, "lockme", PASSWORD) == 401
    assert LOCK_TEXT in page.inner_text("main")
    assert not [c for c in context.cookies() if c["name"] == "issuance_session"]
    ledger = desk.ledger(subject="lockme")
    assert [e for e in ledger if e.action == "user.locked"], [e.action for e in ledger]
    assert not [e for e in ledger if e.action == "desk.signed_in"]


# --- 5. session expiry and logout --------------------------------------------------------------------------


def test_an_idle_session_expires(desk: FiledDesk, context: BrowserContext):
    """A second server on the same archive whose sessions end after 6 s without a request."""
    env = desk_env(desk.folder, port=desk.server.port, session_minutes=0.1)
    short = DeskServer(folder=desk.folder, env=env, port=free_port(), log=desk.folder / "serve-short.log")
    try:
        page = sign_in(context, short.url, "auditor1")
        assert page.locator("[data-user=auditor1]").count() == 1
        page.wait_for_timeout(7500)
        answer = page.goto(short.url + "/")
        assert answer.status == 401
        assert "without use" in page.inner_text("main")
        assert page.locator("#password").count() == 1
    finally:
        short.stop()
    assert texts(desk.ledger(subject="auditor1"), "desk.session_expired")


def test_after_logout_the_old_cookie_opens_nothing(
    desk: FiledDesk, browser: Browser, context: BrowserContext
):
    page = sign_in(context, desk.url, "clerk51")
    cookies = context.cookies()
    assert [c for c in cookies if c["name"] == "issuance_session"]
    page.goto(f"{desk.url}/policies/{QR_POLICY}")
    page.wait_for_load_state("networkidle")
    image = page.get_attribute("#pages img", "src")
    with page.expect_navigation():
        page.click("header form button")
    assert page.url.startswith(desk.url + "/login")
    # the counter's browser shows nothing of the customer after sign-out: no page image from its cache,
    # no policy page from its history
    answer = page.goto(desk.url + image)
    assert answer.status == 401 and page.locator("#password").count() == 1
    page.go_back()
    assert page.locator("#password").count() == 1 and QR_POLICY not in page.content()
    replay = browser.new_context()
    try:
        replay.add_cookies(cookies)
        again = replay.new_page()
        for path in ("/", "/policies", f"/policies/{QR_POLICY}"):
            answer = again.goto(desk.url + path)
            assert answer.status == 401, path
            assert again.locator("#password").count() == 1
    finally:
        replay.close()
    assert ("clerk51", {}) in texts(desk.ledger(subject="clerk51"), "desk.signed_out")


def test_a_disabled_user_is_signed_out_at_the_next_page(desk: FiledDesk, context: BrowserContext):
    page = sign_in(context, desk.url, "leaver")
    assert page.locator("[data-user=leaver]").count() == 1
    issuance(["users", "disable", "leaver"], folder=desk.folder, env=desk.env)
    answer = page.goto(f"{desk.url}/policies/{QR_POLICY}")
    assert answer.status == 401 and "disabled" in page.inner_text("main")
    assert login_attempt(page, desk, "leaver", PASSWORD) == 401


# --- 6. the public verification page ------------------------------------------------------------------------


def customer_copy(desk: FiledDesk, context: BrowserContext, policy_no: str, folder: Path) -> Path:
    sign_in(context, desk.url, "auditor1")
    answer = context.request.get(f"{desk.url}/policies/{policy_no}/v1/customer.pdf")
    assert answer.status == 200
    path = folder / f"{policy_no}.pdf"
    path.write_bytes(answer.body())
    return path


def qr_url(pdf: Path) -> str:
    """The verification URL in the QR code of page 1, read back from pixels (pdftoppm, zbarimg)."""
    prefix = pdf.with_suffix("")
    subprocess.run(
        ["pdftoppm", "-r", "150", "-f", "1", "-l", "1", "-png", "-singlefile", str(pdf), str(prefix)],
        check=True,
        timeout=60,
    )
    found = subprocess.run(
        ["zbarimg", "--raw", "-q", str(prefix) + ".png"], capture_output=True, text=True, timeout=60
    )
    assert found.returncode == 0, found.stderr
    return found.stdout.strip().splitlines()[0]


def test_the_public_verification_page_for_a_real_qr_code(
    desk: FiledDesk, browser: Browser, context: BrowserContext, tmp_path: Path
):
    record = RECORDS[QR_POLICY]
    pdf = customer_copy(desk, context, QR_POLICY, tmp_path)
    url = qr_url(pdf)
    assert url.startswith(desk.url + "/verify/"), url

    public = browser.new_context()  # nobody signed in
    try:
        page = public.new_page()
        answer = page.goto(url)
        assert answer.status == 200
        text = page.inner_text("main")
        assert "Issued by this centre" in page.inner_text("#verdict")
        assert QR_POLICY in text
        assert "in force" in page.inner_text("#status")
        for party in ("applicant", "insured"):
            assert record[party]["name"] not in text
            assert record[party]["id_no"] not in page.content()
        assert "*" in text  # the names, masked
        assert not [c for c in public.cookies() if c["name"] == "issuance_session"]

        answer = page.goto(desk.url + "/verify/AAAAAAAAAAAAAAAAAAAA")
        assert answer.status == 404
        assert "Not a document of this centre" in page.inner_text("#verdict")

        tampered = tmp_path / "tampered.pdf"
        data = bytearray(pdf.read_bytes())
        at = data.index(b"/Producer")  # a byte of the document information, inside the signed range
        data[at + 1] = ord("p")
        tampered.write_bytes(bytes(data))
        for upload, issued, signature in ((pdf, "是 yes", "有效 valid"), (tampered, "否 no", None)):
            page.goto(desk.url + "/verify")
            page.set_input_files("#pdf", str(upload))
            with page.expect_navigation():
                page.click("form button[type=submit]")
            assert issued in page.inner_text("#issued"), upload.name
            if signature:
                assert signature in page.inner_text("#signature")
            else:
                assert "有效 valid" not in page.inner_text("#signature")
    finally:
        public.close()


STYLED = "document.styleSheets.length ? document.styleSheets[0].cssRules.length : 0"

# --- 7. security headers and cookies ---------------------------------------------------------------------


def test_security_headers_on_every_page_and_cookie_flags(
    desk: FiledDesk, context: BrowserContext, tmp_path: Path
):
    page = context.new_page()
    answers = [page.goto(desk.url + "/login")]
    login_cookie = [c for c in context.cookies() if c["name"] == "issuance_login"]
    assert login_cookie and login_cookie[0]["httpOnly"] and login_cookie[0]["sameSite"] == "Lax"
    page = sign_in(context, desk.url, "clerk51")
    session = [c for c in context.cookies() if c["name"] == "issuance_session"]
    assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Lax"
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    for path in (
        "/",
        "/policies",
        f"/policies?q={QR_POLICY}",
        f"/policies/{QR_POLICY}",
        f"/policies/{CAR}",  # 403
        "/no-such-page",  # 404
        "/verify",
        "/verify/AAAAAAAAAAAAAAAAAAAA",
        "/static/desk.css",
    ):
        answers.append(page.goto(desk.url + path))
        assert page.evaluate("document.scripts.length") == 0, path
        if path != "/static/desk.css":  # the style sheet applies under the policy (nothing inline)
            assert page.evaluate(STYLED) > 0, path
    assert not [m for m in console if "Content Security Policy" in m], console
    for path in (f"/policies/{QR_POLICY}/v1/pages/1.png", f"/policies/{QR_POLICY}/v1/customer.pdf"):
        answers.append(context.request.get(desk.url + path))
    for answer in answers:
        headers = answer.headers
        csp = headers.get("content-security-policy", "")
        assert csp, answer.url
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, answer.url
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, answer.url
        assert headers.get("x-content-type-options") == "nosniff", answer.url
        assert headers.get("x-frame-options") == "DENY", answer.url

    # and the browser obeys: another site's page cannot frame the desk
    other = OtherOrigin(tmp_path / "framer", f'<iframe id="desk" src="{desk.url}/policies"></iframe>')
    try:
        framer = context.new_page()
        framer.goto(f"http://localhost:{other.port}/index.html")
        framer.wait_for_load_state("networkidle")
        framed = framer.frame_locator("#desk")
        assert framed.locator("#q").count() == 0 and framed.locator("#password").count() == 0
    finally:
        other.close()


# --- what else the pages promise --------------------------------------------------------------------------


def test_record_text_is_shown_as_text(desk: FiledDesk, context: BrowserContext):
    """The sample's line 2 names a company with markup and template code: it must print as written."""
    policy_no = "PAC20260619026000004"
    name = RECORDS[policy_no]["applicant"]["name"]
    assert "<" in name and "{{" in name
    page = sign_in(context, desk.url, "auditor1")
    page.goto(f"{desk.url}/policies/{policy_no}")
    names = page.locator("#parties td:nth-child(2)").all_inner_texts()
    assert names and all(n == name for n in names), names
    assert "&lt;示范&gt;" in page.content()


def test_sign_in_returns_to_the_page_asked_for_and_never_to_another_site(
    desk: FiledDesk, context: BrowserContext
):
    page = context.new_page()
    answer = page.goto(f"{desk.url}/policies/{QR_POLICY}")
    assert answer.status == 401
    page.fill("#name", "clerk51")
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("form button[type=submit]")
    assert page.url == f"{desk.url}/policies/{QR_POLICY}"
    for elsewhere in ("//example.com/", "https://example.com/", "/\\example.com"):
        other = context.browser.new_context()
        try:
            page = other.new_page()
            page.goto(f"{desk.url}/login?next={quote(elsewhere)}")
            page.fill("#name", "clerk51")
            page.fill("#password", PASSWORD)
            with page.expect_navigation():
                page.click("form button[type=submit]")
            assert page.url == desk.url + "/", elsewhere
        finally:
            other.close()


def test_cookies_are_secure_behind_an_https_proxy(desk: FiledDesk, context: BrowserContext):
    """``serve --behind-proxy``: a request the proxy marks as HTTPS gets Secure cookies."""
    proxied = DeskServer(
        folder=desk.folder,
        env=desk.env,
        port=free_port(),
        log=desk.folder / "serve-proxied.log",
        options=["--behind-proxy"],
    )
    try:
        https = {"X-Forwarded-Proto": "https"}
        login = context.request.get(proxied.url + "/login", headers=https)
        form = {"csrf": form_token(login.text()), "name": "clerk51", "password": PASSWORD}
        answer = context.request.post(proxied.url + "/login", form=form, headers=https, max_redirects=0)
        assert answer.status == 303
        cookies = [h["value"] for h in answer.headers_array if h["name"].lower() == "set-cookie"]
        session = [c for c in cookies if c.startswith("issuance_session=")]
        assert session and "Secure" in session[0] and "HttpOnly" in session[0], cookies
        plain = context.request.get(proxied.url + "/login")
        cookie = plain.headers["set-cookie"]
        assert cookie.startswith("issuance_login=") and "Secure" not in cookie
    finally:
        proxied.stop()


# --- the README's screenshots ------------------------------------------------------------------------------


def test_screenshots_of_the_desk(desk: FiledDesk, context: BrowserContext, tmp_path: Path):
    """The clerk's policy page and the public verification page at 1280 pixels wide; written to
    examples/pictures/ only when ISSUANCE_SCREENSHOTS=1 (else to a temporary folder, and checked)."""
    folder = PICTURES if os.environ.get("ISSUANCE_SCREENSHOTS") == "1" else tmp_path
    page = sign_in(context, desk.url, "clerk44")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{desk.url}/policies/{CAR}")
    page.wait_for_load_state("networkidle")
    shots = [folder / "desk-policy.png", folder / "desk-verify.png"]
    page.screenshot(path=str(shots[0]))
    pdf = customer_copy(desk, context, QR_POLICY, tmp_path)
    public = context.browser.new_context(viewport={"width": 1280, "height": 520})
    try:
        verify = public.new_page()
        verify.goto(qr_url(pdf))
        verify.screenshot(path=str(shots[1]), full_page=True)
    finally:
        public.close()
    for shot in shots:
        with Image.open(shot) as image:
            assert image.width == 1280
            assert image.convert("L").getextrema()[0] < 128  # something dark was drawn: not a blank page
            # 256 colours are plenty for a page of text and thumbnails, at half the bytes in the repository
            small = image.convert("RGB").quantize(colors=256)
        small.save(shot, optimize=True)


# --- the auditor -----------------------------------------------------------------------------------------


def test_an_auditor_runs_an_audit_records_a_finding_and_signs_off(
    desk: FiledDesk, context: BrowserContext, tmp_path: Path
):
    """The auditor draws a lot of one branch on /audits, waits for the page that refreshes itself, opens a
    sampled policy with its archive copy's pages, records 未签字, and signs off the (now rejected) lot;
    the ledger names the auditor for each step. The sample view is the README's screenshot."""
    page = sign_in(context, desk.url, "auditor1")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{desk.url}/audits")
    page.fill("#branch", MATRIX_BRANCH)
    page.fill("#seed", "20261205")
    page.click("#draw button[type=submit]")
    page.wait_for_selector("#verdict", timeout=300_000)  # the running page refreshes until the audit is done
    audit_id = page.inner_text("#audit-id").strip()
    assert page.inner_text("#lot-size").strip() == "2" and page.inner_text("#verdict")
    first = page.locator("#sample-table tr[data-policy] a").first
    policy_no = first.inner_text().strip()
    first.click()
    page.wait_for_load_state("networkidle")
    images = page.locator("#archive-pages img")
    assert images.count() > 0
    for n in range(min(3, images.count())):  # the pages load lazily: the first ones, scrolled to
        images.nth(n).scroll_into_view_if_needed()
        page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=images.nth(n).element_handle())
    page.evaluate("window.scrollTo(0, 0)")
    folder = PICTURES if os.environ.get("ISSUANCE_SCREENSHOTS") == "1" else tmp_path
    page.screenshot(path=str(folder / "desk-audit-sample.png"))
    page.fill("#text", "投保人未签字 the applicant did not sign the notice <b>样本</b>")
    page.click("#findings button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "<b>样本</b>" in page.inner_text("#finding-list")  # shown as text
    page.goto(f"{desk.url}/audits/{audit_id}")
    assert page.inner_text("#finding-count").startswith("1")
    page.select_option("#decision", "reject")
    page.fill("#comment", "未签字，退回补签")
    page.click("#sign-off button[type=submit]")
    page.wait_for_selector("#signed")
    assert page.inner_text("#signed-by").strip() == "auditor1"
    actions = {(e.action, e.actor) for e in desk.ledger(subject=audit_id)}
    assert {("audit.finding", "auditor1"), ("audit.signed_off", "auditor1")} <= actions
    read = [
        e
        for e in desk.ledger(subject=policy_no)
        if e.action == "copy.read" and e.detail.get("copy") == "archive"
    ]
    assert read and read[-1].actor == "auditor1"
    with Image.open(folder / "desk-audit-sample.png") as image:
        small = image.convert("RGB").quantize(colors=256)
    small.save(folder / "desk-audit-sample.png", optimize=True)
