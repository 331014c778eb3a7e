"""Sessions built from configuration: the opened archive, and a filing session (archive, warm
LibreOffice, seals) for the use cases that make documents. Front-ends (``cli``) open them through the
use cases; nothing here prints.

The filing session imports the document makers only once LibreOffice is starting: their import (over
half a second, ``docs/performance.md``, "Start-up") then overlaps its start, and the commands that only
read the archive (``find``, ``get``) never pay for it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from archive.index import Index
from archive.store import open_store
from core.verification import verification_code, verification_url
from pipeline.batchfile import read_batch
from pipeline.convert import ConverterPool, default_pool_size, profile_template_for
from pipeline.scratch import run_scratch
from stamps.keys import open_signing_key
from stamps.signing import PdfSigner
from stamps.timestamps import Timestamper

if TYPE_CHECKING:
    from core.config import Settings
    from usecases.filing import Filing

logger = logging.getLogger(__name__)

UNSIGNED_WARNING = (
    "documents are issued UNSIGNED: no signing key is configured (ISSUANCE_SIGNING_KEY; docs/guide.md, "
    "'Signed documents', says how)"
)


def signer_from(settings: Settings) -> PdfSigner | None:
    """The run's signer (key opened, TSA client made), or None when no key is configured: then the
    documents go out unsigned, with a warning (one per run or command). ``ConfigError`` for a key that
    is configured but cannot be opened: a run never falls back to unsigned by accident."""
    if not settings.signing_key:
        logger.warning(UNSIGNED_WARNING)
        return None
    key = open_signing_key(
        settings.signing_key, settings.signing_secret, pkcs11_module=settings.pkcs11_module
    )
    timestamper = Timestamper(settings.tsa_url, timeout=settings.timeout) if settings.tsa_url else None
    return PdfSigner(key, timestamper=timestamper)


class Archive:
    """Store and index opened from the settings, closed on exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings.store_url, s3_endpoint=settings.s3_endpoint)
        self.index = Index.open(settings.index_url, hmac_key=settings.hmac_key)

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.index.close()


@dataclass(frozen=True)
class FilingSession:
    """An open archive, a warm LibreOffice pool and the seals: everything ``run_batch`` needs."""

    filing: Filing
    pool: ConverterPool
    workers: int


@contextlib.contextmanager
def filing_session(settings: Settings, *, workers: int | None = None) -> Iterator[FilingSession]:
    """Open the archive and start LibreOffice (``ComponentUnavailable`` if either fails); close both.

    LibreOffice is started first, before the heavier modules are imported and the index is opened (its
    migrations run): its one to two seconds of start-up overlap them.
    """

    count = workers or settings.workers or default_pool_size()
    with (
        run_scratch(settings.scratch_dir) as scratch,
        ConverterPool(
            size=count,
            workdir=Path(scratch),
            timeout=settings.timeout,
            soffice=settings.soffice,
            profile_template=profile_template_for(settings.cache_dir, settings.soffice),
        ) as pool,
    ):
        pool.start(wait=False)  # LibreOffice starts while the archive is opened and the first records read
        signer = signer_from(settings)
        from core.products import DEFAULT_TEMPLATES_DIR, load_registry
        from pipeline.documents import DocumentMaker
        from stamps import load_seal_registry
        from usecases.filing import Filing

        registry = load_registry(settings.templates_dir or DEFAULT_TEMPLATES_DIR)
        seals = load_seal_registry()
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        with Archive(settings) as archive:
            archive.store.clear_leftovers()  # temp parts of writers killed mid-put (issue 21, item 7)
            maker = DocumentMaker(
                registry=registry,
                converter=pool,
                cache_dir=settings.cache_dir,
                scratch_dir=Path(scratch),
                seals=seals,
                verification=verification_urls(settings),
            )
            filing = Filing(
                store=archive.store,
                index=archive.index,
                maker=maker,
                operator=settings.operator,
                signer=signer,
                unknown_serials=settings.unknown_serials,
            )
            # What start-up made (modules, the registry, seals, the index's tables) lives as long as the
            # process: out of the cyclic collector's way, which otherwise walks it all on every full
            # pass (docs/performance.md, "Flat memory").
            gc.freeze()
            try:
                yield FilingSession(filing=filing, pool=pool, workers=count)
            finally:
                filing.close()


def filing_without_documents(settings: Settings, archive: Archive) -> Filing:
    """A ``Filing`` on ``archive`` that renders nothing (no LibreOffice; the maker is there for the
    product registry only) but signs what it files: ``issuance attach``, and a cluster's client, whose
    signer every worker's must match."""
    from core.products import DEFAULT_TEMPLATES_DIR, load_registry
    from pipeline.documents import DocumentMaker
    from usecases.filing import Filing

    registry = load_registry(settings.templates_dir or DEFAULT_TEMPLATES_DIR)
    maker = DocumentMaker(registry=registry, converter=None, cache_dir=settings.cache_dir)  # type: ignore[arg-type]
    return Filing(
        store=archive.store,
        index=archive.index,
        maker=maker,
        operator=settings.operator,
        signer=signer_from(settings),
        unknown_serials=settings.unknown_serials,
    )


def verification_urls(settings: Settings) -> Callable[[str, int], str]:
    """(policy number, version) -> the URL its documents' QR code leads to: the index holds the same
    code for that version (``Index`` derives it with the same key)."""
    key, public_url = settings.hmac_key, settings.public_url
    return lambda policy_no, version: verification_url(public_url, verification_code(key, policy_no, version))


def check_batch(batch: Path) -> None:
    """``BatchUnreadable`` if ``batch`` is unusable as a whole: refused before anything starts."""
    read_batch(batch)
