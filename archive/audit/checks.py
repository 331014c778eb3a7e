"""The four-property checks (四性检测, DA/T 70-2018) on one archived policy, each with its evidence.

Every check is named, belongs to one property and answers pass or fail with the evidence it used, in
words an auditor can follow. A policy is defective when any check fails. What each check looks at:

真实性 (authenticity)

- ``ledger_chain``: each of the policy's ledger events is recomputed (its hash over its content and the
  hash before it) and linked to the event before it in the global chain; every version has its event,
  and an event that records a manifest's key or SHA-256 agrees with the index.
- ``object_hashes``: every manifest hashes to what the index holds, every part to what its manifest
  holds (read through ``ObjectStore.get(key, sha256=…)``), and index and manifest name the same hashes.
- ``index_matches``: the index's policy row and version rows say what the manifests say (number,
  product, branch, insured, period, premium, serial, kind, seal), and the PDFs' metadata names the
  policy.
- ``company_seal`` / ``cross_page_seal``: ``stamps.find_seals``' checks (``SealFinder``) on the newest
  customer copy, split into its documents by the page counts the manifests record (the policy —
  schedule and clauses — then each endorsement), each against the seal id and version its manifest
  records (``load_seal_registry().get``): the company seal on the schedule and on each endorsement; a
  strip on every page of a multi-page document, and the strips of every group reassemble into that
  registered version.

完整性 (integrity)

- ``objects_present``: every object of every version is in the store (``head``).
- ``clauses_match`` (所附条款与保单列明条款一致): the clause codes the schedule lists, the bookmarks under
  条款, and the clause pages attached (found by their footers ``<title> 第k页共n页``: each clause complete,
  k = 1…n, no foreign or stray page, its first page naming its code) all equal the record's ``clauses``.
- ``required_images``: every image kind the product requires for this policy
  (``usecases.filing.required_images``) is in some version's manifest and bookmarked in the newest
  archive copy.
- ``parts_reconcile``: bytes and page counts of every part equal the manifest's and the index's; the
  archive copy has exactly the customer copy's pages plus the image pages filed so far.

可用性 (usability)

- ``renders``: every PDF opens (pypdf) and poppler renders every page (``pdftoppm``, pages counted:
  the newest customer copy as the seal checks render it, the others at low dpi).
- ``fonts_embedded``: no font is left unembedded (``font_findings``: the fonts ``pdffonts`` lists, read
  from the parsed PDF; Type 3 fonts are drawn by the PDF).
- ``schedule_text``: the schedule's text (``pdftotext``, whitespace removed) holds the record's policy
  number, insured name, period as printed (``period_wording``: 自…起至…止) and total premium in figures and
  in capitals; each endorsement's pages hold its endorsement number. Read as a person reads the page:
  a value that wraps in its table cell is read line after line, and line breaks, a hyphen that ends
  a line and whitespace are no differences (``shows``); any other character is.

安全性 (security)

- ``keys_clean``: every object key passes ``archive.store.check_key`` (no ID or phone shapes).
- ``metadata_clean``: no PDF's document information or XMP holds an ID-number or phone shape
  (``core.privacy.scrub`` would change it) or a party's name.
- ``retention``: every object's ``head().retain_until`` is set and not before the rule's date
  (``archive.store.retention_until``, 《保险法》第87条).
- ``no_active_content``: no PDF is encrypted, and none holds JavaScript, launch actions or embedded
  files (every object reachable from the trailer is looked at).

How it is done in bounded memory: each PDF is parsed once per policy and shared by its checks
(``_Object.reader``); poppler renders the newest customer copy once, at the seals' resolution, and
hands its pages over one at a time to the seal checks and the thumbnails (``seal_checks``); other
PDFs are rendered one page at a time and only counted; no page is kept, only small thumbnails.

Scores (the centre's audit sheet): 免责事项说明书影像存档情况 10分 — the exemption notice is in the archive
copy (a manifest lists it and the newest archive copy bookmarks it); 承保档案存档情况 10分 — every required
image kind and every part of every version present and intact. They are reported beside the checks;
the lot's verdict counts defective policies.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject
from sqlalchemy import select

from archive.index import GENESIS, Index, _entry_hash, as_utc
from archive.index import schema as s
from archive.store import ObjectStore, check_key_privacy, retention_until
from core.errors import IssuanceError, ObjectCorrupt, ObjectMissing, UnsafeKey
from core.privacy import scrub
from core.products import ProductRegistry
from core.records import IMAGE_KIND_LABELS, Policy, parse_record
from core.wording import CHINA_TIME, amount_capitals, amount_figures, period_wording
from stamps import Seal, SealRegistry
from stamps.finding import EdgeFan, SealFinder
from stamps.layout import cross_page_groups, max_group_pages
from stamps.poppler import RenderedPage, run, stream_pages
from stamps.stamping import encoded_seal, page_frames

logger = logging.getLogger(__name__)

AUTHENTICITY, INTEGRITY, USABILITY, SECURITY = "真实性", "完整性", "可用性", "安全性"
PROPERTIES = (AUTHENTICITY, INTEGRITY, USABILITY, SECURITY)

# name -> (property, what an auditor calls it); the order is the report's order.
CHECKS: dict[str, tuple[str, str]] = {
    "ledger_chain": (AUTHENTICITY, "账本哈希链完整"),
    "object_hashes": (AUTHENTICITY, "对象摘要与清单、索引一致"),
    "index_matches": (AUTHENTICITY, "索引、清单与文件元数据一致"),
    "company_seal": (AUTHENTICITY, "保单、批单加盖公章（登记版本）"),
    "cross_page_seal": (AUTHENTICITY, "保单正本与所附条款加盖骑缝章"),
    "objects_present": (INTEGRITY, "各版本对象齐全"),
    "clauses_match": (INTEGRITY, "所附条款与保单列明条款一致"),
    "required_images": (INTEGRITY, "承保影像齐全"),
    "parts_reconcile": (INTEGRITY, "页数、字节数与清单相符"),
    "renders": (USABILITY, "可打开，每页可渲染"),
    "fonts_embedded": (USABILITY, "字体已嵌入"),
    "schedule_text": (USABILITY, "正本文字与档案记录一致"),
    "keys_clean": (SECURITY, "对象键无个人信息"),
    "metadata_clean": (SECURITY, "PDF 元数据无个人信息"),
    "retention": (SECURITY, "保管期限已设置"),
    "no_active_content": (SECURITY, "无脚本、嵌入文件、加密"),
}

EXEMPTION_ITEM = "免责事项说明书影像存档情况"
ARCHIVE_ITEM = "承保档案存档情况"
POINTS = 10


# --- results -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """One named check on one policy: pass or fail, and the evidence it rests on."""

    name: str
    passed: bool
    evidence: tuple[str, ...]

    @property
    def aspect(self) -> str:
        """Which of the four properties (四性) the check belongs to."""
        return CHECKS[self.name][0]

    @property
    def title(self) -> str:
        return CHECKS[self.name][1]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "property": self.aspect,
            "title": self.title,
            "passed": self.passed,
            "evidence": list(self.evidence),
        }


def _result(name: str, *, problems: Sequence[str], evidence: Sequence[str]) -> CheckResult:
    """Problems first (they are what fails the check), then what was seen to hold."""
    return CheckResult(name, not problems, tuple(scrub(line) for line in [*problems, *evidence]))


@dataclass(frozen=True)
class ScoreItem:
    """One line of the centre's audit sheet."""

    item: str
    points: int
    max_points: int
    evidence: str

    def as_json(self) -> dict[str, Any]:
        return {"item": self.item, "points": self.points, "max": self.max_points, "evidence": self.evidence}


