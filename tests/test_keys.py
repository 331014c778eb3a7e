"""Signing keys: a PKCS#12 file, and a key inside a real PKCS#11 token (Debian's SoftHSM2 on a token
directory of the test's own)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from bench.synth import make_batch
from core.errors import ConfigError
from stamps.keys import (
    SOFTHSM2_MODULE,
    Pkcs11Key,
    Pkcs11Uri,
    Pkcs12Key,
    open_signing_key,
    write_specimen_pkcs12,
)
from stamps.pdfupdate import NewDocument
from stamps.signing import PdfSigner, check_signatures
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    shutil.which("softhsm2-util") is None or not SOFTHSM2_MODULE.exists(),
    reason="Debian's softhsm2 is not installed (make system)",
)

PIN = "4711-token"
SO_PIN = "so-pin-0815"
TOKEN = "issuance-test"


@dataclass
class SoftHsm:
    """A SoftHSM2 token in a directory of the test's own, and what was put on it."""

    module: Path
    token: str
    root: bytes  # the SPECIMEN root certificate (also stored on the token)
    certificates: dict[str, bytes]  # key label -> its certificate

    def uri(self, object_label: str, **query: str) -> str:
        tail = "&".join(f"{k}={v}" for k, v in {"module-path": str(self.module), **query}.items())
        return f"pkcs11:token={self.token};object={object_label}?{tail}"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "样本 SPECIMEN (not for real use)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(subject: str, public_key, issuer: x509.Name, issuer_key, *, ca: bool = False):
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject) if not ca else issuer)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def _import_key(key, *, label: str, key_id: str, tmp: Path) -> None:
    """Into the token with Debian's own tool, as an operator would import a key."""
    pem = tmp / f"{label}.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    command = ["softhsm2-util", "--import", str(pem), "--token", TOKEN, "--pin", PIN]
    subprocess.run(
        [*command, "--label", label, "--id", key_id],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pem.unlink()


def _store_certificate(session, cert: x509.Certificate, *, label: str, key_id: bytes) -> None:
    der = serialization.Encoding.DER
    session.create_object(
        {
            pkcs11.Attribute.CLASS: pkcs11.ObjectClass.CERTIFICATE,
            pkcs11.Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
            pkcs11.Attribute.TOKEN: True,
            pkcs11.Attribute.LABEL: label,
            pkcs11.Attribute.ID: key_id,
            pkcs11.Attribute.SUBJECT: cert.subject.public_bytes(),
            pkcs11.Attribute.ISSUER: cert.issuer.public_bytes(),
            pkcs11.Attribute.SERIAL_NUMBER: cert.serial_number.to_bytes(20, "big"),
            pkcs11.Attribute.VALUE: cert.public_bytes(der),
        }
    )


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsm]:
    """A fresh token holding: an EC P-256 key ``signer`` (id 01) with its certificate, an RSA key ``rsa``
    (id 02) with its certificate, the SPECIMEN root, a key ``bare`` (id 03) with no certificate, and a key
    ``mismatched`` (id 04) whose certificate holds another key's public key."""
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # the EC key and the root come from the project's own SPECIMEN maker
    p12 = tmp_path / "specimen.p12"
    root_der = write_specimen_pkcs12(p12, b"pw")
    ec_key, ec_cert, _ = pkcs12.load_key_and_certificates(p12.read_bytes(), b"pw")
    root_key = ec.generate_private_key(ec.SECP256R1())  # issues the RSA and mismatched certificates
    rsa_root = _certificate("", root_key.public_key(), _name("样本 SPECIMEN RSA Root"), root_key, ca=True)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_cert = _certificate("样本 SPECIMEN RSA signer", rsa_key.public_key(), rsa_root.subject, root_key)
    bare_key = ec.generate_private_key(ec.SECP256R1())
    mismatched_key = ec.generate_private_key(ec.SECP256R1())
    other_cert = _certificate(
        "样本 SPECIMEN other",
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        rsa_root.subject,
        root_key,
    )
    _import_key(ec_key, label="signer", key_id="01", tmp=tmp_path)
    _import_key(rsa_key, label="rsa", key_id="02", tmp=tmp_path)
    _import_key(bare_key, label="bare", key_id="03", tmp=tmp_path)
    _import_key(mismatched_key, label="mismatched", key_id="04", tmp=tmp_path)

    lib = pkcs11.lib(str(SOFTHSM2_MODULE))
    lib.reinitialize()  # the tokens and keys above were made after this process may have loaded it
    session = lib.get_token(token_label=TOKEN).open(rw=True, user_pin=PIN)
    try:
        _store_certificate(session, ec_cert, label="signer", key_id=b"\x01")
        _store_certificate(session, rsa_cert, label="rsa", key_id=b"\x02")
        _store_certificate(session, other_cert, label="mismatched", key_id=b"\x04")
        _store_certificate(session, x509.load_der_x509_certificate(root_der), label="root", key_id=b"\xff")
        _store_certificate(session, rsa_root, label="rsa-root", key_id=b"\xfe")
    finally:
        session.close()
    der = serialization.Encoding.DER
    yield SoftHsm(
        module=SOFTHSM2_MODULE,
        token=TOKEN,
        root=root_der,
        certificates={
            "signer": ec_cert.public_bytes(der),
            "rsa": rsa_cert.public_bytes(der),
            "rsa-root": rsa_root.public_bytes(der),
        },
    )


