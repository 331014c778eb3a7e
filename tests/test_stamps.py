"""Seals: the registry, the drawn and scanned seal images, and stamping real PDFs, checked by pixels.

Documents come from the real pipeline (LibreOffice via the session's ``maker``) or are built with pypdf;
pages are rendered with poppler and measured. Nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from PIL import Image, ImageChops
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, read_object

from core.errors import IssuanceError, SealAnchorMissing, SealRegistryError
from core.records import parse_record
from stamps import (
    cross_page_groups,
    draw_seal,
    find_seals,
    load_seal_registry,
    name_layout,
    stamp_pdf,
    stamping,
)
from stamps.drawing import clean_scan
from stamps.pdfupdate import NewDocument, text_string
from stamps.registry import Seal
from stamps.sealed_pages import SealedPages
from stamps.specimen import make_specimen_scan
from stamps.stamping import pikepdf_frames, seal_document
from usecases.render import render_batch

DPI = 150
PX_PER_MM = DPI / 25.4


# --- helpers ---------------------------------------------------------------------------------------


def render(
    pdf: bytes, tmp: Path, *, dpi: int = DPI, first: int = 1, last: int | None = None
) -> list[Image.Image]:
    """Pages as RGB images, the way a reader sees them (poppler applies /Rotate)."""
    src = tmp / f"render-{len(list(tmp.iterdir()))}.pdf"
    src.write_bytes(pdf)
    args = ["pdftoppm", "-r", str(dpi), "-f", str(first)] + (["-l", str(last)] if last else [])
    subprocess.run([*args, str(src), str(tmp / src.stem)], check=True, timeout=120)
    files = sorted(tmp.glob(f"{src.stem}-*.ppm"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return [Image.open(f).convert("RGB") for f in files]


def red(image: Image.Image) -> np.ndarray:
    """Seal ink: strongly red pixels (black text, grey shading and white paper are not)."""
    a = np.asarray(image, dtype=np.int16)
    return (a[..., 0] - a[..., 1] > 90) & (a[..., 0] > 120)


def make_pdf(sizes: list[tuple[float, float, int]]) -> bytes:
    """A PDF with one page per (width, height, rotate), each with a frame and its number in Helvetica."""
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
    for number, (w, h, rotate) in enumerate(sizes, start=1):
        page = writer.add_blank_page(w, h)
        stream = DecodedStreamObject()
        stream.set_data(
            f"0.5 w 36 36 {w - 72} {h - 72} re S BT /F1 24 Tf 60 {h - 90} Td (Page {number}) Tj ET".encode()
        )
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        if rotate:
            page.rotate(rotate)
    buf = BytesIO()
    writer.write(buf)
    return buf.getvalue()


A4 = (595.28, 841.89, 0)


@pytest.fixture(scope="module")
def seals():
    return load_seal_registry()


@pytest.fixture(scope="module")
def beijing(seals):
    return seals.seal_for(branch_code="110105", document="policy")


@pytest.fixture(scope="module")
def real_pdfs(synth_dir, maker, tmp_path_factory) -> dict[str, bytes]:
    """A real policy (schedule + clauses) and a real endorsement, from LibreOffice."""
    out = tmp_path_factory.mktemp("seal-real")
    report = render_batch(synth_dir / "batch.jsonl", out_dir=out, maker=maker, workers=2)
    assert report.counts()["rejected"] == 0, report.as_json()
    policies = sorted(out.glob("*/policy.pdf"), key=lambda p: len(PdfReader(p).pages))
    endorsement = next(out.glob("*/endorsement-*.pdf"))
    return {"policy": policies[-1].read_bytes(), "endorsement": endorsement.read_bytes()}


# --- registry --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("branch", "document", "expected"),
    [
        ("110105", "policy", "beijing-policy@v2"),  # "11" beats company-wide; v2 replaced v1
        ("110105", "endorsement", "beijing-policy@v2"),
        ("440305", "policy", "shenzhen-nanshan-policy@v1"),  # "440305" beats "4403"
        ("440305", "endorsement", "shenzhen-business@v1"),  # Nanshan's seal does not sign endorsements
        ("440303", "policy", "shenzhen-business@v1"),
        ("310101", "policy", "company-policy@v1"),  # no branch seal: the company-wide fallback
        ("310101", "endorsement", "company-business@v1"),
    ],
)
def test_seal_for_longest_branch_prefix_then_company(seals, branch, document, expected):
    assert seals.seal_for(branch_code=branch, document=document).ref == expected


def test_registry_keeps_old_versions_for_checks(seals):
    old = seals.get("beijing-policy", 1)
    assert old.serial is None and seals.get("beijing-policy").serial == "1101050012345"
    assert {s.ref for s in seals.current} >= {"beijing-policy@v2", "shenzhen-business@v1"}
    assert "beijing-policy@v1" not in {s.ref for s in seals.current}
    long_name = seals.get("shenzhen-nanshan-policy").owner
    assert len(long_name) >= 20
    scanned = seals.get("shenzhen-business")
    assert scanned.scan is not None and scanned.scan_sha256.startswith("sha256:")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[[seal]]\nid='a'\nversion=1\nowner='甲'\npurpose='乙'\n[[seal]]\nid='a'\nversion=1\nowner='甲'\npurpose='乙'",
            "listed twice",
        ),
        ("[[seal]]\nid='a'\nversion=1\nowner='甲'\npurpose='乙'\nbranches=['11']", "no company-wide seal"),
        (
            "[[seal]]\nid='a'\nversion=1\nowner='甲'\npurpose='乙'\n[[seal]]\nid='b'\nversion=1\nowner='甲'\npurpose='乙'",
            "both sign",
        ),
        ("[[seal]]\nid='a'\nversion=0\nowner='甲'\npurpose='乙'", "seal a: version"),
        ("[[seal]]\nid='a'\nversion=1\nowner='甲'\npurpose='乙'\nscan='nope.png'", "seal a: scan"),
        ("[[seal]]\nid='a'\nversion=1\nowner='甲'\npurpose='乙'\ncolor=[1,2,3]", "unknown field(s) color"),
        ("[[seal]]\nid='a'\nversion=1\nowner='甲'\npurpose='乙'\ndocuments=['invoice']", "invoice"),
        ("[[seal]\nid='a'", "not valid TOML"),
    ],
)
def test_broken_registry_is_refused_naming_the_seal(tmp_path, toml, message):
    path = tmp_path / "seals.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(SealRegistryError, match=re.escape(message)):
        load_seal_registry(path)


def test_every_registered_seal_draws_at_its_physical_size(seals):
    for seal in seals.seals:
        image = seal.image(dpi=600)
        assert image.mode == "RGBA"
        assert max(image.size) == round(seal.diameter_mm / 25.4 * 600)  # ≥ 600 dpi at 42 mm: 992 px


# --- drawing ---------------------------------------------------------------------------------------

NAMES = {
    8: "示范财产保险公司",
    12: "示范财产保险股份有限公司",
    17: "示范财产保险股份有限公司北京分公司",
    20: "示范财产保险股份有限公司深圳市南山支公司",
    24: "示范财产保险股份有限公司深圳市南山区科技园支公司",
}


@pytest.mark.parametrize("count", sorted(NAMES))
def test_owner_name_glyphs_evenly_spaced_apart_and_clear_of_the_ring(count):
    name = NAMES[count]
    assert len(name) == count
    dpi = 600
    image = draw_seal(owner=name, purpose="保单专用章", dpi=dpi)
    alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255
    rgb = np.asarray(image.convert("RGB"))
    assert (rgb[alpha > 0.5] == (200, 16, 32)).all()  # one colour; the paper is transparent
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
    px = dpi / 25.4
    layout = name_layout(count, diameter_mm=42)
    c = (image.width - 1) / 2
    ys, xs = np.mgrid[0 : image.height, 0 : image.width]
    radius_mm = np.hypot(xs - c, ys - c) / px
    angle = np.degrees(np.arctan2(xs - c, c - ys))  # 0 at the top, clockwise positive
    ring_inner = 21 - 1.2

    # The ring is there, 1.2 mm thick: ink all round at 20.4 mm, none just inside it below the text.
    assert alpha[(radius_mm > 20.2) & (radius_mm < 20.6)].mean() > 0.95
    # Text stays clear of the ring: no ink in the 0.4 mm just inside the ring, all along the name.
    near_ring = (radius_mm > ring_inner - 0.5) & (radius_mm < ring_inner - 0.1)
    gap = near_ring & (np.abs(angle) < layout.span / 2 + 5)
    assert alpha[gap].max() < 0.05
    assert layout.radius_top < ring_inner - 0.5  # the em boxes too

    band = (radius_mm > layout.radius_top - layout.glyph_height) & (radius_mm < layout.radius_top)
    step = layout.angles[1] - layout.angles[0]
    # Neighbours never touch: the ray halfway between two glyphs crosses no ink.
    for a, b in zip(layout.angles, layout.angles[1:], strict=False):
        mid = (a + b) / 2
        ray = band & (np.abs(angle - mid) < 0.15)
        assert alpha[ray].max() < 0.05, f"glyphs at {a:.1f}° and {b:.1f}° touch"
    # Every glyph has ink in its own sector, and the sectors' ink centres are evenly spaced.
    centres = []
    for a in layout.angles:
        sector = band & (np.abs(angle - a) < step / 2)
        weight = alpha[sector]
        assert weight.sum() > 50
        centres.append(float((angle[sector] * weight).sum() / weight.sum()))
    spacing = np.diff(centres)
    assert np.all(np.abs(spacing - step) < 0.3 * step), spacing
    assert abs(np.mean(centres)) < 0.1 * step  # symmetric about the top


def test_span_grows_with_the_name_then_glyphs_shrink():
    spans = {n: name_layout(n, diameter_mm=42).span for n in NAMES}
    heights = {n: name_layout(n, diameter_mm=42).glyph_height for n in NAMES}
    assert spans[8] < spans[12] <= 240.0 + 1e-9
    assert spans[24] == pytest.approx(240.0)
    assert heights[24] < heights[17] < heights[8]
    assert heights[24] > 3.0  # still legible on a 42 mm seal
    assert name_layout(8, diameter_mm=42).glyph_width == pytest.approx(0.7 * heights[8])


def test_star_and_serial():
    plain = np.asarray(draw_seal(owner=NAMES[12], purpose="保单专用章").getchannel("A"), dtype=np.int32)
    serial = np.asarray(
        draw_seal(owner=NAMES[12], purpose="保单专用章", serial="1101050012345").getchannel("A")
    )
    c = plain.shape[0] // 2
    px = 600 / 25.4
    assert plain[c - round(1 * px), c] > 200  # the star's body, at the centre
    # The serial adds ink only low on the seal, under the purpose text, left and right of the middle.
    added = (serial.astype(np.int32) - plain) > 128
    ys, xs = np.nonzero(added)
    assert ys.min() > c + 14 * px and ys.max() < c + 20.4 * px
    assert xs.min() < c - 5 * px and xs.max() > c + 5 * px


def test_scan_paper_becomes_transparent_and_ink_red(tmp_path):
    scan = make_specimen_scan(owner=NAMES[17], purpose="业务专用章", seed=3, turn_degrees=-3)
    corner = np.asarray(scan)[:20, :20]
    assert (corner > 200).all()  # off-white paper with grain, as scanned
    ink = clean_scan(scan)
    alpha = np.asarray(ink.getchannel("A"))
    h, w = alpha.shape
    for y, x in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)):
        assert alpha[y, x] == 0
    assert h < scan.height - 100 and w < scan.width - 100  # cropped to the ink
    assert abs(h - w) < 0.05 * w  # a round seal turned a little: still about square
    rgb = np.asarray(ink.convert("RGB"))
    assert (rgb[alpha > 128] == (200, 16, 32)).all()  # normalised to seal red
    assert 0.08 < (alpha > 128).mean() < 0.5  # ring, glyphs and star, not the paper
    # The registry's scanned seal is cleaned the same way.
    registered = np.asarray(load_seal_registry().get("shenzhen-business").image(300).getchannel("A"))
    assert registered[0, 0] == 0 and registered[-1, -1] == 0 and registered.max() == 255


# --- stamping real documents -------------------------------------------------------------------------


def anchor_centre_pt(pdf: bytes, page: int, anchor: str = "保险人（盖章）") -> tuple[float, float]:
    """The centre of "盖章" from pypdf's text positions: an oracle independent of the stamper's poppler.

    LibreOffice shows a run in one operator (the pipeline's documents split the signature line into
    "保险人（", "盖章", "）" around its seal marks); every glyph in it is one em wide.
    """
    runs = []

    def visit(text, cm, tm, font, size):
        if "盖章" in text:
            runs.append((text, cm, tm, size))

    PdfReader(BytesIO(pdf)).pages[page].extract_text(visitor_text=visit)
    text, cm, tm, size = runs[-1]
    em = size * tm[0] * cm[0]
    start = tm[4] * cm[0] + cm[4] + em * text.rindex("盖章")
    baseline = tm[5] * cm[3] + cm[5]
    return start + em, baseline + 0.38 * em  # middle of two ems; the ideographic em box's middle


def test_company_seal_42mm_centred_on_the_signature_line(real_pdfs, beijing, tmp_path):
    policy = real_pdfs["policy"]
    result = stamp_pdf(
        policy, seal=beijing, anchor="保险人（盖章）", anchor_pages=range(0, 1), cross_page=False
    )
    assert result.anchor_page == 0 and result.groups == ()
    page = render(result.pdf, tmp_path, first=1, last=1)[0]
    ys, xs = np.nonzero(red(page))
    width_mm = (xs.max() - xs.min() + 1) / PX_PER_MM
    height_mm = (ys.max() - ys.min() + 1) / PX_PER_MM
    assert width_mm == pytest.approx(42, abs=1) and height_mm == pytest.approx(42, abs=1)
    centre_px = ((xs.max() + xs.min()) / 2, (ys.max() + ys.min()) / 2)
    x_pt, y_pt = anchor_centre_pt(policy, 0)
    expected_px = (x_pt * DPI / 72, (841.89 - y_pt) * DPI / 72)
    off_mm = math.dist(centre_px, expected_px) / PX_PER_MM
    assert off_mm < 2.0, f"seal centre {off_mm:.1f} mm from 盖章"


def test_anchor_on_rotated_pages_lands_on_the_visual_anchor(real_pdfs, beijing, tmp_path):
    policy = real_pdfs["policy"]
    x_pt, y_pt = anchor_centre_pt(policy, 0)
    w, h = 595.28, 841.89
    for rotate in (90, 180, 270):
        writer = PdfWriter()
        writer.append(PdfReader(BytesIO(policy)), pages=(0, 1))
        writer.pages[0].rotate(rotate)
        buf = BytesIO()
        writer.write(buf)
        result = stamp_pdf(buf.getvalue(), seal=beijing, cross_page=False)
        page = render(result.pdf, tmp_path, first=1, last=1)[0]
        ys, xs = np.nonzero(red(page))
        centre_pt = ((xs.max() + xs.min()) / 2 * 72 / DPI, (ys.max() + ys.min()) / 2 * 72 / DPI)
        # Where "盖章" is seen after turning the page clockwise (origin top-left, pt).
        top = h - y_pt
        expected = {90: (h - top, x_pt), 180: (w - x_pt, h - top), 270: (top, w - x_pt)}[rotate]
        assert math.dist(centre_pt, expected) * 25.4 / 72 < 2.0, (rotate, centre_pt, expected)
        assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) < 0.05 * (xs.max() - xs.min())


def test_strip_on_every_page_of_schedule_and_clauses(real_pdfs, beijing, tmp_path):
    policy = real_pdfs["policy"]
    count = len(PdfReader(BytesIO(policy)).pages)
    assert count >= 6
    result = stamp_pdf(policy, seal=beijing)
    assert result.groups == cross_page_groups(count)
    pages = render(result.pdf, tmp_path, dpi=50)
    strip_px = 42 / count * 50 / 25.4
    for number, page in enumerate(pages, start=1):
        ink = red(page)
        edge = ink[:, page.width - math.ceil(strip_px) - 1 :]
        assert edge.sum() > 3, f"page {number} has no strip"
        ys = np.nonzero(edge)[0]
        assert abs((ys.min() + ys.max()) / 2 - page.height / 2) < 42 * 50 / 25.4 / 2  # around the middle
        assert (
            ink[:, : page.width - math.ceil(strip_px) - 2].sum() == 0 or number == 1
        )  # only page 1 has more
    assert find_seals(result.pdf, seal=beijing).ok


def test_seal_image_stored_once_and_file_grows_little(real_pdfs, beijing):
    policy = real_pdfs["policy"]
    result = stamp_pdf(policy, seal=beijing)
    assert result.pdf.startswith(policy)  # an incremental update: the unsealed file is untouched inside
    reader = PdfReader(BytesIO(result.pdf))
    images = set()
    for page in reader.pages:
        xobjects = page["/Resources"].get("/XObject", {})
        for name in xobjects:
            ref = xobjects.raw_get(name)
            if xobjects[name].get("/Subtype") == "/Image":
                images.add(ref.idnum)
    assert len(images) == 1  # the company seal and all 18 strips draw one image
    image = reader.get_object(images.pop())
    # A one-bit stencil in Group 4, painted in the seal's colour: no colour image, no soft mask.
    assert image["/ImageMask"].value is True and "/SMask" not in image
    assert image["/Filter"] == "/CCITTFaxDecode" and image["/Width"] >= 992  # 600 dpi at 42 mm
    # pypdf decodes the stream on its own (its TIFF wrapper, our /DecodeParms): the 0 samples, which a
    # stencil paints under /Decode [0 1], are exactly the seal's ink.
    decoded = np.asarray(image.decode_as_image().convert("L")) < 128
    assert (decoded == np.asarray(beijing.stencil(600))).all()
    assert re.search(rb"[\d.]+ [\d.]+ [\d.]+ rg\n", reader.pages[3].get_contents().get_data())  # the colour
    before = PdfReader(BytesIO(policy))
    count = lambda r: sum(  # noqa: E731
        1 for n in range(1, int(r.trailer["/Size"])) if _is_image(r, n)
    )
    assert count(reader) == count(before) + 1  # one image, nothing per page
    assert len(result.pdf) <= 1.15 * len(policy)
    # Each page shows its window of the one image through a clip, not a cropped copy.
    content = reader.pages[3].get_contents().get_data()
    assert re.search(rb"re W n\n[-\d. ]+ cm\n/IssuanceSeal Do", content)


def test_sealed_real_documents_grow_at_most_15_percent(maker, records, seals):
    """The issue's limit: a sealed PDF is at most 15% larger than the unsealed one, with a drawn seal
    and with a scanned one. The one-page endorsement (~60 KB, most of it fonts) is the tight case: the
    seal may cost ~9 KB there, where the colour image with an 8-bit soft mask cost 18-40 KB."""
    policy, problems = parse_record(records["AUTO-COMM"])
    assert not problems
    endorsement, problems = parse_record(records["endorsement"])
    assert not problems and endorsement.policy_no == policy.policy_no  # the endorsement's own policy
    short, _ = parse_record(records["PA-ACC"])  # the shortest policy: schedule and one clause
    documents = {
        "endorsement": maker.endorsement_pdf(endorsement, policy),
        "policy": maker.policy_pdf(policy),
        "short policy": maker.policy_pdf(short),
    }
    assert all(d.seal is None for d in documents.values())  # this maker has no seals: unsealed
    assert documents["endorsement"].pages == 1 and documents["short policy"].pages >= 2
    drawn, scanned = seals.get("beijing-policy"), seals.get("shenzhen-business")
    assert drawn.scan is None and scanned.scan is not None
    for seal in (drawn, scanned):
        for name, document in documents.items():
            sealed = stamp_pdf(document.pdf, seal=seal)
            assert sealed.anchor_page == 0 and bool(sealed.groups) == (document.pages > 1)
            growth = len(sealed.pdf) / len(document.pdf) - 1
            assert growth <= 0.15, f"{name} ({document.pages} pages) sealed with {seal.ref}: +{growth:.1%}"


def _is_image(reader: PdfReader, number: int) -> bool:
    try:
        obj = reader.get_object(number)
    except Exception:  # free or unused object numbers
        return False
    return isinstance(obj, DictionaryObject) and obj.get("/Subtype") == "/Image"


def test_endorsement_gets_the_company_seal_and_no_strip(real_pdfs, seals, tmp_path):
    seal = seals.seal_for(branch_code="440305", document="endorsement")  # the scanned seal
    result = stamp_pdf(real_pdfs["endorsement"], seal=seal)
    assert result.groups == () and result.anchor_page == 0
    report = find_seals(result.pdf, seal=seal)
    assert report.ok, report.problems
    assert report.pages[0].company_seal and report.pages[0].strip_score is None


def test_missing_anchor_names_it(real_pdfs, beijing):
    with pytest.raises(SealAnchorMissing, match="保险人（盖章）") as caught:
        stamp_pdf(make_pdf([A4, A4]), seal=beijing, anchor="保险人（盖章）")
    assert caught.value.exit_code == 1
    # Searched on anchor_pages only: the schedule's anchor is on page 1, not 2.
    with pytest.raises(SealAnchorMissing):
        stamp_pdf(real_pdfs["policy"], seal=beijing, anchor_pages=range(1, 2))


def test_unreadable_pdf_is_a_project_error(beijing):
    with pytest.raises(IssuanceError, match="cannot read the PDF"):
        stamp_pdf(b"%PDF-1.4\nnot really", seal=beijing, anchor=None)


def test_damaged_startxref_is_rewritten_then_sealed(beijing):
    pdf = make_pdf([A4, A4])
    damaged = re.sub(rb"startxref\s+\d+", b"startxref\n99999", pdf)
    result = stamp_pdf(damaged, seal=beijing, anchor=None)
    assert not result.pdf.startswith(damaged) and result.groups == ((0, 2),)
    assert find_seals(result.pdf, seal=beijing, expect_company_seal=False).ok


def test_same_input_same_bytes(real_pdfs, beijing):
    a = stamp_pdf(real_pdfs["endorsement"], seal=beijing).pdf
    b = stamp_pdf(real_pdfs["endorsement"], seal=beijing).pdf
    assert a == b


# --- cross-page groups -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pages", "groups"),
    [
        (1, ()),
        (2, ((0, 2),)),
        (20, ((0, 20),)),
        (21, ((0, 21),)),  # a trailing single page joins the group
        (22, ((0, 20), (20, 22))),
        (40, ((0, 20), (20, 40))),
        (41, ((0, 20), (20, 41))),
    ],
)
def test_group_rule(pages, groups):
    assert cross_page_groups(pages) == groups


@pytest.mark.parametrize("count", [1, 2, 20, 21, 41])
def test_stamped_groups_reassemble(count, beijing, tmp_path):
    pdf = make_pdf([A4] * count)
    result = stamp_pdf(pdf, seal=beijing, anchor=None)
    assert result.groups == cross_page_groups(count)
    report = find_seals(result.pdf, seal=beijing, expect_company_seal=False)
    assert report.ok, report.problems
    assert all(p.strip for p in report.pages) == (count > 1)
    if count == 1:
        assert result.pdf == pdf  # nothing to add
        assert not red(render(result.pdf, tmp_path)[0]).any()
    else:
        # The thinnest strips (21 pages) still keep 2 mm of the seal each.
        widest_group = max(stop - start for start, stop in result.groups)
        assert 42 / widest_group >= 1.5


def test_landscape_and_rotated_pages_strip_on_the_visual_right_edge(beijing, tmp_path):
    pdf = make_pdf([A4, (841.89, 595.28, 0), (595.28, 841.89, 90), (595.28, 841.89, 270), A4])
    result = stamp_pdf(pdf, seal=beijing, anchor=None)
    pages = render(result.pdf, tmp_path)
    assert [p.width > p.height for p in pages] == [False, True, True, True, False]
    strip_px = 42 / 5 * PX_PER_MM
    for number, page in enumerate(pages, start=1):
        ys, xs = np.nonzero(red(page))
        assert xs.min() >= page.width - strip_px - 2, f"page {number}: ink away from the right edge"
        assert xs.max() >= page.width - 3
        assert abs((ys.min() + ys.max()) / 2 - page.height / 2) < 21 * PX_PER_MM
    # The strips reassemble upright: the seal is the same on every kind of page.
    report = find_seals(result.pdf, seal=beijing, expect_company_seal=False)
    assert report.ok, report.problems


def test_xref_stream_input_gets_an_xref_stream_update(beijing):
    pdf = _xref_stream_pdf(pages=3)
    assert len(PdfReader(BytesIO(pdf)).pages) == 3
    result = stamp_pdf(pdf, seal=beijing, anchor=None)
    update = result.pdf[len(pdf) :]
    assert b"/Type/XRef" in update and b"\nxref\n" not in update
    # The file's identity stays (first /ID string), the revision's changes (second).
    old_id, new_id = PdfReader(BytesIO(pdf)).trailer["/ID"], PdfReader(BytesIO(result.pdf)).trailer["/ID"]
    assert new_id[0] == old_id[0] and new_id[1] != old_id[1]
    report = find_seals(result.pdf, seal=beijing, expect_company_seal=False)
    assert report.ok, report.problems


def _understated_size_pdf() -> bytes:
    """A three-page PDF whose trailer claims /Size 3 though it holds objects up to 10 (some producers
    get /Size wrong; the cross-reference table's subsections still list every object)."""
    return re.sub(rb"/Size \d+", b"/Size 3", make_pdf([A4] * 3))


@pytest.mark.parametrize(
    "kind", ["policy", "endorsement", "xref stream", "sealed twice", "understated /Size"]
)
def test_sealed_pdf_reads_and_clones_without_warnings(kind, real_pdfs, beijing, caplog, tmp_path):
    """pypdf warned "Object count 164 exceeds defined trailer size 153" when cloning every sealed
    multi-page PDF: the strips shared one "q" stream, and pypdf's clone copies a stream once per
    /Contents array that lists it. And the update's /Size must cover the whole file: one more than the
    highest object number in any revision, whatever the original's trailer claimed."""
    pdf = {
        "policy": lambda: real_pdfs["policy"],
        "endorsement": lambda: real_pdfs["endorsement"],
        "xref stream": lambda: _xref_stream_pdf(pages=3),
        "sealed twice": lambda: stamp_pdf(real_pdfs["policy"], seal=beijing).pdf,  # a /Prev chain
        "understated /Size": _understated_size_pdf,
    }[kind]()
    anchor = "保险人（盖章）" if kind in ("policy", "endorsement") else None
    sealed = stamp_pdf(pdf, seal=beijing, anchor=anchor).pdf
    assert sealed.startswith(pdf)

    with caplog.at_level(logging.WARNING, logger="pypdf"):
        reader = PdfReader(BytesIO(sealed))
        numbers = {n for section in reader.xref.values() for n in section} | set(reader.xref_objStm)
        writer = PdfWriter(clone_from=reader)
        writer.write(BytesIO())
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("pypdf")]
    assert int(reader.trailer["/Size"]) == max(numbers) + 1
    assert len(reader.pages) == len(PdfReader(BytesIO(pdf)).pages)
    report = find_seals(sealed, seal=beijing, expect_company_seal=anchor is not None)
    assert report.ok, report.problems  # no new object shadowed an old one

    if shutil.which("qpdf") is None:
        return  # qpdf is a second opinion where it is installed, not a requirement
    path = tmp_path / "sealed.pdf"
    path.write_bytes(sealed)
    checked = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "WARNING" not in checked.stdout + checked.stderr, (
        checked.stdout + checked.stderr
    )


