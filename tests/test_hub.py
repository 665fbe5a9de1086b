"""The hub against a real Redis: live delivery, and a store that restarts empty."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from broadcaster.clock import RehearsalClock
from broadcaster.events import Event
from broadcaster.hub import Hub
from broadcaster.sse import ALL, FINAL, Stream
from tests.support import (
    clear_override,
    eventually_async,
    import_example,
    jst,
    make_store,
    metric_value,
    running_hub,
    set_override,
)

DROPPED = "maintcast_slow_clients_dropped_total"


async def test_store_reset_is_adopted_and_streams_are_ended(
    real_redis: Any, key_prefix: str
) -> None:
    """After the store's seq goes back (Redis restarted empty), the hub adopts the new status
    and ends every subscription, so clients reconnect and get a resync."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59))
    store = make_store(real_redis, key_prefix)
    await import_example(store, clock.now())
    await store.reconcile(jst(2021, 8, 9, 1))
    await store.reconcile(jst(2021, 8, 9, 6))  # seq 3

    async with running_hub(store, clock) as hub:
        assert hub.current is not None
        assert hub.current.seq == 3
        sub, sent = await live_stream(hub)

        # the store is wiped (as by a restart without persistence) and re-imported: seq 1
        await real_redis.delete(*(await real_redis.keys(f"{{{key_prefix}}}:*")))
        await import_example(store, clock.now())

        await eventually_async(
            lambda: hub.current is not None and hub.current.seq == 1, "the hub to adopt seq 1"
        )
        assert sent == [FINAL]  # the stream is ended cleanly: the client reconnects
        assert sub.ended
        assert not sub.aborted
        assert hub.clients == 0

        # and later events flow again
        _, got = await live_stream(hub)
        await store.reconcile(jst(2021, 8, 9, 1))
        await eventually_async(lambda: got, "the next event on a new stream")
        assert got[0]["body"].startswith(b"id: 2\nevent: status\n")
        assert b'"maintenance.started"' in got[0]["body"]


async def test_a_client_that_does_not_keep_up_is_dropped(fake_redis: Any, key_prefix: str) -> None:
    """A stream whose send hangs and whose bounded backlog fills is cut (memory stays
    bounded) and counted; the others keep receiving."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59))
    store = make_store(fake_redis, key_prefix)
    await import_example(store, clock.now())
    async with running_hub(store, clock, client_queue=3) as hub:
        hang = asyncio.Event()  # never set: the stuck client's transport stays paused

        async def stuck_send(message: Any) -> None:
            await hang.wait()

        stuck = Stream(stuck_send, ALL, None)
        hub.streams.join(stuck)
        await hub.streams.pump(stuck)
        _, sent = await live_stream(hub)
        before = metric_value(DROPPED)

        def sent_at_least(n: int) -> Callable[[], bool]:
            return lambda: len(sent) >= n

        for i in range(6):  # overrides set and cleared: six events
            now = jst(2021, 7, 1, 0, 0, i)
            if i % 2 == 0:
                await store.apply(now, set_override)
            else:
                await store.apply(now, clear_override)
            await eventually_async(sent_at_least(i + 1), f"event {i + 1} sent")
        got = [int(m["body"].split(b"\n")[0][4:]) for m in sent]
        assert got == [2, 3, 4, 5, 6, 7]
        assert stuck.aborted
        assert stuck.writer is None
        assert hub.clients == 1
        assert metric_value(DROPPED) == before + 1


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
            await eventually_async(lambda: len(got) >= 2, "both messages handed over")
        assert got == [b"one", b"two"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_resync_replays_what_pubsub_lost(fake_redis: Any, key_prefix: str) -> None:
    """After a reconnect the hub delivers the missed events from the log, in order, so open
    streams see every change (no seq gap), not only the latest status."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59))
    store = make_store(fake_redis, key_prefix)
    await import_example(store, clock.now())
    hub = Hub(store, clock)
    await hub._resync()  # as on the first subscription
    assert hub.current is not None
    assert hub.current.seq == 1
    _, sent = await live_stream(hub)
    await store.reconcile(jst(2021, 8, 9, 1))  # published while the hub was away
    await store.reconcile(jst(2021, 8, 9, 6))
    await hub._resync()  # as on the re-subscription
    assert [m["body"][:5] for m in sent] == [b"id: 2", b"id: 3"]
    # and memory now serves a reconnect from seq 1 without the store
    assert [ev.seq for ev in hub.recent_after(1) or []] == [2, 3]
    assert hub.recent_after(3) == []
    assert hub.recent_after(4) is None


async def live_stream(hub: Hub) -> tuple[Stream, list[Any]]:
    """A stream joined to ``hub`` whose sends are recorded and never suspend."""
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    s = Stream(send, ALL, None)
    s.seq = hub.current.seq if hub.current else -1
    hub.streams.join(s)
    await hub.streams.pump(s)
    return s, sent


