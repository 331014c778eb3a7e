"""The archive's object store: immutable, hash-checked objects under keys that carry no personal data.

Two backends behind one ``ObjectStore`` protocol (DESIGN.md, "Seams"):

- ``LocalStore``, a folder (the embedded default ``./var/archive``);
- ``S3Store``, any S3 API (AWS, MinIO, Ceph) through boto3.

What every store promises, whatever its backend does:

- **Immutable.** A put over a key that already holds other bytes raises ``ObjectConflict`` and changes
  nothing; a put of the same bytes again is a success with ``created=False``, so a re-run after a crash
  adopts what the crashed run stored (DESIGN.md invariants 2 and 3). ``put_many`` keeps the same
  promises for a batch of ``PutItem``; an item's own error comes back in its place.
- **Verified.** ``put`` checks the caller's SHA-256 against the bytes before storing them; ``get``
  hashes every object it returns and raises ``ObjectCorrupt`` on a mismatch (invariant 4).
- **Retained.** ``delete`` is refused while ``now < retain_until`` (《保险法》第87条, see
  :func:`retention_until`). On an S3 bucket with Object Lock the object is also put under COMPLIANCE
  retention, but the store checks retention itself first: not every S3 implementation enforces it.
- **Safe keys.** :func:`check_key` is the one gate every key passes: relative, ``/``-separated, plain
  ASCII. The writer that builds a key also passes it through :func:`check_key_privacy`: nothing shaped
  like a resident ID number or a mobile number outside the record's own document number (DOMAIN.md,
  "Archive rules"; real policy numbers hold 18 or 20 digits in a row).
- **Quiet about secrets.** ``describe()`` and every error name the store (folder, or endpoint and
  bucket), never credentials.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from archive.store.base import (
    Leftover,
    ObjectInfo,
    ObjectStore,
    PutItem,
    PutOutcome,
    PutResult,
    check_key,
    check_key_privacy,
    retention_until,
)
from archive.store.local import FileSystem, LocalStore
from core.errors import ConfigError
from core.manifest import Hashed, hashed, sha256_hex

if TYPE_CHECKING:
    from archive.store.s3 import S3Store


def __getattr__(name: str) -> Any:
    """``S3Store`` on first use: importing boto3 is a start-up cost (docs/performance.md) that a run into
    the local store does not need to pay."""
    if name == "S3Store":
        from archive.store.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url: str, *, s3_endpoint: str | None = None) -> ObjectStore:
    """The store a configuration names: ``s3://bucket/prefix`` (with ``s3_endpoint`` for MinIO or Ceph),
    ``file:///abs/path``, or a plain folder path (relative to the working directory)."""
    if not url or not url.strip():
        raise ConfigError("no object store configured", hint="use a folder path or s3://bucket/prefix")
    if url.startswith("s3://"):
        from archive.store.s3 import S3Store

        return S3Store.from_url(url, endpoint_url=s3_endpoint)
    if url.startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"not a local file URL: {url!r}", hint="write it as file:///absolute/path")
        return LocalStore(Path(unquote(parts.path)))
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url):
        raise ConfigError(
            f"unsupported object store URL scheme in {urlsplit(url).scheme}://…",
            hint="use a folder path, file:///path or s3://bucket/prefix",
        )
    return LocalStore(Path(url))


__all__ = [
    "FileSystem",
    "Hashed",
    "Leftover",
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "PutItem",
    "PutOutcome",
    "PutResult",
    "S3Store",
    "check_key",
    "check_key_privacy",
    "hashed",
    "open_store",
    "retention_until",
    "sha256_hex",
]
