"""Running a batch: read, check and file every record, in order, on an ``Executor``; the batch report.

Every record ends archived, already archived, or rejected with reasons (DESIGN.md invariant 1); a
component going down stops the run: the records in flight and never read are ``not_attempted``, and a
re-run files them (invariant 2).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from archive.index import RejectionFacts
from core.config import DEFAULT_CHUNK, Settings
from core.errors import (
    ClusterUnavailable,
    ComponentUnavailable,
    IndexConflict,
    IndexUnavailable,
    IssuanceError,
    RunAborted,
    SigningFailed,
    StoreError,
    TemplateError,
    UsageError,
)
from core.manifest import RecordFacts
from core.privacy import scrub
from core.records import Endorsement, Policy, RawRecord, content_hash
from pipeline.batch import Accepted, RecordChecker, Repeat
from pipeline.batchfile import read_batch
from pipeline.report import (
    ALREADY_ARCHIVED,
    ARCHIVED,
    FILED,
    NOT_ATTEMPTED,
    REJECTED,
    STATUSES,
    BatchReport,
    Outcome,
    RejectionLog,
)
from pipeline.validate import Reason
from usecases.executors import Executor, ThreadPool, drive
from usecases.filing import Filed, Filing, _FiledByAnother, _Refused
from usecases.session import filing_session

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")
# rejected lines held before they are written for the statistics (flat memory in a batch of rejections)
REJECTIONS_CHUNK = 1000


def _input_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _base(item: Accepted) -> dict[str, Any]:
    record = item.record
    return {
        "line": item.raw.line,
        "record_id": record.record_id,
        "policy_no": record.policy_no,
        "kind": record.kind,
    }


def file_records(
    filing: Filing, items: Sequence[Accepted], *, batch_dir: Path, batch_id: str | None
) -> list[Outcome]:
    """File accepted records; what became of each, in order, as the batch report's outcomes.

    Policies are filed together (``Filing.file_policies``), endorsements one by one after them. Called by
    ``file_group``, which every executor runs. Whatever belongs to a record
    (a field, a template, a failed conversion, a conflict in the index) comes back as a ``rejected``
    outcome naming the field; only ``ComponentUnavailable`` is raised (LibreOffice, the store or the index
    is down: that stops the batch, not just the record).
    """
    results: list[Filed | Exception | None] = [None] * len(items)
    policies = [i for i, item in enumerate(items) if isinstance(item.record, Policy)]
    if policies:
        try:
            filed = filing.file_policies(
                [(items[i].record, items[i].raw) for i in policies],  # type: ignore[misc]
                batch_dir=batch_dir,
                batch_id=batch_id,
            )
        except ComponentUnavailable:
            raise
        except Exception as e:  # a bug, not a record's fault: every record of the group says so
            logger.exception("batch %s: unexpected error while filing policies", batch_id)
            filed = [e] * len(policies)
        for i, result in zip(policies, filed, strict=True):
            results[i] = result
    for i, item in enumerate(items):
        if isinstance(item.record, Endorsement):
            assert item.policy is not None
            try:
                results[i] = filing.file_endorsement(
                    item.record, raw=item.raw, batch_dir=batch_dir, batch_id=batch_id
                )
            except ComponentUnavailable:
                raise
            except Exception as e:
                results[i] = e
    return [_outcome(item, result, batch_id) for item, result in zip(items, results, strict=True)]


def _outcome(item: Accepted, result: Filed | Exception | None, batch_id: str | None) -> Outcome:
    base = _base(item)
    if isinstance(result, Filed):
        return Outcome(status=ARCHIVED, documents=result.keys, **base)
    if isinstance(result, _FiledByAnother):
        return Outcome(status=ALREADY_ARCHIVED, **base)
    if isinstance(result, SigningFailed):
        # the record was fine; its signature (the key, the TSA) was not made: not filed, and a re-run
        # files it, while the run goes on with the other records (issue 23, item 3)
        return Outcome(status=NOT_ATTEMPTED, reasons=(Reason("signature", str(result)),), **base)
    if isinstance(result, _Refused):
        reason = result.reason
    elif isinstance(result, IndexConflict):
        reason = Reason("record_id", f"{result}; re-run the batch")
    elif isinstance(result, TemplateError):
        reason = Reason("template", str(result))
    elif isinstance(result, IssuanceError):
        reason = Reason(getattr(result, "field", None) or "document", str(result))
    else:
        logger.error("batch %s line %d: unexpected error while filing: %r", batch_id, item.raw.line, result)
        reason = Reason("document", f"internal error: {result}")
    return Outcome(status=REJECTED, reasons=(reason,), **base)


def not_filed_earlier(item: Accepted) -> Outcome:
    """The outcome of a version whose previous version of the same policy in this batch was not filed."""
    message = f"policy {item.record.policy_no} could not be filed earlier in this batch"
    return Outcome(status=REJECTED, reasons=(Reason("policy_no", message),), **_base(item))


class BatchRun:
    """One run of a batch file, whoever files its records: a thread pool here, a cluster elsewhere.

    Opening it refuses an unusable file (``BatchUnreadable``, nothing written) and writes the batch's
    begin row. ``accepted`` reads and checks the records in input order and settles every record that
    needs no filing (already archived, repeated, conflicting, rejected); the caller files each record it
    yields and hands back its outcome (``finish``) or the component error that stopped it (``fail``).
    ``end`` writes the batch's end row and returns the report; after a component error it lists every
    line not filed as not attempted, records the batch as aborted and raises ``RunAborted`` carrying
    the report. ``finish`` and ``fail`` may be called from any thread.
    """

    def __init__(
        self, batch: Path, *, filing: Filing, on_record: Callable[[Outcome], None] | None = None
    ) -> None:
        self._records = read_batch(batch)
        self.filing = filing
        self.batch_dir = batch.parent
        self.batch_file = batch.resolve()
        started = datetime.now(CHINA)
        self.input_sha256 = _input_sha256(batch)
        # the input's hash ties the batch to its file; the random part keeps two runs in one second apart
        self.batch_id = f"{started:%Y%m%d-%H%M%S}-{self.input_sha256[:8]}-{secrets.token_hex(3)}"
        self.report = BatchReport(
            batch=scrub(batch.name), started_at=started, statuses=STATUSES, extra={"batch_id": self.batch_id}
        )
        self.fatal: list[ComponentUnavailable] = []
        self._on_record = on_record
        self._lock = threading.Lock()
        self._log = RejectionLog(logger, prefix=f"batch {self.batch_id} ")
        # exact repeats of a line still in flight, by that line: each ends as it ends
        self._repeats: dict[int, list[RawRecord]] = {}
        self._unread: list[RawRecord] = []  # read but not handled when the run stopped
        # what a line read says of its branch, product and clerk, until it ends; the rejected lines'
        # rows for the statistics, written at the end in one insert (issue 25)
        self._said: dict[int, tuple[str | None, str | None, str | None]] = {}
        self._rejections: list[RejectionFacts] = []
        filing.index.begin_batch(
            batch_id=self.batch_id,
            input_name=scrub(batch.name),  # a file may be named after its customer
            input_sha256=self.input_sha256,
            operator=filing.operator,
        )
        self._checker = RecordChecker(
            registry=filing.registry, batch_dir=batch.parent, archived_policy=filing.archived_policy
        )

    def accepted(self, *, stop: threading.Event | None = None) -> Iterator[Accepted]:
        """The records to file, in input order; stops after a component error or when ``stop`` is set.

        Records are read in blocks of ``LOOKAHEAD``, and the index is asked once per block which of them
        it holds already (two queries, not two per record).
        """
        index = self.filing.index
        while block := list(itertools.islice(self._records, LOOKAHEAD)):
            for raw in block:
                self.report.opened(raw.line)
                self._said[raw.line] = _said(raw)
            data = [raw.data if isinstance(raw.data, dict) else {} for raw in block]
            try:
                known = index.records([d["record_id"] for d in data if isinstance(d.get("record_id"), str)])
                indexed = index.indexed_policies(
                    [
                        d["policy_no"]
                        for d in data
                        if d.get("kind") == "policy" and isinstance(d.get("policy_no"), str)
                    ]
                )
            except ComponentUnavailable as e:
                self._stopped(e, block)
                return
            for k, raw in enumerate(block):
                if self.fatal:
                    self._unread = block[k:]
                    return
                if stop is not None and stop.is_set():
                    self.report.extra["interrupted"] = True
                    self._unread = block[k:]
                    return
                outcome = already_archived(raw, known)
                if outcome is not None:
                    self.finish(outcome)
                    continue
                try:
                    verdict = self._checker.check(raw, repeats=True)
                    if isinstance(verdict, Repeat):
                        self._repeat(verdict)
                        continue
                except ComponentUnavailable as e:  # the store or index went down reading an archived policy
                    self._stopped(e, block[k:])
                    return
                if isinstance(verdict, list):
                    self.finish(rejected_outcome(raw, verdict))
                    continue
                if isinstance(verdict.record, Policy) and verdict.record.policy_no in indexed:
                    self.finish(rejected_outcome(raw, [_archived_by_another(verdict.record.policy_no)]))
                    continue
                yield verdict

    succeeded = FILED

    def work(self, items: Sequence[Accepted], earlier: Outcome | None) -> list[Outcome]:
        """File ``items`` (``file_group``); once the run has stopped, what is still queued is not
        attempted."""
        if self.fatal:
            raise self.fatal[0]
        return file_group(self.filing, items, earlier, batch_dir=self.batch_dir, batch_id=self.batch_id)

    def _stopped(self, error: ComponentUnavailable, unread: list[RawRecord]) -> None:
        with self._lock:
            self.fatal.append(error)
            self.report.statuses = (*STATUSES, NOT_ATTEMPTED)
        self._unread = unread

    def _repeat(self, repeat: Repeat) -> None:
        """An exact repeat of an earlier line: it ends as that line ends (DESIGN.md invariant 1)."""
        with self._lock:
            if self.report.is_open(repeat.first_line):
                self._repeats.setdefault(repeat.first_line, []).append(repeat.raw)
                return
        # the first line has ended already: archived then, the index holds it now
        data = repeat.raw.data or {}
        known = self.filing.index.records([data["record_id"]])
        outcome = already_archived(repeat.raw, known)
        if outcome is None or outcome.status != ALREADY_ARCHIVED:
            outcome = _after_first(repeat.raw, repeat.first_line, REJECTED)
        self.finish(outcome)

    def finish(self, outcome: Outcome) -> None:
        """Record one record's outcome (logged if not filed, passed to ``on_record``)."""
        with self._lock:
            if outcome.status not in self.report.statuses:
                self.report.statuses = (*self.report.statuses, outcome.status)
            self.report.add(outcome)
            repeats = self._repeats.pop(outcome.line, ())
            said = self._said.pop(outcome.line, (None, None, None))
            if outcome.status == REJECTED:
                self._rejections.append(_rejection(outcome, said, self.batch_id))
            full = self._rejections if len(self._rejections) >= REJECTIONS_CHUNK else []
            if full:
                self._rejections = []
        if full:
            self._write_rejections(full)
        if outcome.status in (REJECTED, NOT_ATTEMPTED):
            self._log(outcome)
        if self._on_record:
            self._on_record(outcome)
        for raw in repeats:
            self.finish(_after_first(raw, outcome.line, outcome.status))

    def _write_rejections(self, rows: list[RejectionFacts]) -> None:
        """Rows for the statistics, a chunk at a time so that a batch of many rejections stays in flat
        memory; kept for the end of the run if the index cannot take them now."""
        try:
            self.filing.index.record_rejections(rows)
        except IssuanceError as e:
            logger.warning("batch %s: rejections kept for the end of the run: %s", self.batch_id, e)
            with self._lock:
                self._rejections[:0] = rows

    def fail(self, item: Accepted, error: ComponentUnavailable) -> Outcome:
        """A component failed while filing ``item``: it is not attempted, and the run stops."""
        with self._lock:
            self.fatal.append(error)
            self.report.statuses = (*STATUSES, NOT_ATTEMPTED)
        outcome = not_attempted(item.raw, error)
        self.finish(outcome)
        return outcome

    def end(self) -> BatchReport:
        """Write the batch's end row; the report, or ``RunAborted`` (with the report) after a component
        error, once every input line has its outcome."""
        self._checker.close()
        index, report = self.filing.index, self.report
        if self.fatal:
            error = self.fatal[0]
            try:
                for raw in itertools.chain(self._unread, self._records):  # read, or never read
                    report.opened(raw.line)
                    self.finish(not_attempted(raw, error))
            except IssuanceError as e:  # the rest of the file cannot be read either: say so, keep the rest
                report.extra["unread"] = str(e)
            report.extra["aborted"] = scrub(str(error))
            logger.warning(
                "batch %s aborted: %d lines not attempted (a re-run files them): %s",
                self.batch_id,
                report.count(NOT_ATTEMPTED),
                report.extra["aborted"],
            )
        self._log.summary()
        report.finished_at = datetime.now(CHINA)
        report.extra["stages"] = self.filing.clock.snapshot()
        report.extra["signing"] = {
            "signed_by": self.filing.signature,
            **self.filing.clock.cpu_snapshot().get("sign", {"items": 0}),
        }
        ended = "aborted" if self.fatal else "interrupted" if report.extra.get("interrupted") else "finished"
        try:
            index.record_rejections(self._rejections)
            index.finish_batch(
                batch_id=self.batch_id,
                counts=report.counts(),
                operator=self.filing.operator,
                ended=ended,
                reason=report.extra.get("aborted"),
            )
        except ComponentUnavailable:
            if not self.fatal:
                raise
            logger.warning("batch %s: could not record its end in the index (it is down)", self.batch_id)
        if self.fatal:
            raise RunAborted(self.fatal[0], report=report)
        return report


