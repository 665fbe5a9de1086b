"""A window under embargo (``announce_at`` ahead) leaks neither its id nor the reason of a
change through the public status, stream, replay or event log; ops tokens read the log as
recorded; once announced the log shows both (issue 12, item 2)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.domain import Cause, LocalText, Window, public_cause
from broadcaster.validation import parse_schedule
from tests.support import DEFAULTS, EXAMPLE, FixedClock, jst, live_server, settings_for

AD = "admin-token-embargo"
OP = "op-token-embargo"
ADMIN = {"Authorization": f"Bearer {AD}"}
OPERATOR = {"Authorization": f"Bearer {OP}"}
TOKENS = Tokens.parse(entry_line("boss", "admin", AD) + "," + entry_line("ops", "operator", OP))
NOW = jst(2021, 6, 1, 10)
ANNOUNCE = jst(2021, 6, 15, 10)
SECRET_ID = "secret-2021-07"
SECRET: dict[str, Any] = {
    "id": SECRET_ID,
    "title": {"ja": "非公開メンテナンス", "en": "Embargoed maintenance"},
    "starts_at": "2021-07-01T01:00:00+09:00",
    "ends_at": "2021-07-01T03:00:00+09:00",
    "announce_at": "2021-06-15T10:00:00+09:00",
    "affected": {"atobarai": ["au_easy"]},
    "reason": "acquisition of vendor X (confidential)",
}


def window(announce_at: Any) -> Window:
    return Window(
        id="w",
        title=LocalText(en="t"),
        starts_at=jst(2021, 7, 1, 1),
        ends_at=jst(2021, 7, 1, 3),
        timezone="Asia/Tokyo",
        announce_at=announce_at,
        affected={"atobarai": ("au_easy",)},
        error_code="Z010000000",
        messages={},
    )


@pytest.mark.parametrize(
    ("cause", "announce", "shown"),
    [
        # before announce_at: neither id nor reason
        (Cause("maintenance.scheduled", "w", "boss", "why"), ANNOUNCE, (None, None)),
        # announce_at is inclusive, as for the window lists
        (Cause("maintenance.scheduled", "w", "boss", "why"), NOW, ("w", "why")),
        (Cause("maintenance.scheduled", "w", "boss", "why"), NOW - timedelta(days=1), ("w", "why")),
        # a window nobody knows (the store lost it): nothing named
        (Cause("maintenance.updated", "gone", "boss", "why"), NOW, (None, None)),
        # causes without a window are kept whole
        (Cause("override.set", None, "ops", "incident"), ANNOUNCE, (None, "incident")),
    ],
)
def test_public_cause(cause: Cause, announce: Any, shown: tuple[Any, Any]) -> None:
    got = public_cause(cause, {"w": window(announce)}, NOW)
    assert (got.window_id, got.reason) == shown
    assert (got.type, got.actor) == (cause.type, cause.actor)


async def first_frames(client: httpx.AsyncClient, n: int, **headers: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(5), aconnect_sse(client, "GET", "/v1/stream", headers=headers) as s:
        async for ev in s.aiter_sse():
            if ev.data:
                out.append(orjson.loads(ev.data))
            if len(out) == n:
                break
    return out


async def status_at(client: httpx.AsyncClient, seq: int, **params: str) -> dict[str, Any]:
    """``/v1/status`` once the process's hub holds ``seq`` (it follows the store by pub/sub)."""
    async with asyncio.timeout(5):
        while True:
            r = await client.get("/v1/status", params=params)
            assert r.status_code == 200
            if r.json()["seq"] >= seq:
                return r.json()  # type: ignore[no-any-return]
            await asyncio.sleep(0.01)


def hidden(cause: dict[str, Any]) -> bool:
    return cause["window_id"] is None and cause["reason"] is None


