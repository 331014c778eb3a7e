"""完整性 (integrity): every object present, the clauses the schedule lists attached whole, the images
the product requires filed, and bytes and pages reconciled.

- ``objects_present``: every object of every version is in the store (``head``).
- ``clauses_match`` (所附条款与保单列明条款一致): the clause codes the schedule lists, the bookmarks under
  条款, and the clause pages attached (found by their footers ``<title> 第k页共n页``: each clause complete,
  k = 1…n, no foreign or stray page, its first page naming its code) all equal the record's ``clauses``;
  and each endorsement's pages hold, whole, exactly the clauses its record adds (``clauses_added``).
- ``required_images``: every image kind the product requires for this policy
  (``core.products.required_images``) is in some version's manifest and bookmarked in the newest
  archive copy.
- ``parts_reconcile``: bytes and page counts of every part equal the manifest's and the index's; the
  archive copy has exactly the customer copy's pages plus the image pages filed so far.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from archive.audit.checks.base import (
    AuditedPolicy,
    CheckResult,
    Found,
    IndexedVersion,
    Messages,
    StoredPart,
    all_keys,
)
from archive.audit.checks.pdftext import OutlineItem, normalise, outline
from core.products import ProductRegistry
from core.products import required_images as product_images
from core.records import IMAGE_KIND_LABELS, Policy, parse_record

__all__ = [
    "added_clauses",
    "clause_check",
    "clause_footers",
    "clauses_match",
    "image_kinds",
    "objects_present",
    "parts_reconcile",
    "required_images",
    "schedule_page_count",
]


def objects_present(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("objects_present")
    versions = policy.versions
    if not versions:
        found.problem("the index holds no version of this policy")
    keys = all_keys(versions)
    for key in keys:
        if policy.sources.store.head(key) is None:
            found.problem(f"{key} is missing from the store")
    found.evidence(
        f"{len(keys) - len(found.problems)} of {len(keys)} objects of {len(versions)} version(s) present"
    )


def clauses_match(policy: AuditedPolicy, messages: Messages) -> None:
    if policy.customer.data is None or policy.record is None:
        messages.check("clauses_match").problem("the newest customer copy or the record cannot be read")
        return
    clause_check(
        policy.texts,
        policy_pages=policy.policy_pages,
        bookmarks=policy.bookmarks,
        expected=list(policy.record.get("clauses") or []),
        registry=policy.sources.products,
        messages=messages,
    )
    added_clauses(policy, messages)


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
    messages: Messages | None = None,
) -> CheckResult:
    """所附条款与保单列明条款一致, from the policy document's page texts and the copy's bookmarks.

    ``texts`` are whitespace-free page texts of the customer copy; the policy document is its first
    ``policy_pages`` pages; ``expected`` the record's clause codes, in order. The findings go to
    ``messages`` when given (a new collector otherwise).
    """
    if messages is None:
        messages = Messages()
    found = messages.check("clauses_match")
    titles = {code: c.title for code, c in registry.clauses.items()}
    expected_titles = [titles.get(code, f"?{code}") for code in expected]
    unknown = [code for code in expected if code not in titles]
    if unknown:
        found.problem(f"the record lists clauses the registry does not know: {', '.join(unknown)}")
    page_clause = clause_footers(texts[:policy_pages], registry)
    first_clause = next((i for i, hit in enumerate(page_clause) if hit), len(page_clause))
    schedule = "".join(texts[:first_clause])
    listed = _LISTED_CODE.findall(schedule)
    if listed == list(expected):
        found.evidence(f"the schedule (pages 1–{first_clause}) lists {', '.join(listed)}, as the record does")
    else:
        found.problem(
            f"the schedule lists {', '.join(listed) or 'no clauses'}; the record lists {', '.join(expected)}"
        )
    # the attached clause pages, clause by clause
    for page in range(first_clause, len(page_clause)):
        if page_clause[page] is None:
            found.problem(f"page {page + 1} is not a page of any registered clause")
    found_titles = _whole_clauses(texts, page_clause, range(first_clause, len(page_clause)), titles, found)
    if found_titles != expected_titles:
        found.problem(
            f"attached clauses are {', '.join(found_titles) or 'none'}; the record lists "
            f"{', '.join(expected_titles)}"
        )
    under = next((item for item in bookmarks if item.title == "条款"), None)
    marked = [child.title for child in under.children] if under else []
    if marked == expected_titles:
        found.evidence(f"bookmarks under 条款: {', '.join(marked)}")
    else:
        found.problem(f"bookmarks under 条款 are {', '.join(marked) or 'missing'}")
    return found.result()


def _whole_clauses(
    texts: Sequence[str],
    page_clause: Sequence[tuple[str, int, int] | None],
    pages: range,
    titles: dict[str, str],
    found: Found,
) -> list[str]:
    """The clauses attached on ``pages`` (by their footers), each checked complete and naming its code
    on its first page; their titles in order."""
    attached: list[tuple[str, list[tuple[int, int, int]]]] = []  # title, [(page, k, n)]
    for page in pages:
        hit = page_clause[page]
        if hit is None:
            continue
        title, k, n = hit
        if attached and attached[-1][0] == title and k != 1:
            attached[-1][1].append((page, k, n))
        else:
            attached.append((title, [(page, k, n)]))
    for title, on in attached:
        numbers = [k for _, k, _ in on]
        total = on[0][2]
        span = f"pages {on[0][0] + 1}–{on[-1][0] + 1}"
        if numbers != list(range(1, total + 1)) or any(n != total for _, _, n in on):
            missing = sorted(set(range(1, total + 1)) - set(numbers))
            detail = (
                f"page(s) {', '.join(map(str, missing))} of {total} missing" if missing else "out of order"
            )
            found.problem(f"{title} ({span}) is incomplete: {detail}")
        else:
            found.evidence(f"{title}: {span}, {total} of {total} pages")
        code = next((c for c, t in titles.items() if t == title), None)
        if code and f"条款代码：{code}" not in texts[on[0][0]] and f"条款代码:{code}" not in texts[on[0][0]]:
            found.problem(f"{title}: its first page does not name its code {code}")
    return [title for title, _ in attached]


def added_clauses(policy: AuditedPolicy, messages: Messages) -> None:
    """An added rider's clauses (contract v1.1 ``add_clauses``) attached whole in its endorsement's pages,
    and no clause pages in any other endorsement's (part of 所附条款与保单列明条款一致)."""
    found = messages.check("clauses_match")
    registry = policy.sources.products
    titles = {code: c.title for code, c in registry.clauses.items()}
    added: dict[str, list[str]] = {}
    for v in policy.versions:
        record = (v.manifest or {}).get("record") or {}
        if record.get("kind") == "endorsement":
            added[str(record.get("endorsement_no"))] = list(record.get("clauses_added") or [])
    footers = clause_footers(policy.texts, registry)
    for number, start, stop in policy.endorsements:
        expected = [titles.get(code, f"?{code}") for code in added.get(number, [])]
        attached = _whole_clauses(policy.texts, footers, range(start, min(stop, len(footers))), titles, found)
        if attached != expected:
            found.problem(
                f"批单 {number} attaches {', '.join(attached) or 'no clauses'}; its record adds "
                f"{', '.join(expected) or 'none'}"
            )
        elif expected:
            found.evidence(f"批单 {number} adds {', '.join(expected)}, attached in full")