def _xref_stream_pdf(pages: int) -> bytes:
    """A minimal PDF 1.5 whose cross-reference section is a stream, written by hand."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(pages))
    objects.append(f"<</Type/Pages/Kids[{kids}]/Count {pages}>>".encode())
    for i in range(pages):
        content = b"0.5 w 36 36 523 770 re S"
        objects.append(f"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents {4 + 2 * i} 0 R>>".encode())
        objects.append(b"<</Length %d>>\nstream\n" % len(content) + content + b"\nendstream")
    out = bytearray(b"%PDF-1.5\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_number = len(objects) + 1
    offsets.append(len(out))
    rows = b"\x00\x00\x00\x00\x00\xff\xff" + b"".join(
        b"\x01" + o.to_bytes(4, "big") + b"\x00\x00" for o in offsets
    )
    out += (
        b"%d 0 obj\n<</Type/XRef/Size %d/W[1 4 2]/Root 1 0 R/ID[<0011><0011>]/Length %d>>\nstream\n"
        % (xref_number, xref_number + 1, len(rows))
        + rows
        + b"\nendstream\nendobj\n"
    )
    out += b"startxref\n%d\n%%%%EOF\n" % offsets[-1]
    return bytes(out)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PAC20260304028000124",
        "a (b) \\ c)",
        '{"a/b.docx": "sha256:0f"}',
        "机动车商业保险保险单",
        "é\t😀",
        "( (",
        "\\",
    ],
)
def test_text_strings_read_back_as_the_same_text(text: str, tmp_path: Path) -> None:
    """``text_string`` writes a PDF text string that pypdf and poppler read back as ``text``."""
    written = text_string(text)
    assert str(read_object(BytesIO(written + b" "), None)) == text  # type: ignore[arg-type]
    document = NewDocument()
    tree = document.reserve()
    page = document.add(b"<</Type/Page/Parent %d 0 R/MediaBox[0 0 100 100]>>" % tree.idnum)
    document.replace(tree, b"<</Type/Pages/Kids[%d 0 R]/Count 1>>" % page.idnum)
    root = document.add(b"<</Type/Catalog/Pages %d 0 R>>" % tree.idnum)
    info = document.add(b"<</Title " + written + b">>")
    path = tmp_path / "t.pdf"
    path.write_bytes(document.to_bytes(root=root, info=info))
    shown = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True).stdout.decode()
    if text.strip() and text.isprintable():  # pdfinfo prints the title on one line, trimmed
        title = re.search(r"^Title: +(.*)$", shown, re.M)
        assert title is not None and title.group(1) == text


def test_a_document_sealed_in_parts_is_the_document_sealed_whole(beijing, tmp_path):
    """The pipeline seals a policy's clause pages once for all policies that put them at the same place
    (``stamps.sealed_pages``) and then only the schedule's pages: put together, every page draws what
    sealing the whole document draws, with one stencil image."""
    sizes = [A4, (841.89, 595.28, 0), *[A4] * 20, (595.28, 841.89, 90), *[A4] * 3]  # two groups
    source = make_pdf(sizes)
    company_at = (0, (300.0, 200.0))

    whole = pikepdf.open(BytesIO(source))
    seal_document(whole, seal=beijing, company_at=company_at, cross_page=True)

    lead = 2  # the "schedule"
    clauses = pikepdf.open(BytesIO(source))
    frames = tuple(pikepdf_frames(clauses))
    sealed = SealedPages()
    groups = [clauses.pages[lead:20], clauses.pages[20:]]
    tail = sealed.tail("clauses", seal=beijing, lead=frames[:lead], groups=lambda: groups)
    assert tail.frames == frames and tail.starts == (0, 20 - lead)
    twice = sealed.tail(
        "clauses", seal=beijing, lead=frames[:lead], groups=lambda: pytest.fail("sealed again")
    )
    assert twice is tail and sealed.sealings == 1
    parts = pikepdf.open(BytesIO(source))
    del parts.pages[lead:]
    parts.pages.extend(tail.pdf.pages)
    objects = (parts.copy_foreign(tail.image), parts.copy_foreign(tail.gstate))
    seal_document(
        parts, seal=beijing, company_at=company_at, frames=tail.frames, pages=range(lead), objects=objects
    )

    def saved(pdf: pikepdf.Pdf) -> bytes:
        out = BytesIO()
        pdf.save(out)
        return out.getvalue()

    together = saved(parts)
    reopened = pikepdf.open(BytesIO(together))
    streams = [o for o in reopened.objects if isinstance(o, pikepdf.Stream)]
    assert sum(1 for o in streams if o.get("/ImageMask") is True) == 1
    expected, got = render(saved(whole), tmp_path, dpi=40), render(together, tmp_path, dpi=40)
    assert len(expected) == len(got) == len(sizes)
    for number, (a, b) in enumerate(zip(expected, got, strict=True), start=1):
        assert red(a).any(), f"page {number} has no seal"
        assert ImageChops.difference(a, b).getbbox() is None, f"page {number} differs"


def test_an_encoded_seal_is_kept_between_runs_and_used_only_when_sound(
    beijing, tmp_path, monkeypatch, caplog
):
    """A later run takes the kept encoding instead of drawing the seal again, byte for byte the same; a kept
    file that is spoilt, or was made from another version of the seal, is not taken: the seal is drawn
    again and the file written anew; a folder that cannot be written costs only the time."""
    kept = tmp_path / "seals"
    stamping.forget_encoded_seals()  # a fresh run each time below
    drawn = stamping.encoded_seal(beijing, kept=kept)
    (file,) = kept.iterdir()

    draws = []
    stencil = Seal.stencil

    def counted(seal, dpi=600):
        draws.append(seal.ref)
        return stencil(seal, dpi)

    monkeypatch.setattr(Seal, "stencil", counted)
    stamping.forget_encoded_seals()
    assert stamping.encoded_seal(beijing, kept=kept) == drawn
    assert draws == []  # kept: not drawn again

    original = file.read_bytes()
    for spoil in (lambda b: b[:-100], lambda b: b[:-1] + bytes([b[-1] ^ 1]), lambda b: b"not a seal"):
        file.write_bytes(spoil(original))
        stamping.forget_encoded_seals()
        assert stamping.encoded_seal(beijing, kept=kept) == drawn
        assert draws.pop() == beijing.ref  # not taken: drawn again
        assert file.read_bytes() == original  # and kept anew

    other = dataclasses.replace(beijing, version=beijing.version + 1, serial="1101050099999")
    stamping.forget_encoded_seals()
    made = stamping.encoded_seal(other, kept=kept)
    assert draws == [other.ref] and made.mask_data != drawn.mask_data
    assert len(list(kept.iterdir())) == 2

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    stamping.forget_encoded_seals()
    with caplog.at_level(logging.WARNING, logger="stamps.kept"):
        assert stamping.encoded_seal(beijing, kept=blocked) == drawn
    assert "not kept" in caplog.text
