"""Reissuing a lost or damaged policy (保单补发) at the counter: ``issuance reissue``.

What ``reissue`` promises:

- **The source is verified.** The copy is made from the newest version's customer copy (schedule,
  clauses, every endorsement so far), read with the SHA-256 the index holds. A mismatch or a missing
  object is an integrity incident: an ``incident.hash_mismatch`` (or ``incident.object_missing``) event
  goes into the ledger with the key and the expected and observed hashes (no personal data), and
  ``IntegrityIncident`` (exit 4) is raised; nothing is marked, filed or written.
- **The original stays.** The marked copy is made by ``pipeline.reissue`` (archive does not render) as
  an incremental update: the archived bytes are its prefix, which is checked here before anything is
  stored. No archived object is changed; the copy is a new object.
- **A new version, filed like the others** (``archive.versions``, the one writer): copy → manifest
  (last) → index rows, serial changes and the ledger event in one transaction. The version (kind
  ``reissue``) reuses the source's customer and archive copies (like a supplement), so a later
  endorsement or reissue builds on the unmarked copy and a copy is never marked twice; the marked
  copy is named in the manifest (part ``reissue.pdf``) and in the ``reissues`` table. The manifest
  records reason, number, clerk, date, old and new serial, the source version and its hash, the seals
  as issued page by page, and the requester only as an HMAC.
- **Serials**: the policy's current form is voided (kept, searchable, "voided by reissue N"); the new
  serial, when given, must be registered and unused, and becomes used by the reissue version.
- **Refusals** (nothing changed): no clerk id, an unknown reason or policy (exit 2), a cancelled policy
  (exit 1), a new serial that is unknown, used or voided (exit 2).

A crash after the manifest is stored and before the index commit leaves a manifest at
``v{n}-reissue/manifest.json`` that the next attempt adopts if it asks for the same reissue (same clerk,
reason, requester, serials, source, day). A next attempt that asks for something else does not stay
blocked: it files its manifest as ``manifest-<sha12>.json`` beside the leftover, which stays unindexed
for the archive audit to report as an orphan, as a crashed batch's parts are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from archive.index import Index, LedgerEvent, ReissueFacts, as_utc
from archive.serials import ISSUED, USED, VOIDED, lookup, normalise, parse_serial
from archive.store import ObjectStore
from archive.versions import Draft, ReissueCommit, Reused, Stored, VersionWriter
from core import lifecycle
from core.errors import (
    IntegrityIncident,
    IssuanceError,
    ObjectCorrupt,
    ObjectMissing,
    PolicyNotFound,
    PolicyNotReissuable,
    SerialError,
    UsageError,
    VersionRefused,
)
from core.manifest import MarkedCopy, Part, ReissueMark, StoredObject
from stamps.signing import PdfSigner

__all__ = ["REASONS", "Marker", "ReissueRequest", "Reissued", "reissue", "reissues_of"]

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")
REASONS = {"lost": "遗失", "damaged": "损毁", "other": "其他"}
MAX_CLERK = 64  # the ledger's actor column


class Marker(Protocol):
    """What archive needs from ``pipeline.reissue.ReissueMarker``: it renders, archive files."""

    template_version: str

    def mark(self, pdf: bytes, mark: ReissueMark) -> MarkedCopy: ...


@dataclass(frozen=True)
class ReissueRequest:
    """A clerk's request. ``requester_id_no`` lives only in memory: the index and manifest get its HMAC."""

    policy_no: str
    reason: str  # lost | damaged | other
    clerk: str
    requester_id_no: str | None = None
    new_serial: str | None = None
    # the desk checks the requester when the clerk asks and files after a supervisor approves: by then
    # only the HMAC is kept (the ID number is never stored)
    requester_id_hmac: str | None = None


@dataclass(frozen=True)
class Reissued:
    """The filed reissue: the marked copy's bytes (for the clerk's file) and where everything went."""

    policy_no: str
    version: int
    reissue_no: int
    pdf: bytes
    pages: int
    copy: StoredObject
    manifest: StoredObject
    source_version: int
    source_sha256: str
    old_serial: str | None
    new_serial: str | None
    mark: str
    requester_role: str | None  # applicant | insured | beneficiary | "not a party"; None: not given
    adopted: bool


