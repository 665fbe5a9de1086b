"""The ops routes over the ASGI app and fakeredis: auth, validation, conflicts, reschedule,
windows in progress, the override, visibility, the iCal feed and the audit trail."""

from __future__ import annotations

import asyncio
import copy
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse
from icalendar import Calendar

from broadcaster.auth import Tokens
from broadcaster.clock import RehearsalClock
from tests.ops_support import (
    AD,
    ADMIN,
    AFTER,
    BEFORE,
    DURING,
    NEW,
    OP,
    OPERATOR,
    TOKENS,
    WID,
    Ctx,
    assert_error,
    build_app,
    ops_app,
    seed,
)
from tests.support import eventually_async, jst, live_server
from worker.scheduler import running_worker

# -- auth matrix -----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    role: str
    body: dict[str, Any] | None
    ok: int
    event: str
    needs_override: bool = False


ROUTES = [
    Route(
        "POST",
        "/v1/windows",
        "admin",
        {**NEW, "reason": "vendor upgrade"},
        201,
        "maintenance.scheduled",
    ),
    Route(
        "PATCH",
        f"/v1/windows/{WID}",
        "admin",
        {"title": {"ja": "変更", "en": "Changed"}, "reason": "typo"},
        200,
        "maintenance.updated",
    ),
    Route(
        "POST",
        f"/v1/windows/{WID}/cancel",
        "admin",
        {"reason": "not needed"},
        200,
        "maintenance.cancelled",
    ),
    Route(
        "PUT",
        "/v1/override",
        "operator",
        {"mode": "maintenance", "reason": "incident 42", "ttl_s": 1800},
        200,
        "override.set",
    ),
    Route(
        "DELETE", "/v1/override", "operator", {"reason": "resolved"}, 200, "override.cleared", True
    ),
]
ROUTE_IDS = [f"{r.method} {r.path}" for r in ROUTES]


async def send(ctx: Ctx, route: Route, headers: dict[str, str] | None = None) -> httpx.Response:
    content = None if route.body is None else orjson.dumps(route.body)
    return await ctx.client.request(
        route.method,
        route.path,
        content=content,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


async def prepare(ctx: Ctx, route: Route) -> None:
    if route.needs_override:
        r = await ctx.client.put(
            "/v1/override", json={"mode": "maintenance", "reason": "setup"}, headers=ADMIN
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-known-token"},
        {"Authorization": f"Basic {OP}"},
        {"Authorization": "Bearer "},
        {"Authorization": AD},
    ],
    ids=["none", "unknown", "basic", "empty-bearer", "no-scheme"],
)
async def test_without_a_valid_token_401(
    fake_redis: Any, key_prefix: str, route: Route, headers: dict[str, str]
) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        await prepare(ctx, route)
        before = await ctx.snapshot()
        r = await send(ctx, route, headers)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert await ctx.snapshot() == before


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_operator_token(fake_redis: Any, key_prefix: str, route: Route) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        await prepare(ctx, route)
        before = await ctx.snapshot()
        r = await send(ctx, route, OPERATOR)
        if route.role == "admin":
            err = assert_error(r, 403, "forbidden")
            assert "admin" in err["message"]
            assert "www-authenticate" not in r.headers
            assert await ctx.snapshot() == before
        else:
            assert r.status_code == route.ok, r.text
            assert await ctx.seq() == before[0] + 1
            last = (await ctx.events())[-1]
            assert last["type"] == route.event
            assert last["actor"] == "ops"
            assert last["reason"] == route.body["reason"]  # type: ignore[index]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_admin_token(fake_redis: Any, key_prefix: str, route: Route) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        await prepare(ctx, route)
        seq = await ctx.seq()
        r = await send(ctx, route, {"Authorization": f"bearer {AD}"})  # scheme is case-blind
        assert r.status_code == route.ok, r.text
        assert await ctx.seq() == seq + 1
        last = (await ctx.events())[-1]
        assert last["seq"] == seq + 1
        assert last["type"] == route.event
        assert last["actor"] == "boss"
        assert last["reason"] == route.body["reason"]  # type: ignore[index]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("headers", [{}, ADMIN], ids=["no-header", "bearer"])
async def test_no_tokens_configured_403(
    fake_redis: Any, key_prefix: str, route: Route, headers: dict[str, str]
) -> None:
    async with ops_app(fake_redis, key_prefix, tokens="") as ctx:
        before = await ctx.snapshot()
        r = await send(ctx, route, headers)
        err = assert_error(r, 403, "forbidden")
        assert "MAINTCAST_TOKENS" in err["message"]
        assert await ctx.snapshot() == before


