"""Local accounts (issue 24, "Identity"): ``issuance users add|list|disable|passwd``, argon2 passwords,
and the lockout after ten failed sign-ins in a row, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text

from archive.index import Index, schema
from archive.users import LOCKOUT, LOCKOUT_FAILURES, LocalAccounts
from cli.main import main
from core.errors import LoginRefused, UserError

KEY = "test-hmac-key-0123456789abcdef"
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a quite different passphrase"
# cheap parameters: these tests hash and check passwords dozens of times
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


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
def accounts(index, clock) -> LocalAccounts:
    return LocalAccounts(index, hasher=CHEAP, clock=clock)


@pytest.fixture
def issuance(index_url, monkeypatch, tmp_path):
    """``issuance`` in this process on the test's index (operator ``boss``), with a standard input;
    returns (exit code, stdout, stderr). The root logger is restored afterwards."""
    monkeypatch.setenv("ISSUANCE_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("ISSUANCE_INDEX", index_url)
    monkeypatch.setenv("ISSUANCE_HMAC_KEY", KEY)
    monkeypatch.setenv("ISSUANCE_OPERATOR", "boss")
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(["-vv", *argv])  # debug logging: a password must not show even there
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


def _everything(index: Index) -> str:
    """Every row of every table of the index, as text: what someone who reads the database sees."""
    with index.engine.connect() as conn:
        return "\n".join(
            repr(tuple(row)) for table in schema.metadata.sorted_tables for row in conn.execute(select(table))
        )


# --- the CLI -------------------------------------------------------------------------------------------


def test_users_add_list_disable_passwd_through_the_cli(issuance, capsys, index):
    code, out, err = issuance(
        capsys,
        "users", "add", "alice", "--role", "clerk", "--role", "Auditor", "--branch", "1101",
        "--display-name", "Alice Zhang", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert "added user alice" in out
    code, out, err = issuance(
        capsys, "users", "add", "bob", "--role", "admin", "--password-stdin", stdin=PASSWORD
    )
    assert code == 0, err

    code, out, _ = issuance(capsys, "users", "list", "--json")
    assert code == 0
    listed = {u["name"]: u for u in json.loads(out)}
    assert listed["alice"]["roles"] == ["auditor", "clerk"]
    assert listed["alice"]["branches"] == ["1101"]
    assert listed["alice"]["display_name"] == "Alice Zhang"
    assert listed["alice"]["enabled"] is True
    assert listed["bob"]["branches"] == []  # every branch
    assert "argon2" not in out and "hash" not in out
    code, out, _ = issuance(capsys, "users", "list")
    assert code == 0 and "alice" in out and "bob" in out and "argon2" not in out

    checker = LocalAccounts(index)  # the default hasher checks what the CLI stored
    assert checker.verify_password("alice", PASSWORD).name == "alice"

    code, out, err = issuance(
        capsys, "users", "passwd", "alice", "--password-stdin", stdin=NEW_PASSWORD + "\n"
    )
    assert code == 0, err
    with pytest.raises(LoginRefused):
        checker.verify_password("alice", PASSWORD)
    assert checker.verify_password("alice", NEW_PASSWORD).name == "alice"

    code, out, err = issuance(capsys, "users", "disable", "alice")
    assert code == 0, err
    code, out, _ = issuance(capsys, "users", "list", "--json")
    assert {u["name"]: u["enabled"] for u in json.loads(out)} == {"alice": False, "bob": True}
    with pytest.raises(LoginRefused) as refused:
        checker.verify_password("alice", NEW_PASSWORD)
    assert refused.value.reason == "disabled"

    events = [(e.actor, e.action, e.detail.get("user")) for e in index.ledger_entries(subject="alice")]
    assert events == [
        ("boss", "user.added", "alice"),
        ("boss", "user.password_set", "alice"),
        ("boss", "user.disabled", "alice"),
    ]


def test_a_password_is_never_stored_logged_or_recorded_in_clear(issuance, capsys, index):
    seen, codes = [], []
    for argv, stdin in (
        (("users", "add", "carol", "--role", "clerk", "--password-stdin"), PASSWORD + "\n"),
        (("users", "passwd", "carol", "--password-stdin"), NEW_PASSWORD + "\n"),
        (("users", "add", "dave", "--role", "nobody", "--password-stdin"), PASSWORD + "\n"),  # refused
    ):
        code, out, err = issuance(capsys, *argv, stdin=stdin)  # with -vv: debug logs on standard error
        codes.append(code)
        seen.append(out + err)
        everything = _everything(index)  # after each step: a later one must not hide an earlier leak
        assert "carol" in everything  # the dump does hold the user's row and events
        for password in (PASSWORD, NEW_PASSWORD):
            assert password not in everything
            assert all(password not in text for text in seen)
        assert "$argon2id$" in everything  # what is stored is argon2's hash
    assert codes == [0, 0, 2]


def test_the_password_comes_only_from_standard_input(issuance, capsys, index):
    with pytest.raises(SystemExit):  # argparse: --password-stdin is required
        issuance(capsys, "users", "add", "erin", "--role", "clerk")
    code, _, err = issuance(capsys, "users", "add", "erin", "--role", "clerk", "--password-stdin", stdin="")
    assert code == 2 and "no password on standard input" in err
    assert index.users() == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("frank", "--role", "king"), "unknown role king"),
        (("frank", "--role", "clerk", "--branch", "11A1"), "branch '11A1' is not a branch code"),
        (("frank", "--role", "clerk", "--branch", "1234567"), "branch '1234567' is not a branch code"),
        (("frank smith", "--role", "clerk"), "user name 'frank smith' is not allowed"),
        (("f" * 65, "--role", "clerk"), "is not allowed"),
        (("../frank", "--role", "clerk"), "is not allowed"),
    ],
)
def test_bad_role_branch_or_name_is_refused_with_a_clear_message(issuance, capsys, index, argv, message):
    code, _, err = issuance(capsys, "users", "add", *argv, "--password-stdin", stdin=PASSWORD)
    assert code == 2
    assert message in err
    assert index.users() == []
    assert list(index.ledger_entries()) == []


def test_a_short_password_or_a_taken_name_is_refused(issuance, capsys, index):
    code, _, err = issuance(
        capsys, "users", "add", "gina", "--role", "clerk", "--password-stdin", stdin="elevenchars"
    )
    assert code == 2 and "at least 12 characters" in err
    assert index.users() == []
    assert (
        issuance(capsys, "users", "add", "gina", "--role", "clerk", "--password-stdin", stdin=PASSWORD)[0]
        == 0
    )
    code, _, err = issuance(
        capsys, "users", "add", "gina", "--role", "admin", "--password-stdin", stdin=PASSWORD
    )
    assert code == 2 and "exists already" in err
    assert [u.roles for u in index.users()] == [frozenset({"clerk"})]
    code, _, err = issuance(capsys, "users", "passwd", "nobody", "--password-stdin", stdin=PASSWORD)
    assert code == 2 and "no user named 'nobody'" in err


# --- signing in -----------------------------------------------------------------------------------------


def test_a_wrong_password_an_unknown_name_and_a_disabled_user_are_refused(accounts):
    accounts.add("henry", roles=["clerk"], password=PASSWORD, by="boss")
    assert accounts.verify_password("henry", PASSWORD).roles == ("clerk",)
    with pytest.raises(LoginRefused) as wrong:
        accounts.verify_password("henry", PASSWORD + "x")
    with pytest.raises(LoginRefused) as unknown:
        accounts.verify_password("nobody", PASSWORD)
    assert (wrong.value.reason, unknown.value.reason) == ("password", "unknown")
    assert str(wrong.value) == str(unknown.value)  # the message does not tell names apart
    accounts.disable("henry", by="boss")
    with pytest.raises(LoginRefused) as disabled:
        accounts.verify_password("henry", PASSWORD)
    assert disabled.value.reason == "disabled"


def test_ten_failures_in_a_row_lock_the_user_for_fifteen_minutes(accounts, clock, index):
    accounts.add("ivan", roles=["auditor"], password=PASSWORD, by="boss")
    for _ in range(LOCKOUT_FAILURES - 1):
        with pytest.raises(LoginRefused):
            accounts.verify_password("ivan", "wrong password!")
    assert accounts.verify_password("ivan", PASSWORD).name == "ivan"  # nine, then a success: not locked
    for _ in range(LOCKOUT_FAILURES):
        with pytest.raises(LoginRefused) as failed:
            accounts.verify_password("ivan", "wrong password!")
        assert failed.value.reason == "password"
    with pytest.raises(LoginRefused) as locked:
        accounts.verify_password("ivan", PASSWORD)  # the right password, but locked
    assert locked.value.reason == "locked"
    assert accounts.get("ivan").locked_until == clock.now + LOCKOUT

    clock.now += LOCKOUT - timedelta(seconds=1)
    with pytest.raises(LoginRefused):
        accounts.verify_password("ivan", PASSWORD)
    clock.now += timedelta(seconds=1)
    assert accounts.verify_password("ivan", PASSWORD).name == "ivan"
    assert accounts.get("ivan").locked_until is None

    events = [(e.action, e.detail) for e in index.ledger_entries(subject="ivan")]
    assert [a for a, _ in events] == ["user.added", "user.locked"]
    assert events[1][1]["failures"] == LOCKOUT_FAILURES
    assert PASSWORD not in _everything(index) and "wrong password!" not in _everything(index)


def test_a_new_password_ends_a_lockout(accounts):
    accounts.add("jane", roles=["clerk"], password=PASSWORD, by="boss")
    for _ in range(LOCKOUT_FAILURES):
        with pytest.raises(LoginRefused):
            accounts.verify_password("jane", "wrong password!")
    accounts.set_password("jane", NEW_PASSWORD, by="boss")
    assert accounts.verify_password("jane", NEW_PASSWORD).name == "jane"


def test_a_hash_with_old_parameters_is_replaced_on_a_good_sign_in(index, clock):
    old = LocalAccounts(
        index, hasher=PasswordHasher(time_cost=1, memory_cost=512, parallelism=1), clock=clock
    )
    old.add("kate", roles=["operator"], password=PASSWORD, by="boss")
    before = index.user("kate").password_hash
    assert "m=512" in before
    LocalAccounts(index, hasher=CHEAP, clock=clock).verify_password("kate", PASSWORD)
    after = index.user("kate").password_hash
    assert after != before and "m=1024" in after
    assert LocalAccounts(index, hasher=CHEAP, clock=clock).verify_password("kate", PASSWORD).name == "kate"
    with index.engine.connect() as conn:  # a rehash is no change of the user's: no ledger event
        assert conn.execute(text("SELECT COUNT(*) FROM ledger WHERE action LIKE 'user.%'")).scalar() == 1


def test_field_rules_in_the_domain(accounts):
    with pytest.raises(UserError, match="at least one role"):
        accounts.add("lena", roles=[], password=PASSWORD, by="boss")
    with pytest.raises(UserError, match="display name"):
        accounts.add("lena", roles=["clerk"], display_name="a\nb", password=PASSWORD, by="boss")
    user = accounts.add("lena", roles=["clerk"], branches=["11", "3101"], password=PASSWORD, by="boss")
    assert user.branches == ("11", "3101") and user.display_name == "lena"


def test_an_index_at_0004_gets_the_users_table_on_opening(index):
    url = index.engine.url.render_as_string(hide_password=False)
    with index.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE users")
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0004'")
    again = Index.open(url, hmac_key=KEY.encode())
    try:
        LocalAccounts(again, hasher=CHEAP).add("mona", roles=["admin"], password=PASSWORD, by="boss")
        assert [u.name for u in again.users()] == ["mona"]
    finally:
        again.close()


def test_the_issuance_command_reads_the_password_from_a_pipe(tmp_path):
    """The real command in a child process: the password piped in, the first line only, never echoed."""
    url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "ISSUANCE_INDEX": url,
        "ISSUANCE_STORE": f"file://{tmp_path / 'store'}",
        "ISSUANCE_HMAC_KEY": KEY,
        "ISSUANCE_OPERATOR": "boss",
    }
    command = [
        sys.executable,
        "-m",
        "cli.main",
        "-vv",
        "users",
        "add",
        "nina",
        "--role",
        "clerk",
        "--password-stdin",
    ]
    done = subprocess.run(
        command, input=PASSWORD + "\nsecond line\n", env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    index = Index.open(url, hmac_key=KEY.encode())
    try:
        accounts = LocalAccounts(index)
        assert accounts.verify_password("nina", PASSWORD).name == "nina"
        with pytest.raises(LoginRefused):
            accounts.verify_password("nina", PASSWORD + "\nsecond line")
    finally:
        index.close()
