"""How fast is sealing, and how much bigger does it make a document?

Builds a real 40-page document (a LibreOffice policy schedule followed by clause pages, through the
project's own pipeline), then prints:

- ms per page for ``stamp_pdf`` with the company seal and the cross-page seal (median of several runs,
  the seal already drawn and encoded, as in a batch after its first document);
- the size overhead of the sealed file against the unsealed one, for the 40-page document, a 6-page
  policy (schedule + clauses) and a real one-page endorsement, each with a drawn and a scanned seal (the
  issue's limit is 15%; the one-page endorsement is the tight case);
- for the record, the first (cold) call, the two ways of finding the anchor (poppler's pdftotext and
  pypdf's text visitor), and ``find_seals`` on the same document.

    .venv/bin/python bench/stamp_bench.py [--pdf some.pdf] [--runs 15] [--pictures examples/pictures]

With ``--pictures DIR`` it also draws the README's pictures: a sealed schedule page, the fanned right
edges of a 12-page policy, and seals with a short (8) and a long (24 character) owner name.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

from pypdf import PdfReader, PdfWriter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synth import make_batch
from core.products import load_registry
from pipeline.convert import ConverterPool
from pipeline.documents import DocumentMaker
from stamps import Seal, draw_seal, fanned_edges, find_seals, load_seal_registry, stamp_pdf
from stamps.anchor import find_text
from stamps.poppler import rasterise, rasterise_range
from stamps.stamping import page_frames
from usecases.render import render_batch

PAGES = 40
ANCHOR = "保险人（盖章）"
SHORT_NAME = "示范财产保险公司"  # 8 characters: the shortest name the layout is tested for
LONG_NAME = "示范财产保险股份有限公司深圳市南山区科技园支公司"  # 24: the longest


def real_documents(work: Path, *, pages: int) -> tuple[dict[str, bytes], str]:
    """Real unsealed documents from the project's pipeline, and the long policy's branch code:

    - "policy-N": a real schedule followed by real clause pages, cut (or extended with clauses) to
      ``pages``;
    - "policy-short": the batch's shortest policy as the pipeline issues it (schedule and one clause,
      6 pages with seed 7); cutting the long one instead would keep all of its fonts and overstate it;
    - "endorsement": the batch's one-page endorsement, the tightest case for the 15% limit.
    """
    registry = load_registry()
    make_batch(work / "batch", 3, seed=7, endorsements=1)
    with ConverterPool(size=1, workdir=work / "lo") as pool:
        maker = DocumentMaker(registry=registry, converter=pool, cache_dir=work / "cache")
        render_batch(work / "batch" / "batch.jsonl", out_dir=work / "out", maker=maker, workers=1)
        policies = sorted((work / "out").glob("*/policy.pdf"), key=lambda p: len(PdfReader(p).pages))
        policy = policies[-1]
        writer = PdfWriter()
        writer.append(str(policy))
        codes = sorted(registry.clauses)
        while len(writer.pages) < pages:
            for code in codes:
                writer.append(PdfReader(BytesIO(maker.clauses.pdf_bytes(code))))
    while len(writer.pages) > pages:
        writer.remove_page(len(writer.pages) - 1)
    buf = BytesIO()
    writer.write(buf)
    documents = {
        f"policy-{pages}": buf.getvalue(),
        "policy-short": policies[0].read_bytes(),
        "endorsement": next((work / "out").glob("*/endorsement-*.pdf")).read_bytes(),
    }
    records = (json.loads(line) for line in (work / "batch" / "batch.jsonl").read_text("utf-8").splitlines())
    branch = next(r["branch"]["code"] for r in records if r.get("policy_no") == policy.parent.name)
    return documents, branch


def size_overheads(documents: dict[str, bytes], seals: list[Seal]) -> None:
    """Print how much each seal adds to each document, against the issue's 15%."""
    for name, pdf in documents.items():
        pages = len(PdfReader(BytesIO(pdf)).pages)
        for seal in seals:
            kind = "scanned" if seal.scan is not None else "drawn"
            sealed = stamp_pdf(pdf, seal=seal, anchor=ANCHOR, anchor_pages=range(0, 1)).pdf
            added = len(sealed) - len(pdf)
            print(
                f"  {name:<12} {pages:>2} pages {len(pdf) / 1024:7.1f} KiB  {kind:<7} {seal.ref:<28} "
                f"+{added / 1024:5.1f} KiB = {added / len(pdf) * 100:5.1f}%"
            )


