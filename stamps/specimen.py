"""A synthetic "scan" of a seal impression, for the registry's scan-based seal and its tests.

Nothing here is a real seal: the company is fictional, and the sheet says SPECIMEN 样本 in grey (grey is
not ink, so ``clean_scan`` drops it together with the paper). What the picture imitates, so that
``clean_scan`` is exercised on what a scanner really returns: off-white paper with grain, uneven ink
(the middle of a hand stamp prints lighter than its rim), an impression turned a few degrees, a margin.

Regenerate with ``python -m stamps.specimen`` (deterministic: same bytes every run).
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from stamps.drawing import draw_seal, seal_font

__all__ = ["make_specimen_scan"]

SCAN_DPI = 240


def make_specimen_scan(*, owner: str, purpose: str, seed: int = 42, turn_degrees: float = 4.0) -> Image.Image:
    """An RGB "scan" of one impression of a drawn seal, 240 dpi, with paper, grain and a specimen mark."""
    rng = random.Random(seed)
    ink_rgb = (178, 30, 46)  # scanned ink is duller than the drawn seal's red
    ink = draw_seal(owner=owner, purpose=purpose, colour=ink_rgb, dpi=SCAN_DPI).getchannel("A")
    # Uneven inking: a smooth random field scales the ink between 55% and 100%.
    coarse = _noise(rng, (ink.width // 24 + 1, ink.height // 24 + 1))
    field = coarse.resize(ink.size, Image.Resampling.BICUBIC).point(lambda v: 140 + v * 115 // 255)
    ink = ImageChops.multiply(ink, field)
    margin = 70
    size = (ink.width + 2 * margin, ink.height + 2 * margin)
    # Paper: warm off-white with fine grain, shared by the three channels like a scanner's luminance
    # noise (which also keeps the PNG small).
    half = (size[0] // 2, size[1] // 2)
    grain = _noise(rng, half).resize(size, Image.Resampling.BILINEAR).point(lambda v: 241 + v * 6 // 255)
    paper = Image.merge("RGB", (grain, grain.point(lambda v: v - 3), grain.point(lambda v: v - 9)))
    mark = ImageDraw.Draw(paper)
    mark.text((18, 12), "SPECIMEN 样本", font=seal_font(26), fill=(150, 150, 150))
    mark.text((size[0] - 190, size[1] - 40), "样本 · 非真实印章", font=seal_font(20), fill=(150, 150, 150))
    placed = Image.new("L", size, 0)
    placed.paste(ink, (margin, margin))
    placed = placed.rotate(turn_degrees, resample=Image.Resampling.BICUBIC)
    scan = Image.composite(Image.new("RGB", size, ink_rgb), paper, placed)
    return scan.filter(ImageFilter.GaussianBlur(0.6))  # a scanner's optics are never perfectly sharp


def _noise(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Uniform noise from a seeded generator: the same picture on every run (``effect_noise`` is not)."""
    return Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))


if __name__ == "__main__":
    target = Path(__file__).with_name("scans") / "shenzhen-business-v1.png"
    target.parent.mkdir(exist_ok=True)
    make_specimen_scan(owner="示范财产保险股份有限公司深圳分公司", purpose="业务专用章").save(
        target, optimize=True
    )
