"""The archive's one writer of versions: issue, endorsement, supplement and reissue alike.

A version is its parts (customer copy, archive copy, a reissued copy), a manifest naming each part's
key, SHA-256 and size, and its index rows. The writer owns, for every kind of version:

- **the keys**: ``{branch}/{yyyy}/{mm}/{policy_no}/v{n}-{kind}/…`` (DESIGN.md, "The archive layout"),
  free of personal data; a part's name carries its content hash;
- **the write order** (DESIGN.md invariant 3): the parts, then the manifest last, then the index rows
  and the ledger event in one transaction, then the print-serial marks. Only the index commit makes a
  version exist. Parts and manifests go to the store in one ``put_many`` each, for one version or many,
  so that the store's durability barriers are shared;
- **adoption after a crash**: a manifest at the version's key that no index row names was left by an
  interrupted writer. The same request (the same record, or the same reissue) adopts it once every part
  it names is there with its SHA-256: the index is committed from it, nothing is uploaded twice. Another
  record's is refused (``VersionRefused`` naming ``record_id``), reported for audit, never overwritten;
- **the index commit** through the index's public API, and **serial marks** (``archive.serials``).

What a crash leaves, and what the next run does with it:

- parts uploaded, no manifest: orphans. Part names carry their content hash, so the next run's parts do
  not collide with them; the audit reports them (``issuance audit --orphans``).
- manifest uploaded, index not committed: adopted by the next run (above).
- index committed: the record is ``already_archived`` (same ``record_id``, same content) on every later
  run; the same ``record_id`` with other content is a conflict, reported, never overwritten.

The writer renders nothing: the documents come made (``pipeline``), the reissue's mark too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from archive.index import (
    Index,
    LedgerEvent,
    NewPolicy,
    PartyFacts,
    PolicyFacts,
    ReissueFacts,
    VersionFacts,
    as_utc,
)
from archive.index.lookups import Lifecycle
from archive.serials import DocumentSerial, mark_used, mark_used_many
from archive.store import ObjectStore, PutItem, check_key_privacy, retention_until
from core import lifecycle
from core.errors import (
    FiledByAnother,
    IndexConflict,
    IssuanceError,
    ObjectConflict,
    ObjectMissing,
    VersionRefused,
)
from core.lifecycle import PolicyState
from core.manifest import ImageEntry, Part, RecordFacts, StoredObject, manifest
from core.records import Endorsement, Policy, RawRecord, content_hash, parse_record
from core.timing import StageClock

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")

REMEMBERED_POLICIES = 2048

# Hex digits spelled as letters: a run of hex digits can look like a mobile number (1[3-9] + 9 digits)
# and keys must carry nothing shaped like personal data, so the digest in a part's name has no digits.
_DIGITS_AS_LETTERS = str.maketrans("0123456789", "ghijklmnop")
# A reissued copy has been named by its plain hex digest since reissues began; kept so that the layout
# does not change (unlike other part names, it is not checked for phone-shaped runs).
_HEX_NAMED = frozenset({"reissue.pdf"})


def key_prefix(policy: Policy) -> str:
    """``{branch}/{yyyy}/{mm}/{policy_no}``: no personal data, stable across re-runs (approval month).

    The policy number is the core system's own and may hold 18 or 20 digits in a row; validation has
    made sure it carries no party's ID or phone number, so only the other segments are judged by shape.
    """
    approved = policy.underwriting.approved_at.astimezone(CHINA)
    prefix = f"{policy.branch.code}/{approved:%Y}/{approved:%m}/{policy.policy_no}"
    return check_key_privacy(prefix, document_numbers=(policy.policy_no,))


def part_key(folder: str, part: Part) -> str:
    """``{folder}/{stem}-{first 12 hex digits of the SHA-256}.{suffix}``, the digits spelled g–p (a
    reissued copy keeps its plain hex digits)."""
    stem, _, suffix = part.name.rpartition(".")
    if part.name in _HEX_NAMED:
        return f"{folder}/{stem}-{part.sha256[:12]}.{suffix}"
    name = f"{stem}-{part.sha256[:12].translate(_DIGITS_AS_LETTERS)}.{suffix}"
    return f"{folder}/{check_key_privacy(name)}"


@dataclass(frozen=True)
class Filed:
    """What filing one version produced."""

    version: int
    keys: tuple[str, ...]
    adopted: bool
    missing_images: tuple[str, ...] = ()


@dataclass(frozen=True)
class Slot:
    """Where version ``version`` of ``policy_no`` goes, and how long its objects are kept."""

    policy_no: str
    version: int
    kind: str  # issue | endorsement | supplement | reissue
    prefix: str  # key_prefix of the policy
    retain_until: datetime
    beside: bool = False  # another request's leftover holds manifest_key: the manifest goes beside it

    @property
    def folder(self) -> str:
        return f"{self.prefix}/v{self.version}-{self.kind}"

    @property
    def manifest_key(self) -> str:
        return f"{self.folder}/manifest.json"

    def key(self, part: Part) -> str:
        """The key of a new part of this version."""
        return part_key(self.folder, part)

    def key_of_manifest(self, manifest: Part) -> str:
        """Where the manifest goes: ``manifest_key``, or beside another request's leftover there (a
        reissue's, which would otherwise block the policy's reissues) under its own hash."""
        if self.beside:
            return f"{self.folder}/manifest-{manifest.sha256[:12]}.json"
        return self.manifest_key


Same = Callable[[dict[str, Any]], bool]


def same_record(record_sha256: str) -> Same:
    """Whether a leftover manifest is of the record with this content hash."""
    return lambda body: body.get("record_sha256") == record_sha256


@dataclass(frozen=True)
class Reused:
    """A part this version shares with an earlier one (already stored): the manifest names it as it is."""

    name: str
    stored: StoredObject


@dataclass(frozen=True)
class Draft:
    """A version as the caller made it, for the writer to key, describe in its manifest and store."""

    parts: Sequence[Part | Reused]
    clerk: str | None
    record: dict[str, Any] | None = None
    record_sha256: str | None = None
    images: Sequence[ImageEntry] = ()
    templates: Mapping[str, str] = field(default_factory=dict)
    seal: dict[str, str] | None = None
    batch_id: str | None = None
    missing_images: Sequence[str] = ()
    previous: dict[str, str] | None = None
    extra: dict[str, Any] | None = None
    # who signed the version's new PDFs (``usecases.filing.Filing.signature``); None: unsigned
    signature: dict[str, Any] | None = None
    created_at: datetime | None = None  # None: when the manifest is made
    # whether a leftover at the version's key is this very request's, to adopt (default: the same record)
    same: Same | None = field(default=None, compare=False)

    def is_same(self) -> Same | None:
        if self.same is not None:
            return self.same
        return same_record(self.record_sha256) if self.record_sha256 else None


@dataclass(frozen=True)
class Stored:
    """A version's manifest in the store, freshly uploaded or adopted: its body and where it is."""

    body: dict[str, Any]
    manifest: StoredObject
    adopted: bool

    def part(self, name: str) -> StoredObject:
        found = next(p for p in self.body["parts"] if p["name"] == name)
        return StoredObject(found["key"], found["sha256"], found["size"], found.get("pages", 0))

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.body["created_at"])


