"""The notification queue in Redis: subscriptions, messages, due times, the fan-out cursor.

Per subscription a hash of messages, a sorted set of the pending ones by due time (Unix
seconds, real time) and a sorted set of all by queue time (the delivery list); across them
``notify:ready`` holds each subscription's earliest due time, so the dispatcher finds the
subscriptions with something due without scanning messages, and a subscription with
thousands of messages waiting never hides another's (docs/notifications.md).

A message is stored before its first attempt; claims and settles are in
:mod:`broadcaster.store.dispatch`. The fan-out moves the cursor over the event log in the
same transaction that queues the messages, fenced by the leader lock: no event is queued
twice or skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import WatchError

from broadcaster import codec
from broadcaster.domain import Catalog, Conflict, NotFound, Window
from broadcaster.keys import Keys
from broadcaster.notify import reminders
from broadcaster.notify.messages import LoggedEvent, Message, Selector
from broadcaster.notify.subscriptions import Subscription, inactive
from broadcaster.store.client import Redis
from broadcaster.store.coordination import MAX_ATTEMPTS
from broadcaster.store.core import Store
from broadcaster.store.dispatch import Dispatch
from broadcaster.validation import Defaults

log = logging.getLogger(__name__)

FAN_OUT_BATCH = 50
"""Events fanned out per transaction."""
REMINDED_KEPT = timedelta(days=30)
"""How long (clock time) a queued reminder's mark is kept: far beyond any misfire grace."""


