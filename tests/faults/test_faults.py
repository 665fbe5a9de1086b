"""Fault scenarios with real processes: workers killed, Redis killed and frozen.

Each scenario starts its own redis-server on an ephemeral port, real ``maintcast worker`` and
``maintcast api`` processes, and one SSE client; it is bounded in time and asserts the exact
sequence of statuses the client saw.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from tests.faults.scenario import leader_of, pid_of, worker_leader, write_schedule
from tests.support import (
    Proc,
    assert_clean_sequence,
    client_of,
    env_for,
    eventually_async,
    free_port,
    processes,
    run_cli,
    start_redis,
    tails,
    wait_ready,
)

pytestmark = pytest.mark.slow


async def test_leader_killed_before_a_boundary(tmp_path: Path) -> None:
    """SIGKILL the leading worker: the other takes the lock over within its TTL and publishes
    the start and the end exactly once each, on time (typed started/ended, not reconciled)."""
    server = start_redis()
    try:
        prefix = f"f{os.getpid()}a"
        env = env_for(MAINTCAST_REDIS_URL=server.url, MAINTCAST_KEY_PREFIX=prefix)
        schedule = tmp_path / "s.yaml"
        port = free_port()
        with processes() as procs:
            workers = [Proc(f"worker{i}", ["worker"], env, tmp_path) for i in (1, 2)]
            procs += workers
            procs.append(Proc("api", ["api", "--port", str(port)], env, tmp_path))
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient() as probe:
                await wait_ready(probe, base, procs, empty_store=True)
            r = redis.Redis.from_url(server.url)

            # API processes are standby publishers: a worker takes the lock from them
            holder = await eventually_async(
                lambda: worker_leader(r, prefix),
                "a worker to lead",
                timeout=10,
                detail=lambda: tails(procs),
            )
            leader_pid = pid_of(holder)
            leader = next(w for w in workers if w.proc.pid == leader_pid)
            other = next(w for w in workers if w is not leader)
            async with client_of(base) as client:
                await client.wait_for(lambda d: d["seq"] >= 0, 5, "snapshot", tails(procs))
                # the import is the trigger, once everything runs (robust to slow start-up)
                write_schedule(schedule, starts_in_s=5, lasts_s=3)
                assert run_cli(["windows", "import", str(schedule)], env).returncode == 0
                await client.wait_for(lambda d: d["seq"] >= 1, 5, "scheduled", tails(procs))
                os.kill(leader_pid, signal.SIGKILL)
                await client.wait_for(
                    lambda d: (d["cause"] or {}).get("type") == "maintenance.ended",
                    25,
                    "maintenance.ended",
                    tails(procs),
                )
            assert client.summary() == [
                (0, None, "normal"),
                (1, "maintenance.scheduled", "normal"),
                (2, "maintenance.started", "maintenance"),
                (3, "maintenance.ended", "normal"),
            ], tails(procs)
            assert client.connections == 1
            new_holder = leader_of(r, prefix)
            assert new_holder is not None
            assert f":{other.proc.pid}:" in new_holder
            assert r.xlen(f"{{{prefix}}}:events") == 3
    finally:
        server.close()


async def test_redis_killed_across_a_boundary(tmp_path: Path) -> None:
    """Redis is SIGKILLed before a boundary and restarted (AOF) after it: the API serves
    ``stale`` and answers /readyz 503 meanwhile, the open stream stays open, and after the
    restart the client gets the missed start once (no transition lost, none invented)."""
    server = start_redis(appendonly=True)
    try:
        prefix = f"f{os.getpid()}b"
        env = env_for(MAINTCAST_REDIS_URL=server.url, MAINTCAST_KEY_PREFIX=prefix)
        schedule = tmp_path / "s.yaml"
        port = free_port()
        with processes() as procs:
            procs.append(Proc("worker", ["worker"], env, tmp_path))
            procs.append(Proc("api", ["api", "--port", str(port)], env, tmp_path))
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient() as probe:
                await wait_ready(probe, base, procs, empty_store=True)
            async with client_of(base) as client, httpx.AsyncClient(timeout=3) as http:
                await client.wait_for(lambda d: d["seq"] >= 0, 5, "snapshot", tails(procs))
                starts = write_schedule(schedule, starts_in_s=5, lasts_s=60)
                assert run_cli(["windows", "import", str(schedule)], env).returncode == 0
                await client.wait_for(lambda d: d["seq"] >= 1, 5, "scheduled", tails(procs))
                await asyncio.sleep(1.2)  # let the AOF fsync (appendfsync everysec) cover it
                assert datetime.now(UTC) < starts, "too slow to kill Redis before the start"
                server.kill()
                killed = time.monotonic()

                async def not_ready() -> bool:
                    return (await http.get(f"{base}/readyz")).status_code == 503

                async def stale() -> bool:
                    return bool((await http.get(f"{base}/v1/status")).json()["stale"])

                await eventually_async(
                    not_ready, "/readyz 503", timeout=15, interval=0.1, detail=lambda: tails(procs)
                )
                await eventually_async(
                    stale,
                    "stale: true",
                    timeout=max(0.0, killed + 15 - time.monotonic()),  # 15 s for both
                    interval=0.1,
                    detail=lambda: tails(procs),
                )
                # the boundary passes while Redis is down
                await asyncio.sleep(max(0.0, (starts - datetime.now(UTC)).total_seconds() + 1))
                server.start()
                await client.wait_for(
                    lambda d: d["state"] == "maintenance", 20, "maintenance", tails(procs)
                )
                status = (await http.get(f"{base}/v1/status")).json()
                assert status["stale"] is False
                assert status["state"] == "maintenance"
                assert (await http.get(f"{base}/readyz")).status_code == 200
            summary = client.summary()
            assert summary[:2] == [(0, None, "normal"), (1, "maintenance.scheduled", "normal")]
            assert summary[-1][0] == 2, summary
            assert summary[-1][2] == "maintenance", summary
            assert summary[-1][1] in ("maintenance.started", "reconciled"), summary
            assert_clean_sequence(client)
            assert client.connections == 1, "the stream should have stayed open"
    finally:
        server.close()


async def test_redis_frozen_then_resumed(tmp_path: Path) -> None:
    """SIGSTOP leaves the subscription half-open (no error, no data): the hub notices by its
    PING deadline, serves stale, and after SIGCONT a new change reaches the client."""
    server = start_redis()
    try:
        prefix = f"f{os.getpid()}c"
        env = env_for(MAINTCAST_REDIS_URL=server.url, MAINTCAST_KEY_PREFIX=prefix)
        schedule = tmp_path / "s.yaml"
        write_schedule(schedule, starts_in_s=3600, lasts_s=60)
        assert run_cli(["windows", "import", str(schedule)], env).returncode == 0
        port = free_port()
        with processes() as procs:
            procs.append(Proc("api", ["api", "--port", str(port)], env, tmp_path))
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient() as probe:
                await wait_ready(probe, base, procs)
            assert server.proc is not None
            async with client_of(base) as client, httpx.AsyncClient(timeout=3) as http:
                await client.wait_for(lambda d: d["seq"] >= 1, 5, "snapshot", tails(procs))
                server.freeze()
                try:

                    async def stale() -> bool:
                        return bool((await http.get(f"{base}/v1/status")).json()["stale"])

                    await eventually_async(
                        stale, "stale: true", timeout=25, interval=0.2, detail=lambda: tails(procs)
                    )
                finally:
                    server.thaw()
                # a change after the freeze reaches the client through the new subscription
                write_schedule(schedule, starts_in_s=-1, lasts_s=60)
                assert run_cli(["windows", "import", str(schedule)], env).returncode == 0
                await client.wait_for(
                    lambda d: d["state"] == "maintenance", 20, "maintenance", tails(procs)
                )
            assert_clean_sequence(client)
            assert client.connections == 1
    finally:
        server.close()
