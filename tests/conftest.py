"""The fixtures: a real redis-server on an ephemeral port, fakeredis, stores, a browser.

Helpers (constants, polling, processes, servers) live in ``tests/support.py``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from broadcaster.store import Store, connect
from tests.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    import_example,
    jst,
    make_store,
    need,
    start_redis,
)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: ``MAINTCAST_TEST_REDIS_URL`` or a private server for the session."""
    given = os.environ.get("MAINTCAST_TEST_REDIS_URL")
    if given:
        yield given
        return
    with start_redis() as server:
        yield server.url


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


@pytest.fixture
async def store(fake_redis: Any, key_prefix: str) -> Store:
    """A fakeredis store holding the seed notice, imported well before the window
    (2021-08-09 00:30 JST)."""
    s = make_store(fake_redis, key_prefix)
    await import_example(s, jst(2021, 8, 9, 0, 30))
    return s


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's headless chromium driven by Playwright (it cannot download browsers here)."""
    need(f"chromium at {CHROMIUM}", os.path.exists(CHROMIUM))
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
