"""PAdES signing of a real customer copy (real LibreOffice, the real seal) by ``PdfSigner``, checked
twice: by pyHanko's validator and by poppler's ``pdfsig``, an independent implementation (NSS)."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from core.errors import ConfigError
from core.records import parse_record
from stamps.keys import SPECIMEN_SUBJECT, Pkcs12Key, write_specimen_pkcs12
from stamps.pdfupdate import IncrementalUpdate, PlainPdf, text_string
from stamps.signing import PdfSigner, check_signatures

PASSWORD = b"specimen-password"


@pytest.fixture(scope="module")
def customer_copy(maker, synth_records) -> bytes:
    policy, problems = parse_record(next(r for r in synth_records if r["product_code"] == "AUTO-COMM"))
    assert policy is not None and not problems
    return maker.policy_pdf(policy).pdf


@pytest.fixture(scope="module")
def specimen(tmp_path_factory) -> tuple[PdfSigner, bytes]:
    path = tmp_path_factory.mktemp("secrets") / "signer.p12"
    root = write_specimen_pkcs12(path, PASSWORD)
    return PdfSigner(Pkcs12Key.open(path, PASSWORD)), root


def _pdfsig(pdf: bytes, tmp_path: Path) -> str:
    target = tmp_path / f"signed-{len(list(tmp_path.iterdir()))}.pdf"
    target.write_bytes(pdf)
    result = subprocess.run(["pdfsig", str(target)], capture_output=True, text=True, timeout=60, check=False)
    return result.stdout + result.stderr


def test_a_signed_customer_copy_is_valid_whole_and_trusted(customer_copy, specimen, tmp_path):
    signer, root = specimen
    signed = signer.sign(customer_copy)

    assert signed.startswith(customer_copy)  # an incremental update: the issued bytes are kept as they were
    (check,) = check_signatures(signed, roots=[root])
    assert check.ok, check.problems
    assert (check.intact, check.valid, check.whole_file, check.trusted) == (True, True, True, True)
    assert "样本 SPECIMEN" in check.signer
    said = _pdfsig(signed, tmp_path)
    assert "Signature Type: ETSI.CAdES.detached" in said
    assert "Signing Hash Algorithm: SHA-256" in said
    assert "Total document signed" in said
    assert "Signature is Valid." in said


def test_a_byte_changed_after_signing_is_named(customer_copy, specimen, tmp_path):
    signer, root = specimen
    signed = bytearray(signer.sign(customer_copy))
    signed[len(customer_copy) // 2] ^= 0x01  # inside the signed range: a page's content

    (check,) = check_signatures(bytes(signed), roots=[root])
    assert not check.intact
    assert "the signed bytes were changed after signing" in check.problems
    assert "Digest Mismatch" in _pdfsig(bytes(signed), tmp_path)


def test_a_certificate_from_another_root_is_not_trusted(customer_copy, specimen, tmp_path):
    signer, _root = specimen
    other_root = write_specimen_pkcs12(tmp_path / "other.p12", PASSWORD)

    (check,) = check_signatures(signer.sign(customer_copy), roots=[other_root])
    assert (check.intact, check.valid, check.trusted) == (True, True, False)
    assert check.problems == ("the signing certificate does not chain to a trusted root",)


def test_anything_appended_after_a_signature_is_named(customer_copy, specimen, tmp_path):
    """Signed last (DESIGN.md invariant 8): a revision after the signature leaves it short of the file."""
    signer, root = specimen
    signed = signer.sign(customer_copy)
    plain = PlainPdf.read(signed)
    update = IncrementalUpdate(signed, plain)
    update.set_info(update.add(b"<</Title " + text_string("改过的标题") + b">>"))
    changed = update.to_bytes()

    (check,) = check_signatures(changed, roots=[root])
    assert check.intact and check.valid and not check.whole_file
    assert check.problems == ("the signature does not cover the whole file: something was appended after it",)
    assert "Not total document signed" in _pdfsig(changed, tmp_path)


def test_a_copy_signed_again_keeps_the_first_signature_intact_inside(customer_copy, specimen, tmp_path):
    """A reissue or an archive copy signs a signed copy again: the first signature covers its own
    revision, the last one the whole file; both are in order."""
    signer, root = specimen
    twice = signer.sign(signer.sign(customer_copy))

    first, last = check_signatures(twice, roots=[root])
    assert (first.field, last.field) == ("IssuanceSignature", "IssuanceSignature2")
    assert first.intact and first.valid and not first.whole_file and first.ok
    assert last.whole_file and last.ok
    said = _pdfsig(twice, tmp_path)
    assert said.count("Signature is Valid.") == 2 and said.count("Total document signed") == 1


def test_an_expired_certificate_is_named(customer_copy, tmp_path):
    path = tmp_path / "old.p12"
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=900)  # valid for 825 days from then
    root = write_specimen_pkcs12(path, PASSWORD, now=long_ago)
    signed = PdfSigner(Pkcs12Key.open(path, PASSWORD)).sign(customer_copy)

    (check,) = check_signatures(signed, roots=[root])
    assert check.intact and check.valid
    assert len(check.problems) == 1
    assert check.problems[0].startswith("the signing certificate was not valid when it signed")


def test_the_signature_is_the_same_structure_for_every_document(customer_copy, specimen):
    """What is prepared once per run does not leak from one document into the next: two documents
    signed one after the other each check out, and their signature values differ."""
    signer, root = specimen
    update = IncrementalUpdate(customer_copy, PlainPdf.read(customer_copy))
    update.set_info(update.add(b"<</Title (another)>>"))
    other = update.to_bytes()
    a, b = signer.sign(customer_copy), signer.sign(other)
    assert all(c.ok for c in check_signatures(a, roots=[root]) + check_signatures(b, roots=[root]))
    assert a[len(customer_copy) :] != b[len(other) :]


def test_the_specimen_certificate_says_it_is_not_for_real_use(tmp_path):
    path = tmp_path / "secrets" / "signer.p12"
    root = x509.load_der_x509_certificate(write_specimen_pkcs12(path, PASSWORD))

    assert "SPECIMEN" in root.subject.rfc4514_string()
    assert "not for real use" in SPECIMEN_SUBJECT and "样本" in SPECIMEN_SUBJECT
    assert path.stat().st_mode & 0o077 == 0  # the key file is its owner's only
    assert SPECIMEN_SUBJECT in PdfSigner(Pkcs12Key.open(path, PASSWORD)).subject


def test_a_wrong_password_or_a_missing_key_names_the_file(tmp_path):
    path = tmp_path / "signer.p12"
    write_specimen_pkcs12(path, PASSWORD)

    with pytest.raises(ConfigError, match=r"signer\.p12 cannot be opened"):
        Pkcs12Key.open(path, b"not the password")
    with pytest.raises(ConfigError, match=r"absent\.p12 cannot be read"):
        Pkcs12Key.open(tmp_path / "absent.p12", PASSWORD)
