"""Zipped batches: a batch file plus its images in one ``.zip``, unpacked into a private work folder.

A zip comes from outside and is treated as hostile. What is promised:

- Nothing is written outside the extraction folder: absolute names, drive letters, ``..`` components,
  symlink entries, encrypted and duplicated members refuse the whole zip (zip-slip).
- Bombs are refused: at most ``ZipLimits.max_members`` entries and ``ZipLimits.max_bytes`` uncompressed
  in total, checked on the declared sizes before anything is written, and again on the bytes actually
  produced while extracting (a member may declare less than it holds).
- The layout is one batch: exactly one batch file (``.jsonl``, ``.csv``, ``.xlsx``) at the top level, or
  in the one top folder that holds everything; its images are found relative to it as in a folder batch.

Every refusal is an ``UnsafeBatchArchive`` (a ``BatchUnreadable``) whose message says which member and
why; the caller removes the work folder.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.errors import UnsafeBatchArchive
from pipeline.batchfile import SUFFIXES
from watchers.inbox import is_ignored

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1


@dataclass(frozen=True)
class ZipLimits:
    """Bounds for one zipped batch (defaults: 10,000 members, 2 GiB uncompressed)."""

    max_members: int = 10_000
    max_bytes: int = 2 << 30


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's name as its author meant it.

    Zips made on Chinese Windows store GBK names without the UTF-8 flag; ``zipfile`` then decodes them as
    CP437 (mojibake). Such names are re-decoded as GB18030 when that works.
    """
    name = info.filename
    if not info.flag_bits & _UTF8_FLAG:
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            name = name.encode("cp437").decode("gb18030")
    return name


def _safe_parts(raw: str) -> tuple[str, ...]:
    """The path components of a member name, or ``UnsafeBatchArchive`` if it could leave the folder."""
    name = raw.replace("\\", "/")  # Windows tools write backslashes; treat them as separators
    if "\x00" in name:
        raise UnsafeBatchArchive(f"zip member {raw!r} has a NUL byte in its name")
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeBatchArchive(f"zip member {raw!r} has an absolute path", hint="zip-slip refused")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeBatchArchive(f"zip member {raw!r} climbs out with '..'", hint="zip-slip refused")
    return parts


def _is_clutter(parts: tuple[str, ...]) -> bool:
    return parts[0] == "__MACOSX" or any(is_ignored(p) for p in parts)


def extract_batch(archive: Path, *, into: Path, limits: ZipLimits | None = None) -> Path:
    """Unpack the zipped batch ``archive`` into the empty folder ``into``; return its batch file's path.

    Clutter (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, dot-files, …) is skipped. Raises
    ``UnsafeBatchArchive`` when the zip is unreadable or refused; what was extracted so far stays in
    ``into`` for the caller to remove.
    """
    limits = limits or ZipLimits()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise UnsafeBatchArchive(
                    f"{archive.name} has {len(infos):,} members, "
                    f"more than the {limits.max_members:,} allowed",
                    hint="zip bomb refused; split the batch",
                )
            members = _plan(archive.name, infos, limits)
            batch_rel = _batch_file(archive.name, [parts for parts, info in members if not info.is_dir()])
            root = into.resolve()
            total = 0
            for parts, info in members:
                target = root.joinpath(*parts)
                if not target.resolve().is_relative_to(root):  # belt and braces after _safe_parts
                    raise UnsafeBatchArchive(f"zip member {info.filename!r} would land outside the batch")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                total = _extract_member(zf, info, target, total=total, limits=limits, name=archive.name)
    except UnsafeBatchArchive:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
        raise UnsafeBatchArchive(f"{archive.name} is not a readable zip ({e})") from e
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.EILSEQ):  # the zip's fault; anything else is the disk's
            raise UnsafeBatchArchive(
                f"{archive.name} has a member this system cannot store: {e.strerror}"
            ) from e
        raise
    logger.debug("unpacked %s: %d members, %d bytes", archive.name, len(members), total)
    return root.joinpath(*batch_rel)


def _plan(
    name: str, infos: list[zipfile.ZipInfo], limits: ZipLimits
) -> list[tuple[tuple[str, ...], zipfile.ZipInfo]]:
    """Check every member's name, type and declared size before anything is written."""
    members: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
    seen: set[tuple[str, ...]] = set()
    declared = 0
    for info in infos:
        raw = _member_name(info)
        parts = _safe_parts(raw)
        if not parts:
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeBatchArchive(f"zip member {raw!r} is a symbolic link", hint="links are refused")
        kind = stat.S_IFMT(mode)  # 0 when the zip was made on Windows (DOS attributes only)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeBatchArchive(f"zip member {raw!r} is not a regular file or folder")
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise UnsafeBatchArchive(f"zip member {raw!r} is encrypted", hint="send the batch unencrypted")
        if _is_clutter(parts):
            continue
        if parts in seen:
            raise UnsafeBatchArchive(f"zip member {raw!r} appears twice")
        seen.add(parts)
        declared += info.file_size
        if declared > limits.max_bytes:
            raise UnsafeBatchArchive(
                f"{name} declares more than {limits.max_bytes:,} bytes uncompressed",
                hint="zip bomb refused; split the batch",
            )
        members.append((parts, info))
    return members


def _batch_file(name: str, paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The one batch file, at the top level or in the single top folder that holds everything."""
    files = [p for p in paths if p]
    tops = {p[0] for p in files}
    nested = len(tops) == 1 and all(len(p) > 1 for p in files)
    depth = 2 if nested else 1
    found = [p for p in files if len(p) == depth and PurePosixPath(p[-1]).suffix.lower() in SUFFIXES]
    if len(found) != 1:
        where = f"in its top folder {next(iter(tops))}/" if nested else "at its top level"
        listed = ", ".join("/".join(p) for p in found) or "none"
        raise UnsafeBatchArchive(
            f"{name} must hold exactly one batch file (.jsonl, .csv or .xlsx) {where}; found: {listed}",
            hint="zip one batch file with its images folder",
        )
    return found[0]


def _extract_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, *, total: int, limits: ZipLimits, name: str
) -> int:
    """Copy one member, counting the bytes really produced; return the new running total."""
    written = 0
    # O_EXCL | O_NOFOLLOW: never follow or replace anything already there
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
        while block := src.read(_CHUNK):
            written += len(block)
            total += len(block)
            if written > info.file_size:
                raise UnsafeBatchArchive(
                    f"zip member {info.filename!r} holds more than the {info.file_size:,} bytes it declares",
                    hint="zip bomb refused",
                )
            if total > limits.max_bytes:
                raise UnsafeBatchArchive(
                    f"{name} unpacks to more than {limits.max_bytes:,} bytes", hint="zip bomb refused"
                )
            out.write(block)
    return total
