"""The synthetic batch generator and the committed fixtures it made.

The contract's semantic rules are checked here with code written independently of ``bench.synth`` (the
MOD 11-2 check below uses the iterative form of ISO 7064, not the weight table), so a bug in the
generator's check characters cannot hide behind the same bug in the test.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from decimal import Decimal
from pathlib import Path, PurePosixPath

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "tests" / "resources"
SAMPLE = ROOT / "examples" / "sample-batch"

import jsonschema  # noqa: E402  (a test dependency: never skip the contract check silently)

from bench import synth  # noqa: E402  (importable through pytest's pythonpath = ["."])

PRODUCTS_TOML = tomllib.loads((ROOT / "templates" / "products.toml").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------
# An independent checker for the contract's rules
# ---------------------------------------------------------------------------------------------------------


def _mod11_2_ok(id_no: str) -> bool:
    if len(id_no) != 18 or not id_no[:17].isdigit():
        return False
    p = 0
    for c in id_no[:17]:
        p = ((p + int(c)) * 2) % 11
    check = (12 - p) % 11
    return id_no[17] == ("X" if check == 10 else str(check))


def _birth_ok(id_no: str) -> bool:
    try:
        born = dt.date(int(id_no[6:10]), int(id_no[10:12]), int(id_no[12:14]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= dt.date(2027, 12, 31)


def _uscc_ok(code: str) -> bool:
    charset = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = [pow(3, i, 31) for i in range(17)]  # 1 3 9 27 19 26 ... is 3**i mod 31
    if len(code) != 18 or any(c not in charset for c in code):
        return False
    total = sum(charset.index(c) * w for c, w in zip(code[:17], weights, strict=True))
    return code[17] == charset[-total % 31]


def _vin_ok(vin: str) -> bool:
    table = "A1B2C3D4E5F6G7H8J1K2L3M4N5P7R9S2T3U4V5W6X7Y8Z9"
    values = {table[i]: int(table[i + 1]) for i in range(0, len(table), 2)} | {str(d): d for d in range(10)}
    weights = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
    total = sum(values[c] * w for c, w in zip(vin, weights, strict=True))
    return vin[8] == ("X" if total % 11 == 10 else str(total % 11))


def _two_places(value: str) -> bool:
    return "." in value and len(value.split(".")[1]) == 2


def _aware(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    assert moment.utcoffset() == dt.timedelta(hours=8), value
    return moment


def _party_problems(prefix: str, party: dict) -> list[str]:
    problems = []
    if party["id_type"] == "resident_id" and not (_mod11_2_ok(party["id_no"]) and _birth_ok(party["id_no"])):
        problems.append(f"{prefix}.id_no")
    if party["id_type"] == "uscc" and not _uscc_ok(party["id_no"]):
        problems.append(f"{prefix}.id_no")
    return problems


def _image_problems(record: dict, folder: Path) -> list[str]:
    problems = []
    for n, image in enumerate(record.get("images", [])):
        rel = PurePosixPath(image["path"])
        target = folder / rel
        if rel.is_absolute() or ".." in rel.parts or not target.is_file():
            problems.append(f"images.{n}.path")
            continue
        with Image.open(target) as im:
            im.verify()
    return problems


def problems(record: dict, folder: Path, policies: dict[str, dict]) -> list[str]:
    """Names of the fields breaking a contract rule (README "Rules the schema cannot express")."""
    out: list[str] = []
    if record["kind"] == "endorsement":
        policy = policies.get(record["policy_no"])
        if policy is None:
            return ["policy_no", *_image_problems(record, folder)]
        effective = _aware(record["effective_at"])
        inside = _aware(policy["period"]["start"]) <= effective < _aware(policy["period"]["end"])
        backdated = effective < _aware(record["underwriting"]["approved_at"])  # 倒签单
        if not inside or backdated:
            out.append("effective_at")
        if not _two_places(record["premium_delta"]):
            out.append("premium_delta")
        return out + _image_problems(record, folder)

    product = PRODUCTS_TOML["products"][record["product_code"]]
    out += _party_problems("applicant", record["applicant"])
    out += _party_problems("insured", record["insured"])
    for n, b in enumerate(record.get("beneficiaries", [])):
        out += _party_problems(f"beneficiaries.{n}", b)
    if (
        record.get("beneficiaries")
        and sum(Decimal(b["share_percent"]) for b in record["beneficiaries"]) != 100
    ):
        out.append("beneficiaries")
    if not _aware(record["period"]["start"]) < _aware(record["period"]["end"]):
        out.append("period")
    if _aware(record["period"]["start"]) < _aware(record["underwriting"]["approved_at"]):  # 倒签单
        out.append("period.start")
    amounts = [record["total_premium"]] + [
        c[k] for c in record["coverages"] for k in ("sum_insured", "premium")
    ]
    if not all(_two_places(a) for a in amounts):
        out.append("amounts")
    if any(Decimal(c["sum_insured"]) <= 0 for c in record["coverages"]):
        out.append("coverages.sum_insured")
    if Decimal(record["total_premium"]) != sum(Decimal(c["premium"]) for c in record["coverages"]):
        out.append("total_premium")
    if any(code not in product["clauses"] for code in record["clauses"]):
        out.append("clauses")
    for section in product.get("requires", []):
        if section not in record:
            out.append(section)
    if "vehicle" in record and not _vin_ok(record["vehicle"]["vin"]):
        out.append("vehicle.vin")
    return out + _image_problems(record, folder)


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((RESOURCES / "record.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _schema_errors(validator, record: dict) -> list[str]:
    return [e.message for e in validator.iter_errors(record)]


# ---------------------------------------------------------------------------------------------------------
# make_batch
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    return synth.make_batch(tmp_path_factory.mktemp("synth") / "b", 30, seed=7, endorsements=3)


def _records(batch: Path) -> list[dict]:
    return [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]


def test_schema_copy_matches_shared_contract():
    # the shared folder sits beside the repository (as CI lays it out), never at a machine's own path
    shared = Path(__file__).resolve().parents[2] / "shared" / "contract" / "record.schema.json"
    if not shared.exists():
        pytest.skip("shared contract folder not present beside this repository")
    assert json.loads(shared.read_text(encoding="utf-8")) == json.loads(
        (RESOURCES / "record.schema.json").read_text(encoding="utf-8")
    )


def test_products_mirror_products_toml():
    for code, product in synth.PRODUCTS.items():
        assert product["clauses"] == PRODUCTS_TOML["products"][code]["clauses"]
        assert product["required_images"] == PRODUCTS_TOML["products"][code]["required_images"]


def test_batch_has_every_record_valid(batch, validator):
    records = _records(batch)
    assert len(records) == 33
    assert [r["kind"] for r in records] == ["policy"] * 30 + ["endorsement"] * 3
    assert [r["product_code"] for r in records[:3]] == ["AUTO-COMM", "HOME-PROP", "PA-ACC"]
    policies: dict[str, dict] = {}
    for record in records:
        assert _schema_errors(validator, record) == [], record["record_id"]
        assert problems(record, batch.parent, policies) == [], record["record_id"]
        for key in ("issued_at", "effective_at"):
            if key in record:
                _aware(record[key])
        if record["kind"] == "policy":
            policies[record["policy_no"]] = record
    assert any(r.get("beneficiaries") for r in records)
    assert any(r["applicant"]["party_type"] == "organization" for r in records[:30])


def test_some_beneficiaries_have_addresses_of_real_shapes(batch):
    """Contract v1.1: a beneficiary's address is optional; some have one, long or on a street with a
    character outside the BMP, every one down to the room (号, 栋, 室) in the policy's branch's city."""
    records = [r for r in _records(batch) if r["kind"] == "policy"]
    named = [(r, b) for r in records for b in r.get("beneficiaries", [])]
    addresses = [b["address"] for _r, b in named if "address" in b]
    assert 0 < len(addresses) < len(named)
    assert any(len(a) >= 60 for a in addresses)
    assert any(any(ord(c) > 0xFFFF for c in a) for a in addresses)
    for r, b in named:
        if "address" in b:
            assert all(mark in b["address"] for mark in "号栋室"), b["address"]
            assert b["address"][:2] == r["insured"]["address"][:2]  # the same province or city


def test_batch_ids_are_unique(batch):
    records = _records(batch)
    for key in ("record_id", "policy_no", "proposal_no", "endorsement_no"):
        values = [r[key] for r in records if key in r and (key != "policy_no" or r["kind"] == "policy")]
        assert len(values) == len(set(values)), key


def test_endorsements_change_what_the_policy_says(batch):
    records = _records(batch)
    state = {r["policy_no"]: synth.flatten(r) for r in records if r["kind"] == "policy"}
    deltas = []
    for e in (r for r in records if r["kind"] == "endorsement"):
        for change in e["changes"]:
            assert state[e["policy_no"]][change["field"]] == change["old"]
            assert change["old"] != change["new"]
            state[e["policy_no"]][change["field"]] = change["new"]
        deltas.append(Decimal(e["premium_delta"]))
    assert any(d < 0 for d in deltas) and any(d > 0 for d in deltas)


def test_images_are_shared_small_and_sized_like_scans(batch):
    folder = batch.parent
    paths = {i["path"] for r in _records(batch) for i in r.get("images", [])}
    files = sorted((folder / "images").iterdir())
    assert {f"images/{f.name}" for f in files} == paths  # nothing written that is not referenced
    assert len(files) < 40  # variants reused, not one file per record
    for f in files:
        assert f.stat().st_size < 250_000, f.name
        with Image.open(f) as im:
            assert im.format == "JPEG"
            assert im.size in {synth.CARD, synth.A4}, (f.name, im.size)


def test_same_seed_same_bytes(tmp_path):
    a = synth.make_batch(tmp_path / "a", 7, seed=3, endorsements=2, image_variants=1)
    synth._encoded.cache_clear()  # draw the images again rather than reuse the cached bytes
    b = synth.make_batch(tmp_path / "b", 7, seed=3, endorsements=2, image_variants=1)
    c = synth.make_batch(tmp_path / "c", 7, seed=4, endorsements=2, image_variants=1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    for f in (a.parent / "images").iterdir():
        assert f.read_bytes() == (b.parent / "images" / f.name).read_bytes(), f.name


def test_png_format_and_bad_arguments(tmp_path):
    batch = synth.make_batch(tmp_path / "p", 3, images_per_record=1, image_format="png", image_variants=1)
    paths = [i["path"] for r in _records(batch) for i in r["images"]]
    assert len(paths) == 3 and all(p.endswith(".png") for p in paths)
    with pytest.raises(ValueError):
        synth.make_batch(tmp_path / "x", 3, image_format="gif")
    with pytest.raises(ValueError):
        synth.make_batch(tmp_path / "x", 0)


def test_cli_prints_the_batch_path(tmp_path, capsys):
    argv = ["-n", "4", "-o", str(tmp_path / "cli"), "--seed", "7", "--endorsements", "1"]
    assert synth.main(argv) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == tmp_path / "cli" / "batch.jsonl"
    assert len(printed.read_text(encoding="utf-8").splitlines()) == 5


def test_check_characters_against_known_values():
    # GB 11643 appendix example and the USCC / VIN examples printed in their standards' explanations
    assert synth._resident_id_check("11010519491231002") == "X"
    assert _mod11_2_ok("11010519491231002X")
    assert synth._uscc_check("91350100M000100Y4") == "3"
    assert _uscc_ok("91350100M000100Y43")
    assert synth._vin_check("1M8GDM9AXKP042788") == "X"
    assert _vin_ok("1M8GDM9AXKP042788")


# ---------------------------------------------------------------------------------------------------------
# flatten / unflatten / flat files
# ---------------------------------------------------------------------------------------------------------


def test_flatten_round_trip(batch):
    for record in _records(batch):
        flat = synth.flatten(record)
        assert all(isinstance(v, str) and v for v in flat.values())
        assert synth.unflatten(flat) == record
    flat = synth.flatten(_records(batch)[0])
    assert {"applicant.name", "coverages.0.premium", "images.1.path", "clauses.0"} <= flat.keys()


def test_flat_columns_order_is_stable_and_numeric():
    rows = [{"coverages.10.premium": "1", "coverages.9.premium": "1", "kind": "policy"}, {"record_id": "x"}]
    assert synth.flat_columns(rows) == ["kind", "record_id", "coverages.9.premium", "coverages.10.premium"]
    assert synth.flat_columns(reversed(rows)) == synth.flat_columns(rows)


def _sample_lines() -> list[str]:
    return (SAMPLE / "batch.jsonl").read_text(encoding="utf-8").splitlines()


def _good_sample_policies() -> list[dict]:
    return [json.loads(line) for line in _sample_lines()[:6]]


def _read_csv(path: Path, encoding: str) -> list[dict]:
    import csv

    with path.open(encoding=encoding, newline="") as fh:
        return [synth.unflatten(row) for row in csv.DictReader(fh)]


def _read_xlsx(path: Path) -> list[dict]:
    from openpyxl import load_workbook

    sheet = load_workbook(path, read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    for row in rows:
        assert all(v is None or isinstance(v, str) for v in row)  # every cell is text
    header = rows[0]
    return [synth.unflatten({h: v or "" for h, v in zip(header, row, strict=True)}) for row in rows[1:]]


@pytest.mark.parametrize(
    ("name", "reader"),
    [
        ("batch-gb18030.csv", lambda p: _read_csv(p, "gb18030")),
        ("batch-utf8-bom.csv", lambda p: _read_csv(p, "utf-8-sig")),
        ("batch.xlsx", _read_xlsx),
    ],
)
def test_flat_fixtures_hold_the_good_sample_policies(name, reader, validator):
    records = reader(RESOURCES / name)
    assert records == _good_sample_policies()
    for record in records:
        assert _schema_errors(validator, record) == []
        assert problems(record, RESOURCES, {}) == []


def test_gb18030_fixture_is_not_utf8_and_has_no_bom():
    raw = (RESOURCES / "batch-gb18030.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert "欧阳·𠮷祥" in raw.decode("gb18030")
    assert (RESOURCES / "batch-utf8-bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_xlsx_keeps_template_like_text_literal(tmp_path):
    record = {
        "kind": "policy",
        "applicant": {"name": '=HYPERLINK("x") {{x}} <b>'},
        "total_premium": "0100.50",
    }
    path = synth.write_xlsx([record], tmp_path / "t.xlsx")
    assert _read_xlsx(path) == [record]


# ---------------------------------------------------------------------------------------------------------
# The bundled sample batch
# ---------------------------------------------------------------------------------------------------------

# line number -> the one field the contract rules reject it for (None: the line is good)
SAMPLE_EXPECTED = {
    1: None,
    2: None,
    3: None,
    4: None,
    5: None,
    6: None,
    7: None,
    8: "insured.id_no",
    9: "total_premium",
    10: "clauses",
    11: "images.1.path",
    12: "not json",
    13: "policy_no",
    14: None,  # contract v1.1: an added rider (add_clauses) on line 5
    15: None,  # contract v1.1: a surrender of line 4
}


def test_sample_batch_lines_have_exactly_the_documented_defects(validator):
    lines = _sample_lines()
    assert len(lines) == len(SAMPLE_EXPECTED)
    policies: dict[str, dict] = {}
    for number, line in enumerate(lines, start=1):
        expected = SAMPLE_EXPECTED[number]
        if expected == "not json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
            continue
        record = json.loads(line)
        assert _schema_errors(validator, record) == [], number  # every defect is semantic, not shape
        found = problems(record, SAMPLE, policies)
        assert found == ([] if expected is None else [expected]), number
        if record["kind"] == "policy" and expected is None:
            policies[record["policy_no"]] = record


def test_sample_batch_has_the_edge_cases_the_readme_promises():
    good = [json.loads(line) for line in _sample_lines()[:7]]
    assert [r.get("product_code") for r in good[:6]] == ["AUTO-COMM"] * 2 + ["HOME-PROP"] * 2 + ["PA-ACC"] * 2
    names = {r[p]["name"] for r in good[:6] for p in ("applicant", "insured")}
    assert "欧阳·𠮷祥" in names
    assert 'A&B <示范> "{{x}}" 贸易有限公司' in names
    assert any(len(r.get("property", {}).get("address", "")) >= 85 for r in good)
    shares = [[b["share_percent"] for b in r.get("beneficiaries", [])] for r in good[4:6]]
    assert sorted(shares) == [[], ["60.00", "40.00"]]
    amounts = {c[k] for r in good[:6] for c in r["coverages"] for k in ("sum_insured", "premium")}
    assert {"1000000.00", "100010.50"} <= amounts
    endorsement = good[6]
    assert endorsement["policy_no"] == good[0]["policy_no"]
    assert endorsement["premium_delta"] == "-120.50"
    assert endorsement["changes"][0]["field"] == "vehicle.plate"
    # contract v1.1 (issue 25): an added rider on line 5 and a surrender of line 4
    rider, surrender = (json.loads(line) for line in _sample_lines()[13:15])
    assert (rider["type"], rider["policy_no"], rider["clauses_added"]) == (
        "add_clauses",
        good[4]["policy_no"],
        ["PA-ACC-MED"],
    )
    assert "PA-ACC-MED" not in good[4]["clauses"]
    assert (surrender["type"], surrender["policy_no"]) == ("surrender", good[3]["policy_no"])
    assert Decimal(surrender["premium_delta"]) < 0
