"""Changing a PDF by an incremental update: the original bytes, then only the new and changed objects.

Why not ``PdfWriter(...).write()``: re-serialising a 40-page policy (fonts, clause pages) costs far more
than the stamping itself, and the result is byte-for-byte a new file. An incremental update (ISO 32000-1
§7.5.6) appends what changed and a cross-reference section whose /Prev points at the original one, so

- stamping costs time and bytes in proportion to what is added, not to the document;
- the unsealed document stays inside the sealed one, unchanged (its revision can be cut out at the old
  ``%%EOF``), which is also the shape a later digital signature (PAdES) needs: stamp first, sign last.

The new section is of the same kind as the previous one (a table after a table, an xref stream after
an xref stream), as the standard asks. Its /Size covers the whole file (§7.5.5: one more than the highest
object number in the file, not only in this update): new objects are numbered from there. The second
/ID string changes, derived from the update itself, so the same input stamped the same way gives the
same bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from io import BytesIO

from pypdf import PdfReader
from pypdf.generic import (
    ArrayObject,
    ByteStringObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NullObject,
    PdfObject,
    StreamObject,
)

__all__ = [
    "Copier",
    "IncrementalUpdate",
    "NewDocument",
    "OutlineEntry",
    "PdfObjects",
    "PlainPdf",
    "PypdfObjects",
    "changed_dictionary",
    "reference",
    "serialise",
    "text_string",
    "write_outline",
]

_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")


def serialise(obj: PdfObject) -> bytes:
    """A pypdf object as PDF syntax (references stay references)."""
    buf = BytesIO()
    obj.write_to_stream(buf)
    return buf.getvalue()


def previous_xref(original: bytes) -> tuple[int, bool] | None:
    """Offset of the last cross-reference section and whether it is a stream; None if it cannot be trusted."""
    match = _STARTXREF.search(original[-2048:])
    if match is None:
        return None
    offset = int(match[1])
    head = original[offset : offset + 32]
    if head.startswith(b"xref"):
        return offset, False
    if re.match(rb"\d+\s+\d+\s+obj", head):
        return offset, True
    return None


def text_string(text: str) -> bytes:
    """A PDF text string (outline titles, document information, ISO 32000-1 §7.9.2.2): printable ASCII
    as a literal string, anything else as UTF-16BE with its byte order mark, in hex.

    Written here rather than by pypdf, which escapes nearly every punctuation mark one character at a
    time in Python, a visible share of the archive copy's cost in a profile of ``issuance run``
    (docs/performance.md). Readers decode both forms to the same text."""
    if text.isascii() and text.isprintable():
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("ascii") + b")"
    return b"<feff" + text.encode("utf-16-be").hex().encode("ascii") + b">"


class PdfObjects:
    """Numbered objects given as PDF syntax: what ``IncrementalUpdate`` and ``NewDocument`` share."""

    def __init__(self, first: int) -> None:
        self._next = first
        self._bodies: dict[int, tuple[int, bytes]] = {}

    def reserve(self) -> IndirectObject:
        """A number for an object whose body comes later (``replace``): for objects that point at each
        other, as a page and its parent do."""
        return self.add(b"null")

    def add(self, body: bytes) -> IndirectObject:
        """A new object; ``body`` is its PDF syntax. Returns the reference to use elsewhere."""
        number = self._next
        self._next += 1
        self._bodies[number] = (0, body)
        return IndirectObject(number, 0, None)  # type: ignore[arg-type]  # written, never resolved

    def add_stream(self, dictionary: bytes, data: bytes) -> IndirectObject:
        """A new stream object: ``dictionary`` holds the entries without << >> and without /Length."""
        return self.add(b"<<" + dictionary + b"/Length %d>>\nstream\n" % len(data) + data + b"\nendstream")

    def replace(self, ref: IndirectObject, body: bytes) -> None:
        """A new version of an existing object, same number and generation."""
        self._bodies[ref.idnum] = (ref.generation, body)


class PlainPdf:
    """A PDF as qpdf writes every copy this pipeline makes — one classic cross-reference table from
    object 0 — with any number of incremental updates of this module's own kind after it (classic
    tables too: image pages, a reissue mark, signatures), read straight from its bytes: its newest
    trailer and the dictionaries of the objects asked for, each entry kept as its PDF syntax, nothing
    decoded.

    An update reads little of the document it extends: the trailer, the catalog, the page tree, the
    outline's root and last item, the document information. pypdf first reads the whole cross-reference
    table into objects, then decodes every string it meets, one character at a time, several times this
    reader's cost (``bench/pdfupdate_bench.py``, docs/performance.md "The hand-written pieces"). Here an
    object's offset in the first table is its row (rows are 20 bytes, ISO 32000-1 §7.5.4); the updates'
    small tables are read row by row; a dictionary is cut into entries by a scanner of PDF's delimiters.
    ``read`` gives None for a file of any other shape (an xref stream, a hybrid file, a loop of /Prev,
    anything unexpected), which pypdf reads instead.
    """

    def __init__(
        self,
        data: bytes,
        *,
        rows: int,
        count: int,
        trailer: dict[str, bytes],
        updated: dict[int, tuple[int, int] | None] | None = None,
    ) -> None:
        self._data = data
        self._rows = rows  # where row 0 of the first table starts
        self._count = count
        self._updated = updated or {}  # object number -> (offset, generation), None once freed
        self.trailer = trailer

    @classmethod
    def read(cls, data: bytes) -> PlainPdf | None:
        found = previous_xref(data)
        if found is None or found[1]:
            return None
        updated: dict[int, tuple[int, int] | None] = {}
        newest: dict[str, bytes] | None = None
        at, seen = found[0], set()
        try:
            while True:
                if at in seen or len(seen) > _MAX_REVISIONS:
                    return None
                seen.add(at)
                section = _section(data, at)
                if section is None:
                    return None
                subsections, trailer = section
                if "/XRefStm" in trailer:
                    return None
                newest = newest if newest is not None else trailer
                if "/Prev" not in trailer:
                    break
                for start, count, rows in subsections:
                    for n in range(count):
                        row = data[rows + 20 * n : rows + 20 * n + 18]
                        number = start + n
                        if number and number not in updated:  # a newer revision's row wins
                            updated[number] = (int(row[:10]), int(row[11:16])) if row[17:18] == b"n" else None
                prev = trailer["/Prev"]
                if not prev.isdigit():
                    return None
                at = int(prev)
        except ValueError:
            return None
        if len(subsections) != 1 or subsections[0][0] != 0 or "/Root" not in newest:
            return None
        _, count, rows = subsections[0]
        plain = cls(data, rows=rows, count=count, trailer=newest, updated=updated)
        if "/ID" in newest and plain.ids is None:
            return None
        return plain

    @property
    def first_free(self) -> int:
        """The first object number after every number the file uses (``_first_free_number``)."""
        size = self.trailer.get("/Size", b"0")
        return max(int(size) if size.isdigit() else 0, self._count, max(self._updated, default=0) + 1)

    @property
    def ids(self) -> tuple[bytes, bytes] | None:
        """The file identifier's first string as written, and its second string's bytes."""
        match = _IDS.fullmatch(self.trailer.get("/ID", b""))
        if match is None:
            return None
        return match[1], bytes.fromhex(re.sub(rb"\s", b"", match[2]).decode("ascii"))

    def dictionary(self, ref: bytes) -> dict[str, bytes]:
        """The entries of the dictionary (or stream dictionary) that ``ref`` (``N G R``) points at, or of
        ``ref`` itself if it is a dictionary (the trailer's /Info may be one). Raises ``ValueError`` if
        the file does not hold it as this reader expects."""
        if ref.startswith(b"<<"):
            return _entries(ref, 0)[0]
        target = reference(ref)
        number, generation = target.idnum, target.generation
        if number in self._updated:
            where = self._updated[number]
            if where is None or where[1] != generation:
                raise ValueError(f"object {number} {generation} is not in use")
            offset = where[0]
        else:
            if not 0 < number < self._count:
                raise ValueError(f"object {number} is not in the cross-reference table")
            row = self._data[self._rows + 20 * number : self._rows + 20 * number + 18]
            if row[17:18] != b"n" or int(row[11:16]) != generation:
                raise ValueError(f"object {number} {generation} is not in use")
            offset = int(row[:10])
        head = _OBJECT.match(self._data, offset)
        if head is None or (int(head[1]), int(head[2])) != (number, generation):
            raise ValueError(f"object {number} is not where the table says")
        return _entries(self._data, head.end())[0]


# More revisions than a copy of this pipeline ever has (issue, endorsements, images, marks, signatures)
_MAX_REVISIONS = 64


def _section(data: bytes, at: int) -> tuple[list[tuple[int, int, int]], dict[str, bytes]] | None:
    """The subsections (first number, count, where its rows start) and trailer of the classic
    cross-reference section at ``at``, or None."""
    head = _XREF.match(data, at)
    if head is None:
        return None
    subsections = []
    position = head.end()
    while (sub := _SUBSECTION.match(data, position)) is not None:
        start, count = int(sub[1]), int(sub[2])
        subsections.append((start, count, sub.end()))
        position = sub.end() + 20 * count
    trailer = _TRAILER.match(data, position)
    if trailer is None or not subsections:
        return None
    return subsections, _entries(data, trailer.end())[0]


class PypdfObjects:
    """What ``PlainPdf`` reads, read by pypdf: for a file of any other shape."""

    def __init__(self, reader: PdfReader) -> None:
        self.reader = reader
        self.trailer = {key: serialise(value) for key, value in reader.trailer.items()}

    @property
    def first_free(self) -> int:
        """The first object number after every number the file uses, in any revision: where an update's
        new objects start (``IncrementalUpdate``)."""
        return _first_free_number(self.reader)

    def dictionary(self, ref: bytes) -> dict[str, bytes]:
        if ref.startswith(b"<<"):
            return _entries(ref, 0)[0]
        target = reference(ref)
        found = self.reader.get_object(IndirectObject(target.idnum, target.generation, self.reader))
        if not isinstance(found, DictionaryObject):
            raise ValueError(f"object {target.idnum} is not a dictionary")
        return {key: serialise(value) for key, value in found.items()}


def changed_dictionary(source: dict[str, bytes], changed: dict[str, bytes]) -> bytes:
    """A dictionary's entries as read (``PlainPdf.dictionary``: PDF syntax), with the entries ``changed``
    set: the new version of an object an update replaces."""
    entries = [k.encode("latin-1") + b" " + v for k, v in source.items() if k not in changed]
    entries += [k.encode("latin-1") + b" " + v for k, v in changed.items()]
    return b"<<" + b"".join(entries) + b">>"


def reference(ref: bytes) -> IndirectObject:
    """A reference written as PDF syntax (``N G R``) as an ``IndirectObject`` to write, never to resolve.
    Raises ``ValueError`` for anything else."""
    match = _REF.fullmatch(ref.strip())
    if match is None:
        raise ValueError(f"not a reference: {ref[:40]!r}")
    return IndirectObject(int(match[1]), int(match[2]), None)  # type: ignore[arg-type]  # written only


_SPACE = rb"(?:[\x00\t\n\x0c\r ]|%[^\r\n]*)*"
_XREF = re.compile(rb"xref[ \t]*\r?\n")
_SUBSECTION = re.compile(rb"(\d+) (\d+)[ \t]*\r?\n")
_TRAILER = re.compile(_SPACE + rb"trailer" + _SPACE)
_OBJECT = re.compile(rb"(\d+)\s+(\d+)\s+obj" + _SPACE)
_IDS = re.compile(rb"\[\s*(<[0-9A-Fa-f\s]*>)\s*<([0-9A-Fa-f\s]*)>\s*\]")
_SKIP = re.compile(_SPACE)
_NAME = re.compile(rb"/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*")
_REF = re.compile(rb"(\d+)\s+(\d+)\s+R(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])")
_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])")
_KEYWORD = re.compile(rb"(?:true|false|null)(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])")
_HEX = re.compile(rb"<[0-9A-Fa-f\x00\t\n\x0c\r ]*>")
_PAREN = re.compile(rb"\\.|[()]", re.DOTALL)


def _entries(data: bytes, at: int) -> tuple[dict[str, bytes], int]:
    """The dictionary at ``data[at:]``: its entries, each value as written, and where it ends."""
    if data[at : at + 2] != b"<<":
        raise ValueError(f"no dictionary at byte {at}")
    entries: dict[str, bytes] = {}
    at = _SKIP.match(data, at + 2).end()
    while data[at : at + 2] != b">>":
        key = _NAME.match(data, at)
        if key is None:
            raise ValueError(f"no name at byte {at}")
        start = _SKIP.match(data, key.end()).end()
        end = _value_end(data, start)
        entries[key[0].decode("latin-1")] = data[start:end]
        at = _SKIP.match(data, end).end()
    return entries, at + 2


def _value_end(data: bytes, at: int) -> int:
    """Where the object that starts at ``data[at]`` ends."""
    first = data[at : at + 1]
    if first == b"/":
        return _NAME.match(data, at).end()
    if first == b"(":
        depth = 0
        for match in _PAREN.finditer(data, at):
            if match[0] == b"(":
                depth += 1
            elif match[0] == b")":
                depth -= 1
                if depth == 0:
                    return match.end()
        raise ValueError(f"an unclosed string at byte {at}")
    if data[at : at + 2] == b"<<":
        return _entries(data, at)[1]
    if first == b"<":
        match = _HEX.match(data, at)
    elif first == b"[":
        at = _SKIP.match(data, at + 1).end()
        while data[at : at + 1] != b"]":
            if at >= len(data):
                raise ValueError("an unclosed array")
            at = _SKIP.match(data, _value_end(data, at)).end()
        return at + 1
    else:
        match = _REF.match(data, at) or _NUMBER.match(data, at) or _KEYWORD.match(data, at)
    if match is None:
        raise ValueError(f"no PDF object at byte {at}")
    return match.end()


class IncrementalUpdate(PdfObjects):
    """Collects new and replaced objects for one update of ``original`` (read by ``reader``: pypdf, or
    ``PlainPdf`` for a file of the one shape it reads)."""

    def __init__(self, original: bytes, reader: PdfReader | PlainPdf) -> None:
        found = previous_xref(original)
        if found is None:
            raise ValueError("the PDF's startxref does not point at a cross-reference section")
        if isinstance(reader, PlainPdf):
            first = reader.first_free
            self._root, self._old_info = reader.trailer["/Root"], reader.trailer.get("/Info")
            self._ids = reader.ids
        else:
            first = _first_free_number(reader)
            trailer = reader.trailer
            self._root = serialise(trailer.raw_get("/Root"))
            self._old_info = serialise(trailer.raw_get("/Info")) if "/Info" in trailer else None
            ids = trailer.get("/ID")
            self._ids = (serialise(ids[0]), bytes(ids[1].original_bytes)) if ids and len(ids) == 2 else None
        super().__init__(first)
        self._original = original
        self._prev, self._as_stream = found
        self._info: IndirectObject | None = None

    def set_info(self, ref: IndirectObject) -> None:
        """Make ``ref`` the document information dictionary from this update on."""
        self._info = ref

    def to_bytes(self, *, identity: bytes | None = None) -> bytes:
        """The original bytes followed by the update. The file identifier's second string is an MD5 of
        the previous one and ``identity``: what makes this update what it is, by default its own bytes
        (a caller that knows shorter content-derived ones, say digests of the pictures it adds, saves
        hashing them again)."""
        # joined once: the original (megabytes, with a bundle's fonts) is copied once
        return b"".join((self._original, self.appended(identity=identity)))

    def appended(self, *, identity: bytes | None = None) -> bytes:
        """What ``to_bytes`` appends to the original: for a caller that changes it before joining (a
        signature fills in its placeholders), without copying the original twice."""
        out = [] if self._original.endswith(b"\n") else [b"\n"]
        at = len(self._original) + sum(map(len, out))
        offsets: dict[int, tuple[int, int]] = {}
        for number in sorted(self._bodies):
            generation, body = self._bodies[number]
            offsets[number] = (at, generation)
            head = b"%d %d obj\n" % (number, generation)
            out += (head, body, b"\nendobj\n")
            at += len(head) + len(body) + 8
        trailer = self._trailer_entries(b"".join(out) if identity is None else identity)
        if self._as_stream:
            tail = self._xref_stream(at, offsets, trailer)
        else:
            rows = [b"xref\n"]
            for start, numbers in _runs(sorted(offsets)):
                rows.append(b"%d %d\n" % (start, len(numbers)))
                rows.extend(b"%010d %05d n\r\n" % offsets[number] for number in numbers)
            rows.append(b"trailer\n<</Size %d" % self._next + trailer + b">>\n")
            tail = b"".join(rows)
        out += (tail, b"startxref\n%d\n%%%%EOF\n" % at)
        return b"".join(out)

    def _trailer_entries(self, update: bytes | bytearray) -> bytes:
        parts = [b"/Root " + self._root]
        if self._info is not None:
            parts.append(b"/Info %d 0 R" % self._info.idnum)
        elif self._old_info is not None:
            parts.append(b"/Info " + self._old_info)
        if self._ids is not None:
            first, previous = self._ids
            digest = hashlib.md5(previous, usedforsecurity=False)
            digest.update(update)
            parts.append(b"/ID [ " + first + b" " + serialise(ByteStringObject(digest.digest())) + b" ]")
        parts.append(b"/Prev %d" % self._prev)
        return b"".join(parts)

    def _xref_stream(self, xref_at: int, offsets: dict[int, tuple[int, int]], trailer: bytes) -> bytes:
        """The cross-reference stream object that starts at ``xref_at``, covering itself too."""
        number = self._next
        self._next += 1
        offsets[number] = (xref_at, 0)
        width = max(4, (xref_at.bit_length() + 7) // 8)
        rows = bytearray()
        index = bytearray()
        for start, numbers in _runs(sorted(offsets)):
            index += b"%d %d " % (start, len(numbers))
            for n in numbers:
                offset, generation = offsets[n]
                rows += b"\x01" + offset.to_bytes(width, "big") + generation.to_bytes(2, "big")
        return (
            b"%d 0 obj\n<</Type/XRef/Size %d/W[1 %d 2]/Index[%s]"
            % (number, self._next, width, bytes(index).strip())
            + trailer
            + b"/Length %d>>\nstream\n" % len(rows)
            + bytes(rows)
            + b"\nendstream\nendobj\n"
        )


class NewDocument(PdfObjects):
    """A PDF written from nothing with the calls of ``IncrementalUpdate``: one revision, a classic
    cross-reference table, no date and no file identifier (the same objects give the same bytes)."""

    def __init__(self, version: str = "1.4") -> None:
        super().__init__(1)
        self.version = version

    def to_bytes(self, *, root: IndirectObject, info: IndirectObject | None = None) -> bytes:
        out = [b"%%PDF-%s\n%%\xe2\xe3\xcf\xd3\n" % self.version.encode("ascii")]
        at = len(out[0])
        offsets: dict[int, int] = {}
        for number in sorted(self._bodies):
            generation, body = self._bodies[number]
            offsets[number] = at
            head = b"%d %d obj\n" % (number, generation)
            out += (head, body, b"\nendobj\n")
            at += len(head) + len(body) + 8
        out.append(b"xref\n0 %d\n0000000000 65535 f\r\n" % self._next)
        out.extend(b"%010d 00000 n\r\n" % offsets[number] for number in range(1, self._next))
        out.append(b"trailer\n<</Size %d/Root %d 0 R" % (self._next, root.idnum))
        if info is not None:
            out.append(b"/Info %d 0 R" % info.idnum)
        out.append(b">>\nstartxref\n%d\n%%%%EOF\n" % at)
        return b"".join(out)


class Copier:
    """Copies objects of another PDF (read by pypdf) into ``objects``, each once, references renumbered,
    streams byte for byte (never decoded).

    A page or page-tree node met on the way is not followed (``null`` takes its place): what is copied
    is a page's content and resources, not the source's other pages. ``known`` maps source references
    already given a place (the page being copied, say, which its annotations point back at).
    """

    def __init__(self, objects: PdfObjects) -> None:
        self._objects = objects
        self._done: dict[tuple[int, int], IndirectObject] = {}

    def known(self, source: IndirectObject, target: IndirectObject) -> None:
        self._done[(source.idnum, source.generation)] = target

    def body(self, obj: PdfObject, *, leave_out: tuple[str, ...] = ()) -> bytes:
        """``obj`` (a dictionary, resolved) as PDF syntax, without the keys ``leave_out``."""
        if isinstance(obj, StreamObject):
            data = obj._data  # pypdf keeps a stream's stored (still encoded) bytes here; no public getter
            entries = b"".join(
                serialise(NameObject(k)) + b" " + self.value(v)
                for k, v in obj.items()
                if k != "/Length" and k not in leave_out
            )
            return b"<<" + entries + b"/Length %d>>\nstream\n" % len(data) + data + b"\nendstream"
        if isinstance(obj, DictionaryObject):
            return (
                b"<<"
                + b"".join(
                    serialise(NameObject(k)) + b" " + self.value(v)
                    for k, v in obj.items()
                    if k not in leave_out
                )
                + b">>"
            )
        return self.value(obj)

    def value(self, obj: PdfObject) -> bytes:
        if isinstance(obj, IndirectObject):
            return b"%d 0 R" % self._ref(obj).idnum
        if isinstance(obj, StreamObject):
            raise ValueError("a stream that is not an indirect object")
        if isinstance(obj, DictionaryObject):
            if obj.get("/Type") in ("/Page", "/Pages"):
                return b"null"
            return self.body(obj)
        if isinstance(obj, ArrayObject):
            return b"[" + b" ".join(self.value(v) for v in obj) + b"]"
        return serialise(obj)

    def _ref(self, source: IndirectObject) -> IndirectObject:
        key = (source.idnum, source.generation)
        if key in self._done:
            return self._done[key]
        obj = source.get_object()
        if obj is None or isinstance(obj, NullObject):
            target = self._done[key] = self._objects.add(b"null")
            return target
        if isinstance(obj, DictionaryObject) and obj.get("/Type") in ("/Page", "/Pages"):
            target = self._done[key] = self._objects.add(b"null")
            return target
        # number first, body after: a cycle (a font pointing back at its parent) meets a known number
        target = self._done[key] = self._objects.reserve()
        self._objects.replace(target, self.body(obj))
        return target


# An outline entry: its title, the page it shows whole, and its children (shown open)
OutlineEntry = tuple[str, IndirectObject, Sequence["OutlineEntry"]]


def write_outline(
    objects: PdfObjects,
    parent: IndirectObject,
    entries: Sequence[OutlineEntry],
    *,
    after: IndirectObject | None = None,
) -> tuple[IndirectObject, IndirectObject, int]:
    """Write ``entries`` as children of the outline item (or outline root) ``parent``, following its
    existing child ``after`` if given (whose /Next is the caller's to set): each a /GoTo action showing
    its page whole, as ``stamps.saving.bookmark`` makes them. Returns the first and last new item
    and how many new items are visible under ``parent`` (what its /Count grows by)."""
    refs = [objects.reserve() for _ in entries]
    visible = len(entries)
    for i, ((title, page, children), ref) in enumerate(zip(entries, refs, strict=True)):
        body = b"<</Title " + text_string(title) + b"/Parent %d 0 R" % parent.idnum
        if i or after is not None:
            body += b"/Prev %d 0 R" % (refs[i - 1] if i else after).idnum
        if i + 1 < len(refs):
            body += b"/Next %d 0 R" % refs[i + 1].idnum
        if children:
            first, last, count = write_outline(objects, ref, children)
            body += b"/First %d 0 R/Last %d 0 R/Count %d" % (first.idnum, last.idnum, count)
            visible += count
        body += b"/A<</S/GoTo/D[%d 0 R/Fit]>>>>" % page.idnum
        objects.replace(ref, body)
    return refs[0], refs[-1], visible


def _first_free_number(reader: PdfReader) -> int:
    """The first object number after every number the file uses, in any revision.

    That is the trailer's /Size in a well-made file; but a producer that understates /Size would have
    objects of its own shadowed by ours, and our /Size would understate the file again. So the highest
    number in any cross-reference section of the /Prev chain (tables, streams, and objects inside object
    streams, as pypdf collected them) counts too.
    """
    numbers = [int(reader.trailer.get("/Size", 0))]
    for section in reader.xref.values():  # generation -> {object number: offset}
        numbers += [n + 1 for n in section]
    numbers += [n + 1 for n in reader.xref_objStm]
    return max(numbers)


def _runs(numbers: list[int]) -> list[tuple[int, list[int]]]:
    """Consecutive object numbers grouped into cross-reference subsections."""
    runs: list[tuple[int, list[int]]] = []
    for n in numbers:
        if runs and runs[-1][1][-1] == n - 1:
            runs[-1][1].append(n)
        else:
            runs.append((n, [n]))
    return runs
