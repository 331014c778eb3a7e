"""``put_many``: a batch of puts with put's promises, on a real folder (syncfs and fsync paths) and on S3.

The local store's barriers are checked on real files: what exists when each barrier runs, which inodes
were fsynced before their names appeared, and what a crash between the links and the sidecars leaves.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import multiprocessing
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archive.store import FileSystem, LocalStore, ObjectStore, PutItem, PutResult, S3Store
from core.errors import ObjectConflict, ObjectCorrupt, StoreError, UnsafeKey
from core.manifest import sha256_hex
from tests.conftest import Buckets

BASE = "110105/2026/12"


def _record(
    n: int, *, retain_until: datetime | None = None, salt: bytes = b"", base: str = BASE
) -> list[PutItem]:
    """A record's three objects, with sizes a little like the real ones (smaller: tests stay quick)."""
    folder = f"{base}/PAC2026120100{n:04d}/v1-issue"
    parts = {
        "customer.pdf": b"%PDF-1.7 customer " + bytes([n % 256]) * 18_000 + salt,
        "bundle.pdf": b"%PDF-1.7 bundle " + bytes([(n + 1) % 256]) * 70_000 + salt,
        "manifest.json": b'{"record": %d}' % n + salt,
    }
    return [
        PutItem(
            f"{folder}/{name}",
            data,
            sha256_hex(data),
            retain_until=retain_until,
            content_type="application/json" if name.endswith(".json") else "application/pdf",
        )
        for name, data in parts.items()
    ]


def _item(key: str, data: bytes, **kwargs: Any) -> PutItem:
    return PutItem(key, data, sha256_hex(data), **kwargs)


def _future(days: int = 30) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def _temps(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".tmp"))


def _assert_whole(store: LocalStore) -> None:
    """Every object in the folder has its sidecar and matches it, and no temp file is left."""
    for info in store.list():
        assert info.sha256 is not None, f"{info.key} has no sidecar"
        assert sha256_hex((store.root / info.key).read_bytes()) == info.sha256
    assert _temps(store.root) == []


# --- both stores -----------------------------------------------------------------------------------


