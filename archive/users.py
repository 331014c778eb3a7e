"""Local accounts, the ``Identity`` seam's default (DESIGN.md; issue 24, "Identity"): the people who act
on the archive, with their roles and the branches they may act for, kept in the index database.

What it promises:

- Names are 1–64 letters, digits, ``.``, ``_`` or ``-``; roles come from ``ROLES`` (at least one);
  branches are prefixes of 6-digit branch codes (digits only, empty: every branch); passwords have at
  least ``MIN_PASSWORD`` characters. A request that breaks one is refused (``UserError``), nothing written.
- A password is stored only as an argon2 hash; it never reaches the ledger, a log or a ``User``.
- ``verify_password`` returns the user or raises ``LoginRefused``; a hash made with older argon2
  parameters is replaced on the next good sign-in. ``LOCKOUT_FAILURES`` failures in a row lock the user
  for ``LOCKOUT`` (issue 24, item 3), recorded as a ``user.locked`` ledger event.
- Each change (add, disable, new password) is a ledger event naming who did it and the user changed.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from archive.index import Index, LedgerEvent
from archive.index.users import UserRecord
from core.errors import IndexConflict, LoginRefused, UserError

ROLES = frozenset({"clerk", "supervisor", "auditor", "operator", "admin"})
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a cap keeps a hostile sign-in from costing much
LOCKOUT_FAILURES = 10
LOCKOUT = timedelta(minutes=15)

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_BRANCH = re.compile(r"[0-9]{1,6}")
_REFUSED = "name or password not accepted"
REFUSED = _REFUSED  # the one message for an unknown name and a wrong password, whatever the source


@dataclass(frozen=True)
class User:
    """A user as the rest of the system sees one: never the password or its hash."""

    name: str
    display_name: str
    roles: tuple[str, ...]  # sorted
    branches: tuple[str, ...]  # branch-code prefixes, sorted; empty: every branch
    enabled: bool
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime
    # "local": a local account; "ldap": the directory's (its row here keeps only the lockout and disable)
    source: str = "local"

    def as_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


# a one-time password: 16 characters no one misreads (no 0/O/o, 1/l/I), 92 bits
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"


def one_time_password() -> str:
    """A password to hand a user once (an admin's new user, ``--generate-password``), in groups of four."""
    text = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


def public_user(record: UserRecord) -> User:
    """The user a row describes, as the rest of the system sees one (no password hash)."""
    return User(
        name=record.name,
        display_name=record.display_name,
        roles=tuple(sorted(record.roles)),
        branches=tuple(sorted(record.branches)),
        enabled=record.enabled,
        locked_until=record.locked_until,
        created_at=record.created_at,
        updated_at=record.updated_at,
        source="local" if record.password_hash is not None else "ldap",
    )


def is_name(name: str) -> bool:
    """Whether ``name`` follows the rule for user names (``check_name`` says why not)."""
    return _NAME.fullmatch(name) is not None


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UserError(
            f"user name {name[:80]!r} is not allowed",
            hint="use 1 to 64 letters, digits, '.', '_' or '-'",
        )
    return name


def check_roles(roles: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(r.strip().lower() for r in roles)
    unknown = sorted(wanted - ROLES)
    if unknown:
        raise UserError(f"unknown role {', '.join(unknown)}", hint=f"roles are {', '.join(sorted(ROLES))}")
    if not wanted:
        raise UserError("a user needs at least one role", hint=f"roles are {', '.join(sorted(ROLES))}")
    return wanted


def check_branches(branches: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(sorted({b.strip() for b in branches}))
    for branch in wanted:
        if not _BRANCH.fullmatch(branch):
            raise UserError(
                f"branch {branch[:80]!r} is not a branch code or a prefix of one",
                hint="give 1 to 6 digits of a 6-digit branch code (none: every branch)",
            )
    return wanted


def check_display_name(text: str | None, *, name: str) -> str:
    shown = (text or name).strip()
    if not shown or len(shown) > 100 or any(not c.isprintable() for c in shown):
        raise UserError("the display name must be 1 to 100 printable characters")
    return shown


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short (at least {MIN_PASSWORD} characters)")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password is too long (at most {MAX_PASSWORD} characters)")
    return password


class LocalAccounts:
    """Users and their passwords in the index database.

    ``hasher`` is argon2's (its defaults unless given); ``clock`` gives the time, aware (tests pass
    their own to reach the lockout's end without waiting).
    """

    def __init__(
        self,
        index: Index,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.index = index
        self.hasher = hasher or PasswordHasher()
        self.clock = clock or (lambda: datetime.now(UTC))

    @functools.cached_property
    def _decoy(self) -> str:
        """The hash an unknown name is checked against, so that timing does not tell names apart. Made
        at the first sign-in, not with the object: the CLI's lookups of who acts never check a password
        and would each pay an argon2 hash for it (docs/performance.md, "The desk at 10^6 policies")."""
        return self.hasher.hash("decoy password, never a user's")

    def add(
        self,
        name: str,
        *,
        roles: Iterable[str],
        branches: Iterable[str] = (),
        display_name: str | None = None,
        password: str,
        by: str,
    ) -> User:
        """Add an enabled user; ``UserError`` when a field is refused or the name is taken."""
        record = UserRecord(
            name=check_name(name),
            display_name=check_display_name(display_name, name=name),
            roles=check_roles(roles),
            branches=check_branches(branches),
            enabled=True,
            password_hash=self.hasher.hash(check_password(password)),
            failed_logins=0,
            locked_until=None,
            created_at=(now := self.clock()),
            updated_at=now,
        )
        event = LedgerEvent(
            by,
            "user.added",
            name,
            {"user": name, "roles": sorted(record.roles), "branches": list(record.branches)},
        )
        try:
            self.index.add_user(record, event=event)
        except IndexConflict as e:
            raise UserError(f"a user named {name!r} exists already") from e
        return public_user(record)

    def every(self) -> list[User]:
        """Every user, sorted by name."""
        return [public_user(r) for r in self.index.users()]

    def get(self, name: str) -> User:
        record = self.index.user(name)
        if record is None:
            raise UserError(f"no user named {name[:80]!r}", hint="see issuance users list")
        return public_user(record)

    def disable(self, name: str, *, by: str) -> User:
        """Disable the user: every sign-in is refused from now on. Disabling twice changes nothing."""

        def change(record: UserRecord | None) -> tuple[UserRecord | None, Sequence[LedgerEvent]]:
            current = _known(record, name)
            if not current.enabled:
                return None, ()
            new = replace(current, enabled=False, updated_at=self.clock())
            return new, [LedgerEvent(by, "user.disabled", name, {"user": name})]

        return public_user(self.index.change_user(name, change) or _known(self.index.user(name), name))

    def set_password(self, name: str, password: str, *, by: str) -> User:
        """Give the user a new password; it also ends a lockout and clears the failure count."""
        new_hash = self.hasher.hash(check_password(password))

        def change(record: UserRecord | None) -> tuple[UserRecord | None, Sequence[LedgerEvent]]:
            current = _known(record, name)
            if current.password_hash is None:  # a local password would shadow the directory's
                raise UserError(
                    f"user {name!r} signs in with the LDAP directory's password",
                    hint="change it in the directory",
                )
            new = replace(
                current, password_hash=new_hash, failed_logins=0, locked_until=None, updated_at=self.clock()
            )
            return new, [LedgerEvent(by, "user.password_set", name, {"user": name})]

        return public_user(self.index.change_user(name, change))  # type: ignore[arg-type]

    def verify_password(self, name: str, password: str) -> User:
        """The user, when ``name`` is a known, enabled user, not locked, and ``password`` is theirs;
        otherwise ``LoginRefused``. A failure counts towards the lockout; a success clears the count."""
        record = self.index.user(name) if _NAME.fullmatch(name) else None
        now = self.clock()
        if record is None or record.password_hash is None:
            _check(self.hasher, self._decoy, password)
            raise LoginRefused(_REFUSED, reason="unknown")
        if not record.enabled:
            raise LoginRefused(f"user {name!r} is disabled", reason="disabled")
        if record.locked_until is not None and record.locked_until > now:
            raise LoginRefused(
                f"user {name!r} is locked after {LOCKOUT_FAILURES} failed sign-ins",
                reason="locked",
                hint=f"try again after {record.locked_until:%Y-%m-%d %H:%M} UTC, or set a new password",
            )
        good = _check(self.hasher, record.password_hash, password)
        rehash = (
            self.hasher.hash(password)
            if good and self.hasher.check_needs_rehash(record.password_hash)
            else None
        )

        refused: list[LoginRefused] = []

        def change(current: UserRecord | None) -> tuple[UserRecord | None, Sequence[LedgerEvent]]:
            if current is None:  # removed meanwhile
                refused.append(LoginRefused(_REFUSED, reason="disabled"))
                return None, ()
            return _counted(current, good=good, now=now, refused=refused, rehash=rehash)

        self.index.change_user(name, change)
        if refused:
            raise refused[0]
        if not good:
            raise LoginRefused(_REFUSED, reason="password")
        return public_user(record)

    def count_directory_sign_in(
        self,
        name: str,
        *,
        display_name: str | None,
        roles: Iterable[str],
        branches: Iterable[str],
        good: bool,
    ) -> User:
        """Count a sign-in of a user of the LDAP directory whose password the directory checked
        (``good``): the same lockout as a local account's, on a row of their own with no password hash
        (made on their first sign-in, ``user.added`` by ``directory``), which also keeps the directory's
        roles and branches as last seen, for ``users list``. The user on success; else ``LoginRefused``.

        A name that is a local account is refused here: the local account answers for it."""
        now = self.clock()
        seen = UserRecord(
            name=check_name(name),
            display_name=check_display_name((display_name or name)[:100], name=name),
            roles=check_roles(roles),
            branches=check_branches(branches),
            enabled=True,
            password_hash=None,
            failed_logins=0 if good else 1,
            locked_until=None,
            created_at=now,
            updated_at=now,
        )
        refused: list[LoginRefused] = []
        rows: list[UserRecord] = []

        def change(current: UserRecord | None) -> tuple[UserRecord | None, Sequence[LedgerEvent]]:
            if current is None:
                return None, ()
            rows.append(current)
            if current.password_hash is not None:
                refused.append(LoginRefused(_REFUSED, reason="unknown"))
                return None, ()
            return _counted(current, good=good, now=now, refused=refused, seen=seen)

        written = self.index.change_user(name, change)
        if not rows:  # first seen: a row of their own, unless another sign-in made it meanwhile
            event = LedgerEvent(
                "directory",
                "user.added",
                name,
                {
                    "user": name,
                    "roles": sorted(seen.roles),
                    "branches": list(seen.branches),
                    "source": "ldap",
                },
            )
            try:
                self.index.add_user(seen, event=event)
                written = seen
            except IndexConflict:
                written = self.index.change_user(name, change)
        if refused:
            raise refused[0]
        if not good:
            raise LoginRefused(_REFUSED, reason="password")
        return public_user(written or rows[-1])


def _counted(
    current: UserRecord,
    *,
    good: bool,
    now: datetime,
    refused: list[LoginRefused],
    rehash: str | None = None,
    seen: UserRecord | None = None,
) -> tuple[UserRecord | None, Sequence[LedgerEvent]]:
    """The lockout's bookkeeping of one checked password, on the user's row as it stands (locked):
    the row to write (None: nothing) and the ``user.locked`` event when this failure locks the user.
    A user disabled or locked meanwhile is refused (appended to ``refused``). ``seen`` is a directory
    user's row as the directory describes them now (``archive.identity``): its name and roles are kept."""
    name = current.name
    if not current.enabled:  # disabled meanwhile
        refused.append(LoginRefused(_REFUSED, reason="disabled"))
        return None, ()
    if current.locked_until is not None and current.locked_until > now:  # locked meanwhile
        refused.append(LoginRefused(_REFUSED, reason="locked"))
        return None, ()
    base = current
    if seen is not None and (seen.display_name, seen.roles, seen.branches) != (
        current.display_name,
        current.roles,
        current.branches,
    ):
        base = replace(
            current,
            display_name=seen.display_name,
            roles=seen.roles,
            branches=seen.branches,
            updated_at=now,
        )
    if good:
        if current.failed_logins == 0 and current.locked_until is None and rehash is None and base is current:
            return None, ()  # nothing to write: a sign-in does not take the write lock for naught
        return replace(
            base,
            failed_logins=0,
            locked_until=None,
            password_hash=rehash or current.password_hash,
        ), ()
    failures = current.failed_logins + 1
    if failures < LOCKOUT_FAILURES:
        return replace(base, failed_logins=failures), ()
    until = now + LOCKOUT
    event = LedgerEvent(
        name,
        "user.locked",
        name,
        {"user": name, "failures": failures, "until": until.isoformat()},
    )
    # the count starts again once the lock ends: ten more failures, fifteen more minutes
    return replace(base, failed_logins=0, locked_until=until), [event]


def _known(record: UserRecord | None, name: str) -> UserRecord:
    if record is None:
        raise UserError(f"no user named {name[:80]!r}", hint="see issuance users list")
    return record


def _check(hasher: PasswordHasher, encoded: str, password: str) -> bool:
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return hasher.verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return False
