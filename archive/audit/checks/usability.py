"""可用性 (usability): every PDF opens and renders, its fonts are embedded, and its text says what the
record says.

- ``renders``: every PDF opens (pypdf) and poppler renders every page (``pdftoppm``, pages counted:
  the newest customer copy as the seal checks render it, the others at low dpi, one page at a time).
- ``fonts_embedded``: no font is left unembedded (``font_findings``: the fonts ``pdffonts`` lists, read
  from the parsed PDF; Type 3 fonts are drawn by the PDF).
- ``pdfa_structure``: the PDF/A-2b structural self-check (``stamps.pdfa.pdfa_problems``) finds nothing
  in any PDF; each problem is named. A self-check of the structure, not a validation: no PDF/A
  validator is installed here.
- ``schedule_text``: the schedule's text (``pdftotext``, whitespace removed) holds the record's policy
  number, insured name, period as printed (``period_wording``: 自…起至…止) and total premium in figures and
  in capitals; each endorsement's pages hold its endorsement number. Read as a person reads the page:
  a value that wraps in its table cell is read line after line, and line breaks, a hyphen that ends
  a line and whitespace are no differences (``shows``); any other character is.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from pypdf.generic import DictionaryObject, IndirectObject, StreamObject

from archive.audit.checks.base import AuditedPolicy, CheckResult, Messages, PageSink, pdfs
from archive.audit.checks.pdftext import normalise, page_lines, shows
from core.errors import IssuanceError
from core.wording import amount_capitals, amount_figures, period_wording
from stamps.pdfa import pdfa_problems
from stamps.poppler import stream_pages

__all__ = [
    "font_findings",
    "fonts_embedded",
    "pdfa_structure",
    "render_count",
    "renders",
    "schedule_text",
    "schedule_text_check",
]


def renders(policy: AuditedPolicy, messages: Messages) -> None:
    """Every PDF opens (pypdf) and poppler renders every page; ``policy.rendered`` holds what the seal
    checks' rendering found already. Pages are counted as they arrive, none is kept (but the newest
    archive copy's image pages, as thumbnails)."""
    found = messages.check("renders")
    bundle = policy.bundle
    bundle_key = bundle.key if bundle is not None else None
    for label, obj in pdfs(policy.versions):
        key, data = obj.key, obj.data
        if data is None:
            found.problem(f"{label}: cannot be opened (see object_hashes)")
            continue
        try:
            pages = len(obj.reader.pages)
        except Exception as e:  # whatever pypdf cannot parse is unusable
            found.problem(f"{label}: pypdf cannot open it ({type(e).__name__})")
            continue
        count = policy.rendered.get(key)
        if count is None:
            on_page = policy.on_bundle_page if key == bundle_key else None
            count = render_count(data, dpi=policy.sources.render_dpi, on_page=on_page)
        if isinstance(count, str):
            found.problem(f"{label}: {count}")
        elif count != pages:
            found.problem(f"{label}: {count} of {pages} pages rendered")
        else:
            found.evidence(f"{label}: opens, {pages} of {pages} pages rendered")


def render_count(pdf: bytes, *, dpi: float, on_page: PageSink | None = None) -> int | str:
    """How many pages poppler renders, one at a time; or why it cannot. Without anti-aliasing:
    whether a page renders does not depend on it, and the pages kept (image pages, as thumbnails)
    hold pictures only."""
    with tempfile.TemporaryDirectory(prefix="audit-render-") as tmp:
        path = Path(tmp) / "document.pdf"
        path.write_bytes(pdf)
        count = 0
        try:
            for page, image in enumerate(stream_pages(path, dpi=dpi, antialias=False)):
                if on_page is not None:
                    on_page(page, image)
                count += 1
        except IssuanceError as e:
            return f"poppler cannot render it ({e})"
    return count


