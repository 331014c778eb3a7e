"""DOCX -> PDF through LibreOffice kept warm.

Starting LibreOffice costs one to two seconds, and a batch holds thousands of documents, so a
``Converter`` keeps one LibreOffice running and sends it documents over UNO. ``uno`` exists only for
the system interpreter, so the UNO side lives in a small child program (``pipeline/_lobridge.py``, run
by ``/usr/bin/python3``) that talks JSON lines over a pipe; this module owns that child: it starts it,
watches every request with a timeout, kills and restarts it after a hang or a crash, retries once, and
turns what went wrong into the project's own errors.

``ConverterPool`` spreads documents over a few such instances for threads converting in parallel.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

from core.errors import ComponentUnavailable, ConversionFailed, ConversionTimeout, UsageError
from pipeline.scratch import SOCKETS_SUFFIX, list_sockets
from stamps.pdfa import drop_structure_tree

logger = logging.getLogger(__name__)

BRIDGE = Path(__file__).with_name("_lobridge.py")

INSTALL_HINT = (
    "install LibreOffice and its Python bridge: apt-get install libreoffice-writer-nogui python3-uno "
    "fonts-noto-cjk"
)

# LibreOffice's SelectPdfVersion values in 7.4: 0 = its default PDF 1.x, 1/2/3 = PDF/A-1b/2b/3b,
# 15/16 = PDF 1.5/1.6.
PDF_VERSIONS = frozenset({0, 1, 2, 3, 15, 16})
PDF_A_2B = 2
PDF_A_VERSIONS = frozenset({1, 2, 3})
# Issued documents are archived: PDF/A-2b (issue 23, item 5), kept through assembly by stamps.pdfa.
DEFAULT_PDF_VERSION = PDF_A_2B

# The bridge enforces start_timeout itself; we wait this much longer before we stop believing it.
_START_GRACE = 10.0
# How long close() lets LibreOffice end by itself before the process group is killed.
_CLOSE_GRACE = 10.0


class DocxToPdf(Protocol):
    """The ``Converter`` seam: ``Converter`` and ``ConverterPool`` both fit."""

    def convert(self, docx: Path, pdf: Path) -> int: ...


@dataclass(frozen=True)
class ConversionStats:
    """Counters of one converter or, summed, of a pool: for the benchmark and the batch report.

    ``seconds`` is wall time spent inside ``convert`` (successes and failures, retries and restarts
    included); ``start_seconds`` the part of all time spent bringing LibreOffice up, including the
    first start; ``restarts`` counts starts after the first.
    """

    documents: int = 0
    failures: int = 0
    timeouts: int = 0
    retries: int = 0
    starts: int = 0
    restarts: int = 0
    seconds: float = 0.0
    start_seconds: float = 0.0

    def __add__(self, other: ConversionStats) -> ConversionStats:
        return ConversionStats(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    @property
    def mean_seconds(self) -> float:
        """Mean wall time per converted document (0.0 before the first one)."""
        return self.seconds / self.documents if self.documents else 0.0


class _Crashed(Exception):
    """The bridge or LibreOffice died under a request."""


class _TimedOut(Exception):
    """No answer within the timeout."""


class _Rejected(Exception):
    """A live LibreOffice refused the document, or what it wrote is not a PDF."""


@dataclass
class _Bridge:
    """One running ``_lobridge.py`` child and the threads that drain its pipes."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    stderr_tail: deque[str]
    stderr_thread: threading.Thread
    soffice_pid: int = 0
    pipes: tuple[Path, ...] = ()  # LibreOffice's sockets in /tmp, removed with it (``_lobridge.bound_pipes``)


def _drain_stdout(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)  # EOF: the bridge is gone


def _drain_stderr(stream: IO[str], tail: deque[str], pid: int) -> None:
    for line in stream:
        text = line.rstrip()
        if text:
            tail.append(text)
            logger.info("lobridge[%d]: %s", pid, text)


def _bridge_env() -> dict[str, str]:
    # The bridge runs another interpreter: our virtualenv's module path must not leak into it.
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}


