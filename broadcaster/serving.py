"""How ``maintcast serve`` and ``maintcast api`` run uvicorn: proxy trust and request-head
and body limits (docs/security.md). Imported only by the CLI, which owns uvicorn.

uvicorn bounds neither the size of a request head nor the time a client may take to send
it when it parses with httptools (what ``uvicorn[standard]`` picks): its
``h11_max_incomplete_event_size`` applies to the h11 parser only, ``timeout_keep_alive`` is
cancelled by the first byte of the next request, and a request-start timeout was planned
but never built (encode/uvicorn#157). A 32 MB header got an answer, and a connection that
sent half a request head stayed open until the client left. :class:`HeadGuard` adds both,
and more, to uvicorn's own httptools protocol:

- the head (request line and headers) may be at most ``MAINTCAST_MAX_HEADER_BYTES``:
  past it the client gets ``431`` and the connection is closed, without reading the rest;
- a connection must deliver a complete head within ``MAINTCAST_HEADER_TIMEOUT_S`` of
  being accepted, and each later head on a kept-alive connection within as long of its
  first byte (the idle time between requests stays uvicorn's ``timeout_keep_alive``): a
  late head gets ``408``, a connection that sent nothing is closed silently;
- a request body that sends nothing for ``MAINTCAST_BODY_TIMEOUT_S``, or is not whole
  within :data:`BODY_WHOLE_FACTOR` times as long (a drip of one byte every few seconds;
  uvicorn has no body timeout at all), gets ``408`` and the connection is closed (closed
  without an answer when one was begun). Time while uvicorn itself stopped reading (the
  app has not taken what came) or while the client waits for ``100 Continue`` does not
  count;
- an answer the app gives before the request's body arrived whole (a 401, 405 or 413
  refusing it unread) says ``Connection: close``, and the connection is closed after it:
  uvicorn would read and drop the rest of the body to keep the connection alive, however
  long it is (6.8 GB of a chunked body in 3 s). Closing at once would reset the connection
  while the client still sends, and a client that reads only after sending (httpx,
  requests) would lose the answer; so the rest is read and dropped for at most
  :data:`LINGER_S` and :data:`LINGER_BYTES` (nginx's lingering close), then closed;
- every answer made here, before the app runs (the ``408``s, the ``431`` and uvicorn's
  ``400`` for a malformed request), carries ``X-Content-Type-Options: nosniff`` and
  ``Connection: close``, like the app's own answers (:mod:`broadcaster.hygiene`).

Once the head and the body are complete nothing here runs any more (but the ``close()``
of a request with a body, :class:`_Transport`): a stream's long life is untouched.
The class is found by uvicorn's worker processes by its import path; its limits are
module state set by :func:`configure`, which ``uvicorn_options`` and the API factory call
(each worker process builds the app from the same environment).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from broadcaster.settings import Settings

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0
"""At most one log line per kind of refusal this often (a slowloris makes thousands)."""
LINGER_S = 2.0
"""Longest time the rest of a request body is read and dropped after its early answer."""
BODY_WHOLE_FACTOR = 6
"""A request body must be whole within this many ``MAINTCAST_BODY_TIMEOUT_S`` of its head
(60 s by default: 256 KiB, the largest body, then needs 4.4 KB/s), however steadily it
drips."""
LINGER_BYTES = 4 * 2**20
"""Most bytes of it read and dropped (16 times the body bound): then the connection is
closed, reset if the client still sends."""


@dataclass(frozen=True)
class HeadLimits:
    """``max_bytes``: the largest request head read; ``timeout_s``: seconds to send it;
    ``body_timeout_s``: seconds a request body may send nothing."""

    max_bytes: int = 65_536
    timeout_s: float = 10.0
    body_timeout_s: float = 10.0


_limits = HeadLimits()
_logged: dict[str, tuple[float, int]] = {}  # kind -> (last line, suppressed since)


def configure(settings: Settings) -> HeadLimits:
    """Take the head limits of this process from ``settings``; returns them."""
    global _limits
    _limits = HeadLimits(
        settings.max_header_bytes, settings.header_timeout_s, settings.body_timeout_s
    )
    return _limits


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.run`` keywords for the API: :class:`HeadGuard` as the HTTP protocol and
    the proxies whose ``X-Forwarded-For``/``-Proto`` are believed
    (``MAINTCAST_FORWARDED_ALLOW_IPS``; uvicorn's own ``FORWARDED_ALLOW_IPS`` is not read)."""
    configure(settings)
    if "FORWARDED_ALLOW_IPS" in os.environ and "MAINTCAST_FORWARDED_ALLOW_IPS" not in os.environ:
        log.warning(
            "FORWARDED_ALLOW_IPS is ignored: set MAINTCAST_FORWARDED_ALLOW_IPS (now %s)",
            settings.forwarded_allow_ips,
        )
    anyone = {"*", "0.0.0.0/0", "::/0"}  # every address, as uvicorn reads them
    if anyone & {p.strip() for p in settings.forwarded_allow_ips.split(",")}:
        log.warning(
            "MAINTCAST_FORWARDED_ALLOW_IPS trusts every address: any client can name its own "
            "address (X-Forwarded-For) and so escape MAINTCAST_STREAMS_PER_CLIENT and forge the "
            "address in the logs; list the proxies' addresses instead"
        )
    return {
        "http": HeadGuard,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        # the same bound for whoever runs the app with uvicorn's h11 parser instead
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }


