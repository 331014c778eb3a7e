"""The first worksheet of an XLSX workbook, read as rows of text: streamed, and defended against its XML.

openpyxl, which read these before, keeps the workbook's whole shared-string table in memory and one
element per row it has read, so a sheet of a million rows took gigabytes; and an error in the sheet's
XML surfaced as a traceback halfway through the batch (issue 21, items 4 and 6). This reader:

- parses every part it reads (package and workbook relationships, the workbook, styles, shared strings,
  the sheet) with expat, in chunks, refusing a document type declaration (the door to entity bombs; no
  spreadsheet program writes one), nesting deeper than a workbook has, and parts larger than a sheet can
  be;
- checks the whole sheet's XML before the first row is handed out (``open_first_sheet``), so a workbook
  broken anywhere is refused whole, before anything is written;
- keeps the shared strings in an unlinked temporary file (mode 0600, gone with the process), read back a
  chunk at a time: memory stays flat however many rows and strings the workbook has;
- turns a cell it cannot read (a bad reference, a number that is not one, a string index out of range)
  into a problem of its row, so one row never stops the batch.

Cell values become text as openpyxl gave them (``data_only``: a formula's cached value; numbers in a date
format become dates; openpyxl's own helpers decide which formats are dates), so batches read as before.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import tempfile
import zipfile
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any
from xml.parsers import expat

from core.errors import BatchUnreadable

# the spreadsheetml namespaces: transitional (what Excel, WPS and LibreOffice write) and strict
_MAIN = (
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "http://purl.oclc.org/ooxml/spreadsheetml/main",
)
_REL_TYPES = "/relationships/"
_PACKAGE_RELS = "_rels/.rels"

MAX_COLUMNS = 16384  # Excel's last column, XFD
MAX_ROW_CHARS = 1 << 20  # as a JSON Lines line: a record is a few kilobytes
_MAX_XML_DEPTH = 64  # a sheet nests 7 levels (worksheet/sheetData/row/c/is/r/t), its extensions a few more
_MAX_SMALL_PART = 64 << 20  # relationships, workbook, styles
_MAX_LARGE_PART = 8 << 30  # shared strings and the sheet: far beyond Excel's 1,048,576 rows of real records
_CHUNK = 1 << 16
_STRINGS_PER_BLOCK = 256
_BLOCKS_CACHED = 64

# what a broken or hostile zip raises while it is opened or read
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, zlib.error)
_OPEN_ERRORS = (*_ZIP_ERRORS, KeyError, RuntimeError, NotImplementedError)  # missing, encrypted, method

_CELL_REF = re.compile(r"([A-Z]{1,3})([0-9]{1,7})")
_ROW_NUMBER = re.compile(r"[1-9][0-9]{0,6}")


class _Refused(Exception):
    """Raised inside an expat handler: the document is not one this reader takes."""


@dataclass(frozen=True)
class SheetRow:
    """One row of the sheet: its number as Excel shows it, its cells' text (column A first), or a problem."""

    number: int
    cells: list[str]
    problem: str | None = None


def _local(name: str) -> str:
    """``"http://…/main c"`` (expat's namespaced name) → ``"c"``, for the spreadsheetml namespaces only."""
    uri, _, local = name.rpartition(" ")
    return local if uri in _MAIN else ""


