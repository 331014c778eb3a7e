"""Filing a batch on a Dask ``distributed`` cluster: ``issuance run --cluster tcp://HOST:PORT``.

The ``Executor`` seam of DESIGN.md for a run that outgrows one machine. The client (the ``issuance run``
process) does everything ``run_batch`` does except the filing itself: it reads and checks the records in
input order, settles the ones already archived or rejected, writes the batch's rows, and collects every
outcome into the same report. Each accepted record becomes one task, keyed ``file-{batch_id}-{line}``;
a worker files it with its own ``Filing`` and its own warm LibreOffice, opened once per worker process
(``FilingPlugin``) from the worker's environment (the same ``ISSUANCE_*`` variables as the client).

What the cluster needs, and what is refused without it:

- One archive for all: the store is S3 (``s3://…``) and the index is not SQLite. A folder store or an
  SQLite file cannot be shared by workers on other machines: ``UsageError`` before anything is written.
- The same batch folder at the same absolute path on every worker (shared storage: NFS, CephFS, …),
  because the records' images are read beside the batch file.
- The same HMAC key everywhere, or ID lookups would miss.

Each worker checks all three once per batch (the store URL, a fingerprint of the key, the batch's start
event in the index, the batch file's SHA-256) and refuses with ``WorkerMisconfigured`` (exit 3) rather
than file into another archive.

Exactly once: versions of one policy are chained (each task takes the previous task of its policy as an
argument, so Dask runs them in input order); a business rejection is an outcome, never an exception, so
the next versions still run and see it. A worker that dies mid-record makes Dask run the task again
elsewhere (or recompute a finished one whose result died with it); the filing's idempotency does the
rest: a record the index already holds from this batch is reported as archived without filing anything,
an uploaded but unindexed manifest is adopted, and parts are named by their content hash. Infrastructure
failures on a worker (``ComponentUnavailable``: LibreOffice, the store, the index) fail the task; after
``retries`` the client records what finished and raises, as the local run does (exit 3).

Task arguments carry the raw record; their ``repr``, which Dask writes to worker logs when a task fails,
shows only the batch and line, never personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client, Future, WorkerPlugin, get_worker
from sqlalchemy.exc import SQLAlchemyError

from archive.store import S3Store
from core.config import Settings, load_settings
from core.errors import (
    ClusterUnavailable,
    ComponentUnavailable,
    IssuanceError,
    UsageError,
    WorkerMisconfigured,
)
from core.records import Endorsement, RawRecord, content_hash, parse_record
from pipeline.batch import Accepted
from pipeline.report import ARCHIVED, FILED, REJECTED, BatchReport, Outcome
from pipeline.validate import Reason
from usecases.executors import Job
from usecases.filing import Filing
from usecases.run import BatchRun, already_archived, file_group, rejected_outcome, run_batch
from usecases.session import Archive, FilingSession, filing_session, filing_without_documents

logger = logging.getLogger(__name__)

PLUGIN_NAME = "issuance-filing"
DEFAULT_RETRIES = 1
ADDRESS = re.compile(r"^(tcp|tls)://[^\s/]+:\d+/?$")
_KEY_CHECK_LABEL = "ISSUANCE-CLUSTER-KEY-CHECK"


# --- what a cluster needs -----------------------------------------------------------------------------


def _shared_archive_problem(settings: Settings) -> str | None:
    if not settings.store_url.startswith("s3://"):
        return "the store is a local folder"
    if settings.index_url.startswith("sqlite"):
        return "the index is an SQLite file"
    return None


def require_shared_archive(settings: Settings) -> None:
    """``UsageError`` unless the store is S3 and the index a database server that every worker can reach."""
    problem = _shared_archive_problem(settings)
    if problem is not None:
        raise UsageError(
            f"--cluster needs an archive every worker shares, but {problem}: workers on other machines "
            "cannot use it",
            hint="set ISSUANCE_STORE=s3://bucket/prefix and ISSUANCE_INDEX=postgresql+psycopg://… for the "
            "client and every worker",
        )


def key_fingerprint(filing: Filing) -> str:
    """A value that shows two processes hold the same HMAC key without revealing it."""
    return filing.index.identity(_KEY_CHECK_LABEL)[:32]


def archive_identity(filing: Filing) -> str:
    """``s3://bucket/prefix``: the store every process of a cluster run files into.

    ``UsageError`` for a folder store or an SQLite index: workers on other machines cannot share them.
    """
    store = filing.store
    if not isinstance(store, S3Store) or filing.index.dialect == "sqlite":
        raise UsageError(
            "a cluster run needs an archive every worker shares: an S3 store and a database server",
            hint="set ISSUANCE_STORE=s3://… and ISSUANCE_INDEX=postgresql+psycopg://…",
        )
    return f"s3://{store.bucket}/{store.prefix}"


# --- what travels with a task ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchContext:
    """What every task of one batch carries, so that a worker can check it files into the client's archive."""

    batch_id: str
    batch_file: str  # absolute; the images lie beside it, on storage every worker mounts at this path
    batch_sha256: str
    store_url: str
    key_check: str
    operator: str  # who runs the batch: the ledger events name them, not the worker's account
    signer: str | None = None  # the signing certificate's fingerprint the client is configured with

    @property
    def batch_dir(self) -> Path:
        return Path(self.batch_file).parent


