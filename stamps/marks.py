"""The reissue mark laid on a PDF: every page of an issued copy gets the mark's one page in its top
margin, by an incremental update that leaves the issued bytes as they were.

What ``overlay_mark`` promises:

- **Same content.** The result is an incremental update of the given PDF (ISO 32000-1 §7.5.6, as
  ``stamps.stamping`` seals): the original bytes are its prefix, unchanged, so the original can be cut
  out at its ``%%EOF`` and hashed against the archive. Every page keeps its content streams, fonts,
  seals and cross-page strips as issued; the update only wraps each page's content in ``q … Q`` and
  draws the mark after it.
- **A visible mark on every page**, in the top margin, in the page's visual frame (/Rotate and
  landscape pages included). The mark is the first page of another PDF (``pipeline.reissue`` renders
  it from a Word template), cut to its ink and copied in once as a Form XObject drawn on every page, so
  the mark costs its fonts once and a few hundred bytes a page; its text stays extractable.
- **It covers no text.** The mark is placed above the page's topmost text (poppler's word boxes),
  shrunk down to ``MIN_SCALE`` if the margin is tight; each ``MarkPlacement`` says where it went and
  whether a page's margin was too small even then (the mark is placed anyway, and logged).

Why an update rather than re-writing the document (``PdfWriter(clone_from=…)`` with
``merge_transformed_page``): a new file would re-serialise every page's content, the seals' included,
and the issued bytes would no longer be provably inside the copy.
"""

from __future__ import annotations

import logging
import re
import tempfile
import zlib
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

from PIL import ImageChops
from pypdf import PdfReader
from pypdf.errors import PdfReadError
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    FloatObject,
    IndirectObject,
    NameObject,
    NumberObject,
    PdfObject,
    StreamObject,
)

from core.errors import IssuanceError, TemplateError
from core.manifest import MarkPlacement
from stamps.layout import PageFrame
from stamps.pdfupdate import IncrementalUpdate, previous_xref, serialise
from stamps.poppler import rasterise_range, text_bbox_layout
from stamps.stamping import page_frames

__all__ = ["MIN_SCALE", "SIDE_MARGIN_PT", "TEXT_GAP_PT", "TOP_OFFSET_PT", "overlay_mark"]

logger = logging.getLogger(__name__)

TOP_OFFSET_PT = 8.0  # the mark's top edge below the page's top edge: inside what printers can print
TEXT_GAP_PT = 2.0  # between the mark's bottom edge and the page's topmost text
SIDE_MARGIN_PT = 12.0
MIN_SCALE = 0.6  # below this the mark's 8.5 pt text would print under 5 pt
_XOBJECT = "IssuanceReissueMark"
# Stream filters whose data pypdf decodes; the mark's streams are re-compressed with Flate. A template
# with a JPEG (DCTDecode) in it is refused rather than copied half-understood.
_DECODABLE = frozenset(
    {"/FlateDecode", "/LZWDecode", "/ASCIIHexDecode", "/ASCII85Decode", "/RunLengthDecode"}
)


def overlay_mark(pdf: bytes, mark_pdf: bytes) -> tuple[bytes, tuple[MarkPlacement, ...]]:
    """Draw the first page of ``mark_pdf`` in the top margin of every page of ``pdf``.

    The result is an incremental update of ``pdf`` (its bytes are the prefix). Raises ``IssuanceError``
    for a PDF that cannot take an update (unreadable, or its last cross-reference section is damaged:
    a reissue must not silently rewrite the issued document).
    """
    reader = _read(pdf, what="the customer copy")
    if previous_xref(pdf) is None:
        raise IssuanceError(
            "the customer copy's cross-reference section is damaged; it cannot be reissued unchanged",
            hint="run the archive audit on this policy",
        )
    mark_reader = _read(mark_pdf, what="the rendered reissue mark")
    frames = page_frames(reader)
    tops = _topmost_text(_without_output_profile(pdf, reader), pages=len(frames))

    update = IncrementalUpdate(pdf, reader)
    form, (mark_w, mark_h) = _form_xobject(update, mark_reader, box=_ink_box(mark_pdf))
    placements = []
    for index, page in enumerate(reader.pages):
        if page.indirect_reference is None:
            raise IssuanceError(f"page {index + 1} is not an indirect object; cannot mark this PDF")
        frame = frames[index]
        placement = _place(index, frame, top_text=tops.get(index), width=mark_w, height=mark_h)
        if not placement.clear_of_text:
            logger.warning("page %d: the top margin is too small for the reissue mark", index + 1)
        placements.append(placement)
        name = _free_name(page)
        matrix = b" ".join(_num(v) for v in frame.matrix)
        place = b" ".join(_num(v) for v in (placement.scale, 0, 0, placement.scale, placement.x, placement.y))
        body = b"Q\nq\n" + matrix + b" cm\n" + place + b" cm\n/" + name + b" Do\nQ\n"
        # As in stamps: the page's own content runs inside q … Q, so whatever graphics state it leaves
        # behind cannot move or tint the mark; each page gets its own small streams (pypdf's clone
        # duplicates a stream shared between pages' /Contents arrays).
        save_ref = update.add_stream(b"", b"q")
        mark_ref = update.add_stream(b"", body)
        new_page = DictionaryObject({NameObject(k): page.raw_get(k) for k in page})
        new_page[NameObject("/Contents")] = ArrayObject([save_ref, *_contents(page), mark_ref])
        new_page[NameObject("/Resources")] = _resources(page, name=name, form=form)
        update.replace(page.indirect_reference, serialise(new_page))
    return update.to_bytes(), tuple(placements)


