"""``LocalStore``: the embedded default, a folder of read-only files published without overwriting."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from archive.store.base import (
    DEFAULT_CONTENT_TYPE,
    ObjectInfo,
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
from pipeline.errors import ObjectConflict, ObjectCorrupt, ObjectMissing, RetentionViolation, StoreError

logger = logging.getLogger(__name__)

_META_DIR = ".meta"
_TEMP_SUFFIX = ".tmp"


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


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

    Temp files start with ``.`` and end with ``.tmp``; ``list`` skips them and the ``.meta`` folder.
    The folder must be on a file system with hard links (any local Linux file system, NFS).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()

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

    def _write_temp(self, folder: Path, name: str, data: bytes) -> Path:
        """Write ``data`` to a fresh read-only temp file in ``folder``, fsynced, and return its path."""
        temp = folder / f".{name}.{secrets.token_hex(8)}{_TEMP_SUFFIX}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.fchmod(fd, 0o444)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return temp

    def _publish_sidecar(self, key: str, temp: Path) -> None:
        target = self._sidecar_path(key)
        os.replace(temp, target)
        _fsync_dir(target.parent)

    # the protocol

    def put(
        self,
        key: str,
        data: bytes,
        *,
        sha256: str,
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
        with self._io(f"store {key}"):
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
                    os.link(temp, path)
                except FileExistsError:
                    # Another writer published first: judge its bytes like any existing object.
                    return self._settle_existing(key, path, sidecar)
                _fsync_dir(path.parent)
                self._publish_sidecar(key, meta_temp)
                meta_temp = None
            finally:
                temp.unlink(missing_ok=True)
                if meta_temp is not None:
                    meta_temp.unlink(missing_ok=True)
        logger.debug("stored %s (%d bytes) in %s", key, len(data), self)
        return PutResult(key=key, created=True, sha256=digest, size=len(data))

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
                os.link(temp, meta_path)
                _fsync_dir(meta_path.parent)
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
