"""A client that stops reading is cut with a TCP reset over a real socket: its fd and the
unsent bytes are freed at once (a graceful close would wait for it forever), and the hub
forgets it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from broadcaster import live
from broadcaster.app import create_app
from broadcaster.clock import RehearsalClock
from broadcaster.domain import Cause, Override
from broadcaster.store import Change, Store
from tests.support import eventually_async, jst, live_server, make_store, metric_value, settings_for

REASON = "x" * 2000  # the largest reason: ~2.4 KB frames fill the socket buffers sooner
DROPPED = "maintcast_slow_clients_dropped_total"


async def test_a_client_that_stops_reading_is_reset(
    real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    clock = RehearsalClock(jst(2021, 7, 1))
    store = make_store(real_redis, key_prefix)
    app = create_app(settings_for(redis_url, key_prefix, client_queue=4), clock=clock)
    hub = app.state.hub
    before = metric_value(DROPPED)
    async with live_server(app) as base:
        loop = asyncio.get_running_loop()
        sock = await stuck_client(hub, base)
        try:
            await publish_until(store, lambda: hub.clients == 0)  # ~1,500 events fill it
            await eventually_async(lambda: hub.clients == 0, "the stream to be cut", timeout=15)
            assert metric_value(DROPPED) == before + 1
            # the connection was reset, not left half-closed with its buffers pinned
            reset = False
            for _ in range(10_000):  # bounded: drain what the kernel holds, then the RST
                try:
                    async with asyncio.timeout(0.5):
                        if not await loop.sock_recv(sock, 65536):
                            break
                except ConnectionResetError:
                    reset = True
                    break
                except TimeoutError:
                    break
            assert reset, "expected a TCP reset from the server"
        finally:
            sock.close()


async def test_a_client_that_stops_reading_does_not_hold_shutdown(
    real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    """On server exit a stream whose send waits on a full socket is reset, not waited for
    (uvicorn waits for every connection to close before it exits)."""
    clock = RehearsalClock(jst(2021, 7, 1))
    store = make_store(real_redis, key_prefix)
    app = create_app(settings_for(redis_url, key_prefix, client_queue=100_000), clock=clock)
    hub = app.state.hub
    sock: socket.socket | None = None
    try:
        async with live_server(app) as base:
            sock = await stuck_client(hub, base)

            def waiting() -> bool:
                return any(s.writer for s in hub.streams._open)

            await publish_until(store, waiting)  # until its send waits on the full socket
            assert waiting(), "the send never waited"
            t0 = time.monotonic()
        # live_server gives uvicorn 3 s of graceful shutdown: a stuck stream would use it all
        assert time.monotonic() - t0 < 2.0
        assert hub.clients == 0
    finally:
        if sock is not None:
            sock.close()


async def test_a_stuck_client_is_dropped_by_the_kernel_when_events_are_sparse(
    real_redis: Any, redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Too few events to fill the server's own buffer: nothing in the fan-out loop waits,
    but the socket's TCP_USER_TIMEOUT (STALL_S) drops the connection once the client's
    window has stayed shut that long."""
    monkeypatch.setattr(live, "STALL_S", 1.0)
    clock = RehearsalClock(jst(2021, 7, 1))
    store = make_store(real_redis, key_prefix)
    app = create_app(settings_for(redis_url, key_prefix, client_queue=100_000), clock=clock)
    hub = app.state.hub
    sock: socket.socket | None = None
    try:
        async with live_server(app) as base:
            sock = await stuck_client(hub, base)
            stream = next(iter(hub.streams._open))
            conn = stream.conn
            assert conn is not None
            # until the kernel's buffers are full: bytes wait in ours
            await publish_until(store, lambda: bool(conn.unsent()) or hub.clients == 0)
            t0 = time.monotonic()
            # well before the 10 s send timeout
            await eventually_async(lambda: hub.clients == 0, "the kernel to drop it", timeout=8)
            assert time.monotonic() - t0 < 5
    finally:
        if sock is not None:
            sock.close()


async def stuck_client(hub: Any, base: str) -> socket.socket:
    """A raw client with a 2 KB receive buffer that opens ``/v1/stream``, reads the response
    head and never reads again; returned once the hub counts its stream."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect
    sock.setblocking(False)
    try:
        async with asyncio.timeout(5):  # the server runs on this loop: no blocking calls
            await loop.sock_connect(sock, ("127.0.0.1", int(base.rsplit(":", 1)[1])))
            await loop.sock_sendall(sock, b"GET /v1/stream HTTP/1.1\r\nHost: t\r\n\r\n")
            assert b" 200 " in await loop.sock_recv(sock, 256)
            await eventually_async(lambda: hub.clients == 1, "the stream to join", interval=0.01)
    except BaseException:
        sock.close()
        raise
    return sock


async def publish_until(store: Store, done: Callable[[], bool]) -> None:
    """Publish ~2.4 KB events (override set and cleared in turn) until ``done()``; bounded
    by 5,000 events and 60 s."""
    deadline = time.monotonic() + 60
    for i in range(5000):
        if done() or time.monotonic() > deadline:
            return
        await store.apply(jst(2021, 7, 1, 0, 0, 0, i), _change(i))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # let the hub catch up with pub/sub


def _change(i: int) -> Any:
    def change(st: Any) -> Change:
        if i % 2 == 0:
            ov = Override(mode="maintenance", reason=REASON, actor="t", set_at=jst(2021, 7, 1))
            return Change(Cause("override.set", None, "t", REASON), override=ov, set_override=True)
        return Change(Cause("override.cleared", None, "t", None), override=None, set_override=True)

    return change
