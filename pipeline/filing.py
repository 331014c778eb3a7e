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

import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from archive.index import (
    Index,
    IndexConflict,
    LedgerEvent,
    PartyFacts,
    PolicyFacts,
    RecordFacts,
    StoredObject,
    VersionFacts,
    as_utc,
)
from archive.serials import mark_used
from archive.store import ObjectStore, retention_until
from pipeline.batch import Accepted, RecordChecker, content_hash
from pipeline.batchfile import RawRecord, read_batch
from pipeline.bundle import (
    ImageEntry,
    Part,
    add_images,
    append_endorsement,
    archive_copy,
    manifest,
    page_count,
)
from pipeline.documents import DocumentMaker
from pipeline.errors import ComponentUnavailable, ConversionFailed, IssuanceError, TemplateError, UsageError
from pipeline.idcheck import scrub
from pipeline.images import resolve_image_path
from pipeline.intake import ImageSource, image_pages
from pipeline.products import Product
from pipeline.records import Endorsement, Policy, parse_record
from pipeline.report import REJECTED, BatchReport, Outcome
from pipeline.validate import Reason

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")

ARCHIVED = "archived"
ALREADY_ARCHIVED = "already_archived"
STATUSES = (ARCHIVED, ALREADY_ARCHIVED, REJECTED)


