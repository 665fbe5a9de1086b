"""The 2021 notice end to end, in Japanese, under rehearsal clocks on a real Redis: a
merchant subscribes a webhook (admin API) and a mailbox (self-service, double opt-in);
ops schedules the June 14 window and postpones it to August 9 (webhook
``maintenance.rescheduled`` and a 延期 mail); the three reminders arrive at their offsets;
the window starts and ends. Each phase runs a worker on a rehearsal clock set a second
before its instant (the months between are skipped, not waited for)."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import yaml

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.clock import RehearsalClock
from broadcaster.store.notify import NotifyStore
from broadcaster.validation import parse_schedule
from tests.mail_support import FROM, PUBLIC, Captured, Mailbox, mailing, smtp_server
from tests.notify_support import Receiver, delivering, serving
from tests.support import DEFAULTS, EXAMPLE, eventually_async, jst, make_store, settings_for

WID = "webcollect-2021-08"
ADMIN = {"Authorization": "Bearer e2e-admin"}
SHOP = "keiri@shop.example.jp"
START, END = jst(2021, 8, 9, 1), jst(2021, 8, 9, 6)
EPOCH = int(START.timestamp())
SVC = "「クロネコwebコレクト」システムメンテナンス"
LINK = re.compile(r"https://status\.example\.com(/v1/subscribe/confirm\?token=\S+)")


def the_window_in_june() -> dict[str, Any]:
    """The notice's window as first announced: 2021-06-14 01:00-06:00 JST."""
    w = dict(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["windows"][0])
    del w["history"], w["announce_at"]  # announced when created
    return {**w, "starts_at": "2021-06-14T01:00", "ends_at": "2021-06-14T06:00"}


async def settled(store: Any) -> None:
    """Wait until no message is pending: a worker stopped while an attempt is under way
    leaves it claimed, and the next one sends it again (at least once)."""
    notify = NotifyStore.of(store)

    async def done() -> bool:
        subs = [s.id for s in await notify.subscriptions()]
        return all(n == 0 for _, n in (await notify.last_deliveries(subs)).values())

    await eventually_async(done, "every delivery recorded", timeout=10)


async def phase(
    store: Any, rx: Receiver, box: Mailbox, config: Any, at: datetime, instant: datetime,
    hooks: int, mails: int,
) -> RehearsalClock:  # fmt: skip
    """Run a worker on a clock reading ``at`` until ``hooks`` webhook requests and ``mails``
    mails have arrived in all (``instant`` is the boundary this phase is for)."""
    clock = RehearsalClock(at)
    async with delivering(store, clock, config):
        await eventually_async(
            lambda: len(rx.ok("h")) >= hooks and len(box.to(SHOP)) >= mails,
            f"the deliveries for {instant}",
            timeout=15,
            detail=lambda: f"{[r.id for r in rx.ok('h')]} {[m.subject for m in box.mails]}",
        )
        await settled(store)
    arrived = rx.ok("h")[hooks - 1].at
    late = arrived - clock.wall_time_of(instant).timestamp()
    assert 0 <= late < 2.0, f"{instant}: arrived {late:.3f} s after its instant"
    return clock


