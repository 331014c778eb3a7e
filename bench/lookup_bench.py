"""Retrieval at scale: `issuance find` by policy number, ID number and plate over N synthetic policies.

Builds an index with ``Index.open`` (the real schema and migrations), bulk-loads N synthetic policies
with two parties each (applicant and insured; ID numbers stored only as their HMAC, like the real code),
then times ``Index.find`` -- the call the CLI makes -- for random existing policy numbers, ID numbers
(passed in clear, hashed inside ``find``) and plates. Reports p50/p95/p99/max in ms per kind and backend
against the 50 ms p95 target. SQLite is a file in a temporary folder; PostgreSQL is a throw-away cluster
started here (as in tests/conftest.py) and stopped at the end. Not a test: nothing fails on timing.

    python bench/lookup_bench.py [-n 1000000] [--lookups 1000] [--json out.json] [--backend both]
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from archive.index import Index  # noqa: E402
from archive.index import schema as s  # noqa: E402

HMAC_KEY = b"bench-hmac-key-0123456789abcdef"
TARGET_MS = 50.0
CHUNK = 20_000
PLATE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O, as on real plates
PLATE_SPACE = len(PLATE_ALPHABET) ** 5
PRODUCTS = ("MOTOR-COMPULSORY", "MOTOR-COMMERCIAL", "HOME-PROPERTY")
BRANCHES = (("110000", "北京分公司"), ("310000", "上海分公司"), ("440300", "深圳分公司"))
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)

POLICY_COLS = [c.name for c in s.policies.columns]
PARTY_COLS = [c.name for c in s.parties.columns]


# --- synthetic data: every value is a function of the row number, so lookups can regenerate it ---------


def policy_no(i: int) -> str:
    return f"PB{2024_0000_0000 + i:014d}"


def insured_id(i: int) -> str:
    return f"110101{(i * 7919 + 13) % 10**11:011d}X"  # 18 characters, unique for i < 10**11


def applicant_id(i: int) -> str:
    return f"320102{(i * 104729 + 7) % 10**11:011d}5"


def plate(i: int) -> str:
    k = (i * 7_368_787) % PLATE_SPACE  # a permutation of 0..34**5-1: unique, scattered plates
    chars = []
    for _ in range(5):
        k, r = divmod(k, len(PLATE_ALPHABET))
        chars.append(PLATE_ALPHABET[r])
    return "京A" + "".join(chars)


def masked(id_no: str) -> str:
    return f"{id_no[:6]}********{id_no[-4:]}"


def rows(index: Index, start: int, stop: int) -> tuple[list[tuple], list[tuple]]:
    """Policy rows and party rows (tuples in POLICY_COLS / PARTY_COLS order) for numbers start..stop-1."""
    policies, parties = [], []
    for i in range(start, stop):
        no = policy_no(i)
        ins_id, app_id = insured_id(i), applicant_id(i)
        issued = BASE_TIME + timedelta(seconds=i * 17)
        branch_code, branch_name = BRANCHES[i % len(BRANCHES)]
        product = PRODUCTS[i % len(PRODUCTS)]
        motor = product.startswith("MOTOR")
        values = {
            "policy_no": no,
            "proposal_no": f"TB{2024_0000_0000 + i:014d}",
            "product_code": product,
            "branch_code": branch_code,
            "branch_name": branch_name,
            "applicant_name": f"投保人{i % 9973}",
            "insured_name": f"被保险人{i % 99991}",
            "insured_id_masked": masked(ins_id),
            "plate": plate(i) if motor else None,
            "vin": f"LVS{i:014d}" if motor else None,
            "period_start": issued + timedelta(days=1),
            "period_end": issued + timedelta(days=366),
            "total_premium": Decimal(950 + i % 5000) + Decimal("0.50"),
            "currency": "CNY",
            "print_serial": f"S{i:012d}",
            "status": "issued",
            "complete": True,
            "missing_images": "",
            "issued_at": issued,
            "key_prefix": f"policies/{issued:%Y/%m/%d}/{no}",
            "current_version": 1,
            "retain_until": issued + timedelta(days=366 + 365 * 10),
        }
        policies.append(tuple(values[c] for c in POLICY_COLS))
        for role, name, id_no in (
            ("applicant", values["applicant_name"], app_id),
            ("insured", values["insured_name"], ins_id),
        ):
            party = {
                "policy_no": no,
                "role": role,
                "seq": 1,
                "name": name,
                "id_type": "resident_id",
                "id_hmac": index.identity(id_no),
                "id_masked": masked(id_no),
            }
            parties.append(tuple(party[c] for c in PARTY_COLS))
    return policies, parties


def chunks(n: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, CHUNK):
        yield start, min(start + CHUNK, n)


def load_sqlite(index: Index, n: int) -> None:
    for start, stop in chunks(n):
        policies, parties = rows(index, start, stop)
        with index.engine.begin() as conn:
            conn.execute(insert(s.policies), [dict(zip(POLICY_COLS, r, strict=True)) for r in policies])
            conn.execute(insert(s.parties), [dict(zip(PARTY_COLS, r, strict=True)) for r in parties])


def load_postgresql(index: Index, n: int) -> None:
    copy_policies = f"COPY policies ({', '.join(POLICY_COLS)}) FROM STDIN"
    copy_parties = f"COPY parties ({', '.join(PARTY_COLS)}) FROM STDIN"
    for start, stop in chunks(n):
        policies, parties = rows(index, start, stop)
        with index.engine.begin() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                with cur.copy(copy_policies) as copy:
                    for r in policies:
                        copy.write_row(r)
                with cur.copy(copy_parties) as copy:
                    for r in parties:
                        copy.write_row(r)
    with index.engine.begin() as conn:  # unlike VACUUM, ANALYZE may run inside a transaction
        conn.exec_driver_sql("ANALYZE policies")
        conn.exec_driver_sql("ANALYZE parties")


# --- PostgreSQL: a throw-away cluster, as tests/conftest.py starts one ---------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_cluster() -> Iterator[str]:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise SystemExit("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)")
    bin_dir = Path(candidates[-1]).parent
    as_user: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="lookup-bench-pg-"))
    os.chmod(root, 0o777)
    data, port = root / "data", _free_port()
    started = False
    try:
        subprocess.run(
            [
                *as_user,
                str(bin_dir / "initdb"),
                *("-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"),
                "--locale=C",
            ],
            check=True,
            capture_output=True,
        )
        options = (
            f"-k {root} -p {port} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
            " -c synchronous_commit=off -c max_wal_size=4GB -c shared_buffers=512MB"
        )
        subprocess.run(
            [
                *as_user,
                str(bin_dir / "pg_ctl"),
                *("-D", str(data), "-o", options, "-w"),
                "-l",
                str(root / "log"),
                "start",
            ],
            check=True,
            capture_output=True,
        )
        started = True
        subprocess.run(
            [
                str(bin_dir / "psql"),
                *("-h", str(root), "-p", str(port), "-U", "postgres"),
                "-qc",
                "CREATE DATABASE lookup_bench",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg://postgres@/lookup_bench?host={root}&port={port}"
    finally:
        if started:
            subprocess.run(
                [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def sqlite_file() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="lookup-bench-sqlite-"))
    try:
        yield f"sqlite:///{root / 'index.sqlite'}"
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- measurement ---------------------------------------------------------------------------------------


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, min(len(sorted_ms), math.ceil(q / 100 * len(sorted_ms))))
    return sorted_ms[rank - 1]


def measure(index: Index, n: int, lookups: int, seed: int) -> dict[str, dict[str, Any]]:
    rng = random.Random(seed)
    motor = [i for i in (rng.randrange(n) for _ in range(lookups * 4)) if i % len(PRODUCTS) != 2]
    kinds: dict[str, tuple[Callable[[int], dict[str, str]], list[int]]] = {
        "policy_no": (lambda i: {"policy_no": policy_no(i)}, [rng.randrange(n) for _ in range(lookups)]),
        "id_no": (lambda i: {"id_no": insured_id(i)}, [rng.randrange(n) for _ in range(lookups)]),
        "plate": (lambda i: {"plate": plate(i)}, motor[:lookups]),
    }
    results = {}
    for kind, (criteria, sample) in kinds.items():
        for i in sample[:20]:  # warm the pool and the statement cache; not counted
            index.find(**criteria(i))
        times = []
        for i in sample:
            args = criteria(i)
            t0 = time.perf_counter()
            found = index.find(**args)
            times.append((time.perf_counter() - t0) * 1000)
            if not found or found[0].policy_no != policy_no(i):
                raise SystemExit(f"{kind} lookup {args} did not find {policy_no(i)}")
        times.sort()
        p95 = percentile(times, 95)
        results[kind] = {
            "lookups": len(times),
            "p50_ms": round(percentile(times, 50), 3),
            "p95_ms": round(p95, 3),
            "p99_ms": round(percentile(times, 99), 3),
            "max_ms": round(times[-1], 3),
            "p95_under_target": p95 < TARGET_MS,
        }
    return results


def run_backend(backend: str, n: int, lookups: int, seed: int) -> dict[str, Any]:
    source = sqlite_file() if backend == "sqlite" else postgres_cluster()
    with source as url:
        index = Index.open(url, hmac_key=HMAC_KEY)
        try:
            t0 = time.perf_counter()
            (load_sqlite if backend == "sqlite" else load_postgresql)(index, n)
            build_s = time.perf_counter() - t0
            print(f"{backend}: built {n:,} policies ({2 * n:,} parties) in {build_s:.1f} s", flush=True)
            kinds = measure(index, n, lookups, seed)
        finally:
            index.close()
    return {"backend": backend, "policies": n, "build_s": round(build_s, 1), "kinds": kinds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="synthetic policies in the index")
    parser.add_argument("--lookups", type=int, default=1000, help="timed lookups per kind")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.n < 1 or args.lookups < 1:
        parser.error("-n and --lookups must be positive")

    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    runs = [run_backend(b, args.n, args.lookups, args.seed) for b in backends]

    print()
    print(f"{'backend':<11} {'kind':<10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  p95<50ms")
    for run in runs:
        for kind, r in run["kinds"].items():
            print(
                f"{run['backend']:<11} {kind:<10} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
                f"{r['p99_ms']:>8.2f} {r['max_ms']:>8.2f}  {'yes' if r['p95_under_target'] else 'NO'}"
            )
    ok = all(r["p95_under_target"] for run in runs for r in run["kinds"].values())
    print(f"\nall p95 under {TARGET_MS:.0f} ms: {'yes' if ok else 'NO'}")

    if args.json:
        report = {
            "policies": args.n,
            "lookups": args.lookups,
            "target_p95_ms": TARGET_MS,
            "all_under_target": ok,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "runs": runs,
        }
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
