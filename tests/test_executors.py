"""The one batch loop (``usecases.executors.drive``) on each local executor, with a job that records
what it was given: groups per product, later records of a policy after the earlier one, a failed
component stopping only what it touched. No LibreOffice: the loop's rules, not the documents."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.synth import make_batch
from core.errors import ComponentUnavailable
from core.records import Endorsement, Policy, parse_record
from pipeline.batch import Accepted
from pipeline.batchfile import read_batch
from pipeline.report import ARCHIVED, FILED, NOT_ATTEMPTED, REJECTED, Outcome
from usecases.executors import InProcess, ThreadPool, drive


class RecordingJob:
    succeeded = FILED

    def __init__(self, *, reject: set[str] = frozenset(), down: set[str] = frozenset()) -> None:
        self.reject, self.down = reject, down
        self.groups: list[list[str]] = []
        self.earlier: dict[str, str | None] = {}  # record_id: the earlier outcome's status it was given
        self.finished: list[Outcome] = []
        self.failed: list[tuple[str, ComponentUnavailable]] = []
        self.lock = threading.Lock()

    def work(self, items: Sequence[Accepted], earlier: Outcome | None) -> list[Outcome]:
        with self.lock:
            self.groups.append([i.record.record_id for i in items])
            for item in items:
                self.earlier[item.record.record_id] = earlier.status if earlier else None
        if any(i.record.record_id in self.down for i in items):
            raise ComponentUnavailable("the index went away")
        return [
            Outcome(
                line=i.raw.line,
                status=REJECTED if i.record.record_id in self.reject else ARCHIVED,
                record_id=i.record.record_id,
                policy_no=i.record.policy_no,
            )
            for i in items
        ]

    def finish(self, outcome: Outcome) -> None:
        with self.lock:
            self.finished.append(outcome)

    def fail(self, item: Accepted, error: ComponentUnavailable) -> Outcome:
        outcome = Outcome(line=item.raw.line, status=NOT_ATTEMPTED, record_id=item.record.record_id)
        with self.lock:
            self.failed.append((item.record.record_id, error))
            self.finished.append(outcome)
        return outcome


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[Accepted]:
    """Seven policies (three products, in turn) and three endorsements of the first three."""
    batch = make_batch(tmp_path_factory.mktemp("batch"), 7, seed=41, images_per_record=0, endorsements=3)
    accepted, policies = [], {}
    for raw in read_batch(batch):
        record, problems = parse_record(raw.data)
        assert record is not None and not problems, problems
        if isinstance(record, Policy):
            policies[record.policy_no] = record
        accepted.append(Accepted(raw, record, policies.get(record.policy_no)))
    return accepted


def _executors(group_size: int):
    return [InProcess(group_size=group_size), ThreadPool(threads=3, group_size=group_size)]


@pytest.mark.parametrize("kind", ["in-process", "thread pool"])
def test_policies_go_in_groups_of_one_product_and_endorsements_after_their_policy(records, kind):
    executor = _executors(2)[0 if kind == "in-process" else 1]
    job = RecordingJob()
    drive(job, records, executor)
    getattr(executor, "close", lambda: None)()

    assert sorted(o.line for o in job.finished) == [a.raw.line for a in records]  # every record, once
    product = {a.record.record_id: a.record.product_code for a in records if isinstance(a.record, Policy)}
    for group in job.groups:
        assert len(group) <= 2
        if len(group) > 1:
            assert len({product[r] for r in group}) == 1
    endorsements = [a.record for a in records if isinstance(a.record, Endorsement)]
    assert endorsements
    for e in endorsements:  # after its policy: told it was archived, or nothing once it was done with
        assert [e.record_id] in job.groups
        assert job.earlier[e.record_id] in (ARCHIVED, None)
    first_of = {g[0]: i for i, g in enumerate(job.groups) for _ in g}
    for e in endorsements:
        policy = next(a.record.record_id for a in records if a.record.policy_no == e.policy_no)
        group_of_policy = next(i for i, g in enumerate(job.groups) if policy in g)
        assert first_of[e.record_id] > group_of_policy


def test_an_endorsement_of_a_rejected_policy_is_told_so(records):
    policy = next(a.record for a in records if isinstance(a.record, Endorsement)).policy_no
    rejected = next(a.record.record_id for a in records if a.record.policy_no == policy)
    job = RecordingJob(reject={rejected})
    drive(job, records, InProcess(group_size=3))
    endorsement = next(a.record.record_id for a in records if isinstance(a.record, Endorsement))
    assert job.earlier[endorsement] == REJECTED


def test_a_component_failure_fails_its_group_and_what_follows_it_only(records):
    policy = next(a.record for a in records if isinstance(a.record, Endorsement)).policy_no
    down = next(a.record.record_id for a in records if a.record.policy_no == policy)
    job = RecordingJob(down={down})
    pool = ThreadPool(threads=2, group_size=1)
    drive(job, records, pool)
    pool.close()
    assert [r for r, _ in job.failed] == [down]
    endorsement = next(a.record.record_id for a in records if isinstance(a.record, Endorsement))
    assert job.earlier[endorsement] == NOT_ATTEMPTED  # a failed earlier record counts as not attempted
    assert len(job.finished) == len(records)


def test_the_thread_pool_keeps_at_most_its_slots_in_flight(records, tmp_path: Path):
    """Back-pressure: the loop reads no further than the executor has room for."""
    gate = threading.Event()
    started: list[int] = []

    class Slow(RecordingJob):
        def work(self, items, earlier):
            started.append(len(items))
            gate.wait(10)
            return super().work(items, earlier)

    job = Slow()
    pool = ThreadPool(threads=1, group_size=1)  # two slots: one running, one waiting
    read: list[int] = []

    def reading():
        for a in records:
            read.append(a.raw.line)
            yield a

    runner = threading.Thread(target=drive, args=(job, reading(), pool))
    runner.start()
    try:
        deadline = threading.Event()
        deadline.wait(1.0)
        assert len(read) <= pool.slots + 1  # the record the loop holds while it waits for a slot
    finally:
        gate.set()
        runner.join(30)
        pool.close()
    assert len(job.finished) == len(records)