class _Depth:
    """Counts element nesting and refuses a document deeper than any workbook part is."""

    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth = 0

    def start(self, _tag: str, _attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth > _MAX_XML_DEPTH:
            raise _Refused(f"nests deeper than {_MAX_XML_DEPTH} levels")

    def end(self, _tag: str) -> None:
        self.depth -= 1


class _Part:
    """One zip member and the expat handlers that read it; every part shares the same limits."""

    def __init__(
        self,
        name: str,
        *,
        start: Callable[[str, dict[str, str]], None] | None = None,
        end: Callable[[str], None] | None = None,
        data: Callable[[str], None] | None = None,
        counts_depth: bool = False,
    ) -> None:
        self.name = name
        self._start, self._end, self._data = start, end, data
        self._counts_depth = counts_depth  # the handlers call ``_Depth`` themselves (the sheet: speed)

    def parser(self) -> Any:
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.buffer_text = True
        parser.buffer_size = _CHUNK
        parser.StartDoctypeDeclHandler = _doctype
        start, end = self._start, self._end
        if self._counts_depth:
            assert start is not None and end is not None
            parser.StartElementHandler, parser.EndElementHandler = start, end
        else:
            depth = _Depth()

            def start_element(tag: str, attrs: dict[str, str]) -> None:
                depth.start(tag, attrs)
                if start is not None:
                    start(tag, attrs)

            def end_element(tag: str) -> None:
                depth.end(tag)
                if end is not None:
                    end(tag)

            parser.StartElementHandler, parser.EndElementHandler = start_element, end_element
        if self._data is not None:
            parser.CharacterDataHandler = self._data
        return parser


def _doctype(*_args: Any) -> None:
    raise _Refused("declares a document type (DTD), which no workbook needs: its entities are refused")


class Workbook:
    """An XLSX file opened for reading its first worksheet; ``open_first_sheet`` makes one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        try:
            self._zip = zipfile.ZipFile(path)
        except _OPEN_ERRORS as e:
            raise self._unreadable(f"is not a readable XLSX workbook ({e})") from e
        self._names = set(self._zip.namelist())
        self._strings: _SharedStrings | None = None
        self.sheet_part = ""
        self.epoch = datetime(1899, 12, 30)
        self.date_styles: set[int] = set()
        self.timedelta_styles: set[int] = set()

    # --- opening --------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the structure: which part is the first worksheet, its styles and shared strings."""
        workbook_part = self._target(_PACKAGE_RELS, "officeDocument", base="") or "xl/workbook.xml"
        rels = posixpath.join(
            posixpath.dirname(workbook_part), "_rels", posixpath.basename(workbook_part) + ".rels"
        )
        relationships = self._relationships(rels)
        sheet_id, date1904 = self._first_sheet(workbook_part)
        if sheet_id is None:
            raise self._unreadable("has no worksheet")
        found = relationships.get(sheet_id)
        if found is None or not found[0].endswith(_REL_TYPES + "worksheet"):
            raise self._unreadable("does not say where its first worksheet is (or it is not a worksheet)")
        base = posixpath.dirname(workbook_part)
        self.sheet_part = _resolve(base, found[1])
        if date1904:
            self.epoch = datetime(1904, 1, 1)
        for kind, target in relationships.values():
            if kind.endswith(_REL_TYPES + "styles"):
                self._styles(_resolve(base, target))
        strings = [
            _resolve(base, t) for k, t in relationships.values() if k.endswith(_REL_TYPES + "sharedStrings")
        ]
        self._strings = _SharedStrings()
        if strings:
            self._shared_strings(strings[0])
        self._strings.seal()

    def check_sheet(self) -> None:
        """Read the whole sheet's XML once: well-formed, no DTD, not nested too deep (nothing kept)."""
        depth = _Depth()
        self._run(
            _Part(self.sheet_part, start=depth.start, end=depth.end, counts_depth=True), _MAX_LARGE_PART
        )

    def rows(self) -> Iterator[SheetRow]:
        """The sheet's rows in file order; a row's unreadable cell makes it a row with a problem."""
        assert self._strings is not None, "load() first"
        sheet = _SheetReader(self)
        part = _Part(self.sheet_part, start=sheet.start, end=sheet.end, data=sheet.data, counts_depth=True)
        yield from self._parse(part, _MAX_LARGE_PART, sheet.take)

    def string(self, index: int) -> str:
        assert self._strings is not None
        return self._strings[index]

    def close(self) -> None:
        if self._strings is not None:
            self._strings.close()
        self._zip.close()

    def __del__(self) -> None:  # a batch read only to be checked is dropped without being closed
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> Workbook:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- parts ----------------------------------------------------------------------------------------

    def _unreadable(self, what: str) -> BatchUnreadable:
        return BatchUnreadable(
            f"batch file {self.name} {what}",
            hint="open it in the spreadsheet program and save it again as an Excel workbook (.xlsx)",
        )

    def _member(self, name: str, limit: int) -> IO[bytes] | None:
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            return None
        if info.file_size > limit:
            raise self._unreadable(f"has a part {name} of {info.file_size:,} bytes, more than {limit:,}")
        try:
            return self._zip.open(info)
        except _OPEN_ERRORS as e:
            raise self._unreadable(f"has a part {name} that cannot be read ({e})") from e

    def _parse(self, part: _Part, limit: int, take: Callable[[], Iterator[Any]]) -> Iterator[Any]:
        """Parse ``part``, yielding what ``take`` has after each chunk; errors become ``BatchUnreadable``."""
        stream = self._member(part.name, limit)
        if stream is None:
            raise self._unreadable(f"lacks its part {part.name}")
        parser = part.parser()
        with stream:
            try:
                while chunk := stream.read(_CHUNK):
                    parser.Parse(chunk, False)
                    yield from take()
                parser.Parse(b"", True)
                yield from take()
            except expat.ExpatError as e:
                raise self._unreadable(f"has broken XML in {part.name} ({e})") from e
            except _Refused as e:
                raise self._unreadable(f"has a part {part.name} that {e}") from e
            except _ZIP_ERRORS as e:
                raise self._unreadable(f"has a part {part.name} that cannot be read ({e})") from e

    def _run(self, part: _Part, limit: int, *, required: bool = True) -> bool:
        if not required and part.name not in self._names:
            return False
        for _ in self._parse(part, limit, lambda: iter(())):
            pass
        return True

    def _relationships(self, name: str) -> dict[str, tuple[str, str]]:
        """``Id → (Type, Target)`` of one relationships part (none if the part is absent)."""
        found: dict[str, tuple[str, str]] = {}

        def start(tag: str, attrs: dict[str, str]) -> None:
            if tag.rpartition(" ")[2] == "Relationship" and attrs.get("TargetMode", "Internal") == "Internal":
                found.setdefault(attrs.get("Id", ""), (attrs.get("Type", ""), attrs.get("Target", "")))

        self._run(_Part(name, start=start), _MAX_SMALL_PART, required=False)
        return found

    def _target(self, rels: str, kind: str, *, base: str) -> str | None:
        for found_kind, target in self._relationships(rels).values():
            if found_kind.endswith(_REL_TYPES + kind):
                return _resolve(base, target)
        return None

    def _first_sheet(self, name: str) -> tuple[str | None, bool]:
        """The relationship id of the workbook's first sheet, and whether dates count from 1904."""
        first: list[str] = []
        date1904 = [False]

        def start(tag: str, attrs: dict[str, str]) -> None:
            local = _local(tag)
            if local == "sheet" and not first:
                first.append(next((v for k, v in attrs.items() if k.endswith(" id")), ""))
            elif local == "workbookPr":
                date1904[0] = attrs.get("date1904", "").lower() in ("1", "true")

        if not self._run(_Part(name, start=start), _MAX_SMALL_PART, required=False):
            raise self._unreadable("is not a readable XLSX workbook (it has no workbook part)")
        return (first[0] if first else None), date1904[0]

    def _styles(self, name: str) -> None:
        """Which cell styles show a number as a date or a duration (openpyxl's rules, for the same values)."""
        # openpyxl (about a quarter of a second to import) only once a workbook is read: JSON Lines and
        # CSV batches, and every command that reads no batch, never load it
        from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format, is_timedelta_format

        custom: dict[int, str] = {}
        cell_formats: list[int] = []
        inside: list[str] = []

        def start(tag: str, attrs: dict[str, str]) -> None:
            local = _local(tag)
            inside.append(local)
            if local == "numFmt" and attrs.get("numFmtId", "").isdigit():
                custom[int(attrs["numFmtId"])] = attrs.get("formatCode", "")
            elif local == "xf" and len(inside) > 1 and inside[-2] == "cellXfs":
                text = attrs.get("numFmtId", "0")
                cell_formats.append(int(text) if text.isascii() and text.isdigit() and len(text) < 6 else 0)

        def end(_tag: str) -> None:
            inside.pop()

        self._run(_Part(name, start=start, end=end), _MAX_SMALL_PART, required=False)
        for style, format_id in enumerate(cell_formats):
            code = custom.get(format_id) or BUILTIN_FORMATS.get(format_id)
            if code and is_date_format(code):
                self.date_styles.add(style)
            if code and is_timedelta_format(code):
                self.timedelta_styles.add(style)

    def _shared_strings(self, name: str) -> None:
        assert self._strings is not None
        strings = self._strings
        text: list[str] = []
        length = [0]
        state = {"si": False, "t": False, "rPh": 0}

        def start(tag: str, _attrs: dict[str, str]) -> None:
            local = _local(tag)
            if local == "si":
                state["si"] = True
                text.clear()
                length[0] = 0
            elif local == "rPh":
                state["rPh"] += 1
            elif local == "t" and state["si"] and not state["rPh"]:
                state["t"] = True

        def end(tag: str) -> None:
            local = _local(tag)
            if local == "si":
                state["si"] = False
                # as openpyxl: the escape Excel writes for a literal "_x" is dropped
                strings.append("".join(text).replace("x005F_", ""))
            elif local == "rPh":
                state["rPh"] -= 1
            elif local == "t":
                state["t"] = False

        def data(chunk: str) -> None:
            if state["t"]:
                length[0] += len(chunk)
                if length[0] > MAX_ROW_CHARS:
                    raise _Refused(f"holds a text longer than {MAX_ROW_CHARS:,} characters")
                text.append(chunk)

        self._run(_Part(name, start=start, end=end, data=data), _MAX_LARGE_PART)


def _resolve(base: str, target: str) -> str:
    """A relationship's target as a zip member name: relative to ``base``, or absolute from the root."""
    path = target.lstrip("/") if target.startswith("/") else posixpath.join(base, target)
    return posixpath.normpath(path).lstrip("/")


class _SharedStrings:
    """The workbook's shared strings, in blocks in an unlinked temporary file; a few blocks in memory.

    Rows refer to strings mostly in the order they were first written, so a small cache of decoded blocks
    serves nearly every lookup. XML text cannot hold U+0000, which therefore separates a block's strings.
    """

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._ends = array("Q", [0])  # where each block ends in the file
        self._pending: list[str] = []
        self._count = 0
        self._cache: dict[int, list[str]] = {}

    def append(self, text: str) -> None:
        self._pending.append(text)
        self._count += 1
        if len(self._pending) == _STRINGS_PER_BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self._file is None:
            # personal data (names, ID numbers): a file without a name, readable by this user only
            self._file = tempfile.TemporaryFile(prefix="issuance-strings-")  # noqa: SIM115 (closed in close)
        data = "\x00".join(self._pending).encode("utf-8")
        self._file.write(data)
        self._ends.append(self._ends[-1] + len(data))
        self._pending = []

    def seal(self) -> None:
        """No more strings: write the last block out (a small table stays in memory, in its one block)."""
        if self._file is not None and self._pending:
            self._flush()
        if self._file is not None:
            self._file.flush()
        elif self._pending:
            self._cache[0] = self._pending
            self._pending = []

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < self._count:
            raise IndexError(index)
        block, at = divmod(index, _STRINGS_PER_BLOCK)
        strings = self._cache.get(block)
        if strings is None:
            assert self._file is not None
            start = self._ends[block]
            data = os.pread(self._file.fileno(), self._ends[block + 1] - start, start)
            strings = data.decode("utf-8").split("\x00")
            if len(self._cache) >= _BLOCKS_CACHED:
                del self._cache[next(iter(self._cache))]  # the oldest block read
            self._cache[block] = strings
        return strings[at]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._cache.clear()


def _column(letters: str) -> int:
    """``"A"`` → 0, ``"XFD"`` → 16383."""
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - 64
    return number - 1


class _SheetReader:
    """Expat handlers that build the sheet's rows; ``take`` hands out the rows finished so far.

    A row's problem (a cell that cannot be read, too much text, cells nested in cells) makes that row a
    ``SheetRow`` with the problem; only broken XML stops the sheet.
    """

    def __init__(self, book: Workbook) -> None:
        self._book = book
        self._depth = _Depth()
        self._names: dict[str, str] = {}
        self._finished: list[SheetRow] = []
        self._in_data = False
        self._row: dict[int, str] | None = None
        self._number = 0
        self._problem: str | None = None
        self._chars = 0
        self._column = -1
        self._cell: dict[str, str] | None = None
        self._text: list[str] = []
        self._collect = False
        self._phonetic = 0
        self._in_inline = False

    def take(self) -> Iterator[SheetRow]:
        finished, self._finished = self._finished, []
        return iter(finished)

    def _local(self, tag: str) -> str:
        local = self._names.get(tag)
        if local is None:
            local = _local(tag)
            if len(self._names) < 256:  # a hostile sheet may use endless names: remember only a few
                self._names[tag] = local
        return local

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self._depth.start(tag, attrs)
        local = self._local(tag)
        if local == "sheetData":
            self._in_data = True
        elif not self._in_data:
            return
        elif local == "row":
            if self._row is not None:
                self._problem = self._problem or "the row holds another row"
                self._end_row()
            self._start_row(attrs.get("r"))
        elif self._row is None:
            return
        elif local == "c":
            if self._cell is not None:
                self._problem = self._problem or "a cell holds another cell"
            self._cell = attrs
            self._text = []
            self._collect = False
            self._in_inline = False
            self._phonetic = 0
        elif self._cell is None:
            return
        elif local == "v":
            self._collect = self._cell.get("t") != "inlineStr"  # an inline string's text is in <is>
        elif local == "is":
            self._in_inline = True
        elif local == "rPh":
            self._phonetic += 1
        elif local == "t" and self._in_inline and not self._phonetic:
            self._collect = True

    def end(self, tag: str) -> None:
        self._depth.end(tag)
        local = self._local(tag)
        if local == "sheetData":
            self._in_data = False
        elif self._row is None:
            return
        elif local == "row":
            self._end_row()
        elif self._cell is None:
            return
        elif local in ("v", "t"):
            self._collect = False
        elif local == "rPh":
            self._phonetic -= 1
        elif local == "is":
            self._in_inline = False
        elif local == "c":
            self._end_cell()

    def data(self, text: str) -> None:
        if self._collect and self._problem is None:
            self._chars += len(text)
            if self._chars > MAX_ROW_CHARS:
                self._problem = f"the row holds more than {MAX_ROW_CHARS:,} characters"
                self._text = []
            else:
                self._text.append(text)

    def _start_row(self, number: str | None) -> None:
        self._row = {}
        self._problem = None
        self._chars = 0
        self._column = -1
        if number is None:
            self._number += 1
        elif _ROW_NUMBER.fullmatch(number):
            self._number = int(number)
        else:
            self._number += 1
            self._problem = "the row's number is invalid"

    def _end_row(self) -> None:
        assert self._row is not None
        row, self._row = self._row, None
        self._cell = None
        if self._problem is not None:
            self._finished.append(SheetRow(self._number, [], self._problem))
            return
        cells = [""] * (max(row) + 1 if row else 0)
        for column, text in row.items():
            cells[column] = text
        self._finished.append(SheetRow(self._number, cells))

    def _end_cell(self) -> None:
        assert self._row is not None and self._cell is not None
        attrs, self._cell = self._cell, None
        text, self._text = "".join(self._text), []
        self._collect = False
        if self._problem is not None:
            return
        ref = attrs.get("r")
        if ref is None:
            self._column += 1
        else:
            match = _CELL_REF.fullmatch(ref)
            if match is None:
                self._problem = "a cell's reference is invalid"
                return
            self._column = _column(match.group(1))
        if self._column >= MAX_COLUMNS:
            self._problem = "a cell lies beyond column XFD"
            return
        try:
            value = self._value(attrs, text)
        except (ValueError, OverflowError, IndexError) as e:
            where = ref or f"{_letters(self._column)}{self._number}"
            self._problem = f"cell {where} cannot be read ({_why(e)})"
            return
        if value:
            self._row[self._column] = value

    def _value(self, attrs: dict[str, str], text: str) -> str:
        kind = attrs.get("t", "n")
        if kind == "inlineStr":
            return text
        if not text:
            return ""
        if kind == "s":
            return self._book.string(int(text))
        if kind == "b":
            return "true" if int(text) else "false"
        if kind == "d":
            from openpyxl.utils.datetime import from_ISO8601

            return cell_text(from_ISO8601(text))
        if kind != "n":
            return text  # "str" (a formula's text), "e" (an error such as #N/A): as written
        number: int | float = float(text) if "." in text or "e" in text or "E" in text else int(text)
        style_text = attrs.get("s", "0")
        style = (
            int(style_text) if style_text.isascii() and style_text.isdigit() and len(style_text) < 6 else 0
        )
        if style in self._book.date_styles:
            from openpyxl.utils.datetime import from_excel

            return cell_text(
                from_excel(number, self._book.epoch, timedelta=style in self._book.timedelta_styles)
            )
        return cell_text(number)


def _letters(column: int) -> str:
    letters = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _why(error: Exception) -> str:
    if isinstance(error, IndexError):
        return "it refers to a shared string the workbook does not have"
    return "not a value of its type"


def cell_text(value: Any) -> str:
    """A cell's value as the text a record field holds."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # shortest round-trip form: a cell holding 3456.78 becomes "3456.78", 5.0 becomes "5"
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


_CHECKED: dict[tuple[str, int, int, int, int], None] = {}


def open_first_sheet(path: Path) -> Workbook:
    """Open ``path`` and check it whole; raise ``BatchUnreadable`` if it is not a usable workbook.

    The whole sheet's XML is read once here, before any row is handed out: a workbook broken anywhere is
    refused before anything is written. A file already checked in this process (same inode, size and
    times: the watcher and the CLI look before they run) is not read twice.
    """
    book = Workbook(path)
    try:
        book.load()
        key = _signature(path)
        if key is None or key not in _CHECKED:
            book.check_sheet()
            if key is not None:
                _CHECKED[key] = None
                while len(_CHECKED) > 32:
                    del _CHECKED[next(iter(_CHECKED))]
    except BaseException:
        book.close()
        raise
    return book


def _signature(path: Path) -> tuple[str, int, int, int, int] | None:
    with contextlib.suppress(OSError):
        st = path.stat()
        return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return None
