"""Filing records into the archive: ``issuance run`` and ``issuance attach``.

Per record: the pipeline makes the documents and the parts of the version (``pipeline.documents``,
``pipeline.bundle``), then the archive's one writer of versions stores and indexes them
(``archive.versions``: keys, parts → manifest last → index rows and ledger event in one transaction,
adoption of what a crashed run left, serial marks). ``Filing`` only orchestrates the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from archive.index import Index
from archive.serials import filing_refusals
from archive.store import ObjectStore, retention_until
from archive.versions import (
    ArchivedPolicies,
    Draft,
    Filed,
    PolicyPlan,
    Reused,
    VersionWriter,
    same_record,
)
from core import lifecycle
from core.errors import ComponentUnavailable, FiledByAnother, IssuanceError, UsageError, VersionRefused
from core.lifecycle import PolicyState
from core.manifest import ImageEntry, StoredObject
from core.products import required_images
from core.records import IMAGE_KIND_LABELS, Endorsement, Policy, RawRecord, content_hash
from pipeline.bundle import (
    archive_copy,
    endorsement_parts,
    late_images,
    policy_parts,
    record_images,
    supplement_part,
)
from pipeline.documents import DocumentMaker
from pipeline.intake import PreparedImages
from pipeline.validate import Reason
from stamps.signing import PdfSigner

# run.py (the batch loop) takes Filed, _Refused and _FiledByAnother from here
__all__ = ["Filed", "Filing", "_FiledByAnother", "_Refused"]


class _Refused(VersionRefused):
    """A record that cannot be filed for a reason that names its field (``reason``, for the report)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.reason = Reason(field, message)


# Another run (the same batch started twice) filed this very record first: already archived.
_FiledByAnother = FiledByAnother


# Signatures waiting for their timestamps at once: each holds a thread while its TSA answers, and a
# group of records is only filed when its last signature is back (the TSA's latency hidden behind the
# other records' work: ``bench/throughput_bench.py`` measures a TSA that answers late).
SIGNING_THREADS = 32

_Copies = tuple[bytes, bytes]  # a new policy's signed customer copy and archive copy