def reissue(
    *,
    store: ObjectStore,
    index: Index,
    marker: Marker,
    request: ReissueRequest,
    operator: str,
    now: datetime | None = None,
    signer: PdfSigner | None = None,
) -> Reissued:
    """File one reissue of ``request.policy_no``; see the module docstring for what is promised.
    ``signer``: the marked copy is signed last, the original's signature kept inside it, intact."""
    clerk = (request.clerk or "").strip()
    if not clerk:
        raise UsageError("a reissue needs the clerk's id", hint="--by CLERK_ID")
    if len(clerk) > MAX_CLERK:
        raise UsageError(f"a clerk id has at most {MAX_CLERK} characters")
    if request.reason not in REASONS:
        raise UsageError(f"unknown reason {request.reason!r}", hint="one of: " + ", ".join(REASONS))
    policy_no = (request.policy_no or "").strip().upper()
    row = index.policy_row(policy_no)
    if row is None:
        raise PolicyNotFound(
            f"policy {policy_no} is not in the archive", hint="look it up with issuance find"
        )
    if row.status != lifecycle.IN_FORCE:
        raise PolicyNotReissuable(
            lifecycle.not_reissued(policy_no, row.status, row.status_by),
            hint="its documents stay in the archive; issuance get gives the archived copy",
        )
    new_serial = _check_new_serial(index, request.new_serial)
    when = as_utc(now) or datetime.now(UTC)
    day = when.astimezone(CHINA).date()

    versions = index.versions(policy_no)
    source = versions[-1]
    original = _verified_source(store, index, source=source, clerk=clerk)
    requester_hmac = (
        index.identity(request.requester_id_no) if request.requester_id_no else request.requester_id_hmac
    )
    role = _requester_role(index, policy_no=policy_no, requester_hmac=requester_hmac)
    old_serial, old_used_version = _current_serial(index, policy_no=policy_no, printed=row.print_serial)
    if new_serial is not None and new_serial == old_serial:
        raise SerialError(f"serial {new_serial} is the policy's current form; the reissue needs a new one")
    number = index.reissue_count(policy_no) + 1
    writer = VersionWriter(store=store, index=index, operator=operator)
    slot = writer.next_slot(row, source, "reissue")
    facts = {
        "number": number,
        "reason": request.reason,
        "clerk": clerk,
        "date": day.isoformat(),
        "requester_id_hmac": requester_hmac,
        "old_serial": old_serial,
        "new_serial": new_serial,
        "source_sha256": source.customer_sha256,
    }

    def same(body: dict[str, Any]) -> bool:  # a leftover of an attempt that asked for this very reissue
        return {k: (body.get("reissue") or {}).get(k) for k in facts} == facts

    stored: Stored | None
    try:
        stored = writer.adopt(slot, same=same)
        leftover = False
    except (VersionRefused, ObjectMissing):
        # another request's leftover (or one without its copy) does not block this one: the manifest goes
        # beside it and the leftover stays unindexed, for the audit to report as an orphan
        logger.warning("%s is left by another, unfinished reissue; filing beside it", slot.manifest_key)
        stored, leftover = None, True
    if stored is not None:
        copy = stored.part("reissue.pdf")
        pdf = store.get(copy.key, sha256=copy.sha256)
        when = stored.created_at
        label = stored.body["reissue"]["mark"]["text"]
    else:
        mark = ReissueMark(number=number, on=day, serial=new_serial, old_serial=old_serial)
        marked = marker.mark(original, mark)
        if marked.pdf[: len(original)] != original:
            raise IssuanceError(
                "the reissued copy does not contain the archived copy unchanged; nothing was filed"
            )
        pdf, label = marked.pdf, mark.label
        if signer is not None:
            pdf = signer.sign(pdf)
        part = Part("reissue.pdf", pdf, marked.pages)
        copy = StoredObject(slot.key(part), part.sha256, part.size, part.pages)
        draft = Draft(
            parts=[
                Reused("customer.pdf", _customer(source)),
                Reused("bundle.pdf", _bundle(source)),
                part,
            ],
            clerk=clerk,
            templates={"reissue-mark.docx": marker.template_version},
            missing_images=[k for k in row.missing_images.split(",") if k],
            previous={"version": str(source.version), "manifest": source.manifest_key},
            extra={
                "reissue": _reissue_section(
                    facts=facts,
                    source=source,
                    versions=versions,
                    copy=copy,
                    original_size=len(original),
                    mark={"text": label, "template": marker.template_version},
                    requester_role=role,
                )
            },
            created_at=when,
            same=same,
            signature=signer.facts if signer is not None else None,
        )
        stored = writer.publish(replace(slot, beside=True) if leftover else slot, draft)

    writer.commit_reissue(
        slot,
        stored,
        ReissueCommit(
            facts=ReissueFacts(
                policy_no=policy_no,
                version=slot.version,
                reissue_no=number,
                reason=request.reason,
                clerk=clerk,
                reissued_at=when,
                requester_id_hmac=requester_hmac,
                source_version=source.version,
                source_sha256=source.customer_sha256,
                copy=copy,
                old_serial=old_serial,
                new_serial=new_serial,
            ),
            old_serial_used=(
                old_used_version,
                next((v.created_at for v in versions if v.version == old_used_version), when),
            ),
            requester_role=role,
        ),
    )
    return Reissued(
        policy_no=policy_no,
        version=slot.version,
        reissue_no=number,
        pdf=pdf,
        pages=copy.pages,
        copy=copy,
        manifest=stored.manifest,
        source_version=source.version,
        source_sha256=source.customer_sha256,
        old_serial=old_serial,
        new_serial=new_serial,
        mark=label,
        requester_role=role,
        adopted=stored.adopted,
    )


