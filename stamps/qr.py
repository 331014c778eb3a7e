"""The verification QR code (电子保单验真) on page 1 of an issued document.

What ``draw_qr`` promises:

- **Vector modules, black on white.** The symbol is one filled path of rectangles (a row's run of dark
  modules is one rectangle) over a white square that holds the quiet zone of four modules: no image,
  no font, no transparency, nothing a printer or a PDF/A reader has to guess at. It needs no page
  resources, so it adds one small content stream to the page and nothing else.
- **Where it goes.** ``corner_box``: the top-right corner of the page's visual frame, inside the
  printable area and right-aligned with the text column's edge, above the document number line of every
  template in ``templates/`` (tests/test_qr.py checks each against poppler's word boxes). Its size,
  ``QR_SIZE_MM`` with the quiet zone, gives modules of about 0.6 mm for the URLs this project prints:
  scannable from paper.
- **Drawn like the seals** (``stamps.stamping.seal_document``): the page's own content runs inside
  ``q … Q`` first, so no graphics state it leaves behind can move or tint the code.

``QrEncoder`` makes the symbols. A run prints thousands of URLs that differ only in their last few
characters, and segno spends most of a symbol's time choosing its mask (milliseconds). A QR symbol of
fixed version, error level and mask is an affine function of its data bits (Reed-Solomon is linear over
GF(2), placement a permutation, the mask an XOR), so the encoder makes one symbol per URL length with
segno, remembers what flipping each data bit changes, and makes every other URL of that length by XOR:
the same modules segno makes for that version and mask, in microseconds.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pikepdf
import segno

from stamps.layout import PT_PER_MM, PageFrame
from stamps.stamping import pikepdf_frames

__all__ = ["QR_SIZE_MM", "QUIET_MODULES", "QrEncoder", "QrSymbol", "corner_box", "draw_qr", "qr_content"]

QR_SIZE_MM = 25.0  # the whole square, quiet zone included
QUIET_MODULES = 4  # ISO/IEC 18004's quiet zone
TOP_MM = 7.0  # below the page's top edge: inside what printers print
RIGHT_MM = 20.0  # from the page's right edge: the templates' text column ends there
ERROR_LEVEL = "m"  # 15% of the symbol may be lost (a fold, a smudge) and it still reads
_DARK_RUN = re.compile(r"1+")

Box = tuple[float, float, float]  # x, y of the lower-left corner and the side, pt, in a visual frame


@dataclass(frozen=True)
class QrSymbol:
    """A QR symbol's modules: ``size`` rows of ``size`` modules, each row as bits, leftmost module the
    most significant, 1 dark. The quiet zone is not included."""

    size: int
    rows: tuple[int, ...]

    def dark(self, x: int, y: int) -> bool:
        return bool(self.rows[y] >> (self.size - 1 - x) & 1)


class QrEncoder:
    """QR symbols for text, cheap for many texts of the same length (see the module docstring).

    Thread-safe: the documents of a run are made on several threads, which share one encoder.
    """

    def __init__(self, *, error: str = ERROR_LEVEL) -> None:
        self._error = error
        self._families: dict[int, _Family] = {}
        self._lock = threading.Lock()

    def symbol(self, text: str) -> QrSymbol:
        """The symbol of ``text`` (UTF-8, byte mode, error level ``error``)."""
        data = text.encode("utf-8")
        with self._lock:
            family = self._families.get(len(data))
            if family is None:
                family = self._families[len(data)] = _Family(data, error=self._error)
            return family.symbol(data)


class _Family:
    """Symbols of every text as long as ``base``: version and mask are the ones segno chose for ``base``."""

    def __init__(self, base: bytes, *, error: str) -> None:
        first = segno.make_qr(base, mode="byte", error=error, boost_error=False)
        self.error, self.version, self.mask = error, first.version, first.mask
        self.size = len(first.matrix)
        self.base = base
        self.base_bits = _as_int(first.matrix)
        self.deltas: dict[tuple[int, int], int] = {}  # (byte, bit) -> the modules flipping it flips

    def symbol(self, data: bytes) -> QrSymbol:
        bits = self.base_bits
        for at, (old, new) in enumerate(zip(self.base, data, strict=True)):
            diff = old ^ new
            while diff:
                bit = diff & -diff
                delta = self.deltas.get((at, bit))
                if delta is None:
                    flipped = bytearray(self.base)
                    flipped[at] ^= bit
                    delta = self.deltas[(at, bit)] = self._segno(bytes(flipped)) ^ self.base_bits
                bits ^= delta
                diff ^= bit
        n = self.size
        row_mask = (1 << n) - 1
        return QrSymbol(n, tuple((bits >> ((n - 1 - y) * n)) & row_mask for y in range(n)))

    def _segno(self, data: bytes) -> int:
        made = segno.make_qr(
            data, mode="byte", error=self.error, version=self.version, mask=self.mask, boost_error=False
        )
        return _as_int(made.matrix)


_BITS = bytes.maketrans(b"\x00\x01", b"01")


def _as_int(matrix: Sequence[bytearray]) -> int:
    """segno's matrix (rows of 0/1 bytes) as one integer, the top row's leftmost module the highest bit."""
    return int(b"".join(bytes(row).translate(_BITS) for row in matrix), 2)


def segno_symbol(text: str, *, version: int, mask: int, error: str = ERROR_LEVEL) -> QrSymbol:
    """segno's own symbol for ``text`` at this version and mask: what ``QrEncoder`` must agree with."""
    made = segno.make_qr(
        text.encode("utf-8"), mode="byte", error=error, version=version, mask=mask, boost_error=False
    )
    n = len(made.matrix)
    bits = _as_int(made.matrix)
    return QrSymbol(n, tuple((bits >> ((n - 1 - y) * n)) & ((1 << n) - 1) for y in range(n)))


