"""The extend, end and notes routes over the ASGI app and fakeredis: roles, 409s and 422s,
history, one event each, and ``until``/``Retry-After`` following at once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from icalendar import Calendar

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.store import Store
from tests.support import FixedClock, eventually_async, import_example, jst, settings_for

OP, AD = "op-token-4f2a", "admin-token-9c1e"
TOKENS = entry_line("ops", "operator", OP) + "," + entry_line("boss", "admin", AD)
ADMIN, OPERATOR = {"Authorization": f"Bearer {AD}"}, {"Authorization": f"Bearer {OP}"}
WID = "webcollect-2021-08"  # 2021-08-09 01:00-06:00 JST
BEFORE, DURING, AFTER = jst(2021, 8, 1), jst(2021, 8, 9, 2), jst(2021, 8, 9, 7)


@dataclass
class Ctx:
    client: httpx.AsyncClient
    store: Store
    clock: FixedClock

    async def post(self, path: str, body: Any, headers: dict[str, str] = OPERATOR) -> Any:
        return await self.client.post(f"/v1/windows/{WID}/{path}", json=body, headers=headers)

    async def status(self) -> dict[str, Any]:
        """GET /v1/status once the hub has the store's latest seq."""
        want = (await self.store.state()).seq

        async def caught_up() -> dict[str, Any] | None:
            doc: dict[str, Any] = (await self.client.get("/v1/status")).json()
            return doc if doc["seq"] >= want else None

        return await eventually_async(caught_up, f"status seq {want}", interval=0.01)

    async def events(self) -> list[dict[str, Any]]:
        return (await self.client.get("/v1/events", params={"limit": 1000})).json()["events"]  # type: ignore[no-any-return]

    async def untouched(self) -> tuple[int, Any]:
        st = await self.store.state()
        return st.seq, st.windows


