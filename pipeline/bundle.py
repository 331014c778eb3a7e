"""Bundles: what a version of a policy files in the archive.

- the **customer copy**: the sealed schedule with its clauses, then every endorsement so far (sealed,
  each with the clauses an added rider attaches in full);
- the **archive copy**: the customer copy followed by the underwriting image pages (影像资料), which
  never go into the customer's copy (DESIGN.md invariant 5);
- the **manifest**: the record, SHA-256 and size of every part, template and seal versions, times, batch
  and clerk — enough for an auditor to check the version without the index.

Both PDFs carry bookmarks (保单, 条款 → one per clause, 批单 → 增加的条款 → one per added clause, 影像资料
→ one per image) and metadata with document numbers only, never names or ID numbers.

Image pages join a PDF as an incremental update of it (``archive_copy``, ``add_images``): its bytes
unchanged, then the pages and the objects that now list them. An endorsement's pages are put together by
qpdf (through pikepdf) without decoding any stream. Either way what an earlier version's pages draw goes
into the next version byte for byte, and the work costs little more than a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

import pikepdf
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import IndirectObject, NameObject

from core.errors import IssuanceError, UsageError
from core.manifest import ImageEntry, Part
from core.records import IMAGE_KIND_LABELS, Endorsement, Policy
from pipeline.documents import ADDED_CLAUSES, PRODUCER, AttachedClause
from pipeline.images import image_problem, resolve_image_path
from pipeline.intake import ImageSource, PreparedImages, prepare_images
from stamps.pdfa import info_texts, keep_pdfa, xmp_packet
from stamps.pdfupdate import (
    IncrementalUpdate,
    OutlineEntry,
    PlainPdf,
    PypdfObjects,
    changed_dictionary,
    reference,
    serialise,
    text_string,
    write_outline,
)
from stamps.saving import bookmark, save_pdf

# --- parts ready to file: what ``archive.versions`` stores for each kind of version -----------------------


def record_images(
    record: Policy | Endorsement, batch_dir: Path
) -> tuple[PreparedImages | None, list[ImageEntry]]:
    """The record's images read and checked (``RecordImageError`` naming the first bad one), and their
    entries for the bookmarks and the manifest (one per image, with its page count)."""
    if not record.images:
        return None, []
    sources = [
        ImageSource(index=i, kind=img.kind, label=img.label, path=resolve_image_path(batch_dir, img.path))
        for i, img in enumerate(record.images)
    ]
    result = prepare_images(sources, policy_no=record.policy_no)
    entries: dict[int, ImageEntry] = {}
    for page in result.pages:
        entry = entries.get(page.index)
        if entry is None:
            entries[page.index] = ImageEntry(
                index=page.index,
                kind=page.kind,
                label=record.images[page.index].label,
                source_sha256=page.source_sha256,
                source_size=page.source_size,
                pages=1,
            )
        else:
            entries[page.index] = replace(entry, pages=entry.pages + 1)
    return result, [entries[i] for i in sorted(entries)]


def late_images(
    files: Sequence[Path], *, kind: str, label: str | None, policy_no: str
) -> tuple[PreparedImages, list[ImageEntry]]:
    """Late underwriting images (``issuance attach``), one entry per page; ``UsageError`` for a file that
    is not there or not a usable image."""
    sources = []
    for i, file in enumerate(files):
        if not file.is_file():
            raise UsageError(f"{file} is not a file")
        if problem := image_problem(file):
            raise UsageError(f"{file.name}: {problem}")
        sources.append(ImageSource(index=i, kind=kind, label=label, path=file.resolve()))
    result = prepare_images(sources, policy_no=policy_no)
    entries = [
        ImageEntry(
            index=p.index,
            kind=p.kind,
            label=label,
            source_sha256=p.source_sha256,
            source_size=p.source_size,
            pages=1,
        )
        for p in result.pages
    ]
    return result, entries


# PDFs signed last, each (``stamps.signing.PdfSigner``, several at once while each waits for its
# timestamp), or left as they are
SignAll = Callable[[Sequence[bytes]], list[bytes]]


def _unsigned(pdfs: Sequence[bytes]) -> list[bytes]:
    return list(pdfs)


def policy_parts(customer: bytes, bundle: bytes, *, pages: int, entries: Sequence[ImageEntry]) -> list[Part]:
    """Version 1: the customer copy of ``pages`` pages and the archive copy (``archive_copy``) that
    extends it."""
    first = Part("customer.pdf", customer, pages)
    return [first, Part("bundle.pdf", bundle, pages + sum(e.pages for e in entries), extends=first)]


def endorsement_parts(
    customer: bytes,
    bundle: bytes,
    endorsement: bytes,
    *,
    endorsement_no: str,
    title: str,
    images: PreparedImages | None,
    entries: Sequence[ImageEntry],
    sign_all: SignAll = _unsigned,
    attached: Sequence[AttachedClause] = (),
) -> list[Part]:
    """An endorsement version: the previous customer and archive copies, each grown by the sealed
    endorsement (with the clauses it ``attached``, ``IssuedDocument.attached``), the archive copy by
    the endorsement's images too, each signed as a whole."""
    customer_pdf = append_endorsement(
        customer, endorsement, endorsement_no=endorsement_no, title=title, attached=attached
    )
    bundle_pdf = append_endorsement(
        bundle, endorsement, endorsement_no=endorsement_no, title=f"{title}（档案件）", attached=attached
    )
    if images is not None:
        bundle_pdf = add_images(bundle_pdf, images=images, entries=entries)
    customer_pdf, bundle_pdf = sign_all([customer_pdf, bundle_pdf])
    return [
        Part("customer.pdf", customer_pdf, page_count(customer_pdf)),
        Part("bundle.pdf", bundle_pdf, page_count(bundle_pdf)),
    ]


