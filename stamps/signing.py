"""PAdES signatures: the company's certificate signs a PDF, last, and a signed PDF is checked again.

The seal on a page is a picture anyone can lift; the signature is what proves who issued the file and
that it is unchanged (DOMAIN.md, "Electronic seals that prove something"; DESIGN.md, the ``Signer`` seam
and invariant 8). A signature here is PAdES baseline (``ETSI.CAdES.detached``, SHA-256) in an invisible
field: the seal stays as drawn, and the signature covers the whole file, nothing appended after it.

pyHanko builds and checks the CMS and PAdES structures. ``Signer`` holds a key and its certificate
chain from a PKCS#12 file; ``check_signatures`` validates every signature of a PDF (integrity, whether
it covers the whole file, the certificate against the roots given) and names what fails.
``write_specimen_pkcs12`` makes a SPECIMEN key and certificate (subject 样本 SPECIMEN, not for real
use) so that the embedded default can show signed documents.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.keys import load_private_key_from_pemder_data
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from core.errors import ConfigError, IssuanceError, SigningFailed

FIELD = "IssuanceSignature"
SPECIMEN_SUBJECT = "样本 SPECIMEN 电子签章 not for real use"


@dataclass(frozen=True)
class SignatureCheck:
    """What one signature of a PDF proves, and what it does not (``problems`` name each failure)."""

    field: str
    signer: str  # the certificate's subject, as it reads
    intact: bool  # the signed bytes hash to what was signed
    valid: bool  # the signature value checks against the certificate's key
    whole_file: bool  # it covers the whole file: nothing was appended after it
    trusted: bool  # the certificate chains to one of the roots given
    signed_at: dt.datetime | None  # the time the signer claims (a timestamp token comes with issue 23)
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class Signer:
    """The company's signing key and certificate chain, from a PKCS#12 file."""

    def __init__(self, signer: signers.SimpleSigner) -> None:
        self._signer = signer
        cert = signer.signing_cert
        self.subject = cert.subject.human_friendly
        self.fingerprint = hashlib.sha256(cert.dump()).hexdigest()  # recorded in every manifest

    @classmethod
    def from_pkcs12(cls, path: Path, password: bytes | None) -> Signer:
        """``ConfigError`` naming the file when it cannot be read or opened with ``password``."""
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"the signing key {path} cannot be read: {e.strerror}") from e
        try:
            key, cert, chain = pkcs12.load_key_and_certificates(data, password)
        except ValueError as e:
            raise ConfigError(
                f"the signing key {path} cannot be opened: {e}",
                hint="check ISSUANCE_SIGNING_PASSWORD or ISSUANCE_SIGNING_PASSWORD_FILE",
            ) from e
        if key is None or cert is None:
            raise ConfigError(f"the signing key {path} holds no private key with its certificate")
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        signer = signers.SimpleSigner(
            signing_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
            signing_key=load_private_key_from_pemder_data(der, passphrase=None),
            cert_registry=SimpleCertificateStore.from_certs(
                [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in chain or ()]
            ),
        )
        return cls(signer)

    def sign(self, pdf: bytes, *, reason: str = "保险单证签发 Issued", location: str | None = None) -> bytes:
        """``pdf`` with a PAdES signature appended as its last revision, covering the whole file."""
        try:
            writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
            # a copy signed before (a reissue re-signs the original) keeps that signature inside,
            # intact, in its own field: the new one takes the next free name
            taken = {signature.field_name for signature in writer.prev.embedded_signatures}
            names = itertools.chain([FIELD], (f"{FIELD}{n}" for n in itertools.count(2)))
            name = next(f for f in names if f not in taken)
            meta = signers.PdfSignatureMetadata(
                field_name=name,
                md_algorithm="sha256",
                subfilter=fields.SigSeedSubFilter.PADES,
                reason=reason,
                location=location,
            )
            out = signers.sign_pdf(writer, meta, signer=self._signer)
        except (PdfError, SigningError, ValueError) as e:
            raise SigningFailed(f"the PDF could not be signed: {e}") from e
        return out.getvalue()


def check_signatures(pdf: bytes, *, roots: list[bytes] = ()) -> list[SignatureCheck]:
    """Every signature of ``pdf``, checked; ``roots`` are the DER certificates to trust (none: nothing is
    trusted, and each signature says so). A PDF that cannot be read raises ``IssuanceError``."""
    try:
        reader = PdfFileReader(BytesIO(pdf), strict=False)
        embedded = list(reader.embedded_signatures)
    except (PdfError, ValueError) as e:
        raise IssuanceError(f"the PDF's signatures cannot be read: {e}") from e
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(r) for r in roots],
        allow_fetching=False,
    )
    checks = []
    for signature in embedded:
        problems: list[str] = []
        try:
            status = validate_pdf_signature(signature, context)
        except (SignatureValidationError, ValueError) as e:
            checks.append(
                SignatureCheck(
                    signature.field_name,
                    "",
                    False,
                    False,
                    False,
                    False,
                    None,
                    (f"the signature cannot be validated: {e}",),
                )
            )
            continue
        whole = status.coverage is not None and status.coverage.name == "ENTIRE_FILE"
        if not status.intact:
            problems.append("the signed bytes were changed after signing")
        elif not status.valid:
            problems.append("the signature value does not match the certificate's key")
        if not whole:
            problems.append("the signature does not cover the whole file: something was appended after it")
        if not status.trusted:
            problems.append("the signing certificate does not chain to a trusted root")
        checks.append(
            SignatureCheck(
                field=signature.field_name,
                signer=status.signing_cert.subject.human_friendly,
                intact=status.intact,
                valid=status.valid,
                whole_file=whole,
                trusted=status.trusted,
                signed_at=status.signer_reported_dt,
                problems=tuple(problems),
            )
        )
    return checks


def write_specimen_pkcs12(path: Path, password: bytes, *, now: dt.datetime | None = None) -> bytes:
    """A SPECIMEN root and signing certificate (EC P-256) in a PKCS#12 file at ``path`` (mode 0600);
    returns the root's DER certificate, to trust in tests and in ``issuance verify`` for the demo."""
    now = now or dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "样本 SPECIMEN Root CA (not for real use)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "样本 SPECIMEN Root CA"),
        ]
    )
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "样本 SPECIMEN 示范财产保险股份有限公司"),
                    x509.NameAttribute(NameOID.COMMON_NAME, SPECIMEN_SUBJECT),
                ]
            )
        )
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    data = pkcs12.serialize_key_and_certificates(
        b"issuance-signer", key, cert, [root], serialization.BestAvailableEncryption(password)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)
    return root.public_bytes(serialization.Encoding.DER)
