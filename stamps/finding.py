"""Finding seals again in a sealed PDF, by its pixels: what an auditor checks.

The audit item is "所附条款与保单正本是否加盖骑缝章" (DOMAIN.md, 五个一致 no. 4).

The check looks at the pages as a reader sees them (poppler renders them), never at the PDF's objects,
so it cannot be fooled by an image that is present but hidden, clipped away or covered. What is promised:

- Per page: whether a company seal is there (normalised cross-correlation of the page's ink map with the
  registered seal at the same scale, best position anywhere on the page), and whether the page carries
  its cross-page strip where ``stamps.layout`` puts it.
- Per group: the strips, each compared with its window of the registered seal, must reassemble into
  that seal: the similarity is the IoU of the ink masks (expected: the seal's stencil, the ink stamping
  paints; seen: ink map ≥ 0.5), pooled over the group, and every single strip must also pass, so one
  missing or foreign strip fails its group even among 20.
  A different seal, or another version of the same seal, fails too (see tests/test_stamps_find.py).
- The ink map of a pixel is its chroma toward the seal colour, (P[hi] − P[lo]) / (C[hi] − C[lo]): white
  paper, grey shading and black text are 0, so "some red exists" is never mistaken for a seal.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops
from pypdf import PdfReader

from core.errors import IssuanceError
from stamps.layout import (
    MIN_STRIP_MM,
    PT_PER_MM,
    PageFrame,
    StripWindow,
    cross_page_groups,
    max_group_pages,
    strip_windows,
)
from stamps.poppler import RenderedPage, stream_pages
from stamps.registry import Seal
from stamps.stamping import encoded_seal, page_frames

__all__ = [
    "EdgeFan",
    "GroupCheck",
    "PageSeals",
    "SealFinder",
    "SealReport",
    "fanned_edges",
    "find_seals",
    "ink_map",
]

DEFAULT_DPI = 150
THRESHOLD = 0.8
MAX_DIFFERENCE_MM2 = 0.75  # a serial digit is ~2 mm²: one added or missing is too much
_INK = 0.5  # an ink-map value at or above this is ink
_HIGH, _LOW = 0.65, 0.35  # surely ink / surely not: anti-aliased edges between them prove nothing
_COARSE = 3  # the company-seal search runs at a third of the scale first


@dataclass(frozen=True)
class PageSeals:
    """What page ``page`` (0-based) carries."""

    page: int
    company_seal: bool
    company_score: float  # best normalised cross-correlation with the seal, 0..1
    company_xy_pt: tuple[float, float] | None  # where it is, visual frame, origin bottom-left
    strip: bool  # a cross-page strip matching its window
    strip_score: float | None  # IoU of this page's strip with its window; None: no strip expected


@dataclass(frozen=True)
class GroupCheck:
    """One cross-page group: do its strips reassemble into the seal?"""

    pages: tuple[int, int]  # (start, stop), half-open
    similarity: float  # IoU pooled over the group's strips
    weakest_strip: float
    ok: bool


@dataclass(frozen=True)
class SealReport:
    """The verdict on one PDF against one registered seal."""

    seal: str  # Seal.ref checked against
    pages: tuple[PageSeals, ...]
    groups: tuple[GroupCheck, ...]
    company_seal_found: bool
    ok: bool
    problems: tuple[str, ...]


def ink_map(image: Image.Image, colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, how much of the seal's ink it shows (0..1, its chroma toward ``colour``), and whether
    it is hidden: dark and colourless (black text under Multiply-blended ink), so it proves nothing."""
    bands, chroma, full = _chroma(image, colour)
    ink = _ink(chroma, full)
    low = round(_LOW * full)
    brightest = ImageChops.lighter(ImageChops.lighter(bands[0], bands[1]), bands[2])
    dark = brightest.point([255 if v < 140 else 0 for v in range(256)])
    colourless = chroma.point([255 if v < low else 0 for v in range(256)])
    hidden = np.asarray(ImageChops.multiply(dark, colourless)) > 0
    return ink, _dilate(hidden)


