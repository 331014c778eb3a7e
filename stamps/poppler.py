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
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from PIL import Image

from core.errors import ComponentUnavailable, IssuanceError

__all__ = ["RenderedPage", "rasterise", "rasterise_range", "run", "stream_pages", "text_bbox_layout"]

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


class RenderedPage:
    """One page as pdftoppm wrote it (8-bit RGB rows), made an image only as far as asked: a caller
    that looks at a band of the page pays for the band's rows, not the page."""

    __slots__ = ("_data", "height", "width")

    def __init__(self, width: int, height: int, data: bytearray) -> None:
        self.width = width
        self.height = height
        self._data = data

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def image(self) -> Image.Image:
        """The whole page as an RGB image."""
        return Image.frombuffer("RGB", self.size, self._data, "raw", "RGB", 0, 1)

    def crop(self, box: tuple[int, int, int, int]) -> Image.Image:
        """``image().crop(box)``, converting only the rows of ``box``."""
        left, top, right, bottom = box
        if not (0 <= left <= right <= self.width and 0 <= top <= bottom <= self.height):
            return self.image().crop(box)
        row = self.width * 3
        rows = memoryview(self._data)[top * row : bottom * row]
        band = Image.frombuffer("RGB", (self.width, bottom - top), rows, "raw", "RGB", 0, 1)
        return band.crop((left, 0, right, bottom - top))


def stream_pages(
    pdf: Path, *, dpi: float, first: int | None = None, last: int | None = None, antialias: bool = True
) -> Iterator[RenderedPage]:
    """Pages ``first..last`` (1-based, inclusive; None: all), one at a time, as one pdftoppm process
    renders them: it writes each page to a pipe (no files), and only the page being looked at is
    held. The caller counts the pages; a failure is raised when the pages run out. ``antialias``
    False renders text and vector edges without anti-aliasing (cheaper; the same for images).

    Closing the iterator early ends pdftoppm. ``ComponentUnavailable`` when pdftoppm is missing or does
    not finish in time, ``IssuanceError`` when it cannot read the PDF or writes a broken image.
    """
    exe = shutil.which("pdftoppm")
    if exe is None:
        raise ComponentUnavailable("pdftoppm is not installed", hint="install Debian's poppler-utils")
    args = [exe, "-r", f"{dpi:g}"]
    if not antialias:
        args += ["-aa", "no", "-aaVector", "no"]
    if first is not None:
        args += ["-f", str(first)]
    if last is not None:
        args += ["-l", str(last)]
    timeout = TIMEOUT_SECONDS * 4
    # stderr to a file: a damaged PDF can make poppler say more than a pipe holds while we read stdout
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([*args, str(pdf)], stdout=subprocess.PIPE, stderr=errors)
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(timeout, stop)
        timer.start()
        try:
            assert process.stdout is not None
            while (image := _read_ppm(process.stdout)) is not None:
                yield image
            code = process.wait()
        finally:
            timer.cancel()
            if process.poll() is None:  # the caller stopped early, or reading failed
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        errors.seek(0)
        said = errors.read().decode("utf-8", "replace").strip().splitlines()
    for line in said:
        log.debug("pdftoppm: %s", line)
    if timed_out.is_set():
        raise ComponentUnavailable(f"pdftoppm did not finish within {timeout:.0f} s")
    if code != 0:
        raise IssuanceError(f"pdftoppm could not read the PDF (exit {code}: {(said or ['no message'])[-1]})")


def _read_ppm(stream: IO[bytes]) -> RenderedPage | None:
    """The next binary PPM (P6, 8 bits) of ``stream``, None at its end."""
    fields: list[bytes] = []
    while len(fields) < 4:  # magic, width, height, maximum value
        token = bytearray()
        while True:
            c = stream.read(1)
            if not c:
                if not fields and not token:
                    return None
                raise IssuanceError("pdftoppm's output ends inside a page header")
            if c.isspace():
                if token:
                    break
                continue
            token += c
        fields.append(bytes(token))
    if fields[0] != b"P6" or fields[3] != b"255":
        raise IssuanceError(f"pdftoppm wrote an image of an unexpected kind ({fields[0]!r}, {fields[3]!r})")
    width, height = int(fields[1]), int(fields[2])
    size = width * height * 3
    data = bytearray(size)
    view = memoryview(data)
    got = 0
    while got < size:
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise IssuanceError("pdftoppm's output ends inside a page")
        got += n
    return RenderedPage(width, height, data)
