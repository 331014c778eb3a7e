"""Clause PDFs: converted once per clause version, cached on disk by content hash, reused for every
policy that lists them (never converted per record).

A product's clauses are also converted together, as one document, where they can be: LibreOffice
embeds one subset of each font per document, so a customer copy whose clauses come from one document
holds their fonts once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import pikepdf

from core.errors import ComponentUnavailable, ConversionFailed
from core.products import ProductRegistry
from pipeline.convert import DEFAULT_PDF_VERSION, DocxToPdf
from pipeline.schedules import SplitError, concatenate, split

__all__ = ["ClauseLibrary"]

logger = logging.getLogger(__name__)


class ClauseLibrary:
    """Clause PDFs, converted once per clause version and cached on disk by content hash.

    A product's clauses are also converted together, as one document (``pages``): LibreOffice embeds one
    subset of each font per document, so a customer copy whose clauses come from one document holds
    their fonts once.
    """

    def __init__(self, *, registry: ProductRegistry, converter: DocxToPdf, cache_dir: Path) -> None:
        self._registry = registry
        self._converter = converter
        # Cached PDFs are named after the converter's PDF version too, so plain PDFs cached before
        # PDF/A-2b became the default are not reused; a converter that does not say writes the default.
        self._version = f"pdfv{getattr(converter, 'pdf_version', DEFAULT_PDF_VERSION)}"
        self._dir = cache_dir / "clauses"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._bytes: dict[str, bytes] = {}
        self._opened = threading.local()  # a pikepdf document is not safe to share between threads
        self._sets: dict[str, bytes | None] = {}  # clauses converted together; None: they cannot be
        self.conversions = 0

    def pages(self, codes: Sequence[str], *, family: Sequence[str] = ()) -> list[list[pikepdf.Page]]:
        """Each clause's pages, to copy into a customer copy (from documents opened for this thread).

        When ``family`` (the product's clauses) holds all of ``codes``, they come from the family's
        clauses converted as one document (``pipeline.schedules.concatenate``), so that what is copied
        shares its fonts; else, or when the family cannot be converted together, each from its own PDF.
        """
        if codes and set(codes) <= set(family):
            together = self._together(tuple(family))
            if together is not None:
                pdf, ranges = together
                return [pdf.pages[ranges[code].start : ranges[code].stop] for code in codes]
        return [list(self.document(code).pages) for code in codes]

    def _together(self, family: tuple[str, ...]) -> tuple[pikepdf.Pdf, dict[str, range]] | None:
        clauses = [self._registry.clauses[code] for code in family]
        digest = hashlib.sha256(
            "\n".join(f"{c.code}:{c.content_hash}" for c in clauses).encode("utf-8")
        ).hexdigest()
        key = f"together-{digest[:16]}-{self._version}"
        with self._guard:
            known = key in self._sets
            lock = self._locks.setdefault(key, threading.Lock())
        if not known:
            with lock:
                if key not in self._sets:
                    data = self._convert_together(key, clauses)
                    with self._guard:
                        self._sets[key] = data
        data = self._sets[key]
        if data is None:
            return None
        return self._open(
            key,
            data,
            lambda pdf: (
                pdf,
                {c: where.pages for c, where in zip(family, split(pdf, len(family)), strict=True)},
            ),
        )

    def _open(self, key: str, data: bytes, make: Callable[[pikepdf.Pdf], Any]) -> Any:
        """``make`` of ``data`` opened, once per thread (pikepdf documents are not safe to share) and
        again only when the bytes behind ``key`` change."""
        opened = getattr(self._opened, "documents", None)
        if opened is None:
            opened = self._opened.documents = {}
        found = opened.get(key)
        if found is None or found[0] is not data:
            found = opened[key] = (data, make(pikepdf.open(BytesIO(data))))
        return found[1]

    def _convert_together(self, key: str, clauses: list[Any]) -> bytes | None:
        """The clauses' PDF as one document, from the cache or converted now; None when it cannot be."""
        target = self._dir / f"{key}.pdf"
        codes = ", ".join(c.code for c in clauses)
        data = _cached_pdf(target, documents=len(clauses))
        if data is not None:
            return data
        try:
            with tempfile.TemporaryDirectory(prefix="clause-", dir=self._dir) as tmp:
                docx = Path(tmp) / f"{key}.docx"
                why = concatenate([c.path for c in clauses], docx)
                if why is not None:
                    logger.info("clauses %s converted one by one: %s", codes, why)
                    return None
                self._convert(docx, target, documents=len(clauses))
            return target.read_bytes()
        except ComponentUnavailable:
            raise
        except (ConversionFailed, SplitError, pikepdf.PdfError, OSError) as e:
            logger.warning("clauses %s converted one by one: %s", codes, e)
            return None

    def pdf_bytes(self, code: str) -> bytes:
        """The clause's PDF; converts it on first use of this clause version (thread-safe)."""
        clause = self._registry.clauses[code]
        digest = clause.content_hash.removeprefix("sha256:")
        key = f"{code}-{digest[:16]}-{self._version}"
        with self._guard:
            if key in self._bytes:
                return self._bytes[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._bytes:
                target = self._dir / f"{key}.pdf"
                data = _cached_pdf(target)
                if data is None:
                    self._convert(clause.path, target)
                    data = target.read_bytes()
                with self._guard:
                    self._bytes[key] = data
        return self._bytes[key]

    def document(self, code: str) -> pikepdf.Pdf:
        """The clause's PDF opened for copying pages from, one per thread (read lazily from memory)."""
        return self._open(code, self.pdf_bytes(code), lambda pdf: pdf)

    def _convert(self, docx: Path, target: Path, *, documents: int = 0) -> None:
        """Convert ``docx`` into the cache at ``target``; ``documents``: it holds that many documents,
        each of which ``split`` must find, or it is not kept (``SplitError``)."""
        with tempfile.TemporaryDirectory(prefix="clause-", dir=self._dir) as tmp:
            staged = Path(tmp) / target.name
            self._converter.convert(docx, staged)
            if documents:
                with pikepdf.open(staged) as pdf:
                    split(pdf, documents)
            os.replace(staged, target)  # atomic: a concurrent run sees the old state or the whole PDF
            self.conversions += 1


def _cached_pdf(path: Path, *, documents: int = 0) -> bytes | None:
    """The bytes of a PDF the cache holds, if it opens (and says where each of ``documents`` documents
    starts, for clauses converted together); None when it is missing or spoilt: convert it again."""
    try:
        data = path.read_bytes()
        if not data.startswith(b"%PDF-"):
            return None
        with pikepdf.open(BytesIO(data)) as pdf:
            if documents:
                split(pdf, documents)
        return data
    except (OSError, pikepdf.PdfError, SplitError):
        return None
