"""The layers of DESIGN.md, read from the code's own imports: each package imports only those below it.

core ← stamps ← {pipeline, archive} ← watchers ← usecases ← desk ← cli (the desk is a front-end beside
the CLI; ``issuance serve`` starts it, so the CLI may import it, never the other way). Imports under
``if TYPE_CHECKING:`` count too (a type from above is still a dependency on it).
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RANK = {
    "core": 0,
    "stamps": 1,
    "pipeline": 2,
    "archive": 2,
    "watchers": 3,
    "usecases": 4,
    "desk": 5,
    "cli": 6,
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(RANK)


def _breaches() -> list[str]:
    breaches = []
    for package, rank in RANK.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for target in _imports(path) - {package}:
                if RANK[target] >= rank:
                    breaches.append(f"{path.relative_to(REPO)} imports {target}")
    return breaches


def test_every_package_imports_only_the_layers_below_it():
    assert _breaches() == []


def test_the_check_sees_an_import_from_above(tmp_path, monkeypatch):
    """The check itself can fail: a stamps module importing pipeline is reported."""
    for package in RANK:
        (tmp_path / package).mkdir()
    (tmp_path / "stamps" / "bad.py").write_text("from pipeline.documents import DocumentMaker\n")
    (tmp_path / "archive" / "worse.py").write_text("import pipeline\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    assert sorted(_breaches()) == ["archive/worse.py imports pipeline", "stamps/bad.py imports pipeline"]


@pytest.mark.parametrize("package", sorted(RANK))
def test_package_exists(package):
    assert (REPO / package / "__init__.py").is_file()
