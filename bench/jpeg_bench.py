"""The hand-written JPEG walker (``pipeline.jpeg.walk``) against Pillow, on the images intake checks.

For each image (the JPEGs in ``tests/resources/images/``, the synthetic scans ``bench/synth.py`` draws,
and a synthetic 12-megapixel photo), in CPU ms per image (median over the rounds; the bytes already in
memory, so no file I/O counts):

- ``walk``: this project's check, marker by marker through the entropy-coded data to EOI, nothing
  decoded (``pipeline.images.image_problem`` takes a JPEG it vouches for without Pillow);
- Pillow ``open`` alone: parses the headers and gives the size, but reads none of the entropy-coded data,
  so a file cut short passes: it checks less than the walk, shown for the record;
- Pillow ``draft`` 1/8 + ``load``: the pipeline's check for a JPEG the walk does not vouch for (reads the
  whole entropy-coded stream, decodes at an eighth of the size);
- Pillow full ``load``: the library's own full decode.

It also checks each way's verdict on the same image cut short at half its length (walk and the decodes
must refuse it; ``open`` alone accepts it).

    python bench/jpeg_bench.py [--rounds 5]

Not a test: nothing fails on timing. Seconds move with the machine's load; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import PIL
from PIL import Image, ImageFile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synth import draw_image  # noqa: E402
from pipeline import jpeg  # noqa: E402

ImageFile.LOAD_TRUNCATED_IMAGES = False


def samples() -> dict[str, bytes]:
    """Name → JPEG bytes: the test scans, synthetic scans as ``bench/synth.py`` saves them, and a photo."""
    found = {p.name: p.read_bytes() for p in sorted((REPO / "tests" / "resources" / "images").glob("*.jpg"))}
    for kind in ("id_front", "vehicle_license", "exemption_notice"):
        out = io.BytesIO()
        draw_image(kind, variant=0, seed=7).save(out, "JPEG", quality=80, optimize=True)
        found[f"synth {kind}"] = out.getvalue()
    # a 12-megapixel "photo": smooth light and colour with a coarse texture, ~3 MB as a phone saves it
    light = Image.radial_gradient("L").resize((4000, 3000))
    texture = Image.effect_noise((800, 600), 50).resize((4000, 3000), Image.Resampling.BICUBIC)
    photo = Image.merge("RGB", (light, texture, Image.linear_gradient("L").resize((4000, 3000))))
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=85)
    found["synthetic 12 MP photo"] = out.getvalue()
    return found


def by_walk(data: bytes) -> bool:
    return jpeg.walk(data) is not None


def by_open(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[0] > 0
    except (OSError, SyntaxError, ValueError):
        return False


def by_draft(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        return True
    except (OSError, SyntaxError, ValueError, EOFError):
        return False


def by_load(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return True
    except (OSError, SyntaxError, ValueError, EOFError):
        return False


WAYS: dict[str, Callable[[bytes], bool]] = {
    "walk (ours)": by_walk,
    "Pillow open": by_open,
    "Pillow draft 1/8": by_draft,
    "Pillow load": by_load,
}


def cpu_ms(fn: Callable[[bytes], bool], data: bytes) -> float:
    repeat = max(1, int(2_000_000 / len(data)))  # about 2 MB of JPEG a measurement
    began = time.process_time()
    for _ in range(repeat):
        fn(data)
    return (time.process_time() - began) * 1000 / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    images = samples()
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}; load {load[0]:.1f} {load[1]:.1f}"
    )
    print(f"CPU ms per image, median of {args.rounds} rounds (min–max)")
    print(f"{'image':<40}{'size':>14}  " + "".join(f"{name:>24}" for name in WAYS))
    for name, data in images.items():
        with Image.open(io.BytesIO(data)) as im:
            size = f"{im.width}×{im.height} {len(data) // 1000} KB"
        if not by_walk(data):
            print(f"{name:<40}{size:>14}  (the walk does not vouch for it: decoded in the pipeline)")
            continue
        figures: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way, fn in WAYS.items():  # interleaved, so a busy moment hits every way alike
                figures[way].append(cpu_ms(fn, data))
        cells = "".join(
            f"{statistics.median(v):>9.3f} ({min(v):.2f}–{max(v):.2f})".rjust(24) for v in figures.values()
        )
        print(f"{name:<40}{size:>14}  {cells}")
    cut = images["synthetic 12 MP photo"]
    cut = cut[: len(cut) // 2]
    verdicts = ", ".join(f"{way}: {'accepts' if fn(cut) else 'refuses'}" for way, fn in WAYS.items())
    print(f"the 12 MP photo cut in half: {verdicts}")


if __name__ == "__main__":
    main()
