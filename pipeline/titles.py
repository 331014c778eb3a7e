"""The title band on top of an image page of the archive bundle: the kind of image and the policy
number on one line, "page n of m" below.

The title is drawn by Pillow into small greyscale pictures at 300 dpi: no font goes into the PDF, so
there is nothing to subset or embed, and the archive's PDF checks have no font to complain about.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont
from pypdf.generic import IndirectObject

from core.errors import ComponentUnavailable
from stamps.pdfupdate import PdfObjects

__all__ = [
    "BAND_PT",
    "COUNT_PT",
    "MIN_TITLE_PT",
    "TITLE_DPI",
    "TITLE_FONT",
    "TITLE_FONT_INDEX",
    "TITLE_PT",
    "fit_title",
    "title_band",
    "title_font",
    "whole_band",
]

TITLE_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
TITLE_FONT_INDEX = 2  # the collection's "Noto Sans CJK SC" face (fc-query): simplified-Chinese glyph forms
_TITLE_FAMILY = "Noto Sans CJK SC"

TITLE_PT = 12.0  # the kind of image and the policy number
COUNT_PT = 9.0  # "承保影像 第 n 页 共 m 页"
MIN_TITLE_PT = 8.0  # a long "other" label shrinks the title down to this, then is cut with "…"
BAND_PT = 30.0  # height of the title band
TITLE_DPI = 300


@dataclass(frozen=True)
class _Piece:
    """A piece of a title band (the kind of image, the policy number, the page count): its text's ink
    as a greyscale picture, black on white, deflated; ``left`` and ``top`` are where that picture's top
    left lies from the pen's start on the baseline, in pixels at ``TITLE_DPI``."""

    data: bytes
    width: int
    height: int
    left: int
    top: int


@lru_cache(maxsize=256)  # kinds and page counts recur in every record; a policy number serves one
def _piece(text: str, points: float) -> _Piece | None:
    """``text`` at ``points`` drawn alone from a pen on a pixel's edge, cut to its ink (None: no ink)."""
    drawn = _drawn(text, points)
    box = ImageChops.invert(drawn.picture).getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    ink = drawn.picture.crop(box)
    return _Piece(
        data=zlib.compress(ink.tobytes(), level=1),
        width=right - left,
        height=bottom - top,
        left=left - drawn.origin[0],
        top=top - drawn.origin[1],
    )


def title_band(
    objects: PdfObjects,
    title: tuple[str, ...],
    count: str,
    *,
    left_pt: float,
    top_pt: float,
    width_pt: float,
    shared: dict[tuple[str, float], IndirectObject],
) -> tuple[bytes, bytes]:
    """The title band: the kind of image and the policy number on one line, "page n of m" below, drawn
    as greyscale pictures at 300 dpi, black text on white, legible in print, in a band ``width_pt`` wide
    whose top left is at (``left_pt``, ``top_pt``). Its resources (``/T0``… XObjects) and its drawing
    operators, for the page.

    ``title`` is the title line's parts: the kind of image (which may be cut short to fit), then "policy
    no." and the policy number (which are not). Each part and the count is a picture of its own, only as
    large as its ink, shown where drawing the lines whole puts it (a part from where the advance of
    those before it ends, to a fraction of a pixel): the same picture serves every page that shows it
    (``shared``: the policy number once per record, each kind once), and all but the policy number are
    drawn and deflated once per process. Where pieces would overlap, the band is one picture of the
    lines drawn whole instead. Nothing goes outside the band.
    """
    px = TITLE_DPI / 72
    band_px = round(width_pt * px)
    height_px = round(BAND_PT * px)
    scale_x, scale_y = width_pt / band_px, BAND_PT / height_px  # band_px is rounded: keep its scale
    points, head = fit_title(title[0], title[1:], width_px=band_px)
    title_baseline = round(TITLE_PT * 1.1 * px)
    lines = []
    pen = 0.0
    for text in (head, *title[1:]):
        lines.append((text, points, pen, title_baseline))
        pen += _advance(text, points)
    lines.append((count, COUNT_PT, 0.0, round((TITLE_PT * 1.1 + COUNT_PT * 1.45) * px)))
    placed = [
        (text, size, piece, pen, baseline)
        for text, size, pen, baseline in lines
        if (piece := _piece(text, size))
    ]
    boxes = [
        (
            math.floor(pen + piece.left),
            baseline + piece.top,
            math.ceil(pen + piece.left) + piece.width,
            baseline + piece.top + piece.height,
        )
        for _, _, piece, pen, baseline in placed
    ]
    clip = f"q {_num(left_pt)} {_num(top_pt - BAND_PT)} {_num(width_pt)} {_num(BAND_PT)} re W n\n"
    if any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]):
        ref = objects.add_stream(
            _grey_entries(band_px, height_px),
            zlib.compress(whole_band(title, count, band_px=band_px).tobytes(), level=1),
        )
        shown = f"{_num(width_pt)} 0 0 {_num(BAND_PT)} {_num(left_pt)} {_num(top_pt - BAND_PT)} cm"
        return b"/T0 %d 0 R" % ref.idnum, (clip + f"{shown} /T0 Do Q\n").encode("ascii")
    resources, operators = [], [clip]
    for n, (text, size, piece, pen, baseline) in enumerate(placed):
        ref = shared.get((text, size))
        if ref is None:
            ref = shared[(text, size)] = objects.add_stream(
                _grey_entries(piece.width, piece.height), piece.data
            )
        x = left_pt + (pen + piece.left) * scale_x
        y = top_pt - (baseline + piece.top + piece.height) * scale_y
        resources.append(b"/T%d %d 0 R" % (n, ref.idnum))
        operators.append(
            f"q {_num(piece.width * scale_x)} 0 0 {_num(piece.height * scale_y)} {_num(x)} {_num(y)} cm "
            f"/T{n} Do Q\n"
        )
    operators.append("Q\n")
    return b"".join(resources), "".join(operators).encode("ascii")