@dataclass(frozen=True)
class Thumbnail:
    """A small PNG of a page (or of the fanned right edges) that a check looked at."""

    label: str
    png: bytes


@dataclass(frozen=True)
class PolicyResult:
    """Every check on one policy, its scores, and thumbnails of the pages checked."""

    policy_no: str
    branch_code: str
    product_code: str
    versions: int
    checks: tuple[CheckResult, ...]
    scores: tuple[ScoreItem, ...]
    thumbnails: tuple[Thumbnail, ...] = ()

    @property
    def defective(self) -> bool:
        return any(not c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if not c.passed)

    @property
    def score(self) -> int:
        return sum(item.points for item in self.scores)

    @property
    def max_score(self) -> int:
        return sum(item.max_points for item in self.scores)

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def as_json(self) -> dict[str, Any]:
        return {
            "policy_no": self.policy_no,
            "branch_code": self.branch_code,
            "product_code": self.product_code,
            "versions": self.versions,
            "defective": self.defective,
            "failed": list(self.failed),
            "score": self.score,
            "max_score": self.max_score,
            "scores": [item.as_json() for item in self.scores],
            "checks": [c.as_json() for c in self.checks],
        }


# --- PDF facts the checks share ----------------------------------------------------------------------------


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
    chars = normalise(value)
    if not chars:
        return False
    return re.search(_LINE_BREAK.join(re.escape(c) for c in chars), lines) is not None


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


# --- the checks that need no archive (tested on doctored PDFs directly) -------------------------------------


@dataclass(frozen=True)
class SealedDocument:
    """One sealed document inside a customer copy: its pages and the seal its manifest records."""

    label: str  # "保单" or "批单 E…"
    start: int  # first page, 0-based
    stop: int  # one past the last page
    seal_ref: str | None  # "id@vN" as recorded, None when nothing is recorded
    seal: Seal | None  # the registered version, None when the registry does not hold it
    kind: str = "policy"  # policy | endorsement
    anchor_pages: int | None = None  # pages the company seal must be on (the schedule's), None: any


@dataclass(frozen=True)
class SealFindings:
    """The two seal checks, the cross-page groups found per document (for the fanned-edge pictures),
    and how many pages of the customer copy poppler rendered for them (every one, or it raised)."""

    company: CheckResult
    cross_page: CheckResult
    groups: tuple[tuple[SealedDocument, tuple[tuple[int, int], ...]], ...]
    pages_rendered: int = 0


def seal_checks(
    customer: bytes,
    *,
    documents: Sequence[SealedDocument],
    dpi: float,
    on_page: Callable[[int, RenderedPage], None] | None = None,
    reader: PdfReader | None = None,
) -> SealFindings:
    """``company_seal`` and ``cross_page_seal`` on the documents of one customer copy.

    Poppler renders the copy once, page after page (``stream_pages``); each page goes to the
    ``SealFinder`` of its document (the company seal looked for on ``anchor_pages`` only, where it
    counts) and then to ``on_page(page, image)``, and is let go: one page's pixels at a time.
    ``IssuanceError`` when poppler cannot render every page, ``ValueError`` when a document's pages
    are not in the copy.
    """
    frames = page_frames(reader or PdfReader(BytesIO(customer)))
    finders: list[tuple[SealedDocument, SealFinder]] = []
    for doc in documents:
        if not 0 <= doc.start < doc.stop <= len(frames):
            raise ValueError(
                f"{doc.label}: pages {doc.start + 1}–{doc.stop} are not in the customer copy "
                f"({len(frames)} pages)"
            )
        if doc.seal is not None:
            finder = SealFinder(
                frames[doc.start : doc.stop], seal=doc.seal, dpi=dpi, company_pages=doc.anchor_pages
            )
            finders.append((doc, finder))
    rendered = 0
    with tempfile.TemporaryDirectory(prefix="audit-seals-") as tmp:
        path = Path(tmp) / "document.pdf"
        path.write_bytes(customer)
        for page, image in enumerate(stream_pages(path, dpi=dpi)):
            for doc, finder in finders:
                if doc.start <= page < doc.stop:
                    finder.add(page - doc.start, image)
            if on_page is not None:
                on_page(page, image)
            rendered += 1
    if rendered != len(frames):
        raise IssuanceError(f"poppler rendered {rendered} of {len(frames)} pages")
    reports = {id(doc): finder.report() for doc, finder in finders}
    company_problems: list[str] = []
    company_seen: list[str] = []
    strip_problems: list[str] = []
    strip_seen: list[str] = []
    groups = []
    for doc in documents:
        pages = f"pages {doc.start + 1}–{doc.stop}"
        if doc.seal is None:
            missing = f"{doc.label}: seal {doc.seal_ref or '(none recorded)'} is not in the seal registry"
            company_problems.append(missing)
            strip_problems.append(missing)
            continue
        report = reports[id(doc)]
        groups.append((doc, tuple(g.pages for g in report.groups)))
        found = [p for p in report.pages if p.company_seal]
        allowed = doc.anchor_pages if doc.anchor_pages is not None else doc.stop - doc.start
        on_anchor = [p for p in found if p.page < allowed]
        if not on_anchor:
            where = "schedule" if doc.kind == "policy" else "endorsement"
            company_problems.append(f"{doc.label}: no company seal {doc.seal.ref} on the {where} ({pages})")
        else:
            best = max(on_anchor, key=lambda p: p.company_score)
            company_seen.append(
                f"{doc.label}: company seal {doc.seal.ref} on page {doc.start + best.page + 1} "
                f"(match {best.company_score:.2f})"
            )
        cross = [p for p in report.problems if not p.startswith("no company")]
        if cross:
            strip_problems += [f"{doc.label} ({pages}): {_shift_pages(p, doc.start)}" for p in cross]
        elif report.groups:
            for g in report.groups:
                strip_seen.append(
                    f"{doc.label}: strips on pages {doc.start + g.pages[0] + 1}–{doc.start + g.pages[1]} "
                    f"reassemble {doc.seal.ref} (similarity {g.similarity:.3f}, weakest strip "
                    f"{g.weakest_strip:.2f})"
                )
        else:
            strip_seen.append(f"{doc.label}: one page, no cross-page seal expected and none found")
    return SealFindings(
        company=_result("company_seal", problems=company_problems, evidence=company_seen),
        cross_page=_result("cross_page_seal", problems=strip_problems, evidence=strip_seen),
        groups=tuple(groups),
        pages_rendered=rendered,
    )


def _shift_pages(problem: str, offset: int) -> str:
    """find_seals numbers pages within the document it was given; report them in the customer copy."""
    if offset == 0:
        return problem

    def shift(match: re.Match[str]) -> str:
        return str(int(match.group(0)) + offset)

    return re.sub(r"(?<=page )\d+|(?<=pages )\d+|(?<=-)\d+(?=:)", shift, problem)


_CLAUSE_FOOTER = "第(\\d+)页共(\\d+)页"