# --- placing -----------------------------------------------------------------------------------------


def _place(
    index: int, frame: PageFrame, *, top_text: float | None, width: float, height: float
) -> MarkPlacement:
    """Top centre of the visual page, above the topmost text, shrunk (to MIN_SCALE) to fit."""
    scale = min(1.0, (frame.width - 2 * SIDE_MARGIN_PT) / width)
    clear = True
    if top_text is not None:
        room = top_text - TEXT_GAP_PT - TOP_OFFSET_PT
        if room < height * scale:
            fitted = room / height
            clear = fitted >= MIN_SCALE
            scale = max(MIN_SCALE, min(scale, fitted))
    x = (frame.width - width * scale) / 2
    y = frame.height - TOP_OFFSET_PT - height * scale
    return MarkPlacement(page=index, x=round(x, 3), y=round(y, 3), scale=round(scale, 4), clear_of_text=clear)


def _topmost_text(pdf: bytes, *, pages: int) -> dict[int, float]:
    """Per page (0-based), the top of its highest word, pt below the visual top edge (poppler)."""
    with tempfile.TemporaryDirectory(prefix="reissue-text-") as tmp:
        path = Path(tmp) / "copy.pdf"
        path.write_bytes(pdf)
        layout = text_bbox_layout(path, first_page=1, last_page=pages)
    tops: dict[int, float] = {}
    page = -1
    for match in re.finditer(r'<page |<word xMin="[-\d.]+" yMin="([-\d.]+)"', layout):
        if match.group(0) == "<page ":
            page += 1
        else:
            top = float(match.group(1))
            tops[page] = min(tops.get(page, top), top)
    return tops


def _without_output_profile(pdf: bytes, reader: PdfReader) -> bytes:
    """``pdf`` with an update whose catalog has no /OutputIntents, for reading word boxes only: with
    one, poppler builds colour transforms from its ICC profile again for every page (lcms, most of
    pdftotext's time on a customer copy), and colours do not move words."""
    root = reader.trailer.raw_get("/Root")
    catalog = reader.trailer["/Root"]
    if not isinstance(root, IndirectObject) or "/OutputIntents" not in catalog:
        return pdf
    update = IncrementalUpdate(pdf, reader)
    kept = DictionaryObject({NameObject(k): catalog.raw_get(k) for k in catalog if k != "/OutputIntents"})
    update.replace(root, serialise(kept))
    return update.to_bytes()


# --- the mark as a Form XObject --------------------------------------------------------------------------


def _ink_box(mark_pdf: bytes) -> tuple[float, float, float, float]:
    """The part of the mark's page that holds ink, (x0, y0, x1, y1) in its user space, padded by 1 pt.

    The template's page is a band with room for a second line (long serials wrap); the form is cut to
    what was drawn, so a one-line mark takes one line's height on the document.
    """
    dpi = 144
    with tempfile.TemporaryDirectory(prefix="reissue-ink-") as tmp:
        path = Path(tmp) / "mark.pdf"
        path.write_bytes(mark_pdf)
        (image,) = rasterise_range(path, dpi=dpi, first=1, last=1)
    box = ImageChops.difference(image.convert("L"), image.convert("L").point(lambda _: 255)).getbbox()
    page = PdfReader(BytesIO(mark_pdf)).pages[0]
    x0, y0, x1, y1 = (float(v) for v in page.mediabox)
    if box is None:
        raise TemplateError("the reissue mark template rendered an empty page")
    scale, pad = 72 / dpi, 1.0
    left, top, right, bottom = box
    return (
        max(x0, x0 + left * scale - pad),
        max(y0, y1 - bottom * scale - pad),
        min(x1, x0 + right * scale + pad),
        min(y1, y1 - top * scale + pad),
    )


def _form_xobject(
    update: IncrementalUpdate, mark: PdfReader, *, box: tuple[float, float, float, float]
) -> tuple[IndirectObject, tuple[float, float]]:
    """The mark's first page, cut to ``box``, as one Form XObject in ``update``; its reference and
    (width, height) in pt."""
    page = mark.pages[0]
    x0, y0, x1, y1 = box
    copier = _Copier(update)
    resources = page.get("/Resources")
    contents = page.get_contents()
    data = contents.get_data() if contents is not None else b""
    entries = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Form"),
            # the form's own space is the mark page's: the bbox clips it, the matrix moves it to 0 0
            NameObject("/BBox"): ArrayObject([_number(x0), _number(y0), _number(x1), _number(y1)]),
            NameObject("/Matrix"): ArrayObject([_number(v) for v in (1, 0, 0, 1, -x0, -y0)]),
            NameObject("/Resources"): copier.value(resources)
            if resources is not None
            else DictionaryObject(),
        }
    )
    ref = update.add(_stream_body(entries, zlib.compress(data, 9), flate=True))
    return ref, (x1 - x0, y1 - y0)


