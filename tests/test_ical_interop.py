"""The iCal feed of recurring series crossing DST changes (US, EU, Lord Howe, and Tokyo's
fixed offset) reads the same in ``icalendar``, ``vobject``, ``ical.js`` and ``node-ical``:
the same UIDs (one per occurrence, none for a series) and the same UTC starts and ends.

The JavaScript parsers run under node from a git-ignored npm cache under the repository
(``.cache/ical-parsers``); without node or npm the test skips, and fails under CI=true.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import vobject
from icalendar import Calendar

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from tests.support import ROOT, FixedClock, import_example, jst, need, settings_for

pytestmark = pytest.mark.timeout(240)

AD = "admin-token-ical"
ADMIN = {"Authorization": f"Bearer {AD}"}
PARSERS = {"ical.js": "2.2.1", "node-ical": "0.26.1"}
CACHE = ROOT / ".cache" / "ical-parsers"
READER = Path(__file__).parent / "ical" / "read.mjs"
Spans = dict[str, tuple[datetime, datetime]]


def series(sid: str, start: str, end: str, zone: str, rule: str) -> dict[str, Any]:
    return {
        "id": sid,
        "title": {"ja": "定期メンテナンス", "en": f"{sid} maintenance"},
        "starts_at": start,
        "ends_at": end,
        "timezone": zone,
        "affected": {"webcollect": ["*"]},
        "recurrence": {"rrule": rule},
    }


SERIES = [
    # weekly across the US spring-forward (2021-03-14)
    series(
        "chicago", "2021-03-01T00:00", "2021-03-01T01:00", "America/Chicago", "FREQ=WEEKLY;COUNT=4"
    ),
    # daily at 01:30, which happens twice on 2021-11-07 in New York (the first is taken)
    series(
        "newyork", "2021-11-05T01:30", "2021-11-05T02:15", "America/New_York", "FREQ=DAILY;COUNT=4"
    ),
    # daily at 02:30, which does not exist on 2021-03-28 in Berlin, and twice on 2021-10-31
    series("berlin", "2021-03-26T02:30", "2021-03-26T03:30", "Europe/Berlin", "FREQ=DAILY;COUNT=4"),
    series(
        "berlin-fall", "2021-10-29T02:30", "2021-10-29T03:00", "Europe/Berlin", "FREQ=DAILY;COUNT=4"
    ),
    # Lord Howe moves by 30 minutes (2021-10-03 02:00 -> 02:30)
    series(
        "lordhowe",
        "2021-10-01T02:15",
        "2021-10-01T03:00",
        "Australia/Lord_Howe",
        "FREQ=DAILY;COUNT=4",
    ),
    # a fixed offset: written with TZID Asia/Tokyo
    series(
        "tokyo",
        "2021-03-11T01:00",
        "2021-03-11T06:00",
        "Asia/Tokyo",
        "FREQ=MONTHLY;BYDAY=2TH;COUNT=3",
    ),
]


@contextlib.asynccontextmanager
async def feed_app(
    fake_redis: Any, key_prefix: str, clock: FixedClock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings_for(None, key_prefix),
        redis=fake_redis,
        clock=clock,
        tokens=Tokens.parse(entry_line("boss", "admin", AD)),
    )
    await import_example(app.state.store, clock.now())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


async def feed_and_expected(fake_redis: Any, key_prefix: str) -> tuple[bytes, Spans]:
    """The feed once every occurrence of :data:`SERIES` is announced (one postponed, one
    cancelled), and each public window's UID with its UTC start and end as the API states
    them."""
    clock = FixedClock(jst(2021, 2, 20))
    async with feed_app(fake_redis, key_prefix, clock) as client:
        for body in SERIES:
            r = await client.post("/v1/windows", json=body, headers=ADMIN)
            assert r.status_code == 201, r.text
        r = await client.patch(
            "/v1/windows/tokyo--20210408",
            json={"starts_at": "2021-04-15T01:00", "ends_at": "2021-04-15T06:00"},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        # cancelled once announced (one cancelled before its announce_at is never public)
        clock.t = jst(2021, 3, 1)
        r = await client.post("/v1/windows/berlin--20210327/cancel", headers=ADMIN)
        assert r.status_code == 200, r.text
        # each occurrence is announced as long before its start as the first was: later,
        # all of them are public (and the feed lists past windows too)
        clock.t = jst(2022, 1, 1)
        windows = (await client.get("/v1/windows")).json()["windows"]
        feed = (await client.get("/v1/windows.ics")).content
    expected = {f"{w['id']}@maintcast": (utc(w["starts_at"]), utc(w["ends_at"])) for w in windows}
    return feed, expected


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def read_icalendar(feed: bytes) -> Spans:
    return {
        str(e["UID"]): (
            e.decoded("DTSTART").astimezone(UTC),
            e.decoded("DTEND").astimezone(UTC),
        )
        for e in Calendar.from_ical(feed).walk("VEVENT")
    }


def read_vobject(feed: bytes) -> Spans:
    cal = vobject.readOne(feed.decode("utf-8"))
    return {
        e.uid.value: (e.dtstart.value.astimezone(UTC), e.dtend.value.astimezone(UTC))
        for e in cal.vevent_list
    }


def node_parsers() -> Path:
    """The directory holding ``ical.js`` and ``node-ical`` (installed there once)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    need("node and npm (for the ical.js and node-ical checks)", bool(node and npm))
    assert npm is not None
    installed = all(
        (CACHE / "node_modules" / name / "package.json").is_file()
        and json.loads((CACHE / "node_modules" / name / "package.json").read_text())["version"]
        == version
        for name, version in PARSERS.items()
    )
    if not installed:
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--silent"]
            + [f"{name}@{version}" for name, version in PARSERS.items()],
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        need(f"npm install of {', '.join(PARSERS)}: {done.stderr[-500:]}", done.returncode == 0)
    shutil.copyfile(READER, CACHE / "read.mjs")
    return CACHE


