"""What the ``issuance`` subcommands share: argument types, settings from ``--config``, the console."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from core.config import Settings, load_settings


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError("a date is YYYY-MM-DD") from e


def stdout_console():
    # piped into a file or another program, a table keeps its full width instead of 80 columns
    console = Console(width=None if sys.stdout.isatty() else 200)
    # rich would exit 1 ("some records rejected"); ``cli.main.console_main`` says what happened
    console.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]
    return console


def _broken_pipe() -> None:
    raise BrokenPipeError("standard output was closed")


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def progress_bar(verb: str, *, hidden: bool) -> Progress:
    """A progress bar on standard error ("filing 12/500 …"), shown only on a terminal and unless
    ``hidden`` (``--no-progress``)."""
    console = Console(stderr=True)
    return Progress(
        TextColumn(f"[bold]{verb}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=hidden or not console.is_terminal,
    )


def write_file(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out`` atomically: a reader never sees half a file, and a failure leaves no
    file at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
