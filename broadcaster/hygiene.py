"""HTTP hygiene for every request and response of the app, in one place (issue 12, items 4
and 5). :class:`broadcaster.app.MaintcastAPI` applies it ahead of everything else:

- every response carries ``X-Content-Type-Options: nosniff`` (JSON, iCalendar, pages,
  static files, errors, the live routes, CORS preflights): :func:`nosniff`;
- an answer started before the request's body was received whole (a 401, 405 or 413
  refusing it unread) carries ``Connection: close``: the server then closes the connection
  after the answer instead of reading and discarding the rest of a body that may never end
  (uvicorn drains it to keep the connection alive): :func:`framed`;
- ``HEAD`` is answered as ``GET`` without the body (RFC 9110 9.3.2: same status and
  headers), for every route FastAPI serves: :func:`guarded`. The live routes answer
  ``HEAD`` themselves (``HEAD /v1/stream`` must not open a stream);
- a request body is bounded before anything reads it: a ``Content-Length`` over
  :data:`broadcaster.limits.MAX_BODY_BYTES`, or more bytes streamed (chunked), makes the
  next ``receive()`` raise :class:`broadcaster.limits.BodyTooLarge` (413): :func:`guarded`.

Plain ASGI, no FastAPI import.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import Message, Receive, Scope, Send

from broadcaster.limits import MAX_BODY_BYTES, BodyTooLarge

NOSNIFF = (b"x-content-type-options", b"nosniff")


CLOSE = (b"connection", b"close")


class _Body:
    """Whether a request's body was received whole (``done``)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


class _Nosniff:
    """A ``send`` adding :data:`NOSNIFF` to the response start, and :data:`CLOSE` when the
    request's ``body`` is not received whole by then. It returns the wrapped ``send``'s own
    awaitable (no coroutine of its own): every SSE frame passes here, and
    :mod:`broadcaster.sse` drives the server's send coroutine one step by hand."""

    __slots__ = ("body", "send")

    def __init__(self, send: Send, body: _Body | None = None) -> None:
        self.send = send
        self.body = body

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if all(k.lower() != NOSNIFF[0] for k, _ in headers):
                headers.append(NOSNIFF)
            if self.body is not None and not self.body.done:
                headers.append(CLOSE)
            message = {**message, "headers": headers}
        return self.send(message)


def nosniff(send: Send) -> Send:
    """``send`` with ``X-Content-Type-Options: nosniff`` on the response (kept if set)."""
    return _Nosniff(send)


def has_body(scope: Scope) -> bool:
    """Whether the request announces a body (``Transfer-Encoding``, or a ``Content-Length``
    other than 0)."""
    for key, value in scope["headers"]:
        if key == b"transfer-encoding":
            return True
        if key == b"content-length" and value.strip() not in (b"", b"0"):
            return True
    return False


def framed(scope: Scope, receive: Receive, send: Send) -> tuple[Receive, Send]:
    """``receive`` and ``send`` of every HTTP request: the answer carries ``nosniff``
    (:func:`nosniff`) and, when the request announces a body that ``receive`` has not
    returned whole (its last ``http.request`` message, or a disconnect) by the time the
    answer starts, ``Connection: close``. A request without a body keeps the server's
    ``receive``."""
    if not has_body(scope):
        return receive, _Nosniff(send)
    body = _Body()

    async def receive_counted() -> Message:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            body.done = True
        return message

    return receive_counted, _Nosniff(send, body)


def bodiless(send: Send) -> Send:
    """``send`` that drops the body bytes, for a ``HEAD`` answered as ``GET`` (the headers,
    ``Content-Length`` included, are the ``GET``'s)."""

    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return send_head


def bounded(scope: Scope, receive: Receive, limit: int = MAX_BODY_BYTES) -> Receive:
    """``receive`` that raises :class:`BodyTooLarge` instead of returning a body larger
    than ``limit`` bytes: at once when the ``Content-Length`` says so, else as soon as the
    streamed chunks add up past it. Nothing past the bound is buffered."""
    declared = next((v for k, v in scope["headers"] if k.lower() == b"content-length"), b"")
    too_large = declared.strip().isdigit() and int(declared) > limit
    received = 0

    async def receive_bounded() -> Message:
        nonlocal received
        if too_large:
            raise BodyTooLarge(limit)
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_bounded


def guarded(scope: Scope, receive: Receive, send: Send) -> tuple[Scope, Receive, Send]:
    """The request as the FastAPI side gets it: ``HEAD`` as ``GET`` answering no body (a
    new scope: the server's own keeps ``HEAD``), the body bounded by :func:`bounded`."""
    if scope["method"] == "HEAD":
        scope, send = {**scope, "method": "GET"}, bodiless(send)
    return scope, bounded(scope, receive), send
