"""Per-client limits: the cap on open ``/v1/stream`` responses
(``MAINTCAST_STREAMS_PER_CLIENT``), the rate of self-service subscription requests
(``MAINTCAST_SUBSCRIBE_PER_HOUR``), and the bound on request bodies
(:data:`MAX_BODY_BYTES`, enforced by :mod:`broadcaster.hygiene`).

A client is its address as the ASGI scope gives it, that is after uvicorn's proxy-header
handling: only a peer listed in ``MAINTCAST_FORWARDED_ALLOW_IPS`` may name another address
(``X-Forwarded-For``), so behind nginx it is the browser's and nobody else can forge it.
Counts are per process; nginx's ``limit_conn`` (deploy/nginx) caps the fleet as a whole.
docs/security.md lists every limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
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


class TooManyRequests(Exception):
    """The client used up its rate (HTTP 429 ``too_many_requests``, with ``Retry-After``:
    ``retry_after_s`` whole seconds, :mod:`broadcaster.errors`)."""

    def __init__(self, what: str, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        self.message = f"too many {what} from this address: retry in {retry_after_s} s"
        super().__init__(self.message)


class RateLimit:
    """A token bucket per client address: ``per_period`` requests, refilled evenly over
    ``period_s`` seconds (0 means no limit); counted in this process only, like
    :class:`StreamCaps`. At most :data:`MAX_CLIENTS` buckets are kept: full ones are
    forgotten first (they hold no information), then the oldest."""

    MAX_CLIENTS = 10_000

    def __init__(
        self,
        per_period: int,
        period_s: float,
        what: str,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_period < 0 or period_s <= 0:
            raise ValueError("per_period must be >= 0 and period_s > 0")
        self.capacity = per_period
        self.rate = per_period / period_s  # tokens per second
        self.what = what
        self.now = now
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, scope: Mapping[str, Any]) -> None:
        """Count one request of the scope's client (none without a client address).

        Raises:
            TooManyRequests: the client's bucket is empty; ``retry_after_s`` is when the
                next request would pass.
        """
        client = scope.get("client")
        if not self.capacity or not client:
            return
        key, t = str(client[0]), self.now()
        tokens, at = self._buckets.pop(key, (float(self.capacity), t))
        tokens = min(float(self.capacity), tokens + (t - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, t)
            raise TooManyRequests(self.what, max(1, math.ceil((1.0 - tokens) / self.rate)))
        self._buckets[key] = (tokens - 1.0, t)  # re-inserted last: dicts keep that order
        if len(self._buckets) > self.MAX_CLIENTS:
            self._forget(t)

    def _forget(self, t: float) -> None:
        full = [
            k for k, (n, at) in self._buckets.items() if n + (t - at) * self.rate >= self.capacity
        ]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) > self.MAX_CLIENTS:
            del self._buckets[next(iter(self._buckets))]
