"""Underwriting images (承保影像): where a record's image path may point, and whether it is an image.

The contract lets a record name images by a path relative to its batch file. That path is hostile input:
it must stay inside the batch folder (no absolute paths, no ``..``, no symlink that leads out), name an
existing regular file, and be an image (a JPEG whose structure is sound, or anything that decodes) or a
PDF scan.

The same checks serve validation (``image_problem``, a reason per field) and intake (``pipeline.intake``,
which raises ``RecordImageError``), so a file that passes one passes the other. Only the formats in
``ACCEPTED_FORMATS`` are ever opened: Pillow would otherwise hand an EPS file to Ghostscript.
"""

from __future__ import annotations

import functools
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

import pillow_heif
from PIL import Image, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

from core.errors import RecordRejected
from pipeline import jpeg

# Phone photos (HEIC/HEIF) open like any other image once the plugin is registered.
pillow_heif.register_heif_opener()

# A phone photo is ~12-50 megapixels; anything far larger is a decompression bomb or a mistake.
MAX_PIXELS = 120_000_000
# A side this long is no photo or scan of a paper document (A0 at 600 dpi is ~28,000 px).
MAX_DIMENSION = 30_000
MAX_BYTES = 64 * 1024 * 1024
# Frames of a TIFF or pages of a PDF scan: an ID card or a signed form is a handful of pages.
MAX_SOURCE_PAGES = 100
# Pillow format ids to open with. A phone JPEG that carries a second (depth/preview) picture opens
# through "JPEG" and reports its format as "MPO".
ACCEPTED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "HEIF")
NOT_AN_IMAGE = "file does not decode as an image (JPEG, PNG, TIFF, BMP, HEIC or PDF)"
# Objects a PDF scan may hold before we give up walking it (a scan has hundreds, not millions).
_MAX_PDF_OBJECTS = 200_000


class ImageProblem(ValueError):
    """What is wrong with one image reference, in words for the rejection report."""


class RecordImageError(ImageProblem, RecordRejected):
    """One record image cannot be taken into the archive bundle; the record is rejected, the batch goes on.

    ``field`` names the image as the record does (``images[2]``); ``message`` says what is wrong in fixed
    words and never repeats the file's contents. It is a ``RecordRejected`` (exit code 1, ``reasons``)
    and an ``ImageProblem``, so callers of either kind catch it; it pickles, so it crosses a process pool.
    """

    def __init__(self, field: str, message: str) -> None:
        RecordRejected.__init__(self, [(field, message)])
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def __reduce__(self) -> tuple[type[RecordImageError], tuple[str, str]]:
        return (type(self), (self.field, self.message))


def _real_folder(folder: Path) -> Path:
    """The batch folder's real path, worked out once per folder (every image of a batch asks); a folder
    replaced at the same path (a watcher's next batch of the same name) is another folder."""
    st = folder.stat()
    return _resolved(folder, st.st_dev, st.st_ino)


@functools.lru_cache(maxsize=64)
def _resolved(folder: Path, _device: int, _inode: int) -> Path:
    return folder.resolve()


def _below(root: Path, parts: list[str]) -> tuple[Path, bool] | None:
    """``root`` (a real path) joined with ``parts`` (no ".."), and whether it is a regular file, if none of
    the parts names a symbolic link: then that is the real path, found with one ``lstat`` per part where
    ``Path.resolve`` walks every folder from ``/`` again in Python (docs/performance.md); ``None`` where
    a part is a link."""
    path, mode = str(root), None
    for part in parts:
        if part in ("", "."):
            continue
        path = os.path.join(path, part)
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            return None
    return Path(path), mode is not None and stat.S_ISREG(mode)


