"""Putting seals on a PDF: the company seal on the signature line, and the cross-page seal (骑缝章).

What ``stamp_pdf`` promises:

- The company seal's centre sits on the centre of "盖章" in the anchor text, found in the rendered PDF
  (``stamps.anchor``), never at fixed coordinates; it keeps its physical size (a 42 mm seal is 42 mm on
  paper). No anchor on ``anchor_pages`` is ``SealAnchorMissing``, naming the anchor.
- Cross-page strips follow ``stamps.layout`` (groups, equal strips, visual right edge, vertically
  centred, rotated and landscape pages included).
- The seal image is stored once per PDF (one 600 dpi stencil mask, ``EncodedSeal``), and every use — the
  company seal and each page's strip — draws that one image, clipped to the page's window (``re W n``).
  The encoded image is cached per seal and dpi, so a batch encodes each seal once. The image and each
  page's use of it stay inside the 15% a sealed PDF may grow, even on a one-page endorsement, the
  tightest case (``bench/stamp_bench.py``).
- Ink is laid in the seal's colour with blend mode Multiply: black text under the seal stays black, as
  under a real stamp.
- The result is an incremental update of the input (``stamps.pdfupdate``): the input's bytes are its
  prefix, and the same input stamped the same way gives the same bytes. (An input whose startxref is
  damaged is first rewritten cleanly by pypdf; then only the second promise holds.)
"""

from __future__ import annotations

import functools
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pikepdf
from PIL import Image, ImageChops, TiffImagePlugin  # noqa: F401  (registers TIFF: see _group4)
from pypdf import PdfReader, PdfWriter
from pypdf.errors import PdfReadError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject, PdfObject

from core.errors import ComponentUnavailable, IssuanceError, SealAnchorMissing
from stamps import kept as kept_seals
from stamps.anchor import find_text
from stamps.layout import PageFrame, StripWindow, cross_page_groups, frame_for, max_group_pages, strip_windows
from stamps.pdfupdate import IncrementalUpdate, previous_xref, serialise
from stamps.registry import Seal

__all__ = [
    "DEFAULT_ANCHOR",
    "EncodedSeal",
    "SealPlan",
    "StampResult",
    "encoded_seal",
    "page_frames",
    "plan_seals",
    "seal_document",
    "seal_objects",
    "stamp_pdf",
]

DEFAULT_ANCHOR = "保险人（盖章）"
SEAL_OVER = "盖章"  # the part of the anchor a hand stamp is centred on
_XOBJECT = "IssuanceSeal"
_Box = tuple[float, float, float, float]  # x, y, width, height in pt
_GSTATE = "IssuanceSealInk"
# TIFF tags read back from the Group 4 file Pillow writes
_STRIP_OFFSETS, _ROWS_PER_STRIP, _STRIP_BYTE_COUNTS, _FILL_ORDER = 273, 278, 279, 266


@dataclass(frozen=True)
class StampResult:
    """The sealed PDF and where the seals went.

    ``anchor_xy_pt`` is the company seal's centre in the anchor page's visual frame (pt, origin
    bottom-left; the same as PDF user space on an unrotated page). ``groups`` are the cross-page groups
    as (start, stop) half-open page ranges, empty when there is no cross-page seal.
    """

    pdf: bytes
    anchor_page: int | None
    anchor_xy_pt: tuple[float, float] | None
    groups: tuple[tuple[int, int], ...]
    seal: str  # Seal.ref, for the manifest
    pages: int


