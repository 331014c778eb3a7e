"""``issuance run --cluster`` on a real Dask cluster: ``dask scheduler`` and ``dask worker`` processes on
loopback, each worker with its own LibreOffice, filing into S3 (moto's server) and a real PostgreSQL.

Exactly once is checked through the index and the store, as in test_filing's kill -9 test: one row per
record, every policy's versions 1..k without gaps or doubles, every indexed object readable with its
SHA-256, the ledger intact; also when a worker (its process group: nanny, worker, and through them its
LibreOffice) is killed mid-batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text

from archive.index import Index
from archive.store import open_store
from archive.versions import key_prefix
from bench.synth import make_batch
from core.config import load_settings
from core.errors import ClusterUnavailable
from core.records import parse_record
from pipeline.report import ALREADY_ARCHIVED, ARCHIVED, REJECTED
from tests.conftest import REPO, write_batch

KEY = "cluster-test-hmac-key-0123456789"
ISSUANCE = [sys.executable, "-m", "cli.main"]
DASK = [sys.executable, "-m", "dask"]


class DaskProcesses:
    """A scheduler and workers started as ``dask scheduler`` / ``dask worker``, each in its own session."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.scheduler_file = root / "scheduler.json"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""

    def _spawn(
        self, args: list[str], *, name: str, env: dict[str, str], cwd: Path
    ) -> subprocess.Popen[bytes]:
        cwd.mkdir(parents=True, exist_ok=True)
        log = (self.root / f"{name}.log").open("wb")
        return subprocess.Popen(
            [*DASK, *args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_scheduler(self) -> str:
        self.scheduler = self._spawn(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
            name="scheduler",
            env=self.env,
            cwd=self.root / "scheduler",
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.scheduler_file.exists():
                try:
                    self.address = json.loads(self.scheduler_file.read_text())["address"]
                    return self.address
                except (ValueError, KeyError):
                    pass
            assert self.scheduler.poll() is None, self.log("scheduler")
            time.sleep(0.1)
        raise AssertionError("the scheduler did not start: " + self.log("scheduler"))

    def start_worker(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        home = self.root / name
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        proc = self._spawn(
            [
                "worker",
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--name",
                name,
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
                "--local-directory",
                str(home / "dask"),
            ],
            name=name,
            env={**self.env, "TMPDIR": str(home / "tmp"), **env},
            cwd=home,
        )
        self.workers[name] = proc
        return proc

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=90)

    def processing(self, name: str) -> list[str]:
        """The task keys the scheduler has assigned to a worker right now."""
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            (address,) = [a for a, w in workers.items() if w["name"] == name]
            return [str(key) for key in client.processing([address])[address]]

    def kill(self, name: str) -> None:
        """SIGKILL the worker as if its machine died: its process group (nanny and worker process) and its
        LibreOffice, which runs in a session of its own (convert.py), all at once, mid-flight."""
        office = self.libreoffice_of(name)
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        for proc in office:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.workers[name].wait()

    def libreoffice_of(self, name: str | None = None) -> list[psutil.Process]:
        """The LibreOffice processes (bridge, oosplash, soffice.bin) of one worker, or of all: their
        profiles lie in the run's scratch under the worker's working folder (``var/scratch``)."""
        marker = str(self.root / name / "var" / "scratch") if name else str(self.root)
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or ())
            if marker in cmdline and ("soffice" in cmdline or "lobridge" in cmdline):
                found.append(proc)
        return found

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def close(self) -> None:
        procs = [*self.workers.values(), *([self.scheduler] if self.scheduler else [])]
        for proc in procs:  # workers first: a graceful close ends their LibreOffice
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self.libreoffice_of():  # whatever a killed worker left behind
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


@pytest.fixture(scope="module")
def clause_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clause PDFs converted once for the module's workers (the cache's writes are atomic)."""
    return tmp_path_factory.mktemp("cluster-cache")


@pytest.fixture
def archive_env(moto_endpoint, buckets, postgres_server, aws_env, clause_cache) -> dict[str, str]:
    """The ISSUANCE_* environment of the client and every worker: S3 on moto, a fresh PostgreSQL database."""
    return {
        "ISSUANCE_STORE": f"s3://{buckets.plain}/archive",
        "ISSUANCE_S3_ENDPOINT": moto_endpoint,
        "ISSUANCE_INDEX": postgres_server(),
        "ISSUANCE_HMAC_KEY": KEY,
        "ISSUANCE_WORKERS": "1",
        "ISSUANCE_OPERATOR": "cluster-test",
        "ISSUANCE_CACHE": str(clause_cache),
    }


@pytest.fixture
def dask_processes(tmp_path: Path, archive_env: dict[str, str]) -> Iterator[DaskProcesses]:
    # os.environ holds aws_env's dummy credentials; the processes get them from there
    env = {**os.environ, **archive_env, "PYTHONPATH": str(REPO)}
    processes = DaskProcesses(tmp_path / "dask", env)
    processes.root.mkdir()
    try:
        processes.start_scheduler()
        yield processes
    finally:
        processes.close()


@pytest.fixture
def index(archive_env: dict[str, str]) -> Iterator[Index]:
    opened = Index.open(archive_env["ISSUANCE_INDEX"], hmac_key=KEY.encode())
    yield opened
    opened.close()


def _run_cli(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300):
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*ISSUANCE, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _assert_archived_exactly_once(index: Index, env: dict[str, str], records: list[dict]) -> None:
    """One index row per record; versions 1..k per policy; every object there with its hash; ledger ok."""
    assert index.count("records") == len(records)
    with index.engine.connect() as conn:
        rows = conn.execute(text("SELECT policy_no, version FROM documents ORDER BY 1, 2")).all()
    by_policy: dict[str, list[int]] = {}
    for policy_no, version in rows:
        by_policy.setdefault(policy_no, []).append(version)
    expected: dict[str, int] = {}
    for record in records:
        expected[record["policy_no"]] = expected.get(record["policy_no"], 0) + 1
    assert {p: len(v) for p, v in by_policy.items()} == expected
    assert all(v == list(range(1, len(v) + 1)) for v in by_policy.values())  # no gaps, no doubles
    store = open_store(env["ISSUANCE_STORE"], s3_endpoint=env["ISSUANCE_S3_ENDPOINT"])
    for policy_no in by_policy:
        for v in index.versions(policy_no):
            for key, digest in (
                (v.customer_key, v.customer_sha256),
                (v.bundle_key, v.bundle_sha256),
                (v.manifest_key, v.manifest_sha256),
            ):
                assert store.get(key, sha256=digest)  # verifies the SHA-256
    assert index.verify_ledger() == []


def _records(batch: Path) -> list[dict]:
    return [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]


# --- refusals, before anything is written ----------------------------------------------------------------


def test_cluster_refuses_a_local_store_or_sqlite_index_and_a_bad_address(tmp_path, archive_env):
    batch = make_batch(tmp_path / "batch", 1, seed=3, images_per_record=1)
    local = {"ISSUANCE_HMAC_KEY": KEY, "ISSUANCE_STORE": "", "ISSUANCE_INDEX": ""}
    refused = _run_cli(["run", "--cluster", "tcp://127.0.0.1:9", str(batch)], cwd=tmp_path / "a", env=local)
    assert refused.returncode == 2, refused.stderr
    assert "local folder" in refused.stderr and "ISSUANCE_STORE=s3://" in refused.stderr
    assert not (tmp_path / "a" / "var").exists()  # nothing opened, nothing written
    sqlite = {**archive_env, "ISSUANCE_INDEX": f"sqlite:///{tmp_path / 'index.sqlite'}"}
    refused = _run_cli(["run", "--cluster", "tcp://127.0.0.1:9", str(batch)], cwd=tmp_path / "b", env=sqlite)
    assert refused.returncode == 2 and "SQLite" in refused.stderr, refused.stderr
    assert not (tmp_path / "index.sqlite").exists()
    bad = _run_cli(["run", "--cluster", "127.0.0.1", str(batch)], cwd=tmp_path / "c", env=archive_env)
    assert bad.returncode == 2 and "tcp://HOST:PORT" in bad.stderr, bad.stderr
    both = _run_cli(
        ["run", "--cluster", "tcp://127.0.0.1:9", "--workers", "2", str(batch)],
        cwd=tmp_path / "d",
        env=archive_env,
    )
    assert both.returncode == 2 and "--workers" in both.stderr, both.stderr
    # no scheduler there: a component is unavailable (exit 3), said in a sentence
    from usecases.cluster import cluster_session

    settings = load_settings(env=archive_env, base=tmp_path)
    with (
        pytest.raises(ClusterUnavailable, match="cannot reach the Dask scheduler"),
        cluster_session(settings, address="tcp://127.0.0.1:9", timeout=1),
    ):
        pass


# --- the cluster at work -----------------------------------------------------------------------------------


def test_cli_files_a_batch_exactly_once_when_a_worker_is_killed_mid_batch(
    tmp_path, archive_env, dask_processes, index
):
    batch = make_batch(tmp_path / "batch", 12, seed=41, endorsements=3, images_per_record=1)
    records = _records(batch)
    dask_processes.start_worker("w1")
    dask_processes.start_worker("w2")
    dask_processes.wait_for_workers(2)
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    run = subprocess.Popen(
        [
            *ISSUANCE,
            "-v",
            "run",
            "--cluster",
            dask_processes.address,
            str(batch),
            "--report",
            "report.json",
            "--no-progress",
        ],
        cwd=client_dir,
        env={**os.environ, "PYTHONPATH": str(REPO), **archive_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(
            lambda: index.count("records") >= 3 or run.poll() is not None, timeout=180, what="3 records"
        )
        assert run.poll() is None, run.communicate()
        _wait_for(lambda: bool(dask_processes.processing("w1")), timeout=30, what="w1 to be filing")
        assert dask_processes.libreoffice_of("w1")  # warm, and killed with its worker
        dask_processes.kill("w1")
        stdout, stderr = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, stderr[-3000:] + dask_processes.log("w2")
    report = json.loads((client_dir / "report.json").read_text(encoding="utf-8"))
    assert report["counts"] == {"records": 15, ARCHIVED: 15, ALREADY_ARCHIVED: 0, REJECTED: 0}
    assert f"{len(records)} archived" in stdout
    _assert_archived_exactly_once(index, archive_env, records)
    # every archived event names the client's operator, not the worker's account
    events = [e for e in index.ledger_entries() if e.action.endswith(".archived")]
    assert len(events) == 15 and {e.actor for e in events} == {"cluster-test"}
    # no personal data in any task key, log or message (task arguments print as batch and line only)
    ids = {r["insured"]["id_no"] for r in records if r["kind"] == "policy"}
    logs = stderr + dask_processes.log("w1") + dask_processes.log("w2") + dask_processes.log("scheduler")
    assert not any(i in logs for i in ids)


def test_library_run_reports_rejections_chains_versions_and_reruns(
    tmp_path, archive_env, dask_processes, index
):
    from usecases.cluster import cluster_session, run_batch_on_cluster

    # lines 1-4: four policies; 5-9: endorsements of policies 0, 1, 2, 3, 0 (policy 0: v1, v2, v3)
    folder = tmp_path / "batch"
    make_batch(folder, 4, seed=43, endorsements=5, images_per_record=1)
    records = _records(folder / "batch.jsonl")
    blocked = records[3]
    conflict = {**records[1], "issued_by": "U9999"}  # line 2's record id with other content
    batch = write_batch(folder, [*records, "{not json", conflict])  # lines 10 and 11 are bad
    # another record's version 1 of policy 3 already lies in the store (the index knows nothing): the
    # client's checks pass line 4, the worker refuses it, and its endorsement (line 8) must not be filed
    settings = load_settings(env=archive_env, base=tmp_path)
    policy, _ = parse_record(blocked)
    store = open_store(settings.store_url, s3_endpoint=settings.s3_endpoint)
    body = json.dumps({"record_sha256": "0" * 64, "parts": []}).encode()
    store.put(f"{key_prefix(policy)}/v1-issue/manifest.json", body, sha256=hashlib.sha256(body).hexdigest())
    assert records[7]["policy_no"] == blocked["policy_no"] and records[7]["kind"] == "endorsement"

    dask_processes.start_worker("w1")
    seen: list[int] = []
    with cluster_session(settings, address=dask_processes.address) as session:
        report = run_batch_on_cluster(
            batch, filing=session.filing, client=session.client, on_record=lambda o: seen.append(o.line)
        )
        status = {o.line: o for o in report.outcomes}
        assert sorted(seen) == list(range(1, 12))
        assert report.counts() == {"records": 11, ARCHIVED: 7, ALREADY_ARCHIVED: 0, REJECTED: 4}
        archived = [1, 2, 3, 5, 6, 7, 9]
        assert [line for line, o in sorted(status.items()) if o.status == ARCHIVED] == archived
        assert all(len(status[line].documents) == 3 for line in archived)
        assert status[4].reasons[0].field == "record_id" and "another record" in status[4].reasons[0].message
        assert status[8].reasons[0].field == "policy_no"
        assert "could not be filed earlier in this batch" in status[8].reasons[0].message
        assert status[10].reasons[0].field == "line" and status[11].reasons[0].field == "record_id"

        # a re-run files nothing twice: the archived ones are already archived, the rest rejected again
        again = run_batch_on_cluster(batch, filing=session.filing, client=session.client)
    assert again.counts() == {"records": 11, ARCHIVED: 0, ALREADY_ARCHIVED: 7, REJECTED: 4}
    filed = [r for r in records if r["policy_no"] != blocked["policy_no"]]
    assert [v.version for v in index.versions(records[0]["policy_no"])] == [1, 2, 3]
    _assert_archived_exactly_once(index, archive_env, filed)
    # both batches are recorded as finished, with their counts
    finished = [e for e in index.ledger_entries() if e.action == "batch.finished"]
    assert [e.detail["archived"] for e in finished] == [7, 0]


def test_a_worker_without_libreoffice_stops_the_batch_with_exit_3(
    tmp_path, archive_env, dask_processes, index
):
    batch = make_batch(tmp_path / "batch", 2, seed=47, images_per_record=1)
    dask_processes.start_worker("w1", ISSUANCE_SOFFICE="/nonexistent/soffice")
    result = _run_cli(
        ["run", "--cluster", dask_processes.address, str(batch), "--no-progress"],
        cwd=tmp_path / "client",
        env=archive_env,
    )
    assert result.returncode == 3, result.stderr
    assert "LibreOffice not found" in result.stderr and "on worker w1" in result.stderr
    assert index.count("records") == 0
    # the run is recorded as aborted, not finished: no record is called rejected for the outage
    assert not [e for e in index.ledger_entries() if e.action == "batch.finished"]
    (aborted,) = [e for e in index.ledger_entries() if e.action == "batch.aborted"]
    assert aborted.detail["not_attempted"] == aborted.detail["records"] == 2
    assert aborted.detail[REJECTED] == aborted.detail[ARCHIVED] == 0
    assert "LibreOffice not found" in aborted.detail["reason"]


def test_a_worker_with_another_hmac_key_refuses_to_file(tmp_path, archive_env, dask_processes, index):
    batch = make_batch(tmp_path / "batch", 1, seed=53, images_per_record=1)
    dask_processes.start_worker("w1", ISSUANCE_HMAC_KEY="another-key-0123456789abcdef")
    result = _run_cli(
        ["run", "--cluster", dask_processes.address, str(batch), "--no-progress"],
        cwd=tmp_path / "client",
        env=archive_env,
    )
    assert result.returncode == 3, result.stderr
    assert "another HMAC key" in result.stderr and "ISSUANCE_HMAC_KEY" in result.stderr
    assert index.count("records") == 0


def test_a_worker_that_signs_with_another_key_refuses_to_file(tmp_path, archive_env, dask_processes, index):
    """The client is configured with the company's key, the worker with none: the worker would file
    unsigned documents under a run that is to sign them, so it refuses, naming both."""
    from stamps.keys import write_specimen_pkcs12

    write_specimen_pkcs12(tmp_path / "signer.p12", b"cluster-pw")
    batch = make_batch(tmp_path / "batch", 1, seed=54, images_per_record=1)
    dask_processes.start_worker("w1")
    env = {
        **archive_env,
        "ISSUANCE_SIGNING_KEY": str(tmp_path / "signer.p12"),
        "ISSUANCE_SIGNING_PASSWORD": "cluster-pw",
    }
    result = _run_cli(
        ["run", "--cluster", dask_processes.address, str(batch), "--no-progress"],
        cwd=tmp_path / "client",
        env=env,
    )
    assert result.returncode == 3, result.stderr
    assert "signs with no key, the client is configured with certificate" in result.stderr
    assert "ISSUANCE_SIGNING_KEY" in result.stderr
    assert index.count("records") == 0
