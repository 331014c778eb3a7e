"""What the verification QR code costs per document (issue 23, item 4): CPU ms of ``draw_qr`` on page 1
of a document being assembled, one new code per document, as ``DocumentMaker`` draws it; beside it what
segno alone costs per symbol when it chooses the mask itself (what ``QrEncoder`` avoids).

    python bench/qr_bench.py [-n 200] [--pdf customer-copy.pdf]

With ``--pdf`` page 1 of that file is drawn on (a fresh copy each time); else a blank A4 page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pikepdf
import segno

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.samples import cpu_ms_each
from core.verification import verification_code, verification_url
from stamps.qr import QrEncoder, draw_qr

KEY = b"bench-hmac-key-0123456789abcdef"
PUBLIC = "https://verify.example.com.cn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="documents (codes) per measurement")
    parser.add_argument("--pdf", type=Path, help="a PDF whose page 1 is drawn on (default: a blank A4 page)")
    args = parser.parse_args()

    urls = [
        verification_url(PUBLIC, verification_code(KEY, f"PDAC2644030500700{i:05d}", 1))
        for i in range(args.n)
    ]
    source = pikepdf.open(args.pdf) if args.pdf else None

    def page_one() -> pikepdf.Pdf:
        out = pikepdf.new()
        if source is not None:
            out.pages.append(source.pages[0])
        else:
            out.add_blank_page(page_size=(595.3, 841.9))
        return out

    encoder = QrEncoder()

    def draw(pair: tuple[pikepdf.Pdf, str]) -> None:
        draw_qr(pair[0], encoder.symbol(pair[1]))

    # the first documents of a run also teach the encoder what each data bit changes (one segno call a
    # bit that differs from the first URL's): paid once per run and URL length
    first = cpu_ms_each(draw, [(page_one(), url) for url in urls], repeat=1)
    steady = cpu_ms_each(draw, [(page_one(), url) for url in reversed(urls)], repeat=1)
    symbols = cpu_ms_each(encoder.symbol, urls, repeat=3)
    plain = cpu_ms_each(lambda url: segno.make_qr(url.encode(), mode="byte", error="m"), urls[:50], repeat=1)
    where = "--pdf's page 1" if args.pdf else "a blank A4 page"
    print(f"draw_qr on {where}, n={args.n}:")
    print(f"  first {args.n} documents of a run: {first:.3f} ms/document (learning included)")
    print(f"  every document after: {steady:.3f} ms/document, of which the symbol {symbols:.4f} ms")
    print(f"segno.make_qr choosing its own mask, for comparison: {plain:.3f} ms/symbol")


if __name__ == "__main__":
    main()
