"""Reminders: the pure rules (offsets, the announce rule, the misfire grace, cancelled and
rescheduled windows, the instants the worker plans) as tables; queueing them in Redis once
whoever asks, never later than the grace; and a reminder reaching a webhook and a mailbox
exactly once from a worker and an API standby planning the same boundary."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from broadcaster import ops
from broadcaster.clock import RehearsalClock
from broadcaster.domain import InvalidInput, Window
from broadcaster.notify.reminders import (
    boundaries_with_reminders,
    due,
    parse_offsets,
    reminders_of,
)
from broadcaster.settings import Settings
from broadcaster.store import Change, State, Store
from broadcaster.store.notify import NotifyStore
from tests.mail_support import Mailbox, add_email, mailing, smtp_server
from tests.notify_support import FAST, Receiver, delivering, seeded, serving, subscribe
from tests.support import DEFAULTS, eventually_async, import_example, jst, make_store
from worker.scheduler import Worker

WID = "webcollect-2021-08"
START = jst(2021, 8, 9, 1)
EPOCH = int(START.timestamp())  # 1628438400
DEFAULT = parse_offsets("P7D,P1D,PT1H")


def window(**kw: Any) -> Window:
    base: dict[str, Any] = {
        "id": WID,
        "title": {"ja": "t"},
        "starts_at": START,
        "ends_at": jst(2021, 8, 9, 6),
        "timezone": "Asia/Tokyo",
        "announce_at": jst(2021, 5, 14, 10),
        "affected": {"webcollect": ("*",)},
        "error_code": "Z010000000",
        "messages": {},
    }
    return Window(**{**base, **kw})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("P7D,P1D,PT1H", [604800, 86400, 3600]), ("", []), (" PT90S , P1W ", [90, 604800])],
)
def test_parse_offsets(text: str, seconds: list[int]) -> None:
    assert [int(d.total_seconds()) for d in parse_offsets(text)] == seconds


@pytest.mark.parametrize(("text", "field"), [("P1D,1 day", "reminders.1"), ("P1M", "reminders.0"),
                                             ("PT1H,PT60M", "reminders.1")])  # fmt: skip
def test_bad_offsets_name_the_item(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_offsets(text)
    assert err.value.field == field
    with pytest.raises(ValueError, match="reminders"):
        Settings(reminders=text)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, [(jst(2021, 8, 2, 1), 604800), (jst(2021, 8, 8, 1), 86400), (jst(2021, 8, 9), 3600)]),
        # announced a day and a half ahead: no 7-day reminder; the 1-day one is after it
        ({"announce_at": jst(2021, 8, 7, 13)},
         [(jst(2021, 8, 8, 1), 86400), (jst(2021, 8, 9), 3600)]),
        # a reminder at the very instant of the announcement is not after it
        ({"announce_at": jst(2021, 8, 8, 1)}, [(jst(2021, 8, 9), 3600)]),
        ({"reminders": ()}, []),
        ({"reminders": ("PT30M",)}, [(jst(2021, 8, 9, 0, 30), 1800)]),
        ({"cancelled": True}, []),
        ({"recurrence": {"rrule": "FREQ=MONTHLY"}}, []),  # a series: its occurrences remind
    ],
)  # fmt: skip
def test_reminders_of_a_window(kw: dict[str, Any], expected: list[tuple[datetime, int]]) -> None:
    got = reminders_of(window(**kw), DEFAULT)
    assert [(r.at, r.before_s) for r in got] == expected
    assert all(r.id == f"rem_{WID}_{r.before_s}_{EPOCH}" for r in got)


def test_a_reschedule_makes_other_reminders() -> None:
    later = window(starts_at=START + timedelta(days=1), ends_at=jst(2021, 8, 10, 6))
    assert {r.id for r in reminders_of(later, DEFAULT)}.isdisjoint(
        r.id for r in reminders_of(window(), DEFAULT)
    )


@pytest.mark.parametrize(
    ("now", "ids"),
    [
        (jst(2021, 8, 8, 23, 59, 59, 999000), []),
        (jst(2021, 8, 9), [f"rem_{WID}_3600_{EPOCH}"]),
        (jst(2021, 8, 9, 0, 0, 5), [f"rem_{WID}_3600_{EPOCH}"]),  # within the 5 s grace
        (jst(2021, 8, 9, 0, 0, 5, 1000), []),  # later: missed, never sent
    ],
)
def test_due_within_the_grace_only(now: datetime, ids: list[str]) -> None:
    assert [r.id for r in due([window()], DEFAULT, now, 5.0)] == ids


def test_reminder_instants_are_boundaries() -> None:
    now = jst(2021, 8, 8, 12)
    assert boundaries_with_reminders([window()], None, now, DEFAULT) == [
        jst(2021, 8, 9), START, jst(2021, 8, 9, 6)
    ]  # fmt: skip
    assert boundaries_with_reminders([window(cancelled=True)], None, now, DEFAULT) == []
    assert boundaries_with_reminders([window()], None, now, ()) == [START, jst(2021, 8, 9, 6)]


# -- in Redis ---------------------------------------------------------------------------------


async def reminded(store: Store, at: datetime, fence: str | None = None) -> list[str]:
    return await NotifyStore.of(store).remind(at, DEFAULT, 0.0, lambda _: 0.0, fence=fence)


async def test_queued_once_and_never_late(any_redis: Any, key_prefix: str) -> None:
    store = make_store(any_redis, key_prefix, grace_s=5.0)
    await import_example(store, jst(2021, 8, 1))
    await add_email(store, "m", "m@example.jp")
    await add_email(store, "bank", "b@example.jp", scope={"atobarai": ["bank_transfer"]})
    await add_email(store, "starts", "s@example.jp", events=["maintenance.started"])
    rid = f"rem_{WID}_3600_{EPOCH}"
    assert await reminded(store, jst(2021, 8, 9, 0, 0, 5, 1000)) == []  # too late
    assert await reminded(store, jst(2021, 8, 9, 0, 0, 2)) == [rid]
    assert await reminded(store, jst(2021, 8, 9, 0, 0, 3)) == []  # once
    notify = NotifyStore.of(store)
    [msg] = await notify.deliveries("m", 10)
    assert (msg.id, msg.type, msg.seq, msg.state) == (rid, "maintenance.reminder", None, "pending")
    # the window leaves bank transfer up; the other one asked for starts only
    assert await notify.deliveries("bank", 10) == []
    assert await notify.deliveries("starts", 10) == []
    assert await reminded(store, jst(2021, 8, 8, 1), fence="someone-else") == []  # fenced


async def test_cancelled_or_rescheduled_windows(fake_redis: Any, key_prefix: str) -> None:
    store = make_store(fake_redis, key_prefix)
    await import_example(store, jst(2021, 8, 1))
    await add_email(store, "m", "m@example.jp")
    now = jst(2021, 8, 1, 12)

    def later(st: State) -> Change:
        wc = ops.patch_window(
            st.windows[WID], {"starts_at": "2021-08-10T01:00", "ends_at": "2021-08-10T06:00"},
            catalog=st.catalog, defaults=DEFAULTS, now=now, actor="ops",
        )  # fmt: skip
        return Change(wc.cause, windows={WID: wc.window})

    await store.apply(now, later)
    assert await reminded(store, jst(2021, 8, 8, 1)) == []  # the old plan is gone
    new_epoch = int(jst(2021, 8, 10, 1).timestamp())
    assert await reminded(store, jst(2021, 8, 9, 1)) == [f"rem_{WID}_86400_{new_epoch}"]

    def cancel(st: State) -> Change:
        wc = ops.cancel_window(st.windows[WID], {"reason": "x"}, now=now, actor="ops")
        return Change(wc.cause, windows={WID: wc.window})

    await store.apply(now, cancel)
    assert await reminded(store, jst(2021, 8, 10)) == []


async def test_the_worker_plans_reminder_instants(fake_redis: Any, key_prefix: str) -> None:
    class Far:
        speed = 1.0

        def now(self) -> datetime:
            return jst(2021, 8, 1)

        def wall_time_of(self, instant: datetime) -> datetime:
            return instant + timedelta(days=365 * 100)  # jobs never fire here

    store = make_store(fake_redis, key_prefix)
    await import_example(store, jst(2021, 8, 1))
    w = Worker(store, Far(), notify=FAST)
    w.scheduler.start(paused=True)
    try:
        await w.plan()
        planned = {j.id for j in w.scheduler.get_jobs()}
        for t in (jst(2021, 8, 2, 1), jst(2021, 8, 8, 1), jst(2021, 8, 9), START):
            assert f"boundary:{t.isoformat()}" in planned
    finally:
        w.scheduler.shutdown(wait=False)
        await eventually_async(lambda: not w.scheduler.running, "the scheduler to stop", interval=0)


async def test_a_reminder_reaches_a_webhook_and_a_mailbox_once(real_redis: Any) -> None:
    """A worker and an API standby plan the same boundary (00:00 JST, the one-hour
    reminder), under a rehearsal clock two seconds before it."""
    prefix = f"rem{uuid.uuid4().hex[:10]}"
    clock = RehearsalClock(jst(2021, 8, 8, 23, 59, 58))
    store = await seeded(real_redis, prefix, clock)
    rx, box = Receiver(), Mailbox()
    rid = f"rem_{WID}_3600_{EPOCH}"
    async with serving(rx) as base, smtp_server(box) as port:
        rx.secrets["h"] = [await subscribe(store, f"{base}/h", "hook", clock.now())]
        await add_email(store, "mail", "shop@example.jp")
        config = mailing(port)
        async with delivering(store, clock, config), delivering(store, clock, config, "standby"):
            await eventually_async(lambda: rx.ok("h") and box.mails, "the reminder", timeout=15)
            # both processes' jobs for 00:00 have fired by 00:00:03 (each within ms)
            await eventually_async(
                lambda: clock.now() > jst(2021, 8, 9, 0, 0, 3), "both jobs to fire", timeout=15
            )
    assert await real_redis.zrange(store.keys.notify_reminded, 0, -1) == [rid.encode()]
    notify = NotifyStore.of(store)
    for sub_id in ("hook", "mail"):
        assert [m.id for m in await notify.deliveries(sub_id, 10)] == [rid]
    [hook] = rx.ok("h")
    assert (hook.id, hook.doc["type"]) == (rid, "maintenance.reminder")
    assert hook.doc["timestamp"] == "2021-08-09T00:00:00+09:00"
    assert hook.doc["data"]["reminder"] == {"before_s": 3600}
    assert hook.doc["data"]["window"]["id"] == WID
    [mail] = box.mails
    assert (
        mail.subject
        == "【リマインド】「クロネコwebコレクト」システムメンテナンス実施(8/9)のお知らせ"
    )
    assert mail.text().startswith("※ メンテナンス開始まで あと1時間です。")
    assert mail.message["In-Reply-To"] == "<webcollect-2021-08.mail@status.example.com>"
    assert mail.message["Message-ID"] == f"<{rid}.mail@status.example.com>"
