"""Poppler's command-line tools (``pdftotext``, ``pdftoppm``), called the way OCRmyPDF calls its programs.

Argument lists, never a shell; a timeout on every call; the child's stderr goes to this module's logger;
a missing program or a timeout is ``ComponentUnavailable`` (exit 3), a document poppler cannot read is an
``IssuanceError`` naming the file. Output files are checked to exist even when the exit code is 0.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from pipeline.errors import ComponentUnavailable, IssuanceError

__all__ = ["rasterise", "rasterise_range", "run", "text_bbox_layout"]

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 60.0


def run(program: str, args: list[str], *, timeout: float = TIMEOUT_SECONDS) -> bytes:
    """Run a poppler program; its stdout, or a project error that says what went wrong."""
    exe = shutil.which(program)
    if exe is None:
        raise ComponentUnavailable(f"{program} is not installed", hint="install Debian's poppler-utils")
    try:
        done = subprocess.run([exe, *args], capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise ComponentUnavailable(f"{program} did not finish within {timeout:.0f} s") from e
    for line in done.stderr.decode("utf-8", "replace").splitlines():
        log.debug("%s: %s", program, line)
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise IssuanceError(f"{program} could not read the PDF (exit {done.returncode}: {tail[0]})")
    return done.stdout


def text_bbox_layout(pdf: Path, *, first_page: int, last_page: int) -> str:
    """``pdftotext -bbox-layout`` for pages ``first_page..last_page`` (1-based, inclusive), as text."""
    out = run(
        "pdftotext",
        ["-bbox-layout", "-enc", "UTF-8", "-f", str(first_page), "-l", str(last_page), str(pdf), "-"],
    )
    return out.decode("utf-8", "replace")


def rasterise(pdf: Path, *, dpi: float, pages: int | None = None) -> list[Image.Image]:
    """Every page as an RGB image at ``dpi``, as a viewer shows it (rotation applied).

    With ``pages`` (the page count) known, the pages are split between up to ``os.cpu_count()``
    pdftoppm processes: poppler's time is per page and a process uses one core.
    """
    workers = min(os.cpu_count() or 1, 4, max(1, (pages or 0) // 4))
    if workers <= 1 or pages is None:
        return rasterise_range(pdf, dpi=dpi, first=None, last=None)
    size = -(-pages // workers)
    ranges = [(start + 1, min(start + size, pages)) for start in range(0, pages, size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(lambda r: rasterise_range(pdf, dpi=dpi, first=r[0], last=r[1]), ranges)
        return [image for part in parts for image in part]


def rasterise_range(pdf: Path, *, dpi: float, first: int | None, last: int | None) -> list[Image.Image]:
    """Pages ``first..last`` (1-based, inclusive; None: all) as RGB images, in one pdftoppm process."""
    with tempfile.TemporaryDirectory(prefix="stamps-ppm-") as tmp:
        args = ["-r", f"{dpi:g}"]
        if first is not None and last is not None:
            args += ["-f", str(first), "-l", str(last)]
        run("pdftoppm", [*args, str(pdf), str(Path(tmp) / "page")], timeout=TIMEOUT_SECONDS * 4)
        # pdftoppm pads page numbers to the width of the last one: sort by the number, not the name.
        files = sorted(Path(tmp).glob("page-*.ppm"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        expected = None if first is None or last is None else last - first + 1
        if not files or (expected is not None and len(files) != expected):
            raise IssuanceError(f"pdftoppm wrote {len(files)} page images for {pdf.name}")
        images = []
        for path in files:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        return images
