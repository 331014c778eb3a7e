"""The centre's statistics (issue 25; DOMAIN.md, "Controls"): ``issuance stats`` and the operators' page.

For the China dates ``start``..``end`` (inclusive), in total and by branch, product, clerk or day:

- ``issued``: policies issued (their issue versions), by the policy's issue time: the record's
  ``issued_at``, or the filing time when the record had none;
- ``endorsed``: every endorsement version filed, whatever its type; ``surrendered`` and ``cancelled``
  are those of them of type surrender (退保) and cancel (注销), counted in ``endorsed`` too;
- ``reissued``: reissue (补发) versions; ``rejected``: input lines that batch runs rejected (a line
  rejected by two runs counts twice);
- ``timely_share``: of the issue and endorsement versions in the range whose approval time the index
  holds, the share issued within 3 working days of approval (``core.workdays``). An endorsement's issue
  time is its filing time (the index keeps no other);
- ``images_complete_share``: of the policies issued in the range, those whose required images are all
  filed now (a later supplement counts); the audit sheet's two 10-point image scores on average, as
  the index knows them: 免责事项说明书影像存档情况 10 when the exemption notice is not missing,
  承保档案存档情况 10 when the images are complete;
- ``unregistered_serials``: print serials used in the range that were never issued to a clerk.

A share is None when nothing was there to share; a total's share is taken from the total's counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from archive.index import Index
from archive.index.stats import GROUPS, Cells, Key
from archive.users import User
from core.config import Settings
from core.errors import UsageError
from core.workdays import WorkCalendar, holidays_path, load_calendar
from usecases.desk import Desk, require
from usecases.session import Archive

CHINA = ZoneInfo("Asia/Shanghai")
POINTS = 10  # each image score's maximum on the centre's audit sheet
DEFAULT_DAYS = 30  # the operators' page: the last 30 days, today included
MAX_DAYS = 3660  # a range longer than ten years is a typing mistake


@dataclass
class Figures:
    """The counts of one group (or of the whole range)."""

    issued: int = 0
    endorsed: int = 0
    surrendered: int = 0
    cancelled: int = 0
    reissued: int = 0
    rejected: int = 0
    timely: int = 0  # issue and endorsement versions issued within 3 working days of approval
    timed: int = 0  # issue and endorsement versions whose approval time the index holds
    images_complete: int = 0  # policies issued whose images are complete
    exemption_kept: int = 0  # policies issued whose exemption notice is not missing
    unregistered_serials: int = 0

    @property
    def timely_share(self) -> float | None:
        return self.timely / self.timed if self.timed else None

    @property
    def images_complete_share(self) -> float | None:
        return self.images_complete / self.issued if self.issued else None

    @property
    def exemption_notice_score(self) -> float | None:
        """免责事项说明书影像存档情况, 0–10 on average."""
        return POINTS * self.exemption_kept / self.issued if self.issued else None

    @property
    def archive_score(self) -> float | None:
        """承保档案存档情况, 0–10 on average."""
        return POINTS * self.images_complete / self.issued if self.issued else None

    def add(self, other: Figures) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_json(self) -> dict[str, Any]:
        return {
            "issued": self.issued,
            "endorsed": self.endorsed,
            "surrendered": self.surrendered,
            "cancelled": self.cancelled,
            "reissued": self.reissued,
            "rejected": self.rejected,
            "timely_share": self.timely_share,
            "timely": self.timely,
            "timed": self.timed,
            "images_complete_share": self.images_complete_share,
            "exemption_notice_score": self.exemption_notice_score,
            "archive_score": self.archive_score,
            "unregistered_serials": self.unregistered_serials,
        }


_COUNTS = tuple(f.name for f in fields(Figures))


@dataclass(frozen=True)
class Group:
    key: Key
    figures: Figures


@dataclass(frozen=True)
class Statistics:
    start: date
    end: date
    by: str | None
    total: Figures
    groups: tuple[Group, ...] = ()
    # years in the range the holiday file does not list (weekends alone counted), or lists as a draft
    uncovered_years: tuple[int, ...] = ()
    unconfirmed_years: tuple[int, ...] = ()
    calendar: str = field(default="", compare=False)

    def as_json(self) -> dict[str, Any]:
        """One object: the totals' keys at the top, and ``by``, a list of the same keys plus the group's."""
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            **self.total.as_json(),
            "by": [
                {self.by: _json_key(g.key), **g.figures.as_json()} for g in self.groups if self.by is not None
            ],
            "calendar": {
                "file": self.calendar,
                "years_not_listed": list(self.uncovered_years),
                "years_to_confirm": list(self.unconfirmed_years),
            },
        }


def statistics(
    settings: Settings, *, start: date, end: date, by: str | None = None, calendar: WorkCalendar | None = None
) -> Statistics:
    """``issuance stats``: the figures for ``start``..``end`` from the configured index."""
    path = holidays_path(settings.templates_dir)
    calendar = calendar or load_calendar(path)
    with Archive(settings) as archive:
        return compute(archive.index, calendar, start=start, end=end, by=by, calendar_name=str(path))


def stats_page(desk: Desk, user: User, *, start: date | None, end: date | None) -> Statistics:
    """The operators' page: the figures by day, for ``start``..``end`` (default: the last 30 days)."""
    require(user, "operate")
    end = end or desk.clock().astimezone(CHINA).date()
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    path = holidays_path(desk.settings.templates_dir)
    return compute(desk.index, load_calendar(path), start=start, end=end, by="day", calendar_name=str(path))