def image_kinds(versions: Sequence[IndexedVersion], bundle: StoredPart | None) -> tuple[set[str], list[str]]:
    """Image kinds filed (in some manifest) *and* bookmarked in the newest archive copy, and a note
    for each kind filed but not bookmarked."""
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
    notes = []
    for kind in sorted(filed - marked):
        notes.append(f"{kind} is in a manifest but not bookmarked in the newest archive copy")
    return filed & marked, notes


def required_images(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("required_images")
    row, record, kinds = policy.row, policy.record, policy.image_kinds
    product = policy.sources.products.products.get(row.product_code)
    if product is None:
        found.problem(f"product {row.product_code} is not in the registry")
        return
    required: tuple[str, ...] = product.required_images
    parsed, _ = parse_record(record) if record else (None, [])
    if isinstance(parsed, Policy):
        required = product_images(parsed, product)
    missing = [k for k in required if k not in kinds]
    for k in missing:
        found.problem(f"missing {k} ({IMAGE_KIND_LABELS.get(k, k)})")
    for note in policy.image_notes:
        found.problem(note)
    indexed = [k for k in row.missing_images.split(",") if k]
    if sorted(indexed) != sorted(missing):
        found.problem(f"the index marks {', '.join(indexed) or 'nothing'} as missing")
    present = [IMAGE_KIND_LABELS.get(k, k) for k in required if k in kinds]
    found.evidence(
        f"{len(present)} of {len(required)} required kinds filed and bookmarked: {', '.join(present)}"
    )


def parts_reconcile(policy: AuditedPolicy, messages: Messages) -> None:
    found = messages.check("parts_reconcile")
    image_pages = 0
    for v in policy.versions:
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
                found.problem(f"{v.label} {name}: cannot be reconciled (unreadable or not in the manifest)")
                continue
            size, pages = indexed.get(name, (part["size"], part.get("pages")))
            actual = len(obj.reader.pages) if name.endswith(".pdf") else None
            if actual is not None:
                counts[name] = actual
            if not len(obj.data) == part["size"] == size:
                found.problem(
                    f"{v.label} {name}: {len(obj.data):,} bytes, manifest {part['size']:,}, index {size:,}"
                )
            if actual is not None and not actual == part.get("pages") == pages:
                found.problem(
                    f"{v.label} {name}: {actual} pages, manifest {part.get('pages')}, index {pages}"
                )
        if "customer.pdf" in counts and "bundle.pdf" in counts:
            if counts["bundle.pdf"] != counts["customer.pdf"] + image_pages:
                found.problem(
                    f"{v.label}: the archive copy has {counts['bundle.pdf']} pages, not the customer "
                    f"copy's {counts['customer.pdf']} + {image_pages} image pages"
                )
            else:
                found.evidence(
                    f"{v.label}: customer {counts['customer.pdf']} pages, archive "
                    f"{counts['bundle.pdf']} = {counts['customer.pdf']} + {image_pages} image pages; "
                    "sizes = manifest = index"
                )
