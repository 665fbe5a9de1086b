"""A recurring series rehearsed on a real Redis by a ``maintcast worker`` process under a
rehearsal clock, the worker SIGKILLed twice (between two occurrences, and during one, left
down past its end) and restarted: every occurrence's start and end is published exactly
once, and so is every occurrence the top-up adds."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from broadcaster.clock import RehearsalClock
from broadcaster.validation import parse_schedule
from tests.support import DEFAULTS, Proc, env_for, eventually_async, jst, make_store, processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

SPEED = 7200.0  # one rehearsal hour per half real second
START = jst(2021, 8, 12, 0)  # the clock reads this at the shared wall instant
SID = "nightly"
OCC = [f"{SID}--2021081{d}" for d in (2, 3, 4)]
TOPPED = [f"{SID}--2021{md}" for md in ("1120", "1121", "1122")]  # the 101st to the 103rd
SCHEDULE = f"""
catalog:
  services:
    webcollect: {{methods: {{credit_card: {{}}, cvs_online: {{}}}}}}
windows:
  - id: {SID}
    title: {{ja: 定期メンテナンス, en: Nightly maintenance}}
    starts_at: "2021-08-12T06:00"
    ends_at: "2021-08-12T18:00"
    timezone: Asia/Tokyo
    announce_at: "2021-08-12T00:00"
    affected: {{webcollect: ["*"]}}
    recurrence: {{rrule: "FREQ=DAILY"}}
"""


def transitions(log: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    """``(window_id, state)`` of each event-log entry that changed the state."""
    return [
        (e["window_id"], e["state"]) for p, e in itertools.pairwise(log) if e["state"] != p["state"]
    ]


def real_s(hours: float) -> float:
    return hours * 3600 / SPEED


async def test_a_series_survives_worker_kills_with_each_boundary_once(
    redis_url: str, real_redis: Any, tmp_path: Path
) -> None:
    prefix = f"series{uuid.uuid4().hex[:10]}"
    store = make_store(real_redis, prefix, grace_s=5.0 * SPEED)
    wall = time.time() + 4.0  # the worker starts before the rehearsal's first instant
    clock = RehearsalClock(START, SPEED, real_start=wall)
    env = env_for(MAINTCAST_REDIS_URL=redis_url, MAINTCAST_KEY_PREFIX=prefix)
    args = [
        "worker",
        "--clock",
        START.isoformat(),
        "--speed",
        str(SPEED),
        "--clock-wall",
        str(wall),
    ]

    async def events() -> list[dict[str, Any]]:
        return await store.events(0, 1000)

    def when(hours: float) -> float:
        """Real seconds from now until the clock reads START + ``hours``."""
        return (clock.wall_time_of(START + timedelta(hours=hours)).timestamp()) - time.time()

    async def leads() -> bool:
        return bool(await real_redis.get(store.keys.worker_leader))

    async def saw(window_id: str, state: str) -> bool:
        """Whether the state became ``state`` by an event naming ``window_id``."""
        return (window_id, state) in transitions(await events())

    with processes() as procs:
        worker = Proc("worker", args, env, tmp_path)
        procs.append(worker)
        await eventually_async(leads, "the worker leads", timeout=15, detail=worker.tail)
        await eventually_async(lambda: when(0) <= 0, "the rehearsal's start", timeout=10)
        sched = parse_schedule(SCHEDULE, source="s.yaml", defaults=DEFAULTS, now=clock.now())
        assert [d["cause"]["type"] for d in await store.import_schedule(sched, clock.now())] == [
            "maintenance.scheduled"
        ]
        assert len([w for w in (await store.windows()).values() if w.series_id == SID]) == 100

        # 1. killed between the first and the second occurrence, restarted at once
        await eventually_async(
            lambda: saw(OCC[0], "normal") if when(18) < 0 else False,
            "the first occurrence's end",
            timeout=real_s(18) + 15,
            detail=worker.tail,
        )
        worker.kill()
        worker.start()
        # 2. killed during the second occurrence, left down past its end
        await eventually_async(
            lambda: saw(OCC[1], "maintenance"),
            "the second occurrence's start",
            timeout=real_s(12) + 15,
            detail=worker.tail,
        )
        worker.kill()
        await eventually_async(lambda: when(42) < 0, "the second occurrence's end", timeout=20)
        worker.start()
        await eventually_async(
            lambda: saw(OCC[2], "normal"),
            "the third occurrence's end",
            timeout=real_s(24) + 20,
            detail=worker.tail,
        )
        assert worker.alive(), worker.tail()

    log = await events()
    info = "\n".join(f"{e['seq']} {e['type']} {e['window_id']} {e['state']}" for e in log)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1)), info
    # every transition of the state names the occurrence that made it, once each
    assert transitions(log) == [
        (OCC[0], "maintenance"),
        (OCC[0], "normal"),
        (OCC[1], "maintenance"),
        (OCC[1], "normal"),
        (OCC[2], "maintenance"),
        (OCC[2], "normal"),
    ], info
    # the worker ran at the first and third occurrence's edges: published on time
    kinds = {(e["type"], e["window_id"]) for e in log}
    for wid in (OCC[0], OCC[2]):
        assert {("maintenance.started", wid), ("maintenance.ended", wid)} <= kinds, info
    # each occurrence that came within reach once, as its predecessor ended
    scheduled = [e["window_id"] for e in log if e["type"] == "maintenance.scheduled"]
    assert scheduled == [SID, *TOPPED], info
    # each announcement once (the first came with the import)
    announced = [e["window_id"] for e in log if e["type"] == "maintenance.announced"]
    assert announced == [w for w in announced if w in OCC[1:]], info
    assert len(set(announced)) == len(announced), info