@contextlib.asynccontextmanager
async def app_at(fake_redis: Any, key_prefix: str, at: datetime) -> AsyncIterator[Ctx]:
    """The seed notice with a reserve to 07:00 JST, served at ``at`` (a still clock)."""
    clock = FixedClock(jst(2021, 6, 1))
    app = create_app(
        settings_for(None, key_prefix),
        redis=fake_redis,
        clock=clock,
        tokens=Tokens.parse(TOKENS),
        demo=True,
    )
    store: Store = app.state.store
    await import_example(store, clock.t)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        ctx = Ctx(client, store, clock)
        r = await client.patch(
            f"/v1/windows/{WID}", json={"latest_end": "2021-08-09T07:00"}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        clock.t = at
        await store.reconcile(at)
        yield ctx


async def test_extend_within_the_reserve_moves_until_and_retry_after(
    fake_redis: Any, key_prefix: str
) -> None:
    async with app_at(fake_redis, key_prefix, DURING) as c:
        before = await c.status()
        assert before["until"] == "2021-08-09T06:00:00+09:00"
        token = await c.client.post("/demo/api/token")
        assert token.status_code == 503
        assert token.headers["retry-after"] == str(4 * 3600)
        r = await c.post("extend", {"by_s": 1800, "reason": "migration overran"})
        assert r.status_code == 200, r.text
        w = r.json()
        assert (w["ends_at"], w["latest_end"]) == (
            "2021-08-09T06:30:00+09:00",
            "2021-08-09T07:00:00+09:00",
        )
        h = w["history"][-1]
        assert (h["change"], h["actor"], h["reason"]) == ("extended", "ops", "migration overran")
        assert h["from"]["ends_at"] == "2021-08-09T06:00:00+09:00"
        assert h["to"]["ends_at"] == "2021-08-09T06:30:00+09:00"
        after = await c.status()
        assert after["seq"] == before["seq"] + 1
        assert after["cause"] == {
            "type": "maintenance.extended",
            "window_id": WID,
            "actor": "ops",
            "reason": "migration overran",
        }
        assert after["until"] == "2021-08-09T06:30:00+09:00"
        assert after["active"][0]["ends_at"] == "2021-08-09T06:30:00+09:00"
        assert after["active"][0]["latest_end"] == "2021-08-09T07:00:00+09:00"
        token = await c.client.post("/demo/api/token")
        assert token.status_code == 503
        assert token.headers["retry-after"] == str(4 * 3600 + 1800)
        assert token.json()["until"] == "2021-08-09T06:30:00+09:00"
        assert token.json()["latest_end"] == "2021-08-09T07:00:00+09:00"
        (last,) = (await c.events())[-1:]
        assert (last["type"], last["window_id"], last["state"]) == (
            "maintenance.extended",
            WID,
            "maintenance",
        )


async def test_extend_past_the_reserve_needs_admin(fake_redis: Any, key_prefix: str) -> None:
    async with app_at(fake_redis, key_prefix, DURING) as c:
        before = await c.untouched()
        r = await c.post("extend", {"ends_at": "2021-08-09T07:00:01+09:00"})
        assert r.status_code == 403, r.text
        err = r.json()["error"]
        assert (err["code"], err["field"]) == ("forbidden", "ends_at")
        assert "latest_end" in err["message"]
        assert "admin" in err["message"]
        assert await c.untouched() == before
        r = await c.post("extend", {"ends_at": "2021-08-09T07:30"}, headers=ADMIN)
        assert r.status_code == 200, r.text
        w = r.json()
        assert w["ends_at"] == w["latest_end"] == "2021-08-09T07:30:00+09:00"
        assert w["history"][-1]["actor"] == "boss"
        assert (await c.status())["until"] == "2021-08-09T07:30:00+09:00"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ends_at": "2021-08-09T06:00:00+09:00"}, "ends_at"),
        ({"ends_at": "2021-08-09T05:00:00+09:00"}, "ends_at"),
        ({"by_s": -1}, "by_s"),
        ({}, "ends_at"),
        ({"by_s": 60, "ends_at": "2021-08-09T06:10:00+09:00"}, "by_s"),
    ],
)
async def test_extend_rejects(
    fake_redis: Any, key_prefix: str, body: dict[str, Any], field: str
) -> None:
    async with app_at(fake_redis, key_prefix, DURING) as c:
        before = await c.untouched()
        r = await c.post("extend", body, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == field
        assert await c.untouched() == before


async def test_end_now(fake_redis: Any, key_prefix: str) -> None:
    async with app_at(fake_redis, key_prefix, DURING) as c:
        r = await c.post("end", {"reason": "finished early"})
        assert r.status_code == 200, r.text
        w = r.json()
        assert (w["status"], w["ends_at"]) == ("completed", "2021-08-09T02:00:00+09:00")
        assert w["history"][-1]["change"] == "ended_early"
        st = await c.status()
        assert (st["state"], st["until"], st["cause"]["type"]) == (
            "normal",
            None,
            "maintenance.ended",
        )
        assert (await c.client.post("/demo/api/token")).status_code == 200
        # ended: a second end, an extension and a note all conflict
        for path, body in (
            ("end", {}),
            ("extend", {"by_s": 60}),
            ("notes", {"message": {"en": "x"}}),
        ):
            r = await c.post(path, body, headers=ADMIN)
            assert r.status_code == 409, (path, r.text)
            assert "completed" in r.json()["error"]["message"]


async def test_end_needs_a_window_in_progress(fake_redis: Any, key_prefix: str) -> None:
    async with app_at(fake_redis, key_prefix, BEFORE) as c:
        before = await c.untouched()
        r = await c.post("end", None)
        assert r.status_code == 409, r.text
        assert "scheduled" in r.json()["error"]["message"]
        assert await c.untouched() == before


async def test_note_publishes_the_same_state_with_its_cause(
    fake_redis: Any, key_prefix: str
) -> None:
    async with app_at(fake_redis, key_prefix, DURING) as c:
        before = await c.status()
        r = await c.post("notes", {"message": {"ja": "作業は順調です", "en": "On track"}})
        assert r.status_code == 200, r.text
        notes = r.json()["notes"]
        assert notes == [
            {
                "at": "2021-08-09T02:00:00+09:00",
                "message": {"ja": "作業は順調です", "en": "On track"},
                "actor": "ops",
            }
        ]
        after = await c.status()
        assert after["seq"] == before["seq"] + 1
        assert (after["cause"]["type"], after["cause"]["window_id"]) == ("maintenance.note", WID)
        for k in ("state", "until", "components", "error_code"):
            assert after[k] == before[k]
        assert after["active"][0]["notes"] == notes
        r = await c.client.get(f"/v1/windows/{WID}")
        assert r.json()["notes"] == notes


async def test_closed_windows_conflict(fake_redis: Any, key_prefix: str) -> None:
    async with app_at(fake_redis, key_prefix, AFTER) as c:
        before = await c.untouched()
        for path, body in (
            ("end", {}),
            ("extend", {"by_s": 60}),
            ("notes", {"message": {"en": "x"}}),
        ):
            r = await c.post(path, body, headers=ADMIN)
            assert r.status_code == 409, (path, r.text)
            assert r.json()["error"]["code"] == "conflict"
        assert await c.untouched() == before


async def test_cancelled_windows_conflict(fake_redis: Any, key_prefix: str) -> None:
    async with app_at(fake_redis, key_prefix, BEFORE) as c:
        r = await c.post("cancel", {"reason": "no longer needed"}, headers=ADMIN)
        assert r.status_code == 200, r.text
        for path, body in (
            ("end", {}),
            ("extend", {"by_s": 60}),
            ("notes", {"message": {"en": "x"}}),
        ):
            r = await c.post(path, body, headers=ADMIN)
            assert r.status_code == 409, (path, r.text)
            assert "cancelled" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["extend", "end", "notes"])
