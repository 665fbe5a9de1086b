"""Maintcast's own pages (/status, /maintenance, /admin, /demo/checkout) and static files.

Pages render the current status on the server (jinja2, autoescaped) and then stay live
through ``/static/maintcast.js`` over SSE. Every page carries the two DOM hooks of
docs/api.md "Built" and a strict Content-Security-Policy (no inline script or style).
"""

from __future__ import annotations

import functools
import math
import re
import secrets
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from broadcaster import codec
from broadcaster.deps import hub_of, store_of
from broadcaster.domain import DEFAULT_MESSAGES, is_public, lifecycle
from broadcaster.refusal import draining_windows

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
TEXTS: dict[str, dict[str, str]] = {
    "ja": {
        "product": "メンテナンス情報",
        "status": "稼働状況",
        "maintenance": "メンテナンス",
        "admin": "運用ダッシュボード",
        "service": "サービス",
        "method": "決済方法",
        "state": "状態",
        "operational": "稼働中",
        "draining": "まもなくメンテナンス",
        "under_maintenance": "メンテナンス中",
        "upcoming": "メンテナンス予定",
        "none": "予定はありません",
        "postponed": "延期",
        "moved": "変更",
        "ended_early": "早期終了",
        "extended": "延長",
        "notes": "お知らせ",
        "was": "変更前",
        "ical": "カレンダー (iCal) で購読",
        "when": "日時",
        "maintenance_title": "メンテナンスのお知らせ",
        "ended": "メンテナンスは終了しました。",
        "back": "お支払い手続きに戻る",
        "phone": "電話",
        "hours": "受付時間",
        "token": "トークン",
        "override": "手動切替 (override)",
        "reason": "理由",
        "ttl": "期限 (分)",
        "set": "設定",
        "clear_override": "解除",
        "windows": "メンテナンス一覧",
        "events": "イベント",
        "scheduled_notice": (
            "メンテナンスを予定しています。下記の時間帯はお支払い手続きができません。"
        ),
        "no_maintenance": "現在メンテナンスは行っていません。",
        "checkout": "お支払い (デモ)",
        "scheduled_banner": "メンテナンス予定",
    },
    "en": {
        "product": "Maintenance status",
        "status": "Status",
        "maintenance": "Maintenance",
        "admin": "Ops dashboard",
        "service": "Service",
        "method": "Payment method",
        "state": "State",
        "operational": "Operational",
        "draining": "Maintenance soon",
        "under_maintenance": "Under maintenance",
        "upcoming": "Scheduled maintenance",
        "none": "Nothing scheduled",
        "postponed": "Postponed",
        "moved": "Changed",
        "ended_early": "Ended early",
        "extended": "Extended",
        "notes": "Updates",
        "was": "was",
        "ical": "Subscribe (iCal)",
        "when": "When",
        "maintenance_title": "Maintenance notice",
        "ended": "Maintenance has ended.",
        "back": "Back to payment",
        "phone": "Phone",
        "hours": "Hours",
        "token": "Token",
        "override": "Override",
        "reason": "Reason",
        "ttl": "Expires in (min)",
        "set": "Set",
        "clear_override": "Clear",
        "windows": "Windows",
        "events": "Events",
        "scheduled_notice": (
            "Maintenance is scheduled: payment is unavailable during the time below."
        ),
        "no_maintenance": "No maintenance is in progress.",
        "checkout": "Checkout (demo)",
        "scheduled_banner": "Scheduled",
    },
}
DEFAULT_RETURN = "/status"
"""Where the maintenance page's way back leads when ``return`` is missing or refused."""
RETURN_MAX = 2048
"""The longest ``return`` path accepted (characters)."""
_WIRE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?([+-]\d{2}:\d{2})$")


def format_wire(instant: str | None, zone: str | None) -> str:
    """``2021-08-09T01:00:00+09:00`` -> ``2021-08-09 01:00 (Asia/Tokyo, +09:00)``: the wire
    instant is already in the window's zone, so it is shown as written (same as maintcast.js)."""
    if not instant:
        return ""
    m = _WIRE.match(instant)
    if m is None:
        return instant
    return f"{m[1]} {m[2]} ({zone + ', ' if zone else ''}{m[3]})"