@dataclass(frozen=True, eq=False)
class RecordTask:
    """One accepted record as a worker receives it: the raw data, as read from the batch file."""

    context: BatchContext
    line: int
    data: dict[str, Any] = field(repr=False)

    def __repr__(self) -> str:  # Dask logs a failed task's arguments: no personal data in them
        return f"RecordTask(batch={self.context.batch_id}, line={self.line})"


# --- the worker side --------------------------------------------------------------------------------------


class _WorkerFiling:
    """The worker process's filing session: opened once (warm LibreOffice), checked once per batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None
        self._session: FilingSession | None = None
        self._by_operator: dict[str, Filing] = {}
        self._checked: set[str] = set()

    def open(self) -> FilingSession:
        """Open the session from this process's settings if it is not open; ``ComponentUnavailable``."""
        with self._lock:
            return self._open()

    def _open(self) -> FilingSession:
        if self._session is not None:
            return self._session
        settings = load_settings()
        problem = _shared_archive_problem(settings)
        if problem is not None:
            raise WorkerMisconfigured(
                f"worker {_worker_name()}: {problem}; a cluster worker files into the shared archive",
                hint="start the worker with the client's ISSUANCE_STORE (s3://…) and ISSUANCE_INDEX",
            )
        stack = contextlib.ExitStack()
        try:
            session = stack.enter_context(filing_session(settings))
        except BaseException:
            stack.close()
            raise
        self._stack, self._session = stack, session
        logger.info("worker %s: filing session open (%d LibreOffice)", _worker_name(), session.workers)
        return session

    def close(self) -> None:
        """End LibreOffice and close the archive. Idempotent."""
        with self._lock:
            stack, self._stack, self._session = self._stack, None, None
            self._by_operator.clear()
            self._checked.clear()
        if stack is not None:
            stack.close()

    def filing(self, context: BatchContext) -> Filing:
        """The filing for one batch's tasks, after checking (once) that the archive is the client's."""
        with self._lock:
            session = self._open()
            if context.batch_id not in self._checked:
                self._check(session.filing, context)
                self._checked.add(context.batch_id)
            filing = self._by_operator.get(context.operator)
            if filing is None:
                base = session.filing
                filing = Filing(
                    store=base.store,
                    index=base.index,
                    maker=base.maker,
                    operator=context.operator,
                    signer=base.signer,
                    unknown_serials=base.unknown_serials,
                )
                self._by_operator[context.operator] = filing
            return filing

    def _check(self, filing: Filing, context: BatchContext) -> None:
        name = _worker_name()
        store = archive_identity(filing)
        if store != context.store_url:
            raise WorkerMisconfigured(
                f"worker {name} files into {store}, the client into {context.store_url}",
                hint="give every worker the client's ISSUANCE_STORE",
            )
        if key_fingerprint(filing) != context.key_check:
            raise WorkerMisconfigured(
                f"worker {name} has another HMAC key than the client",
                hint="give every worker the client's ISSUANCE_HMAC_KEY or ISSUANCE_HMAC_KEY_FILE",
            )
        mine = filing.signer.fingerprint if filing.signer is not None else None
        if mine != context.signer:
            raise WorkerMisconfigured(
                f"worker {name} signs with "
                + (f"certificate {mine[:16]}…" if mine else "no key")
                + ", the client is configured with "
                + (f"certificate {context.signer[:16]}…" if context.signer else "no key"),
                hint="give every worker the client's ISSUANCE_SIGNING_KEY and its password or PIN",
            )
        if not self._index_knows(filing, context.batch_id):
            raise WorkerMisconfigured(
                f"worker {name} uses another index than the client ({filing.index.describe()} does not "
                f"know batch {context.batch_id})",
                hint="give every worker the client's ISSUANCE_INDEX",
            )
        try:
            with open(context.batch_file, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as e:
            raise WorkerMisconfigured(
                f"worker {name} cannot read the batch file {context.batch_file}: {e.strerror}",
                hint="mount the shared batch storage on every worker at the same path as on the client",
            ) from e
        if digest != context.batch_sha256:
            raise WorkerMisconfigured(
                f"worker {name} sees another file at {context.batch_file} than the client",
                hint="mount the shared batch storage on every worker at the same path as on the client",
            )

    @staticmethod
    def _index_knows(filing: Filing, batch_id: str) -> bool:
        try:
            return any(e.action == "batch.started" for e in filing.index.ledger_entries(subject=batch_id))
        except SQLAlchemyError as e:
            raise ComponentUnavailable(f"the index at {filing.index.describe()} is unavailable: {e}") from e


_WORKER = _WorkerFiling()  # one per worker process


def _worker_name() -> str:
    try:
        worker = get_worker()
    except ValueError:  # not inside a worker (a test calling the task directly)
        return "(no worker)"
    return str(worker.name or worker.address)


class FilingPlugin(WorkerPlugin):
    """Opens each worker's filing session when it joins (LibreOffice warm before the first record) and
    closes it when the worker closes. Registered by every client run; ``idempotent``, so a second run does
    not restart LibreOffice on the workers. A session that cannot open is logged here; the first task on
    that worker tries again and reports the error to the client."""

    idempotent = True
    name = PLUGIN_NAME

    async def setup(self, worker: Any) -> None:
        try:
            await asyncio.to_thread(_WORKER.open)
        except IssuanceError as e:
            logger.error("worker %s: cannot open the filing session: %s", worker.name or worker.address, e)

    async def teardown(self, worker: Any) -> None:
        await asyncio.to_thread(_WORKER.close)


def file_task(task: RecordTask, previous: Outcome | None) -> Outcome:
    """Run on a worker: file one record, after the previous version of its policy (``previous``).

    Returns the record's outcome (archived, or rejected naming the field), also when run again after a
    worker died: a record the index already holds from this batch is not filed twice. Raises only for
    infrastructure (``ComponentUnavailable`` and its kin), which fails the task.
    """
    try:
        return _file(_WORKER.filing(task.context), task, previous)
    except WorkerMisconfigured as e:
        # an error travels to the client pickled, with its message only: the hint goes into the text
        raise WorkerMisconfigured(str(e)) from None
    except ComponentUnavailable as e:
        raise ComponentUnavailable(f"{e} (on worker {_worker_name()})") from None


def _file(filing: Filing, task: RecordTask, previous: Outcome | None) -> Outcome:
    raw = RawRecord(line=task.line, data=task.data)
    batch_id = task.context.batch_id
    settled = _settled(filing, raw, batch_id)
    if settled is not None:
        logger.info("batch %s line %d: already in the index, not filed again", batch_id, task.line)
        return settled
    record, problems = parse_record(task.data)
    if record is None or problems:  # the client checked it: only a client and worker out of step get here
        return rejected_outcome(raw, [Reason(f, m) for f, m in problems] or [Reason("line", "not a record")])
    item = Accepted(raw, record, None)
    if isinstance(record, Endorsement) and (previous is None or previous.status in FILED):
        try:
            state = filing.archived_policy(record.policy_no)
        except ComponentUnavailable:
            raise
        except IssuanceError as e:
            return rejected_outcome(raw, [Reason("policy_no", f"the archived policy cannot be read: {e}")])
        if state is None:
            return rejected_outcome(raw, [Reason("policy_no", f"policy {record.policy_no} is not archived")])
        item = Accepted(raw, record, state.policy)
    outcome = file_group(filing, [item], previous, batch_dir=task.context.batch_dir, batch_id=batch_id)[0]
    if outcome.status == REJECTED:
        # Dask may run a task twice at once (a worker taken for dead that was only slow): if the other run
        # filed the record, the index says so, and the record was archived by this batch after all.
        return _settled(filing, raw, batch_id) or outcome
    return outcome


def _settled(filing: Filing, raw: RawRecord, batch_id: str) -> Outcome | None:
    """The outcome of a record the index already holds; None if it does not."""
    data = raw.data or {}
    known = filing.index.record(data["record_id"]) if isinstance(data.get("record_id"), str) else None
    if known is None:
        return None
    if known.batch_id != batch_id or known.content_sha256 != content_hash(data):
        return already_archived(
            raw, {known.record_id: known}
        )  # another run got there first: the client's rules
    version = next(
        (v for v in filing.index.versions(known.policy_no) if v.record_id == known.record_id), None
    )
    documents = (version.customer_key, version.bundle_key, version.manifest_key) if version else ()
    return Outcome(
        line=raw.line,
        status=ARCHIVED,
        record_id=known.record_id,
        policy_no=known.policy_no,
        kind=known.kind,
        documents=documents,
    )


# --- the client side -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterSession:
    """A client connected to the cluster, and a filing on the shared archive for reading and checking
    (no LibreOffice on the client: the workers render)."""

    client: Client
    filing: Filing


@contextlib.contextmanager
def cluster_session(settings: Settings, *, address: str, timeout: float = 30.0) -> Iterator[ClusterSession]:
    """Connect to the scheduler at ``address`` (``tcp://HOST:PORT``) and open the shared archive.

    ``UsageError`` for a local store, an SQLite index or a malformed address (before anything is opened);
    ``ClusterUnavailable`` when the scheduler does not answer within ``timeout`` seconds.
    """
    if not ADDRESS.match(address):
        raise UsageError(f"--cluster {address!r} is not a scheduler address", hint="write tcp://HOST:PORT")
    require_shared_archive(settings)
    with Archive(settings) as archive:
        # the client renders and signs nothing: its signer is what every worker's must be (``_check``)
        filing = filing_without_documents(settings, archive)
        try:
            client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise ClusterUnavailable(
                f"cannot reach the Dask scheduler at {address}: {e}",
                hint="start one with `dask scheduler`, and workers with `dask worker`",
            ) from e
        try:
            yield ClusterSession(client=client, filing=filing)
        finally:
            client.close()


class DaskExecutor:
    """The ``Executor`` of a run on the cluster behind ``client``: one task per record, keyed
    ``file-{batch_id}-{line}``; a record's task takes the previous version's task of its policy as an
    argument, so Dask runs them in input order. At most ``window`` records in flight (default: twice the
    cluster's threads). Only for ``BatchRun`` jobs: workers file into the client's archive."""

    group_size = 1

    def __init__(
        self,
        client: Client,
        *,
        filing: Filing,
        retries: int = DEFAULT_RETRIES,
        window: int | None = None,
        worker_timeout: float = 60.0,
    ) -> None:
        self._store_url = archive_identity(filing)
        _prepare(client, worker_timeout=worker_timeout)
        self._client = client
        self._filing = filing
        self._retries = retries
        self.slots = window or max(4, 2 * sum(client.nthreads().values()))
        self._contexts: dict[str, BatchContext] = {}

    def _context(self, run: BatchRun) -> BatchContext:
        context = self._contexts.get(run.batch_id)
        if context is None:
            context = self._contexts[run.batch_id] = BatchContext(
                batch_id=run.batch_id,
                batch_file=str(run.batch_file),
                batch_sha256=run.input_sha256,
                store_url=self._store_url,
                key_check=key_fingerprint(self._filing),
                operator=self._filing.operator,
                signer=self._filing.signer.fingerprint if self._filing.signer is not None else None,
            )
        return context

    def submit(self, job: Job, items: list[Accepted], before: Future | Outcome | None) -> list[Future]:
        assert isinstance(job, BatchRun), "a cluster files batch runs only"
        context = self._context(job)
        return [
            self._client.submit(
                file_task,
                RecordTask(context=context, line=item.raw.line, data=item.raw.data or {}),
                before,
                key=f"file-{job.batch_id}-{item.raw.line}",
                pure=False,
                retries=self._retries,
            )
            for item in items
        ]

    def lost(self, item: Accepted, error: BaseException) -> ComponentUnavailable:
        """The cluster lost the task: workers kept dying, it was cancelled, …"""
        return ClusterUnavailable(
            f"the cluster could not file line {item.raw.line}: {type(error).__name__}: {error}",
            hint="see the workers' logs; re-run the batch to file the rest",
        )


def run_batch_on_cluster(
    batch: Path,
    *,
    filing: Filing,
    client: Client,
    on_record: Callable[[Outcome], None] | None = None,
    stop: threading.Event | None = None,
    retries: int = DEFAULT_RETRIES,
    window: int | None = None,
    worker_timeout: float = 60.0,
) -> BatchReport:
    """``run_batch`` with the records filed on the cluster behind ``client``: the same report and promises.

    Raises as ``run_batch`` does, and also ``UsageError`` if the archive is not shared and
    ``ClusterUnavailable`` if no worker joins within ``worker_timeout`` seconds or the cluster loses a
    task (after ``retries`` more attempts).
    """
    executor = DaskExecutor(
        client, filing=filing, retries=retries, window=window, worker_timeout=worker_timeout
    )
    return run_batch(batch, filing=filing, executor=executor, on_record=on_record, stop=stop)


def _prepare(client: Client, *, worker_timeout: float) -> None:
    """At least one worker, each with its filing session open (the plugin is registered once)."""
    try:
        client.wait_for_workers(1, timeout=worker_timeout)
    except TimeoutError as e:
        raise ClusterUnavailable(
            f"no Dask worker joined the scheduler within {worker_timeout:g} s",
            hint="start workers with `dask worker tcp://HOST:PORT` and the ISSUANCE_* environment",
        ) from e
    try:
        client.register_plugin(FilingPlugin(), name=PLUGIN_NAME)
    except Exception as e:  # a worker that cannot import this project, or unpickle the plugin
        raise ClusterUnavailable(
            f"the Dask workers cannot set up issuance: {type(e).__name__}: {e}",
            hint="install this project, the same version as the client, on every worker",
        ) from e