class _Refused(Exception):
    """A record that cannot be filed for a reason that names its field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.reason = Reason(field, message)


@dataclass(frozen=True)
class Filed:
    """What filing one record produced."""

    version: int
    keys: tuple[str, ...]
    adopted: bool
    missing_images: tuple[str, ...] = ()


def required_images(policy: Policy, product: Product) -> tuple[str, ...]:
    """The image kinds this policy must have: an organisation shows its business licence, not an ID card."""
    kinds = list(product.required_images)
    if policy.applicant.party_type == "organization" and {"id_front", "id_back"} & set(kinds):
        kinds = [k for k in kinds if k not in ("id_front", "id_back")] + ["business_license"]
    return tuple(kinds)


def key_prefix(policy: Policy) -> str:
    """``{branch}/{yyyy}/{mm}/{policy_no}``: no personal data, stable across re-runs (approval month)."""
    approved = policy.underwriting.approved_at.astimezone(CHINA)
    return f"{policy.branch.code}/{approved:%Y}/{approved:%m}/{policy.policy_no}"


# Hex digits spelled as letters: a run of hex digits can look like a mobile number (1[3-9] + 9 digits)
# and keys must carry nothing shaped like personal data, so the digest in a part's name has no digits.
_DIGITS_AS_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def _part_key(folder: str, part: Part) -> str:
    """``{folder}/{stem}-{first 12 hex digits of the SHA-256, digits spelled g–p}.{suffix}``."""
    stem, _, suffix = part.name.rpartition(".")
    return f"{folder}/{stem}-{part.sha256[:12].translate(_DIGITS_AS_LETTERS)}.{suffix}"


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
        self._policies: dict[str, Policy] = {}
        self._lock = threading.Lock()

    # --- archived policies ---------------------------------------------------------------------------

    def archived_policy(self, policy_no: str) -> Policy | None:
        """The archived policy's record, read from its first version's manifest (hash-verified)."""
        with self._lock:
            if policy_no in self._policies:
                return self._policies[policy_no]
        versions = self.index.versions(policy_no)
        if not versions:
            return None
        first = versions[0]
        data = json.loads(self.store.get(first.manifest_key, sha256=first.manifest_sha256))
        policy, reasons = parse_record(data["record"])
        if not isinstance(policy, Policy) or reasons:
            raise IssuanceError(f"the archived manifest of {policy_no} does not hold a valid policy record")
        with self._lock:
            self._policies[policy_no] = policy
        return policy

    # --- one record --------------------------------------------------------------------------------

    def _images(self, record: Policy | Endorsement, batch_dir: Path) -> tuple[bytes | None, list[ImageEntry]]:
        if not record.images:
            return None, []
        sources = [
            ImageSource(index=i, kind=img.kind, label=img.label, path=resolve_image_path(batch_dir, img.path))
            for i, img in enumerate(record.images)
        ]
        result = image_pages(sources, policy_no=record.policy_no)
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
        return result.pdf, [entries[i] for i in sorted(entries)]

    def _upload(self, parts: Sequence[tuple[Part, str]], *, retain_until: datetime) -> None:
        with self.clock.measure("upload"):
            self._upload_parts(parts, retain_until=retain_until)

    def _upload_parts(self, parts: Sequence[tuple[Part, str]], *, retain_until: datetime) -> None:
        for part, key in parts:
            content_type = "application/json" if part.name.endswith(".json") else "application/pdf"
            self.store.put(
                key, part.data, sha256=part.sha256, retain_until=retain_until, content_type=content_type
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
        body = json.loads(manifest.data)
        body["_manifest"] = {"key": manifest_key, "sha256": manifest.sha256, "size": manifest.size}
        return body

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
        product = self.registry.products[policy.product_code]
        prefix = key_prefix(policy)
        folder = f"{prefix}/v1-issue"
        manifest_key = f"{folder}/manifest.json"
        record_sha = content_hash(raw.data or {})
        retain = retention_until(policy.period.start, policy.period.end)
        issued_at = policy.issued_at or datetime.now(UTC)
        missing = tuple(
            k for k in required_images(policy, product) if k not in {i.kind for i in policy.images}
        )

        body = self._adopt(manifest_key, record_sha, retain_until=retain)
        adopted = body is not None
        if body is None:
            document = self.maker.policy_pdf(policy)
            with self.clock.measure("images"):
                image_pdf, entries = self._images(policy, batch_dir)
            title = f"{product.name}保险单 {policy.policy_no}"
            customer = Part("customer.pdf", document.pdf, document.pages)
            with self.clock.measure("bundle"):
                bundle_pdf = archive_copy(document.pdf, images=image_pdf, entries=entries, title=title)
            bundle = Part("bundle.pdf", bundle_pdf, page_count(bundle_pdf))
            parts = [(customer, _part_key(folder, customer)), (bundle, _part_key(folder, bundle))]
            body_part = manifest(
                policy_no=policy.policy_no,
                version=1,
                kind="issue",
                record=raw.data,
                record_sha256=record_sha,
                parts=parts,
                images=entries,
                templates=document.templates,
                seal=document.seal,
                batch_id=batch_id,
                operator=self.operator,
                clerk=policy.issued_by,
                created_at=datetime.now(UTC),
                missing_images=missing,
            )
            body = self._publish(parts, manifest=body_part, manifest_key=manifest_key, retain_until=retain)
        version = self._version_facts(
            body,
            policy_no=policy.policy_no,
            retain_until=retain,
            record_id=policy.record_id,
            batch_id=batch_id,
        )
        with self.clock.measure("index"):
            self.index.archive_policy(
                facts=_policy_facts(policy, issued_at=issued_at, prefix=prefix, retain_until=retain),
                version=version,
                record=RecordFacts(
                    policy.record_id, record_sha, "policy", policy.policy_no, batch_id, raw.line
                ),
                missing_images=list(body.get("missing_images", missing)),
                event=LedgerEvent(
                    self.operator,
                    "policy.archived",
                    policy.policy_no,
                    {
                        "version": 1,
                        "record_id": policy.record_id,
                        "batch_id": batch_id,
                        "clerk": policy.issued_by,
                        "manifest": manifest_key,
                        "manifest_sha256": version.manifest.sha256,
                        "adopted": adopted,
                    },
                ),
            )
        if policy.print_serial:
            # the pre-printed form is now used by this document (never fails the policy: see mark_used)
            mark_used(
                self.index,
                serial=policy.print_serial,
                policy_no=policy.policy_no,
                version=1,
                at=version.created_at,
                by=policy.issued_by,
            )
        with self._lock:
            self._policies[policy.policy_no] = policy
        return Filed(1, (version.customer.key, version.bundle.key, manifest_key), adopted, missing)

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
                image_pdf, entries = self._images(endorsement, batch_dir)
            if image_pdf:
                bundle_pdf = add_images(bundle_pdf, images=image_pdf, entries=entries)
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
            body = self._publish(parts, manifest=body_part, manifest_key=manifest_key, retain_until=retain)
        version = self._version_facts(
            body,
            policy_no=endorsement.policy_no,
            retain_until=retain,
            record_id=endorsement.record_id,
            batch_id=batch_id,
            endorsement_no=endorsement.endorsement_no,
        )
        with self.clock.measure("index"):
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
        from pipeline.images import image_problem
        from pipeline.records import IMAGE_KIND_LABELS

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
        result = image_pages(sources, policy_no=policy_no)
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
        bundle_pdf = add_images(before_bundle, images=result.pdf, entries=entries)
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


def _input_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _base(item: Accepted) -> dict[str, Any]:
    record = item.record
    return {
        "line": item.raw.line,
        "record_id": record.record_id,
        "policy_no": record.policy_no,
        "kind": record.kind,
    }


def file_record(filing: Filing, item: Accepted, *, batch_dir: Path, batch_id: str | None) -> Outcome:
    """File one accepted record; what became of it, as the batch report's outcome.

    Shared by the thread pool (``run_batch``) and the cluster (``pipeline.cluster``). Whatever belongs to
    the record (a field, a template, a failed conversion, a conflict in the index) comes back as a
    ``rejected`` outcome naming the field; only ``ComponentUnavailable`` is raised (LibreOffice, the store
    or the index is down: that stops the batch, not just the record).
    """
    base = _base(item)
    record = item.record
    try:
        if isinstance(record, Policy):
            filed = filing.file_policy(record, raw=item.raw, batch_dir=batch_dir, batch_id=batch_id)
        else:
            assert item.policy is not None
            filed = filing.file_endorsement(
                record, item.policy, raw=item.raw, batch_dir=batch_dir, batch_id=batch_id
            )
    except _Refused as e:
        return Outcome(status=REJECTED, reasons=(e.reason,), **base)
    except ComponentUnavailable:
        raise
    except IndexConflict as e:
        return Outcome(status=REJECTED, reasons=(Reason("record_id", f"{e}; re-run the batch"),), **base)
    except TemplateError as e:
        return Outcome(status=REJECTED, reasons=(Reason("template", str(e)),), **base)
    except (ConversionFailed, IssuanceError) as e:
        field = getattr(e, "field", None) or "document"
        return Outcome(status=REJECTED, reasons=(Reason(field, str(e)),), **base)
    except Exception as e:
        logger.exception("batch %s line %d: unexpected error while filing", batch_id, item.raw.line)
        return Outcome(status=REJECTED, reasons=(Reason("document", f"internal error: {e}"),), **base)
    return Outcome(status=ARCHIVED, documents=filed.keys, **base)


def not_filed_earlier(item: Accepted) -> Outcome:
    """The outcome of a version whose previous version of the same policy in this batch was not filed."""
    message = f"policy {item.record.policy_no} could not be filed earlier in this batch"
    return Outcome(status=REJECTED, reasons=(Reason("policy_no", message),), **_base(item))


class BatchRun:
    """One run of a batch file, whoever files its records: a thread pool here, a cluster elsewhere.

    Opening it refuses an unusable file (``BatchUnreadable``, nothing written) and writes the batch's
    begin row. ``accepted`` reads and checks the records in input order and settles every record that
    needs no filing (already archived, conflicting, rejected); the caller files each record it yields
    and hands back its outcome (``finish``) or the component error that stopped it (``fail``). ``end``
    writes the batch's end row and returns the report, whose counts cover every record handled, or
    raises the first component error after recording what finished. ``finish`` and ``fail`` may be
    called from any thread.
    """

    def __init__(
        self, batch: Path, *, filing: Filing, on_record: Callable[[Outcome], None] | None = None
    ) -> None:
        self._records = read_batch(batch)
        self.filing = filing
        self.batch_dir = batch.parent
        started = datetime.now(CHINA)
        self.input_sha256 = _input_sha256(batch)
        # the input's hash ties the batch to its file; the random part keeps two runs in one second apart
        self.batch_id = f"{started:%Y%m%d-%H%M%S}-{self.input_sha256[:8]}-{secrets.token_hex(3)}"
        self.report = BatchReport(
            batch=batch.name, started_at=started, statuses=STATUSES, extra={"batch_id": self.batch_id}
        )
        self.fatal: list[ComponentUnavailable] = []
        self._on_record = on_record
        self._lock = threading.Lock()
        filing.index.begin_batch(
            batch_id=self.batch_id,
            input_name=batch.name,
            input_sha256=self.input_sha256,
            operator=filing.operator,
        )
        self._checker = RecordChecker(
            registry=filing.registry, batch_dir=batch.parent, archived_policy=filing.archived_policy
        )

    def accepted(self, *, stop: threading.Event | None = None) -> Iterator[Accepted]:
        """The records to file, in input order; stops after a component error or when ``stop`` is set."""
        index = self.filing.index
        for raw in self._records:
            if self.fatal:
                break
            if stop is not None and stop.is_set():
                self.report.extra["interrupted"] = True
                break
            known = already_archived(index, raw)
            if known is not None:
                self.finish(known)
                continue
            verdict = self._checker.check(raw)
            if isinstance(verdict, list):
                self.finish(rejected_outcome(raw, verdict))
                continue
            if isinstance(verdict.record, Policy) and index.policy_row(verdict.record.policy_no) is not None:
                reason = Reason(
                    "policy_no", f"policy {verdict.record.policy_no} is already archived by another record"
                )
                self.finish(rejected_outcome(raw, [reason]))
                continue
            yield verdict

    def finish(self, outcome: Outcome) -> None:
        """Record one record's outcome (logged if rejected, passed to ``on_record``)."""
        with self._lock:
            self.report.outcomes.append(outcome)
        if outcome.status == REJECTED:
            logger.warning(
                "batch %s line %d rejected: %s",
                self.batch_id,
                outcome.line,
                scrub("; ".join(str(r) for r in outcome.reasons)),
            )
        if self._on_record:
            self._on_record(outcome)

    def fail(self, item: Accepted, error: ComponentUnavailable) -> Outcome:
        """A component failed while filing ``item``: it is rejected with the error, and the run stops."""
        outcome = Outcome(status=REJECTED, reasons=(Reason("document", str(error)),), **_base(item))
        self.finish(outcome)
        with self._lock:
            self.fatal.append(error)
        return outcome

    def end(self) -> BatchReport:
        """Write the batch's end row; the report, or the first component error once all is recorded."""
        counts = self.report.counts()
        try:
            self.filing.index.finish_batch(
                batch_id=self.batch_id, counts=counts, operator=self.filing.operator
            )
        except ComponentUnavailable:
            if not self.fatal:
                raise
            logger.warning("batch %s: could not record its end in the index (it is down)", self.batch_id)
        if self.fatal:
            raise self.fatal[0]
        self.report.finished_at = datetime.now(CHINA)
        self.report.extra["stages"] = self.filing.clock.snapshot()
        return self.report


