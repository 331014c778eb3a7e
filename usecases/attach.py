"""``issuance attach``: underwriting images that arrive after the policy, filed as a supplement version."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.config import Settings
from usecases.filing import Filed
from usecases.identity import ATTACH_ROLES, branch_of, require_user
from usecases.session import Archive, filing_without_documents


def attach_images(
    settings: Settings, policy_no: str, *, kind: str, files: Sequence[Path], by: str | None, label: str | None
) -> Filed:
    """``issuance attach``: late underwriting images filed as a supplement version of ``policy_no``, by
    ``by`` (default: the operator), a known, enabled user with role clerk or operator acting for the
    policy's branch (else ``NotPermitted``, nothing filed)."""
    actor = by or settings.operator
    with Archive(settings) as archive:
        user = require_user(
            settings,
            actor,
            roles=ATTACH_ROLES,
            action="attach images to a policy",
            branch=branch_of(archive.index, policy_no),
            index=archive.index,
        )
        filing = filing_without_documents(settings, archive)
        try:
            return filing.attach(policy_no.strip().upper(), kind=kind, files=files, by=user.name, label=label)
        finally:
            filing.close()