async def test_the_2021_notice_reaches_a_webhook_and_a_mailbox(real_redis: Any) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:10]}"
    store = make_store(real_redis, prefix)
    may = RehearsalClock(jst(2021, 5, 14, 9, 59))
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    doc["windows"] = []  # the catalog and the contact only; the window comes through the API
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    await store.import_schedule(
        parse_schedule(text, source="x", defaults=DEFAULTS, now=may.now()), may.now()
    )
    rx, box = Receiver(), Mailbox()
    async with serving(rx) as base, smtp_server(box) as port:
        config = mailing(port)
        smtp = f"smtp://127.0.0.1:{port}"
        app = create_app(
            settings_for(None, prefix, smtp_url=smtp, mail_from=FROM, public_url=PUBLIC),
            redis=real_redis,
            clock=may,
            tokens=Tokens.parse(entry_line("ops", "admin", "e2e-admin")),
        )
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as api,
            delivering(store, may, config),
        ):
            # 2021-05-14: the merchant subscribes its system and its accounting mailbox
            r = await api.post(
                "/v1/subscriptions",
                json={"kind": "webhook", "url": f"{base}/h", "lang": "ja"},
                headers=ADMIN,
            )
            assert r.status_code == 201, r.text
            rx.secrets["h"] = [r.json()["secret"]]
            r = await api.post("/v1/subscribe", json={"email": SHOP, "lang": "ja"})
            assert r.status_code == 202
            await eventually_async(lambda: box.to(SHOP), "the confirmation mail", timeout=10)
            found = LINK.search(box.to(SHOP)[0].text())
            assert found is not None
            assert (await api.get(found[1])).status_code == 200

            # ops announces the June 14 window, then postpones it to August 9
            r = await api.post("/v1/windows", json=the_window_in_june(), headers=ADMIN)
            assert r.status_code == 201, r.text
            await eventually_async(lambda: len(box.to(SHOP)) == 2, "the notice", timeout=10)
            r = await api.patch(
                f"/v1/windows/{WID}",
                json={"starts_at": "2021-08-09T01:00", "ends_at": "2021-08-09T06:00",
                      "reason": "延期"},
                headers=ADMIN,
            )  # fmt: skip
            assert r.status_code == 200, r.text
            await eventually_async(
                lambda: len(rx.ok("h")) == 2 and len(box.to(SHOP)) == 3, "the postponement",
                timeout=10,
            )  # fmt: skip
            await settled(store)

        # reminders 7 days, 1 day and 1 hour before, then the start and the end
        t0 = time.time()
        await phase(store, rx, box, config, jst(2021, 8, 2, 0, 59, 59), jst(2021, 8, 2, 1), 3, 4)
        await phase(store, rx, box, config, jst(2021, 8, 8, 0, 59, 59), jst(2021, 8, 8, 1), 4, 5)
        await phase(store, rx, box, config, jst(2021, 8, 8, 23, 59, 59), jst(2021, 8, 9), 5, 6)
        await phase(store, rx, box, config, jst(2021, 8, 9, 0, 59, 59), START, 6, 7)
        await phase(store, rx, box, config, jst(2021, 8, 9, 5, 59, 59), END, 7, 8)
        assert time.time() - t0 < 30

    hooks = rx.ok("h")
    assert rx.unverified == []
    kinds = [(h.doc["type"], (h.doc["data"].get("reminder") or {}).get("before_s")) for h in hooks]
    assert kinds == [
        ("maintenance.scheduled", None),
        ("maintenance.rescheduled", None),
        ("maintenance.reminder", 604800),
        ("maintenance.reminder", 86400),
        ("maintenance.reminder", 3600),
        ("maintenance.started", None),
        ("maintenance.ended", None),
    ]  # fmt: skip
    assert [h.id for h in hooks[2:5]] == [f"rem_{WID}_{s}_{EPOCH}" for s in (604800, 86400, 3600)]
    assert len({h.id for h in hooks}) == 7  # nothing twice
    moved = hooks[1].doc["data"]["window"]
    assert moved["starts_at"] == "2021-08-09T01:00:00+09:00"
    assert moved["history"][-1]["from"]["starts_at"] == "2021-06-14T01:00:00+09:00"
    assert hooks[5].doc["data"]["status"]["state"] == "maintenance"
    assert hooks[6].doc["data"]["status"]["state"] == "normal"

    mails: list[Captured] = box.to(SHOP)
    assert [m.subject for m in mails] == [
        "【要確認】メンテナンス情報メール配信登録のご確認",
        f"{SVC}実施(6/14)のお知らせ",
        f"{SVC}延期(6/14→8/9)のお知らせ",
        *[f"【リマインド】{SVC}実施(8/9)のお知らせ"] * 3,
        f"【開始】{SVC}実施(8/9)のお知らせ",
        f"【終了】{SVC}実施(8/9)のお知らせ",
    ]
    leads = [m.text().splitlines()[0] for m in mails[2:]]
    assert leads == [
        "※ 本メンテナンスは延期となりました。",
        "※ メンテナンス開始まで あと7日です。",
        "※ メンテナンス開始まで あと1日です。",
        "※ メンテナンス開始まで あと1時間です。",
        "※ ただいまメンテナンス中です。",
        "※ メンテナンスは終了しました。",
    ]
    assert "2021年6月14日(月) 01:00〜06:00（5時間）" in mails[1].text()
    assert "⇒ 2021年8月9日(月) 01:00〜06:00（5時間） に延期となりました。" in mails[2].text()
    sub = mails[1].message["Message-ID"]
    assert sub.startswith(f"<{WID}.")
    assert sub.endswith("@status.example.com>")
    for m in mails[2:]:
        assert m.message["In-Reply-To"] == sub
        assert m.message["References"] == sub
        assert m.message["Content-Language"] == "ja"
        assert "タイムゾーン: Asia/Tokyo (UTC+09:00)" in m.text()
        assert m.table("impact")[8] == ["", "銀行振込", "ご利用いただけます。"]
        assert str(m.message["List-Unsubscribe"]).startswith(f"<{PUBLIC}/v1/unsubscribe?token=")
    assert len({m.message["Message-ID"] for m in mails}) == len(mails)
