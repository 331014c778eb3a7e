"""A run's scratch space: one private folder under the working folder, gone when the run ends and, after
a crash, removed by the next run.

Composed documents, LibreOffice's profiles and what it writes hold names, ID numbers and phones: they
must not sit in a world-visible ``/tmp`` nor outlive a run killed with ``kill -9`` (issue 21, item 7).
So a run works in ``<root>/run-<tag>-<random>/`` (``core.processes`` tags; the root and every run's
folder 0700, under ``var/scratch`` by default), and each new run first removes the folders of runs whose
process is gone: never one of a run still alive, whatever its pid has become since.

While a run's folder exists it is also the process's temporary folder (``tempfile.tempdir``), so the
temporary files of the libraries a run uses (seal stamping, poppler) land there too.

What a run leaves outside its folder because it cannot choose where it goes: LibreOffice binds its
``OSL_PIPE_*`` sockets in ``/tmp`` whatever ``TMPDIR`` says. Their paths are listed in ``*.sockets`` files
in the run's folder, and whoever removes the folder removes those sockets too, if nothing listens on them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from core.processes import process_tag, tag_alive

logger = logging.getLogger(__name__)

PREFIX = "run-"
SOCKETS_SUFFIX = ".sockets"

_tempdir_lock = threading.Lock()
_active: list[str] = []  # run folders open in this process, the newest last
_outer_tempdir: str | None = None


@contextlib.contextmanager
def run_scratch(root: Path) -> Iterator[Path]:
    """A new private folder for this run under ``root``, removed on exit; the folders of runs no longer
    alive are removed first."""
    root = Path(root).absolute()
    _private_root(root)
    remove_abandoned(root)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{process_tag() or 'untagged'}-", dir=root))
    _push_tempdir(folder)
    try:
        yield folder
    finally:
        _pop_tempdir(folder)
        remove_run(folder)


def _private_root(root: Path) -> None:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        root.chmod(0o700)


def remove_abandoned(root: Path) -> int:
    """Remove the scratch folders under ``root`` of runs whose process is gone; how many."""
    removed = 0
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        tag = entry.name[len(PREFIX) :].rpartition("-")[0]
        if tag_alive(tag) is False:  # None (cannot tell, another machine or container): left alone
            remove_run(Path(entry.path))
            removed += 1
    if removed:
        logger.info("removed the scratch folders of %d runs that are no longer alive", removed)
    return removed


def remove_run(folder: Path) -> None:
    """Remove a run's folder and the sockets it lists."""
    with contextlib.suppress(OSError):
        for listing in folder.glob(f"*{SOCKETS_SUFFIX}"):
            remove_sockets(Path(line) for line in listing.read_text(encoding="utf-8").splitlines() if line)
    shutil.rmtree(folder, ignore_errors=True)


def list_sockets(listing: Path, paths: Iterable[Path]) -> None:
    """Add ``paths`` to ``listing`` (a ``*.sockets`` file in a run's folder): sockets outside the folder
    to remove with it. Best effort: a socket not listed is only a socket left in /tmp."""
    with contextlib.suppress(OSError):
        fd = os.open(listing, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, "".join(f"{path}\n" for path in paths).encode())
        finally:
            os.close(fd)


def remove_sockets(paths: Iterable[Path]) -> None:
    """Unlink each path that is a Unix socket of ours nobody listens on any more (left by a killed
    LibreOffice); anything else is left alone."""
    for path in paths:
        try:
            info = path.lstat()
        except OSError:
            continue
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(str(path))
            except ConnectionRefusedError:
                path.unlink(missing_ok=True)
            except OSError:
                pass


def create_private(path: Path) -> BinaryIO:
    """A new file at ``path``, open for writing, readable by its owner alone (0600): for the documents a
    run composes, which hold personal data."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb")


def _push_tempdir(folder: Path) -> None:
    global _outer_tempdir
    with _tempdir_lock:
        if not _active:
            _outer_tempdir = tempfile.tempdir
        _active.append(str(folder))
        tempfile.tempdir = str(folder)


def _pop_tempdir(folder: Path) -> None:
    # runs may end in another order than they began (two sessions in one process): the newest still open
    # keeps the temporary folder, never one already removed
    with _tempdir_lock:
        _active.remove(str(folder))
        tempfile.tempdir = _active[-1] if _active else _outer_tempdir