def resolve_image_path(batch_dir: Path, rel: str) -> Path:
    """Return the real path of ``rel`` inside ``batch_dir`` or raise ``ImageProblem``."""
    if "\x00" in rel:
        raise ImageProblem("path contains a NUL character")
    if rel.startswith(("/", "\\")) or PureWindowsPath(rel).drive or PurePosixPath(rel).is_absolute():
        raise ImageProblem("path must be relative to the batch folder, not absolute")
    parts = rel.replace("\\", "/").split("/")
    if ".." in parts:
        raise ImageProblem("path must not contain '..'")
    try:
        root = _real_folder(batch_dir)
        below = _below(root, parts)
        if below is not None:  # inside the folder by construction
            real, regular = below
            if not regular:
                raise ImageProblem("not a regular file")
            return real
        # a symbolic link on the way: where it leads, wherever that is
        real = (batch_dir / Path(*parts)).resolve(strict=True)
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
    """Why ``path`` is not a usable image, or ``None``.

    A JPEG whose structure walks soundly to its end (``pipeline.jpeg.walk``: what intake passes through
    as it is) is not decoded, nor opened with Pillow: decoding it would catch nothing more than the walk
    does, and its frame header gives its size. Any other raster image is decoded in full (a JPEG at 1/8
    scale, which still reads its whole entropy-coded stream), and the decoder's verdict stands; a PDF
    scan is opened and walked for encryption, JavaScript and embedded files.
    """
    size = path.stat().st_size
    if size == 0:
        return "file is empty"
    if size > MAX_BYTES:
        return f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB"
    with path.open("rb") as fh:
        head = fh.read(1024)
    if is_pdf(head):
        return pdf_problem(path)
    if path.suffix.lower() == ".pdf":
        return "file is named .pdf but is not a PDF"
    if head.startswith(b"\xff\xd8\xff"):
        # A sound JPEG of one, three or four components (grey, colour, CMYK: what Pillow opens) needs
        # nothing of Pillow here; intake opens it anyway, for its orientation and colour.
        layout = jpeg.walk(path.read_bytes())
        if layout is not None and len(layout.frame.component_ids) in (1, 3, 4):
            try:
                check_size(layout.frame.width, layout.frame.height)
            except ImageProblem as e:
                return str(e)
            return None
    try:
        with open_image(path) as im:
            for _ in frames(im):
                # verify() passes truncated JPEGs; decoding does not. A JPEG decodes at 1/8 scale
                # (draft), which still reads its whole entropy-coded stream, at a fraction of the cost.
                if im.format in ("JPEG", "MPO"):
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
    except ImageProblem as e:
        return str(e)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        return f"image is damaged or truncated ({e.__class__.__name__})"
    return None


# How the accepted raster formats start (HEIF: an ISO box "ftyp" at offset 4).
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"BM")


def is_pdf(head: bytes) -> bool:
    """Whether a file that starts with ``head`` (its first 1 KiB) is a PDF, as readers decide it.

    Readers accept a header anywhere in the first KiB; a file that starts like an image is an image,
    even if "%PDF-" appears in its EXIF or comment.
    """
    if head.startswith(_IMAGE_SIGNATURES) or head[4:8] == b"ftyp":
        return False
    return b"%PDF-" in head[:1024]


