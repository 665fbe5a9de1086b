"""Open SSE streams, written to straight from the hub's fan-out loop.

The wire format is WHATWG HTML "Server-sent events" (docs/api.md "Built", ``GET /v1/stream``).
Per change, the per-client work is one ASGI ``send`` of ready bytes, called from the one loop
that fans the event out: no queue, no task wake-up and no generator step per client. An ASGI
server's ``send`` finishes without suspending unless the client's transport is flow-control paused
(uvicorn: its write buffer is over the high-water mark), so the loop runs each ``send`` one
step (what Python 3.12's eager tasks do); only a send that does suspend gets a task, which
finishes it, writes the client's backlog and gives writing back to the loop.

This replaces sse-starlette's per-connection path (five tasks and an anyio cancel scope per
frame; docs/performance.md has the before/after numbers) while keeping its guarantees:

- **pings**: one hub-wide timer writes the same ``: ping`` comment to every idle stream;
- **disconnect detection**: the request's own task waits in ``receive()`` for
  ``http.disconnect`` (one task per connection);
- **send timeout and bounded buffers**: a stream whose backlog reaches its bound, or whose
  send does not finish within :data:`SEND_TIMEOUT_S`, is cut (and counted); the client
  reconnects to a fresh status;
- **shutdown**: on server exit every stream is ended with its final chunk, so browsers
  reconnect (to another replica) at once; sse-starlette's ``AppStatus`` still tells us
  when uvicorn is exiting (read through :mod:`broadcaster.exiting`, imported lazily so
  that importing the hub or the gate does not import ``sse_starlette``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import deque
from collections.abc import Coroutine, Generator
from typing import Any, Protocol, cast

from starlette.types import Message, Send

from broadcaster import codec
from broadcaster.codec import View, Viewer
from broadcaster.events import Event
from broadcaster.metrics import SLOW_CLIENTS_DROPPED

log = logging.getLogger(__name__)

ALL: View = (None, None)
"""The view of the whole status (no ``service``, no ``method``)."""
Memo = dict[tuple[View, int], tuple[codec.Doc, bool]]
SEND_TIMEOUT_S = 10.0
"""A stream whose pending send does not finish within this many seconds is cut."""
FREEZE_EVERY = 100
"""Freeze the heap after this many new streams (see :func:`freeze_heap`): at 500, full
collections of 56-198 ms fell inside a 10k reconnect storm; at 100, one of 74 ms."""
TICK_S = 0.5
"""How often the keepalive loop looks for a server shutdown (as sse-starlette polls)."""
PING = b": ping\n\n"
FINAL: Message = {"type": "http.response.body", "body": b"", "more_body": False}


def freeze_heap(*, full: bool = False) -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    Thousands of long-lived connection objects otherwise make each full collection take
    over a second (measured: 1.2-1.5 s at 5k-10k subscribers), and one falling inside a
    broadcast delays every client by that much (docs/performance.md). Frozen objects are
    still freed by reference counting when a connection ends, but frozen *cyclic* garbage
    never is, so the young generations are collected first (a few thousand objects at
    most); ``full`` collects everything first (only at start-up: a full collection among
    thousands of connections is the very pause avoided).
    """
    gc.collect(2 if full else 1)
    gc.freeze()


def chunk(data: bytes) -> Message:
    """The ASGI message carrying ``data`` as the next part of a stream."""
    return {"type": "http.response.body", "body": data, "more_body": True}


class Conn(Protocol):
    """The connection under a stream, where the ASGI server lets us reach it."""

    def reset(self) -> None:
        """Close with a TCP reset: the fd and every unsent byte are freed at once."""

    def unsent(self) -> int:
        """Bytes the server holds for it in user space (the socket buffer is full)."""