def reissues_of(index: Index, policy_no: str) -> list[Any]:
    """The policy's reissues (rows of ``reissues``), oldest first."""
    return index.reissues(policy_no)


# --- steps ---------------------------------------------------------------------------------------------


def _check_new_serial(index: Index, serial: str | None) -> str | None:
    if serial is None or not serial.strip():
        return None
    value = normalise(serial)
    parse_serial(value)  # registered serials follow the registry's format
    known = lookup(index, value)
    if known is None:
        raise SerialError(
            f"serial {value} is not in the registry",
            hint="check the number on the form; a new box is registered with issuance serials issue",
        )
    if known.state == USED:
        raise SerialError(f"serial {value} is already used by {known.policy_no} v{known.version}")
    if known.state != ISSUED:  # voided: a spoilt or lost form is never printed on again
        raise SerialError(f"serial {value} was voided on {known.voided_at:%Y-%m-%d} ({known.void_reason})")
    return value


def _verified_source(store: ObjectStore, index: Index, *, source: Any, clerk: str) -> bytes:
    """The source customer copy, or an incident in the ledger and ``IntegrityIncident``."""
    key, expected = source.customer_key, source.customer_sha256
    try:
        return store.get(key, sha256=expected)
    except ObjectCorrupt:
        action, observed = "incident.hash_mismatch", store.observed_sha256(key)
    except ObjectMissing:
        action, observed = "incident.object_missing", None
    index.append_event(
        LedgerEvent(
            clerk,
            action,
            source.policy_no,
            {
                "key": key,
                "version": source.version,
                "expected_sha256": expected,
                "actual_sha256": observed,
                "during": "reissue",
            },
        )
    )
    what = "does not match its SHA-256" if action == "incident.hash_mismatch" else "is missing"
    raise IntegrityIncident(
        f"the archived customer copy of {source.policy_no} v{source.version} ({key}) {what}; "
        "no copy was made and the incident is recorded in the ledger",
        hint="restore the object from a backup and run the archive audit before reissuing",
    )


def _requester_role(index: Index, *, policy_no: str, requester_hmac: str | None) -> str | None:
    if requester_hmac is None:
        return None
    roles = index.party_roles(policy_no, id_hmac=requester_hmac)
    for role in ("applicant", "insured", "beneficiary"):
        if role in roles:
            return role
    return "not a party"


def _current_serial(index: Index, *, policy_no: str, printed: str | None) -> tuple[str | None, int]:
    """The form the policy is on now, and the version that used it: the newest serial the registry has
    as used by the policy, else the serial printed at issue unless the registry voided it already."""
    used = index.newest_used_serial(policy_no)
    if used is not None:
        return used[0], used[1] or 1
    if not printed or not printed.strip():
        return None, 1
    serial = normalise(printed)
    known = lookup(index, serial)
    if known is not None and known.state == VOIDED:
        return None, 1
    return serial, 1


def _seals_as_issued(versions: list[Any], source: Any) -> list[dict[str, Any]]:
    """Which seal signs which pages of the customer copy: the issue's over the schedule and clauses, each
    endorsement's over its own pages. Supplements and reissues add no pages to the customer copy."""
    out, pages = [], 0
    for v in versions:
        if v.version > source.version:
            break
        if v.kind in ("issue", "endorsement") and v.customer_pages > pages:
            out.append(
                {
                    "version": v.version,
                    "kind": v.kind,
                    "pages": [pages, v.customer_pages],
                    "seal": {"id": v.seal_id, "version": v.seal_version} if v.seal_id else None,
                }
            )
            pages = v.customer_pages
    return out


def _customer(source: Any) -> StoredObject:
    return StoredObject(
        source.customer_key, source.customer_sha256, source.customer_size, source.customer_pages
    )


def _bundle(source: Any) -> StoredObject:
    return StoredObject(source.bundle_key, source.bundle_sha256, source.bundle_size, source.bundle_pages)


def _reissue_section(
    *,
    facts: dict[str, Any],
    source: Any,
    versions: list[Any],
    copy: StoredObject,
    original_size: int,
    mark: dict[str, str],
    requester_role: str | None,
) -> dict[str, Any]:
    """The manifest's ``reissue`` section: what was asked, from what, the copy and its mark, the seals."""
    return {
        **facts,
        "reason_label": REASONS[facts["reason"]],
        "requester_role": requester_role,
        "source": {
            "version": source.version,
            "customer_key": source.customer_key,
            "sha256": source.customer_sha256,
            "size": source.customer_size,
        },
        # the reissued copy is an incremental update: its first original_size bytes are the source
        "copy": {
            "key": copy.key,
            "sha256": copy.sha256,
            "size": copy.size,
            "original_size": original_size,
        },
        "mark": mark,
        "seals_as_issued": _seals_as_issued(versions, source),
    }
