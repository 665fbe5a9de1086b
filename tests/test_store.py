"""The store: atomic publish (status, event log and pub/sub share one seq), idempotent import,
time-driven transitions, one event per boundary under concurrency, replay and retention.

Each test runs on a real Redis and on fakeredis (``any_redis``), since the embedded store
must behave like the real one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import fakeredis
import orjson
import pytest
import redis.asyncio as aioredis
import yaml

from broadcaster.domain import Cause, Override
from broadcaster.keys import Keys
from broadcaster.store import Plan, State, Store
from broadcaster.validation import Schedule, parse_schedule
from tests.support import DEFAULTS, EXAMPLE, eventually_async, jst, make_store

WINDOW_ID = "webcollect-2021-08"


def example(now: datetime, edit: Any = None) -> Schedule:
    """The example schedule file, optionally with its window edited as YAML data first."""
    text = EXAMPLE.read_text()
    if edit is not None:
        doc = yaml.safe_load(text)
        edit(doc["windows"][0])
        text = yaml.safe_dump(doc, allow_unicode=True)
    return parse_schedule(text, source="example", defaults=DEFAULTS, now=now)


async def stored_status(store: Store) -> dict[str, Any]:
    raw = await store.redis.get(store.keys.status)
    assert raw is not None
    return orjson.loads(raw)  # type: ignore[no-any-return]


async def imported(client: Any, prefix: str, at: datetime, **kw: Any) -> Store:
    """A store under ``prefix`` holding the example, imported at ``at`` (seq 1)."""
    store = make_store(client, prefix, **kw)
    docs = await store.import_schedule(example(at), at)
    assert [d["seq"] for d in docs] == [1]
    return store


# -- import: one event, idempotent, one seq everywhere ----------------------------------


async def test_import_publishes_once_and_seq_agrees_everywhere(
    any_redis: Any, key_prefix: str
) -> None:
    store = make_store(any_redis, key_prefix)
    keys = Keys(key_prefix)
    now = jst(2021, 8, 9, 0, 59)
    pubsub: Any = any_redis.pubsub()
    try:
        await pubsub.subscribe(keys.channel)

        async def next_message(kind: str) -> dict[str, Any] | None:
            m: dict[str, Any] | None = await pubsub.get_message(timeout=1.0)
            return m if m is not None and m["type"] == kind else None

        # the subscription is live before anything is published
        await eventually_async(lambda: next_message("subscribe"), "the subscription", interval=0)

        docs = await store.import_schedule(example(now), now)
        assert len(docs) == 1
        doc = docs[0]
        assert doc["seq"] == 1
        assert doc["cause"]["type"] == "maintenance.scheduled"
        assert doc["cause"]["window_id"] == WINDOW_ID
        assert doc["state"] == "normal"
        assert [w["id"] for w in doc["upcoming"]] == [WINDOW_ID]

        # the same file again (also a little later): nothing changed, nothing published
        assert await store.import_schedule(example(now), now) == []
        later = now + timedelta(seconds=30)
        assert await store.import_schedule(example(later), later) == []

        assert int(await any_redis.get(keys.seq)) == 1
        status = await stored_status(store)
        assert status["seq"] == 1
        assert status == doc

        rows = await any_redis.xrange(keys.events)
        assert [r[0] for r in rows] == [b"1-0"]
        entry = orjson.loads(rows[0][1][b"e"])
        assert entry["seq"] == 1
        assert entry["type"] == "maintenance.scheduled"
        assert entry["window_id"] == WINDOW_ID
        assert entry["state"] == "normal"
        assert orjson.loads(rows[0][1][b"s"])["seq"] == 1

        m = await eventually_async(lambda: next_message("message"), "the message", interval=0)
        assert orjson.loads(m["data"])["seq"] == 1
        # and only one message was sent
        assert await pubsub.get_message(timeout=0.2) is None
    finally:
        await pubsub.aclose()


# -- time-driven transitions -------------------------------------------------------------


async def test_reconcile_starts_once_then_ends(any_redis: Any, key_prefix: str) -> None:
    store = await imported(any_redis, key_prefix, jst(2021, 8, 9, 0, 59))
    assert await store.reconcile(jst(2021, 8, 9, 0, 59, 59)) == []

    started = await store.reconcile(jst(2021, 8, 9, 1, 0))
    assert [(d["seq"], d["cause"]["type"], d["cause"]["window_id"]) for d in started] == [
        (2, "maintenance.started", WINDOW_ID)
    ]
    doc = started[0]
    assert doc["state"] == "maintenance"
    assert doc["until"] == "2021-08-09T06:00:00+09:00"
    assert doc["as_of"].startswith("2021-08-09T01:00:00")
    assert doc["components"]["webcollect"]["credit_card"] == "under_maintenance"
    assert doc["components"]["atobarai"]["bank_transfer"] == "operational"
    assert [w["id"] for w in doc["active"]] == [WINDOW_ID]

    assert await store.reconcile(jst(2021, 8, 9, 1, 0, 1)) == []
    assert (await stored_status(store))["seq"] == 2

    ended = await store.reconcile(jst(2021, 8, 9, 6, 0))
    assert [(d["seq"], d["cause"]["type"], d["state"]) for d in ended] == [
        (3, "maintenance.ended", "normal")
    ]
    assert ended[0]["active"] == []
    assert ended[0]["until"] is None
    assert await store.reconcile(jst(2021, 8, 9, 6, 0, 1)) == []
    assert [e["type"] for e in await store.events(0, 100)] == [
        "maintenance.scheduled",
        "maintenance.started",
        "maintenance.ended",
    ]


async def test_late_boundary_is_reconciled(any_redis: Any, key_prefix: str) -> None:
    """Published more than grace_s after the boundary: the type says nobody made it in time."""
    store = await imported(any_redis, key_prefix, jst(2021, 8, 9, 0, 59))
    assert (await stored_status(store))["state"] == "normal"
    docs = await store.reconcile(jst(2021, 8, 9, 2, 0))
    assert len(docs) == 1
    assert docs[0]["cause"] == {
        "type": "reconciled",
        "window_id": WINDOW_ID,
        "actor": None,
        "reason": None,
    }
    assert docs[0]["state"] == "maintenance"


async def test_boundary_within_grace_keeps_its_type(any_redis: Any, key_prefix: str) -> None:
    store = await imported(any_redis, key_prefix, jst(2021, 8, 9, 0, 59))
    docs = await store.reconcile(jst(2021, 8, 9, 1, 0, 4))  # 4 s late < grace_s = 5
    assert [d["cause"]["type"] for d in docs] == ["maintenance.started"]


@pytest.fixture(params=["real", "fake"])
async def two_clients(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, Any]]:
    """Two independent clients of one Redis (two connections, as two processes would have)."""
    if request.param == "real":
        url = request.getfixturevalue("redis_url")
        a: Any = aioredis.Redis.from_url(url)
        b: Any = aioredis.Redis.from_url(url)
    else:
        server = fakeredis.FakeServer()
        a = fakeredis.FakeAsyncRedis(server=server)
        b = fakeredis.FakeAsyncRedis(server=server)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


async def test_concurrent_publishers_of_one_boundary_publish_once(
    two_clients: tuple[Any, Any],
) -> None:
    a, b = two_clients
    boundary = jst(2021, 8, 9, 1, 0)
    for _ in range(20):
        prefix = f"t{uuid.uuid4().hex[:10]}"
        s1 = await imported(a, prefix, jst(2021, 8, 9, 0, 59))
        s2 = make_store(b, prefix)
        async with asyncio.timeout(10):
            r1, r2 = await asyncio.gather(s1.reconcile(boundary), s2.reconcile(boundary))
        published = r1 + r2
        assert [(d["seq"], d["cause"]["type"]) for d in published] == [(2, "maintenance.started")]
        assert int(await a.get(Keys(prefix).seq)) == 2
        assert await a.xlen(Keys(prefix).events) == 2


# -- re-import with changes --------------------------------------------------------------


async def test_reimport_with_new_times_is_rescheduled(any_redis: Any, key_prefix: str) -> None:
    now = jst(2021, 7, 1, 12, 0)
    store = await imported(any_redis, key_prefix, now)

    def move(w: dict[str, Any]) -> None:
        w["starts_at"], w["ends_at"] = "2021-08-16T01:00", "2021-08-16T06:00"

    later = jst(2021, 7, 2, 9, 0)
    docs = await store.import_schedule(example(later, move), later)
    assert [(d["seq"], d["cause"]["type"], d["cause"]["window_id"]) for d in docs] == [
        (2, "maintenance.rescheduled", WINDOW_ID)
    ]
    assert docs[0]["upcoming"][0]["starts_at"] == "2021-08-16T01:00:00+09:00"

    window = (await store.windows())[WINDOW_ID]
    history = [(h.change, h.from_, h.to) for h in window.history]
    assert len(history) == 2
    # the file's own entry (the 2021 postponement) is kept, first
    first = window.history[0]
    assert first.change == "rescheduled"
    assert first.reason == "延期 (postponed)"
    assert first.from_ is not None
    assert first.from_.starts_at == jst(2021, 6, 14, 1, 0)
    # the new entry records this change, from -> to
    new = window.history[1]
    assert new.change == "rescheduled"
    assert new.at == later
    assert new.from_ is not None
    assert new.to is not None
    assert (new.from_.starts_at, new.from_.ends_at) == (jst(2021, 8, 9, 1), jst(2021, 8, 9, 6))
    assert (new.to.starts_at, new.to.ends_at) == (jst(2021, 8, 16, 1), jst(2021, 8, 16, 6))
    assert window.reschedules() == 2

    # importing the moved file again changes nothing
    assert await store.import_schedule(example(later, move), later) == []


async def test_reimport_with_new_title_is_updated(any_redis: Any, key_prefix: str) -> None:
    now = jst(2021, 7, 1, 12, 0)
    store = await imported(any_redis, key_prefix, now)

    title = "Kuroneko Web Collect maintenance (3-D Secure 2.0)"

    def retitle(w: dict[str, Any]) -> None:
        w["title"]["en"] = title

    docs = await store.import_schedule(example(now, retitle), now)
    assert [(d["seq"], d["cause"]["type"]) for d in docs] == [(2, "maintenance.updated")]
    assert docs[0]["upcoming"][0]["title"]["en"] == title
    window = (await store.windows())[WINDOW_ID]
    assert len(window.history) == 1  # no reschedule was recorded
    assert (window.starts_at, window.ends_at) == (jst(2021, 8, 9, 1), jst(2021, 8, 9, 6))


async def test_reimport_cancelled_is_cancelled(any_redis: Any, key_prefix: str) -> None:
    now = jst(2021, 7, 1, 12, 0)
    store = await imported(any_redis, key_prefix, now)

    def cancel(w: dict[str, Any]) -> None:
        w["status"] = "cancelled"

    docs = await store.import_schedule(example(now, cancel), now)
    assert [(d["seq"], d["cause"]["type"], d["cause"]["window_id"]) for d in docs] == [
        (2, "maintenance.cancelled", WINDOW_ID)
    ]
    assert docs[0]["upcoming"] == []
    assert (await store.windows())[WINDOW_ID].cancelled
    # a cancelled window never starts
    assert await store.reconcile(jst(2021, 8, 9, 1, 0)) == []
    assert (await stored_status(store))["state"] == "normal"


async def test_import_publishes_a_due_start_first(any_redis: Any, key_prefix: str) -> None:
    """ARCHITECTURE.md "The publish": the log never loses a maintenance.started."""
    store = await imported(any_redis, key_prefix, jst(2021, 8, 9, 0, 59))

    def retitle(w: dict[str, Any]) -> None:
        w["title"]["en"] = "changed"

    at = jst(2021, 8, 9, 1, 0, 1)
    docs = await store.import_schedule(example(at, retitle), at)
    assert [(d["seq"], d["cause"]["type"]) for d in docs] == [
        (2, "maintenance.started"),
        (3, "maintenance.updated"),
    ]


# -- replay and the event log ------------------------------------------------------------


async def publish_titles(store: Store, n: int, at: datetime) -> None:
    """Publish ``n`` maintenance.updated events (one retitle each)."""
    for i in range(n):

        def retitle(w: dict[str, Any], i: int = i) -> None:
            w["title"]["en"] = f"title {i}"

        assert len(await store.import_schedule(example(at, retitle), at)) == 1


async def test_replay_and_events(any_redis: Any, key_prefix: str) -> None:
    now = jst(2021, 7, 1, 12, 0)
    store = await imported(any_redis, key_prefix, now)
    await publish_titles(store, 4, now)  # seq 2..5

    assert await store.replay(5) == []
    assert await store.replay(6) is None  # above the current seq: the store was reset
    assert await store.replay(-1) is None
    replayed = await store.replay(2)
    assert replayed is not None
    assert [orjson.loads(p)["seq"] for p in replayed] == [3, 4, 5]
    assert [orjson.loads(p)["upcoming"][0]["title"]["en"] for p in replayed] == [
        "title 1",
        "title 2",
        "title 3",
    ]
    full = await store.replay(0)
    assert full is not None
    assert [orjson.loads(p)["seq"] for p in full] == [1, 2, 3, 4, 5]

    events = await store.events(0, 3)
    assert [e["seq"] for e in events] == [1, 2, 3]  # oldest first, limited
    assert [e["type"] for e in events] == [
        "maintenance.scheduled",
        "maintenance.updated",
        "maintenance.updated",
    ]
    assert set(events[0]) == {"seq", "at", "type", "window_id", "actor", "reason", "state"}
    assert events[0]["actor"] == "import"
    assert [e["seq"] for e in await store.events(3, 100)] == [4, 5]
    assert await store.events(5, 100) == []


async def test_replay_beyond_retention_is_none(any_redis: Any, key_prefix: str) -> None:
    now = jst(2021, 7, 1, 12, 0)
    store = await imported(any_redis, key_prefix, now, retention=10)
    await publish_titles(store, 14, now)  # seq 2..15; only 6..15 are kept

    assert await any_redis.xlen(store.keys.events) == 10
    assert await store.replay(0) is None
    assert await store.replay(4) is None  # seq 5 was trimmed
    kept = await store.replay(5)
    assert kept is not None
    assert [orjson.loads(p)["seq"] for p in kept] == list(range(6, 16))
    assert await store.replay(15) == []
    assert [e["seq"] for e in await store.events(0, 3)] == [6, 7, 8]


# -- override expiry ---------------------------------------------------------------------


async def test_override_expires(any_redis: Any, key_prefix: str) -> None:
    now = jst(2021, 7, 1, 12, 0)
    store = await imported(any_redis, key_prefix, now)
    override = Override(
        mode="maintenance",
        reason="incident 42",
        actor="ops",
        set_at=now,
        expires_at=now + timedelta(minutes=30),
    )

    def set_override(st: State) -> Plan:
        after = State(st.catalog, st.windows, override, None, 0)
        return Plan(
            override=override,
            set_override=True,
            events=[(Cause("override.set", None, "ops", "incident 42"), after)],
        )

    docs = await store.transact(now, set_override)
    assert [(d["seq"], d["cause"]["type"], d["state"]) for d in docs] == [
        (2, "override.set", "maintenance")
    ]
    assert docs[0]["until"] == "2021-07-01T12:30:00+09:00"
    assert await any_redis.exists(store.keys.override)

    assert await store.reconcile(now + timedelta(minutes=29)) == []
    assert await any_redis.exists(store.keys.override)

    expired = await store.reconcile(now + timedelta(minutes=30))
    assert [(d["seq"], d["cause"]["type"], d["state"]) for d in expired] == [
        (3, "override.expired", "normal")
    ]
    assert expired[0]["override"] is None
    assert not await any_redis.exists(store.keys.override)
    assert (await store.state()).override is None
    assert await store.reconcile(now + timedelta(minutes=31)) == []


async def test_sub_millisecond_instant_does_not_republish(any_redis: Any, key_prefix: str) -> None:
    """Wire instants have millisecond precision; a stored status must compare equal to itself
    recomputed from stored inputs, or every reconcile would publish a spurious event."""
    now = jst(2021, 7, 1, 12, 0)
    store = await imported(any_redis, key_prefix, now)
    override = Override(
        mode="maintenance",
        reason="incident 43",
        actor="ops",
        set_at=now,
        expires_at=now + timedelta(minutes=30, microseconds=500),
    )

    def set_override(st: State) -> Plan:
        after = State(st.catalog, st.windows, override, None, 0)
        return Plan(
            override=override,
            set_override=True,
            events=[(Cause("override.set", None, "ops", "incident 43"), after)],
        )

    assert len(await store.transact(now, set_override)) == 1
    assert (await stored_status(store))["override"]["expires_at"] == "2021-07-01T12:30:00+09:00"
    assert await store.reconcile(now + timedelta(minutes=1)) == []
    expired = await store.reconcile(now + timedelta(minutes=30, seconds=1))
    assert [d["cause"]["type"] for d in expired] == ["override.expired"]


async def test_a_long_gap_is_a_resync_not_a_flood(fake_redis: Any, key_prefix: str) -> None:
    """A client away for more than MAX_REPLAY events gets one resync, not thousands."""
    from broadcaster.domain import Cause
    from broadcaster.store import MAX_REPLAY, Change

    store = make_store(fake_redis, key_prefix)
    now = jst(2021, 7, 1)
    await store.import_schedule(example(now), now)
    for _ in range(MAX_REPLAY + 1):
        await store.apply(now, lambda st: Change(Cause("maintenance.updated", None, "t")))
    assert await store.replay(0) is None
    assert await store.replay(1) is None  # 501 behind
    replayed = await store.replay(2)  # exactly MAX_REPLAY behind
    assert replayed is not None
    assert len(replayed) == MAX_REPLAY


async def test_a_reconcile_older_than_the_stored_status_publishes_nothing(
    any_redis: Any, key_prefix: str
) -> None:
    """A job whose ``now`` was read before a slow round trip must not move the status back
    in time (found by bench/soak.py after a Redis freeze)."""
    store = make_store(any_redis, key_prefix)
    now = jst(2021, 8, 9, 0, 59)
    await store.import_schedule(example(now), now)
    assert len(await store.reconcile(jst(2021, 8, 9, 6, 1))) == 1  # the window is over
    stored = await store.status(jst(2021, 8, 9, 6, 1))
    assert await store.reconcile(jst(2021, 8, 9, 2)) == []
    assert (await store.status(jst(2021, 8, 9, 6, 1)))["seq"] == stored["seq"]


async def test_every_event_of_an_import_carries_the_whole_import(
    fake_redis: Any, key_prefix: str
) -> None:
    """An import is one transaction: each of its events carries the status of the whole
    calendar, so no reader sees a window in progress as normal because the events of the
    windows listed before it came first (bench/soak.py finding H)."""
    store = make_store(fake_redis, key_prefix)
    now = jst(2021, 8, 9, 2)  # inside the 2021 window, which the file lists last

    doc = yaml.safe_load(EXAMPLE.read_text())
    earlier = dict(doc["windows"][0], id="earlier", title={"en": "earlier"}, history=[])
    earlier.update(starts_at="2021-07-01T01:00", ends_at="2021-07-01T02:00")
    doc["windows"].insert(0, earlier)
    text = yaml.safe_dump(doc, allow_unicode=True)
    schedule = parse_schedule(text, source="example", defaults=DEFAULTS, now=now)
    docs = await store.import_schedule(schedule, now)
    assert [d["cause"]["window_id"] for d in docs] == ["earlier", "webcollect-2021-08"]
    assert [d["state"] for d in docs] == ["maintenance", "maintenance"]
