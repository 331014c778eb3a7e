"""Reading a batch file: JSON Lines (canonical), CSV and XLSX with the contract's dotted columns.

A batch file yields one ``RawRecord`` per input record, numbered by its line (JSONL, CSV) or row (XLSX),
1-based as an editor shows it. A line that is not a JSON object still yields a ``RawRecord``, with the
problem, so the batch goes on and the report accounts for every line: nothing one line holds (nesting a
thousand deep, a number of 5,000 digits, ``NaN``, a lone surrogate, a repeated key, 100 MB without a
line break) escapes as an exception. A file that cannot be read at all raises ``BatchUnreadable`` before
any record is yielded.

Every format is streamed: memory stays flat whatever the batch's size (nightly batches are large, and a
spreadsheet can hold a million rows).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import BatchUnreadable
from core.records import RawRecord
from pipeline.xlsx import open_first_sheet

SUFFIXES = (".jsonl", ".csv", ".xlsx")
# Contract fields that are integers; every other flat cell is text.
_INTEGER_COLUMNS = {"vehicle.seats"}
# A record is a few kilobytes and nests four levels (``coverages[0].name``): both limits are generous, and
# they keep one hostile line from exhausting memory or the recursion of later stages (issue 21, item 3).
MAX_LINE_BYTES = 1 << 20
MAX_DEPTH = 32
_READ_CHUNK = 1 << 16


def read_batch(path: Path) -> Iterator[RawRecord]:
    """Yield the records of ``path``; raise ``BatchUnreadable`` if the file as a whole is unusable.

    The checks that refuse a whole file run before the first record is yielded: for CSV and XLSX, in
    this call itself (the encoding, the workbook's structure and XML, the header row).
    """
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl(path)
    if suffix == ".csv":
        return _csv(path)
    return _xlsx(path)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BatchUnreadable(f"batch file {path} does not exist")
    if not path.is_file():
        raise BatchUnreadable(f"batch {path} is not a regular file")
    if path.suffix.lower() not in SUFFIXES:
        raise BatchUnreadable(f"batch file {path.name} has an unknown type", hint="use .jsonl, .csv or .xlsx")
    try:
        with path.open("rb") as fh:
            head = fh.read(65536)
    except OSError as e:
        raise BatchUnreadable(f"batch file {path} cannot be read: {e.strerror}") from e
    if not head.strip():
        raise BatchUnreadable(f"batch file {path.name} is empty")
    if path.suffix.lower() != ".xlsx" and b"\x00" in head:
        raise BatchUnreadable(f"batch file {path.name} is binary, not text", hint="is it the right file?")


# --- JSON Lines ----------------------------------------------------------------------------------------


def _binary_lines(fh: io.BufferedReader) -> Iterator[tuple[int, bytes | None]]:
    """``(number, line)`` for each line, or ``(number, None)`` for one longer than ``MAX_LINE_BYTES``
    (skipped, never read whole)."""
    number = 0
    while raw := fh.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := fh.readline(_READ_CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, raw


def _jsonl(path: Path) -> Iterator[RawRecord]:
    with path.open("rb") as fh:
        first_seen = False
        for number, raw in _binary_lines(fh):
            if raw is None:
                first_seen = True
                yield RawRecord(number, None, f"line {number} is longer than {MAX_LINE_BYTES:,} bytes")
                continue
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                if not first_seen:
                    raise BatchUnreadable(
                        f"batch file {path.name} is not UTF-8 (line {number})",
                        hint="JSON Lines batches are UTF-8; spreadsheets in GB18030 go in as .csv",
                    ) from None
                yield RawRecord(number, None, f"line {number} is not valid UTF-8")
                continue
            first_seen = True
            yield json_record(number, text.rstrip("\r\n"), raw)


class _LineProblem(Exception):
    """Something in one line that JSON allows (or Python's parser lets through) but a record cannot hold."""


def _no_constant(name: str) -> Any:
    raise _LineProblem(f"holds {name}, which is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _LineProblem("holds a number too large to represent")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _LineProblem(f"repeats the key {_shown(repeated)}")
    return data


def _shown(key: str) -> str:
    # a key is not personal data, but it may be long or hold characters that would garble a report
    text = key if len(key) <= 60 else key[:60] + "…"
    return json.dumps(text)


# a surrogate can only reach a string through a \u escape: valid UTF-8 never encodes one
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_record(number: int, text: str, raw: bytes | None = None) -> RawRecord:
    """One JSON Lines line (``text``, its bytes ``raw`` if at hand) as a ``RawRecord``; never raises.

    Refused, each naming the line: invalid JSON, ``NaN``/``Infinity`` or a number out of range, a
    number of more digits than Python converts, a key given twice (JSON parsers disagree on which
    wins), nesting deeper than ``MAX_DEPTH``, and a lone surrogate (no UTF-8 text can hold one, so
    hashing or storing the record would fail later).
    """
    try:
        data = json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite_float
        )
    except json.JSONDecodeError as e:
        return RawRecord(number, None, f"line {number} is not valid JSON ({e.msg}, column {e.colno})")
    except _LineProblem as e:
        return RawRecord(number, None, f"line {number} {e}")
    except RecursionError:
        return RawRecord(number, None, f"line {number} nests deeper than {MAX_DEPTH} levels")
    except ValueError as e:  # int(): more digits than sys.get_int_max_str_digits()
        return RawRecord(number, None, f"line {number} holds a number that cannot be read ({e})")
    if not isinstance(data, dict):
        return RawRecord(number, None, f"line {number} is not a JSON object")
    raw = raw if raw is not None else text.encode("utf-8", "surrogatepass")
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _depth(data) > MAX_DEPTH:
        return RawRecord(number, None, f"line {number} nests deeper than {MAX_DEPTH} levels")
    if b"\\u" in raw and _ESCAPED_SURROGATE.search(raw) and _has_surrogate(data):
        return RawRecord(number, None, f"line {number} holds a lone surrogate (\\ud800-\\udfff), not text")
    return RawRecord(number, data)


def _depth(data: Any) -> int:
    """How deep ``data`` nests (an object or array is one level), without recursion."""
    deepest = 0
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _has_surrogate(data: Any) -> bool:
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


# --- CSV -----------------------------------------------------------------------------------------------


def _csv_encoding(path: Path) -> str:
    """The file's encoding: UTF-8 (a BOM allowed) if every byte decodes as such, else GB18030.

    Chinese spreadsheet software saves CSV as GB18030/GBK; Excel's "CSV UTF-8" adds a BOM. The whole file
    is decoded, incrementally (flat memory): an invalid byte may come late, and a prefix could end inside
    a character.
    """
    for encoding in ("utf-8-sig", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(_READ_CHUNK):
                    decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return encoding
        except UnicodeDecodeError:
            continue
        except OSError as e:
            raise BatchUnreadable(f"batch file {path.name} cannot be read: {e.strerror}") from e
    raise BatchUnreadable(f"batch file {path.name} is neither UTF-8 nor GB18030 text")


class _LineTooLong(Exception):
    """A physical line longer than ``MAX_LINE_BYTES`` characters; it was skipped, not read whole."""


class _TextLines:
    """The lines ``csv.reader`` reads, counted, each at most ``MAX_LINE_BYTES`` characters long.

    A longer line is skipped and reported by raising ``_LineTooLong`` from ``__next__``; ``csv.reader``
    passes that on and starts afresh at the next line (it resets its state on every call).
    """

    def __init__(self, text: io.TextIOBase) -> None:
        self._text = text
        self.count = 0  # lines read so far, the skipped ones included

    def __iter__(self) -> _TextLines:
        return self

    def __next__(self) -> str:
        line = self._text.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise StopIteration
        self.count += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(("\n", "\r")):
            while (rest := self._text.readline(_READ_CHUNK)) and not rest.endswith(("\n", "\r")):
                pass
            raise _LineTooLong
        return line


def _csv(path: Path) -> Iterator[RawRecord]:
    encoding = _csv_encoding(path)
    with path.open("r", encoding=encoding, newline="") as text:
        columns = _columns(_csv_header(csv.reader(_TextLines(text)), path.name), path.name)
    return _csv_records(path, encoding, columns)


def _csv_header(reader: Any, name: str) -> list[str]:
    try:
        return next(reader)
    except (StopIteration, csv.Error, _LineTooLong) as e:
        raise BatchUnreadable(f"batch file {name} has no header row") from e


def _csv_records(path: Path, encoding: str, columns: list[str]) -> Iterator[RawRecord]:
    # opened here, not by ``_csv``: a batch read only to be checked holds no open file
    with path.open("r", encoding=encoding, newline="") as text:
        lines = _TextLines(text)
        reader = csv.reader(lines)
        _csv_header(reader, path.name)
        while True:
            start = lines.count + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                yield RawRecord(start, None, f"line {start} is not valid CSV ({e})")
                continue
            except _LineTooLong:
                yield RawRecord(
                    start, None, f"line {lines.count} is longer than {MAX_LINE_BYTES:,} characters"
                )
                continue
            except (UnicodeDecodeError, OSError) as e:  # the file changed since its encoding was checked
                raise BatchUnreadable(
                    f"batch file {path.name} cannot be read past line {start - 1}: {e}"
                ) from e
            if not any(cell.strip() for cell in row):
                continue
            yield _flat_record(start, columns, row)


# --- XLSX ----------------------------------------------------------------------------------------------


def _xlsx(path: Path) -> Iterator[RawRecord]:
    sheet = open_first_sheet(path)  # the workbook's structure and XML, the whole sheet's included
    try:
        rows = sheet.rows()
        first = next(rows, None)
        if first is not None and first.number == 1 and first.problem:
            raise BatchUnreadable(f"batch file {path.name} has an unreadable header row ({first.problem})")
        # the header is row 1, as a person sees the sheet: without one, the columns are missing
        columns = _columns(first.cells if first is not None and first.number == 1 else [], path.name)
    except BaseException:
        sheet.close()
        raise
    return _xlsx_records(sheet, rows, columns)


def _xlsx_records(sheet: Any, rows: Iterator[Any], columns: list[str]) -> Iterator[RawRecord]:
    with sheet:
        for row in rows:
            if row.problem:
                yield RawRecord(row.number, None, f"line {row.number}: {row.problem}")
                continue
            if not any(row.cells):
                continue
            yield _flat_record(row.number, columns, row.cells)


def _columns(header: list[str], name: str) -> list[str]:
    columns = [h.strip().removeprefix("\ufeff") for h in header]
    if "kind" not in columns or "record_id" not in columns:
        raise BatchUnreadable(
            f"batch file {name} lacks the columns kind and record_id",
            hint="the first row names the contract's fields, e.g. applicant.name, coverages.0.premium",
        )
    seen = set()
    for c in columns:
        if c and c in seen:
            raise BatchUnreadable(f"batch file {name} has the column {_shown(c)} twice")
        if c.count(".") >= MAX_DEPTH:  # every row would nest that deep
            raise BatchUnreadable(f"batch file {name} has a column nested deeper than {MAX_DEPTH} levels")
        seen.add(c)
    return columns


def _flat_record(line: int, columns: list[str], cells: list[str]) -> RawRecord:
    if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
        return RawRecord(line, None, f"line {line} has more cells than the header has columns")
    flat = {col: cell.strip() for col, cell in zip(columns, cells, strict=False) if col and cell.strip()}
    try:
        return RawRecord(line, unflatten(flat))
    except ValueError as e:
        return RawRecord(line, None, f"line {line}: {e}")


def unflatten(flat: dict[str, str]) -> dict[str, Any]:
    """``{"applicant.name": "张三", "coverages.0.premium": "1.00"}`` → the nested record.

    Numeric path segments are list positions; lists are compacted in index order, so a spreadsheet
    that leaves ``images.1`` empty but fills ``images.2`` still yields two images.
    """
    root: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                raise ValueError(f"column {key} has an empty path segment")
            container: dict[str | int, Any] = node
            slot: str | int = int(part) if part.isascii() and part.isdigit() else part
            if last:
                if slot in container:
                    raise ValueError(f"column {key} conflicts with another column")
                integer = key in _INTEGER_COLUMNS and value.isascii() and value.isdigit()
                container[slot] = int(value) if integer else value
            else:
                child = container.setdefault(slot, {})
                if not isinstance(child, dict):
                    raise ValueError(f"column {key} conflicts with column {'.'.join(parts[: i + 1])}")
                node = child
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    keys = list(node)
    if keys and all(isinstance(k, int) for k in keys):
        return [_lists(node[k]) for k in sorted(keys)]
    if any(isinstance(k, int) for k in keys):
        raise ValueError("a column path mixes list positions and field names at the same level")
    return {k: _lists(v) for k, v in node.items()}
