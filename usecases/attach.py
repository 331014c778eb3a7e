"""``issuance attach``: underwriting images that arrive after the policy, filed as a supplement version."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.config import Settings
from usecases.filing import Filed
from usecases.session import Archive, filing_without_documents


def attach_images(
    settings: Settings, policy_no: str, *, kind: str, files: Sequence[Path], by: str | None, label: str | None
) -> Filed:
    """``issuance attach``: late underwriting images filed as a supplement version of ``policy_no``."""
    with Archive(settings) as archive:
        filing = filing_without_documents(settings, archive)
        try:
            return filing.attach(
                policy_no.strip().upper(), kind=kind, files=files, by=by or settings.operator, label=label
            )
        finally:
            filing.close()
