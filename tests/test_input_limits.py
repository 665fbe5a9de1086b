"""Application limits on ops input (issue 12, item 4): request bodies over 256 KiB are 413
before anything parses them (by Content-Length and by streamed bytes), control characters
in any text are 422 naming the field, and the windows a status frame carries are capped in
number and size (422/409 naming the field), with nothing half-applied."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from broadcaster import caps
from broadcaster.app import create_app
from broadcaster.auth import Tokens
from broadcaster.cli.base import import_file
from broadcaster.clock import RehearsalClock
from broadcaster.hygiene import bounded
from broadcaster.limits import MAX_BODY_BYTES, BodyTooLarge
from broadcaster.texts import MULTILINE, check_texts
from broadcaster.validation import ScheduleError, parse_schedule
from tests.ops_support import ADMIN, BEFORE, NEW, OPERATOR, TOKENS, WID, Ctx, assert_error, seed
from tests.support import DEFAULTS, EXAMPLE, live_server, settings_for


@contextlib.asynccontextmanager
async def app_ctx(fake_redis: Any, key_prefix: str, **settings: Any) -> AsyncIterator[Ctx]:
    clock = RehearsalClock(BEFORE, 1.0)
    app = create_app(
        settings_for(None, key_prefix, **settings),
        redis=fake_redis,
        clock=clock,
        tokens=Tokens.parse(TOKENS),
    )
    store = await seed(app, clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield Ctx(app, client, store, clock)


# -- body size ---------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A JSON window body of exactly ``size`` bytes (the padding is trailing spaces)."""
    body = orjson.dumps(NEW)
    assert len(body) <= size
    return body + b" " * (size - len(body))


