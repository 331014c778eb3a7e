"""Image intake: every variant is generated here and the output page is rendered and compared by pixels.

After img2pdf's tests: a picture is drawn as four coloured quadrants (any turn or mirror of it is told
apart), saved in the variant under test, taken in, rendered with poppler's pdftoppm, and the rendered
picture box is compared with what the picture should look like upright on white.
"""

from __future__ import annotations

import io
import pickle
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFont, ImageOps, ImageStat
from PIL.PngImagePlugin import PngInfo
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, TextStringObject

from core.errors import RecordRejected
from core.records import IMAGE_KIND_LABELS
from pipeline import titles
from pipeline.images import ImageProblem, RecordImageError, image_problem
from pipeline.intake import MARGIN, ImageSource, IntakeResult, image_pages
from pipeline.titles import MIN_TITLE_PT, TITLE_FONT, TITLE_FONT_INDEX, TITLE_PT
from stamps.pdfupdate import NewDocument

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) needed")

POLICY_NO = "PDAA202611000001"
DPI = 60  # rendering resolution for comparisons: enough for quadrants, quick to render
RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 160, 60), (40, 60, 200), (240, 200, 40)


# --- making variants -------------------------------------------------------------------------------


def quadrants(
    size: tuple[int, int] = (240, 160), colours=(RED, GREEN, BLUE, YELLOW), mode="RGB"
) -> Image.Image:
    """Top left, top right, bottom left, bottom right in four colours."""
    w, h = size
    im = Image.new(mode, size)
    for (x, y), colour in zip([(0, 0), (1, 0), (0, 1), (1, 1)], colours, strict=True):
        im.paste(colour, (x * w // 2, y * h // 2, (x + 1) * w // 2, (y + 1) * h // 2))
    return im


def save(im: Image.Image, path: Path, fmt: str | None = None, **params) -> Path:
    im.save(path, fmt, **params)
    return path


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, whole segment) up to and including SOS, then (0, the rest of the file)."""
    out, pos = [], 2
    while True:
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append((marker, data[pos : pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:
            out.append((0, data[pos:]))
            return out


def without_metadata(data: bytes) -> bytes:
    """The source JPEG as intake promises to embed it: APP1, APP2, APP13 and COM segments cut out."""
    kept = [seg for marker, seg in jpeg_segments(data) if marker not in (0xE1, 0xE2, 0xED, 0xFE)]
    return b"\xff\xd8" + b"".join(kept)


def exif_with(orientation: int | None = None, *, gps: bool = False, text: str | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if text:
        exif[0x010F] = text  # Make
        exif[0x010E] = text  # ImageDescription
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (31.0, 14.0, 0.5), 3: "E", 4: (121.0, 28.0, 0.25)})
    return exif.tobytes()


def scan_pdf(path: Path, texts: list[str], *, javascript: bool = False, attachment: bool = False) -> Path:
    """A small 'scan' with real text in a standard font: a page that was rasterised would lose it."""
    writer = PdfWriter()
    for text in texts:
        page = writer.add_blank_page(595, 842)
        content = DecodedStreamObject()
        content.set_data(f"BT /F1 24 Tf 72 700 Td ({text}) Tj ET".encode())
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        page[NameObject("/Contents")] = writer._add_object(content)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
        )
    if javascript:  # a document-level script in the name tree, run on open
        action = DictionaryObject(
            {
                NameObject("/S"): NameObject("/JavaScript"),
                NameObject("/JS"): TextStringObject("app.alert(1);"),
            }
        )
        tree = DictionaryObject(
            {NameObject("/Names"): ArrayObject([TextStringObject("x"), writer._add_object(action)])}
        )
        writer.root_object[NameObject("/Names")] = DictionaryObject({NameObject("/JavaScript"): tree})
    if attachment:
        writer.add_attachment("note.txt", b"hidden")
    with path.open("wb") as fh:
        writer.write(fh)
    return path


# --- looking at the output -------------------------------------------------------------------------


def take(*paths: Path, kinds: list[str] | None = None) -> IntakeResult:
    kinds = kinds or ["id_front"] * len(paths)
    sources = [
        ImageSource(index=i, kind=k, label=None, path=p)
        for i, (k, p) in enumerate(zip(kinds, paths, strict=True))
    ]
    return image_pages(sources, policy_no=POLICY_NO)


def render(pdf: bytes, page: int, dpi: int = DPI) -> Image.Image:
    done = subprocess.run(
        ["pdftoppm", "-r", str(dpi), "-f", str(page), "-l", str(page), "-singlefile", "-png", "-"],
        input=pdf,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert b"Error" not in done.stderr, done.stderr  # poppler complains about anything malformed
    return Image.open(io.BytesIO(done.stdout)).convert("RGB")


def shown_picture(result: IntakeResult, page: int, dpi: int = DPI) -> Image.Image:
    """The picture as rendered on output page ``page`` (1-based), cropped to its box."""
    info = result.pages[page - 1]
    assert info.picture_box is not None
    x, y, w, h = info.picture_box
    page_h = info.page_size[1]
    k = dpi / 72
    box = (
        round(x * k) + 1,
        round((page_h - y - h) * k) + 1,
        round((x + w) * k) - 1,
        round((page_h - y) * k) - 1,
    )
    return render(result.pdf, page, dpi).crop(box)


def difference(shown: Image.Image, expected: Image.Image) -> float:
    """Mean absolute difference per channel (0-255) after scaling ``expected`` to ``shown``'s size."""
    expected = expected.convert("RGB").resize(shown.size, Image.Resampling.BILINEAR)
    return max(ImageStat.Stat(ImageChops.difference(shown, expected)).mean)


def assert_shows(result: IntakeResult, page: int, expected: Image.Image, tolerance: float = 8.0) -> None:
    shown = shown_picture(result, page)
    exp_w, exp_h = expected.size
    assert abs(shown.width / shown.height / (exp_w / exp_h) - 1) < 0.06, "aspect ratio or orientation differs"
    assert difference(shown, expected) < tolerance


# --- JPEG passthrough and orientation --------------------------------------------------------------


def test_plain_jpeg_is_embedded_without_reencoding(tmp_path):
    path = save(quadrants(), tmp_path / "plain.jpg", quality=90)
    source = path.read_bytes()
    result = take(path)
    (info,) = result.pages
    assert info.passthrough and info.encoding == "dct-passthrough"
    assert info.pixel_size == (240, 160)
    assert source in result.pdf  # nothing to cut: the whole file is the stream
    assert_shows(result, 1, quadrants())


def test_passthrough_cuts_only_metadata_segments(tmp_path):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description>PLANTED-XMP</rdf:Description></x:xmpmeta>'
    path = save(
        quadrants(),
        tmp_path / "meta.jpg",
        quality=90,
        exif=exif_with(1, gps=True, text="PLANTED-EXIF"),
        comment=b"PLANTED-COMMENT",
        xmp=xmp,
    )
    source = path.read_bytes()
    assert all(planted in source for planted in (b"PLANTED-EXIF", b"PLANTED-COMMENT", b"PLANTED-XMP"))
    result = take(path)
    assert result.pages[0].passthrough
    stream = without_metadata(source)
    assert stream in result.pdf  # DCT data byte for byte: no re-encode
    assert jpeg_segments(source)[-1][1] in result.pdf  # the entropy-coded data, unchanged
    for planted in (b"PLANTED", b"Exif\x00\x00", b"II*\x00", b"MM\x00*", b"http://ns.adobe"):
        assert planted not in result.pdf


def test_gps_exif_and_comment_never_reach_the_pdf_even_when_reencoded(tmp_path):
    cmyk = quadrants(
        mode="CMYK", colours=[(0, 200, 200, 0), (200, 0, 200, 0), (200, 200, 0, 0), (0, 0, 0, 60)]
    )
    jpeg = save(
        cmyk, tmp_path / "cmyk.jpg", exif=exif_with(6, gps=True, text="PLANTED-EXIF"), comment=b"PLANTED-C"
    )
    assert b"PLANTED-C" in jpeg.read_bytes() and b"PLANTED-EXIF" in jpeg.read_bytes()
    png_info = PngInfo()
    png_info.add_text("Comment", "PLANTED-PNG-TEXT")
    png = save(
        quadrants(), tmp_path / "text.png", pnginfo=png_info, exif=exif_with(1, gps=True, text="PLANTED-E2")
    )
    result = take(jpeg, png)
    assert [p.encoding for p in result.pages] == ["dct", "flate"]
    assert b"PLANTED-PNG-TEXT" in png.read_bytes()
    for planted in (b"PLANTED", b"Exif\x00\x00", b"II*\x00", b"MM\x00*"):
        assert planted not in result.pdf


# Orientation value → the transposition that stores an upright picture so that the tag turns it back.
STORED_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_shows_the_picture_upright(tmp_path, orientation):
    upright = quadrants()
    method = STORED_AS[orientation]
    stored = upright.transpose(method) if method is not None else upright
    path = save(stored, tmp_path / f"o{orientation}.jpg", quality=92, exif=exif_with(orientation))
    assert difference(upright, ImageOps.exif_transpose(Image.open(path))) < 6  # the variant is right
    result = take(path)
    assert result.pages[0].passthrough  # turned by the placement matrix, the DCT data untouched
    assert result.pages[0].page_size[0] > result.pages[0].page_size[1]  # wide upright → landscape page
    assert_shows(result, 1, upright)


def test_mpo_second_picture_is_left_out(tmp_path):
    """A phone JPEG with a depth map or preview after the first picture (MPO): only the first is a page."""
    hidden = quadrants(colours=[YELLOW, YELLOW, RED, RED])
    path = save(quadrants(), tmp_path / "phone.jpg", "MPO", save_all=True, append_images=[hidden], quality=90)
    assert Image.open(path).format == "MPO"
    second = path.read_bytes()[path.read_bytes().rindex(b"\xff\xd8\xff") :]
    result = take(path)
    assert result.pages[0].passthrough and len(result.pages) == 1
    assert second[-2000:] not in result.pdf and b"MPF" not in result.pdf
    assert_shows(result, 1, quadrants())


def test_jpeg_mentioning_pdf_in_a_comment_is_still_a_jpeg(tmp_path):
    path = save(quadrants(), tmp_path / "tricky.jpg", comment=b"%PDF-1.7 not really")
    assert take(path).pages[0].encoding == "dct-passthrough"
    assert image_problem(path) is None


def test_progressive_and_grey_jpegs_pass_through(tmp_path):
    progressive = save(quadrants(), tmp_path / "prog.jpg", quality=90, progressive=True)
    grey_picture = quadrants(mode="L", colours=[30, 90, 160, 220])
    grey = save(grey_picture, tmp_path / "grey.jpg", quality=90)
    result = take(progressive, grey)
    assert [p.encoding for p in result.pages] == ["dct-passthrough", "dct-passthrough"]
    assert progressive.read_bytes() in result.pdf and grey.read_bytes() in result.pdf
    assert b"/DeviceGray" in result.pdf
    assert_shows(result, 1, quadrants())
    assert_shows(result, 2, grey_picture)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    cmyk = quadrants(
        mode="CMYK", colours=[(0, 200, 200, 0), (200, 0, 200, 0), (200, 200, 0, 0), (0, 0, 0, 60)]
    )
    path = save(cmyk, tmp_path / "cmyk.jpg", quality=95)
    result = take(path)
    assert result.pages[0].encoding == "dct"
    assert_shows(result, 1, Image.open(path).convert("RGB"))


def test_jpeg_with_icc_profile_keeps_it_as_the_colour_space(tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = save(quadrants(), tmp_path / "icc.jpg", quality=90, icc_profile=profile)
    result = take(path)
    assert result.pages[0].passthrough
    assert b"/ICCBased" in result.pdf and b"ICC_PROFILE" not in result.pdf
    assert_shows(result, 1, quadrants())


# --- re-encoded formats ----------------------------------------------------------------------------


def test_png_alpha_is_composited_onto_white(tmp_path):
    rgba = quadrants(
        mode="RGBA", colours=[(220, 30, 30, 255), (30, 160, 60, 128), (40, 60, 200, 0), (0, 0, 0, 64)]
    )
    path = save(rgba, tmp_path / "alpha.png")
    result = take(path)
    assert result.pages[0].encoding == "flate"
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    expected = Image.alpha_composite(white, rgba).convert("RGB")
    assert_shows(result, 1, expected)


def test_palette_png_with_and_without_transparency(tmp_path):
    opaque = quadrants().quantize(colors=8)
    clear = quadrants().quantize(colors=8)
    clear.info["transparency"] = clear.getpixel((200, 140))  # the yellow quadrant's index
    a = save(opaque, tmp_path / "p.png")
    b = save(clear, tmp_path / "p-clear.png", transparency=clear.info["transparency"])
    result = take(a, b)
    assert_shows(result, 1, opaque.convert("RGB"))
    expected = quadrants(colours=[RED, GREEN, BLUE, (255, 255, 255)])
    assert_shows(result, 2, expected, tolerance=10)


def test_16bit_png_keeps_its_top_eight_bits(tmp_path):
    levels = [0x1000, 0x6000, 0xA000, 0xE000]
    rows = [[levels[(x >= 120) + 2 * (y >= 80)] for x in range(240)] for y in range(160)]
    im16 = Image.frombytes("I;16", (240, 160), b"".join(struct.pack("<240H", *row) for row in rows))
    path = save(im16, tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    result = take(path)
    expected = quadrants(mode="L", colours=[v >> 8 for v in levels])
    assert_shows(result, 1, expected, tolerance=3)


def test_one_bit_png_stays_one_bit(tmp_path):
    bits = quadrants(mode="L", colours=[0, 255, 255, 0]).convert("1")
    path = save(bits, tmp_path / "bits.png")
    result = take(path)
    assert b"/BitsPerComponent 1" in result.pdf
    assert_shows(result, 1, bits, tolerance=12)


def test_multipage_tiff_gives_a_page_per_frame(tmp_path):
    first, second = quadrants(), quadrants((160, 240), colours=[YELLOW, BLUE, GREEN, RED])
    path = save(first, tmp_path / "two.tif", save_all=True, append_images=[second], compression="tiff_lzw")
    result = take(path)
    assert [p.source_page for p in result.pages] == [0, 1]
    assert [p.page_size[0] > p.page_size[1] for p in result.pages] == [True, False]  # landscape, portrait
    assert_shows(result, 1, first)
    assert_shows(result, 2, second)


def test_bmp(tmp_path):
    result = take(save(quadrants(), tmp_path / "scan.bmp"))
    assert result.pages[0].encoding == "flate"
    assert_shows(result, 1, quadrants())


def test_heic_from_a_phone(tmp_path):
    pillow_heif.register_heif_opener()
    path = save(quadrants(), tmp_path / "phone.heic", "HEIF", quality=95)
    assert image_problem(path) is None  # validation opens HEIC too
    result = take(path)
    assert result.pages[0].encoding == "dct"
    assert_shows(result, 1, quadrants(), tolerance=12)


def test_png_named_jpg_is_fine(tmp_path):
    result = take(save(quadrants(), tmp_path / "really-a-png.jpg", "PNG"))
    assert result.pages[0].encoding == "flate"
    assert_shows(result, 1, quadrants())


# --- pages, titles, sizes --------------------------------------------------------------------------


def test_pdf_scan_pages_are_imported_not_rasterised(tmp_path):
    photo = save(quadrants(), tmp_path / "a.jpg", quality=90)
    scan = scan_pdf(tmp_path / "scan.pdf", ["SCAN-PAGE-ONE", "SCAN-PAGE-TWO"])
    other = save(quadrants((160, 240)), tmp_path / "c.png")
    sources = [
        ImageSource(index=0, kind="id_front", label=None, path=photo),
        ImageSource(index=1, kind="exemption_notice", label=None, path=scan),
        ImageSource(index=2, kind="other", label="病历首页", path=other),
    ]
    result = image_pages(sources, policy_no=POLICY_NO)
    assert [(p.index, p.source_page, p.encoding) for p in result.pages] == [
        (0, 0, "dct-passthrough"),
        (1, 0, "pdf-page"),
        (1, 1, "pdf-page"),
        (2, 0, "flate"),
    ]
    assert b"(SCAN-PAGE-ONE) Tj" in result.pdf and b"/Helvetica" in result.pdf
    reader = PdfReader(io.BytesIO(result.pdf))
    assert len(reader.pages) == 4
    assert "SCAN-PAGE-TWO" in reader.pages[2].extract_text()
    assert not reader.pages[1].get("/Resources", {}).get("/XObject")  # text, not a picture of it
    text = subprocess.run(["pdftotext", "-", "-"], input=result.pdf, capture_output=True, check=True).stdout
    assert text.index(b"SCAN-PAGE-ONE") < text.index(b"SCAN-PAGE-TWO")
    assert [(item.title, reader.get_destination_page_number(item)) for item in reader.outline] == [
        ("身份证人像面", 0),
        ("免责事项说明书（签字页）", 1),
        ("其他（病历首页）", 3),
    ]


def title_band(result: IntakeResult, page: int) -> Image.Image:
    """The rendered top of a page, from the margin to just above the picture area."""
    info = result.pages[page - 1]
    k = 100 / 72
    return render(result.pdf, page, 100).crop(
        (
            round(MARGIN * k),
            round(MARGIN * k),
            round((info.page_size[0] - MARGIN) * k),
            round((MARGIN + 34) * k),
        )
    )


def test_every_picture_page_has_a_title_band(tmp_path):
    paths = [save(quadrants(), tmp_path / f"{i}.jpg") for i in range(2)]
    result = take(*paths, kinds=["vehicle_license", "driving_license"])
    bands = [title_band(result, n) for n in (1, 2)]
    for band in bands:
        dark = sum(band.convert("L").point(lambda v: 255 if v < 128 else 0).histogram()[255:])
        assert dark > 200  # text is there
        assert band.getextrema()[0][1] == 255  # on white
    assert ImageChops.difference(bands[0], bands[1]).getbbox() is not None  # kind and page number differ


def test_long_other_label_shrinks_but_keeps_the_policy_number(tmp_path):
    path = save(quadrants(), tmp_path / "x.png")
    sources = [ImageSource(index=0, kind="other", label="很长的标签" * 8, path=path)]
    result = image_pages(sources, policy_no=POLICY_NO)
    assert len(result.pages) == 1  # drawn without error; the band stays inside the margins
    band = title_band(result, 1)
    assert band.getbbox() is not None


def title_pieces(result: IntakeResult, page: int) -> list[tuple[str, Image.Image, tuple[float, ...]]]:
    """Output page ``page``'s title band pieces, in drawing order: the XObject's name, its picture
    decoded, and where it is shown (x, y, width, height in points), all inside the band's clip."""
    pdf_page = PdfReader(io.BytesIO(result.pdf)).pages[page - 1]
    content = pdf_page.get_contents().get_data()
    info = result.pages[page - 1]
    band = re.search(rb"q (\S+) (\S+) (\S+) 30 re W n\n((?:q [^\n]* Do Q\n)*)Q\n", content)
    assert band is not None
    assert [float(v) for v in band.groups()[:3]] == pytest.approx(
        [MARGIN, info.page_size[1] - MARGIN - 30, info.page_size[0] - 2 * MARGIN], abs=1e-3
    )
    pieces = []
    for w, h, x, y, name in re.findall(rb"q (\S+) 0 0 (\S+) (\S+) (\S+) cm /(T\d) Do Q", band.group(4)):
        xobject = pdf_page["/Resources"]["/XObject"][f"/{name.decode()}"].get_object()
        assert xobject["/Filter"] == "/FlateDecode" and "/DecodeParms" not in xobject  # plain deflated pixels
        assert (xobject["/ColorSpace"], xobject["/BitsPerComponent"]) == ("/DeviceGray", 8)
        picture = Image.frombytes("L", (xobject["/Width"], xobject["/Height"]), xobject.get_data())
        pieces.append((name.decode(), picture, tuple(float(v) for v in (x, y, w, h))))
    return pieces


def drawn_whole(title: str, count: str, width: int) -> Image.Image:
    """The band as it was drawn before: both lines at once on a band ``width`` pixels wide (300 dpi,
    12 pt title on a baseline 13.2 pt down, 9 pt count on one 26.25 pt down)."""
    band = Image.new("L", (width, 125), 255)
    draw = ImageDraw.Draw(band)
    for text, size, baseline in ((title, 50, 55), (count, 38, 109)):
        font = ImageFont.truetype(str(TITLE_FONT), size, index=TITLE_FONT_INDEX)
        draw.text((0, baseline), text, font=font, fill=0, anchor="ls")
    return band


def ink(picture: Image.Image) -> tuple[int, int, int, int] | None:
    return ImageOps.invert(picture.convert("L")).getbbox()


def test_title_band_pieces_are_cut_to_their_ink(tmp_path):
    result = take(save(quadrants(), tmp_path / "a.jpg"))
    pieces = title_pieces(result, 1)
    assert len(pieces) == 4  # kind, "policy no.", the policy number, count
    band_w = result.pages[0].page_size[0] - 2 * MARGIN
    for _, picture, (x, _, w, h) in pieces:
        assert ink(picture) == (0, 0, *picture.size)  # ink touches every edge: nothing white to spare
        assert (w, h) == pytest.approx((picture.width * 72 / 300, picture.height * 72 / 300), rel=2e-3)
        assert x >= MARGIN and x + w < MARGIN + band_w / 2
    rendered = title_band(result, 1)  # margin to margin, at 100 dpi, with the rule below the band
    right = max(x + w for _, _, (x, _, w, _) in pieces) - MARGIN
    split, above_rule = round(right * 100 / 72) + 2, round(30 * 100 / 72)
    text = rendered.crop((0, 0, split, above_rule))
    rest = rendered.crop((split, 0, rendered.width, above_rule))
    assert sum(text.convert("L").point(lambda v: 255 if v < 128 else 0).histogram()[255:]) > 200
    assert rest.getextrema() == ((255, 255),) * 3  # nothing drawn right of the text


def test_title_band_pieces_go_where_drawing_the_lines_whole_puts_them(tmp_path):
    """Each piece is its text drawn alone, shown where the pen drawing the whole line reaches it (the
    policy number after the kind's advance, to a fraction of a pixel); rendered, the band is the lines
    drawn whole."""
    paths = [save(quadrants(), tmp_path / f"{i}.jpg") for i in range(3)]
    labels = [None, "Invoice No. 7/AVW fj", None]
    title_font = ImageFont.truetype(str(TITLE_FONT), 50, index=TITLE_FONT_INDEX)
    count_font = ImageFont.truetype(str(TITLE_FONT), 38, index=TITLE_FONT_INDEX)
    k = 300 / 72
    for kinds in (["id_front", "other", "vehicle_license"], ["vehicle_license", "other", "id_front"]):
        sources = [
            ImageSource(index=i, kind=kind, label=label, path=p)
            for i, (kind, label, p) in enumerate(zip(kinds, labels, paths, strict=True))
        ]
        result = image_pages(sources, policy_no=POLICY_NO)
        for page, kind in enumerate(kinds, start=1):
            head = "其他（Invoice No. 7/AVW fj）" if kind == "other" else IMAGE_KIND_LABELS[kind]
            count = f"承保影像 第 {page} 页 共 3 页"
            prefix = "　保险单号 "
            band_top = result.pages[page - 1].page_size[1] - MARGIN
            lines = (
                (head, title_font, 0.0, 55),
                (prefix, title_font, title_font.getlength(head), 55),
                (POLICY_NO, title_font, title_font.getlength(head) + title_font.getlength(prefix), 55),
                (count, count_font, 0.0, 109),
            )
            for (_, picture, (x, y, _, h)), (text, font, pen, baseline) in zip(
                title_pieces(result, page), lines, strict=True
            ):
                alone = Image.new("L", (1400, 160), 255)
                ImageDraw.Draw(alone).text((100, 100), text, font=font, fill=0, anchor="ls")
                box = ink(alone)
                assert ImageChops.difference(picture, alone.crop(box)).getbbox() is None
                # where its ink's top left is, in pixels of the band, against the whole line's pen
                # (across, at the band's own scale: its width in pixels is rounded)
                band_w = result.pages[page - 1].page_size[0] - 2 * MARGIN
                assert (x - MARGIN) * round(band_w * k) / band_w == pytest.approx(
                    pen + box[0] - 100, abs=0.01
                )
                assert (band_top - y - h) * k == pytest.approx(baseline + box[1] - 100, abs=0.01)
            whole = drawn_whole(head + prefix + POLICY_NO, count, 2400)
            rendered = render(result.pdf, page, 300).convert("L")
            left, top = round(MARGIN * k), round(MARGIN * k)
            shown = rendered.crop((left, top, left + 2400, top + 125))
            expected, got = ink(whole), ink(shown)
            assert all(abs(a - b) <= 2 for a, b in zip(expected, got, strict=True))
            dark = [im.point(lambda v: 255 if v < 128 else 0).histogram()[255] for im in (whole, shown)]
            assert dark[1] == pytest.approx(dark[0], rel=0.05)


def test_a_record_writes_its_policy_number_once_and_each_kind_once(tmp_path):
    paths = [save(quadrants(), tmp_path / f"{i}.jpg") for i in range(3)]
    result = take(*paths, kinds=["id_front", "id_back", "id_front"])
    names = [{name: picture for name, picture, _ in title_pieces(result, page)} for page in (1, 2, 3)]
    reader = PdfReader(io.BytesIO(result.pdf))
    refs = [
        {name: reader.pages[p]["/Resources"]["/XObject"].raw_get(f"/{name}").idnum for name in names[p]}
        for p in range(3)
    ]
    assert refs[0]["T1"] == refs[1]["T1"] == refs[2]["T1"]  # "policy no.": one picture
    assert refs[0]["T2"] == refs[1]["T2"] == refs[2]["T2"] != refs[0]["T1"]  # the policy number: one
    assert refs[0]["T0"] == refs[2]["T0"] != refs[1]["T0"]  # the same kind twice: one picture
    assert len({refs[p]["T3"] for p in range(3)}) == 3  # page counts differ


def test_title_pieces_that_would_overlap_make_one_band_drawn_whole():
    """Never for a real title (the policy number follows an ideographic space), but a piece must not
    cover another's ink with its white: such a band is drawn as one picture of the lines whole."""
    document = NewDocument()
    width = 500.0
    resources, operators = titles.title_band(
        document, ("f", "j"), "第 1 页", left_pt=MARGIN, top_pt=800.0, width_pt=width, shared={}
    )
    assert resources.startswith(b"/T0 ") and b"/T1" not in resources
    assert operators.count(b" Do ") == 1 and operators.startswith(b"q 34.016 770 500 30 re W n\n")
    band_px = round(width * 300 / 72)
    whole = titles.whole_band(("f", "j"), "第 1 页", band_px=band_px)
    assert whole.size == (band_px, 125)
    expected = drawn_whole("fj", "第 1 页", band_px)
    assert ImageChops.difference(whole, expected).getbbox() is None


def test_small_pictures_are_not_blown_up_and_large_ones_fit(tmp_path):
    small = save(quadrants((300, 200)), tmp_path / "small.png")
    large = save(quadrants((4000, 2000)), tmp_path / "large.jpg", quality=80)
    result = take(small, large)
    _, _, w, h = result.pages[0].picture_box
    assert (round(w), round(h)) == (144, 96)  # 300×200 px at 150 dpi
    _, _, w, _ = result.pages[1].picture_box
    assert w == pytest.approx(result.pages[1].page_size[0] - 2 * MARGIN)
    assert result.pages[1].passthrough  # 4000 px over 10.7 in ≈ 370 dpi: nothing to gain by re-encoding


def test_pixels_far_beyond_600_dpi_are_dropped_by_integer_reduction(tmp_path):
    wide = quadrants((7000, 1000), mode="L", colours=[20, 90, 160, 230])
    jpeg = save(wide, tmp_path / "wide.jpg", quality=80)
    png = save(wide, tmp_path / "wide.png")
    result = take(jpeg, png)
    assert [p.encoding for p in result.pages] == ["dct", "flate"]
    assert [p.pixel_size for p in result.pages] == [(3500, 500), (3500, 500)]
    assert_shows(result, 1, wide)


def test_same_sources_give_the_same_bytes(tmp_path):
    paths = [save(quadrants(), tmp_path / "a.jpg"), save(quadrants(), tmp_path / "b.png")]
    assert take(*paths).pdf == take(*paths).pdf


def test_no_sources_no_pdf():
    assert image_pages([], policy_no=POLICY_NO) == IntakeResult(pdf=b"", pages=())


# --- refused ---------------------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width``×``height`` with a few bytes of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(data + chunk(b"IEND", b""))
    return path


def encrypted_pdf(path: Path) -> Path:
    scan = PdfReader(scan_pdf(path.with_suffix(".plain.pdf"), ["X"]))
    writer = PdfWriter(clone_from=scan)
    writer.encrypt("", "owner")
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def truncated_jpeg(path: Path) -> Path:
    data = save(quadrants((400, 300)), path.with_suffix(".whole.jpg"), quality=90).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD = {
    "empty.jpg": (lambda p: write(p, b""), "file is empty"),
    "missing.jpg": (lambda p: p, "does not exist"),
    "truncated.jpg": (truncated_jpeg, "damaged or truncated"),
    "random.jpg": (lambda p: write(p, b"SECRET-CONTENT " * 50), "does not decode"),
    "not-a-pdf.pdf": (lambda p: save(quadrants(), p, "PNG"), "not a PDF"),
    "locked.pdf": (encrypted_pdf, "encrypted"),
    "script.pdf": (lambda p: scan_pdf(p, ["X"], javascript=True), "JavaScript"),
    "attached.pdf": (lambda p: scan_pdf(p, ["X"], attachment=True), "embedded files"),
    "bomb.png": (lambda p: bomb_png(p, 50_000, 50_000), "decompression bomb"),
    "too-wide.png": (lambda p: bomb_png(p, 40_000, 1), "side longer than"),
    "text.pdf": (lambda p: write(p, b"%PDF-1.4\nSECRET nothing here\n%%EOF"), "PDF scan"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_source_names_its_image(tmp_path, name):
    make, words = BAD[name]
    good = [save(quadrants(), tmp_path / "good.jpg"), save(quadrants(), tmp_path / "good.png")]
    bad = make(tmp_path / name)
    with pytest.raises(RecordImageError) as caught:
        take(*good, bad)
    error = caught.value
    assert error.field == "images[2]"
    assert words in error.message
    assert "SECRET" not in str(error)
    assert isinstance(error, ImageProblem) and isinstance(error, RecordRejected)
    assert error.reasons == [("images[2]", error.message)]
    copy = pickle.loads(pickle.dumps(error))  # it crosses a process pool
    assert (copy.field, copy.message, str(copy)) == (error.field, error.message, str(error))
    if bad.exists():  # validation refuses the same files, for the same reasons
        assert image_problem(bad) is not None


def test_a_title_said_to_fit_without_measuring_it_whole_does_fit():
    """``fit_title`` skips measuring the whole line when its parts fit with an em to spare: whatever it
    then returns at full size must fit when measured whole, for every kind and a range of widths."""
    numbers = ("PAC20260304028000124", "PHP20261231999999999", "PPA2026010100000001")
    tails = [("　保险单号 ", n) for n in numbers]
    heads = [*IMAGE_KIND_LABELS.values(), "其他（" + "病历首页" * 6 + "）"]
    checked = 0
    for width in range(900, 2400, 37):
        for head in heads:
            for tail in tails:
                size, drawn = titles.fit_title(head, tail, width_px=width)
                whole = drawn + "".join(tail)
                assert titles.title_font(size).getlength(whole) <= width or size == MIN_TITLE_PT
                if size == TITLE_PT and drawn == head:
                    checked += 1
    assert checked > 100  # the full-size case was exercised
