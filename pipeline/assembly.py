"""Documents that customer copies are assembled in, one copy after another.

The customer copies of one composed document that end with the same sealed clause pages
(``stamps.sealed_pages.SealedTail``) are assembled in one document in turn: each copy's schedule pages
go in front of the clause pages, it is sealed, bookmarked and saved, and they come out again
(``CopyBases.restore``). The clause pages are so copied in once per composed document rather than once
per policy, for the same bytes: qpdf writes only what the document's catalog reaches, and numbers it as
it reaches it (a test compares copies made so with copies made alone).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pikepdf

from stamps.sealed_pages import SealedTail

__all__ = ["Base", "CopyBases"]


@dataclass(frozen=True)
class Base:
    """Sealed clause pages in a document of their own (``pdf``), that customer copies are assembled in:
    ``pages`` is how many it holds between copies, ``objects`` its stencil and ink state."""

    pdf: pikepdf.Pdf
    tail: SealedTail
    objects: tuple[pikepdf.Object, pikepdf.Object]
    pages: int


class CopyBases:
    """The bases of the composed document being finished on each thread; safe to share between threads
    (each thread has its own)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def assembling(self) -> Iterator[None]:
        """The customer copies of one composed document are being finished on this thread: their bases
        are kept until it is done, then closed. Outside it, each copy gets a base of its own."""
        previous = getattr(self._local, "by_tail", None)
        bases: dict[int, Base] = {}
        self._local.by_tail = bases
        try:
            yield
        finally:
            self._local.by_tail = previous
            for base in bases.values():
                base.pdf.close()

    def base_for(self, tail: SealedTail) -> Base:
        """A document of ``tail``'s sealed pages (with its stencil and ink state) for the customer copies
        that end with them. Kept while the composed document's copies are finished on this thread
        (``assembling``): the pages taken out stay in qpdf's memory, and the copied schedules keep their
        source open."""
        bases = getattr(self._local, "by_tail", None)
        found = bases.get(id(tail)) if bases is not None else None
        if found is not None:  # the same tail: the base holds it, so no other object can have its id
            if len(found.pdf.pages) == found.pages:
                return found
            found.pdf.close()  # left with pages of a copy that failed half-way in: made anew
        pdf = pikepdf.new()
        pdf.pages.extend(tail.pdf.pages)
        objects = (pdf.copy_foreign(tail.image), pdf.copy_foreign(tail.gstate))
        base = Base(pdf=pdf, tail=tail, objects=objects, pages=len(pdf.pages))
        if bases is not None:
            bases[id(tail)] = base
        return base

    def restore(self, base: Base, schedule_pages: int) -> None:
        """``base`` as ``base_for`` made it: the schedule's pages and the outline taken out (the document
        information and page mode are set anew for every copy). One that cannot be is not used again."""
        pdf = base.pdf
        try:
            del pdf.pages[:schedule_pages]
            if "/Outlines" in pdf.Root:
                del pdf.Root.Outlines
            whole = len(pdf.pages) == base.pages
        except (pikepdf.PdfError, ValueError, IndexError):
            whole = False
        bases = getattr(self._local, "by_tail", None)
        if bases is None or bases.get(id(base.tail)) is not base:
            pdf.close()
        elif not whole:
            del bases[id(base.tail)]
            pdf.close()
