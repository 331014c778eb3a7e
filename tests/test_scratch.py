"""What a run leaves behind when it is killed (issue 21, item 7), on real runs of ``issuance``.

A run works in a private folder under the working folder (``var/scratch``, 0700, files 0600), never in the
shared temporary folder; the next run removes the folders of runs no longer alive and never one of a live
process; LibreOffice's ``OSL_PIPE_*`` sockets (which it binds in /tmp whatever TMPDIR says) go with it;
and the temp files of a put cut short are listed by ``audit --orphans`` and removed by the next run.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

from bench.synth import make_batch
from core.processes import process_tag
from pipeline.scratch import run_scratch
from tests.conftest import REPO

KEY = "scratch-test-hmac-key-0123456789"
ISSUANCE = [sys.executable, "-m", "cli.main"]


def _env(tmp_path: Path) -> dict[str, str]:
    # a private TMPDIR: whatever the run puts in "the temporary folder" can be seen, and must be nothing
    private = tmp_path / "tmp"
    private.mkdir(exist_ok=True)
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(private),
        "ISSUANCE_WORKERS": "2",
        "ISSUANCE_HMAC_KEY": KEY,
    }


def _offices(tmp_path: Path) -> list[psutil.Process]:
    """The LibreOffice processes of runs in ``tmp_path`` (their profiles are somewhere below it)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "soffice.bin" and str(tmp_path) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _pipes(offices: list[psutil.Process]) -> set[str]:
    """The OSL_PIPE_* sockets these LibreOffices listen on, as psutil sees them."""
    pipes = set()
    for proc in offices:
        try:
            for conn in proc.net_connections(kind="unix"):
                if conn.laddr and Path(conn.laddr).name.startswith("OSL_PIPE_"):
                    pipes.add(conn.laddr)
        except psutil.Error:
            continue
    return pipes


