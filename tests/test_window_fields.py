"""The window fields of the lifecycle additions: ``latest_end``, ``drain_s``, ``reminders``,
``recurrence``, ``series_id`` and ``notes`` are validated (422 naming the field), default so
that nothing else changes, and survive the codec, a PATCH and a re-import.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from broadcaster import codec, ops
from broadcaster.domain import Catalog, InvalidInput, LocalText, Note, Window
from broadcaster.timeparse import InvalidTime, parse_duration
from broadcaster.validation import build_window, parse_schedule
from tests.support import DEFAULTS, jst

CAT = Catalog.model_validate(
    {"services": {"webcollect": {"methods": {"credit_card": {}, "cvs_online": {}}}}}
)
NOW = jst(2021, 5, 1)
BASE: dict[str, Any] = {
    "id": "w1",
    "title": {"ja": "メンテナンス", "en": "Maintenance"},
    "starts_at": "2021-08-09T01:00:00+09:00",
    "ends_at": "2021-08-09T06:00:00+09:00",
    "affected": {"webcollect": ["*"]},
}


def build(patch: dict[str, Any] | None = None, **kw: Any) -> Window:
    return build_window({**BASE, **(patch or {})}, catalog=CAT, defaults=DEFAULTS, now=NOW, **kw)


def test_defaults_change_nothing() -> None:
    w = build()
    assert (w.latest_end, w.drain_s, w.reminders, w.recurrence, w.series_id, w.notes) == (
        None,
        0,
        None,
        None,
        None,
        (),
    )
    assert w.drain_starts_at == w.starts_at
    doc = codec.window_doc(w, NOW)
    assert {k: doc[k] for k in ("latest_end", "drain_s", "reminders", "recurrence")} == {
        "latest_end": None,
        "drain_s": 0,
        "reminders": None,
        "recurrence": None,
    }
    assert (doc["series_id"], doc["notes"]) == (None, [])


FULL: dict[str, Any] = {
    "latest_end": "2021-08-09T07:00:00+09:00",
    "drain_s": 600,
    "reminders": ["P1D", "PT1H"],
    "recurrence": {"rrule": "FREQ=MONTHLY;BYDAY=2TH", "exdates": ["2021-09-09T01:00"]},
    "series_id": "webcollect-monthly",
}


def test_every_field_is_stored_and_round_trips() -> None:
    w = build(FULL)
    assert w.latest_end == jst(2021, 8, 9, 7)
    assert w.drain_s == 600
    assert w.drain_starts_at == jst(2021, 8, 9, 0, 50)
    assert w.reminders == ("P1D", "PT1H")
    assert w.recurrence is not None
    assert w.recurrence.exdates == ("2021-09-09T01:00",)
    assert w.series_id == "webcollect-monthly"
    doc = codec.window_doc(w, NOW)
    assert doc["latest_end"] == "2021-08-09T07:00:00+09:00"
    assert doc["recurrence"] == FULL["recurrence"]
    assert codec.window_from_doc(codec.loads(codec.dumps(doc))) == w


def test_latest_end_equal_to_ends_at_is_allowed() -> None:
    assert build({"latest_end": BASE["ends_at"]}).latest_end == jst(2021, 8, 9, 6)


def test_local_latest_end_uses_the_window_zone() -> None:
    w = build(
        {
            "starts_at": "2021-08-09T01:00",
            "ends_at": "2021-08-09T06:00",
            "latest_end": "2021-08-09T07:30",
            "timezone": "Asia/Tokyo",
        }
    )
    assert w.latest_end == jst(2021, 8, 9, 7, 30)


def test_drain_never_starts_before_the_announcement() -> None:
    w = build({"drain_s": 3600, "announce_at": "2021-08-09T00:30:00+09:00"})
    assert w.drain_starts_at == jst(2021, 8, 9, 0, 30)


@pytest.mark.parametrize(
    ("patch", "field", "named"),
    [
        ({"latest_end": "2021-08-09T05:59:59+09:00"}, "latest_end", "at or after ends_at"),
        ({"latest_end": "2021-08-09T07:00"}, "latest_end", "timezone"),
        ({"latest_end": "2021-08-30T07:00:00+09:00"}, "latest_end", "MAINTCAST_MAX_WINDOW_S"),
        ({"latest_end": 1628467200}, "latest_end", "1628467200"),
        ({"drain_s": -1}, "drain_s", "-1"),
        ({"drain_s": 7201}, "drain_s", "7201"),
        ({"drain_s": "600"}, "drain_s", "'600'"),
        ({"drain_s": True}, "drain_s", "True"),
        ({"drain_s": 1.5}, "drain_s", "1.5"),
        ({"reminders": ["P1M"]}, "reminders.0", "'P1M'"),
        ({"reminders": ["PT1H", "P1D", "1 day"]}, "reminders.2", "'1 day'"),
        ({"reminders": ["PT0S"]}, "reminders.0", "longer than zero"),
        ({"reminders": ["PT60M", "PT1H"]}, "reminders.1", "repeats"),
        ({"reminders": "P1D"}, "reminders", "list"),
        ({"reminders": [f"PT{i + 1}H" for i in range(11)]}, "reminders", "at most 10"),
        ({"recurrence": {"exdates": []}}, "recurrence.rrule", "Field required"),
        ({"recurrence": {"rrule": ""}}, "recurrence.rrule", "at least 1"),
        ({"recurrence": {"rrule": "FREQ=DAILY", "x": 1}}, "recurrence.x", "unknown field"),
        (
            {"recurrence": {"rrule": "FREQ=DAILY", "exdates": ["soon"]}},
            "recurrence.exdates.0",
            "'soon'",
        ),
        ({"series_id": "Bad Id"}, "series_id", "'Bad Id'"),
    ],
)
def test_rejections_name_the_field(patch: dict[str, Any], field: str, named: str) -> None:
    with pytest.raises(InvalidInput) as info:
        build(patch)
    assert info.value.field == field
    assert named in info.value.message


NOTE = {"at": "2021-08-09T02:00:00+09:00", "message": {"ja": "順調です", "en": "On track"}}


def test_notes_are_server_owned_on_the_api() -> None:
    with pytest.raises(InvalidInput) as info:
        build({"notes": [NOTE]})
    assert info.value.field == "notes"
    assert "server-owned" in info.value.message


def test_notes_from_a_schedule_file() -> None:
    w = build({"notes": [{**NOTE, "actor": "ops"}]}, from_file=True)
    assert w.notes == (
        Note(at=jst(2021, 8, 9, 2), message=LocalText(ja="順調です", en="On track"), actor="ops"),
    )
    with pytest.raises(InvalidInput) as info:
        build({"notes": [{**NOTE, "at": "later"}]}, from_file=True)
    assert info.value.field == "notes.0.at"


def test_schedule_file_accepts_every_field() -> None:
    text = """
