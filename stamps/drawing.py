"""Seal images: drawn from the registry's text, or cleaned from a user's scan.

What is promised:

- ``draw_seal`` returns an RGBA image whose every pixel has the seal's colour and whose alpha is the ink:
  transparent background, the ring's outer edge touching the image border (nothing to crop), square, at
  the requested resolution for the physical diameter.
- The owner's name is evenly spaced on the upper arc whatever its length: the arc grows with the number
  of glyphs up to ``MAX_NAME_SPAN_DEG``, then the glyphs shrink so that neighbours never touch (checked on
  their em boxes at the inner radius, where rotated boxes come closest) and never touch the ring.
- ``clean_scan`` keeps only the seal's ink: near-white and grey pixels become transparent, the image is
  cropped to the ink, and every pixel takes the seal's colour with alpha from its "redness".

Geometry follows DOMAIN.md "Seals": ~42 mm, a ~1.2 mm ring, glyphs squeezed to ~0.7 width, a five-pointed
star whose inner radius is 0.382 of its outer radius, the purpose text horizontal under the star, and an
optional serial number on the lower arc reading left to right. Everything scales with the diameter.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "DEFAULT_COLOUR",
    "MAX_NAME_SPAN_DEG",
    "NameLayout",
    "clean_scan",
    "draw_seal",
    "name_layout",
    "seal_font",
]

DEFAULT_COLOUR = (200, 16, 32)
FONT_DIR = Path("/usr/share/fonts/opentype/noto")
# Bold sans: a seal is cut with even, heavy strokes; the serif face's hairlines vanish at 4 mm glyphs.
FONT_FILE = "NotoSansCJK-Bold.ttc"
FONT_FAMILY = "Noto Sans CJK SC"

MAX_NAME_SPAN_DEG = 240.0
_REFERENCE_MM = 42.0  # the proportions below are those of a 42 mm company seal
_RING_MM = 1.2
_RING_TO_TEXT_MM = 0.75
_NAME_HEIGHT_MM = 6.6
_NAME_SQUEEZE = 0.7
_NAME_GAP_MM = 0.45  # least gap between neighbouring glyphs' em boxes, at the arc's inner radius
_STAR_RADIUS_MM = 7.2
_STAR_INNER_RATIO = 0.382
_STAR_CENTRE_UP_MM = 0.6  # real seals sit the star a little above centre, leaving room for the purpose
_PURPOSE_HEIGHT_MM = 4.6
_PURPOSE_SQUEEZE = 0.8
_PURPOSE_TOP_BELOW_CENTRE_MM = 7.2
_PURPOSE_MAX_WIDTH_MM = 22.0
_SERIAL_HEIGHT_MM = 2.3
_SERIAL_TRACKING_MM = 0.25
_SERIAL_MAX_SPAN_DEG = 100.0
_SUPERSAMPLE = 3  # draw at 3x and box-reduce: anti-aliased edges without a vector rasteriser
# Noto CJK's ideographic em box spans 0.88 em above the baseline to 0.12 em below it.
_EM_TOP = 0.88


@functools.cache
def seal_font(size_px: int) -> ImageFont.FreeTypeFont:
    """The seal face at ``size_px``: the SC face of the Noto CJK collection.

    A .ttc holds one face per region (``fc-query`` lists them: index 2 is SC in Debian's fonts-noto-cjk);
    the index is found by name, not hard-coded, so another packaging of the collection still works.
    """
    path = FONT_DIR / FONT_FILE
    index = _face_index(str(path), FONT_FAMILY)
    return ImageFont.truetype(str(path), size_px, index=index)


@functools.cache
def _face_index(path: str, family: str) -> int:
    for index in range(16):
        try:
            name, _style = ImageFont.truetype(path, 16, index=index).getname()
        except OSError:
            break
        if name == family:
            return index
    raise FileNotFoundError(f"{family} not found in {path} (install fonts-noto-cjk)")


@dataclass(frozen=True)
class NameLayout:
    """Where the owner's glyphs go on the upper arc (mm; angles in degrees from the top, clockwise)."""

    angles: tuple[float, ...]
    glyph_height: float
    glyph_width: float
    radius_top: float  # the em boxes' outer edge
    span: float


def name_layout(count: int, *, diameter_mm: float) -> NameLayout:
    """Spread ``count`` glyphs evenly: the span grows with the count, then the glyphs shrink.

    Neighbouring em boxes are radial rectangles, so they come closest at their inner corners; the step
    angle is chosen so that even there ``_NAME_GAP_MM`` separates them.
    """
    scale = diameter_mm / _REFERENCE_MM
    radius_top = diameter_mm / 2 - (_RING_MM + _RING_TO_TEXT_MM) * scale
    gap = _NAME_GAP_MM * scale
    height = _NAME_HEIGHT_MM * scale
    if count <= 1:
        return NameLayout(
            angles=(0.0,) * count,
            glyph_height=height,
            glyph_width=height * _NAME_SQUEEZE,
            radius_top=radius_top,
            span=0.0,
        )
    step = (_NAME_SQUEEZE * height + gap) / (radius_top - height)
    max_step = math.radians(MAX_NAME_SPAN_DEG) / (count - 1)
    if step > max_step:
        # Solve squeeze*h + gap = (radius_top - h) * step for h: the largest glyph that still fits.
        step = max_step
        height = (radius_top * step - gap) / (_NAME_SQUEEZE + step)
    span = math.degrees(step * (count - 1))
    angles = tuple(-span / 2 + math.degrees(step) * i for i in range(count))
    return NameLayout(
        angles=angles,
        glyph_height=height,
        glyph_width=height * _NAME_SQUEEZE,
        radius_top=radius_top,
        span=span,
    )


def _glyph(char: str, *, height_px: float, squeeze: float) -> Image.Image:
    """One glyph's em box as an L mask, squeezed horizontally to ``squeeze`` of its width."""
    size = max(1, round(height_px))
    font = seal_font(size)
    advance = max(1, round(font.getlength(char)))
    box = Image.new("L", (advance, size), 0)
    ImageDraw.Draw(box).text((0, round(_EM_TOP * size)), char, font=font, fill=255, anchor="ls")
    return box.resize((max(1, round(advance * squeeze)), size), Image.Resampling.LANCZOS)


def _paste_rotated(
    canvas: Image.Image, glyph: Image.Image, *, centre: tuple[float, float], degrees: float
) -> None:
    # PIL rotates counter-clockwise for positive angles; callers pass the on-screen rotation they want.
    turned = glyph.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)
    x = round(centre[0] - turned.width / 2)
    y = round(centre[1] - turned.height / 2)
    canvas.paste(255, (x, y), mask=turned)


