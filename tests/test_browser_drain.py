"""The drain and the reserve in a real browser (Debian's headless chromium via Playwright).

``create_app(..., demo=True)`` with the in-process worker on a real Redis serves the seed
notice with a 62 s drain, a reserve to 07:00 and two notes, under a rehearsal clock that
reaches the drain's start a few seconds after the pages are open: ``maintenance.draining``
arrives live over SSE, the checkout's banner counts the minutes down (2, then 1), its card
form still goes through (a payment under way may finish) while a form guarded with
``blockOnDrain`` is held, and the status page marks the components ``draining`` and shows
the reserve and the notes newest first. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml
from playwright.async_api import expect

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line, new_token
from broadcaster.clock import RehearsalClock
from broadcaster.validation import parse_schedule
from tests.support import ARTIFACTS, DEFAULTS, EXAMPLE, jst, live_server, make_store, settings_for
from worker.scheduler import running_worker

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

DRAIN_S = 62
START = jst(2021, 8, 9, 1)
DRAIN_START = jst(2021, 8, 9, 0, 58, 58)
LEAD_S = 3.0
"""Real seconds between building the rehearsal clock and the drain's start."""
MODAL_JA = "メンテナンス中です。時間をおいて再度アクセスしてください。"
COUNTDOWN = "メンテナンス開始まで あと{}分です。お支払いはお早めにお済ませください。"
RESERVE_JA = "終了予定 06:00（最長 07:00）"
SHOTS = ARTIFACTS / "browser"

# a form guarded with blockOnDrain, added from the test (devtools, so the page's CSP allows it)
BLOCKING_FORM_JS = """() => {
  const f = document.createElement('form');
  f.id = 'strict-form';
  f.innerHTML = '<button type="submit">pay</button>';
  document.body.appendChild(f);
  window.__submitted = 0;
  Maintcast.guardForm(f, {blockOnDrain: true});
  f.addEventListener('submit', (ev) => { ev.preventDefault(); window.__submitted += 1; });
}"""


def schedule_text() -> str:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["windows"][0].update(
        drain_s=DRAIN_S,
        latest_end="2021-08-09T07:00",
        notes=[
            {"at": "2021-08-01T10:00", "message": {"ja": "最初のお知らせ", "en": "first"}},
            {"at": "2021-08-05T10:00", "message": {"ja": "二番目のお知らせ", "en": "second"}},
        ],
    )
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


@contextlib.asynccontextmanager
async def serving(
    redis: Any, redis_url: str, prefix: str, clock: RehearsalClock
) -> AsyncIterator[str]:
    store = make_store(redis, prefix)
    now = clock.now()
    schedule = parse_schedule(schedule_text(), source="x", defaults=DEFAULTS, now=now)
    await store.import_schedule(schedule, now)
    app = create_app(
        settings_for(redis_url, prefix),
        clock=clock,
        demo=True,
        background=(running_worker,),
        tokens=Tokens.parse(entry_line("ops", "admin", new_token())),
    )
    async with live_server(app) as base:
        yield base


async def test_checkout_counts_down_the_drain_and_lets_payments_finish(
    browser: Any, real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    ctx = await browser.new_context(
        timezone_id="America/Los_Angeles", locale="en-US", viewport={"width": 1100, "height": 800}
    )
    ctx.set_default_timeout(10_000)
    dialogs: list[str] = []
    ctx.on("dialog", lambda d: dialogs.append(d.message))
    try:
        checkout, status = await ctx.new_page(), await ctx.new_page()
        clock = RehearsalClock(DRAIN_START, real_start=time.time() + LEAD_S)
        async with serving(real_redis, redis_url, key_prefix, clock) as base:
            await checkout.goto(f"{base}/demo/checkout?lang=ja")
            await status.goto(f"{base}/status?lang=ja")
            assert clock.now() < DRAIN_START, "the pages took too long to open"
            banner = checkout.locator("[data-maintcast-banner]")
            await expect(banner).to_have_attribute("data-maintcast-kind", "upcoming")
            await expect(banner).to_contain_text(RESERVE_JA)
            assert await checkout.get_attribute("html", "data-maintcast-state") == "normal"

            html = checkout.locator("html")
            await expect(html).to_have_attribute(
                "data-maintcast-state", "draining", timeout=(LEAD_S + 5) * 1000
            )
            await expect(banner).to_have_attribute("data-maintcast-kind", "draining")
            await expect(banner).to_contain_text(COUNTDOWN.format(2))
            await expect(banner).to_be_visible()
            # 62 s before the start on the server's clock; 2 s later one minute is left
            await expect(banner).to_contain_text(COUNTDOWN.format(1), timeout=5000)
            await expect(banner).to_contain_text(RESERVE_JA)
            await checkout.screenshot(path=str(SHOTS / "checkout-draining.png"), full_page=True)

            # the card form still goes through: the demo API is not an on_drain route
            await checkout.click("#card-form button[type=submit]")
            result = checkout.locator("#checkout-result")
            await expect(result).to_have_attribute("data-result", "ok")
            await expect(checkout.locator("#card-form [data-maintcast-form-error]")).to_be_hidden()

            # a form guarded with blockOnDrain is held, with the channel's message
            await checkout.evaluate(BLOCKING_FORM_JS)
            await checkout.click("#strict-form button")
            error = checkout.locator("#strict-form [data-maintcast-form-error]")
            await expect(error).to_have_text(MODAL_JA)
            assert await checkout.evaluate("() => window.__submitted") == 0

            # the status page: components draining, the reserve and the notes, newest first
            await expect(status.locator("html")).to_have_attribute(
                "data-maintcast-state", "draining"
            )
            card = status.locator('[data-component="webcollect/credit_card"]')
            await expect(card).to_have_attribute("data-status", "draining")
            await expect(card).to_have_text("まもなくメンテナンス")
            bank = status.locator('[data-component="atobarai/bank_transfer"]')
            await expect(bank).to_have_attribute("data-status", "operational")
            item = status.locator('#windows li[data-window="webcollect-2021-08"]')
            await expect(item.locator(".when")).to_contain_text(RESERVE_JA)
            await expect(item.locator(".notes li")).to_have_count(2)
            notes = await item.locator(".notes li").all_text_contents()
            assert "二番目のお知らせ" in notes[0], notes
            assert "最初のお知らせ" in notes[1], notes
            await status.screenshot(path=str(SHOTS / "status-draining.png"), full_page=True)

            async with httpx.AsyncClient(base_url=base) as http:
                en = (await http.get("/demo/checkout?lang=en")).text
            assert "Maintenance starts in 1 min. Please complete your payment soon." in en
            assert 'data-maintcast-state="draining"' in en
    finally:
        await ctx.close()
    assert dialogs == []
