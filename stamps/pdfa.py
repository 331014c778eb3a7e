"""PDF/A-2b kept through assembly, and a structural self-check of it.

LibreOffice writes PDF/A-2b (``pipeline.convert``): an sRGB output intent and an XMP packet that
says ``pdfaid:part 2, conformance B``. A copy assembled by pikepdf starts from a new document and
loses both, and every copy gets new document information (/Title, /Subject, /Producer), which PDF/A
wants mirrored in the XMP packet (ISO 19005-2 §6.6.2.1; ISO 32000-1 §14.3.3 maps the entries).
``keep_pdfa`` puts them back on a pikepdf document; ``xmp_packet`` and ``info_texts`` serve an
incremental update that changes the document information (``pipeline.bundle``). Conformance is kept,
never invented: a copy claims PDF/A-2b only when every document it was made from did. (Pages of a PDF
scan filed as an underwriting image join the archive copy as they are: the self-check below, run by
the audit, is what finds one that breaks conformance.)

``pdfa_problems`` is a **PDF/A-2b structural self-check**, not a validation: no validator such as
veraPDF can be installed here, and it checks only what the pipeline's copies could get wrong (the
rules of ISO 19005-2 as veraPDF's PDF/A-2B profile numbers them, named in each problem): the header,
the trailer's /ID across every revision, encryption, the output intent, the XMP packet and its
agreement with /Info, embedded fonts, actions and JavaScript, embedded files, ExtGState transfer
functions and blend modes, image dictionaries, annotations. Content streams are not parsed (colour
operators, glyphs present in the embedded subsets and .notdef are not checked).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from io import BytesIO
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import pikepdf
from pypdf.generic import create_string_object

from stamps.saving import SAVE_OPTIONS

__all__ = [
    "PDFA_CONFORMANCE",
    "PDFA_PART",
    "claims_pdfa",
    "drop_structure_tree",
    "info_texts",
    "keep_pdfa",
    "pdfa_problems",
    "xmp_packet",
]

PDFA_PART, PDFA_CONFORMANCE = "2", "B"

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_DC = "http://purl.org/dc/elements/1.1/"
_PDF = "http://ns.adobe.com/pdf/1.3/"
_XMP = "http://ns.adobe.com/xap/1.0/"
_PDFAID = "http://www.aiim.org/pdfa/ns/id/"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# /Info entry -> (namespace, property, form) of its XMP equivalent (ISO 32000-1 §14.3.3, table 317)
_EQUIVALENTS: dict[str, tuple[str, str, str]] = {
    "/Title": (_DC, "title", "alt"),
    "/Author": (_DC, "creator", "seq"),
    "/Subject": (_DC, "description", "alt"),
    "/Keywords": (_PDF, "Keywords", "text"),
    "/Creator": (_XMP, "CreatorTool", "text"),
    "/Producer": (_PDF, "Producer", "text"),
    "/CreationDate": (_XMP, "CreateDate", "date"),
    "/ModDate": (_XMP, "ModifyDate", "date"),
}
_PREFIXES = {_DC: "dc", _PDF: "pdf", _XMP: "xmp"}


# --- keeping PDF/A through assembly ------------------------------------------------------------------


def xmp_packet(info: Mapping[str, str]) -> bytes:
    """An XMP packet (UTF-8, no ``bytes``/``encoding`` attributes: §6.6.2.1) claiming PDF/A-2b, with the
    XMP equivalents of the document information entries ``info`` (/Title, /Subject, …; other keys, such
    as the pipeline's own /Issuance* entries, have none and are left out)."""
    lines = [
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>',
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">',
        f'<rdf:RDF xmlns:rdf="{_RDF}">',
        f'<rdf:Description rdf:about="" xmlns:pdfaid="{_PDFAID}">',
        f"<pdfaid:part>{PDFA_PART}</pdfaid:part><pdfaid:conformance>{PDFA_CONFORMANCE}</pdfaid:conformance>",
        "</rdf:Description>",
    ]
    for key, (namespace, name, form) in _EQUIVALENTS.items():
        value = info.get(key)
        if value is None:
            continue
        prefix = _PREFIXES[namespace]
        if form == "date":
            value = _xmp_date(value)
            if value is None:
                continue
        text = escape(value)
        if form == "alt":
            text = f'<rdf:Alt><rdf:li xml:lang="x-default">{text}</rdf:li></rdf:Alt>'
        elif form == "seq":
            text = f"<rdf:Seq><rdf:li>{text}</rdf:li></rdf:Seq>"
        lines.append(
            f'<rdf:Description rdf:about="" xmlns:{prefix}="{namespace}">'
            f"<{prefix}:{name}>{text}</{prefix}:{name}></rdf:Description>"
        )
    lines += ["</rdf:RDF>", "</x:xmpmeta>", '<?xpacket end="w"?>']
    return "\n".join(lines).encode("utf-8")


def info_texts(entries: Mapping[str, bytes]) -> dict[str, str]:
    """Document information entries given as PDF syntax (``stamps.pdfupdate``) as text; entries that
    are not strings are left out."""
    texts = {}
    for key, syntax in entries.items():
        value = syntax.strip()
        if value[:1] == b"(" or (value[:1] == b"<" and value[:2] != b"<<"):
            texts[key] = str(create_string_object(_pdf_string(value)))
    return texts


def claims_pdfa(pdf: pikepdf.Pdf) -> bool:
    """Whether ``pdf``'s catalog carries an output intent and XMP metadata saying PDF/A-2b."""
    if "/OutputIntents" not in pdf.Root:
        return False
    metadata = pdf.Root.get("/Metadata")
    if not isinstance(metadata, pikepdf.Stream):
        return False
    try:
        root = ElementTree.fromstring(metadata.read_bytes())
    except (ElementTree.ParseError, pikepdf.PdfError):
        return False
    return _pdfaid(root) == (PDFA_PART, PDFA_CONFORMANCE)


def keep_pdfa(out: pikepdf.Pdf, *, sources: Sequence[pikepdf.Pdf]) -> None:
    """Give ``out`` PDF/A-2b's output intent and an XMP packet matching its document information, when
    every one of ``sources`` (the documents its pages came from, ``out`` itself if it is one) claims
    PDF/A-2b (``claims_pdfa``); else leave it claiming nothing (a stale packet is removed).

    Call it after /Info is final: the packet mirrors it."""
    if not sources or not all(claims_pdfa(source) for source in sources):
        if "/Metadata" in out.Root:
            del out.Root.Metadata
        return
    if "/OutputIntents" not in out.Root:
        out.Root.OutputIntents = _copied(out, sources[0].Root.OutputIntents)
    info = {str(k): str(v) for k, v in out.docinfo.items() if isinstance(v, pikepdf.String)}
    packet = xmp_packet(info)
    metadata = out.Root.get("/Metadata")
    if isinstance(metadata, pikepdf.Stream) and metadata.is_indirect:
        metadata.write(packet)  # a base reused for many copies keeps one stream (``pipeline.assembly``)
    else:
        stream = pikepdf.Stream(out, packet)
        stream.Type, stream.Subtype = pikepdf.Name.Metadata, pikepdf.Name.XML
        out.Root.Metadata = out.make_indirect(stream)


def _copied(out: pikepdf.Pdf, obj: pikepdf.Object) -> pikepdf.Object:
    """``obj`` of another document copied into ``out`` (qpdf copies only indirect objects itself)."""
    if obj.is_indirect:
        return out.copy_foreign(obj)
    if isinstance(obj, pikepdf.Array):
        return pikepdf.Array([_copied(out, item) for item in obj])
    if isinstance(obj, pikepdf.Dictionary):
        return pikepdf.Dictionary({key: _copied(out, value) for key, value in obj.items()})
    return obj


# --- the structural self-check ------------------------------------------------------------------------

_HEADER = re.compile(rb"%PDF-1\.[0-7](?:\r\n|\r|\n)%[\x80-\xff]{4}")
_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF")
_ID = re.compile(rb"/ID\s*\[\s*(<[0-9A-Fa-f\s]*>|\((?:\\.|[^\\()])*\))", re.S)
_PREV = re.compile(rb"/Prev\s+(\d+)")
_OBJ = re.compile(rb"\d+\s+\d+\s+obj")
_BLEND_MODES = frozenset(
    [
        "/Normal",
        "/Compatible",
        "/Multiply",
        "/Screen",
        "/Overlay",
        "/Darken",
        "/Lighten",
        "/ColorDodge",
        "/ColorBurn",
        "/HardLight",
        "/SoftLight",
        "/Difference",
        "/Exclusion",
        "/Hue",
        "/Saturation",
        "/Color",
        "/Luminosity",
    ]
)
_ACTIONS = frozenset({"/GoTo", "/GoToR", "/GoToE", "/Thread", "/URI", "/Named", "/SubmitForm"})
_NAMED = frozenset({"/NextPage", "/PrevPage", "/FirstPage", "/LastPage"})
_ANNOTATIONS = frozenset(
    [
        "/Text",
        "/Link",
        "/FreeText",
        "/Line",
        "/Square",
        "/Circle",
        "/Polygon",
        "/PolyLine",
        "/Highlight",
        "/Underline",
        "/Squiggly",
        "/StrikeOut",
        "/Stamp",
        "/Caret",
        "/Ink",
        "/Popup",
        "/FileAttachment",
        "/Widget",
        "/PrinterMark",
        "/TrapNet",
        "/Watermark",
        "/Redact",
    ]
)
_INVISIBLE, _HIDDEN, _PRINT, _NO_VIEW, _TOGGLE_NO_VIEW = 1, 2, 4, 32, 256
_RENDERING_INTENTS = frozenset(
    {"/RelativeColorimetric", "/AbsoluteColorimetric", "/Perceptual", "/Saturation"}
)


class _Problems:
    """Problems in the order found, each once; ``many`` gathers the names of one kind into one line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._many: dict[str, list[str]] = {}

    def add(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)

    def many(self, what: str, name: str) -> None:
        names = self._many.setdefault(what, [])
        if name not in names:
            names.append(name)

    def result(self) -> list[str]:
        return self.lines + [f"{what}: {', '.join(names)}" for what, names in self._many.items()]


def pdfa_problems(pdf: bytes) -> list[str]:
    """What keeps ``pdf`` from being PDF/A-2b, as far as this structural self-check sees; [] when nothing.

    A structural self-check, not a validation (see the module's docstring: no validator is installed
    here). Each problem is one sentence naming the rule (ISO 19005-2 clause) and what is wrong."""
    found = _Problems()
    if not _HEADER.match(pdf):
        found.add("6.1.2 file header: not %PDF-1.0–1.7 followed by a binary comment line")
    end = pdf.rfind(b"%%EOF")
    if end < 0 or pdf[end + 5 :] not in (b"", b"\n", b"\r", b"\r\n"):
        found.add("6.1.3 file trailer: data follows the last %%EOF")
    _revisions(pdf, found)
    try:
        document = pikepdf.open(BytesIO(pdf))
    except pikepdf.PasswordError:
        found.add("6.1.3 encryption: the PDF is encrypted")
        return found.result()
    except pikepdf.PdfError as e:
        found.add(f"the PDF cannot be read ({e})")
        return found.result()
    with document:
        if document.is_encrypted:
            found.add("6.1.3 encryption: the PDF is encrypted")
        _catalog(document, found)
        _pages(document, found)
    return found.result()


def _revisions(pdf: bytes, found: _Problems) -> None:
    """/ID in the last trailer, its first string the same in every revision's trailer; no /Encrypt."""
    match = _STARTXREF.match(pdf, max(pdf.rfind(b"startxref"), 0))
    if match is None:
        found.add("6.1.3 file trailer: no startxref")
        return
    offset: int | None = int(match.group(1))
    firsts: list[bytes | None] = []
    seen: set[int] = set()
    while offset is not None and offset not in seen and len(seen) < 1000:
        seen.add(offset)
        trailer = _trailer_at(pdf, offset)
        if trailer is None:
            found.add(f"6.1.3 file trailer: no cross-reference section at byte {offset}")
            return
        if re.search(rb"/Encrypt\b", trailer):
            found.add("6.1.3 encryption: the PDF is encrypted")
        ids = _ID.search(trailer)
        firsts.append(_pdf_string(ids.group(1)) if ids else None)
        prev = _PREV.search(trailer)
        offset = int(prev.group(1)) if prev else None
    if firsts[0] is None:
        found.add("6.1.3 file trailer: no file identifier (/ID)")
    elif any(first != firsts[0] for first in firsts):
        found.add("6.1.3 file trailer: the /ID's first string is not the same in every revision")


def _trailer_at(pdf: bytes, offset: int) -> bytes | None:
    """The trailer dictionary's text of the cross-reference section at ``offset`` (a table's trailer, or
    an xref stream's dictionary)."""
    if pdf.startswith(b"xref", offset):
        start = pdf.find(b"trailer", offset)
        stop = pdf.find(b"startxref", start)
        return pdf[start:stop] if start >= 0 and stop >= 0 else None
    if _OBJ.match(pdf, offset):
        stop = pdf.find(b"stream", offset)
        return pdf[offset:stop] if stop >= 0 else None
    return None


_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def _pdf_string(token: bytes) -> bytes:
    """The bytes of a PDF string written as ``token`` (hex or literal, ISO 32000-1 §7.3.4)."""
    if token.startswith(b"<"):
        digits = re.sub(rb"\s", b"", token[1:-1])
        return bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode("ascii"))

    def unescape(match: re.Match[bytes]) -> bytes:
        escaped = match.group(1)
        if escaped[:1].isdigit():
            return bytes([int(escaped, 8) & 0xFF])
        if escaped[:1] in (b"\r", b"\n"):
            return b""  # a line continued
        return _ESCAPES.get(escaped, escaped)

    return re.sub(rb"\\([0-7]{1,3}|\r\n?|\n|.)", unescape, token[1:-1], flags=re.S)


