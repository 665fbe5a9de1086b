"""One webhook attempt against a real HTTP endpoint: Standard Webhooks headers that the
reference library verifies, two signatures while a rotated secret signs, and what each
failure (500, 410, a redirect, a refused connection, a timeout) becomes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from standardwebhooks import Webhook

from broadcaster.notify.messages import Message, body_of
from broadcaster.notify.subscriptions import Secret, Subscription, new_secret
from broadcaster.notify.webhook import WebhookSender, headers_for
from tests.notify_support import HANG, Receiver, serving
from tests.support import free_port, jst

KEY = new_secret()


def subscription(url: str, *secrets: str) -> Subscription:
    return Subscription(
        id="acme",
        kind="webhook",
        url=url,
        created_at=jst(2021, 6, 1),
        created_seq=0,
        actor="boss",
        secrets=tuple(
            Secret(value=s, expires_s=None if i == 0 else time.time() + 60)
            for i, s in enumerate(secrets or (KEY,))
        ),
    )


MESSAGE = Message(
    id="msg_7",
    kind="webhook",
    type="maintenance.started",
    seq=7,
    body=body_of("maintenance.started", "2021-08-09T01:00:00+09:00", {"seq": 7, "note": "日本語"}),
    queued_s=0.0,
)


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    s = WebhookSender(timeout_s=1.0, user_agent="Maintcast/9.9")
    try:
        yield s
    finally:
        await s.aclose()


async def test_a_delivery_carries_verifiable_standard_webhooks_headers(
    sender: WebhookSender,
) -> None:
    rx = Receiver(secrets={"h": [KEY]})
    async with serving(rx) as base:
        outcome = await sender.send(subscription(f"{base}/h"), MESSAGE, time.time())
    assert (outcome.result, outcome.status_code, outcome.error) == ("delivered", 204, None)
    [got] = rx.of("h")
    assert rx.unverified == []
    assert got.id == "msg_7"
    assert got.headers["user-agent"] == "Maintcast/9.9"
    assert got.headers["content-type"] == "application/json"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 5
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.body.decode() == MESSAGE.body
    assert Webhook(KEY).verify(got.body, got.headers)["data"]["note"] == "日本語"


async def test_two_secrets_sign_twice_and_each_verifies(sender: WebhookSender) -> None:
    new, old = new_secret(), new_secret()
    rx = Receiver(secrets={"h": [new, old]})
    async with serving(rx) as base:
        outcome = await sender.send(subscription(f"{base}/h", new, old), MESSAGE, time.time())
    assert outcome.result == "delivered"
    [got] = rx.of("h")
    assert got.verified_by == [0, 1]  # either secret alone verifies the request
    assert len(got.headers["webhook-signature"].split(" ")) == 2


@pytest.mark.parametrize(
    ("answer", "result"),
    [(200, "delivered"), (202, "delivered"), (500, "retry"), (404, "retry"), (410, "gone")],
)
async def test_status_codes(sender: WebhookSender, answer: int, result: str) -> None:
    rx = Receiver(secrets={"h": [KEY]})
    rx.plan("h", answer)
    async with serving(rx) as base:
        outcome = await sender.send(subscription(f"{base}/h"), MESSAGE, time.time())
    assert (outcome.result, outcome.status_code) == (result, answer)


async def test_a_redirect_is_not_followed(sender: WebhookSender) -> None:
    rx = Receiver(secrets={"h": [KEY], "redirected": [KEY]})
    rx.plan("h", 307)
    async with serving(rx) as base:
        outcome = await sender.send(subscription(f"{base}/h"), MESSAGE, time.time())
    assert (outcome.result, outcome.status_code) == ("retry", 307)
    assert rx.of("redirected") == []
    assert rx.unverified == []


async def test_a_refused_connection_is_retried(sender: WebhookSender) -> None:
    url = f"http://127.0.0.1:{free_port()}/h"
    outcome = await sender.send(subscription(url), MESSAGE, time.time())
    assert outcome.result == "retry"
    assert outcome.status_code is None
    assert outcome.error is not None
    assert outcome.error.startswith("cannot connect")


async def test_a_hanging_endpoint_times_out(sender: WebhookSender) -> None:
    rx = Receiver(secrets={"h": [KEY]})
    rx.plan("h", HANG)
    async with serving(rx) as base:
        started = time.monotonic()
        outcome = await sender.send(subscription(f"{base}/h"), MESSAGE, time.time())
        took = time.monotonic() - started
    assert (outcome.result, outcome.error) == ("retry", "timeout after 1 s")
    assert 0.9 < took < 3.0


def test_the_header_signs_what_the_reference_library_expects() -> None:
    now = time.time()
    headers: dict[str, Any] = headers_for(MESSAGE, [KEY], now, "Maintcast/1")
    assert Webhook(KEY).verify(MESSAGE.body, headers)["type"] == "maintenance.started"
    assert headers["webhook-timestamp"] == str(int(now))
