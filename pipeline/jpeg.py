"""JPEG structure, walked marker by marker and never decoded (ITU-T T.81, annex B).

A JPEG goes into the archive copy as it is (``pipeline.intake``: its DCT data passed through), so what
has to be known about it is its structure: that it walks from SOI through well-formed segments and its
entropy-coded data to EOI, that its tables say what a decoder needs, and what its frame is. Decoding the
pixels tells little more: libjpeg reads damaged entropy-coded data without an error (it fills in what it
cannot read, and Pillow passes that on), so a full decode mostly catches what the walk catches too, a file
cut short, at the cost of Huffman-decoding every byte (``bench/jpeg_bench.py``, docs/performance.md).
Written by hand because no library walks a JPEG without decoding it; the walk is short and follows the
standard's syntax, and anything it does not know (arithmetic coding, 12-bit samples, a DNL marker, a
hierarchical JPEG) is left for the decoder to judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A marker inside entropy-coded data: 0xFF followed by neither a stuffed zero, a restart marker (RSTn,
# which belongs to the data) nor a fill byte.
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")

SOI, EOI, SOS, DHT, DQT, DRI = 0xD8, 0xD9, 0xDA, 0xC4, 0xDB, 0xDD
# Huffman-coded frames a decoder and a PDF reader take as they are: baseline, extended, progressive.
HUFFMAN_FRAMES = (0xC0, 0xC1, 0xC2)


@dataclass(frozen=True)
class Frame:
    """The frame header (SOFn) of an 8-bit JPEG: coding process, size, component ids and their tables."""

    marker: int
    width: int
    height: int
    component_ids: bytes
    quantisation: bytes  # each component's quantisation table id


@dataclass(frozen=True)
class Layout:
    """A JPEG walked to its end: ``pieces`` is every segment as (marker, start, end) in file order, the
    entropy-coded data of a scan as (None, start, end); ``end`` is the offset just after EOI."""

    frame: Frame
    pieces: tuple[tuple[int | None, int, int], ...]
    end: int


def walk(data: bytes) -> Layout | None:
    """The layout of a Huffman-coded, 8-bit JPEG whose structure is sound, or ``None``.

    Sound: SOI, then segments whose lengths hold, exactly one frame header (baseline, extended or
    progressive, 8-bit, with a height), quantisation and Huffman tables that are well formed, scans that
    name the frame's components and tables already defined, entropy-coded data that runs to a marker,
    and EOI after at least one scan. Bytes after EOI (a second picture, a trailer) are allowed and not walked.
    ``None`` for anything else, including what is valid but unusual: let the decoder judge those.
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    pieces: list[tuple[int | None, int, int]] = [(SOI, 0, 2)]
    pos, size = 2, len(data)
    frame: Frame | None = None
    quant: set[int] = set()
    huffman: set[tuple[int, int]] = set()  # (class 0 DC / 1 AC, table id)
    scanning = False
    scans = 0
    while True:
        if scanning:
            found = _MARKER.search(data, pos)
            if found is None:
                return None  # the data stops inside a scan: cut short
            pieces.append((None, pos, found.start()))
            pos = found.start()
        if pos + 2 > size or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte before a marker
            pos += 1
            continue
        if marker == EOI:
            if not scans or frame is None:
                return None
            pieces.append((EOI, pos, pos + 2))
            return Layout(frame=frame, pieces=tuple(pieces), end=pos + 2)
        if pos + 4 > size:
            return None
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end - pos < 4 or end > size:
            return None
        payload = data[pos + 4 : end]
        scanning = False
        if marker in HUFFMAN_FRAMES:
            if frame is not None:
                return None  # a second frame: a hierarchical JPEG
            frame = _frame(marker, payload)
            if frame is None:
                return None
        elif marker == DQT:
            if not _quantisation_tables(payload, quant):
                return None
        elif marker == DHT:
            if not _huffman_tables(payload, huffman):
                return None
        elif marker == SOS:
            if frame is None or not _scan_header(payload, frame, quant, huffman):
                return None
            scanning = True
            scans += 1
        elif marker == DRI:
            if len(payload) != 2:
                return None
        elif not (0xE0 <= marker <= 0xEF or marker == 0xFE):  # APPn and COM carry no coding data
            return None  # SOI again, RSTn or TEM outside data, DNL, DHP, EXP, JPGn, arithmetic coding
        pieces.append((marker, pos, end))
        pos = end


def _frame(marker: int, payload: bytes) -> Frame | None:
    if len(payload) < 6:
        return None
    count = payload[5]
    if len(payload) != 6 + 3 * count or count not in (1, 2, 3, 4) or payload[0] != 8:
        return None
    height, width = int.from_bytes(payload[1:3], "big"), int.from_bytes(payload[3:5], "big")
    if height == 0 or width == 0:  # height 0 is defined later by a DNL marker: rare, left to the decoder
        return None
    ids = bytes(payload[6 + 3 * i] for i in range(count))
    tables = bytes(payload[8 + 3 * i] for i in range(count))
    for i in range(count):
        sampling = payload[7 + 3 * i]
        if not (1 <= sampling >> 4 <= 4 and 1 <= sampling & 15 <= 4) or tables[i] > 3:
            return None
    if len(set(ids)) != count:
        return None
    return Frame(marker=marker, width=width, height=height, component_ids=ids, quantisation=tables)


def _quantisation_tables(payload: bytes, defined: set[int]) -> bool:
    pos = 0
    while pos < len(payload):
        precision, table = payload[pos] >> 4, payload[pos] & 15
        if precision > 1 or table > 3:
            return False
        pos += 1 + 64 * (precision + 1)
        defined.add(table)
    return pos == len(payload) and pos > 0


def _huffman_tables(payload: bytes, defined: set[tuple[int, int]]) -> bool:
    pos = 0
    while pos < len(payload):
        if pos + 17 > len(payload):
            return False
        kind, table = payload[pos] >> 4, payload[pos] & 15
        values = sum(payload[pos + 1 : pos + 17])
        if kind > 1 or table > 3 or values == 0 or values > 256:
            return False
        pos += 17 + values
        defined.add((kind, table))
    return pos == len(payload) and pos > 0


def _scan_header(payload: bytes, frame: Frame, quant: set[int], huffman: set[tuple[int, int]]) -> bool:
    if not payload:
        return False
    count = payload[0]
    if count not in (1, 2, 3, 4) or len(payload) != 1 + 2 * count + 3:
        return False
    start, stop, approximation = payload[1 + 2 * count], payload[2 + 2 * count], payload[3 + 2 * count]
    if start > 63 or stop > 63 or start > stop:
        return False
    refining = approximation >> 4 != 0
    for i in range(count):
        component, tables = payload[1 + 2 * i], payload[2 + 2 * i]
        if component not in frame.component_ids:
            return False
        if frame.quantisation[frame.component_ids.index(component)] not in quant:
            return False
        # a DC scan that refines needs no table; AC needs its table, as does every first DC scan
        if start == 0 and not refining and (0, tables >> 4) not in huffman:
            return False
        if stop > 0 and (1, tables & 15) not in huffman:
            return False
    return True
