"""``issuance users``: the people who act on the archive (issue 24, "Identity"), kept in the index
database as local accounts (``archive.users``). Each change is recorded in the ledger with the operator
who made it (``settings.operator``); a password is never recorded, logged or returned."""

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


def add_user(
    settings: Settings,
    *,
    name: str,
    roles: Sequence[str],
    branches: Sequence[str],
    display_name: str | None,
    password: str,
) -> User:
    with accounts(settings) as users:
        return users.add(
            name,
            roles=roles,
            branches=branches,
            display_name=display_name,
            password=password,
            by=settings.operator,
        )


def list_users(settings: Settings) -> list[User]:
    with accounts(settings) as users:
        return users.every()


def disable_user(settings: Settings, name: str) -> User:
    with accounts(settings) as users:
        return users.disable(name, by=settings.operator)


def set_password(settings: Settings, name: str, password: str) -> User:
    with accounts(settings) as users:
        return users.set_password(name, password, by=settings.operator)
