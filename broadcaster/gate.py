"""A pure ASGI middleware that answers the maintenance error for guarded routes.

Add it to any ASGI app of the platform in one line::

    app = MaintenanceGate(app, hub=hub, rules=[Rule("/api/token", "webcollect", "credit_card",
                                                      channel="token_embedded")])

or let :func:`gate_for_redis` build the hub from a Redis URL. The status is read from the
hub's memory (one Redis subscription per process, kept live): no Redis call per request.
During maintenance of a rule's view (its service [+ method]) a request gets HTTP 503 with
``Retry-After`` (whole seconds to ``until``, RFC 9110 10.2.3, never below
``retry_after_min_s``; omitted when ``until`` is null) and ``{"errorCode", "message",
"until", "processed": false}`` — the request was not acted on. It is not
``BaseHTTPMiddleware``: that wraps every response and hides stream disconnects.

The gate never answers 500 and never raises: rules naming a service, method or channel the
catalog does not know fail the app's start-up (:func:`validate_rules`); a service or method
that vanished at run time, or any error while deciding, is decided as "no status known"
(``when_unknown``), logged at most once a minute and counted in
``maintcast_gate_unknown_total``. Importing this module imports neither FastAPI nor
sse-starlette.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broadcaster import codec
from broadcaster.aio import stop_task
from broadcaster.bypass import Bypass
from broadcaster.clock import Clock, SystemClock
from broadcaster.domain import DEFAULT_MESSAGES, Catalog
from broadcaster.hub import Hub
from broadcaster.metrics import GATE_UNKNOWN

log = logging.getLogger(__name__)

UnknownReason = Literal["no_status", "scope_gone", "error"]
LOG_EVERY_S = 60.0
"""The gate logs one line per reason at most this often (seconds), not one per request."""


@dataclass(frozen=True)
class Rule:
    """Guard requests whose path starts with ``path`` (and, if given, whose HTTP method is
    in ``http_methods``) by the status of the view ``service`` [+ ``method``]; ``channel`` picks the
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


class UnknownScope(LookupError):
    """Gate rules name a service, method or channel that does not exist; the message names
    each such rule and lists the known names."""


def validate_rules(rules: Iterable[Rule], catalog: Catalog) -> None:
    """Check that every rule names a service (and method) of ``catalog`` and a known channel.

    Pure. Raises:
        UnknownScope: e.g. ``gate rule '/api/token': unknown service 'webcolect' (known:
            atobarai, webcollect)``; several problems are joined with ``"; "``.
    """
    problems: list[str] = []
    for rule in rules:
        where = f"gate rule {rule.path!r}"
        svc = catalog.services.get(rule.service)
        if svc is None:
            known = ", ".join(sorted(catalog.services)) or "none"
            problems.append(f"{where}: unknown service {rule.service!r} (known: {known})")
        elif rule.method is not None and rule.method not in svc.methods:
            known = ", ".join(sorted(svc.methods)) or "none"
            problems.append(
                f"{where}: unknown method {rule.method!r} of service {rule.service!r} "
                f"(known: {known})"
            )
        if rule.channel not in DEFAULT_MESSAGES:  # every channel has its built-in text
            known = ", ".join(DEFAULT_MESSAGES)
            problems.append(f"{where}: unknown channel {rule.channel!r} (known: {known})")
    if problems:
        raise UnknownScope("; ".join(problems))


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


