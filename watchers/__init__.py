"""The inbox watcher: notices complete batches in a folder and hands them to the pipeline.

``Watcher`` watches (watchdog events plus a periodic rescan), ``Inbox`` owns the folder's layout and
the completeness rules, ``extract_batch`` unpacks zipped batches safely, a ``BatchRunner`` it is given
files each batch (``usecases.watch.FilingRunner``). ``issuance watch`` (``cli.watch``) wires them together.
"""

from watchers.inbox import Entry, Inbox, InboxLock, is_ignored
from watchers.runner import BatchRunner
from watchers.watcher import Watcher, WatchOptions, WatchSummary
from watchers.zipbatch import ZipLimits, extract_batch

__all__ = [
    "BatchRunner",
    "Entry",
    "Inbox",
    "InboxLock",
    "WatchOptions",
    "WatchSummary",
    "Watcher",
    "ZipLimits",
    "extract_batch",
    "is_ignored",
]