@dataclass(frozen=True)
class EncodedSeal:
    """A seal image as a PDF stencil mask: one bit per pixel, CCITT Group 4, painted in the seal's colour.

    A seal is one ink colour, so the picture is only *where* the ink is. As a stencil (/ImageMask) it is
    painted with the fill colour set in the content stream, a few KB at 600 dpi, where a colour image
    with an 8-bit soft mask took more than the 15% a one-page endorsement may grow (docs/performance.md).
    At
    600 dpi a one-bit edge steps by 0.04 mm, one dot of a 600 dpi printer; a viewer rendering below
    600 dpi averages the bits into anti-aliased edges again.
    """

    width_px: int
    height_px: int
    width_pt: float
    height_pt: float
    colour: tuple[int, int, int]
    mask_data: bytes

    def objects(self, update: IncrementalUpdate) -> IndirectObject:
        """Add the stencil image to ``update``; its reference.

        Group 4 codes the ink as black runs. With /BlackIs1 false the filter returns black as 0 samples,
        and a stencil paints its 0 samples under /Decode [0 1]: all three are the PDF defaults, written out
        so that nobody has to remember them.
        """
        return update.add_stream(
            b"/Type/XObject/Subtype/Image/Width %d/Height %d/ImageMask true/BitsPerComponent 1/Decode[0 1]"
            b"/Filter/CCITTFaxDecode/DecodeParms<</K -1/Columns %d/Rows %d/BlackIs1 false>>"
            % (self.width_px, self.height_px, self.width_px, self.height_px),
            self.mask_data,
        )

    @property
    def fill(self) -> bytes:
        """The content-stream operator that sets the seal's colour as the stencil's paint."""
        return b" ".join(_num(c / 255) for c in self.colour) + b" rg"


def encoded_seal(seal: Seal, dpi: int = 600, *, kept: Path | None = None) -> EncodedSeal:
    """The seal's stencil (``Seal.stencil``) encoded for PDF once per seal and dpi (in this process; and
    between runs in the folder ``kept`` when given: ``stamps.kept``).

    A scan is cut at ``dpi`` too, not at its own coarser resolution (~240 dpi for the specimen): its
    alpha is resampled smoothly first, so the 600 dpi cut follows the ink's contour instead of the
    scanner's pixel grid, for a few KB more than a cut at its own resolution.

    One thread at a time: at the start of a run every filing thread asks for the same few seals at
    once, and each would draw and encode them again (costly: ``stamps.kept``) before the first had
    cached them.
    """
    with _ENCODING:
        found = _encoded.get((seal, dpi))
        if found is None:
            read = kept_seals.read(kept, seal, dpi) if kept is not None else None
            if read is not None:
                width, height, data = read
                found = stencil_of(seal, width_px=width, height_px=height, mask_data=data)
            else:
                found = _encode_seal(seal, dpi)
                if kept is not None:
                    kept_seals.write(
                        kept,
                        seal,
                        dpi,
                        width_px=found.width_px,
                        height_px=found.height_px,
                        mask_data=found.mask_data,
                    )
            if len(_encoded) >= 16:
                _encoded.pop(next(iter(_encoded)))
            _encoded[(seal, dpi)] = found
        return found


_ENCODING = threading.Lock()
_encoded: dict[tuple[Seal, int], EncodedSeal] = {}  # this process's, the oldest dropped past 16


def forget_encoded_seals() -> None:
    """Drop what ``encoded_seal`` keeps in this process: the next call reads the kept folder or draws
    the seal again, as a new process would (``functools.lru_cache``'s ``cache_clear``, for this memo)."""
    with _ENCODING:
        _encoded.clear()


def _encode_seal(seal: Seal, dpi: int) -> EncodedSeal:
    ink = seal.stencil(dpi)
    return stencil_of(seal, width_px=ink.width, height_px=ink.height, mask_data=_group4(ink))


def stencil_of(seal: Seal, *, width_px: int, height_px: int, mask_data: bytes) -> EncodedSeal:
    """``seal``'s encoded stencil from its pixels' size and data: the larger side is the seal's diameter."""
    side = max(width_px, height_px)
    return EncodedSeal(
        width_px=width_px,
        height_px=height_px,
        width_pt=seal.diameter_mm * width_px / side * 72 / 25.4,
        height_pt=seal.diameter_mm * height_px / side * 72 / 25.4,
        colour=seal.colour,
        mask_data=mask_data,
    )


