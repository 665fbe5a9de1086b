"""Deliveries on a real Redis to a real receiver that verifies every request with
``standardwebhooks``: events in scope reach subscribers, failures are retried with the same
``webhook-id`` (500s, a refused connection, a timeout), 410 disables, exhausted messages
fail and replay, a slow endpoint delays no one, rotation signs twice, one process delivers.

Retries are fast through a short retry schedule (``DeliveryConfig.retry_s``)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from broadcaster import ops
from broadcaster.clock import RehearsalClock
from broadcaster.notify.messages import DeliveryConfig, Message, Outcome
from broadcaster.notify.subscriptions import rotated
from broadcaster.store import Change, State, Store
from broadcaster.store.notify import NotifyStore
from tests.notify_support import (
    HANG,
    Receiver,
    clear,
    delivering,
    override,
    seeded,
    serving,
    subscribe,
)
from tests.support import eventually_async, free_port, jst, metric_value
from worker import deliveries

WID = "webcollect-2021-08"
CARDS = {"webcollect": ["credit_card"]}
BANK = {"atobarai": ["bank_transfer"]}


async def message(store: Store, sub_id: str, msg_id: str, ok: Any) -> Message:
    """The message once ``ok(message)`` holds (bounded wait)."""

    async def probe() -> Message | None:
        for m in await NotifyStore.of(store).deliveries(sub_id, 100):
            if m.id == msg_id and ok(m):
                return m
        return None

    return await eventually_async(probe, f"{sub_id}/{msg_id}", timeout=10)


def types(rx: Receiver, name: str) -> list[tuple[str, str]]:
    return [(r.id, r.doc["type"]) for r in rx.ok(name)]


async def test_events_in_scope_reach_subscribers_and_others_get_nothing(
    real_redis: Any, key_prefix: str
) -> None:
    """The 2021 window starts (a boundary), is cancelled, then an override puts
    atobarai/bank_transfer down: the card subscriber gets the first two, the bank-transfer
    subscriber only the override (the window leaves bank_transfer up)."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 58, 800000))
    store = await seeded(real_redis, key_prefix, clock)
    cards, bank = 0, 0
    rx = Receiver()
    async with serving(rx) as base:
        rx.secrets["cards"] = [
            await subscribe(store, f"{base}/cards", "cards", clock.now(), scope=CARDS)
        ]
        rx.secrets["bank"] = [
            await subscribe(store, f"{base}/bank", "bank", clock.now(), scope=BANK)
        ]
        async with delivering(store, clock):
            await eventually_async(
                lambda: len(rx.ok("cards")) == 1, "maintenance.started", timeout=10
            )
            now = clock.now()

            def cancel(st: State) -> Change:
                wc = ops.cancel_window(st.windows[WID], {"reason": "done"}, now=now, actor="ops")
                return Change(wc.cause, {WID: wc.window})

            await store.apply(now, cancel)
            await override(store, clock, affected=BANK)
            await eventually_async(
                lambda: len(rx.ok("bank")) == 1,
                "override.set",
                timeout=10,
                detail=lambda: repr(rx.received),
            )
            await eventually_async(
                lambda: len(rx.ok("cards")) == 2, "maintenance.cancelled", timeout=10
            )
            cursor = int(await real_redis.get(store.keys.notify_cursor))
            cards, bank = len(rx.of("cards")), len(rx.of("bank"))
    assert rx.unverified == []
    assert cursor == 4
    assert types(rx, "cards") == [
        ("msg_2", "maintenance.started"),
        ("msg_3", "maintenance.cancelled"),
    ]
    assert types(rx, "bank") == [("msg_4", "override.set")]
    assert (cards, bank) == (2, 1)
    started = rx.ok("cards")[0].doc
    assert started["timestamp"].startswith("2021-08-09T01:00:0")
    data = started["data"]
    assert data["seq"] == 2
    assert data["window"]["id"] == WID
    assert data["window"]["status"] == "in_progress"
    assert data["window"]["history"]
    assert data["status"]["state"] == "maintenance"
    assert data["status"]["seq"] == 2
    assert data["status"]["components"] == {"webcollect": {"credit_card": "under_maintenance"}}
    assert data["status"]["cause"]["type"] == "maintenance.started"
    bank_status = rx.ok("bank")[0].doc["data"]["status"]
    assert bank_status["components"] == {"atobarai": {"bank_transfer": "under_maintenance"}}
    assert rx.ok("bank")[0].doc["data"]["window"] is None