@pytest.fixture(params=["local-syncfs", "local-fsync", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param.startswith("local"):
        return LocalStore(tmp_path / "archive", files=FileSystem(syncfs=request.param == "local-syncfs"))
    endpoint = request.getfixturevalue("moto_endpoint")
    made: Buckets = request.getfixturevalue("buckets")
    return S3Store(bucket=made.plain, prefix="archive", endpoint_url=endpoint)


def test_results_come_back_in_input_order(store: ObjectStore) -> None:
    until = _future()
    items = [item for n in (3, 1, 2) for item in _record(n, retain_until=until)]
    results = store.put_many(items)

    assert [type(r) for r in results] == [PutResult] * len(items)
    assert [(r.key, r.created, r.sha256, r.size) for r in results] == [
        (i.key, True, i.sha256, len(i.data)) for i in items
    ]
    for item in items:
        assert store.get(item.key) == item.data
        info = store.head(item.key)
        assert (info.sha256, info.retain_until) == (item.sha256, until)
    assert store.put_many([]) == []


def test_one_bad_item_never_fails_the_others(store: ObjectStore) -> None:
    same, other = _item(f"{BASE}/P1/v1/a.pdf", b"same"), _item(f"{BASE}/P1/v1/b.pdf", b"first")
    store.put(same.key, same.data, sha256=same.sha256)
    store.put(other.key, other.data, sha256=other.sha256)
    new = _record(7)
    items = [
        new[0],
        same,  # the same bytes again
        _item(other.key, b"second"),  # other bytes under a taken key
        PutItem(f"{BASE}/P1/v1/c.pdf", b"damaged", sha256_hex(b"undamaged")),
        PutItem(f"{BASE}/P1/v1/d.pdf", b"x", "not-a-hash"),
        _item(f"{BASE}/张三/e.pdf", b"x"),  # a key with a name in it: not plain ASCII
        _item(f"{BASE}/P1/v1/f.pdf", b"x", retain_until=datetime(2030, 1, 1)),  # naive time
        new[1],
        new[2],
    ]
    results = store.put_many(items)

    kinds = [type(r) for r in results]
    assert kinds == [
        PutResult,
        PutResult,
        ObjectConflict,
        ObjectCorrupt,
        ValueError,
        UnsafeKey,
        ValueError,
        PutResult,
        PutResult,
    ]
    assert [r.created for r in results if isinstance(r, PutResult)] == [True, False, True, True]
    assert store.get(other.key) == b"first"
    for key in (f"{BASE}/P1/v1/c.pdf", f"{BASE}/P1/v1/d.pdf", f"{BASE}/P1/v1/f.pdf"):
        assert store.head(key) is None
    for item in new:
        assert store.get(item.key) == item.data
    if isinstance(store, LocalStore):
        _assert_whole(store)


def test_the_same_key_twice_is_a_second_put(store: ObjectStore) -> None:
    key, other_key = f"{BASE}/P2/v1/a.pdf", f"{BASE}/P2/v1/b.pdf"
    results = store.put_many(
        [
            _item(key, b"one"),
            _item(other_key, b"first"),
            _item(key, b"one"),
            _item(other_key, b"second"),
            _item(key, b"one"),
        ]
    )
    assert [r.created if isinstance(r, PutResult) else type(r) for r in results] == [
        True,
        True,
        False,
        ObjectConflict,
        False,
    ]
    assert (store.get(key), store.get(other_key)) == (b"one", b"first")


def test_a_bad_first_item_does_not_block_the_key(store: ObjectStore) -> None:
    key = f"{BASE}/P3/v1/a.pdf"
    results = store.put_many([PutItem(key, b"one", sha256_hex(b"two")), _item(key, b"one")])
    assert isinstance(results[0], ObjectCorrupt)
    assert isinstance(results[1], PutResult) and results[1].created is True
    assert store.get(key) == b"one"


# --- S3 specifics ----------------------------------------------------------------------------------


def test_s3_unreachable_raises_for_the_whole_call(aws_env: None) -> None:
    store = S3Store(
        bucket="archive", endpoint_url="http://127.0.0.1:9", connect_timeout=1, read_timeout=1, max_attempts=1
    )
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:9"):
        store.put_many(_record(1))
    # An item's own fault is still its own outcome when it comes first; the store's failure still raises.
    with pytest.raises(StoreError):
        store.put_many([PutItem(f"{BASE}/P/a.pdf", b"x", "bad"), *_record(1)])


def test_s3_put_many_on_a_locked_bucket(moto_endpoint: str, buckets: Buckets, raw_s3: Any) -> None:
    store = S3Store(bucket=buckets.locked, endpoint_url=moto_endpoint)
    until = _future(days=3)
    items = _record(4, retain_until=until)
    assert [r.created for r in store.put_many(items)] == [True, True, True]
    head = raw_s3.head_object(Bucket=buckets.locked, Key=items[1].key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"].astimezone(UTC) == until
    assert [r.created for r in store.put_many(items)] == [False, False, False]


# --- LocalStore: the protocol, barrier by barrier ------------------------------------------------


def test_syncfs_is_there_and_reports_errors() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("syncfs is Linux's")
    files = FileSystem()
    assert files.has_syncfs and not FileSystem(syncfs=False).has_syncfs
    with pytest.raises(OSError) as caught:
        files.syncfs(-1)
    assert caught.value.errno == errno.EBADF


class _Recorder(FileSystem):
    """The store's file-system calls, logging the order of links, sidecar renames, fsyncs and syncfs
    barriers (with what each barrier finds in the folder)."""

    def __init__(self, root: Path, *, syncfs: bool = True) -> None:
        super().__init__(syncfs=syncfs)
        self.events: list[tuple[str, Any]] = []
        self.root = root

    def link(self, source: Path, target: Path) -> None:
        super().link(source, target)
        self.events.append(("link", Path(target)))

    def replace(self, source: Path, target: Path) -> None:
        super().replace(source, target)
        self.events.append(("replace", Path(target)))

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        st = os.fstat(fd)
        self.events.append(("fsync", (st.st_dev, st.st_ino)))

    def syncfs(self, fd: int) -> None:
        self.events.append(("syncfs", self.snapshot()))
        super().syncfs(fd)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every file under the root but the journal of temp files under way (``.writing/``): its size
        and mode, as the barrier finds them."""
        return {
            str(p.relative_to(self.root)): (p.stat().st_size, stat.S_IMODE(p.stat().st_mode))
            for p in self.root.rglob("*")
            if p.is_file() and p.relative_to(self.root).parts[0] != ".writing"
        }

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def _inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def test_syncfs_path_barriers_come_before_links_and_before_the_return(tmp_path: Path) -> None:
    recorder = _Recorder(tmp_path / "archive")
    if not recorder.has_syncfs:
        pytest.skip("no syncfs on this system")
    store = LocalStore(recorder.root, files=recorder)
    items = _record(1) + _record(2)
    results = store.put_many(items)

    assert all(isinstance(r, PutResult) and r.created for r in results)
    # One syncfs before the first link, one after the last sidecar, and no fsync at all.
    assert recorder.kinds() == ["syncfs", *(["link", "replace"] * len(items)), "syncfs"]
    # At barrier 1 every temp file (object and sidecar) is there, whole and read-only; no object yet.
    first = recorder.events[0][1]
    temps = {name: size_mode for name, size_mode in first.items() if name.endswith(".tmp")}
    assert len(temps) == 2 * len(items) and len(first) == len(temps)
    assert sorted(size for size, _ in temps.values()) == sorted(
        [len(i.data) for i in items]
        + [len((store.root / ".meta" / f"{i.key}.json").read_bytes()) for i in items]
    )
    assert {mode for _, mode in temps.values()} == {0o444}
    # At barrier 2 every object and sidecar is in place; after it the temp files are gone.
    last = recorder.events[-1][1]
    assert all(i.key in last and f".meta/{i.key}.json" in last for i in items)
    _assert_whole(store)


def test_fsync_path_fsyncs_each_temp_file_before_linking_and_each_folder_after(tmp_path: Path) -> None:
    recorder = _Recorder(tmp_path / "archive", syncfs=False)
    store = LocalStore(recorder.root, files=recorder)
    items = _record(1) + _record(2)
    results = store.put_many(items)

    assert all(isinstance(r, PutResult) and r.created for r in results)
    kinds = recorder.kinds()
    first_link = kinds.index("link")
    last_publish = max(i for i, kind in enumerate(kinds) if kind in ("link", "replace"))
    before = {inode for kind, inode in recorder.events[:first_link] if kind == "fsync"}
    after = {inode for kind, inode in recorder.events[last_publish:] if kind == "fsync"}
    assert "fsync" not in kinds[first_link:last_publish]
    for item in items:
        # A hard link and a rename keep the inode: these are the very files fsynced before linking.
        assert _inode(store.root / item.key) in before
        assert _inode(store.root / ".meta" / f"{item.key}.json") in before
    folders = {(store.root / i.key).parent for i in items} | {
        (store.root / ".meta" / i.key).parent for i in items
    }
    assert after == {_inode(folder) for folder in folders}
    # One fsync per temp file, then one per folder (4 here), not two per object as put does.
    assert kinds.count("fsync") == 2 * len(items) + len(folders) == 16
    _assert_whole(store)


def test_objects_already_there_still_get_the_second_barrier(tmp_path: Path) -> None:
    """A re-run reports objects a crashed run linked: their names are made durable before it says so."""
    recorder = _Recorder(tmp_path / "archive")
    if not recorder.has_syncfs:
        pytest.skip("no syncfs on this system")
    store = LocalStore(recorder.root, files=recorder)
    items = _record(1)
    store.put_many(items)
    recorder.events.clear()
    assert [r.created for r in store.put_many(items)] == [False, False, False]
    assert recorder.kinds() == ["syncfs"]
    recorder.events.clear()
    # Nothing reported stored (all refused): no barrier at all.
    assert all(isinstance(r, ObjectConflict) for r in store.put_many(_record(1, salt=b"x")))
    assert recorder.kinds() == []


def test_keys_that_depend_on_each_other_go_in_order(tmp_path: Path) -> None:
    """``a`` then ``a/b`` in one call: as two puts, the second runs through an object as a folder."""
    store = LocalStore(tmp_path / "archive")
    results = store.put_many(
        [_item("x/a", b"1"), _item("x/a/b", b"2"), _item("y/a/b", b"3"), _item("y/a", b"4"), _item("z", b"5")]
    )
    assert [r.created if isinstance(r, PutResult) else type(r) for r in results] == [
        True,
        ObjectConflict,
        True,
        ObjectConflict,
        True,
    ]
    assert (store.get("x/a"), store.get("y/a/b"), store.get("z")) == (b"1", b"3", b"5")
    _assert_whole(store)


# --- LocalStore: failures and crashes --------------------------------------------------------------


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """No new names in ``folder``: a mode for ordinary users; root ignores modes, so chattr +i then."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_read_only_root_raises_and_publishes_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    existing = _record(1)
    store.put_many(existing[:1])  # so the first record's folders exist and stay writable
    before = sorted(p for p in store.root.rglob("*"))
    # The first record's new objects can be written in place; the second needs a new folder in the root.
    items = existing[1:] + _record(2, base="310101/2026/12")
    with _read_only(store.root), pytest.raises(StoreError) as caught:
        store.put_many(items)
    assert os.fspath(store.root) in str(caught.value)
    assert sorted(p for p in store.root.rglob("*")) == before  # nothing linked, no temp file left
    _assert_whole(store)
    assert [r.created for r in store.put_many(items)] == [True] * len(items)


def test_a_write_failing_midway_raises_and_publishes_nothing(tmp_path: Path) -> None:
    """A real write error in the middle of phase 1 (EFBIG from RLIMIT_FSIZE, like a full disk)."""
    store = LocalStore(tmp_path / "archive")
    items = [*_record(1), _item(f"{BASE}/PBIG/v1-issue/bundle.pdf", b"\0" * 300_000), *_record(2)]
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, old_limit[1]))
    try:
        with pytest.raises(StoreError) as caught:
            store.put_many(items)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.EFBIG
    assert list(store.list()) == []
    assert _temps(store.root) == []


class _FailingBarrier(FileSystem):
    """syncfs reporting a write-back error (EIO) at its ``barrier``-th call."""

    def __init__(self, barrier: int) -> None:
        super().__init__()
        self.barrier = barrier
        self.calls = 0

    def syncfs(self, fd: int) -> None:
        self.calls += 1
        if self.calls == self.barrier:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().syncfs(fd)


@pytest.mark.parametrize("barrier", [1, 2])
def test_a_failing_barrier_raises(tmp_path: Path, barrier: int) -> None:
    """syncfs reporting a write-back error: before the links nothing is published; after, the call
    still fails (the names may not be durable) and a re-run adopts what is there."""
    files = _FailingBarrier(barrier)
    if not files.has_syncfs:
        pytest.skip("no syncfs on this system")
    store = LocalStore(tmp_path / "archive", files=files)
    items = _record(1)
    with pytest.raises(StoreError, match="Input/output error"):
        store.put_many(items)
    assert _temps(store.root) == []
    if barrier == 1:
        assert list(store.list()) == []
        expected = [True, True, True]
    else:
        _assert_whole(store)
        expected = [False, False, False]
    assert [r.created for r in LocalStore(store.root).put_many(items)] == expected


class _PowerCutAtSidecar(FileSystem):
    """Makes the ``n``-th sidecar rename (0-based) never happen: ``cut`` runs instead."""

    def __init__(self, root: Path, n: int, cut: Callable[[], None]) -> None:
        super().__init__()
        self.meta = root / ".meta"
        self.n = n
        self.cut = cut
        self.renames = 0

    def replace(self, source: Path, target: Path) -> None:
        if self.meta in Path(target).parents:
            self.renames += 1
            if self.renames == self.n + 1:
                self.cut()
        super().replace(source, target)


class _PowerCut(Exception):
    pass


def _raise_power_cut() -> None:
    raise _PowerCut


@pytest.mark.parametrize("repair", ["put_many", "put", "recover"])
def test_crash_between_link_and_sidecar_is_repaired(tmp_path: Path, repair: str) -> None:
    root = tmp_path / "archive"
    until = _future()
    items = _record(1, retain_until=until) + _record(2, retain_until=until)
    with pytest.raises(_PowerCut):
        LocalStore(root, files=_PowerCutAtSidecar(root, 3, _raise_power_cut)).put_many(items)
    store = LocalStore(root)

    # Items 0-2 whole, item 3 linked without its sidecar, items 4-5 not linked.
    half = items[3]
    assert [store.head(i.key) is not None for i in items] == [True] * 4 + [False] * 2
    assert [store.head(i.key).sha256 for i in items[:4]] == [i.sha256 for i in items[:3]] + [None]
    assert store.get(half.key, sha256=half.sha256) == half.data  # its bytes are whole
    with pytest.raises(ObjectCorrupt, match="no recorded SHA-256"):
        store.get(half.key)

    if repair == "put_many":
        results = store.put_many(items)
        assert [r.created for r in results] == [False] * 4 + [True] * 2
    elif repair == "put":
        assert store.put(half.key, half.data, sha256=half.sha256, retain_until=until).created is False
    else:
        info = store.recover(half.key, retain_until=until)
        assert info is not None and info.sha256 == half.sha256
    info = store.head(half.key)
    assert (info.sha256, info.retain_until) == (half.sha256, until)
    assert store.get(half.key) == half.data
    _assert_whole(store)


def test_a_sidecar_whose_object_did_not_survive_is_inert(tmp_path: Path) -> None:
    """The one state put_many's crash can leave that put's cannot (a file system that does not keep
    metadata in order may keep the sidecar rename and lose the link): nothing reads it, put replaces it."""
    store = LocalStore(tmp_path / "archive")
    old, new = _item(f"{BASE}/P9/v1/a.pdf", b"lost bytes"), _item(f"{BASE}/P9/v1/a.pdf", b"new bytes")
    store.put_many([old])
    (store.root / old.key).unlink()
    assert store.head(old.key) is None and list(store.list()) == []
    assert [r.created for r in store.put_many([new])] == [True]
    assert store.head(new.key).sha256 == new.sha256
    assert store.get(new.key) == b"new bytes"


def _crashing_child(root: str, items: list[PutItem], n: int) -> None:
    """In a child process: put_many, killed outright (no finally, no cleanup) at the n-th sidecar."""
    LocalStore(Path(root), files=_PowerCutAtSidecar(Path(root), n, lambda: os._exit(9))).put_many(items)
    os._exit(0)


def test_process_killed_between_link_and_sidecar(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    items = _record(1) + _record(2)
    child = multiprocessing.get_context("spawn").Process(target=_crashing_child, args=(str(root), items, 1))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 9

    store = LocalStore(root)
    # What the killed writer left: one whole object, one without sidecar, and temp files that
    # nothing lists (each a second name of bytes made durable by barrier 1).
    assert [o.key for o in store.list()] == sorted(i.key for i in items[:2])
    assert [store.head(i.key).sha256 for i in items[:2]] == [items[0].sha256, None]
    # Every temp file is still there but item 0's sidecar, which was renamed into place.
    assert len(_temps(root)) == 2 * len(items) - 1

    results = store.put_many(items)
    assert [r.created for r in results] == [False, False, True, True, True, True]
    for item in items:
        assert store.get(item.key) == item.data
    assert sorted(o.key for o in store.list()) == sorted(i.key for i in items)


def test_two_processes_put_many_the_same_keys(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    children = [
        context.Process(target=_racing_child, args=(str(tmp_path), w, barrier, results)) for w in range(2)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in range(2)]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0

    store = LocalStore(tmp_path)
    by_writer = dict(outcomes)
    keys = [i.key for i in _record(0)] + [i.key for i in _record(1)]
    for n, key in enumerate(keys):
        pair = sorted(by_writer[w][n] for w in range(2))
        assert pair == ["conflict", "created"], (key, pair)
        winner = next(w for w in range(2) if by_writer[w][n] == "created")
        assert store.get(key) == next(i.data for i in _writer_items(winner) if i.key == key)
    _assert_whole(store)


def _writer_items(writer: int) -> list[PutItem]:
    return _record(0, salt=bytes([writer])) + _record(1, salt=bytes([writer]))


def _racing_child(root: str, writer: int, barrier: Any, results: Any) -> None:
    store = LocalStore(Path(root))
    barrier.wait()
    outcomes = [
        "created"
        if isinstance(r, PutResult) and r.created
        else "conflict"
        if isinstance(r, ObjectConflict)
        else repr(r)
        for r in store.put_many(_writer_items(writer))
    ]
    results.put((writer, outcomes))


def test_a_hash_made_from_the_same_bytes_is_not_computed_again(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``Hashed`` of the very bytes put is taken as it is (a policy's parts are hashed once); the same
    hash with other bytes, even equal ones, is checked, and a wrong one refused."""
    from archive.store import base
    from core.manifest import hashed

    data = b"%PDF-1.7 customer " + b"\x01" * 50_000
    made = hashed(data)
    computed: list[int] = []
    real = base.sha256_hex
    monkeypatch.setattr(base, "sha256_hex", lambda b: computed.append(len(b)) or real(b))
    first, second = f"{BASE}/P2/v1/customer.pdf", f"{BASE}/P2/v1/copy.pdf"
    [result] = store.put_many([PutItem(first, data, made)])
    assert isinstance(result, PutResult) and result.sha256 == real(data)
    assert len(data) not in computed  # not hashed again for the put
    assert store.get(first, sha256=made.hexdigest) == data  # and what was stored is what was hashed

    equal = bytes(bytearray(data))  # equal content, another object: checked like any hash
    assert equal is not data
    [result] = store.put_many([PutItem(second, equal, made)])
    assert isinstance(result, PutResult) and len(data) in computed
    wrong = base.Hashed(data, real(b"other bytes"))  # a forged pair is never made by hashed(); with
    [result] = store.put_many([PutItem(f"{BASE}/P2/v1/x.pdf", equal, wrong)])  # other bytes: refused
    assert isinstance(result, ObjectCorrupt)


# --- direct writes (O_DIRECT) ----------------------------------------------------------------------

# sizes around the block, the threshold and the buffer's piece: below the threshold, exact blocks, a
# tail, more than one piece
_SIZES = [
    0,
    4_095,
    FileSystem.direct_from - 1,
    FileSystem.direct_from,
    FileSystem.direct_from + 1,
    FileSystem.direct_piece,
    FileSystem.direct_piece * 2 + 12_345,
]


def _direct_allowed(folder: Path) -> bool:
    """Whether ``folder``'s file system takes O_DIRECT at all (tmpfs before Linux 6.6 does not)."""
    if not hasattr(os, "O_DIRECT"):
        return False
    try:
        os.close(os.open(folder / ".probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600))
    except OSError:
        return False
    finally:
        (folder / ".probe").unlink(missing_ok=True)
    return True


class _DirectSpy(FileSystem):
    """Logs (size asked, bytes written direct) of every direct write."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []

    def write_direct(self, fd: int, view: memoryview) -> int:
        done = super().write_direct(fd, view)
        self.calls.append((len(view), done))
        return done


def _pattern(size: int, seed: int) -> bytes:
    """Bytes that differ block to block and object to object, so a block written twice or left from an
    earlier object (the buffer is reused) shows."""
    block = bytes(range(256)) * 16
    return b"".join(bytes([seed]) + i.to_bytes(4, "big") + block[5:] for i in range(size // 4096 + 1))[:size]


@pytest.mark.parametrize("method", ["put_many", "put"])
def test_large_objects_are_written_direct_and_read_back_whole(tmp_path: Path, method: str) -> None:
    spy = _DirectSpy()
    store = LocalStore(tmp_path / "archive", files=spy)
    store.root.mkdir()
    direct = _direct_allowed(store.root)
    # largest first: a smaller object after it must not carry the buffer's leftovers
    sizes = sorted(_SIZES, reverse=True)
    items = [_item(f"{BASE}/P{size}/v1/o.pdf", _pattern(size, n)) for n, size in enumerate(sizes)]
    if method == "put_many":
        assert all(isinstance(r, PutResult) and r.created for r in store.put_many(items))
    else:
        assert all(store.put(i.key, i.data, sha256=i.sha256).created for i in items)
    for item in items:
        assert (store.root / item.key).read_bytes() == item.data
        assert store.get(item.key, sha256=item.sha256) == item.data
    _assert_whole(store)
    large = sorted(size for size in _SIZES if size >= FileSystem.direct_from)[::-1]
    assert [size for size, _ in spy.calls] == large  # only the large objects, the sidecars never
    if direct:
        assert [done for _, done in spy.calls] == [size - size % 4096 for size in large]


class _NoDirect(_DirectSpy):
    """A file system that refuses O_DIRECT (EINVAL), as tmpfs did before Linux 6.6."""

    def set_flags(self, fd: int, flags: int) -> None:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        super().set_flags(fd, flags)


def test_a_file_system_without_direct_writes_gets_buffered_ones(tmp_path: Path) -> None:
    if not FileSystem().direct:
        pytest.skip("no O_DIRECT on this system")
    files = _NoDirect()
    store = LocalStore(tmp_path / "archive", files=files)
    item = _item(f"{BASE}/P1/v1/bundle.pdf", _pattern(300_001, 1))
    assert isinstance(store.put_many([item])[0], PutResult)
    assert files.calls == [(300_001, 0)]
    assert store.get(item.key, sha256=item.sha256) == item.data
    _assert_whole(store)


class _FailingDirectWrite(_DirectSpy):
    """Direct writes cut short after three blocks, refused (EINVAL), or failing (ENOSPC)."""

    def __init__(self, failure: str) -> None:
        super().__init__()
        self.failure = failure

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            if self.failure == "short":
                return super().write(fd, memoryview(data)[: 3 * 4096])
            raise OSError(errno.EINVAL if self.failure == "refused" else errno.ENOSPC, self.failure)
        return super().write(fd, data)


@pytest.mark.parametrize("failure", ["short", "refused", "no space"])
def test_a_direct_write_cut_short_refused_or_failing(tmp_path: Path, failure: str) -> None:
    """Short: the rest goes buffered. Refused (EINVAL on the first write: a disk whose blocks are larger
    than the alignment, say): all of it goes buffered. Failing otherwise: a StoreError, nothing published."""
    files = _FailingDirectWrite(failure)
    store = LocalStore(tmp_path / "archive", files=files)
    store.root.mkdir()
    if not _direct_allowed(store.root):
        pytest.skip("this file system takes no direct writes")
    item = _item(f"{BASE}/P1/v1/bundle.pdf", _pattern(20 * 4096 + 77, 3))
    if failure == "no space":
        with pytest.raises(StoreError):
            store.put_many([item])
        assert list(store.list()) == [] and _temps(store.root) == []
        return
    assert isinstance(store.put_many([item])[0], PutResult)
    assert files.calls == [(len(item.data), 3 * 4096 if failure == "short" else 0)]
    assert (store.root / item.key).read_bytes() == item.data
    _assert_whole(store)