def _verify(certificate: bytes, signature: bytes, data: bytes, algorithm: str) -> None:
    public = x509.load_der_x509_certificate(certificate).public_key()
    if algorithm == "ecdsa":
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    else:
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


# --- PKCS#11 ------------------------------------------------------------------------------------------


def test_pkcs11_ec_key_signs_what_its_certificate_verifies(softhsm: SoftHsm) -> None:
    with closing(open_signing_key(softhsm.uri("signer"), PIN.encode())) as key:
        assert isinstance(key, Pkcs11Key)
        assert key.algorithm == "ecdsa"
        assert key.certificate == softhsm.certificates["signer"]
        assert key.chain == (softhsm.root,)
        data = b"%PDF-1.7 byte ranges of a policy"
        signature = key.sign(data)
        _verify(key.certificate, signature, data, "ecdsa")  # DER ECDSA-Sig-Value, not raw r||s
        with pytest.raises(InvalidSignature):
            _verify(key.certificate, signature, data + b"!", "ecdsa")


def test_pkcs11_rsa_key_signs_pkcs1v15(softhsm: SoftHsm) -> None:
    with closing(open_signing_key(softhsm.uri("rsa"), PIN.encode())) as key:
        assert key.algorithm == "rsa"
        assert key.certificate == softhsm.certificates["rsa"]
        assert key.chain == (softhsm.certificates["rsa-root"],)
        _verify(key.certificate, key.sign(b"policy"), b"policy", "rsa")


def test_pkcs11_module_from_the_setting_when_the_uri_names_none(softhsm: SoftHsm) -> None:
    uri = f"pkcs11:token={softhsm.token};id=%01"
    with closing(open_signing_key(uri, PIN.encode(), pkcs11_module=softhsm.module)) as key:
        assert key.certificate == softhsm.certificates["signer"]
    with pytest.raises(ConfigError, match=r"module /nowhere/libhsm\.so is not found"):
        open_signing_key(uri, PIN.encode(), pkcs11_module=Path("/nowhere/libhsm.so"))


