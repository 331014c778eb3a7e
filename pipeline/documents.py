"""The customer's documents: policy schedule with its clauses, and endorsements, as PDF.

``DocumentMaker`` runs render → convert → assemble → seal for each record: records are rendered to
.docx, several of one template per document (``pipeline.schedules``, with the contexts of
``pipeline.render``), converted by a warm LibreOffice (``pipeline.convert``), split back per record, and
each record's schedule is followed by every clause it lists (``pipeline.clauses``: converted once per
clause version, never per record). The seals come last (``stamps``): the company seal on the signature
line (``pipeline.sealing``), the cross-page seal over every page, the clause pages sealed once per run
(``stamps.sealed_pages``). Every document records the version (SHA-256) of each template used, in its
PDF metadata and in the batch report. An endorsement is printed on its type's template; one that adds
clauses (增加附加险) is followed by them in full, under one cross-page seal with its own pages.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pikepdf

from core.errors import ComponentUnavailable, ConversionFailed, IssuanceError
from core.products import ProductRegistry
from core.records import Endorsement, Policy
from core.timing import StageClock
from pipeline.assembly import CopyBases
from pipeline.clauses import ClauseLibrary
from pipeline.convert import DocxToPdf
from pipeline.render import endorsement_context, policy_context
from pipeline.schedules import ComposedTemplate, RecordPages, SplitError, split
from pipeline.sealing import SEAL_ANCHOR, SEAL_OVER, SealAnchors
from stamps.layout import PageFrame
from stamps.pdfa import keep_pdfa
from stamps.qr import QrEncoder, draw_qr
from stamps.registry import Seal, SealRegistry
from stamps.saving import bookmark, save_pdf
from stamps.sealed_pages import SealedPages, SealedTail
from stamps.stamping import pikepdf_frames, seal_document

__all__ = [
    "ADDED_CLAUSES",
    "PRODUCER",
    "SEAL_ANCHOR",
    "SEAL_OVER",
    "AttachedClause",
    "DocumentMaker",
    "FollowUp",
    "IssuedDocument",
]

logger = logging.getLogger(__name__)

PRODUCER = "issuance (示范出单中心)"

FollowUp = Callable[[int, bytes], object]
# (policy number, version) -> the URL its verification QR code leads to (``core.verification``)
Verification = Callable[[str, int], str]


# the bookmark over the clauses an ``add_clauses`` endorsement attaches (增加附加险)
ADDED_CLAUSES = "增加的条款"


@dataclass(frozen=True)
class AttachedClause:
    """A clause attached in full after an endorsement's own pages, from page ``page`` (0-based) of it."""

    code: str
    title: str
    page: int


@dataclass(frozen=True)
class IssuedDocument:
    """One PDF made for a record, sealed when the maker has seals."""

    pdf: bytes
    pages: int
    templates: dict[str, str]  # template file (relative to templates/) -> sha256:...
    seal: dict[str, str] | None = None  # {"id": …, "version": …} of the seal stamped on it
    follow_up: object = None  # what the caller's follow_up made of the document (policy_pdfs)
    attached: tuple[AttachedClause, ...] = ()  # clauses an endorsement attaches after its own pages

    def write(self, out: Path) -> None:
        """Write the PDF to ``out`` atomically (a reader never sees half a file)."""
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.pdf)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _relative(registry: ProductRegistry, path: Path) -> str:
    try:
        return path.relative_to(_resolved(registry.folder)).as_posix()
    except ValueError:
        return path.name


@functools.lru_cache(maxsize=16)
def _resolved(folder: Path) -> Path:
    """``folder.resolve()``, once: it is a system call per path component, and asked for per record."""
    return folder.resolve()


@dataclass(frozen=True)
class _Sealed:
    """What a customer copy's clause pages came sealed with: they start at page ``first``, their stencil
    and ink state were copied in as ``objects``, and ``frames`` are all its pages' frames."""

    first: int
    objects: tuple[pikepdf.Object, pikepdf.Object]
    frames: tuple[PageFrame, ...]


