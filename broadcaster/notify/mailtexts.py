"""The words of e-mail notices (pure): phrases per language and how times are written.

Worded after the 2021 notice (「クロネコwebコレクト」システムメンテナンス実施(6/14)のお知らせ):
the subject names the service and the local date, the body has the times in the window's
zone with the zone named, the 対象サービス / 決済方法 / 影響の有無 table, the effect per
channel and the contact block; a postponement says 延期 with the old and the new times.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS_JA = "月火水木金土日"
MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
WEEKDAYS_EN = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]

CHANNELS: dict[str, dict[str, str]] = {
    "ja": {
        "link": "リンク方式 お支払い手続き画面",
        "token_embedded": "トークン(組込)方式",
        "token_modal": "トークン(モーダル)方式",
        "api": "API方式",
        "admin": "加盟店管理画面",
    },
    "en": {
        "link": "Link (hosted payment page)",
        "token_embedded": "Token (embedded)",
        "token_modal": "Token (modal)",
        "api": "API",
        "admin": "Merchant console",
    },
}
"""The channels (決済方式) as the notice names them, in the notice's order."""

SUBJECTS: dict[str, dict[str, str]] = {
    "ja": {
        "notice": "{svc}システムメンテナンス実施({date})のお知らせ",
        "updated": "【更新】{svc}システムメンテナンス実施({date})のお知らせ",
        "postponed": "{svc}システムメンテナンス延期({old}→{date})のお知らせ",
        "moved": "{svc}システムメンテナンス日時変更({old}→{date})のお知らせ",
        "cancelled": "【中止】{svc}システムメンテナンス実施({date})のお知らせ",
        "reminder": "【リマインド】{svc}システムメンテナンス実施({date})のお知らせ",
        "draining": "【まもなく開始】{svc}システムメンテナンス実施({date})のお知らせ",
        "started": "【開始】{svc}システムメンテナンス実施({date})のお知らせ",
        "ended": "【終了】{svc}システムメンテナンス実施({date})のお知らせ",
        "extended": "【延長】{svc}システムメンテナンス実施({date})のお知らせ",
        "note": "【続報】{svc}システムメンテナンス実施({date})のお知らせ",
        "status": "{svc}サービス稼働状況のお知らせ",
        "override": "【緊急】{svc}メンテナンスのお知らせ",
        "restored": "{svc}サービス再開のお知らせ",
        "ping": "【テスト】メンテナンス情報メール配信のテスト",
        "confirm": "【要確認】メンテナンス情報メール配信登録のご確認",
    },
    "en": {
        "notice": "{svc} system maintenance ({date}): notice",
        "updated": "[Updated] {svc} system maintenance ({date})",
        "postponed": "{svc} system maintenance postponed from {old} to {date}",
        "moved": "{svc} system maintenance moved from {old} to {date}",
        "cancelled": "[Cancelled] {svc} system maintenance ({date})",
        "reminder": "[Reminder] {svc} system maintenance ({date})",
        "draining": "[Starting soon] {svc} system maintenance ({date})",
        "started": "[Started] {svc} system maintenance ({date})",
        "ended": "[Ended] {svc} system maintenance ({date})",
        "extended": "[Extended] {svc} system maintenance ({date})",
        "note": "[Update] {svc} system maintenance ({date})",
        "status": "{svc} service status",
        "override": "[Urgent] {svc} maintenance",
        "restored": "{svc} service restored",
        "ping": "[Test] maintenance notification test",
        "confirm": "Confirm your subscription to maintenance notices",
    },
}
"""Subject per kind of mail; ``{svc}`` the services, ``{date}`` the start's local date."""

