"""Statistics (issue 25): China's working days, and ``issuance stats`` on a constructed set equal to figures
counted by hand.

The set is filed through the real pipeline (``issuance run`` on real LibreOffice, a surrender and a
cancellation among its endorsements, and ``issuance reissue``) on SQLite and PostgreSQL, and counted by
``issuance stats --json`` and the operators' desk page.

The calendar of 2026 around the dates used (China time): 国庆节 Oct 1–7 off, Sat Oct 10 worked (调休),
Sat Oct 17 / Sun Oct 18 off.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from archive.index import Index, as_utc, schema
from bench.synth import make_batch
from core.config import load_settings
from core.errors import TemplateError
from core.privacy import mask_id
from core.workdays import load_calendar
from desk.app import create_app
from tests.conftest import REPO, add_users, write_batch
from tests.test_desk_ops import PASSWORD, by_id, sign_in
from usecases.desk import Desk
from usecases.users import add_user

CHINA = ZoneInfo("Asia/Shanghai")
ISSUANCE = [sys.executable, "-m", "cli.main"]
KEY = "stats-test-hmac-key-0123456789"


def cn(text: str) -> datetime:
    """A China-time moment, ``2026-10-08 10:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=CHINA)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


# --- working days ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calendar():
    return load_calendar()


def test_weekends_are_not_working_days_and_the_approval_day_does_not_count(calendar):
    # approved Friday 2026-10-16: Mon 19, Tue 20, Wed 21 are the three working days after it
    friday = cn("2026-10-16 17:30")
    assert calendar.working_days_between(friday, cn("2026-10-17 09:00")) == 0  # Saturday
    assert calendar.working_days_between(friday, cn("2026-10-19 09:00")) == 1
    assert calendar.working_days_between(friday, cn("2026-10-21 23:59")) == 3
    assert calendar.timely(friday, cn("2026-10-21 23:59"))
    assert not calendar.timely(friday, cn("2026-10-22 00:00"))
    # the same day, or before the approval: nothing counted
    assert calendar.working_days_between(friday, friday) == 0
    assert calendar.working_days_between(friday, cn("2026-10-15 09:00")) == 0


def test_a_public_holiday_is_not_a_working_day(calendar):
    # approved Tue 2026-09-29: Wed 30, then 国庆节 Oct 1-7, then Thu Oct 8 = 2 working days
    assert calendar.working_days_between(cn("2026-09-29 09:00"), cn("2026-10-08 10:00")) == 2
    assert calendar.timely(cn("2026-09-29 09:00"), cn("2026-10-08 10:00"))
    assert not calendar.is_working_day(date(2026, 10, 5))  # a Monday inside the holiday


def test_an_adjusted_working_saturday_counts(calendar):
    # approved Wed 2026-09-30: Thu 8, Fri 9, Sat 10 (调休上班), Mon 12 = 4: late; without the Saturday, 3
    assert calendar.is_working_day(date(2026, 10, 10))
    assert calendar.working_days_between(cn("2026-09-30 16:00"), cn("2026-10-12 09:00")) == 4
    assert not calendar.timely(cn("2026-09-30 16:00"), cn("2026-10-12 09:00"))
    assert not calendar.is_working_day(date(2026, 10, 11))  # the Sunday after is an ordinary one


def test_days_are_china_dates_not_utc_dates(calendar):
    # 23:30 China on Mon Oct 19 is 15:30 UTC the same day; 00:30 China on Fri Oct 23 is Thu Oct 22 in
    # UTC. In China dates: Tue, Wed, Thu, Fri = 4 (late); in UTC dates it would be 3
    approved, issued = cn("2026-10-19 23:30").astimezone(UTC), cn("2026-10-23 00:30").astimezone(UTC)
    assert calendar.working_days_between(approved, issued) == 4
    assert not calendar.timely(approved, issued)