class Converter:
    """One warm LibreOffice instance with its own profile directory under ``workdir``.

    Promises: ``convert`` returns the page count of a PDF that exists, is non-empty and starts with
    ``%PDF``; it never leaves a half-written PDF under the target name; after any failure the instance
    is usable for the next document (it restarts LibreOffice itself when needed). Errors:
    ``ComponentUnavailable`` when LibreOffice or its Python bridge is missing or does not start within
    ``start_timeout``; ``ConversionTimeout`` when a document did not finish within ``timeout`` twice
    (with a restart between); ``ConversionFailed`` when a document failed twice for any other reason.

    ``timeout`` bounds one request (not the start, which ``start_timeout`` bounds). ``pdf_version`` is
    LibreOffice's ``SelectPdfVersion``: 2 = PDF/A-2b (the default), 0 = plain PDF 1.x (1.6 in
    LibreOffice 7.4); it travels with every request to the bridge. A restart after a crash or hang
    reuses the instance's profile directory; ``close`` removes it.

    ``profile_template`` (``profile_template_for``): a new profile starts as a copy of it, which saves
    LibreOffice the costlier first start of a profile (docs/performance.md). Where there is none yet,
    the first instance that ends politely leaves its profile there; a copy LibreOffice does not start
    from is removed and the instance starts afresh.

    Not for sharing between threads without care: calls are serialised by a lock, so a second thread
    waits; use ``ConverterPool`` for parallel work.
    """

    def __init__(
        self,
        *,
        workdir: Path,
        timeout: float = 120.0,
        start_timeout: float = 60.0,
        soffice: str = "soffice",
        python: str = "/usr/bin/python3",
        pdf_version: int = DEFAULT_PDF_VERSION,
        profile_template: Path | None = None,
    ) -> None:
        if pdf_version not in PDF_VERSIONS:
            raise UsageError(
                f"pdf_version {pdf_version} is not a LibreOffice SelectPdfVersion",
                hint=f"use one of {sorted(PDF_VERSIONS)} (0 = PDF 1.x, 2 = PDF/A-2b)",
            )
        self.workdir = Path(workdir)
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.soffice = soffice
        self.python = python
        self.pdf_version = pdf_version
        self._lock = threading.RLock()
        self._bridge: _Bridge | None = None
        self._profile: Path | None = None
        self.profile_template = profile_template
        self._from_template = False
        self._closed = False
        self._next_id = 0
        self._stats = ConversionStats()

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Bring LibreOffice up now (``convert`` would do it on first use). Idempotent."""
        with self._lock:
            if self._closed:
                raise ComponentUnavailable("this converter is closed", hint="create a new Converter")
            if self._bridge is not None and not self._alive(self._bridge):
                self._discard("LibreOffice died while idle")
            if self._bridge is None:
                self._spawn()

    def close(self) -> None:
        """End LibreOffice and remove the profile directory. Idempotent.

        Politely only when its profile is to become the template: otherwise nothing of the instance is
        kept (its temporary files are inside the profile too), so LibreOffice is killed rather than kept
        waiting for at the end of every run (docs/performance.md, "The end of a run")."""
        with self._lock:
            self._closed = True
            if self._bridge is not None:
                bridge, self._bridge = self._bridge, None
                template = self.profile_template
                leave = template is not None and not self._from_template and not template.exists()
                if not leave and bridge.soffice_pid > 0:
                    # LibreOffice itself first (if that pid is still in the bridge's session): its
                    # parents then end at once and are waited for, so its CPU time is still counted
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        if os.getsid(bridge.soffice_pid) == bridge.proc.pid:
                            os.kill(bridge.soffice_pid, signal.SIGKILL)
                self._stop(bridge, graceful=True)
                if leave and bridge.proc.returncode == 0:
                    self._leave_template()
            if self._profile is not None:
                shutil.rmtree(self._profile, ignore_errors=True)
                self._sockets_list().unlink(missing_ok=True)
                self._profile = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def soffice_pid(self) -> int | None:
        """The pid of the running ``soffice.bin``, or None when no instance is running."""
        bridge = self._bridge
        return bridge.soffice_pid if bridge is not None and bridge.proc.poll() is None else None

    @property
    def profile_dir(self) -> Path | None:
        """This instance's LibreOffice profile (``-env:UserInstallation``), once started."""
        return self._profile

    @property
    def stats(self) -> ConversionStats:
        """A snapshot of this instance's counters (immutable; read it again for fresh numbers)."""
        return self._stats

    def _count(self, **increments: Any) -> None:
        self._stats = self._stats + ConversionStats(**increments)

    def _spawn(self) -> None:
        if shutil.which(self.soffice) is None:
            raise ComponentUnavailable(f"LibreOffice not found: {self.soffice!r}", hint=INSTALL_HINT)
        if shutil.which(self.python) is None:
            raise ComponentUnavailable(
                f"Python for the LibreOffice bridge not found: {self.python}", hint=INSTALL_HINT
            )
        if self._profile is None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            # One profile per instance: two LibreOffices sharing a profile refuse to start or collide.
            self._profile = Path(tempfile.mkdtemp(prefix="lo-profile-", dir=self.workdir))
            template = self.profile_template
            if template is not None and template.is_dir():
                try:
                    # the bridge copies the template into the profile (``_lobridge.fill_profile``)
                    self._from_template = self._spawn_bridge(template=template)
                    return
                except ComponentUnavailable as e:
                    logger.warning("LibreOffice did not start from the profile template (%s); afresh", e)
                    shutil.rmtree(self._profile, ignore_errors=True)
                    if self.profile_template is not None:
                        shutil.rmtree(self.profile_template, ignore_errors=True)
                    self._profile = Path(tempfile.mkdtemp(prefix="lo-profile-", dir=self.workdir))
                    self._from_template = False
        self._spawn_bridge()

    def _leave_template(self) -> None:
        """Keep this instance's profile, which LibreOffice has just ended with, as the template (once)."""
        template = self.profile_template
        if template is None or self._profile is None or template.exists():
            return
        staged = template.with_name(f".{template.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            shutil.copytree(self._profile, staged)
            os.rename(staged, template)  # atomic; another instance may have left one first
        except OSError:
            pass
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def _spawn_bridge(self, *, template: Path | None = None) -> bool:
        """Start a bridge and its LibreOffice on this instance's profile, filled from ``template`` first if
        given; whether it was (a template that cannot be copied leaves a new profile)."""
        assert self._profile is not None
        began = time.monotonic()
        try:
            proc = subprocess.Popen(
                [
                    self.python,
                    str(BRIDGE),
                    "--soffice",
                    self.soffice,
                    "--profile",
                    str(self._profile),
                    "--start-timeout",
                    str(self.start_timeout),
                    *(["--template", str(template)] if template is not None else []),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=_bridge_env(),
                # Own process group: killing the group takes the bridge, oosplash and soffice.bin at once.
                start_new_session=True,
            )
        except OSError as e:
            raise ComponentUnavailable(f"cannot run {self.python}: {e}", hint=INSTALL_HINT) from e
        assert proc.stdout is not None and proc.stderr is not None
        lines: queue.Queue[str | None] = queue.Queue()
        tail: deque[str] = deque(maxlen=20)
        stderr_thread = threading.Thread(
            target=_drain_stderr, args=(proc.stderr, tail, proc.pid), daemon=True
        )
        bridge = _Bridge(proc=proc, lines=lines, stderr_tail=tail, stderr_thread=stderr_thread)
        threading.Thread(target=_drain_stdout, args=(proc.stdout, lines), daemon=True).start()
        stderr_thread.start()

        try:
            line = bridge.lines.get(timeout=self.start_timeout + _START_GRACE)
        except queue.Empty:
            line = ""
        hello: dict[str, Any] = {}
        if line:
            with contextlib.suppress(ValueError):
                hello = json.loads(line)
        if not hello.get("ready"):
            self._stop(bridge, graceful=False)
            hint = INSTALL_HINT
            if hello:
                reason = hello.get("error", "unknown error")
                if hello.get("missing") is None:  # installed but slow or broken, not missing
                    hint = (
                        f"raise start_timeout on a loaded machine, see the lobridge log lines; {INSTALL_HINT}"
                    )
            elif line == "":
                reason = f"LibreOffice did not come up within {self.start_timeout:g} s"
            else:
                reason = "the bridge ended before it was ready: " + (
                    " | ".join(bridge.stderr_tail) or "no output"
                )
            raise ComponentUnavailable(f"LibreOffice is unavailable: {reason}", hint=hint)

        bridge.soffice_pid = int(hello.get("pid", 0))
        bridge.pipes = tuple(Path(p) for p in hello.get("pipes", ()) if isinstance(p, str))
        if bridge.pipes:
            # for the next run, should this one be killed together with its bridges (pipeline.scratch)
            list_sockets(self._sockets_list(), bridge.pipes)
        self._bridge = bridge
        elapsed = time.monotonic() - began
        self._count(starts=1, restarts=1 if self._stats.starts else 0, start_seconds=elapsed)
        logger.info(
            "LibreOffice ready in %.2f s (soffice.bin pid %d, profile %s)",
            elapsed,
            bridge.soffice_pid,
            self._profile,
        )
        return bool(hello.get("from_template"))

    def _stop(self, bridge: _Bridge, *, graceful: bool) -> None:
        """End one bridge; graceful means EOF first (LibreOffice terminates itself), then the group kill."""
        proc = bridge.proc
        if graceful and proc.poll() is None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_CLOSE_GRACE)
        # Kill the whole group even after a clean exit: nothing of this instance may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # LibreOffice killed leaves its sockets in /tmp (ended politely, it removes them itself); they
        # are this instance's own (named after its bridge and its profile), so no need to ask who listens
        for pipe in bridge.pipes:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(pipe.lstat().st_mode):
                    pipe.unlink()
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        # Let the last stderr lines reach the log (and stderr_tail, used in error messages).
        bridge.stderr_thread.join(timeout=2.0)

    def _sockets_list(self) -> Path:
        assert self._profile is not None
        return self._profile.with_name(self._profile.name + SOCKETS_SUFFIX)

    @staticmethod
    def _alive(bridge: _Bridge) -> bool:
        # soffice.bin may die while idle (OOM killer, an operator); noticing it here turns the next
        # document into a plain restart instead of a failed attempt and a retry.
        if bridge.proc.poll() is not None:
            return False
        if bridge.soffice_pid <= 0:
            return True
        try:
            os.kill(bridge.soffice_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def _discard(self, reason: str) -> None:
        """Kill the current instance after a hang or crash; the next attempt starts a fresh one."""
        if self._bridge is not None:
            logger.warning(
                "LibreOffice instance (soffice.bin pid %d) discarded: %s", self._bridge.soffice_pid, reason
            )
            self._stop(self._bridge, graceful=False)
            self._bridge = None

    # --- conversion --------------------------------------------------------------------------------

    def convert(self, docx: Path, pdf: Path, *, timeout: float | None = None) -> int:
        """Convert ``docx`` to ``pdf`` and return the page count.

        ``timeout`` overrides the instance's per-request timeout for this call. A failure is retried
        once (after a restart when LibreOffice hung or died); the second failure raises.
        """
        docx, pdf = Path(docx).absolute(), Path(pdf).absolute()
        if not docx.is_file():
            raise ConversionFailed(f"cannot convert {docx.name}: no such file", hint="check the input path")
        if not pdf.parent.is_dir():
            raise UsageError(
                f"output folder for {pdf.name} does not exist", hint="create it before converting"
            )
        limit = self.timeout if timeout is None else timeout
        with self._lock:
            began = time.monotonic()
            try:
                pages = self._convert_with_retry(docx, pdf, limit)
            except ConversionTimeout:
                self._count(failures=1, timeouts=1, seconds=time.monotonic() - began)
                raise
            except ConversionFailed:
                self._count(failures=1, seconds=time.monotonic() - began)
                raise
            self._count(documents=1, seconds=time.monotonic() - began)
        if self.pdf_version in PDF_A_VERSIONS:
            drop_structure_tree(pdf)  # after the lock: LibreOffice takes the next document meanwhile
        return pages

    def _convert_with_retry(self, docx: Path, pdf: Path, limit: float) -> int:
        failure: Exception | None = None
        for attempt in (1, 2):
            if attempt == 2:
                self._count(retries=1)
                logger.warning("retrying %s after: %s", docx.name, failure)
            self.start()
            try:
                return self._request(docx, pdf, limit)
            except _TimedOut as e:
                self._discard(f"no answer for {docx.name} within {limit:g} s")
                failure = e
            except _Crashed as e:
                self._discard(f"crashed on {docx.name}: {e}")
                failure = e
            except _Rejected as e:
                failure = e  # LibreOffice is alive; retry on the same instance
            finally:
                pdf.with_name(f".{pdf.name}.part").unlink(missing_ok=True)
        detail = _scrub(str(failure), docx)
        if isinstance(failure, _TimedOut):
            raise ConversionTimeout(
                f"LibreOffice did not finish {docx.name} within {limit:g} s, twice (restarted in between)",
                hint="check the document for huge images or tables, or raise the converter timeout",
            ) from failure
        if isinstance(failure, _Crashed):
            raise ConversionFailed(
                f"LibreOffice crashed twice converting {docx.name}: {detail}",
                hint="open the document in LibreOffice or Word and save it again; if every document "
                "fails, see the lobridge log lines and the LibreOffice installation",
            ) from failure
        raise ConversionFailed(
            f"LibreOffice could not convert {docx.name}: {detail}",
            hint="check that it is a real .docx: open it in Word or LibreOffice and save it again",
        ) from failure

    def _request(self, docx: Path, pdf: Path, limit: float) -> int:
        bridge = self._bridge
        assert bridge is not None and bridge.proc.stdin is not None
        self._next_id += 1
        ident = self._next_id
        message = {"id": ident, "in": str(docx), "out": str(pdf), "pdf_version": self.pdf_version}
        try:
            bridge.proc.stdin.write(json.dumps(message, ensure_ascii=False) + "\n")
            bridge.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise _Crashed(f"the LibreOffice bridge is gone ({e})") from e
        deadline = time.monotonic() + limit
        while True:
            try:
                line = bridge.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise _TimedOut(f"no answer within {limit:g} s") from None
            if line is None:
                raise _Crashed(f"the LibreOffice bridge exited (code {bridge.proc.wait()})")
            try:
                reply = json.loads(line)
            except ValueError:
                logger.warning("lobridge[%d] said something that is not JSON: %r", bridge.proc.pid, line)
                continue
            if reply.get("id") == ident:
                break
            # An answer to an earlier request we gave up on cannot happen (we kill on timeout), but a
            # stale line must never be taken for this document's answer.
        if not reply.get("ok"):
            error = str(reply.get("error", "unknown error"))
            if reply.get("dead"):
                raise _Crashed(error)
            raise _Rejected(error)
        _check_pdf(pdf)
        return int(reply["pages"])


def _check_pdf(pdf: Path) -> None:
    # LibreOffice has reported success for output it never wrote (OCRmyPDF checks the same way).
    try:
        with pdf.open("rb") as f:
            head = f.read(5)
    except OSError as e:
        raise _Rejected(f"LibreOffice reported success but wrote no PDF ({e.strerror})") from e
    if head != b"%PDF-":
        raise _Rejected("LibreOffice reported success but the output is empty or not a PDF")


def _scrub(text: str, docx: Path) -> str:
    """Keep folder names (which may carry personal data) out of messages: the file name is enough."""
    for form in (docx.as_uri(), str(docx)):
        text = text.replace(form, docx.name)
    return text


class ConverterPool:
    """A few ``Converter`` instances for threads that convert in parallel.

    Instances are created at once but start LibreOffice lazily, on their first document; call
    ``start()`` to warm them all up front (in parallel). ``convert`` blocks until an instance is free,
    so at most ``size`` documents are in LibreOffice at a time. Thread-safe.
    """

    def __init__(self, *, size: int, workdir: Path, **converter_kwargs: Any) -> None:
        if size < 1:
            raise UsageError(f"converter pool size must be at least 1, not {size}")
        self.size = size
        self._converters = [Converter(workdir=workdir, **converter_kwargs) for _ in range(size)]
        self.pdf_version = self._converters[0].pdf_version  # what every instance writes
        self._free: queue.Queue[Converter] = queue.Queue()
        for converter in self._converters:
            self._free.put(converter)
        self._closed = False
        self._starting: tuple[list[threading.Thread], list[BaseException]] | None = None
        self._start_lock = threading.Lock()

    def start(self, *, wait: bool = True) -> None:
        """Start every instance now, in parallel; raises the first ``ComponentUnavailable``.

        ``wait=False`` returns at once and lets the instances start while the caller does other work
        (reading and checking a batch); the first ``convert`` waits for them and raises the start's error.
        """
        errors: list[BaseException] = []

        def start_one(converter: Converter) -> None:
            try:
                converter.start()
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=start_one, args=(c,), daemon=True) for c in self._converters]
        for t in threads:
            t.start()
        self._starting = (threads, errors)
        if wait:
            self._started()

    def _started(self) -> None:
        starting, self._starting = self._starting, None
        if starting is None:
            return
        threads, errors = starting
        for t in threads:
            t.join()
        if errors:
            self._starting = ([], errors)  # every later caller hears the same error
            raise errors[0]

    def convert(self, docx: Path, pdf: Path, *, timeout: float | None = None) -> int:
        """Convert on the next free instance; same promises and errors as ``Converter.convert``."""
        with self._start_lock:
            self._started()
        with self._borrow() as converter:
            return converter.convert(docx, pdf, timeout=timeout)

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[Converter]:
        if self._closed:
            raise ComponentUnavailable("the converter pool is closed", hint="create a new ConverterPool")
        converter = self._free.get()
        try:
            yield converter
        finally:
            self._free.put(converter)

    @property
    def stats(self) -> ConversionStats:
        """Counters summed over all instances."""
        total = ConversionStats()
        for converter in self._converters:
            total = total + converter.stats
        return total

    @property
    def soffice_pids(self) -> list[int]:
        """The running ``soffice.bin`` pids (instances not yet started are left out)."""
        return [pid for c in self._converters if (pid := c.soffice_pid) is not None]

    def close(self) -> None:
        """Close every instance; waits for conversions in flight to finish. Idempotent.

        The instances are closed side by side: each may wait for a conversion in flight, or end
        politely to leave its profile as the template, at the end of a run when the machine has nothing
        else to do."""
        self._closed = True
        starting = self._starting
        if starting is not None:  # let instances still starting finish starting, then close them
            for t in starting[0]:
                t.join()
        if len(self._converters) == 1:
            self._converters[0].close()
            return
        # each one's lock makes its close wait for a conversion in flight
        closing = [threading.Thread(target=c.close, name="close-libreoffice") for c in self._converters]
        for t in closing:
            t.start()
        for t in closing:
            t.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def profile_template_for(cache_dir: Path, soffice: str = "soffice") -> Path | None:
    """Where ``Converter``'s profile template for this LibreOffice goes under ``cache_dir``: one per
    LibreOffice installation and build (its program folder and ``versionrc``) and per bridge (which
    seeds profiles); None where the installation cannot be told."""
    found = shutil.which(soffice)
    if found is None:
        return None
    program = Path(os.path.realpath(found)).parent
    try:
        identity = (program / "versionrc").read_bytes() + BRIDGE.read_bytes()
    except OSError:
        return None
    digest = hashlib.sha256(str(program).encode() + b"\0" + identity).hexdigest()[:16]
    return cache_dir / f"libreoffice-profile-{digest}"


def default_pool_size() -> int:
    """Usable CPUs (respecting affinity, e.g. in a container), capped at 4: each instance is a full
    LibreOffice of a few hundred MB, and beyond that the rest of the pipeline needs the CPUs."""
    return max(1, min(4, len(os.sched_getaffinity(0))))