class _Copier:
    """Copies objects of the mark PDF into the update, each once, references renumbered."""

    def __init__(self, update: IncrementalUpdate) -> None:
        self._update = update
        self._done: dict[tuple[int, int], IndirectObject] = {}

    def value(self, obj: PdfObject) -> PdfObject:
        if isinstance(obj, IndirectObject):
            return self._ref(obj)
        if isinstance(obj, StreamObject):  # a direct stream cannot exist in a valid PDF
            raise TemplateError("the rendered reissue mark holds a direct stream object")
        if isinstance(obj, DictionaryObject):
            return DictionaryObject({NameObject(k): self.value(v) for k, v in obj.items()})
        if isinstance(obj, ArrayObject):
            return ArrayObject([self.value(v) for v in obj])
        return obj

    def _ref(self, source: IndirectObject) -> IndirectObject:
        key = (source.idnum, source.generation)
        if key in self._done:
            return self._done[key]
        # number first, body after: a cycle (a font pointing back at its parent) meets a known number
        target = self._update.add(b"null")
        self._done[key] = target
        obj = source.get_object()
        if isinstance(obj, StreamObject):
            filters = obj.get("/Filter")
            names = [] if filters is None else [filters] if isinstance(filters, NameObject) else list(filters)
            unknown = [str(n) for n in names if str(n) not in _DECODABLE]
            if unknown:
                raise TemplateError(
                    f"the reissue mark template holds a stream with filter {', '.join(unknown)}",
                    hint="keep the mark to text and lines (no photos) in reissue-mark.docx",
                )
            entries = DictionaryObject(
                {
                    NameObject(k): self.value(v)
                    for k, v in obj.items()
                    if k not in ("/Length", "/Filter", "/DecodeParms")
                }
            )
            body = _stream_body(entries, zlib.compress(obj.get_data(), 9), flate=True)
        else:
            body = serialise(self.value(obj))
        self._update.replace(target, body)
        return target


def _stream_body(entries: DictionaryObject, data: bytes, *, flate: bool) -> bytes:
    out = DictionaryObject(entries)
    if flate:
        out[NameObject("/Filter")] = NameObject("/FlateDecode")
    out[NameObject("/Length")] = _number(len(data))
    return serialise(out) + b"\nstream\n" + data + b"\nendstream"


# --- pages -------------------------------------------------------------------------------------------


def _read(pdf: bytes, *, what: str) -> PdfReader:
    try:
        reader = PdfReader(BytesIO(pdf))
        _ = len(reader.pages)
    except (PdfReadError, ValueError, KeyError) as e:
        raise IssuanceError(f"{what} is not a readable PDF: {e}") from e
    return reader


def _inherited(page: DictionaryObject, key: str) -> PdfObject | None:
    node: DictionaryObject | None = page
    while node is not None:
        if key in node:
            return node[key]
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    return None


def _contents(page: DictionaryObject) -> Sequence[PdfObject]:
    if "/Contents" not in page:
        return []
    contents = page.raw_get("/Contents")
    resolved = contents.get_object()
    if isinstance(resolved, ArrayObject):
        return list(resolved)
    return [contents]


def _free_name(page: DictionaryObject) -> bytes:
    resources = _inherited(page, "/Resources") or DictionaryObject()
    taken = set((resources.get("/XObject") or DictionaryObject()).keys())
    name, n = _XOBJECT, 1
    while f"/{name}" in taken:
        n += 1
        name = f"{_XOBJECT}{n}"
    return name.encode()


def _resources(page: DictionaryObject, *, name: bytes, form: IndirectObject) -> DictionaryObject:
    """The page's resources plus the mark: a new direct dictionary, a shared one stays untouched."""
    old = _inherited(page, "/Resources") or DictionaryObject()
    old = old.get_object()
    new = DictionaryObject({NameObject(k): old.raw_get(k) for k in old})
    sub = (old.get("/XObject") or DictionaryObject()).get_object()
    merged = DictionaryObject({NameObject(k): sub.raw_get(k) for k in sub})
    merged[NameObject("/" + name.decode())] = form
    new[NameObject("/XObject")] = merged
    return new


def _number(value: float) -> PdfObject:
    return NumberObject(int(value)) if float(value).is_integer() else FloatObject(round(float(value), 4))


def _num(value: float) -> bytes:
    text_value = f"{value:.4f}".rstrip("0").rstrip(".")
    return (text_value if text_value not in ("-0", "") else "0").encode()
