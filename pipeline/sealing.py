"""Where the company seal goes on a record's document: on its signature line, as a clerk's hand stamp.

Every schedule and endorsement template carries the signature line ``SEAL_ANCHOR``; the seal is centred
on the part ``SEAL_OVER`` of it. Where that is comes from the seal marks LibreOffice exported for each
record (``pipeline.schedules``), offset by how far the centre of 盖章's glyphs lies from the mark's line
top (read once per template with ``pdftotext``); a record without usable marks, or on a rotated page,
has its signature line read back from the text.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pikepdf

from core.errors import SealAnchorMissing
from core.timing import StageClock
from pipeline.schedules import RecordPages
from stamps.anchor import find_text
from stamps.stamping import pikepdf_frames

__all__ = ["SEAL_ANCHOR", "SEAL_OVER", "SealAnchors"]

SEAL_ANCHOR = "保险人（盖章）"
SEAL_OVER = "盖章"


class SealAnchors:
    """Finds where the company seal's centre goes on a record's pages; safe to call from several threads.

    ``clock``: the time spent reading text back is counted under its "seal" stage."""

    def __init__(self, *, clock: StageClock | None = None) -> None:
        self._clock = clock if clock is not None else StageClock()
        self._offsets: dict[Path, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def locate(
        self, *, template: Path, composed: pikepdf.Pdf, path: Path, pages: RecordPages
    ) -> tuple[int, tuple[float, float]]:
        """(page of the record, point in its visual frame) of the seal's centre, for the record on
        ``pages`` of ``composed`` (the converted PDF, also at ``path``) made from ``template``. Raises
        ``SealAnchorMissing`` when the signature line is not on the record's pages."""
        mark = pages.anchor
        rotated = any(int(composed.pages[p].obj.get("/Rotate", 0)) % 360 for p in pages.pages)
        if mark is not None and not rotated:
            with self._lock:
                offset = self._offsets.get(template)
            if offset is None:
                at = pages.pages.start + mark.page
                found = self._read(composed, path, range(at, at + 1))
                if found is not None:
                    x, y = found[1]
                    offset = (x - (mark.x0 + mark.x1) / 2, y - mark.top)
                    with self._lock:
                        self._offsets.setdefault(template, offset)
            if offset is not None:
                return mark.page, ((mark.x0 + mark.x1) / 2 + offset[0], mark.top + offset[1])
        found = self._read(composed, path, pages.pages)
        if found is None:
            raise SealAnchorMissing(
                f"the signature line {SEAL_ANCHOR!r} is not on the document",
                hint="the template must keep the anchor text where the company seal goes",
            )
        return found[0] - pages.pages.start, found[1]

    def _read(
        self, composed: pikepdf.Pdf, path: Path, pages: range
    ) -> tuple[int, tuple[float, float]] | None:
        """The last 盖章 of the anchor on ``pages`` of the composed PDF, by its text: (page, visual point)."""
        frames = pikepdf_frames(composed)
        with self._clock.measure("seal"):
            hits = find_text(
                path, SEAL_ANCHOR, pages=pages, rotations=[f.rotation for f in frames], part=SEAL_OVER
            )
        if not hits:
            return None
        hit = hits[-1]
        x, top = hit.centre
        return hit.page, (x, frames[hit.page].height - top)
