"""Notification test support: a real webhook endpoint (an ASGI app served by uvicorn on a
loopback port that verifies every request with ``standardwebhooks.Webhook(secret).verify``
and answers from a plan: status codes, or hanging past the sender's timeout), a seeded
store, subscriptions and events (overrides); bounded waits are ``tests.support``'s."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from standardwebhooks import Webhook, WebhookVerificationError

from broadcaster import ops
from broadcaster.clock import Clock
from broadcaster.notify.messages import DeliveryConfig
from broadcaster.notify.subscriptions import SubscriptionIn, new_subscription
from broadcaster.store import Change, State, Store
from broadcaster.store.notify import NotifyStore
from tests.support import import_example, live_server, make_store
from worker.scheduler import Role, running_worker

FAST = DeliveryConfig(retry_s=(0.2, 0.2, 0.2), timeout_s=1.0, concurrency=8, user_agent="t/1")
"""Deliveries with quick retries, for tests."""

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


async def seeded(redis: Any, prefix: str, clock: Clock) -> Store:
    """A store over ``redis`` under ``prefix`` holding the example, imported now (seq 1)."""
    store = make_store(redis, prefix)
    await import_example(store, clock.now())
    return store


async def subscribe(store: Store, url: str, sub_id: str, now: datetime, **body: Any) -> str:
    """Add a webhook subscription; returns its secret."""
    secrets: list[str] = []

    def make(seq: int, catalog: Any) -> Any:
        sub, secret = new_subscription(
            SubscriptionIn(id=sub_id, kind="webhook", url=url, **body),
            catalog=catalog,
            now=now,
            seq=seq,
            actor="test",
            new_id=sub_id,
            allow_http=False,
        )
        assert secret is not None
        secrets.append(secret)
        return sub

    await NotifyStore.of(store).add_subscription(make)
    return secrets[-1]


async def override(
    store: Store, clock: Clock, mode: str = "maintenance", affected: Any = None
) -> int:
    """Set an override now; returns its seq."""
    now = clock.now()

    def change(st: State) -> Change:
        raw = {"mode": mode, "affected": affected, "reason": "incident 42"}
        ov, cause = ops.set_override(raw, catalog=st.catalog, now=now, actor="ops", max_s=86400)
        return Change(cause, override=ov, set_override=True)

    return int((await store.apply(now, change))[-1]["seq"])


async def clear(store: Store, clock: Clock) -> int:
    """Clear the override now; returns the seq of its event."""
    now = clock.now()

    def change(st: State) -> Change:
        return Change(ops.clear_override(st.override, {}, actor="ops"), set_override=True)

    return int((await store.apply(now, change))[-1]["seq"])


@contextlib.asynccontextmanager
async def delivering(
    store: Store, clock: Clock, config: DeliveryConfig = FAST, role: Role = "worker"
) -> AsyncIterator[None]:
    """A worker (or an API's standby) that delivers notifications, for the block."""
    async with running_worker(store, clock, role=role, notify=config):
        yield
