"""What signing costs per document when pyHanko is called plainly (``stamps.signing.Signer.sign``), on
real customer copies: the starting figure for issue 23's target (the issuing process's CPU per signed
document, a timestamp included, at most 3 ms), and the check's cost (``check_signatures``).

Key: a SPECIMEN EC P-256 key (``write_specimen_pkcs12``). No timestamp yet. Prints CPU time of this
process per document, the smallest and the median of ``--repeat`` passes over the copies. Not a test:
nothing fails on timing.

    python bench/sign_bench.py [--copies 12] [--repeat 5] [--workdir /tmp/sign-bench]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.samples import customer_copies  # noqa: E402
from stamps.signing import Signer, check_signatures, write_specimen_pkcs12  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sign-bench-"))
    copies = customer_copies(workdir, n=args.copies)
    root = write_specimen_pkcs12(workdir / "signer.p12", b"bench")
    signer = Signer.from_pkcs12(workdir / "signer.p12", b"bench")
    signer.sign(copies[0])  # first use loads pyHanko's lazy parts: not a document's cost

    sign_ms, check_ms = [], []
    for _ in range(args.repeat):
        began = time.process_time()
        signed = [signer.sign(pdf) for pdf in copies]
        sign_ms.append(1000 * (time.process_time() - began) / len(copies))
        began = time.process_time()
        for pdf in signed:
            (check,) = check_signatures(pdf, roots=[root])
            assert check.ok, check.problems
        check_ms.append(1000 * (time.process_time() - began) / len(copies))
    sizes = sorted(len(pdf) for pdf in copies)
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}; {len(copies)} customer copies "
        f"of {sizes[0] // 1024}–{sizes[-1] // 1024} KB; {args.repeat} passes"
    )
    print(
        f"sign (pyHanko plainly, no timestamp): {min(sign_ms):.1f} ms CPU per document "
        f"(median {statistics.median(sign_ms):.1f})"
    )
    print(
        f"check (pyHanko's validator): {min(check_ms):.1f} ms CPU per document "
        f"(median {statistics.median(check_ms):.1f})"
    )


if __name__ == "__main__":
    main()
