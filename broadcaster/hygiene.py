"""HTTP hygiene for every request and response of the app, in one place (issue 12, items 4
and 5). :class:`broadcaster.app.MaintcastAPI` applies it ahead of everything else:

- every response carries ``X-Content-Type-Options: nosniff`` (JSON, iCalendar, pages,
  static files, errors, the live routes, CORS preflights): :func:`nosniff`;
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


class _Nosniff:
    """A ``send`` adding :data:`NOSNIFF` to the response start. It returns the wrapped
    ``send``'s own awaitable (no coroutine of its own): every SSE frame passes here, and
    :mod:`broadcaster.sse` drives the server's send coroutine one step by hand."""

    __slots__ = ("send",)

    def __init__(self, send: Send) -> None:
        self.send = send

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if all(k.lower() != NOSNIFF[0] for k, _ in headers):
                headers.append(NOSNIFF)
            message = {**message, "headers": headers}
        return self.send(message)


def nosniff(send: Send) -> Send:
    """``send`` with ``X-Content-Type-Options: nosniff`` on the response (kept if set)."""
    return _Nosniff(send)


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


HEAD_KEY = "maintcast.head"
"""Set (True) in the scope of a ``HEAD`` answered as ``GET``: a ``GET`` with a side effect
(the confirmation link) must not act on it, since link checkers and mail scanners send
``HEAD``."""


def guarded(scope: Scope, receive: Receive, send: Send) -> tuple[Scope, Receive, Send]:
    """The request as the FastAPI side gets it: ``HEAD`` as ``GET`` answering no body (a
    new scope: the server's own keeps ``HEAD``), the body bounded by :func:`bounded`."""
    if scope["method"] == "HEAD":
        scope, send = {**scope, "method": "GET", HEAD_KEY: True}, bodiless(send)
    return scope, bounded(scope, receive), send
