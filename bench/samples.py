"""Real customer copies for the benches of the hand-written pieces (``bench/pdfupdate_bench.py``,
``bench/save_bench.py``): files a small synthetic batch with the real ``issuance run`` (this checkout's
code, in a subprocess, into the default folder store under ``workdir``, whatever ``ISSUANCE_*`` the
caller has set) and returns the customer copies' bytes, which qpdf wrote through
``stamps.saving.save_pdf`` exactly as a nightly run writes them.

Not a test: nothing here fails on timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synth import make_batch  # noqa: E402

HMAC_KEY = "bench-hmac-key-0123456789abcdef"
T = TypeVar("T")


def customer_copies(workdir: Path, *, n: int = 12, seed: int = 2027) -> list[bytes]:
    """The customer copies of ``n`` synthetic policies (the three products in turn, one image each),
    filed into ``workdir/var/archive``; made once, read again on a later call with the same folder."""
    archive = workdir / "var" / "archive"
    if not any(archive.rglob("customer-*.pdf")):
        batch = make_batch(workdir / "batch", n, seed=seed, images_per_record=1)
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "run", str(batch), "--no-progress"],
            cwd=workdir,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("ISSUANCE_")},
                "PYTHONPATH": str(REPO),
                "ISSUANCE_HMAC_KEY": HMAC_KEY,
            },
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"issuance run failed ({result.returncode}): {result.stderr[-3000:]}")
    return [path.read_bytes() for path in sorted(archive.rglob("customer-*.pdf"))]


def cpu_ms_each(fn: Callable[[T], object], items: Sequence[T], *, repeat: int = 5) -> float:
    """CPU ms of this process per call of ``fn``, the mean over every item, each done ``repeat`` times."""
    began = time.process_time()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return (time.process_time() - began) * 1000 / (repeat * len(items))
