"""What :func:`broadcaster.app.create_app` keeps in ``app.state``, read back typed.

The routes of :mod:`broadcaster.app`, :mod:`broadcaster.ops_api` and
:mod:`broadcaster.pages.routes` are module-level handlers; each reads the process's store,
hub, clock, tokens and settings from its request's app through these functions (plain
functions of the request, so they also serve as FastAPI dependencies).
"""

from __future__ import annotations

from typing import cast

from starlette.requests import Request

from broadcaster.auth import Tokens
from broadcaster.clock import Clock
from broadcaster.hub import Hub
from broadcaster.settings import Settings
from broadcaster.store import Store


def store_of(request: Request) -> Store:
    """The app's store (``app.state.store``)."""
    return cast(Store, request.app.state.store)


def hub_of(request: Request) -> Hub:
    """The app's hub: the current status in memory (``app.state.hub``)."""
    return cast(Hub, request.app.state.hub)


def clock_of(request: Request) -> Clock:
    """The process clock (``app.state.clock``)."""
    return cast(Clock, request.app.state.clock)


def tokens_of(request: Request) -> Tokens:
    """The ops tokens the app accepts (``app.state.tokens``)."""
    return cast(Tokens, request.app.state.tokens)


def settings_of(request: Request) -> Settings:
    """The settings the app was built with (``app.state.settings``)."""
    return cast(Settings, request.app.state.settings)
