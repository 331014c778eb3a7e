"""``issuance attach``: underwriting images that arrive after the policy, filed as a supplement version."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.config import Settings
from core.products import DEFAULT_TEMPLATES_DIR, load_registry
from pipeline.documents import DocumentMaker
from usecases.filing import Filed, Filing
from usecases.session import Archive, signer_from


def attach_images(
    settings: Settings, policy_no: str, *, kind: str, files: Sequence[Path], by: str | None, label: str | None
) -> Filed:
    """``issuance attach``: late underwriting images filed as a supplement version of ``policy_no``."""
    registry = load_registry(settings.templates_dir or DEFAULT_TEMPLATES_DIR)
    with Archive(settings) as archive:
        # attaching images renders nothing: the maker is there for the registry only
        maker = DocumentMaker(registry=registry, converter=None, cache_dir=settings.cache_dir)  # type: ignore[arg-type]
        filing = Filing(
            store=archive.store,
            index=archive.index,
            maker=maker,
            operator=settings.operator,
            signer=signer_from(settings),
        )
        try:
            return filing.attach(
                policy_no.strip().upper(), kind=kind, files=files, by=by or settings.operator, label=label
            )
        finally:
            filing.close()
