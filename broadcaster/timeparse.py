"""Parse and format instants (points in time) for schedule files.

Accepted text follows the RFC 3339 "date-time" grammar (RFC 3339 section
5.6), e.g. ``2021-08-09T01:00:00+09:00``:

* the date/time separator may be ``T``, ``t`` or a single space
  (RFC 3339 section 5.6, NOTE);
* the offset is ``Z``/``z`` (UTC) or ``+HH:MM`` / ``-HH:MM`` (hours and
  minutes east of UTC; ``-00:00`` is read as UTC);
* seconds are optional (``2021-08-09T01:00``) and may carry a fraction of
  any length; the fraction is kept to microsecond resolution (digits past
  the sixth are truncated, because :class:`datetime.datetime` stores
  microseconds);
* the leap second ``:60`` is rejected (``datetime`` cannot represent it).

Text without an offset is a *local time* (wall-clock time) and is only
accepted together with an IANA time zone name (e.g. ``Asia/Tokyo``).
Local times that do not exist (skipped by a spring-forward transition) or
that happen twice (repeated by a fall-back transition) are rejected with a
message that names the candidate instants, so the author can write an
explicit offset instead.

Every parsed instant is returned as an aware :class:`datetime.datetime` in
UTC (``tzinfo=datetime.timezone.utc``).  :func:`format_instant` renders an
instant back as RFC 3339 text in a given zone.

This module is pure: standard library and :mod:`zoneinfo` only, no I/O
besides zoneinfo's own reading of the system time zone database.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["InvalidTime", "format_instant", "parse_duration", "parse_instant", "zone_named"]


class InvalidTime(ValueError):
    """A time value or time zone name that cannot be used.

    ``field`` names the offending input (for example ``"start"`` or
    ``"timezone"``); ``message`` is the full human-readable explanation,
    which starts with the field name and quotes the bad value.
    ``str(exc)`` is exactly ``message``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message


# RFC 3339 section 5.6 date-time, with optional seconds and optional offset.
# re.ASCII keeps \d to the digits 0-9 (RFC 3339 DIGIT).
_DATE_TIME = re.compile(
    r"""
    (?P<year>\d{4}) - (?P<month>\d{2}) - (?P<day>\d{2})
    [Tt\ ]
    (?P<hour>\d{2}) : (?P<minute>\d{2})
    (?: : (?P<second>\d{2}) (?: \. (?P<fraction>\d+) )? )?
    (?P<offset> [Zz] | [+-]\d{2}:\d{2} )?
    """,
    re.ASCII | re.VERBOSE,
)
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)

_EXPECTED = (
    "expected an RFC 3339 date-time such as 2021-08-09T01:00:00+09:00, "
    "or a local time such as 2021-08-09T01:00 together with a timezone"
)
_MAX_QUOTED = 80  # characters of a bad value echoed back in a message


