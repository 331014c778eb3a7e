"""The watcher's building blocks on real files, in-process and fast: what counts as a batch, when a file
looks complete, the lock, filing away with suffixes, and unpacking zips (layouts, names, refusals)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.errors import BatchUnreadable, InboxLocked, UnsafeBatchArchive
from watchers import Entry, Inbox, InboxLock, ZipLimits, extract_batch, is_ignored
from watchers.inbox import looks_incomplete, open_for_writing


@pytest.mark.parametrize(
    "name",
    [
        ".DS_Store",
        "Thumbs.db",
        "DESKTOP.INI",
        "~$batch.xlsx",
        ".~lock.batch.csv#",
        "batch.jsonl.part",
        "x.tmp",
        ".hidden.jsonl",
        "batch.jsonl.crdownload",
        "batch.csv~",
    ],
)
def test_clutter_and_temporary_names_are_ignored(name: str):
    assert is_ignored(name)


@pytest.mark.parametrize("name", ["batch.jsonl", "2026-11-23.csv", "导出.xlsx", "b.zip", "folder-1"])
def test_batch_names_are_not_ignored(name: str):
    assert not is_ignored(name)


def test_scan_finds_batches_and_leaves_the_rest(tmp_path: Path):
    for name in ("a.jsonl", "b.CSV", "c.xlsx", "d.zip", "notes.txt", ".DS_Store", "e.jsonl.part"):
        (tmp_path / name).write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / ".done").mkdir()
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "a.jsonl")
    entries, skipped = Inbox(tmp_path).scan()
    assert sorted((e.name, e.kind) for e in entries) == [
        ("a.jsonl", "file"),
        ("b.CSV", "file"),
        ("c.xlsx", "file"),
        ("d.zip", "zip"),
        ("folder", "folder"),
    ]
    assert sorted(s.name for s in skipped) == ["link.jsonl", "notes.txt"]


def test_a_file_looks_incomplete_until_its_last_line_is_whole(tmp_path: Path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"")
    assert looks_incomplete(path) == "empty"
    path.write_bytes(b'{"a": 1}\n{"b": ')
    assert looks_incomplete(path) == "its last line is not finished"
    path.write_bytes(b'{"a": 1}\n{"b": 2}')  # no final line break, but a whole JSON value
    assert looks_incomplete(path) is None
    path.write_bytes(b'{"a": 1}\n' + b"\x00" * 4096)  # pre-allocated, still being filled
    assert "NUL" in looks_incomplete(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR binary")  # binary: complete as such
    assert looks_incomplete(path) is None
    csv = tmp_path / "b.csv"
    csv.write_bytes(b"kind,record_id\r\npolicy,R1")
    assert looks_incomplete(csv) == "its last line is not finished"
    csv.write_bytes(b"kind,record_id\r\npolicy,R1\r\n")
    assert looks_incomplete(csv) is None
    zipped = tmp_path / "b.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("batch.jsonl", "{}\n" * 1000)
    whole = zipped.read_bytes()
    zipped.write_bytes(whole[: len(whole) // 2])
    assert "not a complete zip" in looks_incomplete(zipped)
    zipped.write_bytes(whole)
    assert looks_incomplete(zipped) is None


def test_a_file_open_for_writing_elsewhere_is_seen(tmp_path: Path):
    path = tmp_path / "b.jsonl"
    path.write_text("{}\n")
    holds_it_open = "import sys, time; f = open(sys.argv[1], 'a'); print('open', flush=True); time.sleep(30)"
    writer = subprocess.Popen(
        [sys.executable, "-c", holds_it_open, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "open"
        assert open_for_writing(path) is True
    finally:
        writer.kill()
        writer.wait()
    assert open_for_writing(path) is False


def test_the_lock_admits_one_holder(tmp_path: Path):
    with (
        InboxLock(tmp_path / ".watch.lock"),
        pytest.raises(InboxLocked, match="another watcher is already running"),
    ):
        InboxLock(tmp_path / ".watch.lock").acquire()
    with InboxLock(tmp_path / ".watch.lock"):  # released with the holder
        pass


def test_filing_away_never_overwrites(tmp_path: Path):
    inbox = Inbox(tmp_path)
    inbox.prepare()
    for round_ in (1, 2, 3):
        (tmp_path / "batch.jsonl").write_text(f"round {round_}\n")
        target = inbox.file_away(
            Entry("batch.jsonl", tmp_path / "batch.jsonl", "file"),
            failed=False,
            report={"round": round_},
            summary="ok\n",
        )
        assert target.name == ("batch" if round_ == 1 else f"batch-{round_}")
        assert (target / "batch.jsonl").read_text() == f"round {round_}\n"
        assert json.loads((target / "report.json").read_text()) == {"round": round_}
        assert (target / "REPORT.txt").read_text() == "ok\n"
    assert not (tmp_path / "batch.jsonl").exists()


def test_a_filed_folder_appears_with_its_reports_already_in_it(tmp_path: Path, monkeypatch):
    inbox = Inbox(tmp_path)
    inbox.prepare()
    (inbox.done_dir / "batch").write_text("not a folder")  # a name taken by something else
    (tmp_path / "batch.jsonl").write_text("{}\n")
    seen: list[list[str]] = []

    def looking_after(move):  # every rename and replace: what an onlooker would find in .done/
        def moved(src, dst):
            move(src, dst)
            seen.extend(sorted(os.listdir(d)) for d in inbox.done_dir.iterdir() if d.is_dir())

        return moved

    monkeypatch.setattr(os, "rename", looking_after(os.rename))
    monkeypatch.setattr(os, "replace", looking_after(os.replace))
    target = inbox.file_away(
        Entry("batch.jsonl", tmp_path / "batch.jsonl", "file"), failed=False, report={}, summary="ok\n"
    )
    assert target.name == "batch-2" and (inbox.done_dir / "batch").read_text() == "not a folder"
    assert seen and all({"REPORT.txt", "report.json"} <= set(names) for names in seen)
    assert sorted(os.listdir(target)) == ["REPORT.txt", "batch.jsonl", "report.json"]
    assert list(inbox.work_dir.iterdir()) == []  # the staging folder became the filed one
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(inbox.done_dir.stat().st_mode)


def test_a_folder_batch_needs_exactly_one_batch_file(tmp_path: Path):
    (tmp_path / "images").mkdir()
    with pytest.raises(BatchUnreadable, match="found: none"):
        Inbox.batch_file(tmp_path)
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "~$a.xlsx").write_text("lock")  # Office's lock file is not a second batch
    assert Inbox.batch_file(tmp_path) == tmp_path / "a.jsonl"
    (tmp_path / "b.csv").write_text("kind,record_id\n")
    with pytest.raises(BatchUnreadable, match=r"a\.jsonl, b\.csv"):
        Inbox.batch_file(tmp_path)


# --- zips ------------------------------------------------------------------------------------------------


def test_a_zip_in_one_top_folder_unpacks_with_its_images(tmp_path: Path):
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("2026-11-23/", b"")
        zf.writestr("2026-11-23/batch.jsonl", b"{}\n")
        zf.writestr("2026-11-23/images/id_front-1.jpg", b"jpeg")
        zf.writestr("__MACOSX/2026-11-23/._batch.jsonl", b"resource fork")
        zf.writestr("2026-11-23/.DS_Store", b"clutter")
    into = tmp_path / "work"
    into.mkdir()
    batch = extract_batch(archive, into=into)
    assert batch == into / "2026-11-23" / "batch.jsonl"
    assert (batch.parent / "images" / "id_front-1.jpg").read_bytes() == b"jpeg"
    assert not (into / "__MACOSX").exists() and not (batch.parent / ".DS_Store").exists()


def test_gbk_names_from_chinese_windows_are_read_as_written(tmp_path: Path):
    gbk = "影像/x.jpg".encode("gbk")
    placeholder = b"abcd/x.jpg"
    assert len(gbk) == len(placeholder)
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("batch.jsonl", b"{}\n")
        zf.writestr(placeholder.decode(), b"jpeg")
    # GBK bytes without the UTF-8 flag, as the zip built into Chinese Windows writes them
    archive.write_bytes(archive.read_bytes().replace(placeholder, gbk))
    into = tmp_path / "work"
    into.mkdir()
    extract_batch(archive, into=into)
    assert (into / "影像" / "x.jpg").read_bytes() == b"jpeg"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../evil.txt", "climbs out"),
        ("a/../../evil.txt", "climbs out"),
        ("..\\evil.txt", "climbs out"),
        ("/etc/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
    ],
)
def test_zip_slip_names_are_refused(tmp_path: Path, member: str, message: str):
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("batch.jsonl", b"{}\n")
        zf.writestr(member, b"x")
    into = tmp_path / "deep" / "work"
    into.mkdir(parents=True)
    with pytest.raises(UnsafeBatchArchive, match=message):
        extract_batch(archive, into=into)
    assert list(into.iterdir()) == []  # checked before anything is written
    assert not list(tmp_path.rglob("evil.txt"))


def test_zip_limits_are_checked_on_declared_and_real_sizes(tmp_path: Path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("batch.jsonl", b"{}\n")
        zf.writestr("images/a.jpg", b"\x00" * 5000)
    into = tmp_path / "work"
    into.mkdir()
    with pytest.raises(UnsafeBatchArchive, match="declares more than 4,000 bytes"):
        extract_batch(archive, into=into, limits=ZipLimits(max_bytes=4000))
    with pytest.raises(UnsafeBatchArchive, match="2 members, more than the 1 allowed"):
        extract_batch(archive, into=into, limits=ZipLimits(max_members=1))
    assert extract_batch(archive, into=into, limits=ZipLimits(max_members=2, max_bytes=5003)).is_file()


def test_encrypted_and_layoutless_zips_are_refused(tmp_path: Path):
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/batch.jsonl", b"{}\n")
        zf.writestr("b/batch.jsonl", b"{}\n")
    into = tmp_path / "work"
    into.mkdir()
    with pytest.raises(UnsafeBatchArchive, match=r"exactly one batch file .* at its top level; found: none"):
        extract_batch(archive, into=into)
    data = bytearray(archive.read_bytes())
    at = data.find(b"PK\x01\x02")
    data[at + 8] |= 0x1  # the central directory's "encrypted" flag
    archive.write_bytes(bytes(data))
    with pytest.raises(UnsafeBatchArchive, match="encrypted"):
        extract_batch(archive, into=tmp_path)
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UnsafeBatchArchive, match="not a readable zip"):
        extract_batch(archive, into=tmp_path)


# --- what is retried and what is filed (issue 21, item 4) -----------------------------------------------


class _FailingRunner:
    """A runner whose every run raises ``error``; ``check`` passes, or reads the file as the real one does."""

    def __init__(self, error: Exception, *, check: bool = False) -> None:
        self.error = error
        self.runs = 0
        self.reads = check

    def check(self, batch: Path) -> None:
        if self.reads:
            from pipeline.batchfile import read_batch

            next(iter(read_batch(batch)), None)

    def run(self, batch: Path, *, stop: object) -> object:
        self.runs += 1
        raise self.error

    def close(self) -> None:
        pass


def _watch_once(inbox: Path, runner: _FailingRunner):
    import threading

    from watchers import Watcher, WatchOptions

    options = WatchOptions(settle=0.05, rescan=0.1, once=True, backoff_first=0.01, backoff_max=0.01)
    return Watcher(inbox, runner=runner, options=options, stop=threading.Event()).run()


def test_an_unexpected_error_files_the_batch_with_the_error_and_never_retries(tmp_path: Path):
    (tmp_path / "b.jsonl").write_text('{"kind": "policy"}\n', encoding="utf-8")
    runner = _FailingRunner(KeyError("boom"))
    summary = _watch_once(tmp_path, runner)
    assert summary.failed == ("b.jsonl",) and summary.retrying == () and runner.runs == 1
    filed = tmp_path / ".failed" / "b"
    assert (filed / "b.jsonl").is_file() and not (tmp_path / "b.jsonl").exists()
    assert json.loads((filed / "report.json").read_text(encoding="utf-8"))["error"] == "KeyError: 'boom'"
    text = (filed / "REPORT.txt").read_text(encoding="utf-8")
    assert "KeyError: 'boom'" in text and "not retried" in text


def test_an_unavailable_component_keeps_the_batch_in_the_inbox(tmp_path: Path):
    from core.errors import StoreError

    (tmp_path / "b.jsonl").write_text('{"kind": "policy"}\n', encoding="utf-8")
    summary = _watch_once(tmp_path, _FailingRunner(StoreError("the store is down")))
    assert summary.retrying == ("b.jsonl",) and summary.failed == ()
    assert (tmp_path / "b.jsonl").is_file() and list((tmp_path / ".failed").iterdir()) == []


def _unsupported_zip(path: Path) -> Path:
    """A whole zip whose central directory asks for a newer zip version than Python reads."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("batch.jsonl", '{"kind": "policy"}\n')
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    data[at + 6] = 80  # version needed to extract: 8.0
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("name", ["unsupported.zip", "unsupported.xlsx"])
def test_a_zip_python_cannot_read_is_filed_not_fatal_to_the_watcher(tmp_path: Path, name: str):
    # zipfile raises NotImplementedError for it: raised while the watcher looked, it ended the watcher
    path = _unsupported_zip(tmp_path / name)
    assert looks_incomplete(path) is None
    summary = _watch_once(tmp_path, _FailingRunner(AssertionError("never run"), check=True))
    assert summary.failed == (name,) and summary.retrying == ()
    text = (tmp_path / ".failed" / Path(name).stem / "REPORT.txt").read_text(encoding="utf-8")
    assert "unusable" in text and "zip file version 8.0" in text, text