def window_span(w: codec.Doc, lang: str) -> str:
    """``start – end`` in the window's zone, then the reserve (:func:`reserve_text`)."""
    z = w["timezone"]
    text = f"{format_wire(w['starts_at'], z)} – {format_wire(w['ends_at'], z)}"
    reserve = codec.reserve_text(w, lang)
    return f"{text} {reserve}" if reserve else text


def drain_text(doc: codec.Doc, lang: str, now: datetime | None = None) -> str:
    """The countdown of a draining view: 「メンテナンス開始まで あとN分です。…」, N whole
    minutes (rounded up, at least 1) from ``now`` (default: the status's ``as_of``) to the
    draining window's start."""
    draining = draining_windows(doc)
    if not draining:
        return ""
    now = now or codec.status_instant(doc)
    left = codec.parse_wire_instant(draining[0]["starts_at"]) - now
    n = max(1, math.ceil(left.total_seconds() / 60))
    if lang == "en":
        return f"Maintenance starts in {n} min. Please complete your payment soon."
    return f"メンテナンス開始まで あと{n}分です。お支払いはお早めにお済ませください。"


def _unsafe_char(c: str) -> bool:
    # Cc: C0, DEL and C1 controls; Z*: every space and line/paragraph separator; browsers
    # strip tabs and line breaks from URLs (WHATWG URL "basic URL parser") and read ``\`` as
    # ``/``, which turns ``/\evil.example`` or ``/<TAB>/evil.example`` into ``//evil.example``
    return c == "\\" or c.isspace() or unicodedata.category(c) in ("Cc", "Zs", "Zl", "Zp")


def safe_return(value: str | None, default: str = DEFAULT_RETURN) -> str:
    """``value`` when it is a same-origin path, else ``default`` (no open redirect, issue 12).

    Accepted: a path that starts with exactly one ``/``, has no scheme and no host as
    ``urllib.parse.urlsplit`` reads it, and carries no ``\\``, control character or
    whitespace anywhere, neither as given nor once percent-decoded (``/%5C…``); at most
    :data:`RETURN_MAX` characters. ``value`` is the query parameter as decoded by the
    server.
    """
    if not value or len(value) > RETURN_MAX:
        return default
    decoded = unquote(value)
    for text in (value, decoded):
        if not text.startswith("/") or text.startswith("//"):
            return default
        if any(_unsafe_char(c) for c in text):
            return default
        parts = urlsplit(text)
        if parts.scheme or parts.netloc:
            return default
    return value


def choose_lang(request: Request) -> str:
    """``?lang=ja|en``, else the first ``Accept-Language``, else ``ja``."""
    q = request.query_params.get("lang")
    if q in ("ja", "en"):
        return q
    first = request.headers.get("accept-language", "").split(",")[0].strip().lower()
    return "en" if first.startswith("en") else "ja"


def _pick(texts: Any, lang: str) -> str:
    if not texts:
        return ""
    return str(texts.get(lang) or texts.get("ja") or texts.get("en") or "")


def channel_message(doc: codec.Doc, channel: str, lang: str) -> str:
    """The message of the first active window for ``channel``, else the built-in one."""
    for w in doc.get("active", []):
        texts = w.get("messages", {}).get(channel)
        if texts:
            return _pick(texts, lang)
    return DEFAULT_MESSAGES[channel].pick(lang)


def banner_text(doc: codec.Doc, channel: str, lang: str, now: datetime | None = None) -> str:
    """What the banner shows before the script takes over (same rules as maintcast.js);
    ``now`` counts a drain down (default: the status's ``as_of``)."""
    if doc["state"] == "maintenance":
        return channel_message(doc, channel, lang)
    if doc["state"] == "draining":
        return drain_text(doc, lang, now)
    if doc.get("upcoming"):
        w = doc["upcoming"][0]
        when = window_span(w, lang)
        return f"{TEXTS[lang]['scheduled_banner']}: {_pick(w['title'], lang)} — {when}"
    return ""


