"""Throughput of the whole pipeline beside its floor (LibreOffice) and a naive baseline, in one run.

Generates N synthetic policies (all three products, three images each, bench.synth) and measures on this
machine:

(a) LibreOffice only: the same records' schedules, rendered to .docx beforehand, converted with the best
    single-machine set-up found — a warm pool of ``--workers`` instances fed by as many threads, one
    document per schedule, and also ``CHUNK`` schedules per LibreOffice document composed exactly as
    ``issuance run`` composes them (``pipeline.schedules``); the faster one is reported as (a), and
    beside it the same with the pool's start counted, which ``issuance run`` cannot leave out;
(b) ``issuance run`` end to end into the local store (the real command in a subprocess: start-up,
    validation, rendering, conversion, sealing, images, bundles, upload, index, ledger), as a nightly run
    finds things: the clause cache and the archive (its index migrated) that a previous run left;
(c) a naive baseline on a sample of the records: one ``soffice --convert-to pdf`` start per schedule and
    one overlay (the seal image read from disk again) per page;

and prints records/s, the ratios b/a and b/c, the peak memory of (b), and the time split per stage that
(b)'s report gives. (b) is run three ways in each round: unsigned; signed (a SPECIMEN key, PAdES B-T) with
timestamps from a TSA on loopback that answers at once; and the same with the TSA answering 200 ms late
(``--tsa-delay``). The TSA (``bench/tsa.py``) runs in a process of its own, as a production TSA runs on
another machine: signing's own CPU in the ``issuance`` process (the report's ``signing``, thread CPU time
around each signature, the timestamp's request and token included) and the TSA's CPU per token are
printed apart. (a) and (b) are measured ``--repeat`` times (3), alternately, and their medians
compared: this machine's speed drifts over minutes (in one run (a) went from 34 to 50/s between rounds),
which a single pair of runs takes for a difference between (a) and (b). ``--memory-records 10000`` also
runs (b) on that many records and prints its peak memory against the 500-record run's. ``--json FILE``
writes the figures. Not a test: nothing fails on timing.

    python bench/throughput_bench.py [-n 500] [--repeat 3] [--naive-sample 20] [--memory-records 10000]
                                     [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
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
from bench.tsa import TsaProcess  # noqa: E402
from core.config import DEFAULT_CHUNK as CHUNK  # noqa: E402  (schedules per LibreOffice document)
from core.products import load_registry  # noqa: E402
from core.records import Policy, parse_record  # noqa: E402
from pipeline.batchfile import read_batch  # noqa: E402
from pipeline.convert import ConverterPool, default_pool_size, profile_template_for  # noqa: E402
from pipeline.documents import SEAL_ANCHOR, SEAL_OVER  # noqa: E402
from pipeline.render import TemplateCache, policy_context, render_docx  # noqa: E402
from pipeline.schedules import ComposedTemplate  # noqa: E402
from stamps.keys import write_specimen_pkcs12  # noqa: E402


def _policies(batch: Path) -> list[Policy]:
    policies = []
    for raw in read_batch(batch):
        record, reasons = parse_record(raw.data or {})
        if isinstance(record, Policy) and not reasons:
            policies.append(record)
    return policies


def render_schedules(batch: Path, folder: Path) -> list[tuple[str, Path]]:
    """The schedule of every policy in ``batch`` as its own .docx (product code, path)."""
    registry = load_registry()
    cache = TemplateCache()
    out = []
    for policy in _policies(batch):
        target = folder / f"{policy.policy_no}.docx"
        render_docx(
            template=registry.products[policy.product_code].schedule,
            context=policy_context(policy, registry=registry),
            out=target,
            cache=cache,
        )
        out.append((policy.product_code, target))
    return out


def compose_schedules(batch: Path, folder: Path, chunk: int) -> list[Path]:
    """The schedules of ``batch``, ``chunk`` policies of one product per .docx, as ``issuance run`` does."""
    registry = load_registry()
    by_product: dict[str, list[Policy]] = {}
    for policy in _policies(batch):
        by_product.setdefault(policy.product_code, []).append(policy)
    documents = []
    for product, policies in by_product.items():
        template = ComposedTemplate(
            registry.products[product].schedule, anchor=SEAL_ANCHOR, seal_over=SEAL_OVER
        )
        for i in range(0, len(policies), chunk):
            target = folder / f"composed-{product}-{i:05d}.docx"
            template.write([policy_context(p, registry=registry) for p in policies[i : i + chunk]], target)
            documents.append(target)
    return documents


def bench_libreoffice(
    schedules: list[tuple[str, Path]],
    composed: list[Path],
    scratch: Path,
    workers: int,
    *,
    separate: bool,
    template: Path | None = None,
) -> dict:
    """(a) once: a pool of ``workers`` started (timed too; from the LibreOffice profile template that
    ``issuance run`` also starts from), then the schedules ``CHUNK`` per document, then (``separate``)
    every schedule one per document."""
    cpu = _children_cpu()
    with ConverterPool(size=workers, workdir=scratch / "lo", profile_template=template) as pool:
        began = time.perf_counter()
        pool.start()
        start = time.perf_counter() - began

        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as threads:
            list(threads.map(lambda d: pool.convert(d, d.with_suffix(".pdf")), composed))
        combined = time.perf_counter() - began

        # One per document is three times slower: measured once, after the composed documents (measured
        # after it, the composed figure was the lowest of the three rounds in each of four runs).
        one_each = None
        if separate:
            began = time.perf_counter()
            with ThreadPoolExecutor(max_workers=workers) as threads:
                list(threads.map(lambda item: pool.convert(item[1], item[1].with_suffix(".pdf")), schedules))
            one_each = time.perf_counter() - began
    cpu = _children_cpu() - cpu  # the pool's processes, reaped when it closed
    n = len(schedules)
    best = min(combined, one_each or combined)
    return {
        "documents": n,
        # LibreOffice's CPU per schedule (start included), when the composed documents are all it did
        "cpu_ms_per_record": None if one_each else 1000 * cpu / n,
        "start_seconds": start,
        "separate": {"seconds": one_each, "per_second": n / one_each} if one_each else None,
        "combined": {"seconds": combined, "per_second": n / combined, "per_document": CHUNK},
        "best_per_second": n / best,
        "best": "combined" if best == combined else "separate",
        # LibreOffice's own start counted too, as ``issuance run`` must count it
        "with_start_per_second": n / (start + best),
    }


def _children_cpu() -> float:
    """CPU seconds of every finished child process so far (and of theirs: LibreOffice under a bridge)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_run(
    batch: Path,
    workdir: Path,
    workers: int,
    *,
    cache: Path,
    archive: Path | None = None,
    settings: dict[str, str] | None = None,
) -> dict:
    """``issuance run`` on ``batch`` with the clause cache ``cache``, into a copy of the archive (store and
    index) in ``archive`` when given, else into a new one; ``settings``: more ``ISSUANCE_*`` variables
    (the signing key and the TSA)."""
    if archive is not None:
        shutil.copytree(archive, workdir / "var")
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "report.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ISSUANCE_WORKERS": str(workers),
        "ISSUANCE_HMAC_KEY": "bench-hmac-key-0123456789abcdef",
        "ISSUANCE_CACHE": str(cache),
        **(settings or {}),
    }
    began, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(batch), "--report", str(report), "--no-progress"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds, cpu = time.perf_counter() - began, _children_cpu() - cpu
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
        # CPU per record: the whole run (its LibreOffice included), and the pipeline's own process
        "cpu_ms_per_record": 1000 * cpu / archived,
        "pipeline_cpu_ms_per_record": 1000 * body.get("resources", {}).get("cpu_seconds", 0) / archived,
        "signing": body.get("signing"),
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
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="(a) and (b) are measured this many times, alternately; the medians are reported (the "
        "machine's speed drifts over minutes, and both are measured across the drift)",
    )
    parser.add_argument(
        "--memory-records",
        type=int,
        default=0,
        help="also run (b) on this many records (10000 for the issue's check) and compare its peak RSS",
    )
    parser.add_argument(
        "--tsa-delay", type=float, default=0.2, help="seconds the late TSA waits before each answer"
    )
    parser.add_argument("--unsigned-only", action="store_true", help="leave out the signed runs of (b)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        root = Path(tmp)
        batch = make_batch(root / "batch", args.n, seed=2028, images_per_record=3)
        (root / "docx").mkdir()
        (root / "naive").mkdir()
        schedules = render_schedules(batch, root / "docx")
        composed = compose_schedules(batch, root / "docx", CHUNK)
        c = bench_naive(schedules, root, args.naive_sample)
        # A nightly run finds what earlier nights left: the clause PDFs, converted once per clause version
        # and kept (var/cache) beside the LibreOffice profile template, and the archive with its index,
        # migrated when the first night opened it. A small run of another batch leaves them, and each (b)
        # files into a copy of that archive.
        cache = root / "cache"
        bench_run(
            make_batch(root / "warm", 6, seed=7, images_per_record=1),
            root / "warm-run",
            args.workers,
            cache=cache,
        )
        earlier = root / "warm-run" / "var"  # the archive a previous night left
        a_runs, b_runs = [], []
        signed_runs: dict[str, list[dict]] = {"prompt": [], "late": []}
        tsas: dict[str, TsaProcess] = {}
        if not args.unsigned_only:
            write_specimen_pkcs12(root / "signer.p12", b"bench")
            tsas = {"prompt": TsaProcess(delay=0.0), "late": TsaProcess(delay=args.tsa_delay)}
        signing = {
            name: {
                "ISSUANCE_SIGNING_KEY": str(root / "signer.p12"),
                "ISSUANCE_SIGNING_PASSWORD": "bench",
                "ISSUANCE_TSA_URL": tsa.url,
            }
            for name, tsa in tsas.items()
        }
        for k in range(max(1, args.repeat)):
            a_runs.append(
                bench_libreoffice(
                    schedules,
                    composed,
                    root / "docx" / f"a{k}",
                    args.workers,
                    separate=k == 0,
                    template=profile_template_for(cache),
                )
            )
            b_runs.append(bench_run(batch, root / f"run{k}", args.workers, cache=cache, archive=earlier))
            for name, env in signing.items():
                signed_runs[name].append(
                    bench_run(
                        batch,
                        root / f"run{k}-{name}",
                        args.workers,
                        cache=cache,
                        archive=earlier,
                        settings=env,
                    )
                )
        tsa_figures = {name: tsa.stop() for name, tsa in tsas.items()}
        memory = None
        if args.memory_records:
            big = make_batch(root / "big", args.memory_records, seed=2029, images_per_record=3)
            long_run = bench_run(big, root / "run-big", args.workers, cache=cache, archive=earlier)
            peak_b = statistics.median([r["peak_rss_mb"] for r in b_runs])
            memory = {
                "records": args.memory_records,
                "seconds": long_run["seconds"],
                "per_second": long_run["per_second"],
                "peak_rss_mb": long_run["peak_rss_mb"],
                "ratio_to_b": long_run["peak_rss_mb"] / peak_b,
            }
    a_best = statistics.median([r["best_per_second"] for r in a_runs])
    a_cold = statistics.median([r["with_start_per_second"] for r in a_runs])
    b_rate = statistics.median([r["per_second"] for r in b_runs])
    b = min(b_runs, key=lambda r: abs(r["per_second"] - b_rate))  # the median run, for its details
    figures = {
        "records": args.n,
        "workers": args.workers,
        "repeat": len(b_runs),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "a_libreoffice_only": a_runs,
        "b_issuance_run": b_runs,
        "c_naive": c,
        "a_median_per_second": a_best,
        "a_with_start_median_per_second": a_cold,
        "b_median_per_second": b_rate,
        "ratio_b_a": b_rate / a_best,
        "ratio_b_a_with_start": b_rate / a_cold,
        "ratio_b_c": b_rate / c["per_second"],
        "memory": memory,
    }
    if tsas:
        prompt = statistics.median([r["per_second"] for r in signed_runs["prompt"]])
        late = statistics.median([r["per_second"] for r in signed_runs["late"]])
        sign_ms = statistics.median(
            [r["signing"]["cpu_ms_each"] for runs in signed_runs.values() for r in runs]
        )
        tokens, tsa_cpu = tsa_figures["prompt"]
        figures["signed"] = {
            "runs": signed_runs,
            "prompt_median_per_second": prompt,
            "late_median_per_second": late,
            "tsa_delay_seconds": args.tsa_delay,
            "ratio_b_a_signed": prompt / a_best,
            "ratio_late_prompt": late / prompt,
            "signing_cpu_ms_per_document": sign_ms,
            "tsa_tokens": tokens,
            "tsa_cpu_ms_per_token": 1000 * tsa_cpu / max(tokens, 1),
        }
    print(
        f"machine: {figures['machine']}; {args.n} policies × 3 images; {args.workers} LibreOffice instances; "
        f"(a) and (b) alternately, {len(b_runs)} times each"
    )
    for k, (a, run) in enumerate(zip(a_runs, b_runs, strict=True), 1):
        print(
            f"  round {k}: (a) start {a['start_seconds']:.2f} s, "
            + (f"one per document {a['separate']['per_second']:.2f}/s, " if a["separate"] else "")
            + f"{CHUNK} per document {a['combined']['per_second']:.2f}/s, with its start "
            f"{a['with_start_per_second']:.2f}/s; (b) {run['archived']} in {run['seconds']:.1f} s = "
            f"{run['per_second']:.2f}/s"
        )
    a_rates = [r["best_per_second"] for r in a_runs]
    print(
        f"(a) LibreOffice only, median: {a_best:.2f}/s converting; {a_cold:.2f}/s counting its start "
        f"(range {min(a_rates):.2f}–{max(a_rates):.2f})"
    )
    print(
        f"(b) issuance run, end to end, median: {b_rate:.2f}/s "
        f"(range {min(r['per_second'] for r in b_runs):.2f}–{max(r['per_second'] for r in b_runs):.2f})"
    )
    if tsas:
        signed = figures["signed"]
        for name, label in (
            ("prompt", "a TSA that answers at once"),
            ("late", f"a TSA {args.tsa_delay * 1000:.0f} ms late"),
        ):
            rates = [r["per_second"] for r in signed_runs[name]]
            print(
                f"(b) signed, PAdES B-T with {label}, median: {statistics.median(rates):.2f}/s "
                f"(range {min(rates):.2f}–{max(rates):.2f})"
            )
        print(
            f"signed: b/a = {signed['ratio_b_a_signed']:.2f} (unsigned {figures['ratio_b_a']:.2f}); "
            f"late TSA / prompt TSA = {signed['ratio_late_prompt']:.2f}; signing's own CPU in the issuance "
            f"process {signed['signing_cpu_ms_per_document']:.2f} ms per document (timestamp request and "
            f"token included); the TSA's CPU {signed['tsa_cpu_ms_per_token']:.2f} ms per token "
            f"({signed['tsa_tokens']} tokens, its own process)"
        )
    print(f"(c) naive baseline: {c['documents']} in {c['seconds']:.1f} s = {c['per_second']:.2f} records/s")
    print(
        f"b/a = {figures['ratio_b_a']:.2f} "
        f"(against (a) with its start: {figures['ratio_b_a_with_start']:.2f}), "
        f"b/c = {figures['ratio_b_c']:.1f}, peak RSS (b) {b['peak_rss_mb']} MB"
    )
    a_cpu = [r["cpu_ms_per_record"] for r in a_runs if r["cpu_ms_per_record"]]
    if a_cpu:
        a_ms = statistics.median(a_cpu)
        b_cpu = statistics.median([r["cpu_ms_per_record"] for r in b_runs])
        own = statistics.median([r["pipeline_cpu_ms_per_record"] for r in b_runs])
        print(
            f"CPU per record, medians (steadier than the rates, which move with the machine's speed): "
            f"(a) LibreOffice {a_ms:.1f} ms with its start; (b) {b_cpu:.1f} ms, of which the "
            f"pipeline's own process {own:.1f} ms and LibreOffice {b_cpu - own:.1f} ms; "
            f"(a)/(b) {a_ms / b_cpu:.2f}"
        )
        figures["cpu_ratio_a_b"] = a_ms / b_cpu
    if b["stages"]:
        split = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(b["stages"].items(), key=lambda kv: -kv[1]))
        print(f"time split of the median (b), summed over threads: {split}")
    if memory:
        print(
            f"memory: {memory['records']} records in {memory['seconds']:.1f} s "
            f"({memory['per_second']:.2f}/s), "
            f"peak RSS {memory['peak_rss_mb']} MB = {memory['ratio_to_b']:.2f} × the {args.n}-record run"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
