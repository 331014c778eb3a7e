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
- **A new version, filed like the others:** copy → manifest (last) → index rows, serial changes and the
  ledger event in one transaction. The version (kind ``reissue``) reuses the source's customer and
  archive copies (like a supplement), so a later endorsement or reissue builds on the unmarked copy and
  a copy is never marked twice; the marked copy is named in the manifest (part ``reissue.pdf``) and in
  the ``reissues`` table. The manifest records reason, number, clerk, date, old and new serial, the
  source version and its hash, the seals as issued page by page, and the requester only as an HMAC.
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

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from archive.index import Index, LedgerEvent, VersionFacts, as_utc
from archive.index import schema as s
from archive.serials import ISSUED, USED, VOIDED, lookup, normalise, parse_serial, use_serial, void_serial
from archive.store import ObjectStore
from core.errors import (
    IndexConflict,
    IntegrityIncident,
    IssuanceError,
    ObjectCorrupt,
    ObjectMissing,
    PolicyNotFound,
    PolicyNotReissuable,
    SerialError,
    UsageError,
)
from core.manifest import MANIFEST_FORMAT, MarkedCopy, ReissueMark, StoredObject

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
) -> Reissued:
    """File one reissue of ``request.policy_no``; see the module docstring for what is promised."""
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
    if row.status != "issued":
        raise PolicyNotReissuable(
            f"policy {policy_no} is {row.status}; a {row.status} policy is not reissued",
            hint="a cancelled policy's documents stay in the archive; issuance get gives the archived copy",
        )
    new_serial = _check_new_serial(index, request.new_serial)
    when = as_utc(now) or datetime.now(UTC)
    day = when.astimezone(CHINA).date()

    versions = index.versions(policy_no)
    source = versions[-1]
    original = _verified_source(store, index, source=source, clerk=clerk)
    requester_hmac = index.identity(request.requester_id_no) if request.requester_id_no else None
    role = _requester_role(index, policy_no=policy_no, requester_hmac=requester_hmac)
    old_serial, old_used_version = _current_serial(index, policy_no=policy_no, printed=row.print_serial)
    if new_serial is not None and new_serial == old_serial:
        raise SerialError(f"serial {new_serial} is the policy's current form; the reissue needs a new one")
    number = _reissue_count(index, policy_no) + 1
    n = source.version + 1
    folder = f"{row.key_prefix}/v{n}-reissue"
    manifest_key = f"{folder}/manifest.json"
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

    body, leftover = _adopt(store, manifest_key=manifest_key, facts=facts)
    if body is not None:
        part = next(p for p in body["parts"] if p["name"] == "reissue.pdf")
        pdf = store.get(part["key"], sha256=part["sha256"])
        copy = StoredObject(part["key"], part["sha256"], part["size"], part["pages"])
        manifest = StoredObject(manifest_key, body["_manifest"]["sha256"], body["_manifest"]["size"])
        when = datetime.fromisoformat(body["created_at"])
        label = body["reissue"]["mark"]["text"]
    else:
        mark = ReissueMark(number=number, on=day, serial=new_serial, old_serial=old_serial)
        marked = marker.mark(original, mark)
        if marked.pdf[: len(original)] != original:
            raise IssuanceError(
                "the reissued copy does not contain the archived copy unchanged; nothing was filed"
            )
        pdf, label = marked.pdf, mark.label
        digest = hashlib.sha256(pdf).hexdigest()
        copy = StoredObject(f"{folder}/reissue-{digest[:12]}.pdf", digest, len(pdf), marked.pages)
        data = _manifest(
            policy_no=policy_no,
            version=n,
            created_at=when,
            operator=operator,
            clerk=clerk,
            facts=facts,
            source=source,
            versions=versions,
            copy=copy,
            original_size=len(original),
            missing_images=[k for k in row.missing_images.split(",") if k],
            mark={"text": label, "template": marker.template_version},
            requester_role=role,
        )
        retain = as_utc(source.retain_until)
        store.put(copy.key, pdf, sha256=digest, retain_until=retain, content_type="application/pdf")
        manifest_sha = hashlib.sha256(data).hexdigest()
        if leftover:
            logger.warning("%s is left by another, unfinished reissue; filing beside it", manifest_key)
            manifest_key = f"{folder}/manifest-{manifest_sha[:12]}.json"
        store.put(
            manifest_key, data, sha256=manifest_sha, retain_until=retain, content_type="application/json"
        )
        manifest = StoredObject(manifest_key, manifest_sha, len(data))

    _commit(
        index,
        policy_no=policy_no,
        version=n,
        when=when,
        source=source,
        copy=copy,
        manifest=manifest,
        facts=facts,
        old_used=(
            old_used_version,
            next((v.created_at for v in versions if v.version == old_used_version), when),
        ),
        requester_role=role,
        operator=operator,
    )
    return Reissued(
        policy_no=policy_no,
        version=n,
        reissue_no=number,
        pdf=pdf,
        pages=copy.pages,
        copy=copy,
        manifest=manifest,
        source_version=source.version,
        source_sha256=source.customer_sha256,
        old_serial=old_serial,
        new_serial=new_serial,
        mark=label,
        requester_role=role,
        adopted=body is not None,
    )


