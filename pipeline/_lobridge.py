"""A warm LibreOffice behind a pipe: DOCX in, PDF out, one JSON line per document.

Run by the system interpreter (Debian's ``python3-uno`` exists only for ``/usr/bin/python3``), never
imported by the project's own code: ``pipeline.convert.Converter`` starts it as a child process. It
deliberately uses nothing beyond the standard library and ``uno``.

Protocol (UTF-8, one JSON object per line)::

    start   ->  {"ready": true, "pid": <soffice.bin pid>, "from_template": true|false,
                 "pipes": ["/tmp/OSL_PIPE_…", …]}
                {"ready": false, "error": "...", "missing": "uno"|"soffice"|null}   (then exit 3)
    stdin   <-  {"id": 7, "in": "/abs/a.docx", "out": "/abs/a.pdf", "pdf_version": 0}
    stdout  ->  {"id": 7, "ok": true, "pages": 3}
                {"id": 7, "ok": false, "error": "...", "dead": false}

``pdf_version`` travels in every request (default 0) so one bridge serves any mix: it is LibreOffice's
``SelectPdfVersion`` (0 = plain PDF 1.x, 1/2/3 = PDF/A-1b/2b/3b, 15/16 = PDF 1.5/1.6).
``"dead": true`` means LibreOffice itself is gone (killed, crashed, UNO bridge disposed): the bridge
exits right after that line and its parent must start a new one. ``"dead": false`` means LibreOffice
is alive and refused this one document. On EOF on stdin the bridge ends LibreOffice and exits 0.
``pipes`` are the sockets LibreOffice listens on (``bound_pipes``): the bridge removes them whenever it
ends LibreOffice, and its parent when it kills both (``pipeline.convert``).

Everything else (our own messages, LibreOffice's stdout and stderr) goes to stderr, so nothing but
protocol lines ever reaches stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

EXIT_UNAVAILABLE = 3
EXIT_DEAD = 4

# An explicit import filter: without it, type detection happily imports a file that is not a DOCX as
# plain text and we would "convert" garbage into a valid-looking PDF.
IMPORT_FILTER = "MS Word 2007 XML"
EXPORT_FILTER = "writer_pdf_Export"
PDF_VERSIONS = frozenset({0, 1, 2, 3, 15, 16})

# com.sun.star.document.MacroExecMode.NEVER_EXECUTE and UpdateDocMode.NO_UPDATE: documents come from
# outside; never run their macros nor fetch their links while converting.
NEVER_EXECUTE = 0
NO_UPDATE = 0


def log(message: str) -> None:
    print(f"lobridge[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


class Protocol:
    """The one channel to the parent: a private duplicate of the original stdout."""

    def __init__(self) -> None:
        # Take fd 1 for ourselves, then point fd 1 at stderr: whatever a library (or pyuno) prints
        # lands in the log instead of corrupting the protocol stream.
        self._out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message, ensure_ascii=False) + "\n")
        self._out.flush()


def descendant_pids(root: int) -> list[int]:
    """Every live descendant of ``root`` (``soffice`` is a shell script -> oosplash -> soffice.bin)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: the fields start after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def bound_pipes(pids: list[int]) -> list[str]:
    """The ``OSL_PIPE_*`` sockets these processes listen on, by path.

    LibreOffice binds them in ``/tmp`` whatever ``TMPDIR`` says (sal's pipe code has the folder built
    in), and a LibreOffice that is killed leaves them there: whoever kills it removes them."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[len("socket:[") : -1])
    found = []
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
            next(table, None)  # Num RefCount Protocol Flags Type St Inode Path
            for line in table:
                fields = line.split(None, 7)
                if len(fields) == 8 and fields[6] in inodes:
                    path = fields[7].rstrip("\n")
                    if os.path.basename(path).startswith("OSL_PIPE_") and path not in found:
                        found.append(path)
    except OSError:
        pass
    return found


def remove_pipes(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def find_soffice_bin(root: int) -> int:
    for pid in [root, *descendant_pids(root)]:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "soffice.bin":
                return pid
        except OSError:
            continue
    return root


# LibreOffice runs its graphics self-tests (``GraphicsRenderTests``: rectangles drawn on 4096 px surfaces)
# whenever the profile's ooSetupLastVersion is older than itself, and headless it never records its version
# there, so it ran them at every start, most of what a start cost (docs/performance.md, "LibreOffice
# starts"). A version no LibreOffice has reached yet tells it the profile is its own.
# The tests only choose a graphics backend for screens; the headless backend draws no screen.
PROFILE_SEED = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Setup/Product"><prop oor:name="ooSetupLastVersion" oor:op="fuse">\
<value>999.9</value></prop></item>
</oor:items>
"""


