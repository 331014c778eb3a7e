"""CLI commands for the signing certificate (issue 23): issuance signer show, issuance signer specimen.

CLI-layer code: it parses and prints; the use cases (``usecases.signer``) stay silent and raise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import settings_from
from core.errors import EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``signer show`` and ``signer specimen`` to the ``issuance`` parser."""
    signer = sub.add_parser("signer", help="the company certificate that signs every issued PDF")
    signer_sub = signer.add_subparsers(dest="signer_command", metavar="SIGNER_COMMAND")
    show = signer_sub.add_parser("show", help="the configured signing key, its certificate and the TSA")
    show.set_defaults(handler=_show)
    specimen = signer_sub.add_parser(
        "specimen",
        help="make a SPECIMEN key and certificate in var/secrets/ (样本, not for real use), as in make demo",
    )
    specimen.set_defaults(handler=_specimen)
    for command in (show, specimen):
        command.add_argument("--config", type=Path, help="configuration file (default: ./issuance.toml)")


def _show(args: argparse.Namespace) -> int:
    from usecases.signer import describe_signer

    facts = describe_signer(settings_from(args))
    if facts is None:
        print("no signing key is configured: documents are issued UNSIGNED (set ISSUANCE_SIGNING_KEY)")
        return EXIT_OK
    print(f"key:          {facts.key}")
    print(f"certificate:  {facts.subject}")
    print(f"sha256:       {facts.fingerprint}")
    print(f"valid until:  {facts.not_after:%Y-%m-%d %H:%M} UTC")
    print(
        f"signatures:   {facts.level}"
        + (
            f", timestamps from {facts.timestamp_authority}"
            if facts.timestamp_authority
            else ", no timestamp (set ISSUANCE_TSA_URL)"
        )
    )
    print(f"trusted roots for checking: {facts.trusted_roots}")
    return EXIT_OK


def _specimen(args: argparse.Namespace) -> int:
    from usecases.signer import make_specimen

    made = make_specimen(settings_from(args))
    if made.made:
        print(f"made a SPECIMEN signing key (样本, not for real use): {made.key}; its root: {made.root}")
    else:
        print(f"a SPECIMEN signing key is there already, kept: {made.key}")
    return EXIT_OK
