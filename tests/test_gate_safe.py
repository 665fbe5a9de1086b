"""The gate never answers 500: rules are checked against the catalog at start (a typo fails
the start, listing the known names), a scope that vanished at run time or any error while
deciding is decided by ``when_unknown`` (counted, logged rate-limited), and ``Retry-After``
has a floor (``MAINTCAST_RETRY_AFTER_MIN_S``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import MutableMapping
from typing import Any

import pytest
import redis.asyncio as aioredis

from broadcaster.app import create_app
from broadcaster.codec import Doc, View
from broadcaster.domain import Catalog
from broadcaster.gate import MaintenanceGate, Rule, UnknownScope, gate_for_redis, validate_rules
from broadcaster.hub import Hub
from broadcaster.settings import Settings
from broadcaster.store import Store
from tests.support import (
    CARD,
    ROOT,
    FixedClock,
    at_instant,
    call,
    eventually_async,
    free_port,
    import_example,
    jst,
    make_store,
    metric_value,
    ok_app,
    running_hub,
    settings_for,
    start_redis,
)

CATALOG = Catalog.model_validate(
    {
        "services": {
            "webcollect": {"methods": {"credit_card": {}, "cvs": {}}},
            "atobarai": {"methods": {"au_easy": {}}},
        }
    }
)
TYPO = "gate rule '/api/token': unknown service 'webcolect' (known: atobarai, webcollect)"


def unknown_count(reason: str) -> float:
    return metric_value("maintcast_gate_unknown_total", {"reason": reason})


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ([Rule("/a", "webcollect"), Rule("/b", "atobarai", "au_easy", channel="link")], None),
        ([Rule("/api/token", "webcolect", "credit_card")], TYPO),
        (
            [Rule("/x", "webcollect", "credit_crad")],
            "gate rule '/x': unknown method 'credit_crad' of service 'webcollect' "
            "(known: credit_card, cvs)",
        ),
        (
            [Rule("/x", "atobarai", channel="tokn")],
            "gate rule '/x': unknown channel 'tokn' "
            "(known: link, token_embedded, token_modal, api, admin)",
        ),
        (
            [Rule("/a", "nope"), Rule("/b", "webcollect"), Rule("/c", "atobarai", "cvs")],
            "gate rule '/a': unknown service 'nope' (known: atobarai, webcollect); "
            "gate rule '/c': unknown method 'cvs' of service 'atobarai' (known: au_easy)",
        ),
    ],
)
def test_validate_rules(rules: list[Rule], problem: str | None) -> None:
    if problem is None:
        validate_rules(rules, CATALOG)
        return
    with pytest.raises(UnknownScope) as caught:
        validate_rules(rules, CATALOG)
    assert str(caught.value) == problem
    assert isinstance(caught.value, LookupError)


def test_validate_rules_against_an_empty_catalog() -> None:
    with pytest.raises(UnknownScope, match=r"unknown service 'webcollect' \(known: none\)"):
        validate_rules([CARD], Catalog())


async def lifespan_app(scope: Any, receive: Any, send: Any) -> None:
    """:func:`ok_app` that completes its lifespan start-up at once."""
    if scope["type"] != "lifespan":
        await ok_app(scope, receive, send)
        return
    assert (await receive())["type"] == "lifespan.startup"
    await send({"type": "lifespan.startup.complete"})


async def start(gate: MaintenanceGate) -> list[MutableMapping[str, Any]]:
    """One lifespan start-up through ``gate``: the messages that reached the server."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await gate({"type": "lifespan"}, receive, send)
    return sent


