"""CLI commands for the people who act on the archive (issue 24): issuance users add|list|disable|passwd.

CLI-layer code: it parses and prints; the use cases (``usecases.users``) stay silent and raise. A password
comes only from standard input (``--password-stdin``): never an argument, which ``ps`` and shell
histories would show, and never echoed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from cli.common import settings_from
from core.errors import EXIT_OK, UsageError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``users add|list|disable|passwd`` to the ``issuance`` parser."""
    users = sub.add_parser("users", help="the people who act on the archive: roles, branches, passwords")
    users_sub = users.add_subparsers(dest="users_command", metavar="USERS_COMMAND")
    add = users_sub.add_parser("add", help="add a user (the password read from standard input)")
    add.add_argument("name", help="the login name: letters, digits, '.', '_' or '-', up to 64")
    add.add_argument(
        "--role",
        action="append",
        required=True,
        help="clerk, supervisor, auditor, operator or admin (repeat for several)",
    )
    add.add_argument(
        "--branch",
        action="append",
        default=[],
        help="a branch code or its prefix the user may act for (repeat; none: every branch)",
    )
    add.add_argument("--display-name", help="the name shown for the user (default: the login name)")
    add.set_defaults(handler=_add)
    listing = users_sub.add_parser("list", help="every user, with roles, branches and state")
    listing.add_argument("--json", action="store_true", help="one JSON array on standard output")
    listing.set_defaults(handler=_list)
    disable = users_sub.add_parser("disable", help="refuse every sign-in of a user from now on")
    disable.add_argument("name")
    disable.set_defaults(handler=_disable)
    passwd = users_sub.add_parser("passwd", help="set a user's password (read from standard input)")
    passwd.add_argument("name")
    passwd.set_defaults(handler=_passwd)
    for command in (add, passwd):
        given = command.add_mutually_exclusive_group(required=True)
        given.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from standard input (the first line; asked for, unechoed, on a terminal)",
        )
        given.add_argument(
            "--generate-password",
            action="store_true",
            help="make a random one-time password and print it once (to hand to the user)",
        )
    for command in (add, listing, disable, passwd):
        command.add_argument("--config", type=Path, help="configuration file (default: ./issuance.toml)")


def new_password(args: argparse.Namespace) -> str:
    """The password ``--password-stdin`` reads, or a random one ``--generate-password`` makes."""
    from archive.users import one_time_password  # with the use case: the CLI starts without the archive

    return one_time_password() if args.generate_password else read_password()


def _handed_out(args: argparse.Namespace, name: str, password: str) -> None:
    if args.generate_password:
        print(f"one-time password for {name}: {password}  (shown once; hand it over, then change it)")


def read_password() -> str:
    """The password from standard input: asked for without echo on a terminal, else its first line
    without the line ending (spaces inside or around it are the password's)."""
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    line = sys.stdin.readline()
    if not line:
        raise UsageError("no password on standard input", hint="pipe it in: … --password-stdin < file")
    return line.rstrip("\r\n")


def _add(args: argparse.Namespace) -> int:
    from usecases.users import add_user

    user = add_user(
        settings_from(args),
        name=args.name,
        roles=args.role,
        branches=args.branch,
        display_name=args.display_name,
        password=(password := new_password(args)),
    )
    print(f"added user {user.name}: {', '.join(user.roles)}; branches {_branches(user.branches)}")
    _handed_out(args, user.name, password)
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from usecases.users import list_users

    users = list_users(settings_from(args))
    if args.json:
        print(json.dumps([u.as_json() for u in users], ensure_ascii=False, indent=2))
        return EXIT_OK
    for user in users:
        state = "enabled" if user.enabled else "disabled"
        if user.source == "ldap":  # a directory user's row: the lockout and disable; roles as last seen
            state += ", from the LDAP directory"
        if user.locked_until is not None:
            state += f", locked until {user.locked_until:%Y-%m-%d %H:%M} UTC"
        print(
            f"{user.name}\t{user.display_name}\t{','.join(user.roles)}\t{_branches(user.branches)}\t{state}"
        )
    return EXIT_OK


def _disable(args: argparse.Namespace) -> int:
    from usecases.users import disable_user

    user = disable_user(settings_from(args), args.name)
    print(f"user {user.name} is disabled")
    return EXIT_OK


def _passwd(args: argparse.Namespace) -> int:
    from usecases.users import set_password

    user = set_password(settings_from(args), args.name, password := new_password(args))
    print(f"new password set for user {user.name}")
    _handed_out(args, user.name, password)
    return EXIT_OK


def _branches(branches: tuple[str, ...]) -> str:
    return ",".join(branches) if branches else "all"
