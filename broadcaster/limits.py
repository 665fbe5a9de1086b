"""The per-client cap on open ``/v1/stream`` responses (``MAINTCAST_STREAMS_PER_CLIENT``),
and the bound on request bodies (:data:`MAX_BODY_BYTES`, enforced by
:mod:`broadcaster.hygiene`).

A client is its address as the ASGI scope gives it, that is after uvicorn's proxy-header
handling: only a peer listed in ``MAINTCAST_FORWARDED_ALLOW_IPS`` may name another address
(``X-Forwarded-For``), so behind nginx it is the browser's and nobody else can forge it.
Counts are per process; nginx's ``limit_conn`` (deploy/nginx) caps the fleet as a whole.
docs/security.md lists every limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException

from broadcaster.metrics import STREAMS_REFUSED

RETRY_AFTER_S = 10
"""``Retry-After`` (seconds) of the 429: a stream is long-lived, so a client at its cap can
open another only once it closed one; retrying at once would only be refused again."""


class TooManyStreams(Exception):
    """The client already holds its quota of open streams in this process (HTTP 429
    ``too_many_streams`` with ``Retry-After``, :mod:`broadcaster.errors`)."""

    def __init__(self, limit: int) -> None:
        self.message = (
            f"too many open streams from this address (at most {limit} per client): "
            "close one and retry"
        )
        super().__init__(self.message)


MAX_BODY_BYTES = 256 * 1024
"""Largest request body read (an ops write is a few KiB; a window's texts are capped at
16 KiB: :mod:`broadcaster.caps`)."""


class BodyTooLarge(HTTPException):
    """A request body larger than :data:`MAX_BODY_BYTES`, by its ``Content-Length`` or by
    the bytes it streamed (HTTP 413 ``body_too_large``, :mod:`broadcaster.errors`).

    A Starlette ``HTTPException`` so that FastAPI, should it read a body itself (a route
    with a body parameter), re-raises it instead of answering 400; the error table still
    answers it, being looked up by the exact class first.
    """

    def __init__(self, limit: int) -> None:
        self.field = "body"
        self.message = f"body: larger than {limit} bytes"
        super().__init__(413, self.message)


class StreamCaps:
    """How many streams each client address holds open; ``per_client`` 0 means no cap.

    Not thread-safe (one event loop per process, as uvicorn runs it).
    """

    __slots__ = ("_open", "per_client")

    def __init__(self, per_client: int) -> None:
        if per_client < 0:
            raise ValueError(f"per_client must be >= 0, got {per_client}")
        self.per_client = per_client
        self._open: dict[str, int] = {}

    def acquire(self, scope: Mapping[str, Any]) -> str | None:
        """Count one more stream for the scope's client; returns the key to hand to
        :meth:`release` when the stream closes (None: not counted, because there is no
        cap or the server gives no client address, e.g. a Unix socket).

        Raises:
            TooManyStreams: the client already holds ``per_client`` streams.
        """
        client = scope.get("client")
        if not self.per_client or not client:
            return None
        key = str(client[0])
        held = self._open.get(key, 0)
        if held >= self.per_client:
            STREAMS_REFUSED.inc()
            raise TooManyStreams(self.per_client)
        self._open[key] = held + 1
        return key

    def release(self, key: str | None) -> None:
        """Forget one stream of ``key`` (what :meth:`acquire` returned)."""
        if key is None:
            return
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)

    def held(self, address: str) -> int:
        """Streams ``address`` holds open now."""
        return self._open.get(address, 0)
