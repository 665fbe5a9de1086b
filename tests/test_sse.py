"""SSE over a real uvicorn server and a real Redis: snapshot, live events, replay, resync."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse

from broadcaster.app import create_app
from broadcaster.clock import RehearsalClock
from broadcaster.store import Store
from tests.support import (
    clear_override,
    eventually_async,
    import_example,
    jst,
    live_server,
    make_store,
    set_override,
    settings_for,
)


async def seeded_store(redis: Any, key_prefix: str, clock: RehearsalClock) -> Store:
    """A store under ``key_prefix`` with the seed notice imported at ``clock``'s now (seq 1)."""
    store = make_store(redis, key_prefix)
    await import_example(store, clock.now())
    return store


async def _events(client: httpx.AsyncClient, url: str, n: int, **headers: str) -> list[Any]:
    out: list[Any] = []
    async with aconnect_sse(client, "GET", url, headers=headers) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for ev in source.aiter_sse():
            if not ev.data:  # the opening `retry:` block dispatches nothing (WHATWG SSE)
                continue
            out.append(ev)
            if len(out) == n:
                break
    return out


async def test_snapshot_then_live_then_replay(
    real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 50))
    store = await seeded_store(real_redis, key_prefix, clock)
    app = create_app(settings_for(redis_url, key_prefix), clock=clock)
    async with live_server(app) as base, httpx.AsyncClient(timeout=10) as client:
        first = asyncio.create_task(_events(client, f"{base}/v1/stream", 2))
        # the stream joins the hub before it reads its snapshot (seq 1): publish after that
        await eventually_async(lambda: app.state.hub.clients == 1, "the stream to join the hub")
        await store.reconcile(jst(2021, 8, 9, 1))
        async with asyncio.timeout(5):
            evs = await first
        assert [e.id for e in evs] == ["1", "2"]
        assert all(e.event == "status" for e in evs)
        started = orjson.loads(evs[1].data)
        assert started["cause"]["type"] == "maintenance.started"
        assert started["components"]["atobarai"]["bank_transfer"] == "operational"
        assert started["components"]["webcollect"]["credit_card"] == "under_maintenance"

        # replay from Last-Event-ID 1: exactly seq 2, no snapshot
        async with asyncio.timeout(5):
            replayed = await _events(client, f"{base}/v1/stream", 1, **{"Last-Event-ID": "1"})
        assert [e.id for e in replayed] == ["2"]
        assert orjson.loads(replayed[0].data)["cause"]["type"] == "maintenance.started"

        # an id above the current seq (store reset) or garbage: one resync
        for bad in ("99", "abc"):
            async with asyncio.timeout(5):
                got = await _events(client, f"{base}/v1/stream", 1, **{"Last-Event-ID": bad})
            doc = orjson.loads(got[0].data)
            assert doc["cause"]["type"] == "resync"
            assert doc["seq"] == 2


async def test_absurd_resume_points_resync_and_events_reject_huge_after(
    fake_redis: Any, key_prefix: str
) -> None:
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 50))
    await seeded_store(fake_redis, key_prefix, clock)
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock)
    async with live_server(app) as base, httpx.AsyncClient(timeout=10) as client:
        for bad in ("9" * 5000, "-1", "1.5", "99999999999999999999"):
            async with asyncio.timeout(5):
                got = await _events(client, f"{base}/v1/stream", 1, **{"Last-Event-ID": bad})
            assert orjson.loads(got[0].data)["cause"]["type"] == "resync", bad
        r = await client.get(f"{base}/v1/events", params={"after": "9" * 30})
        assert r.status_code == 422
        assert r.json()["error"]["field"] == "after"


