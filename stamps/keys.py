"""The company's signing key: a PKCS#12 file, or a key inside an HSM reached by PKCS#11 (RFC 7512 URI).

A ``SigningKey`` signs bytes with SHA-256 and holds the certificate that goes with it and its chain; what
a signature is made of around that (CMS, PAdES) is ``stamps.signing``'s. The key is opened once per run
(``open_signing_key``), from ``ISSUANCE_SIGNING_KEY`` and its password or PIN.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import ConfigError, SigningFailed

if TYPE_CHECKING:
    import pkcs11

__all__ = [
    "SOFTHSM2_MODULE",
    "SPECIMEN_SUBJECT",
    "Pkcs11Key",
    "Pkcs11Uri",
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


def open_signing_key(spec: str, secret: bytes | None, *, pkcs11_module: Path | None = None) -> SigningKey:
    """The key that ``ISSUANCE_SIGNING_KEY`` names: a ``pkcs11:`` URI (RFC 7512) or a PKCS#12 file path;
    ``secret`` is its PIN or password. ``pkcs11_module`` (``ISSUANCE_PKCS11_MODULE``) is the PKCS#11
    library when the URI names none. ``ConfigError`` naming what is wrong."""
    if spec.startswith("pkcs11:"):
        return Pkcs11Key.open(Pkcs11Uri.parse(spec), secret, module=pkcs11_module)
    return Pkcs12Key.open(Path(spec), secret)


# --- PKCS#11 (an HSM, or SoftHSM2 in tests) ---------------------------------------------------------

# Debian's softhsm2 package installs its module here on every architecture (an alternatives link)
SOFTHSM2_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")

# RFC 7512 path attributes this consumer matches on; any other makes the URI refused: an attribute left
# unmatched could let the URI pick another key than the one meant
_PATH_ATTRIBUTES = frozenset({"token", "object", "id", "serial", "manufacturer", "model", "type", "slot-id"})
_QUERY_ATTRIBUTES = frozenset({"module-path", "pin-value", "pin-source"})

# DigestInfo for SHA-256 (RFC 8017 sec. 9.2 note 1): CKM_RSA_PKCS signs what it is given
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclass(frozen=True)
class Pkcs11Uri:
    """A ``pkcs11:`` URI (RFC 7512), percent-decoded: ``id`` stays bytes, everything else is text."""

    path: dict[str, str | bytes]
    query: dict[str, str]

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        """``ConfigError`` for a malformed URI or an attribute this consumer does not handle. The message
        names attributes, never values (a ``pin-value`` may be among them)."""
        if not uri.startswith("pkcs11:"):
            raise ConfigError("a PKCS#11 key is named by a URI that starts with pkcs11: (RFC 7512)")
        body, _, query_part = uri[len("pkcs11:") :].partition("?")
        path: dict[str, str | bytes] = {}
        for name, raw in _attributes(body, ";", "path"):
            if name not in _PATH_ATTRIBUTES:
                raise ConfigError(f"the PKCS#11 URI attribute {name!r} is not supported")
            if name in path:
                raise ConfigError(f"the PKCS#11 URI names {name!r} twice")
            path[name] = unquote_to_bytes(raw) if name == "id" else unquote(raw, errors="strict")
        query: dict[str, str] = {}
        for name, raw in _attributes(query_part, "&", "query"):
            if name not in _QUERY_ATTRIBUTES:
                raise ConfigError(f"the PKCS#11 URI query attribute {name!r} is not supported")
            if name in query:
                raise ConfigError(f"the PKCS#11 URI names {name!r} twice")
            query[name] = unquote(raw, errors="strict")
        if "object" not in path and "id" not in path:
            raise ConfigError("the PKCS#11 URI names no key: give object=LABEL or id=%XX…")
        if path.get("type", "private") != "private":
            raise ConfigError("the PKCS#11 URI must name a private key (type=private, or no type)")
        return cls(path=path, query=query)

    def describe(self) -> str:
        """The key named, for messages: never the PIN."""
        parts = [f"object={self.path['object']!r}"] if "object" in self.path else []
        if "id" in self.path:
            key_id = self.path["id"]
            parts.append(f"id={key_id.hex() if isinstance(key_id, bytes) else key_id}")
        return " ".join(parts)


def _attributes(text: str, separator: str, where: str) -> Iterator[tuple[str, str]]:
    for item in text.split(separator) if text else ():
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise ConfigError(f"the PKCS#11 URI {where} part holds {name or item!r} with no name=value")
        yield name, value


# The module is initialised by python-pkcs11 with C_Initialize(NULL), which tells it that no two threads
# call it at once (PKCS#11 v2.40, C_Initialize): every call into one module goes through that module's lock.
_MODULE_LOCKS: dict[str, threading.Lock] = {}
_OPEN_KEYS: dict[str, int] = {}
_REGISTRY_LOCK = threading.Lock()


def _module_lock(module: Path) -> threading.Lock:
    with _REGISTRY_LOCK:
        return _MODULE_LOCKS.setdefault(str(module), threading.Lock())


class Pkcs11Key:
    """A private key inside a PKCS#11 token (``ISSUANCE_SIGNING_KEY=pkcs11:token=…;object=…``).

    Thread-safe: one logged-in session per key, and every call into the module (open, sign, close) holds
    that module's lock. The module is not told it may be called from several threads at once, a session
    runs one operation at a time anyway, and a signature on the token is quick next to the rest of a
    document's work. The digest is computed here, so only 32 bytes (51 for RSA) cross into the token."""

    def __init__(
        self,
        *,
        session: pkcs11.Session,
        key: pkcs11.PrivateKey,
        algorithm: str,
        certificate: bytes,
        chain: Sequence[bytes],
        mechanism: pkcs11.Mechanism,
        module: Path,
        name: str,
    ) -> None:
        self._session = session
        self._key = key
        self._mechanism = mechanism
        self._lock = _module_lock(module)
        self._module = module
        self._name = name
        self._closed = False
        self.algorithm = algorithm
        self.certificate = certificate
        self.chain = tuple(chain)

    @classmethod
    def open(cls, uri: Pkcs11Uri, secret: bytes | None, *, module: Path | None = None) -> Pkcs11Key:
        """Log in to the token the URI names and find the key and its certificate. The module is the URI's
        ``module-path``, else ``module``, else Debian's SoftHSM2; the PIN is ``secret``, else the URI's
        ``pin-value`` or ``pin-source``. ``ConfigError`` naming what is missing or wrong."""
        # python-pkcs11 is a C extension that only runs with an HSM configured: imported here, not above,
        # so that a run with a PKCS#12 key (or none) neither needs it installed nor loads it
        try:
            import pkcs11
        except ImportError as e:
            raise ConfigError(
                "a pkcs11: signing key needs the python-pkcs11 package", hint="pip install python-pkcs11"
            ) from e

        library = _module_path(uri, module)
        pin = _pin(uri, secret)
        lock = _module_lock(library)
        with lock:
            lib = _load(pkcs11, library)
            token = _find_token(pkcs11, lib, uri)
            what = f"{uri.describe()} on the PKCS#11 token {token.label!r}"
            if pin is None and token.flags & pkcs11.TokenFlag.LOGIN_REQUIRED:
                raise ConfigError(
                    f"no PIN is given for the PKCS#11 token {token.label!r}",
                    hint="set ISSUANCE_SIGNING_PASSWORD or ISSUANCE_SIGNING_PASSWORD_FILE",
                )
            try:
                session = token.open(user_pin=pin)
            except (pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange) as e:
                raise ConfigError(
                    f"the PIN for the PKCS#11 token {token.label!r} is wrong",
                    hint="check ISSUANCE_SIGNING_PASSWORD or ISSUANCE_SIGNING_PASSWORD_FILE",
                ) from e
            except pkcs11.PinLocked as e:
                raise ConfigError(f"the PIN of the PKCS#11 token {token.label!r} is locked") from e
            except pkcs11.PKCS11Error as e:
                raise ConfigError(
                    f"cannot log in to the PKCS#11 token {token.label!r}: {type(e).__name__}"
                ) from e
            try:
                key, algorithm, certificate, chain = _key_and_certificates(pkcs11, session, uri, what)
            except pkcs11.PKCS11Error as e:
                session.close()
                raise ConfigError(f"the objects {what} cannot be read: {type(e).__name__}") from e
            except BaseException:
                session.close()
                raise
            _OPEN_KEYS[str(library)] = _OPEN_KEYS.get(str(library), 0) + 1
        opened = cls(
            session=session,
            key=key,
            algorithm=algorithm,
            certificate=certificate,
            chain=chain,
            # the digest is computed here: CKM_ECDSA and CKM_RSA_PKCS sign what they are given
            mechanism=pkcs11.Mechanism.ECDSA if algorithm == "ecdsa" else pkcs11.Mechanism.RSA_PKCS,
            module=library,
            name=what,
        )
        try:
            _check_pair(opened, what)
        except BaseException:
            opened.close()
            raise
        return opened

    def sign(self, data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()
        try:
            with self._lock:
                if self._closed:
                    raise SigningFailed(f"the key {self._name} was closed")
                if self.algorithm == "ecdsa":
                    raw = self._key.sign(digest, mechanism=self._mechanism)
                else:
                    return self._key.sign(_SHA256_DIGEST_INFO + digest, mechanism=self._mechanism)
        except SigningFailed:
            raise
        except Exception as e:  # python-pkcs11 raises PKCS11Error subclasses, named for the operator
            raise SigningFailed(f"the key {self._name} cannot sign: {type(e).__name__}") from e
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def close(self) -> None:
        """Log out and close the session; the key signs no more."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _OPEN_KEYS[str(self._module)] -= 1
            with contextlib.suppress(Exception):  # a token already gone has nothing left to close
                self._session.close()


def _module_path(uri: Pkcs11Uri, module: Path | None) -> Path:
    if "module-path" in uri.query:
        library = Path(uri.query["module-path"])
    elif module is not None:
        library = Path(module)
    elif SOFTHSM2_MODULE.exists():
        library = SOFTHSM2_MODULE
    else:
        raise ConfigError(
            "no PKCS#11 module is configured",
            hint="set ISSUANCE_PKCS11_MODULE, or module-path in the pkcs11: URI",
        )
    if not library.is_file():
        raise ConfigError(f"the PKCS#11 module {library} is not found")
    return library


def _pin(uri: Pkcs11Uri, secret: bytes | None) -> str | None:
    if secret is not None:
        try:
            return secret.decode()
        except UnicodeDecodeError as e:
            raise ConfigError("the PIN of the PKCS#11 token is not UTF-8 text") from e
    if "pin-value" in uri.query:
        return uri.query["pin-value"]
    if "pin-source" in uri.query:
        source = uri.query["pin-source"]
        path = Path(urlsplit(source).path if source.startswith("file:") else source)
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"the PIN file {path} named by pin-source cannot be read: {e.strerror}") from e
    return None


def _load(pkcs11: Any, library: Path) -> Any:
    """The module, initialised afresh when no key of this run holds a session on it, so that it sees the
    tokens present now (SoftHSM2 reads its token directory only when initialised)."""
    try:
        lib = pkcs11.lib(str(library))
        if not _OPEN_KEYS.get(str(library)):
            lib.reinitialize()
    except pkcs11.PKCS11Error as e:
        raise ConfigError(
            f"the PKCS#11 module {library} cannot be loaded or started: {str(e) or type(e).__name__}",
            hint="SoftHSM2 reads its token directory from SOFTHSM2_CONF (or /etc/softhsm/softhsm2.conf)",
        ) from e
    return lib


def _find_token(pkcs11: Any, lib: Any, uri: Pkcs11Uri) -> Any:
    wanted = {
        "token": lambda t: t.label,
        "serial": lambda t: _text(t.serial),
        "manufacturer": lambda t: t.manufacturer_id,
        "model": lambda t: t.model,
        "slot-id": lambda t: str(t.slot.slot_id),
    }
    found = []
    for slot in lib.get_slots(token_present=True):
        try:
            token = slot.get_token()
        except (pkcs11.TokenNotPresent, pkcs11.TokenNotRecognised):
            continue
        if all(get(token) == uri.path[name] for name, get in wanted.items() if name in uri.path):
            found.append(token)
    named = " ".join(f"{n}={uri.path[n]!r}" for n in wanted if n in uri.path) or "any token"
    if not found:
        raise ConfigError(f"no PKCS#11 token matches {named}")
    if len(found) > 1:
        raise ConfigError(f"more than one PKCS#11 token matches {named}: name the token= or serial=")
    return found[0]


def _text(value: str | bytes) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _key_and_certificates(
    pkcs11: Any, session: Any, uri: Pkcs11Uri, what: str
) -> tuple[Any, str, bytes, list[bytes]]:
    Attribute, ObjectClass = pkcs11.Attribute, pkcs11.ObjectClass
    match: dict[Any, Any] = {}
    if "object" in uri.path:
        match[Attribute.LABEL] = uri.path["object"]
    if "id" in uri.path:
        match[Attribute.ID] = uri.path["id"]
    keys = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, **match}))
    if not keys:
        raise ConfigError(f"there is no private key {what}")
    if len(keys) > 1:
        raise ConfigError(f"there is more than one private key {what}: name it by id=")
    key = keys[0]
    if key.key_type == pkcs11.KeyType.EC:
        algorithm = "ecdsa"
    elif key.key_type == pkcs11.KeyType.RSA:
        algorithm = "rsa"
    else:
        raise ConfigError(f"the key {what} is of type {key.key_type.name}: use EC or RSA")

    certificates = []
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
        certificates.append((obj[Attribute.LABEL], obj[Attribute.ID], obj[Attribute.VALUE]))
    key_id, key_label = key[Attribute.ID], key.label
    # the certificate that goes with a key shares its CKA_ID (PKCS#11 v2.40, X.509 certificate objects);
    # else its label, when the token was filled by a tool that sets no ids
    own = [value for label, cid, value in certificates if key_id and cid == key_id]
    own = own or [value for label, cid, value in certificates if label == key_label]
    if not own:
        raise ConfigError(f"there is no certificate for the key {what}")
    certificate = own[0]
    return key, algorithm, certificate, _chain(certificate, [value for _, _, value in certificates])


def _chain(certificate: bytes, candidates: Sequence[bytes]) -> list[bytes]:
    """The issuers of ``certificate`` found among ``candidates``, issuer first, up to a self-signed root."""
    by_subject = {}
    for der in candidates:
        cert = x509.load_der_x509_certificate(der)
        by_subject.setdefault(cert.subject, der)
    chain: list[bytes] = []
    current = x509.load_der_x509_certificate(certificate)
    while current.issuer != current.subject:
        issuer = by_subject.get(current.issuer)
        if issuer is None or issuer in chain or issuer == certificate:
            break
        chain.append(issuer)
        current = x509.load_der_x509_certificate(issuer)
    return chain


def _check_pair(key: Pkcs11Key, what: str) -> None:
    """One signature verified against the certificate, so that a certificate stored with the wrong key is
    refused when the run starts, not found out by whoever checks a document."""
    probe = b"issuance signing key check"
    try:
        signature = key.sign(probe)
    except SigningFailed as e:
        raise ConfigError(e.message) from e
    public = x509.load_der_x509_certificate(key.certificate).public_key()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey) and key.algorithm == "ecdsa":
            public.verify(signature, probe, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey) and key.algorithm == "rsa":
            public.verify(signature, probe, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise InvalidSignature
    except InvalidSignature as e:
        raise ConfigError(f"the certificate stored with the key {what} is for another key") from e


def specimen_name(common_name: str, organisation: str) -> x509.Name:
    """A SPECIMEN certificate's subject: country CN, the organisation, the common name."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def specimen_root(
    name: x509.Name, *, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A SPECIMEN root CA (EC P-256, ten years from a day before ``now``) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return key, root


def specimen_leaf(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    now: dt.datetime,
    usage: x509.ObjectIdentifier,
    usage_critical: bool = False,
) -> x509.Certificate:
    """A SPECIMEN end-entity certificate for ``key`` (signing; 825 days from a day before ``now``) with
    the one extended key usage ``usage``, issued by ``issuer`` (``specimen_root``)."""
    issuer_key, issuer_cert = issuer
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=usage_critical)
        .sign(issuer_key, hashes.SHA256())
    )


def write_specimen_pkcs12(path: Path, password: bytes, *, now: dt.datetime | None = None) -> bytes:
    """A SPECIMEN root and signing certificate (EC P-256) in a PKCS#12 file at ``path`` (mode 0600);
    returns the root's DER certificate, to trust in tests and in ``issuance verify`` for the demo."""
    now = now or dt.datetime.now(dt.UTC)
    root_key, root = specimen_root(
        specimen_name("样本 SPECIMEN Root CA", "样本 SPECIMEN Root CA (not for real use)"), now=now
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = specimen_leaf(
        specimen_name(SPECIMEN_SUBJECT, "样本 SPECIMEN 示范财产保险股份有限公司"),
        key,
        issuer=(root_key, root),
        now=now,
        usage=ExtendedKeyUsageOID.EMAIL_PROTECTION,
    )
    data = pkcs12.serialize_key_and_certificates(
        b"issuance-signer", key, cert, [root], serialization.BestAvailableEncryption(password)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)
    return root.public_bytes(serialization.Encoding.DER)
