"""The fan-out loop's write path, with fake ASGI sends (no I/O): direct writes, a send that
suspends, bounded backlogs, the send timeout, pings and the final chunk."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broadcaster import codec, exiting, sse
from broadcaster.events import Event
from broadcaster.sse import ALL, FINAL, PING, Stream, Streams
from tests.support import eventually_async, metric_value

DROPPED = "maintcast_slow_clients_dropped_total"


def ev(seq: int, **doc: Any) -> Event:
    return Event({"seq": seq, "state": "normal", **doc})


def no_scope(doc: codec.Doc, scope: codec.View) -> codec.Doc:
    return doc


class Client:
    """A fake ASGI send: records messages; while ``paused`` is clear a send suspends, as
    uvicorn's does while the transport is over its high-water mark."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.paused = asyncio.Event()
        self.paused.set()
        self.suspended = 0

    async def send(self, message: Any) -> None:
        if not self.paused.is_set():
            self.suspended += 1
            await self.paused.wait()
        self.sent.append(message)

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent]


class FakeConn:
    """Records resets; ``held`` bytes stand for what the server could not write yet."""

    def __init__(self, resets: list[int], held: int = 0) -> None:
        self.resets, self.held = resets, held

    def reset(self) -> None:
        self.resets.append(1)

    def unsent(self) -> int:
        return self.held


async def open_stream(streams: Streams, client: Client, task: Any = None) -> Stream:
    s = Stream(client.send, ALL, task)
    streams.join(s)
    await streams.pump(s)  # nothing pending: writing goes to the fan-out loop
    return s


async def test_an_idle_stream_is_written_without_a_task() -> None:
    streams, c = Streams(no_scope), Client()
    s = await open_stream(streams, c)
    before = len(asyncio.all_tasks())
    streams.deliver(ev(1))
    streams.deliver(ev(1))  # a repeat is not re-sent
    streams.deliver(ev(2))
    assert c.bodies() == [ev(1).frame(), ev(2).frame()]  # written before any await
    assert s.writer is None
    assert s.backlog is None
    assert len(asyncio.all_tasks()) == before


async def test_a_suspended_send_is_finished_by_a_task_and_the_backlog_follows_in_order() -> None:
    streams, c = Streams(no_scope), Client()
    s = await open_stream(streams, c)
    c.paused.clear()
    streams.deliver(ev(1))  # suspends: a writer task takes over
    assert s.writer is not None
    assert c.sent == []
    streams.deliver(ev(2))
    streams.deliver(ev(3))
    assert s.backlog is not None
    assert [e.seq for e in s.backlog] == [2, 3]
    c.paused.set()
    await eventually_async(
        lambda: s.writer is None, "the writer task to finish", timeout=1, interval=0
    )
    assert c.bodies() == [ev(1).frame(), ev(2).frame(), ev(3).frame()]
    assert s.backlog is None  # writing is back with the loop
    streams.deliver(ev(4))
    assert c.bodies()[-1] == ev(4).frame()


async def test_a_full_backlog_cuts_the_stream_and_counts_it() -> None:
    streams, c = Streams(no_scope, client_queue=2), Client()
    request = asyncio.create_task(asyncio.sleep(60))  # stands for the request's task
    s = await open_stream(streams, c, request)
    other = Client()
    await open_stream(streams, other)
    before = metric_value(DROPPED)
    c.paused.clear()
    for seq in range(1, 5):
        streams.deliver(ev(seq))
    assert s.aborted
    assert len(streams) == 1
    assert metric_value(DROPPED) == before + 1
    await asyncio.gather(request, return_exceptions=True)
    assert request.cancelled()  # the connection is closed by ending its request
    assert [b[:5] for b in other.bodies()] == [b"id: 1", b"id: 2", b"id: 3", b"id: 4"]


async def test_a_send_that_never_finishes_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "SEND_TIMEOUT_S", 0.05)
    streams, c = Streams(no_scope), Client()
    request = asyncio.create_task(asyncio.sleep(60))
    s = await open_stream(streams, c, request)
    c.paused.clear()
    streams.deliver(ev(1))
    async with asyncio.timeout(1):
        await asyncio.gather(request, return_exceptions=True)
    assert s.aborted
    assert request.cancelled()
    assert len(streams) == 0


async def test_end_sends_one_final_chunk_also_after_a_pending_backlog() -> None:
    streams, idle, busy = Streams(no_scope), Client(), Client()
    a = await open_stream(streams, idle)
    b = await open_stream(streams, busy)
    busy.paused.clear()
    streams.deliver(ev(1))
    streams.deliver(ev(2))
    streams.end_all()
    assert idle.sent[-1] is FINAL
    assert a.ended
    assert not a.aborted
    assert b.ended
    assert FINAL not in busy.sent
    busy.paused.set()
    await eventually_async(
        lambda: b.writer is None, "the writer task to finish", timeout=1, interval=0
    )
    assert busy.bodies() == [ev(1).frame(), ev(2).frame(), b""]
    assert busy.sent.count(FINAL) == 1
    assert idle.sent.count(FINAL) == 1
    streams.end(a)  # idempotent
    assert idle.sent.count(FINAL) == 1
    assert len(streams) == 0


