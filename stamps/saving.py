"""Writing a pikepdf document to bytes as every copy of this project is written, and its bookmarks.

Every customer copy, archive copy and sealed clause set is saved by ``save_pdf``: the same options
everywhere, so an incremental update (``stamps.pdfupdate.PlainPdf``) can read any of them straight
from their bytes.
"""

from __future__ import annotations

import os
import threading
from io import BytesIO
from typing import Any

import pikepdf

__all__ = ["SAVE_FILE_KEEP", "SAVE_OPTIONS", "bookmark", "save_pdf"]

# Saved as qpdf found it: no stream is decoded, re-encoded or (when it had no filter) compressed, so pages
# copied from LibreOffice's PDF and the clause cache go into the new file byte for byte and writing costs
# about a copy. The file identifier is qpdf's usual one: no promise rests on equal bytes for equal inputs,
# and a content-derived one (deterministic_id) costs an MD5 of the whole output.
SAVE_OPTIONS: dict[str, Any] = {
    "stream_decode_level": pikepdf.StreamDecodeLevel.none,
    "object_stream_mode": pikepdf.ObjectStreamMode.preserve,
    "compress_streams": False,
}

# A thread's file larger than this after a save is emptied, so one huge document does not keep its
# memory for the rest of the run.
SAVE_FILE_KEEP = 16 << 20

_save_files = threading.local()


def save_pdf(pdf: pikepdf.Pdf, *, min_version: str = "") -> bytes:
    """The document as bytes, written with ``SAVE_OPTIONS``.

    qpdf writes into a file in memory (``memfd_create``, Linux) and the bytes are read back at once: into
    a ``BytesIO`` every piece qpdf writes is a call back into Python (docs/performance.md measures the
    two). The file is the thread's own and is written over, not emptied, from one save to the next (its
    memory pages are already mapped); one larger than ``SAVE_FILE_KEEP`` is emptied after use.
    """
    if not hasattr(os, "memfd_create"):
        out = BytesIO()
        pdf.save(out, min_version=min_version, **SAVE_OPTIONS)
        return out.getvalue()
    file = getattr(_save_files, "file", None)
    if file is None:
        file = _save_files.file = os.fdopen(os.memfd_create("issuance-pdf", os.MFD_CLOEXEC), "w+b")
    file.seek(0)
    pdf.save(file, min_version=min_version, **SAVE_OPTIONS)
    end = file.tell()
    file.seek(0)
    data = file.read(end)
    if end > SAVE_FILE_KEEP:
        file.truncate(0)
    return data


def bookmark(pdf: pikepdf.Pdf, title: str, page: int) -> pikepdf.OutlineItem:
    """An outline item that shows page ``page`` whole, as a /GoTo action (as the pipeline always wrote;
    ``stamps.pdfupdate.write_outline`` writes the same in an incremental update)."""
    target = pikepdf.Array([pdf.pages[page].obj, pikepdf.Name.Fit])
    return pikepdf.OutlineItem(title, action=pikepdf.Dictionary(S=pikepdf.Name.GoTo, D=target))
