"""Reissue (补发) and the print-serial registry, as the clerks and the centre use them."""

from __future__ import annotations

import contextlib
from datetime import date
from pathlib import Path

from archive import serials
from archive.reissue import Reissued, ReissueRequest, reissue
from core.config import Settings
from core.products import DEFAULT_TEMPLATES_DIR
from pipeline.convert import Converter, profile_template_for
from pipeline.reissue import ReissueMarker
from pipeline.scratch import run_scratch
from usecases.session import Archive, signer_from


def reissue_copy(settings: Settings, request: ReissueRequest) -> Reissued:
    """The reissued copy (the archived customer copy with the 补发件 mark on every page), filed as a new
    version, the old serial voided and the new one used; refusals raise before anything is filed."""
    template = (settings.templates_dir or DEFAULT_TEMPLATES_DIR) / "reissue-mark.docx"
    with (
        Archive(settings) as archive,
        run_scratch(settings.scratch_dir) as scratch,
        # closing(), not the converter's own context: LibreOffice starts on the first conversion, so a
        # refused reissue (unknown policy, used serial, hash mismatch) does not wait for it
        contextlib.closing(
            Converter(
                workdir=Path(scratch),
                timeout=settings.timeout,
                soffice=settings.soffice,
                profile_template=profile_template_for(settings.cache_dir, settings.soffice),
            )
        ) as converter,
    ):
        marker = ReissueMarker(converter=converter, template=template, scratch_dir=Path(scratch))
        return reissue(
            store=archive.store,
            index=archive.index,
            marker=marker,
            request=request,
            operator=settings.operator,
            signer=signer_from(settings),
        )


def issue_serials(
    settings: Settings, *, first: str, last: str, to: str, by: str | None, branch: str | None
) -> serials.IssuedRange:
    """Register a range of pre-printed forms as issued to a clerk."""
    with Archive(settings) as archive:
        return serials.issue_range(
            archive.index, first=first, last=last, to=to, by=by or settings.operator, branch=branch
        )


def reconcile_serials(settings: Settings, numbers: list[str], *, by: str | None) -> serials.Reconciled:
    """Reconcile (核销) used or voided serials."""
    with Archive(settings) as archive:
        return serials.reconcile(archive.index, numbers, by=by or settings.operator)


def serials_report(
    settings: Settings, *, start: date | None, end: date | None, overdue_days: int
) -> serials.SerialReport:
    """Counts and the overdue rate (超期未核销率) for a period."""
    with Archive(settings) as archive:
        return serials.report(archive.index, start=start, end=end, overdue_days=overdue_days)
