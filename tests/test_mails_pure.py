"""Mail rendering without a server (pure): the kind of mail each payload makes (subject and
first line, ja and en), latest_end, an extension's old and new ends, notes, an override's
table from the scoped status, the confirmation mail, thread ids, time formats."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from broadcaster import codec
from broadcaster.domain import HistoryEntry, Note, Window
from broadcaster.notify import mailtexts as mt
from broadcaster.notify.mailconfig import MailConfig
from broadcaster.notify.mails import MailContext, notice_of, render, thread_ids
from broadcaster.notify.messages import CONFIRM, Message, body_of
from broadcaster.notify.optin import confirm_message
from broadcaster.notify.subscriptions import Subscription
from broadcaster.timeparse import format_instant
from broadcaster.validation import parse_schedule
from tests.support import DEFAULTS, EXAMPLE, jst

CONFIG = MailConfig.of("smtp://h", "Maintcast <noreply@status.example.com>", "https://s.example")
SVC = "「クロネコwebコレクト」システムメンテナンス"


def example() -> tuple[Window, MailContext]:
    s = parse_schedule(EXAMPLE.read_text(), source="x", defaults=DEFAULTS, now=jst(2021, 8, 1))
    return s.windows[0], MailContext(s.catalog, s.contact, "Asia/Tokyo")


def sub(lang: str = "ja") -> Subscription:
    return Subscription(
        id="s1", kind="email", email="a@example.jp", lang=lang,
        created_at=jst(2021, 5, 1), created_seq=0, actor="t", unsubscribe_key="k",
    )  # fmt: skip


def payload(kind: str, w: Window | None, at: datetime, **data: Any) -> dict[str, Any]:
    status = data.pop("status", {"seq": 5, "state": "normal", "components": {}})
    doc = {"seq": 5, "window": None if w is None else codec.window_doc(w, at), "status": status}
    return {
        "type": kind,
        "timestamp": format_instant(at, "Asia/Tokyo"),
        "data": {**doc, **data},
    }


@pytest.mark.parametrize(
    ("event", "at", "extra", "subject", "lead"),
    [
        ("maintenance.scheduled", jst(2021, 5, 14), {}, f"{SVC}実施(8/9)のお知らせ", None),
        ("maintenance.updated", jst(2021, 6, 1), {}, f"【更新】{SVC}実施(8/9)のお知らせ",
         "※ 本メンテナンスの内容が更新されました。"),
        ("maintenance.reminder", jst(2021, 8, 2, 1), {"reminder": {"before_s": 604800}},
         f"【リマインド】{SVC}実施(8/9)のお知らせ", "※ メンテナンス開始まで あと7日です。"),
        ("maintenance.reminder", jst(2021, 8, 9, 0, 30), {"reminder": {"before_s": 5400}},
         f"【リマインド】{SVC}実施(8/9)のお知らせ", "※ メンテナンス開始まで あと1時間30分です。"),
        ("maintenance.draining", jst(2021, 8, 9, 0, 50), {},
         f"【まもなく開始】{SVC}実施(8/9)のお知らせ",
         "※ まもなくメンテナンスを開始します。お支払いはお早めにお済ませください。"),
        ("maintenance.started", jst(2021, 8, 9, 1), {}, f"【開始】{SVC}実施(8/9)のお知らせ",
         "※ ただいまメンテナンス中です。"),
        ("reconciled", jst(2021, 8, 9, 1, 5), {}, f"【開始】{SVC}実施(8/9)のお知らせ",
         "※ ただいまメンテナンス中です。"),
        ("maintenance.ended", jst(2021, 8, 9, 6), {}, f"【終了】{SVC}実施(8/9)のお知らせ",
         "※ メンテナンスは終了しました。"),
    ],
)  # fmt: skip
def test_kinds_of_window_mail(
    event: str, at: datetime, extra: dict[str, Any], subject: str, lead: str | None
) -> None:
    w, ctx = example()
    n = notice_of(payload(event, w, at, **extra), sub(), ctx, CONFIG, "u")  # type: ignore[arg-type]
    assert (n.subject, n.lead) == (subject, lead)
    assert n.when == "2021年8月9日(月) 01:00〜06:00（5時間）"
    assert n.zone == "Asia/Tokyo (UTC+09:00)"
    assert n.error_code == "Z010000000"


def test_cancelled_ended_early_extended_note_and_latest_end() -> None:
    w, ctx = example()
    now = jst(2021, 8, 9, 2)
    cancelled = w.model_copy(update={"cancelled": True})
    n = notice_of(payload("maintenance.cancelled", cancelled, jst(2021, 7, 1)), sub("en"), ctx,
                  CONFIG, "u")  # type: ignore[arg-type]  # fmt: skip
    assert n.subject == "[Cancelled] Kuroneko Web Collect system maintenance (Aug 9)"
    assert n.lead == "※ This maintenance has been cancelled."

    entry = HistoryEntry.model_validate(
        {"at": now, "change": "ended_early",
         "from": {"starts_at": w.starts_at, "ends_at": w.ends_at},
         "to": {"starts_at": w.starts_at, "ends_at": now}})  # fmt: skip
    early = w.model_copy(update={"ends_at": now, "history": (*w.history, entry)})
    n = notice_of(payload("maintenance.ended", early, now), sub(), ctx, CONFIG, "u")  # type: ignore[arg-type]
    assert n.lead == "※ メンテナンスは予定より早く終了しました。"
    assert n.subject == f"【終了】{SVC}実施(8/9)のお知らせ"

    later = w.ends_at + timedelta(hours=1)
    extended = w.model_copy(update={
        "ends_at": later, "latest_end": later + timedelta(minutes=30),
        "history": (*w.history, HistoryEntry.model_validate(
            {"at": now, "change": "extended",
             "from": {"starts_at": w.starts_at, "ends_at": w.ends_at},
             "to": {"starts_at": w.starts_at, "ends_at": later}})),
        "notes": (Note(at=now, message={"ja": "作業は順調です", "en": "On track"}),),
    })  # fmt: skip
    n = notice_of(payload("maintenance.extended", extended, now), sub(), ctx, CONFIG, "u")  # type: ignore[arg-type]
    assert n.change == "終了時刻: 06:00 ⇒ 07:00"
    assert n.latest_end == "終了予定 07:00（最長 07:30）"
    assert n.lead == "※ メンテナンスの終了時刻を延長しました。"
    assert n.notes == []  # notes are shown on a note's mail
    n = notice_of(payload("maintenance.note", extended, now), sub("en"), ctx, CONFIG, "u")  # type: ignore[arg-type]
    assert n.notes == ["On track"]
    assert n.subject.startswith("[Update] ")


def test_an_override_lists_the_subscribers_components() -> None:
    _, ctx = example()
    status = {
        "seq": 9, "state": "maintenance", "until": "2021-07-01T12:30:00+09:00",
        "components": {
            "atobarai": {"bank_transfer": "under_maintenance", "au_easy": "operational"}
        },
        "cause": {"type": "override.set", "reason": "incident 42"},
        "override": {"mode": "maintenance", "reason": "incident 42"},
    }  # fmt: skip
    n = notice_of(payload("override.set", None, jst(2021, 7, 1, 12), status=status), sub(), ctx,
                  CONFIG, "u")  # type: ignore[arg-type]  # fmt: skip
    assert n.subject == "【緊急】「クロネコ代金後払いサービス」メンテナンスのお知らせ"
    assert [(r.service, r.method, r.down) for r in n.rows] == [
        ("クロネコ代金後払いサービス", "銀行振込", True), ("", "auかんたん決済", False),
    ]  # fmt: skip
    assert (n.until, n.reason) == ("2021年7月1日(木) 12:30", "incident 42")
    cleared = {**status, "state": "normal", "until": None, "override": None,
               "components": {"atobarai": {"bank_transfer": "operational"}}}  # fmt: skip
    n = notice_of(payload("override.cleared", None, jst(2021, 7, 1, 13), status=cleared),
                  sub("en"), ctx, CONFIG, "u")  # type: ignore[arg-type]  # fmt: skip
    assert n.subject == "Kuroneko Deferred Payment Service service restored"
    assert n.lead == "※ The service has been restored."


def test_the_confirmation_mail_and_thread_ids() -> None:
    _, ctx = example()
    msg = confirm_message("TOKEN-1", jst(2021, 8, 1), "Asia/Tokyo", 0.0)
    assert (msg.type, msg.kind, msg.id[:8]) == (CONFIRM, "email", "confirm_")
    assert CONFIG is not None
    mail = render(msg, sub("en"), ctx, CONFIG, "s1.k", 0.0)
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "https://s.example/v1/subscribe/confirm?token=TOKEN-1" in text
    assert "expires in 48 hours" in text
    assert mail["Message-ID"] == f"<{msg.id}.s1@status.example.com>"
    assert mail["In-Reply-To"] is None
    event = Message(id="msg_4", kind="email", type="maintenance.scheduled", seq=4,
                    body=body_of("x", "t", {}), queued_s=0.0)  # fmt: skip
    assert thread_ids(event, sub(), "w1", "d.example") == ("<w1.s1@d.example>", None)
    later = event.model_copy(update={"id": "msg_9", "type": "maintenance.started"})
    assert thread_ids(later, sub(), "w1", "d.example") == (
        "<msg_9.s1@d.example>",
        "<w1.s1@d.example>",
    )
    assert orjson.loads(msg.body)["data"] == {"token": "TOKEN-1", "hours": 48}


@pytest.mark.parametrize(
    ("seconds", "ja", "en"),
    [(3600, "1時間", "1 h"), (86400, "1日", "1 d"), (5400, "1時間30分", "1 h 30 min"),
     (0, "0分", "0 min")],
)  # fmt: skip
def test_spans(seconds: int, ja: str, en: str) -> None:
    assert (mt.span_of(seconds, "ja"), mt.span_of(seconds, "en")) == (ja, en)


def test_a_window_over_midnight_in_another_zone() -> None:
    start, end = datetime.fromisoformat("2021-03-13T23:00:00-06:00"), datetime.fromisoformat(
        "2021-03-14T04:00:00-05:00")  # fmt: skip
    assert mt.when(start, end, "America/Chicago", "en") == (
        "Sat 13 Mar 2021 23:00–Sun 14 Mar 2021 04:00 (4 h)"  # the spring-forward night: 4 h
    )
    assert mt.zone_label(end, "America/Chicago") == "America/Chicago (UTC-05:00)"
