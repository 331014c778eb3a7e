"""PAdES signatures: the company's certificate signs a PDF, last, and a signed PDF is checked again.

The seal on a page is a picture anyone can lift; the signature is what proves who issued the file and
that it is unchanged (DOMAIN.md, "Electronic seals that prove something"; DESIGN.md, the ``Signer`` seam
and invariant 8). A signature here is PAdES baseline (``ETSI.CAdES.detached``, SHA-256; B-T with a
timestamp when a TSA is configured) in an invisible field: the seal stays as drawn, where the template
puts it, and the signature covers the whole file, nothing appended after it. (The seal picture as the
signature's appearance would tie the seal's place to the signature field and give the cross-page seal
no part in it; an invisible field leaves the drawn seals exactly as before and costs nothing per page.)

``PdfSigner.sign`` appends one incremental update (``stamps.pdfupdate``): the signature dictionary with
a placeholder for its /Contents, the field's widget, page 1 listing it, the catalog's /AcroForm listing
it. Then it fills in what differs per document: the /ByteRange, the digest of those bytes, the signature
value, the timestamp token. Everything that is the same for every document — the certificates, the
signer's identifier, the signed attributes but for the digest, the CMS structure around them — is
encoded once per run. pyHanko, called plainly, builds all of it again for every document and reads the
whole PDF to do so (``bench/sign_bench.py`` measures both); its validator is what checks signatures here
(``check_signatures``), with poppler's ``pdfsig`` as the tests' second opinion.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass
from io import BytesIO

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from core.errors import IssuanceError, SigningFailed
from stamps.keys import SigningKey
from stamps.pdfupdate import (
    IncrementalUpdate,
    PlainPdf,
    PypdfObjects,
    changed_dictionary,
    reference,
    text_string,
)
from stamps.timestamps import Timestamper

__all__ = ["FIELD", "PdfSigner", "SignatureCheck", "check_signatures"]

FIELD = "IssuanceSignature"
REASON = "保险单证签发 Issued by the issuance centre"

# pyHanko logs a whole traceback at error level for a certificate it cannot trust; the check says why
# in its own words, so that logger is kept to what is not about the one file being checked.
logging.getLogger("pyhanko.sign.validation.generic_cms").setLevel(logging.CRITICAL)

_OID = {
    "data": bytes.fromhex("06092a864886f70d010701"),
    "signed_data": bytes.fromhex("06092a864886f70d010702"),
    "sha256": bytes.fromhex("0609608648016503040201"),
    "ecdsa_sha256": bytes.fromhex("06082a8648ce3d040302"),
    "sha256_rsa": bytes.fromhex("06092a864886f70d01010b"),
    "timestamp_token": bytes.fromhex("060b2a864886f70d010910020e"),
}
_NULL = b"\x05\x00"
_PLACEHOLDER_BYTES = 32  # the stand-in for the message digest in the signed-attributes template
_RANGE = b"/ByteRange[0 ********** ********** **********]"


def _tlv(tag: int, content: bytes) -> bytes:
    """DER: ``tag``, the definite length of ``content``, ``content``."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


class _NoRoom(SigningFailed):
    def __init__(self, needed: int, kept: int) -> None:
        super().__init__(f"the signature needs {needed} bytes, more than the {kept} kept")
        self.needed = needed


