"""CPU and time per record for storing a record's objects in a folder store: ``put`` vs ``put_many``.

Each record is three objects of random bytes the size of the real ones (customer.pdf ~810 KB,
bundle.pdf ~1,230 KB, manifest.json ~4 KB, as ``issuance run`` filed them on 2026-12-02). ``put``
stores them one by one (two file fsyncs and two folder fsyncs each); ``put_many`` stores a group of
records (16 by default, as the pipeline files them) per call, with two ``syncfs`` barriers per call;
"put_many/fsync" is its fallback where there is no syncfs (one fsync per temp file, one per folder);
"put_many/buffered" writes large objects through the page cache instead of direct
(``FileSystem(direct=False)``), as the store did before 2026-12-02. Prints, per mode, the
median over the repeats of:

- wall ms/record;
- process CPU ms/record (``time.process_time``: this process, user + system);
- machine CPU ms/record (busy time of all CPUs from /proc/stat, so the kernel's journal and
  write-back threads count too, and so does anything else running on the machine).

Every mode starts on an empty folder after ``os.sync()``, so no one pays for another's write-back.
Not a test: nothing fails on timing.

    python bench/put_bench.py [--records 256] [--group 16] [--repeat 3] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from archive.store import FileSystem, LocalStore, PutItem  # noqa: E402

SIZES = {"customer.pdf": 810_000, "bundle.pdf": 1_230_000, "manifest.json": 4_000}


def machine_busy_seconds() -> float:
    """Busy CPU time of the whole machine so far, from /proc/stat's cpu line: user, nice, system, irq
    and softirq (not idle, iowait, or steal; guest time is already inside user)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def file_system_of(folder: Path) -> str:
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            device, mount, fstype, *_ = line.split()
            if (str(folder) + "/").startswith(mount.rstrip("/") + "/") and len(mount) >= len(best):
                best, kind = mount, f"{fstype} on {device} ({mount})"
    return kind


def make_records(n: int) -> list[list[PutItem]]:
    blobs = {name: os.urandom(size) for name, size in SIZES.items()}
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}
    return [
        [
            PutItem(f"110105/2026/12/PAC2026120100{r:05d}/v1-issue/{name}", blobs[name], digests[name])
            for name in SIZES
        ]
        for r in range(n)
    ]


def by_put(store: LocalStore, records: list[list[PutItem]], group: int) -> None:
    for record in records:
        for item in record:
            store.put(item.key, item.data, sha256=item.sha256)


def by_put_many(store: LocalStore, records: list[list[PutItem]], group: int) -> None:
    for start in range(0, len(records), group):
        items = [item for record in records[start : start + group] for item in record]
        results = store.put_many(items)
        bad = [r for r in results if isinstance(r, Exception)]
        if bad:
            raise SystemExit(f"put_many refused an item: {bad[0]}")


def measure(
    mode: Callable[[LocalStore, list[list[PutItem]], int], None],
    folder: Path,
    records: list[list[PutItem]],
    group: int,
    files: FileSystem | None = None,
) -> tuple[float, float, float]:
    shutil.rmtree(folder, ignore_errors=True)
    store = LocalStore(folder, files=files)
    os.sync()
    busy0, cpu0, wall0 = machine_busy_seconds(), time.process_time(), time.perf_counter()
    mode(store, records, group)
    wall, cpu, busy = time.perf_counter() - wall0, time.process_time() - cpu0, machine_busy_seconds() - busy0
    n = len(records)
    return wall * 1000 / n, cpu * 1000 / n, busy * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--group", type=int, default=16, help="records per put_many call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the store goes")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="put-bench-", dir=args.dir)).resolve()
    records = make_records(args.records)
    modes: dict[str, Callable[[], tuple[float, float, float]]] = {
        "put": lambda: measure(by_put, workdir / "store", records, args.group),
        f"put_many ×{args.group}": lambda: measure(by_put_many, workdir / "store", records, args.group),
    }

    def with_files(files: FileSystem) -> Callable[[], tuple[float, float, float]]:
        """``put_many`` measured on a store making ``files``' calls."""
        return lambda: measure(by_put_many, workdir / "store", records, args.group, files)

    real = FileSystem()
    modes[f"put_many ×{args.group}/fsync"] = with_files(FileSystem(syncfs=False))  # where there is no syncfs
    if real.direct:
        modes[f"put_many ×{args.group}/buffered"] = with_files(FileSystem(direct=False))

    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; syncfs {'available' if real.has_syncfs else 'missing'}"
    )
    print(f"store: {workdir} on {file_system_of(workdir)}")
    print(
        f"{args.records} records × 3 objects ({', '.join(f'{k} {v // 1000} KB' for k, v in SIZES.items())}), "
        f"{args.repeat} repeats, medians; put_many: {args.group} records ({3 * args.group} objects) a call"
    )
    figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in modes}
    try:
        for _ in range(args.repeat):
            for name, run in modes.items():  # interleaved, so a busy moment hits every mode alike
                figures[name].append(run())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'mode':<21}{'wall ms/rec':>12}{'process CPU':>13}{'machine CPU':>13}")
    for name, runs in figures.items():
        wall, cpu, busy = (statistics.median(column) for column in zip(*runs, strict=True))
        print(f"{name:<21}{wall:>12.2f}{cpu:>13.2f}{busy:>13.2f}")


if __name__ == "__main__":
    main()
