"""What the checks share: the four properties and the named checks, the messages collector, the results,
and one archived policy as the checks see it.

The shape follows paperless-ngx's sanity checker: a collector (``Messages``) that every check adds its
messages to, one small function per check, and a runner (``Auditor.check_policy``) that calls them.
A message is a problem (any fails its check) or evidence (what was seen to hold); each is filed under
its check's name, and the name says which property (四性) it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from io import BytesIO
from typing import Any, Protocol

from pypdf import PdfReader

from archive.audit.checks.pdftext import OutlineItem
from archive.index import Index
from archive.store import ObjectStore
from core.privacy import scrub
from core.products import ProductRegistry
from stamps import Seal
from stamps.poppler import RenderedPage

AUTHENTICITY, INTEGRITY, USABILITY, SECURITY = "真实性", "完整性", "可用性", "安全性"
PROPERTIES = (AUTHENTICITY, INTEGRITY, USABILITY, SECURITY)

# name -> (property, what an auditor calls it); the order is the report's order.
CHECKS: dict[str, tuple[str, str]] = {
    "ledger_chain": (AUTHENTICITY, "账本哈希链完整"),
    "object_hashes": (AUTHENTICITY, "对象摘要与清单、索引一致"),
    "index_matches": (AUTHENTICITY, "索引、清单与文件元数据一致"),
    "company_seal": (AUTHENTICITY, "保单、批单加盖公章（登记版本）"),
    "cross_page_seal": (AUTHENTICITY, "保单正本与所附条款加盖骑缝章"),
    "signatures": (AUTHENTICITY, "电子签名有效（签名证书、时间戳，覆盖全文）"),
    "objects_present": (INTEGRITY, "各版本对象齐全"),
    "clauses_match": (INTEGRITY, "所附条款与保单列明条款一致"),
    "required_images": (INTEGRITY, "承保影像齐全"),
    "parts_reconcile": (INTEGRITY, "页数、字节数与清单相符"),
    "renders": (USABILITY, "可打开，每页可渲染"),
    "fonts_embedded": (USABILITY, "字体已嵌入"),
    "pdfa_structure": (USABILITY, "PDF/A-2b 结构自检"),
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


# --- the messages collector ----------------------------------------------------------------------------


class Found:
    """The messages of one check: its problems (any fails it) and its evidence."""

    def __init__(self, name: str) -> None:
        if name not in CHECKS:
            raise ValueError(f"no check is named {name!r}")
        self.name = name
        self._problems: list[str] = []
        self._evidence: list[str] = []

    def problem(self, message: str) -> None:
        self._problems.append(message)

    def evidence(self, message: str) -> None:
        self._evidence.append(message)

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(self._problems)

    def result(self) -> CheckResult:
        """Problems first (they are what fails the check), then what was seen to hold; personal data
        masked (``scrub``) on the way into the report."""
        lines = [*self._problems, *self._evidence]
        return CheckResult(self.name, not self._problems, tuple(scrub(line) for line in lines))


class Messages:
    """What the checks found on one policy, check by check (paperless-ngx's ``SanityCheckMessages``)."""

    def __init__(self) -> None:
        self._found: dict[str, Found] = {}

    def check(self, name: str) -> Found:
        """The messages of check ``name`` (made on first use); ``ValueError`` for an unknown name."""
        if name not in self._found:
            self._found[name] = Found(name)
        return self._found[name]

    def fail(self, name: str, reason: str) -> None:
        """Check ``name`` could not complete: what it found so far is dropped, the reason fails it."""
        self._found[name] = Found(name)
        self._found[name].problem(reason or "could not complete")

    def result(self, name: str) -> CheckResult:
        return self.check(name).result()

    def results(self) -> tuple[CheckResult, ...]:
        """Every check that reported, in the report's order (``CHECKS``)."""
        return tuple(self._found[name].result() for name in CHECKS if name in self._found)

    def problems(self, aspect: str | None = None) -> list[tuple[str, str]]:
        """(check, problem) of every problem found, of one property (四性) or of all, in report order."""
        return [
            (name, scrub(line))
            for name in CHECKS
            if name in self._found and aspect in (None, CHECKS[name][0])
            for line in self._found[name].problems
        ]


# --- one policy as the checks see it ---------------------------------------------------------------------


@dataclass(frozen=True)
class StoredPart:
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
class IndexedVersion:
    """One indexed version: its row, its manifest (or why it is unreadable) and its parts."""

    row: Any
    manifest: dict[str, Any] | None
    manifest_problem: str | None
    # by part name: customer.pdf, bundle.pdf and whatever else the manifest names (a reissue's copy)
    parts: dict[str, StoredPart]

    @property
    def label(self) -> str:
        return f"v{self.row.version}"

    def part(self, name: str) -> StoredPart:
        return self.parts[name]


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


class Sources(Protocol):
    """What the checks read besides the policy's own objects (``Auditor`` is one)."""

    store: ObjectStore
    index: Index
    products: ProductRegistry
    seal_dpi: float
    render_dpi: float
    trust_roots: Sequence[bytes]  # DER certificates that signatures must chain to

    def ledger_problems(self) -> list[str]: ...


PageSink = Callable[[int, RenderedPage], None]


@dataclass(frozen=True)
class AuditedPolicy:
    """One archived policy, read once by the auditor and shared by all its checks.

    ``texts`` and ``bookmarks`` are the newest customer copy's (whitespace-free page texts, outline);
    ``policy_pages`` the policy document's pages in it (schedule and clauses), ``schedule_pages`` the
    schedule's, ``endorsements`` (number, first page, stop page) of each endorsement in it;
    ``documents`` the sealed documents the seal checks look at; ``image_kinds`` the image kinds filed
    and bookmarked (``image_notes``: kinds filed but not bookmarked). ``rendered`` holds, by key, what
    the seal checks' rendering of the newest customer copy found (pages, or why not), so that the
    usability check does not render it again; ``on_customer_page``/``on_bundle_page`` receive the
    pages rendered, for thumbnails.
    """

    policy_no: str
    row: Any  # the index's policy row
    versions: tuple[IndexedVersion, ...]
    record: dict[str, Any] | None
    sources: Sources
    texts: tuple[str, ...] = ()
    bookmarks: tuple[OutlineItem, ...] = ()
    policy_pages: int = 0
    schedule_pages: int = 1
    endorsements: tuple[tuple[str, int, int], ...] = ()
    documents: tuple[SealedDocument, ...] = ()
    image_kinds: frozenset[str] = frozenset()
    image_notes: tuple[str, ...] = ()
    rendered: dict[str, int | str] = field(default_factory=dict)
    on_customer_page: PageSink | None = None
    on_bundle_page: PageSink | None = None

    @property
    def newest(self) -> IndexedVersion | None:
        return self.versions[-1] if self.versions else None

    @property
    def customer(self) -> StoredPart:
        """The newest customer copy (no bytes when there is no version)."""
        newest = self.newest
        return newest.parts.get("customer.pdf", StoredPart("", None)) if newest else StoredPart("", None)

    @property
    def bundle(self) -> StoredPart | None:
        """The newest archive copy."""
        return self.newest.parts.get("bundle.pdf") if self.newest else None


def pdfs(versions: Sequence[IndexedVersion]) -> Iterator[tuple[str, StoredPart]]:
    """Each distinct PDF object of the policy once: (label, object)."""
    names = {"customer.pdf": "customer copy", "bundle.pdf": "archive copy"}
    seen: set[str] = set()
    for v in versions:
        for name, obj in v.parts.items():
            if obj.key in seen or not name.endswith(".pdf"):
                continue
            seen.add(obj.key)
            yield f"{v.label} {names.get(name, name)}", obj


def all_keys(versions: Sequence[IndexedVersion]) -> list[str]:
    """Every object key of the policy once: the index's and the manifests'."""
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