def clause_footers(texts: Sequence[str], registry: ProductRegistry) -> list[tuple[str, int, int] | None]:
    """Per page, the registered clause whose footer ``<title>第k页共n页`` it carries: (title, k, n) or None.

    The longest matching title wins, so a clause whose title ends another's is not mistaken for it.
    """
    titles = sorted({c.title for c in registry.clauses.values()}, key=len, reverse=True)
    patterns = [(title, re.compile(re.escape(normalise(title)) + _CLAUSE_FOOTER)) for title in titles]
    out: list[tuple[str, int, int] | None] = []
    for text in texts:
        hit = None
        for title, pattern in patterns:
            m = pattern.search(text)
            if m:
                hit = (title, int(m.group(1)), int(m.group(2)))
                break
        out.append(hit)
    return out


def schedule_page_count(texts: Sequence[str], *, policy_pages: int, registry: ProductRegistry) -> int:
    """The schedule's pages: the policy document's pages before its first clause page (at least one)."""
    footers = clause_footers(texts[:policy_pages], registry)
    first = next((i for i, hit in enumerate(footers) if hit), len(footers))
    return max(1, first)


_LISTED_CODE = re.compile(r"条款代码([A-Z0-9][A-Z0-9-]*[A-Z0-9])")


def clause_check(
    texts: Sequence[str],
    *,
    policy_pages: int,
    bookmarks: Sequence[OutlineItem],
    expected: Sequence[str],
    registry: ProductRegistry,
) -> CheckResult:
    """所附条款与保单列明条款一致, from the policy document's page texts and the copy's bookmarks.

    ``texts`` are whitespace-free page texts of the customer copy; the policy document is its first
    ``policy_pages`` pages; ``expected`` the record's clause codes, in order.
    """
    problems: list[str] = []
    evidence: list[str] = []
    titles = {code: c.title for code, c in registry.clauses.items()}
    expected_titles = [titles.get(code, f"?{code}") for code in expected]
    unknown = [code for code in expected if code not in titles]
    if unknown:
        problems.append(f"the record lists clauses the registry does not know: {', '.join(unknown)}")
    page_clause = clause_footers(texts[:policy_pages], registry)
    first_clause = next((i for i, hit in enumerate(page_clause) if hit), len(page_clause))
    schedule = "".join(texts[:first_clause])
    listed = _LISTED_CODE.findall(schedule)
    if listed == list(expected):
        evidence.append(
            f"the schedule (pages 1–{first_clause}) lists {', '.join(listed)}, as the record does"
        )
    else:
        problems.append(
            f"the schedule lists {', '.join(listed) or 'no clauses'}; the record lists {', '.join(expected)}"
        )
    # the attached clause pages, clause by clause
    attached: list[tuple[str, list[tuple[int, int, int]]]] = []  # title, [(page, k, n)]
    for page in range(first_clause, len(page_clause)):
        hit = page_clause[page]
        if hit is None:
            problems.append(f"page {page + 1} is not a page of any registered clause")
            continue
        title, k, n = hit
        if attached and attached[-1][0] == title and k != 1:
            attached[-1][1].append((page, k, n))
        else:
            attached.append((title, [(page, k, n)]))
    found_titles = [title for title, _ in attached]
    for title, pages in attached:
        numbers = [k for _, k, _ in pages]
        total = pages[0][2]
        span = f"pages {pages[0][0] + 1}–{pages[-1][0] + 1}"
        if numbers != list(range(1, total + 1)) or any(n != total for _, _, n in pages):
            missing = sorted(set(range(1, total + 1)) - set(numbers))
            detail = (
                f"page(s) {', '.join(map(str, missing))} of {total} missing" if missing else "out of order"
            )
            problems.append(f"{title} ({span}) is incomplete: {detail}")
        else:
            evidence.append(f"{title}: {span}, {total} of {total} pages")
        code = next((c for c, t in titles.items() if t == title), None)
        if (
            code
            and f"条款代码：{code}" not in texts[pages[0][0]]
            and f"条款代码:{code}" not in texts[pages[0][0]]
        ):
            problems.append(f"{title}: its first page does not name its code {code}")
    if found_titles != expected_titles:
        problems.append(
            f"attached clauses are {', '.join(found_titles) or 'none'}; the record lists "
            f"{', '.join(expected_titles)}"
        )
    under = next((item for item in bookmarks if item.title == "条款"), None)
    marked = [child.title for child in under.children] if under else []
    if marked == expected_titles:
        evidence.append(f"bookmarks under 条款: {', '.join(marked)}")
    else:
        problems.append(f"bookmarks under 条款 are {', '.join(marked) or 'missing'}")
    return _result("clauses_match", problems=problems, evidence=evidence)


def schedule_text_check(
    texts: Sequence[str],
    *,
    schedule_pages: int,
    record: dict[str, Any],
    endorsements: Sequence[tuple[str, int, int]] = (),
    pdf: bytes | None = None,
) -> CheckResult:
    """The schedule holds the record's number, insured, period and premium; endorsements their numbers.

    ``texts`` are the customer copy's whitespace-free page texts in reading order; ``endorsements``
    are (endorsement number, first page, stop page) in it. A value those texts miss is looked for
    again in ``pdf``'s pages line by line (``page_lines``, ``shows``): a name that wraps in its table
    cell, at its own hyphen or next to punctuation, is what the page shows, as a person reads it.
    """
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

    problems: list[str] = []
    evidence: list[str] = []
    wanted: list[tuple[str, str]] = [("policy number", str(record.get("policy_no", "")))]
    insured = (record.get("insured") or {}).get("name")
    wanted.append(("insured name", str(insured or "")))
    try:
        start = datetime.fromisoformat(record["period"]["start"])
        end = datetime.fromisoformat(record["period"]["end"])
        wanted.append(("period", period_wording(start, end)))
    except (KeyError, TypeError, ValueError):
        problems.append("the record's period cannot be read")
    try:
        premium = Decimal(str(record["total_premium"]))
        wanted.append(("total premium", amount_figures(premium)))
        wanted.append(("total premium in capitals", amount_capitals(premium)))
    except (KeyError, InvalidOperation, ValueError, TypeError):
        problems.append("the record's total premium cannot be read")
    for what, value in wanted:
        how = shown(value, 0, schedule_pages) if normalise(value) else None
        if how is not None:
            evidence.append(f"{what}: {value}{how}")
        else:
            problems.append(f"the schedule (pages 1–{schedule_pages}) does not show the record's {what}")
    for number, first, stop in endorsements:
        how = shown(number, first, stop) if normalise(number) else None
        if how is not None:
            evidence.append(f"endorsement {number}: pages {first + 1}–{stop}{how}")
        else:
            problems.append(f"pages {first + 1}–{stop} do not show endorsement number {number}")
    return _result("schedule_text", problems=problems, evidence=evidence)


