"""The archive's sanity checker (``issuance audit --orphans``), after paperless-ngx's: store against index.

It walks the store's listing once and the index's rows once, and reports each finding per object as an
error or a warning:

- **error, missing object**: an index row (a document version's customer copy, archive copy or manifest,
  a reissue's marked copy) names a key the store does not hold;
- **error, size or checksum mismatch**: the store lists the object with another size than the index
  records, or the store's own recorded SHA-256 (its metadata: ``LocalStore``'s sidecar, ``head`` on S3)
  differs from the index's. The bytes themselves are hashed by ``issuance verify`` and the audit's
  ``object_hashes`` check, not here: this pass must stay cheap on a whole archive;
- **error, version gap**: a policy row whose current version is not its highest document version;
- **warning, orphan object**: an object no index row claims. Left by an interrupted write (parts
  uploaded, no manifest) or an uploaded version whose index commit never happened (its manifest: a
  re-run of the batch adopts it). The archive never deletes inside retention, so these stay, reported;
- **warning, unrecorded audit report**: a file under ``audits/{id}/`` without an ``audit.completed``
  ledger event for that id;
- **warning, temp part**: a temp file a put left unfinished (``ObjectStore.leftovers``) whose writer is no
  longer running or cannot be checked from here; the next run removes those of writers gone.

Claimed are: the ``documents`` table's keys (customer, bundle, manifest of every version), the
``reissues`` table's copies, and the reports of recorded audits under ``audits/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from archive.index import Index
from archive.index.audits import ClaimedObject
from archive.store import ObjectInfo, ObjectStore

ERROR, WARNING = "error", "warning"
AUDIT_PREFIX = "audits/"
AUDIT_COMPLETED = "audit.completed"  # the ledger event that records a finished audit


@dataclass(frozen=True)
class Finding:
    """One thing the sanity checker found, about one object or one index row."""

    level: str  # error | warning
    kind: str  # missing_object | size_mismatch | checksum_mismatch | version_gap | orphan_object | …
    key: str | None
    policy_no: str | None
    message: str

    def as_json(self) -> dict[str, str | None]:
        return {
            "level": self.level,
            "kind": self.kind,
            "key": self.key,
            "policy_no": self.policy_no,
            "message": self.message,
        }


_PART_NAMES = {"customer": "customer copy", "bundle": "archive copy", "manifest": "manifest"}


def _what(claim: ClaimedObject) -> str:
    """What an auditor calls a claimed object: ``v2 (endorsement) archive copy``, ``v3 reissued copy``."""
    if claim.kind is None:
        return f"v{claim.version} reissued copy"
    return f"v{claim.version} ({claim.kind}) {_PART_NAMES[claim.part]}"


def _version_gaps(index: Index) -> list[Finding]:
    return [
        Finding(
            ERROR,
            "version_gap",
            None,
            gap.policy_no,
            f"the policy row says version {gap.current_version}, its documents go to {gap.top or 'none'}",
        )
        for gap in index.version_gaps()
    ]


def sanity_check(store: ObjectStore, index: Index) -> tuple[Finding, ...]:
    """Every finding, errors first, then by key."""
    listed: dict[str, ObjectInfo] = {info.key: info for info in store.list("")}
    findings: list[Finding] = []
    claimed: set[str] = set()
    for claim in index.claimed_objects():
        what = _what(claim)
        claimed.add(claim.key)
        info = listed.get(claim.key)
        if info is None:
            findings.append(
                Finding(
                    ERROR,
                    "missing_object",
                    claim.key,
                    claim.policy_no,
                    f"{what}: the store does not hold it",
                )
            )
            continue
        if claim.size is not None and info.size != claim.size:
            findings.append(
                Finding(
                    ERROR,
                    "size_mismatch",
                    claim.key,
                    claim.policy_no,
                    f"{what}: {info.size:,} bytes in the store, {claim.size:,} in the index",
                )
            )
        if info.sha256 is not None and claim.sha256 is not None and info.sha256 != claim.sha256:
            findings.append(
                Finding(
                    ERROR,
                    "checksum_mismatch",
                    claim.key,
                    claim.policy_no,
                    f"{what}: the store records SHA-256 {info.sha256[:12]}…, the index {claim.sha256[:12]}…",
                )
            )
    findings += _version_gaps(index)
    audits = index.ledger_subjects(AUDIT_COMPLETED)
    for key in sorted(set(listed) - claimed):
        if key.startswith(AUDIT_PREFIX):
            audit_id = key[len(AUDIT_PREFIX) :].split("/", 1)[0]
            if audit_id not in audits:
                findings.append(
                    Finding(
                        WARNING,
                        "unrecorded_audit",
                        key,
                        None,
                        f"audit {audit_id} has no audit.completed ledger event "
                        "(an audit that did not finish)",
                    )
                )
            continue
        policy_no = _policy_of(key)
        if key.rsplit("/", 1)[-1].startswith("manifest"):
            message = (
                "a manifest no index row records (a crash before the index commit): "
                "re-run its batch to adopt it"
            )
        else:
            message = (
                "no index row claims it (left by an interrupted write; kept, as the archive never deletes)"
            )
        findings.append(Finding(WARNING, "orphan_object", key, policy_no, message))
    findings += _temp_parts(store)
    findings.sort(key=lambda f: (f.level != ERROR, f.key or "", f.policy_no or "", f.kind))
    return tuple(findings)


def _temp_parts(store: ObjectStore) -> list[Finding]:
    out = []
    for part in store.leftovers():
        if part.writer_alive:  # a put under way
            continue
        if part.writer_alive is False:
            message = "a temp file of a put cut short (its writer is gone): the next run removes it"
        else:
            message = (
                "a temp file whose writer cannot be checked from here (another machine or container, or an "
                "older version): the next run removes it a day after that writer's last put, if it was "
                "journalled; else remove it by hand"
            )
        # no key segment starts with a dot: what does (a store's own folders, the temp file) is set aside
        folders = [name for name in part.path.split("/")[:-1] if not name.startswith(".")]
        policy_no = _policy_of("/".join([*folders, "part"]))
        out.append(Finding(WARNING, "temp_part", part.path, policy_no, message))
    return out


def _policy_of(key: str) -> str | None:
    """The policy number in a ``{branch}/{yyyy}/{mm}/{policy_no}/v{n}-{kind}/…`` key, if it has that shape."""
    parts = key.split("/")
    if len(parts) >= 6 and parts[4][:1] == "v":
        return parts[3]
    return None