LEADS: dict[str, dict[str, str]] = {
    "ja": {
        "postponed": "※ 本メンテナンスは延期となりました。",
        "moved": "※ 本メンテナンスの日時が変更となりました。",
        "updated": "※ 本メンテナンスの内容が更新されました。",
        "cancelled": "※ 本メンテナンスは中止となりました。",
        "reminder": "※ メンテナンス開始まで あと{left}です。",
        "draining": "※ まもなくメンテナンスを開始します。お支払いはお早めにお済ませください。",
        "started": "※ ただいまメンテナンス中です。",
        "ended": "※ メンテナンスは終了しました。",
        "ended_early": "※ メンテナンスは予定より早く終了しました。",
        "extended": "※ メンテナンスの終了時刻を延長しました。",
        "note": "※ 本メンテナンスについて続報があります。",
        "status": "※ サービスの稼働状況が変わりました。",
        "override": "※ 緊急メンテナンスを実施しています。",
        "restored": "※ サービスを再開しました。",
        "ping": "※ これはメンテナンス情報メール配信のテスト送信です。",
    },
    "en": {
        "postponed": "※ This maintenance has been postponed.",
        "moved": "※ This maintenance has been rescheduled.",
        "updated": "※ The details of this maintenance have been updated.",
        "cancelled": "※ This maintenance has been cancelled.",
        "reminder": "※ Maintenance starts in {left}.",
        "draining": "※ Maintenance starts soon. Please complete payments in progress.",
        "started": "※ Maintenance is now in progress.",
        "ended": "※ Maintenance has ended.",
        "ended_early": "※ Maintenance has ended earlier than planned.",
        "extended": "※ The maintenance has been extended.",
        "note": "※ There is an update on this maintenance.",
        "status": "※ The service status has changed.",
        "override": "※ Unscheduled maintenance is in progress.",
        "restored": "※ The service has been restored.",
        "ping": "※ This is a test of maintenance notifications.",
    },
}
"""The first line of the body (the notice's ※ line) per kind; the notice itself has none."""

PHRASES: dict[str, dict[str, str]] = {
    "ja": {
        "to": "加盟店各位",
        "greeting": "平素は格別のご高配を賜り、厚く御礼申し上げます。",
        "intro": "下記日時においてシステムメンテナンスを実施いたします。"
        "メンテナンス中、下記の「ご利用いただけません」のサービスがご利用いただけません。",
        "apology": "加盟店の皆様および購入者様には大変ご迷惑をおかけいたしますが、"
        "ご理解ご協力の程宜しくお願い申し上げます。",
        "ki": "記",
        "when_heading": "1. 対象サービス及び日時",
        "now_heading": "1. 対象サービス",
        "window": "サービス停止時間帯",
        "zone": "タイムゾーン",
        "was": "変更前",
        "postponed_to": "{old} ⇒ {new} に延期となりました。",
        "moved_to": "{old} ⇒ {new} に変更となりました。",
        "extended_to": "終了時刻: {old} ⇒ {new}",
        "latest_end": "終了予定 {end}（最長 {latest}）",
        "until": "終了予定",
        "reason": "理由",
        "service": "対象サービス",
        "method": "決済方法",
        "impact": "影響の有無",
        "down": "ご利用いただけません。",
        "up": "ご利用いただけます。",
        "effect_heading": "2. 決済方式ごとの影響",
        "effect_intro": "サービス停止期間中に決済があった場合、以下の影響があります。",
        "channel": "決済方式",
        "effect": "影響",
        "error_code": "メンテナンスエラーコード",
        "about_heading": "3. メンテナンス実施内容",
        "notes_heading": "続報",
        "contact_heading": "4. 本件に関する問い合わせ先",
        "phone": "電話",
        "hours": "受付時間",
        "end": "以上",
        "status_link": "最新の状況",
        "unsubscribe": "配信停止",
        "hours_unit": "時間",
        "minutes_unit": "分",
        "days_unit": "日",
        "confirm_intro": "メンテナンス情報のメール配信へのご登録を受け付けました。"
        "下記のリンクを開くと登録が完了します。",
        "confirm_expiry": "このリンクの有効期限は{hours}時間です。",
        "confirm_ignore": "お心当たりのない場合は、このメールを破棄してください。"
        "登録は行われません。",
        "confirm_link": "登録を完了する",
    },
    "en": {
        "to": "Dear merchants,",
        "greeting": "Thank you for your continued business.",
        "intro": "We will carry out system maintenance at the time below. During the "
        'maintenance the services marked "unavailable" cannot be used.',
        "apology": "We apologise to merchants and their customers for the inconvenience and "
        "thank you for your understanding.",
        "ki": "Details",
        "when_heading": "1. Services and time",
        "now_heading": "1. Services",
        "window": "Maintenance window",
        "zone": "Time zone",
        "was": "was",
        "postponed_to": "{old} ⇒ postponed to {new}.",
        "moved_to": "{old} ⇒ moved to {new}.",
        "extended_to": "End: {old} ⇒ {new}",
        "latest_end": "planned end {end} (at the latest {latest})",
        "until": "planned end",
        "reason": "Reason",
        "service": "Service",
        "method": "Payment method",
        "impact": "Impact",
        "down": "Unavailable.",
        "up": "Available.",
        "effect_heading": "2. Effect per integration method",
        "effect_intro": "A payment attempted during the maintenance has the following effect.",
        "channel": "Integration method",
        "effect": "Effect",
        "error_code": "Maintenance error code",
        "about_heading": "3. What the maintenance does",
        "notes_heading": "Updates",
        "contact_heading": "4. Contact",
        "phone": "Phone",
        "hours": "Hours",
        "end": "",
        "status_link": "Current status",
        "unsubscribe": "Unsubscribe",
        "hours_unit": "h",
        "minutes_unit": "min",
        "days_unit": "d",
        "confirm_intro": "We received a request to send maintenance notices to this address. "
        "Open the link below to confirm it.",
        "confirm_expiry": "The link expires in {hours} hours.",
        "confirm_ignore": "If you did not ask for this, ignore this mail: nothing is subscribed.",
        "confirm_link": "Confirm the subscription",
    },
}
"""Every other phrase of the mails, per language."""


