"""Table tests for broadcaster.validation (pure: no I/O besides reading the example, no sleeps).

Every rejection names its field (``InvalidInput.field``) and quotes the bad value; every
schedule-file failure is one ``ScheduleError`` line naming file, window id and field.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import yaml

from broadcaster.domain import (
    DEFAULT_MESSAGES,
    MODAL_TEXT_JA,
    Catalog,
    InvalidInput,
    LocalText,
    Window,
)
from broadcaster.validation import Defaults, ScheduleError, build_window, parse_schedule
from tests.support import DEFAULTS, EXAMPLE, jst

CHANNELS = ("link", "token_embedded", "token_modal", "api", "admin")

CAT = Catalog.model_validate(
    {
        "services": {
            "webcollect": {"methods": {"credit_card": {}, "cvs_online": {}, "carrier": {}}},
            "atobarai": {"methods": {"credit_card": {}, "au_easy": {}, "bank_transfer": {}}},
        }
    }
)
NOW = jst(2021, 5, 1)
BASE: dict[str, Any] = {
    "id": "w1",
    "title": {"ja": "メンテナンス", "en": "Maintenance"},
    "starts_at": "2021-08-09T01:00:00+09:00",
    "ends_at": "2021-08-09T06:00:00+09:00",
    "affected": {"webcollect": ["*"]},
}


def build(
    patch: dict[str, Any] | None = None,
    *,
    drop: tuple[str, ...] = (),
    defaults: Defaults = DEFAULTS,
    now: datetime = NOW,
    **kw: Any,
) -> Window:
    raw = {k: v for k, v in {**BASE, **(patch or {})}.items() if k not in drop}
    return build_window(raw, catalog=CAT, defaults=defaults, now=now, **kw)


# -- build_window rejections ------------------------------------------------------------------

NY = {"timezone": "America/New_York"}


@pytest.mark.parametrize(
    ("patch", "field", "named"),
    [
        # ends_at not after starts_at (equal: a window of zero length; before)
        (
            {"ends_at": "2021-08-09T01:00:00+09:00"},
            "ends_at",
            ["2021-08-09T01:00:00+09:00", "after starts_at"],
        ),
        (
            {"ends_at": "2021-08-09T00:59:59+09:00"},
            "ends_at",
            ["2021-08-09T00:59:59+09:00", "2021-08-09T01:00:00+09:00"],
        ),
        # the same instant written in two zones is still not after
        ({"ends_at": "2021-08-08T16:00:00Z"}, "ends_at", ["2021-08-08T16:00:00Z"]),
        # naive times without a timezone: the default zone is never guessed for input
        ({"starts_at": "2021-08-09T01:00"}, "starts_at", ["'2021-08-09T01:00'", "timezone"]),
        ({"ends_at": "2021-08-09T06:00:00"}, "ends_at", ["'2021-08-09T06:00:00'", "timezone"]),
        ({"announce_at": "2021-05-14T10:00"}, "announce_at", ["'2021-05-14T10:00'", "timezone"]),
        ({"starts_at": datetime(2021, 8, 9, 1)}, "starts_at", ["2021-08-09T01:00:00", "timezone"]),
        # unknown time zone
        ({"timezone": "Asia/Tokio"}, "timezone", ["'Asia/Tokio'"]),
        ({"timezone": "JST+9"}, "timezone", ["'JST+9'"]),
        ({"timezone": "../../etc/passwd"}, "timezone", ["'../../etc/passwd'"]),
        # spring-forward gap and fall-back fold (broadcaster/timeparse.py): both candidates named
        (
            {**NY, "starts_at": "2024-03-10T02:30", "ends_at": "2024-03-10T05:00"},
            "starts_at",
            [
                "'2024-03-10T02:30'",
                "does not exist",
                "America/New_York",
                "2024-03-10T01:30:00-05:00",
                "2024-03-10T03:30:00-04:00",
            ],
        ),
        (
            {**NY, "starts_at": "2024-11-03T01:30", "ends_at": "2024-11-03T05:00"},
            "starts_at",
            [
                "'2024-11-03T01:30'",
                "ambiguous",
                "America/New_York",
                "2024-11-03T01:30:00-04:00",
                "2024-11-03T01:30:00-05:00",
            ],
        ),
        (
            {**NY, "starts_at": "2024-11-03T00:30", "ends_at": "2024-11-03T01:30"},
            "ends_at",
            [
                "'2024-11-03T01:30'",
                "ambiguous",
                "2024-11-03T01:30:00-04:00",
                "2024-11-03T01:30:00-05:00",
            ],
        ),
        # catalog checks
        ({"affected": {"nosuch": ["*"]}}, "affected.nosuch", ["'nosuch'", "webcollect"]),
        (
            {"affected": {"webcollect": ["au_easy"]}},
            "affected.webcollect",
            ["'au_easy'", "credit_card"],
        ),
        (
            {"affected": {"webcollect": ["credit_card"], "atobarai": ["carrier"]}},
            "affected.atobarai",
            ["'carrier'"],
        ),
        ({"affected": {}}, "affected", ["at least one"]),
        ({"affected": {"webcollect": []}}, "affected.webcollect", ["empty"]),
        ({"affected": {"webcollect": "credit_card"}}, "affected.webcollect", ["'credit_card'"]),
        # longer than MAINTCAST_MAX_WINDOW_S (604800 s = 7 days)
        (
            {"ends_at": "2021-08-16T01:00:01+09:00"},
            "ends_at",
            ["2021-08-16T01:00:01+09:00", "604801", "604800"],
        ),
        # id format
        ({"id": "Webcollect_2021"}, "id", ["'Webcollect_2021'"]),
        ({"id": "-leading-dash"}, "id", ["'-leading-dash'"]),
        ({"id": "a" * 65}, "id", ["'aaaa"]),
        ({"id": ""}, "id", ["''"]),
        # oversized text
        ({"title": {"ja": "x" * 4001}}, "title.ja", ["4000", "'xxxxxxxx"]),
        ({"description": {"en": "y" * 4001}}, "description.en", ["4000", "'yyyyyyyy"]),
        ({"title": {}}, "title", ["ja or en"]),
        ({"title": {"fr": "Maintenance"}}, "title.fr", ["unknown field", "'Maintenance'"]),
        # unknown fields
        ({"colour": "red"}, "colour", ["unknown field", "'red'"]),
        ({"starts": "2021-08-09T01:00:00+09:00"}, "starts", ["unknown field"]),
        ({"messages": {"sms": {"ja": "x"}}}, "messages.sms", ["'sms'", "token_modal"]),
        ({"error_code": "Z01 000"}, "error_code", ["'Z01 000'"]),
        # announce_at after starts_at: an in-progress window must always be public
        (
            {"announce_at": "2021-08-09T01:00:00.001+09:00"},
            "announce_at",
            ["2021-08-09T01:00:00.001+09:00", "starts_at"],
        ),
        # server-owned fields on the HTTP API
        ({"status": "scheduled"}, "status", ["server-owned"]),
        ({"history": []}, "history", ["server-owned"]),
        # instants are RFC 3339 text (or YAML timestamps), never numbers or bare dates
        ({"starts_at": 1628438400}, "starts_at", ["1628438400"]),
        ({"starts_at": 1628438400.5}, "starts_at", ["1628438400.5"]),
        ({"starts_at": date(2021, 8, 9), **NY}, "starts_at", ["2021-08-09", "without a time"]),
        ({"starts_at": "2021-08-09", **NY}, "starts_at", ["'2021-08-09'", "without a time"]),
        ({"starts_at": None}, "starts_at", ["None"]),
        ({"ends_at": "tomorrow"}, "ends_at", ["'tomorrow'"]),
    ],
)
def test_build_window_rejects(patch: dict[str, Any], field: str, named: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        build(patch)
    exc = info.value
    assert exc.field == field
    assert exc.message.startswith(field.split(".")[0])
    for text in named:
        assert text in exc.message
    assert str(exc) == exc.message
    assert len(exc.message) < 400  # never the whole oversized value


@pytest.mark.parametrize(
    ("drop", "field"),
    [
        (("title",), "title"),
        (("starts_at",), "starts_at"),
        (("ends_at",), "ends_at"),
        (("affected",), "affected"),
    ],
)
def test_build_window_requires(drop: tuple[str, ...], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        build(drop=drop)
    assert info.value.field == field
    assert "required" in info.value.message.lower()


@pytest.mark.parametrize("raw", [[], "window", None, 42])
def test_build_window_rejects_non_objects(raw: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        build_window(raw, catalog=CAT, defaults=DEFAULTS, now=NOW)
    assert info.value.field == "body"


def test_build_window_needs_an_id() -> None:
    with pytest.raises(InvalidInput) as info:
        build(drop=("id",))
    assert info.value.field == "id"
    assert build(drop=("id",), window_id="generated-1").id == "generated-1"
    assert build(window_id="generated-1").id == "w1"  # the object's own id wins


@pytest.mark.parametrize(
    ("patch", "starts", "ends"),
    [
        # the boundaries of the rules above, accepted
        ({}, jst(2021, 8, 9, 1), jst(2021, 8, 9, 6)),
        (
            {"ends_at": "2021-08-09T01:00:00.001+09:00"},
            jst(2021, 8, 9, 1),
            jst(2021, 8, 9, 1) + timedelta(milliseconds=1),
        ),
        ({"ends_at": "2021-08-16T01:00:00+09:00"}, jst(2021, 8, 9, 1), jst(2021, 8, 16, 1)),
        # a local time plus a zone
        (
            {
                "starts_at": "2021-08-09T01:00",
                "ends_at": "2021-08-09T06:00",
                "timezone": "Asia/Tokyo",
            },
            jst(2021, 8, 9, 1),
            jst(2021, 8, 9, 6),
        ),
        # gap / fold times are fine with an explicit offset
        (
            {**NY, "starts_at": "2024-11-03T01:30:00-05:00", "ends_at": "2024-11-03T03:00"},
            datetime(2024, 11, 3, 6, 30, tzinfo=UTC),
            datetime(2024, 11, 3, 8, tzinfo=UTC),
        ),
        (
            {**NY, "starts_at": "2024-03-10T01:30", "ends_at": "2024-03-10T03:30"},
            datetime(2024, 3, 10, 6, 30, tzinfo=UTC),
            datetime(2024, 3, 10, 7, 30, tzinfo=UTC),
        ),
        # aware datetimes (as YAML timestamps arrive)
        (
            {"starts_at": datetime(2021, 8, 8, 16, tzinfo=UTC)},
            jst(2021, 8, 9, 1),
            jst(2021, 8, 9, 6),
        ),
    ],
)
def test_build_window_resolves_to_utc(
    patch: dict[str, Any],
    starts: datetime,
    ends: datetime,
) -> None:
    w = build(patch)
    assert (w.starts_at, w.ends_at) == (starts, ends)
    assert w.starts_at.utcoffset() == timedelta(0)


# -- defaults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "defaults", "timezone"),
    [
        ({}, DEFAULTS, "Asia/Tokyo"),
        ({}, Defaults("Europe/London", "Z010000000", 604_800), "Europe/London"),
        (NY, DEFAULTS, "America/New_York"),
    ],
)
def test_default_timezone(patch: dict[str, Any], defaults: Defaults, timezone: str) -> None:
    w = build(patch, defaults=defaults)
    assert w.timezone == timezone
    assert w.starts_at == jst(2021, 8, 9, 1)  # the offset given wins over any zone


@pytest.mark.parametrize(
    ("patch", "defaults", "error_code"),
    [
        ({}, DEFAULTS, "Z010000000"),
        ({}, Defaults("Asia/Tokyo", "E999", 604_800), "E999"),
        ({"error_code": "Z020000000"}, DEFAULTS, "Z020000000"),
    ],
)
def test_default_error_code(patch: dict[str, Any], defaults: Defaults, error_code: str) -> None:
    assert build(patch, defaults=defaults).error_code == error_code


@pytest.mark.parametrize(
    ("messages", "custom"),
    [
        ({}, {}),
        ({"link": {"en": "Hosted page down"}}, {"link": LocalText(en="Hosted page down")}),
        (
            {"token_modal": {"ja": "別の文言"}, "api": {"en": "API down", "ja": "API停止"}},
            {
                "token_modal": LocalText(ja="別の文言"),
                "api": LocalText(ja="API停止", en="API down"),
            },
        ),
    ],
)
def test_every_channel_gets_a_message(
    messages: dict[str, Any],
    custom: dict[str, LocalText],
) -> None:
    w = build({"messages": messages})
    assert set(w.messages) == set(CHANNELS)
    for channel in CHANNELS:
        assert w.messages[channel] == custom.get(channel, DEFAULT_MESSAGES[channel])
    if "token_modal" not in custom:
        assert w.messages["token_modal"].ja == MODAL_TEXT_JA  # the notice's modal text
    for text in w.messages.values():
        assert text.ja or text.en


@pytest.mark.parametrize(
    ("patch", "now", "announce_at"),
    [
        ({}, NOW, NOW),  # created ahead: announced at once
        ({}, jst(2021, 8, 9, 1), jst(2021, 8, 9, 1)),
        ({}, jst(2021, 8, 9, 2), jst(2021, 8, 9, 1)),  # created in progress: public since start
        ({"announce_at": "2021-05-14T10:00:00+09:00"}, NOW, jst(2021, 5, 14, 10)),
        ({"announce_at": "2021-05-14T10:00", "timezone": "Asia/Tokyo"}, NOW, jst(2021, 5, 14, 10)),
        ({"announce_at": "2021-08-09T01:00:00+09:00"}, NOW, jst(2021, 8, 9, 1)),
    ],
)
def test_default_announce_at(patch: dict[str, Any], now: datetime, announce_at: datetime) -> None:
    w = build(patch, now=now)
    assert w.announce_at == announce_at
    assert w.announce_at <= w.starts_at


def test_announce_at_kept_from_previous_on_reimport() -> None:
    previous = build({"announce_at": "2021-05-14T10:00:00+09:00"})
    assert build(now=jst(2021, 7, 1), previous=previous).announce_at == jst(2021, 5, 14, 10)
    # moved earlier than the old announcement: still public no later than its start
    earlier = {"starts_at": "2021-05-10T01:00:00+09:00", "ends_at": "2021-05-10T06:00:00+09:00"}
    assert build(earlier, now=jst(2021, 5, 1), previous=previous).announce_at == jst(2021, 5, 10, 1)


@pytest.mark.parametrize(
    ("affected", "covers"),
    [
        (
            {"webcollect": ["*"]},
            {
                ("webcollect", "credit_card"),
                ("webcollect", "cvs_online"),
                ("webcollect", "carrier"),
            },
        ),
        (
            {"webcollect": ["credit_card", "*"]},
            {
                ("webcollect", "credit_card"),
                ("webcollect", "cvs_online"),
                ("webcollect", "carrier"),
            },
        ),
        ({"atobarai": ["au_easy"]}, {("atobarai", "au_easy")}),
        (
            {"webcollect": ["carrier"], "atobarai": ["*"]},
            {
                ("webcollect", "carrier"),
                ("atobarai", "credit_card"),
                ("atobarai", "au_easy"),
                ("atobarai", "bank_transfer"),
            },
        ),
    ],
)
def test_star_means_every_method(affected: dict[str, list[str]], covers: set[Any]) -> None:
    w = build({"affected": affected})
    assert w.affected == {s: tuple(m) for s, m in affected.items()}
    assert w.covers(CAT) == covers


def test_other_defaults() -> None:
    w = build()
    assert w.description == LocalText()
    assert w.cancelled is False
    assert w.history == ()
    assert build({"status": "cancelled"}, from_file=True).cancelled is True
    assert build({"status": "completed"}, from_file=True).cancelled is False


# -- parse_schedule -------------------------------------------------------------------------

SOURCE = "ops/schedule-2021.yaml"


def test_example_schedule() -> None:
    schedule = parse_schedule(
        EXAMPLE.read_text(encoding="utf-8"), source=str(EXAMPLE), defaults=DEFAULTS, now=NOW
    )
    (w,) = schedule.windows
    assert w.id == "webcollect-2021-08"
    assert w.starts_at == datetime(2021, 8, 8, 16, tzinfo=UTC)
    assert w.ends_at == datetime(2021, 8, 8, 21, tzinfo=UTC)
    assert w.announce_at == datetime(2021, 5, 14, 1, tzinfo=UTC)
    assert w.timezone == "Asia/Tokyo"
    assert w.error_code == "Z010000000"
    assert w.affected == {
        "webcollect": ("*",),
        "atobarai": ("credit_card", "cvs_online", "kuroneko_pay"),
    }
    assert w.covers(schedule.catalog) == {
        ("webcollect", "credit_card"),
        ("webcollect", "cvs_online"),
        ("webcollect", "carrier"),
        ("webcollect", "kuroneko_pay"),
        ("atobarai", "credit_card"),
        ("atobarai", "cvs_online"),
        ("atobarai", "kuroneko_pay"),
    }
    assert w.messages["token_modal"].ja == MODAL_TEXT_JA
    assert set(w.messages) == set(CHANNELS)
    assert w.cancelled is False
    (h,) = w.history
    assert h.change == "rescheduled"
    assert h.at == datetime(2021, 6, 1, 1, tzinfo=UTC)
    assert h.from_ is not None
    assert h.to is not None
    assert (h.from_.starts_at, h.from_.ends_at) == (jst(2021, 6, 14, 1), jst(2021, 6, 14, 6))
    assert (h.to.starts_at, h.to.ends_at) == (w.starts_at, w.ends_at)
    assert h.actor == "ops"
    assert h.reason is not None
    assert "postponed" in h.reason
    assert w.reschedules() == 1
    assert schedule.catalog.components() == [
        ("webcollect", "credit_card"),
        ("webcollect", "cvs_online"),
        ("webcollect", "carrier"),
        ("webcollect", "kuroneko_pay"),
        ("atobarai", "credit_card"),
        ("atobarai", "cvs_online"),
        ("atobarai", "au_easy"),
        ("atobarai", "bank_transfer"),
        ("atobarai", "kuroneko_pay"),
    ]
    assert schedule.contact is not None
    assert schedule.contact.email == "payments@example.com"


CATALOG_YAML = """\
catalog:
  services:
    webcollect:
      methods: {credit_card: {}, cvs_online: {}}