def supplement_part(
    bundle: bytes, *, images: PreparedImages, entries: Sequence[ImageEntry], sign_all: SignAll = _unsigned
) -> Part:
    """A supplement version's archive copy: the previous one with the late images (``add_images``),
    signed again after them."""
    (bundle_pdf,) = sign_all([add_images(bundle, images=images, entries=entries)])
    return Part("bundle.pdf", bundle_pdf, page_count(bundle_pdf))


def page_count(pdf: bytes) -> int:
    """The number of pages of ``pdf``."""
    with _open(pdf) as document:
        return len(document.pages)


def append_endorsement(
    customer: bytes,
    endorsement: bytes,
    *,
    endorsement_no: str,
    title: str,
    attached: Sequence[AttachedClause] = (),
) -> bytes:
    """The customer copy after an endorsement: everything so far, then the sealed endorsement, under
    one bookmark; the clauses it ``attached`` (增加附加险) are named under it, one bookmark each.

    The copy is written anew, so the signatures it had would no longer match its bytes: they are taken
    out (fields and widgets) and the caller signs the whole again (issue 23, item 7). The earlier
    version's signed copy stays in the archive as it was."""
    with _open(customer) as document, _open(endorsement) as added:
        _drop_signatures(document)
        info = _info(document)
        first = _append(document, added)
        with document.open_outline() as outline:
            item = bookmark(document, f"批单 {endorsement_no}", first)
            if attached:
                heading = bookmark(document, ADDED_CLAUSES, first + attached[0].page)
                heading.children.extend(bookmark(document, c.title, first + c.page) for c in attached)
                item.children.append(heading)
            outline.root.append(item)
        return _finish(document, title=title, subject=info.get("/Subject", ""), previous=info, added=added)


def archive_copy(
    customer: bytes, *, images: PreparedImages | None, entries: Sequence[ImageEntry], title: str
) -> bytes:
    """The archive copy: the customer copy followed by the image pages, bookmarked by kind.

    It is an incremental update of the customer copy (ISO 32000-1 §7.5.6, ``stamps.pdfupdate``): the
    customer's bytes unchanged, then the image pages, the page tree and outline that now include them, a
    catalog and the archive copy's document information. So the customer copy is provably inside its
    archive copy (its bytes are the prefix), and making the archive copy costs what the images cost: the
    customer's pages are neither parsed nor written again.
    """
    labels = [_image_label(entry) for entry in entries]
    return _with_images(customer, images, entries, labels, heading="影像资料", title=f"{title}（档案件）")


def add_images(bundle: bytes, *, images: PreparedImages, entries: Sequence[ImageEntry]) -> bytes:
    """A supplement: the previous archive copy with late-filed image pages added at the end, as an
    incremental update of it (``archive_copy``)."""
    labels = [IMAGE_KIND_LABELS.get(entry.kind, entry.kind) for entry in entries]
    return _with_images(bundle, images, entries, labels, heading="补充影像资料", title=None)


