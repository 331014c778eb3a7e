"""The one batch loop, and the ``Executor`` seam it runs on (DESIGN.md: in-process, a pool, Dask).

``drive`` takes the accepted records of a job (``issuance run`` files them, ``issuance render`` renders
previews) in input order and hands them to an executor: a policy waits in a group of its product until
the group is full (one LibreOffice document for its schedules, one index transaction), and every later
record of a policy already on its way (an endorsement, a repeated number) follows the earlier one, which
it is given as ``earlier``. The executor decides where the work runs; the job decides what it is and
what an outcome means. At most ``executor.slots`` groups are in flight, so memory stays flat however
long the batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from core.errors import ComponentUnavailable
from core.records import Policy
from pipeline.batch import Accepted
from pipeline.report import NOT_ATTEMPTED, Outcome


class Job(Protocol):
    """What a batch loop works through (``usecases.run.BatchRun``, ``usecases.render.RenderJob``)."""

    succeeded: tuple[str, ...]  # statuses after which a later record of the same policy may go on

    def work(self, items: Sequence[Accepted], earlier: Outcome | None) -> list[Outcome]:
        """The outcomes of ``items`` (a group of one product's policies, or one record), in order.
        ``earlier``: the outcome of the previous record of the same policy in this batch, if any.
        Raises only ``ComponentUnavailable`` (the run cannot go on)."""
        ...

    def finish(self, outcome: Outcome) -> None: ...

    def fail(self, item: Accepted, error: ComponentUnavailable) -> Outcome: ...


class Executor(Protocol):
    """Where a job's groups of records are worked on."""

    group_size: int  # policies of one product per group
    slots: int  # groups in flight at most

    def submit(
        self, job: Job, items: list[Accepted], before: Future[Any] | Outcome | None
    ) -> list[Future[Any]]:
        """Start work on ``items`` after ``before`` (the previous record of their policy: its pending
        future or its outcome); one future per item, each resolving to its ``Outcome``."""
        ...

    def lost(self, item: Accepted, error: BaseException) -> ComponentUnavailable:
        """What an unexpected failure of a task (not the job's own) means for the run."""
        ...


def _earlier(before: Future[Any] | Outcome | None) -> Outcome | None:
    """The previous record's outcome, waiting for it if need be; a failed one counts as not attempted.

    The previous record was submitted first, so waiting on it here cannot deadlock."""
    if before is None or isinstance(before, Outcome):
        return before
    if before.exception() is not None:
        return Outcome(line=0, status=NOT_ATTEMPTED)
    return before.result()


def _work(
    job: Job, items: list[Accepted], before: Future[Any] | Outcome | None, futures: list[Future[Any]]
) -> None:
    try:
        outcomes = job.work(items, _earlier(before))
    except BaseException as e:
        for future in futures:
            future.set_exception(e)
    else:
        for future, outcome in zip(futures, outcomes, strict=True):
            future.set_result(outcome)


class _Unexpected:
    def lost(self, item: Accepted, error: BaseException) -> ComponentUnavailable:
        return ComponentUnavailable(
            f"line {item.raw.line}: unexpected error: {type(error).__name__}: {error}"
        )


class InProcess(_Unexpected):
    """Each group worked on at once, in the caller's thread: for tests and one-off commands."""

    def __init__(self, *, group_size: int = 1) -> None:
        self.group_size = group_size
        self.slots = 1

    def submit(
        self, job: Job, items: list[Accepted], before: Future[Any] | Outcome | None
    ) -> list[Future[Any]]:
        futures: list[Future[Any]] = [Future() for _ in items]
        _work(job, items, before, futures)
        return futures


class ThreadPool(_Unexpected):
    """A pool of threads in this process, the default: LibreOffice, the store and the index do the heavy
    work in their own processes, so threads keep them all busy."""

    def __init__(self, *, threads: int, group_size: int = 1) -> None:
        self.group_size = group_size
        self.slots = threads + 1  # one group waiting for each thread that frees up
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="work")

    @classmethod
    def for_converters(cls, workers: int, *, group_size: int) -> ThreadPool:
        """Sized to ``workers`` LibreOffice instances: each has a group waiting while other groups' PDFs
        are sealed, bundled and uploaded."""
        return cls(threads=2 * max(1, workers) + 1, group_size=group_size)

    def submit(
        self, job: Job, items: list[Accepted], before: Future[Any] | Outcome | None
    ) -> list[Future[Any]]:
        futures: list[Future[Any]] = [Future() for _ in items]
        self._pool.submit(_work, job, items, before, futures)
        return futures

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def drive(job: Job, records: Iterable[Accepted], executor: Executor) -> None:
    """Work through ``records`` on ``executor``; returns once every submitted record has its outcome
    (``job.finish``, or ``job.fail`` for a component that failed)."""
    in_flight = threading.BoundedSemaphore(executor.slots)
    lock = threading.Lock()
    # per policy, its newest record in flight (a future) or, once done unsuccessfully, its outcome: a later
    # record of the policy follows it. A finished one is dropped, so that a batch of a million keeps no
    # entry per policy and a cluster may forget its results.
    last: dict[str, Future[Any] | Outcome] = {}
    pending: dict[str, list[Accepted]] = {}  # per product: policies waiting for a full group

    def done(item: Accepted, future: Future[Any], release: Callable[[], None]) -> None:
        try:
            try:
                outcome = future.result()
            except ComponentUnavailable as e:
                outcome = job.fail(item, e)
            except Exception as e:  # the task itself was lost (a bug, a cluster that gave up on it)
                outcome = job.fail(item, executor.lost(item, e))
            else:
                job.finish(outcome)
            with lock:
                if last.get(item.record.policy_no) is future:
                    if outcome.status in job.succeeded:
                        del last[item.record.policy_no]
                    else:
                        last[item.record.policy_no] = outcome
        finally:
            release()

    def submit(items: list[Accepted], before: Future[Any] | Outcome | None = None) -> None:
        in_flight.acquire()
        remaining = [len(items)]

        def release() -> None:
            with lock:
                remaining[0] -= 1
                last_one = remaining[0] == 0
            if last_one:
                in_flight.release()

        with lock:
            futures = executor.submit(job, items, before)
            for item, future in zip(items, futures, strict=True):
                last[item.record.policy_no] = future
        for item, future in zip(items, futures, strict=True):
            future.add_done_callback(lambda f, item=item: done(item, f, release))

    try:
        for item in records:
            record = item.record
            waiting = next(
                (
                    p
                    for p, group in pending.items()
                    if any(i.record.policy_no == record.policy_no for i in group)
                ),
                None,
            )
            if waiting is not None:  # an earlier record of this policy waits for a full group: send it now
                submit(pending.pop(waiting))
            if isinstance(record, Policy) and record.policy_no not in last:
                group = pending.setdefault(record.product_code, [])
                group.append(item)
                if len(group) >= executor.group_size:
                    submit(pending.pop(record.product_code))
                continue
            with lock:
                before = last.get(record.policy_no)
            submit([item], before)
        for product in list(pending):
            submit(pending.pop(product))
    finally:
        for _ in range(executor.slots):  # every submitted record has its outcome
            in_flight.acquire()
