"""The operators' and admins' desk pages (issue 24, items 2 and 3), through Flask's test client against a
real index (SQLite, and PostgreSQL where it costs little): batches with their counts and rejections (a
real batch filed by ``issuance run``), the inbox's state, serials with the same figures as ``issuance
serials report``; users added, disabled and given new passwords by an admin; every ops and admin route
refused to the other roles, and every form without its CSRF token.
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archive import serials
from archive.index import Index
from bench.synth import make_batch
from core.config import load_settings
from desk.app import ROUTES, create_app
from pipeline.report import REJECTED, BatchReport, Outcome
from pipeline.validate import Reason
from tests.conftest import REPO, write_batch
from usecases import desk_ops
from usecases.desk import Desk
from usecases.users import add_user
from watchers.inbox import Entry, Inbox
from watchers.summary import unusable_report

KEY = "desk-ops-test-hmac-key-0123456789"
ISSUANCE = [sys.executable, "-m", "cli.main"]
PASSWORD = "a long password for tests"
HOSTILE_ID = "<script>alert(1)</script>"
FORMULA_ID = "=1+1"


def _env(tmp_path: Path, index_url: str, inbox: Path | None = None) -> dict[str, str]:
    env = {
        "ISSUANCE_STORE": f"file://{tmp_path / 'archive'}",
        "ISSUANCE_INDEX": index_url,
        "ISSUANCE_HMAC_KEY": KEY,
        "ISSUANCE_OPERATOR": "night-run",
        "ISSUANCE_WORKERS": "1",
        "ISSUANCE_SCRATCH": str(tmp_path / "scratch"),
    }
    if inbox is not None:
        env["ISSUANCE_INBOX"] = str(inbox)
    return env


def _issuance(args: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command, as an operator runs it, in ``tmp_path`` (its ``var/`` is the desk's)."""
    return subprocess.run(
        [*ISSUANCE, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=600,
        check=False,
    )


class Desked:
    """A desk over ``tmp_path``'s archive and index, with users of every role (one each)."""

    def __init__(self, tmp_path: Path, index_url: str, *, inbox: Path | None = None) -> None:
        self.tmp_path = tmp_path
        self.env = _env(tmp_path, index_url, inbox)
        self.settings = load_settings(env=self.env, base=tmp_path)
        self.desk = Desk(self.settings)
        self.app = create_app(self.settings, desk=self.desk)
        for role in ("clerk", "supervisor", "auditor", "operator", "admin"):
            add_user(
                self.settings,
                name=f"{role}1",
                roles=[role],
                branches=[],
                display_name=f"{role} one",
                password=PASSWORD,
                users=self.desk.people.accounts,
            )

    @property
    def index(self) -> Index:
        return self.desk.index

    def client(self, name: str | None = None, password: str = PASSWORD):
        client = self.app.test_client()
        if name is not None:
            response = sign_in(client, name, password)
            assert response.status_code == 303, response.text
        return client

    def close(self) -> None:
        self.desk.close()


@pytest.fixture
def desked(tmp_path: Path, index_url: str) -> Iterator[Desked]:
    made = Desked(tmp_path, index_url)
    yield made
    made.close()


@pytest.fixture
def desked_sqlite(tmp_path: Path) -> Iterator[Desked]:
    made = Desked(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite'}", inbox=tmp_path / "inbox")
    yield made
    made.close()


def hidden_csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match[1]


def sign_in(client, name: str, password: str):
    """Sign in as a browser does: GET /login (its hidden token and the issuance_login cookie), then POST."""
    form = client.get("/login")
    assert client.get_cookie("issuance_login") is not None
    return client.post(
        "/login", data={"csrf": hidden_csrf(form.text), "name": name, "password": password, "next": "/"}
    )


def by_id(page: str, element_id: str) -> str:
    """The text of the element with ``element_id`` (tags stripped, entities decoded)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert match, f"no #{element_id} in the page"
    return html.unescape(re.sub(r"<[^>]+>", "", match[1])).strip()


# --- batches: a real batch filed by `issuance run` --------------------------------------------------------


def test_the_batch_page_shows_its_counts_and_its_rejections_escaped(desked_sqlite: Desked) -> None:
    d = desked_sqlite
    folder = d.tmp_path / "in"
    batch = make_batch(folder, 2, seed=91, images_per_record=1)
    good = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    hostile = copy.deepcopy(good[0])
    hostile.update(record_id=HOSTILE_ID, policy_no="PDAC2644030500900001", total_premium="1.00")
    formula = copy.deepcopy(good[1])
    formula.update(record_id=FORMULA_ID, policy_no="PDAC2644030500900002", total_premium="2.00")
    write_batch(folder, [*good, hostile, formula])
    ran = _issuance(["run", str(batch), "--no-progress"], d.tmp_path, d.env)
    assert ran.returncode == 1, ran.stderr  # rejections: exit 1
    (report_path,) = (d.tmp_path / "var" / "reports").glob("*.json")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["counts"] == {"records": 4, "archived": 2, "already_archived": 0, "rejected": 2}

    operator = d.client("operator1")
    listing = operator.get("/operations")
    assert listing.status_code == 200
    batch_id = report["batch_id"]
    assert f'href="/operations/batches/{batch_id}"' in listing.text
    row = re.search(rf"{batch_id}</a></td>(.*?)</tr>", listing.text, re.S)[1]
    cells = [
        html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)
    ]
    assert cells[0] == "batch.jsonl" and cells[2] == "night-run"
    assert cells[3:7] == ["2", "0", "2", "0"]

    page = operator.get(f"/operations/batches/{batch_id}")
    assert page.status_code == 200
    text = page.text
    for element, status in (
        ("archived", "archived"),
        ("already", "already_archived"),
        ("rejected", "rejected"),
    ):
        assert by_id(text, f"count-{element}") == str(report["counts"][status])
    assert by_id(text, "count-records") == "4"
    # record text is data: the hostile record id appears as text, never as markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>" not in text
    assert FORMULA_ID in text
    rejected = [o for o in report["outcomes"] if o["status"] == REJECTED]
    for outcome in rejected:
        for reason in outcome["reasons"]:
            assert html.escape(reason["message"], quote=False) in text or reason["message"] in text
    assert "coverage premiums add up" in text
    # no ID number or phone of any party reaches the page
    for record in good:
        for party in ("applicant", "insured"):
            assert record[party]["id_no"] not in text
            assert record[party]["phone"] not in text
    # the page's list of rejections is the report's, in its order
    listed = re.findall(r'<td class="count" rowspan="\d+">(\d+)</td>', text)
    assert [int(n) for n in listed] == [o["line"] for o in rejected]


def test_a_batch_filed_by_the_watcher_is_found_in_the_inbox_and_paged(desked_sqlite: Desked) -> None:
    d = desked_sqlite
    inbox = Inbox(d.tmp_path / "inbox")
    inbox.root.mkdir()
    inbox.prepare()
    batch_id = "20261205-120000-0123abcd-a1b2c3"
    d.index.begin_batch(batch_id=batch_id, input_name="night.jsonl", input_sha256="0" * 64, operator="watch")
    report = BatchReport(batch="night.jsonl", started_at=datetime.now(UTC), statuses=("archived", REJECTED))
    report.extra["batch_id"] = batch_id
    total = desk_ops.LISTED_PER_PAGE + 5
    for line in range(1, total + 1):
        report.opened(line)
        reason = Reason("insured.name", f'<img src=x onerror="alert({line})"> =HYPERLINK("x") line {line}')
        report.add(Outcome(line=line, status=REJECTED, record_id=f"R{line}", reasons=(reason,)))
    d.index.finish_batch(batch_id=batch_id, counts=report.counts(), operator="watch")
    (inbox.root / "night.jsonl").write_text("{}\n")
    inbox.file_away(
        Entry("night.jsonl", inbox.root / "night.jsonl", "file"), failed=True, report=report, summary=""
    )
    report.close()

    operator = d.client("operator1")
    first = operator.get(f"/operations/batches/{batch_id}")
    assert first.status_code == 200
    assert "inbox/.failed/night/report.json" in first.text
    assert by_id(first.text, "count-rejected") == str(total)
    assert "<img" not in first.text and "&lt;img src=x" in first.text
    rows = re.findall(r'<td class="mono" rowspan="1">R(\d+)</td>', first.text)
    assert rows == [str(n) for n in range(1, desk_ops.LISTED_PER_PAGE + 1)]
    second = operator.get(f"/operations/batches/{batch_id}?from={desk_ops.LISTED_PER_PAGE}")
    rows = re.findall(r'<td class="mono" rowspan="1">R(\d+)</td>', second.text)
    assert rows == [str(n) for n in range(desk_ops.LISTED_PER_PAGE + 1, total + 1)]
    assert operator.get("/operations/batches/20991231-000000-ffffffff-ffffff").status_code == 404
    assert operator.get("/operations/batches/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_the_inbox_state_shows_waiting_running_done_and_failed_batches(desked_sqlite: Desked) -> None:
    d = desked_sqlite
    inbox = Inbox(d.tmp_path / "inbox")
    inbox.root.mkdir()
    inbox.prepare()
    (inbox.root / "waiting.jsonl").write_text("{}\n")
    (inbox.root / '<img src=x onerror="alert(1)">.jsonl').write_text("{}\n")
    (inbox.root / "11010519491231002X.jsonl").write_text("{}\n")  # named after a customer's ID number
    (inbox.root / "half").mkdir()  # a folder batch without READY yet
    (inbox.root / "busy.jsonl").write_text("{}\n")
    (inbox.work_dir / "busy-0a1b2c3d").mkdir()  # the watcher's scratch for the batch it runs
    for name, failed in (("one", False), ("two", False), ("bad", True)):
        (inbox.root / f"{name}.zip").write_bytes(b"PK")
        now = datetime.now(UTC)
        inbox.file_away(
            Entry(f"{name}.zip", inbox.root / f"{name}.zip", "zip"),
            failed=failed,
            report=unusable_report(entry=f"{name}.zip", reason="not a zip", started_at=now, finished_at=now),
            summary="",
        )
    operator = d.client("operator1")
    with inbox.lock():
        page = operator.get("/operations").text
        assert by_id(page, "watcher") == "运行中 running"
    assert by_id(page, "inbox-waiting") == "4"
    assert by_id(page, "inbox-running") == "1"
    assert by_id(page, "inbox-done") == "2"
    assert by_id(page, "inbox-failed") == "1"
    assert "waiting for READY" in page
    assert "<img src=x" not in page and "&lt;img src=x" in page
    assert "11010519491231002X" not in page
    assert by_id(operator.get("/operations").text, "watcher") == "未运行 not running"


# --- serials: the same figures as `issuance serials report` -----------------------------------------------


def test_the_serial_figures_are_those_of_issuance_serials_report(desked: Desked) -> None:
    d = desked
    index = d.index
    long_ago = datetime.now(UTC) - timedelta(days=60)
    serials.issue_range(index, first="BJ2026-0001", last="BJ2026-0010", to="clerk1", by="ops", at=long_ago)
    for n in range(1, 7):
        serials.mark_used(index, serial=f"BJ2026-{n:04d}", policy_no=f"P{n}", version=1, at=long_ago)
    for n in (7,):
        serials.mark_used(index, serial=f"BJ2026-{n:04d}", policy_no=f"P{n}", version=1)
    serials.mark_used(index, serial="ZZ-0001", policy_no="P99", version=1, at=long_ago)  # never issued
    serials.mark_used(index, serial="BJ2026-0008", policy_no="P8", version=1, by="clerk2")  # another clerk's
    serials.void_blank(index, ["BJ2026-0009"], reason="lost", by="ops")  # BJ2026-0010 stays blank
    serials.reconcile(index, ["BJ2026-0001", "BJ2026-0002", "BJ2026-0007"], by="ops")
    today = datetime.now(serials.CHINA).date()
    periods = [
        (None, None, 30),
        (today - timedelta(days=90), today, 30),
        (today - timedelta(days=90), today, 90),
        (today - timedelta(days=10), today, 5),
    ]
    operator = d.client("operator1")
    everything: dict = {}
    for start, end, days in periods:
        args = ["serials", "report", "--json", "--overdue-days", str(days)]
        query = {"overdue_days": str(days)}
        if start:
            args += ["--from", start.isoformat(), "--to", end.isoformat()]
            query.update({"from": start.isoformat(), "to": end.isoformat()})
        cli = _issuance(args, d.tmp_path, d.env)
        assert cli.returncode == 0, cli.stderr
        expected = json.loads(cli.stdout)
        everything = everything if start else expected  # the first period: no --from
        page = operator.get("/operations", query_string=query)
        assert page.status_code == 200
        for field in (
            *("issued", "used", "voided", "unregistered", "reconciled", "awaiting", "overdue"),
            *("voided_lost", "voided_spoilt", "issued_out_usable", "issued_out_used", "overdue_unreturned"),
        ):
            assert by_id(page.text, f"s-{field}") == str(expected[field]), (start, days, field)
        assert by_id(page.text, "s-other_clerk") == str(len(expected["other_clerk"]))
        rate = expected["overdue_rate"]
        assert by_id(page.text, "s-rate") == ("n/a" if rate is None else f"{rate * 100:.2f}%")
        back = expected["unreturned_rate"]
        assert by_id(page.text, "s-unreturned-rate") == ("n/a" if back is None else f"{back * 100:.2f}%")
    assert expected["overdue_rate"] is not None  # the figures compared were not all empty
    assert all(everything[k] for k in ("overdue_unreturned", "voided_lost", "other_clerk"))
    assert operator.get("/operations?from=yesterday").status_code == 400


# --- admins: users ---------------------------------------------------------------------------------------


def _add(admin, **fields):
    csrf = hidden_csrf(admin.get("/admin/users").text)
    return admin.post("/admin/users/add", data={"csrf": csrf, **fields})


def test_an_added_users_one_time_password_signs_in_and_the_admin_is_recorded(desked: Desked) -> None:
    d = desked
    admin = d.client("admin1")
    made = _add(
        admin,
        name="clerk9",
        display_name="<b>张三</b> =1+1",
        roles=["clerk", "supervisor"],
        branches="1101, 31",
    )
    assert made.status_code == 200
    password = by_id(made.text, "one-time-password")
    assert len(password) >= 12
    assert made.headers["Cache-Control"] == "no-store"
    record = d.index.user("clerk9")
    assert record.password_hash.startswith("$argon2") and password not in record.password_hash
    assert record.roles == {"clerk", "supervisor"} and record.branches == ("1101", "31")
    listing = admin.get("/admin/users").text
    assert "&lt;b&gt;张三&lt;/b&gt; =1+1" in listing and "<b>张三</b>" not in listing
    assert password not in listing  # shown once
    events = [e for e in d.index.ledger_entries(subject="clerk9") if e.action == "user.added"]
    assert [e.actor for e in events] == ["admin1"]
    assert password not in json.dumps([e.detail for e in d.index.ledger_entries()])
    # the new user signs in with it and gets the clerk's desk
    clerk = d.app.test_client()
    assert sign_in(clerk, "clerk9", password).status_code == 303
    assert clerk.get("/policies").status_code == 200
    # and replaces it with a password of their own: the current one checked, the new one twice
    form = clerk.get("/account/password")
    csrf = hidden_csrf(form.text)
    mine = "my own long password"
    change = {"csrf": csrf, "current": password, "new": mine, "repeated": mine}
    assert clerk.post("/account/password", data={**change, "csrf": "forged"}).status_code == 403
    assert clerk.post("/account/password", data={**change, "current": "a wrong one!!"}).status_code == 401
    assert clerk.post("/account/password", data={**change, "repeated": mine + "x"}).status_code == 400
    changed = clerk.post("/account/password", data=change)
    assert changed.status_code == 303 and changed.headers["Location"].endswith("/login")
    assert clerk.get("/policies").status_code == 401  # signed out with the old password
    assert sign_in(d.app.test_client(), "clerk9", password).status_code == 401
    assert sign_in(d.app.test_client(), "clerk9", mine).status_code == 303
    own = [e.actor for e in d.index.ledger_entries(subject="clerk9") if e.action == "user.password_set"]
    assert own == ["clerk9"]
    refused = [
        e.actor for e in d.index.ledger_entries(subject="clerk9") if e.action.endswith("change_refused")
    ]
    assert refused == ["clerk9"]  # the wrong current password, recorded as a refused sign-in is
    # the CLI's changes still name the configured operator
    add_user(d.settings, name="cli1", roles=["clerk"], branches=[], display_name=None, password=PASSWORD)
    assert [e.actor for e in d.index.ledger_entries(subject="cli1")] == ["night-run"]


def test_a_refused_user_is_not_added_and_the_form_says_why(desked: Desked) -> None:
    d = desked
    admin = d.client("admin1")
    refused = _add(admin, name="bad name!", display_name="x", roles=["clerk"], branches="")
    assert refused.status_code == 400
    assert "is not allowed" in refused.text
    assert _add(admin, name="x1", roles=["pope"], branches="").status_code == 400
    assert _add(admin, name="x2", roles=["clerk"], branches="11a").status_code == 400
    assert _add(admin, name="clerk1", roles=["clerk"], branches="").status_code == 400  # taken
    assert {u.name for u in d.index.users()} == {"clerk1", "supervisor1", "auditor1", "operator1", "admin1"}


def test_disabling_a_user_ends_their_session_at_once(desked: Desked) -> None:
    d = desked
    clerk = d.client("clerk1")
    assert clerk.get("/policies").status_code == 200
    admin = d.client("admin1")
    csrf = hidden_csrf(admin.get("/admin/users").text)
    # a first step asks again (there is no enabling again), and changes nothing
    asked = admin.post("/admin/users/disable", data={"csrf": csrf, "name": "clerk1"})
    assert asked.status_code == 200 and 'id="confirm-disable"' in asked.text
    assert d.index.user("clerk1").enabled and clerk.get("/policies").status_code == 200
    done = admin.post("/admin/users/disable", data={"csrf": csrf, "name": "clerk1", "confirm": "yes"})
    assert done.status_code == 200 and "1 open session(s) ended" in done.text
    assert clerk.get("/policies").status_code == 401
    assert sign_in(d.app.test_client(), "clerk1", PASSWORD).status_code == 401
    events = [e for e in d.index.ledger_entries(subject="clerk1") if e.action == "user.disabled"]
    assert [e.actor for e in events] == ["admin1"]
    # an admin does not disable their own account
    mine = {"csrf": csrf, "name": "admin1", "confirm": "yes"}
    assert admin.post("/admin/users/disable", data=mine).status_code == 400
    assert d.index.user("admin1").enabled


def test_a_new_one_time_password_replaces_the_old_and_signs_the_user_out(desked: Desked) -> None:
    d = desked
    auditor = d.client("auditor1")
    admin = d.client("admin1")
    csrf = hidden_csrf(admin.get("/admin/users").text)
    made = admin.post("/admin/users/password", data={"csrf": csrf, "name": "auditor1"})
    assert made.status_code == 200
    password = by_id(made.text, "one-time-password")
    assert auditor.get("/").status_code == 401
    assert sign_in(d.app.test_client(), "auditor1", PASSWORD).status_code == 401
    assert sign_in(d.app.test_client(), "auditor1", password).status_code == 303
    events = [e for e in d.index.ledger_entries(subject="auditor1") if e.action == "user.password_set"]
    assert [e.actor for e in events] == ["admin1"]


# --- who may open what, and CSRF -------------------------------------------------------------------------


def ops_and_admin_rules() -> list[str]:
    """Every route of desk/operations.py and desk/admin.py (``ROUTES`` is filled by ``create_app``)."""
    return sorted(r for r in ROUTES if r.startswith(("/operations", "/admin")))


def _every_ops_and_admin_request(
    d: Desked, client, csrf: str, *, own: str | None = None
) -> Iterator[tuple[str, int]]:
    """Every ops and admin request (a valid form for each POST), but those under ``own``."""
    batch_id = "20261205-120000-0123abcd-a1b2c3"
    for rule in ops_and_admin_rules():
        if own and rule.startswith(own):
            continue
        methods = next(r.methods for r in d.app.url_map.iter_rules() if r.rule == rule)
        path = rule.replace("<batch_id>", batch_id)
        if "GET" in methods:
            yield f"GET {rule}", client.get(path).status_code
        if "POST" in methods:
            data = {"csrf": csrf, "name": "clerk1", "roles": ["admin"], "display_name": "x", "confirm": "yes"}
            yield f"POST {rule}", client.post(path, data=data).status_code


def test_every_ops_and_admin_route_refuses_the_other_roles(desked_sqlite: Desked) -> None:
    d = desked_sqlite
    rules = ops_and_admin_rules()
    assert any(r.startswith("/operations/") for r in rules)
    assert {"/admin/users/add", "/admin/users/disable", "/admin/users/password"} <= set(rules)
    owns = {"operator1": "/operations", "admin1": "/admin"}  # their own pages: the other tests use them
    for name in ("clerk1", "supervisor1", "auditor1", "operator1", "admin1"):
        client = d.client(name)
        csrf = hidden_csrf(client.get("/").text)
        for request, status in _every_ops_and_admin_request(d, client, csrf, own=owns.get(name)):
            assert status == 403, (name, request, status)
    # nothing changed: no one became an admin, no one was disabled, no password was set
    assert d.index.user("clerk1").enabled and d.index.user("clerk1").roles == {"clerk"}
    assert {e.action for e in d.index.ledger_entries(subject="clerk1")} == {"user.added", "desk.signed_in"}
    assert sign_in(d.app.test_client(), "clerk1", PASSWORD).status_code == 303
    # the operator's and the admin's pages do open for them
    assert d.client("operator1").get("/operations").status_code == 200
    assert d.client("admin1").get("/admin/users").status_code == 200
    # and not signed in, every one of them is refused
    anonymous = d.app.test_client()
    for request, status in _every_ops_and_admin_request(d, anonymous, "x"):
        assert status in (401, 403), (request, status)


def test_admin_forms_without_their_csrf_token_are_refused(desked_sqlite: Desked) -> None:
    d = desked_sqlite
    admin = d.client("admin1")
    for token in (None, "", "not-the-token"):
        data = {"name": "clerk1", "roles": ["clerk"], "display_name": "x", "confirm": "yes"}
        if token is not None:
            data["csrf"] = token
        for path in ("/admin/users/add", "/admin/users/disable", "/admin/users/password"):
            response = admin.post(path, data={**data, "name": "new1" if path.endswith("add") else "clerk1"})
            assert response.status_code == 403, (path, token)
            assert 'id="one-time-password"' not in response.text
    assert d.index.user("new1") is None
    assert d.index.user("clerk1").enabled
    assert sign_in(d.app.test_client(), "clerk1", PASSWORD).status_code == 303  # password unchanged


def test_the_operations_page_with_no_inbox_configured_says_so(tmp_path: Path) -> None:
    d = Desked(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite'}")
    try:
        page = d.client("operator1").get("/operations")
        assert page.status_code == 200
        assert "no inbox is configured" in page.text
        assert "No batch has run yet" in page.text
    finally:
        d.close()


def test_the_inbox_setting_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    (tmp_path / "issuance.toml").write_text('[desk]\ninbox = "/srv/in"\n', encoding="utf-8")
    env = {"ISSUANCE_HMAC_KEY": KEY}
    assert load_settings(env=env, base=tmp_path).inbox == Path("/srv/in")
    assert load_settings(env={**env, "ISSUANCE_INBOX": "/x"}, base=tmp_path).inbox == Path("/x")
    assert load_settings(env=env, base=tmp_path / "none").inbox is None


def test_one_time_passwords_are_long_and_differ() -> None:
    made = {desk_ops.one_time_password() for _ in range(50)}
    assert len(made) == 50
    assert all(len(p.replace("-", "")) == 16 for p in made)
