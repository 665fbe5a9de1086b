"""HTTP conformance (issue 12, item 5): every 405 carries ``Allow`` naming every method
the path takes; ``HEAD`` works wherever ``GET`` does (same status and headers, no body;
``HEAD /v1/stream`` opens no stream); every response says ``X-Content-Type-Options:
nosniff``; no error echoes a large input; ``DELETE /v1/override`` refuses a body that is
not an object like every other write."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from broadcaster.app import create_app
from broadcaster.auth import Tokens
from broadcaster.clock import RehearsalClock
from broadcaster.limits import MAX_BODY_BYTES
from tests.ops_support import ADMIN, BEFORE, NEW, OPERATOR, TOKENS, WID, assert_error, seed
from tests.support import live_server, settings_for

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
PATHS = {
    "/v1/status": {"GET", "HEAD"},
    "/v1/stream": {"GET", "HEAD"},
    "/v1/windows": {"GET", "HEAD", "POST"},
    f"/v1/windows/{WID}": {"GET", "HEAD", "PATCH"},
    f"/v1/windows/{WID}/cancel": {"POST"},
    "/v1/windows.ics": {"GET", "HEAD"},
    "/v1/events": {"GET", "HEAD"},
    "/v1/override": {"PUT", "DELETE"},
    "/healthz": {"GET", "HEAD"},
    "/readyz": {"GET", "HEAD"},
    "/metrics": {"GET", "HEAD"},
    "/status": {"GET", "HEAD"},
    "/maintenance": {"GET", "HEAD"},
    "/admin": {"GET", "HEAD"},
    "/demo/checkout": {"GET", "HEAD"},
    "/demo/api/token": {"POST"},
    "/static/maintcast.js": {"GET", "HEAD"},
    "/openapi.json": {"GET", "HEAD"},
    "/docs": {"GET", "HEAD"},
}
GETS = [p for p, ms in PATHS.items() if "GET" in ms and p != "/v1/stream"]


@contextlib.asynccontextmanager
async def served(fake_redis: Any, key_prefix: str, **settings: Any) -> AsyncIterator[Any]:
    """The demo app (every route) over uvicorn, the example imported."""
    clock = RehearsalClock(BEFORE, 1.0)
    app = create_app(
        settings_for(None, key_prefix, **settings),
        redis=fake_redis,
        clock=clock,
        tokens=Tokens.parse(TOKENS),
        demo=True,
    )
    await seed(app, clock)
    async with live_server(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def test_every_405_lists_what_the_path_takes(fake_redis: Any, key_prefix: str) -> None:
    async with served(fake_redis, key_prefix) as client:
        for path, allowed in PATHS.items():
            for method in METHODS:
                if method in allowed:
                    continue
                r = await client.request(method, path, headers=ADMIN)
                assert r.status_code == 405, (method, path, r.status_code)
                got = {m.strip() for m in r.headers["allow"].split(",")}
                assert got == allowed, (method, path, got)
                if method != "HEAD":  # a HEAD answer has no body
                    assert r.json()["error"]["code"] == "method_not_allowed", (method, path)
                assert r.headers["x-content-type-options"] == "nosniff"
        # a static path that names no file: still 405 for a write, with the same Allow
        r = await client.post("/static/nope.js")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", GETS)
async def test_head_is_get_without_the_body(fake_redis: Any, key_prefix: str, path: str) -> None:
    async with served(fake_redis, key_prefix) as client:
        for headers in ({}, ADMIN):
            got = await client.get(path, headers=headers)
            head = await client.head(path, headers=headers)
            assert head.status_code == got.status_code == 200, path
            assert head.content == b""
            for name in ("content-type", "etag", "content-security-policy", "cache-control"):
                assert head.headers.get(name) == got.headers.get(name), (path, name)
            if path != "/metrics":  # its counters move between the two requests
                assert head.headers["content-length"] == str(len(got.content)), path


async def test_head_in_process_has_no_body(fake_redis: Any, key_prefix: str) -> None:
    """Without a server that drops HEAD bodies itself (ASGI in process), none is sent."""
    clock = RehearsalClock(BEFORE, 1.0)
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock, demo=True)
    await seed(app, clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        for path in ("/v1/windows", "/v1/events", "/healthz", "/v1/status", "/status"):
            r = await client.head(path)
            assert r.status_code == 200, path
            assert r.content == b"", path
            assert int(r.headers["content-length"]) > 0


async def test_head_stream_opens_no_stream(fake_redis: Any, key_prefix: str) -> None:
    async with served(fake_redis, key_prefix, streams_per_client=2) as client:
        hub = client.app.state.hub
        for _ in range(5):  # more than the per-client cap: none is counted
            async with asyncio.timeout(5):
                r = await client.head("/v1/stream")
            assert r.status_code == 200
            assert r.content == b""
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-cache"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert hub.clients == 0
        r = await client.head("/v1/stream", params={"service": "nope"})
        assert r.status_code == 404
        assert r.content == b""


async def test_nosniff_on_every_response(fake_redis: Any, key_prefix: str) -> None:
    cors = "https://shop.example"
    async with served(fake_redis, key_prefix, cors_origins=cors) as client:
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/v1/status", {}),
            ("GET", "/v1/status?service=nope", {}),
            ("DELETE", "/v1/status", {}),
            ("GET", "/v1/windows", {}),
            ("GET", "/v1/windows.ics", {}),
            ("GET", "/v1/events", {}),
            ("GET", "/v1/events?after=-1", {}),
            ("GET", "/v1/windows/nope", {}),
            ("POST", "/v1/windows", {}),
            ("POST", "/v1/windows", {"headers": ADMIN, "json": {}}),
            ("GET", "/healthz", {}),
            ("GET", "/readyz", {}),
            ("GET", "/metrics", {}),
            ("GET", "/status", {}),
            ("GET", "/maintenance", {}),
            ("GET", "/static/maintcast.js", {}),
            ("GET", "/static/maintcast.css", {}),
            ("GET", "/static/nope.js", {}),
            ("GET", "/nope", {}),
            ("GET", "/openapi.json", {}),
            ("GET", "/v1/stream?service=nope", {}),
            ("POST", "/demo/api/token", {}),
            (
                "PUT",
                "/v1/override",
                {"headers": OPERATOR, "content": b" " * (MAX_BODY_BYTES + 1)},
            ),
            (
                "OPTIONS",
                "/v1/status",
                {"headers": {"Origin": cors, "Access-Control-Request-Method": "GET"}},
            ),
            (
                "OPTIONS",
                "/v1/windows",
                {"headers": {"Origin": cors, "Access-Control-Request-Method": "GET"}},
            ),
            ("GET", "/v1/status", {"headers": {"Origin": cors}}),
        ]
        for method, url, kw in requests:
            r = await client.request(method, url, **kw)
            assert r.headers.get("x-content-type-options") == "nosniff", (
                method,
                url,
                r.status_code,
            )
            assert len(r.headers.get_list("x-content-type-options")) == 1, (method, url)
        async with client.stream("GET", "/v1/stream", headers={"Origin": cors}) as r:
            assert r.status_code == 200
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["access-control-allow-origin"] == cors


BIG = "9" * 60_000


async def test_errors_never_echo_a_large_input(fake_redis: Any, key_prefix: str) -> None:
    """60 KB values in queries, paths and bodies: every error answer stays small."""
    async with served(fake_redis, key_prefix) as client:
        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", f"/v1/events?after={BIG}", {}),
            ("GET", f"/v1/events?limit={BIG}x", {}),
            ("GET", f"/v1/events?after=x{BIG}", {}),
            ("GET", f"/v1/windows?status={BIG}", {}),
            ("GET", f"/v1/windows/{BIG}", {}),
            ("GET", f"/v1/status?service={BIG}", {}),
            ("GET", f"/v1/status?service=webcollect&method={BIG}", {}),
            ("GET", f"/maintenance?service={BIG}", {}),
            ("PATCH", f"/v1/windows/{BIG}", {"json": {"reason": "x"}}),
            ("POST", f"/v1/windows/{BIG}/cancel", {"json": {}}),
        ]
        for field, value in (
            ("title", {"en": BIG}),
            ("title", BIG),
            ("timezone", BIG),
            ("starts_at", BIG),
            ("ends_at", f"2021-07-01T00:00:00.{BIG}+09:00"),  # before its start
            ("announce_at", f"2021-07-02T00:00:00.{BIG}+09:00"),  # after its start
            ("error_code", BIG),
            ("id", BIG),
            ("affected", {BIG: ["*"]}),
            ("affected", {"atobarai": [BIG]}),
            ("messages", {BIG: {"en": "x"}}),
            ("reason", BIG),
            (BIG, "unknown field"),
        ):
            cases.append(("POST", "/v1/windows", {"json": {**NEW, field: value}}))
        for body in (
            {"mode": BIG, "reason": "r"},
            {"mode": "maintenance", "reason": BIG},
            {"mode": "maintenance", "reason": "r", "expires_at": BIG},
            {"mode": "maintenance", "reason": "r", "ttl_s": BIG},
            {"mode": "maintenance", "reason": "r", "affected": {"atobarai": [BIG]}},
        ):
            cases.append(("PUT", "/v1/override", {"json": body}))
        for method, url, kw in cases:
            r = await client.request(method, url, headers=ADMIN, **kw)
            assert 400 <= r.status_code < 500, (method, url[:40], r.status_code)
            assert len(r.content) < 1024, (method, url[:40], r.content[:300])
            assert r.json()["error"]["code"] in ("invalid", "not_found")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"1", b"null", b"true"])
async def test_every_write_refuses_a_body_that_is_not_an_object(
    fake_redis: Any, key_prefix: str, body: bytes
) -> None:
    async with served(fake_redis, key_prefix) as client:
        r = await client.put(
            "/v1/override", json={"mode": "maintenance", "reason": "setup"}, headers=OPERATOR
        )
        assert r.status_code == 200
        store = client.app.state.store
        before = await store.state()
        for method, path in (
            ("DELETE", "/v1/override"),
            ("POST", f"/v1/windows/{WID}/cancel"),
            ("PUT", "/v1/override"),
            ("POST", "/v1/windows"),
            ("PATCH", f"/v1/windows/{WID}"),
        ):
            r = await client.request(
                method,
                path,
                content=body,
                headers={**ADMIN, "Content-Type": "application/json"},
            )
            err = assert_error(r, 422, "invalid", "body")
            assert "object" in err["message"], err
        after = await store.state()
        assert (after.seq, after.windows, after.override) == (
            before.seq,
            before.windows,
            before.override,
        )
        # an empty body is still a clear without a reason
        r = await client.delete("/v1/override", headers=OPERATOR)
        assert r.status_code == 200
        assert orjson.loads(r.content)["cause"]["type"] == "override.cleared"
