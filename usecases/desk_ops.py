"""The operators' and admins' desk use cases (issue 24, item 2): batches with their counts and rejections,
the inbox's state, the print serials and their overdue rate; users, their roles, and one-time passwords.

Each function takes the ``Desk`` and the signed-in user, and checks the permission again
(``usecases.desk.require``), so that a page that forgot cannot hand anything out.

What the pages show is what the CLI already reports, nothing more: a batch's row from the index and its
batch report (``issuance run``'s ``var/reports/<batch id>.json``, or the watcher's
``INBOX/.done|.failed/<batch>/report.json``), whose record ids and messages were scrubbed of ID and
phone numbers when it was written, and are scrubbed once more here; the serials' figures are
``archive.serials.report``'s, the very function behind ``issuance serials report``.

A new user's password, and a password an admin sets, are generated here and handed back once, for the
page that shows them; only their argon2 hash is stored (``archive.users``). Every change to a user is a
ledger event naming the admin who made it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from archive import serials
from archive.index import LedgerEvent, as_utc
from archive.users import ROLES, User, check_password, one_time_password
from core.config import Settings
from core.errors import LoginRefused, PolicyNotFound, UsageError, UserError
from core.privacy import scrub
from usecases import users as accounts
from usecases.desk import Desk, require
from watchers.inbox import DONE, FAILED, LOCK, READY, WORK, Inbox

CHINA = ZoneInfo("Asia/Shanghai")
DEFAULT_OVERDUE_DAYS = serials.DEFAULT_OVERDUE_DAYS
USER_ROLES = tuple(sorted(ROLES))
RECENT_BATCHES = 50
LISTED_PER_PAGE = 200  # rejections a batch page lists at a time
INBOX_LISTED = 20  # done and failed batches listed, newest first (all are counted)
REPORTS_SCANNED = 2000  # filed batches whose report header is read to find a batch's report
_HEADER_BYTES = 256 * 1024  # a report's header (everything before its outcomes) is well under this
_OUTCOMES = b'"outcomes": ['
_WHOLE_REPORT = 64 * 2**20
# usecases.run.BatchRun's ids: started (China time), the input's hash, a random part
_BATCH_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{8}-[0-9a-f]{6}")
_WORK_DIR = re.compile(r"(?P<stem>.+)-[0-9a-f]{8}")  # watchers.inbox.Inbox.new_workdir's names


# --- batches ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSummary:
    """One batch as the index recorded it: when, who, and how its records ended."""

    batch_id: str
    input_name: str
    started_at: datetime
    finished_at: datetime | None
    operator: str
    records: int | None
    archived: int | None
    already_archived: int | None
    rejected: int | None
    not_attempted: int | None
    ended: str | None  # finished | interrupted | aborted; None: running, or its process died
    reason: str | None  # why an aborted run stopped

    @property
    def outcome(self) -> str:
        """done, rejected (finished with rejections), interrupted, aborted, or running."""
        if self.ended is None:
            return "running"
        if self.ended == "finished":
            return "rejected" if self.rejected else "done"
        return self.ended


@dataclass(frozen=True)
class Rejection:
    """A record a batch did not file, as its report lists it (line, record id, each field and why)."""

    line: int
    status: str  # rejected | not_attempted
    record_id: str | None
    policy_no: str | None
    reasons: tuple[tuple[str, str], ...]  # (field, message)


@dataclass(frozen=True)
class BatchPage:
    summary: BatchSummary
    report: str | None  # where the report was found, for the operator; None: not found
    rejections: list[Rejection]
    first: int  # the 0-based position of ``rejections[0]`` among the report's rejections
    more: bool  # the report lists more rejections after these
    unusable: str | None  # the watcher refused the batch whole, or an error stopped it: why


def _summary(row: Any) -> BatchSummary:
    return BatchSummary(
        batch_id=row.batch_id,
        input_name=scrub(row.input_name),
        started_at=as_utc(row.started_at),  # type: ignore[arg-type]
        finished_at=as_utc(row.finished_at),
        operator=row.operator,
        records=row.records,
        archived=row.archived,
        already_archived=row.already_archived,
        rejected=row.rejected,
        not_attempted=row.not_attempted,
        ended=row.ended,
        reason=scrub(row.reason) if row.reason else None,
    )


def recent_batches(desk: Desk, user: User, *, limit: int = RECENT_BATCHES) -> list[BatchSummary]:
    """The newest batches, newest first."""
    require(user, "operate")
    return [_summary(row) for row in desk.index.recent_batches(limit=limit)]


def batch_page(desk: Desk, user: User, batch_id: str, *, first: int = 0) -> BatchPage:
    """A batch's counts and the records it did not file, ``LISTED_PER_PAGE`` from the ``first``-th on."""
    require(user, "operate")
    row = desk.index.batch_row(batch_id) if _BATCH_ID.fullmatch(batch_id or "") else None
    if row is None:
        raise PolicyNotFound(f"there is no batch {batch_id[:40]!r}")
    summary = _summary(row)
    path = find_report(desk.settings, summary.batch_id, input_name=summary.input_name)
    if path is None:
        return BatchPage(summary, None, [], 0, False, None)
    first = max(0, first)
    listed: list[Rejection] = []
    more = False
    seen = 0
    for outcome in report_outcomes(path):
        if outcome.get("status") not in ("rejected", "not_attempted"):
            continue
        seen += 1
        if seen <= first:
            continue
        if len(listed) == LISTED_PER_PAGE:
            more = True
            break
        listed.append(_rejection(outcome))
    header = report_header(path) or {}
    why = header.get("unusable") or header.get("error")
    shown = _where(desk.settings, path)
    return BatchPage(summary, shown, listed, first, more, scrub(str(why)) if why else None)