def reissues_of(index: Index, policy_no: str) -> list[Any]:
    """The policy's reissues (rows of ``reissues``), oldest first."""
    t = s.reissues
    with index.engine.connect() as conn:
        return list(conn.execute(select(t).where(t.c.policy_no == policy_no).order_by(t.c.reissue_no)))


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
        action, observed = "incident.hash_mismatch", _observed_sha256(store, key)
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


def _observed_sha256(store: ObjectStore, key: str) -> str | None:
    """The SHA-256 of the bytes the store holds now, for the incident record; None if unreadable.

    ``get`` refuses bytes that fail the hash it checks, so the bytes are read past that check: through
    the store's own record first (it differs from the index's when both were changed), then from the
    backend directly (LocalStore's file, S3Store's GET). Only a hash leaves this function.
    """
    from archive.store import LocalStore, S3Store

    try:
        return hashlib.sha256(store.get(key)).hexdigest()
    except (ObjectCorrupt, ObjectMissing):
        pass
    try:
        if isinstance(store, LocalStore):
            return hashlib.sha256(store._object_path(key).read_bytes()).hexdigest()
        if isinstance(store, S3Store):
            return hashlib.sha256(store._read(key)[0]).hexdigest()
    except (OSError, IssuanceError):
        return None
    return None


def _requester_role(index: Index, *, policy_no: str, requester_hmac: str | None) -> str | None:
    if requester_hmac is None:
        return None
    t = s.parties
    with index.engine.connect() as conn:
        roles = [
            r.role
            for r in conn.execute(
                select(t.c.role).where(t.c.policy_no == policy_no, t.c.id_hmac == requester_hmac)
            )
        ]
    for role in ("applicant", "insured", "beneficiary"):
        if role in roles:
            return role
    return "not a party"


def _current_serial(index: Index, *, policy_no: str, printed: str | None) -> tuple[str | None, int]:
    """The form the policy is on now, and the version that used it: the newest serial the registry has
    as used by the policy, else the serial printed at issue unless the registry voided it already."""
    t = s.print_serials
    with index.engine.connect() as conn:
        used = conn.execute(
            select(t.c.serial, t.c.version)
            .where(t.c.policy_no == policy_no, t.c.state == USED)
            .order_by(t.c.version.desc())
            .limit(1)
        ).first()
    if used is not None:
        return used.serial, used.version or 1
    if not printed or not printed.strip():
        return None, 1
    serial = normalise(printed)
    known = lookup(index, serial)
    if known is not None and known.state == VOIDED:
        return None, 1
    return serial, 1


def _reissue_count(index: Index, policy_no: str) -> int:
    with index.engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(s.reissues).where(s.reissues.c.policy_no == policy_no)
        ).scalar_one()


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


def _manifest(
    *,
    policy_no: str,
    version: int,
    created_at: datetime,
    operator: str,
    clerk: str,
    facts: dict[str, Any],
    source: Any,
    versions: list[Any],
    copy: StoredObject,
    original_size: int,
    missing_images: list[str],
    mark: dict[str, str],
    requester_role: str | None,
) -> bytes:
    """The reissue version's manifest.json, in the format ``pipeline.bundle.manifest`` writes."""
    body = {
        "format": MANIFEST_FORMAT,
        "policy_no": policy_no,
        "version": version,
        "kind": "reissue",
        "created_at": created_at.isoformat(),
        "batch_id": None,
        "operator": operator,
        "clerk": clerk,
        "record_sha256": None,
        "record": None,
        "parts": [
            {
                "name": "customer.pdf",
                "key": source.customer_key,
                "sha256": source.customer_sha256,
                "size": source.customer_size,
                "pages": source.customer_pages,
            },
            {
                "name": "bundle.pdf",
                "key": source.bundle_key,
                "sha256": source.bundle_sha256,
                "size": source.bundle_size,
                "pages": source.bundle_pages,
            },
            {
                "name": "reissue.pdf",
                "key": copy.key,
                "sha256": copy.sha256,
                "size": copy.size,
                "pages": copy.pages,
            },
        ],
        "images": [],
        "missing_images": missing_images,
        "templates": {"reissue-mark.docx": mark["template"]},
        "seal": None,  # no seal is applied by a reissue: the seals stay as issued (seals_as_issued)
        "previous_version": {"version": str(source.version), "manifest": source.manifest_key},
        "reissue": {
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
        },
    }
    return json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


