"""Recurring series, pure: materialized occurrences, top-up, series-wide patch and cancel,
import (broadcaster.series, broadcaster.series_ops)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from broadcaster import ops
from broadcaster.domain import Conflict, InvalidInput, Window, lifecycle
from broadcaster.series import (
    HORIZON,
    MAX_AHEAD,
    SeriesChange,
    of_series,
    series_doc,
    status_of,
    top_up,
)
from broadcaster.series_ops import (
    cancel_series,
    create_series,
    import_series,
    one_off,
    patch_series,
)
from broadcaster.validation import build_window, parse_schedule
from tests.support import DEFAULTS, EXAMPLE, jst

CATALOG = parse_schedule(
    EXAMPLE.read_text(encoding="utf-8"), source="x", defaults=DEFAULTS, now=jst(2021, 1, 1)
).catalog
CREATED = jst(2021, 7, 20, 10)
MONTHLY: dict[str, Any] = {
    "id": "webcollect-monthly",
    "title": {"ja": "定期メンテナンス", "en": "Monthly maintenance"},
    "starts_at": "2021-08-12T01:00",
    "ends_at": "2021-08-12T06:00",
    "timezone": "Asia/Tokyo",
    "latest_end": "2021-08-12T06:30",
    "drain_s": 600,
    "affected": {"webcollect": ["*"]},
    "recurrence": {"rrule": "FREQ=MONTHLY;BYDAY=2TH"},
}


def create(body: dict[str, Any] | None = None, now: datetime = CREATED, **kw: Any) -> SeriesChange:
    return create_series(
        {**MONTHLY, **(body or {})},
        kw.get("windows", {}),
        kw.get("series", {}),
        catalog=CATALOG,
        defaults=DEFAULTS,
        now=now,
        actor="boss",
        new_id="w-generated",
    )


def patch(sc: SeriesChange, raw: Any, now: datetime, windows: dict[str, Window]) -> SeriesChange:
    return patch_series(
        sc.series, raw, windows, catalog=CATALOG, defaults=DEFAULTS, now=now, actor="boss"
    )


def test_creating_a_series_materializes_its_occurrences() -> None:
    sc = create()
    s = sc.series
    assert s.series_id == s.id == "webcollect-monthly"
    assert s.recurrence is not None
    assert (sc.cause.type, sc.cause.window_id, sc.cause.actor) == (
        "maintenance.scheduled",
        "webcollect-monthly",
        "boss",
    )
    # every second Thursday from 2021-08-12 that starts within 400 days of the creation
    ids = list(sc.windows)
    assert ids[:3] == [
        "webcollect-monthly--20210812",
        "webcollect-monthly--20210909",
        "webcollect-monthly--20211014",
    ]
    assert ids[-1] == "webcollect-monthly--20220811"
    assert len(ids) == 13
    occ = sc.windows["webcollect-monthly--20210909"]
    assert (occ.starts_at, occ.ends_at) == (jst(2021, 9, 9, 1), jst(2021, 9, 9, 6))
    assert occ.latest_end == jst(2021, 9, 9, 6, 30)  # the reserve's length is kept
    assert occ.drain_s == 600
    assert occ.title == s.title
    assert occ.affected == s.affected
    assert occ.series_id == s.id
    assert occ.recurrence is None
    assert occ.history == ()
    # announced as long before its start as the first: created 2021-07-20 10:00 for 08-12
    assert s.announce_at == CREATED
    assert occ.starts_at - occ.announce_at == jst(2021, 8, 12, 1) - CREATED
    assert series_doc(s, CREATED)["status"] == "scheduled"
    assert series_doc(s, CREATED)["recurrence"] == {
        "rrule": "FREQ=MONTHLY;BYDAY=2TH",
        "exdates": [],
    }


def test_at_most_100_occurrences_ahead_and_the_horizon() -> None:
    daily = create({"recurrence": {"rrule": "FREQ=DAILY"}, "starts_at": "2021-08-12T01:00"})
    assert len(daily.windows) == MAX_AHEAD
    early = jst(2021, 7, 1)
    yearly = create({"recurrence": {"rrule": "FREQ=YEARLY"}}, now=early)
    assert list(yearly.windows) == ["webcollect-monthly--20210812"]  # 2022-08-12 is > 400 days
    assert jst(2022, 8, 12, 1) - early > HORIZON


@pytest.mark.parametrize(
    ("body", "field", "named"),
    [
        ({"recurrence": {"rrule": "FREQ=HOURLY"}}, "recurrence.rrule", "FREQ=HOURLY"),
        ({"recurrence": {"rrule": "FREQ=MONTHLY;BYHOUR=1"}}, "recurrence.rrule", "BYHOUR"),
        (
            {"starts_at": "2021-08-09T01:00", "ends_at": "2021-08-09T06:00"},
            "starts_at",
            "2021-08-12T01:00",
        ),
        ({"id": "x" * 55}, "id", "at most 54"),
        ({"series_id": "other"}, "series_id", "its own id"),
        (
            {"starts_at": "2021-07-08T01:00", "ends_at": "2021-07-08T06:00", "latest_end": None},
            "ends_at",
            "already be over",
        ),
        (
            {"recurrence": {"rrule": "FREQ=MONTHLY;BYDAY=2TH;UNTIL=20210801"}},
            "starts_at",
            "no occurrence",
        ),
        (
            {"recurrence": {"rrule": "FREQ=YEARLY;INTERVAL=2", "exdates": ["2021-08-12T01:00"]}},
            "recurrence",
            "no occurrence within 400 days",
        ),
    ],
)
def test_create_rejections_name_the_field(body: dict[str, Any], field: str, named: str) -> None:
    with pytest.raises(InvalidInput) as err:
        create(body)
    assert err.value.field == field
    assert named in err.value.message


def test_a_series_id_is_unique_among_windows_and_series() -> None:
    sc = create()
    with pytest.raises(Conflict):
        create(series={sc.series.id: sc.series})
    with pytest.raises(Conflict):
        create(windows={"webcollect-monthly": next(iter(sc.windows.values()))})


def test_series_fields_are_refused_on_a_window() -> None:
    for raw in ({"recurrence": {"rrule": "FREQ=DAILY"}}, {"series_id": "x"}):
        with pytest.raises(InvalidInput) as err:
            one_off(raw)
        assert err.value.field in raw
    assert one_off({"title": {"en": "t"}}) == {"title": {"en": "t"}}


def test_top_up_adds_what_comes_within_the_horizon_once() -> None:
    sc = create()
    series, windows = {sc.series.id: sc.series}, dict(sc.windows)
    assert top_up(series, windows, CREATED) == {}
    later = jst(2021, 9, 1)  # 400 days on reaches 2022-09-08, the next second Thursday
    new = top_up(series, windows, later)
    assert list(new) == ["webcollect-monthly--20220908"]
    windows.update(new)
    assert top_up(series, windows, later) == {}
    # a daily series keeps 100 ahead: one more per day that passes
    daily = create({"recurrence": {"rrule": "FREQ=DAILY"}})
    ds, dw = {daily.series.id: daily.series}, dict(daily.windows)
    assert list(top_up(ds, dw, jst(2021, 8, 12, 6))) == ["webcollect-monthly--20211120"]
    cancelled = sc.series.model_copy(update={"cancelled": True})
    assert top_up({cancelled.id: cancelled}, windows, jst(2022, 1, 1)) == {}


def test_an_occurrence_is_an_ordinary_window() -> None:
    sc = create()
    occ = sc.windows["webcollect-monthly--20210909"]
    moved = ops.patch_window(
        occ,
        {
            "starts_at": "2021-09-16T01:00",
            "ends_at": "2021-09-16T06:00",
            "latest_end": "2021-09-16T06:30",
            "reason": "postponed",
        },
        catalog=CATALOG,
        defaults=DEFAULTS,
        now=CREATED,
        actor="boss",
    )
    assert moved.cause.type == "maintenance.rescheduled"
    assert moved.window.id == occ.id
    assert moved.window.series_id == "webcollect-monthly"
    assert moved.window.starts_at == jst(2021, 9, 16, 1)
    # a moved occurrence keeps its id: the top-up never makes it again
    windows = {**sc.windows, occ.id: moved.window}
    assert top_up({sc.series.id: sc.series}, windows, CREATED) == {}


def test_a_series_wide_patch_changes_future_occurrences_only() -> None:
    sc = create()
    windows = dict(sc.windows)
    moved = windows["webcollect-monthly--20211014"].model_copy(
        update={"starts_at": jst(2021, 10, 21, 1), "ends_at": jst(2021, 10, 21, 6)}
    )
    windows[moved.id] = moved
    during = jst(2021, 9, 9, 2)  # the 09-09 occurrence is in progress
    out = patch(sc, {"title": {"ja": "新"}, "reason": "renamed"}, during, windows)
    assert (out.cause.type, out.cause.reason) == ("maintenance.updated", "renamed")
    assert out.series.title.ja == "新"
    assert out.series.history[-1].change == "updated"
    assert "webcollect-monthly--20210812" not in out.windows  # completed
    assert "webcollect-monthly--20210909" not in out.windows  # in progress
    assert all(w.title.ja == "新" for w in out.windows.values())
    # the 11 not started, and the 2 that came within 400 days of the patch
    assert len(out.windows) == 13
    assert [w.history for w in out.windows.values()].count(()) == 2
    # a title change keeps an occurrence moved alone where it was
    assert out.windows[moved.id].starts_at == jst(2021, 10, 21, 1)
    assert out.windows[moved.id].history[-1].change == "updated"


def test_a_series_wide_reschedule_retimes_future_occurrences() -> None:
    sc = create()
    windows = dict(sc.windows)
    out = patch(
        sc, {"starts_at": "2021-08-12T02:00", "ends_at": "2021-08-12T05:00"}, CREATED, windows
    )
    assert out.cause.type == "maintenance.rescheduled"
    occ = out.windows["webcollect-monthly--20211014"]
    assert (occ.starts_at, occ.ends_at) == (jst(2021, 10, 14, 2), jst(2021, 10, 14, 5))
    assert occ.latest_end == jst(2021, 10, 14, 5, 30)  # the reserve keeps its length
    h = occ.history[-1]
    assert h.change == "rescheduled"
    assert h.from_ is not None
    assert h.to is not None
    assert (h.from_.starts_at, h.to.starts_at) == (jst(2021, 10, 14, 1), jst(2021, 10, 14, 2))
    # the announce lead is kept
    assert (
        out.series.starts_at - out.series.announce_at == sc.series.starts_at - sc.series.announce_at
    )


def test_a_new_rule_cancels_what_it_drops_and_creates_what_it_adds() -> None:
    sc = create()
    windows = dict(sc.windows)
    out = patch(
        sc,
        {
            "starts_at": "2021-08-19T01:00",
            "ends_at": "2021-08-19T06:00",
            "recurrence": {"rrule": "FREQ=MONTHLY;BYDAY=3TH"},
        },
        CREATED,
        windows,
    )
    assert out.windows["webcollect-monthly--20210812"].cancelled
    assert out.windows["webcollect-monthly--20210812"].history[-1].change == "cancelled"
    new = out.windows["webcollect-monthly--20210819"]
    assert not new.cancelled
    assert new.starts_at == jst(2021, 8, 19, 1)
    # rejected: a rule the first occurrence does not match
    with pytest.raises(InvalidInput) as err:
        patch(sc, {"recurrence": {"rrule": "FREQ=MONTHLY;BYDAY=3TH"}}, CREATED, windows)
    assert err.value.field == "starts_at"


def test_an_added_exdate_cancels_that_occurrence() -> None:
    sc = create()
    windows = dict(sc.windows)
    rec = {"rrule": "FREQ=MONTHLY;BYDAY=2TH", "exdates": ["2021-09-09T01:00"]}
    out = patch(sc, {"recurrence": rec}, CREATED, windows)
    assert list(out.windows) == ["webcollect-monthly--20210909"]
    assert out.windows["webcollect-monthly--20210909"].cancelled
    assert out.cause.type == "maintenance.rescheduled"


def test_series_patch_refusals() -> None:
    sc = create()
    for raw, field in [
        ({"id": "other"}, "id"),
        ({"series_id": "other"}, "series_id"),
        ({"history": []}, "history"),
        ({"recurrence": None}, "recurrence"),
        ({}, "body"),
        ({"title": sc.series.title.model_dump()}, "body"),
    ]:
        with pytest.raises(InvalidInput) as err:
            patch(sc, raw, CREATED, dict(sc.windows))
        assert err.value.field == field, raw


def test_cancelling_a_series_cancels_what_has_not_started() -> None:
    sc = create()
    during = jst(2021, 9, 9, 2)
    out = cancel_series(
        sc.series, {"reason": "no longer needed"}, sc.windows, now=during, actor="boss"
    )
    assert out.series.cancelled
    assert out.cause.type == "maintenance.cancelled"
    assert status_of(out.series, during) == "cancelled"
    assert "webcollect-monthly--20210909" not in out.windows  # in progress: left to end
    assert "webcollect-monthly--20210812" not in out.windows  # completed
    assert len(out.windows) == 11
    assert all(w.cancelled for w in out.windows.values())
    assert all(lifecycle(w, during) == "cancelled" for w in out.windows.values())
    with pytest.raises(Conflict):
        cancel_series(out.series, {}, out.windows, now=during, actor="boss")
    with pytest.raises(Conflict):
        patch(out, {"title": {"en": "x"}}, during, dict(out.windows))


def test_a_series_whose_rule_ran_out_is_completed() -> None:
    sc = create({"recurrence": {"rrule": "FREQ=MONTHLY;BYDAY=2TH;COUNT=2"}})
    assert list(sc.windows) == ["webcollect-monthly--20210812", "webcollect-monthly--20210909"]
    assert status_of(sc.series, jst(2021, 9, 9, 5)) == "scheduled"
    assert status_of(sc.series, jst(2021, 9, 9, 6)) == "completed"
    with pytest.raises(Conflict):
        cancel_series(sc.series, {}, sc.windows, now=jst(2021, 10, 1), actor="boss")


def test_of_series_lists_its_occurrences_soonest_first() -> None:
    sc = create()
    other = build_window(
        {**MONTHLY, "id": "x", "recurrence": None},
        catalog=CATALOG,
        defaults=DEFAULTS,
        now=CREATED,
    )
    got = of_series([*reversed(sc.windows.values()), other], "webcollect-monthly")
    assert [w.id for w in got] == list(sc.windows)


def test_import_creates_merges_and_leaves_an_unchanged_series_alone() -> None:
    file_series = build_window(
        {**MONTHLY, "announce_at": "2021-07-01T00:00"},
        catalog=CATALOG,
        defaults=DEFAULTS,
        now=CREATED,
        from_file=True,
    )
    made = import_series(None, file_series, {}, now=CREATED, actor="import")
    assert made is not None
    assert len(made.windows) == 13
    assert made.cause.type == "maintenance.scheduled"
    windows = dict(made.windows)
    assert import_series(made.series, file_series, windows, now=CREATED, actor="import") is None
    renamed = file_series.model_copy(
        update={"title": file_series.title.model_copy(update={"en": "R"})}
    )
    changed = import_series(made.series, renamed, windows, now=CREATED, actor="import")
    assert changed is not None
    assert changed.cause.type == "maintenance.updated"
    assert all(w.title.en == "R" for w in changed.windows.values())
    clash = file_series.model_copy(update={"series_id": "other"})
    with pytest.raises(InvalidInput) as err:
        import_series(None, clash, {}, now=CREATED, actor="import")
    assert err.value.message.startswith("series webcollect-monthly: series_id")


def test_an_occurrence_in_a_fold_gets_the_first_instant_and_its_local_date() -> None:
    sc = create(
        {
            "starts_at": "2021-11-05T01:30",
            "ends_at": "2021-11-05T02:00",
            "timezone": "America/Chicago",
            "latest_end": None,
            "recurrence": {"rrule": "FREQ=DAILY;COUNT=4"},
        },
        now=jst(2021, 11, 1),
    )
    fold = sc.windows["webcollect-monthly--20211107"]
    assert fold.starts_at == datetime.fromisoformat("2021-11-07T06:30:00+00:00")  # 01:30 CDT
    assert fold.ends_at - fold.starts_at == timedelta(minutes=30)
