"""``GET /v1/status`` and ``GET /v1/stream`` as plain ASGI, ahead of FastAPI.

They are the two endpoints every checkout page and dashboard hits, so
:class:`broadcaster.app.MaintcastAPI` hands them here before FastAPI's own layers (its
telemetry check, middleware stack, router and dependency injection; docs/performance.md
measures the cost), wrapped only in CORS when configured. They answer from the hub's
memory. Errors keep the JSON shape of docs/api.md and are answered from the one table of
:mod:`broadcaster.errors` (a store error is 503 ``store_unavailable``, as on every route).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.types import Receive, Scope, Send

from broadcaster import codec
from broadcaster.errors import HANDLED, answer_for
from broadcaster.events import Event
from broadcaster.hub import Hub
from broadcaster.hygiene import bodiless
from broadcaster.limits import StreamCaps
from broadcaster.sse import ALL, SEND_TIMEOUT_S, Stream, chunk
from broadcaster.store import STORE_ERRORS, Store

log = logging.getLogger(__name__)

STREAM_PATH = "/v1/stream"
PATHS = frozenset({"/v1/status", STREAM_PATH})
"""The paths :class:`LiveRoutes` serves."""
SERVER_SEND = "maintcast.server_send"
"""Scope key of the ASGI server's own ``send`` (before any middleware wraps it)."""
STALL_S = 30.0
"""A stream's socket is dropped by the kernel after this many seconds without progress
(``TCP_USER_TIMEOUT``): a client that stopped reading, or vanished without a FIN."""
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)  # Linux value where not exported
LINGER_RESET = struct.pack("ii", 1, 0)
"""``struct linger {l_onoff = 1, l_linger = 0}``: close() sends a reset."""
MAX_SEQ_DIGITS = 18
"""A Last-Event-ID longer than this cannot be a seq we sent (a stream id part is 64-bit)."""
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream (docs/api.md "Built")
]
RawHeaders = list[tuple[bytes, bytes]]
RESYNC = {"type": "resync", "window_id": None, "actor": None, "reason": None}


def error_response(code: str, message: str, field: str | None = None) -> tuple[RawHeaders, bytes]:
    """Headers and body of the docs/api.md error shape (:func:`codec.error_doc`)."""
    body = codec.dumps(codec.error_doc(code, message, field))
    return [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ], body


