"""Where the documents and images lie in a policy's newest copies, and the thumbnails of the pages the
checks look at (made from the pages the checks render, never by rendering again)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

from PIL import Image

from archive.audit.checks.base import IndexedVersion, SealedDocument, StoredPart, Thumbnail
from archive.audit.checks.pdftext import OutlineItem, outline
from stamps.finding import EdgeFan
from stamps.layout import cross_page_groups, max_group_pages
from stamps.poppler import RenderedPage
from stamps.stamping import encoded_seal, page_frames

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where each document lies in the newest customer copy, from the page counts the manifests record."""

    policy_pages: int
    documents: tuple[tuple[str, int, int, dict[str, str] | None, str], ...]  # label, start, stop, seal, kind
    endorsements: tuple[tuple[str, int, int], ...]  # (number, start, stop)
    image_pages: tuple[tuple[int, str], ...]  # (page in the newest archive copy, image kind label)
    checked_pages: tuple[tuple[int, str], ...]  # (page in the newest customer copy, what it is)
    customer_key: str | None
    bundle_key: str | None
    customer: StoredPart | None


def read_layout(versions: Sequence[IndexedVersion]) -> Layout:
    policy_pages = customer_pages = 0
    policy_seal: dict[str, str] | None = None
    documents: list[tuple[str, int, int, dict[str, str] | None, str]] = []
    endorsements: list[tuple[str, int, int]] = []
    for v in versions:
        manifest = v.manifest or {}
        parts = {p["name"]: p for p in manifest.get("parts", [])}
        pages = int(parts.get("customer.pdf", {}).get("pages") or v.row.customer_pages)
        seal = manifest.get("seal")
        if v.row.kind == "issue":
            policy_pages = customer_pages = pages
            policy_seal = seal
        elif v.row.kind == "endorsement":
            number = manifest.get("endorsement_no") or v.row.endorsement_no or v.label
            documents.append((f"批单 {number}", customer_pages, pages, seal, "endorsement"))
            endorsements.append((number, customer_pages, pages))
            customer_pages = pages
        # supplements and reissues leave the customer copy as it was, and seal nothing
    documents.insert(0, ("保单", 0, policy_pages, policy_seal, "policy"))
    newest = versions[-1] if versions else None
    customer = newest.parts["customer.pdf"] if newest else None
    bundle = newest.parts["bundle.pdf"] if newest else None
    checked: list[tuple[int, str]] = []
    if customer is not None and customer.data is not None:
        for item in _bookmarks(customer):
            if item.title == "保单" and item.page is not None:
                checked.append((item.page, "保单"))
            checked += [(child.page, child.title) for child in item.children if child.page is not None]
        checked += [(start, f"批单 {number}") for number, start, _stop in endorsements]
    images: list[tuple[int, str]] = []
    if bundle is not None and bundle.data is not None:
        seen: set[str] = set()
        for item in _bookmarks(bundle):
            if item.title in ("影像资料", "补充影像资料"):
                for child in item.children:
                    if child.page is not None and child.title not in seen:
                        seen.add(child.title)
                        images.append((child.page, child.title))
    return Layout(
        policy_pages=policy_pages,
        documents=tuple(documents),
        endorsements=tuple(endorsements),
        image_pages=tuple(images),
        checked_pages=tuple(sorted(checked)),
        customer_key=customer.key if customer else None,
        bundle_key=bundle.key if bundle else None,
        customer=customer,
    )


def _bookmarks(pdf: StoredPart) -> tuple[OutlineItem, ...]:
    try:
        return outline(pdf.reader)
    except Exception:  # for thumbnails only: a PDF pypdf cannot open has failed its checks already
        return ()


# --- thumbnails -----------------------------------------------------------------------------------------


def thumbnail_png(image: Image.Image, *, width: int) -> bytes:
    """A small palette PNG of ``image`` scaled to ``width`` pixels (a few KB for a text page)."""
    scale = width / image.width
    # reduced by whole factors first, then resampled: a page rendered for the seal checks is 15
    # times the thumbnail's width
    small = (image if image.mode == "RGB" else image.convert("RGB")).resize(
        (width, max(1, round(image.height * scale))), Image.Resampling.LANCZOS, reducing_gap=3.0
    )
    out = BytesIO()
    small.quantize(colors=48, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


class Pictures:
    """The report's thumbnails of one policy, made while its pages are rendered for the checks: the
    pages the checks looked at (the schedule, each clause's and each endorsement's first page), the
    fanned right edges of every cross-page group, the first page of each image kind in the archive
    copy. Only these small pictures (and the edge bands a fan is made of) are kept, never a page; a
    picture that cannot be made is left out, the checks do not depend on it."""

    def __init__(
        self,
        *,
        width: int,
        fan_scale: float,
        layout: Layout,
        documents: Sequence[SealedDocument],
    ) -> None:
        self.width = width
        self.fan_scale = fan_scale
        self.checked = dict(layout.checked_pages)
        self.images = dict(layout.image_pages)
        self.pages: dict[int, Thumbnail] = {}
        self.image_thumbs: dict[int, Thumbnail] = {}
        self.fans: list[tuple[str, EdgeFan, int]] = []  # label, fan, its document's first page
        if self.width and layout.customer is not None and layout.customer.data is not None:
            try:
                frames = page_frames(layout.customer.reader)
                for doc in documents:
                    if doc.seal is None or not 0 <= doc.start < doc.stop <= len(frames):
                        continue
                    doc_frames = frames[doc.start : doc.stop]
                    width_mm = encoded_seal(doc.seal).width_pt * 25.4 / 72
                    for group in cross_page_groups(len(doc_frames), max_pages=max_group_pages(width_mm)):
                        label = f"骑缝章 p.{doc.start + group[0] + 1}–{doc.start + group[1]}"
                        fan = EdgeFan(doc_frames, seal=doc.seal, group=group)
                        self.fans.append((label, fan, doc.start))
            except Exception:  # pictures for people; the checks do not need them
                logger.debug("no fanned edges", exc_info=True)
                self.fans = []

    def customer_page(self, page: int, image: RenderedPage) -> None:
        if not self.width:
            return
        try:
            if page in self.checked:
                label = f"p.{page + 1} {self.checked[page]}"
                self.pages[page] = Thumbnail(label, thumbnail_png(image.image(), width=self.width))
            for _label, fan, start in self.fans:
                fan.add(page - start, image)
        except Exception:
            logger.debug("no thumbnail of page %d", page + 1, exc_info=True)

    def bundle_page(self, page: int, image: RenderedPage) -> None:
        if not self.width or page not in self.images:
            return
        try:
            picture = thumbnail_png(image.image(), width=self.width)
            self.image_thumbs[page] = Thumbnail(self.images[page], picture)
        except Exception:
            logger.debug("no thumbnail of archive page %d", page + 1, exc_info=True)

    def thumbnails(self) -> tuple[Thumbnail, ...]:
        out = [self.pages[page] for page in sorted(self.pages)]
        for label, fan, _start in self.fans:
            try:
                picture = fan.image()
            except Exception:  # a page of the group was never rendered: the seal check says why
                logger.debug("no fanned edges for %s", label, exc_info=True)
                continue
            width = min(round(picture.width * self.fan_scale), 3 * self.width)
            out.append(Thumbnail(label, thumbnail_png(picture, width=width)))
        out += [self.image_thumbs[page] for page in sorted(self.image_thumbs)]
        return tuple(out)