"""


def schedule_text(fields: str, history: str = "") -> str:
    """A one-window schedule; ``fields`` are the window's time lines, verbatim YAML."""
    lines = "".join(f"    {line}\n" for line in fields.strip().splitlines())
    return (
        CATALOG_YAML
        + "windows:\n  - id: w1\n    title: {en: Maintenance}\n"
        + "    affected: {webcollect: ['*']}\n"
        + lines
        + history
    )


def one_window(text: str) -> Window:
    (w,) = parse_schedule(text, source=SOURCE, defaults=DEFAULTS, now=NOW).windows
    return w


QUOTED = one_window(
    schedule_text(
        'starts_at: "2021-08-09T01:00:00+09:00"\nends_at: "2021-08-09T06:00:00+09:00"\n'
        'announce_at: "2021-05-14T10:00:00+09:00"'
    )
)


@pytest.mark.parametrize(
    "fields",
    [
        # unquoted YAML timestamps, space or T, with offsets or Z
        "starts_at: 2021-08-09 01:00:00+09:00\nends_at: 2021-08-09 06:00:00+09:00\n"
        "announce_at: 2021-05-14 10:00:00+09:00",
        "starts_at: 2021-08-09T01:00:00+09:00\nends_at: 2021-08-09T06:00:00+09:00\n"
        "announce_at: 2021-05-14T10:00:00+09:00",
        "starts_at: 2021-08-08T16:00:00Z\nends_at: 2021-08-08T21:00:00Z\n"
        "announce_at: 2021-05-14T01:00:00.0Z",
        # mixed quoted and unquoted
        "starts_at: '2021-08-09 01:00:00+09:00'\nends_at: 2021-08-09 06:00:00+09:00\n"
        "announce_at: 2021-05-14 10:00:00+09:00",
        # naive YAML timestamps with a timezone are local times, like naive strings
        "starts_at: 2021-08-09 01:00:00\nends_at: 2021-08-09 06:00:00\n"
        "announce_at: 2021-05-14 10:00:00\ntimezone: Asia/Tokyo",
        "starts_at: '2021-08-09T01:00'\nends_at: 2021-08-09 06:00:00\n"
        "announce_at: '2021-05-14T10:00'\ntimezone: Asia/Tokyo",
    ],
)
def test_yaml_timestamps_load_like_strings(fields: str) -> None:
    w = one_window(schedule_text(fields))
    assert (w.starts_at, w.ends_at, w.announce_at) == (
        QUOTED.starts_at,
        QUOTED.ends_at,
        QUOTED.announce_at,
    )
    assert (w.starts_at, w.ends_at) == (jst(2021, 8, 9, 1), jst(2021, 8, 9, 6))


