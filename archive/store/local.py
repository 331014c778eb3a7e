"""``LocalStore``: the embedded default, a folder of read-only files published without overwriting."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from archive.store.base import (
    DEFAULT_CONTENT_TYPE,
    ITEM_ERRORS,
    Leftover,
    ObjectInfo,
    PutItem,
    PutOutcome,
    PutResult,
    aware_utc,
    check_key,
    check_prefix,
    check_retention,
    normal_sha256,
    now_utc,
    verified_for_get,
    verified_for_put,
)
from core.errors import (
    ObjectConflict,
    ObjectCorrupt,
    ObjectMissing,
    RetentionViolation,
    StoreError,
    UnsafeKey,
)
from core.manifest import Hashed
from core.processes import process_tag, tag_alive

logger = logging.getLogger(__name__)

_META_DIR = ".meta"
_TEMP_SUFFIX = ".tmp"
_JOURNAL_DIR = ".writing"
# A writer this process cannot judge (another machine or container) is taken for gone once its journal
# has not changed for this long: no put takes a day.
_UNKNOWN_WRITER_STALE = 24 * 3600.0


@dataclass(frozen=True)
class _Sidecar:
    """What LocalStore keeps next to each object, in ``<root>/.meta/<key>.json``."""

    sha256: str
    size: int
    retain_until: datetime | None
    content_type: str

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "sha256": self.sha256,
                "size": self.size,
                "retain_until": self.retain_until.isoformat() if self.retain_until else None,
                "content_type": self.content_type,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> _Sidecar:
        doc = json.loads(raw)
        until = doc.get("retain_until")
        return cls(
            sha256=normal_sha256(doc["sha256"]),
            size=int(doc["size"]),
            retain_until=aware_utc(datetime.fromisoformat(until), "retain_until") if until else None,
            content_type=str(doc.get("content_type") or DEFAULT_CONTENT_TYPE),
        )


def _load_syncfs() -> Callable[[int], None] | None:
    """libc's ``syncfs(2)`` (Linux; Python has no ``os.syncfs``), raising OSError; None where absent."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if function(fd) == -1:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    return syncfs


_LIBC_SYNCFS = _load_syncfs()  # looked up once


class _Barriers:
    """The two durability barriers of one ``put_many``: ``syncfs`` where there is one, else fsyncs.

    With ``syncfs`` each barrier is one call per file system the batch writes to (an fd on a folder of
    each, opened before anything is written there: syncfs reports the write-back errors seen since its
    fd was opened). Without it, the first barrier fsyncs every temp file and the second every folder
    that got a new name, which is what ``put`` does object by object, minus the repeats.
    """

    def __init__(self, files: FileSystem) -> None:
        self._files = files
        self._use_syncfs = files.has_syncfs
        self._fds: dict[int, int] = {}  # st_dev -> an open folder on that file system
        self._watched: set[Path] = set()

    def watch(self, folder: Path) -> None:
        """Note a folder about to receive files (before anything is written to it)."""
        if not self._use_syncfs or folder in self._watched:
            return
        device = os.stat(folder).st_dev
        if device not in self._fds:
            self._fds[device] = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        self._watched.add(folder)

    def _sync_all(self) -> None:
        for fd in self._fds.values():
            self._files.syncfs(fd)

    def files(self, paths: Iterable[Path]) -> None:
        """Barrier 1: the bytes (and mode) of these freshly written files are durable."""
        if self._use_syncfs:
            self._sync_all()
        else:
            for path in paths:
                self._files.fsync_path(path)

    def names(self, folders: Iterable[Path]) -> None:
        """Barrier 2: the names just linked or renamed into these folders are durable."""
        if self._use_syncfs:
            self._sync_all()
        else:
            for folder in folders:
                self._files.fsync_path(folder)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


@dataclass
class _Staged:
    """One item of a ``put_many`` on its way: checked, then written to temp files, then published."""

    index: int
    key: str
    data: bytes
    path: Path
    meta_path: Path
    sidecar: _Sidecar
    temp: Path | None = None
    meta_temp: Path | None = None


