"""A real webhook endpoint for tests: an ASGI app served by uvicorn on a loopback port that
verifies every request with ``standardwebhooks.Webhook(secret).verify`` and answers from a
plan (status codes, or hanging past the sender's timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from standardwebhooks import Webhook, WebhookVerificationError

from tests.conftest import live_server

HANG = -1
"""A planned answer: do not answer until the test ends (the sender times out)."""


@dataclass
class Received:
    """One request: its path, headers (lower-case names), body, the parsed JSON, which of
    the path's secrets verified it (indexes), the status answered, when (Unix s)."""

    path: str
    headers: dict[str, str]
    body: bytes
    doc: Any
    verified_by: list[int]
    status: int
    at: float

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """Endpoints ``/<name>``, each with the secrets its requests must verify against
    (every request must verify with at least one; ``verified_by`` says which)."""

    secrets: dict[str, list[str]] = field(default_factory=dict)
    plans: dict[str, deque[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    unverified: list[tuple[str, str]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def plan(self, name: str, *answers: int) -> None:
        """Answer the next requests to ``/<name>`` with these (then 204)."""
        self.plans.setdefault(name, deque()).extend(answers)

    def of(self, name: str) -> list[Received]:
        """Requests to ``/<name>`` that were verified, in arrival order."""
        return [r for r in self.received if r.path == f"/{name}"]

    def ok(self, name: str) -> list[Received]:
        """Requests to ``/<name>`` answered 2xx."""
        return [r for r in self.of(name) if 200 <= r.status < 300]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        name = scope["path"].lstrip("/")
        verified = []
        for i, secret in enumerate(self.secrets.get(name, [])):
            with contextlib.suppress(WebhookVerificationError):
                Webhook(secret).verify(body, headers)
                verified.append(i)
        if not verified:
            self.unverified.append((scope["path"], body.decode(errors="replace")))
            await _answer(send, 400)
            return
        plan = self.plans.get(name)
        status = plan.popleft() if plan else 204
        self.received.append(
            Received(
                scope["path"], headers, body, orjson.loads(body), verified, status, time.time()
            )
        )
        if status == HANG:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), 60)
            status = 503  # long after the sender gave up
        await _answer(send, status)


async def _answer(send: Any, status: int) -> None:
    headers = [(b"content-length", b"0")]
    if 300 <= status < 400:
        headers.append((b"location", b"/redirected"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serving(receiver: Receiver, port: int = 0) -> AsyncIterator[str]:
    """Serve ``receiver`` on ``port`` (default: ephemeral); yields the base URL."""
    receiver.released = asyncio.Event()
    async with live_server(receiver, port) as base:
        try:
            yield base
        finally:
            receiver.released.set()  # hanging requests end before the server stops


async def eventually(
    check: Callable[[], bool], within_s: float, what: str, detail: Callable[[], Any] = str
) -> None:
    """Wait until ``check()`` holds, polling; fail naming ``what`` after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}; {detail()}"
        await asyncio.sleep(0.02)
