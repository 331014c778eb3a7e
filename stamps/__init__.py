"""Every mark on a PDF: the seal registry, drawing seals and cleaning scans, stamping PDFs
(``stamping``; pages sealed once and reused: ``sealed_pages``), the reissue mark (``marks``), the
verification QR code (``qr``), writing PDFs (``pdfupdate`` for incremental updates, ``saving`` for whole
documents), PDF/A-2b kept through assembly and its structural self-check (``pdfa``), and finding seals
again.

``stamps`` knows PDFs, seals and anchor texts, never records: the pipeline decides which seal signs
which document (``SealRegistry.seal_for``) and hands over the rendered PDF.

    registry = load_seal_registry()
    seal = registry.seal_for(branch_code="110105", document="policy")
    result = stamp_pdf(pdf_bytes, seal=seal, anchor="保险人（盖章）", anchor_pages=range(0, 1))
    report = find_seals(result.pdf, seal=seal)
"""

from typing import TYPE_CHECKING, Any

from stamps.drawing import clean_scan, draw_seal, name_layout
from stamps.layout import cross_page_groups
from stamps.registry import Seal, SealRegistry, load_seal_registry
from stamps.stamping import DEFAULT_ANCHOR, StampResult, stamp_pdf

__all__ = [
    "DEFAULT_ANCHOR",
    "GroupCheck",
    "PageSeals",
    "Seal",
    "SealRegistry",
    "SealReport",
    "StampResult",
    "clean_scan",
    "cross_page_groups",
    "draw_seal",
    "fanned_edges",
    "find_seals",
    "load_seal_registry",
    "name_layout",
    "stamp_pdf",
]

if TYPE_CHECKING:
    from stamps.finding import GroupCheck, PageSeals, SealReport, fanned_edges, find_seals

_FINDING = {"GroupCheck", "PageSeals", "SealReport", "fanned_edges", "find_seals"}


def __getattr__(name: str) -> Any:
    """Finding seals (audits) loads numpy and poppler's helpers: only when asked for, not by every run."""
    if name in _FINDING:
        from stamps import finding

        return getattr(finding, name)
    raise AttributeError(f"module 'stamps' has no attribute {name!r}")
