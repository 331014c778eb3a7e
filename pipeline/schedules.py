"""Several records' documents in one LibreOffice document, and the PDF split back per record.

Why: LibreOffice's cost is mostly per document (reading the styles, setting up fonts, the PDF export), not
per page (docs/performance.md, ``bench/throughput_bench.py``). So the schedules of one template are
rendered into one .docx, converted once, and the PDF is cut back into records.

How the composed .docx is built, from the business's own template (nothing in the template changes):

- each record's body is rendered by docxtpl's own part renderer with the record's context (autoescape,
  the same compiled template as ``pipeline.render``), so a record renders exactly as it would alone;
- each record is its own Word section, with its own footer (its own policy number) and page numbers
  restarting at 1; a footer's NUMPAGES ("共 N 页") becomes PAGEREF to a bookmark ``ISSEND0007`` that ends
  record 7: the page number of its last page, which is its page count since its numbers restart at 1
  (LibreOffice 7.4 has no count of a section's pages; so a schedule that runs over a page is right in the
  composed document, not converted again on its own); a template with NUMPAGES elsewhere is not
  ``composable``;
- a bookmark ``ISSDOC0007`` opens record 7, and two bookmarks ``ISSSEAL0007A``/``B`` sit just before and
  after 盖章 on its signature line. LibreOffice exports bookmarks as named destinations (page, x, top):
  the first tells where record 7 starts, the other two where its company seal goes, without reading the
  text back with ``pdftotext`` (a process per page).

The same sections, bookmarks and page counts put a product's finished clause documents into one
document (``concatenate``), when nothing but their text and footers differs: LibreOffice then embeds
their fonts once, where apart each clause carries its own subsets.

What is promised: ``ComposedTemplate.write`` renders what it can and says which record failed and why
(``TemplateError``), never failing its neighbours; ``split`` gives each record's pages or raises
``SplitError`` when the PDF does not hold the destinations it must (the caller then converts the records
one by one).
"""

from __future__ import annotations

import io
import re
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pikepdf
from docxtpl import DocxTemplate
from jinja2 import TemplateError as JinjaTemplateError
from lxml import etree

from core.errors import IssuanceError, TemplateError
from pipeline.render import _ENV
from pipeline.scratch import create_private

__all__ = ["AnchorMark", "ComposedTemplate", "RecordPages", "SplitError", "concatenate", "split"]

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_REL_TYPES = {
    "footer": "http://schemas.openxmlformats.org/officeDocument/2006/relationships/footer",
    "header": "http://schemas.openxmlformats.org/officeDocument/2006/relationships/header",
}
_CONTENT_TYPES = {
    "footer": "application/vnd.openxmlformats-officedocument.wordprocessingml.footer+xml",
    "header": "application/vnd.openxmlformats-officedocument.wordprocessingml.header+xml",
}
_REFERENCE = re.compile(r'<w:(header|footer)Reference [^>]*?r:id="([^"]+)"[^>]*/>')
_PARAGRAPH = re.compile(r"<w:p(?:\s[^>]*)?>")
_RUN = re.compile(
    r"<w:r(?:\s[^>]*)?>(<w:rPr>(?:(?!</w:rPr>).)*</w:rPr>)?<w:t(?:\s[^>]*)?>([^<]*)</w:t></w:r>"
)
# what may follow w:pgNumType in w:sectPr, in the schema's order
_AFTER_PAGE_NUMBERING = (
    "<w:cols",
    "<w:formProt",
    "<w:vAlign",
    "<w:noEndnote",
    "<w:titlePg",
    "<w:textDirection",
    "<w:bidi",
    "<w:rtlGutter",
    "<w:docGrid",
    "<w:printerSettings",
    "</w:sectPr>",
)
# "共 N 页" in a footer: LibreOffice 7.4 has no per-section page count (it shows SECTIONPAGES' cached
# value), so in a composed document NUMPAGES becomes "PAGEREF ISSEND0007": the number of the page that
# holds the bookmark ending record 7, counted from 1 in its own section. ``_END_REF`` stands for the
# bookmark until the record's place is known; it is found only inside a field's instruction, where a
# value from a record (escaped: no raw ``<`` or ``"``) can never be.
_NUMPAGES = re.compile(r"(<w:instrText[^>]*>\s*)NUMPAGES\b[^<]*(</w:instrText>)")
_NUMPAGES_SIMPLE = re.compile(r'(<w:fldSimple w:instr="\s*)NUMPAGES\b[^"]*(")')
_END_REF = "PAGEREF ISSEND____ "
_END_REF_FIELD = re.compile(r'(<w:instrText[^>]*>\s*|<w:fldSimple w:instr="\s*)PAGEREF ISSEND____ ')
_PARAGRAPH_START = re.compile(r"<w:p([ >])")  # docxtpl puts a newline before each (``_render_part``)
_BOOKMARK_BASE = 7_000_000  # ids above any a template carries


