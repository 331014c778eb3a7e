"""The real desk for browser tests (issue 24): the sample batch filed by the real pipeline, users of every
role, ``issuance serve`` as a subprocess, and Debian's Chromium driven by Playwright (never a downloaded
browser). Used by tests/test_desk_browser.py; nothing here is a mock.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright

from archive.index import Index, LedgerEntry
from core.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "examples" / "sample-batch" / "batch.jsonl"
ISSUANCE = [sys.executable, "-m", "cli.main"]
CHROMIUM = "/usr/bin/chromium"
# what a test machine's Chromium needs (root without a sandbox, no GPU) and what keeps it off the network
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PASSWORD = "pw-at-least-12"


@dataclass(frozen=True)
class Person:
    name: str
    role: str
    branch: str | None  # a branch prefix; None: every branch


# One user per role; the clerk and supervisor of branch 51 (the sample's PA-ACC policies, 510107) and of
# branch 44 (its car policy with a plate, 440305), so that each branch's clerk is the other's stranger.
PEOPLE = {
    p.name: p
    for p in (
        Person("clerk51", "clerk", "51"),
        Person("super51", "supervisor", "51"),
        Person("clerk44", "clerk", "44"),
        Person("super44", "supervisor", "44"),
        Person("auditor1", "auditor", None),
        Person("operator1", "operator", None),
        Person("admin1", "admin", None),
        Person("lockme", "clerk", "51"),  # the lockout test's own: it stays locked for 15 minutes
        Person("leaver", "clerk", "51"),  # disabled while signed in
    )
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def issuance(args: list[str], *, folder: Path, env: Mapping[str, str], stdin: str | None = None) -> str:
    """Run the command in ``folder`` (its ./var/ is the archive); its output, or AssertionError."""
    done = subprocess.run(
        [*ISSUANCE, *args],
        cwd=folder,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # `run` exits 1 when records were rejected: the sample's six bad lines are rejected on purpose
    if done.returncode not in (0, 1) or (done.returncode == 1 and args[0] != "run"):
        raise AssertionError(f"issuance {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


class DeskServer:
    """``issuance serve`` on a free loopback port, its output in a log file the tests may read."""

    def __init__(
        self, *, folder: Path, env: Mapping[str, str], port: int, log: Path, options: Sequence[str] = ()
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*ISSUANCE, "serve", "--port", str(port), "--threads", "4", *options],
                cwd=folder,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"issuance serve exited {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"issuance serve did not answer within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class FiledDesk:
    """The sample batch filed in ``folder``, its users, and the desk serving it."""

    folder: Path
    env: dict[str, str]
    server: DeskServer

    @property
    def url(self) -> str:
        return self.server.url

    def settings(self) -> Settings:
        return load_settings(base=self.folder, env=self.env)

    @contextlib.contextmanager
    def index(self) -> Iterator[Index]:
        """The desk's index, opened beside the server (the tests read what the pages recorded)."""
        settings = self.settings()
        index = Index.open(settings.index_url, hmac_key=settings.hmac_key, migrate=False)
        try:
            yield index
        finally:
            index.close()

    def ledger(self, *, subject: str | None = None) -> list[LedgerEntry]:
        with self.index() as index:
            return list(index.ledger_entries(subject=subject))

    def trust_roots(self) -> list[Path]:
        return [self.folder / "var" / "secrets" / "signer-root.pem"]


def desk_env(folder: Path, *, port: int, session_minutes: float = 30) -> dict[str, str]:
    """The environment of every command: this worktree's code, QR codes that lead to the test server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUANCE_")}
    env.update(
        PYTHONPATH=str(REPO),
        ISSUANCE_PUBLIC_URL=f"http://127.0.0.1:{port}",
        ISSUANCE_SESSION_MINUTES=str(session_minutes),
        ISSUANCE_WORKERS="2",
        ISSUANCE_OPERATOR="tester",
    )
    return env


def file_sample(folder: Path, env: Mapping[str, str]) -> None:
    """The SPECIMEN signer (so copies carry a real signature and QR code), the sample batch, the users."""
    issuance(["signer", "specimen"], folder=folder, env=env)
    issuance(["run", str(SAMPLE), "--no-progress"], folder=folder, env=env)
    for person in PEOPLE.values():
        branch = ["--branch", person.branch] if person.branch else []
        issuance(
            ["users", "add", person.name, "--role", person.role, *branch, "--password-stdin"],
            folder=folder,
            env=env,
            stdin=PASSWORD + "\n",
        )


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium (the Makefile installs it); Playwright's own download is never used."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def sign_in(context: BrowserContext, url: str, name: str, password: str = PASSWORD) -> Page:
    """Sign ``name`` in through the login form; the page after it."""
    page = context.new_page()
    page.goto(url + "/login")
    page.fill("#name", name)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form button[type=submit]")
    return page


def form_token(html: str) -> str:
    """The CSRF token of the first form on a page (every form of a page carries the same one)."""
    found = re.search(r'name="csrf" value="([^"]*)"', html)
    if found is None:
        raise AssertionError("the page has no form with a CSRF token")
    return found.group(1)


def texts(entries: list[LedgerEntry], action: str) -> list[tuple[str, dict[str, Any]]]:
    """(actor, detail) of the ledger entries of ``action``."""
    return [(e.actor, e.detail) for e in entries if e.action == action]