async def test_500s_are_retried_with_the_same_id_and_body(real_redis: Any, key_prefix: str) -> None:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(real_redis, key_prefix, clock)
    rx = Receiver()
    rx.plan("h", 500, 503)
    async with serving(rx) as base:
        rx.secrets["h"] = [await subscribe(store, f"{base}/h", "acme", clock.now())]
        async with delivering(store, clock):
            seq = await override(store, clock)
            done = await message(store, "acme", f"msg_{seq}", lambda m: m.state == "delivered")
    got = rx.of("h")
    assert [r.status for r in got] == [500, 503, 204]
    assert rx.unverified == []
    assert {r.id for r in got} == {f"msg_{seq}"}
    assert len({r.body for r in got}) == 1
    assert done.attempt == 3
    assert done.last is not None
    assert done.last.status_code == 204


async def test_a_refused_connection_is_retried_until_the_endpoint_is_up(
    real_redis: Any, key_prefix: str
) -> None:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(real_redis, key_prefix, clock)
    port = free_port()
    rx = Receiver()
    rx.secrets["h"] = [await subscribe(store, f"http://127.0.0.1:{port}/h", "acme", clock.now())]
    config = DeliveryConfig(retry_s=(0.2,) * 30, timeout_s=1.0, user_agent="t/1")
    async with delivering(store, clock, config):
        seq = await override(store, clock)
        failing = await message(store, "acme", f"msg_{seq}", lambda m: m.attempt >= 2 and m.last)
        assert failing.state == "pending"
        assert failing.last is not None
        assert failing.last.error is not None
        assert failing.last.error.startswith("cannot connect")
        async with serving(rx, port):
            await message(store, "acme", f"msg_{seq}", lambda m: m.state == "delivered")
    assert [r.id for r in rx.ok("h")] == [f"msg_{seq}"]
    assert rx.unverified == []


async def test_a_timeout_is_retried(real_redis: Any, key_prefix: str) -> None:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(real_redis, key_prefix, clock)
    rx = Receiver()
    rx.plan("h", HANG)
    async with serving(rx) as base:
        rx.secrets["h"] = [await subscribe(store, f"{base}/h", "acme", clock.now())]
        async with delivering(store, clock):
            seq = await override(store, clock)
            first = await message(store, "acme", f"msg_{seq}", lambda m: m.last is not None)
            done = await message(store, "acme", f"msg_{seq}", lambda m: m.state == "delivered")
    assert first.last is not None
    assert first.last.error == "timeout after 1 s"
    assert done.attempt == 2
    assert [r.id for r in rx.of("h")] == [f"msg_{seq}"] * 2


async def test_410_disables_the_subscription(real_redis: Any, key_prefix: str) -> None:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(real_redis, key_prefix, clock)
    notify = NotifyStore.of(store)
    rx = Receiver()
    rx.plan("h", 410)
    async with serving(rx) as base:
        rx.secrets["h"] = [await subscribe(store, f"{base}/h", "acme", clock.now())]
        async with delivering(store, clock):
            seq = await override(store, clock)
            gone = await message(store, "acme", f"msg_{seq}", lambda m: m.state == "failed")
            later = await clear(store, clock)

            async def fanned_out() -> bool:
                return int(await real_redis.get(store.keys.notify_cursor)) >= later

            await eventually_async(fanned_out, "the fan-out of the later event", timeout=10)
            sub = await notify.subscription("acme")
            listed = [m.id for m in await notify.deliveries("acme", 10)]
    assert gone.last is not None
    assert gone.last.status_code == 410
    assert not sub.active
    assert sub.disabled_reason is not None
    assert "410" in sub.disabled_reason
    assert listed == [f"msg_{seq}"]
    assert len(rx.of("h")) == 1