catalog: {services: {webcollect: {methods: {credit_card: {}}}}}
windows:
  - id: w1
    title: {ja: t}
    starts_at: 2021-08-09T01:00:00+09:00
    ends_at: 2021-08-09T06:00:00+09:00
    latest_end: 2021-08-09T07:00:00+09:00
    drain_s: 600
    reminders: [P1D]
    recurrence: {rrule: "FREQ=MONTHLY;BYDAY=2TH", exdates: [2021-09-09T01:00:00]}
    series_id: s1
    notes: [{at: 2021-08-09T02:00:00+09:00, message: {en: ok}}]
    affected: {webcollect: ["*"]}
"""
    (w,) = parse_schedule(text, source="f.yaml", defaults=DEFAULTS, now=NOW).windows
    assert (w.latest_end, w.drain_s, w.reminders, w.series_id) == (
        jst(2021, 8, 9, 7),
        600,
        ("P1D",),
        "s1",
    )
    assert w.recurrence is not None
    assert w.recurrence.exdates == ("2021-09-09T01:00:00",)
    assert [n.message.en for n in w.notes] == ["ok"]


def test_patch_keeps_notes_and_refuses_them() -> None:
    noted = build(from_file=True, patch={"notes": [NOTE]})
    new = ops.patch_window(
        noted, {"drain_s": 300}, catalog=CAT, defaults=DEFAULTS, now=NOW, actor="boss"
    )
    assert new.window.notes == noted.notes
    assert new.window.drain_s == 300
    with pytest.raises(InvalidInput) as info:
        ops.patch_window(
            noted, {"notes": []}, catalog=CAT, defaults=DEFAULTS, now=NOW, actor="boss"
        )
    assert info.value.field == "notes"


def test_reimport_keeps_the_server_notes() -> None:
    server = build(from_file=True, patch={"notes": [NOTE]})
    other = {"at": "2021-08-09T03:00:00+09:00", "message": {"en": "later"}}
    file = build(from_file=True, patch={"notes": [other]})
    merged, cause = ops.merge_imported(server, file, NOW, "import")
    assert [n.at for n in merged.notes] == [jst(2021, 8, 9, 2), jst(2021, 8, 9, 3)]
    assert cause is not None
    assert cause.type == "maintenance.updated"


def test_windows_stored_before_the_fields_existed_still_load() -> None:
    doc = codec.window_doc(build(), NOW)
    for k in ("latest_end", "drain_s", "reminders", "recurrence", "series_id", "notes"):
        del doc[k]
    assert codec.window_from_doc(doc) == build()


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("P7D", timedelta(days=7)),
        ("P1W", timedelta(weeks=1)),
        ("PT1H", timedelta(hours=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT90S", timedelta(seconds=90)),
        ("PT1H30M", timedelta(minutes=90)),
    ],
)
def test_parse_duration(text: str, span: timedelta) -> None:
    assert parse_duration(text, field="d") == span


@pytest.mark.parametrize(
    "bad", ["P", "PT", "P1Y", "P1M", "PT0S", "P0D", "P1D1H", "1D", "p1d", "P1WT1H", 5, None]
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(InvalidTime) as info:
        parse_duration(bad, field="d")
    assert info.value.field == "d"
    assert info.value.message.startswith("d: ")