def _clash_rounds(staged: Sequence[_Staged]) -> list[list[_Staged]]:
    """Split a batch into rounds published one after the other, so that an item comes after every
    earlier item with the same key or a key on its path (``a`` and ``a/b``): those outcomes depend on
    which was published first, and a round publishes its items all at once."""
    exact: dict[str, int] = {}  # key -> last round it is in
    below: dict[str, int] = {}  # folder key -> last round of a key under it
    rounds: list[list[_Staged]] = []
    for item in staged:
        parts = item.key.split("/")
        ancestors = ["/".join(parts[:n]) for n in range(1, len(parts))]
        after = max(
            [exact.get(item.key, -1), below.get(item.key, -1), *(exact.get(a, -1) for a in ancestors)]
        )
        number = after + 1
        if number == len(rounds):
            rounds.append([])
        rounds[number].append(item)
        exact[item.key] = number
        for a in ancestors:
            below[a] = max(below.get(a, -1), number)
    return rounds


# Objects this large go to disk bypassing the page cache (O_DIRECT), in aligned pieces through one
# reused buffer per thread: on virtual machines each page a buffered write puts into the cache is a fresh
# page of the guest, which costs the kernel more than the rest of filing the object (docs/performance.md,
# bench/put_bench.py). Durability is unchanged: the barriers (syncfs, or fsync) commit ext4's or XFS's
# journal with a flush of the disk's cache, which covers what was written direct as well as what went
# through the cache.
_DIRECT_FROM = 64 * 1024
_DIRECT_ALIGN = 4096  # file offsets, lengths and the buffer's address must be multiples of the block
_DIRECT_PIECE = 4 << 20
_direct_buffers = threading.local()


class FileSystem:
    """The file-system calls that ``LocalStore``'s publishing and durability rest on, in one object a
    store is given (``LocalStore(root, files=...)``): writing temp files, the fsync or syncfs barriers,
    the links and renames that publish.

    The default makes the real calls. Its options take the paths other systems take (``syncfs=False``:
    the barriers fsync file by file, as where libc has no syncfs(2); ``direct=False``: large objects go
    through the page cache, as where there is no O_DIRECT); bench/put_bench.py measures them. A subclass
    may record the calls or fail chosen ones: tests inject faults here rather than patching ``os``.
    """

    direct_from = _DIRECT_FROM  # objects of at least this many bytes are written direct (O_DIRECT)
    direct_piece = _DIRECT_PIECE  # bytes per direct write (the reused buffer's size)

    def __init__(self, *, syncfs: bool = True, direct: bool = True) -> None:
        self.has_syncfs = syncfs and _LIBC_SYNCFS is not None
        self.direct = direct and hasattr(os, "O_DIRECT")

    # the calls (override these to record or fail them)

    def syncfs(self, fd: int) -> None:
        """syncfs(2) on the file system of ``fd``; OSError for the write-back errors it reports."""
        if _LIBC_SYNCFS is None:
            raise OSError(errno.ENOSYS, "syncfs is not available on this system")
        _LIBC_SYNCFS(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def link(self, source: Path, target: Path) -> None:
        """A second name for ``source``; FileExistsError if ``target`` exists (never replaced)."""
        os.link(source, target)

    def replace(self, source: Path, target: Path) -> None:
        os.replace(source, target)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def set_flags(self, fd: int, flags: int) -> None:
        """``fcntl(F_SETFL)``: how direct writes are switched on and off."""
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)

    # built on the calls

    def fsync_path(self, path: Path) -> None:
        """fsync a file or a folder (a folder: the names made in it) by its path."""
        fd = os.open(path, os.O_RDONLY)
        try:
            self.fsync(fd)
        finally:
            os.close(fd)

    def write_all(self, fd: int, data: bytes) -> int:
        """Write ``data`` to ``fd``, a new empty file opened for writing; the number of bytes that went to
        disk direct (``direct_from``), the rest (the last partial block, or all of it on a file system
        that refuses direct I/O) through the page cache as usual."""
        view = memoryview(data)
        direct = self.write_direct(fd, view) if self.direct and len(view) >= self.direct_from else 0
        view = view[direct:]
        while view:
            view = view[self.write(fd, view) :]
        return direct

    def write_direct(self, fd: int, view: memoryview) -> int:
        """Write the whole blocks of ``view`` at the start of ``fd`` with O_DIRECT; how many bytes were
        written (0 when the file system refuses direct I/O). ``fd`` is left as it was opened."""
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            self.set_flags(fd, flags | os.O_DIRECT)
        except OSError as e:
            if e.errno == errno.EINVAL:  # a file system without direct I/O
                return 0
            raise
        done = 0
        try:
            buffer = _direct_buffer()
            whole = len(view) - len(view) % _DIRECT_ALIGN
            while done < whole:
                size = min(_DIRECT_PIECE, whole - done)
                buffer[:size] = view[done : done + size]
                try:
                    written = self.write(fd, memoryview(buffer)[:size])
                except OSError as e:
                    if e.errno == errno.EINVAL and done == 0:  # refused after all: write it buffered
                        return 0
                    raise
                done += written
                if written != size:  # short (a full disk, say): the buffered rest reports why
                    break
        finally:
            self.set_flags(fd, flags)
        return done


