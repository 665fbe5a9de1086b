"""The HTTP API: ``create_app(settings, *, redis=None, clock=None, background=(),
tokens=None, demo=False)`` composes the store, the hub, the live routes (:mod:`live`), the
routers (this module's public routes, :mod:`ops_api`, :mod:`pages.routes`), the lifespan and
the exception handlers (from :mod:`errors`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

import broadcaster.exiting  # noqa: F401  # sse-starlette patches uvicorn's exit handler early
from broadcaster import codec, hygiene, ops_api, subscribe_api, subscriptions_api
from broadcaster.aio import stop_task
from broadcaster.auth import Tokens
from broadcaster.clock import Clock, SystemClock
from broadcaster.deps import clock_of, hub_of, store_of, tokens_of
from broadcaster.domain import ECHO_MAX, InvalidInput, NotFound, Window, is_public, lifecycle
from broadcaster.errors import HANDLED, answer_for
from broadcaster.gate import MaintenanceGate, Rule
from broadcaster.hub import Hub
from broadcaster.ical import calendar_of
from broadcaster.live import PATHS, SERVER_SEND, STREAM_PATH, LiveRoutes
from broadcaster.metrics import bind_gauges, exposition
from broadcaster.ops_api import principal_of
from broadcaster.pages import routes as page_routes
from broadcaster.series import series_doc
from broadcaster.settings import Settings
from broadcaster.sse import freeze_heap
from broadcaster.store import STORE_ERRORS, Redis, Store, connect, make_store
from broadcaster.texts import shown

log = logging.getLogger(__name__)

Background = Callable[[Store, Clock], AbstractAsyncContextManager[Any]]
"""A companion run for the app's lifetime (e.g. the in-process worker of ``serve``)."""

MAX_SEQ = 10**18 - 1
"""The largest seq accepted on input (a Redis stream id part is a 64-bit integer)."""
LIFECYCLES = ("scheduled", "in_progress", "completed", "cancelled")


