"""Pages sealed once for where they sit, and reused: the tail of a document (a product's clauses) that
follows other pages (a schedule) carries strips of the cross-page seal that depend only on the seal,
the frames of the pages before it and its own pages. So it is sealed once per such combination and
saved for every thread; each thread opens the saved copy once (pikepdf documents are not safe to share
between threads) and assembles documents from it.

What the caller promises: pages asked for under the same ``key`` are the same pages (the pipeline's
key holds each clause's content hash). What is promised back: a ``SealedTail``'s pages are drawn
exactly as sealing the whole document (``lead`` pages then these) would draw them
(``stamps.stamping.seal_document``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pikepdf

from stamps.layout import PageFrame
from stamps.registry import Seal
from stamps.saving import save_pdf
from stamps.stamping import encoded_seal, pikepdf_frames, seal_document, seal_objects

__all__ = ["KEPT", "SealedPages", "SealedTail"]

KEPT = 24  # per thread, and saved per run: a product's clauses under each seal, by schedule length


@dataclass(frozen=True)
class SealedTail:
    """Pages sealed for where they sit after the pages ``lead`` of ``SealedPages.tail``, opened for this
    thread as ``pdf``: the stencil and ink state their strips use (``image``, ``gstate``: a document the
    pages are copied into copies these too, for the lead pages' seals), the first page of each group of
    pages asked for (``starts``), and the frames of the whole document, lead pages included."""

    pdf: pikepdf.Pdf
    image: pikepdf.Object
    gstate: pikepdf.Object
    starts: tuple[int, ...]
    frames: tuple[PageFrame, ...]


@dataclass(frozen=True)
class _Saved:
    """A tail sealed and saved once for every thread: the PDF's bytes; the first page of each group; the
    frames of the whole document; where the stencil and ink state are named (page, /XObject name,
    /ExtGState name), None when no page of it is drawn on."""

    data: bytes
    starts: tuple[int, ...]
    frames: tuple[PageFrame, ...]
    named: tuple[int, str, str] | None


class SealedPages:
    """Tails of documents sealed once per run and opened once per thread, the last ``KEPT`` of each;
    safe to call from several threads at once. ``kept``: where encoded seals are kept between runs."""

    def __init__(self, *, kept: Path | None = None) -> None:
        self._kept = kept
        self._opened = threading.local()
        self._saved: OrderedDict[tuple, _Saved] = OrderedDict()
        self._saving = threading.Lock()
        self.sealings = 0  # how many tails were sealed (not taken from what was saved)

    def tail(
        self,
        key: Hashable,
        *,
        seal: Seal,
        lead: tuple[PageFrame, ...],
        groups: Callable[[], Iterable[Sequence[pikepdf.Page]]],
    ) -> SealedTail:
        """The pages of ``groups()`` one group after the other, sealed under ``seal`` as they are when they
        follow pages of the frames ``lead``. ``groups`` is called only when the pages under ``key`` are
        not sealed yet."""
        full = (key, seal, lead)
        opened = getattr(self._opened, "tails", None)
        if opened is None:
            opened = self._opened.tails = OrderedDict()
        found = opened.get(full)
        if found is not None:
            opened.move_to_end(full)
            return found
        saved = self._saved_tail(full, seal=seal, lead=lead, groups=groups)
        pdf = pikepdf.open(BytesIO(saved.data))
        if saved.named is not None:
            page, image_name, gstate_name = saved.named
            resources = pdf.pages[page].obj.Resources
            image, gstate = resources.XObject[image_name], resources.ExtGState[gstate_name]
        else:  # nothing drawn on these pages: the lead pages' seal needs the objects all the same
            image, gstate = seal_objects(pdf, encoded_seal(seal, kept=self._kept))
        made = opened[full] = SealedTail(
            pdf=pdf, image=image, gstate=gstate, starts=saved.starts, frames=saved.frames
        )
        if len(opened) > KEPT:
            opened.popitem(last=False)  # a document made from it was saved before this one was asked for
        return made

    def _saved_tail(
        self,
        full: tuple,
        *,
        seal: Seal,
        lead: tuple[PageFrame, ...],
        groups: Callable[[], Iterable[Sequence[pikepdf.Page]]],
    ) -> _Saved:
        """The tail sealed once and saved for every thread: a run's threads all meet the same few
        combinations of pages and seal, and opening the saved copy costs a tenth of sealing it."""
        with self._saving:
            found = self._saved.get(full)
            if found is not None:
                self._saved.move_to_end(full)
                return found
            work = pikepdf.new()
            starts = []
            for pages_of in groups():
                starts.append(len(work.pages))
                work.pages.extend(pages_of)
            image, gstate = seal_objects(work, encoded_seal(seal, kept=self._kept))
            frames = (*lead, *pikepdf_frames(work))
            seal_document(
                work,
                seal=seal,
                company_at=None,
                cross_page=True,
                frames=frames,
                offset=len(lead),
                objects=(image, gstate),
                kept=self._kept,
            )
            saved = self._saved[full] = _Saved(
                data=save_pdf(work),
                starts=tuple(starts),
                frames=frames,
                named=_where_named(work, image, gstate),
            )
            self.sealings += 1
            if len(self._saved) > KEPT:
                self._saved.popitem(last=False)
            return saved


def _where_named(
    pdf: pikepdf.Pdf, image: pikepdf.Object, gstate: pikepdf.Object
) -> tuple[int, str, str] | None:
    """The first page of ``pdf`` whose resources name both ``image`` and ``gstate``: (page, names)."""
    for index, page in enumerate(pdf.pages):
        resources = page.obj.get("/Resources")
        if resources is None:
            continue
        images = resources.get("/XObject") or {}
        states = resources.get("/ExtGState") or {}
        image_name = next((n for n, v in images.items() if v.is_indirect and v.objgen == image.objgen), None)
        gstate_name = next(
            (n for n, v in states.items() if v.is_indirect and v.objgen == gstate.objgen), None
        )
        if image_name is not None and gstate_name is not None:
            return index, image_name, gstate_name
    return None