def compute(
    index: Index, calendar: WorkCalendar, *, start: date, end: date, by: str | None, calendar_name: str = ""
) -> Statistics:
    """The figures for the China dates ``start``..``end`` (inclusive), grouped by ``by`` (or not)."""
    if by is not None and by not in GROUPS:
        raise UsageError(f"--by is one of {', '.join(GROUPS)}, not {by!r}")
    if start > end:
        raise UsageError(f"the range starts ({start}) after it ends ({end})")
    if (end - start).days >= MAX_DAYS:
        raise UsageError(f"a range of at most {MAX_DAYS} days, please")
    lo = datetime.combine(start, time(), CHINA).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), time(), CHINA).astimezone(UTC)
    grouped = _figures(index.stats_cells(start=lo, end=hi, by=by), calendar)
    # every counted row falls in exactly one group: the totals are the groups' sums (one pass, not two)
    total = Figures()
    for f in grouped.values():
        total.add(f)
    groups: tuple[Group, ...] = ()
    if by is not None:
        if by == "day":  # every day of the range, so that a chart has no holes
            for n in range((end - start).days + 1):
                grouped.setdefault(start + timedelta(days=n), Figures())
        groups = tuple(Group(k, grouped[k]) for k in sorted(grouped, key=_order))
    days = {start + timedelta(days=n) for n in range((end - start).days + 1)}
    return Statistics(
        start=start,
        end=end,
        by=by,
        total=total,
        groups=groups,
        uncovered_years=tuple(calendar.uncovered(days)),
        unconfirmed_years=tuple(y for y in calendar.unconfirmed() if start.year <= y <= end.year),
        calendar=calendar_name,
    )


def _figures(cells: Cells, calendar: WorkCalendar) -> dict[Key, Figures]:
    """Figures by key from the index's cells; each (approval date, issue date) pair judged once."""
    out: dict[Key, Figures] = defaultdict(Figures)
    timely: dict[tuple[date, date], bool] = {}

    def judge(approved: date | None, issued: date) -> tuple[int, int]:
        if approved is None:
            return 0, 0
        pair = (approved, issued)
        if pair not in timely:
            timely[pair] = calendar.timely(approved, issued)
        return int(timely[pair]), 1

    for c in cells.issues:
        f = out[c.key]
        f.issued += c.versions
        f.images_complete += c.complete
        f.exemption_kept += c.exemption_kept
        on_time, timed = judge(c.approved_day, c.issued_day)
        f.timely += on_time * c.versions
        f.timed += timed * c.versions
    for c in cells.later:
        f = out[c.key]
        if c.kind == "reissue":
            f.reissued += c.versions
            continue
        f.endorsed += c.versions
        f.surrendered += c.versions if c.endorsement_type == "surrender" else 0
        f.cancelled += c.versions if c.endorsement_type == "cancel" else 0
        on_time, timed = judge(c.approved_day, c.issued_day)
        f.timely += on_time * c.versions
        f.timed += timed * c.versions
    for key, n in cells.rejected:
        out[key].rejected += n
    for key, n in cells.unregistered_serials:
        out[key].unregistered_serials += n
    return dict(out)


def _order(key: Key) -> tuple[int, str]:
    return (1, "") if key is None else (0, key.isoformat() if isinstance(key, date) else str(key))


def _json_key(key: Key) -> str | None:
    return key.isoformat() if isinstance(key, date) else key


def days_of(statistics: Statistics) -> Iterable[tuple[date, Figures]]:
    """The groups of a by-day statistics, as (day, figures)."""
    return ((g.key, g.figures) for g in statistics.groups if isinstance(g.key, date))