def _catalog(document: pikepdf.Pdf, found: _Problems) -> None:
    root = document.Root
    _output_intents(root, found)
    _metadata(document, found)
    for key, rule in (("/AA", "6.5.2"), ("/NeedsRendering", "6.4.2"), ("/Requirements", "6.11")):
        if key in root:
            found.add(f"{rule} catalog: holds {key}")
    names = root.get("/Names")
    if isinstance(names, pikepdf.Dictionary):
        if "/JavaScript" in names:
            found.add("6.5.1 actions: JavaScript in the document's name tree")
        if "/EmbeddedFiles" in names:
            found.add("6.8 embedded files: the document embeds files")
        if "/AlternatePresentations" in names:
            found.add("6.10 catalog: alternate presentations")
    form = root.get("/AcroForm")
    if isinstance(form, pikepdf.Dictionary):
        if form.get("/NeedAppearances") is True:
            found.add("6.4.1 interactive form: NeedAppearances is true")
        if "/XFA" in form:
            found.add("6.4.2 interactive form: holds XFA")
    if "/OpenAction" in root and isinstance(root.OpenAction, pikepdf.Dictionary):
        _action(root.OpenAction, "the open action", found)
    outlines = root.get("/Outlines")
    if isinstance(outlines, pikepdf.Dictionary):
        _outline(outlines.get("/First"), found)


