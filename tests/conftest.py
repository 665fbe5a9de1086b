"""Shared fixtures: a real redis-server on an ephemeral port, fakeredis, stores, live servers.

Outside CI a test that needs ``redis-server`` skips with the reason when the binary is
absent; with ``CI=true`` it fails instead (nothing may be skipped in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvicorn

from broadcaster.keys import Keys
from broadcaster.settings import Settings
from broadcaster.store import Store, connect
from broadcaster.validation import Defaults

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "examples" / "webcollect-2021.yaml"
JST = timezone(timedelta(hours=9))
DEFAULTS = Defaults("Asia/Tokyo", "Z010000000", 604_800)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(what: str, ok: bool) -> None:
    """Skip (outside CI) or fail (in CI) when a required service or binary is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is missing")
    pytest.skip(f"{what} not available")


class FixedClock:
    """A clock standing still at ``t`` (tests move it by assignment)."""

    speed = 1.0

    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t

    def wall_time_of(self, instant: datetime) -> datetime:
        return instant


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process owned by a test (can be killed, stopped and restarted)."""

    port: int
    dir: str
    proc: subprocess.Popen[bytes] | None = None
    appendonly: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--dir",
            self.dir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def start_redis(appendonly: bool = False) -> RedisServer:
    """Start a private redis-server on an ephemeral port (caller kills it)."""
    need("redis-server", shutil.which("redis-server") is not None)
    server = RedisServer(
        free_port(), tempfile.mkdtemp(prefix="maintcast-redis-"), appendonly=appendonly
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: ``MAINTCAST_TEST_REDIS_URL`` or a private server for the session."""
    given = os.environ.get("MAINTCAST_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = start_redis()
    try:
        yield server.url
    finally:
        server.kill()
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def key_prefix() -> str:
    """A key prefix unique to the test, so tests sharing one Redis never collide."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def real_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def fake_redis() -> AsyncIterator[Any]:
    client, embedded = connect(None)
    assert embedded
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=["real", "fake"])
def any_redis(request: pytest.FixtureRequest) -> Any:
    """Each test using this runs on a real Redis and on the embedded fakeredis."""
    return request.getfixturevalue("real_redis" if request.param == "real" else "fake_redis")


def make_store(client: Any, prefix: str, *, grace_s: float = 5.0, retention: int = 10_000) -> Store:
    """A store over ``client`` under ``prefix`` with the seed's defaults."""
    return Store(client, keys=Keys(prefix), defaults=DEFAULTS, grace_s=grace_s, retention=retention)


def jst(*args: int) -> datetime:
    """A JST wall time as an aware UTC instant: ``jst(2021, 8, 9, 1)``."""
    return datetime(*args).replace(tzinfo=JST).astimezone(UTC)  # type: ignore[arg-type]


def settings_for(redis_url: str | None, prefix: str, **kw: Any) -> Settings:
    """Settings pointing at ``redis_url`` under ``prefix`` (environment ignored)."""
    return Settings(redis_url=redis_url, key_prefix=prefix, **kw)


@contextlib.asynccontextmanager
async def live_server(app: Any, port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a loopback port (default: ephemeral); yields its
    base URL. A fixed ``port`` lets a test restart a server on the same address."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's headless chromium driven by Playwright (it cannot download browsers here)."""
    need("chromium at /usr/bin/chromium", os.path.exists(CHROMIUM))
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
