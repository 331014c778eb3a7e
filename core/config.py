"""Configuration: one TOML file, overridden by environment variables, with embedded defaults.

Looked up in this order, later wins: the defaults (everything under ``./var/``), the file (``--config``,
else ``./issuance.toml`` if present), the environment. Secrets (the HMAC key, S3 credentials) come from
the environment or from files, never from the repository; with no key configured, one is generated on
first use into ``var/secrets/hmac.key``, readable only by its owner.

    [store]
    url = "file:///srv/archive"          # or "s3://bucket/prefix"
    s3_endpoint = "http://minio:9000"    # MinIO, Ceph; omit for AWS
    [index]
    url = "postgresql+psycopg://issuance@db/issuance"
    [secrets]
    hmac_key_file = "/etc/issuance/hmac.key"
    [run]
    workers = 2
    timeout = 120
    operator = "nightly"
    scratch = "/srv/issuance/scratch"    # a run's private working files (default var/scratch)
    [signing]
    key = "/etc/issuance/signer.p12"     # or "pkcs11:token=…;object=…" (an HSM, RFC 7512)
    password_file = "/etc/issuance/signer.password"   # the PKCS#12 password or the token's PIN
    tsa_url = "http://tsa.example.com/tsr"            # RFC 3161 trusted time (PAdES B-T)
    trust = ["/etc/issuance/company-root.pem"]        # roots that `issuance verify` and audits trust
    [desk]
    public_url = "https://verify.example.com.cn"  # QR codes lead to <public_url>/verify/<code>
    session_minutes = 30                  # a desk session ends after this long without a request
    no_approval_branches = ["3101"]       # branch prefixes whose reissues need no supervisor
    [identity]                           # an LDAP directory beside the local accounts (none: local only)
    ldap_url = "ldaps://ldap.example.com.cn"
    bind_dn = "cn=issuance,ou=services,dc=example,dc=com"   # searches as this (absent: anonymous)
    bind_password_file = "/etc/issuance/ldap.password"
    user_base = "ou=people,dc=example,dc=com"
    user_filter = "(uid={name})"         # or user_dn = "uid={name},ou=people,dc=example,dc=com"
    group_base = "ou=groups,dc=example,dc=com"
    group_filter = "(|(member={dn})(uniqueMember={dn}))"
    branch_attribute = "departmentNumber"   # branch-code prefixes; none: every branch
    display_name_attribute = "displayName"
    ca_file = "/etc/issuance/ldap-ca.pem"   # for ldaps:// or start_tls = true (default: the system's)
    [identity.roles]                     # role = the group's cn (default: a group named as the role)
    clerk = "issuance-clerks"
    [serials]
    unknown = "record"                   # a print serial never issued to anyone: "record" (filed, counted
                                         # and shown as unregistered) or "refuse" (rejected at filing)
    inbox = "/srv/issuance/inbox"         # the watcher's inbox, whose state the operators' page shows

Environment: ISSUANCE_STORE, ISSUANCE_S3_ENDPOINT, ISSUANCE_INDEX, ISSUANCE_HMAC_KEY (the key itself),
ISSUANCE_HMAC_KEY_FILE, ISSUANCE_WORKERS, ISSUANCE_TIMEOUT, ISSUANCE_OPERATOR, ISSUANCE_CACHE,
ISSUANCE_TEMPLATES, ISSUANCE_SOFFICE, ISSUANCE_SCRATCH, ISSUANCE_PUBLIC_URL, ISSUANCE_SIGNING_KEY,
ISSUANCE_SIGNING_PASSWORD (the password or PIN itself), ISSUANCE_SIGNING_PASSWORD_FILE, ISSUANCE_TSA_URL,
ISSUANCE_TRUST (roots, separated by ``:``), ISSUANCE_PKCS11_MODULE, ISSUANCE_SESSION_MINUTES,
ISSUANCE_NO_APPROVAL_BRANCHES (separated by ``,``), ISSUANCE_LDAP_URL, ISSUANCE_LDAP_BIND_DN,
ISSUANCE_LDAP_BIND_PASSWORD (the password itself), ISSUANCE_LDAP_BIND_PASSWORD_FILE, ISSUANCE_LDAP_USER_BASE,
ISSUANCE_LDAP_USER_FILTER, ISSUANCE_LDAP_USER_DN, ISSUANCE_LDAP_GROUP_BASE, ISSUANCE_LDAP_CA_FILE,
ISSUANCE_INBOX, ISSUANCE_SERIALS_UNKNOWN. S3 credentials use boto3's own chain (AWS_ACCESS_KEY_ID, …).

With no signing key configured, documents are issued unsigned (each run warns), unless ``make demo`` has
left its SPECIMEN key in ``var/secrets/`` (``issuance signer specimen``): then that one signs.
"""