async def test_auth_and_unknown_windows(fake_redis: Any, key_prefix: str, path: str) -> None:
    async with app_at(fake_redis, key_prefix, DURING) as c:
        r = await c.client.post(f"/v1/windows/{WID}/{path}", json={})
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = await c.client.post(f"/v1/windows/nope/{path}", json={"by_s": 1}, headers=OPERATOR)
        assert r.status_code == 404, r.text


async def test_extend_a_scheduled_window_before_it_starts(fake_redis: Any, key_prefix: str) -> None:
    async with app_at(fake_redis, key_prefix, BEFORE) as c:
        r = await c.post("extend", {"by_s": 600})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "scheduled"
        st = await c.status()
        assert st["cause"]["type"] == "maintenance.extended"
        assert st["upcoming"][0]["ends_at"] == "2021-08-09T06:10:00+09:00"
        c.clock.t = jst(2021, 8, 9, 6, 5)
        await c.store.reconcile(c.clock.t)
        st = await c.status()
        assert (st["state"], st["until"]) == ("maintenance", "2021-08-09T06:10:00+09:00")
        assert st["until"] is not None
        assert timedelta(minutes=5) == (datetime.fromisoformat(st["until"]) - c.clock.t)


async def test_ical_feed_carries_the_reserve_and_counts_extensions(
    fake_redis: Any, key_prefix: str
) -> None:
    async with app_at(fake_redis, key_prefix, DURING) as c:

        async def vevent() -> Any:
            r = await c.client.get("/v1/windows.ics")
            assert r.status_code == 200
            (ev,) = [e for e in Calendar.from_ical(r.content).walk("VEVENT")]
            assert str(ev["UID"]) == f"{WID}@maintcast"
            return ev

        ev = await vevent()
        assert ev["X-MAINTCAST-LATEST-END"].dt == jst(2021, 8, 9, 7)
        description = str(ev["DESCRIPTION"])
        assert description.startswith(
            "終了予定 06:00（最長 07:00） / planned end 06:00 (at the latest 07:00)"
        ), description
        sequence = int(ev["SEQUENCE"])
        r = await c.post("extend", {"by_s": 600})
        assert r.status_code == 200, r.text
        ev = await vevent()
        assert int(ev["SEQUENCE"]) == sequence + 1
        assert ev.decoded("DTEND") == jst(2021, 8, 9, 6, 10)
        assert str(ev["DESCRIPTION"]).startswith("終了予定 06:10（最長 07:00）")


# the pages answer GET and HEAD from one function: FastAPI warns of its operation id twice
@pytest.mark.filterwarnings("ignore:Duplicate Operation ID:UserWarning")
async def test_openapi_describes_the_lifecycle_routes(fake_redis: Any, key_prefix: str) -> None:
    async with app_at(fake_redis, key_prefix, BEFORE) as c:
        doc = (await c.client.get("/openapi.json")).json()
    for path, props, required in (
        ("extend", {"ends_at", "by_s", "reason"}, []),
        ("end", {"reason"}, []),
        ("notes", {"message", "reason"}, ["message"]),
    ):
        op = doc["paths"][f"/v1/windows/{{window_id}}/{path}"]["post"]
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert set(body["properties"]) == props, path
        assert body.get("required", []) == required, path
        assert "200" in op["responses"]
        assert op["summary"]
    note = doc["paths"]["/v1/windows/{window_id}/notes"]["post"]
    message = note["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert set(message["message"]["properties"]) == {"ja", "en"}  # inlined, no dangling $ref
