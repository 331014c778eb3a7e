"""Where seals go: page frames, cross-page groups and strip windows. Shared by stamping and finding.

Stamping and checking must agree to the point on where each strip lies, so both take their geometry from
here. Everything is in a page's *visual* frame (what a viewer shows, after /Rotate), in pt, origin at the
bottom-left; ``PageFrame.matrix`` maps that frame to the page's default user space.

The cross-page rule (DOMAIN.md "Seals", from real e-seal products):

- no cross-page seal on a one-page document;
- a group holds at most ``max_pages`` pages (20), then a new whole seal starts;
- a trailing single page joins the previous group instead of standing alone: 21 pages are one group of
  21, 41 pages are 20 + 21, 40 pages are 20 + 20, 22 pages are 20 + 2;
- strips are equal, so the first and last are as wide as any (a 42 mm seal over 21 pages gives 2 mm);
  ``max_group_pages`` lowers the limit for a small seal so that no strip is under ``MIN_STRIP_MM``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "MAX_GROUP_PAGES",
    "MIN_STRIP_MM",
    "PT_PER_MM",
    "PageFrame",
    "StripWindow",
    "cross_page_groups",
    "frame_for",
    "max_group_pages",
    "strip_windows",
]

PT_PER_MM = 72 / 25.4
MAX_GROUP_PAGES = 20
MIN_STRIP_MM = 1.5


@dataclass(frozen=True)
class PageFrame:
    """A page as a reader sees it: visual width and height, and the visual-to-user matrix (a b c d e f)."""

    width: float
    height: float
    matrix: tuple[float, float, float, float, float, float]
    rotation: int


def frame_for(*, box: tuple[float, float, float, float], rotation: int) -> PageFrame:
    """The visual frame of a page whose crop box is ``box`` (user space) and whose /Rotate is ``rotation``.

    /Rotate turns the page clockwise for display; the matrix turns visual coordinates back, so a seal
    drawn upright at the visual right edge lands where the viewer shows the right edge. A /Rotate that is
    not a multiple of 90 is invalid and read as 0, as poppler and pdf.js do.
    """
    x0, y0, x1, y1 = min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])
    w, h = x1 - x0, y1 - y0
    r = rotation % 360 if rotation % 90 == 0 else 0
    if r == 0:
        return PageFrame(w, h, (1, 0, 0, 1, x0, y0), r)
    if r == 90:  # visual (X, Y) -> user (x0 + w - Y, y0 + X)
        return PageFrame(h, w, (0, 1, -1, 0, x0 + w, y0), r)
    if r == 180:
        return PageFrame(w, h, (-1, 0, 0, -1, x0 + w, y0 + h), r)
    return PageFrame(h, w, (0, -1, 1, 0, x0, y0 + h), r)  # 270: (X, Y) -> (x0 + Y, y0 + h - X)


def max_group_pages(seal_width_mm: float, *, limit: int = MAX_GROUP_PAGES) -> int:
    """The group size limit for a seal this wide: ``limit``, lowered so that even a group of limit + 1
    (a trailing single page joined) keeps every strip at least ``MIN_STRIP_MM`` wide."""
    fits = math.floor(seal_width_mm / MIN_STRIP_MM) - 1
    return max(2, min(limit, fits))


def cross_page_groups(page_count: int, *, max_pages: int = MAX_GROUP_PAGES) -> tuple[tuple[int, int], ...]:
    """Page groups as (start, stop) half-open 0-based ranges, one whole seal each; see the module rule."""
    if page_count < 2:
        return ()
    groups = [(start, min(start + max_pages, page_count)) for start in range(0, page_count, max_pages)]
    if len(groups) > 1 and groups[-1][1] - groups[-1][0] == 1:
        groups[-2] = (groups[-2][0], page_count)
        groups.pop()
    return tuple(groups)


@dataclass(frozen=True)
class StripWindow:
    """Page ``page``'s part of a cross-page seal, in that page's visual frame (pt).

    The whole seal image is placed at (``seal_x``, ``seal_y``) with size ``seal_width`` × ``seal_height``
    and clipped to the strip (``clip_x``, ``seal_y``, ``clip_width``, ``seal_height``) at the right edge: the
    page shows columns [index × strip, (index + 1) × strip) of the seal, the first page the leftmost.
    """

    page: int
    index: int
    count: int
    seal_x: float
    seal_y: float
    seal_width: float
    seal_height: float
    clip_x: float
    clip_width: float


def strip_windows(
    frames: list[PageFrame], *, group: tuple[int, int], seal_width: float, seal_height: float
) -> list[StripWindow]:
    """One window per page of ``group``: equal strips, on the visual right edge, vertically centred."""
    start, stop = group
    count = stop - start
    strip = seal_width / count
    windows = []
    for index, page in enumerate(range(start, stop)):
        frame = frames[page]
        windows.append(
            StripWindow(
                page=page,
                index=index,
                count=count,
                seal_x=frame.width - (index + 1) * strip,
                seal_y=(frame.height - seal_height) / 2,
                seal_width=seal_width,
                seal_height=seal_height,
                clip_x=frame.width - strip,
                clip_width=strip,
            )
        )
    return windows