async def test_body_over_the_bound_is_413_by_content_length(
    fake_redis: Any, key_prefix: str
) -> None:
    async with app_ctx(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        for method, path in (
            ("POST", "/v1/windows"),
            ("PATCH", f"/v1/windows/{WID}"),
            ("POST", f"/v1/windows/{WID}/cancel"),
            ("PUT", "/v1/override"),
            ("DELETE", "/v1/override"),
        ):
            r = await ctx.client.request(
                method,
                path,
                content=padded(MAX_BODY_BYTES + 1),
                headers={**ADMIN, "Content-Type": "application/json"},
            )
            assert_error(r, 413, "body_too_large", "body")
            assert str(MAX_BODY_BYTES) in r.json()["error"]["message"]
        assert await ctx.snapshot() == before
        # exactly at the bound it is read and parsed
        r = await ctx.client.post(
            "/v1/windows",
            content=padded(MAX_BODY_BYTES),
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        assert r.status_code == 201, r.text


async def test_chunked_body_over_the_bound_is_413_over_http(
    fake_redis: Any, key_prefix: str
) -> None:
    """Through uvicorn, without Content-Length (chunked): 413, nothing stored, and the
    connection stays usable (the server discards the rest rather than resetting it, so the
    client reads the answer)."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(16):
            yield b" " * (64 * 1024)

    clock = RehearsalClock(BEFORE, 1.0)
    app = create_app(
        settings_for(None, key_prefix), redis=fake_redis, clock=clock, tokens=Tokens.parse(TOKENS)
    )
    await seed(app, clock)
    async with live_server(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        before = (await app.state.store.state()).seq
        r = await client.post(
            "/v1/windows", content=chunks(), headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert_error(r, 413, "body_too_large", "body")
        assert r.headers["x-content-type-options"] == "nosniff"
        r = await client.put(
            "/v1/override",
            content=padded(MAX_BODY_BYTES + 1),
            headers={**OPERATOR, "Content-Type": "application/json"},
        )
        assert_error(r, 413, "body_too_large", "body")
        assert (await app.state.store.state()).seq == before
        assert (await client.get("/healthz")).status_code == 200


async def test_bounded_receive_stops_reading_past_the_bound() -> None:
    """The wrapped receive never hands over more than the bound, whatever was declared."""
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    scope = {"type": "http", "headers": [(b"transfer-encoding", b"chunked")]}
    got = bounded(scope, receive, limit=4500)
    for _ in range(4):
        await got()
    with pytest.raises(BodyTooLarge):
        await got()
    assert pulled == 5
    declared = {"type": "http", "headers": [(b"content-length", b"4501")]}
    with pytest.raises(BodyTooLarge):
        await bounded(declared, receive, limit=4500)()
    assert pulled == 5  # refused by its Content-Length before reading anything


# -- control characters ------------------------------------------------------------------

CONTROLS = ["\x00", "\x07", "\x1b", "\n", "\r", "\t", "\x7f", "\x85", "\x9b"]


def with_text(doc: dict[str, Any], path: str, text: str) -> dict[str, Any]:
    """``doc`` with ``text`` at the dotted ``path`` (created as needed)."""
    out = orjson.loads(orjson.dumps(doc))
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = text
    return out  # type: ignore[no-any-return]


WINDOW_FIELDS = [
    "title.ja",
    "title.en",
    "description.en",
    "messages.link.ja",
    "messages.api.en",
    "reason",
    "id",
    "timezone",
    "error_code",
]


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
async def test_control_characters_are_422_naming_the_field(
    fake_redis: Any, key_prefix: str, char: str
) -> None:
    async with app_ctx(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        for field in WINDOW_FIELDS:
            if char == "\n" and field.split(".")[0] in MULTILINE:
                continue  # a line feed is allowed there (test_line_feeds_in_multiline_texts)
            body = with_text(NEW, field, f"ok{char}ok")
            r = await ctx.client.post("/v1/windows", json=body, headers=ADMIN)
            err = assert_error(r, 422, "invalid", field)
            assert f"U+{ord(char):04X}" in err["message"]
        for field in ("title.en", "description.ja", "reason"):
            if char == "\n" and field == "description.ja":
                continue
            body = with_text({}, field, f"x{char}")
            r = await ctx.client.patch(f"/v1/windows/{WID}", json=body, headers=ADMIN)
            assert_error(r, 422, "invalid", field)
        r = await ctx.client.post(
            f"/v1/windows/{WID}/cancel", json={"reason": f"a{char}b"}, headers=ADMIN
        )
        assert_error(r, 422, "invalid", "reason")
        r = await ctx.client.put(
            "/v1/override",
            json={"mode": "maintenance", "reason": f"incident{char}"},
            headers=OPERATOR,
        )
        assert_error(r, 422, "invalid", "reason")
        r = await ctx.client.request(
            "DELETE", "/v1/override", json={"reason": f"{char}"}, headers=OPERATOR
        )
        assert_error(r, 422, "invalid", "reason")
        # in an object key (an affected service)
        r = await ctx.client.post(
            "/v1/windows", json={**NEW, "affected": {f"ato{char}": ["*"]}}, headers=ADMIN
        )
        assert_error(r, 422, "invalid", "affected")
        assert await ctx.snapshot() == before


async def test_line_feeds_in_multiline_texts(fake_redis: Any, key_prefix: str) -> None:
    """Descriptions and messages may run over lines (a YAML ``|`` block); a line feed
    anywhere else, and a carriage return or tab even there, stays refused."""
    async with app_ctx(fake_redis, key_prefix) as ctx:
        body = with_text(NEW, "description.ja", "一行目\n二行目\n")
        body = with_text(body, "messages.link.en", "line one\nline two")
        r = await ctx.client.post("/v1/windows", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        assert r.json()["description"]["ja"] == "一行目\n二行目\n"
        r = await ctx.client.patch(
            f"/v1/windows/{WID}", json={"description": {"en": "a\nb"}}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        for field, text in (("description.en", "a\r\nb"), ("messages.api.ja", "a\tb")):
            r = await ctx.client.post(
                "/v1/windows", json=with_text(NEW, field, text), headers=ADMIN
            )
            assert_error(r, 422, "invalid", field)
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    doc["windows"][0]["description"] = {"ja": "一行目\n二行目\n"}
    text = yaml.safe_dump(doc, allow_unicode=True, default_style=None)
    parsed = parse_schedule(text, source="f.yaml", defaults=DEFAULTS, now=BEFORE)
    assert parsed.windows[0].description is not None


def test_check_texts_walks_everything_without_recursion() -> None:
    deep: Any = "fine"
    for _ in range(5000):
        deep = [deep]
    check_texts(deep)  # deeper than the recursion limit: no RecursionError
    with pytest.raises(ValueError, match=r"^0\.0\.1: control character U\+0007"):
        check_texts([[["ok", "b\x07"]]])
    with pytest.raises(ValueError, match=r"^a\.b: control character U\+001B"):
        check_texts({"a": {"b": "\x1b[31m"}})


@pytest.mark.parametrize(
    ("field", "patch"),
    [
        ("title", {"title": {"en": "Bell\x07"}}),
        ("description", {"description": {"ja": "説明\x00"}}),
        ("messages.link", {"messages": {"link": {"en": "esc\x1b[2J"}}}),
        (
            "history.0.reason",
            {
                "history": [
                    {"at": "2021-06-01T10:00:00+09:00", "change": "updated", "reason": "r\x7f"}
                ]
            },
        ),
    ],
)
def test_control_characters_in_a_schedule_file(field: str, patch: dict[str, Any]) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    doc["windows"][0].update(patch)
    text = yaml.safe_dump(doc, allow_unicode=True)
    with pytest.raises(ScheduleError) as got:
        parse_schedule(text, source="f.yaml", defaults=DEFAULTS, now=BEFORE)
    message = str(got.value)
    assert message.startswith(f"f.yaml: window {doc['windows'][0]['id']}: {field}")
    assert not any(c in message for c in "\x00\x07\x1b\x7f")  # escaped in the message
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    doc["catalog"]["services"]["webcollect"]["name"] = {"en": "Web\x07"}
    with pytest.raises(ScheduleError, match=r"catalog\.services\.webcollect\.name\.en: control"):
        parse_schedule(yaml.safe_dump(doc), source="f.yaml", defaults=DEFAULTS, now=BEFORE)


async def test_import_file_name_is_checked(
    fake_redis: Any, key_prefix: str, tmp_path: Path
) -> None:
    clock = RehearsalClock(BEFORE, 1.0)
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock)
    bad = tmp_path / "sched\x1b[2J.yaml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ValueError, match="file name: control character U\\+001B"):
        await import_file(app.state.store, bad, clock)
    assert (await app.state.store.state()).seq == 0


# -- caps on windows ---------------------------------------------------------------------


def window_body(i: int, **extra: Any) -> dict[str, Any]:
    day = 1 + i % 28
    month = 7 + i // 28
    return {
        **NEW,
        "id": f"w-{i:04d}",
        "starts_at": f"2021-{month:02d}-{day:02d}T01:00:00+09:00",
        "ends_at": f"2021-{month:02d}-{day:02d}T02:00:00+09:00",
        **extra,
    }


async def test_window_count_cap_409_and_cancelled_do_not_count(
    fake_redis: Any, key_prefix: str
) -> None:
    async with app_ctx(fake_redis, key_prefix, max_windows=3) as ctx:
        # the example's window is one; two more fit
        for i in range(2):
            r = await ctx.client.post("/v1/windows", json=window_body(i), headers=ADMIN)
            assert r.status_code == 201, r.text
        before = await ctx.snapshot()
        r = await ctx.client.post("/v1/windows", json=window_body(2), headers=ADMIN)
        err = assert_error(r, 409, "conflict", "windows")
        assert "MAINTCAST_MAX_WINDOWS" in err["message"]
        assert "3" in err["message"]
        assert await ctx.snapshot() == before
        # an edit that adds no window still goes through at the cap
        r = await ctx.client.patch(
            "/v1/windows/w-0000", json={"title": {"en": "renamed"}}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        r = await ctx.client.post("/v1/windows/w-0001/cancel", json={}, headers=ADMIN)
        assert r.status_code == 200
        r = await ctx.client.post("/v1/windows", json=window_body(2), headers=ADMIN)
        assert r.status_code == 201, r.text


async def test_window_text_cap_422_names_the_largest_field(
    fake_redis: Any, key_prefix: str
) -> None:
    big_ja = "あ" * 4000  # 12,000 bytes as JSON
    async with app_ctx(fake_redis, key_prefix) as ctx:
        before = await ctx.snapshot()
        body = window_body(0, description={"ja": big_ja, "en": "x" * 3000})
        body["title"] = {"ja": "い" * 1000, "en": "t"}
        r = await ctx.client.post("/v1/windows", json=body, headers=ADMIN)
        err = assert_error(r, 422, "invalid", "description")
        assert str(caps.WINDOW_TEXT_MAX) in err["message"]
        assert await ctx.snapshot() == before
        # the same through a PATCH of the example window
        r = await ctx.client.patch(
            f"/v1/windows/{WID}",
            json={"description": {"ja": big_ja}, "messages": {"link": {"ja": big_ja}}},
            headers=ADMIN,
        )
        assert_error(r, 422, "invalid", "messages")
        assert await ctx.snapshot() == before
        # just under the cap is fine
        r = await ctx.client.post(
            "/v1/windows", json=window_body(1, description={"ja": big_ja}), headers=ADMIN
        )
        assert r.status_code == 201, r.text


async def test_status_frame_stays_below_a_mebibyte(fake_redis: Any, key_prefix: str) -> None:
    """Windows with texts near their cap are accepted until the windows a status frame
    carries reach their byte cap: then 409, and the frame stays below 1 MiB."""
    near_cap = {"ja": "う" * 4000, "en": "d" * 3200}  # ~15.9 KiB with the other texts
    async with app_ctx(fake_redis, key_prefix) as ctx:
        refused = None
        for i in range(200):
            r = await ctx.client.post(
                "/v1/windows", json=window_body(i, description=near_cap), headers=ADMIN
            )
            if r.status_code != 201:
                refused = r
                break
        assert refused is not None, "no cap was reached"
        before = await ctx.snapshot()
        assert_error(refused, 409, "conflict", "windows")
        assert str(caps.LIVE_WINDOWS_MAX_BYTES) in refused.json()["error"]["message"]
        assert 40 <= i <= 60
        r = await ctx.client.get("/v1/status")
        frame = await ctx.status()
        assert len(orjson.dumps(frame)) < 1024 * 1024
        assert len(r.content) < 1024 * 1024
        assert await ctx.snapshot() == before


async def test_import_past_the_window_cap_stores_nothing(
    fake_redis: Any, key_prefix: str, tmp_path: Path
) -> None:
    clock = RehearsalClock(BEFORE, 1.0)
    app = create_app(settings_for(None, key_prefix, max_windows=4), redis=fake_redis, clock=clock)
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    template = doc["windows"][0]
    doc["windows"] = [
        {
            **template,
            "id": f"w{i}",
            "starts_at": f"2021-09-{i + 1:02d}T01:00:00+09:00",
            "ends_at": f"2021-09-{i + 1:02d}T02:00:00+09:00",
            "history": [],
        }
        for i in range(5)
    ]
    path = tmp_path / "five.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match=r"five\.yaml: windows: at most 4 windows"):
        await import_file(app.state.store, path, clock)
    st = await app.state.store.state()
    assert (st.seq, st.windows) == (0, {})
    doc["windows"] = doc["windows"][:4]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert len(await import_file(app.state.store, path, clock)) == 4