def test_pkcs11_module_that_cannot_start_is_named(
    softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_module = tmp_path / "libnot-pkcs11.so"
    not_a_module.write_text("not a shared library")
    with pytest.raises(ConfigError, match=rf"module {not_a_module} cannot be loaded"):
        open_signing_key(f"pkcs11:token={TOKEN};object=signer", PIN.encode(), pkcs11_module=not_a_module)
    monkeypatch.setenv("SOFTHSM2_CONF", str(tmp_path / "no-such.conf"))
    with pytest.raises(ConfigError, match=r"libsofthsm2\.so cannot be loaded or started.*SOFTHSM2_CONF"):
        open_signing_key(softhsm.uri("signer"), PIN.encode())
    with pytest.raises(ConfigError, match="PIN of the PKCS#11 token is not UTF-8"):
        open_signing_key(softhsm.uri("signer"), b"\xff\xfe")


def test_pkcs11_pin_from_the_uri(softhsm: SoftHsm, tmp_path: Path) -> None:
    with closing(open_signing_key(softhsm.uri("signer", **{"pin-value": PIN}), None)) as key:
        _verify(key.certificate, key.sign(b"x"), b"x", "ecdsa")
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    with closing(open_signing_key(softhsm.uri("signer", **{"pin-source": f"file:{pin_file}"}), None)) as key:
        _verify(key.certificate, key.sign(b"y"), b"y", "ecdsa")


def test_pkcs11_wrong_pin_names_the_token_and_not_the_pin(softhsm: SoftHsm) -> None:
    with pytest.raises(ConfigError) as caught:
        open_signing_key(softhsm.uri("signer"), b"not-the-pin-31337")
    message = str(caught.value)
    assert f"PIN for the PKCS#11 token {TOKEN!r} is wrong" in message
    assert "31337" not in message
    with pytest.raises(ConfigError) as caught:
        open_signing_key(softhsm.uri("signer", **{"pin-value": "uri-pin-31337"}), None)
    assert "is wrong" in str(caught.value) and "31337" not in str(caught.value)
    with pytest.raises(ConfigError, match=f"no PIN is given for the PKCS#11 token {TOKEN!r}"):
        open_signing_key(softhsm.uri("signer"), None)


def test_pkcs11_unknown_token_is_named(softhsm: SoftHsm) -> None:
    uri = f"pkcs11:token=no-such-hsm;object=signer?module-path={softhsm.module}"
    with pytest.raises(ConfigError, match=r"no PKCS#11 token matches token='no-such-hsm'"):
        open_signing_key(uri, PIN.encode())


def test_pkcs11_unknown_object_is_named(softhsm: SoftHsm) -> None:
    with pytest.raises(
        ConfigError, match=r"no private key object='no-such-key' on the PKCS#11 token 'issuance-test'"
    ):
        open_signing_key(softhsm.uri("no-such-key"), PIN.encode())


def test_pkcs11_key_without_certificate_is_refused(softhsm: SoftHsm) -> None:
    with pytest.raises(ConfigError, match=r"no certificate for the key object='bare' on the PKCS#11 token"):
        open_signing_key(softhsm.uri("bare"), PIN.encode())


def test_pkcs11_certificate_of_another_key_is_refused(softhsm: SoftHsm) -> None:
    with pytest.raises(
        ConfigError,
        match=r"stored with the key object='mismatched' on the PKCS#11 token 'issuance-test' is for another",
    ):
        open_signing_key(softhsm.uri("mismatched"), PIN.encode())


def test_pkcs11_token_made_after_the_module_was_loaded_is_found(softhsm: SoftHsm, tmp_path: Path) -> None:
    # a run opens its key after the tokens are in place, but the module may be loaded already (tests,
    # or a long-lived process): a token made since must be found, not "no token matches"
    with closing(open_signing_key(softhsm.uri("signer"), PIN.encode())):
        pass
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "late-token",
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    command = ["softhsm2-util", "--import", str(tmp_path / "late.pem"), "--token", "late-token", "--pin", PIN]
    late = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "late.pem").write_bytes(
        late.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    subprocess.run([*command, "--label", "late", "--id", "05"], check=True, capture_output=True, timeout=60)
    uri = f"pkcs11:token=late-token;object=late?module-path={softhsm.module}"
    with pytest.raises(ConfigError, match=r"no certificate for the key object='late' on the PKCS#11 token"):
        open_signing_key(uri, PIN.encode())


def test_pkcs11_key_signs_from_many_threads_at_once(softhsm: SoftHsm) -> None:
    errors: list[BaseException] = []
    signed: list[tuple[bytes, bytes]] = []
    with closing(open_signing_key(softhsm.uri("signer"), PIN.encode())) as key:
        start = threading.Barrier(8)

        def work(n: int) -> None:
            start.wait()
            try:
                for i in range(40):
                    data = f"document {n}-{i}".encode()
                    signed.append((data, key.sign(data)))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(signed) == 8 * 40
        for data, signature in signed:
            _verify(key.certificate, signature, data, "ecdsa")


def test_pkcs11_closed_key_signs_no_more(softhsm: SoftHsm) -> None:
    key = open_signing_key(softhsm.uri("signer"), PIN.encode())
    assert isinstance(key, Pkcs11Key)
    key.close()
    with pytest.raises(Exception, match="was closed"):
        key.sign(b"late")


def test_pkcs11_uri_is_parsed_per_rfc7512() -> None:
    uri = Pkcs11Uri.parse(
        "pkcs11:token=Issuance%20HSM;id=%01%a0;object=seal%3Bkey?pin-value=1%262&module-path=/m.so"
    )
    assert uri.path == {"token": "Issuance HSM", "id": b"\x01\xa0", "object": "seal;key"}
    assert uri.query == {"pin-value": "1&2", "module-path": "/m.so"}
    assert "1&2" not in uri.describe()
    for bad, reason in [
        ("pkcs11:token=a;object=b;library-version=7", "'library-version' is not supported"),
        ("pkcs11:token=a;object=b;object=c", "names 'object' twice"),
        ("pkcs11:token=a", "names no key"),
        ("pkcs11:token=a;object=b;type=cert", "must name a private key"),
        ("pkcs11:token=a;object=b?pin-value=secret-99&module-name=x", "'module-name' is not supported"),
        ("pkcs11:token=a;object?pin-value=secret-99", "'object' with no name=value"),
    ]:
        with pytest.raises(ConfigError, match=reason) as caught:
            Pkcs11Uri.parse(bad)
        assert "secret-99" not in str(caught.value)


# --- PKCS#12 ------------------------------------------------------------------------------------------


def test_pkcs12_key_signs_what_its_certificate_verifies(tmp_path: Path) -> None:
    path = tmp_path / "signer.p12"
    root = write_specimen_pkcs12(path, b"right password")
    key = open_signing_key(str(path), b"right password")
    assert isinstance(key, Pkcs12Key)
    assert key.algorithm == "ecdsa"
    assert key.chain == (root,)
    assert "SPECIMEN" in x509.load_der_x509_certificate(key.certificate).subject.rfc4514_string()
    signature = key.sign(b"policy")
    _verify(key.certificate, signature, b"policy", "ecdsa")
    with pytest.raises(InvalidSignature):
        _verify(key.certificate, signature, b"policy!", "ecdsa")


def test_pkcs12_wrong_password_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "signer.p12"
    write_specimen_pkcs12(path, b"right password")
    with pytest.raises(ConfigError, match=rf"the signing key {path} cannot be opened"):
        open_signing_key(str(path), b"wrong password")
    with pytest.raises(ConfigError, match=rf"the signing key {tmp_path / 'missing.p12'} cannot be read"):
        open_signing_key(str(tmp_path / "missing.p12"), b"right password")


# --- the whole path: an HSM key signs what the pipeline files ---------------------------------------------


def test_issuance_run_signs_with_a_key_inside_the_token(softhsm: SoftHsm, tmp_path: Path) -> None:
    """``issuance run`` configured as for an HSM (a ``pkcs11:`` URI, the PIN, the module): every filed
    PDF's last signature is by the token's key, valid for pyHanko and for poppler's pdfsig."""
    batch = make_batch(tmp_path / "batch", 2, seed=91, images_per_record=1)
    env = {
        **os.environ,  # SOFTHSM2_CONF: the test's own token directory
        "PYTHONPATH": str(REPO),
        "ISSUANCE_HMAC_KEY": "keys-test-hmac-key-0123456789",
        "ISSUANCE_SIGNING_KEY": f"pkcs11:token={softhsm.token};object=signer",
        "ISSUANCE_SIGNING_PASSWORD": PIN,
        "ISSUANCE_PKCS11_MODULE": str(softhsm.module),
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(batch), "--no-progress"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "UNSIGNED" not in done.stderr
    pdfs = sorted((tmp_path / "var" / "archive").rglob("*.pdf"))
    assert len(pdfs) == 4
    fingerprint = hashlib.sha256(softhsm.certificates["signer"]).hexdigest()
    for path in pdfs:
        last = check_signatures(path.read_bytes(), roots=[softhsm.root])[-1]
        assert last.ok and last.fingerprint == fingerprint, (path.name, last.problems)
        said = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, check=False).stdout
        assert "Total document signed" in said and "Signature is Valid." in said, said


def test_an_rsa_key_in_the_token_signs_a_pdf_that_checks_out(softhsm: SoftHsm, tmp_path: Path) -> None:
    pdf = NewDocument()
    page_tree = pdf.reserve()
    page = pdf.add(b"<</Type/Page/Parent %d 0 R/MediaBox[0 0 595 842]>>" % page_tree.idnum)
    pdf.replace(page_tree, b"<</Type/Pages/Kids[%d 0 R]/Count 1>>" % page.idnum)
    root = pdf.add(b"<</Type/Catalog/Pages %d 0 R>>" % page_tree.idnum)
    with closing(open_signing_key(softhsm.uri("rsa"), PIN.encode())) as key:
        signed = PdfSigner(key).sign(pdf.to_bytes(root=root))
    (check,) = check_signatures(signed, roots=[softhsm.certificates["rsa-root"]])
    # the value, the digest and the coverage: what RSA changes (the test's RSA root is a bare one)
    assert check.intact and check.valid and check.whole_file, check.problems
    target = tmp_path / "rsa.pdf"
    target.write_bytes(signed)
    said = subprocess.run(["pdfsig", str(target)], capture_output=True, text=True, check=False).stdout
    assert "Signature is Valid." in said and "Total document signed" in said, said