def _with_images(
    pdf: bytes,
    images: PreparedImages | None,
    entries: Sequence[ImageEntry],
    labels: Sequence[str],
    *,
    heading: str,
    title: str | None,
) -> bytes:
    """``pdf`` updated with ``images``' pages at its end under one bookmark ``heading`` (a child per
    image), shown with its outline open, and titled ``title`` (``None``: as it was)."""
    found = _structure(pdf)
    update, tree = found.update, found.tree
    if any(key in tree for key in _INHERITED):
        # every copy is written by save_pdf from a new document, whose page tree passes nothing on
        raise IssuanceError("the document's page tree passes attributes on to new pages")
    changed = {"/PageMode": b"/UseOutlines"}
    if images is not None and images.pages:
        written = images.write(update, parent=found.tree_ref)
        refs = [ref for _, pages in written for ref in pages]
        kids = found.kids[:-1] + b" " + b" ".join(b"%d 0 R" % ref.idnum for ref in refs) + b"]"
        update.replace(
            found.tree_ref,
            changed_dictionary(tree, {"/Kids": kids, "/Count": b"%d" % (found.count + len(refs))}),
        )
        children: list[OutlineEntry] = []
        page = 0
        for entry, label in zip(entries, labels, strict=True):
            children.append((label, refs[page], ()))
            page += entry.pages
        changed.update(_append_outline(update, found, [(heading, refs[0], children)]))
        version = found.catalog.get("/Version", b"/" + pdf[5:8]).decode("latin-1")[1:]
        if images.version > version:
            changed["/Version"] = b"/" + images.version.encode("ascii")
    previous = found.info
    info = {
        "/Title": previous.get("/Title", b"()") if title is None else text_string(title),
        "/Subject": previous.get("/Subject", b"()"),
        "/Producer": text_string(PRODUCER),
        **{key: value for key, value in previous.items() if key.startswith("/Issuance")},
    }
    if "/OutputIntents" in found.catalog:  # a PDF/A-2b copy (stamps.pdfa): its XMP follows the new /Info
        metadata = update.add_stream(b"/Type/Metadata/Subtype/XML", xmp_packet(info_texts(info)))
        changed["/Metadata"] = b"%d 0 R" % metadata.idnum
    update.replace(found.root, changed_dictionary(found.catalog, changed))
    body = b"<<" + b"".join(serialise(NameObject(k)) + b" " + v for k, v in info.items()) + b">>"
    update.set_info(update.add(body))
    # the file identifier changes with what was added: the pictures' own digests say that without
    # hashing their bytes again
    identity = body + b"".join(entry.source_sha256.encode("ascii") for entry in entries)
    return update.to_bytes(identity=identity)


@dataclass(frozen=True)
class _Structure:
    """What an update that adds pages reads of the document: the objects it changes, their entries as
    PDF syntax (``stamps.pdfupdate.PlainPdf``)."""

    update: IncrementalUpdate
    root: IndirectObject
    catalog: dict[str, bytes]
    tree_ref: IndirectObject
    tree: dict[str, bytes]
    kids: bytes  # the page tree's /Kids array
    count: int
    info: dict[str, bytes]
    outline_ref: IndirectObject | None
    outline: dict[str, bytes]
    outline_count: int
    last_item: dict[str, bytes]  # the outline's last top-level item (empty: none)


def _structure(pdf: bytes) -> _Structure:
    """``_Structure`` of ``pdf``: read straight from the bytes for a copy of the shape this pipeline
    writes (``PlainPdf``), else, or if the bytes are not what its table says, by pypdf. Strict first: a
    lenient reader checks every object's offset, which costs more than the rest of the update; a file
    it refuses is read leniently, which mends what it can."""
    plain = PlainPdf.read(pdf)
    if plain is not None:
        try:
            return _read_structure(pdf, plain)
        except (ValueError, KeyError, TypeError):
            pass
    try:
        try:
            reader = PdfReader(_Sized(pdf), strict=True)
        except (PyPdfError, ValueError, KeyError, TypeError):
            reader = PdfReader(_Sized(pdf), strict=False)
        return _read_structure(pdf, PypdfObjects(reader))
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise IssuanceError(f"the archive copy cannot take its image pages: {e}") from e


def _read_structure(pdf: bytes, source: PlainPdf | PypdfObjects) -> _Structure:
    update = IncrementalUpdate(pdf, source if isinstance(source, PlainPdf) else source.reader)
    catalog = source.dictionary(source.trailer["/Root"])
    tree = source.dictionary(catalog["/Pages"])
    kids = tree["/Kids"].strip()
    if not (kids.startswith(b"[") and kids.endswith(b"]")):
        raise ValueError("the page tree's /Kids is not an array")
    outline = source.dictionary(catalog["/Outlines"]) if "/Outlines" in catalog else {}
    return _Structure(
        update=update,
        root=reference(source.trailer["/Root"]),
        catalog=catalog,
        tree_ref=reference(catalog["/Pages"]),
        tree=tree,
        kids=kids,
        count=int(tree["/Count"]),
        info=source.dictionary(source.trailer["/Info"]) if "/Info" in source.trailer else {},
        outline_ref=reference(catalog["/Outlines"]) if "/Outlines" in catalog else None,
        outline=outline,
        outline_count=int(outline.get("/Count", b"0")),
        last_item=source.dictionary(outline["/Last"]) if "/Last" in outline else {},
    )


