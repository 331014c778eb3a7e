"""The operators' desk pages (issue 24, item 2): recent batches with their counts, a page per batch with
the records it did not file, the inbox's state, and the print serials with 超期未核销率 for a period;
the statistics for a range with a chart per day (issue 25), drawn here as SVG (the CSP allows no script).

Pages only parse requests and render; ``usecases.desk_ops`` checks the role again and reads the index
and the batch reports. Nothing here writes: the pages are GETs (the serials' period is a GET form).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import g, request

from core.errors import UsageError
from desk.charts import day_chart
from usecases import desk_ops, stats

OUTCOME_TEXT = {
    "done": "完成 done",
    "rejected": "有拒绝 rejected",
    "interrupted": "中断 interrupted",
    "aborted": "中止 aborted",
    "running": "未结束 not ended",  # running now, or its process died: the index cannot tell
}
# the .status classes of desk.css for each outcome
OUTCOME_CLASS = {
    "done": "ok",
    "rejected": "bad",
    "interrupted": "warn",
    "aborted": "bad",
    "running": "pending",
}
STATUS_TEXT = {"rejected": "拒绝 rejected", "not_attempted": "未处理 not attempted"}


def register(app: Any, route: Any, page: Any, desk: Any) -> None:
    """Add this module's routes to app with the app's route guard and page renderer."""
    app.add_template_filter(age, "age")
    app.add_template_filter(share, "share")
    app.add_template_filter(score, "score")

    @route("/operations", "operate")
    def operations() -> Any:
        user = g.session.user
        args = request.args
        start, end = _day(args.get("from"), "from"), _day(args.get("to"), "to")
        overdue_days = _days(args.get("overdue_days"))
        return page(
            "ops.html",
            batches=desk_ops.recent_batches(desk, user),
            inbox=desk_ops.inbox_state(desk, user),
            serials=desk_ops.serials_page(desk, user, start=start, end=end, overdue_days=overdue_days),
            period={"from": args.get("from", ""), "to": args.get("to", ""), "overdue_days": overdue_days},
            outcome_text=OUTCOME_TEXT,
            outcome_class=OUTCOME_CLASS,
        )

    @route("/operations/batches/<batch_id>", "operate")
    def ops_batch(batch_id: str) -> Any:
        try:
            first = max(0, int(request.args.get("from", "0")))
        except ValueError as e:
            raise UsageError("from is a number") from e
        view = desk_ops.batch_page(desk, g.session.user, batch_id, first=first)
        return page(
            "ops_batch.html",
            b=view.summary,
            view=view,
            per_page=desk_ops.LISTED_PER_PAGE,
            outcome_text=OUTCOME_TEXT,
            outcome_class=OUTCOME_CLASS,
            line_status=STATUS_TEXT,
        )

    @route("/operations/stats", "operate")
    def ops_stats() -> Any:
        args = request.args
        start, end = _day(args.get("from"), "from"), _day(args.get("to"), "to")
        figures = stats.stats_page(desk, g.session.user, start=start, end=end)
        return page("ops_stats.html", stats=figures, chart=day_chart(figures))


def age(value: timedelta | None) -> str:
    """A short age: 45 秒 s, 12 分 min, 3 时 h 5 分 min, 2 天 d 4 时 h."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def share(value: float | None) -> str:
    """A share as a percentage with one decimal, or – when there was nothing to share."""
    return "–" if value is None else f"{value:.1%}"


def score(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _day(text: str | None, what: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError as e:
        raise UsageError(f"{what} is a date: YYYY-MM-DD") from e


def _days(text: str | None) -> int:
    if not text:
        return desk_ops.DEFAULT_OVERDUE_DAYS
    try:
        return int(text)
    except ValueError as e:
        raise UsageError("the overdue days are a whole number") from e
