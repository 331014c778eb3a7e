"""Throughput of the whole pipeline beside its floor (LibreOffice) and a naive baseline, in one run.

Generates N synthetic policies (all three products, three images each, bench.synth) and measures on this
machine:

(a) LibreOffice only: the same records' schedules, rendered to .docx beforehand, converted with the best
    single-machine set-up found — a warm pool, one document per schedule, and also several schedules per
    LibreOffice document (the faster one is reported as (a));
(b) ``issuance run`` end to end into the local store (the real command in a subprocess: start-up,
    validation, rendering, conversion, sealing, images, bundles, upload, index, ledger);
(c) a naive baseline on a sample of the records: one ``soffice --convert-to pdf`` start per schedule and
    one overlay (the seal image read from disk again) per page;

and prints records/s, the ratios b/a and b/c, the peak memory of (b), and the time split per stage that
(b)'s report gives. ``--json FILE`` writes the figures. Not a test: nothing fails on timing.

    python bench/throughput_bench.py [-n 500] [--naive-sample 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synth import make_batch  # noqa: E402
from pipeline.batchfile import read_batch  # noqa: E402
from pipeline.convert import ConverterPool, default_pool_size  # noqa: E402
from pipeline.products import load_registry  # noqa: E402
from pipeline.records import Policy, parse_record  # noqa: E402
from pipeline.render import TemplateCache, policy_context, render_docx  # noqa: E402

CHUNK = 16  # schedules per LibreOffice document in the combined set-up


def render_schedules(batch: Path, folder: Path) -> list[tuple[str, Path]]:
    """The schedules of every policy in ``batch`` as .docx (product code, path)."""
    registry = load_registry()
    cache = TemplateCache()
    out = []
    for raw in read_batch(batch):
        record, reasons = parse_record(raw.data or {})
        if not isinstance(record, Policy) or reasons:
            continue
        target = folder / f"{record.policy_no}.docx"
        render_docx(
            template=registry.products[record.product_code].schedule,
            context=policy_context(record, registry=registry),
            out=target,
            cache=cache,
        )
        out.append((record.product_code, target))
    return out


def combine(paths: list[Path], target: Path) -> None:
    """One .docx holding several schedules of one template, each starting on a new page."""
    from docx import Document
    from docx.enum.text import WD_BREAK

    base = Document(paths[0])
    body = base.element.body
    section = body[-1]
    for path in paths[1:]:
        brk = base.add_paragraph()
        brk.add_run().add_break(WD_BREAK.PAGE)
        body.remove(brk._p)
        section.addprevious(brk._p)
        for element in list(Document(path).element.body)[:-1]:
            section.addprevious(copy.deepcopy(element))
    base.save(target)


def bench_libreoffice(schedules: list[tuple[str, Path]], scratch: Path, workers: int) -> dict:
    with ConverterPool(size=workers, workdir=scratch / "lo") as pool:
        pool.start()
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as threads:
            list(threads.map(lambda item: pool.convert(item[1], item[1].with_suffix(".pdf")), schedules))
        separate = time.perf_counter() - began

        chunks: list[Path] = []
        by_product: dict[str, list[Path]] = {}
        for product, path in schedules:
            by_product.setdefault(product, []).append(path)
        for product, paths in by_product.items():
            for i in range(0, len(paths), CHUNK):
                target = scratch / f"combined-{product}-{i:05d}.docx"
                combine(paths[i : i + CHUNK], target)
                chunks.append(target)
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as threads:
            list(threads.map(lambda d: pool.convert(d, d.with_suffix(".pdf")), chunks))
        combined = time.perf_counter() - began
    n = len(schedules)
    return {
        "documents": n,
        "separate": {"seconds": separate, "per_second": n / separate},
        "combined": {"seconds": combined, "per_second": n / combined, "per_document": CHUNK},
        "best_per_second": max(n / separate, n / combined),
        "best": "combined" if combined < separate else "separate",
    }


def bench_run(batch: Path, workdir: Path, workers: int) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "report.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ISSUANCE_WORKERS": str(workers),
        "ISSUANCE_HMAC_KEY": "bench-hmac-key-0123456789abcdef",
    }
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(batch), "--report", str(report), "--no-progress"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"issuance run failed ({result.returncode}): {result.stderr[-3000:]}")
    body = json.loads(report.read_text(encoding="utf-8"))
    archived = body["counts"]["archived"]
    return {
        "seconds": seconds,
        "archived": archived,
        "per_second": archived / seconds,
        "peak_rss_mb": body.get("resources", {}).get("peak_rss_mb"),
        "stages": body.get("stages"),
    }


def bench_naive(schedules: list[tuple[str, Path]], scratch: Path, sample: int) -> dict:
    """One soffice start per schedule, and a seal overlay built from the image file for every page."""
    from PIL import Image
    from pypdf import PdfReader, PdfWriter

    from stamps import load_seal_registry

    seal_png = scratch / "seal.png"
    load_seal_registry().seal_for(branch_code="110105", document="policy").image(dpi=300).save(seal_png)
    profile = (scratch / "naive-profile").as_uri()
    chosen = schedules[:sample]
    began = time.perf_counter()
    for _product, docx in chosen:
        subprocess.run(
            [
                "soffice",
                f"-env:UserInstallation={profile}",
                "--headless",
                "--convert-to",
                "pdf",
                "--outdir",
                str(scratch / "naive"),
                str(docx),
            ],
            capture_output=True,
            check=True,
        )
        writer = PdfWriter(clone_from=scratch / "naive" / docx.with_suffix(".pdf").name)
        for page in writer.pages:
            overlay_buf = BytesIO()
            with Image.open(seal_png) as seal:  # read again for every page: the naive way
                seal.convert("RGB").save(overlay_buf, "PDF", resolution=300)
            page.merge_page(PdfReader(BytesIO(overlay_buf.getvalue())).pages[0])
        with (scratch / "naive" / f"{docx.stem}-sealed.pdf").open("wb") as fh:
            writer.write(fh)
    seconds = time.perf_counter() - began
    return {"documents": len(chosen), "seconds": seconds, "per_second": len(chosen) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--workers", type=int, default=default_pool_size())
    parser.add_argument("--naive-sample", type=int, default=20, help="records for the naive baseline")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        root = Path(tmp)
        batch = make_batch(root / "batch", args.n, seed=2028, images_per_record=3)
        (root / "docx").mkdir()
        (root / "naive").mkdir()
        schedules = render_schedules(batch, root / "docx")
        c = bench_naive(schedules, root, args.naive_sample)
        a = bench_libreoffice(schedules, root / "docx", args.workers)
        b = bench_run(batch, root / "run", args.workers)
    figures = {
        "records": args.n,
        "workers": args.workers,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "a_libreoffice_only": a,
        "b_issuance_run": b,
        "c_naive": c,
        "ratio_b_a": b["per_second"] / a["best_per_second"],
        "ratio_b_c": b["per_second"] / c["per_second"],
    }
    print(
        f"machine: {figures['machine']}; {args.n} policies × 3 images; {args.workers} LibreOffice instances"
    )
    print(
        f"(a) LibreOffice only: separate {a['separate']['per_second']:.2f}/s, "
        f"{CHUNK} per document {a['combined']['per_second']:.2f}/s → best {a['best_per_second']:.2f}/s"
    )
    print(f"(b) issuance run, end to end: {b['archived']} in {b['seconds']:.1f} s = {b['per_second']:.2f}/s")
    print(f"(c) naive baseline: {c['documents']} in {c['seconds']:.1f} s = {c['per_second']:.2f} records/s")
    print(
        f"b/a = {figures['ratio_b_a']:.2f}, b/c = {figures['ratio_b_c']:.1f}, "
        f"peak RSS (b) {b['peak_rss_mb']} MB"
    )
    if b["stages"]:
        split = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(b["stages"].items(), key=lambda kv: -kv[1]))
        print(f"time split of (b), summed over threads: {split}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