def draw_seal(
    *,
    owner: str,
    purpose: str,
    serial: str | None = None,
    diameter_mm: float = 42.0,
    colour: tuple[int, int, int] = DEFAULT_COLOUR,
    dpi: int = 600,
) -> Image.Image:
    """Draw a round seal; see the module docstring for what the picture promises."""
    px = round(diameter_mm / 25.4 * dpi)
    big = px * _SUPERSAMPLE
    k = big / diameter_mm  # supersampled pixels per mm
    scale = diameter_mm / _REFERENCE_MM
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    c = big / 2

    ring = _RING_MM * scale * k
    draw.ellipse((0, 0, big - 1, big - 1), fill=255)
    draw.ellipse((ring, ring, big - 1 - ring, big - 1 - ring), fill=0)

    layout = name_layout(len(owner), diameter_mm=diameter_mm)
    centre_radius = (layout.radius_top - layout.glyph_height / 2) * k
    for char, angle in zip(owner, layout.angles, strict=True):
        glyph = _glyph(char, height_px=layout.glyph_height * k, squeeze=_NAME_SQUEEZE)
        a = math.radians(angle)
        centre = (c + centre_radius * math.sin(a), c - centre_radius * math.cos(a))
        _paste_rotated(mask, glyph, centre=centre, degrees=-angle)

    star_r = _STAR_RADIUS_MM * scale * k
    star_c = (c, c - _STAR_CENTRE_UP_MM * scale * k)
    points = []
    for i in range(10):
        r = star_r if i % 2 == 0 else star_r * _STAR_INNER_RATIO
        a = math.radians(36 * i)
        points.append((star_c[0] + r * math.sin(a), star_c[1] - r * math.cos(a)))
    draw.polygon(points, fill=255)

    if purpose:
        _draw_purpose(
            mask, purpose, centre_x=c, top=c + _PURPOSE_TOP_BELOW_CENTRE_MM * scale * k, k=k, scale=scale
        )
    if serial:
        _draw_serial(mask, serial, centre=c, k=k, scale=scale, diameter_mm=diameter_mm)

    mask = mask.reduce(_SUPERSAMPLE)
    image = Image.new("RGBA", mask.size, (*colour, 0))
    image.putalpha(mask)
    return image


