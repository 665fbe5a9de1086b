"""RRULE expansion on local wall time: tables across the 2021 US and EU DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from broadcaster.domain import InvalidInput
from broadcaster.recurrence import first_local, localize, occurrences, parse_rule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def starts(
    rule: str,
    first: tuple[str, str],
    zone: str,
    after: str,
    *,
    horizon: str = "2023-01-01T00:00:00+00:00",
    exdates: tuple[str, ...] = (),
    limit: int | None = None,
) -> list[tuple[str, str]]:
    """(start, end) of each occurrence, rendered in ``zone``."""
    z = ZoneInfo(zone)
    got = occurrences(
        rule,
        at(first[0]),
        at(first[1]),
        zone,
        after=at(after),
        horizon=at(horizon),
        exdates=exdates,
        limit=limit,
    )
    return [
        (o.starts_at.astimezone(z).isoformat(), o.ends_at.astimezone(z).isoformat()) for o in got
    ]


CHICAGO_MONDAYS = ("2021-03-01T00:00:00-06:00", "2021-03-01T01:00:00-06:00")

EXPANSIONS = [
    pytest.param(
        # the contract's example: asked one microsecond after Friday midnight, the next
        # Monday 00:00 is after the spring-forward night, so CDT (-05:00), not 01:00 CDT
        "FREQ=WEEKLY;BYDAY=MO",
        CHICAGO_MONDAYS,
        "America/Chicago",
        "2021-03-12T00:00:00.000001-06:00",
        2,
        [
            ("2021-03-15T00:00:00-05:00", "2021-03-15T01:00:00-05:00"),
            ("2021-03-22T00:00:00-05:00", "2021-03-22T01:00:00-05:00"),
        ],
        id="weekly-monday-chicago-across-spring-forward",
    ),
    pytest.param(
        # 02:30 does not exist on 2021-03-14 in Chicago: it moves forward by the gap (1 h)
        # and lasts the first occurrence's exact hour
        "FREQ=DAILY",
        ("2021-03-12T02:30:00-06:00", "2021-03-12T03:30:00-06:00"),
        "America/Chicago",
        "2021-03-13T12:00:00-06:00",
        2,
        [
            ("2021-03-14T03:30:00-05:00", "2021-03-14T04:30:00-05:00"),
            ("2021-03-15T02:30:00-05:00", "2021-03-15T03:30:00-05:00"),
        ],
        id="daily-0230-in-the-us-gap",
    ),
    pytest.param(
        # 01:30 happens twice on 2021-11-07 in Chicago: the first (CDT) is taken; one hour
        # later it is 01:30 again, in CST
        "FREQ=DAILY",
        ("2021-11-05T01:30:00-05:00", "2021-11-05T02:30:00-05:00"),
        "America/Chicago",
        "2021-11-06T12:00:00-05:00",
        2,
        [
            ("2021-11-07T01:30:00-05:00", "2021-11-07T01:30:00-06:00"),
            ("2021-11-08T01:30:00-06:00", "2021-11-08T02:30:00-06:00"),
        ],
        id="daily-0130-in-the-us-fold",
    ),
    pytest.param(
        "FREQ=DAILY",
        ("2021-03-27T02:30:00+01:00", "2021-03-27T03:00:00+01:00"),
        "Europe/Berlin",
        "2021-03-27T12:00:00+01:00",
        2,
        [
            ("2021-03-28T03:30:00+02:00", "2021-03-28T04:00:00+02:00"),
            ("2021-03-29T02:30:00+02:00", "2021-03-29T03:00:00+02:00"),
        ],
        id="daily-0230-in-the-eu-gap",
    ),
    pytest.param(
        "FREQ=DAILY",
        ("2021-10-30T02:30:00+02:00", "2021-10-30T03:00:00+02:00"),
        "Europe/Berlin",
        "2021-10-30T12:00:00+02:00",
        2,
        [
            ("2021-10-31T02:30:00+02:00", "2021-10-31T02:00:00+01:00"),
            ("2021-11-01T02:30:00+01:00", "2021-11-01T03:00:00+01:00"),
        ],
        id="daily-0230-in-the-eu-fold",
    ),
    pytest.param(
        # a 4 h window across the spring-forward night lasts 4 h, ending at 04:00 CDT
        "FREQ=WEEKLY;BYDAY=SA",
        ("2021-03-06T23:00:00-06:00", "2021-03-07T03:00:00-06:00"),
        "America/Chicago",
        "2021-03-07T12:00:00-06:00",
        1,
        [("2021-03-13T23:00:00-06:00", "2021-03-14T04:00:00-05:00")],
        id="exact-duration-across-the-change",
    ),
    pytest.param(
        "FREQ=MONTHLY;BYDAY=2TH",
        ("2021-08-12T01:00:00+09:00", "2021-08-12T06:00:00+09:00"),
        "Asia/Tokyo",
        "2021-08-01T00:00:00+09:00",
        4,
        [
            ("2021-08-12T01:00:00+09:00", "2021-08-12T06:00:00+09:00"),
            ("2021-09-09T01:00:00+09:00", "2021-09-09T06:00:00+09:00"),
            ("2021-10-14T01:00:00+09:00", "2021-10-14T06:00:00+09:00"),
            ("2021-11-11T01:00:00+09:00", "2021-11-11T06:00:00+09:00"),
        ],
        id="monthly-second-thursday",
    ),
    pytest.param(
        # the last weekday of each month
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        ("2021-01-29T22:00:00-06:00", "2021-01-29T23:00:00-06:00"),
        "America/Chicago",
        "2021-01-01T00:00:00-06:00",
        4,
        [
            ("2021-01-29T22:00:00-06:00", "2021-01-29T23:00:00-06:00"),
            ("2021-02-26T22:00:00-06:00", "2021-02-26T23:00:00-06:00"),
            ("2021-03-31T22:00:00-05:00", "2021-03-31T23:00:00-05:00"),
            ("2021-04-30T22:00:00-05:00", "2021-04-30T23:00:00-05:00"),
        ],
        id="bysetpos-last-weekday",
    ),
    pytest.param(
        "FREQ=MONTHLY;BYMONTHDAY=-1",
        ("2021-01-31T01:00:00+09:00", "2021-01-31T02:00:00+09:00"),
        "Asia/Tokyo",
        "2021-01-01T00:00:00+09:00",
        3,
        [
            ("2021-01-31T01:00:00+09:00", "2021-01-31T02:00:00+09:00"),
            ("2021-02-28T01:00:00+09:00", "2021-02-28T02:00:00+09:00"),
            ("2021-03-31T01:00:00+09:00", "2021-03-31T02:00:00+09:00"),
        ],
        id="bymonthday-last-day",
    ),
    pytest.param(
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;COUNT=3",
        CHICAGO_MONDAYS,
        "America/Chicago",
        "2021-01-01T00:00:00-06:00",
        None,
        [
            ("2021-03-01T00:00:00-06:00", "2021-03-01T01:00:00-06:00"),
            ("2021-03-15T00:00:00-05:00", "2021-03-15T01:00:00-05:00"),
            ("2021-03-29T00:00:00-05:00", "2021-03-29T01:00:00-05:00"),
        ],
        id="count-with-interval",
    ),
    pytest.param(
        # COUNT counts from the first occurrence, also when asked later
        "FREQ=WEEKLY;BYDAY=MO;COUNT=3",
        CHICAGO_MONDAYS,
        "America/Chicago",
        "2021-03-09T00:00:00-06:00",
        None,
        [
            ("2021-03-15T00:00:00-05:00", "2021-03-15T01:00:00-05:00"),
        ],
        id="count-from-dtstart",
    ),
    pytest.param(
        # a local UNTIL is inclusive
        "FREQ=WEEKLY;UNTIL=20210315T000000",
        CHICAGO_MONDAYS,
        "America/Chicago",
        "2021-01-01T00:00:00-06:00",
        None,
        [
            ("2021-03-01T00:00:00-06:00", "2021-03-01T01:00:00-06:00"),
            ("2021-03-08T00:00:00-06:00", "2021-03-08T01:00:00-06:00"),
            ("2021-03-15T00:00:00-05:00", "2021-03-15T01:00:00-05:00"),
        ],
        id="until-local-inclusive",
    ),
    pytest.param(
        # a UTC UNTIL compares instants: 2021-03-15 00:00 CDT is 05:00Z, after 04:59:59Z
        "FREQ=WEEKLY;UNTIL=20210315T045959Z",
        CHICAGO_MONDAYS,
        "America/Chicago",
        "2021-01-01T00:00:00-06:00",
        None,
        [
            ("2021-03-01T00:00:00-06:00", "2021-03-01T01:00:00-06:00"),
            ("2021-03-08T00:00:00-06:00", "2021-03-08T01:00:00-06:00"),
        ],
        id="until-utc",
    ),
    pytest.param(
        "FREQ=DAILY;UNTIL=20210302",
        CHICAGO_MONDAYS,
        "America/Chicago",
        "2021-01-01T00:00:00-06:00",
        None,
        [
            ("2021-03-01T00:00:00-06:00", "2021-03-01T01:00:00-06:00"),
            ("2021-03-02T00:00:00-06:00", "2021-03-02T01:00:00-06:00"),
        ],
        id="until-date-is-the-whole-day",
    ),
    pytest.param(
        "rrule:freq=yearly",
        ("2020-02-29T09:00:00+09:00", "2020-02-29T10:00:00+09:00"),
        "Asia/Tokyo",
        "2020-01-01T00:00:00+09:00",
        2,
        [
            ("2020-02-29T09:00:00+09:00", "2020-02-29T10:00:00+09:00"),
            ("2024-02-29T09:00:00+09:00", "2024-02-29T10:00:00+09:00"),
        ],
        id="yearly-leap-day-lowercase-prefix",
    ),
]


@pytest.mark.parametrize(("rule", "first", "zone", "after", "limit", "expected"), EXPANSIONS)
def test_expansion(
    rule: str,
    first: tuple[str, str],
    zone: str,
    after: str,
    limit: int | None,
    expected: list[tuple[str, str]],
) -> None:
    assert starts(rule, first, zone, after, limit=limit, horizon="2025-01-01T00:00:00Z") == expected


def test_exdates_remove_occurrences_by_local_time_or_instant() -> None:
    got = starts(
        "FREQ=MONTHLY;BYDAY=2TH",
        ("2021-08-12T01:00:00+09:00", "2021-08-12T06:00:00+09:00"),
        "Asia/Tokyo",
        "2021-08-01T00:00:00+09:00",
        exdates=("2021-09-09T01:00", "2021-10-13T16:00:00Z", "2021-11-11T02:00"),
        limit=3,
    )
    # 2021-11-11T02:00 names no occurrence's wall time: nothing removed for it
    assert [s for s, _ in got] == [
        "2021-08-12T01:00:00+09:00",
        "2021-11-11T01:00:00+09:00",
        "2021-12-09T01:00:00+09:00",
    ]


def test_an_exdate_names_the_rules_wall_time_also_in_a_gap() -> None:
    got = starts(
        "FREQ=DAILY;COUNT=4",
        ("2021-03-12T02:30:00-06:00", "2021-03-12T03:30:00-06:00"),
        "America/Chicago",
        "2021-03-01T00:00:00-06:00",
        exdates=("2021-03-14T02:30",),
    )
    assert [s for s, _ in got] == [
        "2021-03-12T02:30:00-06:00",
        "2021-03-13T02:30:00-06:00",
        "2021-03-15T02:30:00-05:00",
    ]


def test_after_horizon_and_limit_bound_the_answer() -> None:
    first = CHICAGO_MONDAYS
    # an occurrence in progress at `after` is not over: it is included
    assert starts(
        "FREQ=WEEKLY", first, "America/Chicago", "2021-03-08T00:30:00-06:00", limit=1
    ) == [("2021-03-08T00:00:00-06:00", "2021-03-08T01:00:00-06:00")]
    # one that ends exactly at `after` is over (half-open)
    assert starts(
        "FREQ=WEEKLY", first, "America/Chicago", "2021-03-08T01:00:00-06:00", limit=1
    ) == [("2021-03-15T00:00:00-05:00", "2021-03-15T01:00:00-05:00")]
    got = starts(
        "FREQ=WEEKLY",
        first,
        "America/Chicago",
        "2021-03-01T00:00:00-06:00",
        horizon="2021-03-15T05:00:00Z",  # 00:00 CDT on the 15th: starting then is outside
    )
    assert [s for s, _ in got] == ["2021-03-01T00:00:00-06:00", "2021-03-08T00:00:00-06:00"]
    assert (
        len(starts("FREQ=DAILY", first, "America/Chicago", "2021-03-01T00:00:00-06:00", limit=100))
        == 100
    )


def test_a_fractional_start_keeps_its_fraction() -> None:
    got = starts(
        "FREQ=DAILY;COUNT=2",
        ("2021-08-09T01:00:00.250000+09:00", "2021-08-09T02:00:00+09:00"),
        "Asia/Tokyo",
        "2021-08-01T00:00:00+09:00",
    )
    assert got[1] == ("2021-08-10T01:00:00.250000+09:00", "2021-08-10T02:00:00+09:00")


LOCALIZE = [
    ("2021-03-14T01:59:00", "America/Chicago", "2021-03-14T07:59:00+00:00"),
    ("2021-03-14T02:00:00", "America/Chicago", "2021-03-14T08:00:00+00:00"),  # gap: 03:00 CDT
    ("2021-03-14T02:30:00", "America/Chicago", "2021-03-14T08:30:00+00:00"),  # gap: 03:30 CDT
    ("2021-03-14T03:00:00", "America/Chicago", "2021-03-14T08:00:00+00:00"),
    ("2021-11-07T01:30:00", "America/Chicago", "2021-11-07T06:30:00+00:00"),  # fold: first
    ("2021-11-07T02:00:00", "America/Chicago", "2021-11-07T08:00:00+00:00"),
    ("2021-03-28T02:30:00", "Europe/Berlin", "2021-03-28T01:30:00+00:00"),  # gap: 03:30 CEST
    ("2021-10-31T02:30:00", "Europe/Berlin", "2021-10-31T00:30:00+00:00"),  # fold: CEST
    ("2021-10-03T02:15:00", "Australia/Lord_Howe", "2021-10-02T15:45:00+00:00"),  # 30 min gap
    ("2021-04-04T01:45:00", "Australia/Lord_Howe", "2021-04-03T14:45:00+00:00"),  # 30 min fold
    ("2021-08-09T01:00:00", "Asia/Tokyo", "2021-08-08T16:00:00+00:00"),
]


@pytest.mark.parametrize(("local", "zone", "expected"), LOCALIZE)
def test_localize_gap_and_fold_rules(local: str, zone: str, expected: str) -> None:
    got = localize(datetime.fromisoformat(local), ZoneInfo(zone))
    assert got.tzinfo is UTC
    assert got.isoformat() == expected


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ("FREQ=HOURLY", "FREQ=HOURLY is not supported"),
        ("FREQ=MINUTELY;INTERVAL=5", "FREQ=MINUTELY is not supported"),
        ("FREQ=DAILY;BYHOUR=1", "BYHOUR is not supported"),
        ("FREQ=WEEKLY;WKST=SU", "WKST is not supported"),
        ("FREQ=YEARLY;BYMONTH=1", "BYMONTH is not supported"),
        ("INTERVAL=2", "FREQ is required"),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ is given twice"),
        ("FREQ=DAILY;COUNT=2;UNTIL=20220101", "COUNT and UNTIL"),
        ("FREQ=WEEKLY;BYDAY=2TH", "allowed only with MONTHLY or YEARLY"),
        ("FREQ=MONTHLY;BYDAY=6TH", "out of range"),
        ("FREQ=MONTHLY;BYDAY=XX", "is not a weekday"),
        ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY cannot be used with FREQ=WEEKLY"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "out of range"),
        ("FREQ=MONTHLY;BYMONTHDAY=32", "out of range"),
        ("FREQ=MONTHLY;BYSETPOS=1", "BYSETPOS needs BYDAY or BYMONTHDAY"),
        ("FREQ=DAILY;INTERVAL=0", "out of range"),
        ("FREQ=DAILY;INTERVAL=two", "not a list of whole numbers"),
        ("FREQ=DAILY;COUNT=-1", "not a list of whole numbers"),
        ("FREQ=DAILY;UNTIL=2022-01-01", "UNTIL='2022-01-01' is not"),
        ("FREQ=DAILY;UNTIL=20221301", "UNTIL='20221301' is not"),
        ("FREQ=DAILY;;", "is not NAME=VALUE"),
        ("every day", "is not NAME=VALUE"),
    ],
)
def test_unsupported_or_bad_rules_name_the_field(rule: str, why: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_rule(rule)
    assert err.value.field == "recurrence.rrule"
    assert err.value.message.startswith("recurrence.rrule: ")
    assert why in err.value.message


def test_first_local_says_whether_a_start_is_an_occurrence() -> None:
    rule = parse_rule("FREQ=MONTHLY;BYDAY=2TH")
    assert first_local(rule, datetime(2021, 8, 12, 1), "Asia/Tokyo") == datetime(2021, 8, 12, 1)
    # a Monday is no second Thursday: the rule's first is the 12th
    assert first_local(rule, datetime(2021, 8, 9, 1), "Asia/Tokyo") == datetime(2021, 8, 12, 1)
    ended = parse_rule("FREQ=DAILY;UNTIL=20210801")
    assert first_local(ended, datetime(2021, 8, 9, 1), "Asia/Tokyo") is None