def corner_box(frame: PageFrame, *, size_mm: float = QR_SIZE_MM) -> Box:
    """Where the code goes on a page: its top-right corner (see the module docstring)."""
    side = size_mm * PT_PER_MM
    return (frame.width - RIGHT_MM * PT_PER_MM - side, frame.height - TOP_MM * PT_PER_MM - side, side)


def qr_content(symbol: QrSymbol, *, frame: PageFrame, box: Box) -> bytes:
    """The operators that draw ``symbol`` with its quiet zone filling ``box`` of a page with ``frame``."""
    x, y, side = box
    module = side / (symbol.size + 2 * QUIET_MODULES)
    quiet = QUIET_MODULES * module
    out = [
        b"q\n",
        b" ".join(_num(v) for v in frame.matrix) + b" cm\n",
        b"1 g\n" + b" ".join(_num(v) for v in (x, y, side, side)) + b" re f\n",
        # module space: one unit a module, origin at the symbol's top-left corner, rows going down
        b" ".join(_num(v) for v in (module, 0, 0, -module, x + quiet, y + side - quiet)) + b" cm\n0 g\n",
    ]
    width = symbol.size
    for row, bits in enumerate(symbol.rows):
        if bits:
            for run in _DARK_RUN.finditer(format(bits, f"0{width}b")):
                start = run.start()
                out.append(b"%d %d %d 1 re\n" % (start, row, run.end() - start))
    out.append(b"f\nQ\n")
    return b"".join(out)


def draw_qr(pdf: pikepdf.Pdf, symbol: QrSymbol, *, page: int = 0, box: Box | None = None) -> Box:
    """Draw ``symbol`` on page ``page`` of a document being assembled (pikepdf), in place, at ``box``
    of its visual frame (default ``corner_box``); the box it was drawn in."""
    target = pdf.pages[page]
    (frame,) = pikepdf_frames([target])
    box = box if box is not None else corner_box(frame)
    page_obj = target.obj
    contents = page_obj.get("/Contents")
    if contents is None:
        existing: list[pikepdf.Object] = []
    elif isinstance(contents, pikepdf.Array):
        existing = list(contents)
    else:
        existing = [contents]
    body = b"Q\n" + qr_content(symbol, frame=frame, box=box)
    page_obj.Contents = pikepdf.Array([pdf.make_stream(b"q"), *existing, pdf.make_stream(body)])
    return box


def _num(value: float) -> bytes:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return (text if text not in ("-0", "") else "0").encode()
