"""The inbox watcher: notices complete batches and hands them, one at a time, to a ``BatchRunner``.

Modelled on paperless-ngx's consumer and OCRmyPDF's watcher. What is promised:

- **Only complete batches are taken.** An entry is looked at when it appears and again once it has been
  quiet (no file-system event) for ``settle`` seconds; it is taken when its signature (inode, size and
  mtime of the file, or of every file in a folder) is unchanged between the two looks, it is still a
  regular file (or folder), and ``Inbox.not_ready`` has no objection: a folder has its ``READY``; a file
  is not open for writing by another program; its content does not look cut short (up to a grace of
  ``WatchOptions.grace`` seconds, for copies that pause longer than ``settle``).
- **Nothing is missed.** Events (watchdog) make it prompt; a full rescan every ``rescan`` seconds catches
  what events missed; what is already in the inbox at start is taken like a new arrival.
- **Every outcome has one place.** Done (every record archived or already archived) → ``.done/<batch>/``;
  unusable, some record rejected, or the run stopped by an unexpected error → ``.failed/<batch>/``, each
  beside ``report.json`` and ``REPORT.txt`` (which name the error). Only an unavailable component
  (store, index, LibreOffice: ``ComponentUnavailable``), or the inbox's own disk failing while the batch is
  prepared, leaves the batch in the inbox and retries it with exponential backoff (5 s doubling to 5 min,
  per batch): an input that cannot be used is never retried (issue 21, item 4), and a batch never goes to
  ``.failed`` for a component's fault.
- **Stopping is clean.** ``stop`` set (SIGTERM, SIGINT): the records in flight finish, no new one
  starts, the batch stays in the inbox for the next start. After a crash or ``kill -9`` the next watcher
  simply runs the batch again: the pipeline's idempotency files each record exactly once.
- **One watcher per inbox** (``InboxLock``).

Logs: one ``key=value`` line per batch (``event=batch``: name, batch_id, counts, outcome done / failed /
retry / interrupted, seconds) and per rejected record (``event=rejected``: line, record_id, field). No
personal data: record contents are never logged, only ids, field names and counts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from core.errors import BatchUnreadable, ComponentUnavailable
from core.privacy import scrub
from pipeline.report import NOT_ATTEMPTED
from watchers.inbox import Entry, Inbox, Signature, is_ignored
from watchers.runner import BatchRunner
from watchers.summary import (
    LISTED_REJECTIONS,
    error_report,
    error_summary,
    report_summary,
    unusable_report,
    unusable_summary,
)
from watchers.zipbatch import ZipLimits, extract_batch

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")
LOGGED_REJECTIONS = LISTED_REJECTIONS  # rejected lines logged one by one; the report has every one
# events that change nothing: our own looks open and read the files
_QUIET_EVENTS = {"opened", "closed_no_write"}
_MAX_SLEEP = 0.5  # how often the loop notices ``stop`` (set by a signal handler, which must not block)


@dataclass(frozen=True)
class WatchOptions:
    """How the watcher decides and retries; times in seconds."""

    settle: float = 5.0
    rescan: float = 60.0
    once: bool = False
    backoff_first: float = 5.0
    backoff_max: float = 300.0
    zip_limits: ZipLimits = field(default_factory=ZipLimits)

    @property
    def grace(self) -> float:
        """How long a quiet file that looks cut short waits before it is taken as it is."""
        return max(10 * self.settle, 30.0)


@dataclass(frozen=True)
class WatchSummary:
    """What one watcher run did (for ``--once``'s exit code and its closing line)."""

    done: tuple[str, ...]
    failed: tuple[str, ...]
    retrying: tuple[str, ...]  # left in the inbox after a component failure (or the inbox's disk failing)
    waiting: tuple[str, ...]  # left in the inbox: not complete yet, or interrupted by ``stop``
    stopped: bool


State = Literal["settling", "waiting", "backoff", "ready", "left"]


@dataclass
class _Tracked:
    """The watcher's running knowledge of one inbox entry (mutable, private to the loop)."""

    entry: Entry
    since: float
    signature: Signature | None = None
    last_event: float = 0.0
    due: float = 0.0
    looks: int = 0
    state: State = "settling"
    attempts: int = 0
    next_try: float = 0.0
    noted: str | None = None


def _kv(**fields: Any) -> str:
    """``key=value`` pairs; values with spaces, quotes or ``=`` are JSON-quoted."""
    out = []
    for key, value in fields.items():
        if value is None:
            continue
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        if not text or any(c.isspace() or c in '"=' for c in text):
            text = json.dumps(text, ensure_ascii=False)
        out.append(f"{key}={text}")
    return " ".join(out)


class _Events(FileSystemEventHandler):
    """Receives watchdog events (its own thread) and notes, per top-level name, when it last changed."""

    def __init__(self, root: Path, wake: threading.Event) -> None:
        super().__init__()
        self._root = os.path.abspath(root)
        self._wake = wake
        self._lock = threading.Lock()
        self._changed: dict[str, float] = {}

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.event_type in _QUIET_EVENTS:
            return
        now = time.monotonic()
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if not path:
                continue
            rel = os.path.relpath(os.fsdecode(path), self._root)
            name = rel.split(os.sep, 1)[0]
            if name in (".", "..") or rel.startswith("..") or is_ignored(name):
                continue
            with self._lock:
                self._changed[name] = now
        self._wake.set()

    def take(self) -> dict[str, float]:
        with self._lock:
            changed, self._changed = self._changed, {}
        return changed


class Watcher:
    """Watches one inbox until ``stop`` is set (or, with ``once``, until what was there is handled)."""

    def __init__(
        self,
        inbox: Path,
        *,
        runner: BatchRunner,
        options: WatchOptions,
        stop: threading.Event,
    ) -> None:
        self.inbox = Inbox(inbox)
        self.runner = runner
        self.options = options
        self.stop = stop
        self._wake = threading.Event()
        self._events = _Events(inbox, self._wake)
        self._tracked: dict[str, _Tracked] = {}
        self._skipped: set[tuple[str, str]] = set()
        self._observer: Any = None
        self._folder_watches: dict[str, Any] = {}
        self._done: list[str] = []
        self._failed: list[str] = []
        self._retrying: set[str] = set()

    # --- the life of a watcher ------------------------------------------------------------------

    def run(self) -> WatchSummary:
        """Lock the inbox (``InboxLocked`` if another watcher has it), then watch; always unlocks."""
        with self.inbox.lock():
            self.inbox.prepare()
            logger.info(
                _kv(
                    event="start",
                    inbox=str(self.inbox.root),
                    pid=os.getpid(),
                    settle=self.options.settle,
                    rescan=self.options.rescan,
                    once=self.options.once,
                )
            )
            try:
                if not self.options.once:
                    self._start_observer()
                self._loop()
            finally:
                self._stop_observer()
                self.runner.close()
            summary = WatchSummary(
                done=tuple(self._done),
                failed=tuple(self._failed),
                retrying=tuple(sorted(self._retrying)),
                waiting=tuple(sorted(set(self._tracked) - self._retrying)),
                stopped=self.stop.is_set(),
            )
            logger.info(
                _kv(
                    event="stop",
                    done=len(summary.done),
                    failed=len(summary.failed),
                    retrying=len(summary.retrying),
                    waiting=len(summary.waiting),
                    signal=summary.stopped,
                )
            )
            return summary

    def _start_observer(self) -> None:
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.schedule(self._events, str(self.inbox.root), recursive=False)
        self._observer.start()

    def _stop_observer(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def _watch_folder(self, entry: Entry) -> None:
        # the inbox is watched flat (its .done/ grows without end); each folder batch gets its own watch
        if self._observer is None or entry.name in self._folder_watches:
            return
        try:
            self._folder_watches[entry.name] = self._observer.schedule(
                self._events, str(entry.path), recursive=True
            )
        except OSError as e:  # gone already, or out of inotify watches: the rescan still sees it
            logger.debug("cannot watch %s: %s", entry.name, e)

    def _unwatch_folder(self, name: str) -> None:
        watch = self._folder_watches.pop(name, None)
        if watch is not None and self._observer is not None:
            try:
                self._observer.unschedule(watch)
            except Exception:  # watchdog drops watches of vanished folders by itself
                logger.debug("unwatching %s", name, exc_info=True)

    # --- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        next_rescan = 0.0
        first = True
        while not self.stop.is_set():
            now = time.monotonic()
            changed = self._events.take()
            if now >= next_rescan or (not self.options.once and set(changed) - set(self._tracked)):
                self._refresh(now, admit_new=first or not self.options.once)
                first = False
                if now >= next_rescan:
                    next_rescan = now + self.options.rescan
            for name, when in changed.items():
                tracked = self._tracked.get(name)
                if tracked is not None:
                    tracked.last_event = max(tracked.last_event, when)
                    tracked.due = min(tracked.due, when + self.options.settle)
            for tracked in sorted(self._tracked.values(), key=lambda t: (t.since, t.entry.name)):
                if tracked.state != "left" and tracked.due <= now:
                    self._look(tracked, now)
            ready = [t for t in self._tracked.values() if t.state == "ready"]
            if ready:
                self._take(min(ready, key=lambda t: (t.since, t.entry.name)))
                continue
            pending = [t for t in self._tracked.values() if t.state != "left"]
            if self.options.once and not pending:
                return
            wake_at = min([next_rescan, *(t.due for t in pending)])
            self._wake.wait(min(max(0.0, wake_at - time.monotonic()), _MAX_SLEEP))
            self._wake.clear()

    def _refresh(self, now: float, *, admit_new: bool) -> None:
        """List the inbox: track new entries, forget vanished ones, note what is left alone."""
        try:
            entries, skipped = self.inbox.scan()
        except OSError as e:
            logger.error(_kv(event="scan", inbox=str(self.inbox.root), error=e.strerror or str(e)))
            return
        present = {e.name: e for e in entries}
        for name in list(self._tracked):
            if present.get(name) != self._tracked[name].entry:
                del self._tracked[name]
                self._unwatch_folder(name)
        for name, entry in present.items():
            if name not in self._tracked and admit_new:
                self._tracked[name] = _Tracked(entry=entry, since=now, due=now)
                if entry.kind == "folder":
                    self._watch_folder(entry)
        names = {s.name for s in skipped}
        self._skipped = {s for s in self._skipped if s[0] in names}
        for s in skipped:
            if (s.name, s.why) not in self._skipped:
                self._skipped.add((s.name, s.why))
                logger.info(_kv(event="skipped", name=s.name, why=s.why))

    def _look(self, t: _Tracked, now: float) -> None:
        """Decide what ``t`` is waiting for, and when to look again."""
        signature = Inbox.signature(t.entry)
        if signature is None:
            del self._tracked[t.entry.name]
            self._unwatch_folder(t.entry.name)
            return
        t.looks += 1
        if signature != t.signature:
            t.signature, t.since = signature, now
        quiet_from = max(t.since, t.last_event)
        if now - quiet_from < self.options.settle:
            self._state(t, "settling", due=quiet_from + self.options.settle, once_final=t.looks > 1)
            return
        if now < t.next_try:
            self._state(t, "backoff", due=t.next_try)
            return
        reason = self.inbox.not_ready(t.entry, grace=self.options.grace, now=time.time())
        if reason is not None:
            if reason != t.noted:
                t.noted = reason
                logger.info(_kv(event="waiting", batch=t.entry.name, why=reason))
            # a folder has its own watch: READY or a closing writer wakes it; a file is polled
            again = self.options.rescan if t.entry.kind == "folder" else max(self.options.settle, 1.0)
            self._state(t, "waiting", due=now + again, once_final=True)
            return
        t.noted = None
        self._state(t, "ready", due=now)

    def _state(self, t: _Tracked, state: State, *, due: float, once_final: bool = False) -> None:
        if self.options.once and once_final:
            # --once looks twice, ``settle`` apart; what is not ready then is left for the next run
            t.state = "left"
            logger.info(_kv(event="left", batch=t.entry.name, why=t.noted or "still changing"))
            return
        t.state, t.due = state, due

    # --- taking one batch --------------------------------------------------------------------------

    def _take(self, t: _Tracked) -> None:
        entry = t.entry
        if Inbox.signature(entry) != t.signature:  # changed since the look that found it ready
            self._state(t, "settling", due=time.monotonic() + self.options.settle, once_final=True)
            return
        started = datetime.now(CHINA)
        clock = time.monotonic()
        work: Path | None = None
        try:
            work = self.inbox.new_workdir(entry)
            self._attempt(t, work, started=started, clock=clock)
        except Exception as e:  # the inbox itself failed us (disk full, permissions): not the batch's fault
            self._retry(t, e, clock=clock)
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)

    def _prepare(self, entry: Entry, work: Path) -> Path:
        """The batch file to run: a private copy, the unpacked zip's, or the folder's own."""
        if entry.kind == "folder":
            return Inbox.batch_file(entry.path)
        if entry.kind == "zip":
            return extract_batch(entry.path, into=work, limits=self.options.zip_limits)
        # a single file runs from a private copy: a writer that comes back cannot change it mid-run, and
        # image paths resolve against an empty folder, never against other batches in the inbox
        copy = work / entry.name
        shutil.copyfile(entry.path, copy)
        return copy

    def _attempt(self, t: _Tracked, work: Path, *, started: datetime, clock: float) -> None:
        entry = t.entry
        try:
            batch = self._prepare(entry, work)
        except BatchUnreadable as e:
            self._file_unusable(t, reason=str(e), started=started, clock=clock)
            return
        except OSError as e:  # copying or unpacking into .work: the inbox's disk, not the batch
            self._retry(t, e, clock=clock)
            return
        try:
            self.runner.check(batch)
            report = self.runner.run(batch, stop=self.stop)
        except BatchUnreadable as e:
            self._file_unusable(t, reason=str(e), started=started, clock=clock)
            return
        except ComponentUnavailable as e:
            self._retry(t, e, clock=clock)
            return
        except Exception as e:  # retrying would meet it again, forever: the batch is filed with the error
            if self.stop.is_set():  # e.g. LibreOffice got the same SIGTERM: not the batch's fault
                self._retry(t, e, clock=clock)
            else:
                self._file_error(t, error=e, started=started, clock=clock)
            return
        seconds = time.monotonic() - clock
        counts = report.counts()
        batch_id = report.extra.get("batch_id")
        if report.extra.get("interrupted"):
            logger.warning(
                _kv(
                    event="batch",
                    batch=entry.name,
                    batch_id=batch_id,
                    **counts,
                    outcome="interrupted",
                    seconds=seconds,
                    note="left in the inbox; the next start finishes it",
                )
            )
            t.state = "left"
            return
        if Inbox.signature(entry) != t.signature:
            logger.warning(
                _kv(
                    event="batch",
                    batch=entry.name,
                    batch_id=batch_id,
                    outcome="changed",
                    seconds=seconds,
                    note="the batch changed while it was filed; it will be taken again",
                )
            )
            self._state(t, "settling", due=time.monotonic() + self.options.settle, once_final=True)
            return
        not_filed = counts.get(NOT_ATTEMPTED, 0)
        if not_filed:
            # records a component failed one by one (a TSA that did not answer) are not filed: the batch
            # stays in the inbox and is run again, which files exactly those (DESIGN.md invariant 1)
            why = next(
                (r.message for o in report.iter_outcomes() if o.status == NOT_ATTEMPTED for r in o.reasons),
                "",
            )
            self._retry(t, ComponentUnavailable(f"{not_filed} record(s) not filed: {why}"), clock=clock)
            return
        failed = report.rejected > 0
        outcome = "failed" if failed else "done"
        report.extra["inbox"] = {"entry": entry.name, "outcome": outcome, "attempts": t.attempts + 1}
        logged = 0
        for o in report.iter_outcomes():
            if o.status == "rejected":
                logged += 1
                if logged > LOGGED_REJECTIONS:  # the report lists every one; the log names the first
                    continue
                fields = ",".join(dict.fromkeys(r.field for r in o.reasons)) or None
                logger.warning(
                    _kv(
                        event="rejected",
                        batch=entry.name,
                        batch_id=batch_id,
                        line=o.line,
                        record_id=o.record_id,
                        field=fields,
                    )
                )
        self._unwatch_folder(entry.name)
        target = self.inbox.file_away(
            entry, failed=failed, report=report, summary=report_summary(report, entry=entry.name)
        )
        del self._tracked[entry.name]
        self._retrying.discard(entry.name)
        (self._failed if failed else self._done).append(entry.name)
        log = logger.warning if failed else logger.info
        log(
            _kv(
                event="batch",
                batch=entry.name,
                batch_id=batch_id,
                **counts,
                outcome=outcome,
                seconds=time.monotonic() - clock,
                moved_to=str(target.relative_to(self.inbox.root)),
            )
        )

    def _to_failed(self, entry: Entry, *, report: dict[str, Any], summary: str) -> Path:
        """File a batch that did not run (unusable, or stopped by an unexpected error) in ``.failed/``."""
        self._unwatch_folder(entry.name)
        target = self.inbox.file_away(entry, failed=True, report=report, summary=summary)
        del self._tracked[entry.name]
        self._retrying.discard(entry.name)
        self._failed.append(entry.name)
        return target

    def _file_unusable(self, t: _Tracked, *, reason: str, started: datetime, clock: float) -> None:
        entry = t.entry
        finished = datetime.now(CHINA)
        target = self._to_failed(
            entry,
            report=unusable_report(entry=entry.name, reason=reason, started_at=started, finished_at=finished),
            summary=unusable_summary(
                entry=entry.name, reason=reason, started_at=started, finished_at=finished
            ),
        )
        logger.warning(
            _kv(
                event="batch",
                batch=entry.name,
                outcome="failed",
                unusable=reason,
                seconds=time.monotonic() - clock,
                moved_to=str(target.relative_to(self.inbox.root)),
            )
        )

    def _file_error(self, t: _Tracked, *, error: Exception, started: datetime, clock: float) -> None:
        entry = t.entry
        finished = datetime.now(CHINA)
        text = scrub(f"{type(error).__name__}: {error}")  # a message may quote a record
        target = self._to_failed(
            entry,
            report=error_report(entry=entry.name, error=text, started_at=started, finished_at=finished),
            summary=error_summary(entry=entry.name, error=text, started_at=started, finished_at=finished),
        )
        logger.error(
            _kv(
                event="batch",
                batch=entry.name,
                outcome="failed",
                error=text,
                seconds=time.monotonic() - clock,
                moved_to=str(target.relative_to(self.inbox.root)),
                note="an unexpected error: not retried; records filed before it stay archived",
            ),
            exc_info=error,
        )

    def _retry(self, t: _Tracked, error: Exception, *, clock: float) -> None:
        entry = t.entry
        seconds = time.monotonic() - clock
        if self.stop.is_set():  # e.g. LibreOffice got the same SIGTERM: not the batch's fault, not a retry
            logger.warning(
                _kv(event="batch", batch=entry.name, outcome="interrupted", seconds=seconds, error=str(error))
            )
            t.state = "left"
            return
        t.attempts += 1
        delay = min(self.options.backoff_first * 2 ** (t.attempts - 1), self.options.backoff_max)
        t.next_try = time.monotonic() + delay
        self._retrying.add(entry.name)
        component = isinstance(error, ComponentUnavailable)
        line = _kv(
            event="batch",
            batch=entry.name,
            outcome="retry",
            attempt=t.attempts,
            retry_in=f"{delay:g}s",
            seconds=seconds,
            why="component unavailable" if component else "inbox unavailable",
            error=str(error),
            note=f"left in the inbox; will retry in {delay:g} s",
        )
        if component:
            logger.warning(line)
        else:
            logger.error(line, exc_info=error)
        self._state(t, "backoff", due=t.next_try, once_final=True)