class Stream:
    """One open ``/v1/stream`` response.

    ``view`` is the part of the status it shows (:data:`ALL`, or a service [+ method]);
    ``seq`` the last seq this stream has accounted for (sent, or skipped as unchanged);
    ``last_doc`` the last status of its view sent. While ``backlog`` is a deque, some task owns the
    writing (the request task while the stream starts, or a task finishing a suspended
    send) and the fan-out loop appends events to it instead of writing.
    """

    __slots__ = (
        "aborted",
        "backlog",
        "conn",
        "ended",
        "finished",
        "last_doc",
        "send",
        "seq",
        "task",
        "view",
        "writer",
    )

    def __init__(
        self,
        send: Send,
        view: View,
        task: asyncio.Task[Any] | None,
        conn: Conn | None = None,
    ) -> None:
        self.send = send
        self.view = view
        self.task = task
        self.conn = conn  # its connection, where the server lets us reach it
        self.seq = -1
        self.last_doc: codec.Doc | None = None
        self.backlog: deque[Event] | None = deque()  # starting: the request task writes
        self.ended = False  # the server ends it (final chunk pending or sent)
        self.finished = False  # the final chunk was handed to send
        self.aborted = False  # cut without a final chunk (slow, or its send failed)
        self.writer: asyncio.Task[None] | None = None

    def frame_for(self, ev: Event, viewer: Viewer, memo: Memo | None = None) -> bytes | None:
        """The frame to send for ``ev``; None when it was already sent, or when the status
        of a stream's view is unchanged (such streams skip those: docs/api.md "Built").

        ``memo`` shares the comparison among the streams of one delivery: streams of a
        view that are up to date hold the same status object, so it is compared once.
        """
        if ev.seq <= self.seq:
            return None
        self.seq = ev.seq
        if self.view == ALL:
            return ev.frame()
        doc, frame = ev.view(self.view, viewer)
        last, self.last_doc = self.last_doc, doc  # also on a skip: equal, shared with others
        if last is None:
            return frame
        if memo is None:
            return None if codec.same_status(doc, last) else frame
        key = (self.view, id(last))
        got = memo.get(key)
        if got is None:  # the memo keeps ``last`` alive, so its id is not reused meanwhile
            got = memo[key] = (last, codec.same_status(doc, last))
        return None if got[1] else frame


