"""The reissued copy (补发件): the archived customer copy with a reissue mark on every page.

The mark is a one-page PDF rendered from ``templates/reissue-mark.docx`` (a business user edits it in
Word; the fields are ``number``, ``date``, ``serial`` and ``old_serial``; a long serial wraps to a
second line) through the warm LibreOffice converter, once per reissue: 补发件 REISSUED, 第N次补发, the
reissue date, and the new and voided print serials when forms are numbered. It is real text (Noto Sans
CJK, embedded by LibreOffice, with a ToUnicode map), so ``pdftotext`` and screen readers get it.

``stamps.marks.overlay_mark`` lays it on every page of the archived copy by an incremental update (the
original bytes stay the copy's prefix, the seals stay as issued, no text is covered): see there for
what is promised.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from core.errors import TemplateError
from core.manifest import MarkedCopy, ReissueMark
from core.products import DEFAULT_TEMPLATES_DIR, file_version
from pipeline.convert import DocxToPdf
from pipeline.render import TemplateCache, render_docx, text
from stamps.marks import overlay_mark

__all__ = ["DEFAULT_MARK_TEMPLATE", "ReissueMarker", "mark_context"]

DEFAULT_MARK_TEMPLATE = DEFAULT_TEMPLATES_DIR / "reissue-mark.docx"


class ReissueMarker:
    """Renders reissue marks through a (warm) converter and lays them on customer copies.

    Thread-safe as far as the converter is (``Converter`` serialises, ``ConverterPool`` spreads).
    """

    def __init__(
        self,
        *,
        converter: DocxToPdf,
        template: Path = DEFAULT_MARK_TEMPLATE,
        scratch_dir: Path | None = None,
    ) -> None:
        if not template.is_file():
            raise TemplateError(
                f"the reissue mark template {template} is missing",
                hint="restore templates/reissue-mark.docx",
            )
        self.converter = converter
        self.template = template
        self.template_version = file_version(template)
        self._templates = TemplateCache()
        self._scratch = scratch_dir

    def render(self, mark: ReissueMark) -> bytes:
        """The mark alone: a one-page PDF from the template (``TemplateError`` if it is not one page)."""
        with tempfile.TemporaryDirectory(prefix="reissue-mark-", dir=self._scratch) as tmp:
            docx, pdf = Path(tmp) / "mark.docx", Path(tmp) / "mark.pdf"
            render_docx(template=self.template, context=mark_context(mark), out=docx, cache=self._templates)
            pages = self.converter.convert(docx, pdf)
            if pages != 1:
                raise TemplateError(
                    f"{self.template.name} rendered {pages} pages; a reissue mark must fit on one",
                    hint="keep the mark template's page one short band",
                )
            return pdf.read_bytes()

    def mark(self, pdf: bytes, mark: ReissueMark) -> MarkedCopy:
        """The reissued copy of ``pdf``: see ``stamps.marks`` for what is promised."""
        mark_pdf = self.render(mark)
        marked, placements = overlay_mark(pdf, mark_pdf)
        return MarkedCopy(
            pdf=marked,
            pages=len(placements),
            mark_pdf=mark_pdf,
            template_version=self.template_version,
            placements=placements,
            original_size=len(pdf),
        )


def mark_context(mark: ReissueMark) -> dict[str, object]:
    """The mark template's fields; serials are data, escaped like every record value."""
    return {
        "number": mark.number,
        "date": mark.on.isoformat(),
        "serial": text(mark.serial) if mark.serial else "",
        "old_serial": text(mark.old_serial) if mark.old_serial else "",
    }