class _Sized(BytesIO):
    """A ``BytesIO`` over ``data`` whose ``getbuffer`` is a read-only view of ``data``. pypdf sizes its
    stream through ``getbuffer``, and a ``BytesIO`` made from bytes copies them all before it lends its
    buffer, into memory the process had just handed back to the system (a visible cost in a profile of
    ``issuance run``: docs/performance.md)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._data = data

    def getbuffer(self) -> memoryview:
        return memoryview(self._data)


# A page inherits these from its page-tree nodes (ISO 32000-1 table 30)
_INHERITED = ("/Resources", "/MediaBox", "/CropBox", "/Rotate")


def _append_outline(
    update: IncrementalUpdate, found: _Structure, entries: list[OutlineEntry]
) -> dict[str, bytes]:
    """Write ``entries`` after the last top-level item of the document's outline; the catalog's entries
    that change (a new outline root when it had none)."""
    if found.outline_ref is None:
        root_ref = update.reserve()
        first, last, count = write_outline(update, root_ref, entries)
        update.replace(
            root_ref,
            b"<</Type/Outlines/First %d 0 R/Last %d 0 R/Count %d>>" % (first.idnum, last.idnum, count),
        )
        return {"/Outlines": b"%d 0 R" % root_ref.idnum}
    root = found.outline
    old_last = reference(root["/Last"]) if "/Last" in root else None
    first, last, count = write_outline(update, found.outline_ref, entries, after=old_last)
    changed = {
        "/Last": b"%d 0 R" % last.idnum,
        "/Count": b"%d" % (max(found.outline_count, 0) + count),
    }
    if old_last is None:
        changed["/First"] = b"%d 0 R" % first.idnum
    else:
        update.replace(old_last, changed_dictionary(found.last_item, {"/Next": b"%d 0 R" % first.idnum}))
    update.replace(found.outline_ref, changed_dictionary(root, changed))
    return {}


def _open(pdf: bytes) -> pikepdf.Pdf:
    # Streams are read from the source when the document that copied them is saved: keep it open till then.
    return pikepdf.open(BytesIO(pdf))


def _append(document: pikepdf.Pdf, added: pikepdf.Pdf) -> int:
    """Copy ``added``'s pages (not its outline or document data) to the end; their first index."""
    first = len(document.pages)
    document.pages.extend(added.pages)
    return first


def _drop_signatures(document: pikepdf.Pdf) -> None:
    """Remove the signature fields of ``document`` and their widgets from its pages."""
    form = document.Root.get("/AcroForm")
    if form is None:
        return
    widgets = set()
    for field in form.get("/Fields", []):
        if field.get("/FT") == pikepdf.Name.Sig:
            widgets.add(field.objgen)
    for page in document.pages:
        annots = page.obj.get("/Annots")
        if annots is not None and widgets:
            kept = [a for a in annots if a.objgen not in widgets]
            if kept:
                page.obj.Annots = pikepdf.Array(kept)
            else:
                del page.obj["/Annots"]
    fields = [f for f in form.get("/Fields", []) if f.objgen not in widgets]
    if fields:
        form.Fields = pikepdf.Array(fields)
        if "/SigFlags" in form:
            del form["/SigFlags"]
    else:
        del document.Root["/AcroForm"]


def _image_label(entry: ImageEntry) -> str:
    label = IMAGE_KIND_LABELS.get(entry.kind, entry.kind)
    if entry.kind == "other" and entry.label:
        label = f"{label}（{entry.label}）"
    return label


def _info(document: pikepdf.Pdf) -> dict[str, str]:
    info = document.trailer.get("/Info")
    if not isinstance(info, pikepdf.Dictionary):
        return {}
    return {str(key): str(value) for key, value in info.items()}


def _finish(
    document: pikepdf.Pdf,
    *,
    title: str,
    subject: str,
    previous: dict[str, str],
    added: pikepdf.Pdf | None,
) -> bytes:
    """Save ``document`` with new document information, the outline shown on opening, and a version
    no older than ``added``'s.

    The information is the title, the subject, the producer and the previous document's /Issuance*
    keys (template versions), nothing else of it: those carry document numbers only.
    """
    fields = {
        "/Title": title,
        "/Subject": subject,
        "/Producer": PRODUCER,
        **{key: value for key, value in previous.items() if key.startswith("/Issuance")},
    }
    document.trailer.Info = document.make_indirect(
        pikepdf.Dictionary({key: pikepdf.String(value) for key, value in fields.items()})
    )
    document.Root.PageMode = pikepdf.Name.UseOutlines
    keep_pdfa(document, sources=[document] + ([added] if added is not None else []))
    versions = [document.pdf_version] + ([added.pdf_version] if added is not None else [])
    return save_pdf(document, min_version=_newest(*versions))


def _newest(*versions: str) -> str:
    def number(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split(".") if part.isdigit())

    return max(versions, key=number)
