"""Public self-service subscription with double opt-in, over the ASGI app, a real Redis, a
delivering worker and a real SMTP server: the same 202 for unknown, pending and confirmed
addresses; the confirmation link activates (once) and applies the request; a pending
subscription gets nothing else; one-click unsubscribe (RFC 8058) from the header of a
notice; a GET only asks; the per-client rate limit answers 429 with Retry-After; tokens
never reach the access log; requests never confirmed are swept."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.clock import SystemClock
from broadcaster.notify.mailconfig import MailConfig
from broadcaster.notify.messages import CONFIRM
from broadcaster.notify.optin import CONFIRM_TTL_S, address_hash
from broadcaster.store import Store
from broadcaster.store.notify import NotifyStore
from broadcaster.store.optin import OptInStore
from broadcaster.subscribe_api import RedactTokens
from tests.mail_support import Captured, Mailbox, smtp_server
from tests.notify_support import FAST, delivering, override, seeded
from tests.support import FixedClock, eventually_async, import_example, jst, settings_for

PUBLIC = "https://status.example.com"
FROM = "Maintcast <noreply@status.example.com>"
ADMIN = "admin-token-1"
LINK = re.compile(r"https://status\.example\.com(/v1/subscribe/confirm\?token=[A-Za-z0-9_%-]+)")


@dataclass
class Ctx:
    client: httpx.AsyncClient
    store: Store
    box: Mailbox

    async def subscribe(self, email: str, **body: Any) -> httpx.Response:
        return await self.client.post("/v1/subscribe", json={"email": email, **body})

    async def mails_to(self, address: str, n: int) -> list[Captured]:
        await eventually_async(
            lambda: len(self.box.to(address)) >= n, f"{n} mails to {address}", timeout=10
        )
        return self.box.to(address)

    async def subs(self) -> dict[str, Any]:
        subs = await NotifyStore.of(self.store).subscriptions()
        return {s.email: s for s in subs if s.email is not None}


@contextlib.asynccontextmanager
async def service(
    real_redis: Any, key_prefix: str, *, mail: bool = True, **settings: Any
) -> AsyncIterator[Ctx]:
    """The example in a real Redis, the app over it, a worker delivering mail to a real
    SMTP server."""
    clock: Any = SystemClock()
    store = await seeded(real_redis, key_prefix, clock)
    box = Mailbox()
    async with smtp_server(box) as port:
        smtp = f"smtp://127.0.0.1:{port}"
        extra = {"smtp_url": smtp, "mail_from": FROM, "public_url": PUBLIC} if mail else {}
        app = create_app(
            settings_for(None, key_prefix, **extra, **settings),
            redis=real_redis,
            clock=clock,
            tokens=Tokens.parse(entry_line("boss", "admin", ADMIN)),
        )
        config = dataclasses.replace(FAST, mail=MailConfig.of(smtp, FROM, PUBLIC))
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
            delivering(store, clock, config),
        ):
            yield Ctx(client, store, box)


async def confirm_link(ctx: Ctx, address: str, n: int) -> str:
    """The path of the link in the ``n``-th mail to ``address`` (a confirmation)."""
    mail = (await ctx.mails_to(address, n))[n - 1]
    assert mail.subject == "【要確認】メンテナンス情報メール配信登録のご確認" or mail.subject == (
        "Confirm your subscription to maintenance notices"
    )
    found = LINK.search(mail.text())
    assert found, mail.text()
    assert f'href="{PUBLIC}{found[1]}"' in mail.html()
    return found[1]


async def test_double_opt_in_answers_the_same_for_every_address(
    real_redis: Any, key_prefix: str
) -> None:
    async with service(real_redis, key_prefix) as ctx:
        first = await ctx.subscribe("shop@example.jp", lang="en", scope={"webcollect": ["*"]})
        assert first.status_code == 202
        pending = (await ctx.subs())["shop@example.jp"]
        assert pending.pending
        assert not pending.active
        assert pending.actor == "self-service"
        r = await ctx.client.get(
            f"/v1/subscriptions/{pending.id}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert r.json()["state"] == "pending"
        link = await confirm_link(ctx, "shop@example.jp", 1)
        checked = await ctx.client.head(link)  # a link checker's HEAD confirms nothing
        assert checked.status_code == 200
        assert (await ctx.subs())["shop@example.jp"].pending
        page = await ctx.client.get(link)
        assert page.status_code == 200
        assert 'data-result="confirmed"' in page.text
        assert 'lang="en"' in page.text
        sub = (await ctx.subs())["shop@example.jp"]
        assert sub.active
        assert sub.lang == "en"
        assert sub.scope == {"webcollect": ("*",)}
        again = await ctx.client.get(link)  # used once
        assert again.status_code == 404
        assert 'data-result="invalid"' in again.text

        # known and confirmed, unknown, and the same again at once: one answer for all
        # the resend window for this address passes
        await real_redis.delete(ctx.store.keys.signup_sent(address_hash("shop@example.jp")))
        known = await ctx.subscribe("shop@example.jp", lang="ja")
        unknown = await ctx.subscribe("new@example.jp")
        repeated = await ctx.subscribe("new@example.jp")
        for r in (known, unknown, repeated):
            assert (r.status_code, r.headers["content-type"], r.content) == (
                first.status_code,
                first.headers["content-type"],
                first.content,
            )
        assert (await ctx.subs())["shop@example.jp"].lang == "en"  # unchanged until confirmed
        link = await confirm_link(ctx, "shop@example.jp", 2)
        assert (await ctx.client.get(link)).status_code == 200
        changed = (await ctx.subs())["shop@example.jp"]
        assert (changed.id, changed.lang, changed.scope) == (sub.id, "ja", None)
        await ctx.mails_to("new@example.jp", 1)
        assert len(ctx.box.to("new@example.jp")) == 1  # the repeat sent no second mail


async def test_a_pending_subscription_gets_only_its_confirmation(
    real_redis: Any, key_prefix: str
) -> None:
    async with service(real_redis, key_prefix) as ctx:
        assert (await ctx.subscribe("late@example.jp")).status_code == 202
        link = await confirm_link(ctx, "late@example.jp", 1)
        await override(ctx.store, SystemClock())  # while pending: not for this address
        notify = NotifyStore.of(ctx.store)
        sub = (await ctx.subs())["late@example.jp"]
        assert [m.type for m in await notify.deliveries(sub.id, 10)] == [CONFIRM]
        assert (await ctx.client.get(link)).status_code == 200
        seq = await override(ctx.store, SystemClock(), mode="normal")
        [_, notice] = await ctx.mails_to("late@example.jp", 2)
        assert notice.message["Message-ID"] == f"<msg_{seq}.{sub.id}@status.example.com>"


async def test_one_click_unsubscribe(real_redis: Any, key_prefix: str) -> None:
    async with service(real_redis, key_prefix) as ctx:
        await ctx.subscribe("bye@example.jp")
        assert (await ctx.client.get(await confirm_link(ctx, "bye@example.jp", 1))).is_success
        await override(ctx.store, SystemClock())
        _, notice = await ctx.mails_to("bye@example.jp", 2)
        assert notice.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = str(notice.message["List-Unsubscribe"]).strip("<>")
        assert url.startswith(f"{PUBLIC}/v1/unsubscribe?token=")
        path = url[len(PUBLIC) :]
        ask = await ctx.client.get(path)  # a browser, or a link checker: nothing changes
        assert ask.status_code == 200
        assert '<form method="post">' in ask.text
        assert "bye@example.jp" in await ctx.subs()
        one_click = await ctx.client.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code == 200
        assert 'data-result="unsubscribed"' in one_click.text
        assert "bye@example.jp" not in await ctx.subs()
        assert (await ctx.client.post(path)).status_code == 404  # already done
        forged = urlsplit(url).query.replace("token=", "token=x")
        assert (await ctx.client.post(f"/v1/unsubscribe?{forged}")).status_code == 404


async def test_rate_limit_per_client(real_redis: Any, key_prefix: str) -> None:
    async with service(real_redis, key_prefix, subscribe_per_hour=2) as ctx:
        for i in range(2):
            assert (await ctx.subscribe(f"a{i}@example.jp")).status_code == 202
        r = await ctx.subscribe("a3@example.jp")
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "too_many_requests"
        assert 1 <= int(r.headers["retry-after"]) <= 1800  # one request back per 30 min


async def test_bad_requests_and_a_deployment_without_mail(real_redis: Any, key_prefix: str) -> None:
    async with service(real_redis, key_prefix) as ctx:
        for bad in ("not an address", "a\x00b@example.jp", "a@example.jp\r\nBcc: x@y.jp"):
            r = await ctx.subscribe(bad)
            assert r.status_code == 422, bad
            assert r.json()["error"]["field"] == "email", bad
        r = await ctx.subscribe("a@example.jp", scope={"nope": ["*"]})
        assert r.status_code == 422
        assert r.json()["error"]["field"].startswith("scope")
        r = await ctx.client.post("/v1/subscribe", json={"email": "a@example.jp", "x": 1})
        assert r.status_code == 422
    async with service(real_redis, key_prefix + "b", mail=False) as ctx:
        assert (await ctx.subscribe("a@example.jp")).status_code == 404
        assert (await ctx.client.get("/v1/unsubscribe?token=a.b")).status_code == 404


def test_tokens_never_reach_the_access_log(caplog: pytest.LogCaptureFixture) -> None:
    access = logging.getLogger("uvicorn.access.t")
    access.addFilter(RedactTokens())
    with caplog.at_level(logging.INFO, logger="uvicorn.access.t"):
        access.info(
            '%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET",
            "/v1/subscribe/confirm?token=SECRET&lang=ja", "1.1", 200,
        )  # fmt: skip
    assert caplog.messages == [
        '1.2.3.4 - "GET /v1/subscribe/confirm?token=***&lang=ja HTTP/1.1" 200'
    ]


async def test_requests_never_confirmed_are_swept(fake_redis: Any, key_prefix: str) -> None:
    from tests.support import make_store

    store = make_store(fake_redis, key_prefix)
    clock = FixedClock(jst(2021, 8, 1))
    await import_example(store, clock.now())
    optin = OptInStore(NotifyStore.of(store))
    assert await optin.request("x@example.jp", "ja", None, clock.now(), 0.0, lambda: "e-x")
    assert await optin.sweep(clock.now() + timedelta(seconds=CONFIRM_TTL_S - 1)) == []
    assert await optin.sweep(clock.now() + timedelta(seconds=CONFIRM_TTL_S + 1)) == ["e-x"]
    assert await NotifyStore.of(store).subscriptions() == []