def _quote(value: object) -> str:
    """Quote a bad value for an error message, shortening very long text."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > _MAX_QUOTED:
        text = text[: _MAX_QUOTED - 3] + "..."
    return f"'{text}'"


def zone_named(name: str, field: str = "timezone") -> ZoneInfo:
    """Return the IANA time zone called ``name`` (e.g. ``"Asia/Tokyo"``).

    Raises :class:`InvalidTime` for ``field`` when the name is empty, is not
    a string, looks like a file path (absolute, ``..`` components,
    backslashes, NUL) or is not in the time zone database.
    """
    message = f"{field}: unknown time zone {_quote(name)}"
    if (
        not isinstance(name, str)
        or not name
        or name.startswith("/")
        or ".." in name
        or "\\" in name
        or "\x00" in name
    ):
        raise InvalidTime(field, message)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidTime(field, message) from exc


def _parse_text(text: str, field: str) -> datetime:
    """Parse RFC 3339 text into a datetime; naive when the text has no offset."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        if _DATE_ONLY.fullmatch(text):
            raise InvalidTime(
                field, f"{field}: {_quote(text)} is a date without a time of day; {_EXPECTED}"
            )
        raise InvalidTime(field, f"{field}: {_quote(text)} is not a date-time; {_EXPECTED}")

    second = int(match["second"] or 0)
    if second == 60:
        raise InvalidTime(
            field, f"{field}: {_quote(text)} is a leap second (:60), which is not supported"
        )
    # Fraction of a second -> microseconds (pad / truncate to 6 digits).
    microsecond = int((match["fraction"] or "").ljust(6, "0")[:6])

    tzinfo: timezone | None = None
    offset = match["offset"]
    if offset is not None:
        if offset in ("Z", "z"):
            tzinfo = UTC
        else:
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                raise InvalidTime(
                    field,
                    f"{field}: {_quote(text)} has an invalid offset {offset!r} "
                    "(hours 00-23, minutes 00-59)",
                )
            delta = timedelta(hours=hours, minutes=minutes)
            tzinfo = timezone(-delta if offset[0] == "-" else delta)

    try:
        return datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            second,
            microsecond,
            tzinfo=tzinfo,
        )
    except ValueError as exc:
        raise InvalidTime(
            field, f"{field}: {_quote(text)} is not a valid date-time: {exc}"
        ) from exc


def _resolve_local(local: datetime, text: str, field: str, zone: ZoneInfo) -> datetime:
    """Attach ``zone`` to the naive wall-clock time ``local``; return UTC.

    Uses the PEP 495 ``fold`` attribute: if fold=0 and fold=1 give different
    UTC instants, the wall-clock time is either repeated (ambiguous) or
    skipped (nonexistent) in ``zone``.
    """
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return first

    candidates = " or ".join(format_instant(c, zone) for c in sorted((first, second)))
    round_trips = first.astimezone(zone).replace(tzinfo=None) == local
    if round_trips:
        raise InvalidTime(
            field,
            f"{field}: local time {_quote(text)} is ambiguous in {zone.key}: "
            f"{candidates}; give an offset",
        )
    raise InvalidTime(
        field,
        f"{field}: local time {_quote(text)} does not exist in {zone.key} "
        f"(clocks skip it): did you mean {candidates}?; give an offset",
    )


def parse_instant(value: object, *, field: str, zone: str | None) -> datetime:
    """Parse ``value`` into an aware datetime in UTC.

    ``value`` may be:

    * a ``str`` in RFC 3339 date-time form with an offset
      (``"2021-08-09T01:00:00+09:00"``, ``"2021-08-08T16:00:00Z"``,
      fractional seconds allowed, ``T`` or space separator);
    * a ``str`` local time without an offset (``"2021-08-09T01:00"``,
      optionally with seconds and a fraction), interpreted in ``zone``;
    * a :class:`datetime.datetime` (YAML timestamps arrive this way): an
      aware one is converted to UTC, a naive one is a local time exactly
      like a string without an offset.

    ``zone`` is an IANA time zone name or ``None``; when given it is
    validated even if ``value`` carries its own offset, and an unknown name
    raises :class:`InvalidTime` for the field ``"timezone"``.

    Raises :class:`InvalidTime` for ``field`` on anything else (numbers,
    ``None``, dates without a time of day, malformed text), for a local
    time without a ``zone``, and for a local time that is ambiguous or
    nonexistent in ``zone`` (the message names both candidate instants).
    Sub-millisecond digits are dropped (the wire precision is milliseconds). Instants
    outside years 1970-2199 are rejected: nothing schedules there, and the far end of
    ``datetime`` overflows in arithmetic.
    """
    try:
        instant = _parse_any(value, field=field, zone=zone)
    except OverflowError as exc:
        raise InvalidTime(field, f"{field}: {_quote(value)} is out of range") from exc
    if not EARLIEST <= instant < LATEST:
        raise InvalidTime(field, f"{field}: {_quote(value)} is outside the years 1970 to 2199")
    return _to_millis(instant)


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _to_millis(instant: datetime) -> datetime:
    """Drop sub-millisecond digits: the wire carries milliseconds, so a stored instant must
    render and parse back to itself (else an unchanged window would look changed)."""
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def _parse_any(value: object, *, field: str, zone: str | None) -> datetime:
    tz = zone_named(zone) if zone is not None else None

    if isinstance(value, datetime):
        parsed = value
        text = value.isoformat()
    elif isinstance(value, date):
        raise InvalidTime(
            field,
            f"{field}: {_quote(value.isoformat())} is a date without a time of day; {_EXPECTED}",
        )
    elif isinstance(value, str):
        parsed = _parse_text(value, field)
        text = value
    else:
        raise InvalidTime(
            field,
            f"{field}: {_quote(repr(value))} ({type(value).__name__}) is not a date-time; "
            f"{_EXPECTED}",
        )

    if parsed.utcoffset() is not None:
        return parsed.astimezone(UTC)

    local = parsed.replace(tzinfo=None)
    if tz is None:
        raise InvalidTime(
            field,
            f"{field}: local time {_quote(text)} has no offset and no timezone; "
            "give an offset (e.g. +09:00) or a timezone",
        )
    return _resolve_local(local, text, field, tz)


