"""Filing records into the archive: ``issuance run`` and ``issuance attach``.

Per record, in this order (DESIGN.md invariant 3): build the documents in memory and scratch space →
upload the parts (customer copy, archive copy) → upload the manifest last → commit the index rows and
the ledger event in one transaction. Only the index commit makes a version exist.

What a crash leaves, and what the next run does with it:

- parts uploaded, no manifest: orphans. Part names carry their content hash, so the next run's parts do
  not collide with them; the audit reports them (``issuance audit --orphans``).
- manifest uploaded, index not committed: the next run finds the manifest at the version's fixed key,
  checks that it belongs to the same record (content hash) and that every part it names is there with
  the right SHA-256, and adopts it: the index is committed from it, nothing is uploaded twice.
- index committed: the record is ``already_archived`` (same ``record_id``, same content) on every later
  run; the same ``record_id`` with other content is a conflict, reported, never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from archive.index import Index, LedgerEvent, NewPolicy, PartyFacts, PolicyFacts, VersionFacts, as_utc
from archive.serials import DocumentSerial, mark_used, mark_used_many
from archive.store import ObjectStore, PutItem, check_key_privacy, retention_until
from core.errors import (
    ComponentUnavailable,
    IndexConflict,
    IssuanceError,
    ObjectConflict,
    UsageError,
)
from core.manifest import ImageEntry, Part, RecordFacts, StoredObject, manifest
from core.products import required_images
from core.records import Endorsement, Policy, RawRecord, content_hash, parse_record
from pipeline.bundle import add_images, append_endorsement, archive_copy, page_count
from pipeline.documents import DocumentMaker, IssuedDocument
from pipeline.images import resolve_image_path
from pipeline.intake import ImageSource, PreparedImages, prepare_images
from pipeline.validate import Reason

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")

REMEMBERED_POLICIES = 2048


class _Refused(Exception):
    """A record that cannot be filed for a reason that names its field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.reason = Reason(field, message)


class _FiledByAnother(Exception):
    """Another run (the same batch started twice) filed this very record first: already archived."""


@dataclass(frozen=True)
class Filed:
    """What filing one record produced."""

    version: int
    keys: tuple[str, ...]
    adopted: bool
    missing_images: tuple[str, ...] = ()


@dataclass
class _PolicyPlan:
    """Version 1 of a policy on its way into the archive (``Filing.file_policies``)."""

    prefix: str
    folder: str
    manifest_key: str
    record_sha: str
    retain: datetime
    missing: tuple[str, ...]
    raw: RawRecord
    body: dict[str, Any] | None  # the manifest's body once uploaded (or adopted)
    adopted: bool


def _published(manifest: Part, key: str) -> dict[str, Any]:
    """A version's manifest body once stored, with where it is (as ``Filing._adopt`` reads it back)."""
    body = json.loads(manifest.data)
    body["_manifest"] = {"key": key, "sha256": manifest.sha256, "size": manifest.size}
    return body


def key_prefix(policy: Policy) -> str:
    """``{branch}/{yyyy}/{mm}/{policy_no}``: no personal data, stable across re-runs (approval month).

    The policy number is the core system's own and may hold 18 or 20 digits in a row; validation has
    made sure it carries no party's ID or phone number, so only the other segments are judged by shape.
    """
    approved = policy.underwriting.approved_at.astimezone(CHINA)
    prefix = f"{policy.branch.code}/{approved:%Y}/{approved:%m}/{policy.policy_no}"
    return check_key_privacy(prefix, document_numbers=(policy.policy_no,))


# Hex digits spelled as letters: a run of hex digits can look like a mobile number (1[3-9] + 9 digits)
# and keys must carry nothing shaped like personal data, so the digest in a part's name has no digits.
_DIGITS_AS_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def _part_key(folder: str, part: Part) -> str:
    """``{folder}/{stem}-{first 12 hex digits of the SHA-256, digits spelled g–p}.{suffix}``."""
    stem, _, suffix = part.name.rpartition(".")
    name = f"{stem}-{part.sha256[:12].translate(_DIGITS_AS_LETTERS)}.{suffix}"
    return f"{folder}/{check_key_privacy(name)}"


