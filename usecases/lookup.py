"""Finding policies and reading their archived copies: ``issuance find`` and ``issuance get``.

Every read of an archived copy by a person is a ``copy.read`` ledger event naming the person, the
version, the copy and the purpose (DESIGN.md, invariant 7; DOMAIN.md: "each read of a customer's file is
recorded with who and why"): the CLI's ``get`` and the desk's views and downloads call ``read_copy``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from archive.index import LedgerEvent
from archive.serials import SerialRecord, lookup
from core.config import Settings
from core.errors import UsageError
from core.privacy import scrub
from stamps import SealRegistry, load_seal_registry
from usecases.identity import READ_ROLES, branch_of, require_user
from usecases.session import Archive

CHINA = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Found:
    """What ``find`` found: policy summaries, and the serial's registry row when asked by serial."""

    policies: list[Any]
    serial: SerialRecord | None


def find_policies(
    settings: Settings,
    *,
    policy_no: str | None = None,
    id_no: str | None = None,
    plate: str | None = None,
    name: str | None = None,
    branch: str | None = None,
    serial: str | None = None,
    issued_from: date | None = None,
    issued_to: date | None = None,
    address: str | None = None,
    limit: int = 50,
) -> Found:
    """Policies matching every criterion given (dates are China days, inclusive). A plate, name, ID
    number or property address finds a policy by its current value and by any earlier one."""
    if not any((policy_no, id_no, plate, name, branch, serial, issued_from, issued_to, address)):
        raise UsageError("say what to look for", hint="e.g. issuance find --policy-no P… or --plate 京A12345")
    with Archive(settings) as archive:
        registered = None
        if serial:
            # the serial registry knows every form a document used, voided ones included: it names the
            # policy even when the policy was printed on another serial (a reissue moves it to a new one)
            registered = lookup(archive.index, serial)
            if registered is not None and registered.policy_no and not policy_no:
                policy_no, serial = registered.policy_no, None
        found = archive.index.find(
            policy_no=policy_no,
            id_no=id_no,
            plate=plate,
            name=name,
            branch=branch,
            serial=serial,
            address=address,
            issued_from=datetime.combine(issued_from, time(), CHINA) if issued_from else None,
            issued_to=datetime.combine(issued_to + timedelta(days=1), time(), CHINA) if issued_to else None,
            limit=limit,
        )
    return Found(found, registered)


@dataclass(frozen=True)
class Copy:
    """One archived PDF, read back and verified against its SHA-256."""

    version: Any
    data: bytes
    sha256: str


MAX_PURPOSE = 200


def check_purpose(purpose: str) -> str:
    """The purpose of a read, as the ledger keeps it: 1 to ``MAX_PURPOSE`` printable characters, and no
    ID or phone number (the message does not repeat the text, which is what it refuses to keep)."""
    text = " ".join((purpose or "").split())
    if not text or len(text) > MAX_PURPOSE or any(not c.isprintable() for c in text):
        raise UsageError(
            f"say why the copy is read: 1 to {MAX_PURPOSE} printable characters",
            hint='e.g. --purpose "补发 at the counter" or "complaint 2026-118"',
        )
    if scrub(text) != text:
        raise UsageError(
            "the purpose holds something shaped like an ID or phone number: personal data never goes "
            "into the ledger",
            hint="say why without the number, e.g. the case or complaint reference",
        )
    return text


def read_copy(
    settings: Settings,
    policy_no: str,
    *,
    version: int | None,
    copy: str,
    by: str,
    purpose: str,
) -> Copy:
    """The customer (``copy="customer"``) or archive copy of a version (default: the newest), read by
    ``by`` for ``purpose``: a known, enabled user with a role that reads that copy (``READ_ROLES``),
    acting for the policy's branch, else ``NotPermitted``. The read is recorded (``copy.read``) after
    the bytes pass their SHA-256 and before they are handed out; ``ObjectCorrupt`` when they fail it."""
    if copy not in READ_ROLES:
        raise UsageError(f"copy is customer or archive, not {copy!r}")
    why = check_purpose(purpose)
    with Archive(settings) as archive:
        versions = archive.index.versions(policy_no)
        if not versions:
            raise UsageError(
                f"policy {policy_no} is not in the archive", hint="look it up with issuance find"
            )
        user = require_user(
            settings,
            by,
            roles=READ_ROLES[copy],
            action=f"read the {copy} copy",
            branch=branch_of(archive.index, policy_no),
            index=archive.index,
        )
        chosen = (
            versions[-1] if version is None else next((v for v in versions if v.version == version), None)
        )
        if chosen is None:
            raise UsageError(f"policy {policy_no} has no version {version} (it has 1–{versions[-1].version})")
        key, digest = (
            (chosen.customer_key, chosen.customer_sha256)
            if copy == "customer"
            else (chosen.bundle_key, chosen.bundle_sha256)
        )
        data = archive.store.get(key, sha256=digest)
        archive.index.append_event(
            LedgerEvent(
                user.name,
                "copy.read",
                policy_no,
                {
                    "user": user.name,
                    "version": chosen.version,
                    "kind": chosen.kind,
                    "copy": copy,
                    "sha256": digest,
                    "purpose": why,
                },
            )
        )
        return Copy(chosen, data, digest)


def seal_registry() -> SealRegistry:
    """The company's seals, as ``issuance seals list|draw`` shows them."""
    return load_seal_registry()