class LiveRoutes:
    """ASGI app serving ``/v1/status`` and ``/v1/stream`` (GET, HEAD) from ``hub``
    (HTTP requests for :data:`PATHS` only); ``retry_ms`` opens every stream (the client's
    reconnection delay); ``streams_per_client`` caps the streams one client address holds
    open (429 past it; 0: no cap, :mod:`broadcaster.limits`)."""

    def __init__(
        self, *, hub: Hub, store: Store, retry_ms: int, streams_per_client: int = 0
    ) -> None:
        self.hub, self.store = hub, store
        self.retry = codec.retry_frame(retry_ms)
        self.caps = StreamCaps(streams_per_client)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.stream if scope["path"] == STREAM_PATH else self.status
        await self._route(handler, scope, receive, send)

    async def _route(self, handler: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            headers, body = error_response("method_not_allowed", "Method Not Allowed")
            headers.append((b"allow", b"GET, HEAD"))
            await _respond(send, 405, headers, body)
            return
        if scope["method"] == "HEAD":  # the GET's status and headers, no body (RFC 9110 9.3.2)
            send = bodiless(send)
        query = QueryParams(scope["query_string"])
        view = (query.get("service"), query.get("method"))
        try:
            self.hub.catalog.components_in(*view)
            await handler(scope, receive, send, view, query)
        except HANDLED as exc:  # before any response started: the stream's start is last
            answer = answer_for(exc, f"{scope['method']} {scope['path']}")
            assert answer is not None  # HANDLED is the table's keys
            body = answer.body()
            await _respond(send, answer.status, answer.raw_headers(body), body)

    async def status(
        self, scope: Scope, receive: Receive, send: Send, view: codec.View, query: Any
    ) -> None:
        """The status (or its ``view``) with ``ETag: "<seq>"``; 304 on a match."""
        hub = self.hub
        ev = await hub.snapshot()
        etag = b'"%d"' % ev.seq
        tags = ", ".join(Headers(scope=scope).getlist("if-none-match"))  # RFC 9110 5.3
        if not hub.stale and etag_matches(tags, etag):
            await _respond(send, 304, [(b"etag", etag)], b"")
            return
        if hub.stale:
            body = codec.dumps({**ev.view(view, hub.view_of)[0], "stale": True})
        else:
            body = ev.json(view, hub.view_of)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"etag", etag),
        ]
        await _respond(send, 200, headers, body)

    async def stream(
        self, scope: Scope, receive: Receive, send: Send, view: codec.View, query: Any
    ) -> None:
        """One SSE stream (WHATWG HTML "Server-sent events", docs/api.md "Built"): ``retry:``,
        then the status or the replay after ``Last-Event-ID``, then every change. The
        request's task then only waits for the client to leave. ``HEAD`` gets the headers
        only: no stream is opened or counted."""
        if scope["method"] == "HEAD":
            await _respond(send, 200, list(HEADERS), b"")
            return
        resume = Headers(scope=scope).get("last-event-id", query.get("last_event_id"))
        streams = self.hub.streams
        client = self.caps.acquire(scope)  # TooManyStreams (429) past the client's cap
        s = Stream(send, view, asyncio.current_task(), conn_of(scope))
        streams.join(s)  # before the snapshot is read: no event falls in between
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S) as opening_time:
                opening = await self._opening(s, resume)
                await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
                await send(chunk(opening))
                await streams.pump(s)  # what arrived meanwhile; then the fan-out loop writes
            while (await receive())["type"] != "http.disconnect":
                pass
        except TimeoutError:
            if not opening_time.expired():  # the store's own timeout: a store error (503)
                raise
            # the opening did not get out in time: the server cuts it
            log.warning("SSE stream not opened within %.0f s; closing it", SEND_TIMEOUT_S)
        except asyncio.CancelledError:
            if not s.aborted:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            streams.leave(s)
            self.caps.release(client)

    async def _opening(self, s: Stream, resume: str | None) -> bytes:
        """``retry:`` and the first frames: the replay after ``resume``, or the status (a
        ``resync`` when ``resume`` cannot be served). Sets ``s.seq`` and ``s.last_doc``."""
        hub = self.hub
        frames = [self.retry]
        replay = await self._replay(resume, partial=s.view != ALL)
        if replay is None:
            ev = await hub.snapshot()
            doc, frame = ev.view(s.view, hub.view_of)
            if resume is not None or hub.stale:
                doc = {**doc, "stale": hub.stale}
                if resume is not None:
                    doc["cause"] = RESYNC
                frame = codec.sse_frame(ev.seq, codec.dumps(doc))
            frames.append(frame)
            s.seq, s.last_doc = ev.seq, doc
        else:
            seen, events = replay
            s.seq = int(resume or 0)
            if s.view != ALL and seen is not None:
                s.last_doc = seen.view(s.view, hub.view_of)[0]  # what the client has
            for ev in events:
                if (replayed := s.frame_for(ev, hub.view_of)) is not None:
                    frames.append(replayed)
        return b"".join(frames)

    async def _replay(
        self, resume: str | None, *, partial: bool
    ) -> tuple[Event | None, list[Event]] | None:
        """The event at ``resume`` when known (a ``partial`` stream, of a service [+ method],
        needs the status its client holds) and the events after it: from memory when it
        holds them, else from the store's log; None when a snapshot (or resync) is due."""
        if resume is None:
            return None
        resume = resume.strip()
        if not (resume.isascii() and resume.isdigit()) or len(resume) > MAX_SEQ_DIGITS:
            return None  # not a seq we could have sent: resync
        after = int(resume)
        if self.hub.rewritten(after):
            return None  # the client holds a status the store lost: resync
        recent, seen = self.hub.recent_after(after), self.hub.event_at(after)
        if recent is not None and (seen is not None or not partial or after == 0):
            return seen, recent
        try:
            if partial and after > 0:  # one more from the log: the event the client holds
                got = await self.store.replay(after - 1)
                if got:
                    seen = Event(codec.loads(got[0]), got[0])
                    if seen.seq == after:
                        return seen, [Event(codec.loads(p), p) for p in got[1:]]
            payloads = await self.store.replay(after)
        except STORE_ERRORS:  # the log cannot be read now: a resync from memory instead
            return None
        if payloads is None:
            return None
        return None, [Event(codec.loads(p), p) for p in payloads]


def etag_matches(if_none_match: str | None, etag: bytes) -> bool:
    """Whether ``If-None-Match`` matches ``etag`` (RFC 9110 13.1.2: ``*`` or a list of
    entity tags, compared weakly, so ``W/"7"`` matches ``"7"``)."""
    if not if_none_match:
        return False
    tag = etag.decode()
    for given in if_none_match.split(","):
        given = given.strip()
        if given == "*" or given.removeprefix("W/") == tag:
            return True
    return False


class Socket:
    """The connection under a stream, reached through uvicorn's transport (see
    :func:`conn_of`). Opening a stream sets ``TCP_USER_TIMEOUT`` (tcp(7)) on its socket,
    so the kernel itself drops a client whose window stays shut (it stopped reading) or
    who stops acknowledging (it vanished) for :data:`STALL_S` seconds: that needs no work
    here and catches a stuck client even when too few events flow to fill the buffers the
    fan-out loop watches."""

    __slots__ = ("transport",)

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, int(STALL_S * 1000))

    def reset(self) -> None:
        """``SO_LINGER`` 0 makes the close a reset (socket(7)): the kernel drops the unsent
        bytes at once instead of keeping an orphaned socket probing a client that does not
        read."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        self.transport.abort()

    def unsent(self) -> int:
        """Bytes uvicorn's transport holds because the socket buffer is full."""
        return int(self.transport.get_write_buffer_size())


def conn_of(scope: Scope) -> Socket | None:
    """This request's connection, or None under a server that does not expose it (a cut
    stream is then ended through its request task).

    The transport is found through the server's own ``send`` that
    :class:`broadcaster.app.MaintcastAPI` puts in the scope: uvicorn's send is a method of
    its request cycle, which holds it.
    """
    # popped: uvicorn's cycle holds the scope, so a scope holding the cycle's send would be
    # a reference cycle per stream, which the frozen heap (sse.freeze_heap) never frees
    cycle = getattr(scope.pop(SERVER_SEND, None), "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not callable(getattr(transport, "abort", None)):
        return None
    return Socket(transport)


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
