"""``maintcast subscriptions …`` (subprocesses) against a live app that delivers to a real
receiver: add (secret printed once), list, test (a verified ping), rotate, deliveries,
replay, remove; errors in one line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.clock import Clock, RehearsalClock
from broadcaster.store import Store
from tests.notify_support import FAST, Receiver, seeded, serving
from tests.support import env_for, eventually_async, jst, live_server, run_cli, settings_for
from worker.scheduler import running_worker

pytestmark = pytest.mark.slow
ADMIN = "cli-admin-token"


@contextlib.asynccontextmanager
async def app_url(redis: Any, prefix: str) -> AsyncIterator[str]:
    clock = RehearsalClock(jst(2021, 6, 1, 10))
    await seeded(redis, prefix, clock)

    def deliverer(store: Store, clk: Clock) -> Any:
        return running_worker(store, clk, notify=FAST)

    app = create_app(
        settings_for(None, prefix),
        redis=redis,
        clock=clock,
        tokens=Tokens.parse(entry_line("boss", "admin", ADMIN)),
        background=(deliverer,),
    )
    async with live_server(app) as base:
        yield base


async def cli(base: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``maintcast ARGS`` in a thread (the app answers from this event loop)."""
    env = env_for(MAINTCAST_URL=base, MAINTCAST_TOKEN=ADMIN)
    return await asyncio.to_thread(run_cli, list(args), env)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args}: {r.stdout}{r.stderr}"
    return r.stdout


async def test_the_subscription_commands(real_redis: Any, key_prefix: str) -> None:
    rx = Receiver()
    async with serving(rx) as hooks, app_url(real_redis, key_prefix) as base:
        out = ok(
            await cli(
                base, "subscriptions", "add", "--url", f"{hooks}/h", "--id", "acme",
                "--scope", "webcollect=credit_card", "--events", "maintenance.*",
                "--events", "override.*", "--lang", "en",
            )
        )  # fmt: skip
        secret = re.search(r"secret \(shown once.*\): (whsec_\S+)", out)
        assert secret is not None, out
        rx.secrets["h"] = [secret[1]]
        assert "acme  webhook  active" in out
        assert "scope=webcollect=credit_card" in out

        listed = ok(await cli(base, "subscriptions", "list"))
        assert listed.startswith("acme  webhook  active    en  ")
        assert "whsec_" not in listed
        as_json = json.loads(ok(await cli(base, "subscriptions", "list", "-o", "json")))
        assert [s["id"] for s in as_json] == ["acme"]

        tested = ok(await cli(base, "subscriptions", "test", "acme"))
        assert re.search(r"ping_[0-9a-f]{16}  ping\s+delivered  attempt 1 .* 204", tested), tested
        assert [r.doc["type"] for r in rx.ok("h")] == ["ping"]

        rotated = ok(await cli(base, "subscriptions", "rotate", "acme"))
        new = re.search(r"secret \(shown once.*\): (whsec_\S+)", rotated)
        assert new is not None
        assert new[1] != secret[1]
        assert "the previous secret also signs until " in rotated
        rx.secrets["h"] = [new[1], secret[1]]

        replayed = ok(await cli(base, "subscriptions", "replay", "acme", "--after-seq", "0"))
        assert replayed.strip() == "queued 1 message(s) (events 1..1)"
        await eventually_async(lambda: len(rx.ok("h")) == 2, "the replayed msg_1", timeout=10)
        assert rx.ok("h")[-1].verified_by == [0, 1]

        shown = ok(await cli(base, "subscriptions", "deliveries", "acme"))
        lines = shown.splitlines()
        assert lines[0].startswith("msg_1  maintenance.scheduled")
        assert "delivered" in lines[0]
        assert lines[1].startswith("ping_")
        rows = json.loads(ok(await cli(base, "subscriptions", "deliveries", "acme", "-o", "json")))
        assert [d["state"] for d in rows] == ["delivered", "delivered"]

        assert ok(await cli(base, "subscriptions", "remove", "acme")).strip() == "removed acme"
        gone = await cli(base, "subscriptions", "rm", "acme")
        assert gone.returncode == 1
        assert gone.stdout == ""
        assert gone.stderr.strip() == "maintcast: 404 not_found: unknown subscription 'acme'"
        bad = await cli(base, "subscriptions", "add", "--url", "http://merchant.example/h")
        assert bad.returncode == 1
        assert len(bad.stderr.strip().splitlines()) == 1
        assert "422 invalid: url: http:// is refused" in bad.stderr
    assert rx.unverified == []