async def test_a_rewritten_history_is_adopted_and_its_seqs_get_a_resync(
    fake_redis: Any, key_prefix: str
) -> None:
    """A failover can lose the last writes: the seq goes back, or (the lost change already
    re-published differently) the same seq comes with another status. Either way the hub
    adopts the store's status, ends the streams, and remembers the rewritten seqs, so a
    client resuming from one of them gets a resync rather than "nothing new"."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59))
    hub = Hub(make_store(fake_redis, key_prefix), clock)

    def doc(seq: int, state: str) -> dict[str, Any]:
        return {"seq": seq, "state": state, "cause": None}

    for seq in (1, 2, 3):
        hub._deliver(Event(doc(seq, "normal" if seq % 2 else "maintenance")))
    sub, sent = await live_stream(hub)
    hub._deliver(Event(doc(3, "normal")))  # the same status again (a resync): nothing
    assert not sub.ended
    assert not hub.rewritten(3)

    hub._deliver(Event(doc(3, "maintenance")))  # seq 3 with another status
    assert sub.ended
    assert sent == [FINAL]
    assert hub.current is not None
    assert hub.current.doc["state"] == "maintenance"
    assert hub.rewritten(3)
    assert not hub.rewritten(2)

    hub._deliver(Event(doc(1, "normal")))  # the seq went back: 2 and 3 are gone
    assert hub.current.seq == 1
    assert hub.recent_after(1) == []
    assert [hub.rewritten(s) for s in (1, 2, 3, 4)] == [False, True, True, False]


async def test_a_late_copy_of_a_held_event_is_not_a_rewrite(
    fake_redis: Any, key_prefix: str
) -> None:
    """An audit can replay from the log what pub/sub still has queued: the queued copies
    arrive below the current seq, equal to what memory holds, and must not end the streams
    (bench/soak.py finding H)."""
    hub = Hub(make_store(fake_redis, key_prefix), RehearsalClock(jst(2021, 8, 9, 0, 59)))

    def doc(seq: int) -> dict[str, Any]:
        return {"seq": seq, "state": "normal", "cause": {"type": f"t{seq}"}}

    for seq in (1, 2, 3):
        hub._deliver(Event(doc(seq)))
    sub, sent = await live_stream(hub)
    hub._deliver(Event(doc(2)))  # the pub/sub copy of 2, after the audit's replay
    assert not sub.ended
    assert sent == []
    assert hub.current is not None
    assert hub.current.seq == 3
    assert not hub.rewritten(2)


async def test_a_resync_from_seq_0_replays_every_event(fake_redis: Any, key_prefix: str) -> None:
    """After a flush the hub holds the empty status (seq 0); when it resyncs (an audit that
    ran before pub/sub delivered the re-import), its streams get every event from the log,
    1, 2, 3 — not a jump to the last one (bench/soak.py: 379 statuses never sent)."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59))
    store = make_store(fake_redis, key_prefix)
    hub = Hub(store, clock)
    hub._deliver(Event(await store.status(clock.now())))  # the emptied store: seq 0
    sub, sent = await live_stream(hub)
    await import_example(store, clock.now())
    await store.reconcile(jst(2021, 8, 9, 1))
    await store.reconcile(jst(2021, 8, 9, 6))
    await hub.audit()
    ids = [m["body"].split(b"\n", 1)[0] for m in sent]
    assert ids == [b"id: 1", b"id: 2", b"id: 3"]
    assert not sub.ended


async def test_seqs_of_the_new_history_are_not_rewritten_once_delivered(
    fake_redis: Any, key_prefix: str
) -> None:
    """After a reset the new history reuses the seqs: once this process delivered seq N of
    it, a client resuming from N is replayed, not sent back to a resync (a slow client cut
    in the re-import's burst otherwise lost everything up to the current seq)."""
    hub = Hub(make_store(fake_redis, key_prefix), RehearsalClock(jst(2021, 8, 9, 0, 59)))

    def doc(seq: int, state: str) -> dict[str, Any]:
        return {"seq": seq, "state": state, "cause": None}

    for seq in range(1, 6):
        hub._deliver(Event(doc(seq, "normal")))
    hub._deliver(Event(doc(0, "normal")))  # flushed: 1..5 of the old history are gone
    assert all(hub.rewritten(s) for s in range(1, 6))
    for seq in (1, 2, 3):
        hub._deliver(Event(doc(seq, "maintenance")))  # the re-import
    assert [hub.rewritten(s) for s in range(1, 6)] == [False, False, False, True, True]
    assert [ev.seq for ev in hub.recent_after(1) or []] == [2, 3]
