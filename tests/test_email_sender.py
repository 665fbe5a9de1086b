"""The e-mail sender against a real SMTP server (aiosmtpd): the 2021 notice rendered as a
multipart/alternative mail in Japanese and English, parsed back with the ``email`` package
(subject, parts, headers, the 対象サービス / 決済方法 / 影響の有無 rows, the effect per channel,
the contact block); a postponement says 延期 with the old and new times and threads under
the first mail; STARTTLS when offered, implicit TLS, AUTH; refusals and outages map to
gone / retry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from broadcaster import codec, ops
from broadcaster.notify.email import EmailSender
from broadcaster.notify.mailconfig import MailConfig, smtp_target
from broadcaster.notify.messages import LoggedEvent, Message, Selector
from broadcaster.notify.subscriptions import Subscription, SubscriptionIn, new_subscription
from broadcaster.settings import Settings
from broadcaster.store import Change, State, Store
from broadcaster.store.notify import NotifyStore
from broadcaster.store.optin import OptInStore
from tests.mail_support import Mailbox, certificate, smtp_server, trusting
from tests.support import DEFAULTS, free_port, import_example, jst, make_store

WID = "webcollect-2021-08"
FROM = "Maintcast <noreply@status.example.com>"
PUBLIC = "https://status.example.com"
ADDRESS = "shop@example.jp"
DOWN, UP = "ご利用いただけません。", "ご利用いただけます。"
ROWS_JA = [
    ["対象サービス", "決済方法", "影響の有無"],
    [
        "クロネコwebコレクト",
        "クレジットカード払い（ApplePay、タブレット決済、IVR決済、PayTG・ルミーズ端末含む）",
        DOWN,
    ],
    ["", "コンビニオンライン払い", DOWN],
    ["", "キャリア払い", DOWN],
    ["", "クロネコペイ", DOWN],
    ["クロネコ代金後払いサービス", "クレジットカード払い", DOWN],
    ["", "コンビニオンライン払い", DOWN],
    ["", "auかんたん決済", UP],
    ["", "銀行振込", UP],
    ["", "クロネコペイ", DOWN],
]
"""The notice's table, row for row (the 2021 notice marks au and bank transfer usable)."""


def email_sub(lang: str = "ja", sub_id: str = "shop") -> Subscription:
    sub, _ = new_subscription(
        SubscriptionIn(kind="email", email=ADDRESS, lang=lang),
        catalog=None,  # type: ignore[arg-type]  # no scope to check
        now=jst(2021, 5, 14, 9),
        seq=0,
        actor="t",
        new_id=sub_id,
        allow_http=False,
    )
    return sub


async def logged(store: Store, seq: int) -> LoggedEvent:
    rows = await store.redis.xrange(store.keys.events, min=f"{seq}-0", max=f"{seq}-0")
    _, f = rows[0]
    return LoggedEvent(seq, codec.loads(f[b"e"]), codec.loads(f[b"s"]))


async def message_for(store: Store, sub: Subscription, seq: int) -> Message:
    """The queued message of event ``seq`` for ``sub`` (as the fan-out makes it)."""
    st = await store.state()
    selector = Selector(
        st.catalog, st.windows, default_error_code="Z010000000", zone="Asia/Tokyo",
        origin_of=lambda _: 0.0,
    )  # fmt: skip
    return selector.event_message(sub, await logged(store, seq), 0.0, replay=True)


async def postpone(store: Store, now: datetime) -> int:
    """The June 14 window postponed to August 9 (as the notice was); returns its seq."""

    def change(st: State) -> Change:
        wc = ops.patch_window(
            st.windows[WID],
            {"starts_at": "2021-08-09T01:00", "ends_at": "2021-08-09T06:00", "reason": "延期"},
            catalog=st.catalog, defaults=DEFAULTS, now=now, actor="ops",
        )  # fmt: skip
        return Change(wc.cause, windows={WID: wc.window})

    return int((await store.apply(now, change))[-1]["seq"])


async def june_store(redis: Any, prefix: str) -> Store:
    """The seed notice as first announced: 2021-06-14 01:00-06:00 JST (seq 1 its import,
    seq 2 the move back to June, so that seq 3 can postpone it to August)."""
    store = make_store(redis, prefix)
    await import_example(store, jst(2021, 5, 14, 10, 0, 1))
    now = jst(2021, 5, 14, 10, 5)

    def june(st: State) -> Change:
        wc = ops.patch_window(
            st.windows[WID],
            {"starts_at": "2021-06-14T01:00", "ends_at": "2021-06-14T06:00"},
            catalog=st.catalog, defaults=DEFAULTS, now=now, actor="ops",
        )  # fmt: skip
        return Change(wc.cause, windows={WID: wc.window})

    await store.apply(now, june)
    return store