def format_instant(instant: datetime, zone: ZoneInfo | str) -> str:
    """Render an aware ``instant`` as RFC 3339 text in ``zone``.

    The offset is always written as ``+HH:MM``/``-HH:MM`` (never ``Z``).
    Precision is whole seconds when ``instant.microsecond < 1000``, otherwise
    milliseconds (sub-millisecond digits are truncated), e.g.
    ``2021-08-09T01:00:00+09:00`` or ``2021-08-09T01:00:00.002+09:00``.
    ``zone`` is a :class:`~zoneinfo.ZoneInfo` or an IANA name (an unknown
    name raises :class:`InvalidTime` for ``"timezone"``).  A naive
    ``instant`` raises :class:`ValueError`, since it names no instant.
    """
    if instant.utcoffset() is None:
        raise ValueError(f"format_instant needs an aware datetime, got {instant.isoformat()!r}")
    tz = zone_named(zone) if isinstance(zone, str) else zone
    local = instant.astimezone(tz)
    # Decide after truncation: 1-999 us would render ".000", which parses back as a whole
    # second and renders without a fraction, so the same status would render two ways.
    timespec = "seconds" if local.microsecond < 1000 else "milliseconds"
    return local.isoformat(timespec=timespec)


_DURATION = re.compile(
    r"P(?:(?P<w>\d{1,4})W|(?:(?P<d>\d{1,4})D)?(?:T(?:(?P<h>\d{1,5})H)?(?:(?P<m>\d{1,6})M)?"
    r"(?:(?P<s>\d{1,7})S)?)?)",
    re.ASCII,
)


def parse_duration(value: object, *, field: str) -> timedelta:
    """An ISO 8601 duration (ISO 8601-1:2019 5.5.2.4) of weeks, days, hours, minutes and
    whole seconds: ``P7D``, ``P1W``, ``PT1H``, ``P1DT12H``, ``PT90S``.

    Years and months are refused: their length depends on the calendar, and a reminder
    offset must be an exact span. ``P``, ``PT`` and a zero span are refused too.

    Raises:
        InvalidTime: for ``field``, quoting the bad value.
    """
    text = value if isinstance(value, str) else None
    match = _DURATION.fullmatch(text) if text is not None else None
    if text is None or match is None or text.endswith(("P", "T")):
        raise InvalidTime(
            field,
            f"{field}: {_quote(repr(value) if text is None else text)} is not an ISO 8601 "
            "duration of weeks, days, hours, minutes and seconds (e.g. P1D, PT1H, P1DT12H)",
        )
    parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    span = timedelta(
        weeks=parts.get("w", 0),
        days=parts.get("d", 0),
        hours=parts.get("h", 0),
        minutes=parts.get("m", 0),
        seconds=parts.get("s", 0),
    )
    if span <= timedelta(0):
        raise InvalidTime(field, f"{field}: {_quote(text)} must be longer than zero")
    return span
