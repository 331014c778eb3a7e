"""Shared fixtures: synthetic records (bench.synth), the real templates, and real LibreOffice."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from bench.synth import make_batch
from pipeline.convert import ConverterPool
from pipeline.documents import DocumentMaker
from pipeline.products import load_registry

RESOURCES = Path(__file__).parent / "resources"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three valid policies (one per product) and one endorsement, with their images."""
    folder = tmp_path_factory.mktemp("synth")
    make_batch(folder, 3, seed=7, endorsements=1)
    return folder


@pytest.fixture(scope="session")
def synth_records(synth_dir: Path) -> list[dict]:
    lines = (synth_dir / "batch.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def records(synth_records: list[dict]) -> dict[str, dict]:
    """Fresh copies a test may change: by product code, plus ``endorsement``."""
    out = {}
    for r in synth_records:
        key = r["product_code"] if r["kind"] == "policy" else "endorsement"
        out.setdefault(key, copy.deepcopy(r))
    return out


@pytest.fixture
def batch_dir(synth_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic batch folder (images included)."""
    target = tmp_path / "batch"
    shutil.copytree(synth_dir, target)
    return target


def write_batch(folder: Path, records: list[dict | str], name: str = "batch.jsonl") -> Path:
    """Write records (dicts as JSON, strings as raw lines) to a JSONL batch in ``folder``."""
    path = folder / name
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def registry():
    return load_registry()


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory):
    """Two warm LibreOffice instances shared by the whole session (real ones, no mocks)."""
    with ConverterPool(size=2, workdir=tmp_path_factory.mktemp("lo")) as converter_pool:
        converter_pool.start()
        yield converter_pool


@pytest.fixture(scope="session")
def maker(registry, pool, tmp_path_factory: pytest.TempPathFactory) -> DocumentMaker:
    return DocumentMaker(registry=registry, converter=pool, cache_dir=tmp_path_factory.mktemp("cache"))