async def test_embargoed_cause_is_public_only_once_announced(
    fake_redis: Any, key_prefix: str
) -> None:
    clock = FixedClock(NOW)
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock, tokens=TOKENS)
    store = app.state.store
    schedule = parse_schedule(
        EXAMPLE.read_text(encoding="utf-8"), source="example", defaults=DEFAULTS, now=NOW
    )
    await store.import_schedule(schedule, NOW)
    async with live_server(app) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        r = await client.post("/v1/windows", json=SECRET, headers=ADMIN)
        assert r.status_code == 201, r.text
        created = (await store.state()).seq
        r = await client.patch(
            f"/v1/windows/{SECRET_ID}",
            json={"title": {"en": "Still embargoed"}, "reason": "renamed (confidential)"},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        patched = (await store.state()).seq
        assert patched == created + 1

        # the status, whole and of the window's view, as anyone reads it
        for params in ({}, {"service": "atobarai"}, {"service": "atobarai", "method": "au_easy"}):
            st = await status_at(client, patched, **params)
            assert st["cause"]["type"] == "maintenance.updated"
            assert st["cause"]["actor"] == "boss"
            assert hidden(st["cause"]), st["cause"]
            assert SECRET_ID not in orjson.dumps(st).decode()
        # an ops token does not change the status (one encoding for every reader)
        r = await client.get("/v1/status", headers=ADMIN)
        assert hidden(r.json()["cause"])

        # the stream, its replay from memory and from the store's log
        frames = await first_frames(client, 1)
        assert hidden(frames[0]["cause"])
        frames = await first_frames(client, 2, **{"Last-Event-ID": str(created - 1)})
        assert [f["seq"] for f in frames] == [created, patched]
        assert all(hidden(f["cause"]) for f in frames)
        assert {f["cause"]["type"] for f in frames} == {
            "maintenance.scheduled",
            "maintenance.updated",
        }
        for payload in await store.replay(created - 1) or []:
            assert SECRET_ID.encode() not in payload
            assert b"confidential" not in payload

        # the event log: public readers see neither; ops tokens see both
        r = await client.get("/v1/events", params={"after": created - 1})
        public = r.json()["events"]
        assert [e["seq"] for e in public] == [created, patched]
        assert all(e["window_id"] is None and e["reason"] is None for e in public)
        assert all(e["actor"] == "boss" for e in public)
        for headers in (ADMIN, OPERATOR):
            r = await client.get("/v1/events", params={"after": created - 1}, headers=headers)
            ops = r.json()["events"]
            assert [(e["window_id"], e["reason"]) for e in ops] == [
                (SECRET_ID, SECRET["reason"]),
                (SECRET_ID, "renamed (confidential)"),
            ]
        r = await client.get(
            "/v1/events", params={"after": created - 1}, headers={"Authorization": "Bearer wrong"}
        )
        assert all(e["window_id"] is None for e in r.json()["events"])

        # announce_at comes: the announcement names the window, and the log shows both
        clock.t = ANNOUNCE
        docs = await store.reconcile(ANNOUNCE)
        assert [d["cause"]["type"] for d in docs] == ["maintenance.announced"]
        assert docs[0]["cause"]["window_id"] == SECRET_ID
        st = await status_at(client, docs[0]["seq"])
        assert st["cause"]["window_id"] == SECRET_ID
        assert SECRET_ID in [w["id"] for w in st["upcoming"]]
        r = await client.get("/v1/events", params={"after": created - 1})
        assert [(e["window_id"], e["reason"]) for e in r.json()["events"]] == [
            (SECRET_ID, SECRET["reason"]),
            (SECRET_ID, "renamed (confidential)"),
            (SECRET_ID, None),
        ]
        # the statuses were published once, as anyone could read them then: a replay
        # keeps them as they went out (docs/api.md)
        frames = await first_frames(client, 2, **{"Last-Event-ID": str(created - 1)})
        assert all(hidden(f["cause"]) for f in frames)


async def test_announced_window_causes_are_public_at_once(fake_redis: Any, key_prefix: str) -> None:
    """A window announced when written names itself and its reason everywhere, as before."""
    clock = FixedClock(NOW)
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock, tokens=TOKENS)
    store = app.state.store
    schedule = parse_schedule(
        EXAMPLE.read_text(encoding="utf-8"), source="example", defaults=DEFAULTS, now=NOW
    )
    await store.import_schedule(schedule, NOW)
    body = {k: v for k, v in SECRET.items() if k != "announce_at"}
    async with live_server(app) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        r = await client.post("/v1/windows", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        seq = (await store.state()).seq
        st = await status_at(client, seq)
        assert (st["cause"]["window_id"], st["cause"]["reason"]) == (SECRET_ID, SECRET["reason"])
        r = await client.get("/v1/events", params={"after": seq - 1})
        e = r.json()["events"][0]
        assert (e["window_id"], e["reason"]) == (SECRET_ID, SECRET["reason"])