class Streams:
    """This process's open streams and the loop that writes every change to them.

    ``viewer`` restricts a status to a stream's view. ``client_queue``
    (``MAINTCAST_CLIENT_QUEUE``) bounds the events held for a stream whose send is pending;
    reaching it cuts the stream (a slow client), as a full queue did before.
    """

    def __init__(self, viewer: Viewer, *, client_queue: int = 64) -> None:
        self.viewer = viewer
        self.client_queue = client_queue
        self._open: set[Stream] = set()
        self._since_freeze = 0

    def __len__(self) -> int:
        return len(self._open)

    def join(self, s: Stream) -> None:
        """Register a starting stream: from now on every event lands in its backlog, so
        none falls between its snapshot and its first live write."""
        self._open.add(s)
        self._since_freeze += 1
        if self._since_freeze >= FREEZE_EVERY:
            freeze_heap()
            self._since_freeze = 0

    def leave(self, s: Stream) -> None:
        """Forget a stream (idempotent)."""
        self._open.discard(s)

    def deliver(self, ev: Event) -> None:
        """Hand ``ev`` to every open stream: one write of ready bytes each."""
        viewer, limit = self.viewer, self.client_queue
        memo: Memo = {}
        for s in tuple(self._open):
            backlog = s.backlog
            if backlog is not None:
                if len(backlog) >= limit:
                    self._cut_slow(s, f"its backlog is full at seq={ev.seq}")
                else:
                    backlog.append(ev)
                continue
            frame = s.frame_for(ev, viewer, memo)
            if frame is not None:
                self._write(s, chunk(frame))

    def ping(self) -> None:
        """Write the keepalive comment to every stream not busy writing."""
        message = chunk(PING)
        for s in tuple(self._open):
            if s.backlog is None:
                self._write(s, message)

    def end(self, s: Stream) -> None:
        """End ``s`` cleanly (final chunk); its client reconnects at once."""
        if s.ended:
            return
        s.ended = True
        self._open.discard(s)
        if s.backlog is None:  # else its writer sends the final chunk after the backlog
            s.finished = True
            self._write(s, FINAL)

    def end_all(self, *, cut_stuck: bool = False) -> None:
        """End every open stream (server shutdown, or the store was reset); with
        ``cut_stuck``, cut those whose socket is full instead (a send waiting, or bytes held
        in user space), so a client that stopped reading cannot hold the server's exit:
        uvicorn waits for every connection to flush and close."""
        for s in tuple(self._open):
            if cut_stuck and (s.writer is not None or (s.conn is not None and s.conn.unsent())):
                self.abort(s)
            else:
                self.end(s)

    def abort(self, s: Stream) -> None:
        """Cut ``s`` without a final chunk: its connection cannot take one (a full backlog,
        a send that timed out or failed). The connection is reset where the server lets us
        reach it (``conn``): a graceful close would wait, with the fd and the unsent bytes
        pinned, for a client that does not read. Elsewhere its request task is ended and
        the server closes the connection."""
        s.ended = s.aborted = True
        self._open.discard(s)
        if s.writer is not None:
            s.writer.cancel()
        if s.conn is not None:
            s.conn.reset()  # the request task then sees http.disconnect and returns
        elif s.task is not None:
            s.task.cancel()

    def _cut_slow(self, s: Stream, why: str) -> None:
        """Cut a client that does not keep up, counted in ``maintcast_slow_clients_dropped``."""
        SLOW_CLIENTS_DROPPED.inc()
        log.warning("cut a slow SSE client: %s", why)
        self.abort(s)

    async def pump(self, s: Stream) -> None:
        """Write ``s``'s backlog until it is empty, then give writing back to the fan-out
        loop; or send the final chunk if ``s`` was ended meanwhile."""
        backlog = s.backlog
        assert backlog is not None
        while backlog:
            frame = s.frame_for(backlog.popleft(), self.viewer)
            if frame is not None:
                await s.send(chunk(frame))
        s.backlog = None  # no await since the loop saw it empty: nothing can slip past
        if s.ended and not s.finished:
            s.finished = True
            await s.send(FINAL)

    def _write(self, s: Stream, message: Message) -> None:
        """Run ``s.send(message)`` one step; a send that suspends is finished by a task."""
        # an ASGI server's send is a coroutine function (uvicorn's, and every middleware's)
        coro = cast(Coroutine[Any, Any, None], s.send(message))
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the server refused the message: the connection is gone
            log.warning("SSE send failed (%s); cutting the stream", exc)
            self.abort(s)
            return
        s.backlog = deque()
        s.writer = asyncio.create_task(self._finish(s, coro, waiting))

    async def _finish(self, s: Stream, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await _Resumed(coro, waiting)
                await self.pump(s)
        except TimeoutError:
            self._cut_slow(s, f"it took no data for {SEND_TIMEOUT_S:.0f} s")
        except asyncio.CancelledError:
            if not s.aborted:
                raise
        except Exception as exc:
            log.warning("SSE send failed (%s); cutting the stream", exc)
            self.abort(s)
        finally:
            s.writer = None

    async def keepalive(self, ping_s: float) -> None:
        """Forever: ping every ``ping_s`` seconds; end every stream once the server exits."""
        since_ping = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            if server_exiting():
                self.end_all(cut_stuck=True)
                continue
            since_ping += TICK_S
            if since_ping >= ping_s:
                since_ping = 0.0
                self.ping()


class _Resumed:
    """Awaitable that finishes a coroutine already run one step, which yielded ``waiting``.

    The delegation of ``yield from`` (PEP 380), starting after the first step: what the
    coroutine yields goes to the awaiting task, and what the task sends or throws in
    (a result, a cancellation) goes back to the coroutine.
    """

    __slots__ = ("coro", "waiting")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self.coro, self.waiting = coro, waiting

    def __await__(self) -> Generator[Any, Any, None]:
        coro, waiting = self.coro, self.waiting
        while True:
            try:
                sent = yield waiting
            except BaseException as exc:
                try:
                    waiting = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration:
                    return


def server_exiting() -> bool:
    """Whether the ASGI server is shutting down (see :func:`broadcaster.exiting.server_exiting`;
    imported here, on first use, so that importing this module does not import
    ``sse_starlette``)."""
    from broadcaster.exiting import server_exiting as exiting

    return exiting()
