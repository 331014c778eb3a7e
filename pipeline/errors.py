"""The project's one error module.

Every error the library raises is an ``IssuanceError``: it carries the exit code the CLI returns and a
message that says what to do. Library code raises, never exits or prints; ``pipeline.cli`` maps these
to exit codes in one place.

Exit codes (the CLI's contract with operators and schedulers):

- 0: everything done, nothing rejected
- 1: the batch ran, some records were rejected (see the report)
- 2: unusable input or usage: a batch file that cannot be read, a bad option, a broken configuration
- 3: a component is unavailable: LibreOffice missing or will not start, store or index unreachable
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNUSABLE = 2
EXIT_COMPONENT = 3


class IssuanceError(Exception):
    """Root of every error this project raises on purpose."""

    exit_code: int = EXIT_UNUSABLE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


# --- input and usage (exit 2) ---------------------------------------------------------------------


class UsageError(IssuanceError):
    """The command line or a configuration value is wrong."""


class ConfigError(IssuanceError):
    """The configuration file or environment is broken."""


class BatchUnreadable(IssuanceError):
    """A batch file that cannot be read at all: the whole batch is refused and left in place."""


class TemplateError(IssuanceError):
    """A template or the product registry is broken: a business user must fix the .docx or TOML."""


# --- components (exit 3) ------------------------------------------------------------------------


class ComponentUnavailable(IssuanceError):
    """An external program or service the run needs is missing or does not start."""

    exit_code = EXIT_COMPONENT


class ConversionFailed(IssuanceError):
    """LibreOffice could not turn one document into PDF, even after a restart and a retry.

    Raised per document: the batch rejects that record with this message and goes on.
    """

    exit_code = EXIT_COMPONENT


class ConversionTimeout(ConversionFailed):
    """LibreOffice did not answer within the timeout; the instance was killed and restarted."""


# --- per-record rejection --------------------------------------------------------------------------


class RecordRejected(IssuanceError):
    """One record cannot be issued; ``reasons`` name the fields. The batch goes on."""

    exit_code = EXIT_REJECTED

    def __init__(self, reasons: list[tuple[str, str]]) -> None:
        self.reasons = reasons
        text = "; ".join(f"{field}: {message}" for field, message in reasons)
        super().__init__(text or "record rejected")


# --- seals (stamps/) ---------------------------------------------------------------------------------


class SealRegistryError(TemplateError):
    """``stamps/seals.toml`` (or a seal scan it names) is broken: whoever keeps the seals must fix it."""


class SealAnchorMissing(IssuanceError):
    """The signature line the company seal belongs on is not in the rendered document.

    Raised per document: the record is rejected (its template lost the anchor text), the batch goes on.
    """

    exit_code = EXIT_REJECTED


# --- the archive's object store (archive/store.py) -------------------------------------------------


class StoreError(ComponentUnavailable):
    """The object store cannot be reached or used: endpoint down, bucket missing, access refused, disk."""


class ObjectMissing(IssuanceError, KeyError):
    """No object under that key. Also a ``KeyError``, so mapping-style callers can catch it as one."""


class ObjectConflict(IssuanceError):
    """A put over a key that already holds other bytes. Archived objects are never overwritten."""


class ObjectCorrupt(IssuanceError):
    """An object's bytes do not match their SHA-256 (on read, or the hash a caller passed to put)."""


class RetentionViolation(IssuanceError):
    """A delete or replace of an object still inside its retention period (《保险法》第87条)."""


class UnsafeKey(IssuanceError):
    """An object key that is malformed, could escape the store, or looks like it holds personal data."""