def _grey_entries(width: int, height: int) -> bytes:
    """A title picture's entries: 8-bit grey pixels as they are, deflated (no PNG predictors)."""
    return (
        b"/Type/XObject/Subtype/Image/Width %d/Height %d/BitsPerComponent 8/Filter/FlateDecode"
        b"/ColorSpace/DeviceGray" % (width, height)
    )


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def whole_band(title: tuple[str, ...], count: str, *, band_px: int) -> Image.Image:
    """The band as one picture ``band_px`` wide: both lines drawn whole, for pieces that would overlap."""
    px = TITLE_DPI / 72
    points, head = fit_title(title[0], title[1:], width_px=band_px)
    band = Image.new("L", (band_px, round(BAND_PT * px)), 255)
    draw = ImageDraw.Draw(band)
    draw.text(
        (0, round(TITLE_PT * 1.1 * px)),
        head + "".join(title[1:]),
        font=title_font(points),
        fill=0,
        anchor="ls",
    )
    draw.text(
        (0, round((TITLE_PT * 1.1 + COUNT_PT * 1.45) * px)),
        count,
        font=title_font(COUNT_PT),
        fill=0,
        anchor="ls",
    )
    return band


def fit_title(head: str, tail: Sequence[str], *, width_px: int) -> tuple[float, str]:
    """The largest title size in points from ``TITLE_PT`` down to ``MIN_TITLE_PT`` at which ``head`` and
    the parts of ``tail`` fit on one line, else the smallest size with ``head`` cut short with "…" (the
    policy number in ``tail`` stays whole); and ``head`` as it is to be drawn."""
    em = TITLE_PT * TITLE_DPI / 72
    if _advance(head, TITLE_PT) + sum(_advance(part, TITLE_PT) for part in tail) <= width_px - em:
        # fits with an em to spare, more than drawing the parts together can differ from drawing them
        # apart (kerning across the joins): no need to measure the whole line (the usual case)
        return TITLE_PT, head
    rest = "".join(tail)
    size = TITLE_PT
    while (too_wide := title_font(size).getlength(head + rest) > width_px) and size > MIN_TITLE_PT:
        size -= 0.5
    while too_wide and len(head) > 1:
        head = head[:-2] + "…"
        too_wide = title_font(size).getlength(head + rest) > width_px
    return size, head


@dataclass(frozen=True)
class _Drawn:
    """Text drawn black on white; ``origin`` is the pixel where its pen started, on its baseline."""

    picture: Image.Image
    origin: tuple[int, int]


def _drawn(text: str, points: float) -> _Drawn:
    """``text`` as ``ImageDraw.text`` draws it from a pen on a pixel's edge, in a picture just large
    enough (with a margin) for its glyphs' outlines."""
    font = title_font(points)
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    x, y = max(0, -math.floor(left)) + 1, max(0, -math.floor(top)) + 1
    picture = Image.new("L", (x + max(0, math.ceil(right)) + 2, y + max(0, math.ceil(bottom)) + 2), 255)
    ImageDraw.Draw(picture).text((x, y), text, font=font, fill=0, anchor="ls")
    return _Drawn(picture, (x, y))


@lru_cache(maxsize=256)
def _advance(text: str, points: float) -> float:
    return title_font(points).getlength(text)


@lru_cache(maxsize=16)
def title_font(points: float) -> ImageFont.FreeTypeFont:
    try:
        font = ImageFont.truetype(str(TITLE_FONT), round(points * TITLE_DPI / 72), index=TITLE_FONT_INDEX)
    except OSError as e:
        raise ComponentUnavailable(
            f"the title font {TITLE_FONT} cannot be loaded", hint="install Debian's fonts-noto-cjk"
        ) from e
    if font.getname()[0] != _TITLE_FAMILY:
        raise ComponentUnavailable(
            f"face {TITLE_FONT_INDEX} of {TITLE_FONT} is not {_TITLE_FAMILY}",
            hint="check the index with fc-query and set TITLE_FONT_INDEX",
        )
    return font


def _num(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