async def test_startup_fails_on_a_typo_and_lists_the_names(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    await at_instant(store, hub, clock, clock.t)
    typo = MaintenanceGate(lifespan_app, hub=hub, rules=[Rule("/api/token", "webcolect")])
    (message,) = await start(typo)
    assert message == {"type": "lifespan.startup.failed", "message": TYPO}
    good = MaintenanceGate(lifespan_app, hub=hub, rules=[CARD])
    assert await start(good) == [{"type": "lifespan.startup.complete"}]


async def test_no_catalog_at_start_is_checked_when_one_arrives(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FixedClock(jst(2021, 8, 9, 2))
    hub = Hub(store, clock)  # nothing read yet: an empty catalog
    typo = MaintenanceGate(lifespan_app, hub=hub, rules=[Rule("/api/token", "webcolect")])
    with caplog.at_level("WARNING", logger="broadcaster.gate"):
        assert await start(typo) == [{"type": "lifespan.startup.complete"}]
        assert "no catalog at start" in caplog.text
        caplog.clear()
        await at_instant(store, hub, clock, clock.t)  # the catalog arrives
        for _ in range(3):
            assert (await call(typo)).status == 200  # when_unknown="allow"; never a 500
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert TYPO in errors[0].getMessage()


def test_a_typo_stops_a_real_server(tmp_path: Any, redis_url: str, key_prefix: str) -> None:
    """uvicorn with ``gate_for_redis`` and a typo'd rule exits non-zero with the message."""
    script = tmp_path / "gated.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import uvicorn
            from broadcaster.gate import Rule, gate_for_redis

            async def app(scope, receive, send):
                assert scope["type"] == "lifespan"
                while True:
                    kind = (await receive())["type"]
                    await send({"type": kind + ".complete"})
                    if kind == "lifespan.shutdown":
                        return

            url, prefix, port = sys.argv[1:]
            rules = [Rule("/api/token", "webcolect", "credit_card")]
            gated = gate_for_redis(app, redis_url=url, key_prefix=prefix, rules=rules)
            uvicorn.run(gated, host="127.0.0.1", port=int(port), lifespan="on")
            """
        )
    )

    async def seed() -> None:
        client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
        try:
            await import_example(make_store(client, key_prefix), jst(2021, 8, 9, 0, 30))
        finally:
            await client.aclose()

    asyncio.run(seed())
    args = [sys.executable, str(script), redis_url, key_prefix, str(free_port())]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0, done.stderr
    assert TYPO in done.stderr, done.stderr
    assert "Application startup failed" in done.stderr, done.stderr


async def test_vanished_scope_is_unknown_not_500(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis emptied under a running gate (FLUSHALL; the subscription then drops, as in a
    restart, and the hub re-reads an empty catalog): guarded requests are decided by
    when_unknown, and counted."""
    server = start_redis()
    client: aioredis.Redis = aioredis.Redis.from_url(server.url)
    try:
        s = make_store(client, key_prefix)
        clock = FixedClock(jst(2021, 8, 9, 0, 30))
        await import_example(s, clock.t)
        clock.t = jst(2021, 8, 9, 2)
        await s.reconcile(clock.t)
        async with running_hub(s, clock) as hub:
            allow = MaintenanceGate(ok_app, hub=hub, rules=[CARD])
            block = MaintenanceGate(ok_app, hub=hub, rules=[CARD], when_unknown="block")
            assert (await call(allow)).status == 503  # in maintenance
            await client.flushall()
            await client.client_kill_filter(_type="pubsub")
            await eventually_async(
                lambda: not hub.catalog.services, "the hub to drop the catalog", interval=0.01
            )
            before = unknown_count("scope_gone")
            with caplog.at_level("WARNING", logger="broadcaster.gate"):
                allowed = [await call(allow) for _ in range(20)]
                blocked = await call(block)
    finally:
        await client.aclose()
        server.close()
    assert all((r.status, r.body) == (200, b"ok") for r in allowed)
    assert blocked.status == 503
    assert "retry-after" not in blocked.headers
    assert blocked.json()["until"] is None
    assert blocked.json()["errorCode"] == "Z010000000"
    assert unknown_count("scope_gone") == before + 21
    lines = [r for r in caplog.records if r.name == "broadcaster.gate"]
    assert len(lines) == 2  # one per gate, not one per request
    assert "scope is not in the catalog" in lines[0].getMessage()


async def test_any_error_while_deciding_is_unknown(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    await at_instant(store, hub, clock, jst(2021, 8, 9, 2))

    def broken(doc: Doc, view: View) -> Doc:
        raise RuntimeError("bug")

    hub.view_of = broken  # type: ignore[method-assign]
    before = unknown_count("error")
    assert (await call(MaintenanceGate(ok_app, hub=hub, rules=[CARD]))).status == 200
    blocked = await call(MaintenanceGate(ok_app, hub=hub, rules=[CARD], when_unknown="block"))
    assert blocked.status == 503
    assert blocked.json()["processed"] is False
    assert unknown_count("error") == before + 2


async def test_a_failing_renderer_falls_back_to_json(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    await at_instant(store, hub, clock, jst(2021, 8, 9, 2))

    def bad(refusal: Any) -> tuple[bytes, str]:
        raise ValueError("renderer bug")

    r = await call(MaintenanceGate(ok_app, hub=hub, rules=[CARD], render=bad))
    assert r.status == 503
    assert r.json()["errorCode"] == "Z010000000"


async def test_retry_after_floor(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    default = MaintenanceGate(ok_app, hub=hub, rules=[CARD])
    assert default.retry_after_min_s == 30
    five = MaintenanceGate(ok_app, hub=hub, rules=[CARD], retry_after_min_s=5)
    none = MaintenanceGate(ok_app, hub=hub, rules=[CARD], retry_after_min_s=0)
    await at_instant(store, hub, clock, jst(2021, 8, 9, 5, 59, 58))  # 2 s to until
    assert (await call(default)).headers["retry-after"] == "30"
    assert (await call(five)).headers["retry-after"] == "5"
    assert (await call(none)).headers["retry-after"] == "2"
    await at_instant(store, hub, clock, jst(2021, 8, 9, 1))  # far above the floor
    assert (await call(default)).headers["retry-after"] == str(5 * 3600)
    with pytest.raises(ValueError, match="retry_after_min_s"):
        MaintenanceGate(ok_app, hub=hub, rules=[CARD], retry_after_min_s=-1)


async def test_retry_after_floor_setting(
    monkeypatch: pytest.MonkeyPatch, fake_redis: Any, key_prefix: str
) -> None:
    assert Settings().retry_after_min_s == 30
    monkeypatch.setenv("MAINTCAST_RETRY_AFTER_MIN_S", "7")
    assert Settings().retry_after_min_s == 7
    monkeypatch.setenv("MAINTCAST_RETRY_AFTER_MIN_S", "-1")
    with pytest.raises(ValueError, match="retry_after_min_s"):
        Settings()
    monkeypatch.setenv("MAINTCAST_RETRY_AFTER_MIN_S", "7")
    gated = gate_for_redis(ok_app, redis_url="redis://127.0.0.1:1/0", rules=[CARD])
    try:
        assert gated.retry_after_min_s == 7
    finally:
        await gated.hub.store.redis.aclose()
    demo = create_app(
        settings_for(None, key_prefix, retry_after_min_s=9), redis=fake_redis, demo=True
    )
    (mw,) = [
        m
        for m in demo.user_middleware
        if isinstance(m.cls, type) and issubclass(m.cls, MaintenanceGate)
    ]
    assert mw.kwargs["retry_after_min_s"] == 9


def test_gate_for_redis_takes_the_key_prefix_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Left out, ``key_prefix`` is MAINTCAST_KEY_PREFIX, like every other process's."""
    monkeypatch.setenv("MAINTCAST_KEY_PREFIX", "prod")
    gated = gate_for_redis(ok_app, redis_url="redis://127.0.0.1:1/0", rules=[CARD])
    assert gated.hub.store.keys.prefix == "prod"
    gated = gate_for_redis(ok_app, redis_url="redis://127.0.0.1:1/0", rules=[CARD], key_prefix="x")
    assert gated.hub.store.keys.prefix == "x"


def test_when_unknown_must_be_allow_or_block() -> None:
    with pytest.raises(ValueError, match="when_unknown"):
        gate_for_redis(ok_app, redis_url="redis://127.0.0.1:1/0", rules=[CARD], when_unknown="deny")
