"""The customer's documents: policy schedule with its clauses, and endorsements, as PDF.

A record is rendered to .docx (``pipeline.render``), converted by a warm LibreOffice
(``pipeline.convert``), and the schedule is followed by every clause it lists. Clauses are static per
clause version, so each is converted once per content hash and the PDF reused from the cache for
every policy (never per record). Every document records the version (SHA-256) of each template used,
in its PDF metadata and in the batch report.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pypdf import PdfReader, PdfWriter

from pipeline.products import ProductRegistry
from pipeline.records import Endorsement, Policy
from pipeline.render import TemplateCache, endorsement_context, policy_context, render_docx
from pipeline.timing import StageClock

if TYPE_CHECKING:
    from stamps import SealRegistry

PRODUCER = "issuance (示范出单中心)"
# The signature line every schedule and endorsement template carries; the company seal is centred on it.
SEAL_ANCHOR = "保险人（盖章）"


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
    """Clause PDFs, converted once per clause version and cached on disk by content hash."""

    def __init__(self, *, registry: ProductRegistry, converter: DocxToPdf, cache_dir: Path) -> None:
        self._registry = registry
        self._converter = converter
        self._dir = cache_dir / "clauses"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._bytes: dict[str, bytes] = {}
        self.conversions = 0

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
                if not _looks_like_pdf(target):
                    self._convert(clause.path, target)
                data = target.read_bytes()
                with self._guard:
                    self._bytes[key] = data
        return self._bytes[key]

    def _convert(self, docx: Path, target: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="clause-", dir=self._dir) as tmp:
            staged = Path(tmp) / target.name
            self._converter.convert(docx, staged)
            os.replace(staged, target)  # atomic: a concurrent run sees the old state or the whole PDF
            self.conversions += 1


def _looks_like_pdf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(5) == b"%PDF-"
    except OSError:
        return False


def _relative(registry: ProductRegistry, path: Path) -> str:
    try:
        return path.relative_to(registry.folder.resolve()).as_posix()
    except ValueError:
        return path.name


class DocumentMaker:
    """Makes the customer's PDFs for records; safe to call from several threads at once."""

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
        self._templates = TemplateCache()
        self._scratch = scratch_dir
        self._now = now
        self._seals = seals
        self.clock = StageClock()

    def _render_and_convert(self, *, template: Path, context: dict, scratch: Path) -> tuple[Path, int]:
        docx = scratch / "document.docx"
        pdf = scratch / "document.pdf"
        with self.clock.measure("render"):
            render_docx(template=template, context=context, out=docx, cache=self._templates)
        with self.clock.measure("convert"):
            pages = self.converter.convert(docx, pdf)
        return pdf, pages

    def policy_pdf(self, policy: Policy) -> IssuedDocument:
        """Schedule followed by every listed clause, in the listed order, with bookmarks; sealed."""
        registry = self.registry
        product = registry.products[policy.product_code]
        versions = {_relative(registry, product.schedule): registry.template_version(product.schedule)}
        with tempfile.TemporaryDirectory(prefix="policy-", dir=self._scratch) as tmp:
            context = policy_context(policy, registry=registry, now=self._now)
            schedule, schedule_pages = self._render_and_convert(
                template=product.schedule, context=context, scratch=Path(tmp)
            )
            writer = PdfWriter()
            writer.append(str(schedule), import_outline=False)
            writer.add_outline_item(title="保单", page_number=0)
            parent = None
            for code in policy.clauses:
                clause = registry.clauses[code]
                first_page = len(writer.pages)
                writer.append(PdfReader(BytesIO(self.clauses.pdf_bytes(code))), import_outline=False)
                if parent is None:
                    parent = writer.add_outline_item(title="条款", page_number=first_page)
                writer.add_outline_item(title=clause.title, page_number=first_page, parent=parent)
                versions[_relative(registry, clause.path)] = clause.content_hash
            title = f"{product.name}保险单 {policy.policy_no}"
            pages = len(writer.pages)
            pdf = _serialise(writer, title=title, subject=policy.policy_no, versions=versions)
        return self._sealed(
            pdf,
            pages=pages,
            templates=versions,
            branch_code=policy.branch.code,
            document="policy",
            anchor_pages=range(schedule_pages),
        )

    def endorsement_pdf(self, endorsement: Endorsement, policy: Policy) -> IssuedDocument:
        registry = self.registry
        template = registry.endorsement_template
        versions = {_relative(registry, template): registry.template_version(template)}
        with tempfile.TemporaryDirectory(prefix="endorsement-", dir=self._scratch) as tmp:
            context = endorsement_context(endorsement, policy=policy, registry=registry, now=self._now)
            pdf, _ = self._render_and_convert(template=template, context=context, scratch=Path(tmp))
            writer = PdfWriter()
            writer.append(str(pdf), import_outline=False)
            writer.add_outline_item(title="批单", page_number=0)
            pages = len(writer.pages)
            title = f"批单 {endorsement.endorsement_no}（保险单 {endorsement.policy_no}）"
            pdf = _serialise(writer, title=title, subject=endorsement.policy_no, versions=versions)
        return self._sealed(
            pdf,
            pages=pages,
            templates=versions,
            branch_code=policy.branch.code,
            document="endorsement",
            anchor_pages=range(pages),
        )

    def _sealed(
        self,
        pdf: bytes,
        *,
        pages: int,
        templates: dict[str, str],
        branch_code: str,
        document: str,
        anchor_pages: range,
    ) -> IssuedDocument:
        """Company seal on 保险人（盖章）, cross-page seal over all pages (stamps decides the groups)."""
        if self._seals is None:
            return IssuedDocument(pdf=pdf, pages=pages, templates=templates)
        from stamps import stamp_pdf

        seal = self._seals.seal_for(branch_code=branch_code, document=document)
        with self.clock.measure("seal"):
            result = stamp_pdf(pdf, seal=seal, anchor=SEAL_ANCHOR, anchor_pages=anchor_pages, cross_page=True)
        return IssuedDocument(
            pdf=result.pdf,
            pages=pages,
            templates=templates,
            seal={"id": seal.id, "version": str(seal.version)},
        )


def _serialise(writer: PdfWriter, *, title: str, subject: str, versions: dict[str, str]) -> bytes:
    # Metadata carries document numbers and template versions, never names or ID numbers.
    writer.add_metadata(
        {
            "/Title": title,
            "/Subject": subject,
            "/Producer": PRODUCER,
            "/IssuanceTemplates": json.dumps(versions, ensure_ascii=False, sort_keys=True),
        }
    )
    writer.page_mode = "/UseOutlines"
    out = BytesIO()
    writer.write(out)
    return out.getvalue()
