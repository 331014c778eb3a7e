"""The seal registry: which seals exist, in which version, and which one signs which document.

``stamps/seals.toml`` is kept by whoever keeps the seals (a business user, not a developer). What is
promised:

- Every ``[[seal]]`` is checked when the file is loaded, and a mistake is a ``SealRegistryError`` that
  names the seal and the field; so is a scan file that is missing or holds no ink.
- A seal is identified by ``id`` and ``version``. A re-cut or re-scanned seal gets a new version and the
  old entry stays in the file, so documents sealed with it can still be checked (``get``); only the
  highest version of each id signs new documents.
- ``seal_for`` always answers for the known document kinds: loading fails unless each kind has a
  company-wide seal (branch prefix ``""``) as the fallback, and two current seals with the same prefix
  for the same kind are refused as ambiguous. The longest matching branch-code prefix wins, so "4403"
  (Shenzhen) beats "44" (Guangdong) beats "" (company).
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from core.errors import SealRegistryError
from stamps.drawing import DEFAULT_COLOUR, clean_scan, draw_seal

__all__ = ["DEFAULT_REGISTRY", "DOCUMENT_KINDS", "INK_CUT", "Seal", "SealRegistry", "load_seal_registry"]

DEFAULT_REGISTRY = Path(__file__).with_name("seals.toml")
DOCUMENT_KINDS = ("policy", "endorsement")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_FIELDS = {
    "id",
    "version",
    "owner",
    "purpose",
    "diameter_mm",
    "colour",
    "serial",
    "scan",
    "branches",
    "documents",
}


@dataclass(frozen=True)
class Seal:
    """One version of one seal, as the registry describes it.

    ``scan`` is an absolute path when the seal comes from a scan; ``scan_sha256`` then pins its content,
    so a scan replaced on disk without a new version is noticed (``load_seal_registry`` recomputes it and
    a manifest that recorded the old digest no longer matches).
    """

    id: str
    version: int
    owner: str
    purpose: str
    diameter_mm: float = 42.0
    colour: tuple[int, int, int] = DEFAULT_COLOUR
    serial: str | None = None
    scan: Path | None = None
    scan_sha256: str | None = None
    branches: tuple[str, ...] = ("",)
    documents: tuple[str, ...] = DOCUMENT_KINDS

    @property
    def ref(self) -> str:
        """``id@vN``: what a manifest records to say which seal was used."""
        return f"{self.id}@v{self.version}"

    def image(self, dpi: int = 600) -> Image.Image:
        """The seal as RGBA at ``dpi`` for its physical size, ink only (cropped, transparent paper).

        Drawn or cleaned once per seal and dpi and cached; each call returns a copy, so the caller may
        change it freely.
        """
        return _seal_image(self, dpi).copy()

    def stencil(self, dpi: int = 600) -> Image.Image:
        """Where the seal's ink is, one bit per pixel (mode "1", ink = 1) at ``dpi``: what stamping paints
        (a seal is one ink colour) and what ``find_seals`` expects to see. Cached like ``image``; a copy.

        Ink is alpha of at least ``INK_CUT``.
        """
        return _stencil(self, dpi).copy()


# Not one half: a scan's alpha is how much ink the paper took, and the lightest parts of a real
# impression (the middle of a hand stamp, ~0.4 in the specimen) are ink all the same; cut at one half,
# the scanned ring broke and glyphs lost strokes. A drawn seal's alpha only ramps across its one-pixel
# anti-aliased edge, so there the lower cut moves the contour out by 0.01 mm on average at 600 dpi.
INK_CUT = 0.3


@functools.lru_cache(maxsize=32)
def _stencil(seal: Seal, dpi: int) -> Image.Image:
    cut = round(INK_CUT * 255)
    alpha = _seal_image(seal, dpi).getchannel("A")
    return alpha.point([255 if v >= cut else 0 for v in range(256)]).convert("1", dither=Image.Dither.NONE)


@functools.lru_cache(maxsize=8)
def _clean_scan(seal: Seal) -> Image.Image:
    assert seal.scan is not None
    with Image.open(seal.scan) as scan:
        return clean_scan(scan, colour=seal.colour)


@functools.lru_cache(maxsize=32)
def _seal_image(seal: Seal, dpi: int) -> Image.Image:
    if seal.scan is None:
        return draw_seal(
            owner=seal.owner,
            purpose=seal.purpose,
            serial=seal.serial,
            diameter_mm=seal.diameter_mm,
            colour=seal.colour,
            dpi=dpi,
        )
    ink = _clean_scan(seal)
    # The registry's diameter is the seal's physical size: the ink's larger side is scaled to it.
    side = round(seal.diameter_mm / 25.4 * dpi)
    factor = side / max(ink.size)
    size = (max(1, round(ink.width * factor)), max(1, round(ink.height * factor)))
    # Resize the ink alone: every pixel keeps the seal colour, transparent ones included.
    alpha = ink.getchannel("A").resize(size, Image.Resampling.LANCZOS)
    image = Image.new("RGBA", size, (*seal.colour, 0))
    image.putalpha(alpha)
    return image


@dataclass(frozen=True)
class SealRegistry:
    """All seals in the registry file, every version."""

    seals: tuple[Seal, ...]
    source: Path | None = None

    @functools.cached_property
    def _current(self) -> Mapping[str, Seal]:
        current: dict[str, Seal] = {}
        for seal in self.seals:
            if seal.id not in current or seal.version > current[seal.id].version:
                current[seal.id] = seal
        return current

    @property
    def current(self) -> tuple[Seal, ...]:
        """The highest version of each seal: the ones that sign new documents."""
        return tuple(self._current.values())

    def get(self, seal_id: str, version: int | None = None) -> Seal:
        """A seal by id, in ``version`` (for checking old documents) or its current version."""
        if version is None and seal_id in self._current:
            return self._current[seal_id]
        for seal in self.seals:
            if seal.id == seal_id and seal.version == version:
                return seal
        wanted = seal_id if version is None else f"{seal_id}@v{version}"
        raise SealRegistryError(f"seal {wanted} is not in the seal registry", hint=str(self.source or ""))

    def seal_for(self, *, branch_code: str, document: str) -> Seal:
        """The seal that signs ``document`` for ``branch_code``: longest branch prefix, else company-wide."""
        if document not in DOCUMENT_KINDS:
            raise SealRegistryError(f"unknown document kind {document!r}; known: {', '.join(DOCUMENT_KINDS)}")
        best: Seal | None = None
        best_length = -1
        for seal in self.current:
            if document not in seal.documents:
                continue
            for prefix in seal.branches:
                if branch_code.startswith(prefix) and len(prefix) > best_length:
                    best, best_length = seal, len(prefix)
        if best is None:  # unreachable for a loaded registry: loading demands a company-wide fallback
            raise SealRegistryError(f"no seal signs {document} documents for branch {branch_code}")
        return best


def load_seal_registry(path: Path | None = None) -> SealRegistry:
    """Read and check the registry (default ``stamps/seals.toml``); scans resolve against its folder."""
    path = path or DEFAULT_REGISTRY
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise SealRegistryError(f"seal registry {path} does not exist") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SealRegistryError(f"seal registry {path} is not valid TOML: {e}") from e
    defaults = data.get("defaults", {})
    entries = data.get("seal", [])
    if not isinstance(entries, list) or not entries:
        raise SealRegistryError(f"seal registry {path} lists no [[seal]]")
    seals = tuple(
        _parse_seal(entry, defaults=defaults, folder=path.parent, number=i + 1)
        for i, entry in enumerate(entries)
    )
    registry = SealRegistry(seals=seals, source=path)
    _check(registry, path)
    return registry


def _parse_seal(entry: Any, *, defaults: Mapping[str, Any], folder: Path, number: int) -> Seal:
    where = f"[[seal]] #{number}"
    if not isinstance(entry, dict):
        raise SealRegistryError(f"{where} is not a table")
    seal_id = entry.get("id")
    if not isinstance(seal_id, str) or not _ID.match(seal_id):
        raise SealRegistryError(f"{where}: id must be lower-case letters, digits and dashes, got {seal_id!r}")
    where = f"seal {seal_id}"
    unknown = set(entry) - _FIELDS
    if unknown:
        raise SealRegistryError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    merged = {**defaults, **entry}

    def text(name: str, *, required: bool = True) -> str | None:
        value = merged.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise SealRegistryError(f"{where}: {name} must be a non-empty string")
        return value.strip()

    version = merged.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SealRegistryError(f"{where}: version must be a positive integer, got {version!r}")
    diameter = merged.get("diameter_mm", 42)
    if not isinstance(diameter, int | float) or not 20 <= diameter <= 60:
        raise SealRegistryError(f"{where}: diameter_mm must be between 20 and 60, got {diameter!r}")
    colour = merged.get("colour", list(DEFAULT_COLOUR))
    if not (
        isinstance(colour, list)
        and len(colour) == 3
        and all(isinstance(c, int) and 0 <= c <= 255 for c in colour)
    ):
        raise SealRegistryError(f"{where}: colour must be [r, g, b] with 0..255, got {colour!r}")
    serial = text("serial", required=False)
    if serial is not None and not re.fullmatch(r"[0-9A-Za-z-]{1,24}", serial):
        raise SealRegistryError(f"{where}: serial must be up to 24 digits or letters, got {serial!r}")
    branches = _strings(merged.get("branches", [""]), where=f"{where}: branches", allow_empty=True)
    if any(not re.fullmatch(r"[0-9]*", b) for b in branches):
        raise SealRegistryError(
            f'{where}: branches are branch-code prefixes (digits, or "" for company-wide)'
        )
    documents = _strings(merged.get("documents", list(DOCUMENT_KINDS)), where=f"{where}: documents")
    if bad := [d for d in documents if d not in DOCUMENT_KINDS]:
        raise SealRegistryError(
            f"{where}: unknown document kind(s) {bad}; known: {', '.join(DOCUMENT_KINDS)}"
        )
    scan, digest = None, None
    if (scan_name := text("scan", required=False)) is not None:
        scan, digest = _check_scan(folder / scan_name, where=where, colour=tuple(colour))
    return Seal(
        id=seal_id,
        version=version,
        owner=text("owner"),  # type: ignore[arg-type]  # required=True never returns None
        purpose=text("purpose"),  # type: ignore[arg-type]
        diameter_mm=float(diameter),
        colour=(colour[0], colour[1], colour[2]),
        serial=serial,
        scan=scan,
        scan_sha256=digest,
        branches=branches,
        documents=documents,
    )


def _strings(value: Any, *, where: str, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SealRegistryError(f"{where} must be a non-empty list of strings")
    if not allow_empty and any(not v for v in value):
        raise SealRegistryError(f"{where} must not contain an empty string")
    return tuple(value)


def _check_scan(path: Path, *, where: str, colour: tuple[int, ...]) -> tuple[Path, str]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SealRegistryError(f"{where}: scan {path} cannot be read ({e.strerror})") from e
    try:
        with Image.open(path) as image:
            clean_scan(image, colour=(colour[0], colour[1], colour[2]))
    except (UnidentifiedImageError, OSError) as e:
        raise SealRegistryError(f"{where}: scan {path} is not an image pillow can read") from e
    except ValueError as e:
        raise SealRegistryError(f"{where}: scan {path}: {e}") from e
    return path.resolve(), "sha256:" + hashlib.sha256(data).hexdigest()


def _check(registry: SealRegistry, path: Path) -> None:
    seen: set[tuple[str, int]] = set()
    for seal in registry.seals:
        if (seal.id, seal.version) in seen:
            raise SealRegistryError(f"seal {seal.ref} is listed twice in {path}")
        seen.add((seal.id, seal.version))
    routes: dict[tuple[str, str], str] = {}
    for seal in registry.current:
        for document in seal.documents:
            for prefix in seal.branches:
                other = routes.setdefault((document, prefix), seal.id)
                if other != seal.id:
                    raise SealRegistryError(
                        f"seals {other} and {seal.id} both sign {document} documents for branch prefix "
                        f"{prefix!r}: keep one"
                    )
    for document in DOCUMENT_KINDS:
        if (document, "") not in routes:
            raise SealRegistryError(
                f"no company-wide seal for {document} documents in {path}",
                hint='give one seal branches = [""] for it, the fallback for every branch',
            )
