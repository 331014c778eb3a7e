"""``issuance users add|passwd --generate-password``: the one-time password is printed once, signs in,
and is stored only as its argon2 hash (``make demo`` hands out its demo users' passwords this way)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from archive.index import Index
from archive.users import LocalAccounts
from cli.main import main

KEY = "generated-password-test-key-0123456789"


def test_a_generated_password_is_printed_once_and_signs_in(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ISSUANCE_INDEX", url)
    monkeypatch.setenv("ISSUANCE_HMAC_KEY", KEY)
    assert main(["users", "add", "demo-clerk", "--role", "clerk", "--generate-password"]) == 0
    first = re.search(r"one-time password for demo-clerk: (\S+)", capsys.readouterr().out).group(1)
    assert main(["users", "passwd", "demo-clerk", "--generate-password"]) == 0
    second = re.search(r"one-time password for demo-clerk: (\S+)", capsys.readouterr().out).group(1)
    assert first != second and len(second) >= 16
    index = Index.open(url, hmac_key=KEY.encode())
    try:
        accounts = LocalAccounts(index)
        assert accounts.verify_password("demo-clerk", second).name == "demo-clerk"
        assert second not in (index.user("demo-clerk").password_hash or "")
    finally:
        index.close()


def test_a_password_is_either_read_or_generated(tmp_path):
    env = {**os.environ, "ISSUANCE_INDEX": f"sqlite:///{tmp_path / 'index.sqlite'}", "ISSUANCE_HMAC_KEY": KEY}
    command = [sys.executable, "-c", "from cli.main import console_main; console_main()", "users", "add", "x"]
    for extra in (["--generate-password", "--password-stdin"], []):
        done = subprocess.run(
            [*command, "--role", "clerk", *extra], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and "password" in done.stderr