def _group4(mask: Image.Image) -> bytes:
    """``mask`` (mode "1", ink = 1) as the CCITT Group 4 data a /CCITTFaxDecode filter with /K -1 reads.

    Pillow writes Group 4 only inside a TIFF (through libtiff); the data is the TIFF's strip. It must be
    one strip: each strip starts again from an all-white reference line, so strips cannot be joined.
    TIFF is registered by importing its plugin (above): otherwise saving one makes Pillow import all of
    its plugins first.
    """
    buf = BytesIO()
    try:
        mask.save(buf, "TIFF", compression="group4", tiffinfo={_ROWS_PER_STRIP: mask.height})
    except (OSError, KeyError) as e:
        raise ComponentUnavailable(
            "Pillow cannot write CCITT Group 4 images", hint="install a Pillow built with libtiff"
        ) from e
    with Image.open(buf) as tiff:
        offsets, counts = tiff.tag_v2[_STRIP_OFFSETS], tiff.tag_v2[_STRIP_BYTE_COUNTS]
        # A cheap self-check, once per seal: one strip, bits in PDF's order, and it decodes to the mask.
        whole = len(offsets) == 1 and tiff.tag_v2.get(_FILL_ORDER, 1) == 1
        if not whole or ImageChops.logical_xor(tiff.convert("1"), mask).getbbox() is not None:
            raise IssuanceError("Pillow's Group 4 encoding of the seal did not decode back to the seal")
    return buf.getvalue()[offsets[0] : offsets[0] + counts[0]]


def page_frames(reader: PdfReader) -> list[PageFrame]:
    """Each page's visual frame, from its crop box (else media box) and /Rotate, inherited ones included."""
    frames = []
    for page in reader.pages:
        box = page.get("/CropBox") or page.get("/MediaBox")
        rotation = int(page.get("/Rotate", 0))
        frames.append(frame_for(box=tuple(float(v) for v in box), rotation=rotation))  # type: ignore[arg-type]
    return frames


def stamp_pdf(
    pdf: bytes,
    *,
    seal: Seal,
    anchor: str | None = DEFAULT_ANCHOR,
    anchor_pages: Sequence[int] = range(0, 1),
    cross_page: bool = True,
    dpi: int = 600,
) -> StampResult:
    """Seal ``pdf``: the company seal on ``anchor`` (searched on ``anchor_pages`` only; None for no
    company seal) and, if ``cross_page``, the cross-page seal over all pages. See the module docstring.

    If the anchor occurs more than once, the last occurrence is used: a signature line ends the
    schedule, while the phrase may also be quoted in notes above it.
    """
    reader = _read(pdf)
    if previous_xref(pdf) is None:
        # A PDF whose startxref is damaged (pypdf read it by reconstruction) cannot take an incremental
        # update whose /Prev points into it: rewrite it cleanly once, then update that.
        pdf = _rewrite(reader)
        reader = _read(pdf)
    frames = page_frames(reader)
    encoded = encoded_seal(seal, dpi)
    anchor_page, centre = None, None
    if anchor is not None:
        anchor_page, centre = _locate_anchor(pdf, anchor=anchor, pages=anchor_pages, frames=frames)
    plan = plan_seals(
        frames, encoded, company_at=(anchor_page, centre) if centre else None, cross_page=cross_page
    )
    anchor_page, centre, groups, uses = plan.anchor_page, plan.centre, plan.groups, plan.uses

    if not uses:
        return StampResult(
            pdf=pdf, anchor_page=None, anchor_xy_pt=None, groups=(), seal=seal.ref, pages=len(frames)
        )

    update = IncrementalUpdate(pdf, reader)
    image_ref = encoded.objects(update)
    gstate_ref = update.add(_GSTATE_BODY)

    for index, page_uses in sorted(uses.items()):
        page = reader.pages[index]
        if page.indirect_reference is None:
            raise IssuanceError(f"page {index + 1} is not an indirect object; cannot seal this PDF")
        names = _names(page)
        body = b"Q\n" + b"".join(
            _draw(frames[index], image=i, clip=c, names=names, fill=encoded.fill) for i, c in page_uses
        )
        # Each page gets its own one-byte "q" stream, though one could serve every page: pypdf's clone
        # (PdfWriter(clone_from=...), page merging) copies a stream listed in a /Contents array once per
        # page that lists it, so a shared one became more objects than the file's /Size and pypdf warned
        # on every sealed document. Its own stream costs ~70 bytes a page.
        save_ref = update.add_stream(b"", b"q")
        stamp_ref = update.add_stream(b"", body)
        new_page = DictionaryObject({NameObject(k): page.raw_get(k) for k in page})
        new_page[NameObject("/Contents")] = ArrayObject([save_ref, *_contents(page), stamp_ref])
        new_page[NameObject("/Resources")] = _resources(page, names=names, image=image_ref, gstate=gstate_ref)
        update.replace(page.indirect_reference, serialise(new_page))
    return StampResult(
        pdf=update.to_bytes(),
        anchor_page=anchor_page,
        anchor_xy_pt=centre,
        groups=groups,
        seal=seal.ref,
        pages=len(frames),
    )


