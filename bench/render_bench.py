"""How fast `issuance render` issues documents, beside LibreOffice converting the same schedules alone.

Generates N synthetic records (bench.synth), then in one run on this machine:

1. ``issuance render`` end to end (the real command, in a subprocess: start-up, validation, rendering,
   conversion, clause merging, report) → documents per second;
2. LibreOffice alone: the same records' schedules, already rendered to .docx, converted by a warm pool of
   the same size (start-up excluded) → documents per second;

and prints both figures and their ratio, as text and as JSON (``--json FILE``). Not a test: nothing
here fails on timing.

    python bench/render_bench.py [-n 200] [--workers N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synth import make_batch  # noqa: E402
from core.products import load_registry  # noqa: E402
from core.records import Policy, parse_record  # noqa: E402
from pipeline.batchfile import read_batch  # noqa: E402
from pipeline.convert import ConverterPool, default_pool_size  # noqa: E402
from pipeline.render import TemplateCache, policy_context, render_docx  # noqa: E402


def bench_render_command(batch: Path, out: Path, workers: int) -> dict:
    began = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "render",
            str(batch),
            "-o",
            str(out),
            "--workers",
            str(workers),
            "--cache",
            str(out.parent / "cache"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    seconds = time.perf_counter() - began
    if result.returncode not in (0, 1):
        raise SystemExit(f"issuance render failed ({result.returncode}): {result.stderr[-2000:]}")
    report = json.loads((out.parent / f"{out.name}-report.json").read_text(encoding="utf-8"))
    documents = sum(len(o.get("documents", [])) for o in report["outcomes"])
    return {
        "seconds": seconds,
        "documents": documents,
        "per_second": documents / seconds,
        "counts": report["counts"],
    }


def bench_libreoffice_only(batch: Path, scratch: Path, workers: int) -> dict:
    registry = load_registry()
    cache = TemplateCache()
    docx_files = []
    for raw in read_batch(batch):
        record, reasons = parse_record(raw.data)
        if not isinstance(record, Policy) or reasons:
            continue
        target = scratch / f"{record.policy_no}.docx"
        render_docx(
            template=registry.products[record.product_code].schedule,
            context=policy_context(record, registry=registry),
            out=target,
            cache=cache,
        )
        docx_files.append(target)
    with ConverterPool(size=workers, workdir=scratch / "lo") as pool:
        pool.start()
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as threads:
            list(threads.map(lambda d: pool.convert(d, d.with_suffix(".pdf")), docx_files))
        seconds = time.perf_counter() - began
    return {"seconds": seconds, "documents": len(docx_files), "per_second": len(docx_files) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="records (policies) to generate")
    parser.add_argument("--workers", type=int, default=default_pool_size())
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        root = Path(tmp)
        batch = make_batch(root / "batch", args.n, seed=2026, images_per_record=3)
        render = bench_render_command(batch, root / "out", args.workers)
        (root / "lo-only").mkdir()
        lo_only = bench_libreoffice_only(batch, root / "lo-only", args.workers)
    figures = {
        "records": args.n,
        "workers": args.workers,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "render_command": render,
        "libreoffice_only": lo_only,
        "ratio_render_to_libreoffice": render["per_second"] / lo_only["per_second"],
    }
    print(f"machine: {figures['machine']}; {args.n} records, {args.workers} LibreOffice instances")
    print(
        f"issuance render (end to end, start-up included): {render['documents']} documents in "
        f"{render['seconds']:.1f} s = {render['per_second']:.2f} documents/s"
    )
    print(
        f"LibreOffice only (same schedules, warm pool):     {lo_only['documents']} documents in "
        f"{lo_only['seconds']:.1f} s = {lo_only['per_second']:.2f} documents/s"
    )
    print(f"ratio render / LibreOffice-only: {figures['ratio_render_to_libreoffice']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
