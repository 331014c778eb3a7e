"""The customer's documents: policy schedule with its clauses, and endorsements, as PDF.

Records are rendered to .docx, several of one template per document (``pipeline.schedules``, with the
contexts of ``pipeline.render``), converted by a warm LibreOffice (``pipeline.convert``), and each
record's schedule is followed by every clause it lists. Clauses are static per
clause version, so a product's clauses are converted once per set of content hashes, together in one
document where they can be (their fonts then embedded once in a customer copy), and the PDF reused from
the cache for every policy (never per record). Every document records the version (SHA-256) of each
template used, in its PDF metadata and in the batch report.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pikepdf

from core.errors import ComponentUnavailable, ConversionFailed, IssuanceError, SealAnchorMissing
from core.products import ProductRegistry
from core.records import Endorsement, Policy
from core.timing import StageClock
from pipeline.render import endorsement_context, policy_context
from pipeline.schedules import ComposedTemplate, RecordPages, SplitError, concatenate, split
from stamps.anchor import find_text
from stamps.layout import PageFrame
from stamps.stamping import encoded_seal, pikepdf_frames, seal_document, seal_objects

if TYPE_CHECKING:
    from stamps import SealRegistry
    from stamps.registry import Seal

logger = logging.getLogger(__name__)

PRODUCER = "issuance (示范出单中心)"
# The signature line every schedule and endorsement template carries; the company seal is centred on
# the part SEAL_OVER of it, as a clerk's hand stamp would be.
SEAL_ANCHOR = "保险人（盖章）"
SEAL_OVER = "盖章"


FollowUp = Callable[[int, bytes], bytes]


class DocxToPdf(Protocol):
    """The ``Converter`` seam: ``Converter`` and ``ConverterPool`` both fit."""

    def convert(self, docx: Path, pdf: Path) -> int: ...


@dataclass(frozen=True)
class IssuedDocument:
    """One PDF made for a record, sealed when the maker has seals."""

    pdf: bytes
    pages: int
    templates: dict[str, str]  # template file (relative to templates/) -> sha256:...
    seal: dict[str, str] | None = None  # {"id": …, "version": …} of the seal stamped on it
    follow_up: bytes | None = None  # what the caller's follow_up made of the document (policy_pdfs)

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


class ClauseLibrary:
    """Clause PDFs, converted once per clause version and cached on disk by content hash.

    A product's clauses are also converted together, as one document (``pages``): LibreOffice embeds one
    subset of each font per document, so a customer copy whose clauses come from one document holds
    their fonts once (AUTO-COMM's three clauses: 952 KB of PDF apart, 448 KB together).
    """

    def __init__(self, *, registry: ProductRegistry, converter: DocxToPdf, cache_dir: Path) -> None:
        self._registry = registry
        self._converter = converter
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
        key = f"together-{digest[:16]}"
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
        key = f"{code}-{digest[:16]}"
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
class _SealedClauses:
    """Clause pages sealed for where they sit in a customer copy (``saved``, opened as ``pdf``), and the
    stencil and ink-state objects their seal strips use."""

    pdf: pikepdf.Pdf
    image: pikepdf.Object
    gstate: pikepdf.Object
    saved: _SavedClauses


@dataclass(frozen=True)
class _Base:
    """Sealed clause pages in a document of their own, that customer copies are assembled in (``_base_for``):
    ``pages`` is how many it holds between copies, ``objects`` its stencil and ink state."""

    pdf: pikepdf.Pdf
    tail: _SealedClauses
    objects: tuple[pikepdf.Object, pikepdf.Object]
    pages: int


@dataclass(frozen=True)
class _Sealed:
    """What a customer copy's clause pages came sealed with: they start at page ``first``, their stencil
    and ink state were copied in as ``objects``, and ``frames`` are all its pages' frames."""

    first: int
    objects: tuple[pikepdf.Object, pikepdf.Object]
    frames: tuple[PageFrame, ...]


_SEALED_KEPT = 24  # per thread, and saved per run: a product's clauses under each seal, by schedule length


@dataclass(frozen=True)
class _SavedClauses:
    """Sealed clause pages saved once for every thread: the PDF's bytes; the first page of each clause;
    the frames of the whole customer copy's pages; where the stencil and ink state are named (page,
    /XObject name, /ExtGState name), None when no page of it is drawn on."""

    data: bytes
    starts: tuple[int, ...]
    frames: tuple[PageFrame, ...]
    named: tuple[int, str, str] | None


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
    ) -> None:
        self.registry = registry
        self.converter = converter
        self.clauses = ClauseLibrary(registry=registry, converter=converter, cache_dir=cache_dir)
        self._scratch = scratch_dir
        self._now = now
        self._seals = seals
        self._kept_seals = cache_dir / "seals"  # encoded seals kept between runs (``stamps.kept``)
        self._composed: dict[Path, ComposedTemplate] = {}
        self._anchor_offsets: dict[Path, tuple[float, float]] = {}
        self._sealed = threading.local()  # per thread: clause pages sealed (``_sealed_clauses``)
        self._bases = threading.local()  # per thread: documents customer copies are assembled in
        self._saved: OrderedDict[tuple, _SavedClauses] = OrderedDict()  # the same, saved, for all threads
        self._saving = threading.Lock()
        self._lock = threading.Lock()
        self.clock = StageClock()

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
        follow_up: Callable[[bytes], bytes] | None = None,
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
                        tuple(policy.clauses),
                        seal,
                        tuple(pikepdf_frames(schedule)),
                        family=product.clause_codes,
                    )
                base = self._base_for(tail)
                out = base.pdf  # the schedule's pages go in front below, where they come out again
                sealed = _Sealed(first, base.objects, tail.saved.frames)
                starts = [first + start for start in tail.saved.starts]
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
                self._restore(base, first)

    # --- endorsements --------------------------------------------------------------------------------

    def endorsement_pdf(self, endorsement: Endorsement, policy: Policy) -> IssuedDocument:
        registry = self.registry
        template = registry.endorsement_template
        context = endorsement_context(endorsement, policy=policy, registry=registry, now=self._now)

        def finish(_k: int, composed: pikepdf.Pdf, pages: RecordPages, path: Path) -> IssuedDocument:
            with self.clock.measure("assemble"):
                out = pikepdf.new()
                out.pages.extend(composed.pages[pages.pages.start : pages.pages.stop])
            return self._finish(
                out,
                composed=composed,
                path=path,
                pages=pages,
                template=template,
                bookmarks=[("批单", 0, None)],
                title=f"批单 {endorsement.endorsement_no}（保险单 {endorsement.policy_no}）",
                subject=endorsement.policy_no,
                versions={_relative(registry, template): registry.template_version(template)},
                branch_code=policy.branch.code,
                document="endorsement",
            )

        return _raise_or_return(self._compose(template, [context], finish)[0])

    # --- shared --------------------------------------------------------------------------------------

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
                with pikepdf.open(pdf_path) as pdf, self._assembling():
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
        follow_up: Callable[[bytes], bytes] | None = None,
        sealed: _Sealed | None = None,
    ) -> IssuedDocument:
        """Seal, bookmark, label and save one record's assembled document (then ``follow_up`` it).

        ``sealed``: its pages from ``sealed.first`` on came sealed (``_sealed_clauses``), with the stencil
        and ink-state objects that the pages before them share; their frames need not be read again."""
        seal_ref = None
        if self._seals is not None:
            seal = self._seals.seal_for(branch_code=branch_code, document=document)
            company_at = self._anchor(template, composed, path, pages)
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
            count = len(out.pages)
            data = save_pdf(out, min_version=composed.pdf_version)
        after = follow_up(data) if follow_up is not None else None
        return IssuedDocument(pdf=data, pages=count, templates=versions, seal=seal_ref, follow_up=after)

    @contextmanager
    def _assembling(self) -> Iterator[None]:
        """The customer copies of one composed document are being finished on this thread: their bases
        (``_base_for``) are kept until it is done, then closed."""
        previous = getattr(self._bases, "by_tail", None)
        bases: dict[int, _Base] = {}
        self._bases.by_tail = bases
        try:
            yield
        finally:
            self._bases.by_tail = previous
            for base in bases.values():
                base.pdf.close()

    def _base_for(self, tail: _SealedClauses) -> _Base:
        """A document of ``tail``'s sealed clause pages (with its stencil and ink state), for the customer
        copies that end with them: each copy's schedule pages go in front, it is sealed, bookmarked and
        saved, and they come out again (``_restore``). The clause pages are so copied in once per composed
        document rather than once per policy: 0.95 → 0.45 ms a copy, for the same bytes (qpdf writes only
        what the document's catalog reaches, and numbers it as it reaches it; a test compares the two).
        Kept while the composed document's copies are finished on this thread (``_assembling``): the
        pages taken out stay in qpdf's memory, and the copied schedules keep their source open."""
        bases = getattr(self._bases, "by_tail", None)
        found = bases.get(id(tail)) if bases is not None else None
        if found is not None:  # the same tail: the base holds it, so no other object can have its id
            if len(found.pdf.pages) == found.pages:
                return found
            found.pdf.close()  # left with pages of a copy that failed half-way in: made anew
        pdf = pikepdf.new()
        pdf.pages.extend(tail.pdf.pages)
        objects = (pdf.copy_foreign(tail.image), pdf.copy_foreign(tail.gstate))
        base = _Base(pdf=pdf, tail=tail, objects=objects, pages=len(pdf.pages))
        if bases is not None:
            bases[id(tail)] = base
        return base

    def _restore(self, base: _Base, schedule_pages: int) -> None:
        """``base`` as ``_base_for`` made it: the schedule's pages and the outline taken out (the document
        information and page mode are set anew for every copy). One that cannot be is not used again."""
        pdf = base.pdf
        try:
            del pdf.pages[:schedule_pages]
            if "/Outlines" in pdf.Root:
                del pdf.Root.Outlines
            whole = len(pdf.pages) == base.pages
        except (pikepdf.PdfError, ValueError, IndexError):
            whole = False
        bases = getattr(self._bases, "by_tail", None)
        if bases is None or bases.get(id(base.tail)) is not base:
            pdf.close()
        elif not whole:
            del bases[id(base.tail)]
            pdf.close()

    def _sealed_clauses(
        self, codes: tuple[str, ...], seal: Seal, lead: tuple[PageFrame, ...], *, family: tuple[str, ...] = ()
    ) -> _SealedClauses:
        """The clauses ``codes`` one after the other, sealed as they are when they follow pages of the
        frames ``lead`` (a schedule) under ``seal``: their strips of the cross-page seal depend on nothing
        else. Sealed once per run (``_saved_clauses``) and opened once per thread (pikepdf documents are
        not safe to share), the last ``_SEALED_KEPT`` of each."""
        clauses = self.registry.clauses
        key = (codes, tuple(clauses[code].content_hash for code in codes), seal, lead, family)
        kept = getattr(self._sealed, "kept", None)
        if kept is None:
            kept = self._sealed.kept = OrderedDict()
        found = kept.get(key)
        if found is not None:
            kept.move_to_end(key)
            return found
        saved = self._saved_clauses(key, seal, lead)
        pdf = pikepdf.open(BytesIO(saved.data))
        if saved.named is not None:
            page, image_name, gstate_name = saved.named
            resources = pdf.pages[page].obj.Resources
            image, gstate = resources.XObject[image_name], resources.ExtGState[gstate_name]
        else:  # nothing drawn on the clause pages: the schedule's seal needs the objects all the same
            image, gstate = seal_objects(pdf, encoded_seal(seal, kept=self._kept_seals))
        made = kept[key] = _SealedClauses(pdf=pdf, image=image, gstate=gstate, saved=saved)
        if len(kept) > _SEALED_KEPT:
            kept.popitem(last=False)  # a document made from it was saved before this one was asked for
        return made

    def _saved_clauses(self, key: tuple, seal: Seal, lead: tuple[PageFrame, ...]) -> _SavedClauses:
        """``_sealed_clauses``' pages, sealed once and saved for every thread: a run's filing threads all
        meet the same few combinations of clauses and seal, and sealing one cost each thread 3–6 ms
        where opening the saved copy costs 0.3–0.6 ms."""
        with self._saving:
            found = self._saved.get(key)
            if found is not None:
                self._saved.move_to_end(key)
                return found
            codes, family = key[0], key[-1]
            work = pikepdf.new()
            starts = []
            for pages_of in self.clauses.pages(codes, family=family):
                starts.append(len(work.pages))
                work.pages.extend(pages_of)
            image, gstate = seal_objects(work, encoded_seal(seal, kept=self._kept_seals))
            frames = (*lead, *pikepdf_frames(work))
            seal_document(
                work,
                seal=seal,
                company_at=None,
                cross_page=True,
                frames=frames,
                offset=len(lead),
                objects=(image, gstate),
                kept=self._kept_seals,
            )
            saved = self._saved[key] = _SavedClauses(
                data=save_pdf(work),
                starts=tuple(starts),
                frames=frames,
                named=_where_named(work, image, gstate),
            )
            if len(self._saved) > _SEALED_KEPT:
                self._saved.popitem(last=False)
            return saved

    def _anchor(
        self, template: Path, composed: pikepdf.Pdf, path: Path, pages: RecordPages
    ) -> tuple[int, tuple[float, float]]:
        """Where the company seal's centre goes: (page of the record, point in its visual frame).

        From the seal marks LibreOffice exported (``pipeline.schedules``), offset by how far the centre of
        盖章's glyphs lies from the mark's line top, read once per template with ``pdftotext``; a record
        without usable marks has its signature line read back from the text.
        """
        mark = pages.anchor
        rotated = any(int(composed.pages[p].obj.get("/Rotate", 0)) % 360 for p in pages.pages)
        if mark is not None and not rotated:
            with self._lock:
                offset = self._anchor_offsets.get(template)
            if offset is None:
                found = self._read_anchor(
                    composed, path, range(pages.pages.start + mark.page, pages.pages.start + mark.page + 1)
                )
                if found is not None:
                    x, y = found[1]
                    offset = (x - (mark.x0 + mark.x1) / 2, y - mark.top)
                    with self._lock:
                        self._anchor_offsets.setdefault(template, offset)
            if offset is not None:
                return mark.page, ((mark.x0 + mark.x1) / 2 + offset[0], mark.top + offset[1])
        found = self._read_anchor(composed, path, pages.pages)
        if found is None:
            raise SealAnchorMissing(
                f"the signature line {SEAL_ANCHOR!r} is not on the document",
                hint="the template must keep the anchor text where the company seal goes",
            )
        return found[0] - pages.pages.start, found[1]

    def _read_anchor(
        self, composed: pikepdf.Pdf, path: Path, pages: range
    ) -> tuple[int, tuple[float, float]] | None:
        """The last 盖章 of the anchor on ``pages`` of the composed PDF, by its text: (page, visual point)."""
        frames = pikepdf_frames(composed)
        with self.clock.measure("seal"):
            hits = find_text(
                path, SEAL_ANCHOR, pages=pages, rotations=[f.rotation for f in frames], part=SEAL_OVER
            )
        if not hits:
            return None
        hit = hits[-1]
        x, top = hit.centre
        return hit.page, (x, frames[hit.page].height - top)


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


