"""The project's one error module.

Every error the library raises is an ``IssuanceError``: it carries the exit code the CLI returns and a
message that says what to do. Library code raises, never exits or prints; ``cli.main`` maps these
to exit codes in one place.

Exit codes (the CLI's contract with operators and schedulers):

- 0: everything done, nothing rejected
- 1: the batch ran, some records were rejected (see the report)
- 2: unusable input or usage: a batch file that cannot be read, a bad option, a broken configuration
- 3: a component is unavailable: LibreOffice missing or will not start, store or index unreachable
- 4: an integrity incident: an archived object does not match the SHA-256 the index holds for it (or is
  gone). The command refused to go on, wrote nothing, and recorded the incident in the ledger
  (``incident.hash_mismatch`` / ``incident.object_missing``); restore the object and run the audit.

Counter commands (``issuance reissue``, ``issuance serials``) use the same codes: 2 for what the clerk
typed (an unknown policy, a serial already used, no clerk id), 1 for a request the business rules refuse
although it is well-formed (a cancelled policy), 4 for an archive that fails its own hashes.

Actions for a person (``reissue --by``, ``attach --by``, ``audit --by``, ``get --by``) exit 2 when the user
named is not a known, enabled user with the role the action needs (``NotPermitted``); 3 when the LDAP
directory that should say so does not answer (``DirectoryUnavailable``).
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNUSABLE = 2
EXIT_COMPONENT = 3
EXIT_INTEGRITY = 4
# as a shell reports a command that SIGPIPE ended: its output was cut short, nothing else went wrong
EXIT_BROKEN_PIPE = 128 + 13


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


class SigningFailed(IssuanceError):
    """A PDF could not be signed (not one pyHanko can extend, or the key refused): the document's fault
    or the key's, never retried."""


class TemplateError(IssuanceError):
    """A template or the product registry is broken: a business user must fix the .docx or TOML."""


# --- components (exit 3) ------------------------------------------------------------------------


class ComponentUnavailable(IssuanceError):
    """An external program or service the run needs is missing or does not start."""

    exit_code = EXIT_COMPONENT


class RunAborted(ComponentUnavailable):
    """A run stopped because a component failed for good (``cause``). ``report`` says what became of
    every input line — archived, already archived, rejected, or not attempted — for the caller to write."""

    def __init__(self, cause: ComponentUnavailable, *, report: Any) -> None:
        super().__init__(cause.message, hint=cause.hint)
        self.cause = cause
        self.report = report
        self.exit_code = cause.exit_code


class ConversionFailed(IssuanceError):
    """LibreOffice could not turn one document into PDF, even after a restart and a retry.

    Raised per document: the batch rejects that record with this message and goes on.
    """

    exit_code = EXIT_COMPONENT


class ConversionTimeout(ConversionFailed):
    """LibreOffice did not answer within the timeout; the instance was killed and restarted."""


class ClusterUnavailable(ComponentUnavailable):
    """The Dask cluster cannot be reached, has no workers, or lost a record's task (its workers kept dying).

    What was filed stays filed; a re-run of the batch goes on from there.
    """


class WorkerMisconfigured(ComponentUnavailable):
    """A cluster worker cannot take part: its archive, HMAC key or view of the batch folder is not the
    client's, or it cannot be used for the cluster at all (a local store or an SQLite index)."""


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


# --- the inbox watcher (watchers/) -----------------------------------------------------------------


class InboxLocked(UsageError):
    """Another watcher already holds the inbox's lock: two watchers on one inbox would race each other."""


class UnsafeBatchArchive(BatchUnreadable):
    """A zipped batch refused whole: a member that could escape, a bomb, or not exactly one batch file.

    Nothing is ever written outside the watcher's private work folder; the zip goes to ``.failed``.
    """


# --- reissue (补发) and print serials (单证): archive/reissue.py, archive/serials.py ---------------------


class PolicyNotFound(UsageError):
    """No archived policy under that number: check it with ``issuance find``."""


class UnknownVerificationCode(PolicyNotFound):
    """No issued document version has that verification code (the QR code's): mistyped, or not a
    document this centre issued."""


class PolicyNotReissuable(IssuanceError):
    """The policy exists but may not be reissued (it is surrendered or cancelled): the request is refused
    as a whole."""

    exit_code = EXIT_REJECTED


class SerialError(IssuanceError):
    """A print serial (单证流水号) that cannot be used as asked: unknown, already used or voided, a bad
    range. Nothing was changed."""


class SerialFormatError(SerialError):
    """A serial or range that does not follow the format: an optional prefix, then a run of digits."""


class IntegrityIncident(IssuanceError):
    """An archived object failed its SHA-256 against the index (or is missing) while being read for a
    reissue. The incident is in the ledger; no copy was made and nothing was filed."""

    exit_code = EXIT_INTEGRITY


# --- audits (archive/audit/) -------------------------------------------------------------------------


class AuditLotEmpty(UsageError):
    """The lot's criteria select no archived policy: there is nothing to sample."""


class AuditNotFound(UsageError):
    """No audit is recorded under that id: no ``audit.completed`` ledger event and no archived report."""


class IndexConflict(IssuanceError):
    """A row the index already holds (same record, same version): another writer got there first."""

    exit_code = 1


class IndexUnavailable(ComponentUnavailable):
    """The database cannot be reached or opened."""


# --- the archive's writer of versions (archive/versions.py; added by helper "versions", issue 22) ------


class VersionRefused(IssuanceError):
    """A version the archive will not file, for a reason that names a field of its record (``field``):
    e.g. an unindexed version at its key from another record, reported for audit, never overwritten."""

    exit_code = EXIT_REJECTED

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class FiledByAnother(IndexConflict):
    """Another writer (the same batch started twice) indexed this very record first, with this content:
    the record is already archived, not in conflict."""


# --- the people who act on the archive (archive/users.py; added by helper "users", issue 24) ---------


class UserError(UsageError):
    """A user that cannot be added or changed as asked: a bad name, role, branch or password, an unknown
    user, or a name that is taken. Nothing was changed."""


class LoginRefused(IssuanceError):
    """A sign-in refused: ``reason`` is unknown, password, disabled or locked. The message does not tell
    an unknown name from a wrong password, so that it cannot be used to find names."""

    exit_code = EXIT_REJECTED

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


# --- the desk (issue 24) ---------------------------------------------------------------------------------


class NotPermitted(IssuanceError):
    """Refused, nothing done: a signed-in user asked for what their role or branches do not allow, or an
    action for a person named a user who is unknown, disabled, without the role the action needs, or
    not acting for the policy's branch (``usecases.identity.require_user``). ``reason``, when given, is
    one of unknown, disabled, role, branch."""

    exit_code = EXIT_UNUSABLE

    def __init__(self, message: str, *, reason: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class NotSignedIn(IssuanceError):
    """No session, or one that has ended (signed out, expired, or the user disabled): sign in again."""

    exit_code = EXIT_UNUSABLE


class ReissueRefused(IssuanceError):
    """A reissue request the rules refuse although well-formed: the person asking is not the policy's
    applicant or insured, the clerk approving their own request, a request already decided."""

    exit_code = EXIT_REJECTED


# --- who may act (archive/identity.py, archive/ldap.py; added by helper "identity", issue 24) ---------


class DirectoryUnavailable(ComponentUnavailable):
    """The LDAP directory configured as the second identity source (``[identity] ldap_url``) does not
    answer, or refuses the service account's bind: nobody from it can sign in or act until it does."""