def test_2027_is_a_draft_and_other_years_are_weekends_only(calendar):
    assert calendar.unconfirmed() == [2027]
    assert calendar.uncovered([date(2026, 5, 1), date(2028, 1, 1)]) == [2028]
    assert calendar.is_working_day(date(2028, 1, 3)) and not calendar.is_working_day(date(2028, 1, 1))
    assert not calendar.is_working_day(date(2027, 2, 9))  # 春节补假 in the draft


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ('holidays = [{ name = "国庆节", from = 2026-10-01, to = 2025-10-07 }]', "[2026] holidays[0]: to"),
        (
            'holidays = [{ name = "x", from = 2027-01-01 }]',
            "[2026] holidays[0]: from 2027-01-01 is not in 2026",
        ),
        ("working_days = [{ date = 2026-10-09 }]", "[2026] working_days[0]: 2026-10-09 is a Friday"),
        ('holidays = [{ name = "x", from = "2026-10-01" }]', "[2026] holidays[0]: from must be a date"),
        ('holidays = [{ name = "x", form = 2026-10-01 }]', "[2026] holidays[0]: unknown key 'form'"),
        (
            'holidays = [{ name = "x", from = 2026-10-10 }]\nworking_days = [{ date = 2026-10-10 }]',
            "[2026] working_days[0]: 2026-10-10 is also listed as a holiday",
        ),
    ],
)
def test_a_bad_entry_in_the_holiday_file_is_named(tmp_path, entry, named):
    path = tmp_path / "holidays.toml"
    path.write_text(f"[2026]\nconfirmed = true\n{entry}\n", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        load_calendar(path)
    assert named in str(caught.value)
    assert str(path) in str(caught.value)  # the hint says which file to fix


def test_a_year_without_confirmed_and_a_table_that_is_not_a_year_are_refused(tmp_path):
    path = tmp_path / "holidays.toml"
    path.write_text("[2026]\nholidays = []\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"\[2026\]: confirmed"):
        load_calendar(path)
    path.write_text("[holidays]\nconfirmed = true\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"\[holidays\]: each table is a year"):
        load_calendar(path)


# --- the constructed set --------------------------------------------------------------------------------

BRANCH_A, BRANCH_B = "110105", "440305"
# (name, branch, clerk, approved, issued, print serial, image kind left out) — timely by hand:
ISSUES = [
    ("P1", BRANCH_A, "CLK-C1", "2026-09-29 09:00", "2026-10-08 10:00", None, None),  # 2 wd: timely
    ("P2", BRANCH_A, "CLK-C1", "2026-09-30 16:00", "2026-10-12 09:00", None, None),  # 4 wd (Sat 10): late
    ("P3", BRANCH_B, "CLK-C2", "2026-10-16 17:00", "2026-10-21 11:00", "2026B00000301", None),  # 3: timely
    ("P4", BRANCH_B, "CLK-C3", "2026-10-16 09:00", "2026-10-22 10:00", "2026B00000302", "id_back"),  # 4: late
    ("P5", BRANCH_A, "CLK-C2", "2026-10-19 23:30", "2026-10-23 00:30", None, "exemption_notice"),  # 4: late
    ("P6", BRANCH_B, "CLK-C3", "2026-10-23 23:50", "2026-10-24 00:10", None, None),  # 0: timely, 10-24
]


class Constructed:
    """The set filed into one archive: policy numbers by name, and what ``issuance`` runs with."""

    def __init__(self, tmp_path: Path, index_url: str) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "ISSUANCE_STORE": f"file://{tmp_path / 'archive'}",
            "ISSUANCE_INDEX": index_url,
            "ISSUANCE_HMAC_KEY": KEY,
            "ISSUANCE_OPERATOR": "stats-test",
            "ISSUANCE_WORKERS": "1",
            "ISSUANCE_SCRATCH": str(tmp_path / "scratch"),
        }
        self.settings = load_settings(env=self.env, base=tmp_path)
        self.numbers: dict[str, str] = {}
        self.report: dict = {}

    def issuance(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ISSUANCE, *args], capture_output=True, text=True, cwd=self.tmp_path, env=self.env, timeout=900
        )

    def stats(self, *args: str) -> dict:
        done = self.issuance("stats", *args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def index(self) -> Index:
        return Index.open(self.settings.index_url, hmac_key=self.settings.hmac_key)


def _policies(folder: Path) -> list[dict]:
    """Six synthetic policies whose applicants are people (their images are the product's kinds)."""
    make_batch(folder, 14, seed=11, images_per_record=9)
    records = [json.loads(x) for x in (folder / "batch.jsonl").read_text(encoding="utf-8").splitlines()]
    people = [r for r in records if r["applicant"]["party_type"] == "person"]
    assert len(people) >= len(ISSUES)
    return people[: len(ISSUES)]


def _endorsement(name: str, policy_no: str, *, clerk: str, approved: datetime, effective: datetime) -> dict:
    return {
        "kind": "endorsement",
        "record_id": f"STATS-{name}",
        "endorsement_no": f"ESTATS2026{name}0001",
        "policy_no": policy_no,
        "effective_at": iso(effective),
        "changes": [
            {"field": "special_terms", "label": "特别约定", "old": "无", "new": "夜间停放于地下车库"}
        ],
        "premium_delta": "0.00",
        "text": "经投保人申请，本公司同意增加特别约定：夜间停放于地下车库。其他保险条件不变。",
        "underwriting": {"approved_by": "UW001", "approved_at": iso(approved)},
        "issued_by": clerk,
        "issued_at": iso(approved + timedelta(minutes=5)),
        "images": [],
    }


# an ID-number-shaped record id: the batch report masks it, and so must the rejections table
ID_SHAPED = "110105199003071234"


def _file(tmp_path: Path, index_url: str) -> Constructed:
    made = Constructed(tmp_path, index_url)
    folder = tmp_path / "batch"
    lines: list[dict | str] = []
    for (name, branch, clerk, approved, issued, serial, left_out), record in zip(
        ISSUES, _policies(folder), strict=True
    ):
        record = copy.deepcopy(record)
        record["record_id"] = f"STATS-{name}"
        record["branch"]["code"] = branch
        record["issued_by"] = clerk
        record["underwriting"]["approved_at"] = iso(cn(approved))
        record["issued_at"] = iso(cn(issued))
        start = datetime.combine(cn(issued).date() + timedelta(days=1), datetime.min.time(), CHINA)
        # ten years: the endorsements below are filed today and take effect tomorrow, which must stay
        # inside the period whenever the test runs
        record["period"] = {"start": iso(start), "end": iso(start.replace(year=start.year + 10))}
        record.pop("print_serial", None)
        if serial:
            record["print_serial"] = serial
        if left_out:
            record["images"] = [i for i in record["images"] if i["kind"] != left_out]
        made.numbers[name] = record["policy_no"]
        lines.append(record)
    now = datetime.now(CHINA)
    p3, p4 = made.numbers["P3"], made.numbers["P4"]
    # E1 approved an hour ago and filed now: timely; E2 approved on Oct 20 and filed now: late
    e1 = _endorsement(
        "E1", p3, clerk="CLK-C4", approved=now - timedelta(hours=1), effective=now + timedelta(days=1)
    )
    e2 = _endorsement(
        "E2", p4, clerk="CLK-C4", approved=cn("2026-10-20 10:00"), effective=now + timedelta(days=1)
    )
    # S, the surrender of P2, approved on Tue Oct 13 and filed now: late; C, the cancellation of P5
    # (the whole premium back), approved two hours ago: timely
    surrender = _endorsement(
        "S",
        made.numbers["P2"],
        clerk="CLK-C4",
        approved=cn("2026-10-13 10:00"),
        effective=now + timedelta(days=1),
    )
    cancel = _endorsement(
        "C",
        made.numbers["P5"],
        clerk="CLK-C1",
        approved=now - timedelta(hours=2),
        effective=now + timedelta(days=1),
    )
    for record, kind in ((surrender, "surrender"), (cancel, "cancel")):
        # a change naming no field of the policy changes nothing (core.lifecycle.changed)
        record.update(
            type=kind, changes=[{"field": "status", "label": "保单状态", "old": "有效", "new": kind}]
        )
        record["text"] = f"经投保人申请，本公司同意{'退保' if kind == 'surrender' else '注销本保单'}。"
    surrender["premium_delta"] = "-10.00"
    cancel["premium_delta"] = f"-{lines[4]['total_premium']}"
    lines += [e1, e2, surrender, cancel]
    # rejected: R1 a policy of branch B whose total does not add up; R2 not JSON; R3 an endorsement of
    # a policy nobody filed, with an ID-number-shaped record id
    r1 = copy.deepcopy(lines[3])
    r1.update(record_id="STATS-R1", policy_no="PSTATSREJECTED000001", total_premium="1.00")
    r1.pop("print_serial", None)
    r3 = {**e1, "record_id": ID_SHAPED, "policy_no": "PSTATSNOSUCHPOLICY01"}
    lines += [r1, '{"kind": "policy", "record_id": broken', r3]
    batch = write_batch(folder, lines)
    ran = made.issuance("run", str(batch), "--no-progress", "--report", str(tmp_path / "report.json"))
    made.report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    statuses = {o["line"]: o["status"] for o in made.report["outcomes"]}
    assert statuses == {
        **{n: "archived" for n in range(1, 11)},
        11: "rejected",
        12: "rejected",
        13: "rejected",
    }, ran.stderr
    # a reissue of P1, filed now by a clerk of the desk
    add_users({"clerk-r": ["clerk"]}, env=made.env, base=tmp_path)
    reissued = made.issuance(
        "reissue", made.numbers["P1"], "--reason", "lost", "--by", "clerk-r", "-o", "r.pdf"
    )
    assert reissued.returncode == 0, reissued.stderr
    return made


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def constructed(request, tmp_path_factory: pytest.TempPathFactory) -> Constructed:
    """The set, filed once per database for the tests that only read it."""
    folder = tmp_path_factory.mktemp(f"stats-{request.param}")
    if request.param == "sqlite":
        return _file(folder, f"sqlite:///{folder / 'index.sqlite'}")
    return _file(folder, request.getfixturevalue("postgres_server")())


FIGURES = (
    "issued",
    "endorsed",
    "surrendered",
    "cancelled",
    "reissued",
    "rejected",
    "timely",
    "timed",
    "images_complete_share",
    "exemption_notice_score",
    "archive_score",
    "unregistered_serials",
)


def figures(obj: dict) -> dict:
    return {k: obj[k] for k in ("timely_share", *FIGURES)}


def expect(
    issued, endorsed, surrendered, cancelled, reissued, rejected, timely, timed, complete, kept, unreg
):
    """What ``--json`` must say, from counts made by hand (``complete``/``kept``: of ``issued``)."""
    return {
        "issued": issued,
        "endorsed": endorsed,
        "surrendered": surrendered,
        "cancelled": cancelled,
        "reissued": reissued,
        "rejected": rejected,
        "timely": timely,
        "timed": timed,
        "timely_share": timely / timed if timed else None,
        "images_complete_share": complete / issued if issued else None,
        "exemption_notice_score": 10 * kept / issued if issued else None,
        "archive_score": 10 * complete / issued if issued else None,
        "unregistered_serials": unreg,
    }


def test_stats_equal_the_figures_counted_by_hand(constructed: Constructed):
    today = datetime.now(CHINA).date().isoformat()

    # October 8-23: P1-P5 issued (P6 is issued at 00:10 on the 24th); every endorsement is filed today
    # timely: P1 yes, P2 no, P3 yes, P4 no, P5 no → 2 of 5
    # images: P4 lacks id_back, P5 the exemption notice → complete 3 of 5, exemption notice kept 4 of 5
    october = constructed.stats("--from", "2026-10-08", "--to", "2026-10-23")
    assert figures(october) == expect(5, 0, 0, 0, 0, 0, 2, 5, 3, 4, 0)
    assert october["by"] == []

    # October 8 to today: P6 too (timely); filed today: E1 (timely), E2 (late), the surrender (late: approved
    # Oct 13), the cancellation (timely), the reissue; 3 rejected lines; the two unregistered serials of P3
    # and P4 were used (filed) today → timely 3 of 6 issues + 2 of 4 endorsements
    whole = constructed.stats("--from", "2026-10-08", "--to", today)
    assert figures(whole) == expect(6, 4, 1, 1, 1, 3, 5, 10, 4, 5, 2)

    by_branch = {
        g["branch"]: figures(g)
        for g in constructed.stats("--from", "2026-10-08", "--to", today, "--by", "branch")["by"]
    }
    assert by_branch == {
        # P1 P2 P5; surrender (P2) and cancel (P5); the reissue of P1; timely P1, cancel of 5
        BRANCH_A: expect(3, 2, 1, 1, 1, 0, 2, 5, 2, 2, 0),
        # P3 P4 P6; E1 E2; R1; timely P3 P6 E1 of 5; serials of P3 and P4
        BRANCH_B: expect(3, 2, 0, 0, 0, 1, 3, 5, 2, 3, 2),
        # R2 (not JSON) and R3 (its policy unknown) name no branch
        None: expect(0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0),
    }

    by_clerk = {
        g["clerk"]: figures(g)
        for g in constructed.stats("--from", "2026-10-08", "--to", today, "--by", "clerk")["by"]
    }
    assert by_clerk == {
        "CLK-C1": expect(2, 1, 0, 1, 0, 0, 2, 3, 2, 2, 0),  # P1 P2, the cancel
        "CLK-C2": expect(2, 0, 0, 0, 0, 0, 1, 2, 1, 1, 1),  # P3 P5; P3's serial
        "CLK-C3": expect(2, 0, 0, 0, 0, 1, 1, 2, 1, 2, 1),  # P4 P6, R1; P4's serial
        "CLK-C4": expect(0, 3, 1, 0, 0, 1, 1, 3, 0, 0, 0),  # E1 E2 and the surrender, R3
        "clerk-r": expect(0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0),  # the reissue
        None: expect(0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0),  # R2
    }

    by_day = {
        g["day"]: figures(g)
        for g in constructed.stats("--from", "2026-10-08", "--to", "2026-10-23", "--by", "day")["by"]
    }
    assert list(by_day) == [(date(2026, 10, 8) + timedelta(days=n)).isoformat() for n in range(16)]
    assert by_day["2026-10-09"] == expect(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert by_day["2026-10-12"] == expect(1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0)  # P2, late
    assert by_day["2026-10-14"] == expect(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert by_day["2026-10-21"] == expect(1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0)  # P3, timely
    assert by_day["2026-10-22"] == expect(1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0)  # P4, late, lacks id_back
    assert by_day["2026-10-23"] == expect(1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0)  # P5 at 00:30, late


def test_versions_are_indexed_with_their_clerk_approval_and_type(constructed: Constructed):
    index = constructed.index()
    try:
        p3 = index.versions(constructed.numbers["P3"])
        p1 = index.versions(constructed.numbers["P1"])
        p2 = index.versions(constructed.numbers["P2"])
    finally:
        index.close()
    issue, endorsement = p3[0], p3[1]
    assert (issue.kind, issue.clerk, issue.endorsement_type) == ("issue", "CLK-C2", None)
    assert as_utc(issue.approved_at) == cn("2026-10-16 17:00").astimezone(UTC)
    assert (endorsement.kind, endorsement.clerk, endorsement.endorsement_type) == (
        "endorsement",
        "CLK-C4",
        "change",
    )
    assert endorsement.approved_at is not None
    surrender = p2[-1]
    assert (surrender.clerk, surrender.endorsement_type) == ("CLK-C4", "surrender")
    assert as_utc(surrender.approved_at) == cn("2026-10-13 10:00").astimezone(UTC)
    reissue = p1[-1]
    assert (reissue.kind, reissue.clerk, reissue.approved_at) == ("reissue", "clerk-r", None)


def test_every_rejected_line_is_recorded_as_the_batch_report_shows_it(constructed: Constructed):
    index = constructed.index()
    try:
        with index.engine.connect() as conn:
            rows = conn.execute(schema.rejections.select().order_by(schema.rejections.c.line)).all()
    finally:
        index.close()
    rejected = [o for o in constructed.report["outcomes"] if o["status"] == "rejected"]
    assert [(r.line, r.kind, r.record_id, r.policy_no, r.field) for r in rows] == [
        (o["line"], o["kind"], o["record_id"], o["policy_no"], o["reasons"][0]["field"]) for o in rejected
    ]
    assert {r.batch_id for r in rows} == {constructed.report["batch_id"]}
    r1, r2, r3 = rows
    assert (r1.branch_code, r1.product_code, r1.clerk, r1.field) == (
        BRANCH_B,
        constructed_product(constructed, 4),
        "CLK-C3",
        "total_premium",
    )
    assert (r2.branch_code, r2.product_code, r2.clerk, r2.kind, r2.record_id) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert r3.record_id == mask_id(ID_SHAPED) != ID_SHAPED  # masked, as in the report
    assert (r3.clerk, r3.field) == ("CLK-C4", "policy_no")


def constructed_product(constructed: Constructed, line: int) -> str:
    batch = (constructed.tmp_path / "batch" / "batch.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads(batch[line - 1])["product_code"]


def test_the_text_table_shows_the_totals(constructed: Constructed):
    done = constructed.issuance("stats", "--from", "2026-10-08", "--to", "2026-10-23", "--by", "branch")
    assert done.returncode == 0, done.stderr
    total = next(line for line in done.stdout.splitlines() if "合计 Total" in line)
    cells = [c.strip() for c in total.split("│")[1:-1]]
    assert cells[:7] == ["合计 Total", "5", "0", "0", "0", "0", "0"]
    assert cells[7] == "40.0% (2/5)"


def test_a_range_that_ends_before_it_starts_is_a_usage_error(tmp_path: Path):
    made = Constructed(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite'}")
    done = made.issuance("stats", "--from", "2026-10-09", "--to", "2026-10-08")
    assert done.returncode == 2
    assert "starts (2026-10-09) after it ends (2026-10-08)" in done.stderr
    helped = made.issuance("stats", "--help")
    assert "surrendered" in helped.stdout and "counted in endorsed too" in helped.stdout


# --- the desk --------------------------------------------------------------------------------------------


def test_the_operators_page_shows_the_same_figures_with_a_chart_per_day(constructed: Constructed):
    desk = Desk(constructed.settings)
    try:
        app = create_app(constructed.settings, desk=desk)
        for role in ("operator", "clerk"):
            add_user(
                constructed.settings,
                name=f"{role}9",
                roles=[role],
                branches=[],
                display_name=role,
                password=PASSWORD,
                users=desk.people.accounts,
            )
        operator = app.test_client()
        assert sign_in(operator, "operator9", PASSWORD).status_code == 303
        today = datetime.now(CHINA).date()
        page = operator.get(f"/operations/stats?from=2026-10-08&to={today}")
        assert page.status_code == 200, page.text
        text = page.text
        # the figures test_stats_equal_the_figures_counted_by_hand counts for October 8 to today
        counts = ("issued", "endorsed", "surrendered", "cancelled", "reissued", "rejected", "unregistered")
        assert [by_id(text, f"t-{k}") for k in counts] == ["6", "4", "1", "1", "1", "3", "2"]
        assert by_id(text, "t-timely") == "50.0%"
        assert by_id(text, "t-images") == "66.7%"
        assert by_id(text, "t-exemption") == "8.3"
        assert by_id(text, "t-archive") == "6.7"
        # the chart: three bars a day, one of each in the legend; each bar says its day and figure
        days = (today - date(2026, 10, 8)).days + 1
        svg = re.search(r"<svg class=\"chart\".*?</svg>", text, re.S)[0]
        for css in ("bar-issued", "bar-endorsed", "bar-rejected"):
            assert svg.count(f'class="{css}"') == days + 1
        assert "<script" not in text and " style=" not in text
        assert "2026-10-12 签发 issued: 1" in svg
        assert f"{today} 拒绝 rejected: 3" in svg and f"{today} 批改 endorsed: 4" in svg
        assert 'data-day="2026-10-22"' in text
        # the default: the last 30 days, today included
        default = operator.get("/operations/stats").text
        assert f'name="from" type="date" value="{today - timedelta(days=29)}"' in default
        assert f'name="to" type="date" value="{today}"' in default
        # a clerk may not see it
        clerk = app.test_client()
        assert sign_in(clerk, "clerk9", PASSWORD).status_code == 303
        assert clerk.get("/operations/stats").status_code == 403
    finally:
        desk.close()