_GSTATE_BODY = b"<</Type/ExtGState/BM/Multiply/ca 1/CA 1>>"


@dataclass(frozen=True)
class SealPlan:
    """Where the seal goes on a document: the company seal's page and centre, the cross-page groups, and
    per page each use of the seal as (image box, clip box or None), in the page's visual frame."""

    anchor_page: int | None
    centre: tuple[float, float] | None
    groups: tuple[tuple[int, int], ...]
    uses: dict[int, list[tuple[_Box, _Box | None]]]


def plan_seals(
    frames: Sequence[PageFrame],
    encoded: EncodedSeal,
    *,
    company_at: tuple[int, tuple[float, float]] | None,
    cross_page: bool,
) -> SealPlan:
    """The seal's uses on pages ``frames``: the company seal centred at ``company_at`` (page, visual
    point) and, if ``cross_page``, the strips of ``stamps.layout``. ``stamp_pdf`` and ``seal_document``
    both place seals by this plan, so the two cannot drift apart."""
    frames = list(frames)
    windows: list[StripWindow] = []
    groups: tuple[tuple[int, int], ...] = ()
    if cross_page:
        width_mm = encoded.width_pt * 25.4 / 72
        groups = cross_page_groups(len(frames), max_pages=max_group_pages(width_mm))
        for group in groups:
            windows += strip_windows(
                frames, group=group, seal_width=encoded.width_pt, seal_height=encoded.height_pt
            )
    uses: dict[int, list[tuple[_Box, _Box | None]]] = {}
    for w in windows:
        uses.setdefault(w.page, []).append(
            (
                (w.seal_x, w.seal_y, w.seal_width, w.seal_height),
                (w.clip_x, w.seal_y, w.clip_width, w.seal_height),
            )
        )
    anchor_page, centre = None, None
    if company_at is not None:
        anchor_page, (x, y) = company_at
        frame = frames[anchor_page]
        # The whole seal stays on the paper even if the signature line is near an edge, and off the
        # page's cross-page strip, so that each of the two can be checked on its own.
        right = min([w.clip_x for w in windows if w.page == anchor_page], default=frame.width)
        width, height = encoded.width_pt, encoded.height_pt
        centre = (
            min(max(x, width / 2), right - width / 2),
            min(max(y, height / 2), frame.height - height / 2),
        )
        uses.setdefault(anchor_page, []).append(
            ((centre[0] - width / 2, centre[1] - height / 2, width, height), None)
        )
    return SealPlan(anchor_page=anchor_page, centre=centre, groups=groups, uses=uses)


def pikepdf_frames(pdf: pikepdf.Pdf | Sequence[pikepdf.Page]) -> list[PageFrame]:
    """Each page's visual frame (crop box, else media box, and /Rotate, inherited ones included), of a
    document or of some of its pages."""
    frames = []
    for page in pdf.pages if isinstance(pdf, pikepdf.Pdf) else pdf:
        box = tuple(float(v) for v in page.cropbox)
        rotation = int(page.obj.get("/Rotate", page.obj.get("/Parent", {}).get("/Rotate", 0)))
        frames.append(frame_for(box=box, rotation=rotation))  # type: ignore[arg-type]
    return frames


def seal_objects(pdf: pikepdf.Pdf, encoded: EncodedSeal) -> tuple[pikepdf.Object, pikepdf.Object]:
    """The seal's stencil image and its ink state (Multiply), as new objects of ``pdf``."""
    image = pdf.make_stream(
        encoded.mask_data,
        Type=pikepdf.Name.XObject,
        Subtype=pikepdf.Name.Image,
        Width=encoded.width_px,
        Height=encoded.height_px,
        ImageMask=True,
        BitsPerComponent=1,
        Decode=pikepdf.Array([0, 1]),
        Filter=pikepdf.Name.CCITTFaxDecode,
        DecodeParms=pikepdf.Dictionary(
            K=-1, Columns=encoded.width_px, Rows=encoded.height_px, BlackIs1=False
        ),
    )
    gstate = pdf.make_indirect(
        pikepdf.Dictionary(Type=pikepdf.Name.ExtGState, BM=pikepdf.Name.Multiply, ca=1, CA=1)
    )
    return image, gstate


