"""What the gate adds per request: the ASGI app called in-process, with and without it.

The gate reads the hub's memory (no I/O), so its cost is CPU in the request path. This
calls a trivial inner ASGI app (``200``, empty body) ``--requests`` times directly — no
server, no sockets — alone and behind ``MaintenanceGate``, with the seed notice loaded
(「クロネコwebコレクト」, 2021-08-09 01:00–06:00 JST) in an embedded store:

- ``bare``: the inner app alone;
- ``gated, unguarded path``: a path no rule matches;
- ``gated, operational``: a guarded path before 01:00 (the rule's view is operational: passes);
- ``gated, maintenance``: a guarded path at 01:00 (the 503 with ``errorCode`` is rendered
  in place of the inner app).

Each case runs ``--rounds`` times; the best round's mean is reported (least disturbed by the
rest of the machine). Run: ``python bench/gate.py`` (about 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import fakeredis

from broadcaster.clock import RehearsalClock
from broadcaster.gate import MaintenanceGate, Rule
from broadcaster.hub import Hub
from broadcaster.keys import Keys
from broadcaster.settings import Settings
from broadcaster.store import Store
from broadcaster.timeparse import parse_instant
from broadcaster.validation import parse_schedule

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy/examples/webcollect-2021.yaml"
RULE = Rule("/api/token", "webcollect", "credit_card", channel="token_embedded")


async def inner(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def scope_for(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"host", b"pay.example"), (b"accept-language", b"ja,en;q=0.8")],
    }


async def hub_at(instant: str) -> Hub:
    settings = Settings()
    clock = RehearsalClock(parse_instant(instant, field="clock", zone=None))
    redis = fakeredis.FakeAsyncRedis()
    store = Store(redis, keys=Keys("bench"), defaults=settings.defaults, grace_s=5.0)
    schedule = parse_schedule(
        EXAMPLE.read_text(), source=str(EXAMPLE), defaults=settings.defaults, now=clock.now()
    )
    await store.import_schedule(schedule, clock.now())
    await store.reconcile(clock.now())
    hub = Hub(store, clock)
    await hub._resync()  # what the hub's subscription does on start
    return hub


async def measure(app: Any, scope: dict[str, Any], n: int, rounds: int) -> tuple[float, int]:
    """Best mean µs per request over ``rounds``, and the last status sent."""
    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            await app(scope, receive, send)
        best = min(best, (time.perf_counter_ns() - t0) / n / 1000)
    return best, status


async def main(n: int, rounds: int) -> None:
    normal = await hub_at("2021-08-09T00:59:00+09:00")
    down = await hub_at("2021-08-09T01:00:00+09:00")
    gate_normal = MaintenanceGate(inner, hub=normal, rules=[RULE], clock=normal.clock)
    gate_down = MaintenanceGate(inner, hub=down, rules=[RULE], clock=down.clock)
    bare, _ = await measure(inner, scope_for("/api/token"), n, rounds)
    rows = [("bare (inner app alone)", bare, 200)]
    for name, app, path in (
        ("gated, unguarded path", gate_normal, "/api/other"),
        ("gated, operational", gate_normal, "/api/token"),
        ("gated, maintenance (503)", gate_down, "/api/token"),
    ):
        us, status = await measure(app, scope_for(path), n, rounds)
        rows.append((name, us, status))
    print(f"gate bench: {n} requests x {rounds} rounds, best round's mean per request")
    print(f"{'case':<28} {'µs/request':>10} {'added µs':>9} {'status':>6}")
    for name, us, status in rows:
        print(f"{name:<28} {us:>10.2f} {us - bare:>9.2f} {status:>6}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", "-n", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    asyncio.run(main(a.requests, a.rounds))