async def test_a_client_disconnect_is_noticed(fake_redis: Any, key_prefix: str) -> None:
    """Closing the client frees its subscription in the hub (no leak)."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 50))
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock)
    hub = app.state.hub
    async with live_server(app) as base, httpx.AsyncClient(timeout=10) as client:
        async with asyncio.timeout(5):
            got = await _events(client, f"{base}/v1/stream", 1)
        assert got
        assert hub.clients <= 1
        await eventually_async(lambda: hub.clients == 0, "the hub to forget the stream")
        assert hub.clients == 0


async def test_pings_arrive_on_an_idle_stream(fake_redis: Any, key_prefix: str) -> None:
    """A ``: ping`` comment every ``ping_s`` keeps proxies from timing the stream out."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 50))
    app = create_app(settings_for(None, key_prefix, ping_s=0.5), redis=fake_redis, clock=clock)
    async with (
        live_server(app) as base,
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", f"{base}/v1/stream") as r,
    ):
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["cache-control"] == "no-cache"
        lines: list[str] = []
        async with asyncio.timeout(3):
            async for line in r.aiter_lines():
                lines.append(line)
                if line.startswith(": ping"):
                    break
        assert lines[0].startswith("retry: ")
        assert any(x.startswith("id: ") for x in lines)


async def test_cors_applies_to_the_live_routes(fake_redis: Any, key_prefix: str) -> None:
    """A checkout page on a merchant origin may open the stream and read the status."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 50))
    settings = settings_for(None, key_prefix, cors_origins="https://shop.example")
    app = create_app(settings, redis=fake_redis, clock=clock)
    origin = {"Origin": "https://shop.example"}
    async with live_server(app) as base, httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"{base}/v1/status", headers=origin)
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        assert r.headers["access-control-expose-headers"] == "ETag"
        async with (
            asyncio.timeout(5),
            client.stream("GET", f"{base}/v1/stream", headers=origin) as s,
        ):
            assert s.headers["access-control-allow-origin"] == "https://shop.example"
        other = await client.get(f"{base}/v1/status", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_live_routes_answer_errors_in_the_contract_shape(
    fake_redis: Any, key_prefix: str
) -> None:
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 50))
    await seeded_store(fake_redis, key_prefix, clock)
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock)
    async with live_server(app) as base, httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{base}/v1/stream")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD"
        assert r.json()["error"]["code"] == "method_not_allowed"
        r = await client.delete(f"{base}/v1/status")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD"
        for url, status, field in (
            ("/v1/status?service=nope", 404, "service"),
            ("/v1/stream?service=nope", 404, "service"),
            ("/v1/stream?service=webcollect&method=nope", 404, "method"),
            ("/v1/status?method=credit_card", 422, "method"),
            ("/v1/stream?method=credit_card", 422, "method"),
        ):
            r = await client.get(f"{base}{url}")
            assert r.status_code == status, url
            assert r.json()["error"]["field"] == field, url
        ok = await client.get(f"{base}/v1/status")
        head = await client.head(f"{base}/v1/status")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(ok.content))
        assert head.headers["etag"] == ok.headers["etag"]
        etag = ok.headers["etag"]
        for given in (etag, f"W/{etag}", f'"0", {etag}', "*"):  # RFC 9110 13.1.2
            same = await client.get(f"{base}/v1/status", headers={"If-None-Match": given})
            assert same.status_code == 304, given
            assert same.content == b"", given
        other = await client.get(f"{base}/v1/status", headers={"If-None-Match": '"0"'})
        assert other.status_code == 200
        # a Last-Event-ID of non-ASCII digits is not a seq: resync, not a crash
        got = await _events(client, f"{base}/v1/stream?last_event_id=%C2%B2", 1)
        assert orjson.loads(got[0].data)["cause"]["type"] == "resync"


async def test_a_resumed_scoped_stream_skips_an_unchanged_view(
    fake_redis: Any, key_prefix: str
) -> None:
    """Resuming at the current seq, a scoped stream knows the view its client holds, so a
    change elsewhere is not sent (docs/api.md "Built": scoped streams skip unchanged views)."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 50))
    store = await seeded_store(fake_redis, key_prefix, clock)
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock)
    url = "/v1/stream?service=webcollect&method=credit_card"
    async with live_server(app) as base, httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"{base}/v1/status")
        seq = int(r.headers["etag"].strip('"'))
        task = asyncio.create_task(
            _events(client, f"{base}{url}", 1, **{"Last-Event-ID": str(seq)})
        )
        await eventually_async(lambda: app.state.hub.clients == 1, "the stream to join the hub")
        await store.apply(jst(2021, 8, 9, 0, 59, 55), _elsewhere(True))  # not in this view
        await store.apply(jst(2021, 8, 9, 0, 59, 56), set_override)  # everything: sent
        async with asyncio.timeout(5):
            got = await task
        assert [int(e.id) for e in got] == [seq + 2]
        await store.apply(jst(2021, 8, 9, 0, 59, 57), clear_override)


