"""The gate as a pure ASGI middleware: refusals exactly inside a window, scopes, exemptions,
bypass, unknown status, custom bodies, language, and no Redis call per request."""

from __future__ import annotations

import hmac
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

import pytest

from broadcaster.gate import MaintenanceGate, Refusal, Rule
from broadcaster.hub import Hub
from broadcaster.store import Store
from tests.support import (
    CARD,
    FixedClock,
    Reply,
    at_instant,
    call,
    eventually_async,
    jst,
    ok_app,
    running_hub,
)

UNTIL = "2021-08-09T06:00:00+09:00"
MS = timedelta(milliseconds=1)
BANK = Rule("/api/bank", "atobarai", "bank_transfer")


def gate(hub: Hub, rules: list[Rule] | None = None, **kw: Any) -> MaintenanceGate:
    """A gate over :func:`ok_app`; no ``Retry-After`` floor unless given (the floor has its
    own test), so the seconds to ``until`` are seen as they are."""
    kw.setdefault("retry_after_min_s", 0)
    return MaintenanceGate(ok_app, hub=hub, rules=rules or [CARD, BANK], **kw)


def assert_refused(r: Reply, retry_after: int) -> None:
    assert r.status == 503
    assert r.headers["content-type"] == "application/json"
    assert r.headers["retry-after"] == str(retry_after)
    doc = r.json()
    assert set(doc) == {"errorCode", "message", "until", "latest_end", "processed"}
    assert doc["latest_end"] is None  # the seed window has no reserve
    assert doc["errorCode"] == "Z010000000"
    assert doc["until"] == UNTIL
    assert doc["processed"] is False
    assert isinstance(doc["message"], str)
    assert doc["message"]


