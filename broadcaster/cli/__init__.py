"""The composition root: ``maintcast`` parses arguments, loads settings, calls one function.

The typer apps and shared helpers are in :mod:`broadcaster.cli.base`; the commands live in
:mod:`broadcaster.cli.server` (processes, the store) and :mod:`broadcaster.cli.client` (the
HTTP API): importing them registers them on the typer app.
"""

from __future__ import annotations

import sys

from broadcaster.cli import client, server
from broadcaster.cli.base import app
from broadcaster.cli.server import api_factory

__all__ = ["api_factory", "app", "client", "main", "server"]


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
