"""CLI commands for the inbox watcher (issue 5): ``issuance watch INBOX``.

CLI-layer code: it installs the signal handlers, raises the watcher's log level so its one line per
batch is seen without ``-v``, and turns the watcher's summary into an exit code. The watching itself is
``watchers.Watcher``; the filing is ``usecases.run.run_batch`` through ``usecases.watch.FilingRunner``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from cli.common import positive_int, settings_from
from core.errors import EXIT_COMPONENT, EXIT_OK, EXIT_REJECTED

# Each command imports its use case when it runs: together they take over a second to import
# (docs/performance.md, "Start-up"), which `issuance --help` or `find` should not pay.


class _WatchdogStopRace(logging.Filter):
    """Drops watchdog's error about an emitter read racing its own stop (benign, on every shutdown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError("a number of seconds") from e
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``watch`` to the ``issuance`` parser."""
    watch = sub.add_parser(
        "watch",
        help="issue and archive the batches dropped into an inbox folder, unattended",
        description=(
            "Watch INBOX and run every complete batch as `issuance run` would: a .jsonl/.csv/.xlsx file, a "
            ".zip with a batch file and its images, or a folder with a batch file, its images and READY "
            "(written last). Afterwards a batch moves to INBOX/.done/<batch>/ or INBOX/.failed/<batch>/ "
            "with report.json and REPORT.txt. SIGTERM or Ctrl-C: the records in flight finish, then it "
            "stops; an unfinished batch stays in the inbox for the next start."
        ),
    )
    watch.add_argument("inbox", type=Path, metavar="INBOX", help="the inbox folder")
    watch.add_argument("--config", type=Path, help="configuration file (default: ./issuance.toml)")
    watch.add_argument("--workers", type=positive_int, help="LibreOffice instances (default: one per CPU)")
    watch.add_argument(
        "--settle",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="quiet time before a batch counts as complete (default: 5)",
    )
    watch.add_argument(
        "--rescan",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="full rescan of the inbox, for missed events (default: 60)",
    )
    watch.add_argument(
        "--once",
        action="store_true",
        help="handle what is in the inbox now, then exit (for cron); exit 1 if a batch failed, "
        "3 if one is left to retry",
    )
    watch.set_defaults(handler=_watch)


def _watch(args: argparse.Namespace) -> int:
    from usecases.watch import WatchOptions, watch_inbox

    settings = settings_from(args)
    inbox: Path = args.inbox
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("watchers").setLevel(logging.INFO)
    logging.getLogger("watchdog.observers.inotify").addFilter(_WatchdogStopRace())

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # only Event.set (no lock the main thread could hold) and a raw write: safe in a signal handler
        stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        name = signal.Signals(signum).name
        os.write(2, f"issuance watch: {name}: finishing the records in flight, then stopping\n".encode())

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = watch_inbox(
            settings,
            inbox,
            options=WatchOptions(settle=args.settle, rescan=args.rescan, once=args.once),
            stop=stop,
            workers=args.workers,
        )
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if args.once:
        print(
            f"{len(summary.done)} done, {len(summary.failed)} failed, {len(summary.retrying)} to retry, "
            f"{len(summary.waiting)} not complete yet  (inbox: {inbox})"
        )
    if summary.stopped or not args.once:
        return EXIT_OK
    if summary.retrying:
        return EXIT_COMPONENT
    return EXIT_REJECTED if summary.failed else EXIT_OK
