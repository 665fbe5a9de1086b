"""``/maintenance?return=``: only a same-origin path is rendered as the way back (issue 12,
item 1). The validator over a table of variants, and the rendered link as real Chromium
resolves it (browsers read ``\\`` as ``/`` and drop tabs and line breaks, so the server's
view of a path is not enough)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from broadcaster.app import create_app
from broadcaster.clock import RehearsalClock
from broadcaster.pages.routes import DEFAULT_RETURN, RETURN_MAX, safe_return
from broadcaster.validation import parse_schedule
from tests.support import DEFAULTS, EXAMPLE, jst, live_server, settings_for

EVIL = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "/%5Cevil.example",
    "/%5cevil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "/\t/evil.example",
    "/%09/evil.example",
    "/\n/evil.example",
    "/%0A/evil.example",
    "/\r/evil.example",
    "/%0D%0A/evil.example",
    "/ /evil.example",
    "/%20/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\x00/evil.example",
    "/%00/evil.example",
    "/\x7f/evil.example",
    "/\x85/evil.example",
    "/\u00a0/evil.example",
    "/\u2028/evil.example",
    "/\u3000/evil.example",
    "http://evil.example",
    "https://evil.example/status",
    "HTTP://evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "status",
    "",
    "/" + "a" * RETURN_MAX,
]
SAFE = [
    "/status",
    "/demo/checkout",
    "/demo/checkout?step=2&lang=ja",
    "/checkout#pay",
    "/a/b/../c",
    "/@evil.example",
    "/:evil.example",
    "/%E3%81%8A%E6%94%AF%E6%89%95%E3%81%84",
    "/お支払い",
    "/a%2Fb",
]


@pytest.mark.parametrize("value", EVIL)
def test_refused_returns_fall_back_to_the_default(value: str) -> None:
    assert safe_return(value) == DEFAULT_RETURN
    assert safe_return(value, "/demo/checkout") == "/demo/checkout"


@pytest.mark.parametrize("value", SAFE)
def test_same_origin_paths_are_kept(value: str) -> None:
    assert safe_return(value) == value


def test_missing_return_is_the_default() -> None:
    assert safe_return(None) == DEFAULT_RETURN


@contextlib.asynccontextmanager
async def pages(fake_redis: Any, key_prefix: str) -> AsyncIterator[str]:
    clock = RehearsalClock(jst(2021, 6, 1, 10), 1.0)
    app = create_app(settings_for(None, key_prefix), redis=fake_redis, clock=clock, demo=True)
    schedule = parse_schedule(
        EXAMPLE.read_text(encoding="utf-8"), source="example", defaults=DEFAULTS, now=clock.now()
    )
    await app.state.store.import_schedule(schedule, clock.now())
    async with live_server(app) as base:
        yield base


async def test_rendered_link_over_http(fake_redis: Any, key_prefix: str) -> None:
    """The server renders the default for every refused value, the value itself otherwise."""
    async with pages(fake_redis, key_prefix) as base, httpx.AsyncClient(base_url=base) as http:
        for value, want in [*((v, DEFAULT_RETURN) for v in EVIL), ("/demo/checkout", None)]:
            r = await http.get("/maintenance", params={"return": value})
            assert r.status_code == 200
            href = r.text.split('id="mt-ended"', 1)[1].split('href="', 1)[1].split('"', 1)[0]
            assert href == (want or value).replace("&", "&amp;"), value


# What a link looks like on the wire: the query string as an attacker would send it (raw
# backslashes and tabs that a browser's own URL parser would otherwise normalise first).
RAW_QUERIES = [
    "/%5Cevil.example",
    "/%09/evil.example",
    "%2F%5Cevil.example",
    "%2F%09%2Fevil.example",
    "%2F%2Fevil.example",
    "%5C%5Cevil.example",
    "/%0A/evil.example",
    "/%0D/evil.example",
    "%2F%255Cevil.example",
    "%09%2F%2Fevil.example",
    "%20%2F%2Fevil.example",
    "http%3A%2F%2Fevil.example",
    "https:evil.example",
    "%2F%E3%80%80%2Fevil.example",
    "javascript%3Aalert(1)",
]


@pytest.mark.browser
@pytest.mark.timeout(90)
async def test_chromium_resolves_every_way_back_to_this_origin(
    fake_redis: Any, key_prefix: str, browser: Any
) -> None:
    """Load ``/maintenance?return=<evil>`` in Chromium and read the resolved ``a.href``."""
    async with pages(fake_redis, key_prefix) as base:
        origin = urlsplit(base)
        ctx = await browser.new_context()
        try:
            page = await ctx.new_page()
            queries = [*RAW_QUERIES, *(quote(v, safe="") for v in EVIL if v)]
            for q in queries:
                url = f"{base}/maintenance?return={q}"
                r = await page.goto(url)
                assert r is not None, url
                assert r.status == 200, url
                href = await page.evaluate("() => document.querySelector('#mt-ended a').href")
                got = urlsplit(href)
                assert (got.scheme, got.netloc) == (origin.scheme, origin.netloc), (q, href)
                assert got.path == DEFAULT_RETURN, (q, href)
            # a same-origin path is kept, and resolves to this origin
            await page.goto(f"{base}/maintenance?return=%2Fdemo%2Fcheckout%3Fstep%3D2")
            href = await page.evaluate("() => document.querySelector('#mt-ended a').href")
            assert href == f"{base}/demo/checkout?step=2"
        finally:
            await ctx.close()
