"""Recurring series over the HTTP API (ASGI app on fakeredis): create, read, list, patch and
cancel one occurrence or the series, the status and the iCal feed, the event log, the
top-up by reconcile and a schedule file with a series."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from icalendar import Calendar

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.store import Store
from broadcaster.store.notify import NotifyStore
from broadcaster.validation import parse_schedule
from tests.notify_support import subscribe
from tests.support import DEFAULTS, FixedClock, import_example, jst, settings_for

AD, OP = "admin-token-series", "op-token-series"
ADMIN = {"Authorization": f"Bearer {AD}"}
OPERATOR = {"Authorization": f"Bearer {OP}"}
CREATED = jst(2021, 7, 20, 10)
SID = "webcollect-monthly"
SERIES: dict[str, Any] = {
    "id": SID,
    "title": {"ja": "定期メンテナンス", "en": "Monthly maintenance"},
    "starts_at": "2021-08-12T01:00",
    "ends_at": "2021-08-12T06:00",
    "timezone": "Asia/Tokyo",
    "affected": {"webcollect": ["*"]},
    "recurrence": {"rrule": "FREQ=MONTHLY;BYDAY=2TH"},
}


@dataclass
class Api:
    client: httpx.AsyncClient
    store: Store
    clock: FixedClock

    async def events(self, after: int = 0, *, public: bool = False) -> list[dict[str, Any]]:
        """The event log after ``after``, as ops see it (or as anyone does)."""
        r = await self.client.get(
            "/v1/events",
            params={"after": after, "limit": 1000},
            headers={} if public else ADMIN,
        )
        assert r.status_code == 200
        return r.json()["events"]  # type: ignore[no-any-return]

    async def seq(self) -> int:
        return (await self.store.state()).seq

    async def occurrences(self, sid: str = SID, **headers: str) -> list[dict[str, Any]]:
        r = await self.client.get("/v1/windows", params={"series": sid}, headers=headers or ADMIN)
        assert r.status_code == 200, r.text
        return r.json()["windows"]  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def api(
    fake_redis: Any, key_prefix: str, at: datetime = CREATED, **settings: Any
) -> AsyncIterator[Api]:
    """The seed notice imported at ``at``, an app over it, a client driving it in process."""
    clock = FixedClock(at)
    tokens = Tokens.parse(entry_line("boss", "admin", AD) + "," + entry_line("ops", "operator", OP))
    app = create_app(
        settings_for(None, key_prefix, **settings), redis=fake_redis, clock=clock, tokens=tokens
    )
    store: Store = app.state.store
    await import_example(store, at)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield Api(client, store, clock)


def field_of(r: httpx.Response, status: int) -> str | None:
    assert r.status_code == status, r.text
    return r.json()["error"]["field"]  # type: ignore[no-any-return]


async def test_create_read_and_list_a_series(fake_redis: Any, key_prefix: str) -> None:
    async with api(fake_redis, key_prefix) as a:
        seq = await a.seq()
        assert (
            field_of(await a.client.post("/v1/windows", json=SERIES, headers=OPERATOR), 403) is None
        )
        r = await a.client.post(
            "/v1/windows", json={**SERIES, "reason": "monthly slot"}, headers=ADMIN
        )
        assert r.status_code == 201, r.text
        doc = r.json()
        assert (doc["id"], doc["series_id"], doc["status"]) == (SID, SID, "scheduled")
        assert doc["recurrence"] == {"rrule": "FREQ=MONTHLY;BYDAY=2TH", "exdates": []}
        # one write, one event, naming the series
        (ev,) = await a.events(seq)
        assert (ev["type"], ev["window_id"], ev["actor"], ev["reason"]) == (
            "maintenance.scheduled",
            SID,
            "boss",
            "monthly slot",
        )
        # publicly too: the series is announced at once; its September occurrence is not yet
        assert (await a.events(seq, public=True))[0]["window_id"] == SID
        # the series is readable by its id (publicly too) ...
        for headers in (ADMIN, {}):
            r = await a.client.get(f"/v1/windows/{SID}", headers=headers)
            assert r.status_code == 200
            assert r.json()["recurrence"] is not None
        # ... and is no window: not in the list, not in the status, not in the feed
        listed = (await a.client.get("/v1/windows", headers=ADMIN)).json()["windows"]
        assert SID not in {w["id"] for w in listed}
        occ = await a.occurrences()
        assert [w["id"] for w in occ][:2] == [f"{SID}--20210812", f"{SID}--20210909"]
        assert len(occ) == 13
        assert {w["series_id"] for w in occ} == {SID}
        assert all(w["recurrence"] is None and w["status"] == "scheduled" for w in occ)
        assert {w["id"] for w in listed} >= {w["id"] for w in occ}
        status = await a.store.status(a.clock.now())
        upcoming = [w["id"] for w in status["upcoming"]]
        assert SID not in upcoming
        assert f"{SID}--20210812" in upcoming
        cal = Calendar.from_ical((await a.client.get("/v1/windows.ics")).content)
        uids = {str(e["UID"]) for e in cal.walk("VEVENT")}
        assert f"{SID}@maintcast" not in uids
        assert f"{SID}--20210812@maintcast" in uids
        # an id is a window's or a series', never both
        r = await a.client.post("/v1/windows", json={**SERIES, "recurrence": None}, headers=ADMIN)
        assert field_of(r, 409) == "id"
        r = await a.client.post("/v1/windows", json=SERIES, headers=ADMIN)
        assert field_of(r, 409) == "id"
        # unknown series: an empty list
        assert await a.occurrences("nope") == []


async def test_rejections_name_the_field(fake_redis: Any, key_prefix: str) -> None:
    async with api(fake_redis, key_prefix) as a:
        seq = await a.seq()
        for body, field in [
            ({**SERIES, "recurrence": {"rrule": "FREQ=HOURLY"}}, "recurrence.rrule"),
            (
                {**SERIES, "starts_at": "2021-08-09T01:00", "ends_at": "2021-08-09T06:00"},
                "starts_at",
            ),
            ({**SERIES, "recurrence": None, "series_id": SID}, "series_id"),
        ]:
            r = await a.client.post("/v1/windows", json=body, headers=ADMIN)
            assert field_of(r, 422) == field
        wid = "webcollect-2021-08"
        r = await a.client.patch(
            f"/v1/windows/{wid}", json={"recurrence": {"rrule": "FREQ=DAILY"}}, headers=ADMIN
        )
        assert field_of(r, 422) == "recurrence"
        assert await a.seq() == seq


async def test_one_occurrence_alone_and_the_series_wide_routes(
    fake_redis: Any, key_prefix: str
) -> None:
    async with api(fake_redis, key_prefix) as a:
        assert (await a.client.post("/v1/windows", json=SERIES, headers=ADMIN)).status_code == 201
        # a series id on a window route needs scope=series
        for verb, path in [
            ("PATCH", f"/v1/windows/{SID}"),
            ("POST", f"/v1/windows/{SID}/cancel"),
        ]:
            r = await a.client.request(verb, path, json={"title": {"en": "x"}}, headers=ADMIN)
            assert field_of(r, 422) == "scope"
            assert "scope=series" in r.json()["error"]["message"]
        r = await a.client.patch(
            f"/v1/windows/{SID}",
            params={"scope": "all"},
            json={"title": {"en": "x"}},
            headers=ADMIN,
        )
        assert field_of(r, 422) == "scope"
        r = await a.client.patch(
            f"/v1/windows/{SID}--20210909",
            params={"scope": "series"},
            json={"title": {"en": "x"}},
            headers=ADMIN,
        )
        assert field_of(r, 422) == "scope"
        assert SID in r.json()["error"]["message"]
        r = await a.client.post(
            "/v1/windows/nope/cancel", params={"scope": "series"}, headers=ADMIN
        )
        assert field_of(r, 404) == "id"

        # one occurrence postponed alone: an ordinary window
        seq = await a.seq()
        r = await a.client.patch(
            f"/v1/windows/{SID}--20210909",
            json={"starts_at": "2021-09-16T01:00", "ends_at": "2021-09-16T06:00", "reason": "延期"},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        assert r.json()["starts_at"] == "2021-09-16T01:00:00+09:00"
        (ev,) = await a.events(seq)
        assert (ev["type"], ev["window_id"]) == ("maintenance.rescheduled", f"{SID}--20210909")
        (ev,) = await a.events(seq, public=True)  # not announced yet: nameless to the public
        assert (ev["type"], ev["window_id"], ev["reason"]) == (
            "maintenance.rescheduled",
            None,
            None,
        )

        # the series renamed: the future occurrences follow, one event
        seq = await a.seq()
        r = await a.client.patch(
            f"/v1/windows/{SID}",
            params={"scope": "series"},
            json={"title": {"ja": "月次メンテナンス"}, "reason": "renamed"},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        assert r.json()["title"] == {"ja": "月次メンテナンス"}
        (ev,) = await a.events(seq)
        assert (ev["type"], ev["window_id"], ev["reason"]) == (
            "maintenance.updated",
            SID,
            "renamed",
        )
        occ = {w["id"]: w for w in await a.occurrences()}
        assert {w["title"]["ja"] for w in occ.values()} == {"月次メンテナンス"}
        moved = occ[f"{SID}--20210909"]
        assert moved["starts_at"] == "2021-09-16T01:00:00+09:00"  # kept where it was moved
        assert [h["change"] for h in moved["history"]] == ["rescheduled", "updated"]

        # the series cancelled: every occurrence not started, one event
        a.clock.t = jst(2021, 8, 12, 1, 0, 1)  # the first occurrence is in progress
        seq = await a.seq()
        r = await a.client.post(
            f"/v1/windows/{SID}/cancel", params={"scope": "series"}, json={}, headers=ADMIN
        )
        assert r.status_code == 200
        assert r.json()["status"] == "cancelled"
        types = [(e["type"], e["window_id"]) for e in await a.events(seq)]
        assert types == [
            ("maintenance.started", f"{SID}--20210812"),
            ("maintenance.cancelled", SID),
        ]
        states = {w["id"]: w["status"] for w in await a.occurrences()}
        assert states.pop(f"{SID}--20210812") == "in_progress"
        assert set(states.values()) == {"cancelled"}
        r = await a.client.post(
            f"/v1/windows/{SID}/cancel", params={"scope": "series"}, headers=ADMIN
        )
        assert field_of(r, 409) == "status"


async def test_reconcile_tops_the_series_up_as_time_passes(
    fake_redis: Any, key_prefix: str
) -> None:
    async with api(fake_redis, key_prefix) as a:
        assert (await a.client.post("/v1/windows", json=SERIES, headers=ADMIN)).status_code == 201
        assert len(await a.occurrences()) == 13
        seq = await a.seq()
        now = jst(2021, 9, 1)  # 400 days on reach 2022-09-08
        published = await a.store.reconcile(now)
        new = [(e["type"], e["window_id"]) for e in await a.events(seq)]
        assert ("maintenance.scheduled", f"{SID}--20220908") in new
        assert len(published) == len(new)
        assert len(await a.occurrences()) == 14
        # nothing more to do at the same instant: no event
        assert await a.store.reconcile(now) == []


SCHEDULE = """
catalog:
  services:
    webcollect: {methods: {credit_card: {}, cvs_online: {}}}
