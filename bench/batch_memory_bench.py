"""Peak memory of `issuance run` against the length of the batch: 10^4 lines, then 10^6.

Memory must not grow with the batch (issue 21, item 6): outcomes stream to the report, the log counts
rejections past the first few hundred, and what the run remembers of every line (record ids, policy
numbers) lives in a temporary database on disk. Rendering a million policies would take hours, so the
lines here are real-shaped policies that validate cheaply: each is checked in full (schema, check
digits, sums, clauses) and then refused at its image, whose file is not there — the costliest path that
renders nothing. Both sizes use the same lines, so the two peaks compare like with like.

Runs the real command in a subprocess into a fresh archive and index each time, and reads the peak RSS
that the command's own report gives (``resources.peak_rss_mb``: the `issuance` process alone, without
LibreOffice). Prints both peaks, their ratio, and lines per second. Not a test: nothing fails.

    python bench/batch_memory_bench.py [--sizes 10000 1000000] [--format jsonl|csv]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synth import PRODUCT_CYCLE, document_number, flatten, make_batch  # noqa: E402


def write_lines(folder: Path, n: int, *, fmt: str) -> Path:
    """``n`` policies made from twelve synthetic ones, each with its own numbers and a missing image."""
    templates = [
        json.loads(line)
        for line in make_batch(folder / "templates", 12, seed=77, images_per_record=1)
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    day = dt.date(2026, 11, 2)
    path = folder / f"batch.{fmt}"

    def records():
        for i in range(n):
            record = dict(templates[i % len(templates)])
            product = record["product_code"]
            branch = record["branch"]["code"]
            assert product in PRODUCT_CYCLE
            record["record_id"] = f"MEM-{i + 1:07d}"
            record["policy_no"] = document_number("P", i, seed=77, product=product, branch=branch, day=day)
            record["proposal_no"] = document_number("T", i, seed=77, product=product, branch=branch, day=day)
            record["images"] = [{"kind": record["images"][0]["kind"], "path": f"images/missing-{i}.jpg"}]
            yield record

    if fmt == "jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for record in records():
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        return path
    rows = (flatten(r) for r in records())
    first = next(rows)
    columns = sorted({*first, *(k for t in templates for k in flatten(t))})
    with path.open("w", encoding="gb18030", newline="") as fh:  # as Chinese spreadsheet software saves it
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerow(first)
        for row in rows:
            writer.writerow(row)
    return path


def run_once(batch: Path, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ISSUANCE_STORE": f"file://{workdir / 'archive'}",
        "ISSUANCE_INDEX": f"sqlite:///{workdir / 'index.sqlite'}",
        "ISSUANCE_HMAC_KEY": "batch-memory-bench-key-0123456789",
        "ISSUANCE_WORKERS": "1",
    }
    report = workdir / "report.json"
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(batch), "--report", str(report), "--no-progress"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    if result.returncode not in (0, 1):
        raise SystemExit(f"issuance run failed ({result.returncode}): {result.stderr[-2000:]}")
    with report.open("rb") as fh:  # the header only: the outcomes follow it, one a line
        head = b"".join(line for _, line in zip(range(40), fh, strict=False))
    header = json.loads(head[: head.index(b'"outcomes"')].rstrip().rstrip(b",") + b"}")
    return {
        "lines": header["counts"]["records"],
        "rejected": header["counts"]["rejected"],
        "peak_rss_mb": header["resources"]["peak_rss_mb"],
        "seconds": round(seconds, 1),
        "report_mb": round(report.stat().st_size / 1e6, 1),
        "log_lines": len(result.stderr.splitlines()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
        for n in args.sizes:
            folder = Path(tmp) / f"n{n}"
            batch = write_lines(folder, n, fmt=args.format)
            figures = run_once(batch, folder / "run")
            results.append(figures)
            print(
                f"{n:>9,} lines ({args.format}, {batch.stat().st_size / 1e6:,.0f} MB): peak RSS "
                f"{figures['peak_rss_mb']:.1f} MB, {figures['lines'] / figures['seconds']:,.0f} lines/s, "
                f"report {figures['report_mb']:,.1f} MB, {figures['log_lines']} log lines"
            )
            assert figures["lines"] == figures["rejected"] == n, figures
    if len(results) > 1:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        print(f"peak ratio {ratio:.2f}× (goal: at most 1.5×)")


if __name__ == "__main__":
    main()
