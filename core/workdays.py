"""Working days in mainland China, for the service standard "issue within 3 working days of approval".

A day is a working day when it is Monday to Friday and not a public holiday, or when it is a Saturday or
Sunday that the State Council made a working day (调休上班). The holidays and the working weekend days
come from ``templates/holidays.toml``, a data file the business side edits each year when the State
Council publishes its notice (loading it checks every entry and names a bad one). A year the file does
not list is counted by weekends alone; ``WorkCalendar.uncovered`` says which years those were, so that
whoever shows a figure can say so.

Dates are Asia/Shanghai local dates: a time is first converted to China time, then its date is taken.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.errors import TemplateError
from core.products import DEFAULT_TEMPLATES_DIR

CHINA = ZoneInfo("Asia/Shanghai")
HOLIDAYS_FILE = "holidays.toml"
# The service standard (DOMAIN.md, "Controls"): issue, and endorse, within 3 working days of approval.
TIMELY_WORKING_DAYS = 3

_YEAR_KEYS = {"confirmed", "source", "note", "holidays", "working_days"}
_HOLIDAY_KEYS = {"name", "from", "to", "note"}
_WORKING_DAY_KEYS = {"date", "for", "note"}


def china_date(value: date | datetime) -> date:
    """The Asia/Shanghai date of a time (an aware datetime), or the date itself."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a time without a zone cannot be placed on China's calendar")
        return value.astimezone(CHINA).date()
    return value


@dataclass(frozen=True)
class YearSchedule:
    """One year of the file: its days off on weekdays and weekends, and its working weekend days."""

    year: int
    confirmed: bool  # False: a draft the business side has still to check against the State Council
    source: str
    holidays: frozenset[date]  # every day off of every holiday period, weekends inside them included
    working_days: frozenset[date]  # Saturdays and Sundays worked (调休上班)


@dataclass(frozen=True)
class WorkCalendar:
    """China's working days for the years the file lists; weekends alone for any other year."""

    years: Mapping[int, YearSchedule]

    def is_working_day(self, day: date) -> bool:
        schedule = self.years.get(day.year)
        if schedule is not None:
            if day in schedule.working_days:
                return True
            if day in schedule.holidays:
                return False
        return day.weekday() < 5

    def working_days_between(self, approved_at: date | datetime, issued_at: date | datetime) -> int:
        """How many working days after the approval's date, up to and including the issue's date.

        Both are taken as Asia/Shanghai dates. The approval's own day never counts (whatever its hour);
        the issue's day counts when it is a working day. 0 when the issue is on the approval's day, or
        on non-working days after it only, or before it.
        """
        start, end = china_date(approved_at), china_date(issued_at)
        count = 0
        day = start + timedelta(days=1)
        while day <= end:
            count += self.is_working_day(day)
            day += timedelta(days=1)
        return count

    def timely(self, approved_at: date | datetime, issued_at: date | datetime) -> bool:
        """Issued within 3 working days of approval: ``working_days_between`` is at most 3.

        Approved on a Friday: issued by the Wednesday after is timely, on Thursday late (with no holiday
        between). Approved on a Saturday: Monday to Wednesday are the three working days.
        """
        return self.working_days_between(approved_at, issued_at) <= TIMELY_WORKING_DAYS

    def uncovered(self, days: Iterable[date]) -> list[int]:
        """The years among ``days`` that the file does not list (counted by weekends alone)."""
        return sorted({d.year for d in days} - set(self.years))

    def unconfirmed(self) -> list[int]:
        """The years the file marks as drafts (``confirmed = false``)."""
        return sorted(y for y, s in self.years.items() if not s.confirmed)


def holidays_path(templates_dir: Path | None = None) -> Path:
    return (templates_dir or DEFAULT_TEMPLATES_DIR) / HOLIDAYS_FILE


def load_calendar(path: Path | None = None) -> WorkCalendar:
    """Read and check ``path`` (default: the bundled ``templates/holidays.toml``).

    ``TemplateError`` naming the file and the entry for anything wrong: a table that is not a year, an
    unknown key, a date outside its year, a period ending before it starts, a working day that is not a
    Saturday or Sunday, a day both off and worked.
    """
    path = path or holidays_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TemplateError(f"cannot read the holiday calendar {path}: {e.strerror or e}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TemplateError(f"the holiday calendar {path} is not valid TOML: {e}") from e
    years: dict[int, YearSchedule] = {}
    for key, table in data.items():
        where = f"{path.name} [{key}]"
        if not (key.isdigit() and len(key) == 4) or not isinstance(table, dict):
            raise TemplateError(f"{where}: each table is a year, e.g. [2026]", hint=f"fix {path}")
        years[int(key)] = _year(int(key), table, where, path)
    return WorkCalendar(years)


def _year(year: int, table: dict[str, Any], where: str, path: Path) -> YearSchedule:
    def bad(message: str) -> TemplateError:
        return TemplateError(message, hint=f"fix {path}")

    _known_keys(table, _YEAR_KEYS, where, bad)
    confirmed = table.get("confirmed")
    if not isinstance(confirmed, bool):
        raise bad(f"{where}: confirmed = true or false is required (false: a draft to be checked)")
    holidays: set[date] = set()
    for i, entry in enumerate(_list(table, "holidays", where, bad)):
        at = f"{where} holidays[{i}]"
        _known_keys(entry, _HOLIDAY_KEYS, at, bad)
        if not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise bad(f"{at}: a holiday needs a name")
        first = _date(entry, "from", at, year, bad)
        last = _date(entry, "to", at, year, bad) if "to" in entry else first
        if last < first:
            raise bad(f"{at} ({entry['name']}): to {last} is before from {first}")
        holidays.update(first + timedelta(days=n) for n in range((last - first).days + 1))
    working: set[date] = set()
    for i, entry in enumerate(_list(table, "working_days", where, bad)):
        at = f"{where} working_days[{i}]"
        _known_keys(entry, _WORKING_DAY_KEYS, at, bad)
        day = _date(entry, "date", at, year, bad)
        if day.weekday() < 5:
            raise bad(f"{at}: {day} is a {day:%A}; only a Saturday or Sunday can be made a working day")
        if day in holidays:
            raise bad(f"{at}: {day} is also listed as a holiday")
        working.add(day)
    return YearSchedule(
        year=year,
        confirmed=confirmed,
        source=str(table.get("source", "")),
        holidays=frozenset(holidays),
        working_days=frozenset(working),
    )


def _known_keys(entry: Any, known: set[str], at: str, bad: Any) -> None:
    if not isinstance(entry, dict):
        raise bad(f"{at}: expected a table")
    unknown = sorted(set(entry) - known)
    if unknown:
        raise bad(f"{at}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _list(table: dict[str, Any], key: str, where: str, bad: Any) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise bad(f"{where}: {key} is a list of tables")
    return value


def _date(entry: dict[str, Any], key: str, at: str, year: int, bad: Any) -> date:
    value = entry.get(key)
    # TOML's local date (2026-10-01, no quotes) reads as a date; a local date-time is a datetime
    if not isinstance(value, date) or isinstance(value, datetime):
        raise bad(f"{at}: {key} must be a date written as YYYY-MM-DD without quotes, not {value!r}")
    if value.year != year:
        raise bad(f"{at}: {key} {value} is not in {year}")
    return value