def pictures(out: Path, *, policy: bytes, seal: Seal, work: Path) -> None:
    """The README's pictures, each under 300 KB."""
    out.mkdir(parents=True, exist_ok=True)
    twelve = PdfWriter(clone_from=PdfReader(BytesIO(policy)))
    while len(twelve.pages) > 12:
        twelve.remove_page(len(twelve.pages) - 1)
    buf = BytesIO()
    twelve.write(buf)
    sealed = stamp_pdf(buf.getvalue(), seal=seal, anchor=ANCHOR)
    path = work / "twelve.pdf"
    path.write_bytes(sealed.pdf)
    frames = page_frames(PdfReader(path))
    schedule = rasterise_range(path, dpi=90, first=1, last=1)[0]
    schedule.quantize(64).save(out / "sealed-schedule.png", optimize=True)
    images = rasterise(path, dpi=200, pages=len(frames))
    fanned = fanned_edges(images, frames, seal=seal, group=sealed.groups[0], margin_pt=14)
    fanned.quantize(64).save(out / "fanned-edges-12.png", optimize=True)
    for name, owner in (("seal-short-name", SHORT_NAME), ("seal-long-name", LONG_NAME)):
        draw_seal(owner=owner, purpose="保单专用章", dpi=300).save(out / f"{name}.png", optimize=True)


def pypdf_anchor(pdf: bytes) -> tuple[float, float] | None:
    """The competitor: pypdf's visitor gives one position per text operator (the run's start)."""
    found = []

    def visit(text, cm, tm, font, size):
        if ANCHOR in text:
            found.append((tm[4] * cm[0] + cm[4], tm[5] * cm[3] + cm[5]))

    PdfReader(BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    return found[-1] if found else None


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pdf", type=Path, help="bench this PDF instead of building the 40-page policy")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pictures", type=Path, help="also write the README's pictures to this folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stamp-bench-") as tmp:
        if args.pdf:
            documents, branch = {args.pdf.name: args.pdf.read_bytes()}, "110105"
            pdf = documents[args.pdf.name]
        else:
            documents, branch = real_documents(Path(tmp), pages=PAGES)
            pdf = documents[f"policy-{PAGES}"]
        pages = len(PdfReader(BytesIO(pdf)).pages)
        registry = load_seal_registry()
        seal = registry.seal_for(branch_code=branch, document="policy")
        # The size table shows a seal of the other kind too: a drawn and a scanned seal differ in bytes.
        other = next(s for s in registry.current if (s.scan is None) != (seal.scan is None))
        print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"document: {pages} pages, {len(pdf) / 1024:.0f} KiB unsealed; seal {seal.ref}")

        start = time.perf_counter()
        result = stamp_pdf(pdf, seal=seal, anchor=ANCHOR, anchor_pages=range(0, 1), cross_page=True)
        cold = (time.perf_counter() - start) * 1000
        ms = median_ms(lambda: stamp_pdf(pdf, seal=seal, anchor=ANCHOR, anchor_pages=range(0, 1)), args.runs)
        overhead = (len(result.pdf) - len(pdf)) / len(pdf) * 100
        print(
            f"stamp_pdf (company seal + cross-page, groups {list(result.groups)}): "
            f"{ms / pages:.2f} ms per page, {ms:.0f} ms per document (median of {args.runs}); "
            f"first call {cold:.0f} ms (draws and encodes the seal)"
        )
        print(f"size: sealed {len(result.pdf) / 1024:.0f} KiB, overhead {overhead:.1f}%")
        print("size overhead per document (company seal + cross-page seal; the issue's limit is 15%):")
        size_overheads(documents, [seal, other])

        path = Path(tmp) / "bench.pdf"
        path.write_bytes(pdf)
        rotations = [0] * pages
        poppler = median_ms(
            lambda: find_text(path, ANCHOR, pages=range(0, 1), rotations=rotations), args.runs
        )
        visitor = median_ms(lambda: pypdf_anchor(pdf), args.runs)
        print(f"anchor on page 1: pdftotext -bbox-layout {poppler:.1f} ms, pypdf visitor {visitor:.1f} ms")

        sealed = Path(tmp) / "sealed.pdf"
        sealed.write_bytes(result.pdf)
        start = time.perf_counter()
        report = find_seals(sealed, seal=seal)
        found = time.perf_counter() - start
        print(f"find_seals: {found:.2f} s for {pages} pages at 150 dpi, ok={report.ok}")
        if args.pictures:
            pictures(args.pictures, policy=pdf, seal=seal, work=Path(tmp))
            print(f"pictures written to {args.pictures}")


if __name__ == "__main__":
    main()