def _policy_facts(policy: Policy, *, issued_at: datetime, prefix: str, retain_until: datetime) -> PolicyFacts:
    parties = [
        PartyFacts("applicant", 0, policy.applicant.name, policy.applicant.id_type, policy.applicant.id_no),
        PartyFacts("insured", 0, policy.insured.name, policy.insured.id_type, policy.insured.id_no),
    ]
    parties += [
        PartyFacts("beneficiary", i, b.name, b.id_type, b.id_no) for i, b in enumerate(policy.beneficiaries)
    ]
    return PolicyFacts(
        policy_no=policy.policy_no,
        proposal_no=policy.proposal_no,
        product_code=policy.product_code,
        branch_code=policy.branch.code,
        branch_name=policy.branch.name,
        applicant_name=policy.applicant.name,
        insured_name=policy.insured.name,
        insured_id_no=policy.insured.id_no,
        plate=policy.vehicle.plate if policy.vehicle else None,
        vin=policy.vehicle.vin if policy.vehicle else None,
        period_start=policy.period.start,
        period_end=policy.period.end,
        total_premium=policy.total_premium,
        currency=policy.currency,
        print_serial=policy.print_serial,
        issued_at=issued_at,
        key_prefix=prefix,
        retain_until=retain_until,
        parties=tuple(parties),
    )