@contextlib.asynccontextmanager
async def sender_to(
    store: Store, box: Mailbox, *, url: str | None = None, **kw: Any
) -> AsyncIterator[tuple[EmailSender, int]]:
    async with smtp_server(box, **{k: v for k, v in kw.items() if k != "tls_context"}) as port:
        config = MailConfig.of(url or f"smtp://127.0.0.1:{port}", FROM, PUBLIC)
        assert config is not None
        optin = OptInStore(NotifyStore.of(store))

        async def token(sub: Subscription) -> str:
            assert sub.unsubscribe_token
            return sub.unsubscribe_token

        yield (
            EmailSender(
                config, timeout_s=5, context=optin.mail_context, tokens=token,
                tls_context=kw.get("tls_context"),
            ),
            port,
        )  # fmt: skip


async def test_the_2021_notice_in_japanese(fake_redis: Any, key_prefix: str) -> None:
    store = await june_store(fake_redis, key_prefix)
    sub, box = email_sub("ja"), Mailbox()
    async with sender_to(store, box) as (sender, _):
        out = await sender.send(sub, await message_for(store, sub, 1), 1620954000.0)
    assert (out.result, out.status_code) == ("delivered", 250)
    [mail] = box.to(ADDRESS)
    m = mail.message
    # the seed notice's own subject: the window as first announced
    assert mail.subject == "「クロネコwebコレクト」システムメンテナンス実施(6/14)のお知らせ"
    assert m.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in m.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in m.iter_parts())
    assert m["From"] == FROM
    assert m["To"] == ADDRESS
    assert m["Content-Language"] == "ja"
    assert m["Message-ID"] == "<webcollect-2021-08.shop@status.example.com>"  # starts the thread
    assert m["In-Reply-To"] is None
    token = sub.unsubscribe_token
    assert m["List-Unsubscribe"] == f"<{PUBLIC}/v1/unsubscribe?token={token}>"
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["Auto-Submitted"] == "auto-generated"
    assert mail.table("impact") == ROWS_JA
    effect = dict(r for r in mail.table("effect")[1:])
    assert (
        effect["トークン(モーダル)方式"]
        == "メンテナンス中です。時間をおいて再度アクセスしてください。"
    )
    assert set(effect) == {
        "リンク方式 お支払い手続き画面", "トークン(組込)方式", "トークン(モーダル)方式", "API方式",
        "加盟店管理画面",
    }  # fmt: skip
    text = mail.text()
    assert "加盟店各位" in text
    assert text.rstrip().endswith(f"配信停止: {PUBLIC}/v1/unsubscribe?token={token}")
    assert "サービス停止時間帯: 2021年6月14日(月) 01:00〜06:00（5時間）" in text
    assert "タイムゾーン: Asia/Tokyo (UTC+09:00)" in text
    assert "クロネコwebコレクト\tコンビニオンライン払い" not in text  # continuation rows
    assert "\tauかんたん決済\tご利用いただけます。" in text
    assert "メンテナンスエラーコード: Z010000000" in text
    for line in ("決済サービス カスタマーサービスセンター", "e-mail: payments@example.com",
                 "電話: 000-0000-0000", "受付時間: 9:00〜18:00"):  # fmt: skip
        assert line in text
        assert line.split(": ")[-1] in mail.html()
    assert "以上" in text


async def test_a_postponement_says_so_with_both_times_and_threads_under_the_notice(
    fake_redis: Any, key_prefix: str
) -> None:
    store = await june_store(fake_redis, key_prefix)
    seq = await postpone(store, jst(2021, 6, 1, 10))
    sub, box = email_sub("ja"), Mailbox()
    async with sender_to(store, box) as (sender, _):
        msg = await message_for(store, sub, seq)
        assert (await sender.send(sub, msg, 1622509200.0)).result == "delivered"
        en = email_sub("en")
        assert (await sender.send(en, await message_for(store, en, seq), 0.0)).result == "delivered"
    ja_mail, en_mail = box.to(ADDRESS)
    assert ja_mail.subject == "「クロネコwebコレクト」システムメンテナンス延期(6/14→8/9)のお知らせ"
    text = ja_mail.text()
    assert text.startswith("※ 本メンテナンスは延期となりました。")
    assert (
        "2021年6月14日(月) 01:00〜06:00（5時間） ⇒ 2021年8月9日(月) 01:00〜06:00（5時間） "
        "に延期となりました。"
    ) in text
    root = "<webcollect-2021-08.shop@status.example.com>"
    m = ja_mail.message
    assert m["Message-ID"] == f"<msg_{seq}.shop@status.example.com>"
    assert m["In-Reply-To"] == root
    assert m["References"] == root
    assert (
        en_mail.subject == "Kuroneko Web Collect system maintenance postponed from Jun 14 to Aug 9"
    )
    assert en_mail.text().startswith("※ This maintenance has been postponed.")
    assert "Mon 14 Jun 2021 01:00–06:00 (5 h) ⇒ postponed to Mon 9 Aug 2021 01:00–06:00 (5 h)." in (
        en_mail.text()
    )
    assert en_mail.table("impact")[0] == ["Service", "Payment method", "Impact"]
    assert en_mail.table("impact")[7] == ["", "au Easy Payment", "Available."]