def _direct_buffer() -> mmap.mmap:
    """This thread's page-aligned buffer for direct writes, mapped once and reused: reused pages cost
    nothing to touch again."""
    buffer = getattr(_direct_buffers, "buffer", None)
    if buffer is None:
        buffer = _direct_buffers.buffer = mmap.mmap(-1, _DIRECT_PIECE)
    return buffer


class _Journal:
    """The temp files one thread of one process has under way in a store, so that a later process can
    remove them if this one is killed first (issue 21, item 7).

    One relative path a line in ``<root>/.writing/<tag>.<thread>`` (``core.processes`` tags), each
    written before its temp file is created; emptied when the thread's outermost put ends, its temp
    files removed by then. One write per temp file; nothing is fsynced (``put_many``'s ``syncfs``
    barrier covers it; a power cut may cost a line, and the audit still lists what it named).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pid = os.getpid()
        self.depth = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._dirty = False
        self.tag = process_tag()

    def note(self, temp: Path) -> None:
        if self.tag is None:  # no way to tell later whether this writer is gone: nothing to record
            return
        if self._fd is None:
            folder = self.root / _JOURNAL_DIR
            folder.mkdir(exist_ok=True)
            self._path = folder / f"{self.tag}.{threading.get_native_id()}"
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.write(self._fd, f"{temp.relative_to(self.root)}\n".encode())
        self._dirty = True

    def done(self) -> None:
        if self._dirty and self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        self._dirty = False

    def __del__(self) -> None:
        # the thread has ended (or the store is gone): with nothing under way, no journal is left behind
        if self._fd is not None and self.pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
                if not self._dirty:
                    os.unlink(self._path)


def _writer_of(temp_name: str) -> str:
    """The writer's tag in a temp file's name, ``.<name>.<tag>.<token>.tmp`` (``_write_temp``)."""
    parts = temp_name[: -len(_TEMP_SUFFIX)].split(".")
    return ".".join(parts[-4:-1])


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LocalStore:
    """Objects as read-only files under ``root``, each with a JSON sidecar under ``root/.meta``.

    Publishing is atomic and never overwrites: the bytes go to a temp file in the target folder, are
    fsynced and made read-only (0o444), then hard-linked to the final name, which fails if the name
    exists. So a crashed or concurrent writer never leaves a half file under a key, and of two writers
    with different bytes exactly one wins. Only the winner then moves its sidecar (written and fsynced
    beforehand) into place, so a loser can never put its hash next to the winner's bytes. A crash
    between the two steps leaves an object without a sidecar: ``put`` of the same bytes repairs it,
    ``get`` then needs the index's hash, and ``delete`` refuses it (its retention is unknown).

    ``put_many`` publishes a batch the same way with two ``syncfs`` barriers for the whole batch in
    place of four fsyncs per object (see there). ``put`` keeps its own fsyncs: they touch only its
    files, where ``syncfs`` would also wait for every other dirty file on the file system.

    Temp files start with ``.`` and end with ``.tmp``; ``list`` skips them and the ``.meta`` folder.
    The folder must be on a file system with hard links (any local Linux file system, NFS).

    ``files``: the file-system calls to make (``FileSystem``; the real ones by default).
    """

    def __init__(self, root: Path | str, *, files: FileSystem | None = None) -> None:
        self.root = Path(root).expanduser().absolute()
        self.files = files or FileSystem()  # the file-system calls publishing rests on (see FileSystem)
        self._journals = threading.local()

    def describe(self) -> str:
        """The store's folder as a ``file://`` URL."""
        return self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({self.describe()})"

    # paths

    def _object_path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _sidecar_path(self, key: str) -> Path:
        return self.root / _META_DIR / f"{key}.json"

    def _read_sidecar(self, key: str) -> _Sidecar | None:
        try:
            raw = self._sidecar_path(key).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return _Sidecar.from_json(raw)
        except (ValueError, KeyError, TypeError) as e:
            logger.warning("sidecar of %s in %s is unreadable (%s); treating it as missing", key, self, e)
            return None

    @contextlib.contextmanager
    def _io(self, action: str) -> Iterator[None]:
        """Turn the file system's failures (permissions, a full or read-only disk) into StoreError."""
        try:
            yield
        except OSError as e:
            raise StoreError(
                f"cannot {action} in the object store {self.describe()}: {e.strerror or type(e).__name__}",
                hint="check that the archive folder exists, is writable and has free space",
            ) from e

    def _journal(self) -> _Journal:
        journal = getattr(self._journals, "journal", None)
        if journal is None or journal.pid != os.getpid():  # a forked child keeps its own
            journal = self._journals.journal = _Journal(self.root)
        return journal

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around a put: its temp files are journalled, and the journal emptied when the outermost ends."""
        journal = self._journal()
        journal.depth += 1
        try:
            yield
        finally:
            journal.depth -= 1
            if journal.depth == 0:
                journal.done()

    def _write_temp(self, folder: Path, name: str, data: bytes, *, sync: bool = True) -> Path:
        """Write ``data`` to a fresh read-only temp file in ``folder`` and return its path; fsynced
        unless ``sync`` is False (``put_many``, whose barrier makes the whole batch durable at once).
        Its name carries the writer's tag, so that the audit can tell a crash's leftover from a put
        under way, and it is journalled first (``_Journal``)."""
        journal = self._journal()
        writer = f"{journal.tag}." if journal.tag else ""
        temp = folder / f".{name}.{writer}{secrets.token_hex(6)}{_TEMP_SUFFIX}"
        journal.note(temp)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            self.files.write_all(fd, data)
            if sync:
                self.files.fsync(fd)
            os.fchmod(fd, 0o444)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return temp

    def _publish_sidecar(self, key: str, temp: Path, meta_path: Path) -> None:
        """Move the sidecar of ``key`` written to ``temp`` into place, ``meta_path`` (its
        ``_sidecar_path``, which the caller has at hand); the caller makes the rename durable."""
        self.files.replace(temp, meta_path)

    # the protocol

    def put(
        self,
        key: str,
        data: bytes,
        *,
        sha256: str | Hashed,
        retain_until: datetime | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> PutResult:
        """Store ``data`` under ``key`` unless the key exists; see the class and module docstrings.

        Same bytes already there: ``created=False`` (the first put's retention stands, and a missing
        sidecar is rebuilt). Other bytes there: ``ObjectConflict``. Stored bytes that no longer match
        their own sidecar: ``ObjectCorrupt`` (never repaired by overwriting).
        """
        path = self._object_path(key)
        digest = verified_for_put(key, data, sha256)
        until = aware_utc(retain_until, "retain_until") if retain_until is not None else None
        sidecar = _Sidecar(sha256=digest, size=len(data), retain_until=until, content_type=content_type)
        with self._io(f"store {key}"), self._writing():
            if path.exists() or path.is_symlink():
                return self._settle_existing(key, path, sidecar)
            meta_path = self._sidecar_path(key)
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as e:
                raise ObjectConflict(f"object key {key} runs through an existing object as a folder") from e
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            temp = self._write_temp(path.parent, path.name, data)
            meta_temp: Path | None = None
            try:
                meta_temp = self._write_temp(meta_path.parent, meta_path.name, sidecar.to_json())
                try:
                    self.files.link(temp, path)
                except FileExistsError:
                    # Another writer published first: judge its bytes like any existing object.
                    return self._settle_existing(key, path, sidecar)
                self.files.fsync_path(path.parent)
                self._publish_sidecar(key, meta_temp, meta_path)
                meta_temp = None
                self.files.fsync_path(meta_path.parent)
            finally:
                temp.unlink(missing_ok=True)
                if meta_temp is not None:
                    meta_temp.unlink(missing_ok=True)
        logger.debug("stored %s (%d bytes) in %s", key, len(data), self)
        return PutResult(key=key, created=True, sha256=digest, size=len(data))

    def put_many(self, items: Sequence[PutItem]) -> list[PutOutcome]:
        """``put`` every item, sharing the durability barriers across the batch; outcomes in input order.

        Each outcome is what ``put`` would have returned for the item, or the error it would have raised
        for that object alone (``ObjectConflict``, ``ObjectCorrupt``, ``UnsafeKey``, ``ValueError``).
        A failure of the folder itself (permissions, a full or read-only disk, a write-back error) raises
        ``StoreError`` for the whole call. The publish protocol is ``put``'s, in phases:

        1. every object and every sidecar goes to its temp file (read-only), without fsync;
        2. barrier 1: ``syncfs(2)`` on the store's file system makes all those bytes durable at once;
        3. each object is hard-linked to its key (never over an existing name: the loser of a race, or
           a key that already holds bytes, is settled exactly as ``put`` settles it) and only then, if
           it won, its sidecar is renamed into place;
        4. barrier 2: one more ``syncfs``, so the new names (links, renames) are durable;
        5. the temp files are removed.

        As durable as ``put``'s four fsyncs per object: no object is linked under its key before its
        bytes are durable (barrier 1 precedes every link), no sidecar names a hash before its object
        exists, and nothing is reported stored before its name is durable (barrier 2 precedes the
        return, and also covers objects found already published, by a crashed run or a racing writer).
        Since Linux 5.8 ``syncfs`` reports write-back errors, which become ``StoreError``; where there
        is no ``syncfs`` (not Linux) the barriers fsync each temp file, then each folder given a name.
        ``syncfs`` flushes the whole file system, other programs' dirty files included: keep the
        archive off the file system of short-lived temp files (LibreOffice's, say) where that matters.

        What a crash (power cut, kill -9) leaves at worst: up to barrier 1, temp files (``.…tmp``,
        which ``list`` skips) and no object; between the barriers, objects whose names may or may not
        have survived, each whole if it did (its bytes were durable before its link), some without
        their sidecar, and, on a file system that does not keep metadata changes in order, perhaps a
        sidecar whose object's link did not survive (nothing reads it; the next put of the key replaces
        it); after barrier 2, temp names of objects already stored. None of it was reported stored,
        and the re-run completes it: ``put``/``put_many`` of the same bytes (``created=False``, the
        missing sidecar rebuilt) or ``recover``.

        Keys that depend on each other's outcome (the same key twice, ``a`` and ``a/b``) are published
        in successive rounds, each with its two barriers, so a later item sees the earlier one stored.
        """
        outcomes: list[PutOutcome | None] = [None] * len(items)
        staged: list[_Staged] = []
        for index, item in enumerate(items):
            try:
                staged.append(self._check_item(index, item))
            except ITEM_ERRORS as e:
                outcomes[index] = e
        if staged:
            barriers = _Barriers(self.files)
            try:
                with self._io("store objects"):
                    self.root.mkdir(parents=True, exist_ok=True)
                    barriers.watch(self.root)
                with self._writing():
                    for batch in _clash_rounds(staged):
                        self._put_round(batch, outcomes, barriers)
            finally:
                barriers.close()
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(items)
        return done

    def _check_item(self, index: int, item: PutItem) -> _Staged:
        path = self._object_path(item.key)
        digest = verified_for_put(item.key, item.data, item.sha256)
        until = aware_utc(item.retain_until, "retain_until") if item.retain_until is not None else None
        sidecar = _Sidecar(
            sha256=digest, size=len(item.data), retain_until=until, content_type=item.content_type
        )
        return _Staged(index, item.key, item.data, path, self._sidecar_path(item.key), sidecar)

    def _put_round(
        self, batch: list[_Staged], outcomes: list[PutOutcome | None], barriers: _Barriers
    ) -> None:
        """Publish items with pairwise independent keys (see ``put_many``); fills their ``outcomes``."""
        started: list[_Staged] = []  # items that may have temp files to remove
        written: list[_Staged] = []  # items whose temp files are all written
        named: set[Path] = set()  # folders that got a new name, or hold an object reported stored
        made: set[Path] = set()
        try:
            # phase 1: temp files, no fsync
            for item in batch:
                with self._io(f"store {item.key}"):
                    try:
                        os.lstat(item.path)
                        exists = True
                    except (FileNotFoundError, NotADirectoryError):
                        exists = False
                    try:
                        if exists:
                            outcomes[item.index] = self._settle_existing(item.key, item.path, item.sidecar)
                            # Reported stored, so barrier 2 covers it too (its writer may have crashed).
                            named.add(item.path.parent)
                            barriers.watch(item.path.parent)
                            continue
                        started.append(item)
                        self._stage(item, made, barriers)
                    except (ObjectConflict, ObjectCorrupt) as e:
                        outcomes[item.index] = e
                        continue
                written.append(item)
            if written:
                with self._io("store objects durably"):
                    barriers.files(
                        path for item in written for path in (item.temp, item.meta_temp) if path is not None
                    )
            # phase 2: link, then (winners only) move the sidecar into place
            try:
                for item in written:
                    named.update((item.path.parent, item.meta_path.parent))
                    with self._io(f"store {item.key}"):
                        outcomes[item.index] = self._publish(item)
            except BaseException:
                with contextlib.suppress(OSError):  # best effort: keep what was linked durable
                    barriers.names(named)
                raise
            if named:
                with self._io("store objects durably"):
                    barriers.names(named)
        finally:
            for item in started:
                for temp in (item.temp, item.meta_temp):
                    if temp is not None:
                        with contextlib.suppress(OSError):
                            temp.unlink(missing_ok=True)

    def _stage(self, item: _Staged, made: set[Path], barriers: _Barriers) -> None:
        """Phase 1 for one new object: its folders, its temp file and its sidecar's, not fsynced."""
        folder = item.path.parent
        if folder not in made:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as e:
                raise ObjectConflict(
                    f"object key {item.key} runs through an existing object as a folder"
                ) from e
            made.add(folder)
            barriers.watch(folder)
        meta_folder = item.meta_path.parent
        if meta_folder not in made:
            meta_folder.mkdir(parents=True, exist_ok=True)
            made.add(meta_folder)
            barriers.watch(meta_folder)
        item.temp = self._write_temp(folder, item.path.name, item.data, sync=False)
        item.meta_temp = self._write_temp(
            meta_folder, item.meta_path.name, item.sidecar.to_json(), sync=False
        )

    def _publish(self, item: _Staged) -> PutOutcome:
        """Phase 2 for one object whose temp files are durable: link it, then move its sidecar."""
        assert item.temp is not None and item.meta_temp is not None
        try:
            self.files.link(item.temp, item.path)
        except FileExistsError:
            # Another writer published first: judge its bytes like any existing object.
            try:
                return self._settle_existing(item.key, item.path, item.sidecar)
            except (ObjectConflict, ObjectCorrupt) as e:
                return e
        self._publish_sidecar(item.key, item.meta_temp, item.meta_path)
        item.meta_temp = None
        logger.debug("stored %s (%d bytes) in %s", item.key, len(item.data), self)
        return PutResult(key=item.key, created=True, sha256=item.sidecar.sha256, size=len(item.data))

    def _settle_existing(self, key: str, path: Path, ours: _Sidecar) -> PutResult:
        if not path.is_file() or path.is_symlink():
            raise ObjectConflict(f"object key {key} is already used as a folder in {self.describe()}")
        # Hashing the stored file (not trusting the sidecar) makes created=False mean what it says.
        actual = _hash_file(path)
        stored = self._read_sidecar(key)
        if stored is not None and stored.sha256 != actual:
            raise ObjectCorrupt(
                f"object {key} in {self.describe()} does not match its SHA-256: the stored bytes were "
                "changed or damaged, and are not replaced",
                hint="restore it from a backup and run the archive audit",
            )
        if actual != ours.sha256:
            raise ObjectConflict(
                f"object {key} already exists in {self.describe()} with other bytes; it was not replaced",
                hint="archived objects are immutable: store a change as a new version",
            )
        if stored is None:
            # Publishing crashed (or raced) between the object and its sidecar: complete it now.
            meta_path = self._sidecar_path(key)
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            temp = self._write_temp(meta_path.parent, meta_path.name, ours.to_json())
            try:
                self.files.link(temp, meta_path)
                self.files.fsync_path(meta_path.parent)
                logger.info("wrote the missing sidecar of %s in %s", key, self)
            except FileExistsError:
                pass  # the winning writer has just published its own
            finally:
                temp.unlink(missing_ok=True)
        return PutResult(key=key, created=False, sha256=actual, size=path.stat().st_size)

    def get(self, key: str, *, sha256: str | None = None) -> bytes:
        """Return the bytes of ``key`` after checking them against ``sha256`` or the stored hash."""
        path = self._object_path(key)
        expected = normal_sha256(sha256) if sha256 is not None else None
        with self._io(f"read {key}"):
            try:
                data = path.read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
                raise ObjectMissing(f"no object {key} in {self.describe()}") from e
            if expected is None:
                stored = self._read_sidecar(key)
                expected = stored.sha256 if stored else None
        return verified_for_get(key, data, expected, self.describe())

    def _info(self, key: str, path: Path) -> ObjectInfo | None:
        try:
            st = path.stat(follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file() or path.is_symlink():
            return None
        stored = self._read_sidecar(key)
        return ObjectInfo(
            key=key,
            size=st.st_size,
            sha256=stored.sha256 if stored else None,
            retain_until=stored.retain_until if stored else None,
            modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def recover(self, key: str, *, retain_until: datetime | None = None) -> ObjectInfo | None:
        """Write the missing sidecar of an object whose publishing was cut off (kill -9 between linking
        the object and moving its sidecar into place).

        The object itself was published whole: it is a hard link to a temp file written and fsynced
        beforehand. So its bytes are hashed as they are and put again, which completes the sidecar (the
        same path ``put`` takes when it meets the half-published object). An object that has its sidecar
        is left alone and its info returned.
        """
        info = self.head(key)
        if info is None or info.sha256 is not None:
            return info
        path = self._object_path(key)
        with self._io(f"read {key}"):
            data = path.read_bytes()
        self.put(key, data, sha256=hashlib.sha256(data).hexdigest(), retain_until=retain_until)
        logger.warning("completed the interrupted publishing of %s in %s", key, self)
        return self.head(key)

    def observed_sha256(self, key: str) -> str | None:
        try:
            return hashlib.sha256(self._object_path(key).read_bytes()).hexdigest()
        except (OSError, UnsafeKey):
            return None

    def head(self, key: str) -> ObjectInfo | None:
        """Size and modification time from the file system, hash and retention from the sidecar."""
        path = self._object_path(key)
        with self._io(f"look up {key}"):
            return self._info(key, path)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the objects under ``prefix`` in key order (byte order, as S3 lists them)."""
        check_prefix(prefix)
        folder_part, _, rest = prefix.rpartition("/")
        start = self.root / folder_part if folder_part else self.root
        base = f"{folder_part}/" if folder_part else ""
        with self._io("list objects"):
            if not start.is_dir():
                return
            yield from self._walk(start, base, rest)

    def _walk(self, folder: Path, base: str, name_prefix: str) -> Iterator[ObjectInfo]:
        entries = []
        with os.scandir(folder) as it:
            for entry in it:
                # Temp files and the sidecar folder start with '.', and no key segment does.
                if entry.name.startswith(".") or not entry.name.startswith(name_prefix):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    entries.append((entry.name + "/", entry))
                elif entry.is_file(follow_symlinks=False):
                    entries.append((entry.name, entry))
        # Sorting folders as "name/" makes the depth-first walk yield keys in plain string order.
        for sort_name, entry in sorted(entries, key=lambda pair: pair[0]):
            key = base + entry.name
            if sort_name.endswith("/"):
                yield from self._walk(Path(entry.path), key + "/", "")
            else:
                info = self._info(key, Path(entry.path))
                if info is not None:
                    yield info

    def leftovers(self) -> Iterator[Leftover]:
        """The temp files under the store (``.…tmp``), in path order: each a put under way, or one that a
        crash cut short (its writer no longer alive), which the next run's ``clear_leftovers`` removes.
        Walks the whole folder, as ``list`` does."""
        with self._io("list temp files"):
            for folder, subfolders, files in os.walk(self.root):
                if folder == str(self.root) and _JOURNAL_DIR in subfolders:
                    subfolders.remove(_JOURNAL_DIR)
                subfolders.sort()
                for name in sorted(files):
                    if not (name.startswith(".") and name.endswith(_TEMP_SUFFIX)):
                        continue
                    path = Path(folder, name)
                    try:
                        st = path.lstat()
                    except FileNotFoundError:
                        continue
                    yield Leftover(
                        path=str(path.relative_to(self.root)),
                        size=st.st_size,
                        modified=datetime.fromtimestamp(st.st_mtime, UTC),
                        writer_alive=tag_alive(_writer_of(name)),
                    )

    def clear_leftovers(self) -> int:
        """Remove the temp files that writers killed mid-put left (found through their journals, not by
        walking the store); how many. Journals of live writers are left alone, and so are those of writers
        this process cannot judge (another machine or container) until untouched for a day."""
        folder = self.root / _JOURNAL_DIR
        removed = 0
        with self._io("remove temp files of interrupted writers"):
            try:
                journals = sorted(os.scandir(folder), key=lambda e: e.name)
            except FileNotFoundError:
                return 0
            for journal in journals:
                alive = tag_alive(journal.name.rpartition(".")[0])
                if alive or (alive is None and time.time() - journal.stat().st_mtime < _UNKNOWN_WRITER_STALE):
                    continue
                lines = Path(journal.path).read_text(encoding="utf-8", errors="replace").splitlines()
                for line in lines:
                    temp = self._journalled_temp(line)
                    if temp is not None and temp.is_file() and not temp.is_symlink():
                        temp.unlink()
                        removed += 1
                Path(journal.path).unlink(missing_ok=True)
        if removed:
            logger.warning("removed %d temp files of writers killed mid-put in %s", removed, self)
        return removed

    def _journalled_temp(self, line: str) -> Path | None:
        """The temp file a journal line names, if it names one inside the store (never anything else)."""
        parts = Path(line).parts
        if not parts or Path(line).is_absolute() or any(p in ("", ".", "..") for p in parts):
            return None
        name = parts[-1]
        if not (name.startswith(".") and name.endswith(_TEMP_SUFFIX)):
            return None
        return self.root.joinpath(*parts)

    def delete(self, key: str, *, now: datetime | None = None) -> None:
        """Remove ``key`` and its sidecar if its retention has passed at ``now`` (default: the clock).

        Refused with ``RetentionViolation`` inside retention, and also when the sidecar is missing
        (retention unknown: re-put the same bytes with ``retain_until`` first).
        """
        path = self._object_path(key)
        moment = now_utc(now)
        with self._io(f"delete {key}"):
            if not path.is_file() or path.is_symlink():
                return
            stored = self._read_sidecar(key)
            if stored is None:
                raise RetentionViolation(
                    f"object {key} in {self.describe()} has no metadata, so its retention is unknown",
                    hint="re-put the same bytes with retain_until, then delete",
                )
            check_retention(key, stored.retain_until, moment)
            path.unlink()
            self._sidecar_path(key).unlink(missing_ok=True)
            for folder in (path.parent, self._sidecar_path(key).parent):
                self._prune_empty(folder)
        logger.info("deleted %s from %s (retention ended)", key, self)

    def _prune_empty(self, folder: Path) -> None:
        """Remove folders left empty by a delete, up to (not including) the root and ``.meta``."""
        stop = {self.root, self.root / _META_DIR}
        while folder not in stop and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent
