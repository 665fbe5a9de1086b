"""The one exception -> HTTP table: its entries, and every route answering from it — a store
error is 503 ``store_unavailable`` everywhere (FastAPI routes, ops, pages, /readyz, the live
routes), never a 500 and never the Redis address; a client leaving mid-body is no error."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from redis import exceptions as rx

from broadcaster import errors
from broadcaster.app import create_app
from broadcaster.auth import Forbidden, Tokens, Unauthorized, entry_line
from broadcaster.domain import Conflict, InvalidInput, NotFound
from broadcaster.errors import answer_for, http_error_of
from broadcaster.limits import StreamCaps, TooManyStreams
from broadcaster.store import RECONNECT_ERRORS, STORE_ERRORS
from tests.support import (
    ROOT,
    import_example,
    jst,
    live_server,
    settings_for,
    start_redis,
)

ADDRESS = "10.9.8.7:6379"
AD = "admin-token-9c1e"
ADMIN = {"Authorization": f"Bearer {AD}"}
TOKENS = Tokens.parse(entry_line("boss", "admin", AD))
STORE_FAILURES = [
    rx.ConnectionError(f"Error 111 connecting to {ADDRESS}. Connection refused."),
    rx.TimeoutError(f"Timeout reading from {ADDRESS}"),
    OSError(111, f"Connect call failed ('{ADDRESS}')"),
    TimeoutError(),  # asyncio.TimeoutError (asyncio.wait_for)
    rx.BusyLoadingError(f"LOADING Redis is loading the dataset in memory ({ADDRESS})"),
    rx.ReadOnlyError(f"READONLY You can't write against a read only replica {ADDRESS}"),
    rx.ResponseError(f"WRONGTYPE Operation against a key holding the wrong kind ({ADDRESS})"),
]
GETS = [
    "/v1/status",
    "/v1/stream",
    "/v1/windows",
    "/v1/windows/x",
    "/v1/windows.ics",
    "/v1/events?after=0",
    "/status",
    "/maintenance",
    "/admin",
    "/readyz",
]
OVERRIDE = {"mode": "maintenance", "reason": "r", "ttl_s": 60}


@pytest.mark.parametrize(
    ("exc", "status", "code", "message", "field"),
    [
        (InvalidInput("x.y", "x.y: bad"), 422, "invalid", "x.y: bad", "x.y"),
        (NotFound("id", "unknown window 'w'"), 404, "not_found", "unknown window 'w'", "id"),
        (Conflict("id", "exists"), 409, "conflict", "exists", "id"),
        (Unauthorized("unknown token"), 401, "unauthorized", "unknown token", None),
        (Forbidden("needs admin"), 403, "forbidden", "needs admin", None),
        (
            TooManyStreams(32),
            429,
            "too_many_streams",
            "too many open streams from this address (at most 32 per client): close one and retry",
            None,
        ),
        *((e, 503, "store_unavailable", "store unavailable", None) for e in STORE_FAILURES),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_the_table(exc: Exception, status: int, code: str, message: str, field: str | None) -> None:
    answer = answer_for(exc, "GET /x")
    assert answer is not None
    assert answer.status == status
    assert answer.doc == {"error": {"code": code, "message": message, "field": field}}
    assert ADDRESS not in answer.body().decode()
    raw = dict(answer.raw_headers(answer.body()))
    assert raw[b"content-type"] == b"application/json"
    assert raw[b"content-length"] == str(len(answer.body())).encode()
    if status == 401:
        assert raw[b"www-authenticate"] == b'Bearer realm="maintcast"'
    if status == 429:
        assert raw[b"retry-after"] == b"10"


def test_table_covers_every_store_error_and_nothing_else() -> None:
    for cls in (*RECONNECT_ERRORS, rx.RedisError, rx.WatchError, rx.AuthenticationError):
        assert http_error_of(cls()) is errors.STORE_UNAVAILABLE, cls
    assert set(STORE_ERRORS) <= set(errors.HANDLED)
    # the auth errors are PermissionErrors, hence OSErrors: their own entry comes first
    assert http_error_of(Unauthorized("x")) is not errors.STORE_UNAVAILABLE
    for other in (ValueError("v"), KeyError("k"), RuntimeError("r")):
        assert http_error_of(other) is None
        assert answer_for(other) is None


def test_store_errors_are_logged_once_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="broadcaster.errors"):
        answer_for(rx.TimeoutError(f"Timeout reading from {ADDRESS}"), "GET /v1/windows")
        answer_for(NotFound("id", "nope"), "GET /v1/windows/x")
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert record.exc_info is None
    assert "GET /v1/windows" in record.getMessage()
    assert ADDRESS in record.getMessage()


@pytest.fixture
async def broken_app(fake_redis: Any, key_prefix: str) -> tuple[FastAPI, list[Exception]]:
    """An app over a store whose every command raises the exception put in the list (no
    lifespan: the hub knows no status, so the live routes and pages read the store too)."""
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, tokens=TOKENS)
    failure: list[Exception] = []

    async def failing(*args: Any, **kw: Any) -> Any:
        raise failure[0]

    def failing_pipeline(*args: Any, **kw: Any) -> Any:
        raise failure[0]

    fake_redis.execute_command = failing
    fake_redis.pipeline = failing_pipeline
    return app, failure


@pytest.mark.parametrize("exc", STORE_FAILURES, ids=lambda e: type(e).__name__)
async def test_every_route_answers_a_store_error_with_503(
    broken_app: tuple[FastAPI, list[Exception]], exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    app, failure = broken_app
    failure.append(exc)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        replies = [await client.get(path) for path in GETS]
        replies.append(await client.put("/v1/override", json=OVERRIDE, headers=ADMIN))
        replies.append(await client.delete("/v1/override", headers=ADMIN))
        replies.append(await client.post("/v1/windows", json={"id": "w"}, headers=ADMIN))
    for r in replies:
        where = f"{r.request.method} {r.request.url.path}"
        assert r.status_code == 503, (where, r.text)
        assert r.headers["content-type"].startswith("application/json"), where
        assert r.json() == {
            "error": {"code": "store_unavailable", "message": "store unavailable", "field": None}
        }, where
        assert ADDRESS not in r.text, where
        assert "10.9.8.7" not in r.text, where
    assert not [r for r in caplog.records if r.levelno >= 40], "logged as an error"
    warned = [r for r in caplog.records if r.name == "broadcaster.errors"]
    assert len(warned) == len(replies)
    assert all(r.exc_info is None and type(exc).__name__ in r.getMessage() for r in warned)


async def test_client_leaving_mid_body_is_not_an_error(
    fake_redis: Any, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, tokens=TOKENS)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/windows",
        "raw_path": b"/v1/windows",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t"), (b"authorization", f"Bearer {AD}".encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    with caplog.at_level("DEBUG"):
        await app(scope, receive, send)  # no exception out of the app
    assert sent == []  # nobody to answer
    assert not [r for r in caplog.records if r.levelno >= 30], caplog.text
    assert "client disconnected during POST /v1/windows" in caplog.text


async def test_real_redis_timeout_on_windows_is_503(key_prefix: str) -> None:
    """A Redis that stops answering (SIGSTOP) makes ``/v1/windows`` time out: 503, and the
    body names neither the error nor the Redis address."""
    server = start_redis()
    client: aioredis.Redis = aioredis.Redis.from_url(server.url, socket_timeout=0.5)
    try:
        app = create_app(settings_for(server.url, key_prefix), redis=client, clock=None)
        await import_example(app.state.store, jst(2021, 8, 9, 0, 30))
        async with (
            live_server(app) as url,
            httpx.AsyncClient(base_url=url, timeout=5) as http,
        ):
            assert (await http.get("/v1/windows")).status_code == 200
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                r = await http.get("/v1/windows")
                ready = await http.get("/readyz")
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            await asyncio.sleep(0.2)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == {
            "code": "store_unavailable",
            "message": "store unavailable",
            "field": None,
        }
        assert str(server.port) not in r.text
        assert "127.0.0.1" not in r.text
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "store_unavailable"
        assert str(server.port) not in ready.text
    finally:
        await client.aclose()
        server.close()


def test_the_gate_stands_alone() -> None:
    """Importing the gate imports neither FastAPI, sse-starlette, the pages nor the app."""
    code = (
        "import broadcaster.gate, sys; "
        "bad = [m for m in ('fastapi', 'sse_starlette', 'broadcaster.pages', 'broadcaster.app')"
        " if m in sys.modules]; "
        "assert not bad, bad"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr


def test_error_docs_keep_their_shape() -> None:
    answer = answer_for(rx.ConnectionError(ADDRESS))
    assert answer is not None
    assert set(orjson.loads(answer.body())["error"]) == {"code", "message", "field"}


def test_stream_caps_count_per_address_and_release() -> None:
    caps = StreamCaps(2)
    a, b = {"client": ("192.0.2.1", 1)}, {"client": ("192.0.2.2", 1)}
    keys = [caps.acquire(a), caps.acquire(a), caps.acquire(b)]
    assert keys == ["192.0.2.1", "192.0.2.1", "192.0.2.2"]
    with pytest.raises(TooManyStreams):
        caps.acquire(a)
    assert caps.held("192.0.2.1") == 2  # a refusal holds nothing
    caps.release(keys[0])
    assert caps.acquire(a) == "192.0.2.1"
    for key in (*keys[1:], "192.0.2.1"):
        caps.release(key)
    assert caps.held("192.0.2.1") == caps.held("192.0.2.2") == 0
    assert caps._open == {}  # nothing kept for addresses that left
    # no address (a Unix socket), or no cap: not counted
    assert caps.acquire({"client": None}) is None
    unlimited = StreamCaps(0)
    assert all(unlimited.acquire(a) is None for _ in range(100))
    caps.release(None)
    with pytest.raises(ValueError, match="per_client"):
        StreamCaps(-1)
