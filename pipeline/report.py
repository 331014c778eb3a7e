"""The batch report: one outcome per input record, and counts that add up.

Every input line ends in exactly one outcome (DESIGN.md, invariant 1). The report is what an operator
reads after a nightly run and what the watcher files beside a batch; its messages are scrubbed of
personal data before they are written.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import resource
import tempfile
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.privacy import scrub
from pipeline.validate import Reason

RENDERED = "rendered"
ARCHIVED = "archived"
ALREADY_ARCHIVED = "already_archived"
REJECTED = "rejected"
# a record a run that stopped (a component down) never filed: a re-run files it (DESIGN.md invariant 1)
NOT_ATTEMPTED = "not_attempted"
STATUSES = (ARCHIVED, ALREADY_ARCHIVED, REJECTED)  # what a run that ends reports
FILED = (ARCHIVED, ALREADY_ARCHIVED)  # in the archive, by this run or another


@dataclass(frozen=True)
class Outcome:
    """What became of one input record."""

    line: int
    status: str
    record_id: str | None = None
    policy_no: str | None = None
    kind: str | None = None
    reasons: tuple[Reason, ...] = ()
    documents: tuple[str, ...] = ()
    templates: dict[str, str] = field(default_factory=dict)
    pages: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "line": self.line,
            "record_id": self.record_id,
            "policy_no": self.policy_no,
            "kind": self.kind,
            "status": self.status,
            "reasons": [
                {"field": r.field, "message": scrub(r.message, keep=(self.policy_no, self.record_id))}
                for r in self.reasons
            ],
        }
        if self.documents:
            out["documents"] = list(self.documents)
            out["pages"] = self.pages
        if self.templates:
            out["templates"] = self.templates
        return out


def _resources() -> dict[str, float]:
    """This process's peak memory and CPU time so far (Linux reports ru_maxrss in KiB)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
    }