def _chroma(
    image: Image.Image, colour: tuple[int, int, int]
) -> tuple[tuple[Image.Image, ...], Image.Image, int]:
    """The image's bands, its chroma toward ``colour`` and the colour's own (Pillow's C loops do the
    per-pixel work; numpy only sees the results)."""
    bands = (image if image.mode == "RGB" else image.convert("RGB")).split()
    hi = int(np.argmax(colour))
    lo = int(np.argmin(colour))
    return bands, ImageChops.subtract(bands[hi], bands[lo]), max(1, colour[hi] - colour[lo])


def _ink(chroma: Image.Image, full: int) -> np.ndarray:
    """``ink_map``'s ink alone, from the chroma."""
    lut = [min(255, round(v * 255 / full)) for v in range(256)]
    return np.asarray(chroma.point(lut)).astype(np.float32) * (1 / 255)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3×3 maximum: a pixel counts as near ink if ink is within one pixel (rendering never agrees closer)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = padded[1 : h + 1, 1 : w + 1].copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            np.maximum(out, padded[dy : dy + h, dx : dx + w], out=out)
    return out


@dataclass(frozen=True)
class _Match:
    """Observed ink against expected ink, each allowed one pixel of slack."""

    expected: int  # expected ink pixels that could be seen (not hidden)
    observed: int
    missing: int  # expected ink with no observed ink within a pixel
    extra: int  # observed ink with no expected ink within a pixel

    @property
    def score(self) -> float:
        recall = 1 - self.missing / self.expected if self.expected else 0.0
        precision = 1 - self.extra / self.observed if self.observed else 0.0
        return min(recall, precision)

    def __add__(self, other: _Match) -> _Match:
        return _Match(
            self.expected + other.expected,
            self.observed + other.observed,
            self.missing + other.missing,
            self.extra + other.extra,
        )


def _match(observed: np.ndarray, hidden: np.ndarray, expected: np.ndarray) -> _Match:
    want = (expected >= _INK) & ~hidden
    got = observed >= _INK
    missing = (expected >= _HIGH) & (_dilate(observed) < _LOW) & ~hidden
    extra = (observed >= _HIGH) & (_dilate(expected) < _LOW)
    return _Match(int(want.sum()), int(got.sum()), int(missing.sum()), int(extra.sum()))


def _seal_at_scale(seal: Seal, scale: float) -> tuple[Image.Image, np.ndarray]:
    """The seal's ink at 600 dpi (for exact resampling) and as an array at ``scale`` px per pt.

    The ink is the stencil stamping paints (``Seal.stencil``), so the check expects exactly the ink a
    correct stamp lays down, a scan's light ink included.
    """
    alpha = seal.stencil(600).convert("L")
    encoded = encoded_seal(seal)
    size = (max(1, round(encoded.width_pt * scale)), max(1, round(encoded.height_pt * scale)))
    return alpha, np.asarray(alpha.resize(size, Image.Resampling.BOX), dtype=np.float32) / 255.0