async def test_auth_is_checked_before_the_body(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        r = await ctx.client.post("/v1/windows", content=b"{not json")
        assert_error(r, 401)
        r = await ctx.client.post("/v1/windows", content=b"{not json", headers=OPERATOR)
        assert_error(r, 403)


# -- validation (422) ------------------------------------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(NEW)
    for k, v in changes.items():
        if v is _DROP:
            body.pop(k, None)
        else:
            body[k] = v
    return body


_DROP = object()

INVALID_WINDOWS: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("end-equals-start", _with(ends_at=NEW["starts_at"]), "ends_at", ("after starts_at",)),
    (
        "end-before-start",
        _with(ends_at="2021-07-01T00:00:00+09:00"),
        "ends_at",
        ("after starts_at",),
    ),
    ("naive-without-zone", _with(starts_at="2021-07-01T01:00"), "starts_at", ()),
    (
        "unknown-zone",
        _with(starts_at="2021-07-01T01:00", ends_at="2021-07-01T03:00", timezone="Mars/Olympus"),
        "timezone",
        ("Mars/Olympus",),
    ),
    (
        "nonexistent-local-time",
        _with(
            starts_at="2024-03-10T02:30",
            ends_at="2024-03-10T05:00",
            timezone="America/New_York",
        ),
        "starts_at",
        ("does not exist", "2024-03-10T01:30:00-05:00", "2024-03-10T03:30:00-04:00"),
    ),
    (
        "ambiguous-local-time",
        _with(
            starts_at="2024-11-03T01:30",
            ends_at="2024-11-03T04:00",
            timezone="America/New_York",
        ),
        "starts_at",
        ("ambiguous", "2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00"),
    ),
    ("unknown-service", _with(affected={"nope": ["*"]}), "affected.nope", ("nope",)),
    (
        "unknown-method",
        _with(affected={"atobarai": ["carrier"]}),
        "affected.atobarai",
        ("carrier",),
    ),
    ("empty-method-list", _with(affected={"atobarai": []}), "affected.atobarai", ()),
    ("empty-affected", _with(affected={}), "affected", ()),
    ("missing-affected", _with(affected=_DROP), "affected", ()),
    ("missing-title", _with(title=_DROP), "title", ()),
    ("missing-starts_at", _with(starts_at=_DROP), "starts_at", ()),
    ("numeric-time", _with(starts_at=1625068800), "starts_at", ()),
    (
        "unknown-channel",
        _with(messages={"fax": {"ja": "メンテナンス中です。"}}),
        "messages.fax",
        (),
    ),
    (
        "too-long",
        _with(ends_at="2021-07-08T01:00:01+09:00"),
        "ends_at",
        ("604800", "MAINTCAST_MAX_WINDOW_S"),
    ),
    ("bad-id", _with(id="Bad_ID"), "id", ()),
    ("id-too-long", _with(id="a" * 65), "id", ()),
    ("oversized-title", _with(title={"ja": "長" * 5000}), "title.ja", ()),
    ("title-unknown-language", _with(title={"fr": "Maintenance"}), "title.fr", ()),
    ("unknown-top-level-field", _with(colour="red"), "colour", ("unknown field",)),
    ("status-sent", _with(status="scheduled"), "status", ("server-owned",)),
    ("history-sent", _with(history=[]), "history", ("server-owned",)),
    (
        "announce-after-start",
        _with(announce_at="2021-07-01T01:00:01+09:00"),
        "announce_at",
        (),
    ),
    ("bad-error-code", _with(error_code="Z 01"), "error_code", ()),
    ("reason-not-text", _with(reason=["x"]), "reason", ()),
    ("reason-too-long", _with(reason="r" * 2001), "reason", ()),
    (
        "already-over",
        _with(starts_at="2021-05-01T01:00:00+09:00", ends_at="2021-05-01T03:00:00+09:00"),
        "ends_at",
        (),
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [c[1:] for c in INVALID_WINDOWS],
    ids=[c[0] for c in INVALID_WINDOWS],
)
async def test_create_rejects_invalid_window(
    fake_redis: Any, key_prefix: str, body: dict[str, Any], field: str, words: tuple[str, ...]
) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        r = await ctx.client.post("/v1/windows", json=body, headers=ADMIN)
        err = assert_error(r, 422, "invalid", field)
        for w in words:
            assert w in err["message"], err
        assert await ctx.snapshot() == before


async def test_create_accepts_local_times_with_zone_and_defaults(
    fake_redis: Any, key_prefix: str
) -> None:
    """The valid twins of the DST cases: an offset resolves them; defaults are filled in."""
    async with ops_app(fake_redis, key_prefix) as ctx:
        seq = await ctx.seq()
        body = _with(
            id=_DROP,
            starts_at="2024-11-03T01:30:00-05:00",
            ends_at="2024-11-03T04:00",
            timezone="America/New_York",
        )
        r = await ctx.client.post("/v1/windows", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        w = r.json()
        assert w["starts_at"] == "2024-11-03T01:30:00-05:00"
        assert w["ends_at"] == "2024-11-03T04:00:00-05:00"
        assert w["timezone"] == "America/New_York"
        assert w["status"] == "scheduled"
        assert w["history"] == []
        assert w["error_code"] == "Z010000000"
        assert w["description"] == {}
        assert {"link", "token_embedded", "token_modal", "api", "admin"} <= set(w["messages"])
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", w["id"])
        assert await ctx.seq() == seq + 1
        r = await ctx.client.get(f"/v1/windows/{w['id']}")
        assert r.status_code == 200
        assert r.json()["id"] == w["id"]


@pytest.mark.parametrize(
    ("content", "field"),
    [(b"{not json", "body"), (b"", "body"), (b"[1, 2]", "body"), (b'"text"', "body")],
    ids=["invalid-json", "empty", "array", "string"],
)
async def test_create_rejects_bad_body(
    fake_redis: Any, key_prefix: str, content: bytes, field: str
) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        r = await ctx.client.post(
            "/v1/windows",
            content=content,
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        assert_error(r, 422, "invalid", field)
        assert await ctx.snapshot() == before


INVALID_PATCHES: list[tuple[str, dict[str, Any], str]] = [
    ("end-before-start", {"ends_at": "2021-08-09T00:30:00+09:00"}, "ends_at"),
    ("naive-with-unknown-zone", {"timezone": "Nowhere/City"}, "timezone"),
    ("unknown-method", {"affected": {"webcollect": ["nope"]}}, "affected.webcollect"),
    ("empty-affected", {"affected": {}}, "affected"),
    ("status", {"status": "completed"}, "status"),
    ("history", {"history": []}, "history"),
    ("other-id", {"id": "another-id"}, "id"),
    ("unknown-field", {"colour": "red"}, "colour"),
    ("reason-not-text", {"title": {"en": "x"}, "reason": 42}, "reason"),
    (
        "too-long",
        {"starts_at": "2021-08-09T01:00", "ends_at": "2021-08-20T01:00"},
        "ends_at",
    ),
    ("announce-after-start", {"announce_at": "2021-08-09T02:00"}, "announce_at"),
    ("already-over", {"starts_at": "2021-05-01T01:00", "ends_at": "2021-05-01T02:00"}, "ends_at"),
]


@pytest.mark.parametrize(
    ("body", "field"), [c[1:] for c in INVALID_PATCHES], ids=[c[0] for c in INVALID_PATCHES]
)
async def test_patch_rejects_invalid(
    fake_redis: Any, key_prefix: str, body: dict[str, Any], field: str
) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        r = await ctx.client.patch(f"/v1/windows/{WID}", json=body, headers=ADMIN)
        assert_error(r, 422, "invalid", field)
        assert await ctx.snapshot() == before


async def test_unknown_window_404(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        r = await ctx.client.patch("/v1/windows/nope", json={"reason": "x"}, headers=ADMIN)
        assert_error(r, 404, "not_found", "id")
        r = await ctx.client.post("/v1/windows/nope/cancel", json={}, headers=ADMIN)
        assert_error(r, 404, "not_found", "id")
        r = await ctx.client.get("/v1/windows/nope")
        assert_error(r, 404, "not_found")
        assert await ctx.snapshot() == before


INVALID_OVERRIDES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("bad-mode", {"mode": "off", "reason": "x"}, ("mode",)),
    ("missing-mode", {"reason": "x"}, ("mode",)),
    ("missing-reason", {"mode": "maintenance"}, ("reason",)),
    ("empty-reason", {"mode": "maintenance", "reason": ""}, ("reason",)),
    (
        "both-expiries",
        {
            "mode": "maintenance",
            "reason": "x",
            "ttl_s": 60,
            "expires_at": "2021-06-01T11:00:00+09:00",
        },
        ("expires_at", "ttl_s"),
    ),
    (
        "expiry-in-the-past",
        {"mode": "maintenance", "reason": "x", "expires_at": "2021-06-01T09:00:00+09:00"},
        ("expires_at",),
    ),
    (
        "naive-expiry",
        {"mode": "maintenance", "reason": "x", "expires_at": "2021-06-01T11:00"},
        ("expires_at",),
    ),
    ("zero-ttl", {"mode": "maintenance", "reason": "x", "ttl_s": 0}, ("ttl_s",)),
    ("ttl-beyond-max", {"mode": "maintenance", "reason": "x", "ttl_s": 604_801}, ("ttl_s",)),
    ("ttl-not-a-number", {"mode": "maintenance", "reason": "x", "ttl_s": "soon"}, ("ttl_s",)),
    ("negative-ttl", {"mode": "maintenance", "reason": "x", "ttl_s": -5}, ("ttl_s",)),
    (
        "unknown-service",
        {"mode": "maintenance", "reason": "x", "affected": {"nope": ["*"]}},
        ("affected.nope",),
    ),
    (
        "unknown-method",
        {"mode": "maintenance", "reason": "x", "affected": {"atobarai": ["carrier"]}},
        ("affected.atobarai",),
    ),
    (
        "empty-affected",
        {"mode": "maintenance", "reason": "x", "affected": {}},
        ("affected",),
    ),
    ("unknown-field", {"mode": "maintenance", "reason": "x", "colour": "red"}, ("colour",)),
    ("not-an-object", [1, 2], ("body",)),
]


@pytest.mark.parametrize(
    ("body", "fields"), [c[1:] for c in INVALID_OVERRIDES], ids=[c[0] for c in INVALID_OVERRIDES]
)
async def test_put_override_rejects_invalid(
    fake_redis: Any, key_prefix: str, body: Any, fields: tuple[str, ...]
) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        r = await ctx.client.put("/v1/override", json=body, headers=OPERATOR)
        err = assert_error(r, 422, "invalid")
        assert err["field"] in fields, err
        assert await ctx.snapshot() == before


async def test_put_override_invalid_json(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        r = await ctx.client.put(
            "/v1/override",
            content=b'{"mode": "maintenance",',
            headers={**OPERATOR, "Content-Type": "application/json"},
        )
        assert_error(r, 422, "invalid", "body")
        assert await ctx.snapshot() == before


# -- conflicts (409) -------------------------------------------------------------------


async def test_create_with_existing_id_409(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        r = await ctx.client.post("/v1/windows", json=_with(id=WID), headers=ADMIN)
        err = assert_error(r, 409, "conflict", "id")
        assert WID in err["message"]
        assert await ctx.snapshot() == before


async def test_completed_window_cannot_change_409(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix, AFTER) as ctx:
        assert (await ctx.window())["status"] == "completed"
        before = await ctx.snapshot()
        r = await ctx.client.patch(
            f"/v1/windows/{WID}", json={"ends_at": "2021-08-10T06:00"}, headers=ADMIN
        )
        err = assert_error(r, 409, "conflict")
        assert "completed" in err["message"]
        r = await ctx.client.post(f"/v1/windows/{WID}/cancel", json={}, headers=ADMIN)
        err = assert_error(r, 409, "conflict")
        assert "completed" in err["message"]
        assert await ctx.snapshot() == before


async def test_cancelled_window_cannot_change_409(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        r = await ctx.client.post(f"/v1/windows/{WID}/cancel", json={"reason": "x"}, headers=ADMIN)
        assert r.status_code == 200
        assert r.json()["status"] == "cancelled"
        before = await ctx.snapshot()
        r = await ctx.client.patch(f"/v1/windows/{WID}", json={"reason": "y"}, headers=ADMIN)
        err = assert_error(r, 409, "conflict")
        assert "cancelled" in err["message"]
        r = await ctx.client.post(f"/v1/windows/{WID}/cancel", json={}, headers=ADMIN)
        assert_error(r, 409, "conflict")
        assert await ctx.snapshot() == before


async def test_in_progress_start_cannot_move_409(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix, DURING) as ctx:
        before = await ctx.snapshot()
        for body in (
            {"starts_at": "2021-08-09T01:30"},
            {"starts_at": "2021-08-09T00:30", "ends_at": "2021-08-09T07:00", "reason": "x"},
        ):
            r = await ctx.client.patch(f"/v1/windows/{WID}", json=body, headers=ADMIN)
            err = assert_error(r, 409, "conflict", "starts_at")
            assert "in progress" in err["message"]
            assert "start cannot move" in err["message"]
        assert await ctx.snapshot() == before


# -- reschedule ------------------------------------------------------------------------


async def _sse_statuses(client: httpx.AsyncClient, url: str, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with aconnect_sse(client, "GET", url) as source:
        async for ev in source.aiter_sse():
            if not ev.data:  # the opening `retry:` block
                continue
            assert ev.event == "status"
            doc = orjson.loads(ev.data)
            assert str(doc["seq"]) == ev.id
            out.append(doc)
            if len(out) == n:
                break
    return out


async def test_reschedule_with_local_times_history_event_and_live_stream(
    fake_redis: Any, key_prefix: str
) -> None:
    clock = RehearsalClock(BEFORE)
    app = build_app(fake_redis, key_prefix, clock, Tokens.parse(TOKENS))
    store = await seed(app, clock)
    seq = (await store.state()).seq
    async with live_server(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        listener = asyncio.create_task(_sse_statuses(client, f"{base}/v1/stream", 2))
        # wait until the stream has its first status, i.e. the client is subscribed
        await eventually_async(  # subscribed before it reads the snapshot
            lambda: app.state.hub.clients == 1, "the stream to join the hub", interval=0.02
        )
        r = await client.patch(
            f"/v1/windows/{WID}",
            json={
                "starts_at": "2021-08-16T01:00",
                "ends_at": "2021-08-16T06:00",
                "reason": "postponed again",
            },
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        w = r.json()
        assert w["starts_at"] == "2021-08-16T01:00:00+09:00"
        assert w["ends_at"] == "2021-08-16T06:00:00+09:00"
        assert w["timezone"] == "Asia/Tokyo"
        assert w["status"] == "scheduled"
        assert len(w["history"]) == 2  # the file's postponement, then this one
        h = w["history"][-1]
        assert h["change"] == "rescheduled"
        assert h["from"] == {
            "starts_at": "2021-08-09T01:00:00+09:00",
            "ends_at": "2021-08-09T06:00:00+09:00",
        }
        assert h["to"] == {
            "starts_at": "2021-08-16T01:00:00+09:00",
            "ends_at": "2021-08-16T06:00:00+09:00",
        }
        assert h["actor"] == "boss"
        assert h["reason"] == "postponed again"
        assert h["at"].startswith("2021-06-01T10:00")
        # the stored window says the same
        stored = (await client.get(f"/v1/windows/{WID}")).json()
        assert stored == w

        events = (await client.get("/v1/events", params={"after": seq})).json()["events"]
        assert len(events) == 1
        assert events[0] == {
            "seq": seq + 1,
            "at": events[0]["at"],
            "type": "maintenance.rescheduled",
            "window_id": WID,
            "actor": "boss",
            "reason": "postponed again",
            "state": "normal",
        }

        async with asyncio.timeout(5):
            statuses = await listener
        assert [s["seq"] for s in statuses] == [seq, seq + 1]
        live = statuses[1]
        assert live["cause"] == {
            "type": "maintenance.rescheduled",
            "window_id": WID,
            "actor": "boss",
            "reason": "postponed again",
        }
        assert live["upcoming"][0]["starts_at"] == "2021-08-16T01:00:00+09:00"
        assert "history" not in live["upcoming"][0]


async def test_patch_other_fields_is_updated_not_rescheduled(
    fake_redis: Any, key_prefix: str
) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        r = await ctx.client.patch(
            f"/v1/windows/{WID}",
            json={"id": WID, "title": {"en": "New title"}, "reason": "wording"},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        w = r.json()
        assert w["title"] == {"en": "New title"}  # nested objects replace whole
        assert w["starts_at"] == "2021-08-09T01:00:00+09:00"
        assert w["history"][-1]["change"] == "updated"
        assert w["history"][-1]["actor"] == "boss"
        last = (await ctx.events())[-1]
        assert (last["type"], last["actor"], last["reason"]) == (
            "maintenance.updated",
            "boss",
            "wording",
        )


async def test_patch_timezone_applies_to_local_times(fake_redis: Any, key_prefix: str) -> None:
    """A local time in a PATCH uses the window's zone after the patch."""
    async with ops_app(fake_redis, key_prefix) as ctx:
        r = await ctx.client.patch(
            f"/v1/windows/{WID}",
            json={
                "timezone": "UTC",
                "starts_at": "2021-08-08T16:00",
                "ends_at": "2021-08-08T21:00",
            },
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        w = r.json()
        assert w["timezone"] == "UTC"
        assert w["starts_at"] == "2021-08-08T16:00:00+00:00"
        # same instants as before: only the zone changed, so no reschedule
        assert w["history"][-1]["change"] == "updated"


async def test_patch_start_before_announce_moves_announce(fake_redis: Any, key_prefix: str) -> None:
    """announce_at not in the PATCH: kept, or pulled back to an earlier new start (never a
    422 naming a field the patch did not send)."""
    async with ops_app(fake_redis, key_prefix) as ctx:
        body = _with(id="later-2021-07", announce_at="2021-06-20T10:00:00+09:00")
        r = await ctx.client.post("/v1/windows", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        r = await ctx.client.patch(
            "/v1/windows/later-2021-07",
            json={
                "starts_at": "2021-06-15T01:00",
                "ends_at": "2021-06-15T03:00",
                "reason": "earlier",
            },
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        w = r.json()
        assert w["starts_at"] == "2021-06-15T01:00:00+09:00"
        assert w["announce_at"] == "2021-06-15T01:00:00+09:00"
        r = await ctx.client.patch(
            "/v1/windows/later-2021-07",
            json={
                "starts_at": "2021-06-16T01:00",
                "ends_at": "2021-06-16T03:00",
                "reason": "later again",
            },
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        assert r.json()["announce_at"] == "2021-06-15T01:00:00+09:00"  # kept
        # given explicitly and after the start: still a 422 naming it
        r = await ctx.client.patch(
            "/v1/windows/later-2021-07",
            json={"announce_at": "2021-06-17T00:00:00+09:00"},
            headers=ADMIN,
        )
        assert_error(r, 422, "invalid", "announce_at")


# -- windows in progress ---------------------------------------------------------------


async def test_extend_in_progress(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix, DURING) as ctx:
        st = await ctx.status()
        assert st["state"] == "maintenance"
        assert st["until"] == "2021-08-09T06:00:00+09:00"
        r = await ctx.client.patch(
            f"/v1/windows/{WID}",
            json={"ends_at": "2021-08-09T07:30", "reason": "migration slow"},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        w = r.json()
        assert w["status"] == "in_progress"
        assert w["starts_at"] == "2021-08-09T01:00:00+09:00"
        assert w["ends_at"] == "2021-08-09T07:30:00+09:00"
        h = w["history"][-1]
        assert (h["change"], h["actor"], h["reason"]) == (
            "rescheduled",
            "boss",
            "migration slow",
        )
        assert h["to"]["ends_at"] == "2021-08-09T07:30:00+09:00"
        st = await ctx.status()
        assert st["state"] == "maintenance"
        assert st["until"] == "2021-08-09T07:30:00+09:00"
        assert st["cause"]["type"] == "maintenance.rescheduled"
        assert st["active"][0]["ends_at"] == "2021-08-09T07:30:00+09:00"


@pytest.mark.parametrize("new_end", ["2021-08-09T01:30", "2021-08-09T02:00:00+09:00"])
async def test_end_in_progress_early(fake_redis: Any, key_prefix: str, new_end: str) -> None:
    """An end at or before now ends the window now."""
    async with ops_app(fake_redis, key_prefix, DURING) as ctx:
        seq = await ctx.seq()
        r = await ctx.client.patch(
            f"/v1/windows/{WID}",
            json={"ends_at": new_end, "reason": "done early"},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        w = r.json()
        assert w["status"] == "completed"
        ends = datetime.fromisoformat(w["ends_at"])
        assert DURING <= ends <= ctx.clock.now()
        h = w["history"][-1]
        assert (h["change"], h["actor"], h["reason"]) == ("ended_early", "boss", "done early")
        assert h["from"]["ends_at"] == "2021-08-09T06:00:00+09:00"
        assert h["to"]["ends_at"] == w["ends_at"]
        events = await ctx.events()
        assert [e["seq"] for e in events][-1] == seq + 1
        assert (events[-1]["type"], events[-1]["state"], events[-1]["actor"]) == (
            "maintenance.ended",
            "normal",
            "boss",
        )
        assert events[-1]["reason"] == "done early"
        st = await ctx.status()
        assert st["state"] == "normal"
        assert st["until"] is None
        assert st["error_code"] is None
        assert st["active"] == []
        assert all(
            v == "operational" for methods in st["components"].values() for v in methods.values()
        )


async def test_cancel_in_progress(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix, DURING) as ctx:
        r = await ctx.client.post(
            f"/v1/windows/{WID}/cancel", json={"reason": "rolled back"}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        w = r.json()
        assert w["status"] == "cancelled"
        assert DURING <= datetime.fromisoformat(w["ends_at"]) <= ctx.clock.now()
        h = w["history"][-1]
        assert (h["change"], h["actor"], h["reason"]) == ("cancelled", "boss", "rolled back")
        last = (await ctx.events())[-1]
        assert (last["type"], last["state"], last["actor"], last["reason"]) == (
            "maintenance.cancelled",
            "normal",
            "boss",
            "rolled back",
        )
        st = await ctx.status()
        assert st["state"] == "normal"
        assert st["active"] == []
        assert (await ctx.window())["status"] == "cancelled"


async def test_cancel_scheduled_without_body(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        r = await ctx.client.post(f"/v1/windows/{WID}/cancel", headers=ADMIN)
        assert r.status_code == 200, r.text
        w = r.json()
        assert w["status"] == "cancelled"
        assert w["ends_at"] == "2021-08-09T06:00:00+09:00"  # a scheduled one keeps its times
        st = await ctx.status()
        assert st["upcoming"] == []
        last = (await ctx.events())[-1]
        assert (last["type"], last["actor"], last["reason"]) == (
            "maintenance.cancelled",
            "boss",
            None,
        )


# -- override --------------------------------------------------------------------------


async def test_override_maintenance_with_ttl(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        r = await ctx.client.put(
            "/v1/override",
            json={"mode": "maintenance", "reason": "incident 42", "ttl_s": 1800},
            headers=OPERATOR,
        )
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["state"] == "maintenance"
        ov = st["override"]
        assert (ov["mode"], ov["affected"], ov["reason"], ov["actor"]) == (
            "maintenance",
            None,
            "incident 42",
            "ops",
        )
        set_at = datetime.fromisoformat(ov["set_at"])
        expires = datetime.fromisoformat(ov["expires_at"])
        assert expires - set_at == timedelta(seconds=1800)
        assert ov["expires_at"].endswith("+09:00")
        assert st["until"] == ov["expires_at"]
        assert st["error_code"] == "Z010000000"
        assert st["cause"] == {
            "type": "override.set",
            "window_id": None,
            "actor": "ops",
            "reason": "incident 42",
        }
        assert all(
            v == "under_maintenance"
            for methods in st["components"].values()
            for v in methods.values()
        )
        assert await ctx.status() == st


async def test_override_with_expires_at(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        r = await ctx.client.put(
            "/v1/override",
            json={
                "mode": "maintenance",
                "reason": "deploy",
                "expires_at": "2021-06-01T02:00:00Z",
            },
            headers=OPERATOR,
        )
        assert r.status_code == 200, r.text
        assert r.json()["override"]["expires_at"] == "2021-06-01T11:00:00+09:00"
        assert r.json()["until"] == "2021-06-01T11:00:00+09:00"


async def test_override_without_expiry_holds_with_null_until(
    fake_redis: Any, key_prefix: str
) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        r = await ctx.client.put(
            "/v1/override", json={"mode": "maintenance", "reason": "hold"}, headers=OPERATOR
        )
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["state"] == "maintenance"
        assert st["override"]["expires_at"] is None
        assert st["until"] is None


async def test_scoped_override(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        r = await ctx.client.put(
            "/v1/override",
            json={
                "mode": "maintenance",
                "reason": "au outage",
                "affected": {"atobarai": ["au_easy"]},
            },
            headers=OPERATOR,
        )
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["override"]["affected"] == {"atobarai": ["au_easy"]}
        down = [
            (s, m)
            for s, methods in st["components"].items()
            for m, v in methods.items()
            if v == "under_maintenance"
        ]
        assert down == [("atobarai", "au_easy")]
        assert st["state"] == "maintenance"
        assert (await ctx.status(service="webcollect"))["state"] == "normal"
        assert (await ctx.status(service="atobarai", method="credit_card"))["state"] == "normal"
        au = await ctx.status(service="atobarai", method="au_easy")
        assert au["state"] == "maintenance"
        assert au["override"] is not None


async def test_override_normal_during_active_window(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix, DURING) as ctx:
        assert (await ctx.status())["state"] == "maintenance"
        r = await ctx.client.put(
            "/v1/override",
            json={"mode": "normal", "reason": "maintenance done, opening early"},
            headers=OPERATOR,
        )
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["state"] == "normal"
        assert st["until"] is None
        assert st["error_code"] is None
        assert all(
            v == "operational" for methods in st["components"].values() for v in methods.values()
        )
        assert st["override"]["mode"] == "normal"
        # clearing gives the schedule back
        r = await ctx.client.request(
            "DELETE", "/v1/override", json={"reason": "back to schedule"}, headers=OPERATOR
        )
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["state"] == "maintenance"
        assert st["override"] is None
        assert st["cause"] == {
            "type": "override.cleared",
            "window_id": None,
            "actor": "ops",
            "reason": "back to schedule",
        }


async def test_delete_override(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        r = await ctx.client.delete("/v1/override", headers=OPERATOR)
        err = assert_error(r, 404, "not_found", "override")
        assert "no override" in err["message"]
        assert await ctx.snapshot() == before

        r = await ctx.client.put(
            "/v1/override", json={"mode": "maintenance", "reason": "x"}, headers=OPERATOR
        )
        assert r.status_code == 200
        r = await ctx.client.delete("/v1/override", headers=OPERATOR)  # no body: fine
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["override"] is None
        assert st["state"] == "normal"
        assert st["cause"]["type"] == "override.cleared"
        assert (await ctx.store.state()).override is None

        seq = await ctx.seq()
        r = await ctx.client.delete("/v1/override", headers=OPERATOR)
        assert_error(r, 404, "not_found", "override")
        assert await ctx.seq() == seq


async def test_override_expires_under_worker(fake_redis: Any, key_prefix: str) -> None:
    async with (
        ops_app(fake_redis, key_prefix) as ctx,
        running_worker(ctx.store, ctx.clock),
    ):
        r = await ctx.client.put(
            "/v1/override",
            json={"mode": "maintenance", "reason": "short", "ttl_s": 1},
            headers=OPERATOR,
        )
        assert r.status_code == 200, r.text
        set_seq = r.json()["seq"]

        async def published() -> dict[str, Any] | None:
            st = await ctx.store.status(ctx.clock.now())
            return st if st["seq"] > set_seq else None

        st = await eventually_async(published, "the override's expiry published")
        assert st["cause"]["type"] == "override.expired"
        assert st["state"] == "normal"
        assert st["override"] is None
        assert (await ctx.store.state()).override is None
        last = (await ctx.events())[-1]
        assert (last["type"], last["seq"]) == ("override.expired", set_seq + 1)


# -- visibility ------------------------------------------------------------------------


async def test_unannounced_window_is_visible_only_to_ops(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        body = _with(id="secret-2021-07", announce_at="2021-06-15T10:00:00+09:00")
        r = await ctx.client.post("/v1/windows", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        assert r.json()["announce_at"] == "2021-06-15T10:00:00+09:00"

        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = await ctx.client.get("/v1/windows", headers=headers)
            assert [w["id"] for w in r.json()["windows"]] == [WID]
            r = await ctx.client.get("/v1/windows/secret-2021-07", headers=headers)
            assert_error(r, 404, "not_found")
        st = await ctx.status()
        assert [w["id"] for w in st["upcoming"]] == [WID]

        for headers in (OPERATOR, ADMIN):
            r = await ctx.client.get("/v1/windows", headers=headers)
            assert [w["id"] for w in r.json()["windows"]] == ["secret-2021-07", WID]
            r = await ctx.client.get("/v1/windows/secret-2021-07", headers=headers)
            assert r.status_code == 200
            assert r.json()["id"] == "secret-2021-07"
            r = await ctx.client.get("/v1/windows", params={"status": "scheduled"}, headers=headers)
            assert len(r.json()["windows"]) == 2

        cal = Calendar.from_ical((await ctx.client.get("/v1/windows.ics")).content)
        assert [str(e["UID"]) for e in cal.walk("VEVENT")] == [f"{WID}@maintcast"]


# -- iCal ------------------------------------------------------------------------------


def _vevents(body: bytes) -> dict[str, Any]:
    cal = Calendar.from_ical(body)
    events = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    assert len(events) == len(cal.walk("VEVENT"))  # UIDs are unique
    return events


async def test_ical_feed(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        r = await ctx.client.post("/v1/windows", json=NEW, headers=ADMIN)
        assert r.status_code == 201
        hidden = _with(id="later-2021-09", announce_at="2021-07-01T00:00:00+09:00")
        hidden.update(starts_at="2021-09-01T01:00:00+09:00", ends_at="2021-09-01T02:00:00+09:00")
        r = await ctx.client.post("/v1/windows", json=hidden, headers=ADMIN)
        assert r.status_code == 201

        r = await ctx.client.get("/v1/windows.ics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/calendar")
        events = _vevents(r.content)
        assert set(events) == {f"{WID}@maintcast", "atobarai-2021-07@maintcast"}
        ev = events[f"{WID}@maintcast"]
        assert int(ev["SEQUENCE"]) == 1  # the file's postponement
        assert str(ev["STATUS"]) == "CONFIRMED"
        assert ev["DTSTART"].params["TZID"] == "Asia/Tokyo"
        assert ev["DTEND"].params["TZID"] == "Asia/Tokyo"
        assert ev.decoded("DTSTART") == jst(2021, 8, 9, 1)
        assert ev.decoded("DTEND") == jst(2021, 8, 9, 6)
        assert ev.decoded("DTSTART").utcoffset() == timedelta(hours=9)
        assert "webコレクト" in str(ev["SUMMARY"])
        assert int(events["atobarai-2021-07@maintcast"]["SEQUENCE"]) == 0
        cal = Calendar.from_ical(r.content)
        assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Asia/Tokyo"]

        # a reschedule: same UID, SEQUENCE + 1, new times
        r = await ctx.client.patch(
            f"/v1/windows/{WID}",
            json={"starts_at": "2021-08-16T01:00", "ends_at": "2021-08-16T06:00", "reason": "x"},
            headers=ADMIN,
        )
        assert r.status_code == 200
        events = _vevents((await ctx.client.get("/v1/windows.ics")).content)
        ev = events[f"{WID}@maintcast"]
        assert int(ev["SEQUENCE"]) == 2
        assert ev.decoded("DTSTART") == jst(2021, 8, 16, 1)
        # an update that does not move times does not bump SEQUENCE
        r = await ctx.client.patch(f"/v1/windows/{WID}", json={"title": {"en": "T"}}, headers=ADMIN)
        assert r.status_code == 200
        ev = _vevents((await ctx.client.get("/v1/windows.ics")).content)[f"{WID}@maintcast"]
        assert int(ev["SEQUENCE"]) == 2

        # a cancel: still listed, STATUS:CANCELLED, same UID
        r = await ctx.client.post(f"/v1/windows/{WID}/cancel", json={"reason": "x"}, headers=ADMIN)
        assert r.status_code == 200
        events = _vevents((await ctx.client.get("/v1/windows.ics")).content)
        assert set(events) == {f"{WID}@maintcast", "atobarai-2021-07@maintcast"}
        assert str(events[f"{WID}@maintcast"]["STATUS"]) == "CANCELLED"
        assert str(events["atobarai-2021-07@maintcast"]["STATUS"]) == "CONFIRMED"


async def test_ical_window_in_another_zone(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        body = _with(
            id="ny-2024", starts_at="2024-11-03T01:30:00-04:00", ends_at="2024-11-03T03:00"
        )
        body["timezone"] = "America/New_York"
        r = await ctx.client.post("/v1/windows", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        ev = _vevents((await ctx.client.get("/v1/windows.ics")).content)["ny-2024@maintcast"]
        # the first 01:30 of New York's 2024-11-03 fold, written in UTC like every time of a
        # zone with DST: parsers read such local times differently (test_ical_interop.py)
        assert "TZID" not in ev["DTSTART"].params
        assert ev.decoded("DTSTART").isoformat() == "2024-11-03T05:30:00+00:00"


# -- audit -----------------------------------------------------------------------------


async def test_every_accepted_write_is_audited(fake_redis: Any, key_prefix: str) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        seq = await ctx.seq()
        writes: list[tuple[str, str, dict[str, str], Any, str, str | None]] = [
            (
                "POST",
                "/v1/windows",
                ADMIN,
                {**NEW, "reason": "au upgrade"},
                "maintenance.scheduled",
                "au upgrade",
            ),
            (
                "PATCH",
                "/v1/windows/atobarai-2021-07",
                ADMIN,
                {"ends_at": "2021-07-01T04:00:00+09:00", "reason": "longer"},
                "maintenance.rescheduled",
                "longer",
            ),
            (
                "PATCH",
                f"/v1/windows/{WID}",
                ADMIN,
                {"description": {"en": "d"}, "reason": "clarify"},
                "maintenance.updated",
                "clarify",
            ),
            (
                "PUT",
                "/v1/override",
                OPERATOR,
                {"mode": "maintenance", "reason": "incident 7"},
                "override.set",
                "incident 7",
            ),
            (
                "DELETE",
                "/v1/override",
                OPERATOR,
                {"reason": "fixed"},
                "override.cleared",
                "fixed",
            ),
            (
                "POST",
                "/v1/windows/atobarai-2021-07/cancel",
                ADMIN,
                {"reason": "merged"},
                "maintenance.cancelled",
                "merged",
            ),
        ]
        for method, path, headers, body, _, _ in writes:
            r = await ctx.client.request(method, path, json=body, headers=headers)
            assert r.status_code in (200, 201), (method, path, r.text)
        # refused writes in between leave no trace
        await ctx.client.put("/v1/override", json={"mode": "x", "reason": "y"}, headers=OPERATOR)
        await ctx.client.post("/v1/windows", json=NEW, headers=OPERATOR)
        events = (await ctx.client.get("/v1/events", params={"after": seq})).json()["events"]
        assert [e["seq"] for e in events] == list(range(seq + 1, seq + 1 + len(writes)))
        got = [(e["type"], e["actor"], e["reason"]) for e in events]
        want = [
            (kind, "ops" if headers is OPERATOR else "boss", reason)
            for _, _, headers, _, kind, reason in writes
        ]
        assert got == want
        assert [e["window_id"] for e in events] == [
            "atobarai-2021-07",
            "atobarai-2021-07",
            WID,
            None,
            None,
            "atobarai-2021-07",
        ]
        assert await ctx.seq() == seq + len(writes)


@pytest.mark.parametrize(
    ("at", "due"),
    [(jst(2021, 8, 9, 1), "maintenance.started"), (DURING, "reconciled")],
    ids=["at-the-boundary", "an-hour-late"],
)
async def test_due_boundary_is_published_before_the_write(
    fake_redis: Any, key_prefix: str, at: datetime, due: str
) -> None:
    """An ops write at a moment a time-driven change is due and unpublished publishes that
    change first, as its own event, in the same transaction (``reconciled`` when later than
    the misfire grace)."""
    clock = RehearsalClock(at)
    app = build_app(fake_redis, key_prefix, clock, Tokens.parse(TOKENS))
    store = await seed(app, RehearsalClock(BEFORE))  # the last publish knew only June
    seq = (await store.state()).seq
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        r = await client.put(
            "/v1/override", json={"mode": "normal", "reason": "open early"}, headers=OPERATOR
        )
        assert r.status_code == 200, r.text
        assert r.json()["seq"] == seq + 2
        events = (await client.get("/v1/events", params={"after": seq})).json()["events"]
        assert [(e["type"], e["state"], e["actor"]) for e in events] == [
            (due, "maintenance", None),
            ("override.set", "normal", "ops"),
        ]
        assert events[0]["window_id"] == WID


# -- found by the fresh-user review ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        (
            "POST",
            "/v1/windows",
            _with(
                id="far", starts_at="9999-12-31T20:00:00+09:00", ends_at="9999-12-31T21:00:00+09:00"
            ),
            "starts_at",
        ),
        (
            "POST",
            "/v1/windows",
            _with(
                id="far2",
                starts_at="9999-12-31T23:00:00-09:00",
                ends_at="9999-12-31T23:30:00-09:00",
            ),
            "starts_at",
        ),
        ("PUT", "/v1/override", {"mode": "maintenance", "reason": "r", "ttl_s": 1e30}, "ttl_s"),
        ("PUT", "/v1/override", {"mode": "maintenance", "reason": "r", "ttl_s": True}, "ttl_s"),
        ("PUT", "/v1/override", {"mode": "maintenance", "reason": "r", "ttl_s": "60"}, "ttl_s"),
        ("PUT", "/v1/override", {"mode": "maintenance", "reason": "   "}, "reason"),
        ("PATCH", f"/v1/windows/{WID}", {"reason": "only a reason"}, "body"),
        ("PATCH", f"/v1/windows/{WID}", {}, "body"),
    ],
)
async def test_review_inputs_are_422_and_change_nothing(
    fake_redis: Any, key_prefix: str, method: str, path: str, body: Any, field: str
) -> None:
    async with ops_app(fake_redis, key_prefix) as ctx:
        seq = await ctx.seq()
        r = await ctx.client.request(method, path, json=body, headers=ADMIN)
        assert_error(r, 422, "invalid", field)
        assert await ctx.seq() == seq


async def test_ical_second_occurrence_of_a_repeated_hour_is_utc(
    fake_redis: Any, key_prefix: str
) -> None:
    """2021-11-07 01:30 happens twice in New York; the second (-05:00) is written in UTC,
    since RFC 5545 reads a TZID time in the repeated hour as the first occurrence."""
    async with ops_app(fake_redis, key_prefix) as ctx:
        body = _with(
            id="ny-2021", starts_at="2021-11-07T01:30:00-05:00", ends_at="2021-11-07T03:00:00-05:00"
        )
        body["timezone"] = "America/New_York"
        body["affected"] = {"atobarai": ["au_easy"]}
        r = await ctx.client.post("/v1/windows", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        ev = _vevents((await ctx.client.get("/v1/windows.ics")).content)["ny-2021@maintcast"]
        assert ev.decoded("DTSTART").isoformat() == "2021-11-07T06:30:00+00:00"