def metadata_findings(
    pdf: bytes, *, names: Sequence[str], documents: Sequence[str] = (), reader: PdfReader | None = None
) -> list[str]:
    """What in the PDF's document information or XMP is personal data: ID/phone shapes or party names.

    ``documents`` are the policy's own document numbers (printed in the title): not personal data,
    however many digits they hold. ``reader``: ``pdf`` parsed already.
    """
    reader = reader or PdfReader(BytesIO(pdf))
    fields: list[tuple[str, str]] = [(str(k), str(v)) for k, v in (reader.metadata or {}).items()]
    try:
        xmp = reader.trailer["/Root"].get("/Metadata")
        if xmp is not None:
            fields.append(("XMP", xmp.get_object().get_data().decode("utf-8", "replace")))
    except Exception:  # an unreadable XMP stream: nothing to leak from it
        logger.debug("unreadable XMP metadata", exc_info=True)
    found = []
    for key, value in fields:
        if scrub(value, keep=documents) != value:
            found.append(f"{key} holds an ID-number or phone-number shape")
        for name in names:
            if len(name) >= 2 and name in value:
                found.append(f"{key} holds a party's name")
                break
    return found


_ACTIONS = {"/JavaScript": "JavaScript", "/Launch": "a launch action", "/ImportData": "an import action"}


def active_content(pdf: bytes, *, reader: PdfReader | None = None) -> list[str]:
    """Encryption, JavaScript, launch actions and embedded files, looking at every reachable object.
    ``reader``: ``pdf`` parsed already."""
    reader = reader or PdfReader(BytesIO(pdf))
    if reader.is_encrypted:
        return ["the PDF is encrypted"]
    found: set[str] = set()
    seen: set[tuple[int, int]] = set()
    stack: list[Any] = [reader.trailer]
    while stack:
        obj = stack.pop()
        if isinstance(obj, IndirectObject):
            ref = (obj.idnum, obj.generation)
            if ref in seen:
                continue
            seen.add(ref)
            try:
                obj = obj.get_object()
            except Exception:  # a dangling reference hides nothing
                continue
        if isinstance(obj, DictionaryObject):
            if "/JS" in obj or obj.get("/S") in _ACTIONS:
                found.add(_ACTIONS.get(str(obj.get("/S")), "JavaScript"))
            if "/EmbeddedFiles" in obj or "/EF" in obj or obj.get("/Type") == "/EmbeddedFile":
                found.add("an embedded file")
            if obj.get("/Subtype") == "/FileAttachment":
                found.add("a file attachment")
            if "/JavaScript" in obj:
                found.add("JavaScript")
            stack.extend(v for k, v in obj.items() if k != "/Parent")
        elif isinstance(obj, ArrayObject):
            stack.extend(obj)
    return sorted(found)


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


# --- the archive side ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Object:
    """One stored object as read for the audit: its bytes (verified), or why there are none."""

    key: str
    expected_sha256: str | None
    data: bytes | None = None
    problem: str | None = None

    @cached_property
    def reader(self) -> PdfReader:
        """The PDF parsed once for all the checks of one policy (objects are made per policy audit,
        and one thread audits a policy); ``ValueError`` when there are no bytes."""
        if self.data is None:
            raise ValueError(f"{self.key} cannot be read")
        return PdfReader(BytesIO(self.data))


@dataclass(frozen=True)
class _Version:
    """One indexed version: its row, its manifest (or why it is unreadable) and its parts."""

    row: Any
    manifest: dict[str, Any] | None
    manifest_problem: str | None
    # by part name: customer.pdf, bundle.pdf and whatever else the manifest names (a reissue's copy)
    parts: dict[str, _Object]

    @property
    def label(self) -> str:
        return f"v{self.row.version}"

    def part(self, name: str) -> _Object:
        return self.parts[name]