def _output_intents(root: pikepdf.Dictionary, found: _Problems) -> None:
    intents = root.get("/OutputIntents")
    pdfa = [
        intent
        for intent in (intents if isinstance(intents, pikepdf.Array) else [])
        if isinstance(intent, pikepdf.Dictionary) and intent.get("/S") == pikepdf.Name.GTS_PDFA1
    ]
    if not pdfa:
        found.add("6.2.3 output intent: the catalog has no GTS_PDFA1 output intent")
        return
    profiles = [intent.get("/DestOutputProfile") for intent in pdfa]
    if not all(isinstance(p, pikepdf.Stream) for p in profiles):
        found.add("6.2.3 output intent: the GTS_PDFA1 intent embeds no ICC profile (/DestOutputProfile)")
        return
    if len({p.objgen for p in profiles}) > 1:
        found.add("6.2.3 output intent: the output intents name different ICC profiles")
    header = profiles[0].read_bytes()[:20]
    if (
        len(header) < 20
        or header[12:16] not in (b"mntr", b"prtr")
        or header[16:20] not in (b"RGB ", b"CMYK", b"GRAY")
    ):
        found.add("6.2.3 output intent: its ICC profile is not an RGB, CMYK or grey output profile")


def _metadata(document: pikepdf.Pdf, found: _Problems) -> None:
    metadata = document.Root.get("/Metadata")
    if not isinstance(metadata, pikepdf.Stream):
        found.add("6.6.2.1 metadata: the catalog has no XMP metadata stream")
        return
    if "/Filter" in metadata:
        found.add("6.6.2.1 metadata: the XMP metadata stream is compressed (filtered)")
    data = metadata.read_bytes()
    head = re.match(rb"\s*(?:\xef\xbb\xbf)?<\?xpacket\b([^?]*)\?>", data)
    if head is not None and re.search(rb"\b(bytes|encoding)\s*=", head.group(1)):
        found.add("6.6.2.1 metadata: the XMP packet header has a bytes or encoding attribute")
    try:
        data.decode("utf-8")
        root = ElementTree.fromstring(data)
    except (UnicodeDecodeError, ElementTree.ParseError) as e:
        found.add(f"6.6.2.1 metadata: the XMP packet is not well-formed UTF-8 XML ({type(e).__name__})")
        return
    if _pdfaid(root) != (PDFA_PART, PDFA_CONFORMANCE):
        found.add("6.6.4 metadata: the XMP packet does not identify PDF/A-2b (pdfaid:part 2, conformance B)")
    info = document.trailer.get("/Info")
    if not isinstance(info, pikepdf.Dictionary):
        return
    for key, (namespace, name, form) in _EQUIVALENTS.items():
        value = info.get(key)
        if value is None:
            continue
        shown = _xmp_value(root, namespace, name)
        expected = str(value)
        if form == "date":
            expected = _xmp_date(expected) or expected
            shown = _xmp_date_normal(shown)
        if shown != expected:
            prefix = _PREFIXES[namespace]
            found.add(f"6.6.2.1 metadata: /Info {key} disagrees with its XMP equivalent {prefix}:{name}")


