"""The pages and maintcast.js in a real browser (Debian's headless chromium via Playwright).

Each test serves ``create_app(..., demo=True)`` with the in-process worker on a real Redis,
under a rehearsal clock that reaches the example window's start (2021-08-09 01:00 JST) a few
seconds after the pages are open, so ``maintenance.started`` arrives live over SSE. The
browser runs in America/Los_Angeles with an en-US locale: times must stay in the window's
zone. Every wait is bounded; a screenshot of each page lands in ``test-artifacts/browser``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
import yaml
from playwright.async_api import expect

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line, new_token
from broadcaster.clock import RehearsalClock
from broadcaster.store import Store
from broadcaster.validation import parse_schedule
from tests.support import (
    ARTIFACTS,
    DEFAULTS,
    EXAMPLE,
    free_port,
    jst,
    live_server,
    make_store,
    settings_for,
)
from worker.scheduler import running_worker

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

WINDOW_ID = "webcollect-2021-08"
START = jst(2021, 8, 9, 1)
LEAD_S = 3.0
"""Real seconds between building the rehearsal clock and the window's start."""
MODAL_JA = "メンテナンス中です。時間をおいて再度アクセスしてください。"
XSS = "<img src=x onerror=alert(1)>"
SHOTS = ARTIFACTS / "browser"

# Records, from inside the page, every value of the state hook and the number of banner
# hooks after each DOM mutation (page.evaluate runs through the devtools protocol, so the
# page's strict CSP does not block it).
WATCH_JS = """() => {
  const html = document.documentElement;
  window.__mc = {states: [], banners: [], marker: 42};
  const rec = () => {
    window.__mc.states.push([Date.now(), html.getAttribute('data-maintcast-state')]);
    window.__mc.banners.push(document.querySelectorAll('[data-maintcast-banner]').length);
  };
  rec();
  new MutationObserver(rec).observe(html, {subtree: true, childList: true, attributes: true});
}"""


