"""``issuance render``: previews of the customer's PDFs of a batch written to a folder, nothing filed.

A preview is marked 预览 PREVIEW — 非正式保单 on every page and sealed with the SPECIMEN seal, never the
registered one, and carries no signature and no QR code (``pipeline.preview``; issue 24 item 4).

The same loop as ``issuance run`` (``usecases.executors.drive``) on a thread pool, one record per task;
an endorsement follows its policy's record when the batch holds both.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from core.errors import ComponentUnavailable, ConversionFailed, IssuanceError, TemplateError
from core.privacy import scrub
from core.products import DEFAULT_TEMPLATES_DIR, load_registry
from core.records import Endorsement, Policy, RawRecord
from pipeline.batch import Accepted, RecordChecker, Repeat, rejected_line
from pipeline.batchfile import read_batch
from pipeline.convert import ConverterPool, profile_template_for
from pipeline.documents import DocumentMaker
from pipeline.preview import PreviewMarker, specimen_seals
from pipeline.report import REJECTED, RENDERED, BatchReport, Outcome, RejectionLog
from pipeline.scratch import run_scratch
from pipeline.validate import Reason
from usecases.executors import ThreadPool, drive

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")


def _document_name(record: Policy | Endorsement) -> str:
    if isinstance(record, Policy):
        return f"{record.policy_no}/policy.pdf"
    return f"{record.policy_no}/endorsement-{record.endorsement_no}.pdf"


class RenderJob:
    """Render every good record of a batch into ``out_dir`` (a ``usecases.executors.Job``)."""

    succeeded = (RENDERED,)

    def __init__(
        self,
        records: Iterator[RawRecord],
        *,
        batch: Path,
        out_dir: Path,
        maker: DocumentMaker,
        marker: PreviewMarker | None = None,
        on_record: Callable[[Outcome], None] | None = None,
    ) -> None:
        self._records = records
        self._marker = marker
        self._out_dir = out_dir
        self._maker = maker
        self._on_record = on_record
        self._lock = threading.Lock()
        self.report = BatchReport(
            batch=scrub(batch.name), started_at=datetime.now(CHINA), statuses=(RENDERED, REJECTED)
        )
        self.checker = RecordChecker(registry=maker.registry, batch_dir=batch.parent)
        self.log = RejectionLog(logger)
        self.fatal: list[ComponentUnavailable] = []

    def accepted(self) -> Iterator[Accepted]:
        for raw in self._records:
            if self.fatal:
                return
            self.report.opened(raw.line)
            verdict = self.checker.check(raw)
            assert not isinstance(verdict, Repeat)  # render asks for none
            if isinstance(verdict, list):
                self.finish(rejected_line(raw, verdict))
                continue
            yield verdict

    def work(self, items: Sequence[Accepted], earlier: Outcome | None) -> list[Outcome]:
        return [self._render(item, earlier) for item in items]

    def _render(self, item: Accepted, earlier: Outcome | None) -> Outcome:
        record = item.record
        base = {
            "line": item.raw.line,
            "record_id": record.record_id,
            "policy_no": record.policy_no,
            "kind": record.kind,
        }

        def rejected(field: str, message: str) -> Outcome:
            return Outcome(status=REJECTED, reasons=(Reason(field, message),), **base)

        if isinstance(record, Endorsement) and earlier is not None and earlier.status != RENDERED:
            return rejected("policy_no", f"policy {record.policy_no} could not be issued in this batch")
        try:
            if isinstance(record, Policy):
                document = self._maker.policy_pdf(record)
            else:
                assert item.policy is not None
                document = self._maker.endorsement_pdf(record, item.policy)
            if self._marker is not None:
                document = replace(document, pdf=self._marker.mark(document.pdf))
            document.write(self._out_dir / _document_name(record))
        except ComponentUnavailable:  # LibreOffice gone for good: the run cannot go on
            raise
        except ConversionFailed as e:
            return rejected("document", str(e))
        except TemplateError as e:
            return rejected("template", str(e))
        except IssuanceError as e:  # a document-level refusal, e.g. the seal's anchor text is missing
            return rejected("document", str(e))
        except Exception as e:  # one record's surprise must not stop the batch
            logger.exception("line %d: unexpected error while issuing", item.raw.line)
            return rejected("document", f"internal error: {e}")
        return Outcome(
            status=RENDERED,
            documents=(_document_name(record),),
            templates=document.templates,
            pages=document.pages,
            **base,
        )

    def finish(self, outcome: Outcome) -> None:
        with self._lock:
            self.report.add(outcome)
        if outcome.status == REJECTED:
            self.log(outcome)
        if self._on_record:
            self._on_record(outcome)

    def fail(self, item: Accepted, error: ComponentUnavailable) -> Outcome:
        with self._lock:
            self.fatal.append(error)
        record = item.record
        outcome = Outcome(
            line=item.raw.line,
            status=REJECTED,
            record_id=record.record_id,
            policy_no=record.policy_no,
            kind=record.kind,
            reasons=(Reason("document", str(error)),),
        )
        self.finish(outcome)
        return outcome


def render_batch(
    batch: Path,
    *,
    out_dir: Path,
    maker: DocumentMaker,
    workers: int,
    marker: PreviewMarker | None = None,
    on_record: Callable[[Outcome], None] | None = None,
) -> BatchReport:
    """``issuance render``: the customer's PDFs for every good record of ``batch`` under ``out_dir``,
    each page marked by ``marker`` when given (``render_previews`` always gives one).

    Raises ``BatchUnreadable`` if the file as a whole is unusable (nothing is written then) and
    ``ComponentUnavailable`` if LibreOffice cannot be used at all. Everything else, record by record,
    ends up in the report.
    """
    records = read_batch(batch)  # refuses an unusable file before anything else happens
    job = RenderJob(records, batch=batch, out_dir=out_dir, maker=maker, marker=marker, on_record=on_record)
    pool = ThreadPool(threads=workers, group_size=1)
    try:
        drive(job, job.accepted(), pool)
    finally:
        pool.close()
        job.checker.close()
    job.log.summary()
    if job.fatal:
        raise job.fatal[0]
    job.report.finished_at = datetime.now(CHINA)
    return job.report


def render_previews(
    batch: Path,
    *,
    out_dir: Path,
    templates_dir: Path | None,
    cache_dir: Path,
    timeout: float,
    workers: int,
    on_record: Callable[[Outcome], None] | None = None,
) -> BatchReport:
    """``render_batch`` with its own LibreOffice pool of ``workers`` instances (``ISSUANCE_SOFFICE``,
    scratch under ``ISSUANCE_SCRATCH``); the report tells the conversions and restarts.

    Previews only: the SPECIMEN seal instead of the registered one, the preview mark on every page.
    """
    registry = load_registry(templates_dir or DEFAULT_TEMPLATES_DIR)
    mark_template = (templates_dir or DEFAULT_TEMPLATES_DIR) / "preview-mark.docx"
    read_batch(batch)  # refuse an unusable file before starting LibreOffice
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    soffice = os.environ.get("ISSUANCE_SOFFICE", "soffice")
    with (
        run_scratch(Path(os.environ.get("ISSUANCE_SCRATCH") or "var/scratch")) as scratch,
        ConverterPool(
            size=workers,
            workdir=Path(scratch),
            timeout=timeout,
            soffice=soffice,
            profile_template=profile_template_for(cache_dir, soffice),
        ) as pool,
    ):
        pool.start()
        maker = DocumentMaker(
            registry=registry,
            converter=pool,
            cache_dir=cache_dir,
            scratch_dir=Path(scratch),
            seals=specimen_seals(),
        )
        marker = PreviewMarker(converter=pool, template=mark_template, scratch_dir=Path(scratch))
        report = render_batch(
            batch,
            out_dir=out_dir,
            maker=maker,
            marker=marker,
            workers=workers + 1,  # one more than LibreOffice instances: rendering overlaps conversion
            on_record=on_record,
        )
        stats = pool.stats
    report.extra["conversion"] = {
        "documents": stats.documents,
        "restarts": stats.restarts,
        "clause_conversions": maker.clauses.conversions,
    }
    return report
