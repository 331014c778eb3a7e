"""Who acts (issue 24, "Identity"): the ``Identity`` seam from the settings, and the check every action
for a person goes through before it does anything.

Front-ends (the CLI's ``--by``, the desk's signed-in user) name the person; the use cases refuse the
action unless that person is a known, enabled user with one of the roles the action needs and, where the
action concerns one policy, may act for its branch (``NotPermitted``, exit 2). The roles per action
follow DOMAIN.md ("Who may do what"): clerks find, print and reissue; supervisors approve reissues;
auditors sample and read archive copies with their images; operators run batches.

A lockout (ten failed sign-ins) concerns signing in: it does not refuse the actions an operator runs at
the shell in a user's name, ``disable`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from datetime import datetime

from archive.identity import Identity
from archive.index import Index
from archive.users import User
from core.config import Settings
from core.errors import NotPermitted

REISSUE_ROLES = ("clerk", "supervisor")
ATTACH_ROLES = ("clerk", "operator")
AUDIT_ROLES = ("auditor",)
SERIAL_ROLES = ("operator",)  # operators run the serials (DOMAIN.md, "Who may do what")
# reading an archived copy: the customer's as the clerks print it; the archive copy holds the images
READ_ROLES = {"customer": ("clerk", "supervisor", "auditor"), "archive": ("auditor",)}


def identity_from(
    settings: Settings, index: Index, *, clock: Callable[[], datetime] | None = None
) -> Identity:
    """The ``Identity`` seam on ``index`` (kept open by the caller): local accounts, and the LDAP
    directory of ``settings.directory`` when one is configured. ``clock``: the time (tests' own)."""
    if settings.directory is None:
        return Identity(index, clock=clock)
    # here, not at the top: ldap3 takes some 50 ms to import, which every `get` and `reissue` would pay
    # with no directory configured (docs/performance.md, "Start-up")
    from archive.ldap import LdapDirectory

    return Identity(index, directory=LdapDirectory(settings.directory), clock=clock)


@contextlib.contextmanager
def identity(settings: Settings) -> Iterator[Identity]:
    """``identity_from`` on an index opened from ``settings``, closed on exit."""
    index = Index.open(settings.index_url, hmac_key=settings.hmac_key)
    try:
        yield identity_from(settings, index)
    finally:
        index.close()


def require_user(
    settings: Settings,
    name: str,
    *,
    roles: Collection[str],
    action: str,
    branch: str | None = None,
    index: Index | None = None,
) -> User:
    """The user named ``name`` when known, enabled, holding one of ``roles`` and (with ``branch``)
    allowed to act for that branch; else ``NotPermitted`` naming the user and what is needed.
    ``action`` says what was asked, for the message ("reissue a policy"). ``index``: an index the
    caller has open (else one is opened for the check)."""
    if index is None:
        with identity(settings) as people:
            user = people.user(name)
    else:
        user = identity_from(settings, index).user(name)
    needed = " or ".join(sorted(roles))
    shown = name[:80]
    if user is None:
        raise NotPermitted(
            f"no user named {shown!r} may {action}: it needs a known user with the role {needed}",
            reason="unknown",
            hint=f"see issuance users list; add one with issuance users add NAME --role {sorted(roles)[0]}",
        )
    if not user.enabled:
        raise NotPermitted(f"user {shown!r} is disabled and may not {action}", reason="disabled")
    if not set(user.roles) & set(roles):
        has = ", ".join(user.roles) or "none"
        raise NotPermitted(
            f"user {shown!r} may not {action}: it needs the role {needed} (the user has {has})",
            reason="role",
        )
    if branch is not None and user.branches and not any(branch.startswith(p) for p in user.branches):
        raise NotPermitted(
            f"user {shown!r} may not {action} for branch {branch}: the user acts for "
            f"{', '.join(user.branches)}",
            reason="branch",
        )
    return user


def branch_of(index: Index, policy_no: str) -> str | None:
    """The branch an archived policy belongs to (None: not in the archive; the action says so itself)."""
    row = index.policy_row(policy_no.strip().upper())
    return row.branch_code if row is not None else None