class PdfSigner:
    """Signs PDFs with ``key`` (and a token from ``timestamper`` for each signature). One per run,
    shared by threads: ``sign`` keeps no state between calls."""

    def __init__(
        self,
        key: SigningKey,
        *,
        timestamper: Timestamper | None = None,
        reason: str = REASON,
        location: str | None = None,
        reserve: int | None = None,
    ) -> None:
        self.key = key
        self.timestamper = timestamper
        certificate = asn1_x509.Certificate.load(key.certificate)
        self.subject = _name(certificate)
        self.fingerprint = hashlib.sha256(key.certificate).hexdigest()  # recorded in every manifest
        self.not_after = certificate["tbs_certificate"]["validity"]["not_after"].native
        chain = [asn1_x509.Certificate.load(c) for c in key.chain]

        # Signed attributes (ETSI EN 319 122-1 §5.2: content-type, message-digest, signing-certificate-v2;
        # no signing-time, which PAdES puts in /M), DER-sorted once with a stand-in digest.
        marker = bytes(range(0xA0, 0xA0 + _PLACEHOLDER_BYTES))
        cert_id = tsp.ESSCertIDv2(
            {
                "hash_algorithm": {"algorithm": "sha256"},
                "cert_hash": hashlib.sha256(key.certificate).digest(),
                "issuer_serial": {
                    "issuer": [asn1_x509.GeneralName({"directory_name": certificate.issuer})],
                    "serial_number": certificate.serial_number,
                },
            }
        )
        attributes = [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump(),
            cms.CMSAttribute({"type": "message_digest", "values": [marker]}).dump(),
            cms.CMSAttribute(
                {"type": "signing_certificate_v2", "values": [tsp.SigningCertificateV2({"certs": [cert_id]})]}
            ).dump(),
        ]
        signed = b"".join(sorted(attributes))
        self._attrs_head, self._attrs_tail = signed.split(marker)
        if len(self._attrs_head) + len(self._attrs_tail) + _PLACEHOLDER_BYTES != len(signed):
            raise SigningFailed("the signed attributes could not be prepared")

        sid = _seq(certificate.issuer.dump(), core.Integer(certificate.serial_number).dump())
        algorithm = (
            _seq(_OID["ecdsa_sha256"]) if key.algorithm == "ecdsa" else _seq(_OID["sha256_rsa"], _NULL)
        )
        self._info_head = b"\x02\x01\x01" + sid + _seq(_OID["sha256"])
        self._algorithm = algorithm
        certificates = b"".join(c.dump() for c in [certificate, *chain])
        self._data_head = (
            b"\x02\x01\x01" + _tlv(0x31, _seq(_OID["sha256"])) + _seq(_OID["data"]) + _tlv(0xA0, certificates)
        )
        # Room for the CMS in /Contents: certificates and signed attributes as they are, a signature
        # value, and a token with the TSA's certificate chain.
        estimate = len(certificates) + len(signed) + 1024 + (8192 if timestamper else 0)
        self.reserve = reserve or (estimate + 1023) // 1024 * 1024
        self._reason = text_string(reason)
        self._location = text_string(location) if location else b""

    @property
    def facts(self) -> dict[str, str | None]:
        """What a manifest records of this signer."""
        return {
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "level": "PAdES-B-T" if self.timestamper is not None else "PAdES-B-B",
            "timestamp_authority": self.timestamper.where if self.timestamper is not None else None,
        }

    # --- per document ----------------------------------------------------------------------------------

    def sign(self, pdf: bytes, *, now: dt.datetime | None = None) -> bytes:
        """``pdf`` with a signature appended as its last revision, covering the whole file. A copy signed
        before (a reissue re-signs the original) keeps that signature inside, intact, in its own field.
        ``SigningFailed`` names what went wrong (a PDF of an unexpected shape, the key, the TSA)."""
        now = now or dt.datetime.now(dt.UTC)
        try:
            return self._sign(pdf, now, self.reserve)
        except _NoRoom as e:
            # a TSA whose tokens carry more certificates than guessed: room for them from now on (one
            # token more, once per run)
            self.reserve = max(self.reserve, (e.needed * 5 // 4 + 1023) // 1024 * 1024)
            return self._sign(pdf, now, self.reserve)

    def _sign(self, pdf: bytes, now: dt.datetime, reserve: int) -> bytes:
        # only the update is changed in place; the document before it is hashed and copied once
        tail = bytearray(self._with_field(pdf, now, reserve))
        base = len(pdf)
        at = tail.find(_RANGE)
        if at < 0:
            raise SigningFailed("the signature placeholder was not written as expected")
        gap_start = tail.find(b"/Contents <", at) + len(b"/Contents ")
        gap_end = gap_start + 2 + 2 * reserve
        if tail[gap_end - 1 : gap_end] != b">":
            raise SigningFailed("the signature placeholder was not written as expected")
        ranges = b"/ByteRange[0 %-10d %-10d %-10d]" % (base + gap_start, base + gap_end, len(tail) - gap_end)
        tail[at : at + len(_RANGE)] = ranges
        view = memoryview(tail)
        digest = hashlib.sha256(pdf)
        digest.update(view[:gap_start])
        digest.update(view[gap_end:])
        signature = self._cms(digest.digest())
        if len(signature) > reserve:
            raise _NoRoom(len(signature), reserve)
        hexed = signature.hex().encode("ascii")
        tail[gap_start + 1 : gap_start + 1 + len(hexed)] = hexed
        return b"".join((pdf, tail))

    def _cms(self, digest: bytes) -> bytes:
        """The CMS ``ContentInfo`` of a detached signature over a file whose ``digest`` is given."""
        attrs = self._attrs_head + digest + self._attrs_tail
        value = self.key.sign(_tlv(0x31, attrs))
        info = self._info_head + _tlv(0xA0, attrs) + self._algorithm + _tlv(0x04, value)
        if self.timestamper is not None:
            token = self.timestamper.token(hashlib.sha256(value).digest())
            info += _tlv(0xA1, _seq(_OID["timestamp_token"], _tlv(0x31, token)))
        signed_data = _seq(self._data_head, _tlv(0x31, _seq(info)))
        return _seq(_OID["signed_data"], _tlv(0xA0, signed_data))

    def _with_field(self, pdf: bytes, now: dt.datetime, reserve: int) -> bytes:
        """The update to append to ``pdf``: an empty signature field, its dictionary with placeholders."""
        try:
            source = _source(pdf)
            update = IncrementalUpdate(pdf, source if isinstance(source, PlainPdf) else source.reader)
            root = source.trailer["/Root"]
            catalog = source.dictionary(root)
            page_ref, page = _first_page(source, catalog["/Pages"])
            form = source.dictionary(catalog["/AcroForm"]) if "/AcroForm" in catalog else {}
            fields = _array(form.get("/Fields", b"[]"))
            taken = {source.dictionary(f).get("/T", b"") for f in _refs(fields)}
            name = next(
                text_string(n)
                for n in [FIELD, *(f"{FIELD}{k}" for k in range(2, len(taken) + 3))]
                if text_string(n) not in taken
            )
            when = now.astimezone(dt.UTC).strftime("D:%Y%m%d%H%M%S+00'00'").encode("ascii")
            value = update.add(
                b"<</Type/Sig/Filter/Adobe.PPKLite/SubFilter/ETSI.CAdES.detached"
                + _RANGE
                + b"/Contents <"
                + b"0" * (2 * reserve)
                + b">/M("
                + when
                + b")/Reason"
                + self._reason
                + (b"/Location" + self._location if self._location else b"")
                + b">>"
            )
            # invisible (no area), printed and locked: a signature widget as PDF/A-2 allows it
            widget = update.add(
                b"<</Type/Annot/Subtype/Widget/FT/Sig/F 132/Rect[0 0 0 0]/T"
                + name
                + b"/V %d 0 R/P " % value.idnum
                + page_ref
                + b">>"
            )
            widget_ref = b"%d 0 R" % widget.idnum
            annots = _array(page.get("/Annots", b"[]"))
            update.replace(
                reference(page_ref),
                changed_dictionary(page, {"/Annots": annots[:-1] + b" " + widget_ref + b"]"}),
            )
            form_entries = {"/Fields": fields[:-1] + b" " + widget_ref + b"]", "/SigFlags": b"3"}
            if "/AcroForm" in catalog and not catalog["/AcroForm"].startswith(b"<<"):
                update.replace(reference(catalog["/AcroForm"]), changed_dictionary(form, form_entries))
            else:
                new_catalog = changed_dictionary(
                    catalog, {"/AcroForm": changed_dictionary(form, form_entries)}
                )
                update.replace(reference(root), new_catalog)
            return update.appended()
        except (ValueError, KeyError, TypeError, PyPdfError) as e:
            raise SigningFailed(f"the PDF cannot take a signature: {e}") from e


def _name(certificate: asn1_x509.Certificate) -> str:
    """A certificate's common name, with its organisation when there is one."""
    subject = certificate.subject.native
    name = subject.get("common_name") or certificate.subject.human_friendly
    organisation = subject.get("organization_name")
    return f"{name} ({organisation})" if organisation and organisation != name else str(name)


def _source(pdf: bytes) -> PlainPdf | PypdfObjects:
    plain = PlainPdf.read(pdf)
    if plain is not None:
        return plain
    return PypdfObjects(PdfReader(BytesIO(pdf), strict=False))


def _first_page(source: PlainPdf | PypdfObjects, ref: bytes) -> tuple[bytes, dict[str, bytes]]:
    """Page 1's reference and entries: the first kid, down the page tree."""
    for _ in range(32):  # deeper than any page tree written for a document of pages in the thousands
        node = source.dictionary(ref)
        if node.get("/Type") == b"/Page" or "/Kids" not in node:
            return ref.strip(), node
        kids = _refs(_array(node["/Kids"]))
        if not kids:
            raise ValueError("the page tree has no pages")
        ref = kids[0]
    raise ValueError("the page tree is deeper than any this pipeline writes")


def _array(value: bytes) -> bytes:
    value = value.strip()
    if not (value.startswith(b"[") and value.endswith(b"]")):
        raise ValueError(f"expected an array written in place, found {value[:40]!r}")
    return value


def _refs(array: bytes) -> list[bytes]:
    return [m[0] for m in re.finditer(rb"\d+\s+\d+\s+R", array)]


# --- checking ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureCheck:
    """What one signature of a PDF proves, and what it does not (``problems`` name each failure)."""

    field: str
    signer: str  # the certificate's subject, as it reads
    fingerprint: str  # SHA-256 of the signer's certificate (as the manifest records it), "" if unread
    intact: bool  # the signed bytes hash to what was signed
    valid: bool  # the signature value checks against the certificate's key
    whole_file: bool  # it covers the whole file: nothing was appended after it
    trusted: bool  # the certificate chains to one of the roots given
    signed_at: dt.datetime | None  # the time the signer claims (/M)
    timestamped_at: dt.datetime | None  # the TSA's time, when the signature carries a valid token
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_signatures(
    pdf: bytes, *, roots: list[bytes] = (), require_timestamp: bool = False
) -> list[SignatureCheck]:
    """Every signature of ``pdf``, in file order, checked by pyHanko's validator; ``roots`` are the DER
    certificates to trust, the signer's and the TSA's (none: nothing is trusted, and each signature
    says so). A PDF that cannot be read raises ``IssuanceError``."""
    # pyHanko is imported here, not with the module: it takes about 0.3 s, which every command that
    # opens the archive (find, get) would pay for a check only verify and audits make (docs/performance.md)
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.errors import SignatureValidationError
    from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(BytesIO(pdf), strict=False)
        embedded = list(reader.embedded_signatures)
    except (PdfError, ValueError) as e:
        raise IssuanceError(f"the PDF's signatures cannot be read: {e}") from e
    trust = [asn1_x509.Certificate.load(r) for r in roots]
    checks = []
    for n, signature in enumerate(embedded):
        # only the last signature covers the whole file; an earlier one covers its own revision (the
        # customer copy inside its archive copy, the original inside a reissued copy)
        last = n == len(embedded) - 1
        try:
            # validated at the time the signature claims, so that an archived copy stays valid after its
            # certificate expires: whether that time is to be believed is the timestamp's part
            moment = signature.self_reported_timestamp
            context = ValidationContext(trust_roots=trust, allow_fetching=False, moment=moment)
            # No difference analysis: what follows an earlier signature here is this pipeline's own
            # (image pages, a reissue mark, the next signature), which pyHanko's DocMDP rules call
            # suspicious; the last signature covers the whole file, and the archive checks the rest.
            status = validate_pdf_signature(signature, context, skip_diff=True)
        except (SignatureValidationError, ValueError) as e:
            checks.append(
                SignatureCheck(
                    signature.field_name,
                    "",
                    "",
                    False,
                    False,
                    False,
                    False,
                    None,
                    None,
                    (f"the signature cannot be validated: {e}",),
                )
            )
            continue
        cert = status.signing_cert
        problems: list[str] = []
        whole = status.coverage is not None and status.coverage.name == "ENTIRE_FILE"
        if not status.intact:
            problems.append("the signed bytes were changed after signing")
        elif not status.valid:
            problems.append("the signature value does not match the certificate's key")
        if not whole and last:
            problems.append("the signature does not cover the whole file: something was appended after it")
        validity = cert["tbs_certificate"]["validity"]
        begins, ends = validity["not_before"].native, validity["not_after"].native
        stamp = status.timestamp_validity
        stamped_at = stamp.timestamp if stamp is not None and stamp.intact and stamp.valid else None
        at = stamped_at or status.signer_reported_dt
        if at is not None and not begins <= at <= ends:
            problems.append(
                f"the signing certificate was not valid when it signed ({at:%Y-%m-%d %H:%M} UTC; "
                f"valid {begins:%Y-%m-%d} to {ends:%Y-%m-%d})"
            )
        elif not status.trusted:
            problems.append("the signing certificate does not chain to a trusted root")
        if stamp is not None:
            if not (stamp.intact and stamp.valid):
                problems.append("the timestamp token does not match the signature")
            elif not stamp.trusted:
                problems.append("the timestamp's authority does not chain to a trusted root")
        elif require_timestamp:
            problems.append("the signature carries no timestamp")
        checks.append(
            SignatureCheck(
                field=signature.field_name,
                signer=_name(cert),
                fingerprint=hashlib.sha256(cert.dump()).hexdigest(),
                intact=status.intact,
                valid=status.valid,
                whole_file=whole,
                trusted=status.trusted,
                signed_at=status.signer_reported_dt,
                timestamped_at=stamped_at,
                problems=tuple(problems),
            )
        )
    return checks