async def test_a_scoped_stream_resumed_from_the_log_skips_an_unchanged_view(
    real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    """The same after a restart: the resume point is only in Redis's log, which gives the
    view the client holds too."""
    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 50))
    store = await seeded_store(real_redis, key_prefix, clock)  # seq 1
    await store.apply(jst(2021, 8, 9, 0, 59, 51), _elsewhere(True))  # 2: not in the view
    await store.apply(jst(2021, 8, 9, 0, 59, 52), _elsewhere(False))  # 3: nor this
    app = create_app(settings_for(redis_url, key_prefix), clock=clock)  # memory: seq 3 only
    url = "/v1/stream?service=webcollect&method=credit_card"
    async with live_server(app) as base, httpx.AsyncClient(timeout=10) as client:
        task = asyncio.create_task(_events(client, f"{base}{url}", 1, **{"Last-Event-ID": "2"}))
        await eventually_async(lambda: app.state.hub.clients == 1, "the stream to join the hub")
        await store.apply(jst(2021, 8, 9, 0, 59, 53), _elsewhere(True))  # 4: skipped
        await store.apply(jst(2021, 8, 9, 0, 59, 54), set_override)  # 5: sent
        async with asyncio.timeout(5):
            got = await task
        assert [int(e.id) for e in got] == [5]


def _elsewhere(on: bool) -> Any:
    """An override set (or cleared) on ``atobarai``/``au_easy`` only."""
    from broadcaster.domain import Cause, Override
    from broadcaster.store import Change

    def change(st: Any) -> Change:
        if not on:
            return Change(
                Cause("override.cleared", None, "t", None), override=None, set_override=True
            )
        ov = Override(
            mode="maintenance",
            affected={"atobarai": ("au_easy",)},
            reason="drill",
            actor="t",
            set_at=jst(2021, 8, 9),
        )
        return Change(Cause("override.set", None, "t", "drill"), override=ov, set_override=True)

    return change


async def test_a_finished_stream_leaves_no_reference_cycle(
    fake_redis: Any, key_prefix: str
) -> None:
    """The heap is frozen as streams open (sse.freeze_heap), and frozen cyclic garbage is
    never collected: a closed stream must be freed by reference counting alone."""
    import gc

    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from broadcaster.live import Socket
    from broadcaster.sse import Stream

    clock = RehearsalClock(jst(2021, 8, 9, 0, 59, 50))
    settings = settings_for(None, key_prefix, cors_origins="https://shop.example")
    app = create_app(settings, redis=fake_redis, clock=clock)
    async with live_server(app) as base, httpx.AsyncClient(timeout=10) as client:
        for _ in range(3):
            async with asyncio.timeout(5):
                await _events(client, f"{base}/v1/stream", 1)
            await eventually_async(lambda: app.state.hub.clients == 0, "the stream to leave")
        # and streams refused before they start: 404, 405, a CORS preflight
        assert (await client.get(f"{base}/v1/stream?service=nope")).status_code == 404
        assert (await client.post(f"{base}/v1/stream")).status_code == 405
        preflight = {
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "GET",
        }
        assert (await client.options(f"{base}/v1/stream", headers=preflight)).status_code == 200
        await asyncio.sleep(0.1)
        flags = gc.get_debug()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            kinds = (RequestResponseCycle, Stream, Socket)
            leaked = [o for o in gc.garbage if isinstance(o, kinds)]
        finally:
            gc.set_debug(flags)
            gc.garbage.clear()
        assert leaked == []