async def test_exhausted_messages_fail_and_replay(real_redis: Any, key_prefix: str) -> None:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(real_redis, key_prefix, clock)
    notify = NotifyStore.of(store)
    rx = Receiver()
    rx.plan("h", 500, 500, 500)
    config = DeliveryConfig(retry_s=(0.1, 0.1), timeout_s=1.0, user_agent="t/1")
    async with serving(rx) as base:
        rx.secrets["h"] = [await subscribe(store, f"{base}/h", "acme", clock.now())]
        async with delivering(store, clock, config):
            seq = await override(store, clock)
            failed = await message(store, "acme", f"msg_{seq}", lambda m: m.state == "failed")
            assert await notify.replay("acme", seq - 1, time.time(), limit=100) == (1, seq, seq)
            done = await message(store, "acme", f"msg_{seq}", lambda m: m.state == "delivered")
    assert failed.attempt == 3
    assert failed.last is not None
    assert failed.last.status_code == 500
    assert done.attempt == 1
    assert [r.status for r in rx.of("h")] == [500, 500, 500, 204]


async def test_a_hanging_endpoint_does_not_delay_other_subscribers(
    real_redis: Any, key_prefix: str
) -> None:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(real_redis, key_prefix, clock)
    rx = Receiver()
    rx.plan("slow", HANG, HANG, HANG)
    config = DeliveryConfig(retry_s=(30.0,), timeout_s=5.0, concurrency=4, user_agent="t/1")
    async with serving(rx) as base:
        rx.secrets["slow"] = [await subscribe(store, f"{base}/slow", "slow", clock.now())]
        rx.secrets["fast"] = [await subscribe(store, f"{base}/fast", "fast", clock.now())]
        async with delivering(store, clock, config):
            sent = time.time()
            await override(store, clock)
            await clear(store, clock)
            await override(store, clock, affected=CARDS)
            await eventually_async(
                lambda: len(rx.ok("fast")) == 3, "three messages to fast", timeout=4
            )
            took = max(r.at for r in rx.ok("fast")) - sent
            slow = len(rx.of("slow"))
    assert took < 2.0  # well inside the slow endpoint's 5 s timeout
    assert slow == 1  # one attempt in flight per subscription: the first still hangs
    assert [r.id for r in rx.ok("fast")] == ["msg_2", "msg_3", "msg_4"]


async def test_after_rotation_both_secrets_verify(real_redis: Any, key_prefix: str) -> None:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(real_redis, key_prefix, clock)
    rx = Receiver()
    async with serving(rx) as base:
        old = await subscribe(store, f"{base}/h", "acme", clock.now())
        sub = await NotifyStore.of(store).update_subscription(
            "acme", lambda s: rotated(s, time.time())[0]
        )
        new = sub.signing_secrets(time.time())[0]
        rx.secrets["h"] = [new, old]
        async with delivering(store, clock):
            await override(store, clock)
            await eventually_async(lambda: len(rx.ok("h")) == 1, "the message", timeout=10)
    [got] = rx.ok("h")
    assert got.verified_by == [0, 1]
    assert len(got.headers["webhook-signature"].split()) == 2


async def test_one_process_delivers_and_a_standby_delivers_alone(
    real_redis: Any, key_prefix: str
) -> None:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(real_redis, key_prefix, clock)
    rx = Receiver()
    async with serving(rx) as base:
        rx.secrets["h"] = [await subscribe(store, f"{base}/h", "acme", clock.now())]
        async with (
            delivering(store, clock),
            delivering(store, clock),
            delivering(store, clock, role="standby"),
        ):
            for _ in range(3):
                await override(store, clock)
                await clear(store, clock)
            await eventually_async(lambda: len(rx.ok("h")) == 6, "six messages", timeout=10)
        async with delivering(store, clock, role="standby"):  # every worker gone
            await override(store, clock)
            await eventually_async(
                lambda: len(rx.ok("h")) == 7, "the standby's delivery", timeout=10
            )
    ids = [r.id for r in rx.of("h")]
    assert ids == [f"msg_{s}" for s in range(2, 9)]  # each once, in order


