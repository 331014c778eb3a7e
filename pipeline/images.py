"""Underwriting images (承保影像): where a record's image path may point, and whether it is an image.

The contract lets a record name images by a path relative to its batch file. That path is hostile input:
it must stay inside the batch folder (no absolute paths, no ``..``, no symlink that leads out), name an
existing regular file, and decode as an image (or be a PDF scan).
"""

from __future__ import annotations

import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath

from PIL import Image, UnidentifiedImageError

# A phone photo is ~12-50 megapixels; anything far larger is a decompression bomb or a mistake.
MAX_PIXELS = 120_000_000
MAX_BYTES = 64 * 1024 * 1024


class ImageProblem(ValueError):
    """What is wrong with one image reference, in words for the rejection report."""


def resolve_image_path(batch_dir: Path, rel: str) -> Path:
    """Return the real path of ``rel`` inside ``batch_dir`` or raise ``ImageProblem``."""
    if "\x00" in rel:
        raise ImageProblem("path contains a NUL character")
    if rel.startswith(("/", "\\")) or PureWindowsPath(rel).drive or PurePosixPath(rel).is_absolute():
        raise ImageProblem("path must be relative to the batch folder, not absolute")
    parts = rel.replace("\\", "/").split("/")
    if ".." in parts:
        raise ImageProblem("path must not contain '..'")
    root = batch_dir.resolve()
    candidate = batch_dir / Path(*parts)
    try:
        real = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise ImageProblem("file does not exist") from None
    except (OSError, RuntimeError) as e:  # symlink loops, permission
        raise ImageProblem(f"file cannot be opened ({e.__class__.__name__})") from None
    if not real.is_relative_to(root):
        raise ImageProblem("path leads outside the batch folder (symlink)")
    if not real.is_file():
        raise ImageProblem("not a regular file")
    return real


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable image, or ``None``. Decodes the image once."""
    size = path.stat().st_size
    if size == 0:
        return "file is empty"
    if size > MAX_BYTES:
        return f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB"
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"%PDF-"):
        return _pdf_problem(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    return f"image is {im.width}×{im.height} pixels, more than {MAX_PIXELS:,} in all"
                # verify() passes truncated JPEGs; decoding does not. A JPEG decodes at 1/8 scale
                # (draft), which still reads its whole entropy-coded stream, at a fraction of the cost.
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "file does not decode as an image (JPEG, PNG, TIFF, BMP, HEIC or PDF)"
    except (OSError, SyntaxError, ValueError) as e:
        return f"image is damaged or truncated ({e.__class__.__name__})"
    return None


def _pdf_problem(path: Path) -> str | None:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            return "PDF scan is encrypted"
        if len(reader.pages) == 0:
            return "PDF scan has no pages"
    except (PdfReadError, OSError, ValueError) as e:
        return f"PDF scan is damaged ({e.__class__.__name__})"
    return None
