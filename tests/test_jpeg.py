"""The JPEG walk (``pipeline.jpeg``): what it calls sound decodes, what is cut short or malformed is not
called sound, and validation trusts it instead of decoding (``pipeline.images.image_problem``)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFile

from pipeline import jpeg
from pipeline.images import image_problem


def picture(size=(320, 240), mode="RGB") -> Image.Image:
    im = Image.new(mode, size, "white" if mode == "RGB" else 255)
    draw = ImageDraw.Draw(im)
    for i in range(0, size[0], 16):
        draw.line((i, 0, size[0] - i, size[1]), fill="black" if mode == "RGB" else 0, width=3)
    draw.rectangle((20, 20, 120, 90), fill=(200, 30, 30) if mode == "RGB" else 90)
    return im


def encoded(im: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", **options)
    return out.getvalue()


VARIANTS = {
    "baseline": lambda: encoded(picture(), quality=90),
    "progressive": lambda: encoded(picture(), quality=80, progressive=True),
    "grey": lambda: encoded(picture(mode="L")),
    "4:4:4": lambda: encoded(picture(), subsampling=0),
    "optimised tables": lambda: encoded(picture(), optimize=True),
    "restart markers": lambda: encoded(picture(), restart_marker_blocks=4),
    "EXIF, ICC and a comment": lambda: encoded(
        picture(), exif=Image.Exif(), icc_profile=b"\0" * 200, comment=b"SPECIMEN"
    ),
    "bytes after EOI": lambda: encoded(picture()) + encoded(picture((40, 30))),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_what_pillow_writes_walks_to_its_end_and_decodes(name):
    data = VARIANTS[name]()
    layout = jpeg.walk(data)
    assert layout is not None
    with Image.open(io.BytesIO(data)) as im:
        assert (layout.frame.width, layout.frame.height) == im.size
        assert len(layout.frame.component_ids) == len(im.getbands())
        im.load()  # the walk's "sound" is a decoder's too
    assert data[layout.end - 2 : layout.end] == b"\xff\xd9"
    assert layout.pieces[0] == (jpeg.SOI, 0, 2) and layout.pieces[-1][0] == jpeg.EOI
    # the pieces tile the file from SOI to EOI, fill bytes aside
    assert all(a[2] <= b[1] for a, b in zip(layout.pieces, layout.pieces[1:], strict=False))


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.5, 0.9, 0.999])
def test_a_jpeg_cut_short_is_not_sound(fraction):
    data = encoded(picture(), quality=90)
    assert jpeg.walk(data[: int(len(data) * fraction)]) is None


def _segment(data: bytes, marker: int) -> tuple[int, int]:
    layout = jpeg.walk(data)
    assert layout is not None
    return next((start, end) for m, start, end in layout.pieces if m == marker)


def _patched(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes([value]) + data[at + 1 :]


def test_malformed_headers_are_not_sound():
    data = encoded(picture(), quality=90)
    sof_at, _ = _segment(data, 0xC0)
    dht_at, _ = _segment(data, jpeg.DHT)
    sos_at, _ = _segment(data, jpeg.SOS)
    cases = {
        "height 0 (DNL)": data[: sof_at + 5] + b"\0\0" + data[sof_at + 7 :],
        "12-bit samples": _patched(data, sof_at + 4, 12),
        "arithmetic coding": _patched(data, sof_at + 1, 0xC9),
        "sampling factor 0": _patched(data, sof_at + 11, 0x00),
        "Huffman counts over 256": data[: dht_at + 5] + b"\xff" * 16 + data[dht_at + 21 :],
        "Huffman table class 2": _patched(data, dht_at + 4, 0x20),
        "scan names a component the frame lacks": _patched(data, sos_at + 5, 9),
        "scan uses a table never defined": _patched(data, sos_at + 6, 0x33),
        "a second SOI": data[:2] + data,
        "not a JPEG": b"GIF89a" + data[6:],
    }
    for name, broken in cases.items():
        assert jpeg.walk(broken) is None, name


def test_a_second_frame_is_not_sound():
    data = encoded(picture(), quality=90)
    start, end = _segment(data, 0xC0)
    assert jpeg.walk(data[:end] + data[start:end] + data[end:]) is None


def test_validation_does_not_decode_a_sound_jpeg(tmp_path, monkeypatch):
    good = tmp_path / "good.jpg"
    good.write_bytes(encoded(picture(), quality=90))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:3000])

    def refuse(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    assert image_problem(good) is None
    with pytest.raises(AssertionError, match="decoded"):  # what the walk cannot vouch for is decoded
        image_problem(cut)


def test_validation_does_not_open_a_sound_jpeg_with_pillow_but_checks_its_size(tmp_path, monkeypatch):
    """Its frame header gives the size: a JPEG that declares an absurd one is refused as Pillow's header
    check refused it, though its structure walks."""
    data = encoded(picture(), quality=90)
    sof_at, _ = _segment(data, 0xC0)

    def sized(width: int, height: int) -> bytes:
        size = height.to_bytes(2, "big") + width.to_bytes(2, "big")
        return data[: sof_at + 5] + size + data[sof_at + 9 :]

    files = {name: tmp_path / f"{name}.jpg" for name in ("good", "bomb", "wide")}
    files["good"].write_bytes(data)
    files["bomb"].write_bytes(sized(30_000, 30_000))
    files["wide"].write_bytes(sized(60_000, 8))
    assert all(jpeg.walk(path.read_bytes()) is not None for path in files.values())

    def refuse(*args, **kwargs):
        raise AssertionError("opened with Pillow")

    monkeypatch.setattr(Image, "open", refuse)
    assert image_problem(files["good"]) is None
    assert "more than 120,000,000 in all" in (image_problem(files["bomb"]) or "")
    assert "a side longer than" in (image_problem(files["wide"]) or "")


def test_what_the_walk_refuses_the_decoder_judges(tmp_path: Path):
    data = encoded(picture(), quality=90)
    dht_at, _ = _segment(data, jpeg.DHT)
    broken = tmp_path / "broken-table.jpg"
    broken.write_bytes(data[: dht_at + 5] + b"\xff" * 16 + data[dht_at + 21 :])
    assert "damaged or truncated" in (image_problem(broken) or "")
    dnl = tmp_path / "dnl.jpg"  # valid but unusual for the walk: height from a DNL marker
    sof_at, _ = _segment(data, 0xC0)
    dnl.write_bytes(data[: sof_at + 5] + b"\0\0" + data[sof_at + 7 :])
    assert jpeg.walk(dnl.read_bytes()) is None
    assert image_problem(dnl) is not None  # Pillow cannot take it either: refused, with a reason


def test_a_segment_between_the_last_scan_and_eoi_is_allowed():
    """A comment after the entropy-coded data, before EOI (some writers put one there), as before."""
    data = encoded(picture(), quality=90)
    assert data.endswith(b"\xff\xd9")
    moved = data[:-2] + b"\xff\xfe\x00\x0aSPECIMEN" + b"\xff\xd9"
    layout = jpeg.walk(moved)
    assert layout is not None and layout.end == len(moved)
    with Image.open(io.BytesIO(moved)) as im:
        im.load()
    assert jpeg.walk(data[:-2] + b"\xff\xfe\x00\x0aSPECIMEN") is None  # and without EOI, not sound