def read_with_node(feed: bytes, tmp_path: Path) -> dict[str, Spans]:
    where = node_parsers()
    path = tmp_path / "feed.ics"
    path.write_bytes(feed)
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, str(where / "read.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=where,
    )
    assert done.returncode == 0, done.stderr
    return {
        parser: {uid: (utc(s), utc(e)) for uid, (s, e) in spans.items()}
        for parser, spans in json.loads(done.stdout).items()
    }


async def test_the_feed_lists_each_occurrence_and_no_series(
    fake_redis: Any, key_prefix: str
) -> None:
    feed, expected = await feed_and_expected(fake_redis, key_prefix)
    uids = set(read_icalendar(feed))
    assert uids == set(expected)
    assert {f"{s['id']}@maintcast" for s in SERIES}.isdisjoint(uids)
    assert len([u for u in uids if u.startswith("newyork--")]) == 4
    cal = Calendar.from_ical(feed)
    events = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    # a zone with DST is written in UTC; Tokyo's fixed offset with its TZID
    assert "TZID" not in events["newyork--20211107@maintcast"]["DTSTART"].params
    assert events["newyork--20211107@maintcast"].decoded("DTSTART") == utc("2021-11-07T05:30:00Z")
    assert events["tokyo--20210311@maintcast"]["DTSTART"].params["TZID"] == "Asia/Tokyo"
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Asia/Tokyo"]
    assert str(events["berlin--20210327@maintcast"]["STATUS"]) == "CANCELLED"
    assert events["tokyo--20210408@maintcast"].decoded("SEQUENCE") == 1


async def test_python_parsers_read_the_same_instants(fake_redis: Any, key_prefix: str) -> None:
    feed, expected = await feed_and_expected(fake_redis, key_prefix)
    assert read_icalendar(feed) == expected
    assert read_vobject(feed) == expected


async def test_javascript_parsers_read_the_same_instants(
    fake_redis: Any, key_prefix: str, tmp_path: Path
) -> None:
    feed, expected = await feed_and_expected(fake_redis, key_prefix)
    got = read_with_node(feed, tmp_path)
    assert got["ical.js"] == expected
    assert got["node-ical"] == expected