class Auditor:
    """Runs every check on archived policies. Thread-safe: ``check_policy`` may run in many threads.

    ``seal_dpi`` is the resolution seals are found at (stamps' 150 dpi by default; 75 is enough for
    the tests' seals); ``render_dpi`` the resolution every page is rendered at for the usability check,
    and ``thumbnail_width`` the width of the report's page thumbnails (0: none).
    """

    def __init__(
        self,
        *,
        store: ObjectStore,
        index: Index,
        products: ProductRegistry,
        seals: SealRegistry,
        seal_dpi: float = 150,
        render_dpi: float = 30,
        thumbnail_width: int = 84,
    ) -> None:
        self.store = store
        self.index = index
        self.products = products
        self.seals = seals
        self.seal_dpi = seal_dpi
        self.render_dpi = render_dpi
        self.thumbnail_width = thumbnail_width
        self._ledger: list[str] | None = None
        self._lock = threading.Lock()

    def ledger_problems(self) -> list[str]:
        """``Index.verify_ledger`` over the whole chain, once per auditor."""
        with self._lock:
            if self._ledger is None:
                self._ledger = self.index.verify_ledger()
            return list(self._ledger)

    def check_many(
        self,
        policy_nos: Sequence[str],
        *,
        workers: int = 1,
        on_result: Callable[[PolicyResult], None] | None = None,
    ) -> list[PolicyResult]:
        """``check_policy`` for each, ``workers`` at a time; results in the order given."""
        return list(self.check_each(policy_nos, workers=workers, on_result=on_result))

    def check_each(
        self,
        policy_nos: Sequence[str],
        *,
        workers: int = 1,
        on_result: Callable[[PolicyResult], None] | None = None,
    ) -> Iterator[PolicyResult]:
        """``check_policy`` for each, ``workers`` at a time, each result yielded as soon as those
        before it are: at most two per worker are checked ahead of the one the caller takes, so a
        caller that lets each result go holds a few policies' evidence, whatever the sample."""
        from concurrent.futures import Future, ThreadPoolExecutor

        def one(policy_no: str) -> PolicyResult:
            result = self.check_policy(policy_no)
            if on_result:
                on_result(result)
            return result

        if workers <= 1:
            for policy_no in policy_nos:
                yield one(policy_no)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audit") as pool:
            pending: deque[Future[PolicyResult]] = deque()
            todo = iter(policy_nos)
            try:
                for policy_no in todo:
                    pending.append(pool.submit(one, policy_no))
                    if len(pending) >= 2 * workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:  # the caller stopped early: nothing more is started
                    future.cancel()

    # --- one policy ---------------------------------------------------------------------------------

    def check_policy(self, policy_no: str) -> PolicyResult:
        """Every check on ``policy_no``; ``IssuanceError`` if the index does not know it."""
        row = self.index.policy_row(policy_no)
        if row is None:
            raise IssuanceError(f"policy {policy_no} is not in the index", hint="check the number")
        cache: dict[tuple[str, str | None], _Object] = {}
        versions = [self._load(v, cache) for v in self.index.versions(policy_no)]
        record = self._record(versions)
        run = _Runner()
        run("ledger_chain", lambda: self._ledger_check(policy_no, versions))
        run("object_hashes", lambda: self._hash_check(versions))
        run("index_matches", lambda: self._index_check(row, versions=versions, record=record))

        newest = versions[-1] if versions else None
        customer_object = newest.parts.get("customer.pdf", _Object("", None)) if newest else _Object("", None)
        bundle_object = newest.parts.get("bundle.pdf") if newest else None
        customer = customer_object.data
        texts: tuple[str, ...] = ()
        bookmarks: tuple[OutlineItem, ...] = ()
        if customer is not None:
            texts = run.value(lambda: page_texts(customer), default=())
            bookmarks = run.value(lambda: outline(customer_object.reader), default=())
        layout = _layout(versions)
        schedule_pages = schedule_page_count(texts, policy_pages=layout.policy_pages, registry=self.products)
        documents = self._sealed_documents(layout, schedule_pages)
        pictures = _Pictures(self, layout=layout, documents=documents)
        rendered: dict[str, int | str] = {}  # PDFs poppler rendered already: pages, or why not
        if customer is None:
            unreadable = "the newest customer copy cannot be read (see object_hashes)"
            run.fail("company_seal", unreadable)
            run.fail("cross_page_seal", unreadable)
        else:
            # one rendering of the newest customer copy serves the seal checks, its usability and its
            # thumbnails, one page at a time (issue 21, item 10)
            try:
                seals = seal_checks(
                    customer,
                    documents=documents,
                    dpi=self.seal_dpi,
                    on_page=pictures.customer_page,
                    reader=customer_object.reader,
                )
            except Exception as e:  # both seal checks fail with the reason; the rest go on
                logger.warning("audit step failed: %s", e)
                logger.debug("audit step", exc_info=True)
                reason = f"could not complete: {type(e).__name__}: {e}"
                run.fail("company_seal", reason)
                run.fail("cross_page_seal", reason)
                if isinstance(e, IssuanceError) and layout.customer_key:
                    rendered[layout.customer_key] = f"poppler cannot render it ({e})"
            else:
                run.add(seals.company)
                run.add(seals.cross_page)
                if layout.customer_key:
                    rendered[layout.customer_key] = seals.pages_rendered

        run("objects_present", lambda: self._presence_check(versions))
        if customer is None or record is None:
            run.fail("clauses_match", "the newest customer copy or the record cannot be read")
        else:
            run(
                "clauses_match",
                lambda: clause_check(
                    texts,
                    policy_pages=layout.policy_pages,
                    bookmarks=bookmarks,
                    expected=list(record.get("clauses") or []),
                    registry=self.products,
                ),
            )
        kinds_found, image_evidence = run.value(
            lambda: self._image_kinds(versions, bundle_object),
            default=(set(), ["the archive copy's bookmarks cannot be read"]),
        )
        run(
            "required_images",
            lambda: self._image_check(row, record=record, kinds=kinds_found, notes=image_evidence),
        )
        run("parts_reconcile", lambda: self._reconcile_check(versions))

        run("renders", lambda: self._render_check(versions, rendered=rendered, pictures=pictures))
        run("fonts_embedded", lambda: self._fonts_check(versions))
        if customer is None or record is None:
            run.fail("schedule_text", "the newest customer copy or the record cannot be read")
        else:
            run(
                "schedule_text",
                lambda: schedule_text_check(
                    texts,
                    schedule_pages=schedule_pages,
                    record=record,
                    endorsements=layout.endorsements,
                    pdf=customer,
                ),
            )

        run("keys_clean", lambda: self._keys_check(versions, policy_no=row.policy_no))
        run("metadata_clean", lambda: self._metadata_check(versions, record))
        run("retention", lambda: self._retention_check(row, versions=versions, record=record))
        run("no_active_content", lambda: self._active_check(versions))

        checks = run.results()
        scores = _scores(checks, kinds_found)
        thumbs = pictures.thumbnails() if self.thumbnail_width else ()
        return PolicyResult(
            policy_no=policy_no,
            branch_code=row.branch_code,
            product_code=row.product_code,
            versions=len(versions),
            checks=checks,
            scores=scores,
            thumbnails=thumbs,
        )

    # --- loading -------------------------------------------------------------------------------------

    def _read(self, key: str, sha256: str | None) -> _Object:
        try:
            return _Object(key, sha256, data=self.store.get(key, sha256=sha256))
        except ObjectMissing:
            problem = f"{key} is missing from the store"
        except ObjectCorrupt:
            problem = f"{key} does not match its SHA-256 {str(sha256)[:12]}…: the stored bytes were changed"
        except (IssuanceError, ValueError) as e:
            problem = f"{key} cannot be read: {e}"
        return _Object(key, sha256, problem=problem)

    def _load(self, row: Any, cache: dict[tuple[str, str | None], _Object]) -> _Version:
        """A version's manifest and every part it names (a part shared with the version before, such
        as a supplement's customer copy, is read once). Without a readable manifest the index's keys and
        hashes are used for the customer and archive copies."""

        def read(key: str, sha256: str | None) -> _Object:
            if (key, sha256) not in cache:
                cache[(key, sha256)] = self._read(key, sha256)
            return cache[(key, sha256)]

        manifest: dict[str, Any] | None = None
        problem: str | None = None
        stored = self._read(row.manifest_key, row.manifest_sha256)
        if stored.data is None:
            problem = stored.problem
        else:
            try:
                manifest = json.loads(stored.data)
            except ValueError:
                problem = f"{row.manifest_key} is not valid JSON"
        parts: dict[str, _Object] = {}
        for part in (manifest or {}).get("parts", []):
            parts[part["name"]] = read(part["key"], part["sha256"])
        for name, key, sha in (
            ("customer.pdf", row.customer_key, row.customer_sha256),
            ("bundle.pdf", row.bundle_key, row.bundle_sha256),
        ):
            if name not in parts:
                parts[name] = read(key, sha)
        return _Version(row=row, manifest=manifest, manifest_problem=problem, parts=parts)

    @staticmethod
    def _record(versions: Sequence[_Version]) -> dict[str, Any] | None:
        first = next((v for v in versions if v.row.kind == "issue"), versions[0] if versions else None)
        if first is None or first.manifest is None:
            return None
        record = first.manifest.get("record")
        return record if isinstance(record, dict) else None

    # --- 真实性 ---------------------------------------------------------------------------------------

    def _ledger_check(self, policy_no: str, versions: Sequence[_Version]) -> CheckResult:
        problems: list[str] = []
        evidence: list[str] = []
        led = s.ledger
        with self.index.engine.connect() as conn:
            events = list(conn.execute(select(led).where(led.c.subject == policy_no).order_by(led.c.seq)))
            before = {e.seq - 1 for e in events if e.seq > 1}
            previous = {
                r.seq: r.hash
                for r in conn.execute(select(led.c.seq, led.c.hash).where(led.c.seq.in_(before)))
            }
        if not events:
            problems.append("the ledger holds no event for this policy")
        for e in events:
            digest = _entry_hash(
                e.prev_hash,
                seq=e.seq,
                at=e.at,
                actor=e.actor,
                action=e.action,
                subject=e.subject,
                detail=e.detail,
            )
            if digest != e.hash:
                problems.append(
                    f"event {e.seq} ({e.action}) was altered: its hash does not match its content"
                )
            link = GENESIS if e.seq == 1 else previous.get(e.seq - 1)
            if link is None:
                problems.append(f"event {e.seq - 1}, before event {e.seq}, is missing from the ledger")
            elif e.prev_hash != link:
                problems.append(f"event {e.seq} ({e.action}) does not link to event {e.seq - 1}")
        if events and not problems:
            evidence.append(
                f"{len(events)} event(s) {', '.join(str(e.seq) for e in events)}: hashes recomputed, each "
                "linked to the event before it"
            )
        details = []
        for e in events:
            try:
                details.append((e, json.loads(e.detail)))
            except ValueError:
                problems.append(f"event {e.seq} has a detail that is not JSON")
        for v in versions:
            row = v.row
            # the event that filed the version (incidents about it name its version too: not those)
            mine = [
                (e, d)
                for e, d in details
                if not e.action.startswith("incident.")
                and (d.get("version") == row.version or d.get("manifest") == row.manifest_key)
            ]
            mine.sort(key=lambda pair: (pair[1].get("manifest") != row.manifest_key, pair[0].seq))
            if not mine:
                problems.append(f"{v.label} ({row.kind}) has no ledger event")
                continue
            e, d = mine[0]
            if d.get("manifest") not in (None, row.manifest_key):
                problems.append(f"event {e.seq} names another manifest for {v.label}")
            elif d.get("manifest_sha256") not in (None, row.manifest_sha256):
                problems.append(
                    f"event {e.seq} records another manifest SHA-256 for {v.label} than the index"
                )
            else:
                pinned = " and its SHA-256" if d.get("manifest_sha256") else ""
                evidence.append(
                    f"{v.label} ({row.kind}) ← event {e.seq} {e.action}, manifest{pinned} as indexed"
                )
        incidents = [f"{e.action} (event {e.seq})" for e, _ in details if e.action.startswith("incident.")]
        if incidents:
            evidence.append("incidents recorded for this policy: " + ", ".join(incidents))
        whole = self.ledger_problems()
        evidence.append(
            "whole chain verified: intact"
            if not whole
            else f"whole chain: {len(whole)} problem(s) (lot finding)"
        )
        return _result("ledger_chain", problems=problems, evidence=evidence)

    def _hash_check(self, versions: Sequence[_Version]) -> CheckResult:
        problems: list[str] = []
        evidence: list[str] = []
        for v in versions:
            row = v.row
            if v.manifest_problem:
                problems.append(f"{v.label} manifest: {v.manifest_problem}")
                continue
            evidence.append(f"{v.label} manifest.json sha256 {row.manifest_sha256[:12]}… = index")
            declared = {p["name"]: p for p in v.manifest.get("parts", [])}  # type: ignore[union-attr]
            indexed = {
                "customer.pdf": (row.customer_key, row.customer_sha256),
                "bundle.pdf": (row.bundle_key, row.bundle_sha256),
            }
            for name in [*indexed, *(n for n in declared if n not in indexed)]:
                part = declared.get(name)
                obj = v.parts[name]
                if part is None:
                    problems.append(f"{v.label} manifest does not list {name}")
                elif name in indexed and (part["key"], part["sha256"]) != indexed[name]:
                    problems.append(f"{v.label} {name}: the manifest and the index name different objects")
                if obj.problem:
                    problems.append(f"{v.label} {name}: {obj.problem}")
                elif part is not None:
                    evidence.append(
                        f"{v.label} {obj.key.rsplit('/', 1)[-1]} sha256 {part['sha256'][:12]}… verified"
                    )
        return _result("object_hashes", problems=problems, evidence=evidence)

    def _index_check(
        self, row: Any, *, versions: Sequence[_Version], record: dict[str, Any] | None
    ) -> CheckResult:
        problems: list[str] = []
        evidence: list[str] = []
        if record is None:
            return _result(
                "index_matches",
                problems=["the issue version's manifest holds no readable record"],
                evidence=[],
            )
        compare: list[tuple[str, Any, Any]] = [
            ("policy number", row.policy_no, record.get("policy_no")),
            ("product", row.product_code, record.get("product_code")),
            ("branch", row.branch_code, (record.get("branch") or {}).get("code")),
            ("insured", row.insured_name, (record.get("insured") or {}).get("name")),
            ("applicant", row.applicant_name, (record.get("applicant") or {}).get("name")),
            ("print serial", row.print_serial or None, record.get("print_serial") or None),
        ]
        try:
            compare.append(
                ("total premium", Decimal(str(row.total_premium)), Decimal(str(record["total_premium"])))
            )
            compare.append(
                ("period start", as_utc(row.period_start), datetime.fromisoformat(record["period"]["start"]))
            )
            compare.append(
                ("period end", as_utc(row.period_end), datetime.fromisoformat(record["period"]["end"]))
            )
        except (KeyError, TypeError, ValueError, InvalidOperation):
            problems.append("the record's premium or period cannot be read")
        for what, indexed, recorded in compare:
            if indexed != recorded:
                problems.append(f"{what}: the index and the manifest's record differ")
        if not problems:
            evidence.append("policy row = record: number, product, branch, parties, period, premium, serial")
        for v in versions:
            m = v.manifest
            if m is None:
                continue
            facts = [
                ("policy number", m.get("policy_no"), row.policy_no),
                ("version", m.get("version"), v.row.version),
                ("kind", m.get("kind"), v.row.kind),
                ("batch", m.get("batch_id"), v.row.batch_id),
                ("seal id", (m.get("seal") or {}).get("id"), v.row.seal_id),
                ("seal version", (m.get("seal") or {}).get("version"), v.row.seal_version),
            ]
            wrong = [what for what, a, b in facts if a != b]
            if wrong:
                problems.append(f"{v.label}: index and manifest differ in {', '.join(wrong)}")
            else:
                seal = m.get("seal") or {}
                sealed = f", seal {seal.get('id')}@v{seal.get('version')}" if seal else ""
                evidence.append(f"{v.label} row = manifest ({v.row.kind}{sealed})")
            for name in ("customer.pdf", "bundle.pdf"):
                if v.parts[name].data is None:
                    continue
                subject = str((v.parts[name].reader.metadata or {}).get("/Subject", ""))
                if subject != row.policy_no:
                    problems.append(f"{v.label} {name}: its metadata names {subject or 'no policy'}")
        return _result("index_matches", problems=problems, evidence=evidence)

    def _sealed_documents(self, layout: _Layout, schedule_pages: int) -> list[SealedDocument]:
        docs = []
        for label, start, stop, seal_info, kind in layout.documents:
            ref = f"{seal_info['id']}@v{seal_info['version']}" if seal_info else None
            seal = None
            if seal_info:
                try:
                    seal = self.seals.get(seal_info["id"], int(seal_info["version"]))
                except (IssuanceError, KeyError, ValueError):
                    seal = None
            anchor = schedule_pages if kind == "policy" else None
            docs.append(SealedDocument(label, start, stop, ref, seal, kind, anchor))
        return docs

    # --- 完整性 ---------------------------------------------------------------------------------------

    def _presence_check(self, versions: Sequence[_Version]) -> CheckResult:
        problems: list[str] = [] if versions else ["the index holds no version of this policy"]
        keys = _all_keys(versions)
        for key in keys:
            if self.store.head(key) is None:
                problems.append(f"{key} is missing from the store")
        evidence = [
            f"{len(keys) - len(problems)} of {len(keys)} objects of {len(versions)} version(s) present"
        ]
        return _result("objects_present", problems=problems, evidence=evidence)

    def _image_kinds(
        self, versions: Sequence[_Version], bundle: _Object | None
    ) -> tuple[set[str], list[str]]:
        """Image kinds filed (in some manifest) *and* bookmarked in the newest archive copy."""
        filed: set[str] = set()
        for v in versions:
            for image in (v.manifest or {}).get("images", []):
                filed.add(image.get("kind"))
        marked: set[str] = set()
        if bundle is not None and bundle.data is not None:
            labels = {label: kind for kind, label in IMAGE_KIND_LABELS.items()}
            for item in outline(bundle.reader):
                if item.title in ("影像资料", "补充影像资料"):
                    for child in item.children:
                        kind = labels.get(child.title.split("（")[0]) or labels.get(child.title)
                        if kind:
                            marked.add(kind)
        evidence = []
        for kind in sorted(filed - marked):
            evidence.append(f"{kind} is in a manifest but not bookmarked in the newest archive copy")
        return filed & marked, evidence

    def _image_check(
        self, row: Any, *, record: dict[str, Any] | None, kinds: set[str], notes: list[str]
    ) -> CheckResult:
        product = self.products.products.get(row.product_code)
        if product is None:
            return _result(
                "required_images",
                problems=[f"product {row.product_code} is not in the registry"],
                evidence=[],
            )
        required: tuple[str, ...] = product.required_images
        policy, _ = parse_record(record) if record else (None, [])
        if isinstance(policy, Policy):
            from core.products import required_images

            required = required_images(policy, product)
        missing = [k for k in required if k not in kinds]
        problems = [f"missing {k} ({IMAGE_KIND_LABELS.get(k, k)})" for k in missing] + notes
        indexed = [k for k in row.missing_images.split(",") if k]
        if sorted(indexed) != sorted(missing):
            problems.append(f"the index marks {', '.join(indexed) or 'nothing'} as missing")
        present = [IMAGE_KIND_LABELS.get(k, k) for k in required if k in kinds]
        evidence = [
            f"{len(present)} of {len(required)} required kinds filed and bookmarked: {', '.join(present)}"
        ]
        return _result("required_images", problems=problems, evidence=evidence)

    def _reconcile_check(self, versions: Sequence[_Version]) -> CheckResult:
        problems: list[str] = []
        evidence: list[str] = []
        image_pages = 0
        for v in versions:
            row = v.row
            image_pages += sum(int(i.get("pages", 0)) for i in (v.manifest or {}).get("images", []))
            declared = {p["name"]: p for p in (v.manifest or {}).get("parts", [])}
            counts: dict[str, int] = {}
            indexed = {
                "customer.pdf": (row.customer_size, row.customer_pages),
                "bundle.pdf": (row.bundle_size, row.bundle_pages),
            }
            for name in [*indexed, *(n for n in declared if n not in indexed)]:
                obj, part = v.parts.get(name), declared.get(name)
                if obj is None or obj.data is None or part is None:
                    problems.append(
                        f"{v.label} {name}: cannot be reconciled (unreadable or not in the manifest)"
                    )
                    continue
                size, pages = indexed.get(name, (part["size"], part.get("pages")))
                actual = len(obj.reader.pages) if name.endswith(".pdf") else None
                if actual is not None:
                    counts[name] = actual
                if not len(obj.data) == part["size"] == size:
                    problems.append(
                        f"{v.label} {name}: {len(obj.data):,} bytes, "
                        f"manifest {part['size']:,}, index {size:,}"
                    )
                if actual is not None and not actual == part.get("pages") == pages:
                    problems.append(
                        f"{v.label} {name}: {actual} pages, manifest {part.get('pages')}, index {pages}"
                    )
            if "customer.pdf" in counts and "bundle.pdf" in counts:
                if counts["bundle.pdf"] != counts["customer.pdf"] + image_pages:
                    problems.append(
                        f"{v.label}: the archive copy has {counts['bundle.pdf']} pages, not the customer "
                        f"copy's {counts['customer.pdf']} + {image_pages} image pages"
                    )
                else:
                    evidence.append(
                        f"{v.label}: customer {counts['customer.pdf']} pages, archive "
                        f"{counts['bundle.pdf']} = {counts['customer.pdf']} + {image_pages} image pages; "
                        "sizes = manifest = index"
                    )
        return _result("parts_reconcile", problems=problems, evidence=evidence)

    # --- 可用性 ---------------------------------------------------------------------------------------

    def _render_check(
        self, versions: Sequence[_Version], *, rendered: dict[str, int | str], pictures: _Pictures
    ) -> CheckResult:
        """Every PDF opens (pypdf) and poppler renders every page; ``rendered`` holds what the seal
        checks' rendering found already. Pages are counted as they arrive, none is kept (but the
        newest archive copy's image pages, as thumbnails)."""
        problems: list[str] = []
        evidence: list[str] = []
        newest = versions[-1] if versions else None
        bundle_key = newest.parts["bundle.pdf"].key if newest else None
        for label, obj in _pdfs(versions):
            key, data = obj.key, obj.data
            if data is None:
                problems.append(f"{label}: cannot be opened (see object_hashes)")
                continue
            try:
                pages = len(obj.reader.pages)
            except Exception as e:  # whatever pypdf cannot parse is unusable
                problems.append(f"{label}: pypdf cannot open it ({type(e).__name__})")
                continue
            count = rendered.get(key)
            if count is None:
                on_page = pictures.bundle_page if key == bundle_key else None
                count = _render_count(data, dpi=self.render_dpi, on_page=on_page)
            if isinstance(count, str):
                problems.append(f"{label}: {count}")
            elif count != pages:
                problems.append(f"{label}: {count} of {pages} pages rendered")
            else:
                evidence.append(f"{label}: opens, {pages} of {pages} pages rendered")
        return _result("renders", problems=problems, evidence=evidence)

    def _fonts_check(self, versions: Sequence[_Version]) -> CheckResult:
        problems: list[str] = []
        evidence: list[str] = []
        for label, obj in _pdfs(versions):
            if obj.data is None:
                problems.append(f"{label}: cannot be read")
                continue
            fonts, missing = font_findings(obj.reader)
            if missing:
                problems.append(f"{label}: not embedded: {', '.join(sorted(set(missing)))}")
            else:
                evidence.append(f"{label}: {fonts} font(s), all embedded")
        return _result("fonts_embedded", problems=problems, evidence=evidence)

    # --- 安全性 ---------------------------------------------------------------------------------------

    def _keys_check(self, versions: Sequence[_Version], *, policy_no: str) -> CheckResult:
        problems: list[str] = []
        keys = _all_keys(versions)
        for key in keys:
            try:
                check_key_privacy(key, document_numbers=(policy_no,))
            except UnsafeKey as e:
                problems.append(f"an object key of this policy is unsafe: {e.message}")
        evidence = [f"{len(keys)} keys pass the key rule (no ID or phone shapes)"]
        return _result("keys_clean", problems=problems, evidence=evidence)

    def _metadata_check(self, versions: Sequence[_Version], record: dict[str, Any] | None) -> CheckResult:
        problems: list[str] = []
        evidence: list[str] = []
        names = _party_names(record)
        documents = [
            n
            for n in (
                (record or {}).get("policy_no"),
                (record or {}).get("proposal_no"),
                *(v.row.endorsement_no for v in versions),
            )
            if isinstance(n, str)
        ]
        for label, obj in _pdfs(versions):
            if obj.data is None:
                problems.append(f"{label}: cannot be read")
                continue
            found = metadata_findings(obj.data, names=names, documents=documents, reader=obj.reader)
            if found:
                problems += [f"{label}: {finding}" for finding in found]
            else:
                evidence.append(f"{label}: metadata holds document numbers only")
        return _result("metadata_clean", problems=problems, evidence=evidence)

    def _retention_check(
        self, row: Any, *, versions: Sequence[_Version], record: dict[str, Any] | None
    ) -> CheckResult:
        problems: list[str] = []
        try:
            period = (record or {})["period"]
            rule = retention_until(
                datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"])
            )
        except (KeyError, TypeError, ValueError):
            rule = retention_until(as_utc(row.period_start), as_utc(row.period_end))
        keys = _all_keys(versions)
        earliest: datetime | None = None
        for key in keys:
            info = self.store.head(key)
            if info is None:
                problems.append(f"{key}: missing, so its retention is unknown")
            elif info.retain_until is None:
                problems.append(f"{key}: no retention set")
            elif info.retain_until < rule:
                problems.append(f"{key}: retained until {_day(info.retain_until)}, before the rule's date")
            else:
                earliest = info.retain_until if earliest is None else min(earliest, info.retain_until)
        if as_utc(row.retain_until) < rule:
            problems.append(f"the index keeps the policy until {_day(as_utc(row.retain_until))} only")
        evidence = []
        if earliest is not None:
            evidence.append(
                f"{len(keys) - len(problems)} of {len(keys)} objects retained until {_day(earliest)} "
                f"or later (rule: ≥ {_day(rule)}, 《保险法》第87条)"
            )
        return _result("retention", problems=problems, evidence=evidence)

    def _active_check(self, versions: Sequence[_Version]) -> CheckResult:
        problems: list[str] = []
        evidence: list[str] = []
        for label, obj in _pdfs(versions):
            if obj.data is None:
                problems.append(f"{label}: cannot be read")
                continue
            found = active_content(obj.data, reader=obj.reader)
            if found:
                problems.append(f"{label}: {', '.join(found)}")
            else:
                evidence.append(f"{label}: not encrypted, no JavaScript, actions or embedded files")
        return _result("no_active_content", problems=problems, evidence=evidence)


