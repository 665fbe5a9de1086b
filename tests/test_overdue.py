"""Overdue status, the hub's seq audit and the leader lease, without processes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broadcaster.app import create_app
from broadcaster.clock import RehearsalClock
from broadcaster.hub import expected_change_at
from broadcaster.store import Lease
from tests.support import (
    FixedClock,
    eventually_async,
    import_example,
    jst,
    make_store,
    running_hub,
    settings_for,
)


def _doc(until: str | None = None, starts: Sequence[str] = (), expires: str | None = None) -> Any:
    override = {"mode": "maintenance", "expires_at": expires} if expires else None
    return {"until": until, "upcoming": [{"starts_at": s} for s in starts], "override": override}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (_doc(), None),
        (_doc(until="2021-08-09T06:00:00+09:00"), jst(2021, 8, 9, 6)),
        (
            _doc(starts=["2021-08-16T01:00:00+09:00", "2021-08-09T01:00:00+09:00"]),
            jst(2021, 8, 9, 1),
        ),
        (
            _doc(until="2021-08-09T06:00:00+09:00", expires="2021-08-09T03:00:00+09:00"),
            jst(2021, 8, 9, 3),
        ),
    ],
)
def test_expected_change_at(doc: Any, expected: Any) -> None:
    assert expected_change_at(doc) == expected


def metric(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not exposed")


async def test_readyz_and_metric_say_overdue_when_nothing_publishes(
    fake_redis: Any, key_prefix: str
) -> None:
    """An API with no publisher (no worker, no standby) inside a window: once the window's
    end is more than the grace behind, /readyz is 503 status_overdue and the gauge > 0."""
    clock = FixedClock(jst(2021, 8, 9, 5, 59, 50))
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock)
    store = app.state.store
    await import_example(store, clock.now())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert metric((await http.get("/metrics")).text, "maintcast_status_overdue_seconds") == 0
        clock.t = jst(2021, 8, 9, 6, 0, 10)  # 10 s past the end, nothing published it
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "status_overdue"
        late = metric((await http.get("/metrics")).text, "maintcast_status_overdue_seconds")
        assert late >= 10


async def test_audit_finds_a_flush_that_nothing_published(fake_redis: Any, key_prefix: str) -> None:
    """Pub/sub says nothing when the store is emptied: the hub's audit sees the stored seq
    go back and adopts the empty status (no stale maintenance held forever)."""
    clock = RehearsalClock(jst(2021, 8, 9, 2))
    store = make_store(fake_redis, key_prefix)
    await import_example(store, clock.now())
    async with running_hub(store, clock, audit_s=0.1) as hub:
        assert hub.current is not None
        assert hub.current.doc["state"] == "maintenance"
        await fake_redis.flushall()
        await eventually_async(
            lambda: hub.current is not None and hub.current.seq == 0,
            "the audit to adopt seq 0",
            timeout=3,
        )
        assert hub.current.doc["state"] == "normal"
        assert hub.current.doc["components"] == {}


async def test_lease(fake_redis: Any, key_prefix: str) -> None:
    """Taken anew vs renewed; a worker preempts a standby, never another worker."""
    store = make_store(fake_redis, key_prefix)
    assert await store.lead("h:1:a:standby", 3) is Lease.ACQUIRED
    assert await store.lead("h:1:a:standby", 3) is Lease.RENEWED
    assert await store.lead("h:2:b:standby", 3) is Lease.REFUSED
    assert await store.lead("h:2:b:standby", 3, preempt_standby=True) is Lease.ACQUIRED
    assert await store.lead("h:3:c", 3, preempt_standby=True) is Lease.ACQUIRED
    assert await store.lead("h:4:d", 3, preempt_standby=True) is Lease.REFUSED
    assert await store.lead("h:1:a:standby", 3) is Lease.REFUSED
    await fake_redis.delete(store.keys.worker_leader)  # the TTL ran out while frozen
    assert await store.lead("h:3:c", 3, preempt_standby=True) is Lease.ACQUIRED


async def test_the_subscription_survives_an_unexpected_error(
    fake_redis: Any, key_prefix: str
) -> None:
    """A pub/sub read that raises something unexpected (uvloop's RuntimeError on a closed
    transport after a failover) rebuilds the subscription instead of ending it for good."""
    store = make_store(fake_redis, key_prefix)
    real_pubsub = fake_redis.pubsub
    broken = {"left": 1}

    def pubsub() -> Any:
        ps = real_pubsub()
        get_message = ps.get_message

        async def flaky(**kw: Any) -> Any:
            if broken["left"]:
                broken["left"] -= 1
                raise RuntimeError("unable to perform operation: the handler is closed")
            return await get_message(**kw)

        ps.get_message = flaky
        return ps

    fake_redis.pubsub = pubsub
    subscribed: list[bytes | None] = []

    async def handle(payload: bytes | None) -> None:
        subscribed.append(payload)

    lost: list[BaseException] = []
    task = asyncio.create_task(store.follow(handle, lost.append))
    try:
        await eventually_async(lambda: subscribed, "a new subscription")
        assert isinstance(lost[0], RuntimeError)
        assert subscribed == [None]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
