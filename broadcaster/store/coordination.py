"""The coordination side of the store: the change feed (pub/sub), the leader lock, the
worker heartbeat."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from broadcaster import codec
from broadcaster.keys import WORKER_HEARTBEAT_TTL_S, Keys
from broadcaster.store.client import (
    DEAD_AFTER_S,
    IDLE_PING_S,
    MAX_BACKOFF_S,
    RECONNECT_ERRORS,
)

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 200
AUDIT_DEADLINE_S = 2.0
"""Seconds an audit may take before the subscription is treated as lost."""
STANDBY_SUFFIX = ":standby"
"""Ends the lock holder id of a standby publisher (an API process); a worker preempts it."""


class Lease(Enum):
    """What :meth:`Coordination.lead` did with the leader lock."""

    RENEWED = "renewed"
    """Held without a break since the last call: nothing was missed."""
    ACQUIRED = "acquired"
    """Taken anew (it was free, expired, or held by a standby this worker preempts): the
    lock lapsed, and a boundary may have passed unpublished meanwhile, so reconcile now."""
    REFUSED = "refused"
    """Another process holds it."""


class Coordination:
    """Follow the change channel; take, renew and give up the leader lock; heartbeat."""

    redis: Any
    keys: Keys

    async def follow(
        self,
        handle: Callable[[bytes | None], Awaitable[None]],
        on_lost: Callable[[BaseException], None],
        *,
        audit: Callable[[], Awaitable[None]] | None = None,
        audit_s: float = 5.0,
    ) -> None:
        """Follow the change channel forever (cancel to stop).

        ``handle(None)`` is awaited after every (re)subscription, including redis-py's
        silent resubscribe after a reconnect (seen only as another ``subscribe``
        confirmation): pub/sub dropped whatever was published meanwhile, so re-read the
        stored status. ``handle(payload)`` is awaited for each published status. On a
        connection error (raised here or by ``handle``) ``on_lost`` is called and the
        subscription is rebuilt after a backoff with jitter (0.1 s doubling to 2 s); any other
        exception is logged and handled the same way (the loop only ends when cancelled).
        ``audit()``, when given, is awaited when the subscription has been idle for a second
        and ``audit_s`` seconds have passed since the last one, in the same loop (one task: a
        cancellation always reaches whatever it awaits), within ``AUDIT_DEADLINE_S`` (a frozen
        Redis then counts as lost, like a silent subscription).
        """

        backoff = 0.1

        def subscribed() -> None:
            nonlocal backoff
            backoff = 0.1

        while True:
            pubsub: Any = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.keys.channel)
                await self._listen(pubsub, handle, audit, audit_s, subscribed)
            except Exception as exc:
                # anything else too: a subscription that dies leaves its process deaf for
                # good (after a Sentinel failover uvloop raised RuntimeError "the handler is
                # closed" from a connection redis-py was reusing)
                if not isinstance(exc, RECONNECT_ERRORS):
                    log.warning("subscription failed (%r); rebuilding it", exc)
                on_lost(exc)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # closing a broken connection may fail too; nothing to do
                    log.debug("pubsub close failed", exc_info=True)

    async def _listen(
        self,
        pubsub: Any,
        handle: Callable[[bytes | None], Awaitable[None]],
        audit: Callable[[], Awaitable[None]] | None,
        audit_s: float,
        subscribed: Callable[[], None],
    ) -> None:
        """Read one subscription until it fails (see :meth:`follow`); ``subscribed()`` is
        called after each (re)subscription was handled.

        Raises:
            RedisTimeoutError: no reply for ``DEAD_AFTER_S`` (half-open); any error of the
                connection.
        """

        async def run_audit(_: bytes | None) -> None:
            assert audit is not None
            await asyncio.wait_for(audit(), AUDIT_DEADLINE_S)

        last_seen, pinged = time.monotonic(), False
        audited = last_seen
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
            now = time.monotonic()
            if msg is None and audit is not None and now - audited >= audit_s:
                # only while idle: between queued messages the stored seq is ahead
                # of memory by design (bench/soak.py finding H)
                audited = now
                await self._safely(run_audit, None)
            if msg is None:
                if now - last_seen > DEAD_AFTER_S:
                    raise RedisTimeoutError("no reply on the subscription (half-open?)")
                if now - last_seen > IDLE_PING_S and not pinged:
                    await asyncio.wait_for(pubsub.ping(), 2.0)
                    pinged = True
                continue
            last_seen, pinged = now, False
            kind = msg["type"]
            if kind in (b"subscribe", "subscribe"):
                await self._safely(handle, None)
                subscribed()
            elif kind in (b"message", "message"):
                await self._safely(handle, msg["data"])

    @staticmethod
    async def _safely(
        handle: Callable[[bytes | None], Awaitable[None]], payload: bytes | None
    ) -> None:
        """Run a follower's handler; a bug in it is logged, not fatal to the subscription
        (connection errors still propagate, to reconnect)."""
        try:
            await handle(payload)
        except RECONNECT_ERRORS:
            raise
        except Exception:
            log.exception("handling a change failed; following on")

    async def lead(self, holder_id: str, ttl_s: float, *, preempt_standby: bool = False) -> Lease:
        """Take or renew the leader lock for ``ttl_s`` seconds.

        With ``preempt_standby`` (workers) a lock held by a standby (an id ending in
        :data:`STANDBY_SUFFIX`) is taken over: workers are the preferred publishers, API
        standbys publish only while no worker holds the lock.
        """
        k = self.keys.worker_leader
        mine = holder_id.encode()
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(k)
                    holder = await pipe.get(k)
                    standby = holder is not None and holder.endswith(STANDBY_SUFFIX.encode())
                    if holder is not None and holder != mine and not (preempt_standby and standby):
                        await pipe.reset()
                        return Lease.REFUSED
                    pipe.multi()
                    pipe.set(k, holder_id, px=int(ttl_s * 1000))
                    await pipe.execute()
                    return Lease.RENEWED if holder == mine else Lease.ACQUIRED
                except WatchError:
                    continue
        return Lease.REFUSED

    async def resign(self, worker_id: str) -> None:
        """Give the leader lock up if ``worker_id`` holds it (clean shutdown: no TTL wait)."""
        k = self.keys.worker_leader
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(k)
                if await pipe.get(k) == worker_id.encode():
                    pipe.multi()
                    pipe.delete(k)
                    await pipe.execute()
            except WatchError:
                pass  # someone else changed it: then it is not ours to delete

    async def heartbeat(self, now: datetime, worker_id: str) -> None:
        """Record that a worker is alive (fresh for ``WORKER_HEARTBEAT_TTL_S`` seconds)."""
        await self.redis.set(
            self.keys.worker_heartbeat,
            f"{worker_id} {now.isoformat()}",
            ex=WORKER_HEARTBEAT_TTL_S,
        )

    async def worker_alive(self) -> bool:
        """Whether some worker's heartbeat is fresh."""
        return bool(await self.redis.exists(self.keys.worker_heartbeat))

    async def stored_seq(self) -> int:
        """The last published seq (0 before any publish, or after the store was emptied)."""
        return int(await self.redis.get(self.keys.seq) or 0)

    async def clock_skew_s(self) -> float:
        """This host's clock minus Redis's (``TIME``), in seconds, half the round trip
        allowed for."""
        before = time.time()
        sec, usec = await self.redis.time()
        after = time.time()
        return float((before + after) / 2 - (sec + usec / 1e6))

    async def status_ahead_s(self, now: datetime) -> float:
        """Seconds by which the stored status's ``as_of`` is later than ``now`` (≤ 0 when it is
        not, or no status is stored)."""
        raw = await self.redis.get(self.keys.status)
        if not raw:
            return 0.0
        return float((codec.status_instant(codec.loads(raw)) - now).total_seconds())

    async def has_catalog(self) -> bool:
        """Whether a catalog is stored (False after Redis restarted empty or was flushed)."""
        return bool(await self.redis.exists(self.keys.catalog))
