"""The company's signing key: a PKCS#12 file, or a key inside an HSM reached by PKCS#11 (RFC 7512 URI).

A ``SigningKey`` signs bytes with SHA-256 and holds the certificate that goes with it and its chain; what
a signature is made of around that (CMS, PAdES) is ``stamps.signing``'s. The key is opened once per run
(``open_signing_key``), from ``ISSUANCE_SIGNING_KEY`` and its password or PIN.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import ConfigError, SigningFailed

__all__ = [
    "SPECIMEN_SUBJECT",
    "Pkcs12Key",
    "SigningKey",
    "load_certificates",
    "open_signing_key",
    "write_specimen_pkcs12",
]

SPECIMEN_SUBJECT = "样本 SPECIMEN 电子签章 not for real use"


class SigningKey(Protocol):
    """A private key that signs with SHA-256, and its certificates (DER)."""

    certificate: bytes  # the signer's own certificate
    chain: tuple[bytes, ...]  # the certificates above it, issuer first (the root may be among them)
    algorithm: str  # "ecdsa" or "rsa" (PKCS#1 v1.5): what the CMS names as the signature algorithm

    def sign(self, data: bytes) -> bytes:
        """The signature of ``data`` (SHA-256): DER ``ECDSA-Sig-Value`` for ECDSA, PKCS#1 v1.5 for RSA.
        Raises ``SigningFailed`` when the key cannot sign (an HSM gone, a PIN locked)."""
        ...


class Pkcs12Key:
    """A key and its certificates from a PKCS#12 file (``ISSUANCE_SIGNING_KEY=/path/signer.p12``)."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        certificate: bytes,
        chain: Sequence[bytes],
    ) -> None:
        self._key = key
        self.certificate = certificate
        self.chain = tuple(chain)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            self.algorithm = "ecdsa"
        elif isinstance(key, rsa.RSAPrivateKey):
            self.algorithm = "rsa"
        else:
            raise ConfigError(f"a signing key of type {type(key).__name__} is not supported: use EC or RSA")

    @classmethod
    def open(cls, path: Path, password: bytes | None) -> Pkcs12Key:
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
        der = serialization.Encoding.DER
        return cls(key, cert.public_bytes(der), [c.public_bytes(der) for c in chain or ()])

    def sign(self, data: bytes) -> bytes:
        try:
            if self.algorithm == "ecdsa":
                return self._key.sign(data, ec.ECDSA(hashes.SHA256()))
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        except ValueError as e:  # pragma: no cover - a loaded key signs
            raise SigningFailed(f"the signing key cannot sign: {e}") from e


def load_certificates(paths: Sequence[Path]) -> list[bytes]:
    """The DER certificates in ``paths`` (PEM, several to a file, or DER): the roots that signatures
    are checked against (``ISSUANCE_TRUST``). ``ConfigError`` naming a file that holds none."""
    found = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"the trusted certificate file {path} cannot be read: {e.strerror}") from e
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                certificates = x509.load_pem_x509_certificates(data)
            else:
                certificates = [x509.load_der_x509_certificate(data)]
        except ValueError as e:
            raise ConfigError(f"{path} holds no certificate that can be read: {e}") from e
        found += [c.public_bytes(serialization.Encoding.DER) for c in certificates]
    return found


def open_signing_key(spec: str, secret: bytes | None) -> SigningKey:
    """The key that ``ISSUANCE_SIGNING_KEY`` names: a ``pkcs11:`` URI (RFC 7512) or a PKCS#12 file path;
    ``secret`` is its PIN or password. ``ConfigError`` naming what is wrong."""
    if spec.startswith("pkcs11:"):
        raise ConfigError("PKCS#11 signing keys are not supported yet")  # helper "hsm" fills this in
    return Pkcs12Key.open(Path(spec), secret)


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
