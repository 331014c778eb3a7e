"""The inbox watcher (issue 5), tested as operators run it: real ``issuance watch`` processes.

Each test starts the watcher as a subprocess in a temporary folder whose ``./var/`` holds the archive,
drops small synthetic batches (``bench.synth.make_batch``) into its inbox, and looks at what moved where,
at the reports, at the watcher's log, and at the index. Real LibreOffice, real SQLite, no mocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from archive.index import Index
from bench.synth import make_batch
from tests.conftest import REPO

KEY = "watch-test-hmac-key-0123456789"
ISSUANCE = [sys.executable, "-m", "cli.main"]
FAST = ["--settle", "1", "--rescan", "2"]
ID_RE = re.compile(r'"id_no": "([0-9]{17}[0-9X])"')
NAME_RE = re.compile(r'"name": "([^"]+)"')


@pytest.fixture(scope="module")
def clause_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clause PDFs converted once for the whole module (each test has its own archive)."""
    return tmp_path_factory.mktemp("clause-cache")


@dataclass
class Watching:
    """One ``issuance watch`` process and its log file."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, what: str, check: Callable[[], object], timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.proc.poll() is not None and not check():
                pytest.fail(f"the watcher exited ({self.proc.returncode}) before: {what}\n{self.log()}")
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for: {what}\n{self.log()}")

    def terminate(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)  # the watcher only, as systemd's KillMode=mixed does
        return self.proc.wait(timeout=timeout)


@dataclass
class Site:
    """A temporary working folder: ``./var/`` (the archive) and ``./inbox/``."""

    root: Path
    inbox: Path
    env: dict[str, str]
    started: list[Watching]

    def start(self, *args: str, env: dict[str, str] | None = None, name: str = "watch") -> Watching:
        log_path = self.root / f"{name}-{len(self.started)}.log"
        proc = subprocess.Popen(
            [*ISSUANCE, "watch", str(self.inbox), *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: LibreOffice dies with it on killpg
        )
        watching = Watching(proc, log_path)
        self.started.append(watching)
        watching.wait_for("the watcher holds the inbox", lambda: "event=start" in watching.log(), 30)
        return watching

    def run_once(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ISSUANCE, "watch", str(self.inbox), "--once", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def records_in_index(self) -> int:
        index = Index.open(f"sqlite:///{self.root / 'var' / 'index.sqlite'}", hmac_key=KEY.encode())
        try:
            return index.count("records")
        finally:
            index.close()

    def committed(self) -> int:
        """Records the index holds now, read without disturbing the watcher (0 before its first commit)."""
        db = self.root / "var" / "index.sqlite"
        if not db.exists():
            return 0
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
                return conn.execute("SELECT count(*) FROM records").fetchone()[0]
        except sqlite3.Error:  # not migrated yet, or busy
            return 0

    def moved(self, where: str) -> list[str]:
        return sorted(p.name for p in (self.inbox / where).iterdir())

    def filed(self, where: str) -> list[str]:
        """The folders of ``where`` the batch itself has reached (it is moved in after its reports)."""
        reports = {"report.json", "REPORT.txt"}
        return [name for name in self.moved(where) if set(os.listdir(self.inbox / where / name)) - reports]


@pytest.fixture
def site(tmp_path: Path, clause_cache: Path) -> Iterator[Site]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ISSUANCE_WORKERS": "1",
        "ISSUANCE_HMAC_KEY": KEY,
        "ISSUANCE_CACHE": str(clause_cache),
    }
    here = Site(tmp_path, inbox, env, [])
    yield here
    for watching in here.started:  # whatever a failed test left running, LibreOffice included
        if watching.proc.poll() is None:
            os.killpg(watching.proc.pid, signal.SIGKILL)
            watching.proc.wait()


def report_of(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


def batch_lines(log: str, name: str) -> list[str]:
    return [line for line in log.splitlines() if "event=batch " in line and f"batch={name} " in line]


# --- complete and stable only ---------------------------------------------------------------------------


def test_a_slow_copy_is_taken_once_and_only_when_complete(site: Site, tmp_path: Path):
    held = make_batch(tmp_path / "src-held", 4, seed=501, images_per_record=0).read_bytes()
    reopened = make_batch(tmp_path / "src-reopened", 2, seed=502, images_per_record=0).read_bytes()
    watching = site.start(*FAST)

    # "held.jsonl": the writer keeps the file open and pauses at line ends, so the content looks whole;
    # "reopened.jsonl": the writer appends and closes each time, and pauses in the middle of a line.
    held_cuts = [i + 1 for i, b in enumerate(held) if b == ord("\n")]
    assert len(held_cuts) == 4
    quarter = len(reopened) // 4
    reopened_cuts = [quarter * k + (1 if reopened[quarter * k - 1] == ord("\n") else 0) for k in (1, 2, 3)]
    reopened_cuts.append(len(reopened))
    assert all(reopened[c - 1] != ord("\n") for c in reopened_cuts[:-1])  # really mid-line

    with (site.inbox / "held.jsonl").open("wb") as writer:
        for step in range(4):
            writer.write(held[held_cuts[step - 1] if step else 0 : held_cuts[step]])
            writer.flush()
            os.fsync(writer.fileno())
            with (site.inbox / "reopened.jsonl").open("ab") as fh:
                fh.write(reopened[reopened_cuts[step - 1] if step else 0 : reopened_cuts[step]])
            time.sleep(1.8)  # longer than --settle: a quiet period alone would take a partial file
            assert site.moved(".done") == [] and site.moved(".failed") == []
    assert (site.inbox / "held.jsonl").read_bytes() == held

    watching.wait_for("both batches filed", lambda: len(site.filed(".done")) == 2)
    for stem, n in (("held", 4), ("reopened", 2)):
        report = report_of(site.inbox / ".done" / stem)
        assert report["counts"] == {"records": n, "archived": n, "already_archived": 0, "rejected": 0}
    assert (site.inbox / ".done/held/held.jsonl").read_bytes() == held
    assert (site.inbox / ".done/reopened/reopened.jsonl").read_bytes() == reopened
    log = watching.log()
    assert len(batch_lines(log, "held.jsonl")) == 1 and len(batch_lines(log, "reopened.jsonl")) == 1
    assert "open for writing" in log and "last line is not finished" in log  # why each one waited
    assert site.records_in_index() == 6
    assert watching.terminate() == 0


def test_a_folder_batch_waits_for_ready(site: Site):
    watching = site.start(*FAST)
    folder = site.inbox / "2026-11-23-branch-510107"
    make_batch(folder, 2, seed=503, images_per_record=1)
    time.sleep(4)  # longer than settle + rescan
    assert folder.is_dir() and site.moved(".done") == [] and site.moved(".failed") == []
    assert 'why="waiting for READY"' in watching.log()
    (folder / "READY").touch()
    filed = site.inbox / ".done" / folder.name
    watching.wait_for("the folder batch filed", lambda: site.filed(".done") == [folder.name])
    assert not folder.exists()
    original = filed / folder.name  # the batch as it arrived: batch file, images, READY
    assert (original / "READY").is_file() and (original / "batch.jsonl").is_file()
    assert list((original / "images").iterdir())
    assert report_of(filed)["counts"]["archived"] == 2
    assert site.records_in_index() == 2
    assert watching.terminate() == 0


# --- where batches go, and what is written beside them ---------------------------------------------------


def _zip_folder(folder: Path, target: Path, *, top: str) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{top}/{path.relative_to(folder).as_posix()}")


def test_done_failed_reports_and_name_collisions(site: Site, tmp_path: Path):
    clean = make_batch(tmp_path / "src-clean", 2, seed=504, images_per_record=0)
    bad = make_batch(tmp_path / "src-bad", 2, seed=505, images_per_record=0)
    records = [json.loads(line) for line in bad.read_text(encoding="utf-8").splitlines()]
    id_no = records[0]["insured"]["id_no"]
    records[0]["insured"]["id_no"] = id_no[:-1] + ("0" if id_no[-1] != "0" else "1")  # wrong check digit
    bad.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    zipped = tmp_path / "zipped.zip"
    make_batch(tmp_path / "src-zip", 2, seed=506, images_per_record=1)
    _zip_folder(tmp_path / "src-zip", zipped, top="zipped")
    personal = set(ID_RE.findall(clean.read_text() + bad.read_text())) | set(
        NAME_RE.findall(clean.read_text() + bad.read_text())
    )

    watching = site.start(*FAST, env={"ISSUANCE_WORKERS": "2"})
    (site.inbox / "clean.jsonl").write_bytes(clean.read_bytes())
    (site.inbox / "bad.jsonl").write_bytes(bad.read_bytes())
    (site.inbox / "garbage.jsonl").write_bytes(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) + b"IEND"
    )
    (site.inbox / "zipped.zip").write_bytes(zipped.read_bytes())
    clutter = [
        ".DS_Store",
        "Thumbs.db",
        "desktop.ini",
        "~$clean.xlsx",
        "next.jsonl.part",
        ".~lock.x#",
        "a.tmp",
    ]
    for name in clutter:
        (site.inbox / name).write_bytes(b"\x00 clutter")
    watching.wait_for(
        "four batches moved", lambda: len(site.filed(".done")) + len(site.filed(".failed")) == 4
    )
    assert site.moved(".done") == ["clean", "zipped"]
    assert site.moved(".failed") == ["bad", "garbage"]

    # the original beside its reports; for a zip, the zip as it arrived
    assert sorted(p.name for p in (site.inbox / ".done/clean").iterdir()) == [
        "REPORT.txt",
        "clean.jsonl",
        "report.json",
    ]
    assert (site.inbox / ".done/zipped/zipped.zip").read_bytes() == zipped.read_bytes()
    assert report_of(site.inbox / ".done/zipped")["counts"]["archived"] == 2

    failed_bad = site.inbox / ".failed/bad"
    assert report_of(failed_bad)["counts"] == {
        "records": 2,
        "archived": 1,
        "already_archived": 0,
        "rejected": 1,
    }
    text = (failed_bad / "REPORT.txt").read_text(encoding="utf-8")
    assert "被拒绝 rejected: 1" in text and "insured.id_no" in text
    assert re.search(rf"line 1, {re.escape(records[0]['record_id'])}, .*insured\.id_no: ", text)
    garbage = (site.inbox / ".failed/garbage/REPORT.txt").read_text(encoding="utf-8")
    assert "unusable" in garbage and "binary" in garbage
    assert report_of(site.inbox / ".failed/garbage")["unusable"]

    # the same name again: a suffix, nothing overwritten; its records are already archived, so it is done
    (site.inbox / "clean.jsonl").write_bytes(clean.read_bytes())
    watching.wait_for("the second clean.jsonl filed", lambda: "clean-2" in site.filed(".done"))
    assert report_of(site.inbox / ".done/clean-2")["counts"]["already_archived"] == 2
    assert report_of(site.inbox / ".done/clean")["counts"]["archived"] == 2

    assert sorted(p.name for p in site.inbox.iterdir() if not p.name.startswith(".")) == sorted(
        n for n in clutter if not n.startswith(".")
    )  # clutter is left alone, never taken
    assert site.records_in_index() == 2 + 1 + 2
    assert watching.terminate() == 0
    log = watching.log()
    assert re.search(
        r"event=rejected batch=bad\.jsonl batch_id=\S+ line=1 record_id=\S+ field=insured\.id_no", log
    )
    assert re.search(r"event=batch batch=clean\.jsonl .*outcome=done", log)
    assert re.search(r"event=batch batch=bad\.jsonl .*rejected=1 outcome=failed", log)
    for path in [*site.inbox.rglob("REPORT.txt"), *site.inbox.rglob("report.json")]:
        assert not any(p in path.read_text(encoding="utf-8") for p in personal if len(p) > 1), path
    assert not any(p in log for p in personal if len(p) > 1)


# --- crashes, signals, a second watcher -----------------------------------------------------------------


def test_kill_9_mid_batch_and_restart_archive_every_record_once(site: Site):
    folder = site.inbox / "big"
    make_batch(folder, 16, seed=507, images_per_record=1)
    (folder / "READY").touch()
    # groups of two policies per LibreOffice document and index transaction: the kill lands between groups
    env = {"ISSUANCE_WORKERS": "2", "ISSUANCE_CHUNK": "2"}
    first = site.start(*FAST, env=env)
    first.wait_for("a first record archived", lambda: site.committed() >= 1)
    os.killpg(first.proc.pid, signal.SIGKILL)  # the watcher and its LibreOffice, mid-batch
    first.proc.wait()
    assert 1 <= site.committed() < 16, "the kill was meant to land mid-batch"
    assert folder.is_dir() and site.moved(".done") == []

    second = site.start(*FAST, env=env)
    second.wait_for("the batch filed after the restart", lambda: site.filed(".done") == ["big"])
    counts = report_of(site.inbox / ".done/big")["counts"]
    assert counts["archived"] + counts["already_archived"] == 16 and counts["rejected"] == 0
    index = Index.open(f"sqlite:///{site.root / 'var' / 'index.sqlite'}", hmac_key=KEY.encode())
    try:
        assert index.count("records") == 16
        assert index.count("documents") == 16  # one version per policy: nothing filed twice
        assert index.verify_ledger() == []
    finally:
        index.close()
    assert second.terminate() == 0


def test_sigterm_mid_batch_stops_cleanly_and_a_restart_finishes(site: Site):
    folder = site.inbox / "twelve"
    make_batch(folder, 12, seed=508, images_per_record=1)
    (folder / "READY").touch()
    # one record per LibreOffice document: with groups of 16, all twelve would be in flight at once
    watching = site.start(*FAST, env={"ISSUANCE_CHUNK": "1"})
    watching.wait_for("a first record archived", lambda: site.committed() >= 1)
    sent = time.monotonic()
    assert watching.terminate() == 0
    assert time.monotonic() - sent < 30
    assert site.committed() < 12, "the signal was meant to land mid-batch"
    assert folder.is_dir() and (folder / "READY").is_file()  # left in the inbox, not moved
    assert site.moved(".done") == [] and site.moved(".failed") == []
    log = watching.log()
    assert "SIGTERM" in log and "outcome=interrupted" in log and "event=stop" in log

    again = site.run_once("--settle", "1")
    assert again.returncode == 0, again.stderr
    assert site.moved(".done") == ["twelve"] and not folder.exists()
    counts = report_of(site.inbox / ".done/twelve")["counts"]
    assert counts["archived"] + counts["already_archived"] == 12 and counts["rejected"] == 0
    assert counts["already_archived"] >= 1  # the ones filed before the signal
    assert site.records_in_index() == 12


def test_a_second_watcher_on_the_same_inbox_refuses(site: Site):
    first = site.start(*FAST)
    second = subprocess.run(
        [*ISSUANCE, "watch", str(site.inbox), *FAST],
        cwd=site.root,
        env=site.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    assert "another watcher is already running" in second.stderr
    assert f"pid {first.proc.pid}" in second.stderr
    assert first.proc.poll() is None  # the first one goes on
    assert first.terminate() == 0


# --- hostile zips ------------------------------------------------------------------------------------------


def _patch_sizes(path: Path, member: str, *, size: int, local: bool) -> None:
    """Rewrite the uncompressed size a zip declares for ``member`` (central directory, optionally local)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_len] == name:
            struct.pack_into("<I", data, at + 24, size)
            if local:
                offset = struct.unpack_from("<I", data, at + 42)[0]
                struct.pack_into("<I", data, offset + 22, size)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def test_zip_slip_and_zip_bombs_are_refused(site: Site, tmp_path: Path):
    batch = make_batch(tmp_path / "src", 1, seed=509, images_per_record=0).read_bytes()
    outside = tmp_path / "escaped"
    inbox = site.inbox

    def make(name: str, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> None:
        with zipfile.ZipFile(inbox / name, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, data in members:
                zf.writestr(member, data)

    make("slip-dotdot.zip", [("batch.jsonl", batch), ("../../escaped/dotdot.txt", b"x")])
    make("slip-absolute.zip", [("batch.jsonl", batch), (f"{outside}/absolute.txt", b"x")])
    link = zipfile.ZipInfo("images/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    make("slip-symlink.zip", [("batch.jsonl", batch), (link, str(outside).encode())])
    make("bomb-declared.zip", [("batch.jsonl", batch), ("images/big.jpg", b"\x00" * 4096)])
    _patch_sizes(inbox / "bomb-declared.zip", "images/big.jpg", size=3 << 30, local=False)
    make("bomb-lying.zip", [("batch.jsonl", batch), ("images/big.jpg", b"\x00" * (4 << 20))])
    _patch_sizes(inbox / "bomb-lying.zip", "images/big.jpg", size=1000, local=True)
    make("bomb-members.zip", [("batch.jsonl", batch)] + [(f"images/{i}.jpg", b"") for i in range(10_001)])
    make("two-batches.zip", [("a.jsonl", batch), ("b.jsonl", batch)])

    result = site.run_once("--settle", "1")
    assert result.returncode == 1, result.stderr  # batches failed, none left to retry
    expected = {
        "slip-dotdot": "climbs out with '..'",
        "slip-absolute": "absolute path",
        "slip-symlink": "symbolic link",
        "bomb-declared": "declares more than 2,147,483,648 bytes",
        "bomb-lying": "",  # zipfile's CRC check or our byte count, whichever trips first
        "bomb-members": "10,002 members, more than the 10,000 allowed",
        "two-batches": "exactly one batch file",
    }
    assert site.moved(".failed") == sorted(expected) and site.moved(".done") == []
    for stem, reason in expected.items():
        text = (inbox / ".failed" / stem / "REPORT.txt").read_text(encoding="utf-8")
        assert "unusable" in text and reason in text, text
        assert (inbox / ".failed" / stem / f"{stem}.zip").is_file()
    lying = (inbox / ".failed/bomb-lying/REPORT.txt").read_text(encoding="utf-8")
    assert "CRC" in lying or "more than the 1,000 bytes it declares" in lying, lying
    # nothing written outside the work folder, and the work folder is emptied
    assert not outside.exists() and not (tmp_path / "dotdot.txt").exists()
    assert not list(tmp_path.rglob("absolute.txt")) and not list(tmp_path.rglob("dotdot.txt"))
    assert list((inbox / ".work").iterdir()) == []
    assert "filing session open" not in result.stderr  # refused zips never start LibreOffice
    assert site.records_in_index() == 0


def test_broken_workbooks_are_filed_as_unusable_and_never_retried(site: Site):
    # issue 21, item 4: these gave a traceback, and the watcher retried them forever
    from tests.test_batchfile import HOSTILE_WORKBOOKS, _workbook

    cases = ["garbage-members", "malformed-mid-sheet", "billion-laughs-in-sheet", "no-sheets"]
    for case in cases:
        _workbook(site.inbox / f"{case}.xlsx", **HOSTILE_WORKBOOKS[case][0])
    result = site.run_once("--settle", "1")
    assert result.returncode == 1, result.stderr  # batches failed, none left to retry
    assert "outcome=retry" not in result.stderr and "Traceback" not in result.stderr
    assert site.moved(".failed") == sorted(cases) and site.moved(".done") == []
    for stem in cases:
        text = (site.inbox / ".failed" / stem / "REPORT.txt").read_text(encoding="utf-8")
        assert "unusable" in text and f"batch file {stem}.xlsx" in text, text
    assert "filing session open" not in result.stderr  # refused before LibreOffice was started


# --- infrastructure down: retried, never failed ----------------------------------------------------------


def test_an_unreachable_index_is_retried_with_backoff_and_never_failed(site: Site, tmp_path: Path):
    batch = make_batch(tmp_path / "src", 1, seed=510, images_per_record=0)
    down = {"ISSUANCE_INDEX": "postgresql+psycopg://x@127.0.0.1:9/x?connect_timeout=1"}
    watching = site.start(*FAST, env=down)
    (site.inbox / "waiting.jsonl").write_bytes(batch.read_bytes())
    watching.wait_for("two retry rounds", lambda: watching.log().count("outcome=retry") >= 2, timeout=60)
    log = watching.log()
    assert "attempt=1 retry_in=5s" in log and "attempt=2 retry_in=10s" in log
    assert "will retry" in log and "cannot open the index" in log
    assert (site.inbox / "waiting.jsonl").is_file()
    assert site.moved(".failed") == [] and site.moved(".done") == []
    assert watching.terminate() == 0
    assert (site.inbox / "waiting.jsonl").is_file() and site.moved(".failed") == []


def test_records_a_tsa_failed_keep_the_batch_in_the_inbox_until_a_retry_files_them(
    site: Site, tmp_path: Path
):
    """A TSA that does not answer fails the record waiting for it (issue 23, item 3): the batch is not
    filed as done with a record missing; it stays in the inbox, is run again, and then files it."""
    from bench.tsa import LoopbackTsa
    from stamps.keys import write_specimen_pkcs12

    write_specimen_pkcs12(tmp_path / "signer.p12", b"watch-pw")
    batch = make_batch(tmp_path / "src", 1, seed=511, images_per_record=0)
    with LoopbackTsa() as tsa:
        tsa.fail_next(2, "http500")  # the record's first signature, asked twice
        signing = {
            "ISSUANCE_SIGNING_KEY": str(tmp_path / "signer.p12"),
            "ISSUANCE_SIGNING_PASSWORD": "watch-pw",
            "ISSUANCE_TSA_URL": tsa.url,
        }
        watching = site.start(*FAST, env=signing)
        (site.inbox / "stamped.jsonl").write_bytes(batch.read_bytes())
        watching.wait_for("a retry", lambda: "outcome=retry" in watching.log(), timeout=120)
        log = watching.log()
        assert "1 record(s) not filed" in log and "time-stamping authority" in log
        assert site.moved(".done") == [] and site.moved(".failed") == []
        watching.wait_for("the batch done", lambda: site.filed(".done") == ["stamped"], timeout=120)
        assert watching.terminate() == 0
    assert site.records_in_index() == 1
    report = report_of(site.inbox / ".done" / "stamped")
    assert report["counts"]["archived"] == 1 and "not_attempted" not in report["counts"]