class MaintcastAPI(FastAPI):
    """FastAPI with the two hot paths (:data:`broadcaster.live.PATHS`) handed to ``live``
    before any of FastAPI's own layers, with the server's own ``send`` in the scope (under
    :data:`broadcaster.live.SERVER_SEND`: cutting a stuck stream needs its transport).
    Every HTTP request goes through :mod:`broadcaster.hygiene` first (``nosniff`` on every
    response; ``HEAD`` as ``GET`` and the body bound on FastAPI's side)."""

    def __init__(self, live: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.live = live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        server_send, send = send, hygiene.nosniff(send)
        if scope["path"] in PATHS:
            if scope["path"] == STREAM_PATH:
                scope[SERVER_SEND] = server_send
            try:
                await self.live(scope, receive, send)
            finally:  # also when refused before the stream took it (404, 405, preflight…):
                scope.pop(SERVER_SEND, None)  # uvicorn's cycle holds the scope: no loop
            return
        await super().__call__(*hygiene.guarded(scope, receive, send))


def cors_options(settings: Settings) -> dict[str, Any]:
    """Starlette ``CORSMiddleware`` options: read-only access from the configured origins
    (checkout pages on merchant domains open the stream and read the status)."""
    return {
        "allow_origins": settings.cors_origin_list,
        "allow_methods": ["GET"],
        "allow_headers": ["Last-Event-ID", "Cache-Control"],
        "expose_headers": ["ETag"],  # a merchant page's fetch may read it for If-None-Match
        "max_age": 600,
    }


def error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    """A response with the JSON error shape of docs/api.md (:func:`codec.error_doc`)."""
    return JSONResponse(codec.error_doc(code, message, field), status_code=status)


def create_app(
    settings: Settings,
    *,
    redis: Redis | None = None,
    clock: Clock | None = None,
    background: tuple[Background, ...] = (),
    tokens: Tokens | None = None,
    demo: bool = False,
) -> FastAPI:
    """Build the ASGI app. A ``redis`` passed in is not closed; one made here is.

    Without ``redis`` and without ``settings.redis_url`` it uses an embedded in-memory store.
    ``tokens`` defaults to those of ``MAINTCAST_TOKENS``/``MAINTCAST_TOKENS_FILE``.
    ``demo`` mounts ``/demo/checkout`` and the gated sample API ``POST /demo/api/token``.
    The routes read what they need from ``app.state`` (:mod:`broadcaster.deps`).

    Raises:
        TokenConfigError: a malformed token entry in the settings.
    """
    tokens = tokens if tokens is not None else Tokens.parse(settings.tokens, settings.tokens_file)
    clock = clock or SystemClock()
    owned = redis is None
    if redis is None:
        redis, embedded = connect(settings.redis_url)
        if embedded:
            log.warning("no MAINTCAST_REDIS_URL: using an embedded in-memory store")
    store = make_store(settings, redis, clock_speed=clock.speed)
    hub = Hub(store, clock, client_queue=settings.client_queue, zone=settings.timezone)

    live: ASGIApp = LiveRoutes(
        hub=hub,
        store=store,
        retry_ms=settings.retry_ms,
        streams_per_client=settings.streams_per_client,
    )
    if settings.cors_origin_list:
        live = CORSMiddleware(live, **cors_options(settings))
    app = MaintcastAPI(live, title="Maintcast", version="0.1.0", lifespan=lifespan)
    app.state.store, app.state.hub, app.state.clock = store, hub, clock
    app.state.settings, app.state.tokens = settings, tokens
    app.state.background, app.state.owned_redis = background, redis if owned else None
    _errors(app)
    app.include_router(ops_api.router)
    app.include_router(subscriptions_api.router)
    app.include_router(subscribe_api.router)
    subscribe_api.redact_access_log()
    app.include_router(page_routes.router)
    if demo:
        app.include_router(page_routes.demo_router)
    app.mount("/static", page_routes.static_files(), name="static")
    app.include_router(router)
    if demo:
        rule = Rule("/demo/api/", "webcollect", "credit_card", channel="token_embedded")
        app.add_middleware(
            MaintenanceGate,
            hub=hub,
            rules=[rule],
            bypass_secret=settings.gate_bypass_secret,
            clock=clock,
            retry_after_min_s=settings.retry_after_min_s,
        )
    if settings.cors_origin_list:
        app.add_middleware(CORSMiddleware, **cors_options(settings))
    bind_gauges(
        lambda: hub.clients,
        lambda: not hub.stale,
        lambda: hub.overdue_s(clock.now(), store.grace_s),
    )
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The app's lifetime: the hub's listener and the streams' keepalive run, then each of
    ``app.state.background``; at the end they stop, and a Redis client that
    :func:`create_app` opened (``app.state.owned_redis``) is closed."""
    state = app.state
    hub: Hub = state.hub
    listener = asyncio.create_task(hub.run(), name="maintcast-hub")
    keepalive = asyncio.create_task(
        hub.streams.keepalive(state.settings.ping_s), name="maintcast-keepalive"
    )
    await hub.wait_ready(5.0)
    freeze_heap(full=True)  # start-up objects never need collecting
    try:
        async with contextlib.AsyncExitStack() as stack:
            for run in state.background:
                await stack.enter_async_context(run(state.store, state.clock))
            yield
    finally:
        await stop_task(keepalive, "stream keepalive")
        await stop_task(listener, "hub listener")
        if state.owned_redis is not None:
            await state.owned_redis.aclose()


router = APIRouter()
"""The public routes other than the live ones (:mod:`broadcaster.live`), and the probes."""


def is_ops(request: Request, authorization: str | None) -> bool:
    """Whether ``authorization`` carries a valid ops token (any role)."""
    try:
        return authorization is not None and bool(principal_of(tokens_of(request), authorization))
    except PermissionError:
        return False


def visible(request: Request, w: Window, now: datetime, authorization: str | None) -> bool:
    """Announced windows are public; ops (a valid token) see the others too."""
    return is_public(w, now) or is_ops(request, authorization)


@router.get("/v1/windows")
async def list_windows(
    request: Request,
    status: str | None = None,
    series: str | None = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """The windows (announced ones, or all with an ops token), soonest first, with history;
    with ``series``, the occurrences of that recurring series only."""
    if status is not None and status not in LIFECYCLES:
        raise InvalidInput("status", f"status: must be one of {', '.join(LIFECYCLES)}")
    now = clock_of(request).now()
    windows = sorted(
        (
            w
            for w in (await store_of(request).windows()).values()
            if (series is None or w.series_id == series) and visible(request, w, now, authorization)
        ),
        key=lambda w: (w.starts_at, w.id),
    )
    docs = [
        codec.window_doc(w, now) for w in windows if status is None or lifecycle(w, now) == status
    ]
    return Response(codec.dumps({"windows": docs}), media_type="application/json")


@router.get("/v1/windows.ics")
async def windows_ics(request: Request) -> Response:
    """The announced windows as an iCalendar feed (RFC 5545)."""
    now = clock_of(request).now()
    windows = [w for w in (await store_of(request).windows()).values() if is_public(w, now)]
    return Response(calendar_of(windows, now), media_type="text/calendar; charset=utf-8")


@router.get("/v1/windows/{window_id}")
async def get_window(
    request: Request, window_id: str, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """One window, or a recurring series (with ``recurrence``), if visible to the caller
    (404 otherwise)."""
    now = clock_of(request).now()
    w = (await store_of(request).windows()).get(window_id)
    s = None if w is not None else (await store_of(request).series()).get(window_id)
    found = w or s
    if found is None or not visible(request, found, now, authorization):
        raise NotFound("id", f"unknown window {window_id[:ECHO_MAX]!r}")
    doc = codec.window_doc(found, now) if s is None else series_doc(found, now)
    return Response(codec.dumps(doc), media_type="application/json")


@router.get("/v1/events")
async def list_events(
    request: Request,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1)] = 100,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """The event log after seq ``after``, oldest first, at most 1000 at once; without an
    ops token the entries of windows not yet announced carry no window id and no reason."""
    public_at = None if is_ops(request, authorization) else clock_of(request).now()
    events = await store_of(request).events(after, min(limit, 1000), public_at=public_at)
    return Response(codec.dumps({"events": events}), media_type="application/json")


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus text exposition of this process's metrics."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: 200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """503 with a code saying what is wrong: the store is unreachable, has no catalog
    (restarted empty), this process's subscription is reconnecting, or the held status
    is overdue (nothing published the change it announced)."""
    store, hub = store_of(request), hub_of(request)
    try:
        await asyncio.wait_for(store.ping(), 1.0)
        has_catalog = await asyncio.wait_for(store.has_catalog(), 1.0)
    except STORE_ERRORS as exc:
        answer = answer_for(exc, "GET /readyz")
        assert answer is not None  # every store error is in the table
        return error(answer.status, answer.code, answer.doc["error"]["message"])
    if not has_catalog:
        return error(
            503,
            "catalog_missing",
            "the store has no catalog (restarted empty?): import the schedule file, "
            "or set MAINTCAST_SCHEDULE_FILE so the publishers re-import it",
        )
    if hub.stale:  # Redis answers, but this process's subscription is not back yet
        return error(503, "resubscribing", "the live subscription is reconnecting")
    late = hub.overdue_s(clock_of(request).now(), store.grace_s)
    if late > 0:
        return error(
            503,
            "status_overdue",
            f"the status announced a change {late:.0f} s ago and nothing was published: "
            "is any worker or API process able to publish?",
        )
    return JSONResponse({"status": "ready"})


def _errors(app: FastAPI) -> None:
    """Map exceptions to the JSON error shape: the table of :mod:`broadcaster.errors` (domain,
    auth and store errors) plus FastAPI's own validation and HTTP errors."""
    for cls in HANDLED:
        app.add_exception_handler(cls, from_table)
    app.add_exception_handler(ClientDisconnect, client_gone)  # type: ignore[arg-type]
    app.exception_handler(RequestValidationError)(bad_request)
    app.exception_handler(StarletteHTTPException)(http_error)


async def from_table(request: Request, exc: Exception) -> Response:
    """The answer of :mod:`broadcaster.errors`' table to ``exc``."""
    answer = answer_for(exc, f"{request.method} {request.url.path}")
    if answer is None:  # not registered for it: cannot happen
        raise exc
    return Response(
        answer.body(),
        status_code=answer.status,
        headers=dict(answer.headers),
        media_type="application/json",
    )


async def client_gone(request: Request, exc: Exception) -> None:
    """The client left while its body was read: nobody to answer, nothing wrong here."""
    log.debug("client disconnected during %s %s", request.method, request.url.path)


async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 ``invalid`` naming the first field FastAPI's validation rejected (the value it
    got is cut as every echoed value is: :func:`broadcaster.texts.shown`)."""
    err = exc.errors()[0]
    loc = [str(p)[:ECHO_MAX] for p in err["loc"] if p not in ("body", "query", "path", "header")]
    field = ".".join(loc) or "body"
    return error(422, "invalid", f"{field}: {err['msg']} (got {shown(err.get('input'))})", field)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own HTTP errors (unknown route, wrong method) in the JSON error shape; a
    405 lists in ``Allow`` every method any route of the path takes (RFC 9110 15.5.6)."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    answer = error(exc.status_code, code, str(exc.detail))
    answer.headers.update(exc.headers or {})
    if exc.status_code == 405:
        answer.headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope["path"]))
    return answer


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods some route takes at ``path``, sorted; ``HEAD`` wherever ``GET`` is
    (:mod:`broadcaster.hygiene` answers it); a mount (``/static``) takes ``GET``. Asked of
    each route's own ``matches`` (FastAPI nests included routers differently by version)."""
    methods: set[str] = set()
    for route in app.router.routes:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            probe: Scope = {"type": "http", "path": path, "root_path": "", "method": method}
            if route.matches(probe)[0] is Match.FULL:
                methods.add("GET" if isinstance(route, Mount) else method)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