async def test_refused_exactly_inside_the_half_open_window(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    app = gate(hub)

    await at_instant(store, hub, clock, jst(2021, 8, 9, 1) - MS)
    r = await call(app)
    assert (r.status, r.body) == (200, b"ok")

    await at_instant(store, hub, clock, jst(2021, 8, 9, 1))
    assert hub.current is not None
    assert hub.current.doc["state"] == "maintenance"
    assert_refused(await call(app), 5 * 3600)

    await at_instant(store, hub, clock, jst(2021, 8, 9, 3, 30, 0) + 400 * MS)
    assert_refused(await call(app), 2 * 3600 + 30 * 60)  # 9000 - 0.4 s, rounded up

    await at_instant(store, hub, clock, jst(2021, 8, 9, 6) - MS)
    assert_refused(await call(app), 1)

    await at_instant(store, hub, clock, jst(2021, 8, 9, 6))
    r = await call(app)
    assert (r.status, r.body) == (200, b"ok")
    assert "retry-after" not in r.headers


async def test_out_of_scope_component_is_never_refused(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    atobarai = Rule("/api/atobarai", "atobarai")  # the service: some methods affected
    app = gate(hub, [CARD, BANK, atobarai])
    for t in (jst(2021, 8, 9, 1), jst(2021, 8, 9, 3), jst(2021, 8, 9, 6) - MS):
        await at_instant(store, hub, clock, t)
        r = await call(app, "/api/bank/transfer")
        assert (r.status, r.body) == (200, b"ok"), t
        assert (await call(app, "/api/token")).status == 503
        assert (await call(app, "/api/atobarai/x")).status == 503


async def test_exempt_and_unguarded_paths_pass_untouched(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    everything = Rule("/", "webcollect")
    app = gate(hub, [everything])
    await at_instant(store, hub, clock, jst(2021, 8, 9, 2))
    assert (await call(app, "/api/anything", "GET")).status == 503
    for path in ("/healthz", "/readyz", "/metrics"):
        r = await call(app, path, "GET")
        assert (r.status, r.body) == (200, b"ok"), path
    custom = gate(hub, [everything], exempt=("/ping",))
    assert (await call(custom, "/ping", "GET")).status == 200
    assert (await call(custom, "/healthz", "GET")).status == 503
    # a path no rule guards
    plain = gate(hub, [CARD])
    assert (await call(plain, "/api/other")).status == 200


async def test_bypass_header_with_the_right_secret_only(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    await at_instant(store, hub, clock, jst(2021, 8, 9, 2))
    app = gate(hub, bypass_secret="s3cret")
    ok = await call(app, headers={"X-Maintcast-Bypass": "s3cret"})
    assert (ok.status, ok.body) == (200, b"ok")
    for wrong in ("s3cre", "s3cret ", "S3CRET", ""):
        assert (await call(app, headers={"X-Maintcast-Bypass": wrong})).status == 503, wrong
    assert (await call(app)).status == 503
    # a custom header name
    other = gate(hub, bypass_secret="s3cret", bypass_header="X-Ops-Test")
    assert (await call(other, headers={"x-ops-test": "s3cret"})).status == 200
    assert (await call(other, headers={"X-Maintcast-Bypass": "s3cret"})).status == 503
    # no secret configured: the header means nothing
    none = gate(hub)
    assert (await call(none, headers={"X-Maintcast-Bypass": ""})).status == 503
    assert (await call(none, headers={"X-Maintcast-Bypass": "s3cret"})).status == 503


async def test_when_no_status_is_known(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub(store, FixedClock(jst(2021, 8, 9, 2)))
    assert hub.current is None
    allow = gate(hub)
    with caplog.at_level("WARNING", logger="broadcaster.gate"):
        assert (await call(allow)).status == 200
        assert (await call(allow)).status == 200
    warnings = [r for r in caplog.records if r.name == "broadcaster.gate"]
    assert len(warnings) == 1  # logged once, not per request
    block = gate(hub, when_unknown="block")
    r = await call(block)
    assert r.status == 503
    assert "retry-after" not in r.headers  # until is null
    doc = r.json()
    assert doc["errorCode"] == "Z010000000"
    assert doc["until"] is None
    assert doc["processed"] is False
    assert doc["message"]
    # unguarded and exempt paths still pass while blocking
    assert (await call(block, "/healthz", "GET")).status == 200
    assert (await call(block, "/other", "GET")).status == 200


async def test_custom_render(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    await at_instant(store, hub, clock, jst(2021, 8, 9, 5, 59, 58))
    seen: list[Refusal] = []

    def xml(refusal: Refusal) -> tuple[bytes, str]:
        seen.append(refusal)
        body = f'<error code="{refusal.error_code}" until="{refusal.until}"/>'
        return body.encode(), "application/xml; charset=utf-8"

    r = await call(gate(hub, render=xml))
    assert r.status == 503
    assert r.headers["content-type"] == "application/xml; charset=utf-8"
    assert r.body == f'<error code="Z010000000" until="{UNTIL}"/>'.encode()
    assert r.headers["content-length"] == str(len(r.body))
    assert r.headers["retry-after"] == "2"
    (refusal,) = seen
    assert refusal.rule == CARD
    assert refusal.retry_after_s == 2
    assert refusal.lang == "ja"


async def test_message_language_and_channel(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    await at_instant(store, hub, clock, jst(2021, 8, 9, 2))
    api = gate(hub)
    ja = (await call(api)).json()["message"]
    assert ja == "メンテナンス中のため、リクエストを処理できません（エラーコード Z010000000）。"
    en = await call(api, headers={"Accept-Language": "en-US,en;q=0.9,ja;q=0.5"})
    assert en.json()["message"] == (
        "The request cannot be processed during maintenance (error code Z010000000)."
    )
    fr = await call(api, headers={"Accept-Language": "fr-FR"})
    assert fr.json()["message"] == ja
    token = gate(hub, [Rule("/api/token", "webcollect", "credit_card", channel="token_embedded")])
    msg = (await call(token, headers={"Accept-Language": "en"})).json()["message"]
    assert msg.startswith("A token cannot be issued during maintenance")


async def test_http_methods_filter(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    await at_instant(store, hub, clock, jst(2021, 8, 9, 2))
    writes = Rule("/api/token", "webcollect", "credit_card", http_methods=("POST", "PUT"))
    app = gate(hub, [writes])
    assert (await call(app, method="GET")).status == 200
    assert (await call(app, method="HEAD")).status == 200
    assert (await call(app, method="POST")).status == 503
    assert (await call(app, method="PUT")).status == 503


async def test_non_http_scopes_pass_through(store: Store) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    await at_instant(store, hub, clock, jst(2021, 8, 9, 2))
    app = gate(hub, [Rule("/", "webcollect")])

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        raise AssertionError(f"the gate answered a non-http scope: {message}")

    for kind in ("websocket", "lifespan"):
        scope: dict[str, Any] = {"type": kind, "path": "/api/token", "headers": []}
        await app(scope, receive, send)
        assert scope["state"]["reached"] is True, kind


async def test_no_redis_call_per_request(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    await at_instant(store, hub, clock, jst(2021, 8, 9, 2))
    client = store.redis
    calls: list[str] = []
    real_execute = client.execute_command

    async def counting(*args: Any, **kw: Any) -> Any:
        calls.append(str(args[0]))
        return await real_execute(*args, **kw)

    def no_pipeline(*args: Any, **kw: Any) -> Any:
        calls.append("pipeline")
        raise AssertionError("pipeline opened per request")

    def no_pubsub(*args: Any, **kw: Any) -> Any:
        calls.append("pubsub")
        raise AssertionError("pubsub opened per request")

    monkeypatch.setattr(client, "execute_command", counting)
    monkeypatch.setattr(client, "pipeline", no_pipeline)
    monkeypatch.setattr(client, "pubsub", no_pubsub)
    assert await client.ping()  # the spy sees commands
    assert calls == ["PING"]
    calls.clear()

    app = gate(hub, bypass_secret="s3cret")
    refused = passed = 0
    for i in range(1000):
        path = "/api/token" if i % 2 else "/api/bank"
        r = await call(app, path)
        refused += r.status == 503
        passed += r.status == 200
    assert (refused, passed) == (500, 500)
    assert calls == []


async def test_live_from_the_subscription(store: Store) -> None:
    """The hub's one subscription keeps the gate live: started, then ended, no resync."""
    clock = FixedClock(jst(2021, 8, 9, 0, 59, 59))
    async with running_hub(store, clock) as hub:
        app = gate(hub)
        assert (await call(app)).status == 200

        async def until_status(want: int) -> Reply:
            async def answer() -> Reply | None:
                r = await call(app)
                return r if r.status == want else None

            return await eventually_async(answer, f"a {want}", interval=0.01)

        clock.t = jst(2021, 8, 9, 1)
        await store.reconcile(clock.t)
        assert_refused(await until_status(503), 5 * 3600)
        clock.t = jst(2021, 8, 9, 6)
        await store.reconcile(clock.t)
        await until_status(200)


def test_rule_matching() -> None:
    rule = Rule("/api/", "webcollect", http_methods=("POST",))
    assert rule.matches("/api/token", "POST")
    assert not rule.matches("/api/token", "GET")
    assert not rule.matches("/apiv2", "POST")
    assert Rule("/x", "webcollect").matches("/x/y", "DELETE")


async def test_bypass_compares_digests_logs_each_use_and_never_reaches_the_app(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FixedClock(jst(2021, 8, 9, 0, 30))
    hub = Hub(store, clock)
    await at_instant(store, hub, clock, jst(2021, 8, 9, 2))
    seen: list[list[tuple[bytes, bytes]]] = []

    async def recording(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        await ok_app(scope, receive, send)

    app = MaintenanceGate(
        recording, hub=hub, rules=[CARD, BANK], bypass_secret="s3cret", retry_after_min_s=0
    )
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    with caplog.at_level("INFO", logger="broadcaster.bypass"):
        ok = await call(app, headers={"X-Maintcast-Bypass": "s3cret", "X-Other": "1"})
        refused = await call(app, headers={"X-Maintcast-Bypass": "x" * 1000})
        unguarded = await call(app, "/api/other", headers={"X-Maintcast-Bypass": "nope"})
    assert (ok.status, refused.status, unguarded.status) == (200, 503, 200)
    # SHA-256 digests on both sides, whatever the length presented (no length leak)
    assert compared == [(32, 32), (32, 32)]
    # the app never sees the header, accepted or not; the other headers pass
    assert len(seen) == 2
    assert all(name != b"x-maintcast-bypass" for headers in seen for name, _ in headers)
    assert (b"x-other", b"1") in seen[0]
    # one line per accepted use, saying where and who, never the value
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert "POST /api/token" in record.getMessage()
    assert "127.0.0.1" in record.getMessage()
    assert "s3cret" not in caplog.text
