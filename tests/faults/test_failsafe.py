"""Nothing single may hold payments down: real processes, real redis-server.

Every worker killed or frozen across a boundary (API processes publish as standbys), a lone
leader frozen past its lock's TTL (it publishes at once on waking, not at the 30 s tick),
Redis flushed with and without ``MAINTCAST_SCHEDULE_FILE``, and the 2021 notice rehearsed on
Redis with one worker and two API processes sharing one rehearsal clock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis

from tests.faults.scenario import leader_of, pid_of, worker_leader, write_schedule
from tests.support import (
    EXAMPLE,
    Client,
    Proc,
    client_of,
    env_for,
    eventually_async,
    free_port,
    free_ports,
    processes,
    run_cli,
    start_redis,
    tails,
    wait_ready,
)

pytestmark = pytest.mark.slow

GRACE_S = 5.0
"""The contract's bound: a boundary is published within the misfire grace (real seconds)."""


def types_of(client: Client) -> list[tuple[int, str | None, str]]:
    return client.summary()


@asynccontextmanager
async def worker_and_api(
    env: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[list[Proc], str, httpx.AsyncClient]]:
    """One `maintcast worker` and one `maintcast api`, ready; yields them, the API's base URL
    and an HTTP client."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes() as procs:
        procs.append(Proc("worker", ["worker"], env, tmp_path))
        procs.append(Proc("api", ["api", "--port", str(port)], env, tmp_path))
        async with httpx.AsyncClient(timeout=3) as http:
            await wait_ready(http, base, procs)
            yield procs, base, http


EXPECTED = [
    (0, None, "normal"),
    (1, "maintenance.scheduled", "normal"),
    (2, "maintenance.started", "maintenance"),
    (3, "maintenance.ended", "normal"),
]


async def test_every_worker_killed_just_before_a_boundary(tmp_path: Path) -> None:
    """SIGKILL both workers 0.5 s before the start, with two API processes alive: an API's
    standby publisher takes the lapsed lock and publishes the start and the end exactly once,
    each within the 5 s grace (typed started/ended, not reconciled)."""
    server = start_redis()
    try:
        prefix = f"fs{os.getpid()}a"
        env = env_for(MAINTCAST_REDIS_URL=server.url, MAINTCAST_KEY_PREFIX=prefix)
        ports = free_ports(2)
        schedule = tmp_path / "s.yaml"
        with processes() as procs:
            workers = [Proc(f"worker{i}", ["worker"], env, tmp_path) for i in (1, 2)]
            apis = [
                Proc(f"api{i}", ["api", "--port", str(p)], env, tmp_path)
                for i, p in enumerate(ports)
            ]
            procs += workers + apis
            bases = [f"http://127.0.0.1:{p}" for p in ports]
            async with httpx.AsyncClient() as probe:
                for base in bases:
                    await wait_ready(probe, base, procs, empty_store=True)
            r = redis.Redis.from_url(server.url)
            async with client_of(bases[0]) as one, client_of(bases[1]) as two:
                await one.wait_for(lambda d: d["seq"] >= 0, 5, "snapshot", tails(procs))
                await two.wait_for(lambda d: d["seq"] >= 0, 5, "snapshot", tails(procs))
                starts = write_schedule(schedule, starts_in_s=4, lasts_s=6).timestamp()
                assert run_cli(["windows", "import", str(schedule)], env).returncode == 0
                holder = await eventually_async(
                    lambda: worker_leader(r, prefix),
                    "worker leading",
                    timeout=5,
                    detail=lambda: tails(procs),
                )
                assert pid_of(holder) in {w.proc.pid for w in workers}
                await asyncio.sleep(max(0.0, starts - 0.5 - time.time()))
                for w in workers:
                    os.kill(w.proc.pid, signal.SIGKILL)
                for c in (one, two):
                    await c.wait_for_cause("maintenance.ended", 20, tails(procs))
            for c in (one, two):
                assert types_of(c) == EXPECTED, tails(procs)
                assert c.connections == 1
            late_start = one.arrival_of("maintenance.started") - starts
            late_end = one.arrival_of("maintenance.ended") - (starts + 6)
            print(
                f"\nstandby published the start {late_start:.2f} s, the end {late_end:.2f} s late"
            )
            assert late_start < GRACE_S, tails(procs)
            assert late_end < GRACE_S, tails(procs)
            last = leader_of(r, prefix)
            assert last is not None
            assert last.endswith(":standby")
            assert pid_of(last) in {a.proc.pid for a in apis}
            assert r.xlen(f"{{{prefix}}}:events") == 3
            async with httpx.AsyncClient() as probe:
                for base in bases:
                    ready = await probe.get(f"{base}/readyz")
                    assert ready.status_code == 200, ready.text
    finally:
        server.close()


async def test_leader_frozen_across_a_boundary_for_twice_its_ttl(tmp_path: Path) -> None:
    """SIGSTOP the only worker 1 s before the start for 6 s (twice the 3 s lock TTL): the API's
    standby publishes the start within the grace; the woken worker takes the lead back and
    publishes the end; nothing twice."""
    server = start_redis()
    try:
        prefix = f"fs{os.getpid()}b"
        env = env_for(MAINTCAST_REDIS_URL=server.url, MAINTCAST_KEY_PREFIX=prefix)
        port = free_port()
        schedule = tmp_path / "s.yaml"
        with processes() as procs:
            worker = Proc("worker", ["worker"], env, tmp_path)
            api = Proc("api", ["api", "--port", str(port)], env, tmp_path)
            procs += [worker, api]
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient() as probe:
                await wait_ready(probe, base, procs, empty_store=True)
            r = redis.Redis.from_url(server.url)
            async with client_of(base) as client:
                await client.wait_for(lambda d: d["seq"] >= 0, 5, "snapshot", tails(procs))
                starts = write_schedule(schedule, starts_in_s=4, lasts_s=9).timestamp()
                assert run_cli(["windows", "import", str(schedule)], env).returncode == 0
                await eventually_async(
                    lambda: (h := leader_of(r, prefix)) and pid_of(h) == worker.proc.pid,
                    "the worker leading",
                    timeout=5,
                    detail=lambda: tails(procs),
                )
                await asyncio.sleep(max(0.0, starts - 1 - time.time()))
                os.kill(worker.proc.pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(6)
                finally:
                    os.kill(worker.proc.pid, signal.SIGCONT)
                await client.wait_for_cause("maintenance.ended", 20, tails(procs))
                await eventually_async(
                    lambda: (h := leader_of(r, prefix)) and pid_of(h) == worker.proc.pid,
                    "the worker leading again",
                    timeout=5,
                    detail=lambda: tails(procs),
                )
            assert types_of(client) == EXPECTED, tails(procs)
            late = client.arrival_of("maintenance.started") - starts
            print(f"\nthe standby published the start {late:.2f} s after it")
            assert late < GRACE_S, tails(procs)
            assert r.xlen(f"{{{prefix}}}:events") == 3
    finally:
        server.close()


async def test_lone_leader_frozen_publishes_on_waking(tmp_path: Path) -> None:
    """With no other publisher, a worker frozen across a boundary past its lock's TTL finds
    its lock lapsed on waking, takes it anew and publishes at once (not at the 30 s tick)."""
    server = start_redis()
    try:
        prefix = f"fs{os.getpid()}c"
        env = env_for(MAINTCAST_REDIS_URL=server.url, MAINTCAST_KEY_PREFIX=prefix)
        schedule = tmp_path / "s.yaml"
        r = redis.Redis.from_url(server.url)
        with processes() as procs:
            worker = Proc("worker", ["worker"], env, tmp_path)
            procs.append(worker)
            starts = write_schedule(schedule, starts_in_s=4, lasts_s=60).timestamp()
            assert run_cli(["windows", "import", str(schedule)], env).returncode == 0
            await eventually_async(
                lambda: leader_of(r, prefix),
                "the worker leading",
                timeout=8,
                detail=lambda: tails(procs),
            )
            await asyncio.sleep(max(0.0, starts - 1 - time.time()))
            os.kill(worker.proc.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(6)
                assert r.xlen(f"{{{prefix}}}:events") == 1  # frozen: nobody published
            finally:
                os.kill(worker.proc.pid, signal.SIGCONT)
            woke = time.time()
            await eventually_async(
                lambda: r.xlen(f"{{{prefix}}}:events") >= 2,
                "the start published after waking",
                timeout=5,
                detail=lambda: tails(procs),
            )
            took = time.time() - woke
            print(f"\nthe woken leader published {took:.2f} s after SIGCONT")
            assert took < 2.0, tails(procs)
            assert r.xlen(f"{{{prefix}}}:events") == 2
    finally:
        server.close()


async def test_redis_flushed_with_the_schedule_file(tmp_path: Path) -> None:
    """FLUSHALL under a running worker and API with MAINTCAST_SCHEDULE_FILE: the leader re-imports
    the file (actor import:<file>), the window in progress is maintenance again and /readyz is
    200 again within a few seconds; meanwhile no route answers 500."""
    server = start_redis()
    try:
        prefix = f"fs{os.getpid()}d"
        schedule = tmp_path / "s.yaml"
        write_schedule(schedule, starts_in_s=-2, lasts_s=120)
        env = env_for(
            MAINTCAST_REDIS_URL=server.url,
            MAINTCAST_KEY_PREFIX=prefix,
            MAINTCAST_SCHEDULE_FILE=str(schedule),
        )
        r = redis.Redis.from_url(server.url)
        # the worker imported the file at start
        async with worker_and_api(env, tmp_path) as (procs, base, http):
            status = (await http.get(f"{base}/v1/status")).json()
            assert status["state"] == "maintenance"
            r.flushall()
            flushed = time.monotonic()
            codes: set[int] = set()

            async def healed() -> bool:
                for path in ("/v1/status", "/v1/windows", "/v1/events?after=0", "/metrics"):
                    codes.add((await http.get(f"{base}{path}")).status_code)
                ready = await http.get(f"{base}/readyz")
                codes.add(ready.status_code)
                doc = (await http.get(f"{base}/v1/status")).json()
                # the re-import is the new store's first event
                return ready.status_code == 200 and (doc["seq"], doc["state"]) == (
                    1,
                    "maintenance",
                )

            await eventually_async(
                healed, "the store healed", timeout=15, detail=lambda: tails(procs)
            )
            took = time.monotonic() - flushed
            print(f"\nre-imported and correct {took:.2f} s after FLUSHALL")
            assert 500 not in codes, codes
            events = (await http.get(f"{base}/v1/events?after=0")).json()["events"]
            assert events[0]["actor"] == f"import:{schedule.name}"
            assert events[0]["type"] == "maintenance.scheduled"
            assert run_cli(["worker", "check"], env).returncode == 0
    finally:
        server.close()


async def test_redis_flushed_without_the_schedule_file(tmp_path: Path) -> None:
    """FLUSHALL with no schedule file to heal from: /readyz 503 catalog_missing at once,
    `worker check` exits 1, the API drops the vanished calendar (no stale maintenance), and
    no route answers 500."""
    server = start_redis()
    try:
        prefix = f"fs{os.getpid()}e"
        schedule = tmp_path / "s.yaml"
        write_schedule(schedule, starts_in_s=-2, lasts_s=120)
        env = env_for(MAINTCAST_REDIS_URL=server.url, MAINTCAST_KEY_PREFIX=prefix)
        assert run_cli(["windows", "import", str(schedule)], env).returncode == 0
        r = redis.Redis.from_url(server.url)
        async with worker_and_api(env, tmp_path) as (procs, base, http):
            assert (await http.get(f"{base}/v1/status")).json()["state"] == "maintenance"
            assert run_cli(["worker", "check"], env).returncode == 0
            r.flushall()
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "catalog_missing"
            check = run_cli(["worker", "check"], env)
            assert check.returncode == 1, check.stdout
            assert "no catalog" in check.stdout, check.stdout
            codes: set[int] = set()

            async def dropped() -> bool:
                for path in ("/v1/windows", "/v1/events?after=0", "/metrics", "/status"):
                    codes.add((await http.get(f"{base}{path}")).status_code)
                doc = (await http.get(f"{base}/v1/status")).json()
                return bool(doc["seq"] == 0 and doc["state"] == "normal")

            await eventually_async(
                dropped, "the calendar dropped", timeout=10, detail=lambda: tails(procs)
            )
            assert 500 not in codes, codes
            assert (await http.get(f"{base}/readyz")).status_code == 503
    finally:
        server.close()


async def test_the_2021_notice_rehearsed_on_redis(tmp_path: Path) -> None:
    """`windows import`, one `worker` and two `api` processes given the same --clock,
    --speed and --clock-wall share one rehearsal time: the 01:00 and 06:00 JST switches are
    published once each, stamped in rehearsal time, and both APIs deliver them."""
    server = start_redis()
    try:
        prefix = f"fs{os.getpid()}f"
        env = env_for(MAINTCAST_REDIS_URL=server.url, MAINTCAST_KEY_PREFIX=prefix)
        wall = time.time() + 8  # the clock reads 00:59:50 JST then; 06:00 comes 10 s later
        rehearsal = [
            "--clock",
            "2021-08-09T00:59:50+09:00",
            "--speed",
            "1800",
            "--clock-wall",
            repr(wall),
        ]
        ports = free_ports(2)
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        with processes() as procs:
            imported = run_cli(["windows", "import", str(EXAMPLE), *rehearsal], env)
            assert imported.returncode == 0, imported.stderr
            procs.append(Proc("worker", ["worker", *rehearsal], env, tmp_path))
            for i, p in enumerate(ports):
                procs.append(Proc(f"api{i}", ["api", "--port", str(p), *rehearsal], env, tmp_path))
            async with httpx.AsyncClient() as probe:
                for base in bases:
                    await wait_ready(probe, base, procs)
            assert time.time() < wall, "start-up took longer than the rehearsal's lead"
            async with client_of(bases[0]) as one, client_of(bases[1]) as two:
                for c in (one, two):
                    await c.wait_for_cause("maintenance.ended", 25, tails(procs))
            for c in (one, two):
                moves = [
                    (d["cause"]["type"], d["state"], d["until"], d["as_of"])
                    for d in c.seen
                    if (d["cause"] or {}).get("type")
                    in ("maintenance.started", "maintenance.ended")
                ]
                assert [m[:3] for m in moves] == [
                    ("maintenance.started", "maintenance", "2021-08-09T06:00:00+09:00"),
                    ("maintenance.ended", "normal", None),
                ], tails(procs)
                # stamped in rehearsal time: at the boundary, plus the publish lag times 1800
                # (a 1 s real lag is 30 clock minutes)
                assert "2021-08-09T01:00:00" <= moves[0][3] < "2021-08-09T01:30:00", moves
                assert "2021-08-09T06:00:00" <= moves[1][3] < "2021-08-09T06:30:00", moves
            assert [d["seq"] for d in one.seen] == [d["seq"] for d in two.seen]
    finally:
        server.close()