def _said(raw: RawRecord) -> tuple[str | None, str | None, str | None]:
    """The branch code, product code and clerk a line names, as far as they are text; scrubbed, as the
    line was not (or not yet) validated and a clerk field may hold anything."""
    data = raw.data if isinstance(raw.data, dict) else {}
    branch = data.get("branch")
    code = branch.get("code") if isinstance(branch, dict) else None

    def text(value: Any) -> str | None:
        return scrub(value) if isinstance(value, str) and value else None

    return text(code), text(data.get("product_code")), text(data.get("issued_by"))


def _rejection(
    outcome: Outcome, said: tuple[str | None, str | None, str | None], batch_id: str
) -> RejectionFacts:
    """A rejected line's row: its numbers as the report shows them, what it said, the first field named."""
    branch, product, clerk = said
    return RejectionFacts(
        at=datetime.now(UTC),
        batch_id=batch_id,
        line=outcome.line,
        kind=outcome.kind,
        record_id=outcome.record_id,
        policy_no=outcome.policy_no,
        branch_code=branch,
        product_code=product,
        clerk=clerk,
        field=outcome.reasons[0].field if outcome.reasons else None,
    )


def not_attempted(raw: RawRecord, error: ComponentUnavailable) -> Outcome:
    """The outcome of a line a run that stopped never filed. The reason names no object or other record:
    the error itself is said once, in the report's ``aborted``."""
    message = f"not filed: the run stopped because {_component(error)}; a re-run files it"
    return _raw_outcome(raw, NOT_ATTEMPTED, (Reason("run", message),))