# --- helpers --------------------------------------------------------------------------------------------


def _render_count(
    pdf: bytes, *, dpi: float, on_page: Callable[[int, RenderedPage], None] | None = None
) -> int | str:
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


class _Pictures:
    """The report's thumbnails of one policy, made while its pages are rendered for the checks: the
    pages the checks looked at (the schedule, each clause's and each endorsement's first page), the
    fanned right edges of every cross-page group, the first page of each image kind in the archive
    copy. Only these small pictures (and the edge bands a fan is made of) are kept, never a page; a
    picture that cannot be made is left out, the checks do not depend on it."""

    def __init__(self, auditor: Auditor, *, layout: _Layout, documents: Sequence[SealedDocument]) -> None:
        self.width = auditor.thumbnail_width
        # the fans were drawn at the thumbnails' resolution, twice the rendering check's
        self.fan_scale = auditor.render_dpi * 2 / auditor.seal_dpi
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


class _Runner:
    """Runs checks so that one that cannot complete fails with the reason instead of ending the audit."""

    def __init__(self) -> None:
        self._results: dict[str, CheckResult] = {}
        self.last_error = ""

    def __call__(self, name: str, check: Callable[[], CheckResult]) -> None:
        try:
            self.add(check())
        except Exception as e:  # an audit reports every policy; an unexpected error fails this check only
            logger.warning("check %s could not complete: %s", name, e)
            logger.debug("check %s", name, exc_info=True)
            self.fail(name, f"the check could not complete: {type(e).__name__}: {e}")

    def value(self, compute: Callable[[], Any], *, default: Any) -> Any:
        try:
            return compute()
        except Exception as e:  # the checks that need this value fail with the reason
            logger.warning("audit step failed: %s", e)
            logger.debug("audit step", exc_info=True)
            self.last_error = f"could not complete: {type(e).__name__}: {e}"
            return default

    def add(self, result: CheckResult) -> None:
        self._results[result.name] = result

    def fail(self, name: str, reason: str) -> None:
        self._results[name] = _result(name, problems=[reason or "could not complete"], evidence=[])

    def results(self) -> tuple[CheckResult, ...]:
        return tuple(self._results[name] for name in CHECKS if name in self._results)


