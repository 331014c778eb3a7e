"""Reading batch files: JSON Lines, CSV (UTF-8, UTF-8 with BOM, GB18030) and XLSX."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.synth import write_csv, write_xlsx
from pipeline.batch import Accepted, RecordChecker
from pipeline.batchfile import read_batch, unflatten
from pipeline.errors import BatchUnreadable
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
    from pipeline.batch import content_hash
    from pipeline.batchfile import MAX_DEPTH, RawRecord

    record = records["PA-ACC"]
    value: object = "x"
    for _ in range(MAX_DEPTH - 1):  # as deep as the reader lets through
        value = [value]
    record["special_terms"] = value
    checker = RecordChecker(registry=registry, batch_dir=batch_dir)
    verdict = checker.check(RawRecord(1, record))
    assert isinstance(verdict, list) and {r.field.split("[")[0] for r in verdict} == {"special_terms"}
    assert len(content_hash(record)) == 64
