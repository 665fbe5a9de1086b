"""E-mail through the delivery queue, on a real Redis to a real SMTP server: events reach an
e-mail subscriber as mails; a server answering 451 is retried with the same Message-ID;
a mailbox refused for good (550) disables the subscription like a webhook's 410; without
mail settings the messages fail at once, saying why."""

from __future__ import annotations

from typing import Any

from broadcaster.store.notify import NotifyStore
from tests.mail_support import Mailbox, add_email, mailing, smtp_server
from tests.notify_support import FAST, clear, delivering, override, seeded
from tests.support import eventually_async

ADDRESS = "ops@shop.example"


async def test_events_arrive_as_mails_and_a_451_is_retried(
    real_redis: Any, key_prefix: str
) -> None:
    from broadcaster.clock import SystemClock

    clock: Any = SystemClock()
    store = await seeded(real_redis, key_prefix, clock)
    await add_email(store, "mail", ADDRESS)
    box = Mailbox()
    async with smtp_server(box) as port, delivering(store, clock, mailing(port)):
        box.refuse[ADDRESS] = "451 4.3.0 greylisted, try again"
        seq = await override(store, clock)
        await eventually_async(
            lambda: box.connections >= 1, "the first (refused) attempt", timeout=10
        )
        box.refuse.clear()
        await eventually_async(lambda: len(box.to(ADDRESS)) == 1, "the retried mail", timeout=10)
        seq2 = await clear(store, clock)
        await eventually_async(lambda: len(box.to(ADDRESS)) == 2, "the second mail", timeout=10)
    first, second = box.to(ADDRESS)
    assert first.message["Message-ID"] == f"<msg_{seq}.mail@status.example.com>"
    assert first.subject.startswith("【緊急】「クロネコwebコレクト」「クロネコ代金後払いサービス」")
    assert first.text().startswith("※ 緊急メンテナンスを実施しています。")
    assert "理由: incident 42" in first.text()
    assert second.message["Message-ID"] == f"<msg_{seq2}.mail@status.example.com>"
    assert second.text().startswith("※ サービスを再開しました。")
    msgs = {m.id: m for m in await NotifyStore.of(store).deliveries("mail", 10)}
    assert msgs[f"msg_{seq}"].attempt == 2
    assert msgs[f"msg_{seq}"].state == "delivered"
    assert msgs[f"msg_{seq2}"].attempt == 1


async def test_a_refused_mailbox_disables_the_subscription(
    real_redis: Any, key_prefix: str
) -> None:
    from broadcaster.clock import SystemClock

    clock: Any = SystemClock()
    store = await seeded(real_redis, key_prefix, clock)
    await add_email(store, "gone", "nobody@shop.example")
    box = Mailbox(refuse={"nobody@shop.example": "550 5.1.1 no such mailbox"})
    notify = NotifyStore.of(store)
    async with smtp_server(box) as port, delivering(store, clock, mailing(port)):
        seq = await override(store, clock)

        async def disabled() -> bool:
            return not (await notify.subscription("gone")).active

        await eventually_async(disabled, "the subscription disabled", timeout=10)
    [msg] = await notify.deliveries("gone", 10)
    assert (msg.id, msg.state, msg.last and msg.last.status_code) == (f"msg_{seq}", "failed", 550)
    assert "550" in ((await notify.subscription("gone")).disabled_reason or "")
    assert box.mails == []


async def test_without_mail_settings_mails_fail_saying_so(real_redis: Any, key_prefix: str) -> None:
    from broadcaster.clock import SystemClock

    clock: Any = SystemClock()
    store = await seeded(real_redis, key_prefix, clock)
    await add_email(store, "nomail", ADDRESS)
    async with delivering(store, clock, FAST):
        seq = await override(store, clock)

        async def failed() -> Any:
            msgs = await NotifyStore.of(store).deliveries("nomail", 10)
            return msgs[0] if msgs and msgs[0].state == "failed" else None

        msg = await eventually_async(failed, "the message failed", timeout=10)
    assert msg.id == f"msg_{seq}"
    assert "MAINTCAST_SMTP_URL" in (msg.last.error or "")