def _pdfaid(root: ElementTree.Element) -> tuple[str | None, str | None]:
    return _xmp_value(root, _PDFAID, "part"), _xmp_value(root, _PDFAID, "conformance")


def _xmp_value(root: ElementTree.Element, namespace: str, name: str) -> str | None:
    """A property's text (an rdf:Alt's x-default or first item, an rdf:Seq's first item), as an element
    or as an attribute of an rdf:Description."""
    tag = f"{{{namespace}}}{name}"
    for description in root.iter(f"{{{_RDF}}}Description"):
        if tag in description.attrib:
            return description.attrib[tag]
        element = description.find(tag)
        if element is None:
            continue
        items = element.findall(f"./*/{{{_RDF}}}li")
        if not items:
            return (element.text or "").strip()
        default = [li for li in items if li.get(_XML_LANG) == "x-default"]
        return (default or items)[0].text or ""
    return None


def _xmp_date(pdf_date: str) -> str | None:
    """A PDF date (D:YYYYMMDDHHmmSSOHH'mm') as an XMP date; None when it is not one."""
    match = re.fullmatch(
        r"D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:([Zz])|([+-])(\d{2})'?(\d{2})?'?)?'?", pdf_date
    )
    if match is None:
        return None
    year, month, day, hour, minute, second, zulu, sign, tz_h, tz_m = match.groups()
    text = f"{year}-{month or '01'}-{day or '01'}T{hour or '00'}:{minute or '00'}:{second or '00'}"
    if zulu:
        return text + "Z"
    if sign:
        return text + f"{sign}{tz_h}:{tz_m or '00'}"
    return text