def seed_profile(profile: Path) -> None:
    """Give a new profile the settings LibreOffice would otherwise spend its start on (``PROFILE_SEED``);
    a profile LibreOffice has used already keeps its own."""
    settings = profile / "user" / "registrymodifications.xcu"
    if settings.exists():
        return
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(PROFILE_SEED, encoding="utf-8")


def fill_profile(profile: Path, template: Path | None) -> bool:
    """Fill a new profile with a copy of ``template`` (a profile an earlier instance ended with); False,
    the profile left empty, if there is none or it cannot be copied.

    Done here, not in the parent: in the parent the copy's hundred files wait for its interpreter's lock
    at every system call while it imports its modules, and took half a second instead of a hundredth."""
    if template is None or not template.is_dir():
        return False
    try:
        shutil.copytree(template, profile, dirs_exist_ok=True)
    except (OSError, shutil.Error) as exc:
        log(f"cannot copy the profile template {template}: {exc}; starting with a new profile")
        shutil.rmtree(profile, ignore_errors=True)
        profile.mkdir(parents=True, exist_ok=True)
        return False
    return True


class Office:
    """One soffice child with its own profile, reached over a private named pipe."""

    def __init__(self, *, soffice: str, profile: Path, start_timeout: float) -> None:
        import uno
        from com.sun.star.connection import NoConnectException

        self._uno = uno
        pipe = f"lobridge_{os.getpid()}_{uuid.uuid4().hex}"
        profile.mkdir(parents=True, exist_ok=True)
        seed_profile(profile)
        temp = profile / "tmp"
        temp.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [
                soffice,
                "--headless",
                "--invisible",
                "--nologo",
                "--norestore",
                "--nodefault",
                "--nolockcheck",
                "--nofirststartwizard",
                f"-env:UserInstallation={profile.resolve().as_uri()}",
                f"--accept=pipe,name={pipe};urp;StarOffice.ComponentContext",
            ],
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr,  # LibreOffice's chatter belongs in the log, never in the protocol
            stderr=sys.stderr,
            # its temporary files inside the profile, which goes when the instance does, even killed
            env={**os.environ, "TMPDIR": str(temp)},
        )
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
        url = f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext"
        deadline = time.monotonic() + start_timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise StartError(f"soffice exited with code {code} before accepting connections")
            try:
                self.ctx = resolver.resolve(url)
                break
            except NoConnectException:
                if time.monotonic() > deadline:
                    self.kill()
                    raise StartError(
                        f"LibreOffice did not accept connections within {start_timeout:g} s"
                    ) from None
                time.sleep(0.05)
        self.desktop = self.ctx.ServiceManager.createInstanceWithContext(
            "com.sun.star.frame.Desktop", self.ctx
        )
        self.pid = find_soffice_bin(self.proc.pid)
        self.pipes = bound_pipes([self.proc.pid, *descendant_pids(self.proc.pid)])

    def alive(self) -> bool:
        """Is LibreOffice still there? A cheap UNO round trip, not only the process table."""
        if self.proc.poll() is not None:
            return False
        try:
            self.desktop.getComponents()
        except Exception:
            return False
        return True

    def _props(self, **values: Any) -> tuple[Any, ...]:
        from com.sun.star.beans import PropertyValue

        return tuple(PropertyValue(Name=name, Value=value) for name, value in values.items())

    def convert(self, src: str, dst: str, pdf_version: int) -> int:
        """Write ``dst`` atomically (temp name beside it, then rename); return the page count."""
        uno = self._uno
        target = Path(dst)
        part = target.with_name(f".{target.name}.part")
        load = self._props(
            Hidden=True,
            ReadOnly=True,
            FilterName=IMPORT_FILTER,
            MacroExecutionMode=NEVER_EXECUTE,
            UpdateDocMode=NO_UPDATE,
        )
        doc = self.desktop.loadComponentFromURL(uno.systemPathToFileUrl(src), "_blank", 0, load)
        if doc is None:
            raise Rejected(f"LibreOffice could not load the file as DOCX ({IMPORT_FILTER})")
        try:
            # FilterData must travel as a typed sequence inside an Any, which pyuno only passes on
            # through uno.invoke; plain tuples arrive as the wrong type and are silently ignored.
            # Fonts are embedded by default; UseTaggedPDF stays off: PDF/A-2b (unlike 2a) needs no tags.
            filter_data = uno.Any(
                "[]com.sun.star.beans.PropertyValue",
                self._props(
                    SelectPdfVersion=pdf_version,
                    UseTaggedPDF=False,
                    ExportBookmarksToPDFDestination=True,
                ),
            )
            store = uno.Any(
                "[]com.sun.star.beans.PropertyValue",
                self._props(FilterName=EXPORT_FILTER, FilterData=filter_data),
            )
            uno.invoke(doc, "storeToURL", (uno.systemPathToFileUrl(str(part)), store))
            pages = int(doc.getCurrentController().getPropertyValue("PageCount"))
        finally:
            try:
                doc.close(True)
            except Exception as exc:  # a veto or a dead office: the outer handler decides which
                log(f"closing the document failed: {exc!r}")
        os.replace(part, target)
        return pages

    def terminate(self, grace: float = 10.0) -> None:
        # The UNO bridge drops as LibreOffice exits: an exception here is the expected way to end.
        with contextlib.suppress(Exception):
            self.desktop.terminate()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
        remove_pipes(getattr(self, "pipes", []))

    def kill(self) -> None:
        descendants = descendant_pids(self.proc.pid)
        # a LibreOffice that never became ready has bound its pipes all the same
        pipes = getattr(self, "pipes", None) or bound_pipes([self.proc.pid, *descendants])
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
        remove_pipes(pipes)


