"""The worker: startup reconcile, boundary jobs (late, rehearsed, re-planned), heartbeat.

Scheduling and pub/sub re-planning run against a real Redis; the heartbeat check is quick
enough for fakeredis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
import yaml

from broadcaster.clock import RehearsalClock
from broadcaster.codec import status_instant
from broadcaster.store import Store
from broadcaster.validation import Schedule, parse_schedule
from tests.support import DEFAULTS, EXAMPLE, JST, eventually_async, jst, make_store
from worker.scheduler import Worker, running_worker

WINDOW_ID = "webcollect-2021-08"
Doc = dict[str, Any]


def example(now: datetime, extra: list[dict[str, Any]] | None = None) -> Schedule:
    """The example schedule file, with ``extra`` windows appended."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["windows"].extend(extra or [])
    text = yaml.safe_dump(doc, allow_unicode=True)
    return parse_schedule(text, source="example", defaults=DEFAULTS, now=now)


async def imported(client: Any, prefix: str, at: datetime) -> Store:
    """A store holding the example, imported at ``at`` (seq 1, status normal)."""
    store = make_store(client, prefix)
    docs = await store.import_schedule(example(at), at)
    assert [(d["seq"], d["state"]) for d in docs] == [(1, "normal")]
    return store


async def status_when(store: Store, ok: Callable[[Doc], bool], within_s: float) -> Doc:
    """The stored status once ``ok`` holds for it; AssertionError after ``within_s`` s."""

    async def stored() -> Doc | None:
        raw = await store.redis.get(store.keys.status)
        doc: Doc | None = None if raw is None else orjson.loads(raw)
        return doc if doc is not None and ok(doc) else None

    return await eventually_async(
        stored, f"a stored status {ok.__name__}", timeout=within_s, interval=0.02
    )


@contextlib.asynccontextmanager
async def a_worker(
    store: Store, clock: RehearsalClock, within_s: float = 15.0
) -> AsyncIterator[Worker]:
    """``running_worker``, with start, the block and stop bounded by ``within_s`` seconds;
    afterwards nothing of the worker is left running."""
    async with asyncio.timeout(within_s), running_worker(store, clock) as w:
        yield w
    assert not w.scheduler.running
    assert w._listener is not None
    assert w._listener.done()


def in_maintenance(doc: Doc) -> bool:
    return bool(doc["state"] == "maintenance")


async def test_restart_inside_a_window_reconciles(real_redis: Any, key_prefix: str) -> None:
    store = await imported(real_redis, key_prefix, jst(2021, 8, 9, 0, 59))
    async with a_worker(store, RehearsalClock(jst(2021, 8, 9, 2, 0))):
        doc = await status_when(store, in_maintenance, 2.0)
        assert doc["seq"] == 2
        assert doc["cause"]["type"] == "reconciled"
        assert doc["cause"]["window_id"] == WINDOW_ID
        assert doc["until"] == "2021-08-09T06:00:00+09:00"


async def test_startup_reconcile_covers_a_boundary_just_missed(
    real_redis: Any, key_prefix: str
) -> None:
    """The boundary passed 3 s before the worker came up: within grace, so it keeps its type."""
    store = await imported(real_redis, key_prefix, jst(2021, 8, 9, 0, 59))
    async with a_worker(store, RehearsalClock(jst(2021, 8, 9, 1, 0, 3))):
        doc = await status_when(store, in_maintenance, 2.0)
        assert (doc["seq"], doc["cause"]["type"]) == (2, "maintenance.started")
        assert doc["cause"]["window_id"] == WINDOW_ID


