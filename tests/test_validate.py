"""Every rule of the record contract, each with a failing and a passing case.

The records come from the synthetic generator (valid by construction) and are changed one field at a
time; a rule's failing case must name the field, its passing case must yield no reason at all.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from PIL import Image

from core.privacy import resident_id_check_char, uscc_check_char, vin_check_char
from core.records import RawRecord
from pipeline.batch import Accepted, RecordChecker
from pipeline.validate import control_characters

VALID_ID = "11010519491231002X"  # GB 11643's own example; check digit X


def check(registry, batch_dir: Path, *records: dict) -> list[list[tuple[str, str]]]:
    """Run records through the checker in order; per record the (field, message) pairs, [] if accepted."""
    checker = RecordChecker(registry=registry, batch_dir=batch_dir)
    out = []
    for i, data in enumerate(records, start=1):
        verdict = checker.check(RawRecord(i, data))
        out.append([] if isinstance(verdict, Accepted) else [(r.field, r.message) for r in verdict])
    return out


def fields(registry, batch_dir: Path, record: dict) -> list[str]:
    return [f for f, _ in check(registry, batch_dir, record)[0]]


def test_generated_records_pass(registry, batch_dir, synth_records):
    assert check(registry, batch_dir, *synth_records) == [[] for _ in synth_records]


# --- schema-level rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("policy_no"), "policy_no"),
        (lambda r: r.update(colour="red"), "colour"),
        (lambda r: r.update(kind="quote"), "kind"),
        (lambda r: r.update(policy_no="p-123"), "policy_no"),
        (lambda r: r["coverages"][0].update(premium=12.5), "coverages[0].premium"),
        (lambda r: r["coverages"][0].update(premium="12.505"), "coverages[0].premium"),
        (lambda r: r.update(total_premium="1,000.00"), "total_premium"),
        (lambda r: r["period"].update(start="2026-12-01T00:00:00"), "period.start"),
        (lambda r: r["branch"].update(code="1101"), "branch.code"),
        (lambda r: r["applicant"].update(party_type="robot"), "applicant.party_type"),
        (lambda r: r.update(coverages=[]), "coverages"),
        (lambda r: r.update(currency="USD"), "currency"),
        (lambda r: r["images"][0].update(kind="selfie"), "images[0].kind"),
    ],
)
def test_schema_rules(registry, batch_dir, records, change, field):
    record = records["AUTO-COMM"]
    change(record)
    assert field in fields(registry, batch_dir, record)


def test_unknown_kind_and_missing_kind(registry, batch_dir, records):
    record = records["PA-ACC"]
    del record["kind"]
    assert fields(registry, batch_dir, record) == ["kind"]


# --- identifiers ------------------------------------------------------------------------------------


def _with_check(first17: str) -> str:
    return first17 + resident_id_check_char(first17)


@pytest.mark.parametrize("party", ["applicant", "insured"])
def test_resident_id_check_digit(registry, batch_dir, records, party):
    record = records["HOME-PROP"]
    record[party].update(party_type="person", id_type="resident_id", id_no=VALID_ID)
    assert fields(registry, batch_dir, record) == []
    wrong = VALID_ID[:17] + ("1" if VALID_ID[17] != "1" else "2")
    record[party]["id_no"] = wrong
    result = check(registry, batch_dir, record)[0]
    assert [f for f, _ in result] == [f"{party}.id_no"]
    assert "check digit" in result[0][1]
    assert wrong not in result[0][1] and VALID_ID[6:14] not in result[0][1]  # no ID, no birth date


def test_resident_id_birth_date_must_be_real(registry, batch_dir, records):
    record = records["PA-ACC"]
    record["insured"].update(id_type="resident_id", id_no=_with_check("11010519990230001"))  # 30 Feb
    result = check(registry, batch_dir, record)[0]
    assert [f for f, _ in result] == ["insured.id_no"]
    assert "birth date" in result[0][1]
    record["insured"]["id_no"] = _with_check("11010519990228001")
    assert fields(registry, batch_dir, record) == []


def test_resident_id_length(registry, batch_dir, records):
    record = records["PA-ACC"]
    record["insured"].update(id_type="resident_id", id_no=VALID_ID[:17])
    assert fields(registry, batch_dir, record) == ["insured.id_no"]


def test_beneficiary_id_checked(registry, batch_dir, records):
    record = records["PA-ACC"]
    record["beneficiaries"] = [
        {
            "name": "样本甲",
            "id_type": "resident_id",
            "id_no": VALID_ID,
            "relation": "配偶",
            "share_percent": "100",
        }
    ]
    assert fields(registry, batch_dir, record) == []
    record["beneficiaries"][0]["id_no"] = VALID_ID[:17] + "1"
    assert fields(registry, batch_dir, record) == ["beneficiaries[0].id_no"]


def test_uscc_check_character(registry, batch_dir, records):
    record = records["HOME-PROP"]
    first17 = "91110105MA01ABCD1"
    good = first17 + uscc_check_char(first17)
    record["applicant"].update(party_type="organization", id_type="uscc", id_no=good)
    assert fields(registry, batch_dir, record) == []
    bad_char = "0" if good[-1] != "0" else "1"
    record["applicant"]["id_no"] = first17 + bad_char
    assert fields(registry, batch_dir, record) == ["applicant.id_no"]


def test_other_id_types_are_not_check_digit_checked(registry, batch_dir, records):
    record = records["HOME-PROP"]
    record["insured"].update(id_type="passport", id_no="E12345678")
    assert fields(registry, batch_dir, record) == []


def test_vin_check_digit(registry, batch_dir, records):
    record = records["AUTO-COMM"]
    vin = record["vehicle"]["vin"]
    assert fields(registry, batch_dir, record) == []
    wrong = "0" if vin[8] != "0" else "1"
    record["vehicle"]["vin"] = vin[:8] + wrong + vin[9:]
    assert fields(registry, batch_dir, record) == ["vehicle.vin"]
    record["vehicle"]["vin"] = "1M8GDM9AXKP042788"  # ISO 3779's worked example
    assert vin_check_char("1M8GDM9AXKP042788") == "X"
    assert fields(registry, batch_dir, record) == []


# --- amounts ----------------------------------------------------------------------------------------


def test_total_premium_must_equal_sum(registry, batch_dir, records):
    record = records["AUTO-COMM"]
    record["total_premium"] = f"{float(record['total_premium']) + 0.01:.2f}"
    result = check(registry, batch_dir, record)[0]
    assert [f for f, _ in result] == ["total_premium"]
    assert "add up" in result[0][1]


def test_sum_insured_positive(registry, batch_dir, records):
    record = records["HOME-PROP"]
    record["coverages"][0]["sum_insured"] = "0.00"
    assert fields(registry, batch_dir, record) == ["coverages[0].sum_insured"]
    record["coverages"][0]["sum_insured"] = "0.01"
    assert fields(registry, batch_dir, record) == []


def test_amount_with_one_decimal_place_is_fine(registry, batch_dir, records):
    record = records["HOME-PROP"]
    record["coverages"][0]["sum_insured"] = "500000.5"
    assert fields(registry, batch_dir, record) == []


# --- period, product, clauses, sections --------------------------------------------------------------


def test_period_start_before_end(registry, batch_dir, records):
    record = records["PA-ACC"]
    record["period"]["end"] = record["period"]["start"]
    assert fields(registry, batch_dir, record) == ["period.end"]


def test_period_offsets_compare_as_instants(registry, batch_dir, records):
    record = records["PA-ACC"]
    # 2026-12-01 00:00 in China is 2026-11-30 16:00 UTC: an end one minute later is still after the start
    record["period"] = {"start": "2026-12-01T00:00:00+08:00", "end": "2026-11-30T16:01:00Z"}
    assert fields(registry, batch_dir, record) == []


def test_clause_must_exist_for_product(registry, batch_dir, records):
    record = records["HOME-PROP"]
    record["clauses"] = ["HOME-PROP-MAIN", "AUTO-COMM-TPL"]
    assert fields(registry, batch_dir, record) == ["clauses[1]"]
    record["clauses"] = ["HOME-PROP-MAIN"]
    assert fields(registry, batch_dir, record) == []


def test_clause_listed_twice(registry, batch_dir, records):
    record = records["HOME-PROP"]
    record["clauses"] = ["HOME-PROP-MAIN", "HOME-PROP-MAIN"]
    assert fields(registry, batch_dir, record) == ["clauses[1]"]


def test_unknown_product(registry, batch_dir, records):
    record = records["HOME-PROP"]
    record["product_code"] = "MARINE-CARGO"
    assert "product_code" in fields(registry, batch_dir, record)


def test_motor_needs_vehicle(registry, batch_dir, records):
    record = records["AUTO-COMM"]
    del record["vehicle"]
    assert fields(registry, batch_dir, record) == ["vehicle"]


def test_property_product_needs_property(registry, batch_dir, records):
    record = records["HOME-PROP"]
    del record["property"]
    assert fields(registry, batch_dir, record) == ["property"]


def test_beneficiary_shares_add_up_to_100(registry, batch_dir, records):
    record = records["PA-ACC"]
    base = {"id_type": "passport", "relation": "子女"}
    record["beneficiaries"] = [
        {**base, "name": "样本甲", "id_no": "E00000001", "share_percent": "60"},
        {**base, "name": "样本乙", "id_no": "E00000002", "share_percent": "30"},
    ]
    assert fields(registry, batch_dir, record) == ["beneficiaries"]
    record["beneficiaries"][1]["share_percent"] = "40.00"
    assert fields(registry, batch_dir, record) == []
    record["beneficiaries"] = []  # none listed: 法定
    assert fields(registry, batch_dir, record) == []


def test_control_characters_rejected(registry, batch_dir, records):
    record = records["PA-ACC"]
    record["special_terms"] = ["第一行\n第二行\t缩进"]
    assert fields(registry, batch_dir, record) == []
    record["special_terms"] = ["响铃\x07"]
    assert fields(registry, batch_dir, record) == ["special_terms[0]"]
    record["special_terms"] = ["C1 control \x85 (NEL)"]
    assert fields(registry, batch_dir, record) == ["special_terms[0]"]


def _listed(message: str) -> set[str]:
    return {chr(int(code[2:], 16)) for code in message.split("(")[1].split(")")[0].split(", ")}


def test_control_characters_are_unicodes_category_cc_less_tab_and_newline():
    every = "".join(map(chr, range(0x110000)))
    expected = {c for c in every if unicodedata.category(c) == "Cc"} - {"\n", "\t"}
    [reason] = [r for r in control_characters({"a": [every]}) if "control characters" in r.message]
    assert reason.field == "a[0]"
    assert _listed(reason.message) == expected
    assert len(expected) == 63


# --- invisible format characters (issue 21, item 8) --------------------------------------------------


def test_format_characters_are_unicodes_category_cf():
    every = "".join(map(chr, range(0x110000)))
    expected = {c for c in every if unicodedata.category(c) == "Cf"}
    [reason] = [r for r in control_characters({"a": [every]}) if "format characters" in r.message]
    assert reason.field == "a[0]"
    assert _listed(reason.message) == expected  # Python's Unicode moved on: add the new ones to the pattern


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(special_terms=["保险人承担\u202e任何损失的赔偿责任"]), "special_terms[0]"),
        (lambda r: r["applicant"].update(name="张\u200b三"), "applicant.name"),
        (lambda r: r["insured"].update(address="北京市\u200d朝阳区"), "insured.address"),
        (lambda r: r["applicant"].update(name="\u2066张三\u2069"), "applicant.name"),
        (lambda r: r["insured"].update(name="李\ufeff四"), "insured.name"),
        (lambda r: r["coverages"][0].update(name="意外\u00ad伤害"), "coverages[0].name"),
        (lambda r: r["branch"].update(name="\u2067分公司"), "branch.name"),
        (lambda r: r.update(issued_by="U\u2060001"), "issued_by"),
        (lambda r: r["underwriting"].update(approved_by="\u2068UW1"), "underwriting.approved_by"),
    ],
)
def test_format_characters_are_refused_naming_the_field(registry, batch_dir, records, change, field):
    record = records["PA-ACC"]
    change(record)
    reasons = check(registry, batch_dir, record)[0]
    assert [f for f, m in reasons if "format characters" in m] == [field], reasons


def test_format_characters_in_an_endorsement_are_refused(registry, batch_dir, records):
    policy, endorsement = records["PA-ACC"], records["endorsement"]
    endorsement["policy_no"] = policy["policy_no"]
    endorsement["text"] = "经双方协商\u202e，批改如下"
    endorsement["changes"][0]["new"] = "王\u200c五"
    _, reasons = check(registry, batch_dir, policy, endorsement)
    assert sorted(f for f, m in reasons if "format characters" in m) == ["changes[0].new", "text"]


def test_names_with_a_middle_dot_and_rare_ideographs_pass(registry, batch_dir, records):
    record = records["PA-ACC"]
    record["applicant"]["name"] = "阿卜杜拉·买买提"  # U+00B7, as ID cards write such names
    record["insured"]["name"] = "𠮷田䶮"  # U+20BB7 (outside the BMP) and U+4DAE
    record["special_terms"] = ["葛\U000e0100城"]  # an ideographic variation sequence (a selector, Mn)
    assert check(registry, batch_dir, record) == [[]]


def test_an_unknown_key_is_named_without_what_would_garble_the_report(registry, batch_dir, records):
    record = records["PA-ACC"]
    record["applicant"]["name\u202e\n"] = "x"
    reasons = check(registry, batch_dir, record)[0]
    assert [f for f, _ in reasons] == ["applicant.'name\\u202e\\n'"]


# --- images ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../outside.jpg", "images/../../outside.jpg", "C:\\Windows\\win.ini", "missing.jpg"],
)
def test_image_path_must_stay_inside_and_exist(registry, batch_dir, records, path):
    (batch_dir.parent / "outside.jpg").write_bytes(
        (batch_dir / records["AUTO-COMM"]["images"][0]["path"]).read_bytes()
    )
    record = records["AUTO-COMM"]
    record["images"][0]["path"] = path
    assert fields(registry, batch_dir, record) == ["images[0].path"]


def test_image_symlink_out_of_batch_refused(registry, batch_dir, records, tmp_path):
    outside = tmp_path / "secret.jpg"
    Image.new("RGB", (10, 10)).save(outside)
    os.symlink(outside, batch_dir / "images" / "link.jpg")
    record = records["AUTO-COMM"]
    record["images"][0]["path"] = "images/link.jpg"
    result = check(registry, batch_dir, record)[0]
    assert [f for f, _ in result] == ["images[0].path"]
    assert "outside" in result[0][1]


def test_image_symlink_inside_batch_is_fine(registry, batch_dir, records):
    record = records["AUTO-COMM"]
    target = batch_dir / record["images"][0]["path"]
    os.symlink(target, batch_dir / "images" / "inside-link.jpg")
    record["images"][0]["path"] = "images/inside-link.jpg"
    assert fields(registry, batch_dir, record) == []


def test_image_under_a_linked_folder_that_leads_out_is_refused(registry, batch_dir, records, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (10, 10)).save(outside / "scan.jpg")
    os.symlink(outside, batch_dir / "linked")
    record = records["AUTO-COMM"]
    record["images"][0]["path"] = "linked/scan.jpg"
    result = check(registry, batch_dir, record)[0]
    assert [f for f, _ in result] == ["images[0].path"]
    assert "outside" in result[0][1]


@pytest.mark.parametrize("path", ["images", "images/./", "", "images/nested/scan.jpg/x.jpg"])
def test_image_path_that_is_not_a_file_is_refused(registry, batch_dir, records, path):
    nested = batch_dir / "images" / "nested"
    nested.mkdir()
    Image.new("RGB", (10, 10)).save(nested / "scan.jpg")
    record = records["AUTO-COMM"]
    record["images"][0]["path"] = path
    result = check(registry, batch_dir, record)[0]
    assert [f for f, _ in result] == ["images[0].path"]
    record["images"][0]["path"] = "images/./nested//scan.jpg"  # the same folders, spelt loosely: fine
    assert fields(registry, batch_dir, record) == []


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("empty.jpg", b"", "empty"),
        ("text.jpg", "这不是图片".encode(), "does not decode"),
        ("dir", None, "regular file"),
    ],
)
def test_image_must_be_an_image(registry, batch_dir, records, name, content, words):
    target = batch_dir / "images" / name
    if content is None:
        target.mkdir()
    else:
        target.write_bytes(content)
    record = records["PA-ACC"]
    record["images"][0]["path"] = f"images/{name}"
    result = check(registry, batch_dir, record)[0]
    assert [f for f, _ in result] == ["images[0].path"]
    assert words in result[0][1]


def test_truncated_image_refused(registry, batch_dir, records):
    record = records["PA-ACC"]
    source = (batch_dir / record["images"][0]["path"]).read_bytes()
    (batch_dir / "images" / "cut.jpg").write_bytes(source[: len(source) // 2])
    record["images"][0]["path"] = "images/cut.jpg"
    assert fields(registry, batch_dir, record) == ["images[0].path"]


def test_png_and_pdf_scan_accepted(registry, batch_dir, records):
    Image.new("RGBA", (40, 30), (200, 0, 0, 128)).save(batch_dir / "images" / "alpha.png")
    Image.new("RGB", (60, 80), "white").save(batch_dir / "images" / "scan.pdf")
    record = records["PA-ACC"]
    record["images"][0]["path"] = "images/alpha.png"
    record["images"][1]["path"] = "images/scan.pdf"
    assert fields(registry, batch_dir, record) == []


def test_other_image_needs_label(registry, batch_dir, records):
    record = records["PA-ACC"]
    record["images"][0]["kind"] = "other"
    assert fields(registry, batch_dir, record) == ["images[0].label"]
    record["images"][0]["label"] = "病历首页"
    assert fields(registry, batch_dir, record) == []


# --- cross-record rules -----------------------------------------------------------------------------


def test_endorsement_needs_its_policy_earlier(registry, batch_dir, records):
    policy_no = records["endorsement"]["policy_no"]
    policy = next(r for r in records.values() if r["kind"] == "policy" and r["policy_no"] == policy_no)
    assert check(registry, batch_dir, policy, records["endorsement"]) == [[], []]
    alone = check(registry, batch_dir, records["endorsement"])[0]
    assert [f for f, _ in alone] == ["policy_no"]
    assert "neither archived nor earlier" in alone[0][1]
    # after the endorsement is no good either: the policy must come first
    assert [f for f, _ in check(registry, batch_dir, records["endorsement"], policy)[0]] == ["policy_no"]


def test_endorsement_of_rejected_policy_says_so(registry, batch_dir, records):
    endorsement = records["endorsement"]
    policy = next(
        r
        for r in records.values()
        if r.get("policy_no") == endorsement["policy_no"] and r["kind"] == "policy"
    )
    policy["total_premium"] = "0.01"
    result = check(registry, batch_dir, policy, endorsement)
    assert [f for f, _ in result[0]] == ["total_premium"]
    assert result[1] == [
        ("policy_no", f"policy {endorsement['policy_no']} was rejected at line 1 of this batch")
    ]


def test_endorsement_effective_inside_period(registry, batch_dir, records):
    endorsement = records["endorsement"]
    policy = next(
        r
        for r in records.values()
        if r.get("policy_no") == endorsement["policy_no"] and r["kind"] == "policy"
    )
    endorsement["effective_at"] = policy["period"]["end"]  # the end is exclusive
    assert [f for f, _ in check(registry, batch_dir, policy, endorsement)[1]] == ["effective_at"]


def test_same_record_id_twice(registry, batch_dir, records):
    first = records["HOME-PROP"]
    again = dict(first)
    changed = dict(first, policy_no="PZZZ000000000001")
    result = check(registry, batch_dir, first, again, changed)
    assert result[0] == []
    assert result[1] == [("record_id", "repeats line 1 (same content)")]
    assert result[2] == [("record_id", "repeats line 1 (different content: a conflict)")]


def test_same_policy_no_twice(registry, batch_dir, records):
    first = records["HOME-PROP"]
    second = dict(first, record_id=first["record_id"] + "-B")
    assert check(registry, batch_dir, first, second)[1] == [
        ("policy_no", "already issued by line 1 of this batch")
    ]


def test_text_that_looks_like_template_code_is_accepted(registry, batch_dir, records):
    record = records["HOME-PROP"]
    record["insured"]["name"] = "A&B <公司> {{x}} {% if %}"
    assert fields(registry, batch_dir, record) == []