def fonts_embedded(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("fonts_embedded")
    for label, obj in pdfs(policy.versions):
        if obj.data is None:
            found.problem(f"{label}: cannot be read")
            continue
        fonts, missing = font_findings(obj.reader)
        if missing:
            found.problem(f"{label}: not embedded: {', '.join(sorted(set(missing)))}")
        else:
            found.evidence(f"{label}: {fonts} font(s), all embedded")


def font_findings(reader: PdfReader) -> tuple[int, list[str]]:
    """(fonts, names of those not embedded) as ``pdffonts`` lists them, from the parsed PDF.

    Like poppler's font scanner: the fonts of every page's resources, of the form XObjects and
    patterns they use (and theirs, recursively) and of annotations' appearance streams, each font
    object once. A font is embedded when its descriptor (a Type 0 font's: its descendant's) holds a
    font file stream; a Type 3 font is drawn by the PDF itself.
    """
    fonts: set[Any] = set()
    missing: list[str] = []
    visited: set[Any] = set()

    def identity(ref: Any) -> Any:
        return (ref.idnum, ref.generation) if isinstance(ref, IndirectObject) else id(ref)

    def scan(resources: Any) -> None:
        resources = _resolved(resources)
        if not isinstance(resources, DictionaryObject):
            return
        for ref in (_resolved(resources.get("/Font")) or {}).values():
            if identity(ref) in fonts:
                continue
            fonts.add(identity(ref))
            font = _resolved(ref)
            if isinstance(font, DictionaryObject) and not _embedded(font):
                missing.append(str(font.get("/BaseFont", "(unnamed)")).lstrip("/") or "(unnamed)")
        for kind in ("/XObject", "/Pattern"):
            for ref in (_resolved(resources.get(kind)) or {}).values():
                if identity(ref) in visited:
                    continue
                visited.add(identity(ref))
                obj = _resolved(ref)
                if isinstance(obj, DictionaryObject) and "/Resources" in obj:
                    scan(obj["/Resources"])

    def appearances(entry: Any) -> Iterator[Any]:
        entry = _resolved(entry)
        if isinstance(entry, StreamObject):
            yield entry
        elif isinstance(entry, DictionaryObject):  # appearance states
            yield from (_resolved(v) for v in entry.values() if isinstance(_resolved(v), StreamObject))

    for page in reader.pages:
        scan(page.get("/Resources"))
        for annotation in _resolved(page.get("/Annots")) or []:
            annotation = _resolved(annotation)
            if not isinstance(annotation, DictionaryObject):
                continue
            for entry in (_resolved(annotation.get("/AP")) or {}).values():
                for stream in appearances(entry):
                    scan(stream.get("/Resources"))
    return len(fonts), missing


def _resolved(obj: Any) -> Any:
    return obj.get_object() if isinstance(obj, IndirectObject) else obj


def _embedded(font: DictionaryObject) -> bool:
    subtype = font.get("/Subtype")
    if subtype == "/Type3":
        return True
    if subtype == "/Type0":
        descendants = _resolved(font.get("/DescendantFonts")) or []
        font = _resolved(descendants[0]) if descendants else DictionaryObject()
        if not isinstance(font, DictionaryObject):
            return False
    descriptor = _resolved(font.get("/FontDescriptor"))
    if not isinstance(descriptor, DictionaryObject):
        return False
    files = (_resolved(descriptor.get(k)) for k in ("/FontFile", "/FontFile2", "/FontFile3"))
    return any(isinstance(f, StreamObject) for f in files)


def pdfa_structure(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("pdfa_structure")
    for label, obj in pdfs(policy.versions):
        if obj.data is None:
            found.problem(f"{label}: cannot be read")
            continue
        problems = pdfa_problems(obj.data)
        for problem in problems:
            found.problem(f"{label}: {problem}")
        if not problems:
            found.evidence(f"{label}: PDF/A-2b structural self-check found nothing")


def schedule_text(policy: AuditedPolicy, messages: Messages) -> None:
    customer = policy.customer.data
    if customer is None or policy.record is None:
        messages.check("schedule_text").problem("the newest customer copy or the record cannot be read")
        return
    schedule_text_check(
        policy.texts,
        schedule_pages=policy.schedule_pages,
        record=policy.record,
        endorsements=policy.endorsements,
        pdf=customer,
        messages=messages,
    )


def schedule_text_check(
    texts: Sequence[str],
    *,
    schedule_pages: int,
    record: dict[str, Any],
    endorsements: Sequence[tuple[str, int, int]] = (),
    pdf: bytes | None = None,
    messages: Messages | None = None,
) -> CheckResult:
    """The schedule holds the record's number, insured, period and premium; endorsements their numbers.

    ``texts`` are the customer copy's whitespace-free page texts in reading order; ``endorsements``
    are (endorsement number, first page, stop page) in it. A value those texts miss is looked for
    again in ``pdf``'s pages line by line (``page_lines``, ``shows``): a name that wraps in its table
    cell, at its own hyphen or next to punctuation, is what the page shows, as a person reads it.
    The findings go to ``messages`` when given (a new collector otherwise).
    """
    if messages is None:
        messages = Messages()
    found = messages.check("schedule_text")
    lines: dict[tuple[int, int], str] = {}

    def shown(value: str, first: int, stop: int) -> str | None:
        """How ``value`` is shown on pages ``first..stop-1``: "" (in reading order), " (across
        lines)", or None (not at all)."""
        if normalise(value) in "".join(texts[first:stop]):
            return ""
        if pdf is None or stop <= first:
            return None
        if (first, stop) not in lines:
            lines[(first, stop)] = "\n".join(page_lines(pdf, first=first + 1, last=stop))
        return " (across lines)" if shows(lines[(first, stop)], value) else None

    wanted: list[tuple[str, str]] = [("policy number", str(record.get("policy_no", "")))]
    insured = (record.get("insured") or {}).get("name")
    wanted.append(("insured name", str(insured or "")))
    try:
        start = datetime.fromisoformat(record["period"]["start"])
        end = datetime.fromisoformat(record["period"]["end"])
        wanted.append(("period", period_wording(start, end)))
    except (KeyError, TypeError, ValueError):
        found.problem("the record's period cannot be read")
    try:
        premium = Decimal(str(record["total_premium"]))
        wanted.append(("total premium", amount_figures(premium)))
        wanted.append(("total premium in capitals", amount_capitals(premium)))
    except (KeyError, InvalidOperation, ValueError, TypeError):
        found.problem("the record's total premium cannot be read")
    for what, value in wanted:
        how = shown(value, 0, schedule_pages) if normalise(value) else None
        if how is not None:
            found.evidence(f"{what}: {value}{how}")
        else:
            found.problem(f"the schedule (pages 1–{schedule_pages}) does not show the record's {what}")
    for number, first, stop in endorsements:
        how = shown(number, first, stop) if normalise(number) else None
        if how is not None:
            found.evidence(f"endorsement {number}: pages {first + 1}–{stop}{how}")
        else:
            found.problem(f"pages {first + 1}–{stop} do not show endorsement number {number}")
    return found.result()
