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
import yaml
from httpx_sse import aconnect_sse

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.domain import Cause, HistoryEntry, LocalText, Window, is_public, public_cause
from broadcaster.validation import parse_schedule
from tests.support import (
    DEFAULTS,
    EXAMPLE,
    FixedClock,
    jst,
    live_server,
    make_store,
    settings_for,
)

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


def cancelled(announce_at: Any, *cancels: Any) -> Window:
    """``window(announce_at)``, cancelled, with a ``cancelled`` history entry at each of
    ``cancels``."""
    history = tuple(
        HistoryEntry.model_validate({"at": at, "change": "cancelled", "actor": "boss"})
        for at in cancels
    )
    return window(announce_at).model_copy(update={"cancelled": True, "history": history})


@pytest.mark.parametrize(
    ("w", "now", "public"),
    [
        # cancelled under embargo: never public, however late
        (cancelled(ANNOUNCE, NOW), ANNOUNCE - timedelta(microseconds=1), False),
        (cancelled(ANNOUNCE, NOW), ANNOUNCE, False),
        (cancelled(ANNOUNCE, NOW), ANNOUNCE + timedelta(days=400), False),
        (cancelled(ANNOUNCE, ANNOUNCE - timedelta(milliseconds=1)), ANNOUNCE, False),
        # cancelled once announced (at announce_at itself too): public from announce_at on
        (cancelled(ANNOUNCE, ANNOUNCE), ANNOUNCE, True),
        (cancelled(ANNOUNCE, ANNOUNCE + timedelta(days=1)), ANNOUNCE + timedelta(days=2), True),
        (cancelled(NOW, NOW), NOW, True),
        # the latest cancellation counts
        (cancelled(ANNOUNCE, NOW, ANNOUNCE + timedelta(days=1)), ANNOUNCE, True),
        # cancelled with no record of when (a schedule file's status: cancelled): announce_at
        (cancelled(ANNOUNCE), ANNOUNCE, True),
        (cancelled(ANNOUNCE), NOW, False),
    ],
)
def test_a_window_cancelled_under_embargo_is_never_public(
    w: Window, now: Any, public: bool
) -> None:
    assert is_public(w, now) is public
    cause = public_cause(Cause("maintenance.cancelled", "w", "boss", "why"), {"w": w}, now)
    assert (cause.window_id, cause.reason) == (("w", "why") if public else (None, None))


async def test_cancelled_under_embargo_stays_hidden_after_announce_at(
    fake_redis: Any, key_prefix: str
) -> None:
    """Created and cancelled before its announce_at, a window is never listed, found or in
    the feed for public readers, and its events never name it, also long after its
    announce_at; ops tokens still see everything."""
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
        clock.t = NOW + timedelta(days=1)
        r = await client.post(
            f"/v1/windows/{SECRET_ID}/cancel", json={"reason": "deal off (secret)"}, headers=ADMIN
        )
        assert r.status_code == 200, r.text

        for later in (ANNOUNCE, ANNOUNCE + timedelta(days=1), jst(2021, 7, 2)):
            clock.t = later
            assert await store.reconcile(later) == []  # nothing is announced
            for query in ({}, {"status": "cancelled"}):
                r = await client.get("/v1/windows", params=query)
                assert SECRET_ID not in [w["id"] for w in r.json()["windows"]], (later, query)
            r = await client.get(f"/v1/windows/{SECRET_ID}")
            unknown = await client.get("/v1/windows/no-such-window")
            assert r.status_code == unknown.status_code == 404
            assert r.json()["error"]["code"] == unknown.json()["error"]["code"]
            r = await client.get("/v1/windows.ics")
            assert r.status_code == 200
            assert SECRET_ID not in r.text
            assert "非公開" not in r.text
            assert "Embargoed" not in r.text
            r = await client.get("/v1/events", params={"after": created - 1})
            public = r.json()["events"]
            assert [e["type"] for e in public] == ["maintenance.scheduled", "maintenance.cancelled"]
            assert all(e["window_id"] is None and e["reason"] is None for e in public), public
            assert "secret" not in r.text
            assert "confidential" not in r.text

            # ops tokens read it all
            r = await client.get("/v1/windows", params={"status": "cancelled"}, headers=OPERATOR)
            assert SECRET_ID in [w["id"] for w in r.json()["windows"]]
            r = await client.get(f"/v1/windows/{SECRET_ID}", headers=OPERATOR)
            assert r.status_code == 200
            assert r.json()["status"] == "cancelled"
            r = await client.get("/v1/events", params={"after": created - 1}, headers=OPERATOR)
            assert [(e["window_id"], e["reason"]) for e in r.json()["events"]] == [
                (SECRET_ID, SECRET["reason"]),
                (SECRET_ID, "deal off (secret)"),
            ]


async def test_an_import_cancelling_under_embargo_records_when(
    fake_redis: Any, key_prefix: str
) -> None:
    """A schedule file that cancels a window still under embargo (``status: cancelled``)
    records the cancellation in its history, so the window stays hidden after its
    announce_at like one cancelled through the API; one already announced stays public."""
    store = make_store(fake_redis, key_prefix)

    def schedule(status: str | None, announce_at: str, at: Any) -> Any:
        doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        doc["windows"][0]["announce_at"] = announce_at
        if status is not None:
            doc["windows"][0]["status"] = status
        return parse_schedule(yaml.safe_dump(doc), source="f.yaml", defaults=DEFAULTS, now=at)

    wid = schedule(None, "2021-06-15T10:00:00+09:00", NOW).windows[0].id
    await store.import_schedule(schedule(None, "2021-06-15T10:00:00+09:00", NOW), NOW)
    later = NOW + timedelta(days=1)
    await store.import_schedule(schedule("cancelled", "2021-06-15T10:00:00+09:00", later), later)
    w = (await store.windows())[wid]
    assert [h.at for h in w.history if h.change == "cancelled"] == [later]
    assert not is_public(w, jst(2021, 8, 10))
    # re-imported as it is: nothing changes, the record stays
    again = NOW + timedelta(days=2)
    sched = schedule("cancelled", "2021-06-15T10:00:00+09:00", again)
    assert await store.import_schedule(sched, again) == []
    assert (await store.windows())[wid].history == w.history

    # a new window that arrives cancelled, already announced: public, cancelled since now
    other = make_store(fake_redis, key_prefix + "-2")
    await other.import_schedule(schedule("cancelled", "2021-05-01T10:00:00+09:00", NOW), NOW)
    w = (await other.windows())[wid]
    assert [h.at for h in w.history if h.change == "cancelled"] == [NOW]
    assert is_public(w, NOW)
