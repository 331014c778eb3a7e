"""The hand-written PDF cross-reference reader and writer (``stamps.pdfupdate``) against the libraries.

On real customer copies (``bench/samples.py``: a small batch filed by ``issuance run``), it times, per
customer copy, in CPU ms (this process; median over the rounds of the mean over all copies):

reading what the archive copy's update reads (the trailer, catalog, page tree, outline root and its
last item, document information), each entry as PDF syntax, as ``pipeline.bundle`` does:
- ``PlainPdf``: this project's reader (the table's row for object N is 20 × N bytes in);
- pypdf ``PdfReader(strict=True)`` through ``PypdfObjects``: the pipeline's fallback for other shapes;
- pikepdf (qpdf) ``open`` then ``unparse`` of the same objects, for the record (qpdf cannot write an
  incremental update, so it could replace the reader only);

writing an incremental update that replaces the document information (the cross-reference writer):
- ``IncrementalUpdate`` (this project's writer, read by ``PlainPdf``);
- pypdf ``PdfWriter(reader, incremental=True)``, ``add_metadata`` and ``write``.

    python bench/pdfupdate_bench.py [--copies 12] [--rounds 5] [--workdir DIR]

Not a test: nothing fails on timing. Seconds move with the machine's load; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from io import BytesIO
from pathlib import Path

import pikepdf
import pypdf
from pypdf import PdfReader, PdfWriter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.samples import cpu_ms_each, customer_copies
from stamps.pdfupdate import IncrementalUpdate, PlainPdf, PypdfObjects, text_string

INFO = {"/Title": "保险单 PAC20260304028000124", "/Producer": "issuance bench"}


class Sized(BytesIO):
    """A ``BytesIO`` that lends ``data`` itself to pypdf rather than a copy (as ``pipeline.bundle``)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._data = data

    def getbuffer(self) -> memoryview:
        return memoryview(self._data)


def read_structure(source: PlainPdf | PypdfObjects) -> int:
    """What the archive copy's update reads; the number of entries read (so nothing is optimised away)."""
    catalog = source.dictionary(source.trailer["/Root"])
    tree = source.dictionary(catalog["/Pages"])
    outline = source.dictionary(catalog["/Outlines"]) if "/Outlines" in catalog else {}
    last = source.dictionary(outline["/Last"]) if "/Last" in outline else {}
    info = source.dictionary(source.trailer["/Info"]) if "/Info" in source.trailer else {}
    return len(catalog) + len(tree) + len(outline) + len(last) + len(info)


def read_plain(pdf: bytes) -> int:
    plain = PlainPdf.read(pdf)
    if plain is None:
        raise SystemExit("a customer copy is not of the shape PlainPdf reads: the bench is stale")
    return read_structure(plain)


def read_pypdf(pdf: bytes) -> int:
    return read_structure(PypdfObjects(PdfReader(Sized(pdf), strict=True)))


def read_pikepdf(pdf: bytes) -> int:
    """The same objects through qpdf, each dictionary as PDF syntax (``unparse``)."""
    with pikepdf.open(BytesIO(pdf)) as doc:
        catalog = doc.Root
        found = [catalog, catalog.Pages]
        if "/Outlines" in catalog:
            found.append(catalog.Outlines)
            if "/Last" in catalog.Outlines:
                found.append(catalog.Outlines.Last)
        if "/Info" in doc.trailer:
            found.append(doc.trailer.Info)
        return sum(len(obj.unparse(resolved=True)) for obj in found)


def write_ours(pdf: bytes) -> bytes:
    plain = PlainPdf.read(pdf)
    update = IncrementalUpdate(pdf, plain)
    body = b"<<" + b"".join(k.encode() + b" " + text_string(v) for k, v in INFO.items()) + b">>"
    update.set_info(update.add(body))
    return update.to_bytes()


def write_pypdf(pdf: bytes) -> bytes:
    writer = PdfWriter(PdfReader(Sized(pdf)), incremental=True)
    writer.add_metadata(INFO)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=12, help="policies filed to get customer copies")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="keep the filed batch here and reuse it next time")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pdfupdate-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    copies = customer_copies(workdir, n=args.copies)
    sizes = [len(c) for c in copies]
    # each writer must give a file qpdf reads, with every page and the new information
    for pdf in copies:
        pages = len(PdfReader(BytesIO(pdf)).pages)
        for write in (write_ours, write_pypdf):
            with pikepdf.open(BytesIO(write(pdf))) as check:
                if len(check.pages) != pages or str(check.docinfo.Title) != INFO["/Title"]:
                    raise SystemExit(f"{write.__name__} lost a page or the information: the bench is wrong")

    ways = {
        "read: PlainPdf (ours)": read_plain,
        "read: pypdf PdfReader": read_pypdf,
        "read: pikepdf open+unparse": read_pikepdf,
        "write: IncrementalUpdate (ours)": write_ours,
        "write: pypdf incremental": write_pypdf,
    }
    figures: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, fn in ways.items():  # interleaved, so a busy moment hits every way alike
            figures[name].append(cpu_ms_each(fn, copies))

    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
        f"pypdf {pypdf.__version__}, pikepdf {pikepdf.__version__}; load {load[0]:.1f} {load[1]:.1f}"
    )
    print(
        f"{len(copies)} customer copies of {min(sizes) // 1000}–{max(sizes) // 1000} KB, "
        f"{args.rounds} rounds; CPU ms per copy, median of the rounds (min–max)"
    )
    for name, values in figures.items():
        print(f"{name:<34}{statistics.median(values):>8.3f}  ({min(values):.3f}–{max(values):.3f})")
    if args.workdir is None:
        print(f"(the filed batch stays in {workdir}; pass --workdir to reuse it)")


if __name__ == "__main__":
    main()