@dataclass(frozen=True)
class _Layout:
    """Where each document lies in the newest customer copy, from the page counts the manifests record."""

    policy_pages: int
    documents: tuple[tuple[str, int, int, dict[str, str] | None, str], ...]  # label, start, stop, seal, kind
    endorsements: tuple[tuple[str, int, int], ...]  # (number, start, stop)
    image_pages: tuple[tuple[int, str], ...]  # (page in the newest archive copy, image kind label)
    checked_pages: tuple[tuple[int, str], ...]  # (page in the newest customer copy, what it is)
    customer_key: str | None
    bundle_key: str | None
    customer: _Object | None


def _layout(versions: Sequence[_Version]) -> _Layout:
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
    return _Layout(
        policy_pages=policy_pages,
        documents=tuple(documents),
        endorsements=tuple(endorsements),
        image_pages=tuple(images),
        checked_pages=tuple(sorted(checked)),
        customer_key=customer.key if customer else None,
        bundle_key=bundle.key if bundle else None,
        customer=customer,
    )


def _bookmarks(pdf: _Object) -> tuple[OutlineItem, ...]:
    try:
        return outline(pdf.reader)
    except Exception:  # for thumbnails only: a PDF pypdf cannot open has failed its checks already
        return ()


def _pdfs(versions: Sequence[_Version]) -> Iterator[tuple[str, _Object]]:
    """Each distinct PDF object of the policy once: (label, object)."""
    names = {"customer.pdf": "customer copy", "bundle.pdf": "archive copy"}
    seen: set[str] = set()
    for v in versions:
        for name, obj in v.parts.items():
            if obj.key in seen or not name.endswith(".pdf"):
                continue
            seen.add(obj.key)
            yield f"{v.label} {names.get(name, name)}", obj