def _expected_band(
    seal_alpha: Image.Image, *, window: StripWindow, frame: PageFrame, shape: tuple[int, int], scale: float
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The page pixels a correct strip would ink, and the band (left, top, right, bottom) they lie in.

    ``scale`` is pixels per pt (dpi / 72). Poppler rounds the page's pixel size up, so the last column
    may lie partly beyond the page: the scale is never derived from the image size, and ink expected
    in a pixel is weighted by how much of it lies inside the clip and the page.
    """
    height_px, width_px = shape
    top_pt = frame.height - window.seal_y - window.seal_height  # distance from the top edge
    left = max(0, int(np.floor(window.clip_x * scale)) - 2)
    top = max(0, int(np.floor(top_pt * scale)) - 3)
    bottom = min(height_px, int(np.ceil((top_pt + window.seal_height) * scale)) + 3)
    band_w, band_h = width_px - left, bottom - top
    # Resample the seal straight into the band's pixel grid: BOX-reduce to the page's scale first, so
    # the affine step only shifts by the fraction of a pixel.
    scaled_w, scaled_h = window.seal_width * scale, window.seal_height * scale
    small = seal_alpha.resize((max(1, round(scaled_w)), max(1, round(scaled_h))), Image.Resampling.BOX)
    fx, fy = small.width / scaled_w, small.height / scaled_h
    ox, oy = (left - window.seal_x * scale) * fx, (top - top_pt * scale) * fy
    placed = small.transform(
        (band_w, band_h), Image.Transform.AFFINE, (fx, 0, ox, 0, fy, oy), resample=Image.Resampling.BILINEAR
    )
    expected = np.asarray(placed, dtype=np.float32) / 255.0
    edges = left + np.arange(band_w, dtype=np.float64)  # each pixel column's left edge
    inside_clip = np.clip(edges + 1 - window.clip_x * scale, 0.0, 1.0)
    inside_page = np.clip(frame.width * scale - edges, 0.0, 1.0)
    return expected * (inside_clip * inside_page)[None, :], (left, top, width_px, bottom)


def _ncc_peak(page: np.ndarray, template: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Highest normalised cross-correlation of ``template`` lying fully inside ``page``, and its top-left."""
    ph, pw = page.shape
    th, tw = template.shape
    if th > ph or tw > pw:
        return 0.0, (0, 0)
    t = template - template.mean()
    t_norm = float(np.sqrt((t * t).sum()))
    if t_norm == 0:
        return 0.0, (0, 0)
    shape = (ph + th - 1, pw + tw - 1)
    corr = np.fft.irfft2(np.fft.rfft2(page, shape) * np.conj(np.fft.rfft2(t, shape)), shape)
    corr = corr[: ph - th + 1, : pw - tw + 1]

    def window_sums(a: np.ndarray) -> np.ndarray:  # sums over every template-sized window
        s = np.pad(a.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        return s[th:, tw:] - s[:-th, tw:] - s[th:, :-tw] + s[:-th, :-tw]

    page64 = page.astype(np.float64)
    sums = window_sums(page64)
    variance = window_sums(page64 * page64) - sums * sums / (th * tw)
    ncc = np.where(variance > 1e-6, corr / (np.sqrt(np.maximum(variance, 1e-6)) * t_norm), 0.0)
    y, x = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    return float(ncc[y, x]), (int(y), int(x))


def _company_seal(
    page: Image.Image | RenderedPage,
    *,
    colour: tuple[int, int, int],
    template: np.ndarray,
    band_left: int | None,
) -> tuple[_Match | None, tuple[int, int]]:
    """Find the seal anywhere on the page, its strip band (from ``band_left`` on) left out: coarse NCC
    at a third of the scale first, then the exact match around the peak, one pixel at a time.

    The page's ink is made a stripe of rows at a time for the coarse map, and whole only around the
    peak: the values are those of the whole page's ``ink_map`` (a pixel's ink is its own; whether it is
    hidden looks one pixel around, which the region around the peak includes).
    """
    f = _COARSE
    height, width = page.height, page.width
    h, w = (height // f) * f, (width // f) * f
    stripe = f * 128
    coarse_rows = []
    inked = 0
    for top in range(0, height, stripe):
        bottom = min(height, top + stripe)
        _bands, chroma, full = _chroma(page.crop((0, top, width, bottom)), colour)
        ink = _ink(chroma, full)
        if band_left is not None:
            ink[:, band_left:] = 0.0
        inked += int((ink >= _INK).sum())
        rows = min(bottom, h) - top
        if rows > 0:
            coarse_rows.append(ink[:rows, :w].reshape(rows // f, f, w // f, f).mean(axis=(1, 3)))
        del ink, chroma, _bands
    # A page without a seal's worth of ink cannot hold a seal (most clause pages): no search.
    if inked < 0.5 * int((template >= _INK).sum()) or not coarse_rows:
        return None, (0, 0)
    coarse = np.concatenate(coarse_rows)
    th, tw = (template.shape[0] // f) * f, (template.shape[1] // f) * f
    coarse_t = template[:th, :tw].reshape(th // f, f, tw // f, f).mean(axis=(1, 3))
    peak, (y, x) = _ncc_peak(coarse, coarse_t)
    if peak < 0.5:
        return None, (0, 0)
    th, tw = template.shape
    # the region every position tried below lies in, and one pixel around it
    r0, c0 = max(0, y * f - f - 1), max(0, x * f - f - 1)
    r1, c1 = min(height, y * f + f + th + 1), min(width, x * f + f + tw + 1)
    ink, hidden = ink_map(page.crop((c0, r0, c1, r1)), colour)
    if band_left is not None:
        ink[:, max(0, band_left - c0) :] = 0.0
    best: tuple[_Match | None, tuple[int, int]] = (None, (0, 0))
    for dy in range(-f, f + 1):
        for dx in range(-f, f + 1):
            top, left = y * f + dy, x * f + dx
            if top < 0 or left < 0 or top + th > height or left + tw > width:
                continue
            rows, cols = slice(top - r0, top - r0 + th), slice(left - c0, left - c0 + tw)
            m = _match(ink[rows, cols], hidden[rows, cols], template)
            if best[0] is None or m.score > best[0].score:
                best = (m, (top, left))
    return best


def find_seals(
    pdf: Path | bytes,
    *,
    seal: Seal,
    dpi: float = DEFAULT_DPI,
    threshold: float = THRESHOLD,
    max_difference_mm2: float = MAX_DIFFERENCE_MM2,
    expect_company_seal: bool = True,
    company_pages: int | None = None,
) -> SealReport:
    """Check ``pdf`` against ``seal``: company seal per page, strips per page, reassembly per group.

    A seal or strip matches when at least ``threshold`` of its expected ink is seen and of the ink seen
    is expected (each within a pixel), and what is left unexplained covers at most
    ``max_difference_mm2``: pooled ratios alone would let a re-cut seal with a new serial number pass.
    ``ok`` is true when a company seal is found (if ``expect_company_seal``), every cross-page group the
    page count calls for reassembles, every strip matches, and a one-page document carries no strip.
    ``company_pages``: look for the company seal on the first that many pages only (None: on all).
    The pages are rendered and looked at one at a time (``SealFinder``).
    """
    data = pdf if isinstance(pdf, bytes) else Path(pdf).read_bytes()
    finder = SealFinder(
        page_frames(PdfReader(BytesIO(data))),
        seal=seal,
        dpi=dpi,
        threshold=threshold,
        max_difference_mm2=max_difference_mm2,
        expect_company_seal=expect_company_seal,
        company_pages=company_pages,
    )
    with tempfile.TemporaryDirectory(prefix="stamps-find-") as tmp:
        path = Path(tmp) / "document.pdf"
        path.write_bytes(data)
        for index, image in enumerate(stream_pages(path, dpi=dpi)):
            finder.add(index, image)
    return finder.report()


class SealFinder:
    """``find_seals`` on pages given one at a time, so that only one page's pixels are held at once.

    ``frames`` are the document's page frames (``page_frames``); each page is handed to ``add`` as
    poppler renders it at ``dpi``, in any order; ``report`` then answers as ``find_seals`` does, and
    raises ``IssuanceError`` if a page was never added. What is kept of a page: its strip's match and
    its company-seal match, never its pixels.
    """

    def __init__(
        self,
        frames: Sequence[PageFrame],
        *,
        seal: Seal,
        dpi: float = DEFAULT_DPI,
        threshold: float = THRESHOLD,
        max_difference_mm2: float = MAX_DIFFERENCE_MM2,
        expect_company_seal: bool = True,
        company_pages: int | None = None,
    ) -> None:
        self.frames = list(frames)
        self.seal = seal
        self.dpi = dpi
        self.threshold = threshold
        self.expect_company_seal = expect_company_seal
        self.scale = dpi / 72
        self.limit_px = max_difference_mm2 * (dpi / 25.4) ** 2
        self.encoded = encoded_seal(seal)
        self.alpha_image, self.template = _seal_at_scale(seal, self.scale)
        count = len(self.frames)
        self.company_pages = count if company_pages is None else max(0, min(company_pages, count))
        self.groups = cross_page_groups(count, max_pages=max_group_pages(self.encoded.width_pt * 25.4 / 72))
        self.windows: dict[int, StripWindow] = {
            window.page: window
            for group in self.groups
            for window in strip_windows(
                self.frames,
                group=group,
                seal_width=self.encoded.width_pt,
                seal_height=self.encoded.height_pt,
            )
        }
        self._strips: dict[int, _Match] = {}
        self._company: dict[int, tuple[_Match | None, tuple[int, int]]] = {}
        self._added: set[int] = set()
        self._stray = False

    def add(self, index: int, image: Image.Image | RenderedPage) -> None:
        """Look at page ``index`` (0-based), rendered whole at ``dpi``."""
        if not 0 <= index < len(self.frames):
            raise IndexError(f"page {index + 1} is not a page of this document")
        frame = self.frames[index]
        shape = (image.height, image.width)
        band_left = None
        window = self.windows.get(index)
        if window is not None:
            expected, (left, top, right, bottom) = _expected_band(
                self.alpha_image, window=window, frame=frame, shape=shape, scale=self.scale
            )
            # the band and one pixel around it: whether ink is hidden looks one pixel around
            box = (max(0, left - 1), max(0, top - 1), right, min(image.height, bottom + 1))
            ink, hidden = ink_map(image.crop(box), self.seal.colour)
            rows = slice(top - box[1], bottom - box[1])
            cols = slice(left - box[0], right - box[0])
            self._strips[index] = _match(ink[rows, cols], hidden[rows, cols], expected)
            band_left = left
        if index < self.company_pages:
            self._company[index] = _company_seal(
                image, colour=self.seal.colour, template=self.template, band_left=band_left
            )
        if len(self.frames) == 1:
            self._stray = _stray_strip(image, frame, self.encoded.width_pt, self.scale, self.seal.colour)
        self._added.add(index)

    def report(self) -> SealReport:
        """The verdict, once every page has been added."""
        missing = [i + 1 for i in range(len(self.frames)) if i not in self._added]
        if missing:
            raise IssuanceError(
                f"poppler rendered {len(self.frames) - len(missing)} pages of {len(self.frames)}"
            )
        seal, threshold, limit_px, scale = self.seal, self.threshold, self.limit_px, self.scale
        checks = []
        problems = []
        for group in self.groups:
            pooled = _Match(0, 0, 0, 0)
            for page in range(*group):
                m = self._strips[page]
                pooled = pooled + m
                if not _passes(m, threshold, limit_px):
                    problems.append(
                        f"page {page + 1}: cross-page strip missing or not {seal.ref} (match {m.score:.2f}, "
                        f"{(m.missing + m.extra) / (self.dpi / 25.4) ** 2:.1f} mm² unexplained)"
                    )
            weakest = min(self._strips[p].score for p in range(*group))
            ok = (
                all(_passes(self._strips[p], threshold, limit_px) for p in range(*group))
                and pooled.score >= threshold
            )
            if pooled.score < threshold:
                problems.append(
                    f"pages {group[0] + 1}-{group[1]}: strips do not reassemble {seal.ref} "
                    f"({pooled.score:.2f})"
                )
            checks.append(
                GroupCheck(
                    pages=group, similarity=round(pooled.score, 4), weakest_strip=round(weakest, 4), ok=ok
                )
            )
        pages = []
        for index, frame in enumerate(self.frames):
            match, where_px = self._company.get(index, (None, (0, 0)))
            found = match is not None and _passes(match, threshold, limit_px)
            where = None
            if found:
                top, left = where_px
                where = (
                    (left + self.template.shape[1] / 2) / scale,
                    frame.height - (top + self.template.shape[0] / 2) / scale,
                )
            strip = self._strips.get(index)
            pages.append(
                PageSeals(
                    page=index,
                    company_seal=found,
                    company_score=round(match.score, 4) if match else 0.0,
                    company_xy_pt=where,
                    strip=strip is not None and _passes(strip, threshold, limit_px),
                    strip_score=None if strip is None else round(strip.score, 4),
                )
            )
        company_found = any(p.company_seal for p in pages)
        if self.expect_company_seal and not company_found:
            problems.append(f"no company seal {seal.ref} on any page")
        if self._stray:
            problems.append("page 1: a one-page document must not carry a cross-page strip")
        return SealReport(
            seal=seal.ref,
            pages=tuple(pages),
            groups=tuple(checks),
            company_seal_found=company_found,
            ok=not problems,
            problems=tuple(problems),
        )


def _passes(m: _Match, threshold: float, limit_px: float) -> bool:
    return m.score >= threshold and m.missing + m.extra <= limit_px


def _stray_strip(
    page: Image.Image | RenderedPage,
    frame: PageFrame,
    seal_width_pt: float,
    scale: float,
    colour: tuple[int, int, int],
) -> bool:
    """Ink at the right edge, vertically centred, where a strip would be."""
    top = max(0, int((frame.height - seal_width_pt) / 2 * scale))
    bottom = min(page.height, int((frame.height + seal_width_pt) / 2 * scale))
    left = max(0, int((frame.width - MIN_STRIP_MM * PT_PER_MM) * scale))
    if bottom <= top or left >= page.width:
        return False
    _bands, chroma, full = _chroma(page.crop((left, top, page.width, bottom)), colour)
    return bool((_ink(chroma, full) >= _INK).sum() > 10)


def fanned_edges(
    images: list[Image.Image],
    frames: list[PageFrame],
    *,
    seal: Seal,
    group: tuple[int, int],
    margin_pt: float = 6.0,
) -> Image.Image:
    """The right-edge bands of a group's pages side by side, like the fanned pages of the paper copy.

    Each band is the page's strip plus ``margin_pt`` of the page to its left, so the paper edges show;
    earlier pages lie on later ones, each page's edge drawn as a thin shadow line. For reports and
    eyes; the check itself is ``find_seals``.
    """
    fan = EdgeFan(frames, seal=seal, group=group, margin_pt=margin_pt)
    for window in fan.windows:
        fan.add(window.page, images[window.page])
    return fan.image()


class EdgeFan:
    """``fanned_edges`` from pages handed over one at a time (any dpi, all the same): of each page of
    the group only its edge band is kept; ``add`` ignores pages outside the group."""

    def __init__(
        self, frames: list[PageFrame], *, seal: Seal, group: tuple[int, int], margin_pt: float = 6.0
    ) -> None:
        encoded = encoded_seal(seal)
        self.frames = frames
        self.group = group
        self.margin_pt = margin_pt
        self.seal_height_pt = encoded.height_pt
        self.windows = strip_windows(
            frames, group=group, seal_width=encoded.width_pt, seal_height=encoded.height_pt
        )
        self._bands: dict[int, Image.Image] = {}
        self._scale: float | None = None

    def add(self, index: int, image: Image.Image | RenderedPage) -> None:
        if not self.group[0] <= index < self.group[1]:
            return
        w = self.windows[index - self.group[0]]
        scale = image.width / self.frames[w.page].width
        if w.index == 0:
            self._scale = scale
        pad = round(self.margin_pt * scale)
        height = round((self.seal_height_pt + 2 * self.margin_pt) * scale)
        top = round((self.frames[w.page].height - w.seal_y - w.seal_height - self.margin_pt) * scale)
        box = (image.width - round(w.clip_width * scale) - pad, top, image.width, top + height)
        self._bands[w.page] = image.crop(box)

    def image(self) -> Image.Image:
        """The fanned edges; ``ValueError`` if a page of the group was not added."""
        if self._scale is None or len(self._bands) != len(self.windows):
            raise ValueError("not every page of the group was added")
        scale = self._scale
        strip_px = self.windows[0].clip_width * scale
        pad = round(self.margin_pt * scale)
        height = round((self.seal_height_pt + 2 * self.margin_pt) * scale)
        width = round(strip_px * len(self.windows)) + pad + 2
        canvas = Image.new("RGB", (width, height), (110, 110, 110))
        for w in reversed(self.windows):  # the last page first, so each earlier page lies on top
            band = self._bands[w.page]
            x = round(w.index * strip_px)
            canvas.paste(band, (x, 0))
            canvas.paste((120, 120, 120), (x + band.width - 1, 0, x + band.width, height))
        return canvas
