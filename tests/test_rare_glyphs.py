"""Rare characters in real names (生僻字, CJK Extension B and beyond) print as themselves, not as boxes.

Noto CJK, the templates' font, covers only part of Extension B; LibreOffice falls back through fontconfig
to another installed font for the rest (the Makefile installs HanaMin, which covers Extension B whole).
A character no installed font can draw would print as an empty box while the record archives normally,
and the PDF's text layer would still read right: so this looks at which fonts the page really embeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.synth import make_batch
from tests.conftest import REPO

NAME = "𠀀𠀁𡃁𢀖𣎴𤆍·王𠮷"  # Extension B, a middle dot, a common character


def _fonts_for(char: str) -> set[str]:
    out = subprocess.run(
        ["fc-list", f":charset={ord(char):x}", "family"], capture_output=True, text=True, check=True
    ).stdout
    return {family.strip() for line in out.splitlines() for family in line.split(",") if family.strip()}


def test_every_rare_character_of_a_name_is_drawn_by_an_embedded_font(tmp_path):
    rare = [c for c in NAME if ord(c) > 0xFFFF]
    for char in rare:
        assert _fonts_for(char), (
            f"no installed font draws U+{ord(char):X}: run `make test` (it installs them)"
        )
    batch = make_batch(tmp_path / "b", 3, seed=9, images_per_record=0)
    record = json.loads(batch.read_text(encoding="utf-8").splitlines()[2])
    record["insured"]["name"] = record["applicant"]["name"] = NAME
    batch.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "render", str(batch), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "ISSUANCE_WORKERS": "1"},
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (pdf,) = (tmp_path / "out").rglob("policy.pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert NAME in text
    listing = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    embedded = {line.split()[0].split("+", 1)[-1] for line in listing.splitlines()[2:] if line.strip()}
    for char in rare:
        # the PostScript name of the embedded subset starts with the family fontconfig names
        drawers = tuple(family.replace(" ", "").lower() for family in _fonts_for(char))
        assert any(name.lower().startswith(drawers) for name in embedded), (hex(ord(char)), embedded, drawers)