@dataclass
class PolicyPlan:
    """Version 1 of a new policy on its way (``VersionWriter.plan_policy``): where it goes, and the
    leftover of an interrupted run to adopt (``stored``), if any."""

    policy: Policy
    raw: RawRecord
    slot: Slot
    record_sha256: str
    missing: tuple[str, ...]  # required image kinds the record came without
    stored: Stored | None

    def draft(
        self,
        parts: Sequence[Part],
        *,
        images: Sequence[ImageEntry],
        templates: Mapping[str, str],
        seal: dict[str, str] | None,
        batch_id: str | None,
        signature: dict[str, Any] | None = None,
    ) -> Draft:
        """The version's draft, given the documents made for it."""
        return Draft(
            parts=parts,
            clerk=self.policy.issued_by,
            record=self.raw.data,
            record_sha256=self.record_sha256,
            images=images,
            templates=templates,
            seal=seal,
            batch_id=batch_id,
            missing_images=self.missing,
            signature=signature,
        )


@dataclass(frozen=True)
class ReissueCommit:
    """What a reissue version commits besides its version row: the reissue row, the serial changes, the
    ledger event's facts (``VersionWriter.commit_reissue``)."""

    facts: ReissueFacts
    old_serial_used: tuple[int, datetime]  # the version that used the voided serial, and when
    requester_role: str | None