def _files(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        out += [Path(root, name) for name in dirs + files]
    return out


def _follow(proc: subprocess.Popen, tmp_path: Path, *, until_composed: bool) -> set[str]:
    """The pipes of the run's LibreOffices, watched while it runs: until it ends, or (``until_composed``)
    until it has a composed document in its scratch, wherever that is."""
    pipes: set[str] = set()
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        pipes |= _pipes(_offices(tmp_path))
        if until_composed and pipes:
            composed = [p for p in _files(tmp_path) if p.name in ("documents.docx", "documents.pdf")]
            if composed:
                return pipes
        time.sleep(0.05)
    assert not until_composed, "the run ended before it composed a document"
    return pipes


def _gone(paths: set[str], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(os.path.lexists(p) for p in paths) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(os.path.lexists(p) for p in paths)


def test_a_killed_run_leaves_its_scratch_private_and_the_next_run_removes_it(tmp_path):
    batch = make_batch(tmp_path / "batch", 100, seed=31, images_per_record=1)
    env = _env(tmp_path)
    proc = subprocess.Popen(
        [*ISSUANCE, "run", str(batch), "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        pipes = _follow(proc, tmp_path, until_composed=True)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run mid-flight (its LibreOffices have their own sessions)
        proc.wait()
    assert pipes
    deadline = time.monotonic() + 15
    while _offices(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _offices(tmp_path)

    # nothing in the temporary folder, no sockets of its LibreOffices left in /tmp
    assert list(Path(env["TMPDIR"]).iterdir()) == []
    assert _gone(pipes), sorted(p for p in pipes if os.path.lexists(p))
    # what the killed run left is in the working folder, owner-only: folders 0700, files 0600
    scratch = tmp_path / "var" / "scratch"
    (left,) = scratch.iterdir()
    assert any(p.name.startswith("lo-profile-") for p in left.iterdir())
    for path in [scratch, *_files(scratch)]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))

    # the scratch of a live process is never taken for a dead run's, even one with its pid reused
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        tag = process_tag(sleeper.pid)
        assert tag is not None
        alive = scratch / f"run-{tag}-live"
        reused = scratch / f"run-{tag.rsplit('.', 1)[0]}.1-reused"  # same pid, another start time
        for folder in (alive, reused):
            folder.mkdir(mode=0o700)
            (folder / "documents.docx").write_bytes(b"personal data")
        again = subprocess.Popen(
            [*ISSUANCE, "run", str(batch), "--no-progress"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        _follow(again, tmp_path, until_composed=False)
        assert again.wait() == 0, again.stderr.read() if again.stderr else ""
        assert sorted(p.name for p in scratch.iterdir()) == [alive.name]
        assert (alive / "documents.docx").is_file()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert list(Path(env["TMPDIR"]).iterdir()) == []


def test_a_run_leaves_no_libreoffice_pipe_in_tmp(tmp_path):
    """LibreOffice binds OSL_PIPE_* sockets in /tmp (not in TMPDIR): ended politely it removes them, killed
    (as a run's end kills the instances that do not become the profile template) it does not."""
    env = _env(tmp_path)
    for seed in (33, 34):  # the first run leaves the profile template, the second starts from it
        batch = make_batch(tmp_path / f"batch-{seed}", 6, seed=seed)
        run = subprocess.Popen(
            [*ISSUANCE, "run", str(batch), "--no-progress"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        pipes = _follow(run, tmp_path, until_composed=False)
        assert run.wait() == 0, run.stderr.read() if run.stderr else ""
        assert pipes and _gone(pipes, seconds=2.0), sorted(p for p in pipes if os.path.lexists(p))


def test_run_scratch_removes_only_folders_of_processes_gone(tmp_path):
    root = tmp_path / "scratch"
    root.mkdir(mode=0o755)
    ended = subprocess.Popen(["true"])
    ended_tag = process_tag(ended.pid)
    ended.wait()
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        live_tag = process_tag(sleeper.pid)
        assert live_tag is not None and ended_tag is not None
        folders = {
            "dead": root / f"run-{ended_tag}-a",
            "live": root / f"run-{live_tag}-b",
            "elsewhere": root / "run-0123abcd.1.1-c",  # another machine or container: cannot tell
            "not ours": root / "notes",
        }
        for folder in folders.values():
            folder.mkdir()
        with run_scratch(root) as mine:
            assert stat.S_IMODE(root.stat().st_mode) == 0o700
            assert stat.S_IMODE(mine.stat().st_mode) == 0o700
            assert Path(tempfile.gettempdir()) == mine  # the libraries' temporary files land in it too
            left = {p.name for p in root.iterdir()}
        assert left == {mine.name} | {folders[k].name for k in ("live", "elsewhere", "not ours")}
        assert not mine.exists() and Path(tempfile.gettempdir()) != mine
    finally:
        sleeper.kill()
        sleeper.wait()


_STALLED_PUT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from archive.store import FileSystem, LocalStore, PutItem, hashed

class Stalled(FileSystem):
    def link(self, source, target):  # every temp file written and made durable, nothing linked yet
        print("at the first link", flush=True)
        time.sleep(600)

data = b"%PDF-1.7 " + {key!r}.encode()
LocalStore(Path({root!r}), files=Stalled()).put_many([PutItem(key={key!r}, data=data, sha256=hashed(data))])
"""


def _stalled_put(root: Path, key: str) -> subprocess.Popen:
    script = textwrap.dedent(_STALLED_PUT).format(repo=str(REPO), root=str(root), key=key)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "at the first link\n"
    return proc


def _temps(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in _files(root) if p.name.endswith(".tmp")}


def _temp_parts(tmp_path: Path, env: dict[str, str]) -> set[str]:
    audit = subprocess.run(
        [*ISSUANCE, "audit", "--orphans", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert audit.returncode == 0, audit.stderr
    findings = [json.loads(line) for line in audit.stdout.splitlines()]
    assert all(f["level"] == "warning" for f in findings)
    return {f["key"] for f in findings if f["kind"] == "temp_part"}


def test_temp_parts_of_a_killed_put_are_listed_then_removed_by_the_next_run(tmp_path):
    env = _env(tmp_path)
    store = tmp_path / "var" / "archive"
    killed = _stalled_put(store, "110105/2026/12/PAC20261201000001/v1-issue/customer-aaaaaaaaaaaa.pdf")
    killed.kill()  # kill -9 between writing its temp files and linking them
    killed.wait()
    left = _temps(store)
    assert len(left) == 2  # the object's and its sidecar's
    writing = _stalled_put(store, "110105/2026/12/PAC20261201000002/v1-issue/customer-bbbbbbbbbbbb.pdf")
    try:
        busy = _temps(store) - left
        assert len(busy) == 2
        # the audit lists the killed writer's, not those of a put under way
        assert _temp_parts(tmp_path, env) == left
        run = subprocess.run(
            [*ISSUANCE, "run", str(make_batch(tmp_path / "batch", 1, seed=32)), "--no-progress"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        assert _temps(store) == busy  # the dead writer's gone, the live one's untouched
        assert _temp_parts(tmp_path, env) == set()
    finally:
        writing.kill()
        writing.wait()
