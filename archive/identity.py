"""The ``Identity`` seam (DESIGN.md; issue 24, "Identity"): who a user is, and whether a password is
theirs, from the local accounts and, when one is configured, an LDAP directory.

The order, and why:

1. A local account (a row with a password hash) answers for its name first, whether or not a directory
   is configured: the break-glass admin signs in while the directory is down, and a directory entry of
   the same name never takes over a local account.
2. Otherwise the directory answers (when configured): the user's entry, their roles from the groups they
   are a member of, their branches from an attribute. A directory person in none of the role groups is
   not a user of this system: unknown, like a name nobody has.
3. A directory user gets a row of their own in the index on their first sign-in, with no password hash:
   it carries the same lockout as a local account (``LOCKOUT_FAILURES`` failures in a row lock them for
   ``LOCKOUT``, ``user.locked`` in the ledger), and ``issuance users disable`` works on it. Their roles
   and branches are the directory's at each sign-in and lookup; the row's copy is for ``users list``.

The directory matches names whatever their case, so a directory user's name is kept in lower case
(``LI.NA`` is ``li.na``, one lockout for both). A wrong password and an unknown name give the same
``LoginRefused`` message; so does a directory entry the system cannot use (a branch that is not a
branch code), which is logged, and which ``user()`` names in a ``UserError``. A directory that does not
answer is ``DirectoryUnavailable`` (exit 3), for its users only: local accounts are not affected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from archive.index import Index
from archive.users import (
    LOCKOUT_FAILURES,
    MAX_PASSWORD,
    REFUSED,
    LocalAccounts,
    User,
    check_branches,
    check_display_name,
    check_roles,
    is_name,
    public_user,
)
from core.errors import LoginRefused, UserError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # ldap3 is imported only where a directory is configured (usecases.identity)
    from archive.ldap import DirectoryEntry, LdapDirectory


class Identity:
    """Local accounts first, then the directory (None: local accounts only)."""

    def __init__(
        self,
        index: Index,
        *,
        directory: LdapDirectory | None = None,
        accounts: LocalAccounts | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.index = index
        self.directory = directory
        self.accounts = accounts or LocalAccounts(index, clock=clock)
        self.clock = clock or self.accounts.clock

    def authenticate(self, name: str, password: str) -> User:
        """The user, when ``password`` is theirs and they may sign in now; else ``LoginRefused``
        (``DirectoryUnavailable`` when the directory must answer and does not)."""
        record = self.index.user(name) if is_name(name) else None
        if self.directory is None or not is_name(name):
            return self.accounts.verify_password(name, password)
        if record is not None and record.password_hash is not None:
            return self.accounts.verify_password(name, password)
        name = name.lower()  # the directory matches names whatever their case: so does the lockout
        record = self.index.user(name)
        if record is not None and record.password_hash is not None:  # a local account's name, in capitals
            raise LoginRefused(REFUSED, reason="unknown")
        try:
            entry = self._entry(name)
        except UserError as e:  # the entry is broken: said in the log, not to whoever tries the name
            logger.warning("%s (%s)", e.message, e.hint)
            raise LoginRefused(REFUSED, reason="unknown") from e
        if entry is None:
            raise LoginRefused(REFUSED, reason="unknown")
        if record is not None and not record.enabled:
            raise LoginRefused(f"user {name!r} is disabled", reason="disabled")
        if record is not None and record.locked_until is not None and record.locked_until > self.clock():
            raise LoginRefused(
                f"user {name!r} is locked after {LOCKOUT_FAILURES} failed sign-ins",
                reason="locked",
                hint=f"try again after {record.locked_until:%Y-%m-%d %H:%M} UTC",
            )
        good = len(password) <= MAX_PASSWORD and self.directory.check_password(entry.dn, password)
        return self.accounts.count_directory_sign_in(
            name,
            display_name=entry.display_name,
            roles=entry.roles,
            branches=entry.branches,
            good=good,
        )

    def user(self, name: str) -> User | None:
        """The user named ``name`` as the system sees them now (roles and branches from their source,
        enabled and locked from the index), or None when neither source knows them."""
        if not is_name(name):
            return None
        record = self.index.user(name)
        if record is not None and record.password_hash is not None:
            return public_user(record)
        if self.directory is None:
            return None
        name = name.lower()
        record = self.index.user(name)
        if record is not None and record.password_hash is not None:  # a local account's name, in capitals
            return None
        entry = self._entry(name)
        if entry is None:
            return None
        now = self.clock()
        return User(
            name=name,
            display_name=check_display_name((entry.display_name or name)[:100], name=name),
            roles=tuple(sorted(entry.roles)),
            branches=check_branches(entry.branches),
            enabled=record.enabled if record is not None else True,
            locked_until=record.locked_until if record is not None else None,
            created_at=record.created_at if record is not None else now,
            updated_at=record.updated_at if record is not None else now,
            source="ldap",
        )

    def _entry(self, name: str) -> DirectoryEntry | None:
        """The directory's entry for ``name`` when it is a user of this system (at least one role), its
        branches checked: a value that is not a branch code refuses the user rather than widen them to
        every branch."""
        assert self.directory is not None
        entry = self.directory.find(name)
        if entry is None or not entry.roles:
            return None
        check_roles(entry.roles)
        try:
            check_branches(entry.branches)
        except UserError as e:
            raise UserError(
                f"the LDAP directory gives user {name!r} a branch that is not a branch code",
                hint=f"fix the entry's {self.directory.config.branch_attribute}: {e.message}",
            ) from e
        return entry
