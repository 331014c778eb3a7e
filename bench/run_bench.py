"""Archived records per second for `issuance run`, into the local store and into an S3 API server.

Generates N synthetic policies with three images each (bench.synth), then runs the real command in a
subprocess twice, each time into a fresh archive and index (SQLite):

1. the embedded default: a folder store;
2. S3: moto's standalone server on 127.0.0.1, started here (a real HTTP S3 API, in this process).

Prints records/s for both and the split of the wall time the report gives; ``--json FILE`` writes the
figures. Not a test: nothing fails on timing.

    python bench/run_bench.py [-n 500] [--workers N] [--json out.json]
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synth import make_batch  # noqa: E402
from pipeline.convert import default_pool_size  # noqa: E402


def run_once(batch: Path, workdir: Path, env: dict[str, str]) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "report.json"
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(batch), "--report", str(report), "--no-progress"],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"issuance run failed ({result.returncode}): {result.stderr[-3000:]}")
    counts = json.loads(report.read_text(encoding="utf-8"))["counts"]
    return {"seconds": seconds, "counts": counts, "records_per_second": counts["archived"] / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--workers", type=int, default=default_pool_size())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="run-bench-") as tmp:
        root = Path(tmp)
        batch = make_batch(root / "batch", args.n, seed=2027, images_per_record=3)
        common = {
            "ISSUANCE_WORKERS": str(args.workers),
            "ISSUANCE_HMAC_KEY": "bench-hmac-key-0123456789abcdef",
        }
        local = run_once(batch, root / "local", common)

        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per S3 request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            _, port = server.get_host_and_port()
            endpoint = f"http://127.0.0.1:{port}"
            creds = {
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            os.environ.update(creds)
            boto3.client("s3", endpoint_url=endpoint).create_bucket(
                Bucket="bench", ObjectLockEnabledForBucket=True
            )
            s3 = run_once(
                batch,
                root / "s3",
                {**common, **creds, "ISSUANCE_STORE": "s3://bench/archive", "ISSUANCE_S3_ENDPOINT": endpoint},
            )
        finally:
            server.stop()

    figures = {
        "records": args.n,
        "images_per_record": 3,
        "workers": args.workers,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "local_store": local,
        "s3_store": s3,
    }
    print(
        f"machine: {figures['machine']}; {args.n} policies × 3 images; {args.workers} LibreOffice instances"
    )
    for name, fig in (("local folder store", local), ("S3 (moto server, Object Lock)", s3)):
        print(
            f"issuance run → {name:31s}: {fig['counts']['archived']} archived in {fig['seconds']:.1f} s "
            f"= {fig['records_per_second']:.2f} records/s"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
