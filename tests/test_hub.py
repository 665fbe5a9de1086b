"""The hub against a real Redis: live delivery, and a store that restarts empty."""

from __future__ import annotations

import asyncio
from typing import Any

from broadcaster.clock import RehearsalClock
from broadcaster.hub import Hub
from broadcaster.validation import parse_schedule
from tests.conftest import DEFAULTS, EXAMPLE, jst, make_store


async def test_store_reset_is_adopted_and_streams_are_ended(
    real_redis: Any, key_prefix: str
) -> None:
    """After the store's seq goes back (Redis restarted empty), the hub adopts the new status
    and ends every subscription, so clients reconnect and get a resync."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59))
    store = make_store(real_redis, key_prefix)
    schedule = parse_schedule(EXAMPLE.read_text(), source="x", defaults=DEFAULTS, now=clock.now())
    await store.import_schedule(schedule, clock.now())
    await store.reconcile(jst(2021, 8, 9, 1))
    await store.reconcile(jst(2021, 8, 9, 6))  # seq 3

    hub = Hub(store, clock)
    task = asyncio.create_task(hub.run())
    try:
        assert await hub.wait_ready(5)
        assert hub.current is not None and hub.current.seq == 3
        sub = hub.subscribe()

        # the store is wiped (as by a restart without persistence) and re-imported: seq 1
        await real_redis.delete(*(await real_redis.keys(f"{{{key_prefix}}}:*")))
        await store.import_schedule(schedule, clock.now())

        async with asyncio.timeout(5):
            while hub.current.seq != 1:
                await asyncio.sleep(0.01)
            assert await sub.queue.get() is None  # the stream is told to end
        assert sub.dropped and hub.clients == 0

        # and later events flow again
        later = hub.subscribe()
        await store.reconcile(jst(2021, 8, 9, 1))
        async with asyncio.timeout(5):
            ev = await later.queue.get()
        assert ev is not None and ev.seq == 2
        assert ev.doc["cause"]["type"] == "maintenance.started"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_client_that_does_not_keep_up_is_dropped(fake_redis: Any, key_prefix: str) -> None:
    """A subscription whose bounded queue fills is dropped (memory stays bounded) and counted;
    the others keep receiving."""
    from broadcaster.metrics import SLOW_CLIENTS_DROPPED

    clock = RehearsalClock(jst(2021, 8, 9, 0, 59))
    store = make_store(fake_redis, key_prefix)
    schedule = parse_schedule(EXAMPLE.read_text(), source="x", defaults=DEFAULTS, now=clock.now())
    await store.import_schedule(schedule, clock.now())
    hub = Hub(store, clock, queue_size=3)
    task = asyncio.create_task(hub.run())
    try:
        assert await hub.wait_ready(5)
        stuck, reader = hub.subscribe(), hub.subscribe()
        before = SLOW_CLIENTS_DROPPED._value.get()
        got: list[int] = []
        for i in range(6):  # overrides set and cleared: six events
            now = jst(2021, 7, 1, 0, 0, i)
            if i % 2 == 0:
                await store.apply(now, _set_override)
            else:
                await store.apply(now, _clear_override)
            async with asyncio.timeout(5):
                ev = await reader.queue.get()
            assert ev is not None
            got.append(ev.seq)
        assert got == [2, 3, 4, 5, 6, 7]
        assert stuck.dropped and stuck.queue.qsize() <= 3
        assert hub.clients == 1
        assert SLOW_CLIENTS_DROPPED._value.get() == before + 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _set_override(st: Any) -> Any:
    from broadcaster.domain import Cause, Override
    from broadcaster.store import Change

    ov = Override(mode="maintenance", reason="drill", actor="t", set_at=jst(2021, 7, 1))
    return Change(Cause("override.set", None, "t", "drill"), override=ov, set_override=True)


def _clear_override(st: Any) -> Any:
    from broadcaster.domain import Cause
    from broadcaster.store import Change

    return Change(Cause("override.cleared", None, "t", None), override=None, set_override=True)


async def test_a_failing_handler_does_not_end_the_subscription(
    fake_redis: Any, key_prefix: str
) -> None:
    """A bug in a follower's handler is logged; the next change is still handed over."""
    store = make_store(fake_redis, key_prefix)
    got: list[bytes] = []
    subscribed = asyncio.Event()

    async def handle(payload: bytes | None) -> None:
        if payload is None:
            subscribed.set()
            return
        got.append(payload)
        if len(got) == 1:
            raise ValueError("boom")

    task = asyncio.create_task(store.follow(handle, lambda exc: None))
    try:
        async with asyncio.timeout(5):
            await subscribed.wait()
            await fake_redis.publish(store.keys.channel, b"one")
            await fake_redis.publish(store.keys.channel, b"two")
            while len(got) < 2:
                await asyncio.sleep(0.01)
        assert got == [b"one", b"two"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_resync_replays_what_pubsub_lost(fake_redis: Any, key_prefix: str) -> None:
    """After a reconnect the hub delivers the missed events from the log, in order, so open
    streams see every change (no seq gap), not only the latest status."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59))
    store = make_store(fake_redis, key_prefix)
    schedule = parse_schedule(EXAMPLE.read_text(), source="x", defaults=DEFAULTS, now=clock.now())
    await store.import_schedule(schedule, clock.now())
    hub = Hub(store, clock)
    await hub._resync()  # as on the first subscription
    assert hub.current is not None and hub.current.seq == 1
    sub = hub.subscribe()
    await store.reconcile(jst(2021, 8, 9, 1))  # published while the hub was away
    await store.reconcile(jst(2021, 8, 9, 6))
    await hub._resync()  # as on the re-subscription
    seqs = [sub.queue.get_nowait().seq for _ in range(2)]  # type: ignore[union-attr]
    assert seqs == [2, 3] and sub.queue.empty()