# Saved as qpdf found it: no stream is decoded, re-encoded or (when it had no filter) compressed, so pages
# copied from LibreOffice's PDF and the clause cache go into the new file byte for byte and writing costs
# about a copy. The file identifier is qpdf's usual one: a content-derived one (deterministic_id) costs an
# MD5 of the whole output, ~2 ms a file, and no promise rests on equal bytes for equal inputs.
SAVE_OPTIONS: dict[str, Any] = {
    "stream_decode_level": pikepdf.StreamDecodeLevel.none,
    "object_stream_mode": pikepdf.ObjectStreamMode.preserve,
    "compress_streams": False,
}


def save_pdf(pdf: pikepdf.Pdf, *, min_version: str = "") -> bytes:
    """The document as bytes, written with ``SAVE_OPTIONS``.

    qpdf writes into a file in memory (``memfd_create``, Linux) and the bytes are read back at once: into
    a ``BytesIO`` every piece qpdf writes is a call back into Python, which made saving a customer copy
    (1 MB, mostly clause fonts) take 2.3–3.2 ms against 1.3–2.0 ms this way. The file is the thread's
    own and is written over, not emptied, from one save to the next: its pages are already there, where
    a new file's are fresh pages of the machine, which cost the kernel time on a virtual machine (1.65
    against 1.2 ms a customer copy). One larger than ``_SAVE_FILE_KEEP`` is emptied after use.
    """
    if not hasattr(os, "memfd_create"):
        out = BytesIO()
        pdf.save(out, min_version=min_version, **SAVE_OPTIONS)
        return out.getvalue()
    file = getattr(_save_files, "file", None)
    if file is None:
        file = _save_files.file = os.fdopen(os.memfd_create("issuance-pdf", os.MFD_CLOEXEC), "w+b")
    file.seek(0)
    pdf.save(file, min_version=min_version, **SAVE_OPTIONS)
    end = file.tell()
    file.seek(0)
    data = file.read(end)
    if end > _SAVE_FILE_KEEP:
        file.truncate(0)
    return data


_save_files = threading.local()
_SAVE_FILE_KEEP = 16 << 20


def bookmark(pdf: pikepdf.Pdf, title: str, page: int) -> pikepdf.OutlineItem:
    """An outline item that shows page ``page`` whole, as a /GoTo action (as the pipeline always wrote)."""
    target = pikepdf.Array([pdf.pages[page].obj, pikepdf.Name.Fit])
    return pikepdf.OutlineItem(title, action=pikepdf.Dictionary(S=pikepdf.Name.GoTo, D=target))


def _raise_or_return(result: IssuedDocument | IssuanceError) -> IssuedDocument:
    if isinstance(result, IssuanceError):
        raise result
    return result


def _as_issuance_error(error: Exception) -> IssuanceError:
    if isinstance(error, IssuanceError):
        return error
    return ConversionFailed(f"LibreOffice's PDF cannot be read: {error}")
