"""Bundles on real PDFs: a customer copy made the way ``pipeline.documents`` makes it (pypdf, bookmarks
as /GoTo actions, metadata with document numbers), real image pages from ``pipeline.intake`` (which carry
their own bookmarks, never to be imported), read back with pikepdf.

What is checked: page order; that the customer copy's content streams reach the archive copy byte for
byte; every bookmark's title, level and target page; the document information; page counts.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject

from core.manifest import ImageEntry, Part
from pipeline.bundle import add_images, append_endorsement, archive_copy, page_count
from pipeline.documents import PRODUCER
from pipeline.intake import ImagePageInfo, ImageSource, PreparedImages, image_pages, prepare_images
from stamps import saving
from stamps.pdfupdate import NewDocument, PlainPdf, PypdfObjects, text_string
from stamps.saving import SAVE_OPTIONS, save_pdf

IMAGES = Path(__file__).parent / "resources" / "images"
POLICY_NO = "PAC20260304028000124"
TEMPLATES = '{"schedules/AUTO-COMM.docx": "sha256:34a6"}'


# --- making the inputs -----------------------------------------------------------------------------


def document_pdf(
    marks: list[str], *, outline: list[tuple[str, int, list[tuple[str, int]]]], info: dict[str, str]
) -> bytes:
    """Pages showing ``marks``, as LibreOffice and the seal leave them: a Flate page stream, and on the
    first page an unfiltered second stream (the seal's); ``outline`` is (title, page, children)."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for number, mark in enumerate(marks):
        page = writer.add_blank_page(595.3, 841.9)
        text = DecodedStreamObject()
        text.set_data(f"BT /F1 24 Tf 72 700 Td ({mark}) Tj ET".encode())
        streams = [writer._add_object(text.flate_encode())]
        if number == 0:
            seal = DecodedStreamObject()
            seal.set_data(b"q 0.8 0 0 RG 400 100 80 80 re S Q")
            streams.append(writer._add_object(seal))
        page[NameObject("/Contents")] = ArrayObject(streams)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    for title, page_number, children in outline:
        parent = writer.add_outline_item(title=title, page_number=page_number)
        for child, child_page in children:
            writer.add_outline_item(title=child, page_number=child_page, parent=parent)
    writer.add_metadata(info)
    writer.page_mode = "/UseOutlines"
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def customer_pdf() -> bytes:
    return document_pdf(
        ["CUSTOMER-PAGE-1", "CUSTOMER-PAGE-2", "CUSTOMER-PAGE-3"],
        outline=[("保单", 0, []), ("条款", 1, [("机动车损失保险条款", 1), ("机动车第三者责任保险条款", 2)])],
        info={
            "/Title": f"机动车商业保险保险单 {POLICY_NO}",
            "/Subject": POLICY_NO,
            "/Producer": PRODUCER,
            "/IssuanceTemplates": TEMPLATES,
            "/Author": "张三",  # not ours: a bundle carries only document numbers
        },
    )


def endorsement_pdf() -> bytes:
    return document_pdf(
        ["ENDORSEMENT-PAGE-1", "ENDORSEMENT-PAGE-2"],
        outline=[("批单正文", 0, [])],
        info={"/Title": "批单", "/Subject": "E1", "/Producer": PRODUCER, "/IssuanceTemplates": "{}"},
    )


def two_frame_tiff(path: Path) -> Path:
    frames = [Image.new("RGB", (300, 200), (200, 40, 40)), Image.new("RGB", (200, 300), (40, 40, 200))]
    frames[0].save(path, save_all=True, append_images=frames[1:], compression="tiff_lzw")
    return path


@dataclass(frozen=True)
class Taken:
    """A record's images as the archive copy takes them (``prepared``) and as a PDF of their own."""

    prepared: PreparedImages
    pdf: bytes
    pages: tuple[ImagePageInfo, ...]


def take(sources: list[tuple[str, str | None, Path]]) -> tuple[Taken, list[ImageEntry]]:
    """Image pages for (kind, label, path) sources and their entries, as ``usecases.filing`` makes them."""
    listed = [ImageSource(index=i, kind=k, label=label, path=p) for i, (k, label, p) in enumerate(sources)]
    alone = image_pages(listed, policy_no=POLICY_NO)
    result = Taken(prepare_images(listed, policy_no=POLICY_NO), alone.pdf, alone.pages)
    entries = []
    for i, (kind, label, _) in enumerate(sources):
        pages = [p for p in result.pages if p.index == i]
        entries.append(
            ImageEntry(
                index=i,
                kind=kind,
                label=label,
                source_sha256=pages[0].source_sha256,
                source_size=pages[0].source_size,
                pages=len(pages),
            )
        )
    return result, entries


@pytest.fixture
def images(tmp_path) -> tuple[Taken, list[ImageEntry]]:
    """Four image pages: one photo, a two-frame TIFF, an 'other' with its label."""
    return take(
        [
            ("id_front", None, IMAGES / "id_front-1.jpg"),
            ("vehicle_license", None, two_frame_tiff(tmp_path / "two.tif")),
            ("other", "病历首页", IMAGES / "id_back-1.jpg"),
        ]
    )


# --- reading the output ----------------------------------------------------------------------------


def opened(data: bytes) -> pikepdf.Pdf:
    pdf = pikepdf.open(io.BytesIO(data))
    assert pdf.check_pdf_syntax() == []  # qpdf finds nothing wrong in the file's structure
    return pdf


def outline(data: bytes) -> list[tuple[int, str, int]]:
    """(level, title, target page index) of every bookmark, in reading order.

    Each target must be an explicit destination showing the whole page (pypdf's /GoTo action, or /Dest).
    """
    pdf = opened(data)
    index = {page.obj.objgen: i for i, page in enumerate(pdf.pages)}
    found = []

    def walk(items, level):
        for item in items:
            target = item.destination if item.destination is not None else item.action["/D"]
            assert item.destination is not None or item.action["/S"] == "/GoTo"
            assert target[1] == pikepdf.Name.Fit
            assert not item.is_closed
            found.append((level, item.title, index[target[0].objgen]))
            walk(item.children, level + 1)

    with pdf.open_outline() as tree:
        walk(tree.root, 0)
    return found


def info(data: bytes) -> dict[str, str]:
    pdf = opened(data)  # kept while its objects are read
    return {str(k): str(v) for k, v in pdf.docinfo.items()}


def marks(data: bytes) -> list[str]:
    """What each page is: its text mark for a document page, "image" for an image page."""
    out = []
    for page in opened(data).pages:
        xobjects = page.obj.get("/Resources", {}).get("/XObject", {})
        if "/Picture" in xobjects:
            out.append("image")
            continue
        contents = page.obj.Contents
        first = contents[0] if isinstance(contents, pikepdf.Array) else contents
        out.append(first.read_bytes().decode().split("(")[1].split(")")[0])
    return out


def raw_streams(page: pikepdf.Page) -> list[tuple[bytes, str]]:
    """A page's content streams as stored in the file (filtered bytes and the filter)."""
    contents = page.obj.Contents
    streams = list(contents) if isinstance(contents, pikepdf.Array) else [contents]
    return [(s.read_raw_bytes(), str(s.get("/Filter", ""))) for s in streams]


CUSTOMER_OUTLINE = [
    (0, "保单", 0),
    (0, "条款", 1),
    (1, "机动车损失保险条款", 1),
    (1, "机动车第三者责任保险条款", 2),
]


# --- archive copy ----------------------------------------------------------------------------------


def test_archive_copy_is_the_customer_copy_then_the_image_pages(images):
    result, entries = images
    customer = customer_pdf()
    bundle = archive_copy(customer, images=result.prepared, entries=entries, title="机动车商业保险保险单 X")
    assert marks(bundle) == ["CUSTOMER-PAGE-1", "CUSTOMER-PAGE-2", "CUSTOMER-PAGE-3"] + ["image"] * 4
    assert page_count(bundle) == 7
    before, after = opened(customer), opened(bundle)
    for i, page in enumerate(before.pages):
        assert raw_streams(after.pages[i]) == raw_streams(page)  # byte for byte, filters and all
    assert raw_streams(before.pages[0])[1] == (b"q 0.8 0 0 RG 400 100 80 80 re S Q", "")  # left unfiltered
    pictures = opened(result.pdf)
    for i, page in enumerate(pictures.pages):
        assert raw_streams(after.pages[3 + i]) == raw_streams(page)
        assert after.pages[3 + i].mediabox == page.mediabox


def test_archive_copy_bookmarks_the_customer_copy_then_each_image(images):
    result, entries = images
    assert [title for _, title, _ in outline(result.pdf)] == [
        "身份证人像面",
        "机动车行驶证",
        "其他（病历首页）",
    ]
    bundle = archive_copy(customer_pdf(), images=result.prepared, entries=entries, title="T")
    assert outline(bundle) == [
        *CUSTOMER_OUTLINE,
        (0, "影像资料", 3),
        (1, "身份证人像面", 3),
        (1, "机动车行驶证", 4),  # two pages: the TIFF's frames
        (1, "其他（病历首页）", 6),
    ]


def test_archive_copy_metadata(images):
    result, entries = images
    bundle = archive_copy(
        customer_pdf(), images=result.prepared, entries=entries, title="机动车商业保险保险单 X"
    )
    assert info(bundle) == {
        "/Title": "机动车商业保险保险单 X（档案件）",
        "/Subject": POLICY_NO,
        "/Producer": PRODUCER,
        "/IssuanceTemplates": TEMPLATES,
    }
    assert opened(bundle).Root.PageMode == pikepdf.Name.UseOutlines


def test_archive_copy_without_images_is_the_customer_copy_retitled():
    customer = customer_pdf()
    bundle = archive_copy(customer, images=None, entries=[], title="T")
    assert marks(bundle) == marks(customer)
    assert outline(bundle) == CUSTOMER_OUTLINE
    assert info(bundle)["/Title"] == "T（档案件）"


def test_customer_streams_are_copied_not_recompressed(images):
    result, entries = images
    customer = customer_pdf()
    first = archive_copy(customer, images=result.prepared, entries=entries, title="T")
    assert b"CUSTOMER-PAGE" not in first  # the customer's page streams stay compressed as they were
    assert marks(first)[: len(marks(customer))] == marks(customer)


def test_pdf_version_is_at_least_the_newest_input(tmp_path):
    """A PDF scan of version 1.7 behind a 1.6 customer copy: the update raises the catalog's /Version
    (an incremental update cannot change the header)."""
    scan = tmp_path / "scan.pdf"
    plain = opened(document_pdf(["SCAN-PAGE"], outline=[], info={}))
    plain.save(scan, force_version="1.7")
    result, entries = take([("other", "扫描件", scan)])
    customer = io.BytesIO()
    opened(customer_pdf()).save(customer, force_version="1.6")
    bundle = archive_copy(customer.getvalue(), images=result.prepared, entries=entries, title="T")
    assert bundle.startswith(b"%PDF-1.6")
    assert opened(bundle).Root.Version == pikepdf.Name("/1.7")
    assert marks(bundle)[-1] == "SCAN-PAGE"
    same = archive_copy(
        customer_pdf(),
        images=take([("id_front", None, IMAGES / "id_front-1.jpg")])[0].prepared,
        entries=take([("id_front", None, IMAGES / "id_front-1.jpg")])[1],
        title="T",
    )
    assert "/Version" not in opened(same).Root  # pictures need nothing newer


def test_archive_copy_is_an_update_of_the_customer_copy(images):
    """The customer's bytes are the archive copy's prefix, and the update is a valid PDF on its own
    reading: qpdf checks it without a warning."""
    result, entries = images
    customer = customer_pdf()
    bundle = archive_copy(customer, images=result.prepared, entries=entries, title="T")
    assert bundle.startswith(customer)
    with opened(bundle) as pdf:
        assert pdf.check_pdf_syntax() == []
        assert len(pdf.pages) == 3 + len(result.pages)


# --- reading the document an update extends ---------------------------------------------------------


def qpdf_written(data: bytes) -> bytes:
    """``data`` as ``save_pdf`` writes it (qpdf): the shape of every copy the pipeline makes."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return save_pdf(pdf)


def test_the_copies_the_pipeline_writes_are_read_straight_from_their_bytes():
    for data in (customer_pdf(), qpdf_written(customer_pdf())):
        plain = PlainPdf.read(data)
        assert plain is not None  # the fast reading is the one taken
        by_pypdf = PypdfObjects(PdfReader(io.BytesIO(data)))
        for source in (plain, by_pypdf):
            catalog = source.dictionary(source.trailer["/Root"])
            assert catalog["/Type"] == b"/Catalog"
            tree = source.dictionary(catalog["/Pages"])
            assert int(tree["/Count"]) == 3
            assert re.findall(rb"(\d+) 0 R", tree["/Kids"]) == re.findall(
                rb"(\d+) 0 R", by_pypdf.dictionary(catalog["/Pages"])["/Kids"]
            )
        assert plain.first_free == by_pypdf.first_free
        ids = by_pypdf.reader.trailer.get("/ID")
        if ids is None:
            assert plain.ids is None
        else:  # the same strings, the first kept as qpdf wrote it
            assert plain.ids is not None
            assert bytes.fromhex(plain.ids[0][1:-1].decode()) == ids[0].original_bytes
            assert plain.ids[1] == ids[1].original_bytes


def test_an_archive_copy_read_by_pypdf_instead_is_the_same_document(images, monkeypatch):
    result, entries = images
    customer = qpdf_written(customer_pdf())
    fast = archive_copy(customer, images=result.prepared, entries=entries, title="机动车商业保险保险单 X")
    monkeypatch.setattr(PlainPdf, "read", classmethod(lambda cls, data: None))
    slow = archive_copy(customer, images=result.prepared, entries=entries, title="机动车商业保险保险单 X")
    assert fast != slow  # entries are spelled as qpdf wrote them, not as pypdf writes them again
    assert marks(fast) == marks(slow) == [*marks(customer), "image", "image", "image", "image"]
    assert outline(fast) == outline(slow)
    assert info(fast) == info(slow)
    assert info(fast)["/IssuanceTemplates"] == TEMPLATES


def test_other_shapes_of_file_are_left_to_pypdf(images):
    result, entries = images
    customer = qpdf_written(customer_pdf())
    bundle = archive_copy(customer, images=result.prepared, entries=entries, title="T")
    with pikepdf.open(io.BytesIO(customer)) as pdf:
        streamed = io.BytesIO()
        pdf.save(streamed, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    assert PlainPdf.read(streamed.getvalue()) is None  # a cross-reference stream
    assert PlainPdf.read(customer[:-200]) is None
    assert PlainPdf.read(b"not a PDF at all") is None
    # and pypdf reads them all: supplements, streamed copies
    late, late_entries = take([("other", "补充件", IMAGES / "vehicle_license-1.jpg")])
    assert marks(add_images(bundle, images=late.prepared, entries=late_entries))[-1] == "image"
    again = archive_copy(streamed.getvalue(), images=result.prepared, entries=entries, title="T")
    assert marks(again) == marks(bundle)


def test_a_copy_with_updates_of_our_own_kind_is_read_straight_too(images):
    """Image pages, then a supplement: three revisions with classic tables, each object read where its
    newest revision put it, as pypdf reads it."""
    result, entries = images
    customer = qpdf_written(customer_pdf())
    bundle = archive_copy(customer, images=result.prepared, entries=entries, title="档案件 T")
    late, late_entries = take([("other", "补充件", IMAGES / "vehicle_license-1.jpg")])
    supplement = add_images(bundle, images=late.prepared, entries=late_entries)
    for data in (bundle, supplement):
        plain = PlainPdf.read(data)
        assert plain is not None
        by_pypdf = PypdfObjects(PdfReader(io.BytesIO(data)))
        assert plain.trailer["/Root"] == by_pypdf.trailer["/Root"]
        catalog = plain.dictionary(plain.trailer["/Root"])
        assert catalog == by_pypdf.dictionary(plain.trailer["/Root"])  # the newest catalog, not the first
        tree = plain.dictionary(catalog["/Pages"])
        assert int(tree["/Count"]) == int(by_pypdf.dictionary(catalog["/Pages"])["/Count"]) > 3
        assert plain.dictionary(plain.trailer["/Info"])["/Title"] == text_string("档案件 T（档案件）")
        assert plain.first_free == by_pypdf.first_free
    # a loop of /Prev is not followed
    table = int(bundle.rsplit(b"startxref", 1)[1].split()[0])
    prev = re.search(rb"/Prev (\d+)", bundle[table:])
    looped = bundle[: table + prev.start(1)] + b"%*d" % (len(prev[1]), table) + bundle[table + prev.end(1) :]
    assert PlainPdf.read(looped) is None


def test_a_table_that_points_wrong_is_read_by_pypdf_which_mends_it(images):
    """A customer copy whose cross-reference row for its catalog is off by a few bytes: the straight
    reading finds no object there and gives way to pypdf's lenient one, which finds it."""
    result, entries = images
    customer = qpdf_written(customer_pdf())
    plain = PlainPdf.read(customer)
    assert plain is not None
    number = int(plain.trailer["/Root"].split()[0])
    table = int(customer.rsplit(b"startxref", 1)[1].split()[0])
    row = customer.index(b"\n", customer.index(b"\n", table) + 1) + 1 + 20 * number
    offset = int(customer[row : row + 10])
    broken = customer[:row] + b"%010d" % (offset + 3) + customer[row + 10 :]
    with pytest.raises(ValueError, match="not where the table says"):
        PlainPdf.read(broken).dictionary(plain.trailer["/Root"])
    bundle = archive_copy(broken, images=result.prepared, entries=entries, title="T")
    assert marks(bundle) == [*marks(customer), "image", "image", "image", "image"]
    assert outline(bundle)[: len(CUSTOMER_OUTLINE)] == CUSTOMER_OUTLINE


def test_a_dictionary_is_cut_into_its_entries_as_written():
    document = NewDocument()
    body = (
        b"<</Type/Catalog /Title (a\\)b(c)d\\\\) /Kids [1 0 R [2 (x]>>) ] <</Deep <</A 1>> >>]"
        b" % a comment >>\n /Hex <ab cd> /Ref 3 0 R /No false /Neg -1.5 /Empty () /Name/X#20Y>>"
    )
    root = document.add(body)
    plain = PlainPdf.read(document.to_bytes(root=root))
    assert plain is not None
    assert plain.dictionary(b"1 0 R") == {
        "/Type": b"/Catalog",
        "/Title": b"(a\\)b(c)d\\\\)",
        "/Kids": b"[1 0 R [2 (x]>>) ] <</Deep <</A 1>> >>]",
        "/Hex": b"<ab cd>",
        "/Ref": b"3 0 R",
        "/No": b"false",
        "/Neg": b"-1.5",
        "/Empty": b"()",
        "/Name": b"/X#20Y",
    }
    with pytest.raises(ValueError):
        plain.dictionary(b"7 0 R")  # not in the table
    unclosed = NewDocument()
    unclosed.add(b"<</Title (never closed>>")
    with pytest.raises(ValueError):
        PlainPdf.read(unclosed.to_bytes(root=root)).dictionary(b"1 0 R")


# --- endorsements and supplements ------------------------------------------------------------------


def test_append_endorsement_adds_its_pages_and_one_bookmark(images):
    result, entries = images
    bundle = archive_copy(customer_pdf(), images=result.prepared, entries=entries, title="T")
    endorsed = append_endorsement(bundle, endorsement_pdf(), endorsement_no="EAC2026000001", title="T2")
    assert marks(endorsed)[7:] == ["ENDORSEMENT-PAGE-1", "ENDORSEMENT-PAGE-2"]
    assert marks(endorsed)[:7] == marks(bundle)
    assert page_count(endorsed) == 9
    # the endorsement's own bookmark (批单正文) stays behind
    assert outline(endorsed) == [*outline(bundle), (0, "批单 EAC2026000001", 7)]
    assert info(endorsed) == {
        "/Title": "T2",
        "/Subject": POLICY_NO,
        "/Producer": PRODUCER,
        "/IssuanceTemplates": TEMPLATES,
    }
    endorsement = opened(endorsement_pdf())
    after = opened(endorsed)
    for i, page in enumerate(endorsement.pages):
        assert raw_streams(after.pages[7 + i]) == raw_streams(page)


def test_customer_copy_after_two_endorsements():
    once = append_endorsement(customer_pdf(), endorsement_pdf(), endorsement_no="E1", title="T")
    twice = append_endorsement(once, endorsement_pdf(), endorsement_no="E2", title="T")
    assert page_count(twice) == 7
    assert outline(twice) == [*CUSTOMER_OUTLINE, (0, "批单 E1", 3), (0, "批单 E2", 5)]


def test_add_images_appends_a_supplement_with_its_own_bookmarks(images, tmp_path):
    result, entries = images
    bundle = archive_copy(
        customer_pdf(), images=result.prepared, entries=entries, title="机动车商业保险保险单 X"
    )
    late, late_entries = take(
        [("other", "补充件", IMAGES / "vehicle_license-1.jpg"), ("id_back", None, IMAGES / "id_back-2.jpg")]
    )
    supplemented = add_images(bundle, images=late.prepared, entries=late_entries)
    assert marks(supplemented) == [*marks(bundle), "image", "image"]
    assert outline(supplemented) == [
        *outline(bundle),
        (0, "补充影像资料", 7),
        (1, "其他", 7),  # a supplement's bookmark names the kind only
        (1, "身份证国徽面", 8),
    ]
    assert info(supplemented) == info(bundle)  # title, subject and template versions kept
    before, after = opened(bundle), opened(supplemented)
    for i, page in enumerate(before.pages):
        assert raw_streams(after.pages[i]) == raw_streams(page)


def test_page_count():
    assert page_count(customer_pdf()) == 3
    assert page_count(endorsement_pdf()) == 2


def test_save_pdf_writes_each_document_whole_over_the_threads_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """``save_pdf`` writes over one file per thread: a smaller document after a larger one must come back
    without the larger one's tail, on every thread, after a save that failed halfway, and after the file
    was emptied for being large."""

    def made(pages: int, text: str) -> pikepdf.Pdf:
        pdf = pikepdf.new()
        for n in range(pages):
            page = pdf.add_blank_page(page_size=(595, 842))
            page.Contents = pdf.make_stream(f"BT /F1 12 Tf 72 720 Td ({text} {n}) Tj ET".encode() * 50)
        return pdf

    def by_bytes_io(pdf: pikepdf.Pdf) -> bytes:
        out = io.BytesIO()
        pdf.save(out, **SAVE_OPTIONS)
        return out.getvalue()

    large, small = made(40, "LARGE"), made(1, "small")
    expected = {id(large): by_bytes_io(large), id(small): by_bytes_io(small)}
    assert len(expected[id(large)]) > 5 * len(expected[id(small)])

    def check() -> None:
        for pdf in (large, small, small, large, small):
            assert save_pdf(pdf) == expected[id(pdf)]

    check()
    errors: list[BaseException] = []
    threads = [threading.Thread(target=lambda: _catch(check, errors)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    class Broken(Exception):
        pass

    def breaks(file: io.RawIOBase, **options: object) -> None:
        file.write(b"half a document " * 10_000)
        raise Broken

    broken = made(2, "broken")
    monkeypatch.setattr(broken, "save", breaks, raising=False)
    with pytest.raises(Broken):
        save_pdf(broken)
    check()
    # the large one is emptied after use
    monkeypatch.setattr(saving, "SAVE_FILE_KEEP", len(expected[id(small)]) + 1)
    check()


def _catch(work: Callable[[], None], errors: list[BaseException]) -> None:
    try:
        work()
    except BaseException as e:  # handed to the test's thread
        errors.append(e)


def test_a_part_that_extends_another_is_hashed_from_where_that_one_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The archive copy begins with the customer copy's bytes: its SHA-256 goes on from the customer
    copy's over the added bytes only, and is the SHA-256 of its bytes all the same; a part that does
    not begin so is hashed whole."""
    customer = Part("customer.pdf", b"%PDF-1.6 customer " * 50_000)
    update = b"\n% the image pages " * 20_000
    assert customer.sha256 == hashlib.sha256(customer.data).hexdigest()
    fed: list[int] = []
    real = hashlib.sha256

    class Counting:
        def __init__(self, data: bytes = b"") -> None:
            self._h = real(data)
            fed.append(len(data))

        def update(self, data: bytes) -> None:
            fed.append(len(data))
            self._h.update(data)

        def copy(self) -> Any:
            return self._h.copy()

        def hexdigest(self) -> str:
            return self._h.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", Counting)
    archive = Part("bundle.pdf", customer.data + update, extends=customer)
    assert archive.sha256 == real(customer.data + update).hexdigest()
    assert archive.hashed.data is archive.data  # what the store takes without hashing again
    assert fed == []  # not hashed whole: the customer copy's digest went on over the update
    other = Part("bundle.pdf", b"%PDF-1.6 another " + update, extends=customer)
    assert other.sha256 == real(other.data).hexdigest()
    assert fed == [len(other.data)]