async def test_pings_go_to_idle_streams_only() -> None:
    streams, idle, busy = Streams(no_scope), Client(), Client()
    await open_stream(streams, idle)
    await open_stream(streams, busy)
    busy.paused.clear()
    streams.deliver(ev(1))
    streams.ping()
    assert idle.bodies() == [ev(1).frame(), PING]
    busy.paused.set()
    await eventually_async(lambda: busy.sent, "the pending send to finish", timeout=1, interval=0)
    assert busy.bodies() == [ev(1).frame()]


async def test_a_scoped_stream_skips_events_that_leave_its_view_unchanged() -> None:
    def scoper(doc: codec.Doc, scope: codec.View) -> codec.Doc:
        return {k: v for k, v in doc.items() if k != "other"}

    streams, c = Streams(scoper), Client()
    s = Stream(c.send, ("webcollect", None), None)
    streams.join(s)
    await streams.pump(s)
    streams.deliver(ev(1, other=1))
    streams.deliver(ev(2, other=2))  # only what is outside the view changed
    streams.deliver(ev(3, other=2, state="maintenance"))
    assert [b[:5] for b in c.bodies()] == [b"id: 1", b"id: 3"]
    assert s.seq == 3


async def test_a_send_that_raises_cuts_the_stream() -> None:
    async def broken(message: Any) -> None:
        raise RuntimeError("Unexpected ASGI message")

    streams = Streams(no_scope)
    s = Stream(broken, ALL, None)
    streams.join(s)
    s.backlog = None
    streams.deliver(ev(1))
    assert s.aborted
    assert len(streams) == 0


def test_server_exit_is_seen_through_sse_starlette(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exiting.AppStatus, "should_exit", False)
    assert not sse.server_exiting()
    monkeypatch.setattr(exiting.AppStatus, "should_exit", True)
    assert sse.server_exiting()


async def test_scoped_streams_of_one_scope_compare_their_view_once() -> None:
    calls = 0

    def scoper(doc: codec.Doc, scope: codec.View) -> codec.Doc:
        return {k: v for k, v in doc.items() if k != "other"}

    streams = Streams(scoper)
    clients = [Client() for _ in range(50)]
    for c in clients:
        s = Stream(c.send, ("webcollect", None), None)
        streams.join(s)
        await streams.pump(s)
    real = codec.same_status

    def counting(a: codec.Doc, b: codec.Doc) -> bool:
        nonlocal calls
        calls += 1
        return real(a, b)

    streams.deliver(ev(1, other=1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(codec, "same_status", counting)
        streams.deliver(ev(2, other=2))  # unchanged in the view: skipped by all
        streams.deliver(ev(3, other=3, state="maintenance"))  # changed: sent to all
        streams.deliver(ev(4, other=4, state="maintenance"))  # unchanged again
    assert calls == 3  # once per delivery, not once per stream
    assert all([b[:5] for b in c.bodies()] == [b"id: 1", b"id: 3"] for c in clients)


async def test_a_cut_resets_the_connection_where_the_server_allows_it() -> None:
    resets: list[int] = []
    streams, c = Streams(no_scope, client_queue=1), Client()
    request = asyncio.create_task(asyncio.sleep(60))
    s = Stream(c.send, ALL, request, FakeConn(resets))
    streams.join(s)
    await streams.pump(s)
    c.paused.clear()
    for seq in range(1, 4):
        streams.deliver(ev(seq))
    assert s.aborted
    assert resets == [1]
    assert not request.cancelled()  # the reset wakes it through http.disconnect instead
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)


async def test_server_exit_cuts_stuck_streams_and_ends_the_others() -> None:
    resets: list[int] = []
    streams, stuck, fine = Streams(no_scope), Client(), Client()
    s = Stream(stuck.send, ALL, None, FakeConn(resets))
    streams.join(s)
    await streams.pump(s)
    other = await open_stream(streams, fine)
    stuck.paused.clear()
    streams.deliver(ev(1))  # stuck's send now waits on a full socket
    streams.end_all(cut_stuck=True)
    await asyncio.sleep(0)
    assert s.aborted
    assert resets == [1]
    assert other.ended
    assert not other.aborted
    assert fine.sent[-1] is FINAL
    assert len(streams) == 0


async def test_server_exit_cuts_a_stream_whose_socket_is_full_even_without_a_pending_send() -> None:
    resets: list[int] = []
    streams, c = Streams(no_scope), Client()
    s = Stream(c.send, ALL, None, FakeConn(resets, held=4096))
    streams.join(s)
    await streams.pump(s)
    streams.end_all(cut_stuck=True)
    assert s.aborted
    assert resets == [1]
    assert FINAL not in c.sent
