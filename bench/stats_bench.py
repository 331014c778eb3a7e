"""`issuance stats` at scale: N policies issued over 2026, one in ten endorsed, in a throw-away index.

Loads the rows in SQL (each policy's issue version with a clerk and an approval time up to four days
before it; one endorsement in ten, one in twenty of those a surrender or a cancellation), then times
``usecases.stats.compute`` — what the command and the desk's page call — for a month and for the year,
ungrouped and by day, branch and clerk. SQLite is a file in a temporary folder unless ``--index`` names
another (a PostgreSQL URL: the database must be empty). Not a test: nothing fails on timing.

    python bench/stats_bench.py [-n 1000000] [--index URL]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import text  # noqa: E402

from archive.index import Index  # noqa: E402
from core.workdays import load_calendar  # noqa: E402
from usecases.stats import compute  # noqa: E402

KEY = b"stats-bench-hmac-key-0123456789"


def load(index: Index, n: int) -> None:
    """N policies and their issue versions, one endorsement in ten, written by the database itself."""
    pg = index.dialect == "postgresql"
    step = 365 * 86400 / n  # seconds between two issues: the policies fill the year whatever N is
    if pg:
        series = "SELECT g AS n FROM generate_series(1, :n) g"
        ts = f"(TIMESTAMPTZ '2026-01-01 00:00+00' + (n * {step:.6f}) * INTERVAL '1 second')"
        approved = f"({ts} - (n % 97) * INTERVAL '1 hour')"
        pad = "lpad(n::text, 12, '0')"
    else:
        series = (
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :n) SELECT n FROM s"
        )
        moment = "strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || ({}) || ' seconds')"
        ts = moment.format(f"n * {step:.6f}")
        approved = moment.format(f"n * {step:.6f} - (n % 97) * 3600")
        pad = "printf('%012d', n)"
    version = """INSERT INTO documents (policy_no, version, kind, created_at, customer_key, customer_sha256,
        customer_size, customer_pages, bundle_key, bundle_sha256, bundle_size, bundle_pages, manifest_key,
        manifest_sha256, manifest_size, retain_until, clerk, approved_at, endorsement_type)"""
    with index.engine.begin() as conn:
        conn.execute(
            text(f"""INSERT INTO policies (policy_no, proposal_no, product_code, branch_code,
            branch_name, applicant_name, insured_name, insured_id_masked, period_start, period_end,
            total_premium, currency, status, complete, missing_images, issued_at, key_prefix,
            current_version, retain_until)
            SELECT 'P' || {pad}, 'T' || {pad},
            CASE n % 3 WHEN 0 THEN 'AUTO-COMM' WHEN 1 THEN 'HOME-PROP' ELSE 'PA-ACC' END,
            CAST(110100 + n % 50 AS TEXT), 'b', 'a', 'i', 'm', {ts}, {ts}, 100, 'CNY', 'issued', n % 10 <> 0,
            CASE WHEN n % 10 = 0 THEN 'exemption_notice' ELSE '' END, {ts}, 'k', 1, {ts}
            FROM ({series}) x"""),
            {"n": n},
        )
        conn.execute(
            text(f"""{version} SELECT 'P' || {pad}, 1, 'issue', {ts}, 'c', 's', 1, 1, 'b', 's', 1, 1,
            'm' || {pad}, 's', 1, {ts}, 'CLK' || (n % 200), {approved}, NULL FROM ({series}) x"""),
            {"n": n},
        )
        conn.execute(
            text(f"""{version} SELECT 'P' || {pad}, 2, 'endorsement', {ts}, 'c', 's', 1, 1, 'b', 's', 1, 1,
            'e' || {pad}, 's', 1, {ts}, 'CLK' || (n % 200), {approved},
            CASE n % 200 WHEN 0 THEN 'surrender' WHEN 10 THEN 'cancel' ELSE 'change' END
            FROM ({series}) x WHERE n % 10 = 0"""),
            {"n": n},
        )
    if pg:
        with index.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="policies (default 10^6)")
    parser.add_argument(
        "--index", help="an empty index's SQLAlchemy URL (default: SQLite in a temporary folder)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stats-bench-") as tmp:
        url = args.index or f"sqlite:///{Path(tmp) / 'index.sqlite'}"
        index = Index.open(url, hmac_key=KEY)
        print(f"{platform.node()}: {os.cpu_count()} CPUs, {index.dialect}, n={args.n:,}", flush=True)
        began = time.perf_counter()
        load(index, args.n)
        print(f"loaded in {time.perf_counter() - began:.1f} s", flush=True)
        calendar = load_calendar()
        for label, start, end in (
            ("a month", date(2026, 3, 1), date(2026, 3, 31)),
            ("the year", date(2026, 1, 1), date(2026, 12, 31)),
        ):
            for by in (None, "day", "branch", "clerk"):
                began = time.perf_counter()
                figures = compute(index, calendar, start=start, end=end, by=by)
                took = time.perf_counter() - began
                print(
                    f"{label:9} by {by or '-':6}: issued {figures.total.issued:>9,} endorsed "
                    f"{figures.total.endorsed:>7,} groups {len(figures.groups):>4} in {took:6.2f} s",
                    flush=True,
                )
        index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
