"""Checking a batch's records in input order: every line accepted (with what it needs) or rejected.

Records are read and checked in the calling thread (cross-record rules need the order: an endorsement's
policy must come earlier in the batch or be archived; a line may repeat an earlier one exactly).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core import lifecycle
from core.errors import ComponentUnavailable, IssuanceError
from core.lifecycle import PolicyState
from core.privacy import scrub
from core.products import ProductRegistry
from core.records import Endorsement, Policy, RawRecord, content_hash, parse_record
from pipeline.report import REJECTED, Outcome
from pipeline.validate import Reason, check_endorsement, check_policy, control_characters

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Repeat:
    """A line that repeats an earlier one of the batch exactly (same ``record_id``, same content): it ends
    as that line ends — archived there means already archived here (DESIGN.md invariant 1)."""

    raw: RawRecord
    first_line: int


@dataclass(frozen=True)
class Accepted:
    """A record that passed every check, ready to be issued."""

    raw: RawRecord
    record: Policy | Endorsement
    policy: Policy | None  # for an endorsement: the policy it changes, as it stands before it


def _text_field(data: dict[str, Any] | None, name: str) -> str | None:
    value = (data or {}).get(name)
    return value if isinstance(value, str) else None


def _shown(value: str | None) -> str | None:
    return None if value is None else scrub(value)


REMEMBERED_POLICIES = 4096  # far more than a run has in flight (usecases.run.run_batch)


class SeenInBatch:
    """Every record id and policy number a batch has read so far, with its line: in a private temporary
    SQLite database (deleted when closed, or with the process), so that a batch of a million lines does
    not keep a million entries in memory. Used by the one thread that reads the batch."""

    def __init__(self) -> None:
        # "" opens a private temporary database on disk: only its page cache stays in memory
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE records (id TEXT PRIMARY KEY, line INTEGER NOT NULL, digest TEXT NOT NULL)"
            " WITHOUT ROWID;"
            "CREATE TABLE policies (no TEXT PRIMARY KEY, accepted INTEGER, rejected INTEGER) WITHOUT ROWID;"
        )

    def first(self, record_id: str, *, line: int, digest: str) -> tuple[int, str] | None:
        """The line and content hash ``record_id`` was first read with; None (and remembered) if new."""
        added = self._db.execute(
            "INSERT INTO records VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (record_id, line, digest)
        )
        if added.rowcount == 1:
            return None
        return self._db.execute("SELECT line, digest FROM records WHERE id = ?", (record_id,)).fetchone()

    def policy(self, policy_no: str) -> tuple[int | None, int | None]:
        """The line that accepted ``policy_no`` in this batch, and the first that was rejected."""
        row = self._db.execute(
            "SELECT accepted, rejected FROM policies WHERE no = ?", (policy_no,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def accepted_policy(self, policy_no: str, line: int) -> None:
        self._db.execute(
            "INSERT INTO policies (no, accepted) VALUES (?, ?) ON CONFLICT (no) DO UPDATE SET accepted = ?",
            (policy_no, line, line),
        )

    def rejected_policy(self, policy_no: str, line: int) -> None:
        self._db.execute(
            "INSERT INTO policies (no, rejected) VALUES (?, ?)"
            " ON CONFLICT (no) DO UPDATE SET rejected = coalesce(rejected, ?)",
            (policy_no, line, line),
        )

    def close(self) -> None:
        self._db.close()


class RecordChecker:
    """Checks records one by one in input order, remembering what the batch has seen so far."""

    def __init__(
        self,
        *,
        registry: ProductRegistry,
        batch_dir: Path,
        archived_policy: Callable[[str], PolicyState | None] = lambda _no: None,
    ) -> None:
        self._registry = registry
        self._batch_dir = batch_dir
        self._archived_policy = archived_policy
        self._seen = SeenInBatch()
        # the latest policies' states, for endorsements later in the batch (an accepted endorsement moves
        # its policy's state on); bounded, so that memory stays flat in a batch of a million (an older
        # one is long archived: ``archived_policy`` reads it)
        self._policies: OrderedDict[str, PolicyState] = OrderedDict()

    def close(self) -> None:
        self._seen.close()

    def check(self, raw: RawRecord, *, repeats: bool = False) -> Accepted | Repeat | list[Reason]:
        """What to do with ``raw``: file it (``Accepted``), or why not. With ``repeats``, an exact repeat
        of an earlier line comes back as ``Repeat`` (it ends as that line ends); without, it is refused
        (``issuance render`` writes files, it does not archive)."""
        if raw.problem or raw.data is None:
            return [Reason("line", raw.problem or f"line {raw.line} is empty")]
        data = raw.data
        record_id = _text_field(data, "record_id")
        if record_id is not None:
            digest = content_hash(data)
            earlier = self._seen.first(record_id, line=raw.line, digest=digest)
            if earlier is not None:
                if earlier[1] == digest and repeats:
                    return Repeat(raw, earlier[0])
                same = "same content" if earlier[1] == digest else "different content: a conflict"
                self._note_rejected(data, raw.line)
                return [Reason("record_id", f"repeats line {earlier[0]} ({same})")]
        reasons = control_characters(data)
        record, parse_reasons = parse_record(data)
        reasons += [Reason(f, m) for f, m in parse_reasons]
        if record is None or reasons:
            self._note_rejected(data, raw.line)
            return reasons

        if isinstance(record, Policy):
            reasons += check_policy(record, registry=self._registry, batch_dir=self._batch_dir)
            line, _rejected = self._seen.policy(record.policy_no)
            if line is not None:
                reasons.append(Reason("policy_no", f"already issued by line {line} of this batch"))
            if reasons:
                self._note_rejected(data, raw.line)
                return reasons
            self._seen.accepted_policy(record.policy_no, raw.line)
            self._remember(PolicyState.of(record))
            return Accepted(raw, record, None)

        try:
            state = self._policy_for(record.policy_no)
        except ComponentUnavailable:
            raise  # the store or index is down: the run stops, nothing is rejected for it
        except IssuanceError as e:  # e.g. the archived manifest fails its hash check
            return [Reason("policy_no", f"the archived policy cannot be read: {e}")]
        rejected_line = self._seen.policy(record.policy_no)[1] if state is None else None
        if rejected_line is not None:
            line = rejected_line
            return [
                Reason("policy_no", f"policy {record.policy_no} was rejected at line {line} of this batch")
            ]
        reasons += check_endorsement(record, state=state, registry=self._registry, batch_dir=self._batch_dir)
        if reasons or state is None:
            return reasons
        self._remember(lifecycle.after(state, record))
        return Accepted(raw, record, state.policy)

    def _policy_for(self, policy_no: str) -> PolicyState | None:
        if policy_no in self._policies:
            self._policies.move_to_end(policy_no)
            return self._policies[policy_no]
        return self._archived_policy(policy_no)

    def _remember(self, state: PolicyState) -> None:
        self._policies[state.policy.policy_no] = state
        self._policies.move_to_end(state.policy.policy_no)
        if len(self._policies) > REMEMBERED_POLICIES:
            self._policies.popitem(last=False)

    def _note_rejected(self, data: dict[str, Any], line: int) -> None:
        if data.get("kind") == "policy" and isinstance(data.get("policy_no"), str):
            self._seen.rejected_policy(data["policy_no"], line)


def rejected_line(raw: RawRecord, reasons: Sequence[Reason]) -> Outcome:
    """The outcome of a line the checks refused; what it holds in the shown fields may be a party's ID or
    phone number, masked (DESIGN.md invariant 9)."""
    return Outcome(
        line=raw.line,
        status=REJECTED,
        record_id=_shown(_text_field(raw.data, "record_id")),
        policy_no=_shown(_text_field(raw.data, "policy_no")),
        kind=k if (k := _text_field(raw.data, "kind")) in ("policy", "endorsement") else None,
        reasons=tuple(reasons),
    )