class MaintenanceGate:
    """The middleware. ``when_unknown``: ``"allow"`` (default) or ``"block"`` guarded requests
    while the status of their view is not known: none read yet (e.g. Redis down at start),
    its service or method vanished from the catalog (Redis restarted empty), or deciding
    failed (counted as ``scope_gone`` and ``error``).

    ``bypass_secret`` in the ``bypass_header`` lets a request through (compared as digests,
    logged, and the header removed before the app: :mod:`broadcaster.bypass`).
    ``retry_after_min_s`` (whole seconds, >= 0) is the floor of ``Retry-After``. The rules
    are checked against the catalog when the app's lifespan start-up completes: a rule naming
    an unknown service, method or channel turns ``lifespan.startup.complete`` into
    ``lifespan.startup.failed`` with :func:`validate_rules`' message (uvicorn exits). With no
    catalog at start they are checked at the first request once one has arrived (an ERROR
    line if wrong; the process keeps running).
    """

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
        retry_after_min_s: int = 30,
    ) -> None:
        if retry_after_min_s < 0:
            raise ValueError(f"retry_after_min_s must be >= 0, got {retry_after_min_s}")
        self.app = app
        self.hub = hub
        self.rules = tuple(rules)
        self.exempt = tuple(exempt)
        self.bypass = Bypass(bypass_secret, bypass_header)  # digests; stripped before app
        if when_unknown not in ("allow", "block"):
            raise ValueError(f"when_unknown: must be 'allow' or 'block', got {when_unknown!r}")
        self.when_unknown = when_unknown
        self.render = render
        self.clock = clock or hub.clock or SystemClock()
        self.own_hub = own_hub
        self.retry_after_min_s = retry_after_min_s
        self._task: asyncio.Task[None] | None = None
        self._unchecked = True  # the rules wait for a catalog to be checked against
        self._logged: dict[str, tuple[float, int]] = {}  # reason -> (last line, suppressed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            if self.own_hub:
                receive = self._lifespan(receive)
            await self.app(scope, receive, self._checked_start(send))
            return
        if scope["type"] != "http":
            await self.app(self.bypass.stripped(scope), receive, send)
            return
        if self.own_hub and self._task is None:
            self._start()
        if self._unchecked and self.hub.catalog.services:
            self._check_late()
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(self.bypass.stripped(scope), receive, send)
            return
        try:
            body, content_type = self.render(refusal)
        except Exception:
            log.exception("gate: the custom renderer failed; answering the JSON body")
            body, content_type = json_body(refusal)
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
        """The refusal for this request, or None to let it through (no I/O, never raises:
        an unknown status is decided by ``when_unknown``)."""
        rule: Rule | None = None
        lang = "ja"
        try:
            rule = self._guarding(scope)
            if rule is None:
                return None
            lang = _lang(scope)
            event = self.hub.current
            if event is None:
                return self._unknown(rule, lang, "no_status")
            return self._decide(
                event.view((rule.service, rule.method), self.hub.view_of)[0], rule, lang
            )
        except LookupError as exc:  # NotFound: the catalog lost the rule's service or method
            return self._unknown(rule, lang, "scope_gone", exc)
        except Exception as exc:
            return self._unknown(rule, lang, "error", exc)

    def _guarding(self, scope: Scope) -> Rule | None:
        """The rule guarding this request, or None (exempt, unguarded, or bypassed)."""
        path = scope.get("path", "")
        if path.startswith(self.exempt):
            return None
        rule = next((r for r in self.rules if r.matches(path, scope.get("method", ""))), None)
        if rule is None:
            return None
        return None if self.bypass.granted(scope) else rule

    def _decide(self, doc: codec.Doc, rule: Rule, lang: str) -> Refusal | None:
        """The refusal for ``rule`` given the status of its view, ``doc``."""
        if doc["state"] != "maintenance":
            return None
        until = doc["until"]
        retry = None
        if until is not None:
            left = (codec.parse_wire_instant(until) - self.clock.now()).total_seconds()
            retry = max(self.retry_after_min_s, 1, math.ceil(left))
        message = DEFAULT_MESSAGES[rule.channel].pick(lang)
        for w in doc["active"]:
            texts = w.get("messages", {}).get(rule.channel)
            if texts:
                message = texts.get(lang) or texts.get("ja") or texts.get("en") or message
                break
        return Refusal(doc["error_code"], message, until, retry, rule, lang)

    def _unknown(
        self,
        rule: Rule | None,
        lang: str,
        reason: UnknownReason,
        exc: BaseException | None = None,
    ) -> Refusal | None:
        """Decide a guarded request by ``when_unknown``: count, log (rate-limited)."""
        GATE_UNKNOWN.labels(reason).inc()
        self._log_unknown(reason, exc)
        if self.when_unknown == "allow":
            return None
        if rule is None:  # failed before a rule was matched: block as the API channel
            rule = Rule("", "", channel="api")
        default = DEFAULT_MESSAGES.get(rule.channel) or DEFAULT_MESSAGES["api"]
        return Refusal(
            self.hub.store.defaults.error_code, default.pick(lang), None, None, rule, lang
        )

    def _log_unknown(self, reason: UnknownReason, exc: BaseException | None) -> None:
        """One WARNING per ``reason`` per :data:`LOG_EVERY_S`, saying how many were not
        logged since the last one."""
        now = time.monotonic()
        last, suppressed = self._logged.get(reason, (-math.inf, 0))
        if now - last < LOG_EVERY_S:
            self._logged[reason] = (last, suppressed + 1)
            return
        self._logged[reason] = (now, 0)
        why = {
            "no_status": "no status known yet",
            "scope_gone": "a rule's scope is not in the catalog",
            "error": "deciding failed",
        }[reason]
        detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        more = f"; {suppressed} more since the last line" if suppressed else ""
        log.warning("gate: %s%s; %s guarded requests%s", why, detail, self.when_unknown, more)

    def _checked_start(self, send: Send) -> Send:
        """``send`` for the lifespan: start-up completes only if the rules are valid."""

        async def checked(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                problem = self._check_at_start()
                if problem is not None:
                    if self.own_hub:
                        await stop_task(self._task, "gate hub")
                    message = {"type": "lifespan.startup.failed", "message": problem}
            await send(message)

        return checked

    def _check_at_start(self) -> str | None:
        """Check the rules against the hub's catalog; the failure message, or None."""
        if not self.hub.catalog.services:
            log.warning(
                "gate: no catalog at start (store unreachable or empty); "
                "the rules are checked when one arrives"
            )
            return None
        self._unchecked = False
        try:
            validate_rules(self.rules, self.hub.catalog)
        except UnknownScope as exc:
            return str(exc)
        return None

    def _check_late(self) -> None:
        """The first catalog arrived after start: check the rules once (never fatal)."""
        self._unchecked = False
        try:
            validate_rules(self.rules, self.hub.catalog)
        except UnknownScope as exc:
            log.error("%s; their requests are decided by when_unknown=%s", exc, self.when_unknown)

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
    key_prefix: str | None = None,
    **options: Any,
) -> MaintenanceGate:
    """A gate with its own hub on ``redis_url`` (one subscription for this process).

    The subscription starts with the app's lifespan (or on the first request).
    ``key_prefix`` defaults to ``MAINTCAST_KEY_PREFIX`` (``maintcast``): it must be the
    prefix the workers and APIs use, or the gate reads an empty store and lets everything
    through. ``retry_after_min_s`` defaults to ``MAINTCAST_RETRY_AFTER_MIN_S`` (30).
    """
    from broadcaster.settings import Settings
    from broadcaster.store import connect, make_store

    settings = Settings(redis_url=redis_url)
    if key_prefix is not None:
        settings = Settings(redis_url=redis_url, key_prefix=key_prefix)
    redis, _ = connect(redis_url)
    clock = options.pop("clock", None) or SystemClock()
    options.setdefault("retry_after_min_s", settings.retry_after_min_s)
    hub = Hub(make_store(settings, redis), clock, zone=settings.timezone)
    return MaintenanceGate(app, hub=hub, rules=rules, clock=clock, own_hub=True, **options)
