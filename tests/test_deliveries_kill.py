"""A ``maintcast worker`` SIGKILLed with messages pending loses none: an endpoint that is
down gets every message once it is up, delivered by an API process's standby (no worker
left), including the events published while nothing ran."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcaster.clock import SystemClock
from broadcaster.store.notify import NotifyStore
from tests.notify_support import (
    Receiver,
    clear,
    override,
    seeded,
    serving,
    subscribe,
)
from tests.support import (
    Proc,
    env_for,
    eventually_async,
    free_port,
    processes,
    tails,
    wait_ready,
)

pytestmark = pytest.mark.slow


async def test_a_killed_worker_loses_no_message(
    redis_url: str, real_redis: Any, tmp_path: Path
) -> None:
    prefix = f"kill{uuid.uuid4().hex[:10]}"
    clock: Any = SystemClock()
    store = await seeded(real_redis, prefix, clock)
    notify = NotifyStore.of(store)
    port = free_port()
    rx = Receiver()
    rx.secrets["h"] = [await subscribe(store, f"http://127.0.0.1:{port}/h", "acme", clock.now())]
    env = env_for(
        MAINTCAST_REDIS_URL=redis_url,
        MAINTCAST_KEY_PREFIX=prefix,
        MAINTCAST_WEBHOOK_RETRY_S=",".join(["1.5"] * 20),
        MAINTCAST_WEBHOOK_TIMEOUT_S="1",
    )
    with processes() as procs:
        worker = Proc("worker", ["worker"], env, tmp_path)
        procs.append(worker)
        seqs = []
        for _ in range(3):
            seqs.append(await override(store, clock))
            seqs.append(await clear(store, clock))
        wanted = {f"msg_{s}" for s in seqs}

        async def all_tried() -> bool:
            msgs = await notify.deliveries("acme", 100)
            return {m.id for m in msgs if m.attempt >= 1} == wanted

        await eventually_async(
            all_tried, "a first attempt of each message", timeout=15, detail=lambda: tails(procs)
        )
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(5)
        for _ in range(2):  # published while no process delivers
            seqs.append(await override(store, clock))
        wanted |= {f"msg_{s}" for s in seqs[-2:]}
        pending = {m.id for m in await notify.deliveries("acme", 100) if m.state == "pending"}
        assert pending == {f"msg_{s}" for s in seqs[:-2]}

        api_port = free_port()
        api = Proc("api", ["api", "--port", str(api_port)], env, tmp_path)
        procs.append(api)
        async with httpx.AsyncClient() as client:
            await wait_ready(client, f"http://127.0.0.1:{api_port}", [api], timeout=20)
        async with serving(rx, port):
            await eventually_async(
                lambda: {r.id for r in rx.ok("h")} >= wanted,
                "every message delivered",
                timeout=30,
                detail=lambda: f"{sorted(r.id for r in rx.received)}\n{tails(procs)}",
            )

            async def all_delivered() -> bool:
                msgs = await notify.deliveries("acme", 100)
                return {m.id for m in msgs if m.state == "delivered"} == wanted

            await eventually_async(all_delivered, "every message marked delivered", timeout=10)
    assert rx.unverified == []
    assert {r.id for r in rx.received} == wanted  # nothing else, nothing lost
