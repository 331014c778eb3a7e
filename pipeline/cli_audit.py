"""CLI commands for auditor spot checks (issue 7): issuance audit, issuance verify."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this family's subcommands to the ``issuance`` parser (none yet)."""
