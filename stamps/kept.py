"""Encoded seals kept between runs, in a folder (``var/cache/seals``), beside the clause PDFs.

Why: drawing a seal and encoding its stencil is costly (``stamps.drawing``: each glyph drawn and
turned round the ring; docs/performance.md), and every ``issuance run`` or reissue used to pay it
again for each seal its records need. The encoded stencil is small.

What is promised: a kept seal is used only when it was made from the same seal (every field of its
registry entry, its scan's digest included), at the same resolution, by the same drawing and encoding
code (the source of ``stamps.drawing``, ``stamps.registry`` and ``stamps.stamping``), the same Pillow
and the same font file (path, size and modification time), and only when its bytes are the ones
written (their SHA-256 is in the file). Anything else — another version of any of these, a file cut
short or changed — is not read: the seal is drawn again and the file written anew. Files are written
whole under a temporary name and then renamed, so a reader never sees half of one. A folder that cannot
be written to costs only the time: the seal drawn stays in use.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import PIL

from stamps import drawing
from stamps.registry import Seal

log = logging.getLogger(__name__)

_FORMAT = 1


# What the drawing and encoding depend on besides the seal, Pillow and the font: these modules' source.
# Read as files rather than imported: stamps.stamping, which encodes seals, imports this module.
_CODE = tuple(Path(__file__).with_name(name) for name in ("drawing.py", "registry.py", "stamping.py"))


def read(folder: Path, seal: Seal, dpi: int) -> tuple[int, int, bytes] | None:
    """The kept encoding of ``seal`` at ``dpi`` (its stencil's width and height in pixels, and its
    encoded data), or None when there is none that may be used."""
    try:
        raw = _path(folder, seal, dpi).read_bytes()
    except OSError:
        return None
    head, _, data = raw.partition(b"\n")
    try:
        fields = json.loads(head)
        width, height, digest = int(fields["width_px"]), int(fields["height_px"]), str(fields["sha256"])
    except (ValueError, KeyError, TypeError):
        return None
    if width <= 0 or height <= 0 or hashlib.sha256(data).hexdigest() != digest:
        return None
    return width, height, data


def write(folder: Path, seal: Seal, dpi: int, *, width_px: int, height_px: int, mask_data: bytes) -> None:
    """Keep the encoding of ``seal`` at ``dpi`` (``mask_data``, a stencil of ``width_px`` by
    ``height_px``) for later runs; a failure is logged only."""
    head = {
        "width_px": width_px,
        "height_px": height_px,
        "sha256": hashlib.sha256(mask_data).hexdigest(),
        "seal": seal.ref,
    }
    target = _path(folder, seal, dpi)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".seal-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(head).encode() + b"\n" + mask_data)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as e:
        log.warning("the encoded seal %s is not kept for later runs (%s)", seal.ref, e)


def _path(folder: Path, seal: Seal, dpi: int) -> Path:
    drawn_from = (seal.id, seal.version, seal.owner, seal.purpose, seal.diameter_mm, seal.colour, seal.serial)
    key = hashlib.sha256(repr((_FORMAT, _made_by(), drawn_from, seal.scan_sha256, dpi)).encode())
    return folder / f"{seal.id}-v{seal.version}-{key.hexdigest()[:24]}.g4"


@functools.lru_cache(maxsize=1)
def _made_by() -> tuple[str, ...]:
    """What the drawing and encoding depend on besides the seal: the code, Pillow, the font file."""
    code = hashlib.sha256()
    for source in _CODE:
        code.update(source.read_bytes())
    font = drawing.FONT_DIR / drawing.FONT_FILE
    try:
        found = font.stat()
        font_id = f"{font}:{found.st_size}:{found.st_mtime_ns}"
    except OSError:
        font_id = f"{font}:missing"
    return (code.hexdigest(), PIL.__version__, font_id)