def _adopt(
    store: ObjectStore, *, manifest_key: str, facts: dict[str, Any]
) -> tuple[dict[str, Any] | None, bool]:
    """An unindexed manifest at this version's key, left by an interrupted attempt: ``(body, False)`` to
    adopt when it asked for the same reissue and its copy is intact; ``(None, True)`` when it is someone
    else's leftover; ``(None, False)`` when there is none."""
    info = store.head(manifest_key)
    if info is None:
        return None, False
    raw = store.get(manifest_key, sha256=info.sha256)
    body = json.loads(raw)
    theirs = {k: body.get("reissue", {}).get(k) for k in facts}
    part = next((p for p in body.get("parts", []) if p.get("name") == "reissue.pdf"), None)
    found = store.head(part["key"]) if part else None
    if theirs != facts or found is None or found.sha256 != part["sha256"]:
        return None, True
    body["_manifest"] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    logger.info("adopting %s, stored by an interrupted reissue", manifest_key)
    return body, False


def _commit(
    index: Index,
    *,
    policy_no: str,
    version: int,
    when: datetime,
    source: Any,
    copy: StoredObject,
    manifest: StoredObject,
    facts: dict[str, Any],
    old_used: tuple[int, datetime],
    requester_role: str | None,
    operator: str,
) -> None:
    """The version, the reissue row, the serials and the ledger event: one transaction."""
    clerk = facts["clerk"]
    at = as_utc(when)
    try:
        with index.engine.begin() as conn:
            changed = conn.execute(
                update(s.policies)
                .where(s.policies.c.policy_no == policy_no, s.policies.c.current_version == version - 1)
                .values(current_version=version)
            ).rowcount
            if changed != 1:
                raise IndexConflict(
                    f"policy {policy_no} changed while it was being reissued", hint="run the reissue again"
                )
            # Index's own row writer and ledger append, inside this transaction: one commit for all.
            index._insert_version(
                conn,
                VersionFacts(
                    policy_no=policy_no,
                    version=version,
                    kind="reissue",
                    created_at=at,
                    customer=StoredObject(
                        source.customer_key,
                        source.customer_sha256,
                        source.customer_size,
                        source.customer_pages,
                    ),
                    bundle=StoredObject(
                        source.bundle_key, source.bundle_sha256, source.bundle_size, source.bundle_pages
                    ),
                    manifest=manifest,
                    retain_until=as_utc(source.retain_until),
                ),
            )
            conn.execute(
                insert(s.reissues).values(
                    policy_no=policy_no,
                    version=version,
                    reissue_no=facts["number"],
                    reason=facts["reason"],
                    clerk=clerk,
                    reissued_at=at,
                    requester_id_hmac=facts["requester_id_hmac"],
                    source_version=source.version,
                    source_sha256=source.customer_sha256,
                    copy_key=copy.key,
                    copy_sha256=copy.sha256,
                    copy_size=copy.size,
                    copy_pages=copy.pages,
                    old_serial=facts["old_serial"],
                    new_serial=facts["new_serial"],
                )
            )
            if facts["old_serial"]:
                void_serial(
                    conn,
                    facts["old_serial"],
                    policy_no=policy_no,
                    used_version=old_used[0],
                    used_at=old_used[1],
                    by_version=version,
                    reason=f"第{facts['number']}次补发 ({facts['reason']})",
                    at=at,
                    by=clerk,
                )
            if facts["new_serial"]:
                use = use_serial(
                    conn, facts["new_serial"], policy_no=policy_no, version=version, at=at, by=clerk
                )
                if use.status != "used":
                    raise SerialError(f"serial {facts['new_serial']} was taken meanwhile; nothing was filed")
            index._append(
                conn,
                LedgerEvent(
                    clerk,
                    "policy.reissued",
                    policy_no,
                    {
                        "version": version,
                        "reissue_no": facts["number"],
                        "reason": facts["reason"],
                        "clerk": clerk,
                        "at": at.isoformat(),
                        "requester_id_hmac": facts["requester_id_hmac"],
                        "requester_role": requester_role,
                        "old_serial": facts["old_serial"],
                        "new_serial": facts["new_serial"],
                        "source_version": source.version,
                        "source_sha256": source.customer_sha256,
                        "copy": copy.key,
                        "copy_sha256": copy.sha256,
                        "manifest": manifest.key,
                        "manifest_sha256": manifest.sha256,
                        "operator": operator,
                    },
                ),
            )
    except IntegrityError as e:
        raise IndexConflict(
            f"version {version} of {policy_no} is already indexed", hint="run the reissue again"
        ) from e