def _rejection(outcome: dict[str, Any]) -> Rejection:
    def text(value: Any) -> str | None:
        return scrub(str(value)) if value is not None else None

    reasons = tuple(
        (scrub(str(r.get("field", ""))), scrub(str(r.get("message", ""))))
        for r in outcome.get("reasons") or ()
        if isinstance(r, dict)
    )
    return Rejection(
        line=int(outcome.get("line") or 0),
        status=str(outcome.get("status")),
        record_id=text(outcome.get("record_id")),
        policy_no=text(outcome.get("policy_no")),
        reasons=reasons,
    )


def find_report(settings: Settings, batch_id: str, *, input_name: str = "") -> Path | None:
    """The report of ``batch_id``: ``issuance run``'s default place, else a batch the watcher filed
    (the folders named after ``input_name`` looked in first: the watcher names them after the entry)."""
    own = settings.var_dir / "reports" / f"{batch_id}.json"
    if own.is_file():
        return own
    if settings.inbox is None:
        return None
    stem = Path(input_name).stem
    filed = _filed(settings.inbox)[:REPORTS_SCANNED]
    # a stable sort: the folders named after the input first, each group newest first
    for folder in sorted(filed, key=lambda f: not (f.name == stem or f.name.startswith(f"{stem}-"))):
        header = report_header(folder / "report.json")
        if header is not None and header.get("batch_id") == batch_id:
            return folder / "report.json"
    return None


def report_header(path: Path) -> dict[str, Any] | None:
    """A batch report's header (counts, batch id, …: everything but its outcomes), or None when it cannot
    be read. The outcomes come last (``pipeline.report.BatchReport.write``), so a long report is not
    read whole."""
    head = b""
    try:
        with path.open("rb") as fh:
            while (at := head.find(_OUTCOMES)) < 0 and len(head) < _HEADER_BYTES:
                block = fh.read(8192)  # a header is a few kilobytes: the outcomes are not read
                if not block:
                    return None
                head += block
    except OSError:
        return None
    if at < 0:
        return None
    try:
        header = json.loads(head[:at].rstrip().rstrip(b",") + b"}")
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def report_outcomes(path: Path) -> Iterator[dict[str, Any]]:
    """A batch report's outcomes, one at a time: ``BatchReport.write`` puts one on each line, so a long
    report is never read whole; a report written as one JSON document (the watcher's for a batch refused
    whole) is read whole, up to ``_WHOLE_REPORT`` bytes."""
    with path.open("rb") as fh:
        listing, listed = False, 0
        for raw in fh:
            if not listing:
                listing = _OUTCOMES in raw
                continue
            line = raw.strip().rstrip(b",")
            if not line.startswith(b"{"):
                continue
            try:
                outcome = json.loads(line)
            except ValueError as e:
                if listed:
                    raise UsageError(f"the batch report {path.name} cannot be read: {e}") from e
                break  # not one outcome a line
            listed += 1
            yield outcome
        else:
            return
    if path.stat().st_size > _WHOLE_REPORT:
        raise UsageError(
            f"the batch report {path.name} is not one outcome a line, and too long to read whole"
        )
    try:
        whole = json.loads(path.read_bytes())
    except ValueError as e:
        raise UsageError(f"the batch report {path.name} cannot be read: {e}") from e
    yield from (o for o in whole.get("outcomes", ()) if isinstance(o, dict))


