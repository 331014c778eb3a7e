"""``REPORT.txt``: the short bilingual note filed beside every batch the watcher moves.

Written for the clerk or operator who opens ``.done/<batch>/`` or ``.failed/<batch>/``: the outcome,
the counts, then one line per rejected record — line, record_id, field: message. The messages come from
the batch report, which scrubs ID and phone numbers; they are scrubbed once more here, and nothing else
from the records (names, addresses) is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.privacy import scrub
from pipeline.report import REJECTED, BatchReport

TITLE = "出单中心收件箱批次报告 / Issuance inbox batch report"
_LABELS = {
    "archived": "已归档 archived",
    "already_archived": "此前已归档 already archived",
    "rejected": "被拒绝 rejected",
}
_OUTCOMES = {
    "done": "完成 DONE — 全部记录已归档 every record is archived",
    "rejected": "失败 FAILED — 有记录被拒绝 some records were rejected",
    "unusable": "失败 FAILED — 批次无法使用，未处理任何记录 the batch is unusable; no record was processed",
    "error": "失败 FAILED — 处理时出现意外错误，不再重试 the run stopped on an unexpected error; not retried",
}
_TODO = {
    "done": ["无需处理。 Nothing to do."],
    "rejected": [
        "更正被拒绝的记录后，只将这些记录放入新批次重新提交；重复提交已归档的记录不会重复归档。",
        "Correct the rejected records and send them again in a new batch; records already archived are "
        "never archived twice.",
    ],
    "unusable": [
        "修正批次后重新放入收件箱。",
        "Fix the batch and drop it into the inbox again.",
    ],
    "error": [
        "请将本报告交给运维人员。问题解决后将批次重新放入收件箱；已归档的记录不会重复归档。",
        "Hand this report to the operators. Once the cause is fixed, drop the batch into the inbox again: "
        "records archived before the error are never archived twice.",
    ],
}


LISTED_REJECTIONS = 200  # rejected lines a note names one by one; report.json has every one
_REJECTED_HEADING = "被拒绝的记录 Rejected records — 行 line, 记录号 record_id, 字段 field: 原因 message"


def _time(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def report_summary(report: BatchReport, *, entry: str) -> str:
    """The note for a batch that ran: ``done`` when nothing was rejected, else ``rejected``."""
    outcome = "rejected" if report.rejected else "done"
    counts = report.counts()
    lines = [
        TITLE,
        "",
        f"批次 Batch: {entry}",
        f"批次号 Batch id: {report.extra.get('batch_id', '-')}",
        f"结果 Outcome: {_OUTCOMES[outcome]}",
        f"开始 Started: {_time(report.started_at)}    结束 Finished: {_time(report.finished_at)}",
        "",
        f"记录 Records: {counts['records']}",
        *(f"  {_LABELS.get(status, status)}: {counts[status]}" for status in report.statuses),
    ]
    shown = 0
    for o in report.iter_outcomes():  # in input order; a long batch's note names the first ones
        if o.status != REJECTED:
            continue
        if shown == 0:
            lines += [
                "",
                "被拒绝的记录 Rejected records — 行 line, 记录号 record_id, 字段 field: 原因 message",
            ]
        shown += 1
        if shown > LISTED_REJECTIONS:
            continue
        reasons = "; ".join(f"{r.field}: {r.message}" for r in o.reasons) or "-"
        lines.append(scrub(f"  line {o.line}, {o.record_id or '-'}, {reasons}"))
    if shown > LISTED_REJECTIONS:
        more = shown - LISTED_REJECTIONS
        lines.append(f"  … 另有 {more} 条，见 report.json · {more} more in report.json")
    lines += ["", "处理 What to do:", *(f"  {t}" for t in _TODO[outcome])]
    return "\n".join(lines) + "\n"


def unusable_summary(*, entry: str, reason: str, started_at: datetime, finished_at: datetime) -> str:
    """The note for a batch refused whole (unreadable file, unsafe zip, no batch file in a folder)."""
    lines = [
        TITLE,
        "",
        f"批次 Batch: {entry}",
        f"结果 Outcome: {_OUTCOMES['unusable']}",
        f"开始 Started: {_time(started_at)}    结束 Finished: {_time(finished_at)}",
        "",
        scrub(f"原因 Reason: {reason}"),
        "",
        "处理 What to do:",
        *(f"  {t}" for t in _TODO["unusable"]),
    ]
    return "\n".join(lines) + "\n"


def unusable_report(
    *, entry: str, reason: str, started_at: datetime, finished_at: datetime
) -> dict[str, Any]:
    """The JSON report for a batch refused whole: no outcomes, the reason why."""
    return {
        "batch": entry,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "counts": {"records": 0, "archived": 0, "already_archived": 0, "rejected": 0},
        "unusable": scrub(reason),
        "outcomes": [],
    }


def error_summary(*, entry: str, error: str, started_at: datetime, finished_at: datetime) -> str:
    """The note for a batch whose run an unexpected error stopped: filed, not retried (issue 21, item 4)."""
    lines = [
        TITLE,
        "",
        f"批次 Batch: {entry}",
        f"结果 Outcome: {_OUTCOMES['error']}",
        f"开始 Started: {_time(started_at)}    结束 Finished: {_time(finished_at)}",
        "",
        scrub(f"错误 Error: {error}"),
        "",
        "处理 What to do:",
        *(f"  {t}" for t in _TODO["error"]),
    ]
    return "\n".join(lines) + "\n"


def error_report(*, entry: str, error: str, started_at: datetime, finished_at: datetime) -> dict[str, Any]:
    """The JSON report for a batch whose run an unexpected error stopped; what it filed is in the index."""
    return {
        "batch": entry,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "error": scrub(error),
        "outcomes": [],
    }
