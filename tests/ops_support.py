"""The ops API under test: tokens, the 2021 window's id and instants, a new window's body,
an app over fakeredis seeded with the example (:class:`Ctx`, :func:`ops_app`) and
:func:`assert_error` for the one error shape. Shared by the ops, HTTP-conformance, input-limit
and schemathesis tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.clock import RehearsalClock
from broadcaster.store import Store
from broadcaster.validation import parse_schedule
from tests.support import DEFAULTS, EXAMPLE, eventually_async, jst, settings_for

OP = "op-token-4f2a"
AD = "admin-token-9c1e"
TOKENS = entry_line("ops", "operator", OP) + "," + entry_line("boss", "admin", AD)
WID = "webcollect-2021-08"
BEFORE = jst(2021, 6, 1, 10)  # announced, scheduled (2021-08-09 01:00-06:00 JST)
DURING = jst(2021, 8, 9, 2)  # in progress
AFTER = jst(2021, 8, 9, 7)  # completed

NEW: dict[str, Any] = {
    "id": "atobarai-2021-07",
    "title": {"ja": "後払いメンテナンス", "en": "Deferred payment maintenance"},
    "starts_at": "2021-07-01T01:00:00+09:00",
    "ends_at": "2021-07-01T03:00:00+09:00",
    "affected": {"atobarai": ["au_easy"]},
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN, OPERATOR = bearer(AD), bearer(OP)


@dataclass
class Ctx:
    app: Any
    client: httpx.AsyncClient
    store: Store
    clock: RehearsalClock

    async def seq(self) -> int:
        return (await self.store.state()).seq

    async def events(self) -> list[dict[str, Any]]:
        r = await self.client.get("/v1/events", params={"limit": 1000})
        assert r.status_code == 200
        return r.json()["events"]  # type: ignore[no-any-return]

    async def status(self, **params: str) -> dict[str, Any]:
        """GET /v1/status once the app's hub has caught up with the store (it follows the
        store over pub/sub, so a read right after a write may still see the one before)."""
        want = await self.seq()

        async def caught_up() -> dict[str, Any] | None:
            r = await self.client.get("/v1/status", params=params)
            assert r.status_code == 200
            doc: dict[str, Any] = r.json()
            return doc if doc["seq"] >= want else None

        return await eventually_async(caught_up, f"/v1/status at seq {want}", interval=0.01)

    async def window(self, wid: str = WID) -> dict[str, Any]:
        r = await self.client.get(f"/v1/windows/{wid}", headers=ADMIN)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def snapshot(self) -> tuple[int, dict[str, Any], Any]:
        """Everything a refused request must leave untouched."""
        st = await self.store.state()
        return st.seq, st.windows, st.override


def build_app(fake_redis: Any, key_prefix: str, clock: RehearsalClock, tokens: Tokens) -> Any:
    return create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock, tokens=tokens)


async def seed(app: Any, clock: RehearsalClock) -> Store:
    store: Store = app.state.store
    schedule = parse_schedule(
        EXAMPLE.read_text(encoding="utf-8"), source="example", defaults=DEFAULTS, now=clock.now()
    )
    await store.import_schedule(schedule, clock.now())
    return store


@contextlib.asynccontextmanager
async def ops_app(
    fake_redis: Any,
    key_prefix: str,
    at: datetime = BEFORE,
    *,
    tokens: str = TOKENS,
    speed: float = 1.0,
) -> AsyncIterator[Ctx]:
    """The example imported at ``at``, an app over it, a client driving it in process."""
    clock = RehearsalClock(at, speed)
    app = build_app(fake_redis, key_prefix, clock, Tokens.parse(tokens))
    store = await seed(app, clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield Ctx(app, client, store, clock)


def assert_error(
    r: httpx.Response, status: int, code: str | None = None, field: str | None = None
) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"code", "message", "field"}
    assert isinstance(err["code"], str)
    assert err["code"]
    assert isinstance(err["message"], str)
    assert err["message"]
    if code is not None:
        assert err["code"] == code
    if field is not None:
        assert err["field"] == field, err
    return err  # type: ignore[no-any-return]
