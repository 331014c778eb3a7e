"""Previews (``issuance render``): what a customer copy will look like, made so it cannot pass for one.

Issue 24 item 4: a preview carries 预览 PREVIEW — 非正式保单 on every page, a SPECIMEN seal in place of
the registered seal, and neither signature nor verification QR code.

- The mark is a one-page PDF rendered from ``templates/preview-mark.docx`` (a business user edits it
  in Word) through the warm converter, once per run, and laid in the top margin of every page by
  ``stamps.marks.overlay_mark``, the reissue mark's machinery: real text, so ``pdftotext`` finds it.
- ``specimen_seals`` is a seal registry holding one drawn seal whose ring says 样本 SPECIMEN and whose
  centre line says 预览: it seals every document kind for every branch, so the preview's layout (seal
  on the signature line, cross-page strips) is the issued one, while an auditor's seal finder run
  against the registered seal finds none.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from core.errors import TemplateError
from core.products import DEFAULT_TEMPLATES_DIR
from pipeline.convert import DocxToPdf
from pipeline.render import TemplateCache, render_docx
from stamps.marks import overlay_mark
from stamps.registry import DOCUMENT_KINDS, Seal, SealRegistry

__all__ = ["DEFAULT_PREVIEW_TEMPLATE", "SPECIMEN_SEAL", "PreviewMarker", "specimen_seals"]

DEFAULT_PREVIEW_TEMPLATE = DEFAULT_TEMPLATES_DIR / "preview-mark.docx"

# Blue rather than seal red: a printed preview must not look sealed at a glance either; a colour still
# (not grey), so the preview can be checked for it the way issued copies are checked for theirs.
SPECIMEN_SEAL = Seal(
    id="preview-specimen",
    version=1,
    owner="样本SPECIMEN样本SPECIMEN",
    purpose="预览",
    colour=(40, 80, 170),
    branches=("",),
    documents=DOCUMENT_KINDS,
)


def specimen_seals() -> SealRegistry:
    """The seal registry of previews: the specimen seal for every document and branch."""
    return SealRegistry(seals=(SPECIMEN_SEAL,))


class PreviewMarker:
    """Renders the preview mark once (through ``converter``) and lays it on every page of a PDF."""

    def __init__(
        self,
        *,
        converter: DocxToPdf,
        template: Path = DEFAULT_PREVIEW_TEMPLATE,
        scratch_dir: Path | None = None,
    ) -> None:
        if not template.is_file():
            raise TemplateError(
                f"the preview mark template {template} is missing",
                hint="restore templates/preview-mark.docx",
            )
        self.converter = converter
        self.template = template
        self._scratch = scratch_dir
        self._lock = threading.Lock()
        self._mark: bytes | None = None

    def render(self) -> bytes:
        """The mark alone: a one-page PDF (``TemplateError`` if the template renders more)."""
        with self._lock:  # render threads share one marker: the mark is converted once per run
            if self._mark is None:
                with tempfile.TemporaryDirectory(prefix="preview-mark-", dir=self._scratch) as tmp:
                    docx, pdf = Path(tmp) / "mark.docx", Path(tmp) / "mark.pdf"
                    render_docx(template=self.template, context={}, out=docx, cache=TemplateCache())
                    pages = self.converter.convert(docx, pdf)
                    if pages != 1:
                        raise TemplateError(
                            f"{self.template.name} rendered {pages} pages; a preview mark must fit on one",
                            hint="keep the mark template's page one short band",
                        )
                    self._mark = pdf.read_bytes()
            return self._mark

    def mark(self, pdf: bytes) -> bytes:
        """``pdf`` with the preview mark in the top margin of every page (an incremental update)."""
        marked, _placements = overlay_mark(pdf, self.render())
        return marked
