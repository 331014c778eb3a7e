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
  number, period as printed (``period_wording``: 自…起至…止), total premium in figures and in capitals,
  and every party the schedule prints: the applicant's and the insured's name, ID number (printed in
  full) and address, and on a schedule with the beneficiaries' table (products.toml ``sections``) each
  beneficiary's too (``party_fields``); each endorsement's pages hold its endorsement number. Read as a
  person reads the page: a value that wraps in its table cell is read line after line, and line breaks,
  a hyphen that ends a line and whitespace are no differences (``shows``); any other character is. A
  party value printed once vouches for one party only. The evidence names party values masked
  (``core.privacy``: names, ID numbers, addresses), never in clear.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from pypdf.generic import DictionaryObject, IndirectObject, StreamObject

from archive.audit.checks.base import AuditedPolicy, CheckResult, Messages, PageSink, pdfs
from archive.audit.checks.pdftext import normalise, page_lines, shows, spans
from core.errors import IssuanceError
from core.privacy import mask_address, mask_id, mask_name
from core.wording import amount_capitals, amount_figures, period_wording
from stamps.pdfa import pdfa_problems
from stamps.poppler import stream_pages

__all__ = [
    "PartyField",
    "font_findings",
    "fonts_embedded",
    "party_fields",
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
    product = policy.sources.products.products.get(str(policy.record.get("product_code")))
    # products.toml names the sections a product's schedule shows; a product no longer registered is
    # held to its beneficiaries too, rather than let a named beneficiary go unchecked
    sections = product.sections if product is not None else ("beneficiaries",)
    schedule_text_check(
        policy.texts,
        schedule_pages=policy.schedule_pages,
        record=policy.record,
        endorsements=policy.endorsements,
        pdf=customer,
        messages=messages,
        beneficiaries="beneficiaries" in sections,
    )


@dataclass(frozen=True)
class PartyField:
    """One value the schedule prints of one party: what (``beneficiary 2 address``), the value, and the
    value masked as the report may show it."""

    what: str
    value: str
    masked: str


def party_fields(record: dict[str, Any], *, beneficiaries: bool = True) -> list[PartyField]:
    """Every party value the schedule prints, as ``pipeline.render.policy_context`` gives them to the
    templates: the applicant's and the insured's name, ID number (in full) and address (when there is
    one: else the schedule prints —), and, on a schedule with the beneficiaries' table, each named
    beneficiary's name, ID number and address (v1.1, where given)."""
    parties: list[tuple[str, Any]] = [
        ("applicant", record.get("applicant")),
        ("insured", record.get("insured")),
    ]
    if beneficiaries:
        parties += [(f"beneficiary {n}", b) for n, b in enumerate(record.get("beneficiaries") or [], 1)]
    fields: list[PartyField] = []
    for party, data in parties:
        data = data if isinstance(data, dict) else {}
        for key, label, mask in (
            ("name", "name", mask_name),
            ("id_no", "ID number", mask_id),
            ("address", "address", mask_address),
        ):
            value = data.get(key)
            if key == "address" and not (isinstance(value, str) and value.strip()):
                continue
            value = str(value or "")
            fields.append(PartyField(f"{party} {label}", value, mask(value)))
    return fields


class _Reading:
    """The schedule's text from which each party value found is taken out, so that one printed value
    vouches for one party only: two parties with the same address need it printed twice, and a value
    printed inside a longer one (a name inside an address) is not found there once the longer one is
    taken. Read in reading order first, then line by line (``page_lines``, ``spans``); a value taken
    from one reading is taken from the other too."""

    _GONE = "\x00"  # never in a value

    def __init__(self, texts: Sequence[str], *, pdf: bytes | None, first: int, stop: int) -> None:
        self._text = "".join(texts[first:stop])
        self._pdf, self._first, self._stop = pdf, first, stop
        self._lines: str | None = None
        self._taken: list[tuple[str, int]] = []  # replayed on the lines when they are read

    def _read_lines(self) -> str | None:
        if self._lines is None and self._pdf is not None and self._stop > self._first:
            self._lines = "\n".join(page_lines(self._pdf, first=self._first + 1, last=self._stop))
            for value, times in self._taken:
                self._lines = self._blank(self._lines, spans(self._lines, value)[:times])
        return self._lines

    @classmethod
    def _blank(cls, text: str, found: list[tuple[int, int]]) -> str:
        for start, end in reversed(found):
            text = text[:start] + cls._GONE + text[end:]
        return text

    def take(self, value: str, times: int) -> str | None:
        """Take ``value`` out ``times`` times: "" (in reading order), " (across lines)", or None (the
        schedule shows it fewer times; nothing is taken)."""
        chars = normalise(value)
        if not chars:
            return None
        if self._text.count(chars) >= times:
            self._text = self._text.replace(chars, self._GONE, times)
            self._taken.append((value, times))
            if self._lines is not None:
                self._lines = self._blank(self._lines, spans(self._lines, value)[:times])
            return ""
        lines = self._read_lines()
        found = spans(lines, value) if lines is not None else []
        if len(found) < times:
            return None
        self._lines = self._blank(lines or "", found[:times])
        return " (across lines)"


def schedule_text_check(
    texts: Sequence[str],
    *,
    schedule_pages: int,
    record: dict[str, Any],
    endorsements: Sequence[tuple[str, int, int]] = (),
    pdf: bytes | None = None,
    messages: Messages | None = None,
    beneficiaries: bool = True,
) -> CheckResult:
    """The schedule holds the record's number, period and premium, and every party it prints (names,
    ID numbers, addresses: ``party_fields``; ``beneficiaries``: whether the schedule has their table);
    endorsements their numbers.

    ``texts`` are the customer copy's whitespace-free page texts in reading order; ``endorsements``
    are (endorsement number, first page, stop page) in it. A value those texts miss is looked for
    again in ``pdf``'s pages line by line (``page_lines``, ``shows``): a name that wraps in its table
    cell, at its own hyphen or next to punctuation, is what the page shows, as a person reads it.
    Party values are taken out of the text as they are found, longest first (``_Reading``). The
    evidence shows them masked (``core.privacy``), never in clear. The findings go to ``messages``
    when given (a new collector otherwise).
    """
    if messages is None:
        messages = Messages()
    found = messages.check("schedule_text")
    lines: dict[tuple[int, int], str] = {}
    pages = f"the schedule (pages 1–{schedule_pages})"

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
            found.problem(f"{pages} does not show the record's {what}")
    # parties: the same value printed for several of them is looked for as often; longest first
    reading = _Reading(texts, pdf=pdf, first=0, stop=schedule_pages)
    fields = party_fields(record, beneficiaries=beneficiaries)
    same: dict[str, list[PartyField]] = {}
    for field in fields:
        same.setdefault(normalise(field.value), []).append(field)
    how_shown: dict[str, str | None] = {
        chars: reading.take(group[0].value, len(group)) if chars else None
        for chars, group in sorted(same.items(), key=lambda item: -len(item[0]))
    }
    for field in fields:
        chars = normalise(field.value)
        how, group = how_shown[chars], same[chars]
        if how is not None:
            found.evidence(f"{field.what}: {field.masked}{how}")
        elif len(group) == 1 or not chars:
            found.problem(f"{pages} does not show the record's {field.what} ({field.masked})")
        elif field is group[0]:
            names = ", ".join(f.what for f in group)
            found.problem(
                f"{pages} shows the value of {names} ({field.masked}) fewer than {len(group)} times: "
                "one of them is not what the record says"
            )
    for number, first, stop in endorsements:
        how = shown(number, first, stop) if normalise(number) else None
        if how is not None:
            found.evidence(f"endorsement {number}: pages {first + 1}–{stop}{how}")
        else:
            found.problem(f"pages {first + 1}–{stop} do not show endorsement number {number}")
    return found.result()
