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
