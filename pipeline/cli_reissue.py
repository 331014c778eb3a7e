"""CLI commands for lost-policy reissue (issue 6): issuance reissue, issuance serials."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this family's subcommands to the ``issuance`` parser (none yet)."""
