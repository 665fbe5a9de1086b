"""Webhook delivery per Standard Webhooks 1.0: the only ``standardwebhooks`` user and the
server's only ``httpx`` user.

Each attempt POSTs the message's body with ``webhook-id`` (the message id: stable across
retries), ``webhook-timestamp`` (Unix seconds of the attempt, real time: receivers check
it against their own clock, 5 minutes' tolerance in the reference libraries) and
``webhook-signature`` (``v1,<base64>`` per signing secret, space-separated while a rotated
secret still signs). Signatures come from ``standardwebhooks.Webhook.sign``, not from a
hand-rolled HMAC framing. Redirects are not followed (a 3xx is a failed attempt), the
response body is not read.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from broadcaster.notify.messages import Message, Outcome
from broadcaster.notify.subscriptions import Subscription

log = logging.getLogger(__name__)


def signature_header(secrets: list[str], msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value: ``v1,<sig>`` for each secret, space-separated."""
    at = datetime.fromtimestamp(timestamp, UTC)
    return " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)


def headers_for(msg: Message, secrets: list[str], now_s: float, user_agent: str) -> dict[str, str]:
    """The request headers of one attempt at Unix time ``now_s``."""
    timestamp = int(now_s)
    return {
        "content-type": "application/json",
        "user-agent": user_agent,
        "webhook-id": msg.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg.id, timestamp, msg.body),
    }


class WebhookSender:
    """Sends webhook messages over one pooled ``httpx.AsyncClient``.

    ``timeout_s`` bounds each attempt as a whole (connect, send, wait for the status line).
    """

    def __init__(self, *, timeout_s: float, user_agent: str) -> None:
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            trust_env=False,  # no proxy from the environment: endpoints are reached directly
        )

    async def send(self, sub: Subscription, msg: Message, now_s: float) -> Outcome:
        """One attempt: 2xx ``delivered``, 410 ``gone``, anything else ``retry`` (with the
        status code, or the error: ``timeout``, ``connection refused``…)."""
        if sub.url is None:
            return Outcome("retry", error="no url")
        headers = headers_for(msg, sub.signing_secrets(now_s), now_s, self.user_agent)
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                self.client.stream(
                    "POST", sub.url, content=msg.body.encode(), headers=headers
                ) as response,
            ):
                code = response.status_code
        except (TimeoutError, httpx.TimeoutException):
            return Outcome("retry", error=f"timeout after {self.timeout_s:g} s")
        except httpx.ConnectError as exc:
            return Outcome("retry", error=f"cannot connect: {_short(exc)}")
        except httpx.HTTPError as exc:
            return Outcome("retry", error=f"{type(exc).__name__}: {_short(exc)}")
        if 200 <= code < 300:
            return Outcome("delivered", status_code=code)
        if code == 410:
            return Outcome("gone", status_code=code)
        return Outcome("retry", status_code=code)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
