"""``issuance serve`` as a real process (waitress): it answers, and believes X-Forwarded-Proto only when
told it is behind a proxy (``--behind-proxy``): otherwise any client could claim HTTPS with a header."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

KEY = "serve-test-hmac-key-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(*extra: str) -> int:
        port = _free_port()
        env = {
            **os.environ,
            "ISSUANCE_INDEX": f"sqlite:///{tmp_path / 'index.sqlite'}",
            "ISSUANCE_HMAC_KEY": KEY,
            "ISSUANCE_STORE": (tmp_path / "archive").as_uri(),
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from cli.main import console_main; console_main()",
                "serve",
                "--port",
                str(port),
                *extra,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    assert answer.status == 200
                    return port
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                time.sleep(0.2)
        raise AssertionError("issuance serve did not answer")

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def _login_cookie(port: int) -> str:
    ask = urllib.request.Request(f"http://127.0.0.1:{port}/login", headers={"X-Forwarded-Proto": "https"})
    with urllib.request.urlopen(ask, timeout=10) as answer:
        return answer.headers["Set-Cookie"]


def test_a_forwarded_https_is_believed_only_behind_a_proxy(serve):
    assert "Secure" not in _login_cookie(serve())
    assert "Secure" in _login_cookie(serve("--behind-proxy"))
