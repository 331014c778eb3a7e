"""How the watcher hands a batch on: a ``BatchRunner`` it is given.

The watcher itself does no pipeline or archive work. The real runner (``usecases.watch.FilingRunner``)
files the batch as ``issuance run`` does; tests give it others.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pipeline.report import BatchReport


class BatchRunner(Protocol):
    """What the watcher needs from the pipeline."""

    def check(self, batch: Path) -> None:
        """Raise ``BatchUnreadable`` if the batch file is unusable as a whole (nothing started; a
        workbook's XML is read through once, and not again by ``run`` in the same process)."""

    def run(self, batch: Path, *, stop: threading.Event) -> BatchReport:
        """File every record, as ``issuance run`` does; ``stop`` set: finish the records in flight only.

        Raises ``BatchUnreadable`` and ``ComponentUnavailable`` as ``run_batch`` does.
        """
        ...

    def close(self) -> None:
        """Release everything (LibreOffice, the index); the runner may be used again after."""
