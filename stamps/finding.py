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
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops
from pypdf import PdfReader

from pipeline.errors import IssuanceError
from stamps.layout import (
    MIN_STRIP_MM,
    PT_PER_MM,
    PageFrame,
    StripWindow,
    cross_page_groups,
    max_group_pages,
    strip_windows,
)
from stamps.poppler import rasterise
from stamps.registry import Seal
from stamps.stamping import encoded_seal, page_frames

__all__ = ["GroupCheck", "PageSeals", "SealReport", "fanned_edges", "find_seals", "ink_map"]

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
    bands = image.convert("RGB").split()
    hi = int(np.argmax(colour))
    lo = int(np.argmin(colour))
    full = max(1, colour[hi] - colour[lo])
    # Pillow's C loops do the per-pixel work; numpy only sees the results.
    chroma = ImageChops.subtract(bands[hi], bands[lo])
    ink = np.asarray(chroma.point([min(255, round(v * 255 / full)) for v in range(256)])).astype(np.float32)
    low = round(_LOW * full)
    brightest = ImageChops.lighter(ImageChops.lighter(bands[0], bands[1]), bands[2])
    dark = brightest.point([255 if v < 140 else 0 for v in range(256)])
    colourless = chroma.point([255 if v < low else 0 for v in range(256)])
    hidden = np.asarray(ImageChops.multiply(dark, colourless)) > 0
    return ink * (1 / 255), _dilate(hidden)


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
    ink: np.ndarray, hidden: np.ndarray, template: np.ndarray
) -> tuple[_Match | None, tuple[int, int]]:
    """Find the seal anywhere on the page: coarse NCC at a third of the scale, then the exact match
    around the peak, one pixel at a time."""
    f = _COARSE
    h, w = (ink.shape[0] // f) * f, (ink.shape[1] // f) * f
    coarse = ink[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    th, tw = (template.shape[0] // f) * f, (template.shape[1] // f) * f
    coarse_t = template[:th, :tw].reshape(th // f, f, tw // f, f).mean(axis=(1, 3))
    peak, (y, x) = _ncc_peak(coarse, coarse_t)
    if peak < 0.5:
        return None, (0, 0)
    best: tuple[_Match | None, tuple[int, int]] = (None, (0, 0))
    th, tw = template.shape
    for dy in range(-f, f + 1):
        for dx in range(-f, f + 1):
            top, left = y * f + dy, x * f + dx
            if top < 0 or left < 0 or top + th > ink.shape[0] or left + tw > ink.shape[1]:
                continue
            m = _match(
                ink[top : top + th, left : left + tw], hidden[top : top + th, left : left + tw], template
            )
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
) -> SealReport:
    """Check ``pdf`` against ``seal``: company seal per page, strips per page, reassembly per group.

    A seal or strip matches when at least ``threshold`` of its expected ink is seen and of the ink seen
    is expected (each within a pixel), and what is left unexplained covers at most
    ``max_difference_mm2``: pooled ratios alone would let a re-cut seal with a new serial number pass.
    ``ok`` is true when a company seal is found (if ``expect_company_seal``), every cross-page group the
    page count calls for reassembles, every strip matches, and a one-page document carries no strip.
    """
    data = pdf if isinstance(pdf, bytes) else Path(pdf).read_bytes()
    frames = page_frames(PdfReader(BytesIO(data)))
    with tempfile.TemporaryDirectory(prefix="stamps-find-") as tmp:
        path = Path(tmp) / "document.pdf"
        path.write_bytes(data)
        images = rasterise(path, dpi=dpi, pages=len(frames))
    if len(images) != len(frames):
        raise IssuanceError(f"poppler rendered {len(images)} pages of {len(frames)}")
    scale = dpi / 72
    limit_px = max_difference_mm2 * (dpi / 25.4) ** 2
    encoded = encoded_seal(seal)
    alpha_image, template = _seal_at_scale(seal, scale)
    maps = [ink_map(image, seal.colour) for image in images]

    groups = cross_page_groups(len(frames), max_pages=max_group_pages(encoded.width_pt * 25.4 / 72))
    strips: dict[int, _Match] = {}
    bands: dict[int, int] = {}  # page -> left pixel of its strip band (the company-seal search skips it)
    checks = []
    problems = []
    for group in groups:
        pooled = _Match(0, 0, 0, 0)
        for window in strip_windows(
            frames, group=group, seal_width=encoded.width_pt, seal_height=encoded.height_pt
        ):
            ink, hidden = maps[window.page]
            expected, (left, top, right, bottom) = _expected_band(
                alpha_image, window=window, frame=frames[window.page], shape=ink.shape, scale=scale
            )
            m = _match(ink[top:bottom, left:right], hidden[top:bottom, left:right], expected)
            strips[window.page] = m
            bands[window.page] = left
            pooled = pooled + m
            if not _passes(m, threshold, limit_px):
                problems.append(
                    f"page {window.page + 1}: cross-page strip missing or not {seal.ref} "
                    f"(match {m.score:.2f}, {(m.missing + m.extra) / (dpi / 25.4) ** 2:.1f} mm² unexplained)"
                )
        weakest = min(strips[p].score for p in range(*group))
        ok = all(_passes(strips[p], threshold, limit_px) for p in range(*group)) and pooled.score >= threshold
        if pooled.score < threshold:
            problems.append(
                f"pages {group[0] + 1}-{group[1]}: strips do not reassemble {seal.ref} ({pooled.score:.2f})"
            )
        checks.append(
            GroupCheck(pages=group, similarity=round(pooled.score, 4), weakest_strip=round(weakest, 4), ok=ok)
        )

    pages = []
    for index, (frame, (ink, hidden)) in enumerate(zip(frames, maps, strict=True)):
        search = ink
        if index in bands:
            search = ink.copy()
            search[:, bands[index] :] = 0.0
        match, where_px = None, (0, 0)
        # A page without a seal's worth of ink cannot hold a seal (most clause pages): skip the search.
        if (search >= _INK).sum() >= 0.5 * (template >= _INK).sum():
            match, where_px = _company_seal(search, hidden, template)
        found = match is not None and _passes(match, threshold, limit_px)
        where = None
        if found:
            top, left = where_px
            where = (
                (left + template.shape[1] / 2) / scale,
                frame.height - (top + template.shape[0] / 2) / scale,
            )
        strip = strips.get(index)
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
    if expect_company_seal and not company_found:
        problems.append(f"no company seal {seal.ref} on any page")
    if len(frames) == 1 and _stray_strip(maps[0][0], frames[0], encoded.width_pt, scale):
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


def _stray_strip(ink: np.ndarray, frame: PageFrame, seal_width_pt: float, scale: float) -> bool:
    """Ink at the right edge, vertically centred, where a strip would be."""
    top = int((frame.height - seal_width_pt) / 2 * scale)
    bottom = int((frame.height + seal_width_pt) / 2 * scale)
    left = int((frame.width - MIN_STRIP_MM * PT_PER_MM) * scale)
    return bool((ink[top:bottom, left:] >= _INK).sum() > 10)


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
    encoded = encoded_seal(seal)
    windows = strip_windows(frames, group=group, seal_width=encoded.width_pt, seal_height=encoded.height_pt)
    scale = images[windows[0].page].width / frames[windows[0].page].width
    strip_px = windows[0].clip_width * scale
    pad = round(margin_pt * scale)
    height = round((encoded.height_pt + 2 * margin_pt) * scale)
    width = round(strip_px * len(windows)) + pad + 2
    canvas = Image.new("RGB", (width, height), (110, 110, 110))
    for w in reversed(windows):  # the last page first, so each earlier page lies on top
        image = images[w.page]
        top = round((frames[w.page].height - w.seal_y - w.seal_height - margin_pt) * scale)
        band = image.crop((image.width - round(w.clip_width * scale) - pad, top, image.width, top + height))
        x = round(w.index * strip_px)
        canvas.paste(band, (x, 0))
        canvas.paste((120, 120, 120), (x + band.width - 1, 0, x + band.width, height))
    return canvas
