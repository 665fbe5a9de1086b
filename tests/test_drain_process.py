"""A drain with real processes: ``maintcast worker`` and ``maintcast api`` on a real Redis,
a window imported with ``maintcast windows import``, an SSE client of the API and a gate
(``gate_for_redis``, its own subscription) in front of a platform API.

The drain is observed over SSE (``maintenance.draining``, state ``draining``, then
``maintenance.started``) and at the gate (an ``on_drain`` route refused with ``Retry-After``
to the window's end, another route passing until the start); an extension moves
``Retry-After`` at once; an early end lets everything through. Every wait is bounded and
every process is stopped in a ``finally`` block.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from broadcaster.auth import entry_line, new_token
from broadcaster.gate import Rule, gate_for_redis
from tests.support import (
    Proc,
    assert_clean_sequence,
    client_of,
    env_for,
    eventually_async,
    free_port,
    live_server,
    ok_app,
    processes,
    run_cli,
    start_redis,
    tails,
    wait_ready,
)

pytestmark = pytest.mark.slow

CATALOG: dict[str, Any] = {
    "services": {"webcollect": {"methods": {"credit_card": {}, "cvs_online": {}}}}
}
SESSION = Rule("/api/session", "webcollect", "credit_card", on_drain=True)
CAPTURE = Rule("/api/capture", "webcollect", "credit_card")
DRAIN_S = 8


async def platform(scope: Any, receive: Any, send: Any) -> None:
    """The platform's API behind the gate: 200 "ok", and a lifespan (so the gate's own hub
    starts and stops with it)."""
    if scope["type"] != "lifespan":
        await ok_app(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _first(seen: list[dict[str, Any]], cause_type: str) -> dict[str, Any]:
    return next(d for d in seen if (d["cause"] or {}).get("type") == cause_type)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds")


async def test_drain_over_sse_and_at_the_gate(tmp_path: Path) -> None:
    server = start_redis()
    prefix = f"dr{uuid.uuid4().hex[:10]}"
    token = new_token()
    env = env_for(
        MAINTCAST_REDIS_URL=server.url,
        MAINTCAST_KEY_PREFIX=prefix,
        MAINTCAST_TOKENS=entry_line("ops", "operator", token),
    )
    ops = {"Authorization": f"Bearer {token}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gate = gate_for_redis(
        platform, redis_url=server.url, key_prefix=prefix, rules=[SESSION, CAPTURE],
        retry_after_min_s=0,
    )  # fmt: skip
    try:
        with processes() as procs:
            procs.append(Proc("worker", ["worker"], env, tmp_path))
            procs.append(Proc("api", ["api", "--port", str(port)], env, tmp_path))
            async with (
                httpx.AsyncClient(timeout=10) as http,
                live_server(gate) as gated,
                client_of(base, resume=True) as sse,
            ):
                await wait_ready(http, base, procs[1:], empty_store=True)

                def logs() -> str:
                    return tails(procs)

                async def at_gate(rule: Rule) -> httpx.Response:
                    return await http.post(gated + rule.path)

                # the import is the trigger, once the stream listens
                await eventually_async(lambda: sse.seen, "the first status", timeout=10)
                now = datetime.now(UTC)
                now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # wire precision
                starts = now + timedelta(seconds=DRAIN_S + 2)
                ends = starts + timedelta(seconds=120)
                window = {
                    "id": "drain-window",
                    "title": {"ja": "ドレイン", "en": "drain"},
                    "starts_at": _iso(starts),
                    "ends_at": _iso(ends),
                    "latest_end": _iso(ends + timedelta(hours=1)),
                    "drain_s": DRAIN_S,
                    "affected": {"webcollect": ["*"]},
                }
                schedule = tmp_path / "schedule.yaml"
                schedule.write_text(yaml.safe_dump({"catalog": CATALOG, "windows": [window]}))
                done = await asyncio.to_thread(run_cli, ["windows", "import", str(schedule)], env)
                assert done.returncode == 0, done.stdout + done.stderr

                # before the drain both routes pass
                await eventually_async(
                    lambda: any(d["upcoming"] for d in sse.seen), "the window announced"
                )
                assert (await at_gate(SESSION)).status_code == 200

                # the drain: over SSE...
                await sse.wait_for_cause("maintenance.draining", 15, logs())
                draining = _first(sse.seen, "maintenance.draining")
                assert draining["state"] == "draining"
                assert draining["cause"]["window_id"] == "drain-window"
                assert draining["components"]["webcollect"] == {
                    "credit_card": "draining",
                    "cvs_online": "draining",
                }
                assert draining["until"] is not None
                assert datetime.fromisoformat(draining["until"]) == ends
                assert datetime.now(UTC) < starts, "too slow: the drain was over already"

                # ... and at the gate: the on_drain route is refused, the other passes
                async def refused() -> httpx.Response | None:
                    r = await at_gate(SESSION)
                    return r if r.status_code == 503 else None

                r = await eventually_async(refused, "the gate to refuse on drain", timeout=5)
                body = r.json()
                assert body["processed"] is False
                assert body["errorCode"] == "Z010000000"
                assert datetime.fromisoformat(body["until"]) == ends
                assert datetime.fromisoformat(body["latest_end"]) == ends + timedelta(hours=1)
                retry = int(r.headers["retry-after"])
                assert 120 <= retry <= 120 + DRAIN_S + 2
                assert (await at_gate(CAPTURE)).status_code == 200

                # an extension moves Retry-After at once
                r = await http.post(
                    f"{base}/v1/windows/drain-window/extend", json={"by_s": 600}, headers=ops
                )
                assert r.status_code == 200, r.text

                async def moved() -> int | None:
                    got = await at_gate(SESSION)
                    after = int(got.headers.get("retry-after", "0"))
                    return after if after >= retry + 590 else None

                await eventually_async(moved, "Retry-After to move by 600 s", timeout=5)
                await sse.wait_for_cause("maintenance.extended", 5, logs())

                # the start: every guarded route refused
                await sse.wait_for_cause("maintenance.started", 15, logs())
                started = _first(sse.seen, "maintenance.started")
                assert started["state"] == "maintenance"
                assert datetime.fromisoformat(started["until"]) == ends + timedelta(seconds=600)

                async def capture_refused() -> bool:
                    return (await at_gate(CAPTURE)).status_code == 503

                await eventually_async(capture_refused, "the start at the gate", timeout=5)

                # an early end lets everything through
                r = await http.post(f"{base}/v1/windows/drain-window/end", json={}, headers=ops)
                assert r.status_code == 200, r.text
                await sse.wait_for_cause("maintenance.ended", 5, logs())

                async def passes() -> bool:
                    return (await at_gate(SESSION)).status_code == 200

                await eventually_async(passes, "the end at the gate", timeout=5)
                assert (await at_gate(CAPTURE)).status_code == 200

            types = [(d["cause"] or {}).get("type") for d in sse.seen[1:]]
            assert types == [
                "maintenance.scheduled",
                "maintenance.draining",
                "maintenance.extended",
                "maintenance.started",
                "maintenance.ended",
            ], sse.summary()
            assert_clean_sequence(sse)
    finally:
        server.close()
