"""The watcher's runner: ``run_batch`` in one long-lived filing session.

It opens the archive and starts LibreOffice on the first batch (so a watcher that only refuses bad zips
never starts it) and keeps both open between batches, so LibreOffice stays warm. After a component
failure the session is closed and opened afresh for the next attempt: a dead LibreOffice or a dropped
database connection is not reused.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from core.config import Settings
from core.errors import BatchUnreadable, UsageError
from core.products import DEFAULT_TEMPLATES_DIR, load_registry
from pipeline.batchfile import read_batch
from pipeline.report import BatchReport
from stamps import load_seal_registry
from usecases.run import run_batch
from usecases.session import FilingSession, filing_session
from watchers import Watcher, WatchOptions, WatchSummary

logger = logging.getLogger(__name__)


class FilingRunner:
    """``run_batch`` in a filing session opened on first use and kept open (not thread-safe)."""

    def __init__(self, settings: Settings, *, workers: int | None = None) -> None:
        self._settings = settings
        self._workers = workers
        self._stack: contextlib.ExitStack | None = None
        self._session: FilingSession | None = None

    def check(self, batch: Path) -> None:
        # the first record too: a JSON Lines file that is not UTF-8 is refused on reading it
        next(iter(read_batch(batch)), None)

    def _open(self) -> FilingSession:
        if self._session is None:
            stack = contextlib.ExitStack()
            self._session = stack.enter_context(filing_session(self._settings, workers=self._workers))
            self._stack = stack
            logger.info("filing session open: %d LibreOffice instance(s) warm", self._session.workers)
        return self._session

    def run(self, batch: Path, *, stop: threading.Event) -> BatchReport:
        session = self._open()
        try:
            return run_batch(
                batch,
                filing=session.filing,
                workers=session.workers,  # LibreOffice instances: run_batch sizes its threads to them
                chunk=self._settings.chunk,
                stop=stop,
            )
        except BatchUnreadable:
            raise
        except Exception:
            self.close()  # LibreOffice or a connection may be broken: start afresh next time
            raise

    def close(self) -> None:
        stack, self._stack, self._session = self._stack, None, None
        if stack is not None:
            try:
                stack.close()
            except Exception:  # closing a broken session must not hide why it broke
                logger.warning("closing the filing session failed", exc_info=True)


def watch_inbox(
    settings: Settings,
    inbox: Path,
    *,
    options: WatchOptions,
    stop: threading.Event,
    workers: int | None = None,
) -> WatchSummary:
    """``issuance watch``: file every complete batch that appears in ``inbox`` until ``stop`` is set (or,
    with ``options.once``, once through what is there)."""
    if not inbox.is_dir():
        raise UsageError(f"inbox {inbox} is not a folder", hint="create it, or name the right one")
    # broken templates or seals are the operator's to fix: refuse now, not on the first batch
    load_registry(settings.templates_dir or DEFAULT_TEMPLATES_DIR)
    load_seal_registry()
    watcher = Watcher(
        inbox.resolve(), runner=FilingRunner(settings, workers=workers), options=options, stop=stop
    )
    return watcher.run()
