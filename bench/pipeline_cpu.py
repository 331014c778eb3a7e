"""The pipeline's own CPU per record, without LibreOffice beside it: steadier than a throughput figure.

``issuance run``'s filing (``usecases.filing``: checking, rendering, assembling and sealing, images,
bundles, uploads, index) is run on one thread with LibreOffice replaced by a replay of the PDFs it made for
the same composed documents in a first pass (keyed by the documents' contents), so what is measured is
only the pipeline's work, and the machine's other load moves it less than it moves records/s. The first
pass also fills the clause cache. Prints CPU ms per record, in the program and in the kernel (the
store's writes among it), and the split per stage (wall time of each stage, which on one thread is its
CPU time plus waits for the disk).

    python bench/pipeline_cpu.py [-n 500] [--repeat 2]

Not a test: nothing fails on timing. A measuring tool, not a converter: it never runs in the pipeline.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from archive.index import Index  # noqa: E402
from archive.store import open_store  # noqa: E402
from bench.synth import make_batch  # noqa: E402
from core.config import DEFAULT_CHUNK  # noqa: E402
from core.products import load_registry  # noqa: E402
from pipeline.convert import ConverterPool  # noqa: E402
from pipeline.documents import DocumentMaker  # noqa: E402
from stamps import load_seal_registry  # noqa: E402
from usecases.filing import Filing  # noqa: E402
from usecases.run import BatchRun, file_records  # noqa: E402

KEY = b"bench-hmac-key-0123456789abcdef"


class Replay:
    """A converter that gives back the PDF LibreOffice made for the same .docx content (recorded through
    ``pool`` the first time it is asked)."""

    def __init__(self, folder: Path, pool: ConverterPool | None) -> None:
        self.folder = folder
        self.pool = pool
        self.misses = 0

    def convert(self, docx: Path, pdf: Path) -> int:
        digest = hashlib.sha256()
        with zipfile.ZipFile(docx) as parts:  # the parts, not the zip: its entries carry times
            for name in sorted(parts.namelist()):
                digest.update(name.encode() + b"\0" + parts.read(name))
        recorded = self.folder / f"{digest.hexdigest()}.pdf"
        if not recorded.exists():
            if self.pool is None:
                raise RuntimeError(f"no recorded PDF for {docx.name}: run the recording pass first")
            self.misses += 1
            self.pool.convert(docx, recorded)
        shutil.copyfile(recorded, pdf)
        return 1


def file_batch(
    batch: Path, *, out: Path, cache: Path, converter: Replay
) -> tuple[int, tuple[float, float], dict]:
    """File ``batch`` into a new archive under ``out`` on this thread, in groups as ``run_batch`` makes
    them; the records archived, the CPU seconds (in the program, in the kernel), and the seconds per stage."""
    maker = DocumentMaker(
        registry=load_registry(),
        converter=converter,
        cache_dir=cache,
        scratch_dir=out,
        seals=load_seal_registry(),
    )
    index = Index.open(f"sqlite:///{out}/index.sqlite", hmac_key=KEY)
    filing = Filing(store=open_store((out / "archive").as_uri()), index=index, maker=maker, operator="bench")
    began = os.times()
    run = BatchRun(batch, filing=filing)
    groups: dict[str, list] = {}

    def flush(product: str) -> None:
        for outcome in file_records(
            filing, groups.pop(product), batch_dir=run.batch_dir, batch_id=run.batch_id
        ):
            run.finish(outcome)

    for item in run.accepted():
        group = groups.setdefault(item.record.product_code, [])
        group.append(item)
        if len(group) >= DEFAULT_CHUNK:
            flush(item.record.product_code)
    for product in list(groups):
        flush(product)
    report = run.end()
    ended = os.times()
    index.close()
    cpu = (ended.user - began.user, ended.system - began.system)
    return report.counts()["archived"], cpu, filing.clock.snapshot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pipeline-cpu-") as tmp:
        root = Path(tmp)
        batch = make_batch(root / "batch", args.n, seed=2028, images_per_record=3)
        recorded, cache = root / "recorded", root / "cache"
        recorded.mkdir()
        with ConverterPool(size=2, workdir=root / "lo") as pool:
            pool.start()
            first = Replay(recorded, pool)
            file_batch(batch, out=root / "record-pass", cache=cache, converter=first)
        print(f"{args.n} policies × 3 images; LibreOffice recorded {first.misses} documents")
        for k in range(args.repeat):
            archived, cpu, stages = file_batch(
                batch, out=root / f"pass{k}", cache=cache, converter=Replay(recorded, None)
            )
            ranked = sorted(stages.items(), key=lambda kv: -kv[1])
            split = "  ".join(f"{stage} {1000 * seconds / archived:.2f}" for stage, seconds in ranked)
            user, kernel = (1000 * seconds / archived for seconds in cpu)
            print(
                f"pass {k + 1}: {archived} archived, CPU {user + kernel:.2f} ms a record "
                f"({user:.2f} in the program, {kernel:.2f} in the kernel)"
            )
            print(f"  per stage, ms a record: {split}")


if __name__ == "__main__":
    main()
