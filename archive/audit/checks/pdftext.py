"""Reading a PDF's text and bookmarks as the checks compare them with the record (poppler's
``pdftotext``, pypdf's outline)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from stamps.poppler import run


def normalise(text: str) -> str:
    """Text with every whitespace removed: pdftotext spaces CJK runs and breaks lines as it likes."""
    return re.sub(r"\s+", "", text)


def page_texts(pdf: bytes) -> tuple[str, ...]:
    """Each page's text as ``pdftotext`` reads it (UTF-8, reading order), whitespace removed."""
    with tempfile.TemporaryDirectory(prefix="audit-text-") as tmp:
        path = Path(tmp) / "document.pdf"
        path.write_bytes(pdf)
        out = run("pdftotext", ["-enc", "UTF-8", str(path), "-"]).decode("utf-8", "replace")
    pages = out.split("\f")
    if pages and not pages[-1].strip():
        pages = pages[:-1]
    return tuple(normalise(p) for p in pages)


def page_lines(pdf: bytes, *, first: int, last: int) -> tuple[str, ...]:
    """Pages ``first..last`` (1-based, inclusive) line by line, in the order their text is drawn.

    ``pdftotext -raw`` keeps a table cell's wrapped lines together, where the reading-order mode puts
    the next cell's text between them and drops a hyphen that ends a line (issue 21, item 9). Each
    page is its lines without whitespace, joined by newlines, for ``shows``.
    """
    with tempfile.TemporaryDirectory(prefix="audit-text-") as tmp:
        path = Path(tmp) / "document.pdf"
        path.write_bytes(pdf)
        args = ["-raw", "-enc", "UTF-8", "-f", str(first), "-l", str(last), str(path), "-"]
        out = run("pdftotext", args).decode("utf-8", "replace")
    pages = out.split("\f")
    if pages and not pages[-1].strip():
        pages = pages[:-1]
    return tuple("\n".join(filter(None, (normalise(line) for line in p.splitlines()))) for p in pages)


# a line may end in a hyphen that hyphenation added: "-", soft hyphen, or U+2010 HYPHEN
_LINE_BREAK = "(?:[-\u00ad\u2010]?\n)?"


def shows(lines: str, value: str) -> bool:
    """Whether ``lines`` (from ``page_lines``) show ``value`` as a person reads them: whitespace, line
    breaks and a hyphen ending a line are no differences; any other character is."""
    return bool(spans(lines, value))


def spans(lines: str, value: str) -> list[tuple[int, int]]:
    """Where ``lines`` show ``value`` as ``shows`` reads them: each place, not overlapping, in order."""
    chars = normalise(value)
    if not chars:
        return []
    pattern = _LINE_BREAK.join(re.escape(c) for c in chars)
    return [m.span() for m in re.finditer(pattern, lines)]


@dataclass(frozen=True)
class OutlineItem:
    title: str
    page: int | None
    children: tuple[OutlineItem, ...] = ()


def outline(reader: PdfReader) -> tuple[OutlineItem, ...]:
    """The bookmarks as a tree of (title, 0-based page, children)."""

    def walk(items: list[Any]) -> tuple[OutlineItem, ...]:
        out: list[OutlineItem] = []
        for item in items:
            if isinstance(item, list):
                if out:
                    last = out.pop()
                    out.append(OutlineItem(last.title, last.page, walk(item)))
                continue
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # a bookmark to a page that is not there any more
                page = None
            out.append(OutlineItem(str(item.title), page))
        return tuple(out)

    try:
        return walk(reader.outline)
    except Exception:  # no readable outline at all
        return ()