def run_batch(
    batch: Path,
    *,
    filing: Filing,
    workers: int,
    on_record: Callable[[Outcome], None] | None = None,
    stop: threading.Event | None = None,
) -> BatchReport:
    """``issuance run``: every record of ``batch`` ends archived, already archived, or rejected.

    Raises ``BatchUnreadable`` for an unusable file (nothing is filed) and ``ComponentUnavailable`` when
    LibreOffice, the store or the index fails for good (what was filed stays filed; a re-run goes on).

    ``stop`` set (SIGTERM in the watcher): no further record is started, the ones in flight finish, and
    the report says ``interrupted``; its counts cover the records handled. A later run does the rest.
    """
    run = BatchRun(batch, filing=filing, on_record=on_record)
    in_flight = threading.BoundedSemaphore(max(2, workers * 2))
    last_task: dict[str, Future[Outcome]] = {}  # per policy: versions are filed in input order

    def file(item: Accepted, before: Future[Outcome] | None) -> Outcome:
        if before is not None and (before.exception() is not None or before.result().status != ARCHIVED):
            return not_filed_earlier(item)
        return file_record(filing, item, batch_dir=run.batch_dir, batch_id=run.batch_id)

    def done(item: Accepted, future: Future[Outcome]) -> None:
        in_flight.release()
        try:
            outcome = future.result()
        except ComponentUnavailable as e:
            run.fail(item, e)
        else:
            run.finish(outcome)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="file") as pool:
        for item in run.accepted(stop=stop):
            in_flight.acquire()
            policy_no = item.record.policy_no
            future = pool.submit(file, item, last_task.get(policy_no))
            last_task[policy_no] = future
            future.add_done_callback(lambda f, item=item: done(item, f))
    return run.end()


def rejected_outcome(raw: RawRecord, reasons: Sequence[Reason]) -> Outcome:
    """The outcome of a record rejected before filing, with what its raw data says about it."""
    data = raw.data or {}
    return Outcome(
        line=raw.line,
        status=REJECTED,
        record_id=data.get("record_id") if isinstance(data.get("record_id"), str) else None,
        policy_no=data.get("policy_no") if isinstance(data.get("policy_no"), str) else None,
        kind=data.get("kind") if isinstance(data.get("kind"), str) else None,
        reasons=tuple(reasons),
    )


def already_archived(index: Index, raw: RawRecord) -> Outcome | None:
    """Outcome for a record the index already holds: the same content, or a conflict."""
    data = raw.data
    if not data or not isinstance(data.get("record_id"), str):
        return None
    known = index.record(data["record_id"])
    if known is None:
        return None
    base = {
        "line": raw.line,
        "record_id": data["record_id"],
        "policy_no": known.policy_no,
        "kind": known.kind,
    }
    if known.content_sha256 == content_hash(data):
        return Outcome(status=ALREADY_ARCHIVED, **base)
    message = "already archived with different content: a conflict, reported and not overwritten"
    return Outcome(status=REJECTED, reasons=(Reason("record_id", message),), **base)
