"""Time per sampled policy and peak memory of `issuance audit`: a 2,000-policy lot at level II / AQL 2.5
(n = 125), or a sample of ``--size`` policies from it.

Builds the archive once with the real `issuance run` (bench.synth policies, four images each, a folder
store and SQLite under ``--workdir``) and reuses it on later runs: building 2,000 policies takes several
minutes, the audit itself is what is measured. Then audits the whole archive as one lot, in this
process, through ``archive.audit.run_audit`` (draw, every check on every sampled policy, reports,
archiving, ledger), and prints the wall time per sampled policy and the peak resident memory of this
process. Not a test: nothing fails on timing.

    python bench/audit_bench.py --workdir /tmp/audit-bench [-n 2000] [--size 5] [--seal-dpi 150] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synth import make_batch  # noqa: E402

HMAC_KEY = "bench-hmac-key-0123456789abcdef"


def build(workdir: Path, n: int, workers: int | None) -> float:
    """File ``n`` synthetic policies into ``workdir/var`` unless they are there; seconds spent."""
    from archive.index import Index

    marker = workdir / "built.json"  # written once the run has gone through the whole batch
    if marker.is_file():
        built = json.loads(marker.read_text(encoding="utf-8"))
        print(f"reusing the archive in {workdir} ({built['archived']} policies)")
        return 0.0
    batch = workdir / "batch" / "batch.jsonl"
    if not batch.is_file():
        make_batch(workdir / "batch", n, seed=2077, images_per_record=4)
    env = {**os.environ, "PYTHONPATH": str(REPO), "ISSUANCE_HMAC_KEY": HMAC_KEY}
    if workers:
        env["ISSUANCE_WORKERS"] = str(workers)
    print(f"filing {n} policies into {workdir}/var with issuance run (once; reused later) …", flush=True)
    began = time.perf_counter()
    # a re-run after an interruption files only what is missing (issuance run is idempotent)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(batch), "--no-progress"],
        cwd=workdir,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"issuance run failed ({done.returncode}): {done.stderr[-3000:]}")
    print(done.stdout.strip())
    index = Index.open(f"sqlite:///{workdir / 'var' / 'index.sqlite'}", hmac_key=HMAC_KEY.encode())
    marker.write_text(json.dumps({"archived": index.count("policies")}) + "\n", encoding="utf-8")
    index.close()
    return time.perf_counter() - began


def _cpu_seconds() -> float:
    """User and system CPU of this process and of the children it has waited for (poppler's programs)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="where the archive is built and kept")
    parser.add_argument("-n", type=int, default=2000, help="policies in the lot (default 2000)")
    parser.add_argument("--seal-dpi", type=float, default=150, help="seal-finding resolution (default 150)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="policies checked at once")
    parser.add_argument("--size", type=int, help="sample exactly this many policies (default: the plan's n)")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    build_seconds = build(args.workdir.resolve(), args.n, None)

    from archive.audit import Auditor, AuditRequest, LotCriteria, run_audit
    from archive.index import Index
    from archive.store import LocalStore
    from core.products import load_registry
    from stamps import load_seal_registry

    var = args.workdir.resolve() / "var"
    index = Index.open(f"sqlite:///{var / 'index.sqlite'}", hmac_key=HMAC_KEY.encode())
    auditor = Auditor(
        store=LocalStore(var / "archive"),
        index=index,
        products=load_registry(),
        seals=load_seal_registry(),
        seal_dpi=args.seal_dpi,
    )
    times: list[float] = []
    cpu_before = _cpu_seconds()
    began = time.perf_counter()
    outcome = run_audit(
        auditor=auditor,
        request=AuditRequest(criteria=LotCriteria(), level="II", aql="2.5", size=args.size, seed=args.seed),
        actor="bench",
        out_dir=args.workdir / "report",
        workers=args.workers,
        on_result=lambda _r: times.append(time.perf_counter()),
    )
    total = time.perf_counter() - began
    cpu = _cpu_seconds() - cpu_before
    index.close()
    report = outcome.report
    plan = report.plan
    checking = (times[-1] - began) if times else total
    per_policy = checking / len(report.results)
    pages = sum(r.versions for r in report.results)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "lot_size": plan.lot_size,
        "code_letter": plan.code_letter,
        "sample_size": plan.sample_size,
        "ac": plan.ac,
        "re": plan.re,
        "defects": report.defects,
        "verdict": report.verdict,
        "workers": args.workers,
        "seal_dpi": args.seal_dpi,
        "audit_seconds": round(total, 1),
        "checking_seconds": round(checking, 1),
        "seconds_per_sampled_policy": round(per_policy, 2),
        "cpu_seconds_per_policy": round(cpu / len(report.results), 3),
        "peak_rss_mb": round(peak_mb, 1),
        "html_report_bytes": outcome.files["html"].stat().st_size,
        "build_seconds": round(build_seconds, 1),
    }
    print(
        f"lot N={plan.lot_size}, {f'level {plan.level}' if plan.level else 'fixed size'}, AQL {plan.aql} "
        f"-> {plan.code_letter}, n={plan.sample_size}, "
        f"Ac {plan.ac} / Re {plan.re}: {report.defects} defective -> {report.verdict}"
    )
    print(
        f"audit {total:.1f} s ({checking:.1f} s checking {len(report.results)} policies, {pages} versions, "
        f"{args.workers} at a time, seals at {args.seal_dpi:g} dpi)"
    )
    print(
        f"{per_policy:.2f} s per sampled policy (wall), {cpu / len(report.results):.3f} s of CPU per policy "
        f"(this process and the poppler programs it ran, whole audit), report "
        f"{figures['html_report_bytes'] / 1e6:.1f} MB"
    )
    print(f"peak RSS {peak_mb:.1f} MB (this process: the audit; the archive is built by another)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