@contextmanager
def open_image(fp: Path | IO[bytes]) -> Iterator[Image.Image]:
    """Open a raster image of an accepted format, header only, or raise ``ImageProblem``.

    The size is checked before any pixel is decoded: more than ``MAX_PIXELS`` or a side longer than
    ``MAX_DIMENSION`` is refused, and so is a header that Pillow itself calls a decompression bomb.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns from ~89 MP on; MAX_PIXELS is the limit here, checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp, formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:
        raise ImageProblem(f"image declares more than {MAX_PIXELS:,} pixels (decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageProblem(NOT_AN_IMAGE) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageProblem(f"image is damaged or truncated ({e.__class__.__name__})") from None
    with im:
        check_image_size(im)
        yield im


def check_image_size(im: Image.Image) -> None:
    """Raise ``ImageProblem`` when the current frame of ``im`` is absurdly large."""
    check_size(im.width, im.height)


def check_size(width: int, height: int) -> None:
    """Raise ``ImageProblem`` when a picture of ``width`` × ``height`` pixels is absurdly large."""
    if width * height > MAX_PIXELS:
        raise ImageProblem(f"image is {width}×{height} pixels, more than {MAX_PIXELS:,} in all")
    if max(width, height) > MAX_DIMENSION:
        raise ImageProblem(f"image is {width}×{height} pixels, a side longer than {MAX_DIMENSION:,}")


def frames(im: Image.Image) -> Iterator[int]:
    """Seek ``im`` to each page that becomes an archive page, size-checked: every frame of a TIFF, the
    primary picture of anything else (an MPO's depth map, a HEIC's burst are not pages)."""
    count = getattr(im, "n_frames", 1) if im.format == "TIFF" else 1
    if count > MAX_SOURCE_PAGES:
        raise ImageProblem(f"TIFF has more than {MAX_SOURCE_PAGES} pages")
    for i in range(count):
        if count > 1:
            im.seek(i)
            check_image_size(im)
        yield i


def pdf_problem(source: Path | IO[bytes]) -> str | None:
    """Why a PDF scan cannot go into the archive, or ``None``.

    Refused: damaged beyond pypdf's repair, encrypted (even with an empty password), no pages or more
    than ``MAX_SOURCE_PAGES``, and active or hidden content the archive's security checks would trip on
    later: JavaScript, embedded files, Launch actions, XFA forms, rich media.
    """
    try:
        open_pdf_scan(source)
    except ImageProblem as e:
        return str(e)
    return None


def open_pdf_scan(source: Path | IO[bytes]) -> PdfReader:
    """Open a PDF scan, or raise ``ImageProblem`` for what ``pdf_problem`` refuses."""
    try:
        reader = PdfReader(source, strict=False)
        if reader.is_encrypted:
            raise ImageProblem("PDF scan is encrypted")
        count = len(reader.pages)
        if count == 0:
            raise ImageProblem("PDF scan has no pages")
        if count > MAX_SOURCE_PAGES:
            raise ImageProblem(f"PDF scan has more than {MAX_SOURCE_PAGES} pages")
        problem = _active_content(reader)
    except ImageProblem:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise ImageProblem(f"PDF scan is damaged ({e.__class__.__name__})") from None
    if problem:
        raise ImageProblem(problem)
    return reader


_ACTIVE_ACTIONS = {"/Launch": "a Launch action", "/ImportData": "an ImportData action"}
_ACTIVE_SUBTYPES = {"/RichMedia": "rich media", "/Movie": "a movie", "/Sound": "a sound", "/3D": "3D content"}


def _active_content(reader: PdfReader) -> str | None:
    """Walk every object reachable from the trailer: a name tree, an annotation, an action or a page's
    additional actions can each carry a script or a file, and object streams hide them from a byte search."""
    stack: list[object] = [reader.trailer]
    seen: set[tuple[int, int]] = set()
    while stack:
        obj = stack.pop()
        if isinstance(obj, IndirectObject):
            key = (obj.idnum, obj.generation)
            if key in seen:
                continue
            seen.add(key)
            if len(seen) > _MAX_PDF_OBJECTS:
                return f"PDF scan has more than {_MAX_PDF_OBJECTS:,} objects"
            stack.append(obj.get_object())
        elif isinstance(obj, DictionaryObject):
            if "/JS" in obj or "/JavaScript" in obj or _name(obj, "/S") == "/JavaScript":
                return "PDF scan contains JavaScript"
            if (
                "/EmbeddedFiles" in obj
                or "/EF" in obj
                or _name(obj, "/Type") == "/EmbeddedFile"
                or _name(obj, "/Subtype") == "/FileAttachment"
            ):
                return "PDF scan contains embedded files"
            if "/XFA" in obj:
                return "PDF scan contains an XFA form"
            if (action := _ACTIVE_ACTIONS.get(_name(obj, "/S") or "")) is not None:
                return f"PDF scan contains {action}"
            if (subtype := _ACTIVE_SUBTYPES.get(_name(obj, "/Subtype") or "")) is not None:
                return f"PDF scan contains {subtype}"
            stack.extend(obj.values())
        elif isinstance(obj, ArrayObject):
            stack.extend(obj)
    return None


def _name(d: DictionaryObject, key: str) -> str | None:
    value = d.get(key)
    if isinstance(value, IndirectObject):
        value = value.get_object()
    return str(value) if isinstance(value, NameObject) else None