def test_yaml_timestamps_in_history() -> None:
    history = (
        "    history:\n"
        "      - at: 2021-06-01 10:00:00+09:00\n"
        "        change: rescheduled\n"
        "        from:\n"
        "          starts_at: 2021-06-14 01:00:00+09:00\n"
        "          ends_at: '2021-06-14T06:00:00+09:00'\n"
    )
    w = one_window(
        schedule_text(
            "starts_at: 2021-08-09 01:00:00+09:00\nends_at: 2021-08-09 06:00:00+09:00", history
        )
    )
    (h,) = w.history
    assert h.at == jst(2021, 6, 1, 10)
    assert h.from_ is not None
    assert (h.from_.starts_at, h.from_.ends_at) == (jst(2021, 6, 14, 1), jst(2021, 6, 14, 6))


def _raises_schedule_error(text: str) -> str:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text, source=SOURCE, defaults=DEFAULTS, now=NOW)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{SOURCE}: ")
    return message


@pytest.mark.parametrize(
    ("fields", "field", "named"),
    [
        # unquoted naive YAML timestamp and no timezone: rejected like any naive time
        (
            "starts_at: 2021-08-09 01:00:00\nends_at: 2021-08-09 06:00:00+09:00",
            "starts_at",
            ["2021-08-09", "timezone"],
        ),
        (
            "starts_at: 2021-08-09 01:00:00+09:00\nends_at: 2021-08-09 06:00:00",
            "ends_at",
            ["2021-08-09", "timezone"],
        ),
        # a YAML date (no time of day) is not a date-time
        (
            "starts_at: 2021-08-09\nends_at: 2021-08-10\ntimezone: Asia/Tokyo",
            "starts_at",
            ["2021-08-09", "without a time"],
        ),
        # a number is not a date-time either (not read as Unix time)
        ("starts_at: 1628438400\nends_at: 2021-08-09 06:00:00+09:00", "starts_at", ["1628438400"]),
    ],
)
def test_yaml_timestamp_rejections(fields: str, field: str, named: list[str]) -> None:
    message = _raises_schedule_error(schedule_text(fields))
    assert message.startswith(f"{SOURCE}: window w1: {field}: ")
    for text in named:
        assert text in message


