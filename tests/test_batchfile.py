"""Reading batch files: JSON Lines, CSV (UTF-8, UTF-8 with BOM, GB18030) and XLSX."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from bench.synth import write_csv, write_xlsx
from core.errors import BatchUnreadable
from pipeline.batch import Accepted, RecordChecker
from pipeline.batchfile import read_batch, unflatten
from tests.conftest import RESOURCES, write_batch


def _accepted(registry, batch: Path) -> list[int]:
    checker = RecordChecker(registry=registry, batch_dir=batch.parent)
    return [raw.line for raw in read_batch(batch) if isinstance(checker.check(raw), Accepted)]


def test_jsonl_lines_numbered_and_bad_line_named(batch_dir, synth_records):
    batch = write_batch(batch_dir, [synth_records[0], "", '{"kind": "policy", ', "[1, 2]", synth_records[1]])
    raws = list(read_batch(batch))
    assert [r.line for r in raws] == [1, 3, 4, 5]  # blank line 2 is not a record
    assert raws[0].data == synth_records[0]
    assert raws[1].data is None and raws[1].problem.startswith("line 3 is not valid JSON")
    assert raws[2].problem == "line 4 is not a JSON object"
    assert raws[3].data == synth_records[1]


def test_jsonl_with_bom_and_crlf(batch_dir, synth_records):
    body = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in synth_records[:2]) + "\r\n"
    batch = batch_dir / "bom.jsonl"
    batch.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    assert [r.data for r in read_batch(batch)] == synth_records[:2]


def test_jsonl_invalid_utf8_line_later_is_rejected_alone(batch_dir, synth_records):
    batch = batch_dir / "mixed.jsonl"
    good = json.dumps(synth_records[0], ensure_ascii=False).encode("utf-8")
    batch.write_bytes(good + b"\n" + '{"name": "张三"}'.encode("gb18030") + b"\n" + good + b"\n")
    raws = list(read_batch(batch))
    assert [r.problem for r in raws] == [None, "line 2 is not valid UTF-8", None]


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("empty.jsonl", b"", "is empty"),
        ("blank.jsonl", b"\n\n  \n", "is empty"),
        ("binary.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"),
        ("gbk.jsonl", '{"name": "张三"}\n'.encode("gb18030"), "not UTF-8"),
        ("batch.txt", b"{}", "unknown type"),
        ("broken.xlsx", b"PK\x03\x04 not really a zip", "not a readable XLSX"),
        ("noheader.csv", "张三,李四\n".encode(), "lacks the columns"),
    ],
)
def test_unusable_files_are_refused_whole(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BatchUnreadable, match=words):
        list(read_batch(path))


def test_missing_file_and_folder_refused(tmp_path):
    with pytest.raises(BatchUnreadable, match="does not exist"):
        read_batch(tmp_path / "nope.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(BatchUnreadable, match="not a regular file"):
        read_batch(tmp_path / "dir.jsonl")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_round_trip_in_every_encoding(registry, batch_dir, synth_records, encoding):
    policies = [r for r in synth_records if r["kind"] == "policy"]
    batch = write_csv(policies, batch_dir / "batch.csv", encoding=encoding)
    raw = batch.read_bytes()
    if encoding == "gb18030":
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")  # the test really is about a non-UTF-8 file
    loaded = [r.data for r in read_batch(batch)]
    assert loaded == policies
    assert _accepted(registry, batch) == [2, 3, 4]  # header is line 1


def test_xlsx_round_trip(registry, batch_dir, synth_records):
    batch = write_xlsx(synth_records, batch_dir / "batch.xlsx")
    assert [r.data for r in read_batch(batch)] == synth_records
    assert _accepted(registry, batch) == [2, 3, 4, 5]


def test_committed_gb18030_csv_fixture(registry):
    batch = RESOURCES / "batch-gb18030.csv"
    with pytest.raises(UnicodeDecodeError):
        batch.read_bytes().decode("utf-8")
    raws = list(read_batch(batch))
    assert raws and all(r.problem is None for r in raws)
    assert _accepted(registry, batch) == [r.line for r in raws]
    names = [r.data["insured"]["name"] for r in raws]
    assert any("·" in n for n in names)


@pytest.mark.parametrize("name", ["batch-utf8-bom.csv", "batch.xlsx"])
def test_committed_flat_fixtures(registry, name):
    batch = RESOURCES / name
    raws = list(read_batch(batch))
    assert raws and _accepted(registry, batch) == [r.line for r in raws]


def test_unflatten_nested_lists_and_integers():
    flat = {
        "kind": "policy",
        "applicant.name": "样本",
        "coverages.0.premium": "1.00",
        "coverages.1.premium": "2.00",
        "images.2.path": "b.jpg",
        "images.0.path": "a.jpg",
        "vehicle.seats": "5",
        "clauses.0": "X-1",
    }
    assert unflatten(flat) == {
        "kind": "policy",
        "applicant": {"name": "样本"},
        "coverages": [{"premium": "1.00"}, {"premium": "2.00"}],
        "images": [{"path": "a.jpg"}, {"path": "b.jpg"}],
        "vehicle": {"seats": 5},
        "clauses": ["X-1"],
    }


def test_conflicting_columns_reject_the_row(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("kind,record_id,applicant,applicant.name\npolicy,R1,x,y\n", encoding="utf-8")
    (raw,) = read_batch(path)
    assert raw.data is None and "conflicts" in raw.problem and raw.line == 2


def test_csv_cell_count_beyond_header(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("kind,record_id\npolicy,R1,extra\n", encoding="utf-8")
    (raw,) = read_batch(path)
    assert raw.problem == "line 2 has more cells than the header has columns"


# --- one line can hold anything; it never stops the batch (issue 21, item 3) ------------------------------


def _deep(levels: int) -> str:
    return '{"kind": "policy", "special_terms": ' + "[" * levels + '"x"' + "]" * levels + "}"


HOSTILE_LINES = [
    (_deep(990), "nests deeper than 32 levels"),  # json.loads: RecursionError
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nests deeper than 32 levels"),
    (_deep(40), "nests deeper than 32 levels"),  # parses, but later stages recurse on it
    ('{"kind": "policy", "vehicle": {"seats": ' + "9" * 5000 + "}}", "holds a number that cannot be read"),
    ('{"kind": "policy", "total_premium": NaN}', "holds NaN"),
    ('{"kind": "policy", "total_premium": -Infinity}', "holds -Infinity"),
    ('{"kind": "policy", "total_premium": 1e999}', "number too large"),
    ('{"kind": "policy", "special_terms": ["\\ud800"]}', "lone surrogate"),
    ('{"kind": "policy", "\\udfff": 1}', "lone surrogate"),
    ('{"kind": "policy", "record_id": "A", "record_id": "B"}', 'repeats the key "record_id"'),
    ('{"kind": "policy", "applicant": {"name": "a", "name": "b"}}', 'repeats the key "name"'),
]


@pytest.mark.parametrize(("line", "words"), HOSTILE_LINES, ids=range(len(HOSTILE_LINES)))
def test_a_hostile_line_is_rejected_by_its_number_and_the_batch_goes_on(
    registry, batch_dir, synth_records, line, words
):
    batch = write_batch(batch_dir, [synth_records[0], line, synth_records[1]])
    raws = list(read_batch(batch))
    assert [r.line for r in raws] == [1, 2, 3]
    assert raws[0].data == synth_records[0] and raws[2].data == synth_records[1]
    assert raws[1].data is None and raws[1].problem.startswith("line 2 ") and words in raws[1].problem
    assert _accepted(registry, batch) == [1, 3]  # every later stage copes with what the reader let through


def test_a_line_of_100_mb_is_rejected_without_being_read_whole(registry, batch_dir, synth_records):
    batch = batch_dir / "huge.jsonl"
    with batch.open("wb") as fh:
        fh.write(json.dumps(synth_records[0], ensure_ascii=False).encode() + b"\n")
        fh.write(b'{"kind": "policy", "special_terms": ["')
        for _ in range(100):
            fh.write(b"x" * (1 << 20))
        fh.write(b'"]}\n')
        fh.write(json.dumps(synth_records[1], ensure_ascii=False).encode() + b"\n")
    raws = list(read_batch(batch))
    assert [(r.line, r.problem) for r in raws] == [
        (1, None),
        (2, "line 2 is longer than 1,048,576 bytes"),
        (3, None),
    ]
    assert _accepted(registry, batch) == [1, 3]


def test_what_may_pass_the_reader_still_passes(synth_records):
    # a surrogate pair is one character (𠮷, U+20BB7), and 32 levels are allowed
    from pipeline.batchfile import MAX_DEPTH, json_record

    raw = json_record(1, '{"name": "\\ud842\\udfb7"}')
    assert raw.problem is None and raw.data == {"name": "𠮷"}
    assert json_record(2, _deep(MAX_DEPTH - 1)).problem is None  # the object and 31 arrays in it
    assert json_record(3, _deep(MAX_DEPTH)).problem == "line 3 nests deeper than 32 levels"


def test_deep_but_allowed_nesting_is_rejected_by_validation_not_by_a_crash(registry, batch_dir, records):
    from core.records import RawRecord, content_hash
    from pipeline.batchfile import MAX_DEPTH

    record = records["PA-ACC"]
    value: object = "x"
    for _ in range(MAX_DEPTH - 1):  # as deep as the reader lets through
        value = [value]
    record["special_terms"] = value
    checker = RecordChecker(registry=registry, batch_dir=batch_dir)
    verdict = checker.check(RawRecord(1, record))
    assert isinstance(verdict, list) and {r.field.split("[")[0] for r in verdict} == {"special_terms"}
    assert len(content_hash(record)) == 64


def test_a_csv_column_nested_too_deep_refuses_the_file(tmp_path):
    path = tmp_path / "deep.csv"
    path.write_text("kind,record_id," + ".".join(["a"] * 40) + "\npolicy,R1,x\n", encoding="utf-8")
    with pytest.raises(BatchUnreadable, match="nested deeper than 32 levels"):
        read_batch(path)


def test_a_csv_line_too_long_is_rejected_alone(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(
        "kind,record_id\npolicy,R1\npolicy," + "x" * (2 << 20) + "\npolicy,R3\n", encoding="utf-8"
    )
    raws = list(read_batch(path))
    assert [(r.line, r.problem) for r in raws] == [
        (2, None),
        (3, "line 3 is longer than 1,048,576 characters"),
        (4, None),
    ]


# --- workbooks: refused whole when broken anywhere, a bad cell rejects its row (issue 21, items 4, 6) -----

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + "]>"
)


OFFICE = "application/vnd.openxmlformats-officedocument.spreadsheetml"
CONTENT_TYPES = (
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{OFFICE}.sheet.main+xml"/>'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{OFFICE}.worksheet+xml"/>'
    f'<Override PartName="/xl/sharedStrings.xml" ContentType="{OFFICE}.sharedStrings+xml"/></Types>'
)


def _sheet(rows: list[list[str]], *, shared: list[str] | None = None) -> str:
    """Sheet XML: each cell an inline string, or a shared string when ``shared`` collects them."""
    out = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if shared is None:
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>')
            else:
                shared.append(value)
                cells.append(f'<c r="{ref}" t="s"><v>{len(shared) - 1}</v></c>')
        out.append(f'<row r="{r}">{"".join(cells)}</row>')
    return f'<worksheet xmlns="{MAIN}"><sheetData>{"".join(out)}</sheetData></worksheet>'


def _strings(values: list[str]) -> str:
    return f'<sst xmlns="{MAIN}">' + "".join(f"<si><t>{v}</t></si>" for v in values) + "</sst>"


def _workbook(path: Path, *, sheet: str | bytes, **parts: str | bytes) -> Path:
    """A minimal XLSX as Excel lays it out; ``parts`` replace or add members (``None``: leave one out)."""
    members: dict[str, str | bytes | None] = {
        "[Content_Types].xml": CONTENT_TYPES,
        "_rels/.rels": f'<Relationships xmlns="{PACKAGE_RELS}"><Relationship Id="r1" '
        f'Type="{RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook xmlns="{MAIN}" xmlns:r="{RELS}"><sheets><sheet name="batch" '
        'sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{PACKAGE_RELS}"><Relationship Id="rId1" '
        f'Type="{RELS}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" '
        f'Type="{RELS}/sharedStrings" Target="sharedStrings.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": sheet,
        "xl/sharedStrings.xml": _strings([]),
    }
    members.update({name.replace("__", "/").replace("_dot_", "."): data for name, data in parts.items()})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            if data is not None:
                zf.writestr(name, data)
    return path


GOOD_ROWS = [["kind", "record_id", "applicant.name"], ["policy", "R1", "张三"], ["policy", "R2", "李四"]]


def test_a_minimal_workbook_reads_with_inline_and_shared_strings(tmp_path):
    shared: list[str] = []
    sheet = _sheet(GOOD_ROWS, shared=shared)
    for path in (
        _workbook(tmp_path / "inline.xlsx", sheet=_sheet(GOOD_ROWS)),
        _workbook(tmp_path / "shared.xlsx", sheet=sheet, xl__sharedStrings_dot_xml=_strings(shared)),
    ):
        assert [(r.line, r.data) for r in read_batch(path)] == [
            (2, {"kind": "policy", "record_id": "R1", "applicant": {"name": "张三"}}),
            (3, {"kind": "policy", "record_id": "R2", "applicant": {"name": "李四"}}),
        ]


def _broken_mid_sheet() -> str:
    rows = GOOD_ROWS + [["policy", f"R{i}", "王五"] for i in range(3, 3000)]
    good = _sheet(rows)
    return good.replace('<row r="2500">', '<row r="2500"><c r="A2500"><v>1</c>')  # unclosed <v>


HOSTILE_WORKBOOKS = {
    "garbage-members": (
        {"sheet": b"\x00\x01\x02 not xml", "xl__workbook_dot_xml": b"\xff\xfe garbage"},
        "broken XML",
    ),
    "malformed-mid-sheet": ({"sheet": _broken_mid_sheet()}, "broken XML in xl/worksheets/sheet1.xml"),
    "no-sheets": (
        {
            "sheet": _sheet(GOOD_ROWS),
            "xl__workbook_dot_xml": f'<workbook xmlns="{MAIN}"><sheets/></workbook>',
        },
        "has no worksheet",
    ),
    "no-workbook": ({"sheet": _sheet(GOOD_ROWS), "xl__workbook_dot_xml": None}, "no workbook part"),
    "sheet-part-missing": (
        {"sheet": _sheet(GOOD_ROWS), "xl__worksheets__sheet1_dot_xml": None},
        "lacks its part xl/worksheets/sheet1.xml",
    ),
    "billion-laughs-in-sheet": (
        {
            "sheet": BILLION_LAUGHS
            + f'<worksheet xmlns="{MAIN}"><sheetData><row><c t="inlineStr"><is><t>&lol9;'
            "</t></is></c></row></sheetData></worksheet>"
        },
        "document type (DTD)",
    ),
    "billion-laughs-in-strings": (
        {
            "sheet": _sheet(GOOD_ROWS),
            "xl__sharedStrings_dot_xml": BILLION_LAUGHS + f'<sst xmlns="{MAIN}"><si><t>&lol9;</t></si></sst>',
        },
        "document type (DTD)",
    ),
    "external-entity-in-workbook": (
        {
            "sheet": _sheet(GOOD_ROWS),
            "xl__workbook_dot_xml": '<!DOCTYPE w [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            f'<workbook xmlns="{MAIN}"><sheets><sheet name="&x;"/></sheets></workbook>',
        },
        "document type (DTD)",
    ),
    "nested-deep": (
        {"sheet": f'<worksheet xmlns="{MAIN}">' + "<a>" * 100_000 + "</a>" * 100_000 + "</worksheet>"},
        "nests deeper than 64 levels",
    ),
    "no-header": ({"sheet": _sheet(GOOD_ROWS).replace('<row r="1">', '<row r="7">', 1)}, "lacks the columns"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_WORKBOOKS))
def test_a_broken_or_hostile_workbook_is_refused_whole_before_any_record(tmp_path, case):
    parts, words = HOSTILE_WORKBOOKS[case]
    path = _workbook(tmp_path / f"{case}.xlsx", **parts)
    with pytest.raises(BatchUnreadable, match=re.escape(words)):
        read_batch(path)  # refused by the call itself: no record was handed out


def test_an_entity_bomb_costs_no_memory(tmp_path):
    import tracemalloc

    path = _workbook(tmp_path / "bomb.xlsx", sheet=HOSTILE_WORKBOOKS["billion-laughs-in-sheet"][0]["sheet"])
    tracemalloc.start()
    try:
        with pytest.raises(BatchUnreadable):
            read_batch(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, peak  # expanded, &lol9; is 3 GB


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ('<c r="B3"><v>not a number</v></c>', "cell B3 cannot be read (not a value of its type)"),
        ('<c r="B3" t="s"><v>99</v></c>', "cell B3 cannot be read (it refers to a shared string"),
        ('<c r="B3" t="b"><v>yes</v></c>', "cell B3 cannot be read"),
        ('<c r="B3"><v>' + "9" * 5000 + "</v></c>", "cell B3 cannot be read"),
        ('<c r="3B"><v>1</v></c>', "a cell's reference is invalid"),
        ('<c r="ZZZZ3"><v>1</v></c>', "a cell's reference is invalid"),
        (
            '<c r="B3" t="inlineStr"><is><t>' + "x" * (1 << 20) + "y</t></is></c>",
            "more than 1,048,576 characters",
        ),
        ('<c r="B3"><c r="C3"><v>1</v></c></c>', "a cell holds another cell"),
    ],
)
def test_a_cell_that_cannot_be_read_rejects_its_row_alone(tmp_path, cell, words):
    sheet = _sheet([*GOOD_ROWS, ["policy", "R3", "王五"], ["policy", "R4", "赵六"]])
    sheet = re.sub(
        r'<row r="3">.*?</row>',
        f'<row r="3"><c r="A3" t="inlineStr"><is><t>policy</t></is></c>{cell}</row>',
        sheet,
    )
    raws = list(read_batch(_workbook(tmp_path / "cell.xlsx", sheet=sheet)))
    assert [r.line for r in raws] == [2, 3, 4, 5]
    assert raws[1].data is None and raws[1].problem.startswith("line 3: ") and words in raws[1].problem
    assert all(r.problem is None for r in raws if r.line != 3)


def test_cell_values_read_as_openpyxl_gave_them(tmp_path):
    # openpyxl read these workbooks before: numbers, dates, booleans, formulas' cached values and
    # styled dates must reach the records as the same text
    import datetime as dt

    from openpyxl import Workbook, load_workbook

    from pipeline.xlsx import cell_text

    book = Workbook()
    sheet = book.active
    sheet.append(["kind", "record_id", "n.int", "n.float", "n.bool", "n.date", "n.datetime", "n.text"])
    sheet.append(
        ["policy", "R1", 5, 3456.78, True, dt.date(2020, 1, 2), dt.datetime(2026, 12, 1, 8, 30), "A&B <x>"]
    )
    sheet.append(["policy", "R2", 45627, 5.0, False, None, dt.datetime(1999, 12, 31), " 空格 "])
    sheet["C3"].number_format = "yyyy-mm-dd"  # a number shown as a date is read as one
    sheet.append(["policy", "R3", "=1+1", 1e-7, 12345678901234, None, None, "x"])
    path = tmp_path / "types.xlsx"
    book.save(path)

    old = load_workbook(path, read_only=True, data_only=True)
    expected = [[cell_text(v) for v in row] for row in old.worksheets[0].iter_rows(values_only=True)]
    old.close()
    from pipeline.xlsx import open_first_sheet

    with open_first_sheet(path) as wb:
        got = [row.cells + [""] * (len(expected[0]) - len(row.cells)) for row in wb.rows()]
    assert got == expected
    assert expected[2][2] == "2024-12-01T00:00:00"  # the styled number really became a date


def _traced_peak(path: Path) -> tuple[int, int]:
    """Records read from ``path`` and the peak of Python memory while reading them."""
    import gc
    import tracemalloc

    gc.collect()  # earlier tests' garbage, whose finalizers would allocate while this is traced
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_batch(path))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _flat_rows(n: int) -> list[list[str]]:
    return [["kind", "record_id", "applicant.name", "applicant.phone", "special_terms.0"]] + [
        ["policy", f"R{i:08d}", f"样本{i}", f"139{i:08d}", f"第{i}条特别约定" * 5] for i in range(n)
    ]


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_memory_stays_flat_whatever_the_number_of_rows(tmp_path, kind):
    peaks = {}
    for n in (2_000, 20_000):
        path = tmp_path / f"rows-{n}.{kind}"
        rows = _flat_rows(n)
        if kind == "csv":
            path.write_text("\n".join(",".join(row) for row in rows) + "\n", encoding="gb18030")
        else:
            shared: list[str] = []  # text as Excel keeps it: every string in the shared table
            _workbook(path, sheet=_sheet(rows, shared=shared), xl__sharedStrings_dot_xml=_strings(shared))
        count, peaks[n] = _traced_peak(path)
        assert count == n
    # ten times the rows: read whole, they took ten times the memory (3.5 -> 36 MB); streamed, about the same
    assert peaks[20_000] < peaks[2_000] + (1 << 20), peaks


@pytest.mark.parametrize(
    "case", ["garbage-members", "malformed-mid-sheet", "billion-laughs-in-sheet", "no-sheets"]
)
def test_issuance_run_refuses_a_broken_workbook_with_exit_2_and_one_message(tmp_path, case):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    path = _workbook(tmp_path / f"{case}.xlsx", **HOSTILE_WORKBOOKS[case][0])
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "ISSUANCE_HMAC_KEY": "batchfile-test-key-0123456789"},
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and f"batch file {case}.xlsx" in result.stderr
    assert not (tmp_path / "var").exists() or not list((tmp_path / "var").rglob("*.pdf"))
