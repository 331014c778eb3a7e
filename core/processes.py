"""Which process left a file behind, and whether it still runs: a tag that survives pid reuse.

A run killed with ``kill -9`` cannot clean up after itself; the next one must, without ever touching what
a run still alive is using (issue 21, item 7). A bare pid cannot tell: pids are reused, and another pid
namespace (a second container on the same volume) has its own. So a tag names the process by its pid,
its start time (``/proc/<pid>/stat``, clock ticks since boot) and a digest of the boot id and the pid
namespace it lives in: ``<host>.<pid>.<start>``.

Shared by the run's scratch folders (``pipeline.scratch``) and the object store's temp parts
(``archive.store.local``). Linux only: elsewhere no tag can be judged, and nothing is ever removed.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import cache
from pathlib import Path

_TAG = re.compile(r"([0-9a-f]{8})\.([0-9]+)\.([0-9]+)")


@cache
def _host() -> str | None:
    """This boot of this machine and this pid namespace: where a pid means one process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return hashlib.sha256(f"{boot}\0{namespace}".encode()).hexdigest()[:8]


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22, starttime
    except (IndexError, ValueError):
        return None


def process_tag(pid: int | None = None) -> str | None:
    """The tag of ``pid`` (default: this process), or None where processes cannot be told apart."""
    pid = os.getpid() if pid is None else pid
    host, start = _host(), _start_time(pid)
    if host is None or start is None:
        return None
    return f"{host}.{pid}.{start}"


def tag_alive(tag: str) -> bool | None:
    """Whether the process ``tag`` names still runs: True, False, or None when this process cannot
    tell (a tag from another machine, boot or pid namespace, or no tag at all)."""
    match = _TAG.fullmatch(tag)
    host = _host()
    if match is None or host is None or match.group(1) != host:
        return None
    return _start_time(int(match.group(2))) == int(match.group(3))
