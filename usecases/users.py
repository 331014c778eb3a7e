"""``issuance users``: the people who act on the archive (issue 24, "Identity"), kept in the index
database as local accounts (``archive.users``). Each change is recorded in the ledger with who made it:
``by`` (the desk passes its signed-in admin), else ``settings.operator`` (the CLI); a password is never
recorded, logged or returned.

``users``: accounts already open (the desk's, over its own index); without it, each call opens the
configured index and closes it again."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from archive.index import Index
from archive.users import LocalAccounts, User
from core.config import Settings


@contextlib.contextmanager
def accounts(settings: Settings) -> Iterator[LocalAccounts]:
    """The local accounts over the configured index, closed on exit (the store is not opened)."""
    index = Index.open(settings.index_url, hmac_key=settings.hmac_key)
    try:
        yield LocalAccounts(index)
    finally:
        index.close()


def _accounts(
    settings: Settings, users: LocalAccounts | None
) -> contextlib.AbstractContextManager[LocalAccounts]:
    return contextlib.nullcontext(users) if users is not None else accounts(settings)


def add_user(
    settings: Settings,
    *,
    name: str,
    roles: Sequence[str],
    branches: Sequence[str],
    display_name: str | None,
    password: str,
    by: str | None = None,
    users: LocalAccounts | None = None,
) -> User:
    with _accounts(settings, users) as opened:
        return opened.add(
            name,
            roles=roles,
            branches=branches,
            display_name=display_name,
            password=password,
            by=by or settings.operator,
        )


def list_users(settings: Settings, *, users: LocalAccounts | None = None) -> list[User]:
    with _accounts(settings, users) as opened:
        return opened.every()


def disable_user(
    settings: Settings, name: str, *, by: str | None = None, users: LocalAccounts | None = None
) -> User:
    with _accounts(settings, users) as opened:
        return opened.disable(name, by=by or settings.operator)


def set_password(
    settings: Settings,
    name: str,
    password: str,
    *,
    by: str | None = None,
    users: LocalAccounts | None = None,
) -> User:
    with _accounts(settings, users) as opened:
        return opened.set_password(name, password, by=by or settings.operator)