def local(instant: datetime, zone: str) -> datetime:
    """``instant`` in ``zone`` (an IANA name)."""
    return instant.astimezone(ZoneInfo(zone))


def short_date(instant: datetime, zone: str, lang: str) -> str:
    """The local date as the subject writes it: ``8/9`` (ja), ``Aug 9`` (en)."""
    t = local(instant, zone)
    return f"{t.month}/{t.day}" if lang == "ja" else f"{MONTHS_EN[t.month - 1]} {t.day}"


def long_date(t: datetime, lang: str) -> str:
    """A local date with its weekday: ``2021年8月9日(月)``, ``Mon 9 Aug 2021``."""
    if lang == "ja":
        return f"{t.year}年{t.month}月{t.day}日({WEEKDAYS_JA[t.weekday()]})"
    return f"{WEEKDAYS_EN[t.weekday()]} {t.day} {MONTHS_EN[t.month - 1]} {t.year}"


def span_of(seconds: float, lang: str) -> str:
    """A length of time: ``5時間``, ``1時間30分``, ``7日`` (ja); ``5 h``, ``1 h 30 min`` (en)."""
    p = PHRASES[lang]
    total = int(seconds // 60)
    days, rest = divmod(total, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [
        (days, p["days_unit"]),
        (hours, p["hours_unit"]),
        (minutes, p["minutes_unit"]),
    ]
    sep = "" if lang == "ja" else " "
    out = sep.join(f"{n}{sep}{unit}" for n, unit in parts if n)
    return out or f"0{sep}{p['minutes_unit']}"


def when(start: datetime, end: datetime, zone: str, lang: str) -> str:
    """A window's times in its zone: ``2021年8月9日(月) 01:00〜06:00（5時間）`` or
    ``Mon 9 Aug 2021 01:00–06:00 (5 h)``; the end's date is written when it differs."""
    a, b = local(start, zone), local(end, zone)
    tail = b.strftime("%H:%M") if a.date() == b.date() else f"{long_date(b, lang)} {b:%H:%M}"
    length = span_of((end - start).total_seconds(), lang)
    if lang == "ja":
        return f"{long_date(a, lang)} {a:%H:%M}〜{tail}（{length}）"
    return f"{long_date(a, lang)} {a:%H:%M}–{tail} ({length})"


def zone_label(instant: datetime, zone: str) -> str:
    """The zone named, with its offset at ``instant``: ``Asia/Tokyo (UTC+09:00)``."""
    off = local(instant, zone).utcoffset() or timedelta(0)
    sign = "-" if off < timedelta(0) else "+"
    minutes = abs(int(off.total_seconds())) // 60
    return f"{zone} (UTC{sign}{minutes // 60:02d}:{minutes % 60:02d})"


def clock_time(instant: datetime, zone: str, lang: str, *, since: datetime | None = None) -> str:
    """``06:00`` in ``zone``, with the date when it is not the local date of ``since``."""
    t = local(instant, zone)
    if since is not None and local(since, zone).date() == t.date():
        return f"{t:%H:%M}"
    return f"{long_date(t, lang)} {t:%H:%M}"