def _all_keys(versions: Sequence[_Version]) -> list[str]:
    keys: list[str] = []
    for v in versions:
        for key in (
            v.row.manifest_key,
            v.row.customer_key,
            v.row.bundle_key,
            *(o.key for o in v.parts.values()),
        ):
            if key not in keys:
                keys.append(key)
    return keys


def _day(moment: datetime) -> str:
    """A moment as its China-time date and time, the way retention dates are read."""
    return f"{moment.astimezone(CHINA_TIME):%Y-%m-%d %H:%M} (UTC+8)"


def _party_names(record: dict[str, Any] | None) -> list[str]:
    if not record:
        return []
    names = [(record.get(role) or {}).get("name") for role in ("applicant", "insured")]
    names += [b.get("name") for b in record.get("beneficiaries") or []]
    return sorted({n for n in names if isinstance(n, str) and n})


def _scores(checks: Sequence[CheckResult], kinds: set[str]) -> tuple[ScoreItem, ...]:
    by_name = {c.name: c for c in checks}

    def ok(name: str) -> bool:
        return name in by_name and by_name[name].passed

    exemption = "exemption_notice" in kinds
    archive = ok("required_images") and ok("objects_present") and ok("object_hashes")
    return (
        ScoreItem(
            EXEMPTION_ITEM,
            POINTS if exemption else 0,
            POINTS,
            "免责事项说明书 in the archive copy" if exemption else "免责事项说明书 not in the archive copy",
        ),
        ScoreItem(
            ARCHIVE_ITEM,
            POINTS if archive else 0,
            POINTS,
            "every required image and every part present"
            if archive
            else "an image kind or a part is missing or damaged",
        ),
    )