@pytest.mark.parametrize(
    "text",
    [
        "windows: [\n  - {id: x\n",
        "catalog: {services: {webcollect: {methods: {credit_card: {}}}}\n",
        "windows:\n  - id: a\n   title: b\n",
        "\tcatalog: {}\n",
    ],
)
def test_malformed_yaml(text: str) -> None:
    message = _raises_schedule_error(text)
    assert "malformed YAML" in message


def _window_yaml(window: dict[str, Any], extra: list[dict[str, Any]] | None = None) -> str:
    catalog: dict[str, Any] = {
        "services": {"webcollect": {"methods": {"credit_card": {}, "cvs_online": {}}}}
    }
    return yaml.safe_dump(
        {"catalog": catalog, "windows": [window, *(extra or [])]}, allow_unicode=True
    )


WIN: dict[str, Any] = {
    "id": "w1",
    "title": {"en": "Maintenance"},
    "starts_at": "2021-08-09T01:00:00+09:00",
    "ends_at": "2021-08-09T06:00:00+09:00",
    "affected": {"webcollect": ["*"]},
}


@pytest.mark.parametrize(
    ("patch", "wid", "field", "named"),
    [
        ({"affected": {"nosuch": ["*"]}}, "w1", "affected", ["'nosuch'"]),
        (
            {"affected": {"webcollect": ["bank_transfer"]}},
            "w1",
            "affected.webcollect",
            ["'bank_transfer'"],
        ),
        ({"affected": {}}, "w1", "affected", []),
        ({"ends_at": "2021-08-09T00:00:00+09:00"}, "w1", "ends_at", ["2021-08-09T00:00:00+09:00"]),
        ({"starts_at": "2021-08-09T01:00"}, "w1", "starts_at", ["'2021-08-09T01:00'"]),
        ({"timezone": "Asia/Tokio"}, "w1", "timezone", ["'Asia/Tokio'"]),
        (
            {
                "timezone": "America/New_York",
                "starts_at": "2024-03-10T02:30",
                "ends_at": "2024-03-10T05:00",
            },
            "w1",
            "starts_at",
            ["2024-03-10T01:30:00-05:00", "2024-03-10T03:30:00-04:00"],
        ),
        ({"ends_at": "2021-08-20T01:00:00+09:00"}, "w1", "ends_at", ["604800"]),
        (
            {"announce_at": "2021-08-10T00:00:00+09:00"},
            "w1",
            "announce_at",
            ["2021-08-10T00:00:00+09:00"],
        ),
        ({"colour": "red"}, "w1", "colour", ["unknown field"]),
        ({"title": {"ja": "長" * 4001}}, "w1", "title.ja", ["4000"]),
        ({"messages": {"sms": {"ja": "x"}}}, "w1", "messages.sms", ["'sms'"]),
        ({"status": "paused"}, "w1", "status", ["'paused'"]),
        (
            {"history": [{"at": "2021-06-01T10:00:00+09:00", "change": "moved"}]},
            "w1",
            "history.0.change",
            ["'moved'"],
        ),
        (
            {"history": [{"at": "2021-06-01T10:00", "change": "updated"}]},
            "w1",
            "history.0.at",
            ["'2021-06-01T10:00'"],
        ),
        (
            {
                "history": [
                    {
                        "at": "2021-06-01T10:00:00+09:00",
                        "change": "rescheduled",
                        "from": {"starts_at": "2021-06-14T01:00"},
                    }
                ]
            },
            "w1",
            "history.0.from.ends_at",
            ["required"],
        ),
        ({"id": "Bad_ID"}, "Bad_ID", "id", ["'Bad_ID'"]),
        # a line break inside a quoted value is escaped: the message stays one line
        ({"starts_at": "2021-08-09\nT01:00:00+09:00"}, "w1", "starts_at", ["2021-08-09\\n"]),
        ({"timezone": "Asia/\nTokyo"}, "w1", "timezone", ["Asia/\\nTokyo"]),
        ({"id": "w1\u2028x"}, "w1\\u2028x", "id", []),
    ],
)
def test_schedule_error_names_source_window_and_field(
    patch: dict[str, Any],
    wid: str,
    field: str,
    named: list[str],
) -> None:
    message = _raises_schedule_error(_window_yaml({**WIN, **patch}))
    assert message.startswith(f"{SOURCE}: window {wid}: {field}")
    for text in named:
        assert text in message