class Filing:
    """Files records into one archive (store + index). Thread-safe; one per run or per watcher."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        index: Index,
        maker: DocumentMaker,
        operator: str,
    ) -> None:
        self.store = store
        self.index = index
        self.maker = maker
        self.registry = maker.registry
        self.operator = operator
        self.clock = maker.clock  # one split per run: documents and filing stages together
        # recently filed or read policies, for their endorsements; bounded, so memory stays flat in a long
        # batch or a watcher that runs for months (an older one is read again from its manifest)
        self._policies: OrderedDict[str, Policy] = OrderedDict()
        self._lock = threading.Lock()

    # --- archived policies ---------------------------------------------------------------------------

    def archived_policy(self, policy_no: str) -> Policy | None:
        """The archived policy's record, read from its first version's manifest (hash-verified)."""
        with self._lock:
            if policy_no in self._policies:
                self._policies.move_to_end(policy_no)
                return self._policies[policy_no]
        versions = self.index.versions(policy_no)
        if not versions:
            return None
        first = versions[0]
        data = json.loads(self.store.get(first.manifest_key, sha256=first.manifest_sha256))
        policy, reasons = parse_record(data["record"])
        if not isinstance(policy, Policy) or reasons:
            raise IssuanceError(f"the archived manifest of {policy_no} does not hold a valid policy record")
        self._remember(policy)
        return policy

    def _remember(self, policy: Policy) -> None:
        with self._lock:
            self._policies[policy.policy_no] = policy
            self._policies.move_to_end(policy.policy_no)
            while len(self._policies) > REMEMBERED_POLICIES:
                self._policies.popitem(last=False)

    # --- one record --------------------------------------------------------------------------------

    def _images(
        self, record: Policy | Endorsement, batch_dir: Path
    ) -> tuple[PreparedImages | None, list[ImageEntry]]:
        if not record.images:
            return None, []
        sources = [
            ImageSource(index=i, kind=img.kind, label=img.label, path=resolve_image_path(batch_dir, img.path))
            for i, img in enumerate(record.images)
        ]
        result = prepare_images(sources, policy_no=record.policy_no)
        entries: dict[int, ImageEntry] = {}
        for page in result.pages:
            entry = entries.get(page.index)
            if entry is None:
                entries[page.index] = ImageEntry(
                    index=page.index,
                    kind=page.kind,
                    label=record.images[page.index].label,
                    source_sha256=page.source_sha256,
                    source_size=page.source_size,
                    pages=1,
                )
            else:
                entries[page.index] = ImageEntry(**{**entry.__dict__, "pages": entry.pages + 1})
        return result, [entries[i] for i in sorted(entries)]

    def _upload(self, parts: Sequence[tuple[Part, str]], *, retain_until: datetime) -> None:
        with self.clock.measure("upload"):
            self._upload_parts(parts, retain_until=retain_until)

    def _upload_parts(self, parts: Sequence[tuple[Part, str]], *, retain_until: datetime) -> None:
        for part, key in parts:
            content_type = "application/json" if part.name.endswith(".json") else "application/pdf"
            self.store.put(
                key, part.data, sha256=part.hashed, retain_until=retain_until, content_type=content_type
            )

    def _adopt(
        self, manifest_key: str, record_sha256: str | None, *, retain_until: datetime
    ) -> dict[str, Any] | None:
        """An uploaded but unindexed version of this record (a crash before the index commit), or None."""
        info = self.store.head(manifest_key)
        if info is None:
            return None
        if info.sha256 is None:  # killed between publishing the manifest and recording its hash
            info = self.store.recover(manifest_key, retain_until=retain_until)
            if info is None or info.sha256 is None:
                return None
        body = json.loads(self.store.get(manifest_key, sha256=info.sha256))
        if record_sha256 is not None and body.get("record_sha256") != record_sha256:
            raise _Refused(
                "record_id",
                f"the archive already holds {manifest_key.rsplit('/', 2)[-2]} of this policy from another "
                "record; "
                "it is reported for audit, never overwritten",
            )
        for part in body["parts"]:
            found = self.store.head(part["key"])
            if found is None or found.sha256 != part["sha256"]:
                raise IssuanceError(f"an unindexed version at {manifest_key} lacks its part {part['name']}")
        body["_manifest"] = {"key": manifest_key, "sha256": info.sha256, "size": info.size}
        logger.info("adopting %s, uploaded by an interrupted run", manifest_key)
        return body

    def _publish(
        self, parts: Sequence[tuple[Part, str]], *, manifest: Part, manifest_key: str, retain_until: datetime
    ) -> dict[str, Any]:
        """Upload the parts, then the manifest last (the write order); the manifest's body, as adopted."""
        self._upload([*parts, (manifest, manifest_key)], retain_until=retain_until)
        return _published(manifest, manifest_key)

    def _version_facts(
        self,
        body: dict[str, Any],
        *,
        policy_no: str,
        retain_until: datetime,
        record_id: str,
        batch_id: str | None,
        endorsement_no: str | None = None,
    ) -> VersionFacts:
        """The index's row for a version, from its manifest (freshly uploaded or adopted)."""
        seal = body.get("seal") or {}
        manifest = body["_manifest"]
        return VersionFacts(
            policy_no=policy_no,
            version=body["version"],
            kind=body["kind"],
            created_at=datetime.fromisoformat(body["created_at"]),
            customer=self._stored(body, "customer.pdf"),
            bundle=self._stored(body, "bundle.pdf"),
            manifest=StoredObject(manifest["key"], manifest["sha256"], manifest["size"]),
            retain_until=retain_until,
            record_id=record_id,
            endorsement_no=endorsement_no,
            batch_id=batch_id,
            seal_id=seal.get("id"),
            seal_version=seal.get("version"),
        )

    @staticmethod
    def _stored(body: dict[str, Any], name: str) -> StoredObject:
        part = next(p for p in body["parts"] if p["name"] == name)
        return StoredObject(part["key"], part["sha256"], part["size"], part.get("pages", 0))

    def file_policy(self, policy: Policy, *, raw: RawRecord, batch_dir: Path, batch_id: str | None) -> Filed:
        """Version 1 of a new policy: sealed customer copy, archive copy with images, manifest, index."""
        result = self.file_policies([(policy, raw)], batch_dir=batch_dir, batch_id=batch_id)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def file_policies(
        self, items: Sequence[tuple[Policy, RawRecord]], *, batch_dir: Path, batch_id: str | None
    ) -> list[Filed | Exception]:
        """``file_policy`` for several new policies at once, in order: each its ``Filed`` or its error.

        The documents are made together (``DocumentMaker.policy_pdfs``: one LibreOffice document for the
        schedules of one template), each version is published alone (parts, then its manifest), and the
        index rows and ledger events of all of them commit in one transaction; if another writer got to
        one of them first, they are committed one by one so that only that record fails. Raises
        ``ComponentUnavailable`` (LibreOffice, the store or the index is down) for all of them: what was
        published is adopted by the next run.
        """
        results: list[Filed | Exception | None] = [None] * len(items)
        plans: dict[int, _PolicyPlan] = {}
        for i, (policy, raw) in enumerate(items):
            try:
                plans[i] = self._plan_policy(policy, raw)
            except ComponentUnavailable:
                raise
            except (_Refused, IssuanceError) as e:
                results[i] = e
        # Images are read as each customer copy is made, after the schedules went to LibreOffice (which
        # waits for them at the start of a run). They were checked when the record was read; one that
        # fails now fails its own record, and ComponentUnavailable (no title font) the whole group.
        images: dict[int, tuple[PreparedImages | None, list[ImageEntry]]] = {}
        fresh = [i for i, plan in plans.items() if plan.body is None]

        def archive_copy_for(k: int, customer: bytes) -> bytes:
            policy = items[fresh[k]][0]
            with self.clock.measure("images"):
                prepared, entries = images[fresh[k]] = self._images(policy, batch_dir)
            title = f"{self.registry.products[policy.product_code].name}保险单 {policy.policy_no}"
            with self.clock.measure("bundle"):
                return archive_copy(customer, images=prepared, entries=entries, title=title)

        documents = self.maker.policy_pdfs([items[i][0] for i in fresh], follow_up=archive_copy_for)
        versions: dict[int, tuple[list[tuple[Part, str]], Part]] = {}
        for i, document in zip(fresh, documents, strict=True):
            if isinstance(document, IssuanceError):
                results[i] = document
                del plans[i]
                continue
            try:
                versions[i] = self._policy_parts(items[i][0], plans[i], document, images[i][1], batch_id)
            except IssuanceError as e:
                results[i] = e
                del plans[i]
        # the parts of every version, then their manifests (the write order), each step one call to the
        # store, so that its durability barriers are shared (LocalStore: two syncfs for the lot)
        for stage in ("parts", "manifests"):
            uploads = [
                (i, part, key, plans[i].retain)
                for i, (parts, body_part) in versions.items()
                for part, key in (parts if stage == "parts" else [(body_part, plans[i].manifest_key)])
            ]
            for i, error in self._upload_many(uploads).items():
                del versions[i]
                if stage == "manifests" and isinstance(error, ObjectConflict):
                    # another run published this version first: the same record is adopted, as after a
                    # crash; another record's version stays a conflict
                    try:
                        plans[i].body = self._adopt(
                            plans[i].manifest_key, plans[i].record_sha, retain_until=plans[i].retain
                        )
                    except (_Refused, IssuanceError) as e:
                        error = e
                    if plans[i].body is not None:
                        plans[i].adopted = True
                        continue
                results[i] = error
                del plans[i]
        for i, (_parts, body_part) in versions.items():
            plans[i].body = _published(body_part, plans[i].manifest_key)
        news = {i: self._new_policy(items[i][0], plan, batch_id) for i, plan in plans.items()}
        with self.clock.measure("index"):
            try:
                self.index.archive_policies(list(news.values()))
            except IndexConflict:
                for i, new in news.items():  # find the one another writer indexed first
                    try:
                        self.index.archive_policies([new])
                    except IndexConflict as e:
                        by_another = self._filed_by_another(items[i][0].record_id, plans[i].record_sha)
                        results[i] = _FiledByAnother() if by_another else e
            mark_used_many(
                self.index,
                [
                    DocumentSerial(
                        serial=items[i][0].print_serial,
                        policy_no=new.facts.policy_no,
                        version=1,
                        at=new.version.created_at,
                        by=items[i][0].issued_by,
                    )
                    for i, new in news.items()
                    if results[i] is None and items[i][0].print_serial
                ],
            )
        for i, new in news.items():
            if results[i] is None:
                policy = items[i][0]
                self._remember(policy)
                results[i] = Filed(
                    1,
                    (new.version.customer.key, new.version.bundle.key, new.version.manifest.key),
                    plans[i].adopted,
                    plans[i].missing,
                )
        return [r for r in results if r is not None]

    def _plan_policy(self, policy: Policy, raw: RawRecord) -> _PolicyPlan:
        """Where version 1 of ``policy`` goes, and its manifest if an interrupted run uploaded it."""
        product = self.registry.products[policy.product_code]
        prefix = key_prefix(policy)
        folder = f"{prefix}/v1-issue"
        manifest_key = f"{folder}/manifest.json"
        record_sha = content_hash(raw.data or {})
        retain = retention_until(policy.period.start, policy.period.end)
        missing = tuple(
            k for k in required_images(policy, product) if k not in {i.kind for i in policy.images}
        )
        body = self._adopt(manifest_key, record_sha, retain_until=retain)
        return _PolicyPlan(
            prefix=prefix,
            folder=folder,
            manifest_key=manifest_key,
            record_sha=record_sha,
            retain=retain,
            missing=missing,
            raw=raw,
            body=body,
            adopted=body is not None,
        )

    def _policy_parts(
        self,
        policy: Policy,
        plan: _PolicyPlan,
        document: IssuedDocument,
        entries: list[ImageEntry],
        batch_id: str | None,
    ) -> tuple[list[tuple[Part, str]], Part]:
        """Customer copy and archive copy (``document.follow_up``) with their keys, and the manifest."""
        assert document.follow_up is not None
        customer = Part("customer.pdf", document.pdf, document.pages)
        pages = document.pages + sum(e.pages for e in entries)
        bundle = Part("bundle.pdf", document.follow_up, pages, extends=customer)
        parts = [(customer, _part_key(plan.folder, customer)), (bundle, _part_key(plan.folder, bundle))]
        body_part = manifest(
            policy_no=policy.policy_no,
            version=1,
            kind="issue",
            record=plan.raw.data,
            record_sha256=plan.record_sha,
            parts=parts,
            images=entries,
            templates=document.templates,
            seal=document.seal,
            batch_id=batch_id,
            operator=self.operator,
            clerk=policy.issued_by,
            created_at=datetime.now(UTC),
            missing_images=plan.missing,
        )
        return parts, body_part

    def _upload_many(self, uploads: Sequence[tuple[int, Part, str, datetime]]) -> dict[int, IssuanceError]:
        """Put (owner, part, key, retain until) in one ``put_many``; the error of each owner whose part
        the store refused (the first one). ``StoreError`` (the store is down) is raised for all."""
        if not uploads:
            return {}
        with self.clock.measure("upload"):
            outcomes = self.store.put_many(
                [
                    PutItem(
                        key=key,
                        data=part.data,
                        sha256=part.hashed,
                        retain_until=retain,
                        content_type="application/json" if part.name.endswith(".json") else "application/pdf",
                    )
                    for _, part, key, retain in uploads
                ]
            )
        errors: dict[int, IssuanceError] = {}
        for (owner, _part, _key, _retain), outcome in zip(uploads, outcomes, strict=True):
            if isinstance(outcome, IssuanceError):
                errors.setdefault(owner, outcome)
            elif isinstance(outcome, Exception):
                errors.setdefault(owner, IssuanceError(f"the object store refused a part: {outcome}"))
        return errors

    def _filed_by_another(self, record_id: str, record_sha: str) -> bool:
        """Whether the index holds ``record_id`` with this content: filed by another run meanwhile."""
        known = self.index.records([record_id]).get(record_id)
        return known is not None and known.content_sha256 == record_sha

    @contextlib.contextmanager
    def _unless_filed_by_another(self, record_id: str, record_sha: str) -> Iterator[None]:
        try:
            yield
        except IndexConflict:
            if self._filed_by_another(record_id, record_sha):
                raise _FiledByAnother() from None
            raise

    def _new_policy(self, policy: Policy, plan: _PolicyPlan, batch_id: str | None) -> NewPolicy:
        """The index's rows and ledger event for version 1 of ``policy``, from its manifest."""
        assert plan.body is not None
        version = self._version_facts(
            plan.body,
            policy_no=policy.policy_no,
            retain_until=plan.retain,
            record_id=policy.record_id,
            batch_id=batch_id,
        )
        issued_at = policy.issued_at or datetime.now(UTC)
        return NewPolicy(
            facts=_policy_facts(policy, issued_at=issued_at, prefix=plan.prefix, retain_until=plan.retain),
            version=version,
            record=RecordFacts(
                policy.record_id, plan.record_sha, "policy", policy.policy_no, batch_id, plan.raw.line
            ),
            missing_images=list(plan.body.get("missing_images", plan.missing)),
            event=LedgerEvent(
                self.operator,
                "policy.archived",
                policy.policy_no,
                {
                    "version": 1,
                    "record_id": policy.record_id,
                    "batch_id": batch_id,
                    "clerk": policy.issued_by,
                    "manifest": plan.manifest_key,
                    "manifest_sha256": version.manifest.sha256,
                    "adopted": plan.adopted,
                },
            ),
        )

    def file_endorsement(
        self,
        endorsement: Endorsement,
        policy: Policy,
        *,
        raw: RawRecord,
        batch_dir: Path,
        batch_id: str | None,
    ) -> Filed:
        """A new version of an archived policy: the customer copy grows by the sealed endorsement."""
        row = self.index.policy_row(endorsement.policy_no)
        if row is None:
            raise _Refused("policy_no", f"policy {endorsement.policy_no} is not archived")
        previous = self.index.versions(endorsement.policy_no)[-1]
        n = previous.version + 1
        folder = f"{row.key_prefix}/v{n}-endorsement"
        manifest_key = f"{folder}/manifest.json"
        record_sha = content_hash(raw.data or {})
        retain = max(retention_until(policy.period.start, policy.period.end), as_utc(previous.retain_until))

        body = self._adopt(manifest_key, record_sha, retain_until=retain)
        adopted = body is not None
        if body is None:
            document = self.maker.endorsement_pdf(endorsement, policy)
            product = self.registry.products[policy.product_code]
            title = f"{product.name}保险单 {policy.policy_no}"
            before_customer = self.store.get(previous.customer_key, sha256=previous.customer_sha256)
            before_bundle = self.store.get(previous.bundle_key, sha256=previous.bundle_sha256)
            customer_pdf = append_endorsement(
                before_customer, document.pdf, endorsement_no=endorsement.endorsement_no, title=title
            )
            bundle_pdf = append_endorsement(
                before_bundle,
                document.pdf,
                endorsement_no=endorsement.endorsement_no,
                title=f"{title}（档案件）",
            )
            with self.clock.measure("images"):
                prepared, entries = self._images(endorsement, batch_dir)
            if prepared is not None:
                bundle_pdf = add_images(bundle_pdf, images=prepared, entries=entries)
            customer = Part("customer.pdf", customer_pdf, page_count(customer_pdf))
            bundle = Part("bundle.pdf", bundle_pdf, page_count(bundle_pdf))
            parts = [(customer, _part_key(folder, customer)), (bundle, _part_key(folder, bundle))]
            body_part = manifest(
                policy_no=endorsement.policy_no,
                version=n,
                kind="endorsement",
                record=raw.data,
                record_sha256=record_sha,
                parts=parts,
                images=entries,
                templates=document.templates,
                seal=document.seal,
                batch_id=batch_id,
                operator=self.operator,
                clerk=endorsement.issued_by,
                created_at=datetime.now(UTC),
                missing_images=[k for k in row.missing_images.split(",") if k],
                previous={"version": str(previous.version), "manifest": previous.manifest_key},
                extra={"endorsement_no": endorsement.endorsement_no},
            )
            try:
                body = self._publish(
                    parts, manifest=body_part, manifest_key=manifest_key, retain_until=retain
                )
            except ObjectConflict:  # another run published this version first: adopted if the same record
                body = self._adopt(manifest_key, record_sha, retain_until=retain)
                if body is None:
                    raise
                adopted = True
        version = self._version_facts(
            body,
            policy_no=endorsement.policy_no,
            retain_until=retain,
            record_id=endorsement.record_id,
            batch_id=batch_id,
            endorsement_no=endorsement.endorsement_no,
        )
        with self.clock.measure("index"), self._unless_filed_by_another(endorsement.record_id, record_sha):
            self.index.archive_version(
                version=version,
                record=RecordFacts(
                    endorsement.record_id,
                    record_sha,
                    "endorsement",
                    endorsement.policy_no,
                    batch_id,
                    raw.line,
                ),
                event=LedgerEvent(
                    self.operator,
                    "endorsement.archived",
                    endorsement.policy_no,
                    {
                        "version": n,
                        "record_id": endorsement.record_id,
                        "endorsement_no": endorsement.endorsement_no,
                        "batch_id": batch_id,
                        "clerk": endorsement.issued_by,
                        "manifest": manifest_key,
                        "manifest_sha256": version.manifest.sha256,
                        "adopted": adopted,
                    },
                ),
            )
        if endorsement.print_serial:
            mark_used(
                self.index,
                serial=endorsement.print_serial,
                policy_no=endorsement.policy_no,
                version=n,
                at=version.created_at,
                by=endorsement.issued_by,
            )
        return Filed(n, (version.customer.key, version.bundle.key, manifest_key), adopted)

    def attach(
        self, policy_no: str, *, kind: str, files: Sequence[Path], by: str, label: str | None = None
    ) -> Filed:
        """``issuance attach``: late underwriting images filed as a supplement version.

        The customer copy is unchanged (the new version points at the same object); the archive copy
        gains the image pages; the kind no longer counts as missing.
        """
        from core.records import IMAGE_KIND_LABELS
        from pipeline.images import image_problem

        if kind not in IMAGE_KIND_LABELS:
            raise UsageError(f"unknown image kind {kind}", hint="one of: " + ", ".join(IMAGE_KIND_LABELS))
        if kind == "other" and not label:
            raise UsageError("an image of kind 'other' needs --label")
        row = self.index.policy_row(policy_no)
        if row is None:
            raise UsageError(
                f"policy {policy_no} is not in the archive", hint="check the number with issuance find"
            )
        sources = []
        for i, file in enumerate(files):
            if not file.is_file():
                raise UsageError(f"{file} is not a file")
            if problem := image_problem(file):
                raise UsageError(f"{file.name}: {problem}")
            sources.append(ImageSource(index=i, kind=kind, label=label, path=file.resolve()))
        previous = self.index.versions(policy_no)[-1]
        n = previous.version + 1
        folder = f"{row.key_prefix}/v{n}-supplement"
        manifest_key = f"{folder}/manifest.json"
        result = prepare_images(sources, policy_no=policy_no)
        entries = [
            ImageEntry(
                index=p.index,
                kind=p.kind,
                label=label,
                source_sha256=p.source_sha256,
                source_size=p.source_size,
                pages=1,
            )
            for p in result.pages
        ]
        before_bundle = self.store.get(previous.bundle_key, sha256=previous.bundle_sha256)
        bundle_pdf = add_images(before_bundle, images=result, entries=entries)
        bundle = Part("bundle.pdf", bundle_pdf, page_count(bundle_pdf))
        missing = [k for k in row.missing_images.split(",") if k and k != kind]
        customer = StoredObject(
            previous.customer_key, previous.customer_sha256, previous.customer_size, previous.customer_pages
        )
        retain = as_utc(previous.retain_until)
        bundle_key = _part_key(folder, bundle)
        body_part = manifest(
            policy_no=policy_no,
            version=n,
            kind="supplement",
            record=None,
            record_sha256=None,
            parts=[(Part("customer.pdf", b"", customer.pages), customer.key), (bundle, bundle_key)],
            images=entries,
            templates={},
            seal=None,
            batch_id=None,
            operator=self.operator,
            clerk=by,
            created_at=datetime.now(UTC),
            missing_images=missing,
            previous={"version": str(previous.version), "manifest": previous.manifest_key},
        )
        # the customer copy is the previous object: the manifest names it with its real hash and size
        body = json.loads(body_part.data)
        body["parts"][0].update(sha256=customer.sha256, size=customer.size)
        body_part = Part(
            "manifest.json", json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
        )
        self._upload([(bundle, bundle_key), (body_part, manifest_key)], retain_until=retain)
        with self.clock.measure("index"):
            self.index.archive_version(
                version=VersionFacts(
                    policy_no=policy_no,
                    version=n,
                    kind="supplement",
                    created_at=datetime.fromisoformat(body["created_at"]),
                    customer=customer,
                    bundle=StoredObject(bundle_key, bundle.sha256, bundle.size, bundle.pages),
                    manifest=StoredObject(manifest_key, body_part.sha256, body_part.size),
                    retain_until=retain,
                ),
                record=None,
                event=LedgerEvent(
                    by,
                    "supplement.archived",
                    policy_no,
                    {
                        "version": n,
                        "kind": kind,
                        "files": len(files),
                        "manifest": manifest_key,
                        "operator": self.operator,
                    },
                ),
                missing_images=missing,
            )
        return Filed(n, (bundle_key, manifest_key), False, tuple(missing))