class VersionWriter:
    """Writes versions into one archive (store + index). Thread-safe; one per run, watcher or command."""

    def __init__(
        self, *, store: ObjectStore, index: Index, operator: str, clock: StageClock | None = None
    ) -> None:
        self.store = store
        self.index = index
        self.operator = operator
        self.clock = clock or StageClock()

    # --- where versions go -----------------------------------------------------------------------------

    @staticmethod
    def first_slot(policy: Policy) -> Slot:
        """Version 1 of a new policy."""
        return Slot(
            policy.policy_no,
            1,
            "issue",
            key_prefix(policy),
            retention_until(policy.period.start, policy.period.end),
        )

    @staticmethod
    def next_slot(row: Any, previous: Any, kind: str, *, retain_until: datetime | None = None) -> Slot:
        """The version after ``previous`` (the index's newest version row) of the policy ``row``: kept
        as long as the previous version, or until ``retain_until`` if that is later."""
        retain = as_utc(previous.retain_until)
        if retain_until is not None:
            retain = max(retain_until, retain)
        return Slot(row.policy_no, previous.version + 1, kind, row.key_prefix, retain)

    # --- adoption ----------------------------------------------------------------------------------------

    def adopt(self, slot: Slot, *, same: Same) -> Stored | None:
        """The version an interrupted writer stored at ``slot`` but did not index, or None if there is none.

        ``same(body)`` says whether it is this request's (the same record, the same reissue): if not,
        ``VersionRefused`` naming ``record_id``. One whose parts are not all there with their SHA-256:
        ``ObjectMissing``.
        """
        key = slot.manifest_key
        info = self.store.head(key)
        if info is None:
            return None
        if info.sha256 is None:  # killed between publishing the manifest and recording its hash
            info = self.store.recover(key, retain_until=slot.retain_until)
            if info is None or info.sha256 is None:
                return None
        body = json.loads(self.store.get(key, sha256=info.sha256))
        if not same(body):
            raise VersionRefused(
                "record_id",
                f"the archive already holds {key.rsplit('/', 2)[-2]} of this policy from another record; "
                "it is reported for audit, never overwritten",
            )
        for part in body["parts"]:
            found = self.store.head(part["key"])
            if found is None or found.sha256 != part["sha256"]:
                raise ObjectMissing(f"an unindexed version at {key} lacks its part {part['name']}")
        logger.info("adopting %s, uploaded by an interrupted run", key)
        return Stored(body, StoredObject(key, info.sha256, info.size), adopted=True)

    # --- upload: the parts, then the manifest -------------------------------------------------------

    def publish(self, slot: Slot, draft: Draft) -> Stored:
        """Store ``draft``'s new parts, then its manifest (the write order); raises what the store refused.

        A manifest another writer stored first at ``slot`` is adopted if it is this request's
        (``Draft.same``), as after a crash; another's stays a conflict.
        """
        (outcome,) = self.publish_many([(slot, draft)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def publish_many(self, items: Sequence[tuple[Slot, Draft]]) -> list[Stored | Exception]:
        """``publish`` for several versions, in order: each its ``Stored`` or what the store refused it.

        The new parts of every version go in one ``put_many``, then their manifests in another, so the
        store's durability barriers are shared (LocalStore: two ``syncfs`` for the lot). ``StoreError``
        (the store is down) is raised for all: what was published is adopted by the next run.
        """
        results: list[Stored | Exception | None] = [None] * len(items)
        manifests: dict[int, tuple[Part, str]] = {}
        parts: list[tuple[int, Part, str]] = []
        for i, (slot, draft) in enumerate(items):
            try:
                keyed = [(p, p.stored.key if isinstance(p, Reused) else slot.key(p)) for p in draft.parts]
                body_part = self._manifest(slot, draft, keyed)
            except IssuanceError as e:
                results[i] = e
                continue
            manifests[i] = (body_part, slot.key_of_manifest(body_part))
            parts += [(i, p, k) for p, k in keyed if isinstance(p, Part)]
        for i, error in self._put_many(parts, items).items():
            results[i] = error
            del manifests[i]
        uploads = [(i, body_part, key) for i, (body_part, key) in manifests.items()]
        for i, error in self._put_many(uploads, items).items():
            del manifests[i]
            results[i] = error
            same = items[i][1].is_same()
            if isinstance(error, ObjectConflict) and same is not None:
                # another writer published this version first: the same request's is adopted, as after
                # a crash; another record's version stays a conflict
                try:
                    adopted = self.adopt(items[i][0], same=same)
                except IssuanceError as e:
                    results[i] = e
                else:
                    if adopted is not None:
                        results[i] = adopted
        for i, (body_part, key) in manifests.items():
            body = json.loads(body_part.data)
            results[i] = Stored(body, StoredObject(key, body_part.sha256, body_part.size), adopted=False)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _manifest(self, slot: Slot, draft: Draft, keyed: Sequence[tuple[Part | Reused, str]]) -> Part:
        """The version's manifest.json (``core.manifest.manifest``); a reused part named as stored."""
        listed = [
            (Part(p.name, b"", p.stored.pages) if isinstance(p, Reused) else p, key) for p, key in keyed
        ]
        body_part = manifest(
            policy_no=slot.policy_no,
            version=slot.version,
            kind=slot.kind,
            record=draft.record,
            record_sha256=draft.record_sha256,
            parts=listed,
            images=draft.images,
            templates=dict(draft.templates),
            seal=draft.seal,
            batch_id=draft.batch_id,
            operator=self.operator,
            clerk=draft.clerk,
            created_at=draft.created_at or datetime.now(UTC),
            missing_images=draft.missing_images,
            previous=draft.previous,
            extra={**(draft.extra or {}), "signature": draft.signature},
        )
        reused = {i: p.stored for i, (p, _) in enumerate(keyed) if isinstance(p, Reused)}
        if not reused:
            return body_part
        body = json.loads(body_part.data)
        for i, stored in reused.items():
            body["parts"][i].update(sha256=stored.sha256, size=stored.size)
        data = json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
        return Part("manifest.json", data)

    def _put_many(
        self, uploads: Sequence[tuple[int, Part, str]], items: Sequence[tuple[Slot, Draft]]
    ) -> dict[int, IssuanceError]:
        """Put (owner, part, key) in one ``put_many``, each kept as long as its owner's slot says; the
        error of each owner whose part the store refused (the first one)."""
        if not uploads:
            return {}
        with self.clock.measure("upload"):
            outcomes = self.store.put_many(
                [
                    PutItem(
                        key=key,
                        data=part.data,
                        sha256=part.hashed,
                        retain_until=items[owner][0].retain_until,
                        content_type="application/json" if part.name.endswith(".json") else "application/pdf",
                    )
                    for owner, part, key in uploads
                ]
            )
        errors: dict[int, IssuanceError] = {}
        for (owner, _part, _key), outcome in zip(uploads, outcomes, strict=True):
            if isinstance(outcome, IssuanceError):
                errors.setdefault(owner, outcome)
            elif isinstance(outcome, Exception):
                errors.setdefault(owner, IssuanceError(f"the object store refused a part: {outcome}"))
        return errors

    # --- new policies ----------------------------------------------------------------------------------

    def plan_policy(self, policy: Policy, raw: RawRecord, *, missing: Sequence[str]) -> PolicyPlan:
        """Where version 1 of ``policy`` goes, and its manifest if an interrupted run uploaded it."""
        slot = self.first_slot(policy)
        record_sha = content_hash(raw.data or {})
        stored = self.adopt(slot, same=same_record(record_sha))
        return PolicyPlan(policy, raw, slot, record_sha, tuple(missing), stored)

    def file_policies(
        self, items: Sequence[tuple[PolicyPlan, Draft | None]], *, batch_id: str | None
    ) -> list[Filed | Exception]:
        """Version 1 of several new policies, in order: each its ``Filed`` or its error.

        A plan with a leftover to adopt comes without a draft. The drafts are published (``publish_many``),
        then the index rows and ledger events of all of them commit in one transaction; if another writer
        got to one of them first, they are committed one by one so that only that record fails
        (``FiledByAnother`` when it filed this very record). Then the print serials are marked used.
        """
        results: list[Filed | Exception | None] = [None] * len(items)
        stored: dict[int, Stored] = {i: plan.stored for i, (plan, _) in enumerate(items) if plan.stored}
        fresh = [i for i, (_, draft) in enumerate(items) if draft is not None and i not in stored]
        published = self.publish_many([(items[i][0].slot, items[i][1]) for i in fresh])  # type: ignore[misc]
        for i, outcome in zip(fresh, published, strict=True):
            if isinstance(outcome, Exception):
                results[i] = outcome
            else:
                stored[i] = outcome
        news = {i: self._new_policy(items[i][0], stored[i], batch_id) for i in sorted(stored)}
        with self.clock.measure("index"):
            try:
                self.index.archive_policies(list(news.values()))
            except IndexConflict:
                for i, new in news.items():  # find the one another writer indexed first
                    try:
                        self.index.archive_policies([new])
                    except IndexConflict as e:
                        results[i] = self._conflict(e, new.record.record_id, new.record.content_sha256)
            mark_used_many(
                self.index,
                [
                    DocumentSerial(
                        serial=items[i][0].policy.print_serial,
                        policy_no=new.facts.policy_no,
                        version=1,
                        at=new.version.created_at,
                        by=items[i][0].policy.issued_by,
                    )
                    for i, new in news.items()
                    if results[i] is None and items[i][0].policy.print_serial
                ],
            )
        for i, new in news.items():
            if results[i] is None:
                v = new.version
                results[i] = Filed(
                    1, (v.customer.key, v.bundle.key, v.manifest.key), stored[i].adopted, items[i][0].missing
                )
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _new_policy(self, plan: PolicyPlan, stored: Stored, batch_id: str | None) -> NewPolicy:
        """The index's rows and ledger event for version 1 of ``plan.policy``, from its manifest."""
        policy, slot = plan.policy, plan.slot
        version = self._version_facts(
            slot, stored, record_id=policy.record_id, batch_id=batch_id, record=policy
        )
        issued_at = policy.issued_at or datetime.now(UTC)
        return NewPolicy(
            facts=_policy_facts(
                policy, issued_at=issued_at, prefix=slot.prefix, retain_until=slot.retain_until
            ),
            version=version,
            record=RecordFacts(
                policy.record_id, plan.record_sha256, "policy", policy.policy_no, batch_id, plan.raw.line
            ),
            missing_images=list(stored.body.get("missing_images", plan.missing)),
            event=LedgerEvent(
                self.operator,
                "policy.archived",
                policy.policy_no,
                {
                    "version": 1,
                    "record_id": policy.record_id,
                    "batch_id": batch_id,
                    "clerk": policy.issued_by,
                    "manifest": slot.manifest_key,
                    "manifest_sha256": version.manifest.sha256,
                    "adopted": stored.adopted,
                },
            ),
        )

    # --- later versions ---------------------------------------------------------------------------------

    def commit_endorsement(
        self,
        slot: Slot,
        stored: Stored,
        endorsement: Endorsement,
        *,
        raw: RawRecord,
        record_sha256: str,
        batch_id: str | None,
        before: PolicyState,
    ) -> Filed:
        """Index an endorsement version (rows and ledger event, one transaction), then mark its serial.

        ``before``: the policy's state before this endorsement; the index takes the new status and the
        changed indexed fields from it and the endorsement (``core.lifecycle``)."""
        now = lifecycle.after(before, endorsement)
        changes = Lifecycle(
            since=endorsement.effective_at,
            status=now.status if now.status_by != before.status_by else None,
            status_since=now.status_since,
            status_by=now.status_by,
            changes=lifecycle.lookup_changes(endorsement),
        )
        version = self._version_facts(
            slot,
            stored,
            record_id=endorsement.record_id,
            batch_id=batch_id,
            endorsement_no=endorsement.endorsement_no,
            record=endorsement,
        )
        with self.clock.measure("index"), self._unless_filed_by_another(endorsement.record_id, record_sha256):
            self.index.archive_version(
                version=version,
                record=RecordFacts(
                    endorsement.record_id,
                    record_sha256,
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
                        "version": slot.version,
                        "record_id": endorsement.record_id,
                        "endorsement_no": endorsement.endorsement_no,
                        "batch_id": batch_id,
                        "clerk": endorsement.issued_by,
                        "type": endorsement.type,
                        "status": now.status,
                        "changed": [c.field for c in changes.changes],
                        "manifest": stored.manifest.key,
                        "manifest_sha256": version.manifest.sha256,
                        "adopted": stored.adopted,
                    },
                ),
                lifecycle=changes,
            )
        if endorsement.print_serial:
            mark_used(
                self.index,
                serial=endorsement.print_serial,
                policy_no=endorsement.policy_no,
                version=slot.version,
                at=version.created_at,
                by=endorsement.issued_by,
            )
        return Filed(
            slot.version, (version.customer.key, version.bundle.key, stored.manifest.key), stored.adopted
        )

    def commit_supplement(
        self, slot: Slot, stored: Stored, *, kind: str, files: int, by: str, missing: Sequence[str]
    ) -> Filed:
        """Index a supplement version (late images): the policy's completeness changes with it."""
        version = self._version_facts(slot, stored, record_id=None, batch_id=None)
        with self.clock.measure("index"):
            self.index.archive_version(
                version=version,
                record=None,
                event=LedgerEvent(
                    by,
                    "supplement.archived",
                    slot.policy_no,
                    {
                        "version": slot.version,
                        "kind": kind,
                        "files": files,
                        "manifest": stored.manifest.key,
                        "operator": self.operator,
                    },
                ),
                missing_images=list(missing),
            )
        return Filed(slot.version, (version.bundle.key, stored.manifest.key), stored.adopted, tuple(missing))

    def commit_reissue(self, slot: Slot, stored: Stored, reissue: ReissueCommit) -> None:
        """Index a reissue version: its version row, reissue row, serial changes (the old form voided, the
        new one used) and ledger event, in one transaction."""
        facts = reissue.facts
        at = as_utc(facts.reissued_at)
        version = self._version_facts(slot, stored, record_id=None, batch_id=None)
        self.index.archive_reissue(
            version=version,
            reissue=facts,
            old_form_used=reissue.old_serial_used,
            void_reason=f"第{facts.reissue_no}次补发 ({facts.reason})",
            event=LedgerEvent(
                facts.clerk,
                "policy.reissued",
                slot.policy_no,
                {
                    "version": slot.version,
                    "reissue_no": facts.reissue_no,
                    "reason": facts.reason,
                    "clerk": facts.clerk,
                    "at": at.isoformat(),
                    "requester_id_hmac": facts.requester_id_hmac,
                    "requester_role": reissue.requester_role,
                    "old_serial": facts.old_serial,
                    "new_serial": facts.new_serial,
                    "source_version": facts.source_version,
                    "source_sha256": facts.source_sha256,
                    "copy": facts.copy.key,
                    "copy_sha256": facts.copy.sha256,
                    "manifest": stored.manifest.key,
                    "manifest_sha256": stored.manifest.sha256,
                    "operator": self.operator,
                },
            ),
        )

    # --- shared -----------------------------------------------------------------------------------------

    @staticmethod
    def _version_facts(
        slot: Slot,
        stored: Stored,
        *,
        record_id: str | None,
        batch_id: str | None,
        endorsement_no: str | None = None,
        record: Policy | Endorsement | None = None,
    ) -> VersionFacts:
        """The index's row for a version, from its manifest (freshly uploaded or adopted) and, for an
        issue or an endorsement, its record: who issued it and when underwriting approved it, which
        the statistics count by. A reissue's or supplement's clerk is the one its manifest names."""
        seal = stored.body.get("seal") or {}
        return VersionFacts(
            policy_no=slot.policy_no,
            version=stored.body["version"],
            kind=stored.body["kind"],
            created_at=stored.created_at,
            customer=stored.part("customer.pdf"),
            bundle=stored.part("bundle.pdf"),
            manifest=stored.manifest,
            retain_until=slot.retain_until,
            record_id=record_id,
            endorsement_no=endorsement_no,
            batch_id=batch_id,
            seal_id=seal.get("id"),
            seal_version=seal.get("version"),
            endorsement_type=record.type if isinstance(record, Endorsement) else None,
            clerk=record.issued_by if record is not None else stored.body.get("clerk"),
            approved_at=record.underwriting.approved_at if record is not None else None,
        )

    def _conflict(self, error: IndexConflict, record_id: str, record_sha256: str) -> IndexConflict:
        """``FiledByAnother`` if the index holds ``record_id`` with this content (another run filed it
        meanwhile), else ``error``."""
        known = self.index.records([record_id]).get(record_id)
        if known is not None and known.content_sha256 == record_sha256:
            return FiledByAnother(f"record {record_id} was filed by another run")
        return error

    @contextlib.contextmanager
    def _unless_filed_by_another(self, record_id: str, record_sha256: str) -> Iterator[None]:
        try:
            yield
        except IndexConflict as e:
            raise self._conflict(e, record_id, record_sha256) from None


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
        property_address=policy.property.address if policy.property else None,
    )