def seal_document(
    pdf: pikepdf.Pdf,
    *,
    seal: Seal,
    company_at: tuple[int, tuple[float, float]] | None,
    cross_page: bool = True,
    dpi: int = 600,
    frames: Sequence[PageFrame] | None = None,
    offset: int = 0,
    pages: range | None = None,
    objects: tuple[pikepdf.Object, pikepdf.Object] | None = None,
    kept: Path | None = None,
) -> SealPlan:
    """Seal a document being assembled in memory (pikepdf), in place: the company seal centred at
    ``company_at`` (page, point in its visual frame; None for none) and the cross-page seal.

    The drawing is ``stamp_pdf``'s, by the same plan: one stencil image for the document, each page's
    content run inside ``q … Q`` before the seal is drawn on top with Multiply. Unlike ``stamp_pdf`` this
    is not an incremental update: the pipeline seals what it has just assembled, where no earlier bytes
    exist to keep. ``stamp_pdf`` stays the way to seal a finished file.

    A document can be sealed in parts that are put together afterwards, each drawn exactly as sealing
    the whole would draw it: ``frames`` are the whole document's pages (default: ``pdf``'s), ``pdf``
    holds those from ``offset`` on, and only the pages numbered in ``pages`` (default: all it holds)
    are drawn on, with ``objects`` (``seal_objects``; default: made anew) as the stencil and ink state.
    ``kept``: where encoded seals are kept between runs (``encoded_seal``).
    """
    frames = pikepdf_frames(pdf) if frames is None else list(frames)
    held = range(offset, offset + len(pdf.pages))
    encoded = encoded_seal(seal, dpi, kept=kept)
    plan = plan_seals(frames, encoded, company_at=company_at, cross_page=cross_page)
    drawn = [
        (i, uses) for i, uses in sorted(plan.uses.items()) if i in held and (pages is None or i in pages)
    ]
    if not drawn:
        return plan
    image, gstate = objects if objects is not None else seal_objects(pdf, encoded)
    for index, page_uses in drawn:
        page = pdf.pages[index - offset].obj
        resources = page.get("/Resources")
        resources = pikepdf.Dictionary(resources) if resources is not None else pikepdf.Dictionary()
        taken = set()
        for kind in ("/XObject", "/ExtGState"):
            if kind in resources:
                taken |= set(resources[kind].keys())
        names = _free_names(taken)
        body = b"Q\n" + b"".join(
            _draw(frames[index], image=i, clip=c, names=names, fill=encoded.fill) for i, c in page_uses
        )
        contents = page.get("/Contents")
        if contents is None:
            existing: list[Any] = []
        elif isinstance(contents, pikepdf.Array):
            existing = list(contents)
        else:
            existing = [contents]
        page.Contents = pikepdf.Array([pdf.make_stream(b"q"), *existing, pdf.make_stream(body)])
        for kind, name, ref in (("/XObject", names[0], image), ("/ExtGState", names[1], gstate)):
            sub = resources.get(kind)
            merged = pikepdf.Dictionary(sub) if sub is not None else pikepdf.Dictionary()
            merged["/" + name.decode()] = ref
            resources[kind] = merged
        page.Resources = resources
    return plan


def _read(pdf: bytes) -> PdfReader:
    try:
        reader = PdfReader(BytesIO(pdf))
        if reader.is_encrypted:
            raise IssuanceError("cannot seal an encrypted PDF", hint="seal before encrypting or signing")
        _ = len(reader.pages)
    except (PdfReadError, ValueError, KeyError) as e:
        raise IssuanceError(f"cannot read the PDF to seal it: {e}") from e
    return reader


