"""The ledger's hash rule and the index's UTC moments, shared by the index's modules.

In a module of their own so that the index's query modules (``audits.py``) can use them without
importing the package that imports them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from archive.index.schema import as_utc

GENESIS = "0" * 64


def entry_hash(
    prev_hash: str, *, seq: int, at: datetime, actor: str, action: str, subject: str, detail: str
) -> str:
    """A ledger event's hash: over the hash before it and its content, as stored."""
    body = json.dumps(
        {
            "seq": seq,
            "at": as_utc(at).isoformat(),
            "actor": actor,
            "action": action,
            "subject": subject,
            "detail": detail,
        },
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def row_hash(row: Any) -> str:
    """``entry_hash`` of a stored ledger row, from its own columns: what its ``hash`` should be."""
    return entry_hash(
        row.prev_hash,
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        detail=row.detail,
    )