def _where(settings: Settings, path: Path) -> str:
    for base, shown in ((settings.var_dir, "var"), (settings.inbox, "inbox")):
        if base is not None and path.is_relative_to(base):
            return f"{shown}/{path.relative_to(base)}"
    return path.name


def _filed(inbox: Path) -> list[Path]:
    """The folders of batches the watcher filed, in ``.done`` and ``.failed``, newest first."""
    found: list[tuple[float, Path]] = []
    for parent in (inbox / DONE, inbox / FAILED):
        try:
            with os.scandir(parent) as it:
                for item in it:
                    if item.is_dir(follow_symlinks=False):
                        found.append((item.stat(follow_symlinks=False).st_mtime, Path(item.path)))
        except OSError:
            continue
    return [path for _, path in sorted(found, key=lambda pair: pair[0], reverse=True)]


# --- the inbox -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxItem:
    """A batch in the inbox, or filed by the watcher: its name (scrubbed), since when, and what its report
    says of it (filed batches only)."""

    name: str
    since: datetime
    age: timedelta  # since then, at the desk's clock
    batch_id: str | None = None
    counts: dict[str, int] | None = None
    note: str | None = None


@dataclass(frozen=True)
class InboxState:
    folder: str | None  # as configured; None: no inbox configured
    problem: str | None  # why its state is not shown
    watcher: bool | None  # a watcher holds the inbox's lock now (None: cannot tell)
    waiting: list[InboxItem]
    running: list[InboxItem]
    done: list[InboxItem]  # the newest ``INBOX_LISTED``
    failed: list[InboxItem]
    done_count: int
    failed_count: int


def inbox_state(desk: Desk, user: User) -> InboxState:
    """What waits in the configured inbox, what the watcher is running, and what it filed."""
    require(user, "operate")
    root = desk.settings.inbox
    if root is None:
        why = "no inbox is configured ([desk] inbox, ISSUANCE_INBOX)"
        return InboxState(None, why, None, [], [], [], [], 0, 0)
    if not root.is_dir():
        return InboxState(str(root), "the inbox is not a folder", None, [], [], [], [], 0, 0)
    now = desk.clock()
    try:
        entries, _skipped = Inbox(root).scan()
    except OSError as e:
        return InboxState(str(root), f"the inbox cannot be read ({e.strerror})", None, [], [], [], [], 0, 0)
    working: dict[str, datetime] = {}
    try:
        with os.scandir(root / WORK) as it:
            for item in it:
                match = _WORK_DIR.fullmatch(item.name)
                if match and item.is_dir(follow_symlinks=False):
                    working[match["stem"]] = _mtime(Path(item.path))
    except OSError:
        pass
    waiting: list[InboxItem] = []
    running: list[InboxItem] = []
    for entry in sorted(entries, key=lambda e: e.name):
        since = _mtime(entry.path)
        if since is None:
            continue  # gone meanwhile
        started = working.get(entry.stem)
        if started is not None:
            running.append(InboxItem(scrub(entry.name), started, _age(now, started)))
        else:
            unready = entry.kind == "folder" and not (entry.path / READY).exists()
            note = f"waiting for {READY}" if unready else None
            waiting.append(InboxItem(scrub(entry.name), since, _age(now, since), note=note))
    filed: dict[str, list[Path]] = {DONE: [], FAILED: []}
    for folder in _filed(root):
        filed[folder.parent.name].append(folder)
    return InboxState(
        folder=str(root),
        problem=None,
        watcher=_locked(root / LOCK),
        waiting=waiting,
        running=running,
        done=[_filed_item(f, now) for f in filed[DONE][:INBOX_LISTED]],
        failed=[_filed_item(f, now) for f in filed[FAILED][:INBOX_LISTED]],
        done_count=len(filed[DONE]),
        failed_count=len(filed[FAILED]),
    )


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.lstat().st_mtime).astimezone()
    except OSError:
        return None


def _age(now: datetime, since: datetime) -> timedelta:
    return max(timedelta(0), now - since)


def _filed_item(folder: Path, now: datetime) -> InboxItem:
    header = report_header(folder / "report.json") or {}
    counts = header.get("counts") if isinstance(header.get("counts"), dict) else None
    why = header.get("unusable") or header.get("error")
    batch_id = header.get("batch_id")
    since = _mtime(folder) or now
    return InboxItem(
        name=scrub(folder.name),
        since=since,
        age=_age(now, since),
        batch_id=batch_id if isinstance(batch_id, str) and _BATCH_ID.fullmatch(batch_id) else None,
        counts={k: int(v) for k, v in counts.items() if isinstance(v, int)} if counts else None,
        note=scrub(str(why)) if why else None,
    )


