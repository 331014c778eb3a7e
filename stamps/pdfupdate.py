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
from io import BytesIO

from pypdf import PdfReader
from pypdf.generic import ArrayObject, ByteStringObject, IndirectObject, PdfObject

__all__ = ["IncrementalUpdate", "serialise"]

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


class IncrementalUpdate:
    """Collects new and replaced objects for one update of ``original`` (read by ``reader``)."""

    def __init__(self, original: bytes, reader: PdfReader) -> None:
        found = previous_xref(original)
        if found is None:
            raise ValueError("the PDF's startxref does not point at a cross-reference section")
        self._original = original
        self._prev, self._as_stream = found
        self._trailer = reader.trailer
        self._next = _first_free_number(reader)
        self._bodies: dict[int, tuple[int, bytes]] = {}

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

    def to_bytes(self) -> bytes:
        out = bytearray(self._original)
        if not out.endswith(b"\n"):
            out += b"\n"
        offsets: dict[int, tuple[int, int]] = {}
        for number in sorted(self._bodies):
            generation, body = self._bodies[number]
            offsets[number] = (len(out), generation)
            out += b"%d %d obj\n" % (number, generation) + body + b"\nendobj\n"
        trailer = self._trailer_entries(out[len(self._original) :])
        if self._as_stream:
            xref_at = self._xref_stream(out, offsets, trailer)
        else:
            xref_at = len(out)
            out += b"xref\n"
            for start, numbers in _runs(sorted(offsets)):
                out += b"%d %d\n" % (start, len(numbers))
                for number in numbers:
                    offset, generation = offsets[number]
                    out += b"%010d %05d n\r\n" % (offset, generation)
            out += b"trailer\n<</Size %d" % self._next + trailer + b">>\n"
        out += b"startxref\n%d\n%%%%EOF\n" % xref_at
        return bytes(out)

    def _trailer_entries(self, update: bytes | bytearray) -> bytes:
        parts = [b"/Root " + serialise(self._trailer.raw_get("/Root"))]
        if "/Info" in self._trailer:
            parts.append(b"/Info " + serialise(self._trailer.raw_get("/Info")))
        ids = self._trailer.get("/ID")
        if ids is not None and len(ids) == 2:
            first = ids[0]
            second = hashlib.md5(bytes(ids[1].original_bytes) + update, usedforsecurity=False).digest()
            parts.append(b"/ID " + serialise(ArrayObject([first, ByteStringObject(second)])))
        parts.append(b"/Prev %d" % self._prev)
        return b"".join(parts)

    def _xref_stream(self, out: bytearray, offsets: dict[int, tuple[int, int]], trailer: bytes) -> int:
        number = self._next
        self._next += 1
        xref_at = len(out)
        offsets[number] = (xref_at, 0)
        width = max(4, (xref_at.bit_length() + 7) // 8)
        rows = bytearray()
        index = bytearray()
        for start, numbers in _runs(sorted(offsets)):
            index += b"%d %d " % (start, len(numbers))
            for n in numbers:
                offset, generation = offsets[n]
                rows += b"\x01" + offset.to_bytes(width, "big") + generation.to_bytes(2, "big")
        out += (
            b"%d 0 obj\n<</Type/XRef/Size %d/W[1 %d 2]/Index[%s]"
            % (number, self._next, width, bytes(index).strip())
            + trailer
            + b"/Length %d>>\nstream\n" % len(rows)
            + bytes(rows)
            + b"\nendstream\nendobj\n"
        )
        return xref_at


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