class Filing:
    """Files records into one archive (store + index). Thread-safe; one per run or per watcher.

    ``signer``: every PDF filed is signed last (DESIGN.md invariant 8); None files them unsigned.
    ``unknown_serials``: ``[serials] unknown`` ("record" or "refuse", ``archive.serials.filing_refusals``)."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        index: Index,
        maker: DocumentMaker,
        operator: str,
        signer: PdfSigner | None = None,
        unknown_serials: str = "record",
    ) -> None:
        self.store = store
        self.unknown_serials = unknown_serials
        self.index = index
        self.maker = maker
        self.registry = maker.registry
        self.operator = operator
        self.signer = signer
        self.clock = maker.clock  # one split per run: documents and filing stages together
        self.writer = VersionWriter(store=store, index=index, operator=operator, clock=self.clock)
        self.policies = ArchivedPolicies(store=store, index=index)
        self._signing = (
            ThreadPoolExecutor(max_workers=SIGNING_THREADS, thread_name_prefix="sign")
            if signer is not None and signer.timestamper is not None
            else None
        )

    def close(self) -> None:
        if self._signing is not None:
            self._signing.shutdown(wait=True)

    @property
    def signature(self) -> dict[str, str | None] | None:
        """What the manifest records of the signer (None: unsigned)."""
        return self.signer.facts if self.signer is not None else None

    def sign(self, pdf: bytes) -> bytes:
        """``pdf`` signed last (unchanged without a signer); the signer's own CPU time is counted apart
        from the waiting for a timestamp (the report's ``signing``)."""
        if self.signer is None:
            return pdf
        began = time.thread_time()
        with self.clock.measure("sign"):
            signed = self.signer.sign(pdf)
        self.clock.count_cpu("sign", time.thread_time() - began)
        return signed

    def sign_all(self, pdfs: Sequence[bytes]) -> list[bytes]:
        """``sign`` for each, at once on the signing threads when signatures wait for a TSA."""
        if self._signing is None or len(pdfs) < 2:
            return [self.sign(pdf) for pdf in pdfs]
        return list(self._signing.map(self.sign, pdfs))

    def _later(self, work: Callable[[], _Copies]) -> Future[_Copies] | _Copies:
        """``work`` on a signing thread when signatures wait for a TSA, else at once."""
        if self._signing is None:
            return work()
        return self._signing.submit(work)

    def archived_policy(self, policy_no: str) -> PolicyState | None:
        """The archived policy as it stands: its record with the endorsements since applied
        (``core.lifecycle``), read from the versions' manifests (hash-verified)."""
        return self.policies.get(policy_no)

    def _title(self, policy: Policy) -> str:
        return f"{self.registry.products[policy.product_code].name}保险单 {policy.policy_no}"

    # --- new policies ------------------------------------------------------------------------------------

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
        schedules of one template), then the writer files them together (``VersionWriter.file_policies``:
        the parts, the manifests, one index transaction). Raises ``ComponentUnavailable`` (LibreOffice,
        the store or the index is down) for all of them: what was published is adopted by the next run.
        """
        results: list[Filed | Exception | None] = [None] * len(items)
        plans: dict[int, PolicyPlan] = {}
        # a voided serial, or another policy's, is refused before anything is stored (issue 25, item 5)
        serials = filing_refusals(
            self.index, [(p.print_serial, p.policy_no) for p, _ in items], unknown=self.unknown_serials
        )
        for i, ((policy, raw), refusal) in enumerate(zip(items, serials, strict=True)):
            if refusal is not None:
                results[i] = _Refused("print_serial", refusal)
                continue
            try:
                plans[i] = self.writer.plan_policy(policy, raw, missing=self._missing_images(policy))
            except ComponentUnavailable:
                raise
            except IssuanceError as e:
                results[i] = e
        # Images are read as each customer copy is made, after the schedules went to LibreOffice (which
        # waits for them at the start of a run). They were checked when the record was read; one that
        # fails now fails its own record, and ComponentUnavailable (no title font) the whole group.
        images: dict[int, tuple[PreparedImages | None, list[ImageEntry]]] = {}
        fresh = [i for i, plan in plans.items() if plan.stored is None]

        def archive_copy_for(k: int, customer: bytes) -> object:
            policy = items[fresh[k]][0]
            with self.clock.measure("images"):
                prepared, entries = images[fresh[k]] = record_images(policy, batch_dir)

            def sign_both() -> tuple[bytes, bytes]:
                # the customer copy signed, then its archive copy (its bytes the prefix) signed after
                # the image pages (issue 23, item 1)
                signed = self.sign(customer)
                with self.clock.measure("bundle"):
                    bundle = archive_copy(signed, images=prepared, entries=entries, title=self._title(policy))
                return signed, self.sign(bundle)

            return self._later(sign_both)

        documents = self.maker.policy_pdfs([items[i][0] for i in fresh], follow_up=archive_copy_for)
        drafts: dict[int, Draft] = {}
        for i, document in zip(fresh, documents, strict=True):
            if isinstance(document, IssuanceError):
                results[i] = document
                del plans[i]
                continue
            copies = document.follow_up
            try:
                customer, bundle = copies.result() if isinstance(copies, Future) else copies
            except IssuanceError as e:  # a signature that failed (the TSA): this record only
                results[i] = e
                del plans[i]
                continue
            entries = images[i][1]
            drafts[i] = plans[i].draft(
                policy_parts(customer, bundle, pages=document.pages, entries=entries),
                images=entries,
                templates=document.templates,
                seal=document.seal,
                batch_id=batch_id,
                signature=self.signature,
            )
        filed = self.writer.file_policies(
            [(plan, drafts.get(i)) for i, plan in plans.items()], batch_id=batch_id
        )
        for i, result in zip(plans, filed, strict=True):
            results[i] = result
            if isinstance(result, Filed):
                self.policies.remember(PolicyState.of(plans[i].policy), version=1)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _missing_images(self, policy: Policy) -> tuple[str, ...]:
        """The image kinds the product requires that the record came without."""
        product = self.registry.products[policy.product_code]
        given = {i.kind for i in policy.images}
        return tuple(k for k in required_images(policy, product) if k not in given)

    # --- later versions ----------------------------------------------------------------------------------

    def file_endorsement(
        self,
        endorsement: Endorsement,
        *,
        raw: RawRecord,
        batch_dir: Path,
        batch_id: str | None,
    ) -> Filed:
        """A new version of an archived policy: the customer copy grows by the sealed endorsement.

        The lifecycle rules the batch's checks applied are checked again here against the policy as the
        archive holds it now (a watcher or another run may have filed an endorsement since).
        """
        row = self.index.policy_row(endorsement.policy_no)
        versions = self.index.versions(endorsement.policy_no)
        state = self.policies.get(endorsement.policy_no, versions=versions)
        if row is None or state is None:
            raise _Refused("policy_no", f"policy {endorsement.policy_no} is not archived")
        codes = self.registry.clause_codes(state.policy.product_code)
        problems = lifecycle.problems(state, endorsement, clause_codes=codes)
        # a record another run filed meanwhile is in the state already: it ends already archived
        if problems and not self.index.records([endorsement.record_id]):
            raise _Refused(*problems[0])
        policy = state.policy
        (serial,) = filing_refusals(
            self.index, [(endorsement.print_serial, endorsement.policy_no)], unknown=self.unknown_serials
        )
        if serial is not None:
            raise _Refused("print_serial", serial)
        previous = versions[-1]
        slot = self.writer.next_slot(
            row, previous, "endorsement", retain_until=retention_until(policy.period.start, policy.period.end)
        )
        record_sha = content_hash(raw.data or {})
        stored = self.writer.adopt(slot, same=same_record(record_sha))
        if stored is None:
            document = self.maker.endorsement_pdf(endorsement, policy, version=slot.version)
            with self.clock.measure("images"):
                prepared, entries = record_images(endorsement, batch_dir)
            parts = endorsement_parts(
                self.store.get(previous.customer_key, sha256=previous.customer_sha256),
                self.store.get(previous.bundle_key, sha256=previous.bundle_sha256),
                document.pdf,
                endorsement_no=endorsement.endorsement_no,
                title=self._title(policy),
                images=prepared,
                entries=entries,
                sign_all=self.sign_all,
                attached=document.attached,
            )
            draft = Draft(
                parts=parts,
                clerk=endorsement.issued_by,
                record=raw.data,
                record_sha256=record_sha,
                images=entries,
                templates=document.templates,
                seal=document.seal,
                batch_id=batch_id,
                missing_images=[k for k in row.missing_images.split(",") if k],
                previous={"version": str(previous.version), "manifest": previous.manifest_key},
                extra={"endorsement_no": endorsement.endorsement_no},
                signature=self.signature,
            )
            stored = self.writer.publish(slot, draft)
        filed = self.writer.commit_endorsement(
            slot, stored, endorsement, raw=raw, record_sha256=record_sha, batch_id=batch_id, before=state
        )
        self.policies.remember(lifecycle.after(state, endorsement), version=filed.version)
        return filed

    def attach(
        self, policy_no: str, *, kind: str, files: Sequence[Path], by: str, label: str | None = None
    ) -> Filed:
        """``issuance attach``: late underwriting images filed as a supplement version.

        The customer copy is unchanged (the new version points at the same object); the archive copy
        gains the image pages; the kind no longer counts as missing.
        """
        if kind not in IMAGE_KIND_LABELS:
            raise UsageError(f"unknown image kind {kind}", hint="one of: " + ", ".join(IMAGE_KIND_LABELS))
        if kind == "other" and not label:
            raise UsageError("an image of kind 'other' needs --label")
        row = self.index.policy_row(policy_no)
        if row is None:
            raise UsageError(
                f"policy {policy_no} is not in the archive", hint="check the number with issuance find"
            )
        prepared, entries = late_images(files, kind=kind, label=label, policy_no=policy_no)
        previous = self.index.versions(policy_no)[-1]
        slot = self.writer.next_slot(row, previous, "supplement")
        bundle = supplement_part(
            self.store.get(previous.bundle_key, sha256=previous.bundle_sha256),
            images=prepared,
            entries=entries,
            sign_all=self.sign_all,
        )
        customer = StoredObject(
            previous.customer_key, previous.customer_sha256, previous.customer_size, previous.customer_pages
        )
        missing = [k for k in row.missing_images.split(",") if k and k != kind]
        draft = Draft(
            parts=[Reused("customer.pdf", customer), bundle],
            clerk=by,
            images=entries,
            missing_images=missing,
            previous={"version": str(previous.version), "manifest": previous.manifest_key},
            signature=self.signature,
        )
        stored = self.writer.publish(slot, draft)
        return self.writer.commit_supplement(
            slot, stored, kind=kind, files=len(files), by=by, missing=missing
        )
