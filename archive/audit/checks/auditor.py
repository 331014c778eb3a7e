"""The runner: reads one archived policy once, calls every check on it, scores it and makes its thumbnails.

How it is done in bounded memory: each PDF is parsed once per policy and shared by its checks
(``StoredPart.reader``); poppler renders the newest customer copy once, at the seals' resolution, and
hands its pages over one at a time to the seal checks and the thumbnails (``authenticity.seals``);
other PDFs are rendered one page at a time and only counted; no page is kept, only small thumbnails.

Scores (the centre's audit sheet): 免责事项说明书影像存档情况 10分 — the exemption notice is in the archive
copy (a manifest lists it and the newest archive copy bookmarks it); 承保档案存档情况 10分 — every required
image kind and every part of every version present and intact. They are reported beside the checks;
the lot's verdict counts defective policies.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from archive.audit.checks import authenticity, integrity, security, usability
from archive.audit.checks.base import (
    ARCHIVE_ITEM,
    EXEMPTION_ITEM,
    POINTS,
    AuditedPolicy,
    CheckResult,
    IndexedVersion,
    Messages,
    PolicyResult,
    ScoreItem,
    SealedDocument,
    StoredPart,
)
from archive.audit.checks.pages import Layout, Pictures, read_layout
from archive.audit.checks.pdftext import OutlineItem, outline, page_texts
from archive.index import Index
from archive.store import ObjectStore
from core.errors import IssuanceError, ObjectCorrupt, ObjectMissing
from core.products import ProductRegistry
from stamps import SealRegistry

logger = logging.getLogger(__name__)

Check = Callable[[AuditedPolicy, Messages], None]

# The checks in the order they run, each with the names it reports under (what fails when it cannot
# complete). The seal checks run before ``renders``: their rendering of the newest customer copy is
# counted there instead of rendering it again.
RUN_ORDER: tuple[tuple[Check, tuple[str, ...]], ...] = (
    (authenticity.ledger_chain, ("ledger_chain",)),
    (authenticity.object_hashes, ("object_hashes",)),
    (authenticity.index_matches, ("index_matches",)),
    (authenticity.seals, ("company_seal", "cross_page_seal")),
    (authenticity.signatures, ("signatures",)),
    (integrity.objects_present, ("objects_present",)),
    (integrity.clauses_match, ("clauses_match",)),
    (integrity.required_images, ("required_images",)),
    (integrity.parts_reconcile, ("parts_reconcile",)),
    (usability.renders, ("renders",)),
    (usability.fonts_embedded, ("fonts_embedded",)),
    (usability.pdfa_structure, ("pdfa_structure",)),
    (usability.schedule_text, ("schedule_text",)),
    (security.keys_clean, ("keys_clean",)),
    (security.metadata_clean, ("metadata_clean",)),
    (security.retention, ("retention",)),
    (security.no_active_content, ("no_active_content",)),
)


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
        trust_roots: Sequence[bytes] = (),
    ) -> None:
        self.store = store
        self.index = index
        self.products = products
        self.seals = seals
        self.seal_dpi = seal_dpi
        self.render_dpi = render_dpi
        self.thumbnail_width = thumbnail_width
        self.trust_roots = tuple(trust_roots)
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
        policy, pictures = self.read_policy(policy_no)
        messages = Messages()
        for check, names in RUN_ORDER:
            _run(check, names, policy=policy, messages=messages)
        checks = messages.results()
        return PolicyResult(
            policy_no=policy_no,
            branch_code=policy.row.branch_code,
            product_code=policy.row.product_code,
            versions=len(policy.versions),
            checks=checks,
            scores=scores(checks, policy.image_kinds),
            thumbnails=pictures.thumbnails() if self.thumbnail_width else (),
        )

    def read_policy(self, policy_no: str) -> tuple[AuditedPolicy, Pictures]:
        """The policy as its checks see it (every object read and verified, the newest customer
        copy's text and layout), and the thumbnails its checks' renderings will feed.
        ``IssuanceError`` if the index does not know it."""
        row = self.index.policy_row(policy_no)
        if row is None:
            raise IssuanceError(f"policy {policy_no} is not in the index", hint="check the number")
        cache: dict[tuple[str, str | None], StoredPart] = {}
        versions = tuple(self._load(v, cache) for v in self.index.versions(policy_no))
        record = _record(versions)
        newest = versions[-1] if versions else None
        customer = newest.parts.get("customer.pdf") if newest else None
        texts: tuple[str, ...] = ()
        bookmarks: tuple[OutlineItem, ...] = ()
        if customer is not None and customer.data is not None:
            data, part = customer.data, customer
            texts = _value(lambda: page_texts(data), default=())
            bookmarks = _value(lambda: outline(part.reader), default=())
        layout = read_layout(versions)
        schedule_pages = integrity.schedule_page_count(
            texts, policy_pages=layout.policy_pages, registry=self.products
        )
        documents = self._sealed_documents(layout, schedule_pages)
        pictures = Pictures(
            width=self.thumbnail_width,
            # the fans are drawn at the thumbnails' resolution, twice the rendering check's
            fan_scale=self.render_dpi * 2 / self.seal_dpi,
            layout=layout,
            documents=documents,
        )
        kinds, notes = _value(
            lambda: integrity.image_kinds(versions, newest.parts.get("bundle.pdf") if newest else None),
            default=(set(), ["the archive copy's bookmarks cannot be read"]),
        )
        policy = AuditedPolicy(
            policy_no=policy_no,
            row=row,
            versions=versions,
            record=record,
            sources=self,
            texts=texts,
            bookmarks=bookmarks,
            policy_pages=layout.policy_pages,
            schedule_pages=schedule_pages,
            endorsements=layout.endorsements,
            documents=tuple(documents),
            image_kinds=frozenset(kinds),
            image_notes=tuple(notes),
            on_customer_page=pictures.customer_page,
            on_bundle_page=pictures.bundle_page,
        )
        return policy, pictures

    # --- loading -------------------------------------------------------------------------------------

    def _read(self, key: str, sha256: str | None) -> StoredPart:
        try:
            return StoredPart(key, sha256, data=self.store.get(key, sha256=sha256))
        except ObjectMissing:
            problem = f"{key} is missing from the store"
        except ObjectCorrupt:
            problem = f"{key} does not match its SHA-256 {str(sha256)[:12]}…: the stored bytes were changed"
        except (IssuanceError, ValueError) as e:
            problem = f"{key} cannot be read: {e}"
        return StoredPart(key, sha256, problem=problem)

    def _load(self, row: Any, cache: dict[tuple[str, str | None], StoredPart]) -> IndexedVersion:
        """A version's manifest and every part it names (a part shared with the version before, such
        as a supplement's customer copy, is read once). Without a readable manifest the index's keys and
        hashes are used for the customer and archive copies."""

        def read(key: str, sha256: str | None) -> StoredPart:
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
        parts: dict[str, StoredPart] = {}
        for part in (manifest or {}).get("parts", []):
            parts[part["name"]] = read(part["key"], part["sha256"])
        for name, key, sha in (
            ("customer.pdf", row.customer_key, row.customer_sha256),
            ("bundle.pdf", row.bundle_key, row.bundle_sha256),
        ):
            if name not in parts:
                parts[name] = read(key, sha)
        return IndexedVersion(row=row, manifest=manifest, manifest_problem=problem, parts=parts)

    def _sealed_documents(self, layout: Layout, schedule_pages: int) -> list[SealedDocument]:
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


def _run(check: Check, names: tuple[str, ...], *, policy: AuditedPolicy, messages: Messages) -> None:
    """Runs one check so that one that cannot complete fails with the reason instead of ending the audit."""
    for name in names:
        messages.check(name)  # a check that ran reports, whatever it found
    try:
        check(policy, messages)
    except Exception as e:  # an audit reports every policy; an unexpected error fails this check only
        for name in names:
            logger.warning("check %s could not complete: %s", name, e)
            logger.debug("check %s", name, exc_info=True)
            messages.fail(name, f"the check could not complete: {type(e).__name__}: {e}")


def _value(compute: Callable[[], Any], *, default: Any) -> Any:
    """What ``compute`` returns, or ``default`` when it raises: the checks that need it fail then."""
    try:
        return compute()
    except Exception as e:  # the checks that need this value fail with the reason
        logger.warning("audit step failed: %s", e)
        logger.debug("audit step", exc_info=True)
        return default


def _record(versions: Sequence[IndexedVersion]) -> dict[str, Any] | None:
    """The record the issue version's manifest holds."""
    first = next((v for v in versions if v.row.kind == "issue"), versions[0] if versions else None)
    if first is None or first.manifest is None:
        return None
    record = first.manifest.get("record")
    return record if isinstance(record, dict) else None


def scores(checks: Sequence[CheckResult], kinds: set[str] | frozenset[str]) -> tuple[ScoreItem, ...]:
    """The centre's audit sheet from the checks and the image kinds filed and bookmarked."""
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