@pytest.mark.parametrize(
    ("windows", "label", "field"),
    [
        ([WIN, {**WIN, "title": {"en": "again"}}], "window w1", "id"),  # duplicate id
        ([WIN, {k: v for k, v in WIN.items() if k != "id"}], "window #2", "id"),  # no id
        ([WIN, {**WIN, "id": "w2", "affected": {"nosuch": ["*"]}}], "window w2", "affected"),
    ],
)
def test_schedule_error_names_the_failing_window(
    windows: list[dict[str, Any]],
    label: str,
    field: str,
) -> None:
    message = _raises_schedule_error(_window_yaml(windows[0], windows[1:]))
    assert message.startswith(f"{SOURCE}: {label}: {field}")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("- just\n- a list\n", "mapping"),
        ("catalog: {}\nwindows: []\nextra: 1\n", "'extra'"),
        ("catalog: {}\nwindows: {w1: {}}\n", "windows"),
        ("catalog: {services: {Web: {methods: {card: {}}}}}\n", "'Web'"),
        ("catalog: {services: {webcollect: {methods: {}}}}\n", "catalog.services.webcollect"),
        ("catalog: {services: {web: {methods: {Card: {}}}}}\n", "catalog.services.web.methods"),
        ("catalog: {services: {}}\ncontact: {email: x@example.com, fax: x}\n", "contact.fax"),
    ],
)
def test_schedule_errors_outside_windows(text: str, named: str) -> None:
    assert named in _raises_schedule_error(text)


def test_schedule_keeps_existing_announce_at() -> None:
    first = one_window(_window_yaml({**WIN, "announce_at": "2021-05-14T10:00:00+09:00"}))
    again = parse_schedule(
        _window_yaml(WIN),
        source=SOURCE,
        defaults=DEFAULTS,
        now=jst(2021, 7, 1),
        existing={"w1": first},
    ).windows[0]
    assert again.announce_at == jst(2021, 5, 14, 10)
    fresh = parse_schedule(
        _window_yaml(WIN), source=SOURCE, defaults=DEFAULTS, now=jst(2021, 7, 1)
    ).windows[0]
    assert fresh.announce_at == jst(2021, 7, 1)


def test_empty_schedule() -> None:
    schedule = parse_schedule(CATALOG_YAML, source=SOURCE, defaults=DEFAULTS, now=NOW)
    assert schedule.windows == ()
    assert schedule.catalog.components() == [
        ("webcollect", "credit_card"),
        ("webcollect", "cvs_online"),
    ]
    assert schedule.contact is None