class StartError(Exception):
    """LibreOffice did not come up."""


class Rejected(Exception):
    """LibreOffice is alive but refused this document."""


def uno_error_text(exc: BaseException) -> str:
    if isinstance(exc, Rejected):
        return str(exc)
    message = getattr(exc, "Message", None) or str(exc)
    return f"{type(exc).__name__}: {message}".strip()


def serve(office: Office, channel: Protocol) -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            ident = request.get("id")
            src, dst = request["in"], request["out"]
            version = int(request.get("pdf_version", 0))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            channel.send({"id": None, "ok": False, "error": f"bad request: {exc}", "dead": False})
            continue
        if version not in PDF_VERSIONS:
            channel.send({"id": ident, "ok": False, "error": f"bad pdf_version {version}", "dead": False})
            continue
        try:
            pages = office.convert(src, dst, version)
        except Exception as exc:
            dead = not office.alive()
            Path(dst).with_name(f".{Path(dst).name}.part").unlink(missing_ok=True)
            channel.send({"id": ident, "ok": False, "error": uno_error_text(exc), "dead": dead})
            if dead:
                log("LibreOffice is gone; exiting so that the parent starts a new one")
                office.kill()
                return EXIT_DEAD
            continue
        channel.send({"id": ident, "ok": True, "pages": pages})
    office.terminate()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soffice", required=True)
    parser.add_argument("--profile", required=True, type=Path)
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument("--template", type=Path, help="a profile to copy into --profile first")
    args = parser.parse_args(argv)
    # LibreOffice's profile, its temporary files and the PDFs it writes hold personal data: its owner's
    # alone (issue 21, item 7)
    os.umask(0o077)
    channel = Protocol()
    try:
        import uno  # noqa: F401  (only to fail early with a clear message)
    except ImportError as exc:
        channel.send(
            {"ready": False, "error": f"{sys.executable} cannot import uno: {exc}", "missing": "uno"}
        )
        return EXIT_UNAVAILABLE
    from_template = fill_profile(args.profile, args.template)
    try:
        office = Office(soffice=args.soffice, profile=args.profile, start_timeout=args.start_timeout)
    except FileNotFoundError as exc:
        channel.send({"ready": False, "error": f"cannot run {args.soffice}: {exc}", "missing": "soffice"})
        return EXIT_UNAVAILABLE
    except StartError as exc:
        channel.send({"ready": False, "error": str(exc), "missing": None})
        return EXIT_UNAVAILABLE
    # The parent ends us with SIGTERM or by closing stdin; either way LibreOffice goes with us.
    signal.signal(signal.SIGTERM, lambda *_: (office.kill(), os._exit(0)))
    watch_parent(office)
    finished = False
    try:
        # inside the try: a parent that died while LibreOffice started (a run killed in its first
        # seconds) makes this send fail, and LibreOffice must not outlive it
        channel.send(
            {"ready": True, "pid": office.pid, "from_template": from_template, "pipes": office.pipes}
        )
        log(f"LibreOffice ready, soffice.bin pid {office.pid}")
        code = serve(office, channel)
        finished = True
        return code
    finally:
        # an answer that cannot be sent (BrokenPipeError: the parent died mid-conversion) or any other
        # surprise must not leave LibreOffice running as an orphan
        if not finished:
            office.kill()


def watch_parent(office: Office) -> None:
    """End LibreOffice and this bridge when the parent dies, even while a conversion hangs.

    The parent's death closes our stdin, but we only read stdin between documents; a conversion that
    is still running (or hung) would outlive it. PR_SET_PDEATHSIG is no help: it fires when the *thread*
    that started us ends, and the converter pool starts instances from short-lived threads.
    """
    parent = os.getppid()

    def loop() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                log("the parent process is gone; ending LibreOffice")
                office.kill()
                os._exit(EXIT_DEAD)

    threading.Thread(target=loop, name="watch-parent", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