def _component(error: ComponentUnavailable) -> str:
    if isinstance(error, IndexUnavailable):
        return "the index is unavailable"
    if isinstance(error, StoreError):
        return "the object store is unavailable"
    if isinstance(error, ClusterUnavailable):
        return "the cluster is unavailable"
    return "a component is unavailable"


def _after_first(raw: RawRecord, first_line: int, status: str) -> Outcome:
    """A repeat's outcome, given how the line it repeats ended."""
    if status in (ARCHIVED, ALREADY_ARCHIVED):
        return _raw_outcome(raw, ALREADY_ARCHIVED, ())
    if status == NOT_ATTEMPTED:
        message = f"repeats line {first_line} (same content), which was not filed; a re-run files it"
        return _raw_outcome(raw, NOT_ATTEMPTED, (Reason("run", message),))
    message = f"repeats line {first_line} (same content), which was rejected: see that line"
    return _raw_outcome(raw, REJECTED, (Reason("record_id", message),))


def _raw_outcome(raw: RawRecord, status: str, reasons: tuple[Reason, ...]) -> Outcome:
    data = raw.data or {}

    def shown(name: str) -> str | None:
        # a line not filed was not validated (or failed): what it holds in these fields may be a party's
        # ID or phone number, which the report never holds in clear (DESIGN.md invariant 9)
        value = data.get(name)
        if not isinstance(value, str):
            return None
        return value if status == ALREADY_ARCHIVED else scrub(value)

    kind = data.get("kind")
    return Outcome(
        line=raw.line,
        status=status,
        record_id=shown("record_id"),
        policy_no=shown("policy_no"),
        kind=kind if kind in ("policy", "endorsement") else None,
        reasons=reasons,
    )