class BatchReport:
    """All outcomes of one batch, kept in input order on disk, so that memory stays flat however long the
    batch is; the counts are kept as the outcomes come.

    Outcomes may finish out of order (records are filed in parallel): a line that was ``opened`` holds
    back the outcomes of later lines until its own arrives, and each outcome is spooled, as the JSON the
    report holds, once no earlier line is open. The spool is an anonymous temporary file: a killed run
    leaves nothing behind.
    """

    def __init__(
        self,
        *,
        batch: str,
        started_at: datetime,
        statuses: tuple[str, ...],
        extra: dict[str, Any] | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        self.batch = batch
        self.started_at = started_at
        self.statuses = statuses
        self.extra: dict[str, Any] = dict(extra or {})
        self.finished_at: datetime | None = None
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._open: OrderedDict[int, None] = OrderedDict()  # lines read whose outcome has not come yet
        self._waiting: list[tuple[int, int, Outcome]] = []  # a heap of outcomes held back, by line
        self._added = 0
        self._spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 (closed with the report)
        self._spooled = 0  # bytes written to the spool

    def opened(self, line: int) -> None:
        """Line ``line`` was read: outcomes of later lines wait for its own."""
        with self._lock:
            self._open[line] = None

    def is_open(self, line: int) -> bool:
        """Whether ``line`` was read and has no outcome yet."""
        with self._lock:
            return line in self._open

    def add(self, outcome: Outcome) -> None:
        """Record one outcome (from any thread)."""
        if outcome.status not in self.statuses:  # a status the report does not count breaks "counts add up"
            raise ValueError(f"outcome status not in the report's list: {outcome.status}")
        with self._lock:
            self._counts[outcome.status] += 1
            self._open.pop(outcome.line, None)
            self._added += 1
            heapq.heappush(self._waiting, (outcome.line, self._added, outcome))
            self._release()

    def _release(self) -> None:
        first_open = next(iter(self._open), None)
        lines: list[bytes] = []
        while self._waiting and (first_open is None or self._waiting[0][0] < first_open):
            _line, _n, outcome = heapq.heappop(self._waiting)
            lines.append(json.dumps(outcome.as_json(), ensure_ascii=False).encode("utf-8") + b"\n")
        if lines:
            data = b"".join(lines)
            self._spool.write(data)
            self._spooled += len(data)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "records": sum(self._counts.values()),
                **{s: self._counts.get(s, 0) for s in self.statuses},
            }

    def count(self, status: str) -> int:
        with self._lock:
            return self._counts.get(status, 0)

    @property
    def rejected(self) -> int:
        return self.count(REJECTED)

    def iter_outcome_json(self) -> Iterator[dict[str, Any]]:
        """The outcomes spooled so far, in input order, as the report's JSON holds them."""
        with self._lock:
            self._spool.flush()
            end = self._spooled
        fd, offset, rest = self._spool.fileno(), 0, b""
        while offset < end:
            block = os.pread(fd, min(1 << 20, end - offset), offset)
            if not block:
                break
            offset += len(block)
            *lines, rest = (rest + block).split(b"\n")
            for line in lines:
                yield json.loads(line)

    def iter_outcomes(self) -> Iterator[Outcome]:
        """The outcomes spooled so far, in input order (their messages as the report holds them)."""
        for o in self.iter_outcome_json():
            yield Outcome(
                line=o["line"],
                status=o["status"],
                record_id=o["record_id"],
                policy_no=o["policy_no"],
                kind=o["kind"],
                reasons=tuple(Reason(r["field"], r["message"]) for r in o["reasons"]),
                documents=tuple(o.get("documents", ())),
                templates=o.get("templates", {}),
                pages=o.get("pages"),
            )

    @property
    def outcomes(self) -> list[Outcome]:
        """Every outcome spooled so far, in input order: for small batches and tests; a large batch's
        callers iterate ``iter_outcomes``."""
        return list(self.iter_outcomes())

    def _header(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "counts": self.counts(),
            "resources": _resources(),
            **self.extra,
        }

    def as_json(self) -> dict[str, Any]:
        return {**self._header(), "outcomes": list(self.iter_outcome_json())}

    def write(self, path: Path) -> None:
        """Write the report as JSON, atomically (a reader never sees half a report), one outcome a line,
        streamed from the spool."""
        with self._lock:  # whatever is still held back (a line that never got its outcome) goes too
            self._open.clear()
            self._release()
        head = json.dumps(self._header(), ensure_ascii=False, indent=2)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(head[: head.rindex("}")].rstrip().encode("utf-8") + b',\n  "outcomes": [')
                first = True
                for o in self.iter_outcome_json():
                    fh.write(
                        (b"\n    " if first else b",\n    ") + json.dumps(o, ensure_ascii=False).encode()
                    )
                    first = False
                fh.write(b"\n  ]\n}\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def close(self) -> None:
        self._spool.close()


class RejectionLog:
    """Logs rejections one by one up to ``limit``, then only counts them (a batch of a million bad lines
    must not write a million log lines); ``summary`` says how many were not logged."""

    def __init__(self, logger: logging.Logger, *, prefix: str = "", limit: int = 200) -> None:
        self._logger, self._prefix, self._limit = logger, prefix, limit
        self._seen = 0
        self._lock = threading.Lock()

    def __call__(self, outcome: Outcome) -> None:
        with self._lock:
            self._seen += 1
            seen = self._seen
        if seen <= self._limit:
            reasons = "; ".join(str(r) for r in outcome.reasons)
            self._logger.warning(
                "%sline %d %s: %s",
                self._prefix,
                outcome.line,
                outcome.status.replace("_", " "),
                scrub(reasons, keep=(outcome.policy_no, outcome.record_id)),
            )
        elif seen == self._limit + 1:
            self._logger.warning(
                "%smore lines not logged one by one: the report lists every one", self._prefix
            )

    def summary(self) -> None:
        if self._seen > self._limit:
            self._logger.warning(
                "%s%d lines in all were rejected; %d of them are only in the report",
                self._prefix,
                self._seen,
                self._seen - self._limit,
            )