windows:
  - id: monthly
    title: {ja: 定期メンテナンス}
    starts_at: "2021-08-12T01:00"
    ends_at: "2021-08-12T06:00"
    timezone: Asia/Tokyo
    announce_at: "2021-07-01T00:00"
    affected: {webcollect: ["*"]}
    recurrence: {rrule: "FREQ=MONTHLY;BYDAY=2TH", exdates: ["2021-09-09T01:00"]}
"""


@pytest.mark.parametrize("changed", [False, True])
async def test_a_schedule_file_with_a_series(
    fake_redis: Any, key_prefix: str, changed: bool
) -> None:
    async with api(fake_redis, key_prefix) as a:

        async def load(text: str) -> list[dict[str, Any]]:
            existing = {**await a.store.series(), **await a.store.windows()}
            sched = parse_schedule(
                text, source="f", defaults=DEFAULTS, now=CREATED, existing=existing
            )
            return await a.store.import_schedule(sched, CREATED)

        docs = await load(SCHEDULE)
        assert [(d["cause"]["type"], d["cause"]["window_id"]) for d in docs] == [
            ("maintenance.scheduled", "monthly")
        ]
        occ = await a.occurrences("monthly")
        assert "monthly--20210909" not in {w["id"] for w in occ}  # the exdate
        assert len(occ) == 12
        if not changed:
            assert await load(SCHEDULE) == []
            return
        docs = await load(SCHEDULE.replace("ja: 定期メンテナンス", "ja: 月次"))
        assert [(d["cause"]["type"], d["cause"]["window_id"]) for d in docs] == [
            ("maintenance.updated", "monthly")
        ]
        assert {w["title"]["ja"] for w in await a.occurrences("monthly")} == {"月次"}


async def test_a_webhook_about_a_series_carries_the_series(
    fake_redis: Any, key_prefix: str
) -> None:
    async with api(fake_redis, key_prefix) as a:
        await subscribe(a.store, "https://merchant.example/h", "acme", a.clock.now())
        assert (await a.client.post("/v1/windows", json=SERIES, headers=ADMIN)).status_code == 201
        notify = NotifyStore.of(a.store)
        assert await notify.fan_out(time.time(), lambda _: 0.0, fence=None) == 1
        (msg,) = await notify.deliveries("acme", 10)
        body = orjson.loads(msg.body)
        assert body["type"] == "maintenance.scheduled"
        assert body["data"]["window"]["id"] == SID
        assert body["data"]["window"]["recurrence"]["rrule"] == "FREQ=MONTHLY;BYDAY=2TH"


async def test_an_unannounced_series_leaves_no_public_trace(
    fake_redis: Any, key_prefix: str
) -> None:
    async with api(fake_redis, key_prefix) as a:
        seq = await a.seq()
        body = {**SERIES, "announce_at": "2021-08-01T00:00", "reason": "secret slot"}
        assert (await a.client.post("/v1/windows", json=body, headers=ADMIN)).status_code == 201
        (ev,) = await a.events(seq, public=True)
        assert (ev["type"], ev["window_id"], ev["reason"]) == ("maintenance.scheduled", None, None)
        status = await a.store.status(a.clock.now())
        assert status["cause"]["window_id"] is None
        assert status["cause"]["reason"] is None
        assert (await a.client.get(f"/v1/windows/{SID}")).status_code == 404
        assert len(await a.occurrences(SID)) == 13  # ops see them
        r = await a.client.get("/v1/windows", params={"series": SID})
        assert r.json()["windows"] == []
        # once announced, the series is named
        a.clock.t = jst(2021, 8, 1)
        (ev,) = await a.events(seq, public=True)
        assert (ev["window_id"], ev["reason"]) == (SID, "secret slot")


async def test_the_published_cause_names_an_announced_series(
    fake_redis: Any, key_prefix: str
) -> None:
    async with api(fake_redis, key_prefix) as a:
        assert (await a.client.post("/v1/windows", json=SERIES, headers=ADMIN)).status_code == 201
        status = await a.store.status(a.clock.now())
        assert status["cause"]["type"] == "maintenance.scheduled"
        assert status["cause"]["window_id"] == SID


async def test_occurrences_count_towards_the_live_windows_cap(
    fake_redis: Any, key_prefix: str
) -> None:
    async with api(fake_redis, key_prefix, max_windows=20) as a:
        seq = await a.seq()
        daily = {**SERIES, "recurrence": {"rrule": "FREQ=DAILY"}}
        r = await a.client.post("/v1/windows", json=daily, headers=ADMIN)
        assert field_of(r, 409) == "windows"
        assert "MAINTCAST_MAX_WINDOWS" in r.text
        assert await a.seq() == seq
        assert await a.store.series() == {}
        # thirteen monthly occurrences fit
        assert (await a.client.post("/v1/windows", json=SERIES, headers=ADMIN)).status_code == 201