class HeadTooLarge(Exception):
    """Raised inside the parser's callback to stop it (the request is answered 431)."""


class _Transport:
    """The transport as the request cycle of a request with a body holds it: every call goes
    to the real one but ``close()``, which :meth:`HeadGuard.close_transport` decides (it
    lingers while a refused body is still coming). Requests without a body (streams) keep
    the real transport."""

    __slots__ = ("_cycle", "_guard", "_real")

    def __init__(self, real: asyncio.Transport, guard: HeadGuard, cycle: Any) -> None:
        self._real = real
        self._guard = guard
        self._cycle = cycle

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def close(self) -> None:
        self._guard.close_transport(self._real, self._cycle)


class HeadGuard(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head's size, a deadline to
    receive it, a timeout on a request body that stops coming, and a short lingering close
    after an answer given while the body was still coming (module docstring). The head
    timer runs only while a head is being read (``_head_bytes`` counts what arrived of it),
    the body timer only while a body is (``_body_at``: the loop time of its last bytes)."""

    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _body_timer: asyncio.TimerHandle | None = None
    _body_at = 0.0
    _body_began = 0.0  # the loop time its head was complete (moved on while not reading)
    _keep_alive_held = False  # the cycle's keep-alive is withheld until its body is whole
    _linger: asyncio.TimerHandle | None = None
    _lingered = -1  # bytes dropped after an early answer; -1: not lingering
    _refused = 0  # the status this connection was refused with (431, 408), else 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_body()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingered >= 0:
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self.transport.close()
            return
        if self._refused:
            return
        super().data_received(data)  # the parser's callbacks below run inside
        if self._head_timer is not None and not self._refused:  # still inside a head
            # counts the whole read, also the tail of a pipelined request before it
            self._head_bytes += len(data)
            if self._head_bytes > _limits.max_bytes:
                self._refuse(431, b"Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        if size > _limits.max_bytes:
            self._refuse(431, b"Request Header Fields Too Large")
            raise HeadTooLarge  # stops the parser; uvicorn then calls send_400_response
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is before or not any(
            k == b"transfer-encoding" or (k == b"content-length" and v.strip() != b"0")
            for k, v in self.headers
        ):
            return  # no new request (an upgrade), or one without a body
        self._disarm_body()
        self._body_at = self._body_began = self.loop.time()
        self._body_timer = self.loop.call_later(_limits.body_timeout_s, self._body_late)
        # an answer begun before the body is whole says "Connection: close" and the
        # connection closes after it (uvicorn's own handling of keep_alive False)
        self._keep_alive_held = cycle.keep_alive
        cycle.keep_alive = False
        cycle.transport = cast(asyncio.Transport, _Transport(cycle.transport, self, cycle))

    def on_body(self, body: bytes) -> None:
        self._body_at = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm_body()
        cycle = self.cycle
        if self._keep_alive_held and cycle is not None and not cycle.response_started:
            cycle.keep_alive = True  # the body is whole before any answer: kept alive
        self._keep_alive_held = False
        super().on_message_complete()

    def shutdown(self) -> None:
        self._keep_alive_held = False  # the server stops: no keep-alive given back
        super().shutdown()

    def close_transport(self, real: asyncio.Transport, cycle: Any) -> None:
        """Close the connection for the request ``cycle`` (its ``transport.close()``,
        :class:`_Transport`). After an answer given before the request's body was whole,
        with that body still coming, first linger: send FIN, then read and drop what
        arrives until the client closes, or for :data:`LINGER_S` or :data:`LINGER_BYTES`
        (module docstring)."""
        if (
            self._lingered >= 0
            or self._refused
            or real.is_closing()
            or not (cycle.response_complete and cycle.more_body)
            or not real.can_write_eof()
        ):
            real.close()
            return
        self._lingered = 0
        self._disarm()
        self._disarm_body()
        real.write_eof()  # the answer is all there is: the client reads it, then EOF
        self.flow.resume_reading()
        self._linger = self.loop.call_later(LINGER_S, real.close)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, with ``nosniff``."""
        if self._refused:  # already answered (our HeadTooLarge reached uvicorn's handler)
            return
        self._refused = 400
        self._answer(400, msg.encode("ascii"))

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(_limits.timeout_s, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        limit = _limits.timeout_s
        busy = self.cycle is not None and not self.cycle.response_complete
        if self._head_bytes == 0 or busy:
            # nothing sent (or a response is being written): close without answering
            _note("idle", self.client, f"no request within {limit:g} s")
            self._refused = 408
            self.transport.close()
            return
        self._refuse(408, b"Request Timeout", f"request head not complete within {limit:g} s")

    def _disarm_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_late(self) -> None:
        """The body timer fired: answer 408 (or close) when the body sent nothing for the
        whole timeout, else wait for the rest of it."""
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body:
            return
        now, limit = self.loop.time(), _limits.body_timeout_s
        whole = BODY_WHOLE_FACTOR * limit
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            # the server is not reading, or the client waits for it: neither clock runs
            self._body_at = now
            self._body_began = max(self._body_began, now + limit - whole)
        idle_at, whole_at = self._body_at + limit, self._body_began + whole
        if now < min(idle_at, whole_at):
            self._body_timer = self.loop.call_later(min(idle_at, whole_at) - now, self._body_late)
            return
        why = (
            f"request body sent nothing for {limit:g} s"
            if now >= idle_at
            else f"request body not whole within {whole:g} s"
        )
        if cycle.response_started:
            _note("body", self.client, why)
            self._refused = 408
            self.transport.close()
            return
        self._refuse(408, b"Request Timeout", why)

    def _refuse(self, status: int, reason: bytes, why: str = "") -> None:
        """Answer ``status`` (plain text, ``Connection: close``) and close: nothing more
        is read from this connection."""
        self._refused = status
        self._disarm()
        self._disarm_body()
        _note(str(status), self.client, why or f"request head over {_limits.max_bytes} bytes")
        self._answer(status, reason)

    def _answer(self, status: int, text: bytes) -> None:
        """Write a plain-text answer with uvicorn's default headers (``server``, ``date``),
        ``nosniff`` and ``Connection: close``, and close the connection."""
        defaults = b"".join(b"%s: %s\r\n" % kv for kv in self.server_state.default_headers)
        self.transport.write(
            STATUS_LINE[status] + defaults + b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nx-content-type-options: nosniff\r\n"
            b"connection: close\r\n\r\n%s" % (len(text), text)
        )
        self.transport.close()


def _note(kind: str, client: tuple[str, int] | None, why: str) -> None:
    """One WARNING per ``kind`` per :data:`LOG_EVERY_S`, saying how many were not logged."""
    now = time.monotonic()
    last, suppressed = _logged.get(kind, (-math.inf, 0))
    if now - last < LOG_EVERY_S:
        _logged[kind] = (last, suppressed + 1)
        return
    _logged[kind] = (now, 0)
    who = client[0] if client else "a client"
    more = f"; {suppressed} more since the last line" if suppressed else ""
    log.warning("closed a connection from %s: %s%s", who, why, more)