def _xmp_date_normal(value: str | None) -> str | None:
    """An XMP date written to the second, as ``_xmp_date`` writes one (fractions of seconds dropped)."""
    if value is None:
        return None
    match = re.fullmatch(
        r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(:\d{2})?(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?", value.strip()
    )
    if match is None:
        return value
    return f"{match.group(1)}{match.group(2) or ':00'}{match.group(3) or ''}"


def _outline(item: object, found: _Problems) -> None:
    seen: set[tuple[int, int]] = set()
    stack = [item]
    while stack:
        node = stack.pop()
        if not isinstance(node, pikepdf.Dictionary) or node.objgen in seen:
            continue
        seen.add(node.objgen)
        if isinstance(node.get("/A"), pikepdf.Dictionary):
            _action(node.A, "a bookmark", found)
        stack += [node.get("/Next"), node.get("/First")]


def _action(action: pikepdf.Dictionary, where: str, found: _Problems) -> None:
    seen: set[tuple[int, int]] = set()
    stack: list[object] = [action]
    while stack:
        node = stack.pop()
        if not isinstance(node, pikepdf.Dictionary) or (node.is_indirect and node.objgen in seen):
            continue
        if node.is_indirect:
            seen.add(node.objgen)
        kind = node.get("/S")
        if kind == pikepdf.Name.JavaScript:
            found.add(f"6.5.1 actions: JavaScript in {where}")
        elif kind is not None and str(kind) not in _ACTIONS:
            found.add(f"6.5.1 actions: a {str(kind)[1:]} action in {where}")
        elif kind == pikepdf.Name.Named and str(node.get("/N")) not in _NAMED:
            found.add(f"6.5.1 actions: the named action {node.get('/N')} in {where}")
        following = node.get("/Next")
        stack += list(following) if isinstance(following, pikepdf.Array) else [following]


def _pages(document: pikepdf.Pdf, found: _Problems) -> None:
    walker = _Resources(found)
    for number, page in enumerate(document.pages, start=1):
        obj = page.obj
        if "/AA" in obj:
            found.add(f"6.5.2 page {number}: holds an additional-actions (/AA) entry")
        if "/PresSteps" in obj:
            found.add(f"6.10 page {number}: holds /PresSteps")
        walker.scan(obj.get("/Resources"))
        annotations = obj.get("/Annots")
        for annotation in annotations if isinstance(annotations, pikepdf.Array) else ():
            if isinstance(annotation, pikepdf.Dictionary):
                _annotation(annotation, number, walker, found)


def _annotation(annotation: pikepdf.Dictionary, number: int, walker: _Resources, found: _Problems) -> None:
    subtype = str(annotation.get("/Subtype"))
    where = f"page {number}: a {subtype[1:]} annotation"
    if subtype not in _ANNOTATIONS:
        found.add(f"6.3.1 annotations: {where} is of a type PDF/A-2 forbids")
    flags = int(annotation.get("/F", 0)) if isinstance(annotation.get("/F"), int) else 0
    if subtype != "/Popup" and (
        not flags & _PRINT or flags & (_INVISIBLE | _HIDDEN | _NO_VIEW | _TOGGLE_NO_VIEW)
    ):
        found.add(f"6.3.2 annotations: {where} is not set to print, or is hidden")
    rect = annotation.get("/Rect")
    sized = (
        isinstance(rect, pikepdf.Array)
        and len(rect) == 4
        and (float(rect[2]) != float(rect[0]) or float(rect[3]) != float(rect[1]))
    )
    appearance = annotation.get("/AP")
    if sized and subtype not in ("/Popup", "/Link") and not isinstance(appearance, pikepdf.Dictionary):
        found.add(f"6.3.3 annotations: {where} has no appearance stream")
    if isinstance(appearance, pikepdf.Dictionary):
        if set(appearance.keys()) - {"/N"}:
            found.add(f"6.3.3 annotations: {where} has appearances other than /N")
        normal = appearance.get("/N")
        states = [normal] if isinstance(normal, pikepdf.Stream) else []
        if isinstance(normal, pikepdf.Dictionary) and not isinstance(normal, pikepdf.Stream):
            states = [v for v in normal.values() if isinstance(v, pikepdf.Stream)]
        for stream in states:
            walker.scan(stream.get("/Resources"))
    if subtype == "/Widget" and ("/A" in annotation or "/AA" in annotation):
        found.add(f"6.4.1 annotations: {where} carries actions")
    elif isinstance(annotation.get("/A"), pikepdf.Dictionary):
        _action(annotation.A, where, found)


class _Resources:
    """Walks resource dictionaries (fonts, graphics states, XObjects, patterns, Type 3 fonts' own), each
    indirect object once across the document."""

    def __init__(self, found: _Problems) -> None:
        self.found = found
        self.seen: set[tuple[int, int]] = set()

    def _new(self, obj: pikepdf.Object) -> bool:
        if not obj.is_indirect:
            return True
        if obj.objgen in self.seen:
            return False
        self.seen.add(obj.objgen)
        return True

    def scan(self, resources: object) -> None:
        if not isinstance(resources, pikepdf.Dictionary) or not self._new(resources):
            return
        for font in _values(resources.get("/Font")):
            if isinstance(font, pikepdf.Dictionary) and self._new(font):
                self._font(font)
        for state in _values(resources.get("/ExtGState")):
            if isinstance(state, pikepdf.Dictionary) and self._new(state):
                self._gstate(state)
        for xobject in _values(resources.get("/XObject")):
            if isinstance(xobject, pikepdf.Stream) and self._new(xobject):
                self._xobject(xobject)
        for pattern in _values(resources.get("/Pattern")):
            if isinstance(pattern, (pikepdf.Dictionary, pikepdf.Stream)) and self._new(pattern):
                self.scan(pattern.get("/Resources"))

    def _font(self, font: pikepdf.Dictionary) -> None:
        subtype = font.get("/Subtype")
        if subtype == pikepdf.Name.Type3:
            self.scan(font.get("/Resources"))
            return
        described = font
        if subtype == pikepdf.Name.Type0:
            descendants = font.get("/DescendantFonts")
            described = (
                descendants[0] if isinstance(descendants, pikepdf.Array) and len(descendants) else None
            )
        descriptor = described.get("/FontDescriptor") if isinstance(described, pikepdf.Dictionary) else None
        if not isinstance(descriptor, pikepdf.Dictionary) or not any(
            isinstance(descriptor.get(k), pikepdf.Stream) for k in ("/FontFile", "/FontFile2", "/FontFile3")
        ):
            name = font.get("/BaseFont")
            self.found.many(
                "6.2.11.4.1 fonts not embedded", str(name)[1:] if name is not None else "(unnamed)"
            )

    def _gstate(self, state: pikepdf.Dictionary) -> None:
        if "/TR" in state:
            self.found.add("6.2.5 graphics state: a transfer function (/TR)")
        if "/TR2" in state and pikepdf.Name.Default != state.TR2:
            self.found.add("6.2.5 graphics state: a transfer function (/TR2 other than /Default)")
        if "/HTP" in state:
            self.found.add("6.2.5 graphics state: a halftone phase (/HTP)")
        modes = state.get("/BM")
        for mode in modes if isinstance(modes, pikepdf.Array) else [modes] if modes is not None else []:
            if str(mode) not in _BLEND_MODES:
                self.found.add(f"6.2.10 transparency: the blend mode {mode} is not a standard one")
        intent = state.get("/RI")
        if intent is not None and str(intent) not in _RENDERING_INTENTS:
            self.found.add(f"6.2.6 rendering intent {intent} is not a standard one")
        mask = state.get("/SMask")
        if isinstance(mask, pikepdf.Dictionary) and isinstance(mask.get("/G"), pikepdf.Stream):
            group = mask.G
            if self._new(group):
                self._xobject(group)

    def _xobject(self, xobject: pikepdf.Stream) -> None:
        subtype = xobject.get("/Subtype")
        if subtype == pikepdf.Name.Image:
            if xobject.get("/Interpolate") is True:
                self.found.add("6.2.8 images: an image asks for interpolation")
            for key in ("/Alternates", "/OPI"):
                if key in xobject:
                    self.found.add(f"6.2.8 images: an image holds {key}")
            mask = xobject.get("/SMask")
            if isinstance(mask, pikepdf.Stream) and self._new(mask):
                self._xobject(mask)
        elif subtype == pikepdf.Name.Form:
            if "/Ref" in xobject or "/OPI" in xobject or xobject.get("/Subtype2") == pikepdf.Name.PS:
                self.found.add("6.2.9 form XObjects: a reference, OPI or PostScript form")
            self.scan(xobject.get("/Resources"))
        elif subtype == pikepdf.Name.PS:
            self.found.add("6.2.9 XObjects: a PostScript XObject")


def _values(dictionary: object) -> Iterable[pikepdf.Object]:
    return dictionary.values() if isinstance(dictionary, pikepdf.Dictionary) else ()


def drop_structure_tree(path: Path) -> bool:
    """Drop the logical structure (tags) of the PDF at ``path``, in place; whether there was one.

    LibreOffice tags every PDF/A it writes, level B too ("force the tagged PDF as well" in its PDF
    export), which PDF/A-2b does not ask for: one 16-schedule document then holds some 5,000 structure
    elements, and opening it costs about 50 times as much (docs/performance.md). The copies made from it
    would not carry the tree anyway (a page copied alone leaves it behind): it goes, with what points
    into it (the catalog's /StructTreeRoot and /MarkInfo, the pages' /StructParents, the annotations'
    /StructParent), and qpdf writes the document again without the objects nothing reaches any more.
    """
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        root = pdf.Root
        if "/StructTreeRoot" not in root:
            return False
        del root["/StructTreeRoot"]
        if "/MarkInfo" in root:
            del root["/MarkInfo"]
        for page in pdf.pages:
            if "/StructParents" in page.obj:
                del page.obj["/StructParents"]
            for annotation in page.obj.get("/Annots", ()):
                if isinstance(annotation, pikepdf.Dictionary) and "/StructParent" in annotation:
                    del annotation["/StructParent"]
        pdf.save(path, **SAVE_OPTIONS)
    return True
