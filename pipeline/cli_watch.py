"""CLI commands for the inbox watcher (issue 5): issuance watch."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this family's subcommands to the ``issuance`` parser (none yet)."""
