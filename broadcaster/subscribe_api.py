"""Public self-service e-mail subscription (docs/notifications.md "By e-mail, yourself"):
``POST /v1/subscribe`` with double opt-in, ``GET /v1/subscribe/confirm`` and the one-click
``/v1/unsubscribe`` of every mail (RFC 8058).

``POST /v1/subscribe`` answers 202 with one fixed body whatever the address's state, so it
tells nobody whether an address is subscribed; requests are limited per client address
(``MAINTCAST_SUBSCRIBE_PER_HOUR``, 429 with ``Retry-After``). The confirm and unsubscribe
routes are links opened from a mail: they answer small HTML pages in the subscription's
language. A ``GET`` of the unsubscribe link only shows a button (RFC 8058 section 3.1:
link checkers fetch URLs); ``POST`` unsubscribes, from that button or from the mail
reader's one-click. Tokens are never logged: :func:`redact_access_log` blanks
``token=`` in uvicorn's access log lines. Without mail settings every route here answers
404.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from broadcaster.deps import clock_of, settings_of, store_of
from broadcaster.domain import NotFound
from broadcaster.hygiene import HEAD_KEY
from broadcaster.limits import RateLimit
from broadcaster.notify.mailconfig import MailConfig
from broadcaster.notify.optin import SubscribeIn, SubscribeOut
from broadcaster.notify.subscriptions import check_email
from broadcaster.pages.routes import SECURITY_HEADERS, choose_lang, templates
from broadcaster.store.notify import NotifyStore
from broadcaster.store.optin import OptInStore
from broadcaster.validation import check_affected

router = APIRouter(tags=["self-service"])
MAX_TOKEN = 200
"""Longest token read from a link (ours are under 120 characters)."""
PAGES: dict[str, dict[str, str]] = {
    "ja": {
        "confirmed_title": "登録が完了しました",
        "confirmed": "メンテナンス情報のメール配信を開始します。"
        "配信停止はメール末尾のリンクからいつでもできます。",
        "invalid_title": "リンクが無効です",
        "invalid": "このリンクは無効か、有効期限が切れているか、すでに使用されています。",
        "unsubscribe_title": "配信停止",
        "unsubscribe": "メンテナンス情報のメール配信を停止します。",
        "unsubscribe_button": "配信を停止する",
        "unsubscribed_title": "配信を停止しました",
        "unsubscribed": "今後メンテナンス情報のメールはお送りしません。",
        "status": "メンテナンス情報（稼働状況）",
    },
    "en": {
        "confirmed_title": "Subscription confirmed",
        "confirmed": "Maintenance notices will be sent to this address. Every mail ends with "
        "a link to unsubscribe.",
        "invalid_title": "This link is not valid",
        "invalid": "The link is not valid, has expired, or was already used.",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe": "Stop maintenance notices to this address.",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "Unsubscribed",
        "unsubscribed": "No more maintenance notices will be sent to this address.",
        "status": "Maintenance status",
    },
}


_TOKEN = re.compile(r"([?&]token=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Blanks the value of every ``token=`` query parameter in a log record's arguments
    (uvicorn's access log passes the request path with its query as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, str) and "token=" in a for a in args):
            record.args = tuple(_TOKEN.sub(r"\1***", a) if isinstance(a, str) else a for a in args)
        return True


def redact_access_log() -> None:
    """Install :class:`RedactTokens` on uvicorn's access logger (once per process)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())


def _optin(request: Request) -> OptInStore:
    """The self-service store; 404 when this deployment sends no mail.

    Raises:
        NotFound: ``MAINTCAST_SMTP_URL``, ``_MAIL_FROM`` or ``_PUBLIC_URL`` is unset.
    """
    s = settings_of(request)
    if MailConfig.of(s.smtp_url, s.mail_from, s.public_url) is None:
        raise NotFound("email", "self-service e-mail subscription is not enabled here")
    return OptInStore(NotifyStore.of(store_of(request)))


