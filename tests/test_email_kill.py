"""A ``maintcast worker`` SIGKILLed with e-mail messages pending loses none: while the mail
server answers 451 (greylisting) the worker retries, it is killed, more events are
published with nothing running, and an API process's standby delivers every mail once the
server accepts — each message's Message-ID arrives."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcaster.clock import SystemClock
from broadcaster.store.notify import NotifyStore
from tests.mail_support import FROM, PUBLIC, Mailbox, add_email, smtp_server
from tests.notify_support import clear, override, seeded
from tests.support import Proc, env_for, eventually_async, free_port, processes, tails, wait_ready

pytestmark = pytest.mark.slow
SHOP = "keiri@shop.example.jp"


async def test_a_killed_worker_loses_no_mail(
    redis_url: str, real_redis: Any, tmp_path: Path
) -> None:
    prefix = f"mkill{uuid.uuid4().hex[:10]}"
    clock: Any = SystemClock()
    store = await seeded(real_redis, prefix, clock)
    notify = NotifyStore.of(store)
    await add_email(store, "shop", SHOP)
    box = Mailbox(refuse={SHOP: "451 4.7.1 greylisted, try again later"})
    async with smtp_server(box) as port:
        env = env_for(
            MAINTCAST_REDIS_URL=redis_url,
            MAINTCAST_KEY_PREFIX=prefix,
            MAINTCAST_WEBHOOK_RETRY_S=",".join(["1.5"] * 20),
            MAINTCAST_WEBHOOK_TIMEOUT_S="1",
            MAINTCAST_SMTP_URL=f"smtp://127.0.0.1:{port}",
            MAINTCAST_MAIL_FROM=FROM,
            MAINTCAST_PUBLIC_URL=PUBLIC,
        )
        with processes() as procs:
            worker = Proc("worker", ["worker"], env, tmp_path)
            procs.append(worker)
            seqs = []
            for _ in range(2):
                seqs.append(await override(store, clock))
                seqs.append(await clear(store, clock))
            wanted = {f"msg_{s}" for s in seqs}

            async def all_tried() -> bool:
                msgs = await notify.deliveries("shop", 100)
                return {m.id for m in msgs if m.attempt >= 1} == wanted

            await eventually_async(
                all_tried, "a refused attempt of each", timeout=15, detail=lambda: tails(procs)
            )
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait(5)
            for _ in range(2):  # published while nothing delivers
                seqs.append(await override(store, clock, mode="normal"))
            wanted |= {f"msg_{s}" for s in seqs[-2:]}
            pending = {m.id for m in await notify.deliveries("shop", 100) if m.state == "pending"}
            assert pending == {f"msg_{s}" for s in seqs[:-2]}
            assert box.mails == []

            api_port = free_port()
            api = Proc("api", ["api", "--port", str(api_port)], env, tmp_path)
            procs.append(api)
            async with httpx.AsyncClient() as client:
                await wait_ready(client, f"http://127.0.0.1:{api_port}", [api], timeout=20)
            box.refuse.clear()  # the server accepts from now on

            def arrived() -> set[str]:
                return {str(m.message["Message-ID"]).split(".")[0][1:] for m in box.to(SHOP)}

            await eventually_async(
                lambda: arrived() >= wanted,
                "every mail",
                timeout=30,
                detail=lambda: f"{sorted(arrived())}\n{tails(procs)}",
            )

            async def all_delivered() -> bool:
                msgs = await notify.deliveries("shop", 100)
                return {m.id for m in msgs if m.state == "delivered"} == wanted

            await eventually_async(all_delivered, "every message marked delivered", timeout=10)
    assert arrived() == wanted  # nothing lost, nothing else
    assert all(m.message["List-Unsubscribe"] for m in box.mails)
