"""Sampling plans against ISO 2859-1 as DOMAIN.md gives it, and the seeded sample.

The two tables below are copied from ../shared/DOMAIN.md (beside the repository) as they stand there
(markdown), and parsed here: the test does not read the implementation's tables, so a slip in either shows.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest

from archive.audit.checks import Auditor, CheckResult, PolicyResult, ScoreItem, Thumbnail
from archive.audit.report import (
    AuditReport,
    SpooledResults,
    csv_bytes,
    html_bytes,
    report_json,
    write_reports,
)
from archive.audit.sampling import (
    LotCriteria,
    LotMember,
    apportion,
    code_letter,
    draw_sample,
    fixed_plan,
    plan_for,
    serial_series,
    split_serial,
)

DOMAIN_TABLE_I = """
| 2–8 | A | A | A | A | A | A | B |
| 9–15 | A | A | A | A | A | B | C |
| 16–25 | A | A | B | B | B | C | D |
| 26–50 | A | B | B | C | C | D | E |
| 51–90 | B | B | C | C | C | E | F |
| 91–150 | B | B | C | D | D | F | G |
| 151–280 | B | C | D | E | E | G | H |
| 281–500 | B | C | D | E | F | H | J |
| 501–1200 | C | C | E | F | G | J | K |
| 1201–3200 | C | D | E | G | H | K | L |
| 3201–10000 | C | D | F | G | J | L | M |
| 10001–35000 | C | D | F | H | K | M | N |
| 35001–150000 | D | E | G | J | L | N | P |
| 150001–500000 | D | E | G | J | M | P | Q |
| 500001+ | D | E | H | K | N | Q | R |
"""
DOMAIN_LEVELS = ("S-1", "S-2", "S-3", "S-4", "I", "II", "III")
DOMAIN_SIZES = (
    "A 2, B 3, C 5, D 8, E 13, F 20, G 32, H 50, J 80, K 125, L 200, M 315, N 500, P 800, Q 1250, R 2000"
)
DOMAIN_TABLE_II_A = """
| A | 0/1 (20) | 0/1 (13) | 0/1 (5) | 0/1 (3) |
| B | 0/1 (20) | 0/1 (13) | 0/1 (5) | 0/1 |
| C | 0/1 (20) | 0/1 (13) | 0/1 | 0/1 (3) |
| D | 0/1 (20) | 0/1 (13) | 0/1 (5) | 1/2 (13) |
| E | 0/1 (20) | 0/1 | 1/2 (20) | 1/2 |
| F | 0/1 | 0/1 (13) | 1/2 | 2/3 |
| G | 0/1 (20) | 1/2 (50) | 2/3 | 3/4 |
| H | 1/2 (80) | 1/2 | 3/4 | 5/6 |
| J | 1/2 | 2/3 | 5/6 | 7/8 |
| K | 2/3 | 3/4 | 7/8 | 10/11 |
| L | 3/4 | 5/6 | 10/11 | 14/15 |
| M | 5/6 | 7/8 | 14/15 | 21/22 |
| N | 7/8 | 10/11 | 21/22 | 21/22 (315) |
| P | 10/11 | 14/15 | 21/22 (500) | 21/22 (315) |
| Q | 14/15 | 21/22 | 21/22 (500) | 21/22 (315) |
| R | 21/22 | 21/22 (1250) | 21/22 (500) | 21/22 (315) |
"""
DOMAIN_AQLS = ("0.65", "1.0", "2.5", "4.0")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _rows() -> list[tuple[int, int | None, dict[str, str]]]:
    rows = []
    for line in DOMAIN_TABLE_I.strip().splitlines():
        lots, *letters = _cells(line)
        if lots.endswith("+"):
            low, high = int(lots[:-1]), None
        else:
            low, high = (int(x) for x in lots.split("–"))
        rows.append((low, high, dict(zip(DOMAIN_LEVELS, letters, strict=True))))
    return rows


SIZES = {letter: int(n) for letter, n in (part.split() for part in DOMAIN_SIZES.split(", "))}


def _table_ii_a() -> dict[str, dict[str, tuple[int, int, int]]]:
    out: dict[str, dict[str, tuple[int, int, int]]] = {}
    for line in DOMAIN_TABLE_II_A.strip().splitlines():
        letter, *plans = _cells(line)
        out[letter] = {}
        for aql, cell in zip(DOMAIN_AQLS, plans, strict=True):
            numbers, _, bracket = cell.partition(" ")
            ac, re = (int(x) for x in numbers.split("/"))
            n = int(bracket.strip("()")) if bracket else SIZES[letter]
            out[letter][aql] = (ac, re, n)
    return out


TABLE_II_A = _table_ii_a()


def _lot_sizes(low: int, high: int | None) -> list[int]:
    return [low, high] if high is not None else [low, 1_000_000]


@pytest.mark.parametrize("row", _rows(), ids=lambda r: f"{r[0]}-{r[1] or 'up'}")
def test_code_letter_for_every_lot_size_row_and_level(row):
    low, high, letters = row
    for lot in _lot_sizes(low, high):
        for level in DOMAIN_LEVELS:
            assert code_letter(lot, level) == letters[level], (lot, level)


@pytest.mark.parametrize("level", ["S-1", "II", "III"])
@pytest.mark.parametrize("aql", DOMAIN_AQLS)
def test_plan_for_every_lot_size_row(level, aql):
    for low, high, letters in _rows():
        for lot in _lot_sizes(low, high):
            letter = letters[level]
            ac, re, n = TABLE_II_A[letter][aql]
            plan = plan_for(lot, level=level, aql=aql)
            assert (plan.code_letter, plan.ac, plan.re) == (letter, ac, re), (lot, level, aql)
            assert plan.letter_size == SIZES[letter] and plan.plan_size == n
            if n >= lot:
                assert plan.full_inspection and plan.sample_size == lot, (lot, level, aql)
            else:
                assert not plan.full_inspection and plan.sample_size == n, (lot, level, aql)


def test_the_worked_example_and_an_arrow():
    plan = plan_for(2400, level="II", aql=2.5)
    assert (plan.code_letter, plan.sample_size, plan.ac, plan.re) == ("K", 125, 7, 8)
    # lot 1000 at S-1 is C (n 5); at AQL 0.65 the arrow leads down to 0/1 with the plan's n of 20
    arrow = plan_for(1000, level="S-1", aql="0.65")
    assert (arrow.code_letter, arrow.letter_size, arrow.sample_size, arrow.ac, arrow.re) == ("C", 5, 20, 0, 1)
    with pytest.raises(ValueError):
        plan_for(100, aql="1.5")
    with pytest.raises(ValueError):
        plan_for(100, level="IV")


def test_full_inspection_when_the_sample_reaches_the_lot():
    plan = plan_for(4, level="II", aql="2.5")  # A, arrow to n = 5 ≥ 4
    assert plan.full_inspection and plan.sample_size == 4 and (plan.ac, plan.re) == (0, 1)


def test_fixed_size_is_judged_by_the_largest_standard_plan_not_above_it():
    plan = fixed_plan(2000, size=100, aql="2.5")  # plans at 2.5: 5, 20, 32, 50, 80, 125, …
    assert (plan.sample_size, plan.plan_size, plan.ac, plan.re, plan.fixed_size) == (100, 80, 5, 6, True)
    small = fixed_plan(2000, size=3, aql="2.5")
    assert (small.sample_size, small.ac, small.re) == (3, 0, 1)
    whole = fixed_plan(10, size=50, aql="4.0")
    assert whole.full_inspection and whole.sample_size == 10


def test_the_verdict_flips_at_ac_plus_one():
    plan = plan_for(2400, level="II", aql="2.5")
    assert plan.verdict(plan.ac) == "accept"
    assert plan.verdict(plan.ac + 1) == "reject" and plan.ac + 1 == plan.re

    def result(policy_no: str, defective: bool) -> PolicyResult:
        check = CheckResult("object_hashes", not defective, ("planted",))
        return PolicyResult(policy_no, "110105", "AUTO-COMM", 1, (check,), ())

    def report(defects: int) -> AuditReport:
        results = tuple(result(f"P{i:05d}", i < defects) for i in range(plan.sample_size))
        sample = draw_sample(_lot(2400), n=plan.sample_size, seed=1)
        return AuditReport(
            audit_id="AUD-TEST",
            auditor="t",
            created_at=datetime.now(UTC),
            criteria=LotCriteria(),
            plan=plan,
            sample=sample,
            lot_sha256="0" * 64,
            results=results,
        )

    at_ac, over = report(7), report(8)
    assert (at_ac.defects, at_ac.verdict) == (7, "accept")
    assert (over.defects, over.verdict) == (8, "reject")
    data = report_json(over)
    assert (data["lot_size"], data["code_letter"], data["sample_size"], data["ac"], data["re"]) == (
        2400,
        "K",
        125,
        7,
        8,
    )
    assert data["seed"] == 1 and data["verdict"] == "reject" and len(data["policies"]) == 125
    assert "拒收 REJECT" in html_bytes(over).decode("utf-8")
    rows = csv_bytes(over).decode("utf-8-sig").splitlines()
    assert len(rows) == 126 and rows[1].split(",")[5] == "yes"


def _report(results) -> AuditReport:
    plan = plan_for(2400, level="II", aql="2.5")
    return AuditReport(
        audit_id="AUD-TEST",
        auditor="t",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        criteria=LotCriteria(branch="110105"),
        plan=plan,
        sample=draw_sample(_lot(2400), n=plan.sample_size, seed=1),
        lot_sha256="0" * 64,
        results=results,
        report_keys={"html": "audits/AUD-TEST/report.html"},
    )


def _results(n: int, defective: set[int]) -> list[PolicyResult]:
    thumb = Thumbnail("p.1 保单", b"\x89PNG" + bytes(range(256)) * 20)
    return [
        PolicyResult(
            f"P{i:05d}",
            "110105",
            "AUTO-COMM",
            1,
            (
                CheckResult("object_hashes", i not in defective, ("planted", f"第{i}份")),
                CheckResult("renders", True, ("opens",)),
            ),
            (ScoreItem("承保档案存档情况", 10, 10, "ok"),),
            (thumb,),
        )
        for i in range(n)
    ]


def test_spooled_results_read_back_as_they_went_in():
    results = _results(30, {3, 17})
    spooled = SpooledResults(results[:10])
    for result in results[10:]:
        spooled.append(result)
    assert len(spooled) == 30 and list(spooled) == results
    assert spooled[17] == results[17] and spooled[-1] == results[-1] and spooled[5:8] == results[5:8]
    spooled.close()


def test_reports_written_one_policy_at_a_time_say_what_the_whole_report_says(tmp_path):
    results = _results(40, {3, 17, 39})
    spooled = _report(SpooledResults(results))
    whole = _report(tuple(results))
    files = write_reports(spooled, tmp_path)
    assert json.loads(files["json"].read_text(encoding="utf-8")) == report_json(whole)
    assert files["json"].read_bytes() == (
        json.dumps(report_json(whole), ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    )
    assert files["csv"].read_bytes() == csv_bytes(whole)
    html = files["html"].read_text(encoding="utf-8")
    assert html == html_bytes(whole).decode("utf-8")
    # every policy once, defective ones first, each with its thumbnail
    order = [
        html.index(f'<section class="policy {s}" id="P{i:05d}"')
        for i, s in ((3, "defective"), (17, "defective"), (39, "defective"), (0, "clean"), (38, "clean"))
    ]
    assert order == sorted(order)
    assert html.count("<section ") == 40 and html.count("data:image/png;base64,") == 40
    assert "样本 125 份中不合格 3 份" in html


def test_checks_run_ahead_of_the_caller_by_two_policies_per_worker_at_most():
    started: list[str] = []
    taken: list[str] = []
    ahead = []

    class Counting(Auditor):
        def check_policy(self, policy_no: str) -> PolicyResult:
            started.append(policy_no)
            ahead.append(len(started) - len(taken))
            return _results(1, set())[0]

    auditor = Counting(store=None, index=None, products=None, seals=None)  # type: ignore[arg-type]
    policy_nos = [f"P{i:05d}" for i in range(50)]
    for policy_no, result in zip(policy_nos, auditor.check_each(policy_nos, workers=2), strict=True):
        taken.append(policy_no)
        assert result.policy_no == "P00000"
    assert sorted(started) == policy_nos and max(ahead) <= 2 * 2 + 1


def _lot(n: int, branches: tuple[str, ...] = ("110105",)) -> list[LotMember]:
    return [LotMember(f"PAC2026{i:08d}", branches[i % len(branches)], "AUTO-COMM", None) for i in range(n)]


def test_the_same_seed_draws_the_same_sample_by_the_documented_rule():
    lot = _lot(500)
    shuffled = list(reversed(lot))  # the order the index hands the lot over in does not matter
    first = draw_sample(lot, n=50, seed=20261123)
    again = draw_sample(shuffled, n=50, seed=20261123)
    assert first.policy_nos == again.policy_nos and len(set(first.policy_nos)) == 50
    other = draw_sample(lot, n=50, seed=20261124)
    assert other.policy_nos != first.policy_nos
    # the rule anyone can apply by hand: random.Random(seed).sample(lot sorted by policy number, n)
    by_hand = random.Random(20261123).sample(sorted(m.policy_no for m in lot), 50)
    assert first.policy_nos == tuple(sorted(by_hand))


def test_stratified_by_branch_with_largest_remainders():
    assert apportion({"A": 50, "B": 30, "C": 20}, 13) == {"A": 6, "B": 4, "C": 3}  # 6.5, 3.9, 2.6
    assert apportion({"A": 1, "B": 1}, 1) == {"A": 1, "B": 0}  # a tie goes to the smaller code
    assert sum(apportion({"x": 7, "y": 11, "z": 13}, 31).values()) == 31
    lot = _lot(100, branches=("110105", "110105", "310115", "440305", "440305"))  # 40 / 20 / 40
    sample = draw_sample(lot, n=13, seed=7, stratify="branch")
    assert sample.allocation == {"110105": 5, "310115": 3, "440305": 5}  # 5.2, 2.6, 5.2
    counts = {
        b: sum(1 for p in sample.policy_nos if p in {m.policy_no for m in lot if m.branch_code == b})
        for b in sample.allocation
    }
    assert counts == sample.allocation
    rng = random.Random(7)
    by_hand = []
    for branch in sorted(sample.allocation):
        members = sorted(m.policy_no for m in lot if m.branch_code == branch)
        by_hand += rng.sample(members, sample.allocation[branch])
    assert sample.policy_nos == tuple(sorted(by_hand))
    assert draw_sample(lot, n=13, seed=7, stratify="branch") == sample


def test_print_serial_gaps_and_duplicates_per_prefix():
    assert split_serial("202611010500000123") == ("2026110105", 123)
    assert split_serial("BJ2026-0000123") == ("BJ2026-", 123)
    assert split_serial("NODIGITS") is None
    serials = ["BJ2026-0000001", "BJ2026-0000002", "BJ2026-0000005", "BJ2026-0000005", "SH-0000007"]
    bj, sh = serial_series(serials)
    assert (bj.prefix, bj.count, bj.first, bj.last, bj.missing, bj.gaps) == ("BJ2026-", 4, 1, 5, 2, ((3, 4),))
    assert bj.duplicates == ("BJ2026-0000005",)
    assert (sh.count, sh.missing, sh.duplicates) == (1, 0, ())
