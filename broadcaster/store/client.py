"""The Redis client: how to connect (plain or through Redis Sentinel), and which errors mean
"unreachable"."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

Redis = aioredis.Redis
RECONNECT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
"""Errors that mean "Redis is unreachable right now": retry, serve last known state.
(redis-py's ``MasterNotFoundError`` — no sentinel knows a healthy master, e.g. during a
failover — is a ``ConnectionError``.)"""
STORE_ERRORS: tuple[type[Exception], ...] = (*RECONNECT_ERRORS, RedisError)
"""Every error a store call may raise because of Redis: the unreachable ones and any other
reply error (``LOADING`` after a restart, ``READONLY`` from a replica, ``ResponseError``).
An HTTP request failing with one answers 503 ``store_unavailable``."""
SOCKET_TIMEOUT_S = 5.0
"""Seconds a Redis command or connect may take before it counts as unreachable."""
SENTINEL_TIMEOUT_S = 2.0
"""Seconds a Sentinel query (which master?) or connect may take: the sentinels are asked in
turn before every new connection, so one unreachable sentinel must not hold that long."""
MAX_BACKOFF_S = 2.0
"""Longest pause between reconnects (times 0.5-1.5 jitter): one cheap connect per process,
and Redis coming back is noticed within about 3 s (bench/soak.py: 5 s made it 11.6 s)."""
IDLE_PING_S = 5.0
"""Send a PING on the subscription after this many idle seconds..."""
DEAD_AFTER_S = 10.0
"""...and reconnect when nothing at all (not even the PONG) arrived for this long: a stopped
or half-open server makes ``get_message`` return None forever."""
SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://[:password@]host:port[,host:port…]/MASTER[/db]``.

    ``password`` authenticates to the master (and replicas), never to the sentinels: a
    sentinel without ``requirepass`` rejects ``AUTH``. Sentinels that require a password get
    it from the query parameter ``sentinel_password``.
    """

    hosts: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    password: str | None = None
    sentinel_password: str | None = None


def _sentinel_host(item: str) -> tuple[str, int]:
    """One ``host:port`` of a sentinel URL (a name, IPv4 or bracketed IPv6).

    Raises:
        ValueError: naming the entry: empty, no host, or no port 1-65535.
    """
    if not item:
        raise ValueError("needs at least one sentinel host:port (no empty entries)")
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else None
    else:
        host, colon, port_text_ = item.rpartition(":")
        port_text = port_text_ if colon else None
        if not colon:
            host = item
    if not host:
        raise ValueError(f"sentinel {item!r} has no host")
    if port_text is None or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"sentinel {item!r} needs a port 1-65535 (host:port)")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse a ``redis+sentinel://`` URL (see :class:`SentinelURL`).

    Hosts may be names, IPv4 or bracketed IPv6 (``[::1]:26379``); every host needs a port
    (1-65535). Raises ``ValueError`` with a message naming the wrong part: another scheme, no
    host, a bad or missing port, a user name, no master name, a bad db, extra path segments,
    an unknown query parameter.
    """
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    password: str | None = None
    if at:
        user, colon, secret = userinfo.partition(":")
        if user or not colon:
            raise ValueError("give only a password, as redis+sentinel://:PASSWORD@host:port/…")
        password = unquote(secret) or None
    hosts = [_sentinel_host(item.strip()) for item in hostlist.split(",")]
    segments = [unquote(s) for s in parts.path.split("/")[1:]]
    if len(segments) > 1 and not segments[-1]:
        segments.pop()  # one trailing slash: /MASTER/ or /MASTER/0/
    if not segments or not segments[0]:
        raise ValueError("needs the master's name: redis+sentinel://host:port/MASTER[/db]")
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise ValueError("after the master's name only a db number may follow (/MASTER/0)")
    db = int(segments[1]) if len(segments) == 2 else 0
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    sentinel_password = query.get("sentinel_password", [""])[-1] or None
    return SentinelURL(tuple(hosts), segments[0], db, password, sentinel_password)


def validate_url(url: str) -> None:
    """Raise ``ValueError`` when ``url`` is no Redis URL Maintcast can use: the scheme must be
    ``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://`` (parsed in full)."""
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        parse_sentinel_url(url)
    elif not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss://, unix:// or redis+sentinel://")


class SentinelRedis(aioredis.Redis):
    """A client of the master a Sentinel set names; it follows failovers (every new
    connection asks the sentinels for the master's address, and a connection to a demoted
    master fails on its first write: redis-py's ``SentinelConnectionPool``).

    ``aclose()`` also closes the sentinel clients: redis-py's ``Sentinel.aclose`` is separate
    and ``master_for``'s client does not call it, so closing only the client would leak one
    connection per sentinel.
    """

    owned_sentinel: Sentinel | None = None
    """The Sentinel whose clients this client closes (set by :func:`connect`)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            sentinel, self.owned_sentinel = self.owned_sentinel, None
            if sentinel is not None:
                await sentinel.aclose()


COMMAND_RETRIES = 2
"""Retries redis-py makes of one command or connect (0.02 s, then 0.04 s apart) before the
error reaches Maintcast, whose loops own the backoff (the follower, the worker's publish).
redis-py 6+ retries 10 times by default, and its pub/sub retries a reconnect that itself
retries: after a Sentinel failover a worker stalled 13 s in those nested retries."""


def command_retry() -> Retry:
    """redis-py's retry policy for every connection: :data:`COMMAND_RETRIES` retries of a
    refused or broken connection, short backoff; a timeout is not retried."""
    # connection errors only: a timeout already waited SOCKET_TIMEOUT_S, and retrying it
    # multiplies that wait (a frozen Redis held requests 15-45 s)
    return Retry(
        ExponentialBackoff(cap=0.25, base=0.02),
        COMMAND_RETRIES,
        supported_errors=(RedisConnectionError,),
    )


def connect(url: str | None) -> tuple[Redis, bool]:
    """A client for ``url``, or an embedded in-memory Redis (fakeredis) when ``url`` is None.

    ``url`` is ``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://…/MASTER[/db]``
    (a :class:`SentinelRedis` that follows the master). Returns ``(client, embedded)``; the
    caller owns and closes the client (which closes everything it opened). Raises
    ``ValueError`` for a malformed URL.
    """
    # timeouts: a half-open connection (peer gone, no RST) must fail a command within
    # seconds, not after the kernel's ~15 min of retransmissions (bench/soak.py finding E)
    common: dict[str, Any] = {
        "retry": command_retry(),
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": SOCKET_TIMEOUT_S,
        "socket_keepalive": True,
    }
    if url and url.startswith(f"{SENTINEL_SCHEME}://"):
        spec = parse_sentinel_url(url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(spec.hosts),
            sentinel_kwargs={
                "retry": command_retry(),
                "socket_timeout": SENTINEL_TIMEOUT_S,
                "socket_connect_timeout": SENTINEL_TIMEOUT_S,
                "socket_keepalive": True,
                "password": spec.sentinel_password,
            },
        )
        client = sentinel.master_for(
            spec.master,
            redis_class=SentinelRedis,
            db=spec.db,
            password=spec.password,
            health_check_interval=10,
            **common,
        )
        client.owned_sentinel = sentinel
        return client, False
    if url:
        client = aioredis.Redis.from_url(url, health_check_interval=10, **common)
        return client, False
    import fakeredis  # the embedded default only; never used with a real Redis

    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), True