class NotifyStore(Dispatch):
    """Subscriptions and their delivery queue under one key prefix (does not own ``redis``)."""

    def __init__(self, redis: Redis, keys: Keys, defaults: Defaults, grace_s: float = 5.0) -> None:
        self.redis: Any = redis
        self.keys = keys
        self.defaults = defaults
        self.grace_s = grace_s

    @classmethod
    def of(cls, store: Store) -> NotifyStore:
        """The notification store beside ``store`` (same client, prefix, defaults and
        misfire grace)."""
        return cls(store.redis, store.keys, store.defaults, store.grace_s)

    # -- subscriptions ----------------------------------------------------------------

    async def add_subscription(self, make: Callable[[int, Catalog], Subscription]) -> Subscription:
        """Store ``make(seq, catalog)`` (the current seq and catalog) atomically; the
        fan-out cursor starts at that seq if there was none.

        Raises:
            Conflict: the id exists (field ``id``). Whatever ``make`` raises (nothing stored).
        """
        k = self.keys
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(k.subscriptions, k.seq, k.catalog)
                    seq = int(await pipe.get(k.seq) or 0)
                    raw = await pipe.get(k.catalog)
                    sub = make(seq, Catalog.model_validate_json(raw) if raw else Catalog())
                    if await pipe.hexists(k.subscriptions, sub.id):
                        raise Conflict("id", f"subscription {sub.id!r} exists")
                    pipe.multi()
                    pipe.hset(k.subscriptions, sub.id, sub.model_dump_json())
                    pipe.set(k.notify_cursor, seq, nx=True)
                    await pipe.execute()
                    return sub
                except WatchError:
                    continue
        raise RuntimeError("could not add the subscription (conflicting writes)")

    async def subscription(self, sub_id: str) -> Subscription:
        """One subscription. Raises NotFound (field ``id``)."""
        raw = await self.redis.hget(self.keys.subscriptions, sub_id)
        if raw is None:
            raise NotFound("id", f"unknown subscription {sub_id[:64]!r}")
        return Subscription.model_validate_json(raw)

    async def subscriptions(self) -> list[Subscription]:
        """Every subscription, oldest first."""
        raw = await self.redis.hgetall(self.keys.subscriptions)
        subs = [Subscription.model_validate_json(v) for v in raw.values()]
        return sorted(subs, key=lambda s: (s.created_at, s.id))

    async def update_subscription(
        self, sub_id: str, change: Callable[[Subscription], Subscription]
    ) -> Subscription:
        """Replace a subscription by ``change(it)`` atomically. Raises NotFound."""
        k = self.keys
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(k.subscriptions)
                    raw = await pipe.hget(k.subscriptions, sub_id)
                    if raw is None:
                        raise NotFound("id", f"unknown subscription {sub_id[:64]!r}")
                    new = change(Subscription.model_validate_json(raw))
                    pipe.multi()
                    pipe.hset(k.subscriptions, sub_id, new.model_dump_json())
                    await pipe.execute()
                    return new
                except WatchError:
                    continue
        raise RuntimeError("could not update the subscription (conflicting writes)")

    async def remove_subscription(self, sub_id: str) -> None:
        """Delete a subscription and its messages. Raises NotFound."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(k.subscriptions, sub_id)
            pipe.delete(k.notify_messages(sub_id), k.notify_due(sub_id), k.notify_log(sub_id))
            pipe.zrem(k.notify_ready, sub_id)
            removed, *_ = await pipe.execute()
        if not removed:
            raise NotFound("id", f"unknown subscription {sub_id[:64]!r}")

    # -- queueing ---------------------------------------------------------------------

    def _queue(self, pipe: Any, sub_id: str, msgs: list[Message]) -> None:
        """Queue commands for ``msgs`` (each due at its ``next_s``) inside a MULTI."""
        k = self.keys
        pipe.hset(k.notify_messages(sub_id), mapping={m.id: m.model_dump_json() for m in msgs})
        pipe.zadd(k.notify_due(sub_id), {m.id: m.next_s or 0.0 for m in msgs})
        pipe.zadd(k.notify_log(sub_id), {m.id: m.queued_s for m in msgs})
        pipe.zadd(k.notify_ready, {sub_id: min(m.next_s or 0.0 for m in msgs)}, lt=True)

    async def enqueue(self, sub_id: str, msgs: list[Message]) -> None:
        """Store ``msgs`` for one subscription, pending, each due at its ``next_s``
        (a message with an id already queued is replaced)."""
        if msgs:
            async with self.redis.pipeline(transaction=True) as pipe:
                self._queue(pipe, sub_id, msgs)
                await pipe.execute()

    async def _logged(self, pipe: Any, after: int, count: int) -> list[LoggedEvent]:
        start = f"{after}-0" if after > 0 else "1-0"  # the entry at ``after`` too: the previous
        rows = await pipe.xrange(self.keys.events, min=start, count=count + 1)
        return [
            LoggedEvent(int(rid.split(b"-")[0]), codec.loads(f[b"e"]), codec.loads(f[b"s"]))
            for rid, f in rows
        ]

    async def _inputs(self, pipe: Any) -> tuple[list[Subscription], Catalog, dict[str, Window]]:
        k = self.keys
        raw_subs = await pipe.hgetall(k.subscriptions)
        raw_catalog = await pipe.get(k.catalog)
        raw_windows = await pipe.hgetall(k.windows)
        # a series too: the events about a series name it (payload ``window``: the series)
        raw_windows = {**await pipe.hgetall(k.series), **raw_windows}
        windows = (codec.window_from_doc(codec.loads(v)) for v in raw_windows.values())
        return (
            [Subscription.model_validate_json(v) for v in raw_subs.values()],
            Catalog.model_validate_json(raw_catalog) if raw_catalog else Catalog(),
            {w.id: w for w in windows},
        )

    def _selector(
        self, catalog: Catalog, windows: dict[str, Window], origin_of: Callable[[datetime], float]
    ) -> Selector:
        return Selector(
            catalog,
            windows,
            default_error_code=self.defaults.error_code,
            zone=self.defaults.timezone,
            origin_of=origin_of,
        )

    async def fan_out(
        self, now_s: float, origin_of: Callable[[datetime], float], *, fence: str | None
    ) -> int:
        """Queue the messages of the next events after the cursor (at most
        :data:`FAN_OUT_BATCH`) and move the cursor past them, in one transaction; with
        ``fence`` only while that id holds the leader lock. Returns how many events were
        consumed (0: up to date, no cursor yet, or not the leader).

        A cursor above the stored seq (Redis lost its last writes, or restarted) is set
        back to it; events trimmed from the log before they were fanned out are skipped
        with a WARNING.
        """
        k = self.keys
        # up to date (the common case: every finished attempt starts a round): one round
        # trip instead of a transaction of four
        raw_cursor, raw_seq = await self.redis.mget(k.notify_cursor, k.seq)
        if raw_cursor is None or int(raw_cursor) == int(raw_seq or 0):
            return 0
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(k.notify_cursor, *([k.worker_leader] if fence else []))
                    if fence is not None and await pipe.get(k.worker_leader) != fence.encode():
                        return 0
                    raw_cursor = await pipe.get(k.notify_cursor)
                    seq = int(await pipe.get(k.seq) or 0)
                    if raw_cursor is None or int(raw_cursor) == seq:
                        return 0
                    cursor = int(raw_cursor)
                    rows = [] if cursor > seq else await self._logged(pipe, cursor, FAN_OUT_BATCH)
                    previous = rows[0] if rows and rows[0].seq == cursor else None
                    events = [r for r in rows if r.seq > cursor][:FAN_OUT_BATCH]
                    if not events or events[0].seq != cursor + 1:
                        log.warning(
                            "notifications: events %d..%d are not in the log (%s); skipped",
                            cursor + 1,
                            (events[0].seq - 1) if events else seq,
                            "the store was reset" if cursor > seq else "trimmed",
                        )
                    subs, catalog, windows = await self._inputs(pipe)
                    found = self._selector(catalog, windows, origin_of).messages(
                        subs, events, previous, now_s
                    )
                    pipe.multi()
                    for sub_id in dict.fromkeys(s for s, _ in found):
                        self._queue(pipe, sub_id, [m for s, m in found if s == sub_id])
                    pipe.set(k.notify_cursor, events[-1].seq if events else seq)
                    await pipe.execute()
                    return max(len(events), 1)
                except WatchError:
                    continue
        return 0

    async def remind(
        self,
        now: datetime,
        offsets: Sequence[timedelta],
        now_s: float,
        origin_of: Callable[[datetime], float],
        *,
        fence: str | None,
    ) -> list[str]:
        """Queue the reminders due at ``now`` (clock time; :func:`reminders.due` with this
        store's misfire grace) that were not queued before, for every subscription that
        gets them, and mark them queued, in one transaction; with ``fence`` only while that
        id holds the leader lock. Returns the ids of the reminders queued now.
        """
        k = self.keys
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(k.notify_reminded, *([k.worker_leader] if fence else []))
                    if fence is not None and await pipe.get(k.worker_leader) != fence.encode():
                        return []
                    subs, catalog, windows = await self._inputs(pipe)
                    todo = [
                        r
                        for r in reminders.due(windows.values(), offsets, now, self.grace_s)
                        if await pipe.zscore(k.notify_reminded, r.id) is None
                    ]
                    raw_status = await pipe.get(k.status) if todo else None
                    if raw_status is None:  # nothing due, or nothing ever published
                        return []
                    found = self._selector(catalog, windows, origin_of).reminder_messages(
                        subs, todo, codec.loads(raw_status), now_s
                    )
                    pipe.multi()
                    for sub_id in dict.fromkeys(s for s, _ in found):
                        self._queue(pipe, sub_id, [m for s, m in found if s == sub_id])
                    pipe.zadd(k.notify_reminded, {r.id: r.at.timestamp() for r in todo})
                    forget = (now - REMINDED_KEPT).timestamp()
                    pipe.zremrangebyscore(k.notify_reminded, "-inf", forget)
                    await pipe.execute()
                except WatchError:
                    continue
            for r in todo:
                log.info(
                    "reminder %s queued for %d subscriptions",
                    r.id,
                    sum(1 for _, m in found if m.id == r.id),
                )
            return [r.id for r in todo]
        return []

    async def replay(
        self, sub_id: str, after_seq: int, now_s: float, *, limit: int
    ) -> tuple[int, int | None, int | None]:
        """Queue again, due now, the messages of the events after ``after_seq`` that
        ``sub_id`` gets (also those before it was created, and those already delivered),
        at most ``limit`` events. Returns ``(messages queued, first seq, last seq read)``.

        Raises:
            NotFound: unknown subscription. Conflict: the subscription is disabled.
        """
        sub = await self.subscription(sub_id)
        if not sub.active:
            raise Conflict("id", inactive(sub))
        queued, first, last, after = 0, None, None, after_seq
        while after - after_seq < limit:
            rows = await self._logged(self.redis, after, FAN_OUT_BATCH)
            previous = rows[0] if rows and rows[0].seq == after else None
            events = [r for r in rows if r.seq > after][: limit - (after - after_seq)]
            if not events:
                break
            _, catalog, windows = await self._inputs(self.redis)
            found = self._selector(catalog, windows, lambda _: now_s).messages(
                [sub], events, previous, now_s, replay=True
            )
            await self.enqueue(sub_id, [m for _, m in found])
            queued += len(found)
            first = first if first is not None else events[0].seq
            last = after = events[-1].seq
        return queued, first, last

    async def deliveries(self, sub_id: str, limit: int) -> list[Message]:
        """The subscription's latest messages, newest first. Raises NotFound."""
        await self.subscription(sub_id)
        k = self.keys
        ids = await self.redis.zrevrange(k.notify_log(sub_id), 0, limit - 1)
        if not ids:
            return []
        raw = await self.redis.hmget(k.notify_messages(sub_id), ids)
        return [Message.model_validate_json(r) for r in raw if r is not None]

    async def last_deliveries(self, sub_ids: list[str]) -> dict[str, tuple[Message | None, int]]:
        """For each subscription: its latest message (None before any) and how many of its
        messages are pending, in two round trips whatever the number of subscriptions."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for sub_id in sub_ids:
                pipe.zrevrange(k.notify_log(sub_id), 0, 0)
                pipe.zcard(k.notify_due(sub_id))
            found = await pipe.execute()
        latest = dict(zip(sub_ids, found[0::2], strict=True))
        async with self.redis.pipeline(transaction=False) as pipe:
            for sub_id, ids in latest.items():
                pipe.hget(k.notify_messages(sub_id), ids[0] if ids else "")
            raws = await pipe.execute()
        return {
            sub_id: (Message.model_validate_json(raw) if raw else None, int(pending))
            for sub_id, raw, pending in zip(sub_ids, raws, found[1::2], strict=True)
        }

    async def queue_sizes(self) -> dict[str, int]:
        """Pending messages by subscription kind."""
        subs = await self.subscriptions()
        if not subs:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in subs:
                pipe.zcard(self.keys.notify_due(s.id))
            counts = await pipe.execute()
        out: dict[str, int] = {}
        for s, n in zip(subs, counts, strict=True):
            out[s.kind] = out.get(s.kind, 0) + int(n)
        return out