async def test_late_boundary_job_still_runs(real_redis: Any, key_prefix: str) -> None:
    """A DateTrigger job that wakes later than APScheduler's default 1 s misfire grace runs."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 59))
    store = await imported(real_redis, key_prefix, clock.now())
    async with a_worker(store, clock) as w:
        assert (await store.status(clock.now()))["state"] == "normal"
        # start() returns at once; the listener plans on its first subscription
        await eventually_async(
            lambda: any(j.id.startswith("boundary:") for j in w.scheduler.get_jobs()),
            "the boundary jobs planned",
            timeout=3,
            interval=0.01,
        )
        # Deliberately block the event loop (not asyncio.sleep): it simulates a process that
        # wakes up late (GC pause, overloaded host), so the 01:00 job, due in ~1 s, is only
        # seen ~1.5 s after its run time, past APScheduler's default misfire_grace_time of 1 s.
        time.sleep(2.5)  # noqa: ASYNC251 -- the blocked loop is the point
        doc = await status_when(store, in_maintenance, 3.0)
        assert (doc["seq"], doc["cause"]["type"]) == (2, "maintenance.started")
        # published late (after the loop woke), but within the 5 s publish grace
        late_by = (status_instant(doc) - jst(2021, 8, 9, 1, 0)).total_seconds()
        assert 1.0 < late_by < 5.0


async def test_rehearsal_publishes_the_start_on_time(real_redis: Any, key_prefix: str) -> None:
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 58))
    store = await imported(real_redis, key_prefix, clock.now())
    async with a_worker(store, clock):
        doc = await status_when(store, in_maintenance, 5.0)
    assert (doc["seq"], doc["cause"]["type"]) == (2, "maintenance.started")
    assert doc["cause"]["window_id"] == WINDOW_ID
    as_of = status_instant(doc)
    assert jst(2021, 8, 9, 1, 0) <= as_of < jst(2021, 8, 9, 1, 0, 1)
    assert doc["as_of"].startswith("2021-08-09T01:00:00")


async def test_replans_when_a_window_is_imported(real_redis: Any, key_prefix: str) -> None:
    clock = RehearsalClock(jst(2021, 7, 1, 12, 0))
    store = await imported(real_redis, key_prefix, clock.now())
    async with a_worker(store, clock):
        starts = clock.now() + timedelta(seconds=1)
        extra = {
            "id": "atobarai-extra",
            "title": {"ja": "臨時メンテナンス", "en": "Unscheduled maintenance"},
            "starts_at": starts.astimezone(JST).isoformat(),
            "ends_at": (starts + timedelta(hours=1)).astimezone(JST).isoformat(),
            "timezone": "Asia/Tokyo",
            "affected": {"atobarai": ["bank_transfer"]},
        }
        now = clock.now()
        docs = await store.import_schedule(example(now, [extra]), now)
        assert [(d["seq"], d["cause"]["type"]) for d in docs] == [(2, "maintenance.scheduled")]

        doc = await status_when(store, in_maintenance, 3.0)
    assert (doc["seq"], doc["cause"]["type"]) == (3, "maintenance.started")
    assert doc["cause"]["window_id"] == "atobarai-extra"
    assert doc["components"]["atobarai"]["bank_transfer"] == "under_maintenance"
    assert doc["components"]["webcollect"]["credit_card"] == "operational"
    # published at or just after the start (compared at the wire's millisecond precision)
    window_start = status_instant({"as_of": doc["active"][0]["starts_at"]})
    assert 0 <= (status_instant(doc) - window_start).total_seconds() < 1.0


async def test_heartbeat_while_running(fake_redis: Any, key_prefix: str) -> None:
    store = await imported(fake_redis, key_prefix, jst(2021, 7, 1, 12, 0))
    assert not await store.worker_alive()
    async with a_worker(store, RehearsalClock(jst(2021, 7, 1, 12, 0))):
        # the first heartbeat is a job run at once
        await eventually_async(store.worker_alive, "a heartbeat", timeout=3, interval=0.01)
        raw = await fake_redis.get(store.keys.worker_heartbeat)
        worker_id, at = raw.decode().split(" ")
        assert ":" in worker_id
        assert at.startswith("2021-07-01T03:00")


async def test_replan_keeps_a_due_job_that_has_not_run(fake_redis: Any, key_prefix: str) -> None:
    """A re-plan running just as a boundary passes must not drop that boundary's job
    (found by bench/soak.py: the switch was then left to the 30 s safety tick)."""

    class Clock:
        speed = 1.0
        at = jst(2021, 8, 9, 0, 59, 59)

        def now(self) -> datetime:
            return self.at

        def wall_time_of(self, instant: datetime) -> datetime:
            return instant + timedelta(days=365 * 100)  # far away: jobs never fire here

    clock = Clock()
    store = await imported(fake_redis, key_prefix, clock.now())
    w = Worker(store, clock)
    w.scheduler.start(paused=True)
    try:
        await w.plan()
        job = f"boundary:{jst(2021, 8, 9, 1).isoformat()}"
        assert w.scheduler.get_job(job) is not None
        clock.at = jst(2021, 8, 9, 1, 0, 0, 1000)  # the boundary passed, its job not run yet
        await w.plan()
        assert w.scheduler.get_job(job) is not None
    finally:
        w.scheduler.shutdown(wait=False)
        await eventually_async(lambda: not w.scheduler.running, "the scheduler to stop", interval=0)


async def test_a_clock_behind_the_store_gives_the_lead_up(
    real_redis: Any, key_prefix: str, caplog: Any
) -> None:
    """A publisher whose clock reads an hour before the stored status would hold the lock
    and publish nothing: it resigns and stays out, so a process with a fit clock leads."""
    store = await imported(real_redis, key_prefix, jst(2021, 8, 9, 0, 59))
    behind = RehearsalClock(jst(2021, 8, 8, 23, 59))
    with caplog.at_level("ERROR", logger="worker.scheduler"):
        async with a_worker(store, behind) as w:
            await eventually_async(lambda: w._benched_until, "the worker benched", interval=0.02)
            assert not w.leader
            assert await real_redis.get(store.keys.worker_leader) is None
            async with a_worker(store, RehearsalClock(jst(2021, 8, 9, 0, 59, 59))) as fit:
                doc = await status_when(store, in_maintenance, 5.0)
                assert fit.leader
                assert doc["cause"]["type"] == "maintenance.started"
    assert any("ahead of this process's clock" in r.getMessage() for r in caplog.records)


async def test_a_skewed_host_clock_does_not_lead(
    fake_redis: Any, key_prefix: str, monkeypatch: Any
) -> None:
    """A host clock off Redis's by more than MAX_CLOCK_SKEW_S (broken NTP) never leads."""
    store = await imported(fake_redis, key_prefix, jst(2021, 8, 9, 0, 59))

    async def skewed() -> float:
        return 600.0

    monkeypatch.setattr(store, "clock_skew_s", skewed)
    async with a_worker(store, RehearsalClock(jst(2021, 8, 9, 0, 59))) as w:
        await eventually_async(lambda: w._benched_until, "the worker benched", interval=0.02)
        assert not w.leader
        assert await fake_redis.get(store.keys.worker_leader) is None