class SplitError(IssuanceError):
    """The converted PDF does not say where each record starts: convert the records one by one."""


@dataclass(frozen=True)
class AnchorMark:
    """Where 盖章 lies on a record's page, from LibreOffice's layout: ``page`` within the record, the x of
    its first and past its last character, and the top of its line (PDF user space, origin bottom-left)."""

    page: int
    x0: float
    x1: float
    top: float


@dataclass(frozen=True)
class RecordPages:
    pages: range  # 0-based pages of the composed PDF
    anchor: AnchorMark | None


def _doc_mark(i: int) -> str:
    return f"ISSDOC{i:04d}"


def _own_page_count(xml: str) -> str:
    """A header's or footer's NUMPAGES fields made to count their section's pages (``_END_REF``)."""
    return _NUMPAGES_SIMPLE.sub(rf"\g<1>{_END_REF}\g<2>", _NUMPAGES.sub(rf"\g<1>{_END_REF}\g<2>", xml))


def _end_mark(i: int) -> str:
    return f"ISSEND{i:04d}"


def _seal_marks(i: int) -> tuple[str, str]:
    return f"ISSSEAL{i:04d}A", f"ISSSEAL{i:04d}B"


def _bookmark(name: str, ident: int) -> str:
    return f'<w:bookmarkStart w:id="{ident}" w:name="{name}"/><w:bookmarkEnd w:id="{ident}"/>'


class ComposedTemplate:
    """One Word template, ready to render many records into one .docx. Safe to share between threads."""

    def __init__(self, template: Path, *, anchor: str, seal_over: str) -> None:
        self.template = template
        self._raw = template.read_bytes()
        self._anchor = anchor
        self._seal_over = seal_over
        doc = DocxTemplate(io.BytesIO(self._raw))
        doc.render_init()
        self._doc = doc
        self._compiled: dict[str, Any] = {}  # part source -> its compiled template (``_render_part``)
        self._lock = threading.Lock()  # docxtpl keeps the part being rendered on the template object
        try:
            self._body = doc.patch_xml(doc.get_xml())
            with zipfile.ZipFile(io.BytesIO(self._raw)) as z:
                document = z.read("word/document.xml").decode("utf-8")
                self._rels = z.read("word/_rels/document.xml.rels").decode("utf-8")
                self._types = z.read("[Content_Types].xml").decode("utf-8")
        except (KeyError, ValueError, zipfile.BadZipFile) as e:
            raise TemplateError(f"template {template.name} is not a usable .docx: {e}") from e
        start = document.find("<w:body>")
        if start < 0:
            raise TemplateError(f"template {template.name} has no document body")
        self._head = document[: start + len("<w:body>")]
        # Headers and footers the section uses: rendered per record (they print the policy number).
        self._parts: dict[str, tuple[str, str, str, Any]] = {}  # kind, composed and alone source, part
        rels = doc.docx.part.rels
        # one section only: a template's inner sections would keep footers no record was rendered into
        self.composable = "NUMPAGES" not in self._body and self._body.count("<w:sectPr") == 1
        for kind, rel_id in _REFERENCE.findall(self._body):
            part = rels[rel_id].target_part
            alone = doc.patch_xml(part.blob.decode("utf-8"))
            source = _own_page_count(alone)
            self.composable &= "NUMPAGES" not in source
            self._parts[rel_id] = (kind, source, alone, part)
        self._fix_tables = "{%tc" in self._body

    def write(self, contexts: Sequence[dict[str, Any]], out: Path) -> list[TemplateError | None]:
        """Render every context into one .docx at ``out``, in order; per context its error or None.

        A context that fails to render is left out of the document; the others keep their order, so the
        i-th record that rendered is the i-th in ``split``'s answer.
        """
        errors: list[TemplateError | None] = []
        rendered: list[tuple[str, str, dict[str, str]]] = []
        for context in contexts:
            try:
                rendered.append(self._render_one(context, alone=len(contexts) == 1))
                errors.append(None)
            except TemplateError as e:
                errors.append(e)
        if rendered:
            self._write_docx(rendered, out)
        return errors

    def _render_one(self, context: dict[str, Any], *, alone: bool) -> tuple[str, str, dict[str, str]]:
        doc = self._doc
        try:
            with self._lock:
                body = self._render_part(self._body, doc.docx._part, context)
                parts = {
                    rel_id: self._render_part(single if alone else source, part, context)
                    for rel_id, (_kind, source, single, part) in self._parts.items()
                }
                if self._fix_tables:
                    body = etree.tostring(doc.fix_tables(body), encoding="unicode")
        except JinjaTemplateError as e:
            raise TemplateError(f"template {self.template.name} is broken: {e}", hint="fix it in Word") from e
        inner = body[body.index(">") + 1 : body.rindex("</w:body>")]
        cut = inner.rfind("<w:sectPr")
        if cut < 0:
            raise TemplateError(f"template {self.template.name} has no section properties")
        return inner[:cut], inner[cut:], parts

    def _render_part(self, source: str, part: Any, context: dict[str, Any]) -> str:
        """docxtpl's ``render_xml_part`` (same steps, same result) without what it costs on every call:
        the source is prepared (a newline before each paragraph) and compiled once, not prepared again
        and looked up by a fresh 100 KB string; the newlines come out by plain replaces, not a regex pass
        with a template for each paragraph; and tabs, newlines, \\a and \\f in values are turned into
        Word markup (four regex passes over every paragraph) only when the output has one
        (docs/performance.md, ``bench/pipeline_cpu.py``). Called under ``_lock``: docxtpl keeps the part
        being rendered on the template object."""
        template = self._compiled.get(source)
        if template is None:
            template = self._compiled[source] = _ENV.from_string(_PARAGRAPH_START.sub(r"\n<w:p\1", source))
        self._doc.current_rendering_part = part
        xml = template.render(context).replace("\n<w:p ", "<w:p ").replace("\n<w:p>", "<w:p>")
        xml = xml.replace("{_{", "{{").replace("}_}", "}}").replace("{_%", "{%").replace("%_}", "%}")
        if "\t" in xml or "\n" in xml or "\a" in xml or "\f" in xml:
            xml = self._doc.resolve_listing(xml)
        return xml

    def _write_docx(self, rendered: list[tuple[str, str, dict[str, str]]], out: Path) -> None:
        sections = []
        for i, (body, section, parts) in enumerate(rendered):
            body = _mark_anchor(body, i, anchor=self._anchor, part=self._seal_over)
            kinds = {rel_id: (self._parts[rel_id][0], xml) for rel_id, xml in parts.items()}
            sections.append((body, section, kinds))
        _write_composed(
            self._raw, head=self._head, rels=self._rels, types=self._types, sections=sections, out=out
        )


