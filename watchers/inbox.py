"""The inbox folder: what in it is a batch, when a batch is complete, and where it goes afterwards.

Layout (everything the watcher owns starts with a dot, so it is never mistaken for a batch)::

    INBOX/
      2026-11-23-a.jsonl          a single-file batch (.jsonl, .csv, .xlsx): records only, no images
      2026-11-23-b.zip            a zipped batch: one batch file plus its images
      2026-11-23-c/               a folder batch: one batch file, its images, and READY, written last
        batch.jsonl  images/…  READY
      .done/<batch>/              filed: the original batch as it arrived, report.json, REPORT.txt
      .failed/<batch>/            unusable, or some records rejected: the same layout
      .work/                      the watcher's scratch (copies, unpacked zips); emptied on start
      .watch.lock                 held (flock) by the one watcher of this inbox

Ignored everywhere: dot-files, temporary names (``*.part``, ``*.tmp``, ``~$*``, ``.~lock*``, …) and OS
clutter (``.DS_Store``, ``Thumbs.db``, ``desktop.ini``), as paperless-ngx's consumer does.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.errors import BatchUnreadable, InboxLocked, UsageError
from pipeline.batchfile import SUFFIXES
from pipeline.report import BatchReport

logger = logging.getLogger(__name__)

READY = "READY"
DONE = ".done"
FAILED = ".failed"
WORK = ".work"
LOCK = ".watch.lock"
ZIP_SUFFIX = ".zip"

_CLUTTER = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "__macosx"}
# what copy tools, browsers and editors call a file they have not finished writing
_TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".filepart", "~")
_TAIL = 1 << 20

EntryKind = Literal["file", "zip", "folder"]


def is_ignored(name: str) -> bool:
    """True for names that are never a batch: dot-files, temporary names, OS clutter."""
    lower = name.lower()
    return name.startswith((".", "~$")) or lower in _CLUTTER or lower.endswith(_TEMPORARY_SUFFIXES)


@dataclass(frozen=True)
class Entry:
    """One batch in the inbox, as found at its top level."""

    name: str
    path: Path
    kind: EntryKind

    @property
    def stem(self) -> str:
        """The name its ``.done``/``.failed`` folder is called after: ``batch.jsonl`` → ``batch``."""
        return self.name if self.kind == "folder" else Path(self.name).stem or self.name


@dataclass(frozen=True)
class Skipped:
    """A top-level name that is not a batch and is left alone (logged once)."""

    name: str
    why: str


Signature = tuple[Any, ...]


class InboxLock:
    """``flock`` on ``INBOX/.watch.lock``, held for the watcher's life: one watcher per inbox.

    The kernel drops the lock when the process dies, even by ``kill -9``, so a stale lock file never
    blocks a restart. The file holds the holder's pid, for the message the second watcher gives.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``InboxLocked`` (exit 2) naming the watcher that holds it."""
        try:  # Python opens it O_CLOEXEC: LibreOffice, started later, does not inherit the lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UsageError(
                f"cannot create the lock file {self.path}: {e.strerror}",
                hint="the watcher needs write access to the inbox",
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InboxLocked(
                    f"another watcher is already running on {self.path.parent} (pid {holder})",
                    hint="one watcher per inbox: stop the other one, or watch another folder",
                ) from None
            raise InboxLocked(f"cannot lock {self.path}: {e.strerror}") from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> InboxLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class Inbox:
    """The inbox folder and the watcher's own sub-folders in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done_dir = root / DONE
        self.failed_dir = root / FAILED
        self.work_dir = root / WORK

    def lock(self) -> InboxLock:
        return InboxLock(self.root / LOCK)

    def prepare(self) -> None:
        """Create ``.done``, ``.failed`` and ``.work``, and empty ``.work`` (scratch of a crashed watcher).

        Call only while holding the lock: another watcher's scratch would be pulled from under it.
        """
        for folder in (self.done_dir, self.failed_dir, self.work_dir):
            try:
                folder.mkdir(exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create {folder}: {e.strerror}") from e
        for leftover in self.work_dir.iterdir():
            logger.info("removing %s, left in .work by an earlier watcher", leftover.name)
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    # --- what is there --------------------------------------------------------------------------------

    def scan(self) -> tuple[list[Entry], list[Skipped]]:
        """The batches at the inbox's top level, and the names that are not batches (left alone)."""
        entries: list[Entry] = []
        skipped: list[Skipped] = []
        with os.scandir(self.root) as it:
            for item in it:
                if is_ignored(item.name):
                    continue
                path = Path(item.path)
                if item.is_symlink():
                    skipped.append(Skipped(item.name, "a symbolic link, not a batch"))
                elif item.is_dir(follow_symlinks=False):
                    entries.append(Entry(item.name, path, "folder"))
                elif not item.is_file(follow_symlinks=False):
                    skipped.append(Skipped(item.name, "not a regular file"))
                elif path.suffix.lower() in SUFFIXES:
                    entries.append(Entry(item.name, path, "file"))
                elif path.suffix.lower() == ZIP_SUFFIX:
                    entries.append(Entry(item.name, path, "zip"))
                else:
                    skipped.append(Skipped(item.name, "not a batch (.jsonl, .csv, .xlsx, .zip or a folder)"))
        return entries, skipped

    @staticmethod
    def signature(entry: Entry) -> Signature | None:
        """What must not change between two looks: inode, size and mtime of the file, or of every file in
        the folder. ``None`` when the entry is gone or is no longer what it was (a regular file, a folder).
        """
        try:
            st = entry.path.lstat()
        except FileNotFoundError:
            return None
        if entry.kind != "folder":
            return ("f", st.st_ino, st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None
        if not stat.S_ISDIR(st.st_mode):
            return None
        items: list[tuple[str, int, int, int]] = []
        for folder, dirs, files in os.walk(entry.path):
            dirs.sort()
            for name in sorted(files) + dirs:
                path = os.path.join(folder, name)
                try:
                    s = os.lstat(path)
                except FileNotFoundError:
                    continue
                size = s.st_size if stat.S_ISREG(s.st_mode) else 0
                items.append((os.path.relpath(path, entry.path), stat.S_IFMT(s.st_mode), size, s.st_mtime_ns))
        return ("d", st.st_ino, tuple(items))

    def not_ready(self, entry: Entry, *, grace: float, now: float) -> str | None:
        """Why a stable entry is not complete yet, or ``None`` when it may be taken.

        A folder needs ``READY``. A file held open for writing by another program on this machine is
        still being written, whatever its quiet time. A file that looks cut short (see
        ``looks_incomplete``) waits until its mtime is ``grace`` seconds old; after that it is taken as
        it is and the pipeline judges it (a truncated last line is rejected with its line number).
        """
        if entry.kind == "folder":
            if not (entry.path / READY).is_file():
                return f"waiting for {READY}"
            for folder, _dirs, files in os.walk(entry.path):
                for name in files:
                    if open_for_writing(Path(folder, name)):
                        return f"{Path(folder, name).relative_to(entry.path)} is still open for writing"
            return None
        if open_for_writing(entry.path):
            return "still open for writing by another program"
        reason = looks_incomplete(entry.path)
        if reason is None:
            return None
        try:
            age = now - entry.path.stat().st_mtime
        except FileNotFoundError:
            return "gone"
        return reason if age < grace else None

    @staticmethod
    def batch_file(folder: Path) -> Path:
        """The one batch file at the top of a folder batch, or ``BatchUnreadable`` saying what is wrong."""
        found = sorted(
            p
            for p in folder.iterdir()
            if not is_ignored(p.name) and p.suffix.lower() in SUFFIXES and p.is_file() and not p.is_symlink()
        )
        if len(found) != 1:
            listed = ", ".join(p.name for p in found) or "none"
            raise BatchUnreadable(
                f"folder batch {folder.name} must hold exactly one batch file (.jsonl, .csv or .xlsx) at its "
                f"top level; found: {listed}",
                hint="one batch per folder, its images beside it, READY written last",
            )
        return found[0]

    # --- scratch and filing away ------------------------------------------------------------------

    def new_workdir(self, entry: Entry) -> Path:
        """A fresh private folder under ``.work/`` for one attempt at ``entry``."""
        path = self.work_dir / f"{entry.stem}-{secrets.token_hex(4)}"
        path.mkdir(mode=0o700)
        return path

    def file_away(
        self, entry: Entry, *, failed: bool, report: dict[str, Any] | BatchReport, summary: str
    ) -> Path:
        """Move ``entry`` to ``.done/<stem>/`` (or ``.failed/<stem>/``) beside ``report.json`` and
        ``REPORT.txt``; return that folder.

        A taken name gets a suffix (``batch``, ``batch-2``, …): nothing is overwritten. The reports are
        written first and the batch moved last, so a crash in between leaves the batch in the inbox (it
        is run again; its records are already archived) rather than a filed batch without its reports.
        The reports are written in ``.work/`` and their folder renamed into place, so whoever looks in
        ``.done/`` never sees a batch's folder without them.
        """
        staged = self.new_workdir(entry)
        if isinstance(report, BatchReport):  # streamed from its spool: a long batch's report is never whole
            report.write(staged / "report.json")
        else:
            _write(staged / "report.json", json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        _write(staged / "REPORT.txt", summary)
        parent = self.failed_dir if failed else self.done_dir
        staged.chmod(stat.S_IMODE(parent.stat().st_mode))  # as the folder it goes in, not private
        target = _rename_to_free_name(staged, parent, entry.stem)
        os.rename(entry.path, target / entry.name)
        _fsync_dir(target)
        _fsync_dir(parent)
        _fsync_dir(self.root)
        return target


def _rename_to_free_name(folder: Path, parent: Path, stem: str) -> Path:
    """Rename ``folder`` to ``parent/stem``, or ``stem-2``, ``stem-3``, … whichever is free first."""
    n = 1
    while True:
        candidate = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            os.rename(folder, candidate)  # a taken name holds a filed batch: the rename refuses it
            return candidate
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise
            n += 1


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- completeness signals beyond a quiet period ----------------------------------------------------


def open_for_writing(path: Path) -> bool | None:
    """True when some process on this machine has ``path`` open for writing; ``None`` when unknown.

    A read lease (``F_SETLEASE``) is refused with ``EAGAIN`` exactly when the file is open for writing
    anywhere. Leases need the file's owner (or ``CAP_LEASE``) and a local file system; otherwise (files
    dropped over SMB/NFS by another user) this says ``None`` and the quiet period alone decides.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        # a writer opening the file while the lease is held makes the kernel signal the holder, SIGIO by
        # default, whose default action terminates the process: ask for SIGWINCH (ignored) instead
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGWINCH)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as e:
        return True if e.errno == errno.EAGAIN else None
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def looks_incomplete(path: Path) -> str | None:
    """Why a batch file looks cut short, or ``None``.

    A copy that pauses longer than the settle delay is quiet but not finished; its content shows it:

    - text batches (``.jsonl``, ``.csv``): empty, or ending in NUL bytes (a copy that pre-allocated the
      file's size, as Windows Explorer does, and is still filling it), or a last line without its line
      break (for JSON Lines: unless that line is already a whole JSON value). NUL bytes *inside* the text
      mean a binary file, which is complete as such: the pipeline refuses it at once.
    - zips (``.zip``, ``.xlsx``): no readable central directory, which a zip writes at its very end.
    """
    suffix = path.suffix.lower()
    try:
        if suffix in (ZIP_SUFFIX, ".xlsx"):
            try:
                with zipfile.ZipFile(path):
                    return None
            except (zipfile.BadZipFile, EOFError, ValueError):
                return "not a complete zip yet (no central directory at its end)"
            except (NotImplementedError, RuntimeError):  # whole, but of a kind zipfile cannot read
                return None  # the pipeline refuses it; raised here, it stopped the watcher itself
        size = path.stat().st_size
        if size == 0:
            return "empty"
        with path.open("rb") as fh:
            head = fh.read(65536)
            fh.seek(max(0, size - _TAIL))
            tail = fh.read()
    except OSError as e:
        return f"cannot be read yet ({e.strerror})"
    if tail.endswith(b"\x00"):
        return "ends in NUL bytes (a pre-allocated copy still being filled)"
    if b"\x00" in head.rstrip(b"\x00"):
        return None  # binary: refused whole by the pipeline, no point in waiting
    if tail.endswith(b"\n"):
        return None
    if suffix == ".jsonl":
        last = tail.rsplit(b"\n", 1)[-1]
        try:
            json.loads(last)
            return None
        except ValueError:
            pass
    return "its last line is not finished"
