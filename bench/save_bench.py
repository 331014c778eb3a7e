"""Saving a document in memory: ``stamps.saving.save_pdf`` (qpdf writes into a per-thread memfd,
written over from one save to the next) against pikepdf's own ways of saving to bytes.

On real customer copies (``bench/samples.py``), each opened once with pikepdf, then saved over and over
with the pipeline's options (``SAVE_OPTIONS``: no stream decoded or recompressed). CPU ms per save (this
process, user + system; median over the rounds of the mean over all copies):

- ``save_pdf`` (ours): memfd, reused;
- ``BytesIO``: ``pdf.save(BytesIO())``, the library's documented way (every piece qpdf writes is a call
  back into Python);
- a new memfd per save: what reusing the thread's file buys;
- a temporary file on disk, read back.

It checks that every way gives the same bytes (the file identifier aside, which qpdf makes anew).

    python bench/save_bench.py [--copies 12] [--rounds 5] [--workdir DIR]

Not a test: nothing fails on timing. Seconds move with the machine's load; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pikepdf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.samples import cpu_ms_each, customer_copies
from stamps.saving import SAVE_OPTIONS, save_pdf


def by_bytesio(pdf: pikepdf.Pdf) -> bytes:
    out = BytesIO()
    pdf.save(out, **SAVE_OPTIONS)
    return out.getvalue()


def by_new_memfd(pdf: pikepdf.Pdf) -> bytes:
    with os.fdopen(os.memfd_create("bench-pdf", os.MFD_CLOEXEC), "w+b") as file:
        pdf.save(file, **SAVE_OPTIONS)
        file.seek(0)
        return file.read()


def by_temp_file(pdf: pikepdf.Pdf) -> bytes:
    with tempfile.TemporaryFile() as file:
        pdf.save(file, **SAVE_OPTIONS)
        file.seek(0)
        return file.read()


WAYS: dict[str, Callable[[pikepdf.Pdf], bytes]] = {
    "save_pdf: reused memfd (ours)": save_pdf,
    "pikepdf save to BytesIO": by_bytesio,
    "a new memfd per save": by_new_memfd,
    "a temporary file": by_temp_file,
}


def without_id(data: bytes) -> bytes:
    """The bytes with the trailer's /ID cut out (qpdf draws a new one per save)."""
    at = data.rfind(b"/ID [")
    return data[:at] + data[data.index(b"]", at) :] if at >= 0 else data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=12, help="policies filed to get customer copies")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="keep the filed batch here and reuse it next time")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="save-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    copies = customer_copies(workdir, n=args.copies)
    documents = [pikepdf.open(BytesIO(data)) for data in copies]
    for pdf in documents:
        made = {name: without_id(fn(pdf)) for name, fn in WAYS.items()}
        if len(set(made.values())) != 1:
            raise SystemExit("the ways of saving gave different bytes: the bench is wrong")

    figures: dict[str, list[float]] = {name: [] for name in WAYS}
    for _ in range(args.rounds):
        for name, fn in WAYS.items():  # interleaved, so a busy moment hits every way alike
            figures[name].append(cpu_ms_each(fn, documents))

    load = os.getloadavg()
    sizes = [len(c) for c in copies]
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
        f"pikepdf {pikepdf.__version__} (qpdf {pikepdf.__libqpdf_version__}); "
        f"load {load[0]:.1f} {load[1]:.1f}"
    )
    print(
        f"{len(copies)} customer copies of {min(sizes) // 1000}–{max(sizes) // 1000} KB, "
        f"{args.rounds} rounds; CPU ms per save, median of the rounds (min–max)"
    )
    for name, values in figures.items():
        print(f"{name:<34}{statistics.median(values):>8.3f}  ({min(values):.3f}–{max(values):.3f})")
    if args.workdir is None:
        print(f"(the filed batch stays in {workdir}; pass --workdir to reuse it)")


if __name__ == "__main__":
    main()