LOOKAHEAD = 64  # records read (and looked up in the index) at a time


def run_batch(
    batch: Path,
    *,
    filing: Filing,
    executor: Executor | None = None,
    workers: int = 1,
    on_record: Callable[[Outcome], None] | None = None,
    stop: threading.Event | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> BatchReport:
    """``issuance run``: every record of ``batch`` ends archived, already archived, or rejected.

    Raises ``BatchUnreadable`` for an unusable file (nothing is filed) and ``RunAborted`` (a
    ``ComponentUnavailable``) when LibreOffice, the store or the index fails for good: what was filed
    stays filed, every other line is in the error's report as not attempted, and a re-run goes on.

    The records are filed on ``executor`` (``usecases.executors``; a cluster's is
    ``usecases.cluster.DaskExecutor``); without one, on a thread pool sized to ``workers`` LibreOffice
    instances, policies in groups of up to ``chunk`` of one product. ``stop`` set (SIGTERM in the
    watcher): no further record is read, the ones read finish, and the report says ``interrupted``; its
    counts cover the records handled. A later run does the rest.
    """
    run = BatchRun(batch, filing=filing, on_record=on_record)
    if executor is not None:
        drive(run, run.accepted(stop=stop), executor)
        return run.end()
    pool = ThreadPool.for_converters(workers, group_size=chunk)
    try:
        drive(run, run.accepted(stop=stop), pool)
    finally:
        pool.close()
    return run.end()


def file_group(
    filing: Filing,
    items: Sequence[Accepted],
    earlier: Outcome | None,
    *,
    batch_dir: Path,
    batch_id: str | None,
) -> list[Outcome]:
    """File ``items`` after ``earlier``, the outcome of the previous record of their policy in this batch.

    A policy whose number an earlier line of the batch filed already is rejected; a later version of a
    policy whose earlier record was not filed is rejected naming ``policy_no``. Shared by every executor
    (a worker of a cluster calls it too)."""
    if earlier is not None:
        if isinstance(items[0].record, Policy):
            if earlier.status in FILED:
                return [rejected_outcome(items[0].raw, [_archived_by_another(items[0].record.policy_no)])]
        elif earlier.status not in FILED:
            return [not_filed_earlier(item) for item in items]
    return file_records(filing, items, batch_dir=batch_dir, batch_id=batch_id)


def rejected_outcome(raw: RawRecord, reasons: Sequence[Reason]) -> Outcome:
    """The outcome of a record rejected before filing, with what its raw data says about it."""
    return _raw_outcome(raw, REJECTED, tuple(reasons))


def already_archived(raw: RawRecord, known: dict[str, RecordFacts]) -> Outcome | None:
    """Outcome for a record the index already holds (``known``, by record id): the same content, or a
    conflict."""
    data = raw.data
    if not data or not isinstance(data.get("record_id"), str):
        return None
    record = known.get(data["record_id"])
    if record is None:
        return None
    base = {
        "line": raw.line,
        "record_id": data["record_id"],
        "policy_no": record.policy_no,
        "kind": record.kind,
    }
    if record.content_sha256 == content_hash(data):
        return Outcome(status=ALREADY_ARCHIVED, **base)
    message = "already archived with different content: a conflict, reported and not overwritten"
    return Outcome(status=REJECTED, reasons=(Reason("record_id", message),), **base)


def _archived_by_another(policy_no: str) -> Reason:
    return Reason("policy_no", f"policy {policy_no} is already archived by another record")


@contextlib.contextmanager
def batch_filer(
    settings: Settings, *, workers: int | None = None, cluster: str | None = None
) -> Iterator[Callable[..., BatchReport]]:
    """``issuance run``'s filer: ``run_batch`` on this machine's thread pool, or on the Dask cluster
    behind the scheduler at ``cluster``; call it with the batch and ``on_record``."""
    if cluster:
        if workers:
            raise UsageError(
                "--workers is for a run on this machine",
                hint="cluster workers start ISSUANCE_WORKERS LibreOffice instances each",
            )
        # imported here: the cluster module and Dask add about half a second to every run's start-up
        # (docs/performance.md, "Start-up"), and the cluster module imports this one
        from usecases.cluster import cluster_session, run_batch_on_cluster

        with cluster_session(settings, address=cluster) as connected:
            yield functools.partial(run_batch_on_cluster, filing=connected.filing, client=connected.client)
        return
    with filing_session(settings, workers=workers) as session:
        yield functools.partial(
            run_batch, filing=session.filing, workers=session.workers, chunk=settings.chunk
        )