async def test_fan_out_starts_at_the_subscription_and_is_fenced(
    any_redis: Any, key_prefix: str
) -> None:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(any_redis, key_prefix, clock)
    notify = NotifyStore.of(store)
    await override(store, clock)  # seq 2: before the subscription
    await subscribe(store, "https://merchant.example/h", "acme", clock.now())
    await clear(store, clock)  # seq 3
    await override(store, clock, affected=BANK)  # seq 4
    assert await notify.fan_out(time.time(), lambda _: 0.0, fence="not-the-leader") == 0
    assert int(await any_redis.get(store.keys.notify_cursor)) == 2
    assert await notify.fan_out(time.time(), lambda _: 0.0, fence=None) == 2
    assert await notify.fan_out(time.time(), lambda _: 0.0, fence=None) == 0
    assert [m.id for m in await notify.deliveries("acme", 10)] == ["msg_4", "msg_3"]
    msg = Message.model_validate_json((await notify.deliveries("acme", 10))[-1].model_dump_json())
    assert orjson.loads(msg.body)["type"] == "override.cleared"


async def test_a_stale_claim_changes_nothing(any_redis: Any, key_prefix: str) -> None:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(any_redis, key_prefix, clock)
    notify = NotifyStore.of(store)
    await subscribe(store, "https://merchant.example/h", "acme", clock.now())
    await override(store, clock)
    await notify.fan_out(time.time(), lambda _: 0.0, fence=None)
    now = time.time()
    first = await notify.claim("acme", now, 0.5, fence=None)
    assert first is not None
    assert first[1].attempt == 1
    assert await notify.claim("acme", now, 0.5, fence=None) is None  # claimed: not due
    again = await notify.claim("acme", now + 1, 0.5, fence=None)  # the lease ran out
    assert again is not None
    assert again[1].attempt == 2
    assert await notify.settle("acme", first[1], Outcome("delivered", 200), now, (1.0,)) is None
    assert (
        await notify.settle("acme", again[1], Outcome("delivered", 200), now, (1.0,)) == "delivered"
    )
    assert await notify.ready(now + 100, 10) == []


async def test_metrics_count_attempts_and_show_the_queue_and_the_lag(
    real_redis: Any, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deliveries, "GAUGE_S", 0.05)
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    store = await seeded(real_redis, key_prefix, clock)
    port = free_port()
    rx = Receiver()
    rx.plan("h", 500)
    counted = ("delivered", "retry")
    before = {
        r: metric_value("maintcast_notifications_total", {"kind": "webhook", "result": r})
        for r in counted
    }
    lags = metric_value("maintcast_notification_lag_seconds_count")
    rx.secrets["h"] = [await subscribe(store, f"http://127.0.0.1:{port}/h", "acme", clock.now())]
    config = DeliveryConfig(retry_s=(0.2,) * 20, timeout_s=1.0, user_agent="t/1")
    async with delivering(store, clock, config):
        await override(store, clock)
        await clear(store, clock)

        async def queued() -> bool:
            return metric_value("maintcast_notification_queue", {"kind": "webhook"}) == 2

        await eventually_async(queued, "two messages in the queue gauge", timeout=10)
        async with serving(rx, port):
            await eventually_async(lambda: len(rx.ok("h")) == 2, "both delivered", timeout=10)

            async def emptied() -> bool:
                return metric_value("maintcast_notification_queue", {"kind": "webhook"}) == 0

            await eventually_async(emptied, "an empty queue gauge", timeout=10)
    after = {
        r: metric_value("maintcast_notifications_total", {"kind": "webhook", "result": r})
        for r in counted
    }
    assert after["delivered"] - before["delivered"] == 2
    # refused attempts while down, and the one 500 once up
    assert after["retry"] - before["retry"] >= 3
    assert metric_value("maintcast_notification_lag_seconds_count") - lags == 2
    assert metric_value("maintcast_notification_queue", {"kind": "email"}) == 0