def _locked(lock: Path) -> bool | None:
    """Whether some process holds ``flock`` on the watcher's lock file (``/proc/locks``: looking must
    not take the lock, or a watcher starting at that moment would be refused)."""
    try:
        st = lock.stat()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF"; a waiter's line has "->" after the number
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return True
    return False


# --- print serials -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SerialsPage:
    report: serials.SerialReport  # the period's counts and rate, as ``issuance serials report``
    now: dict[str, int]  # the registry today: blank (issued, not used), used, voided, reconciled


def serials_page(
    desk: Desk, user: User, *, start: date | None, end: date | None, overdue_days: int
) -> SerialsPage:
    """The serials' counts, 超期未核销率 and 超期未回收率 for a period (``archive.serials.report``), and the
    registry's state now."""
    require(user, "operate")
    if not 0 <= overdue_days <= 3650:
        raise UsageError("the overdue days are 0 to 3650")
    today = desk.clock().astimezone(CHINA).date()
    report = serials.report(desk.index, start=start, end=end, overdue_days=overdue_days, today=today)
    counts = desk.index.serials_by_state()
    now = {
        state: sum(n for (s, _done), n in counts.items() if s == state)
        for state in (serials.ISSUED, serials.USED, serials.VOIDED)
    }
    now["reconciled"] = sum(n for (_s, done), n in counts.items() if done)
    return SerialsPage(report, now)


# --- users (admins) ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OneTimePassword:
    """A user and the password just given to them: shown once, on the page that answers the admin."""

    user: User
    password: str


def list_users(desk: Desk, admin: User) -> list[User]:
    require(admin, "manage_users")
    return accounts.list_users(desk.settings, users=desk.people.accounts)


def add_user(
    desk: Desk,
    admin: User,
    *,
    name: str,
    roles: Sequence[str],
    branches: Sequence[str],
    display_name: str | None,
) -> OneTimePassword:
    """Add an enabled user with a generated password (``user.added``, naming the admin)."""
    require(admin, "manage_users")
    password = one_time_password()
    user = accounts.add_user(
        desk.settings,
        name=name.strip(),
        roles=roles,
        branches=branches,
        display_name=display_name,
        password=password,
        by=admin.name,
        users=desk.people.accounts,
    )
    return OneTimePassword(user, password)


def disable_user(desk: Desk, admin: User, name: str) -> tuple[User, int]:
    """Disable ``name`` (``user.disabled``, naming the admin) and end their open desk sessions; the user,
    and how many sessions ended."""
    require(admin, "manage_users")
    if name == admin.name:
        raise UsageError("you cannot disable your own account", hint="another admin can")
    user = accounts.disable_user(desk.settings, name, by=admin.name, users=desk.people.accounts)
    ended = desk.index.end_sessions_of(user.name, at=desk.clock(), why="disabled")
    return user, ended


def new_password(desk: Desk, admin: User, name: str) -> OneTimePassword:
    """Give ``name`` a new generated password (``user.password_set``, naming the admin); it also ends a
    lockout, and the user's open desk sessions."""
    require(admin, "manage_users")
    password = one_time_password()
    user = accounts.set_password(desk.settings, name, password, by=admin.name, users=desk.people.accounts)
    # whoever held the old password is signed out with it
    desk.index.end_sessions_of(user.name, at=desk.clock(), why="password_set")
    return OneTimePassword(user, password)


def change_own_password(desk: Desk, user: User, *, current: str, new: str, repeated: str) -> None:
    """A signed-in user replaces their password (the one-time password an admin gave them, say): the
    current one is checked as a sign-in is (a wrong one counts towards the lockout, ``LoginRefused``),
    the new one must be typed twice and differ. Every session of the user ends, this one too."""
    if user.source != "local":
        raise UserError("your password is the directory's (LDAP): change it there")
    if new != repeated:
        raise UserError("the new password and its repetition differ")
    if new == current:
        raise UserError("the new password must differ from the current one")
    check_password(new)
    try:
        desk.people.accounts.verify_password(user.name, current)
    except LoginRefused as refused:
        detail = {"reason": refused.reason}
        desk.index.append_event(LedgerEvent(user.name, "desk.password_change_refused", user.name, detail))
        raise
    accounts.set_password(desk.settings, user.name, new, by=user.name, users=desk.people.accounts)
    desk.index.end_sessions_of(user.name, at=desk.clock(), why="password_set")
