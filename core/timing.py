"""Where a run's time goes: seconds per stage, summed over the threads that did the work.

The batch report carries the split (``stages``) so an operator and the benchmark see which stage to
blame; measuring costs two clock reads per stage and record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageClock:
    """Thread-safe accumulator of seconds per named stage."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._cpu: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - began
            with self._lock:
                self._seconds[stage] = self._seconds.get(stage, 0.0) + elapsed

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {stage: round(seconds, 3) for stage, seconds in self._seconds.items()}

    def count_cpu(self, stage: str, seconds: float) -> None:
        """One item's CPU time in ``stage`` (the thread's own, ``time.thread_time``: what the item cost
        this process, whatever it waited for)."""
        with self._lock:
            total, n = self._cpu.get(stage, (0.0, 0))
            self._cpu[stage] = (total + seconds, n + 1)

    def cpu_snapshot(self) -> dict[str, dict[str, float]]:
        """Per stage counted with ``count_cpu``: items, and CPU milliseconds per item."""
        with self._lock:
            return {
                stage: {"items": n, "cpu_ms_each": round(1000 * total / n, 3)}
                for stage, (total, n) in self._cpu.items()
                if n
            }
