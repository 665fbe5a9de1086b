"""A pure ASGI middleware that answers the maintenance error for guarded routes.

Add it to any ASGI app of the platform in one line::

    app = MaintenanceGate(app, hub=hub, rules=[Rule("/api/token", "webcollect", "credit_card",
                                                      channel="token_embedded")])

or let :func:`gate_for_redis` build the hub from a Redis URL. The status is read from the
hub's memory (one Redis subscription per process, kept live): no Redis call per request.
During maintenance of a rule's scope a request gets HTTP 503 with ``Retry-After`` (whole
seconds to ``until``, RFC 9110 10.2.3; omitted when ``until`` is null) and
``{"errorCode", "message", "until", "processed": false}`` — the request was not acted on.
It is not ``BaseHTTPMiddleware``: that wraps every response and hides stream disconnects.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from broadcaster import codec
from broadcaster.aio import stop_task
from broadcaster.clock import Clock, SystemClock
from broadcaster.domain import DEFAULT_MESSAGES
from broadcaster.hub import Hub

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Rule:
    """Guard requests whose path starts with ``path`` (and, if given, whose HTTP method is
    in ``http_methods``) by the scope ``service`` [+ ``method``]; ``channel`` picks the
    message (``api``, ``token_embedded``, ``token_modal``, ``link``, ``admin``)."""

    path: str
    service: str
    method: str | None = None
    channel: str = "api"
    http_methods: tuple[str, ...] = ()

    def matches(self, path: str, http_method: str) -> bool:
        """Whether the rule guards this request."""
        return path.startswith(self.path) and (
            not self.http_methods or http_method in self.http_methods
        )


@dataclass(frozen=True)
class Refusal:
    """What a guarded request is refused with; handed to a custom body renderer."""

    error_code: str
    message: str
    until: str | None
    retry_after_s: int | None
    rule: Rule
    lang: str


def json_body(refusal: Refusal) -> tuple[bytes, str]:
    """The default body: ``{"errorCode", "message", "until", "processed": false}``."""
    doc = {
        "errorCode": refusal.error_code,
        "message": refusal.message,
        "until": refusal.until,
        "processed": False,
    }
    return codec.dumps(doc), "application/json"


def _lang(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"accept-language":
            first = value.decode("latin-1").split(",")[0].strip().lower()
            return "en" if first.startswith("en") else "ja"
    return "ja"


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value)
    return None


class MaintenanceGate:
    """The middleware. ``when_unknown``: ``"allow"`` (default; logs a warning) or ``"block"``
    for requests while no status was ever known (e.g. Redis down at start)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hub: Hub,
        rules: Iterable[Rule],
        exempt: Iterable[str] = ("/healthz", "/readyz", "/metrics"),
        bypass_header: str = "x-maintcast-bypass",
        bypass_secret: str | None = None,
        when_unknown: Literal["allow", "block"] = "allow",
        render: Callable[[Refusal], tuple[bytes, str]] = json_body,
        clock: Clock | None = None,
        own_hub: bool = False,
    ) -> None:
        self.app = app
        self.hub = hub
        self.rules = tuple(rules)
        self.exempt = tuple(exempt)
        self.bypass_header = bypass_header.lower().encode("latin-1")
        self.bypass_secret = bypass_secret.encode() if bypass_secret else None
        self.when_unknown = when_unknown
        self.render = render
        self.clock = clock or hub.clock or SystemClock()
        self.own_hub = own_hub
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.own_hub:
            await self.app(scope, self._lifespan(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.own_hub and self._task is None:
            self._start()
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        body, content_type = self.render(refusal)
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if refusal.retry_after_s is not None:
            headers.append((b"retry-after", str(refusal.retry_after_s).encode()))
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope) -> Refusal | None:
        """The refusal for this request, or None to let it through (no I/O)."""
        path = scope.get("path", "")
        if path.startswith(self.exempt):
            return None
        rule = next((r for r in self.rules if r.matches(path, scope.get("method", ""))), None)
        if rule is None:
            return None
        if self.bypass_secret is not None:
            given = _header(scope, self.bypass_header)
            if given is not None and hmac.compare_digest(given, self.bypass_secret):
                return None
        event = self.hub.current
        lang = _lang(scope)
        if event is None:
            if not self._warned:
                log.warning("gate: no status known yet; %s guarded requests", self.when_unknown)
                self._warned = True
            if self.when_unknown == "allow":
                return None
            text = DEFAULT_MESSAGES[rule.channel].pick(lang)
            return Refusal(self.hub.store.defaults.error_code, text, None, None, rule, lang)
        doc = event.view((rule.service, rule.method), self.hub.scope_view)[0]
        if doc["state"] != "maintenance":
            return None
        until = doc["until"]
        retry = None
        if until is not None:
            left = (codec.parse_wire_instant(until) - self.clock.now()).total_seconds()
            retry = max(1, math.ceil(left))
        message = DEFAULT_MESSAGES[rule.channel].pick(lang)
        for w in doc["active"]:
            texts = w.get("messages", {}).get(rule.channel)
            if texts:
                message = texts.get(lang) or texts.get("ja") or texts.get("en") or message
                break
        return Refusal(doc["error_code"], message, until, retry, rule, lang)

    def _start(self) -> None:
        self._task = asyncio.create_task(self.hub.run(), name="maintcast-gate-hub")

    def _lifespan(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup" and self._task is None:
                self._start()
                await self.hub.wait_ready(5.0)
            elif message["type"] == "lifespan.shutdown":
                await stop_task(self._task, "gate hub")
            return message

        return wrapped


def gate_for_redis(
    app: ASGIApp,
    *,
    redis_url: str,
    rules: Iterable[Rule],
    key_prefix: str = "maintcast",
    **options: Any,
) -> MaintenanceGate:
    """A gate with its own hub on ``redis_url`` (one subscription for this process).

    The subscription starts with the app's lifespan (or on the first request).
    """
    from broadcaster.settings import Settings
    from broadcaster.store import connect, make_store

    settings = Settings(redis_url=redis_url, key_prefix=key_prefix)
    redis, _ = connect(redis_url)
    clock = options.pop("clock", None) or SystemClock()
    hub = Hub(make_store(settings, redis), clock, zone=settings.timezone)
    return MaintenanceGate(app, hub=hub, rules=rules, clock=clock, own_hub=True, **options)