def _limit(request: Request) -> RateLimit:
    """The app's per-client limit on subscription requests (made on first use)."""
    state = request.app.state
    limit: RateLimit | None = getattr(state, "subscribe_limit", None)
    if limit is None:
        per_hour = settings_of(request).subscribe_per_hour
        limit = state.subscribe_limit = RateLimit(per_hour, 3600.0, "subscription requests")
    return limit


def _page(
    lang: str, title: str, message: str, result: str, status: int = 200, form: bool = False
) -> HTMLResponse:
    """A small page: ``result`` goes into ``data-result``; ``form`` adds the one-click
    unsubscribe button (a POST to the page's own URL, token included)."""
    t = PAGES[lang]
    html = (
        templates()
        .get_template("subscription.html")
        .render(
            lang=lang,
            title=t[title],
            message=t[message],
            result=result,
            form=form,
            button=t["unsubscribe_button"],
            status_text=t["status"],
        )
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


Token = Annotated[str, Query(max_length=MAX_TOKEN)]


@router.post("/v1/subscribe", status_code=202, response_model=SubscribeOut)
async def subscribe(body: SubscribeIn, request: Request) -> SubscribeOut:
    """Ask for e-mail notices: a confirmation mail goes to the address, whose link starts
    (or updates) the subscription. The answer is the same for every address.

    Raises:
        TooManyRequests: over ``MAINTCAST_SUBSCRIBE_PER_HOUR`` from this client (429).
        InvalidInput: not an address, or a scope naming an unknown service or method.
        NotFound: mail is not configured.
    """
    optin = _optin(request)
    _limit(request).take(request.scope)
    email = body.email.strip()
    check_email(email)
    store = store_of(request)
    if body.scope is not None:
        check_affected(await store.catalog(), body.scope, "scope")
    scope = None if body.scope is None else {s: tuple(ms) for s, ms in body.scope.items()}
    await optin.request(
        email,
        body.lang,
        scope,
        clock_of(request).now(),
        time.time(),
        new_id=lambda: f"e-{secrets.token_hex(5)}",
    )
    return SubscribeOut()


@router.get("/v1/subscribe/confirm", response_class=HTMLResponse)
async def confirm(request: Request, token: Token) -> HTMLResponse:
    """The confirmation link: activates the subscription the token stands for (once). A
    ``HEAD`` (a link checker's) answers 200 and changes nothing."""
    if request.scope.get(HEAD_KEY):
        return _page(choose_lang(request), "confirmed_title", "confirmed", "confirmed")
    sub = await _optin(request).confirm(token, clock_of(request).now())
    if sub is None:
        return _page(choose_lang(request), "invalid_title", "invalid", "invalid", 404)
    return _page(sub.lang, "confirmed_title", "confirmed", "confirmed")


@router.get("/v1/unsubscribe", response_class=HTMLResponse)
async def unsubscribe_page(request: Request, token: Token) -> HTMLResponse:
    """The unsubscribe link opened in a browser: a button that POSTs the one-click form
    (nothing changes on GET)."""
    holder = await _optin(request).holder(token)
    lang = holder.lang if holder is not None else choose_lang(request)
    if holder is None:
        return _page(lang, "invalid_title", "invalid", "invalid", 404)
    return _page(lang, "unsubscribe_title", "unsubscribe", "ask", form=True)


@router.post("/v1/unsubscribe", response_class=HTMLResponse)
async def unsubscribe(request: Request, token: Token) -> HTMLResponse:
    """One-click unsubscribe (RFC 8058: the body ``List-Unsubscribe=One-Click`` is not
    needed): the subscription and its queued messages are removed."""
    sub = await _optin(request).unsubscribe(token)
    if sub is None:
        return _page(choose_lang(request), "invalid_title", "invalid", "invalid", 404)
    return _page(sub.lang, "unsubscribed_title", "unsubscribed", "unsubscribed")