router = APIRouter()
"""The pages every process serves."""
demo_router = APIRouter()
"""``/demo/checkout`` and its sample API ``POST /demo/api/token`` (guarded by the gate), for
``serve --demo``."""
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@functools.cache
def templates() -> jinja2.Environment:
    """The page templates (autoescaped; an undefined name is an error), loaded on first use."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


async def render(
    request: Request,
    template: str,
    page: str,
    channel: str,
    service: str | None = None,
    method: str | None = None,
    **extra: Any,
) -> HTMLResponse:
    """``template`` rendered with the status of the view ``service`` [+ ``method``], the
    banner of ``channel`` and ``extra``, in the request's language.

    Raises:
        NotFound: unknown service or method.
        InvalidInput: ``method`` without ``service``.
    """
    hub = hub_of(request)
    lang = choose_lang(request)
    hub.catalog.components_in(service, method)
    doc = (await hub.snapshot()).view((service, method), hub.view_of)[0]

    def span(w: codec.Doc) -> str:
        return window_span(w, lang)

    html = (
        templates()
        .get_template(template)
        .render(
            lang=lang,
            t=TEXTS[lang],
            page=page,
            channel=channel,
            service=service,
            method=method,
            status=doc,
            catalog=hub.catalog,
            banner=banner_text(doc, channel, lang, hub.clock.now()),
            text=lambda texts: _pick(texts, lang),
            fmt=format_wire,
            span=span,
            zone=hub.zone,
            **extra,
        )
    )
    return HTMLResponse(html, headers=SECURITY_HEADERS)


@router.get("/status", response_class=HTMLResponse)
async def status_page(request: Request) -> HTMLResponse:
    """The public status page: every component and the announced windows to come."""
    now = hub_of(request).clock.now()
    windows = sorted(
        (
            w
            for w in (await store_of(request).windows()).values()
            if is_public(w, now) and lifecycle(w, now) in ("scheduled", "in_progress")
        ),
        key=lambda w: (w.starts_at, w.id),
    )
    docs = [codec.window_doc(w, now) for w in windows]
    return await render(request, "status.html", "status", "link", windows=docs)


@router.get("/maintenance", response_class=HTMLResponse)
async def maintenance_page(
    request: Request, service: str | None = None, method: str | None = None
) -> HTMLResponse:
    """The maintenance notice of a view, with a way back to a same-site ``return`` path."""
    hub = hub_of(request)
    lang = choose_lang(request)
    doc = (await hub.snapshot()).view((service, method), hub.view_of)[0]
    window = (doc["active"] or doc["upcoming"] or [None])[0]
    back = safe_return(request.query_params.get("return"))
    return await render(
        request,
        "maintenance.html",
        "maintenance",
        "link",
        service,
        method,
        window=window,
        link_message=channel_message(doc, "link", lang),
        contact=await store_of(request).contact(),
        back=back,
    )


@router.get("/admin", response_class=HTMLResponse)
async def admin_page(request: Request) -> HTMLResponse:
    """The ops dashboard (its writes go through the ops API with a token)."""
    return await render(request, "admin.html", "admin", "admin")


@demo_router.get("/demo/checkout", response_class=HTMLResponse)
async def checkout(request: Request) -> HTMLResponse:
    """A sample checkout page whose card payment the gate guards."""
    return await render(
        request, "checkout.html", "checkout", "token_modal", "webcollect", "credit_card"
    )


@demo_router.post("/demo/api/token")
async def demo_token() -> JSONResponse:
    """The sample API behind the gate: a made-up card token."""
    return JSONResponse({"token": "tok_" + secrets.token_hex(8), "processed": True})


def static_files() -> StaticFiles:
    """``/static``: maintcast.js, pages.js and the stylesheet."""
    return StaticFiles(directory=HERE / "static")
