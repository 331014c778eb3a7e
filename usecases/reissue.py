"""Reissue (补发) and the print-serial registry, as the clerks and the centre use them."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from datetime import date
from pathlib import Path

from archive import serials
from archive.reissue import Reissued, ReissueRequest, reissue
from core.config import Settings
from core.products import DEFAULT_TEMPLATES_DIR
from pipeline.convert import Converter, profile_template_for
from pipeline.reissue import ReissueMarker
from pipeline.scratch import run_scratch
from usecases.identity import REISSUE_ROLES, SERIAL_ROLES, branch_of, require_user
from usecases.session import Archive, signer_from


class Reissuer:
    """Reissues over one archive with one LibreOffice kept warm between them (the desk keeps one, so a
    clerk's reissue does not wait for LibreOffice to start); one reissue at a time. Close when done."""

    def __init__(self, settings: Settings, archive: Archive | None = None) -> None:
        self.settings = settings
        self._stack = contextlib.ExitStack()
        try:
            self.archive = archive or self._stack.enter_context(Archive(settings))
            scratch = Path(self._stack.enter_context(run_scratch(settings.scratch_dir)))
            # closing(), not the converter's own context: LibreOffice starts on the first conversion, so a
            # refused reissue (unknown policy, used serial, hash mismatch) does not wait for it
            converter = self._stack.enter_context(
                contextlib.closing(
                    Converter(
                        workdir=scratch,
                        timeout=settings.timeout,
                        soffice=settings.soffice,
                        profile_template=profile_template_for(settings.cache_dir, settings.soffice),
                    )
                )
            )
            template = (settings.templates_dir or DEFAULT_TEMPLATES_DIR) / "reissue-mark.docx"
            self.converter = converter
            self.marker = ReissueMarker(converter=converter, template=template, scratch_dir=scratch)
            self.signer = signer_from(settings)
        except BaseException:
            self._stack.close()
            raise
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Start LibreOffice now rather than at the first reissue."""
        with self._lock:
            self.converter.start()

    def reissue(self, request: ReissueRequest) -> Reissued:
        """The reissued copy (the archived customer copy with the 补发件 mark on every page), filed as a
        new version, the old serial voided and the new one used; refusals raise before anything is filed."""
        with self._lock:
            return reissue(
                store=self.archive.store,
                index=self.archive.index,
                marker=self.marker,
                request=request,
                operator=self.settings.operator,
                signer=self.signer,
            )

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Reissuer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def reissue_copy(settings: Settings, request: ReissueRequest) -> Reissued:
    """One reissue (``issuance reissue``): see ``Reissuer.reissue``. The clerk named must be a known,
    enabled user with role clerk or supervisor, acting for the policy's branch (``NotPermitted``,
    before anything is filed or LibreOffice started); the desk checks its signed-in user itself."""
    with Reissuer(settings) as reissuer:
        if clerk := (request.clerk or "").strip():  # none: the reissue's own refusal says --by is needed
            index = reissuer.archive.index
            user = require_user(
                settings,
                clerk,
                roles=REISSUE_ROLES,
                action="reissue a policy",
                branch=branch_of(index, request.policy_no or ""),
                index=index,
            )
            request = dataclasses.replace(request, clerk=user.name)  # as the user is named (LDAP: lower case)
        return reissuer.reissue(request)


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


def void_serials(settings: Settings, numbers: list[str], *, reason: str, by: str) -> serials.VoidedBlank:
    """Void lost or spoilt blank forms. ``by`` must be a known, enabled user with role operator
    (``NotPermitted``, before anything changes): operators run the serials (DOMAIN.md)."""
    with Archive(settings) as archive:
        user = require_user(
            settings, (by or "").strip(), roles=SERIAL_ROLES, action="void print serials", index=archive.index
        )
        return serials.void_blank(archive.index, numbers, reason=reason, by=user.name)


def serials_report(
    settings: Settings, *, start: date | None, end: date | None, overdue_days: int
) -> serials.SerialReport:
    """Counts and the overdue rates (超期未核销率, 超期未回收率) for a period."""
    with Archive(settings) as archive:
        return serials.report(archive.index, start=start, end=end, overdue_days=overdue_days)
