"""The composition root: ``maintcast`` parses arguments, loads settings, calls one function.

The typer apps and shared helpers are in :mod:`broadcaster.cli.base`; the commands live in
:mod:`broadcaster.cli.server` (processes, the store), :mod:`broadcaster.cli.client` (the
HTTP API) and :mod:`broadcaster.cli.subscriptions` (notification subscriptions, through the
API): importing them registers them on the typer app.
"""

from __future__ import annotations

import sys

from broadcaster.cli import client, server, subscriptions
from broadcaster.cli.base import app
from broadcaster.cli.server import api_factory

__all__ = ["api_factory", "app", "client", "main", "server", "subscriptions"]


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