async def test_starttls_when_offered_with_auth(
    fake_redis: Any, key_prefix: str, tmp_path: Path
) -> None:
    cert = certificate(tmp_path)
    store = await june_store(fake_redis, key_prefix)
    sub = email_sub()
    box = Mailbox(users={"relay": "p@ss:word"})
    port = free_port()
    url = f"smtp://relay:p%40ss%3Aword@localhost:{port}"
    async with sender_to(
        store, box, url=url, tls=cert, port=port, tls_context=trusting(cert[0])
    ) as (
        sender,
        _,
    ):
        out = await sender.send(sub, await message_for(store, sub, 1), 0.0)
    assert out.result == "delivered", out
    [mail] = box.mails
    assert mail.tls
    assert mail.login == "relay"


async def test_implicit_tls(fake_redis: Any, key_prefix: str, tmp_path: Path) -> None:
    cert = certificate(tmp_path)
    store = await june_store(fake_redis, key_prefix)
    sub, box, port = email_sub(), Mailbox(), free_port()
    async with sender_to(
        store, box, url=f"smtps://localhost:{port}", tls=cert, implicit_tls=True, port=port,
        tls_context=trusting(cert[0]),
    ) as (sender, _):  # fmt: skip
        out = await sender.send(sub, await message_for(store, sub, 1), 0.0)
    assert out.result == "delivered", out
    assert box.mails[0].tls


async def test_an_untrusted_certificate_is_retried_not_sent(
    fake_redis: Any, key_prefix: str, tmp_path: Path
) -> None:
    cert = certificate(tmp_path)
    store = await june_store(fake_redis, key_prefix)
    sub, box, port = email_sub(), Mailbox(), free_port()
    async with sender_to(store, box, url=f"smtps://localhost:{port}", tls=cert, implicit_tls=True,
                         port=port) as (sender, _):  # fmt: skip
        out = await sender.send(sub, await message_for(store, sub, 1), 0.0)
    assert out.result == "retry", out
    assert "CERTIFICATE_VERIFY_FAILED" in (out.error or ""), out
    assert box.mails == []


@pytest.mark.parametrize(
    ("reply", "result"),
    [("550 5.1.1 no such user", "gone"), ("451 4.3.0 try again later", "retry")],
)
async def test_refused_recipients(
    fake_redis: Any, key_prefix: str, reply: str, result: str
) -> None:
    store = await june_store(fake_redis, key_prefix)
    sub, box = email_sub(), Mailbox(refuse={ADDRESS: reply})
    async with sender_to(store, box) as (sender, _):
        out = await sender.send(sub, await message_for(store, sub, 1), 0.0)
    assert (out.result, out.status_code) == (result, int(reply[:3]))
    assert box.mails == []


async def test_a_server_that_is_down_or_silent_is_retried(fake_redis: Any, key_prefix: str) -> None:
    store = await june_store(fake_redis, key_prefix)
    sub = email_sub()
    optin = OptInStore(NotifyStore.of(store))

    async def token(s: Subscription) -> str:
        return s.unsubscribe_token or ""

    def sender(port: int, timeout_s: float) -> EmailSender:
        config = MailConfig.of(f"smtp://127.0.0.1:{port}", FROM, PUBLIC)
        assert config is not None
        return EmailSender(config, timeout_s=timeout_s, context=optin.mail_context, tokens=token)

    msg = await message_for(store, sub, 1)
    refused = await sender(free_port(), 5).send(sub, msg, 0.0)
    assert refused.result == "retry", refused
    assert refused.error, refused

    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()  # never greets; until the client gives up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        out = await sender(port, 0.5).send(sub, msg, 0.0)
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()
    assert out.result == "retry", out
    assert "timeout" in (out.error or "").lower(), out


def test_smtp_urls() -> None:
    t = smtp_target("smtp://u%40x:p%3Aw@mail.example.com")
    assert (t.host, t.port, t.username, t.password, t.implicit_tls) == (
        "mail.example.com", 25, "u@x", "p:w", False,
    )  # fmt: skip
    assert "p:w" not in repr(t)
    assert smtp_target("smtps://mail.example.com").port == 465
    assert smtp_target("smtp://mail.example.com:587").port == 587
    for bad, why in (
        ("http://x", "must start with smtp://"),
        ("smtp://", "names no host"),
        ("smtp://u@x", "both a user and a password"),
        ("smtp://x/path", "takes no path"),
        ("smtp://x:99999", "the port must be a number"),
    ):
        with pytest.raises(ValueError, match=why):
            smtp_target(bad)


def test_settings_refuse_a_bad_smtp_url_without_echoing_the_password() -> None:
    with pytest.raises(ValueError, match="MAINTCAST_SMTP_URL") as err:
        Settings(smtp_url="smtp://user:s3cr3t@host:notaport")
    assert "MAINTCAST_SMTP_URL" in str(err.value)
    assert "s3cr3t" not in str(err.value)
    with pytest.raises(ValueError, match="MAINTCAST_MAIL_FROM"):
        Settings(mail_from="nobody")
    with pytest.raises(ValueError, match="MAINTCAST_PUBLIC_URL"):
        Settings(public_url="ftp://x")
    s = Settings(smtp_url="smtp://h", mail_from=FROM, public_url=f"{PUBLIC}/")
    assert s.public_url == PUBLIC