@dataclass
class Served:
    base: str
    store: Store
    clock: RehearsalClock
    token: str
    http: httpx.AsyncClient

    async def end_window_now(self) -> None:
        """Ops ends the window early through the API (an end at or before now)."""
        r = await self.http.patch(
            f"/v1/windows/{WINDOW_ID}",
            json={"ends_at": "2021-08-09T01:00:00+09:00", "reason": "done early"},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed"


def schedule_text(extra: list[dict[str, Any]] | None = None) -> str:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["windows"].extend(extra or [])
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


@contextlib.asynccontextmanager
async def serving(
    redis: Any,
    redis_url: str,
    prefix: str,
    clock: RehearsalClock,
    *,
    text: str | None = None,
    worker: bool = True,
    port: int | None = None,
    do_import: bool = True,
) -> AsyncIterator[Served]:
    store = make_store(redis, prefix)
    if do_import:
        now = clock.now()
        schedule = parse_schedule(
            text or EXAMPLE.read_text(), source="x", defaults=DEFAULTS, now=now
        )
        await store.import_schedule(schedule, now)
    token = new_token()
    app = create_app(
        settings_for(redis_url, prefix),
        clock=clock,
        demo=True,
        background=(running_worker,) if worker else (),
        tokens=Tokens.parse(entry_line("ops", "admin", token)),
    )
    server = live_server(app, port or 0)
    async with server as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        yield Served(base, store, clock, token, http)


@contextlib.asynccontextmanager
async def la_context(browser: Any) -> AsyncIterator[Any]:
    """A browser context in Los Angeles, in English, that fails on any dialog."""
    ctx = await browser.new_context(
        timezone_id="America/Los_Angeles", locale="en-US", viewport={"width": 1100, "height": 800}
    )
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        await ctx.close()


async def new_page(ctx: Any, dialogs: list[str] | None = None) -> Any:
    page = await ctx.new_page()

    async def on_dialog(dialog: Any) -> None:
        if dialogs is not None:
            dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    return page


async def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def watch(page: Any) -> None:
    await page.evaluate(WATCH_JS)


async def watched(page: Any) -> dict[str, Any]:
    got: dict[str, Any] = await page.evaluate("() => window.__mc")
    assert got["marker"] == 42, "the page was reloaded"
    assert set(got["banners"]) == {1}, f"banner hook count varied: {got['banners']}"
    return got


async def first_flip_ms(page: Any, state: str) -> float:
    """Browser wall time (ms since epoch) at which the state hook first became ``state``."""
    got = await watched(page)
    return float(next(t for t, s in got["states"] if s == state))


async def expect_state(page: Any, state: str, timeout_ms: float) -> None:
    await expect(page.locator("html")).to_have_attribute(
        "data-maintcast-state", state, timeout=timeout_ms
    )


def flip_latency_s(flip_ms: float, clock: RehearsalClock, instant: datetime) -> float:
    return flip_ms / 1000 - clock.wall_time_of(instant).timestamp()


async def test_status_and_admin_go_live_and_back(
    browser: Any, real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    dialogs: list[str] = []
    async with la_context(browser) as ctx:
        status_page = await new_page(ctx, dialogs)
        admin_page = await new_page(ctx, dialogs)
        clock = RehearsalClock(START, real_start=time.time() + LEAD_S)
        async with serving(real_redis, redis_url, key_prefix, clock) as s:
            await status_page.goto(f"{s.base}/status")
            await admin_page.goto(f"{s.base}/admin")
            for page in (status_page, admin_page):
                await watch(page)
                assert (
                    await page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone")
                    == "America/Los_Angeles"
                )
                assert await page.get_attribute("html", "data-maintcast-state") == "normal"
                assert await page.locator("[data-maintcast-banner]").count() == 1
            assert clock.now() < START, "pages took too long to open; the flip already happened"
            cc = status_page.locator('[data-component="webcollect/credit_card"]')
            bank = status_page.locator('[data-component="atobarai/bank_transfer"]')
            await expect(cc).to_have_attribute("data-status", "operational")
            await expect(bank).to_have_attribute("data-status", "operational")
            # before the start the banner announces the window, in its own zone
            banner = status_page.locator("[data-maintcast-banner]")
            await expect(banner).to_be_visible()
            await expect(banner).to_contain_text("2021-08-09 01:00 (Asia/Tokyo, +09:00)")
            await expect(
                status_page.locator(f'#windows li[data-window="{WINDOW_ID}"] .history')
            ).to_contain_text("2021-06-14 01:00 (Asia/Tokyo, +09:00)")
            await shot(status_page, "status-before")

            # the worker publishes maintenance.started at 01:00; both pages follow live
            for page in (status_page, admin_page):
                await expect_state(page, "maintenance", (LEAD_S + 5) * 1000)
            for page in (status_page, admin_page):
                latency = flip_latency_s(await first_flip_ms(page, "maintenance"), clock, START)
                assert 0 <= latency < 3.0, latency
                banner = page.locator("[data-maintcast-banner]")
                await expect(banner).to_be_visible()
                await expect(banner).to_contain_text("2021-08-09 06:00 (Asia/Tokyo")
                await expect(banner).to_have_attribute("data-maintcast-kind", "maintenance")
            await expect(cc).to_have_attribute("data-status", "under_maintenance")
            await expect(cc).to_have_text("Under maintenance")
            await expect(bank).to_have_attribute("data-status", "operational")
            await expect(bank).to_have_text("Operational")
            await expect(admin_page.locator("[data-maintcast-banner]")).to_contain_text(
                "merchant console is unavailable"
            )
            await expect(admin_page.locator("#feed")).to_contain_text("maintenance.started")
            await shot(status_page, "status-during")
            await shot(admin_page, "admin-during")

            # ops ends it early: back to normal, banner hidden, without reload
            await s.end_window_now()
            for page in (status_page, admin_page):
                await expect_state(page, "normal", 5000)
                banner = page.locator("[data-maintcast-banner]")
                await expect(banner).to_be_hidden()
                await expect(banner).to_have_attribute("data-maintcast-kind", "none")
                got = await watched(page)
                assert [st for _, st in got["states"]][-1] == "normal"
            await expect(cc).to_have_attribute("data-status", "operational")
            await expect(bank).to_have_attribute("data-status", "operational")
            # the completed window leaves the list, as on a fresh load
            windows = status_page.locator("#windows")
            await expect(windows.locator(f'li[data-window="{WINDOW_ID}"]')).to_have_count(0)
            await expect(windows).to_have_text("Nothing scheduled")
            await expect(admin_page.locator("#feed")).to_contain_text("maintenance.ended")
            await expect(admin_page.locator("#feed")).to_contain_text("done early")
            await shot(status_page, "status-after")
            await shot(admin_page, "admin-after")
    assert dialogs == []


async def test_checkout_blocks_during_maintenance_then_goes_through(
    browser: Any, real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    async with la_context(browser) as ctx:
        page = await new_page(ctx)
        posts: list[str] = []
        page.on(
            "request",
            lambda req: posts.append(req.method) if "/demo/api/token" in req.url else None,
        )
        clock = RehearsalClock(START, real_start=time.time() + LEAD_S)
        async with serving(real_redis, redis_url, key_prefix, clock) as s:
            await page.goto(f"{s.base}/demo/checkout?lang=ja")
            await watch(page)
            assert clock.now() < START
            assert await page.get_attribute("html", "data-maintcast-state") == "normal"
            await expect_state(page, "maintenance", (LEAD_S + 5) * 1000)

            await page.click("#card-form button[type=submit]")
            err = page.locator("[data-maintcast-form-error]")
            await expect(err).to_be_visible()
            await expect(err).to_have_text(MODAL_JA)
            assert (await err.text_content()) == MODAL_JA
            await asyncio.sleep(0.5)
            assert posts == [], "the guarded form still posted"
            assert (await page.text_content("#checkout-result")) == ""
            await expect(page.locator("[data-maintcast-banner]")).to_contain_text(MODAL_JA)
            await shot(page, "checkout-during")

            # the API behind it is gated on the server too (channel token_embedded)
            r = await s.http.post("/demo/api/token", json={}, headers={"Accept-Language": "ja"})
            assert r.status_code == 503
            assert int(r.headers["retry-after"]) > 0
            body = r.json()
            assert body["errorCode"] == "Z010000000"
            assert body["processed"] is False
            assert body["until"] == "2021-08-09T06:00:00+09:00"
            assert body["message"].startswith("メンテナンス中のため、トークンを発行できません")

            await s.end_window_now()
            await expect_state(page, "normal", 5000)
            await page.click("#card-form button[type=submit]")
            result = page.locator("#checkout-result")
            await expect(result).to_have_attribute("data-result", "ok")
            await expect(result).to_contain_text("tok_")
            await expect(err).to_be_hidden()
            assert posts == ["POST"]
            await watched(page)
            await shot(page, "checkout-after")


async def test_maintenance_page_shows_the_window_and_its_end(
    browser: Any, real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    async with la_context(browser) as ctx:
        page = await new_page(ctx)
        clock = RehearsalClock(START, real_start=time.time() + LEAD_S)
        async with serving(real_redis, redis_url, key_prefix, clock) as s:
            await page.goto(f"{s.base}/maintenance?lang=ja")
            await watch(page)
            assert clock.now() < START
            when = page.locator("#mt-when")
            span = "2021-08-09 01:00 (Asia/Tokyo, +09:00) – 2021-08-09 06:00 (Asia/Tokyo, +09:00)"
            await expect(when).to_have_text(span)
            await expect(page.locator("#mt-title")).to_have_text(
                "「クロネコwebコレクト」システムメンテナンス実施のお知らせ"
            )
            await expect_state(page, "maintenance", (LEAD_S + 5) * 1000)
            ended = page.locator("#mt-ended")
            await expect(ended).to_be_hidden()
            await expect(page.locator("#mt-message")).to_contain_text("現在メンテナンス中のため")
            await expect(when).to_contain_text("2021-08-09 01:00")
            await expect(when).to_contain_text("Asia/Tokyo")
            await expect(page.locator("address.contact")).to_contain_text("000-0000-0000")
            await shot(page, "maintenance-during")

            await s.end_window_now()
            await expect(ended).to_be_visible(timeout=5000)
            await expect_state(page, "normal", 1000)
            await expect(page.locator("#mt-message")).to_have_text("メンテナンスは終了しました。")
            await expect(ended.locator("a")).to_have_text("お支払い手続きに戻る")
            await watched(page)
            await shot(page, "maintenance-after")


async def test_event_source_recovers_after_a_server_restart(
    browser: Any, real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    port = free_port()
    async with la_context(browser) as ctx:
        page = await new_page(ctx)
        streams: list[Any] = []
        page.on("request", lambda req: streams.append(req) if "/v1/stream" in req.url else None)
        first = RehearsalClock(jst(2021, 8, 9, 0, 50))
        async with serving(real_redis, redis_url, key_prefix, first, worker=False, port=port) as s:
            await page.goto(f"{s.base}/status?lang=en")
            await watch(page)
            # the first SSE status was applied (the script marks the banner's kind)
            await expect(
                page.locator("[data-maintcast-banner][data-maintcast-kind]")
            ).to_have_count(1)
            assert await page.get_attribute("html", "data-maintcast-state") == "normal"
            store = s.store
        # server down: the window starts meanwhile (another process published it)
        docs = await store.reconcile(START)
        assert [(d["seq"], d["cause"]["type"]) for d in docs] == [(2, "maintenance.started")]
        assert await page.get_attribute("html", "data-maintcast-state") == "normal"
        second = RehearsalClock(jst(2021, 8, 9, 1, 0, 5))
        async with serving(
            real_redis, redis_url, key_prefix, second, worker=False, port=port, do_import=False
        ):
            await expect_state(page, "maintenance", 10_000)
            await expect(
                page.locator('[data-component="webcollect/credit_card"]')
            ).to_have_attribute("data-status", "under_maintenance")
            await expect(page.locator("[data-maintcast-banner]")).to_contain_text(
                "2021-08-09 06:00 (Asia/Tokyo"
            )
            await watched(page)
            # the reconnect resumed from the last seen id (Last-Event-ID header of the
            # browser's own retry, or ?last_event_id= when maintcast.js opened a new source)
            assert len(streams) >= 2
            resumed = [
                (await req.all_headers()).get("last-event-id") == "1"
                or "last_event_id=1" in req.url
                for req in streams[1:]
            ]
            assert any(resumed), [req.url for req in streams]
            await shot(page, "status-after-restart")


async def test_titles_are_text_never_html(
    browser: Any, real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    xss_window = {
        "id": "xss-test",
        "title": {"ja": XSS, "en": XSS},
        "description": {"ja": XSS, "en": XSS},
        "starts_at": "2021-08-02T01:00:00+09:00",
        "ends_at": "2021-08-02T02:00:00+09:00",
        "timezone": "Asia/Tokyo",
        "announce_at": "2021-07-01T00:00:00+09:00",
        "affected": {"webcollect": ["credit_card"]},
    }
    dialogs: list[str] = []
    async with la_context(browser) as ctx:
        clock = RehearsalClock(jst(2021, 8, 1, 12))
        async with serving(
            real_redis, redis_url, key_prefix, clock, text=schedule_text([xss_window])
        ) as s:
            raw = (await s.http.get("/status")).text
            assert "&lt;img src=x onerror=alert(1)&gt;" in raw
            assert "<img" not in raw

            page = await new_page(ctx, dialogs)
            await page.goto(f"{s.base}/status?lang=en")
            await watch(page)
            banner = page.locator("[data-maintcast-banner]")
            await expect(banner).to_have_attribute("data-maintcast-kind", "upcoming")
            await expect(banner).to_contain_text(XSS)
            await expect(banner).to_contain_text("2021-08-02 01:00 (Asia/Tokyo, +09:00)")
            item = page.locator('#windows li[data-window="xss-test"] strong')
            await expect(item).to_have_text(XSS)
            await asyncio.sleep(0.5)  # let any injected handler fire
            assert await page.locator("img").count() == 0
            await shot(page, "status-xss")

            for path in ("/maintenance?lang=en", "/demo/checkout?lang=en"):
                other = await new_page(ctx, dialogs)
                await other.goto(f"{s.base}{path}")
                await expect(other.locator("[data-maintcast-banner]")).to_contain_text(XSS)
                if path.startswith("/maintenance"):
                    await expect(other.locator("#mt-title")).to_have_text(XSS)
                await asyncio.sleep(0.3)
                assert await other.locator("img").count() == 0
                await shot(other, "xss-" + path.strip("/").split("?")[0].replace("/", "-"))

            # an override reason is public text too, shown live in the banner and the feed
            admin = await new_page(ctx, dialogs)
            await admin.goto(f"{s.base}/admin?lang=en")
            await expect(admin.locator("#feed li").first).to_be_attached()
            reason = "<img src=y onerror=alert(2)>"
            r = await s.http.put(
                "/v1/override",
                json={"mode": "maintenance", "reason": reason, "ttl_s": 600},
                headers={"Authorization": f"Bearer {s.token}"},
            )
            assert r.status_code == 200, r.text
            for p in (page, admin):
                await expect_state(p, "maintenance", 5000)
            await expect(page.locator("[data-maintcast-banner]")).to_contain_text(reason)
            await expect(admin.locator("#feed")).to_contain_text(reason)
            await asyncio.sleep(0.3)
            for p in (page, admin):
                assert await p.locator("img").count() == 0
            await watched(page)
            await shot(admin, "admin-xss")
    assert dialogs == []


async def test_csp_on_every_page_and_the_client_script(
    browser: Any, real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    clock = RehearsalClock(jst(2021, 8, 1, 12))
    async with la_context(browser) as ctx, serving(real_redis, redis_url, key_prefix, clock) as s:
        for path in ("/status", "/maintenance", "/admin", "/demo/checkout"):
            r = await s.http.get(path)
            assert r.status_code == 200, path
            csp = r.headers.get("content-security-policy", "")
            assert "script-src 'self'" in csp, path
            assert "default-src 'self'" in csp, path
            assert "unsafe-inline" not in csp, path
            assert "unsafe-eval" not in csp, path
            assert r.headers["content-type"].startswith("text/html"), path

            page = await new_page(ctx)
            problems: list[str] = []

            def on_console(m: Any, problems: list[str] = problems) -> None:
                if m.type == "error":
                    problems.append(m.text)

            def on_error(e: Any, problems: list[str] = problems) -> None:
                problems.append(str(e))

            page.on("console", on_console)
            page.on("pageerror", on_error)
            resp = await page.goto(f"{s.base}{path}")
            assert resp is not None
            assert resp.headers.get("content-security-policy") == csp
            await expect(
                page.locator("[data-maintcast-banner][data-maintcast-kind]")
            ).to_have_count(1)
            assert problems == [], (path, problems)
            await shot(page, "csp-" + path.strip("/").replace("/", "-"))
            await page.close()
        for name in ("maintcast.js", "pages.js"):
            r = await s.http.get(f"/static/{name}")
            assert r.status_code == 200
            ctype = r.headers["content-type"].split(";")[0].strip()
            assert ctype in ("text/javascript", "application/javascript"), ctype
            assert "Maintcast" in r.text


async def test_admin_keeps_the_token_in_memory_only(
    browser: Any, real_redis: Any, redis_url: str, key_prefix: str
) -> None:
    """The ops token typed into /admin authorises its requests but is kept in a script
    variable only: nothing in sessionStorage, localStorage or cookies, a stale copy that an
    older page left in sessionStorage is removed, and after a reload it is gone."""
    clock = RehearsalClock(jst(2021, 8, 1, 12))
    async with la_context(browser) as ctx, serving(real_redis, redis_url, key_prefix, clock) as s:
        page = await new_page(ctx)
        await page.goto(f"{s.base}/admin?lang=en")
        await page.evaluate("() => sessionStorage.setItem('maintcast-token', 'stale')")
        await page.reload()
        await expect(page.locator("#feed li").first).to_be_attached()
        assert await page.evaluate("() => sessionStorage.getItem('maintcast-token')") is None
        assert await page.locator("#token").input_value() == ""

        await page.locator("#token").fill(s.token)
        await page.locator("#token").press("Tab")  # the change event
        form = page.locator("#override-form")
        await form.locator("[name=reason]").fill("token test")
        await form.locator("[name=ttl]").fill("10")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#override-result")).to_have_text("Set")
        await expect_state(page, "maintenance", 5000)  # the page's own stream shows it
        status = (await s.http.get("/v1/status")).json()
        assert status["state"] == "maintenance", status
        assert status["cause"]["actor"] == "ops", status

        stored = await page.evaluate(
            "() => [sessionStorage.length, localStorage.length, document.cookie]"
        )
        assert stored == [0, 0, ""], stored
        assert s.token not in await page.content()

        await page.reload()
        await expect(page.locator("#feed li").first).to_be_attached()
        assert await page.locator("#token").input_value() == ""
        await page.locator("#override-clear").click()
        await expect(page.locator("#override-result")).to_contain_text("Error 401")
        assert (await s.http.get("/v1/status")).json()["state"] == "maintenance"