def _draw_purpose(
    mask: Image.Image, text: str, *, centre_x: float, top: float, k: float, scale: float
) -> None:
    height = _PURPOSE_HEIGHT_MM * scale * k
    glyphs = [_glyph(ch, height_px=height, squeeze=_PURPOSE_SQUEEZE) for ch in text]
    width = sum(g.width for g in glyphs)
    limit = _PURPOSE_MAX_WIDTH_MM * scale * k
    line = Image.new("L", (width, glyphs[0].height), 0)
    x = 0
    for g in glyphs:
        line.paste(g, (x, 0))
        x += g.width
    if width > limit:  # a long purpose ("电子保单专用章") is condensed further, never overflows
        line = line.resize((round(limit), line.height), Image.Resampling.LANCZOS)
    mask.paste(255, (round(centre_x - line.width / 2), round(top)), mask=line)


def _draw_serial(
    mask: Image.Image, serial: str, *, centre: float, k: float, scale: float, diameter_mm: float
) -> None:
    height = _SERIAL_HEIGHT_MM * scale
    radius = diameter_mm / 2 - (_RING_MM + _RING_TO_TEXT_MM * 0.8) * scale - height / 2
    font = seal_font(max(1, round(height * k)))
    advances = [font.getlength(ch) / k for ch in serial]  # mm
    tracking = _SERIAL_TRACKING_MM * scale
    length = sum(advances) + tracking * (len(serial) - 1)
    max_length = math.radians(_SERIAL_MAX_SPAN_DEG) * radius
    shrink = min(1.0, max_length / length) if length else 1.0
    along = -length * shrink / 2
    for char, advance in zip(serial, advances, strict=True):
        glyph = _glyph(char, height_px=height * k, squeeze=shrink)
        mid = along + advance * shrink / 2
        # Lower arc, read from outside-below: glyph tops point at the centre, left to right.
        a = mid / radius
        point = (centre + radius * k * math.sin(a), centre + radius * k * math.cos(a))
        _paste_rotated(mask, glyph, centre=point, degrees=math.degrees(a))
        along += (advance + tracking) * shrink


def clean_scan(
    scan: Image.Image,
    *,
    colour: tuple[int, int, int] = DEFAULT_COLOUR,
    floor: float = 0.18,
) -> Image.Image:
    """A scanned seal as ink only: RGBA, cropped to the ink, every pixel ``colour``.

    Alpha is the pixel's "redness": how far its strongest minus weakest channel goes toward the seal
    colour's, so white paper, grey noise and black text or marks become transparent while faint ink
    keeps a faint alpha. Below ``floor`` is paper noise and is dropped; the rest is stretched to 0..1.
    """
    rgb = scan.convert("RGB")
    hi = max(range(3), key=lambda i: colour[i])
    lo = min(range(3), key=lambda i: colour[i])
    bands = rgb.split()
    # Chroma toward the seal colour: (P[hi] - P[lo]) / (C[hi] - C[lo]); ImageMath-free via point tables.
    chroma = ImageChops.subtract(bands[hi], bands[lo])
    full = max(1, colour[hi] - colour[lo])
    # Real ink is rarely fully saturated: treat 80% of the seal colour's chroma as full ink.
    lut = [
        0 if v / full < floor else min(255, round((v / full - floor) / (0.8 - floor) * 255))
        for v in range(256)
    ]
    alpha = chroma.point(lut)
    alpha = alpha.filter(ImageFilter.MedianFilter(3))  # isolated noise pixels are not ink
    box = alpha.point([0 if v < 64 else 255 for v in range(256)]).getbbox()
    if box is None:
        raise ValueError("the scan holds no ink of the seal's colour")
    alpha = alpha.crop(box)
    image = Image.new("RGBA", alpha.size, (*colour, 0))
    image.putalpha(alpha)
    return image
