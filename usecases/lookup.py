"""Finding policies and reading their archived copies: ``issuance find`` and ``issuance get``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from archive.serials import SerialRecord, lookup
from core.config import Settings
from core.errors import UsageError
from stamps import SealRegistry, load_seal_registry
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
    limit: int = 50,
) -> Found:
    """Policies matching every criterion given (dates are China days, inclusive)."""
    if not any((policy_no, id_no, plate, name, branch, serial, issued_from, issued_to)):
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


def read_copy(settings: Settings, policy_no: str, *, version: int | None, copy: str) -> Copy:
    """The customer (``copy="customer"``) or archive copy of a version (default: the newest);
    ``ObjectCorrupt`` when the stored bytes fail their hash."""
    with Archive(settings) as archive:
        versions = archive.index.versions(policy_no)
        if not versions:
            raise UsageError(
                f"policy {policy_no} is not in the archive", hint="look it up with issuance find"
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
        return Copy(chosen, archive.store.get(key, sha256=digest), digest)


def seal_registry() -> SealRegistry:
    """The company's seals, as ``issuance seals list|draw`` shows them."""
    return load_seal_registry()