def _rewrite(reader: PdfReader) -> bytes:
    writer = PdfWriter(clone_from=reader)
    buf = BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _locate_anchor(
    pdf: bytes, *, anchor: str, pages: Sequence[int], frames: list[PageFrame]
) -> tuple[int, tuple[float, float]]:
    """The anchor's page and the centre of its "盖章" in that page's visual frame, origin bottom-left."""
    wanted = [p for p in pages if 0 <= p < len(frames)]
    part = SEAL_OVER if SEAL_OVER in anchor else None
    hits = []
    if wanted:
        span = range(min(wanted), max(wanted) + 1)
        rotations = [f.rotation for f in frames]
        with tempfile.NamedTemporaryFile(prefix="stamps-", suffix=".pdf") as tmp:
            Path(tmp.name).write_bytes(pdf)
            found = find_text(Path(tmp.name), anchor, pages=span, rotations=rotations, part=part)
            hits = [h for h in found if h.page in wanted]
    if not hits:
        shown = f"{min(wanted) + 1}-{max(wanted) + 1}" if wanted else "none"
        raise SealAnchorMissing(
            f"the signature line {anchor!r} is not on pages {shown} of the document",
            hint="the template must keep the anchor text where the company seal goes",
        )
    hit = hits[-1]
    x, top = hit.centre
    return hit.page, (x, frames[hit.page].height - top)


def _num(value: float) -> bytes:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return (text if text not in ("-0", "") else "0").encode()


# The same pages (an A4 frame, the same window of a cross-page seal) recur in every policy of a product:
# drawing is formatting some 16 numbers a use, so the operators are kept rather than formatted again.
@functools.lru_cache(maxsize=1024)
def _draw(
    frame: PageFrame,
    *,
    image: _Box,
    clip: _Box | None,
    names: tuple[bytes, bytes],
    fill: bytes,
) -> bytes:
    """One use of the seal: into the visual frame, clip to the window, place the image, paint it.

    The page's own content ran inside ``q … Q`` (the shared "q" stream before it, the "Q" that opens
    our stream), so whatever graphics state it left behind cannot move or tint the seal.
    """
    m = b" ".join(_num(v) for v in frame.matrix)
    out = b"q\n/" + names[1] + b" gs\n" + fill + b"\n" + m + b" cm\n"
    if clip is not None:
        out += b" ".join(_num(v) for v in clip) + b" re W n\n"
    x, y, w, h = image
    out += b" ".join(_num(v) for v in (w, 0, 0, h, x, y)) + b" cm\n/" + names[0] + b" Do\nQ\n"
    return out


def _contents(page: DictionaryObject) -> list[PdfObject]:
    contents = page.raw_get("/Contents") if "/Contents" in page else None
    if contents is None:
        return []
    resolved = contents.get_object()
    if isinstance(resolved, ArrayObject):
        return list(resolved)  # the array's items are references to streams
    return [contents]


def _names(page: DictionaryObject) -> tuple[bytes, bytes]:
    """Resource names (without the slash) for the seal image and the ink state, unused on the page."""
    resources = page.get("/Resources") or DictionaryObject()
    taken = set()
    for kind in ("/XObject", "/ExtGState"):
        sub = resources.get(kind)
        if sub is not None:
            taken |= set(sub.keys())
    return _free_names(taken)


def _free_names(taken: set[str]) -> tuple[bytes, bytes]:
    chosen = []
    for base in (_XOBJECT, _GSTATE):
        name, n = base, 1
        while f"/{name}" in taken:
            n += 1
            name = f"{base}{n}"
        chosen.append(name.encode())
    return chosen[0], chosen[1]


def _resources(
    page: DictionaryObject, *, names: tuple[bytes, bytes], image: IndirectObject, gstate: IndirectObject
) -> DictionaryObject:
    """The page's resources plus the seal image and ink state.

    A new direct dictionary per page: a resource dictionary shared with other pages stays untouched.
    """
    old = page.get("/Resources") or DictionaryObject()
    new = DictionaryObject({NameObject(k): old.raw_get(k) for k in old})
    for kind, name, ref in (("/XObject", names[0], image), ("/ExtGState", names[1], gstate)):
        sub = old.get(kind) or DictionaryObject()
        merged = DictionaryObject({NameObject(k): sub.raw_get(k) for k in sub})
        merged[NameObject("/" + name.decode())] = ref
        new[NameObject(kind)] = merged
    return new
