"""Table tests for broadcaster.timeparse (pure: no I/O, no sleeps)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from broadcaster.timeparse import InvalidTime, format_instant, parse_instant, zone_named

UTC = UTC
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("value", "zone", "expected"),
    [
        # RFC 3339 with numeric offsets
        ("2021-08-09T01:00:00+09:00", None, datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        ("2021-08-08T12:00:00-04:00", None, datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        ("2021-08-08T16:00:00+00:00", None, datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        ("2021-08-08T16:00:00-00:00", None, datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        ("2021-08-09T02:00:00+05:30", None, datetime(2021, 8, 8, 20, 30, tzinfo=UTC)),
        # Z / z
        ("2021-08-08T16:00:00Z", None, datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        ("2021-08-08t16:00:00z", None, datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        # space separator
        ("2021-08-09 01:00:00+09:00", None, datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        # fractional seconds (microsecond resolution, extra digits truncated)
        ("2021-08-08T16:00:00.5Z", None, datetime(2021, 8, 8, 16, 0, 0, 500000, tzinfo=UTC)),
        ("2021-08-09T01:00:00.002+09:00", None, datetime(2021, 8, 8, 16, 0, 0, 2000, tzinfo=UTC)),
        # sub-millisecond digits are dropped: the wire precision is milliseconds
        (
            "2021-08-08T16:00:00.123456789Z",
            None,
            datetime(2021, 8, 8, 16, 0, 0, 123000, tzinfo=UTC),
        ),
        # offset given: zone is irrelevant to the result
        ("2021-08-09T01:00:00+09:00", "America/New_York", datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        # local times resolved in a zone
        ("2021-08-09T01:00", "Asia/Tokyo", datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        ("2021-08-09T01:00:30", "Asia/Tokyo", datetime(2021, 8, 8, 16, 0, 30, tzinfo=UTC)),
        (
            "2021-08-09 01:00:30.25",
            "Asia/Tokyo",
            datetime(2021, 8, 8, 16, 0, 30, 250000, tzinfo=UTC),
        ),
        ("2024-01-15T09:00", "America/New_York", datetime(2024, 1, 15, 14, 0, tzinfo=UTC)),
        ("2024-07-15T09:00", "America/New_York", datetime(2024, 7, 15, 13, 0, tzinfo=UTC)),
        ("2024-03-10T01:59:59", "America/New_York", datetime(2024, 3, 10, 6, 59, 59, tzinfo=UTC)),
        ("2024-03-10T03:00", "America/New_York", datetime(2024, 3, 10, 7, 0, tzinfo=UTC)),
        ("2021-08-09T01:00", "UTC", datetime(2021, 8, 9, 1, 0, tzinfo=UTC)),
        # datetime inputs (as YAML timestamps arrive): aware
        (
            datetime(2021, 8, 9, 1, 0, tzinfo=timezone(timedelta(hours=9))),
            None,
            datetime(2021, 8, 8, 16, 0, tzinfo=UTC),
        ),
        (
            datetime(2021, 8, 9, 1, 0, tzinfo=TOKYO),
            "America/New_York",
            datetime(2021, 8, 8, 16, 0, tzinfo=UTC),
        ),
        (datetime(2021, 8, 8, 16, 0, tzinfo=UTC), None, datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        # datetime inputs: naive is a local time
        (datetime(2021, 8, 9, 1, 0), "Asia/Tokyo", datetime(2021, 8, 8, 16, 0, tzinfo=UTC)),
        (
            datetime(2021, 8, 9, 1, 0, 0, 2000),
            "Asia/Tokyo",
            datetime(2021, 8, 8, 16, 0, 0, 2000, tzinfo=UTC),
        ),
    ],
)
def test_parse_instant_valid(value: object, zone: str | None, expected: datetime) -> None:
    result = parse_instant(value, field="start", zone=zone)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "zone", "field", "fragments"),
    [
        # local time without an offset or a zone
        (
            "2021-08-09T01:00",
            None,
            "start",
            [
                "start: local time '2021-08-09T01:00' has no offset and no timezone; "
                "give an offset (e.g. +09:00) or a timezone"
            ],
        ),
        (
            "2021-08-09 01:00:00",
            None,
            "end",
            ["end: local time '2021-08-09 01:00:00'", "no timezone"],
        ),
        (
            datetime(2021, 8, 9, 1, 0),
            None,
            "start",
            ["start: local time '2021-08-09T01:00:00' has no offset and no timezone"],
        ),
        # spring-forward gap
        (
            "2024-03-10T02:30",
            "America/New_York",
            "start",
            [
                "start: local time '2024-03-10T02:30' does not exist in America/New_York "
                "(clocks skip it): did you mean 2024-03-10T01:30:00-05:00 or "
                "2024-03-10T03:30:00-04:00?; give an offset"
            ],
        ),
        (
            datetime(2024, 3, 10, 2, 30),
            "America/New_York",
            "start",
            [
                "does not exist in America/New_York",
                "2024-03-10T01:30:00-05:00 or 2024-03-10T03:30:00-04:00",
            ],
        ),
        # fall-back fold
        (
            "2024-11-03T01:30",
            "America/New_York",
            "end",
            [
                "end: local time '2024-11-03T01:30' is ambiguous in America/New_York: "
                "2024-11-03T01:30:00-04:00 or 2024-11-03T01:30:00-05:00; give an offset"
            ],
        ),
        (
            datetime(2024, 11, 3, 1, 30),
            "America/New_York",
            "end",
            [
                "is ambiguous in America/New_York",
                "2024-11-03T01:30:00-04:00 or 2024-11-03T01:30:00-05:00",
            ],
        ),
        # garbage and wrong types
        ("soon", None, "start", ["start: 'soon' is not a date-time"]),
        ("", "Asia/Tokyo", "start", ["start: '' is not a date-time"]),
        (
            "2021-08-09",
            "Asia/Tokyo",
            "start",
            ["start: '2021-08-09' is a date without a time of day"],
        ),
        (
            date(2021, 8, 9),
            "Asia/Tokyo",
            "start",
            ["start: '2021-08-09' is a date without a time of day"],
        ),
        ("2021-08-09T01", "Asia/Tokyo", "start", ["start: '2021-08-09T01' is not a date-time"]),
        ("20210809T010000Z", None, "start", ["start: '20210809T010000Z' is not a date-time"]),
        (
            "2021-08-09T01:00:00+0900",
            None,
            "start",
            ["start: '2021-08-09T01:00:00+0900' is not a date-time"],
        ),
        (
            " 2021-08-09T01:00:00Z",
            None,
            "start",
            ["start: ' 2021-08-09T01:00:00Z' is not a date-time"],
        ),
        (
            "2021-13-09T01:00:00Z",
            None,
            "start",
            ["start: '2021-13-09T01:00:00Z' is not a valid date-time"],
        ),
        (
            "2021-08-09T25:00:00Z",
            None,
            "start",
            ["start: '2021-08-09T25:00:00Z' is not a valid date-time"],
        ),
        (
            "2021-08-09T01:00:00+24:00",
            None,
            "start",
            ["start: '2021-08-09T01:00:00+24:00' has an invalid offset"],
        ),
        ("2016-12-31T23:59:60Z", None, "start", ["start: '2016-12-31T23:59:60Z' is a leap second"]),
        (1628438400, None, "start", ["start: '1628438400' (int) is not a date-time"]),
        (None, "Asia/Tokyo", "end", ["end: 'None' (NoneType) is not a date-time"]),
        (True, None, "start", ["start: 'True' (bool) is not a date-time"]),
    ],
)
def test_parse_instant_invalid(
    value: object, zone: str | None, field: str, fragments: list[str]
) -> None:
    with pytest.raises(InvalidTime) as info:
        parse_instant(value, field=field, zone=zone)
    exc = info.value
    assert exc.field == field
    assert str(exc) == exc.message
    assert exc.message.startswith(f"{field}: ")
    for fragment in fragments:
        assert fragment in exc.message


@pytest.mark.parametrize(
    "zone",
    [
        "Mars/Olympus_Mons",
        "",
        "America",
        "../etc/passwd",
        "/etc/localtime",
        "America/../Asia/Tokyo",
        "asia/tokyo\x00",
    ],
)
def test_parse_instant_unknown_zone(zone: str) -> None:
    # Zone is validated even when the value carries its own offset.
    for value in ("2021-08-09T01:00", "2021-08-09T01:00:00+09:00"):
        with pytest.raises(InvalidTime) as info:
            parse_instant(value, field="start", zone=zone)
        assert info.value.field == "timezone"
        assert info.value.message.startswith("timezone: unknown time zone '")
        assert zone.split("\x00")[0] in info.value.message


@pytest.mark.parametrize("name", ["Asia/Tokyo", "America/New_York", "UTC"])
def test_zone_named_valid(name: str) -> None:
    zone = zone_named(name)
    assert isinstance(zone, ZoneInfo)
    assert zone.key == name


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("Nowhere/Special", "timezone"),
        ("../../etc/passwd", "schedule.timezone"),
        ("/usr/share/zoneinfo/UTC", "timezone"),
        ("", "tz"),
    ],
)
def test_zone_named_invalid(name: str, field: str) -> None:
    with pytest.raises(InvalidTime) as info:
        zone_named(name, field)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert str(info.value) == f"{field}: unknown time zone '{name}'"


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        (datetime(2021, 8, 8, 16, 0, tzinfo=UTC), "Asia/Tokyo", "2021-08-09T01:00:00+09:00"),
        (datetime(2021, 8, 8, 16, 0, tzinfo=UTC), TOKYO, "2021-08-09T01:00:00+09:00"),
        (datetime(2021, 8, 8, 16, 0, 0, 2000, tzinfo=UTC), TOKYO, "2021-08-09T01:00:00.002+09:00"),
        (
            datetime(2021, 8, 8, 16, 0, 0, 123456, tzinfo=UTC),
            TOKYO,
            "2021-08-09T01:00:00.123+09:00",
        ),
        (datetime(2021, 8, 8, 16, 0, tzinfo=UTC), "UTC", "2021-08-08T16:00:00+00:00"),
        (
            datetime(2021, 8, 8, 16, 0, 0, 500000, tzinfo=UTC),
            "UTC",
            "2021-08-08T16:00:00.500+00:00",
        ),
        (datetime(2024, 11, 3, 5, 30, tzinfo=UTC), NEW_YORK, "2024-11-03T01:30:00-04:00"),
        (datetime(2024, 11, 3, 6, 30, tzinfo=UTC), NEW_YORK, "2024-11-03T01:30:00-05:00"),
        (
            datetime(2021, 8, 9, 1, 0, tzinfo=timezone(timedelta(hours=9))),
            NEW_YORK,
            "2021-08-08T12:00:00-04:00",
        ),
    ],
)
def test_format_instant(instant: datetime, zone: ZoneInfo | str, expected: str) -> None:
    text = format_instant(instant, zone)
    assert text == expected
    assert "Z" not in text
    # The rendered text parses back to the same instant (at its precision).
    assert parse_instant(text, field="at", zone=None) == instant.replace(
        microsecond=instant.microsecond // 1000 * 1000
    )


def test_format_instant_rejects_naive_and_unknown_zone() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_instant(datetime(2021, 8, 9, 1, 0), TOKYO)
    with pytest.raises(InvalidTime) as info:
        format_instant(datetime(2021, 8, 9, 1, 0, tzinfo=UTC), "Nowhere/Special")
    assert info.value.field == "timezone"


def test_invalid_time_attributes() -> None:
    exc = InvalidTime("start", "start: broken")
    assert isinstance(exc, ValueError)
    assert (exc.field, exc.message, str(exc)) == ("start", "start: broken", "start: broken")
