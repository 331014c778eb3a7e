"""Every input line has its outcome, whatever happens to the run (issue 21, items 2, 5 and 6).

- An exact repeat of a line in the same batch ends as that line ends: already archived, not rejected.
- A run stopped by an outage is recorded as aborted, not finished: its report lists every input line as
  archived, already archived, rejected for a reason of its own, or not attempted, and a re-run files the
  rest exactly once.
- Outcomes stream to the report and rejections past the first few hundred are only counted in the log,
  so a long batch does not grow memory or the log line by line.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import tracemalloc
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from archive.index import Index
from archive.store import LocalStore
from bench.synth import make_batch
from core.errors import RunAborted, StoreError
from core.records import RawRecord
from pipeline.batch import RecordChecker
from pipeline.documents import DocumentMaker
from pipeline.report import (
    ALREADY_ARCHIVED,
    ARCHIVED,
    NOT_ATTEMPTED,
    REJECTED,
    BatchReport,
    Outcome,
    RejectionLog,
)
from pipeline.validate import Reason
from tests.conftest import REPO, write_batch
from usecases.filing import Filing
from usecases.run import run_batch

KEY = b"batch-outcomes-test-hmac-key-0123"
ISSUANCE = [sys.executable, "-m", "cli.main"]


@pytest.fixture(scope="module")
def maker(registry, pool, tmp_path_factory):
    from stamps import load_seal_registry

    return DocumentMaker(
        registry=registry,
        converter=pool,
        cache_dir=tmp_path_factory.mktemp("outcomes-cache"),
        seals=load_seal_registry(),
    )


class FlakyStore(LocalStore):
    """A real folder store that goes down once ``healthy`` groups have stored their manifests, as a full
    disk or a store killed mid-run does: the project's own seam, not the library, is where the fault goes.
    Groups filed in parallel may have put their parts by then; their manifests fail."""

    def __init__(self, root: Path, *, healthy: int) -> None:
        super().__init__(root)
        self.healthy = healthy
        self._lock = threading.Lock()

    def put_many(self, items, **kwargs):
        with self._lock:
            if self.healthy <= 0:
                raise StoreError(
                    f"the object store at {self.root} failed writing {items[0].key}: No space left"
                )
        results = super().put_many(items, **kwargs)
        if any(i.key.endswith("/manifest.json") for i in items):
            with self._lock:
                self.healthy -= 1
        return results


def _issuance(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The command, in a subprocess, on an archive and index of its own under ``tmp_path``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ISSUANCE_STORE": f"file://{tmp_path / 'archive'}",
        "ISSUANCE_INDEX": f"sqlite:///{tmp_path / 'index.sqlite'}",
        "ISSUANCE_HMAC_KEY": KEY.decode(),
        "ISSUANCE_WORKERS": "1",
    }
    return subprocess.run(
        [*ISSUANCE, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600, check=False
    )


def _filing(tmp_path: Path, maker: DocumentMaker, store: LocalStore) -> Filing:
    index = Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}", hmac_key=KEY)
    return Filing(store=store, index=index, maker=maker, operator="tester")


# --- item 2: an exact repeat in the same batch --------------------------------------------------------


def test_an_exact_repeat_in_the_batch_is_already_archived(tmp_path, maker):
    folder = tmp_path / "b"
    batch = make_batch(folder, 3, seed=61, images_per_record=1)
    lines = batch.read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[2])
    bad["total_premium"] = "1.00"  # a line rejected for a reason of its own, then repeated exactly
    bad_line = json.dumps(bad, ensure_ascii=False)
    write_batch(folder, [lines[0], lines[1], lines[0], bad_line, bad_line, lines[1]])
    filing = _filing(tmp_path, maker, LocalStore(tmp_path / "archive"))
    report = run_batch(batch, filing=filing, workers=2)
    assert [(o.line, o.status) for o in report.outcomes] == [
        (1, ARCHIVED),
        (2, ARCHIVED),
        (3, ALREADY_ARCHIVED),
        (4, REJECTED),
        (5, REJECTED),
        (6, ALREADY_ARCHIVED),
    ]
    assert report.counts() == {"records": 6, "archived": 2, "already_archived": 2, "rejected": 2}
    assert [r.field for r in report.outcomes[4].reasons] == ["record_id"]
    assert "repeats line 4" in report.outcomes[4].reasons[0].message
    assert filing.index.count("documents") == 2
    filing.index.close()


def test_a_batch_whose_only_problem_is_repeats_exits_0(tmp_path):
    folder = tmp_path / "b"
    batch = make_batch(folder, 2, seed=62, images_per_record=1)
    lines = batch.read_text(encoding="utf-8").splitlines()
    write_batch(folder, [*lines, *lines])
    result = _issuance(["run", str(batch), "--report", "r.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    counts = json.loads((tmp_path / "r.json").read_text("utf-8"))["counts"]
    assert counts == {"records": 4, "archived": 2, "already_archived": 2, "rejected": 0}


def test_the_watcher_files_a_batch_whose_only_problem_is_repeats_as_done(tmp_path):
    inbox = tmp_path / "inbox"
    folder = inbox / "night"
    batch = make_batch(folder, 2, seed=64, images_per_record=1)
    lines = batch.read_text(encoding="utf-8").splitlines()
    write_batch(folder, [*lines, lines[0]])
    (folder / "READY").touch()
    result = _issuance(["watch", str(inbox), "--once", "--settle", "0.1"], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((inbox / ".done" / "night" / "report.json").read_text("utf-8"))
    assert report["counts"] == {"records": 3, "archived": 2, "already_archived": 1, "rejected": 0}


# --- item 5: an outage is an aborted run, with every line accounted for -------------------------------


def test_a_store_outage_aborts_the_run_and_the_report_accounts_for_every_line(tmp_path, maker):
    folder = tmp_path / "b"
    batch = make_batch(folder, 40, seed=63, images_per_record=1)
    lines = batch.read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[5])
    bad["total_premium"] = "1.00"
    write_batch(folder, [*lines[:2], "{broken", *lines[2:5], json.dumps(bad, ensure_ascii=False), *lines[6:]])
    store = FlakyStore(tmp_path / "archive", healthy=1)  # one group filed whole, then down
    filing = _filing(tmp_path, maker, store)
    with pytest.raises(RunAborted) as caught:
        run_batch(batch, filing=filing, workers=1, chunk=4)
    assert isinstance(caught.value.cause, StoreError) and caught.value.exit_code == 3
    report: BatchReport = caught.value.report
    outcomes = report.outcomes
    assert [o.line for o in outcomes] == list(range(1, 42))  # every input line, once, in order
    counts = report.counts()
    assert counts["records"] == 41
    assert counts["archived"] + counts["already_archived"] + counts["rejected"] + counts[NOT_ATTEMPTED] == 41
    by_line = {o.line: o for o in outcomes}
    # rejected only for reasons of their own: the bad premium and the broken line, not the outage
    assert {o.line for o in outcomes if o.status == REJECTED} == {3, 7}
    assert [r.field for r in by_line[3].reasons] == ["line"]
    assert [r.field for r in by_line[7].reasons] == ["total_premium"]
    assert counts["archived"] >= 1 and counts[NOT_ATTEMPTED] >= 30
    for o in outcomes:
        if o.status == NOT_ATTEMPTED:
            (reason,) = o.reasons
            assert reason.field == "run" and "object store is unavailable" in reason.message
            assert "/" not in reason.message  # names no object key, of its own or another record's
    # the batch is recorded as aborted, with the reason, and its counts add up
    row = filing.index.batch_row(report.extra["batch_id"])
    assert row.ended == "aborted" and "No space left" in row.reason
    assert (row.records, row.archived, row.rejected, row.not_attempted) == (
        41,
        counts["archived"],
        2,
        counts[NOT_ATTEMPTED],
    )
    path = tmp_path / "report.json"
    report.write(path)
    written = json.loads(path.read_text("utf-8"))
    assert written["aborted"] and written["counts"] == counts and len(written["outcomes"]) == 41

    # the store is back: a re-run files everything not filed, exactly once
    store.healthy = 10**6
    again = run_batch(batch, filing=filing, workers=1, chunk=4)
    assert again.counts() == {
        "records": 41,
        "archived": counts[NOT_ATTEMPTED],
        "already_archived": counts["archived"],
        "rejected": 2,
    }
    assert filing.index.count("documents") == 39
    assert filing.index.batch_row(again.extra["batch_id"]).ended == "finished"
    events = [e.action for e in filing.index.ledger_entries()]
    assert events.count("batch.aborted") == 1 and events.count("batch.finished") == 1
    filing.index.close()


# --- item 6: outcomes stream to the report, the log summarises ---------------------------------------


def _outcome(line: int) -> Outcome:
    return Outcome(
        line=line,
        status=REJECTED,
        record_id=f"UW-{line:07d}",
        policy_no=f"PDAA26110105{line:010d}",
        kind="policy",
        reasons=(Reason("insured.id_no", "check digit is wrong"),),
    )


def test_outcomes_go_to_disk_not_memory_and_come_back_in_input_order(tmp_path):
    report = BatchReport(
        batch="b.jsonl", started_at=datetime.now(ZoneInfo("Asia/Shanghai")), statuses=(ARCHIVED, REJECTED)
    )
    n = 30_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(1, n + 1, 3):  # three lines open at a time, finishing last-first
            block = [line for line in range(start, start + 3) if line <= n]
            for line in block:
                report.opened(line)
            for line in reversed(block):
                report.add(_outcome(line))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # kept in memory, 30,000 outcomes take ~20 MB; spooled, what stays is the counters
    assert grown < 1_000_000, grown
    assert report.counts() == {"records": n, "archived": 0, "rejected": n}
    path = tmp_path / "report.json"
    report.write(path)
    written = json.loads(path.read_text("utf-8"))
    assert [o["line"] for o in written["outcomes"]] == list(range(1, n + 1))
    assert written["outcomes"][0]["policy_no"] == "PDAA261101050000000001"
    report.close()


def test_the_log_names_the_first_rejections_then_only_counts(caplog):
    log = RejectionLog(logging.getLogger("test.rejections"), prefix="batch x ", limit=5)
    with caplog.at_level(logging.WARNING, logger="test.rejections"):
        for line in range(1, 1001):
            log(_outcome(line))
        log.summary()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 7
    assert messages[0] == "batch x line 1 rejected: insured.id_no: check digit is wrong"
    assert "1000 lines" in messages[-1] and "995 of them are only in the report" in messages[-1]


def test_a_long_batch_of_rejected_records_keeps_the_checker_flat(registry, tmp_path):
    """Every record id and policy number the batch has seen is remembered on disk, not in a dict."""
    checker = RecordChecker(registry=registry, batch_dir=tmp_path)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for line in range(1, 20_001):
            data = {"kind": "policy", "record_id": f"UW-{line:07d}", "policy_no": f"P{line:021d}"}
            assert isinstance(checker.check(RawRecord(line, data), repeats=True), list)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        checker.close()
    assert grown < 2_000_000, grown


def test_the_watcher_files_a_long_rejected_batch_with_bounded_notes(tmp_path):
    """The watcher's report.json has every line; its REPORT.txt and its log name the first 200."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    lines = [{"kind": "policy", "record_id": f"R{i:04d}"} for i in range(1, 251)]  # each lacks its fields
    write_batch(inbox, lines, name="long.jsonl")
    result = _issuance(["watch", str(inbox), "--once", "--settle", "0.1"], tmp_path)
    assert result.returncode == 1, result.stderr
    filed = inbox / ".failed" / "long"
    report = json.loads((filed / "report.json").read_text("utf-8"))
    assert report["counts"]["rejected"] == 250 and len(report["outcomes"]) == 250
    note = (filed / "REPORT.txt").read_text("utf-8")
    assert "line 200, R0200" in note and "line 201," not in note and "50 more in report.json" in note
    assert result.stderr.count("event=rejected") == 200
