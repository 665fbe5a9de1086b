"""The Redis client: how to connect, and which errors mean "unreachable"."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

Redis = aioredis.Redis
RECONNECT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
"""Errors that mean "Redis is unreachable right now": retry, serve last known state."""
STORE_ERRORS: tuple[type[Exception], ...] = (*RECONNECT_ERRORS, RedisError)
"""Every error a store call may raise because of Redis: the unreachable ones and any other
reply error (``LOADING`` after a restart, ``READONLY`` from a replica, ``ResponseError``).
An HTTP request failing with one answers 503 ``store_unavailable``."""
SOCKET_TIMEOUT_S = 5.0
"""Seconds a Redis command or connect may take before it counts as unreachable."""
MAX_BACKOFF_S = 2.0
"""Longest pause between reconnects (times 0.5-1.5 jitter): one cheap connect per process,
and Redis coming back is noticed within about 3 s (bench/soak.py: 5 s made it 11.6 s)."""
IDLE_PING_S = 5.0
"""Send a PING on the subscription after this many idle seconds..."""
DEAD_AFTER_S = 10.0
"""...and reconnect when nothing at all (not even the PONG) arrived for this long: a stopped
or half-open server makes ``get_message`` return None forever."""


def connect(url: str | None) -> tuple[Redis, bool]:
    """A client for ``url``, or an embedded in-memory Redis (fakeredis) when ``url`` is None.

    Returns ``(client, embedded)``; the caller owns and closes the client.
    """
    if url:
        # timeouts: a half-open connection (peer gone, no RST) must fail a command within
        # seconds, not after the kernel's ~15 min of retransmissions (bench/soak.py finding E)
        client = aioredis.Redis.from_url(
            url,
            health_check_interval=10,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            socket_keepalive=True,
        )
        return client, False
    import fakeredis  # the embedded default only; never used with a real Redis

    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), True
