"""An LDAP directory as the second identity source (issue 24, "Identity"), against Debian's ``slapd`` on
loopback: a throw-away server with its own configuration, MDB database and port, started here and
stopped after the tests. Users are SPECIMEN people with ``·`` in their display names."""

from __future__ import annotations

import ipaddress
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from archive.identity import Identity
from archive.index import Index
from archive.ldap import LdapDirectory
from archive.users import LOCKOUT, LOCKOUT_FAILURES, ROLES, LocalAccounts
from cli.main import main
from core.config import DIRECTORY_ROLES, Directory, load_settings
from core.errors import ConfigError, DirectoryUnavailable, LoginRefused, NotPermitted, UserError
from stamps.keys import specimen_name, specimen_root
from usecases.identity import identity, require_user

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA = Path("/etc/ldap/schema")
BASE = "dc=specimen,dc=example"
SERVICE_DN = f"cn=issuance,ou=services,{BASE}"
SERVICE_PASSWORD = "service account SPECIMEN pw"
KEY = "test-hmac-key-0123456789abcdef"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

# (uid, display name, branches, password); roles come from the groups below
PEOPLE = [
    ("li.na", "李·娜 SPECIMEN", ["5101"], "li na's directory password"),
    ("wang.fang", "王·芳 SPECIMEN", [], "wang fang's directory password"),
    ("chen.jie", "陈·杰 SPECIMEN", ["510107", "4401"], "chen jie's directory password"),
    ("zhao.lei", "赵·磊 SPECIMEN", ["5101"], "zhao lei's directory password"),  # in no role group
    ("sun.li", "孙·丽 SPECIMEN", ["Sales"], "sun li's directory password"),  # a branch that is not one
    ("admin.root", "目录·管理员 SPECIMEN", [], "the directory's admin.root password"),
]
# group cn -> members; supervisor's group is named otherwise, mapped in [identity.roles]
GROUPS = {
    "clerk": ["li.na", "sun.li"],
    "issuance-supervisors": ["chen.jie"],
    "auditor": ["wang.fang", "chen.jie"],
    "admin": ["admin.root"],
    "payroll": ["zhao.lei"],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ldif() -> str:
    blocks = [
        f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: SPECIMEN\ndc: specimen",
        *(f"dn: ou={ou},{BASE}\nobjectClass: organizationalUnit\nou: {ou}" for ou in ("people", "groups")),
        f"dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services",
        f"dn: {SERVICE_DN}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n"
        f"cn: issuance\nuserPassword: {SERVICE_PASSWORD}",
    ]
    for uid, shown, branches, password in PEOPLE:
        lines = [
            f"dn: uid={uid},ou=people,{BASE}",
            "objectClass: inetOrgPerson",
            f"uid: {uid}",
            f"cn: {uid}",
            "sn: SPECIMEN",
            f"displayName: {shown}",
            *(f"departmentNumber: {b}" for b in branches),
            f"userPassword: {password}",
        ]
        blocks.append("\n".join(lines))
    for group, members in GROUPS.items():
        lines = [f"dn: cn={group},ou=groups,{BASE}", "objectClass: groupOfNames", f"cn: {group}"]
        lines += [f"member: uid={m},ou=people,{BASE}" for m in members]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _server_certificate(root: Path) -> None:
    """A SPECIMEN root (``ca.pem``) and a server certificate for 127.0.0.1 (``server.pem``, its key in
    ``server.key``), for the ldaps:// and StartTLS listeners."""
    now = datetime.now(UTC)
    name = "样本 SPECIMEN (not for real use)"
    issuer = specimen_root(specimen_name("样本 SPECIMEN LDAP CA", name), now=now)
    key = ec.generate_private_key(ec.SECP256R1())
    loopback = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(specimen_name("127.0.0.1", name))
        .issuer_name(issuer[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(loopback, critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(issuer[0], hashes.SHA256())
    )
    (root / "ca.pem").write_bytes(issuer[1].public_bytes(serialization.Encoding.PEM))
    (root / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


@dataclass(frozen=True)
class Slapd:
    url: str  # ldap://, StartTLS offered
    ldaps_url: str
    ca_file: Path  # the SPECIMEN root of its certificate


@pytest.fixture(scope="module")
def slapd_server() -> Iterator[Slapd]:
    """A real slapd on 127.0.0.1 with its own slapd.conf, MDB database and certificate."""
    if not SLAPD.exists():
        pytest.skip("Debian's slapd is not installed (make test installs slapd and ldap-utils)")
    root = Path(tempfile.mkdtemp(prefix="issuance-slapd-"))
    (root / "db").mkdir()
    _server_certificate(root)
    conf = root / "slapd.conf"
    conf.write_text(
        "\n".join(
            [
                *(f"include {SCHEMA / s}.schema" for s in ("core", "cosine", "inetorgperson")),
                "modulepath /usr/lib/ldap",
                "moduleload back_mdb",
                f"pidfile {root / 'slapd.pid'}",
                f"TLSCACertificateFile {root / 'ca.pem'}",
                f"TLSCertificateFile {root / 'server.pem'}",
                f"TLSCertificateKeyFile {root / 'server.key'}",
                "database mdb",
                f'suffix "{BASE}"',
                f"directory {root / 'db'}",
                "maxsize 10485760",
                # passwords serve binds only; the service account reads the rest, nobody else reads anything
                "access to attrs=userPassword by anonymous auth by * none",
                f'access to * by dn.exact="{SERVICE_DN}" read by self read by * none',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    (root / "data.ldif").write_text(_ldif(), encoding="utf-8")
    subprocess.run(
        [str(SLAPADD), "-f", str(conf), "-l", str(root / "data.ldif")], check=True, capture_output=True
    )
    port, secure_port = _free_port(), _free_port()
    url, ldaps_url = f"ldap://127.0.0.1:{port}", f"ldaps://127.0.0.1:{secure_port}"
    # -d 0: in the foreground (no fork), so that the test set-up holds the process and stops it
    server = subprocess.Popen(
        [str(SLAPD), "-f", str(conf), "-h", f"{url}/ {ldaps_url}/", "-d", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        for listening in (port, secure_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", listening), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        err = server.stderr.read().decode(errors="replace") if server.stderr else ""
                        pytest.fail(f"slapd did not start: {err[-2000:]}")
                    time.sleep(0.05)
        yield Slapd(url=url, ldaps_url=ldaps_url, ca_file=root / "ca.pem")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def slapd(slapd_server: Slapd) -> str:
    """The plain ldap:// URL of the test slapd."""
    return slapd_server.url


def _directory(url: str, **changes: object) -> Directory:
    config = Directory(
        url=url,
        user_base=f"ou=people,{BASE}",
        user_filter="(&(objectClass=inetOrgPerson)(uid={name}))",
        user_dn=None,
        group_base=f"ou=groups,{BASE}",
        group_filter="(member={dn})",
        group_name_attribute="cn",
        roles=tuple((r, "issuance-supervisors" if r == "supervisor" else r) for r in DIRECTORY_ROLES),
        branch_attribute="departmentNumber",
        display_name_attribute="displayName",
        bind_dn=SERVICE_DN,
        bind_password=SERVICE_PASSWORD,
        timeout=5.0,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


@pytest.fixture
def index(index_url):
    ix = Index.open(index_url, hmac_key=KEY.encode())
    yield ix
    ix.close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def people(index, slapd, clock) -> Identity:
    accounts = LocalAccounts(index, hasher=CHEAP, clock=clock)
    return Identity(index, directory=LdapDirectory(_directory(slapd)), accounts=accounts, clock=clock)


def _password(uid: str) -> str:
    return next(p for u, _, _, p in PEOPLE if u == uid)


def _env(slapd: str, index_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "ISSUANCE_STORE": f"file://{tmp_path / 'store'}",
        "ISSUANCE_INDEX": index_url,
        "ISSUANCE_HMAC_KEY": KEY,
        "ISSUANCE_OPERATOR": "boss",
        "ISSUANCE_LDAP_URL": slapd,
        "ISSUANCE_LDAP_BIND_DN": SERVICE_DN,
        "ISSUANCE_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
        "ISSUANCE_LDAP_USER_BASE": f"ou=people,{BASE}",
        "ISSUANCE_LDAP_GROUP_BASE": f"ou=groups,{BASE}",
    }


@pytest.fixture
def cli_env(slapd, index_url, tmp_path, monkeypatch):
    """``issuance`` in this process on the test's index and slapd; the root logger is restored after
    (``main`` installs its own handler)."""
    for name, value in _env(slapd, index_url, tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# --- signing in and looking up ---------------------------------------------------------------------------


def test_a_directory_user_signs_in_with_roles_from_groups_and_branches_from_an_attribute(people):
    user = people.authenticate("li.na", _password("li.na"))
    assert (user.name, user.display_name, user.roles, user.branches) == (
        "li.na",
        "李·娜 SPECIMEN",
        ("clerk",),
        ("5101",),
    )
    assert user.source == "ldap" and user.enabled
    # a group named otherwise, mapped in [identity.roles]; two groups, two roles; two branch prefixes
    chen = people.authenticate("chen.jie", _password("chen.jie"))
    assert chen.roles == ("auditor", "supervisor") and chen.branches == ("4401", "510107")
    assert people.user("wang.fang").roles == ("auditor",)  # no branch attribute: every branch
    assert people.user("wang.fang").branches == ()


def test_a_wrong_password_and_an_unknown_user_are_refused_alike(people):
    refusals = []
    for name, password in (
        ("li.na", "not li na's password"),
        ("nobody.here", "any password at all"),
        ("zhao.lei", _password("zhao.lei")),  # in the directory, in no role group: not a user of ours
        ("li.na", ""),  # LDAP takes a name without a password as an anonymous bind that succeeds
        ("li.na)(uid=*", _password("li.na")),  # not a user name: never reaches a filter
        ("*", _password("li.na")),
    ):
        with pytest.raises(LoginRefused) as caught:
            people.authenticate(name, password)
        refusals.append(str(caught.value))
    assert set(refusals) == {"name or password not accepted"}
    assert people.user("zhao.lei") is None and people.user("nobody.here") is None
    assert people.user("*") is None


def test_ten_failures_lock_a_directory_user_as_they_lock_a_local_one(people, clock, index):
    for _ in range(LOCKOUT_FAILURES - 1):
        with pytest.raises(LoginRefused):
            people.authenticate("li.na", "a wrong guess at it")
    assert index.user("li.na").failed_logins == LOCKOUT_FAILURES - 1
    assert people.authenticate("li.na", _password("li.na")).name == "li.na"  # a success clears the count
    assert index.user("li.na").failed_logins == 0
    for _ in range(LOCKOUT_FAILURES):
        with pytest.raises(LoginRefused):
            people.authenticate("li.na", "a wrong guess at it")
    with pytest.raises(LoginRefused) as caught:
        people.authenticate("li.na", _password("li.na"))  # the right password, but locked
    assert caught.value.reason == "locked"
    locked = [e for e in index.ledger_entries(subject="li.na") if e.action == "user.locked"]
    assert len(locked) == 1 and locked[0].detail["failures"] == LOCKOUT_FAILURES
    assert people.user("li.na").locked_until == clock.now + LOCKOUT
    clock.now += LOCKOUT
    assert people.authenticate("li.na", _password("li.na")).roles == ("clerk",)


def test_a_directory_users_row_keeps_no_password_and_can_be_disabled(people, index):
    people.authenticate("chen.jie", _password("chen.jie"))
    row = index.user("chen.jie")
    assert row.password_hash is None and row.roles == frozenset({"auditor", "supervisor"})
    added = [e for e in index.ledger_entries(subject="chen.jie") if e.action == "user.added"]
    assert added[0].actor == "directory" and added[0].detail["source"] == "ldap"
    with pytest.raises(UserError, match="directory's password"):
        people.accounts.set_password("chen.jie", "a local password here", by="boss")
    people.accounts.disable("chen.jie", by="boss")
    with pytest.raises(LoginRefused) as caught:
        people.authenticate("chen.jie", _password("chen.jie"))
    assert caught.value.reason == "disabled"
    assert people.user("chen.jie").enabled is False


def test_a_local_account_answers_first_and_while_the_directory_is_down(people, index, clock):
    # admin.root is also in the directory, with another password: the local account wins
    people.accounts.add("admin.root", roles=["admin"], password="the local break-glass pw", by="boss")
    assert people.authenticate("admin.root", "the local break-glass pw").source == "local"
    with pytest.raises(LoginRefused):
        people.authenticate("admin.root", _password("admin.root"))
    down = Identity(
        index,
        directory=LdapDirectory(_directory(f"ldap://127.0.0.1:{_free_port()}", timeout=2.0)),
        accounts=people.accounts,
        clock=clock,
    )
    assert down.authenticate("admin.root", "the local break-glass pw").roles == ("admin",)
    with pytest.raises(DirectoryUnavailable, match="does not answer"):
        down.authenticate("li.na", _password("li.na"))
    with pytest.raises(DirectoryUnavailable):
        down.user("li.na")


def test_a_user_dn_template_instead_of_a_search(slapd, index, clock):
    config = _directory(slapd, user_dn=f"uid={{name}},ou=people,{BASE}", user_base=None)
    people = Identity(index, directory=LdapDirectory(config), clock=clock)
    assert people.authenticate("wang.fang", _password("wang.fang")).display_name == "王·芳 SPECIMEN"
    assert people.user("nobody.here") is None
    with pytest.raises(LoginRefused):
        people.authenticate("wang.fang", "not her password")


def test_a_branch_that_is_not_a_branch_code_refuses_the_user(people, caplog):
    # widening sun.li to every branch would be the wrong way to fail
    with pytest.raises(UserError, match="not a branch code"):
        people.user("sun.li")
    # at sign-in, the same answer as for a wrong password: the log says why
    with pytest.raises(LoginRefused, match=r"^name or password not accepted$"):
        people.authenticate("sun.li", _password("sun.li"))
    assert "gives user 'sun.li' a branch that is not a branch code" in caplog.text


def test_a_name_in_capitals_is_the_same_directory_user_and_the_same_lockout(people, index):
    assert people.authenticate("LI.NA", _password("li.na")).name == "li.na"
    assert people.user("Li.Na").name == "li.na"
    for attempt in range(LOCKOUT_FAILURES):
        with pytest.raises(LoginRefused):
            people.authenticate("li.na" if attempt % 2 else "LI.NA", "a wrong guess at it")
    with pytest.raises(LoginRefused) as caught:
        people.authenticate("Li.Na", _password("li.na"))
    assert caught.value.reason == "locked"
    assert [u.name for u in people.accounts.every()] == ["li.na"]
    # a local account's name in other capitals is not the directory's user of that name
    people.accounts.add("wang.fang", roles=["clerk"], password="wang fang's local password", by="boss")
    assert people.user("WANG.FANG") is None
    with pytest.raises(LoginRefused):
        people.authenticate("WANG.FANG", _password("wang.fang"))


def test_a_service_account_the_directory_refuses_is_a_clear_error(slapd, index):
    config = _directory(slapd, bind_password="not the service password")
    people = Identity(index, directory=LdapDirectory(config))
    with pytest.raises(DirectoryUnavailable, match="refused the service account"):
        people.user("li.na")


def test_ldaps_and_start_tls_check_the_directorys_certificate(slapd_server, index, clock):
    for config in (
        _directory(slapd_server.ldaps_url, ca_file=slapd_server.ca_file),
        _directory(slapd_server.url, start_tls=True, ca_file=slapd_server.ca_file),
    ):
        people = Identity(index, directory=LdapDirectory(config), clock=clock)
        assert people.authenticate("wang.fang", _password("wang.fang")).roles == ("auditor",)
    # a certificate from a root nobody said to trust, or for another name: refused, no password sent
    for config in (
        _directory(slapd_server.ldaps_url),
        _directory(slapd_server.url, start_tls=True),
        _directory(slapd_server.ldaps_url.replace("127.0.0.1", "localhost"), ca_file=slapd_server.ca_file),
    ):
        people = Identity(index, directory=LdapDirectory(config), clock=clock)
        with pytest.raises(DirectoryUnavailable, match="presented a certificate that is not trusted"):
            people.authenticate("wang.fang", _password("wang.fang"))


# --- configuration ---------------------------------------------------------------------------------------


def test_the_identity_section_and_its_variables(tmp_path):
    (tmp_path / "ldap.password").write_text("from a file\n")
    (tmp_path / "issuance.toml").write_text(
        "[identity]\n"
        'ldap_url = "ldaps://ldap.example.com.cn"\n'
        'user_base = "ou=people,dc=example,dc=com"\n'
        'group_base = "ou=groups,dc=example,dc=com"\n'
        f'bind_password_file = "{tmp_path / "ldap.password"}"\n'
        "[identity.roles]\n"
        'clerk = "issuance-clerks"\n',
        encoding="utf-8",
    )
    env = {"ISSUANCE_HMAC_KEY": KEY}
    d = load_settings(env=env, base=tmp_path).directory
    assert d is not None and d.url == "ldaps://ldap.example.com.cn" and d.bind_password == "from a file"
    assert dict(d.roles) == {r: ("issuance-clerks" if r == "clerk" else r) for r in DIRECTORY_ROLES}
    assert d.user_filter == "(uid={name})" and d.branch_attribute == "departmentNumber"
    assert set(DIRECTORY_ROLES) == ROLES
    overridden = load_settings(env={**env, "ISSUANCE_LDAP_URL": "ldap://127.0.0.1:1389"}, base=tmp_path)
    assert overridden.directory.url == "ldap://127.0.0.1:1389"
    assert load_settings(env=env, base=tmp_path / "nowhere").directory is None
    for bad in ("http://ldap.example.com", "ldap://"):
        with pytest.raises(ConfigError, match="ldap_url"):
            load_settings(env={**env, "ISSUANCE_LDAP_URL": bad}, base=tmp_path)
    with pytest.raises(ConfigError, match="user_filter"):
        load_settings(env={**env, "ISSUANCE_LDAP_USER_FILTER": "(uid=fixed)"}, base=tmp_path)


# --- actions for a person, named by the CLI ------------------------------------------------------------


def test_require_user_with_a_directory_user(slapd, index_url, tmp_path):
    settings = load_settings(env=_env(slapd, index_url, tmp_path), base=tmp_path)
    assert (
        require_user(settings, "li.na", roles=("clerk",), action="reissue", branch="510107").name == "li.na"
    )
    with pytest.raises(NotPermitted, match="needs the role clerk or supervisor") as caught:
        require_user(settings, "wang.fang", roles=("clerk", "supervisor"), action="reissue a policy")
    assert caught.value.reason == "role"
    with pytest.raises(NotPermitted, match="branch 440101") as caught:
        require_user(settings, "li.na", roles=("clerk",), action="reissue a policy", branch="440101")
    with pytest.raises(NotPermitted) as caught:
        require_user(settings, "zhao.lei", roles=("clerk",), action="reissue a policy")
    assert caught.value.reason == "unknown"
    with identity(settings) as people:
        assert people.user("chen.jie").source == "ldap"


def test_a_directory_that_does_not_answer_exits_3_with_a_clear_message(cli_env, monkeypatch, capsys):
    monkeypatch.setenv("ISSUANCE_LDAP_URL", f"ldap://127.0.0.1:{_free_port()}")
    code = main(["audit", "--by", "wang.fang", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3
    assert "LDAP directory at ldap://127.0.0.1:" in err and "does not answer" in err
    assert "Traceback" not in err


def test_users_list_shows_a_directory_user_after_their_first_sign_in(cli_env, capsys):
    with identity(load_settings()) as people:
        people.authenticate("li.na", _password("li.na"))
    assert main(["users", "list"]) == 0
    assert "li.na\t李·娜 SPECIMEN\tclerk\t5101\tenabled, from the LDAP directory" in capsys.readouterr().out
