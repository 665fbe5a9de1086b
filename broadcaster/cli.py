"""The composition root: ``maintcast`` parses arguments, loads settings, calls one function.

The commands live in :mod:`cli_server` (processes, the store), :mod:`cli_client` (the
HTTP API) and :mod:`cli_subscriptions` (notification subscriptions, through the API);
importing them registers them on the typer app.
"""

from __future__ import annotations

import sys

from broadcaster import cli_client, cli_server, cli_subscriptions
from broadcaster.cli_base import app
from broadcaster.cli_server import api_factory

__all__ = ["api_factory", "app", "cli_client", "cli_server", "cli_subscriptions", "main"]


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