from __future__ import annotations

import getpass
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.errors import ConfigError

DEFAULT_FILE = Path("issuance.toml")
# Policies of one product per LibreOffice document: larger groups leave fewer documents than instances near
# a batch's end (docs/performance.md, "Several schedules per LibreOffice document").
DEFAULT_CHUNK = 16
# Where the desk answers verification codes (the QR code on page 1): its own address by default
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know about where things live; no secret values except the key."""

    store_url: str
    s3_endpoint: str | None
    index_url: str
    hmac_key: bytes
    workers: int
    timeout: float
    chunk: int  # policies per LibreOffice document (pipeline.schedules); 1: one document per record
    operator: str
    cache_dir: Path
    templates_dir: Path | None
    soffice: str
    var_dir: Path
    # composed documents and LibreOffice's profiles of a run (``pipeline.scratch``): personal data, so a
    # private folder of the working folder, never the shared /tmp
    scratch_dir: Path
    # the QR code on page 1 of an issued document leads to <public_url>/verify/<code> (core.verification)
    public_url: str = DEFAULT_PUBLIC_URL
    # the company's signing key (a PKCS#12 path or a pkcs11: URI), its password or PIN, the TSA, and the
    # roots to trust when checking signatures (DESIGN.md, the ``Signer`` seam)
    signing_key: str | None = None
    signing_secret: bytes | None = field(default=None, repr=False)
    pkcs11_module: Path | None = None  # the HSM's PKCS#11 library, when the key's URI names none
    tsa_url: str | None = None
    trust_roots: tuple[Path, ...] = ()
    # the desk (issue 24): a session ends after this long idle; reissues at a branch under one of these
    # prefixes need no supervisor's approval (DOMAIN.md: where the branch requires a second person)
    session_minutes: float = 30.0
    no_approval_branches: tuple[str, ...] = ()
    # the LDAP directory, the ``Identity`` seam's second source (None: local accounts only)
    directory: Directory | None = None
    inbox: Path | None = None  # the watcher's inbox (``issuance watch INBOX``), shown to the operators
    # a print serial never issued to anyone, at filing: "record" or "refuse" (``archive.serials``)
    unknown_serials: str = "record"

    @property
    def specimen_dir(self) -> Path:
        """Where ``issuance signer specimen`` (``make demo``) leaves its SPECIMEN key and root."""
        return self.var_dir / "secrets"


@dataclass(frozen=True)
class Directory:
    """Where and how to ask an LDAP directory who a user is (``archive.ldap``): ``[identity]``."""

    url: str
    user_base: str | None
    user_filter: str  # holds ``{name}``
    user_dn: str | None  # a template holding ``{name}``: the entry is read there, no search
    group_base: str
    group_filter: str  # holds ``{dn}``, the user's DN
    group_name_attribute: str
    roles: tuple[tuple[str, str], ...]  # (role, the group's name), one pair per role
    branch_attribute: str | None
    display_name_attribute: str
    bind_dn: str | None = None
    bind_password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    start_tls: bool = False
    timeout: float = 10.0


# The roles of ``archive.users``: a directory group maps to each (core cannot import the archive)
DIRECTORY_ROLES = ("admin", "auditor", "clerk", "operator", "supervisor")


# The SPECIMEN signer's files in ``Settings.specimen_dir``
SPECIMEN_KEY = "signer.p12"
SPECIMEN_PASSWORD = "signer.password"
SPECIMEN_ROOT = "signer-root.pem"


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"configuration: [{name}] must be a table")
    return value


def load_settings(
    config: Path | None = None, *, env: Mapping[str, str] | None = None, base: Path | None = None
) -> Settings:
    """Resolve the settings; ``base`` is the folder that relative defaults live in (the cwd)."""
    env = os.environ if env is None else env
    base = base or Path.cwd()
    data: Mapping[str, Any] = {}
    path = config or (base / DEFAULT_FILE if (base / DEFAULT_FILE).is_file() else None)
    if config is not None and not config.is_file():
        raise ConfigError(f"configuration file {config} does not exist")
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"configuration file {path} is not valid TOML: {e}") from e
    store, index, secret, run, desk, signing, identity, serials = (
        _section(data, n)
        for n in ("store", "index", "secrets", "run", "desk", "signing", "identity", "serials")
    )

    var_dir = base / "var"
    store_url = env.get("ISSUANCE_STORE") or store.get("url") or (var_dir / "archive").as_uri()
    index_url = env.get("ISSUANCE_INDEX") or index.get("url") or f"sqlite:///{var_dir / 'index.sqlite'}"
    try:
        workers = int(env.get("ISSUANCE_WORKERS") or run.get("workers") or 0)
        timeout = float(env.get("ISSUANCE_TIMEOUT") or run.get("timeout") or 120)
        chunk = int(env.get("ISSUANCE_CHUNK") or run.get("chunk") or DEFAULT_CHUNK)
    except ValueError as e:
        raise ConfigError(f"configuration: workers, timeout and chunk are numbers ({e})") from e
    if workers < 0 or timeout <= 0 or chunk < 1:
        raise ConfigError("configuration: workers must be ≥ 0 (0 = one per CPU), timeout > 0 and chunk ≥ 1")
    templates = env.get("ISSUANCE_TEMPLATES") or run.get("templates")
    return Settings(
        store_url=store_url,
        s3_endpoint=env.get("ISSUANCE_S3_ENDPOINT") or store.get("s3_endpoint"),
        index_url=index_url,
        hmac_key=_hmac_key(env, secret, var_dir),
        workers=workers,
        timeout=timeout,
        chunk=chunk,
        operator=env.get("ISSUANCE_OPERATOR") or run.get("operator") or _login(),
        cache_dir=Path(env.get("ISSUANCE_CACHE") or run.get("cache") or var_dir / "cache"),
        templates_dir=Path(templates) if templates else None,
        soffice=env.get("ISSUANCE_SOFFICE") or run.get("soffice") or "soffice",
        var_dir=var_dir,
        scratch_dir=Path(env.get("ISSUANCE_SCRATCH") or run.get("scratch") or var_dir / "scratch"),
        public_url=_public_url(env, desk),
        **_desk(env, desk),
        directory=_directory(env, identity),
        unknown_serials=_unknown_serials(env, serials),
        **_signing(env, signing, var_dir),
    )


UNKNOWN_SERIALS = ("record", "refuse")


def _unknown_serials(env: Mapping[str, str], serials: Mapping[str, Any]) -> str:
    """``[serials] unknown``: what filing does with a serial never issued to anyone."""
    value = env.get("ISSUANCE_SERIALS_UNKNOWN") or serials.get("unknown") or "record"
    if value not in UNKNOWN_SERIALS:
        raise ConfigError(
            f'configuration: [serials] unknown is "record" or "refuse", not {value!r}',
            hint="refuse: a serial never issued to anyone is rejected at filing",
        )
    return value


def _directory(env: Mapping[str, str], identity: Mapping[str, Any]) -> Directory | None:
    """The ``[identity]`` section (and its ``ISSUANCE_LDAP_*`` variables), checked; None without a URL."""

    def value(variable: str, key: str, default: str | None = None) -> str | None:
        found = env.get(variable) or identity.get(key) or default
        if found is not None and not isinstance(found, str):
            raise ConfigError(f"configuration: [identity] {key} must be a string")
        return found

    url = value("ISSUANCE_LDAP_URL", "ldap_url")
    if not url:
        return None
    if urlsplit(url).scheme not in ("ldap", "ldaps") or not urlsplit(url).hostname:
        raise ConfigError(
            "configuration: [identity] ldap_url must be an ldap:// or ldaps:// URL with a host",
            hint="e.g. ldaps://ldap.example.com.cn",
        )
    user_dn = value("ISSUANCE_LDAP_USER_DN", "user_dn")
    user_base = value("ISSUANCE_LDAP_USER_BASE", "user_base")
    user_filter = value("ISSUANCE_LDAP_USER_FILTER", "user_filter", "(uid={name})") or ""
    group_base = value("ISSUANCE_LDAP_GROUP_BASE", "group_base")
    group_filter = value("", "group_filter", "(|(member={dn})(uniqueMember={dn}))") or ""
    if user_dn is not None and "{name}" not in user_dn:
        raise ConfigError("configuration: [identity] user_dn must hold {name}, e.g. uid={name},ou=people,…")
    if user_dn is None and not user_base:
        raise ConfigError("configuration: [identity] needs user_base (where to search) or a user_dn template")
    if "{name}" not in user_filter:
        raise ConfigError("configuration: [identity] user_filter must hold {name}, e.g. (uid={name})")
    if not group_base or "{dn}" not in group_filter:
        raise ConfigError(
            "configuration: [identity] needs group_base, and a group_filter holding {dn}",
            hint="roles come from the groups a user is a member of",
        )
    mapping = _section(identity, "roles")
    unknown = sorted(set(mapping) - set(DIRECTORY_ROLES))
    if unknown or not all(isinstance(v, str) and v for v in mapping.values()):
        raise ConfigError(
            f"configuration: [identity.roles] maps roles ({', '.join(DIRECTORY_ROLES)}) to group names",
            hint=f"unknown: {', '.join(unknown)}" if unknown else None,
        )
    secret: str | None = env.get("ISSUANCE_LDAP_BIND_PASSWORD")
    if secret is None and (file := value("ISSUANCE_LDAP_BIND_PASSWORD_FILE", "bind_password_file")):
        secret = _read_secret(Path(file), "the LDAP bind password").decode("utf-8")
    ca_file = value("ISSUANCE_LDAP_CA_FILE", "ca_file")
    try:
        timeout = float(identity.get("timeout", 10))
    except (TypeError, ValueError) as e:
        raise ConfigError("configuration: [identity] timeout is a number of seconds") from e
    return Directory(
        url=url,
        user_base=user_base,
        user_filter=user_filter,
        user_dn=user_dn,
        group_base=group_base,
        group_filter=group_filter,
        group_name_attribute=value("", "group_name_attribute", "cn") or "cn",
        roles=tuple((role, mapping.get(role, role)) for role in DIRECTORY_ROLES),
        branch_attribute=value("", "branch_attribute", "departmentNumber") or None,
        display_name_attribute=value("", "display_name_attribute", "displayName") or "displayName",
        bind_dn=value("ISSUANCE_LDAP_BIND_DN", "bind_dn"),
        bind_password=secret,
        ca_file=Path(ca_file) if ca_file else None,
        start_tls=bool(identity.get("start_tls", False)),
        timeout=timeout,
    )


def _signing(env: Mapping[str, str], signing: Mapping[str, Any], var_dir: Path) -> dict[str, Any]:
    """The signing settings: configured, else the SPECIMEN signer ``make demo`` left, else none."""
    key = env.get("ISSUANCE_SIGNING_KEY") or signing.get("key")
    secret: bytes | None = None
    if env.get("ISSUANCE_SIGNING_PASSWORD"):
        secret = env["ISSUANCE_SIGNING_PASSWORD"].encode("utf-8")
    elif file := env.get("ISSUANCE_SIGNING_PASSWORD_FILE") or signing.get("password_file"):
        secret = _read_secret(Path(file), "ISSUANCE_SIGNING_PASSWORD_FILE")
    trust_value = env.get("ISSUANCE_TRUST") or signing.get("trust") or []
    trust = trust_value.split(":") if isinstance(trust_value, str) else list(trust_value)
    specimen = var_dir / "secrets"
    if not key and (specimen / SPECIMEN_KEY).is_file():
        key = str(specimen / SPECIMEN_KEY)
        if secret is None and (specimen / SPECIMEN_PASSWORD).is_file():
            secret = _read_secret(specimen / SPECIMEN_PASSWORD, "the SPECIMEN signer's password")
    if (specimen / SPECIMEN_ROOT).is_file():
        trust.append(str(specimen / SPECIMEN_ROOT))
    return {
        "signing_key": key or None,
        "signing_secret": secret,
        "tsa_url": env.get("ISSUANCE_TSA_URL") or signing.get("tsa_url") or None,
        "pkcs11_module": Path(module)
        if (module := env.get("ISSUANCE_PKCS11_MODULE") or signing.get("pkcs11_module"))
        else None,
        "trust_roots": tuple(Path(t) for t in trust if t),
    }


def _read_secret(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes().rstrip(b"\r\n")
    except OSError as e:
        raise ConfigError(f"cannot read {what} ({path}): {e.strerror}") from e


def _desk(env: Mapping[str, str], desk: Mapping[str, Any]) -> dict[str, Any]:
    try:
        minutes = float(env.get("ISSUANCE_SESSION_MINUTES") or desk.get("session_minutes") or 30)
    except ValueError as e:
        raise ConfigError(f"configuration: [desk] session_minutes is a number ({e})") from e
    if not minutes > 0:
        raise ConfigError("configuration: [desk] session_minutes must be more than 0")
    exempt = env.get("ISSUANCE_NO_APPROVAL_BRANCHES")
    branches = exempt.split(",") if exempt is not None else desk.get("no_approval_branches", [])
    if not isinstance(branches, list | tuple) or not all(
        isinstance(b, str) and b.strip().isdigit() for b in branches if str(b).strip()
    ):
        raise ConfigError("configuration: [desk] no_approval_branches is a list of branch-code prefixes")
    inbox = env.get("ISSUANCE_INBOX") or desk.get("inbox")
    return {
        "session_minutes": minutes,
        "no_approval_branches": tuple(b.strip() for b in branches if b.strip()),
        "inbox": Path(inbox) if inbox else None,
    }


def _public_url(env: Mapping[str, str], desk: Mapping[str, Any]) -> str:
    """The verification page's base URL: http(s) with a host, nothing a path can be appended after."""
    name = "ISSUANCE_PUBLIC_URL" if env.get("ISSUANCE_PUBLIC_URL") else "[desk] public_url"
    url = env.get("ISSUANCE_PUBLIC_URL") or desk.get("public_url") or DEFAULT_PUBLIC_URL
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        host = parts.hostname if parts else None
        if parts:
            _ = parts.port  # ValueError for a port that is not a number
    except ValueError:
        parts, host = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host or parts.query or parts.fragment:
        raise ConfigError(
            f"configuration: {name} must be an http(s) URL with a host and no query or fragment",
            hint=f"e.g. {DEFAULT_PUBLIC_URL}; printed QR codes lead to <URL>/verify/<code>",
        )
    return url.rstrip("/")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def _hmac_key(env: Mapping[str, str], secret: Mapping[str, Any], var_dir: Path) -> bytes:
    if env.get("ISSUANCE_HMAC_KEY"):
        key = env["ISSUANCE_HMAC_KEY"].encode("utf-8")
    else:
        file = env.get("ISSUANCE_HMAC_KEY_FILE") or secret.get("hmac_key_file")
        path = Path(file) if file else var_dir / "secrets" / "hmac.key"
        if not path.exists() and not file:
            _generate_key(path)
        try:
            key = path.read_bytes().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the HMAC key file {path}: {e.strerror}") from e
    if len(key) < 16:
        raise ConfigError("the HMAC key must be at least 16 bytes", hint="generate one: openssl rand -hex 32")
    return key


def _generate_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: two first runs at once must not each write a different key
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