class ArchivedPolicies:
    """Archived policies as they stand (``core.lifecycle.PolicyState``): the issued record from the first
    version's manifest, with every endorsement since (each version's manifest holds its record,
    hash-verified) applied in order. Bounded, so memory stays flat in a long batch or a watcher that runs
    for months (an older one is read again); a state is kept with the version it was read at, and read
    again when the index holds a newer one. Thread-safe."""

    def __init__(self, *, store: ObjectStore, index: Index, size: int = REMEMBERED_POLICIES) -> None:
        self.store = store
        self.index = index
        self.size = size
        self._states: OrderedDict[str, tuple[int, PolicyState]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, policy_no: str, *, versions: Sequence[Any] | None = None) -> PolicyState | None:
        """``versions``: the index's versions of the policy, when the caller has just read them."""
        versions = self.index.versions(policy_no) if versions is None else versions
        if not versions:
            return None
        newest = versions[-1].version
        with self._lock:
            known = self._states.get(policy_no)
            if known is not None and known[0] == newest:
                self._states.move_to_end(policy_no)
                return known[1]
        state = self._read(policy_no, versions)
        self.remember(state, version=newest)
        return state

    def _read(self, policy_no: str, versions: Sequence[Any]) -> PolicyState:
        first = versions[0]
        data = json.loads(self.store.get(first.manifest_key, sha256=first.manifest_sha256))
        policy, reasons = parse_record(data["record"])
        if not isinstance(policy, Policy) or reasons:
            raise IssuanceError(f"the archived manifest of {policy_no} does not hold a valid policy record")
        endorsements = []
        for v in versions[1:]:
            if v.kind != "endorsement":
                continue
            body = json.loads(self.store.get(v.manifest_key, sha256=v.manifest_sha256))
            record, reasons = parse_record(body["record"])
            if not isinstance(record, Endorsement) or reasons:
                raise IssuanceError(
                    f"the archived manifest of {policy_no} version {v.version} does not hold a valid "
                    "endorsement record"
                )
            endorsements.append(record)
        return lifecycle.fold(policy, endorsements)

    def remember(self, state: PolicyState, *, version: int) -> None:
        """``state`` is the policy as its ``version`` leaves it (just filed)."""
        with self._lock:
            self._states[state.policy.policy_no] = (version, state)
            self._states.move_to_end(state.policy.policy_no)
            while len(self._states) > self.size:
                self._states.popitem(last=False)