def concatenate(sources: Sequence[Path], out: Path) -> str | None:
    """Several finished .docx documents (clauses: no template fields) one after the other in one .docx at
    ``out``, each its own section with its own footer and pages numbered from 1, for ``split``.

    Why: LibreOffice embeds one subset of each font per document; a product's clauses converted apart
    carry one each, which a customer copy then holds side by side (docs/performance.md: about half the
    bytes together). Together is faithful only when nothing but their text and footers differs: the same
    styles, numbering, settings, theme, fonts and relationships (byte for byte), one section each,
    headers and footers without parts of their own. Returns None when written, else why not (nothing is
    written).
    """
    members: dict[str, bytes] | None = None
    head = rels = types = ""
    raw = b""
    sections: list[tuple[str, str, dict[str, tuple[str, str]]]] = []
    for source in sources:
        try:
            data = source.read_bytes()
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                parts = {name: z.read(name) for name in z.namelist()}
            document = parts["word/document.xml"].decode("utf-8")
            own_rels = parts["word/_rels/document.xml.rels"].decode("utf-8")
        except (OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as e:
            return f"{source.name} is not a usable .docx ({e})"
        start, stop = document.find("<w:body>"), document.rfind("</w:body>")
        if start < 0 or stop < 0:
            return f"{source.name} has no document body"
        inner = document[start + len("<w:body>") : stop]
        if inner.count("<w:sectPr") != 1 or "NUMPAGES" in inner:
            return f"{source.name} has several sections or counts pages in its body"
        cut = inner.rfind("<w:sectPr")
        body, section = inner[:cut], inner[cut:]
        own: dict[str, tuple[str, str]] = {}
        for kind, rel_id in _REFERENCE.findall(section):
            target = re.search(rf'<Relationship [^>]*Id="{re.escape(rel_id)}"[^>]*/>', own_rels)
            name = re.search(r'Target="([^"]+)"', target.group(0)) if target else None
            if name is None or f"word/{name.group(1)}" not in parts:
                return f"{source.name}: its {kind} {rel_id} is not in the file"
            if f"word/_rels/{name.group(1)}.rels" in parts:
                return f"{source.name}: its {kind} has parts of its own"
            xml = parts.pop(f"word/{name.group(1)}").decode("utf-8")
            xml = _own_page_count(xml)
            if "NUMPAGES" in xml:
                return f"{source.name}: its {kind} counts pages in a way not understood"
            own[rel_id] = (kind, xml)
        shared = {
            k: v for k, v in parts.items() if k != "word/document.xml" and not k.startswith("docProps/")
        }
        if members is None:
            members, raw = shared, data
            head = document[: start + len("<w:body>")]
            rels, types = own_rels, parts["[Content_Types].xml"].decode("utf-8")
        elif shared != members or document[: start + len("<w:body>")] != head:
            return f"{source.name} differs from {sources[0].name} in more than its text and footers"
        sections.append((body, section, own))
    if not sections:
        return "no documents"
    _write_composed(raw, head=head, rels=rels, types=types, sections=sections, out=out)
    return None


def _write_composed(
    raw: bytes,
    *,
    head: str,
    rels: str,
    types: str,
    sections: list[tuple[str, str, dict[str, tuple[str, str]]]],
    out: Path,
) -> None:
    """Write a .docx of ``sections`` one after the other, each its own Word section starting a page with
    its pages numbered from 1, at ``out``; every other part is ``raw``'s (with ``head``, the document's
    start up to its body, and its relationships ``rels`` and content types ``types``).

    A section is (body, section properties, {relationship id: (header or footer, its XML)}); its start
    and end get the bookmarks ``split`` and the page count read (``ISSDOC0007``, ``ISSEND0007``).
    """
    pieces = [head]
    new_parts: dict[str, str] = {}
    relationships: list[str] = []
    last = len(sections) - 1
    for i, (body, section, parts) in enumerate(sections):
        body = _mark_start(body, i)
        for rel_id, (kind, xml) in parts.items():
            new_id = f"rIdIss{i}x{rel_id}"
            name = f"{kind}-iss{i}-{rel_id}.xml"
            new_parts[name] = _END_REF_FIELD.sub(rf"\g<1>PAGEREF {_end_mark(i)} ", xml)
            relationships.append(f'<Relationship Id="{new_id}" Type="{_REL_TYPES[kind]}" Target="{name}"/>')
            section = section.replace(f'r:id="{rel_id}"', f'r:id="{new_id}"')
        section = _restart_numbering(section, next_page=i > 0)
        # A section ends with a hairline paragraph (it never pushes the record onto another page) that
        # holds the bookmark its footer's page count refers to and, but for the last section, its
        # properties; the last one's stay where the document has them, after it.
        end = (
            '<w:p><w:pPr><w:spacing w:before="0" w:after="0" w:line="20" w:lineRule="exact"/>'
            '<w:rPr><w:sz w:val="2"/></w:rPr>'
            + (section if i < last else "")
            + "</w:pPr>"
            + _bookmark(_end_mark(i), _BOOKMARK_BASE + 4 * i + 3)
            + "</w:p>"
        )
        pieces.append(body + end + ("" if i < last else section))
    pieces.append("</w:body></w:document>")
    rels = rels.replace("</Relationships>", "".join(relationships) + "</Relationships>")
    overrides = "".join(
        f'<Override PartName="/word/{name}" ContentType="{_CONTENT_TYPES[name.split("-", 1)[0]]}"/>'
        for name in new_parts
    )
    types = types.replace("</Types>", overrides + "</Types>")
    with (
        zipfile.ZipFile(io.BytesIO(raw)) as source,
        create_private(out) as file,
        zipfile.ZipFile(file, "w") as target,
    ):
        # Stored, not deflated: a scratch file read once by LibreOffice on the same machine.
        for item in source.infolist():
            if item.filename == "word/document.xml":
                data = "".join(pieces).encode("utf-8")
            elif item.filename == "word/_rels/document.xml.rels":
                data = rels.encode("utf-8")
            elif item.filename == "[Content_Types].xml":
                data = types.encode("utf-8")
            else:
                data = source.read(item)
            target.writestr(item.filename, data, compress_type=zipfile.ZIP_STORED)
        for name, xml in new_parts.items():
            target.writestr(f"word/{name}", xml.encode("utf-8"), compress_type=zipfile.ZIP_STORED)


def _mark_start(body: str, i: int) -> str:
    """``body`` with the bookmark that tells where section ``i`` starts, in its first paragraph."""
    first = _PARAGRAPH.search(body)
    if first is None:
        return _bookmark(_doc_mark(i), _BOOKMARK_BASE + 4 * i) + body
    at = first.end()
    if body.startswith("<w:pPr>", at):
        at = body.index("</w:pPr>", at) + len("</w:pPr>")
    return body[:at] + _bookmark(_doc_mark(i), _BOOKMARK_BASE + 4 * i) + body[at:]


def _mark_anchor(body: str, i: int, *, anchor: str, part: str) -> str:
    """Bookmarks just before and after ``part`` of the last run that holds ``anchor`` whole.

    A run that Word split in the middle of the anchor is not found: that record's seal is then placed by
    reading the text back (slower, same result).
    """
    found = [m for m in _RUN.finditer(body) if anchor in m.group(2)]
    if not found:
        return body
    run = found[-1]
    props, text = run.group(1) or "", run.group(2)
    at = text.rindex(anchor) + anchor.index(part)
    before, middle, after = text[:at], text[at : at + len(part)], text[at + len(part) :]
    first, second = _seal_marks(i)

    def piece(t: str) -> str:
        return f'<w:r>{props}<w:t xml:space="preserve">{t}</w:t></w:r>' if t else ""

    replacement = (
        piece(before)
        + _bookmark(first, _BOOKMARK_BASE + 4 * i + 1)
        + piece(middle)
        + _bookmark(second, _BOOKMARK_BASE + 4 * i + 2)
        + piece(after)
    )
    return body[: run.start()] + replacement + body[run.end() :]


def _restart_numbering(section: str, *, next_page: bool) -> str:
    """Section properties that restart page numbers at 1 (and, after the first, start a new page).

    Elements go where the schema orders them: the section type before the page size, the page number
    type before the columns.
    """
    section = re.sub(r"<w:pgNumType[^>]*/>", "", section)
    section = re.sub(r"<w:type [^>]*/>", "", section)
    numbering = '<w:pgNumType w:start="1"/>'
    for follower in _AFTER_PAGE_NUMBERING:
        if follower in section:
            section = section.replace(follower, numbering + follower, 1)
            break
    if next_page and "<w:pgSz" in section:
        section = section.replace("<w:pgSz", '<w:type w:val="nextPage"/><w:pgSz', 1)
    return section


def _destinations(pdf: pikepdf.Pdf) -> dict[str, tuple[int, float, float]]:
    """Named destinations as name -> (0-based page, left, top), from /Dests or the /Names tree."""
    pages = {page.objgen: n for n, page in enumerate(pdf.pages)}
    found: dict[str, tuple[int, float, float]] = {}

    def take(name: str, dest: Any) -> None:
        if isinstance(dest, pikepdf.Dictionary):
            dest = dest.get("/D")
        if not isinstance(dest, pikepdf.Array) or len(dest) < 4 or dest[1] != pikepdf.Name.XYZ:
            return
        page = pages.get(dest[0].objgen)
        if page is not None:
            found[name] = (page, float(dest[2] or 0), float(dest[3] or 0))

    dests = pdf.Root.get("/Dests")
    if isinstance(dests, pikepdf.Dictionary):
        for key, value in dests.items():
            take(key.lstrip("/"), value)
    names = pdf.Root.get("/Names")
    if isinstance(names, pikepdf.Dictionary) and "/Dests" in names:
        for key, value in pikepdf.NameTree(names.Dests).items():
            take(str(key), value)
    return found


def split(pdf: pikepdf.Pdf, count: int) -> list[RecordPages]:
    """Each of ``count`` records' pages and seal mark in a PDF made from ``ComposedTemplate.write`` (or
    each document's pages, made from ``concatenate``: no seal marks)."""
    dests = _destinations(pdf)
    total = len(pdf.pages)
    starts = []
    for i in range(count):
        found = dests.get(_doc_mark(i))
        if found is None:
            raise SplitError(f"record {i + 1} of {count} has no start mark in the converted PDF")
        starts.append(found[0])
    if starts != sorted(set(starts)) or (starts and starts[0] != 0):
        raise SplitError(f"the records' start marks are not in order: pages {starts}")
    answer = []
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < count else total
        mark = None
        first, second = (dests.get(name) for name in _seal_marks(i))
        if (
            first
            and second
            and first[0] == second[0]
            and abs(first[2] - second[2]) < 0.5
            and second[1] > first[1]
            and start <= first[0] < stop
        ):
            mark = AnchorMark(page=first[0] - start, x0=first[1], x1=second[1], top=first[2])
        answer.append(RecordPages(pages=range(start, stop), anchor=mark))
    return answer
