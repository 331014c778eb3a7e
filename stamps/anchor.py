"""Finding the signature line (the anchor text) in a rendered PDF.

Why poppler's ``pdftotext -bbox-layout`` and not pypdf's ``extract_text(visitor_text=...)``: both were
tried on LibreOffice 7.4's policies (``bench/stamp_bench.py`` times them). pypdf reports one position
per text-showing operator, and LibreOffice shows a whole run such as "保险人（盖章）" with one ``Tj``, so
finding where "盖章" starts inside the run would need the font's glyph widths mapped back through its
ToUnicode CMap; it also leaves /Rotate to the caller. pdftotext has already applied text matrix × CTM
and the page's /Rotate, groups glyphs into words and lines, and gives each word's box in the page's
*visual* frame; on the schedule's first page it was also the faster (``bench/stamp_bench.py``,
docs/performance.md). Inside a word, characters are assumed
equally wide, which is exact for CJK text (every ideograph and full-width bracket is one em) and close
for mixed text.

What is promised: the text is matched after NFKC normalisation with whitespace ignored, within one line;
the box of the requested part of the anchor is returned in the page's visual frame (after /Rotate).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stamps.poppler import text_bbox_layout

__all__ = ["TextHit", "find_text"]

_TOKEN = re.compile(
    r'<page width="(?P<pw>[\d.]+)" height="(?P<ph>[\d.]+)">'
    r"|(?P<line><line )"
    r'|<word xMin="(?P<x0>[-\d.]+)" yMin="(?P<y0>[-\d.]+)" xMax="(?P<x1>[-\d.]+)" yMax="(?P<y1>[-\d.]+)">'
    r"(?P<text>.*?)</word>"
)


@dataclass(frozen=True)
class TextHit:
    """Where text was found: page index (0-based) and box (x0, top, x1, bottom) in pt, in the page's
    visual frame with the origin at the top-left, as poppler and page images have it."""

    page: int
    box: tuple[float, float, float, float]

    @property
    def centre(self) -> tuple[float, float]:
        """Centre of the box, visual frame, origin top-left."""
        x0, top, x1, bottom = self.box
        return ((x0 + x1) / 2, (top + bottom) / 2)


@dataclass(frozen=True)
class _Char:
    char: str  # normalised
    box: tuple[float, float, float, float]


def _normalise(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def _char_boxes(
    word: str, box: tuple[float, float, float, float], rotation: int
) -> list[tuple[float, float, float, float]]:
    """Split a word's box into one box per character along its reading direction.

    pdftotext gives boxes in the visual frame, so on a page with /Rotate 90 a line of upright text runs
    down the box, on 180 leftwards, on 270 upwards. Text is assumed upright in the page's own space (as
    LibreOffice writes it).
    """
    x0, top, x1, bottom = box
    n = max(1, len(word))
    out = []
    for i in range(len(word)):
        a, b = i / n, (i + 1) / n
        if rotation == 90:
            out.append((x0, top + a * (bottom - top), x1, top + b * (bottom - top)))
        elif rotation == 180:
            out.append((x1 - b * (x1 - x0), top, x1 - a * (x1 - x0), bottom))
        elif rotation == 270:
            out.append((x0, bottom - b * (bottom - top), x1, bottom - a * (bottom - top)))
        else:
            out.append((x0 + a * (x1 - x0), top, x0 + b * (x1 - x0), bottom))
    return out


def find_text(
    pdf: Path, text: str, *, pages: range, rotations: Sequence[int], part: str | None = None
) -> list[TextHit]:
    """Every occurrence of ``text`` on ``pages``, in reading order; the box covers ``part`` of it if given.

    ``rotations`` holds every page's /Rotate (normalised to 0, 90, 180, 270), indexed by page.
    """
    wanted = _normalise(text)
    focus = _normalise(part) if part else wanted
    offset = wanted.find(focus)
    if not wanted or offset < 0:
        raise ValueError(f"{part!r} is not part of {text!r}")
    if len(pages) == 0:
        return []
    layout = text_bbox_layout(pdf, first_page=min(pages) + 1, last_page=max(pages) + 1)
    hits: list[TextHit] = []
    page = min(pages) - 1
    line: list[_Char] = []

    def flush() -> None:
        joined = "".join(c.char for c in line)
        start = joined.find(wanted)
        while start >= 0:
            chars = line[start + offset : start + offset + len(focus)]
            box = (
                min(c.box[0] for c in chars),
                min(c.box[1] for c in chars),
                max(c.box[2] for c in chars),
                max(c.box[3] for c in chars),
            )
            hits.append(TextHit(page=page, box=box))
            start = joined.find(wanted, start + 1)
        line.clear()

    for m in _TOKEN.finditer(layout):
        if m["pw"]:
            flush()
            page += 1
        elif m["line"]:
            flush()
        else:
            word = html.unescape(m["text"])
            box = (float(m["x0"]), float(m["y0"]), float(m["x1"]), float(m["y1"]))
            for char, char_box in zip(word, _char_boxes(word, box, rotations[page]), strict=True):
                for n in _normalise(char):
                    line.append(_Char(n, char_box))
    flush()
    return hits
