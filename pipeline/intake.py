"""Underwriting images (承保影像) as pages of the archive bundle.

``image_pages`` turns a record's images into one PDF, one page per picture, in the record's order;
``prepare_images`` reads and checks them without writing anything, and ``PreparedImages.write`` writes the
same pages into any ``stamps.pdfupdate`` object set, such as the update that makes the archive copy:

- A raster image (JPEG, PNG, TIFF, BMP, HEIC) becomes an A4 page, portrait for an upright picture and
  landscape for a wide one, with a title band on top (``pipeline.titles``: the kind of image, the
  policy number, "page n of m") and the picture fitted below it. A multi-page TIFF gives one page per
  frame.
- A PDF scan's pages are imported as they are (content streams, fonts and images untouched, never
  rasterised), without a title: drawing on them would change the scan.

What is promised about the output:

- Nothing of a raster image's metadata survives: EXIF (GPS included), XMP, IPTC, JPEG comments, PNG
  text chunks, MPO companion pictures and data after a JPEG's end marker are all left out. Only colour
  data is kept: a valid ICC profile that matches the picture becomes the PDF colour space
  (``/ICCBased``), which is where PDF readers look for it (they ignore a profile inside a DCT stream).
  A PDF scan's document information and XMP stay behind (only its pages are taken, without their
  page-level XMP), but what its pages draw is not altered, pictures inside them included.
- A JPEG that needs nothing changed is not re-encoded: its DCT data is copied into a ``/DCTDecode``
  stream with the metadata segments cut out (see ``_strip_jpeg``); its EXIF orientation is applied by
  the placement matrix, which turns and mirrors the picture on the page without touching its data.
  Its marker structure is walked to the end marker (a truncated file fails), but its entropy-coded
  data is not decoded here: that costs more than the rest of the page, and validation
  (``pipeline.images.image_problem``) has already decoded it.
- Anything else is decoded, orientation applied, alpha composited onto white, colour converted to RGB
  or grey, and re-encoded: JPEG q85 when the source was lossy (JPEG, HEIC), Flate when it was lossless
  (PNG, TIFF, BMP), so no JPEG artefacts are added to a signature or to small print.
- A picture is shown as large as the page allows, but never larger than its size at 150 dpi, so a small
  picture is not blown up into blur. Pixels beyond 600 dpi at the shown size are dropped by an integer
  reduction (JPEG: decoded at 1/2, 1/4 or 1/8 via ``Image.draft``), keeping at least 300 dpi.
- The same sources give the same bytes (no dates, no random file identifier).

Every problem with one source raises ``RecordImageError`` naming ``images[i]``; the message says what
is wrong and never repeats the file's contents.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
import stat
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from PIL import Image, ImageCms
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import IndirectObject

from core.records import IMAGE_KIND_LABELS
from pipeline import jpeg
from pipeline.images import (
    MAX_BYTES,
    ImageProblem,
    RecordImageError,
    frames,
    is_pdf,
    open_image,
    open_pdf_scan,
)
from pipeline.titles import BAND_PT, title_band
from stamps.pdfupdate import Copier, NewDocument, PdfObjects, write_outline

logger = logging.getLogger(__name__)

A4 = (595.276, 841.890)  # points, portrait
MARGIN = 34.016  # 12 mm
TARGET_DPI = 300  # re-encoded pictures keep at least this much resolution at the shown size …
MAX_DPI = 600  # … and at most this much; a JPEG above it is re-encoded rather than passed through
NATURAL_DPI = 150  # a small picture is shown at this size, not blown up to fill the page
JPEG_QUALITY = 85
FLATE_LEVEL = 6

Encoding = Literal["dct-passthrough", "dct", "flate", "pdf-page"]


@dataclass(frozen=True)
class ImageSource:
    """One image of a record, as the caller hands it in.

    ``path`` must already be resolved inside the batch folder (``pipeline.images.resolve_image_path``);
    ``index`` is the image's position in the record's ``images`` list, used to name it in errors.
    """

    index: int
    kind: str
    label: str | None
    path: Path


@dataclass(frozen=True)
class ImagePageInfo:
    """What one output page is and where it came from (for the manifest and the bundle's outline).

    ``source_page`` is the frame of a TIFF or the page of a PDF scan (0-based), else 0. ``passthrough``
    is true when the source's data went in unchanged: a JPEG's DCT data or a PDF scan's page.
    ``pixel_size`` is the picture's stored width and height in pixels (before the placement matrix
    turns it), ``None`` for a PDF scan's page; ``page_size`` is the page's width and height in points
    and ``picture_box`` the upright picture's x, y (bottom left), width and height on it, in points
    (``None`` for a PDF scan's page).
    """

    index: int
    kind: str
    label: str | None
    source_page: int
    source_sha256: str
    source_size: int
    passthrough: bool
    encoding: Encoding
    pixel_size: tuple[int, int] | None
    page_size: tuple[float, float]
    picture_box: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class IntakeResult:
    """The image pages as one PDF (``b""`` when there were no sources) and one ``ImagePageInfo`` each."""

    pdf: bytes
    pages: tuple[ImagePageInfo, ...]


def image_pages(sources: Sequence[ImageSource], *, policy_no: str) -> IntakeResult:
    """Make the archive pages for ``sources``, in order, as one PDF; raise ``RecordImageError`` for a bad
    source.

    Each source's pages carry an outline entry (bookmark) with its title, so a reader of the bundle
    can jump to "机动车行驶证" directly. Raises ``ComponentUnavailable`` if the title font is missing.
    """
    if not sources:
        return IntakeResult(pdf=b"", pages=())
    prepared = prepare_images(sources, policy_no=policy_no)
    document = NewDocument(prepared.version)
    tree = document.reserve()
    written = prepared.write(document, parent=tree)
    kids = [ref for _, refs in written for ref in refs]
    document.replace(
        tree, b"<</Type/Pages/Kids[%s]/Count %d>>" % (b" ".join(b"%d 0 R" % r.idnum for r in kids), len(kids))
    )
    outlines = document.reserve()
    first, last, count = write_outline(document, outlines, [(title, refs[0], ()) for title, refs in written])
    document.replace(
        outlines, b"<</Type/Outlines/First %d 0 R/Last %d 0 R/Count %d>>" % (first.idnum, last.idnum, count)
    )
    root = document.add(b"<</Type/Catalog/Pages %d 0 R/Outlines %d 0 R>>" % (tree.idnum, outlines.idnum))
    return IntakeResult(pdf=document.to_bytes(root=root), pages=prepared.pages)


@dataclass(frozen=True)
class PreparedImages:
    """A record's images read, checked and ready to become pages (``prepare_images``): nothing is
    written yet. ``pages`` says what each page will be; ``version`` is the PDF version they need (a PDF
    scan's own may be newer than 1.4)."""

    policy_no: str
    sources: tuple[tuple[ImageSource, str, tuple[_Picture | _ScanPage, ...]], ...]
    pages: tuple[ImagePageInfo, ...]
    version: str

    def write(self, objects: PdfObjects, *, parent: IndirectObject) -> list[tuple[str, list[IndirectObject]]]:
        """Write the pages into ``objects`` (a new PDF, or an update of an archive copy) as children of the
        page-tree node ``parent``; each source's title and its pages' references, in order."""
        total = len(self.pages)
        colour_spaces: dict[bytes, IndirectObject] = {}
        title_pieces: dict[tuple[str, float], IndirectObject] = {}  # shown on several pages, written once
        written: list[tuple[str, list[IndirectObject]]] = []
        n = 0
        for source, title, items in self.sources:
            refs = []
            copier = None
            for item in items:
                n += 1
                if isinstance(item, _ScanPage):
                    copier = copier or Copier(objects)
                    refs.append(
                        _scan_page(objects, copier, item, parent=parent, field=f"images[{source.index}]")
                    )
                else:
                    refs.append(
                        _picture_page(
                            objects,
                            item,
                            parent=parent,
                            title=(title, "　保险单号 ", self.policy_no),
                            count=f"承保影像 第 {n} 页 共 {total} 页",
                            colour_spaces=colour_spaces,
                            shared=title_pieces,
                        )
                    )
            written.append((title, refs))
        return written


def prepare_images(sources: Sequence[ImageSource], *, policy_no: str) -> PreparedImages:
    """Read and check ``sources`` for ``image_pages`` / ``PreparedImages.write``; raise
    ``RecordImageError`` naming the first bad one."""
    prepared: list[tuple[ImageSource, str, tuple[_Picture | _ScanPage, ...]]] = []
    infos: list[ImagePageInfo] = []
    version = "1.3"  # what a picture page uses (ICC-based colour, DCT and Flate images) needs no more
    for source in sources:
        field = f"images[{source.index}]"
        try:
            title = _title(source)
            data = _read(source.path)
            digest = _Digest(hashlib.sha256(data).hexdigest(), len(data))
            items = tuple(_source_pages(data, source.path.suffix.lower()))
            del data  # a passthrough picture keeps only its stripped copy
            for number, item in enumerate(items):
                if isinstance(item, _ScanPage):
                    box = item.reader.pages[item.number].mediabox
                    page_size = (float(box.width), float(box.height))
                    pixel_size = picture_box = None
                    header = item.reader.pdf_header.removeprefix("%PDF-")
                    if re.fullmatch(r"\d\.\d", header) and header > version:
                        version = header  # what the scan's page may use (transparency, say)
                else:
                    pixel_size = (item.width, item.height)
                    placement = _place(_shown_size(pixel_size, item.orientation))
                    page_size, picture_box = placement.page, placement.box
                infos.append(
                    ImagePageInfo(
                        index=source.index,
                        kind=source.kind,
                        label=source.label,
                        source_page=number,
                        source_sha256=digest.sha256,
                        source_size=digest.size,
                        passthrough=item.encoding in ("dct-passthrough", "pdf-page"),
                        encoding=item.encoding,
                        pixel_size=pixel_size,
                        page_size=page_size,
                        picture_box=picture_box,
                    )
                )
            prepared.append((source, title, items))
        except ImageProblem as e:
            raise RecordImageError(field, str(e)) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
            # the decoders' ways of saying "damaged"; the class name only, never the decoder's text
            raise RecordImageError(field, f"image is damaged or truncated ({e.__class__.__name__})") from None
        except (PyPdfError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise RecordImageError(field, f"PDF scan is damaged ({e.__class__.__name__})") from None
    return PreparedImages(policy_no=policy_no, sources=tuple(prepared), pages=tuple(infos), version=version)


# --- reading and deciding ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Digest:
    sha256: str
    size: int


@dataclass(frozen=True)
class _Picture:
    """An encoded picture ready to become a PDF image XObject."""

    data: bytes
    width: int
    height: int
    grey: bool
    bits: int
    flate: bool  # else DCT
    icc: bytes | None
    orientation: int  # EXIF value 1-8, applied by the placement matrix
    encoding: Encoding


@dataclass(frozen=True)
class _ScanPage:
    reader: PdfReader
    number: int
    encoding: Encoding = "pdf-page"


def _scan_page(
    objects: PdfObjects, copier: Copier, scan: _ScanPage, *, parent: IndirectObject, field: str
) -> IndirectObject:
    """Copy a scan's page with everything it uses, streams byte for byte; its per-page XMP and private
    data stay behind."""
    try:
        page = scan.reader.pages[scan.number]  # pypdf has given it what it inherited from its page tree
        target = objects.reserve()
        copier.known(page.indirect_reference, target)
        body = copier.body(page, leave_out=("/Parent", "/Metadata", "/PieceInfo"))
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise RecordImageError(field, f"PDF scan is damaged ({e.__class__.__name__})") from None
    objects.replace(target, body[:-2] + b"/Parent %d 0 R>>" % parent.idnum)
    return target


def _title(source: ImageSource) -> str:
    label = IMAGE_KIND_LABELS.get(source.kind)
    if label is None:
        raise ImageProblem("unknown image kind")
    if source.kind == "other" and source.label and source.label.strip():
        label = f"{label}（{source.label.strip()}）"
    return label


def _read(path: Path) -> bytes:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ImageProblem("not a regular file")
        if st.st_size > MAX_BYTES:
            raise ImageProblem(f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageProblem("file does not exist") from None
    except OSError as e:
        raise ImageProblem(f"file cannot be read ({e.__class__.__name__})") from None
    if not data:
        raise ImageProblem("file is empty")
    return data


def _source_pages(data: bytes, suffix: str) -> list[_Picture | _ScanPage]:
    if is_pdf(data[:1024]):
        reader = open_pdf_scan(io.BytesIO(data))
        return [_ScanPage(reader, i) for i in range(len(reader.pages))]
    if suffix == ".pdf":
        raise ImageProblem("file is named .pdf but is not a PDF")
    with open_image(io.BytesIO(data)) as im:
        if im.format in ("JPEG", "MPO") and (picture := _passthrough(data, im)) is not None:
            return [picture]
        return [_reencode(im) for _ in frames(im)]


def _passthrough(data: bytes, im: Image.Image) -> _Picture | None:
    """The JPEG's own DCT data as a picture, or ``None`` when it must be decoded and re-encoded.

    Passed through: baseline or progressive (SOF0-2), 8-bit, grey or YCbCr/RGB, at most ``MAX_DPI``
    at the shown size, and a marker structure that walks cleanly to its end marker. Not: CMYK/YCCK
    (PDF readers disagree on Adobe's inverted CMYK), lossless/arithmetic/12-bit coding, a 3-channel
    JPEG that says neither JFIF nor Adobe but names its channels R, G, B (readers would take it for
    YCbCr), and anything the walk cannot follow, which the decoder then judges (a truncated file
    fails there, with a clear message).
    """
    if im.mode not in ("RGB", "L"):
        return None
    stripped = _strip_jpeg(data)
    if stripped is None:  # not Huffman-coded 8-bit, or a structure the walk does not follow
        return None
    frame = stripped.frame
    if (frame.width, frame.height) != im.size or len(frame.component_ids) != (3 if im.mode == "RGB" else 1):
        return None
    if frame.component_ids == b"RGB" and not stripped.jfif and stripped.adobe_transform is None:
        return None
    orientation = _orientation(im)
    if _place(_shown_size(im.size, orientation)).dpi > MAX_DPI:
        return None
    if stripped.trailing:
        logger.info(
            "left out %d bytes after a JPEG's end marker (a second picture or a trailer)", stripped.trailing
        )
    return _Picture(
        data=stripped.data,
        width=frame.width,
        height=frame.height,
        grey=im.mode == "L",
        bits=8,
        flate=False,
        icc=_matching_icc(im.info.get("icc_profile"), im.mode),
        orientation=orientation,
        encoding="dct-passthrough",
    )


def _reencode(im: Image.Image) -> _Picture:
    """Decode the current frame and encode it again, upright, flattened, without metadata."""
    orientation = _orientation(im)
    icc = im.info.get("icc_profile")
    lossy = im.format in ("JPEG", "MPO", "HEIF") or (
        im.format == "TIFF" and im.info.get("compression") in ("jpeg", "tiff_jpeg")
    )
    full = im.size
    dpi = _place(_shown_size(full, orientation)).dpi
    if im.format in ("JPEG", "MPO") and dpi >= 2 * TARGET_DPI:
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly: the cheapest way to drop pixels
        factor = int(dpi // TARGET_DPI)
        im.draft(im.mode, (math.ceil(full[0] / factor), math.ceil(full[1] / factor)))
    im.load()
    out, icc = _flatten(im, icc)
    factor = int(dpi * out.width / full[0] // TARGET_DPI)
    if factor >= 2 and out.mode != "1":
        out = out.reduce(factor)  # a box filter by an integer: fast, and resampling is slow here
    if orientation != 1:
        out = out.transpose(_TRANSPOSE[orientation])
    buffer = io.BytesIO()
    if lossy and out.mode != "1":
        # Pillow copies a source's JPEG comment into what it saves; the strip removes it, and any other
        # metadata segment, whatever Pillow writes. From a PNG only the IDAT data is taken.
        out.save(buffer, "JPEG", quality=JPEG_QUALITY)
        written = _strip_jpeg(buffer.getvalue())
        assert written is not None, "Pillow wrote a JPEG that does not walk"
        data, flate, bits = written.data, False, 8
    else:
        out.save(buffer, "PNG", compress_level=FLATE_LEVEL)
        data, flate, bits = _png_idat(buffer.getvalue()), True, (1 if out.mode == "1" else 8)
    return _Picture(
        data=data,
        width=out.width,
        height=out.height,
        grey=out.mode in ("1", "L"),
        bits=bits,
        flate=flate,
        icc=icc,
        orientation=1,
        encoding="flate" if flate else "dct",
    )


# EXIF orientation → the transposition that shows the picture upright (as ImageOps.exif_transpose)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, KeyError, TypeError):
        return 1  # unreadable EXIF: show the picture as stored (the EXIF itself is dropped anyway)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _shown_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation >= 5 else size


def _flatten(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """``im`` as 1-bit, grey or RGB, alpha composited onto white; and the ICC profile that still fits."""
    mode = im.mode
    if mode == "1":
        return im, None
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode in ("P", "L", "RGB") and im.has_transparency_data):
        grey = mode in ("LA", "La", "L")
        rgba = im.convert("RGBA")
        out = Image.new("RGB", im.size, (255, 255, 255))
        out.paste(rgba, (0, 0), rgba)
        if grey:
            return out.convert("L"), _matching_icc(icc, "L")
        return out, _matching_icc(icc, "RGB")
    if mode in ("L", "RGB"):
        return im, _matching_icc(icc, mode)
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey keeps its top 8 bits; Pillow's own convert("L") would clip everything above 255
        if mode.startswith("I;16") or im.getextrema()[1] > 255:
            im = im.point(lambda v: v * (1 / 256))
        return im.convert("L"), _matching_icc(icc, "L")
    if mode == "F":
        return im.convert("L"), None
    if mode == "CMYK" and icc and _icc_space(icc) == "CMYK":
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, _srgb(), outputMode="RGB"), None
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: the plain conversion below still gives a usable picture
    if mode == "P":
        return im.convert("RGB"), _matching_icc(icc, "RGB")
    return im.convert("RGB"), None  # CMYK, YCbCr, LAB, HSV: the profile described the old space


_MAX_ICC_BYTES = 1 << 20  # RGB and grey profiles are a few KiB; a larger one is not worth carrying


@lru_cache(maxsize=1)
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@lru_cache(maxsize=32)
def _icc_space(icc: bytes) -> str | None:
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, ValueError, AttributeError):
        return None


def _matching_icc(icc: bytes | None, mode: str) -> bytes | None:
    """``icc`` if it is a valid profile for a picture of ``mode`` ("RGB" or "L"), else ``None``."""
    if not icc or len(icc) > _MAX_ICC_BYTES:
        return None
    return icc if _icc_space(icc) == {"RGB": "RGB", "L": "GRAY"}.get(mode) else None


# --- JPEG segment surgery ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Jpeg:
    data: bytes  # SOI … EOI with the metadata segments removed
    frame: jpeg.Frame
    jfif: bool
    adobe_transform: int | None
    trailing: int  # bytes after the end marker, left out


def _strip_jpeg(data: bytes) -> _Jpeg | None:
    """Copy a JPEG segment by segment (``pipeline.jpeg.walk``), leaving out everything that is not needed
    to decode it.

    Kept: the coding segments (DQT, DHT, DRI, SOF, SOS and the entropy-coded data, unchanged), the JFIF
    APP0 rewritten without its thumbnail (it says "YCbCr" to a reader), and the Adobe APP14 (it says
    whether the channels are YCbCr or RGB; a reader needs it). Left out: APP1 (EXIF, GPS, XMP), APP2
    (ICC, which a PDF reader ignores inside the stream — the profile goes into the colour space
    instead — and MPF), APP13 (IPTC), every other APPn, COM, and anything after EOI.
    ``None`` when the walk finds the structure unsound or unusual: for the decoder to judge.
    """
    layout = jpeg.walk(data)
    if layout is None:
        return None
    parts = []
    jfif, adobe = False, None
    for marker, start, end in layout.pieces:
        if marker == 0xE0:
            payload = data[start + 4 : end]
            if payload.startswith(b"JFIF\x00") and len(payload) >= 14 and not jfif:
                parts.append(b"\xff\xe0\x00\x10" + payload[:12] + b"\x00\x00")  # thumbnail 0×0
                jfif = True
        elif marker == 0xEE and data.startswith(b"Adobe", start + 4) and end - start >= 16:
            parts.append(data[start:end])
            adobe = data[start + 15]
        elif marker is not None and (0xE0 <= marker <= 0xEF or marker == 0xFE):
            pass  # metadata
        else:
            parts.append(data[start:end])
    return _Jpeg(
        data=b"".join(parts),
        frame=layout.frame,
        jfif=jfif,
        adobe_transform=adobe,
        trailing=len(data) - layout.end,
    )


def _png_idat(png: bytes) -> bytes:
    """The zlib stream of a non-interlaced PNG: a PDF Flate stream with PNG predictors as it is."""
    pos, chunks = 8, []
    while pos + 8 <= len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            chunks.append(png[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    return b"".join(chunks)


# --- the page ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placement:
    page: tuple[float, float]
    box: tuple[float, float, float, float]  # x, y, width, height of the upright picture, in points
    dpi: float  # picture pixels per inch at the shown size


def _place(shown: tuple[int, int]) -> _Placement:
    """A landscape page for a wide picture, so it is read the same way round as its title and is not
    shrunk to the page's short side; a portrait page otherwise."""
    width, height = shown
    page = (A4[1], A4[0]) if width > height else A4
    area_w = page[0] - 2 * MARGIN
    top = page[1] - MARGIN - BAND_PT - 11  # the rule under the title, then a gap
    area_h = top - MARGIN
    scale = min(area_w / width, area_h / height, 72 / NATURAL_DPI)  # points per pixel
    shown_w, shown_h = width * scale, height * scale
    return _Placement(
        page=page,
        box=(MARGIN + (area_w - shown_w) / 2, top - shown_h, shown_w, shown_h),
        dpi=72 / scale,
    )


def _matrix(orientation: int, box: tuple[float, float, float, float]) -> tuple[float, ...]:
    """The ``cm`` operands that map the stored picture (the unit square) upright onto ``box``.

    Worked out per EXIF orientation from where the stored picture's corners must land; the tests render
    all eight against Pillow's ``exif_transpose``.
    """
    x, y, w, h = box
    return {
        1: (w, 0, 0, h, x, y),
        2: (-w, 0, 0, h, x + w, y),
        3: (-w, 0, 0, -h, x + w, y + h),
        4: (w, 0, 0, -h, x, y + h),
        5: (0, -h, -w, 0, x + w, y + h),
        6: (0, -h, w, 0, x, y + h),
        7: (0, h, w, 0, x, y),
        8: (0, h, -w, 0, x + w, y),
    }[orientation]


def _picture_page(
    objects: PdfObjects,
    picture: _Picture,
    *,
    parent: IndirectObject,
    title: tuple[str, ...],
    count: str,
    colour_spaces: dict[bytes, IndirectObject],
    shared: dict[tuple[str, float], IndirectObject],
) -> IndirectObject:
    placement = _place(_shown_size((picture.width, picture.height), picture.orientation))
    page_w, page_h = placement.page
    band_y = page_h - MARGIN - BAND_PT
    rule_y = band_y - 3
    band_resources, band = title_band(
        objects,
        title,
        count,
        left_pt=MARGIN,
        top_pt=band_y + BAND_PT,
        width_pt=page_w - 2 * MARGIN,
        shared=shared,
    )
    picture_ref = _image_xobject(objects, picture, colour_spaces)
    numbers = " ".join(_num(v) for v in _matrix(picture.orientation, placement.box))
    rule = f"q 0.4 G 0.5 w {_num(MARGIN)} {_num(rule_y)} m {_num(page_w - MARGIN)} {_num(rule_y)} l S Q\n"
    content = objects.add_stream(
        b"", rule.encode("ascii") + band + f"q {numbers} cm /Picture Do Q\n".encode("ascii")
    )
    return objects.add(
        f"<</Type/Page/Parent {parent.idnum} 0 R/MediaBox[0 0 {_num(page_w)} {_num(page_h)}]".encode("ascii")
        + b"/Resources<</XObject<</Picture %d 0 R%s>>>>" % (picture_ref.idnum, band_resources)
        + b"/Contents %d 0 R>>" % content.idnum
    )


def _num(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _image_xobject(
    objects: PdfObjects, picture: _Picture, colour_spaces: dict[bytes, IndirectObject]
) -> IndirectObject:
    device = b"/DeviceGray" if picture.grey else b"/DeviceRGB"
    colour_space = device
    if picture.icc is not None and picture.bits == 8:
        ref = colour_spaces.get(picture.icc)
        if ref is None:
            ref = colour_spaces[picture.icc] = objects.add_stream(
                b"/Filter/FlateDecode/N %d/Alternate%s" % (1 if picture.grey else 3, device),
                zlib.compress(picture.icc),
            )
        colour_space = b"[/ICCBased %d 0 R]" % ref.idnum
    entries = _image_entries(
        width=picture.width,
        height=picture.height,
        colours=1 if picture.grey else 3,
        bits=picture.bits,
        flate=picture.flate,
    )
    return objects.add_stream(entries + b"/ColorSpace" + colour_space, picture.data)


def _image_entries(
    *,
    width: int,
    height: int,
    colours: int,
    bits: int,
    flate: bool,
    predictors: bool = True,
) -> bytes:
    """An image XObject's entries for data already encoded; Flate data is a PNG's IDAT (rows with PNG
    predictors) unless ``predictors`` is false, then it is the deflated pixels as they are."""
    entries = b"/Type/XObject/Subtype/Image/Width %d/Height %d/BitsPerComponent %d/Filter%s" % (
        width,
        height,
        bits,
        b"/FlateDecode" if flate else b"/DCTDecode",
    )
    if flate and predictors:
        entries += b"/DecodeParms<</Predictor 15/Colors %d/BitsPerComponent %d/Columns %d>>" % (
            colours,
            bits,
            width,
        )
    return entries
