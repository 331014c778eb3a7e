"""``issuance signer``: the company's signing certificate as this installation sees it, and the SPECIMEN
one that ``make demo`` makes so that the embedded default shows signed documents."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from core.config import SPECIMEN_KEY, SPECIMEN_PASSWORD, SPECIMEN_ROOT, Settings
from stamps.keys import load_certificates, write_specimen_pkcs12
from usecases.session import signer_from


@dataclass(frozen=True)
class SignerFacts:
    """What ``issuance signer show`` prints: never the password, the PIN or a TSA's credentials."""

    key: str  # the file or the pkcs11: URI without its query (which may hold a PIN)
    subject: str
    fingerprint: str
    not_after: datetime
    level: str
    timestamp_authority: str | None
    trusted_roots: int


def describe_signer(settings: Settings) -> SignerFacts | None:
    """The configured signer opened (``ConfigError`` when it cannot be), or None when there is none."""
    signer = signer_from(settings)
    if signer is None:
        return None
    facts = signer.facts
    return SignerFacts(
        key=str(settings.signing_key).split("?", 1)[0],
        subject=signer.subject,
        fingerprint=signer.fingerprint,
        not_after=signer.not_after,
        level=str(facts["level"]),
        timestamp_authority=facts["timestamp_authority"],
        trusted_roots=len(load_certificates(settings.trust_roots)),
    )


@dataclass(frozen=True)
class Specimen:
    key: Path
    root: Path
    made: bool  # False: one was there already, and is kept


def make_specimen(settings: Settings) -> Specimen:
    """A SPECIMEN key and certificate (subject 样本 SPECIMEN, not for real use) in ``var/secrets/``, with
    its password in a file beside it and its root as PEM (trusted by ``issuance verify`` and audits of
    this installation). An existing one is kept: documents already signed by it stay checkable."""
    folder = settings.specimen_dir
    key, password_file, root = folder / SPECIMEN_KEY, folder / SPECIMEN_PASSWORD, folder / SPECIMEN_ROOT
    if key.is_file():
        return Specimen(key=key, root=root, made=False)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = secrets.token_urlsafe(24)
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    der = write_specimen_pkcs12(key, password.encode("ascii"))
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    root.write_bytes(pem)
    return Specimen(key=key, root=root, made=True)
