"""Ops visibility of notifications: ``GET /v1/subscriptions`` lists each subscription with
its latest delivery and pending count, and ``/admin`` shows them (its script reads the
admin API with the token typed into the page) in Chromium."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.notify.messages import Outcome
from broadcaster.store import Store
from broadcaster.store.notify import NotifyStore
from tests.support import FixedClock, import_example, jst, live_server, settings_for

ADMIN = "admin-token-1"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@contextlib.asynccontextmanager
async def app_over(fake_redis: Any, key_prefix: str) -> AsyncIterator[tuple[Any, Store]]:
    clock = FixedClock(jst(2021, 8, 1, 12))
    app = create_app(
        settings_for(None, key_prefix),
        redis=fake_redis,
        clock=clock,
        tokens=Tokens.parse(entry_line("boss", "admin", ADMIN)),
    )
    store: Store = app.state.store
    await import_example(store, clock.now())
    yield app, store


async def deliver_one(store: Store, sub_id: str, outcome: Outcome) -> None:
    notify = NotifyStore.of(store)
    claimed = await notify.claim(sub_id, time.time() + 60, 15.0, fence=None)  # due by then
    assert claimed is not None
    await notify.settle(sub_id, claimed[1], outcome, time.time(), (5.0,))


async def test_the_list_shows_the_last_delivery(fake_redis: Any, key_prefix: str) -> None:
    async with (
        app_over(fake_redis, key_prefix) as (app, store),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        for sid in ("hook", "quiet"):
            r = await c.post(
                "/v1/subscriptions",
                json={"id": sid, "kind": "webhook", "url": f"https://m.example/{sid}"},
                headers=AUTH,
            )
            assert r.status_code == 201
        ping = (await c.post("/v1/subscriptions/hook/test", headers=AUTH)).json()["message_id"]
        rows = {s["id"]: s for s in (await c.get("/v1/subscriptions", headers=AUTH)).json()[
            "subscriptions"]}  # fmt: skip
        assert rows["quiet"]["last_delivery"] is None
        assert rows["quiet"]["pending_messages"] == 0
        last = rows["hook"]["last_delivery"]
        assert (last["message_id"], last["type"], last["state"], last["attempt"]) == (
            ping, "ping", "pending", 0,
        )  # fmt: skip
        assert rows["hook"]["pending_messages"] == 1
        await deliver_one(store, "hook", Outcome("retry", status_code=503))
        await deliver_one(store, "hook", Outcome("delivered", status_code=204))
        rows = {s["id"]: s for s in (await c.get("/v1/subscriptions", headers=AUTH)).json()[
            "subscriptions"]}  # fmt: skip
        last = rows["hook"]["last_delivery"]
        assert (last["state"], last["attempt"], last["status_code"]) == ("delivered", 2, 204)
        assert rows["hook"]["pending_messages"] == 0
        page = await c.get("/admin?lang=en")
        assert 'id="subscriptions"' in page.text
        assert '<script src="/static/subscriptions.js"></script>' in page.text
        script = await c.get("/static/subscriptions.js")
        assert script.status_code == 200
        assert "/v1/subscriptions" in script.text


@pytest.mark.browser
async def test_admin_page_lists_subscriptions(
    browser: Any, fake_redis: Any, key_prefix: str
) -> None:
    from playwright.async_api import expect

    async with app_over(fake_redis, key_prefix) as (app, store), live_server(app) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            for body in (
                {"id": "hook", "kind": "webhook", "url": "https://m.example/<b>h</b>"},
                {"id": "mail", "kind": "email", "email": "ops@example.jp", "lang": "en"},
            ):
                r = await c.post("/v1/subscriptions", json=body, headers=AUTH)
                assert r.status_code == 201, r.text
            await c.post("/v1/subscriptions/hook/test", headers=AUTH)
        ctx = await browser.new_context(locale="en-US")
        ctx.set_default_timeout(10_000)
        try:
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{base}/admin?lang=en")
            await page.locator("#token").fill("wrong")
            await page.locator("#token").press("Tab")
            await expect(page.locator("#subs-result")).to_contain_text("Error 401")
            await page.locator("#token").fill(ADMIN)
            await page.locator("#token").press("Tab")
            hook = page.locator('tr[data-subscription="hook"]')
            await expect(hook.locator("[data-delivery]")).to_have_attribute(
                "data-delivery", "pending"
            )
            await expect(hook).to_contain_text("https://m.example/<b>h</b>")  # text, not HTML
            await expect(hook.locator("b")).to_have_count(0)
            mail = page.locator('tr[data-subscription="mail"]')
            await expect(mail.locator("[data-delivery]")).to_contain_text("nothing sent yet")
            await expect(mail).to_contain_text("ops@example.jp")
            await deliver_one(store, "hook", Outcome("delivered", status_code=204))
            await page.locator("#subs-reload").click()
            await expect(hook.locator("[data-delivery]")).to_have_attribute(
                "data-delivery", "delivered"
            )
            await expect(hook.locator("[data-delivery]")).to_contain_text("204")
            assert ADMIN not in await page.content()
            assert errors == []
        finally:
            await ctx.close()
