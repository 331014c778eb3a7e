"""Peak memory and time of reading a batch file (``pipeline.batchfile.read_batch``), nothing else.

    python bench/reader_bench.py make-xlsx 1048575 /tmp/big.xlsx   # Excel's row limit, less the header
    python bench/reader_bench.py make-csv 200000 /tmp/big.csv
    python bench/reader_bench.py read /tmp/big.xlsx                # one JSON line: records, seconds, peak RSS
    python bench/reader_bench.py read-openpyxl /tmp/big.xlsx       # the same sheet through openpyxl, streamed

The files hold ``bench.synth`` records, each row made unique (record_id, policy and proposal numbers,
applicant's name and phone), written the way Excel writes a sheet: every text cell a shared string. The
sheet is written straight into the zip, row by row, so making a million rows needs little memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synth import flat_columns, flatten, make_batch

TEMPLATES = 300  # distinct synthetic records the rows are made from


def _rows(n: int):
    """``(columns, rows)``: ``n`` flat records, each made unique from one of the templates."""
    with tempfile.TemporaryDirectory() as tmp:
        batch = make_batch(Path(tmp), TEMPLATES, seed=2100, images_per_record=0)
        templates = [flatten(json.loads(line)) for line in batch.read_text(encoding="utf-8").splitlines()]
    columns = flat_columns(templates)

    def rows():
        for i in range(n):
            row = dict(templates[i % TEMPLATES])
            row["record_id"] = f"RB{i:010d}"
            row["policy_no"] = f"PDAA2026{i:014d}"
            row["proposal_no"] = f"TDAA2026{i:014d}"
            row["applicant.name"] = f"{row['applicant.name']}{i}"
            row["applicant.phone"] = f"139{i:08d}"
            yield [row.get(c, "") for c in columns]

    return columns, rows()


def _column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE = "http://schemas.openxmlformats.org/package/2006"
_OFFICE = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_PARTS = {
    "[Content_Types].xml": f'<Types xmlns="{_PACKAGE}/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_OFFICE}.sheet.main+xml"/>'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_OFFICE}.worksheet+xml"/>'
    f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_OFFICE}.sharedStrings+xml"/></Types>',
    "_rels/.rels": f'<Relationships xmlns="{_PACKAGE}/relationships"><Relationship Id="rId1" '
    f'Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
    "xl/workbook.xml": f'<workbook {_NS} xmlns:r="{_REL_NS}"><sheets><sheet name="batch" sheetId="1" '
    'r:id="rId1"/></sheets></workbook>',
    "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{_PACKAGE}/relationships">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL_NS}/sharedStrings" Target="sharedStrings.xml"/></Relationships>',
}


def make_xlsx(n: int, path: Path) -> None:
    columns, rows = _rows(n)
    letters = [_column_letters(i) for i in range(len(columns))]
    strings: dict[str, int] = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(f"{_HEAD}<worksheet {_NS}><sheetData>".encode())
            for r, values in enumerate([columns, *rows], start=1):
                cells = []
                for letter, value in zip(letters, values, strict=True):
                    if value == "":
                        continue
                    index = strings.setdefault(value, len(strings))
                    cells.append(f'<c r="{letter}{r}" t="s"><v>{index}</v></c>')
                sheet.write(f'<row r="{r}">{"".join(cells)}</row>'.encode())
            sheet.write(b"</sheetData></worksheet>")
        with zf.open("xl/sharedStrings.xml", "w", force_zip64=True) as table:
            count = len(strings)
            table.write(f'{_HEAD}<sst {_NS} count="{count}" uniqueCount="{count}">'.encode())
            for value in strings:
                table.write(f"<si><t>{escape(value)}</t></si>".encode())
            table.write(b"</sst>")
        for name, xml in _PARTS.items():
            zf.writestr(name, _HEAD + xml)


def make_csv(n: int, path: Path) -> None:
    columns, rows = _rows(n)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)


def read(path: Path) -> None:
    from pipeline.batchfile import read_batch

    started = time.perf_counter()
    count = problems = 0
    for raw in read_batch(path):
        count += 1
        problems += raw.problem is not None
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "file": path.name,
                "records": count,
                "problems": problems,
                "seconds": round(seconds, 1),
                "peak_rss_mib": round(peak / 1024, 1),
            }
        )
    )


def read_openpyxl(path: Path) -> None:
    """The same sheet through openpyxl's own streaming mode (read-only, values only, one row at a time,
    nothing kept): what a hand-written reader has to beat to be worth keeping (docs/performance.md)."""
    from openpyxl import load_workbook

    started = time.perf_counter()
    workbook = load_workbook(path, read_only=True, data_only=True)
    count = 0
    for _row in workbook.worksheets[0].iter_rows(values_only=True):
        count += 1
    workbook.close()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "file": path.name,
                "reader": "openpyxl read_only",
                "rows": count,
                "seconds": round(seconds, 1),
                "peak_rss_mib": round(peak / 1024, 1),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["make-xlsx", "make-csv", "read", "read-openpyxl"])
    parser.add_argument("args", nargs="+")
    args = parser.parse_args()
    if args.action == "read":
        read(Path(args.args[0]))
    elif args.action == "read-openpyxl":
        read_openpyxl(Path(args.args[0]))
    else:
        n, path = int(args.args[0]), Path(args.args[1])
        (make_xlsx if args.action == "make-xlsx" else make_csv)(n, path)


if __name__ == "__main__":
    main()
