"""The batch report: one outcome per input record, and counts that add up.

Every input line ends in exactly one outcome (DESIGN.md, invariant 1). The report is what an operator
reads after a nightly run and what the watcher files beside a batch; its messages are scrubbed of
personal data before they are written.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.idcheck import scrub
from pipeline.validate import Reason

RENDERED = "rendered"
REJECTED = "rejected"


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


@dataclass
class BatchReport:
    """All outcomes of one batch, in input order."""

    batch: str
    started_at: datetime
    statuses: tuple[str, ...]
    outcomes: list[Outcome] = field(default_factory=list)
    finished_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        seen = Counter(o.status for o in self.outcomes)
        unknown = set(seen) - set(self.statuses)
        if unknown:  # a status the report does not count would break "counts add up"
            raise ValueError(f"outcome statuses not in the report's list: {sorted(unknown)}")
        return {"records": len(self.outcomes), **{s: seen.get(s, 0) for s in self.statuses}}

    @property
    def rejected(self) -> int:
        return sum(1 for o in self.outcomes if o.status == REJECTED)

    def as_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "counts": self.counts(),
            "resources": _resources(),
            **self.extra,
            "outcomes": [o.as_json() for o in sorted(self.outcomes, key=lambda o: o.line)],
        }

    def write(self, path: Path) -> None:
        """Write the report as JSON, atomically (a reader never sees half a report)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.as_json(), fh, ensure_ascii=False, indent=2)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