class DocumentMaker:
    """Makes the customer's PDFs for records; safe to call from several threads at once.

    Records that share a template are made together (``policy_pdfs``): one LibreOffice document for all
    their schedules (``pipeline.schedules``), split back per record; the customer copy of each is then
    assembled in memory (pikepdf): its schedule pages, every listed clause from the cache, bookmarks,
    metadata, and the seals (``stamps.seal_document``). A record whose template part fails, or a composed
    document LibreOffice cannot convert, costs only that record: the others are converted one by one.
    """

    def __init__(
        self,
        *,
        registry: ProductRegistry,
        converter: DocxToPdf,
        cache_dir: Path,
        scratch_dir: Path | None = None,
        now: datetime | None = None,
        seals: SealRegistry | None = None,
        verification: Verification | None = None,
    ) -> None:
        self.registry = registry
        self.converter = converter
        self.clauses = ClauseLibrary(registry=registry, converter=converter, cache_dir=cache_dir)
        self._scratch = scratch_dir
        self._now = now
        self._seals = seals
        self._kept_seals = cache_dir / "seals"  # encoded seals kept between runs (``stamps.kept``)
        self._composed: dict[Path, ComposedTemplate] = {}
        self._lock = threading.Lock()
        self.clock = StageClock()
        self.anchors = SealAnchors(clock=self.clock)  # where each record's company seal goes
        self.sealed_clauses = SealedPages(kept=self._kept_seals)  # clause pages sealed once per run
        self.bases = CopyBases()  # documents the customer copies are assembled in
        self._verification = verification  # None: no QR code (previews, tests of other things)
        self._qr = QrEncoder()

    # --- policies ------------------------------------------------------------------------------------

    def policy_pdf(self, policy: Policy) -> IssuedDocument:
        """Schedule followed by every listed clause, in the listed order, with bookmarks; sealed."""
        return _raise_or_return(self.policy_pdfs([policy])[0])

    def policy_pdfs(
        self, policies: Sequence[Policy], *, follow_up: FollowUp | None = None
    ) -> list[IssuedDocument | IssuanceError]:
        """``policy_pdf`` for many policies at once, in order: each its document or why it has none.

        ``follow_up(i, pdf)``, if given, is called with the i-th policy's customer copy as soon as its
        bytes are made, on the thread that made them; what it returns is the document's ``follow_up``.
        The archive copy is made so, while the customer copy is fresh in the cache. Raises only
        ``ComponentUnavailable`` (LibreOffice or a font is missing): that stops a batch.
        """
        results: list[IssuedDocument | IssuanceError | None] = [None] * len(policies)
        by_template: dict[Path, list[int]] = {}
        for i, policy in enumerate(policies):
            by_template.setdefault(self.registry.products[policy.product_code].schedule, []).append(i)
        for template, members in by_template.items():
            contexts = [policy_context(policies[i], registry=self.registry, now=self._now) for i in members]
            made = self._compose(
                template,
                contexts,
                lambda k, pdf, pages, path, members=members: self._policy_document(
                    policies[members[k]],
                    pdf,
                    pages,
                    path,
                    follow_up=(lambda out, at=members[k]: follow_up(at, out)) if follow_up else None,
                ),
            )
            for k, i in enumerate(members):
                results[i] = made[k]
        return [r for r in results if r is not None]

    def _policy_document(
        self,
        policy: Policy,
        composed: pikepdf.Pdf,
        pages: RecordPages,
        path: Path,
        *,
        follow_up: Callable[[bytes], object] | None = None,
    ) -> IssuedDocument:
        registry = self.registry
        product = registry.products[policy.product_code]
        versions = {_relative(registry, product.schedule): registry.template_version(product.schedule)}
        seal = None
        if self._seals is not None:
            seal = self._seals.seal_for(branch_code=policy.branch.code, document="policy")
        sealed = None
        base = None
        with self.clock.measure("assemble"):
            schedule = composed.pages[pages.pages.start : pages.pages.stop]
            first = len(schedule)
            if seal is not None and policy.clauses:
                # the clause pages come sealed, as they sit after a schedule of these pages
                with self.clock.measure("seal"):
                    tail = self._sealed_clauses(
                        policy.clauses, family=product.clause_codes, seal=seal, lead=schedule
                    )
                base = self.bases.base_for(tail)
                out = base.pdf  # the schedule's pages go in front below, where they come out again
                sealed = _Sealed(first, base.objects, tail.frames)
                starts = [first + start for start in tail.starts]
            else:
                out = pikepdf.new()
                out.pages.extend(schedule)
                starts = []
                for pages_of in self.clauses.pages(policy.clauses, family=product.clause_codes):
                    starts.append(len(out.pages))
                    out.pages.extend(pages_of)
            bookmarks = [("保单", 0, None)]
            for n, code in enumerate(policy.clauses):
                clause = registry.clauses[code]
                if n == 0:
                    bookmarks.append(("条款", starts[0], None))
                bookmarks.append((clause.title, starts[n], "条款"))
                versions[_relative(registry, clause.path)] = clause.content_hash
        try:
            if base is not None:
                with self.clock.measure("assemble"):
                    for n, page in enumerate(schedule):
                        out.pages.insert(n, page)
            self._verification_qr(out, policy.policy_no, 1)
            return self._finish(
                out,
                composed=composed,
                path=path,
                pages=pages,
                template=product.schedule,
                bookmarks=bookmarks,
                title=f"{product.name}保险单 {policy.policy_no}",
                subject=policy.policy_no,
                versions=versions,
                branch_code=policy.branch.code,
                document="policy",
                sealed=sealed,
                follow_up=follow_up,
            )
        finally:
            if base is not None:
                self.bases.restore(base, first)

    # --- endorsements --------------------------------------------------------------------------------

    def endorsement_pdf(
        self, endorsement: Endorsement, policy: Policy, *, version: int | None = None
    ) -> IssuedDocument:
        """The sealed endorsement, printed on its type's template (``endorsement_template_for``); with a
        ``verification``, page 1 carries the QR code of the policy's version ``version`` (the one this
        endorsement makes), required then.

        An ``add_clauses`` endorsement is followed by every clause it adds, in full, and the cross-page
        seal runs over its pages and theirs together (DOMAIN.md: the new clauses are "attached in full and
        sealed across with the endorsement"); ``attached`` says where each clause starts."""
        if self._verification is not None and version is None:
            raise IssuanceError("an issued endorsement needs the version it makes, for its QR code")
        registry = self.registry
        template = registry.endorsement_template_for(endorsement.type)
        context = endorsement_context(endorsement, policy=policy, registry=registry, now=self._now)
        added = tuple(endorsement.clauses_added or ()) if endorsement.type == "add_clauses" else ()
        family = registry.products[policy.product_code].clause_codes

        def finish(_k: int, composed: pikepdf.Pdf, pages: RecordPages, path: Path) -> IssuedDocument:
            versions = {_relative(registry, template): registry.template_version(template)}
            bookmarks: list[tuple[str, int, str | None]] = [("批单", 0, None)]
            attached = []
            with self.clock.measure("assemble"):
                out = pikepdf.new()
                out.pages.extend(composed.pages[pages.pages.start : pages.pages.stop])
                for code, pages_of in zip(added, self.clauses.pages(added, family=family), strict=True):
                    clause = registry.clauses[code]
                    if not attached:
                        bookmarks.append((ADDED_CLAUSES, len(out.pages), None))
                    attached.append(AttachedClause(code=code, title=clause.title, page=len(out.pages)))
                    bookmarks.append((clause.title, len(out.pages), ADDED_CLAUSES))
                    versions[_relative(registry, clause.path)] = clause.content_hash
                    out.pages.extend(pages_of)
            if version is not None:
                self._verification_qr(out, endorsement.policy_no, version)
            made = self._finish(
                out,
                composed=composed,
                path=path,
                pages=pages,
                template=template,
                bookmarks=bookmarks,
                title=f"批单 {endorsement.endorsement_no}（保险单 {endorsement.policy_no}）",
                subject=endorsement.policy_no,
                versions=versions,
                branch_code=policy.branch.code,
                document="endorsement",
            )
            return replace(made, attached=tuple(attached))

        return _raise_or_return(self._compose(template, [context], finish)[0])

    # --- shared --------------------------------------------------------------------------------------

    def _verification_qr(self, out: pikepdf.Pdf, policy_no: str, version: int) -> None:
        """The QR code of this version's verification page on page 1 (``stamps.qr``), before the seals
        and the signature: a signature must be the last thing added."""
        if self._verification is not None:
            with self.clock.measure("qr"):
                draw_qr(out, self._qr.symbol(self._verification(policy_no, version)))

    def _composed_template(self, template: Path) -> ComposedTemplate:
        with self._lock:
            composed = self._composed.get(template)
            if composed is None:
                composed = ComposedTemplate(template, anchor=SEAL_ANCHOR, seal_over=SEAL_OVER)
                self._composed[template] = composed
            return composed

    def _compose(
        self,
        template: Path,
        contexts: Sequence[dict],
        finish: Callable[[int, pikepdf.Pdf, RecordPages, Path], IssuedDocument],
    ) -> list[IssuedDocument | IssuanceError]:
        """Render ``contexts`` into one document, convert it, and ``finish`` each record's pages.

        A composed document that LibreOffice refuses, or whose PDF cannot be split, is retried one record
        per document, so that only the record at fault is refused.
        """
        composed = self._composed_template(template)
        if len(contexts) > 1 and not composed.composable:
            return self._each_alone(template, contexts, finish, range(len(contexts)), results=None)
        with tempfile.TemporaryDirectory(prefix="documents-", dir=self._scratch) as tmp:
            docx, pdf_path = Path(tmp) / "documents.docx", Path(tmp) / "documents.pdf"
            with self.clock.measure("render"):
                errors = composed.write(contexts, docx)
            results: list[IssuedDocument | IssuanceError] = [
                e if e is not None else IssuanceError("not made") for e in errors
            ]
            rendered = [k for k, e in enumerate(errors) if e is None]
            if not rendered:
                return results
            try:
                with self.clock.measure("convert"):
                    self.converter.convert(docx, pdf_path)
                with pikepdf.open(pdf_path) as pdf, self.bases.assembling():
                    placements = split(pdf, len(rendered))
                    for k, pages in zip(rendered, placements, strict=True):
                        results[k] = self._finish_one(finish, k, pdf, pages, pdf_path)
                return results
            except ComponentUnavailable:
                raise
            except (ConversionFailed, SplitError, pikepdf.PdfError) as e:
                if len(rendered) == 1:
                    results[rendered[0]] = _as_issuance_error(e)
                    return results
                logger.warning(
                    "%d documents of %s could not be made together (%s); making them one by one",
                    len(rendered),
                    template.name,
                    e,
                )
        return self._each_alone(template, contexts, finish, rendered, results=results)

    def _each_alone(
        self,
        template: Path,
        contexts: Sequence[dict],
        finish: Callable[[int, pikepdf.Pdf, RecordPages, Path], IssuedDocument],
        which: Sequence[int],
        *,
        results: list[IssuedDocument | IssuanceError] | None,
    ) -> list[IssuedDocument | IssuanceError]:
        """``results`` with records ``which`` made one per document (``results`` None: none made yet)."""
        made = list(results) if results is not None else [IssuanceError("not made")] * len(contexts)
        for k in which:
            made[k] = self._compose(
                template, [contexts[k]], lambda _k, pdf, pages, path, k=k: finish(k, pdf, pages, path)
            )[0]
        return made

    @staticmethod
    def _finish_one(
        finish: Callable[[int, pikepdf.Pdf, RecordPages, Path], IssuedDocument],
        k: int,
        pdf: pikepdf.Pdf,
        pages: RecordPages,
        path: Path,
    ) -> IssuedDocument | IssuanceError:
        try:
            return finish(k, pdf, pages, path)
        except ComponentUnavailable:
            raise
        except IssuanceError as e:
            return e
        except pikepdf.PdfError as e:
            return IssuanceError(f"the converted document cannot be assembled: {e}")

    def _finish(
        self,
        out: pikepdf.Pdf,
        *,
        composed: pikepdf.Pdf,
        path: Path,
        pages: RecordPages,
        template: Path,
        bookmarks: list[tuple[str, int, str | None]],
        title: str,
        subject: str,
        versions: dict[str, str],
        branch_code: str,
        document: str,
        follow_up: Callable[[bytes], object] | None = None,
        sealed: _Sealed | None = None,
    ) -> IssuedDocument:
        """Seal, bookmark, label and save one record's assembled document (then ``follow_up`` it).

        ``sealed``: its pages from ``sealed.first`` on came sealed (``sealed_clauses``), with the stencil
        and ink-state objects that the pages before them share; their frames need not be read again."""
        seal_ref = None
        if self._seals is not None:
            seal = self._seals.seal_for(branch_code=branch_code, document=document)
            company_at = self.anchors.locate(template=template, composed=composed, path=path, pages=pages)
            with self.clock.measure("seal"):
                if sealed is None:
                    seal_document(
                        out, seal=seal, company_at=company_at, cross_page=True, kept=self._kept_seals
                    )
                else:
                    seal_document(
                        out,
                        seal=seal,
                        company_at=company_at,
                        cross_page=True,
                        frames=sealed.frames,
                        pages=range(sealed.first),
                        objects=sealed.objects,
                        kept=self._kept_seals,
                    )
            seal_ref = {"id": seal.id, "version": str(seal.version)}
        with self.clock.measure("assemble"):
            with out.open_outline() as outline:
                parents: dict[str, pikepdf.OutlineItem] = {}
                for text, page, parent in bookmarks:
                    item = bookmark(out, text, page)
                    (parents[parent].children if parent else outline.root).append(item)
                    parents.setdefault(text, item)
            # Metadata carries document numbers and template versions, never names or ID numbers.
            out.docinfo["/Title"] = title
            out.docinfo["/Subject"] = subject
            out.docinfo["/Producer"] = PRODUCER
            out.docinfo["/IssuanceTemplates"] = json.dumps(versions, ensure_ascii=False, sort_keys=True)
            out.Root.PageMode = pikepdf.Name.UseOutlines
            keep_pdfa(out, sources=[composed])  # LibreOffice's PDF/A-2b: output intent, XMP of the /Info
            count = len(out.pages)
            data = save_pdf(out, min_version=composed.pdf_version)
        after = follow_up(data) if follow_up is not None else None
        return IssuedDocument(pdf=data, pages=count, templates=versions, seal=seal_ref, follow_up=after)

    def _sealed_clauses(
        self, codes: Sequence[str], *, family: tuple[str, ...], seal: Seal, lead: Sequence[pikepdf.Page]
    ) -> SealedTail:
        """The clauses ``codes`` one after the other, sealed as they are when they follow the schedule
        pages ``lead`` under ``seal`` (``stamps.sealed_pages``): a clause's pages are the same for the same
        content hash and the same product's clauses (``ClauseLibrary.pages``)."""
        clauses = self.registry.clauses
        key = (tuple(codes), tuple(clauses[code].content_hash for code in codes), family)
        return self.sealed_clauses.tail(
            key,
            seal=seal,
            lead=tuple(pikepdf_frames(lead)),
            groups=lambda: self.clauses.pages(codes, family=family),
        )


def _raise_or_return(result: IssuedDocument | IssuanceError) -> IssuedDocument:
    if isinstance(result, IssuanceError):
        raise result
    return result


def _as_issuance_error(error: Exception) -> IssuanceError:
    if isinstance(error, IssuanceError):
        return error
    return ConversionFailed(f"LibreOffice's PDF cannot be read: {error}")
