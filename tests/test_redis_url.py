"""``MAINTCAST_REDIS_URL``: parsing ``redis+sentinel://`` URLs, the settings validator, and
what ``connect`` builds and closes (no server needed)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from pydantic import ValidationError

from broadcaster.settings import Settings
from broadcaster.store.client import (
    SENTINEL_TIMEOUT_S,
    SOCKET_TIMEOUT_S,
    SentinelRedis,
    SentinelURL,
    connect,
    parse_sentinel_url,
)
from tests.support import env_for, run_cli

H = "127.0.0.1"


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("redis+sentinel://h:26379/m", SentinelURL((("h", 26379),), "m")),
        (
            "redis+sentinel://a:1,b:2,c:3/mymaster/2",
            SentinelURL((("a", 1), ("b", 2), ("c", 3)), "mymaster", 2),
        ),
        (
            "redis+sentinel://:s%40cret@a:1,b:2/m/0",
            SentinelURL((("a", 1), ("b", 2)), "m", 0, "s@cret"),
        ),
        ("redis+sentinel://:@a:1/m", SentinelURL((("a", 1),), "m")),
        ("redis+sentinel://[::1]:26379/m/1", SentinelURL((("::1", 26379),), "m", 1)),
        ("redis+sentinel://a:1/m/", SentinelURL((("a", 1),), "m")),
        ("redis+sentinel://a:1/my%2Dmaster", SentinelURL((("a", 1),), "my-master")),
        (
            "redis+sentinel://:pw@a:1/m?sentinel_password=sp",
            SentinelURL((("a", 1),), "m", 0, "pw", "sp"),
        ),
    ],
)
def test_sentinel_url_parses(url: str, want: SentinelURL) -> None:
    assert parse_sentinel_url(url) == want


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("redis+sentinel://a:1", "master's name"),
        ("redis+sentinel://a:1/", "master's name"),
        ("redis+sentinel://a/m", "needs a port"),
        ("redis+sentinel://a:0/m", "needs a port"),
        ("redis+sentinel://a:65536/m", "needs a port"),
        ("redis+sentinel://a:x/m", "needs a port"),
        ("redis+sentinel://a:1,b/m", "'b' needs a port"),
        ("redis+sentinel://a:1,,b:2/m", "empty entries"),
        ("redis+sentinel:///m", "empty entries"),
        ("redis+sentinel://:1/m", "has no host"),
        ("redis+sentinel://[::1]/m", "needs a port"),
        ("redis+sentinel://user:pw@a:1/m", "only a password"),
        ("redis+sentinel://pw@a:1/m", "only a password"),
        ("redis+sentinel://a:1/m/x", "db number"),
        ("redis+sentinel://a:1/m/0/extra", "db number"),
        ("redis+sentinel://a:1/m?db=2", "unknown query"),
        ("redis://a:1/0", "not a redis+sentinel"),
    ],
)
def test_malformed_sentinel_url_is_rejected(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_sentinel_url(url)


def test_settings_accept_every_scheme() -> None:
    for url in (
        "redis://127.0.0.1:6379/0",
        "rediss://h:6380/0",
        "unix:///run/redis.sock",
        "redis+sentinel://a:26379,b:26379/m/0",
    ):
        assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://a:26379", "redis+sentinel://a:port/m", "http://h/0", "sentinel://a:1/m"],
)
def test_settings_reject_a_bad_url_naming_the_variable_without_echoing_it(url: str) -> None:
    with pytest.raises(ValidationError) as got:
        Settings(redis_url=url)
    text = str(got.value)
    assert "MAINTCAST_REDIS_URL" in text
    assert url not in text  # a URL may carry a password


def test_cli_names_the_variable_for_a_malformed_sentinel_url() -> None:
    env = env_for(MAINTCAST_REDIS_URL="redis+sentinel://:hunter2@127.0.0.1:26379")
    done: subprocess.CompletedProcess[str] = run_cli(["worker", "check"], env)
    assert done.returncode != 0
    assert "MAINTCAST_REDIS_URL" in done.stderr
    assert "master's name" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


async def test_connect_builds_a_sentinel_client_and_closing_it_closes_the_sentinels() -> None:
    """No server is contacted until a command runs; the options reach both sides."""
    client, embedded = connect(f"redis+sentinel://:pw@{H}:1,{H}:2/m/3?sentinel_password=sp")
    assert not embedded
    assert isinstance(client, SentinelRedis)
    sentinel: Any = client.owned_sentinel
    assert sentinel is not None
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in sentinel.sentinels
    ] == [(H, 1), (H, 2)]
    for s in sentinel.sentinels:
        kw = s.connection_pool.connection_kwargs
        assert kw["socket_timeout"] == SENTINEL_TIMEOUT_S
        assert kw["password"] == "sp"
    kw = client.connection_pool.connection_kwargs
    assert kw["db"] == 3
    assert kw["password"] == "pw"
    assert kw["socket_timeout"] == kw["socket_connect_timeout"] == SOCKET_TIMEOUT_S
    assert kw["socket_keepalive"] is True
    assert kw["health_check_interval"] == 10
    assert client.connection_pool.service_name == "m"  # type: ignore[attr-defined]

    closed: list[str] = []
    original = type(sentinel).aclose

    async def spy(self: Any) -> None:
        closed.append("sentinel")
        await original(self)

    type(sentinel).aclose = spy
    try:
        await client.aclose()
        await client.aclose()  # twice is harmless: the sentinels are closed once
    finally:
        type(sentinel).aclose = original
    assert closed == ["sentinel"]


async def test_connect_plain_url_keeps_the_timeouts() -> None:
    client, embedded = connect("redis://127.0.0.1:1/0")
    try:
        kw = client.connection_pool.connection_kwargs
        assert not embedded
        assert kw["socket_timeout"] == SOCKET_TIMEOUT_S
        assert kw["socket_keepalive"] is True
    finally:
        await client.aclose()
