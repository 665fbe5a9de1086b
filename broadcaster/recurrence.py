"""Recurring windows: RFC 5545 RRULEs expanded on local wall time in an IANA zone.

Pure: no I/O, no clock. ``dateutil.rrule`` generates the dates, always on *naive* local
wall times; its time-zone handling is never used (it mis-steps across DST changes:
dateutil/dateutil#1425, #1390). Each local start is then placed on the time line with
:mod:`zoneinfo` under two explicit rules (:func:`localize`):

* a local start inside a spring-forward gap moves forward by the gap's length
  (02:30 on a night that jumps from 02:00 to 03:00 starts at 03:30);
* a local start inside a fall-back fold takes the first (earlier) of its two instants.

Each occurrence lasts exactly as long as the first one (RFC 5545 3.8.5.3: DTSTART with
TZID plus DTEND, so the duration is exact, not nominal).

Supported: ``FREQ`` DAILY|WEEKLY|MONTHLY|YEARLY with ``INTERVAL``, ``BYDAY``,
``BYMONTHDAY``, ``BYSETPOS`` and one of ``COUNT``/``UNTIL`` (RFC 5545 3.3.10); anything
else is refused, naming ``recurrence.rrule``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from dateutil import rrule as du

from broadcaster.domain import InvalidInput
from broadcaster.timeparse import parse_instant

FIELD = "recurrence.rrule"
FREQS: dict[str, Literal[0, 1, 2, 3]] = {
    "DAILY": du.DAILY,
    "WEEKLY": du.WEEKLY,
    "MONTHLY": du.MONTHLY,
    "YEARLY": du.YEARLY,
}
PARTS = ("FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYSETPOS", "COUNT", "UNTIL")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
MAX_INTERVAL = 999
MAX_COUNT = 10_000
_BYDAY = re.compile(r"([+-]?)(\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)", re.ASCII)
_UNTIL = re.compile(r"(\d{8})(?:T(\d{6})(Z?))?", re.ASCII)
_OFFSET = re.compile(r"(?:[zZ]|[+-]\d\d:\d\d)$", re.ASCII)


@dataclass(frozen=True)
class Rule:
    """A parsed RRULE. ``byday`` holds ``(ordinal or None, weekday 0=MO..6=SU)``;
    ``until`` is a local date (inclusive, the whole day), a naive local date-time, or an
    aware UTC instant (RFC 5545 3.3.10: a ``Z`` value bounds DTSTART with TZID)."""

    text: str
    freq: str
    interval: int = 1
    byday: tuple[tuple[int | None, int], ...] = ()
    bymonthday: tuple[int, ...] = ()
    bysetpos: tuple[int, ...] = ()
    count: int | None = None
    until: date | datetime | None = None


@dataclass(frozen=True)
class Occurrence:
    """One occurrence: ``local`` is the rule's naive wall time (what ``exdates`` and ids
    name), ``starts_at``/``ends_at`` are aware UTC instants."""

    local: datetime
    starts_at: datetime
    ends_at: datetime


def _bad(why: str) -> InvalidInput:
    return InvalidInput(FIELD, f"{FIELD}: {why}")


def _ints(name: str, value: str, low: int, high: int, signed: bool) -> tuple[int, ...]:
    out = []
    for item in value.split(","):
        if not re.fullmatch(r"[+-]?\d{1,5}" if signed else r"\d{1,5}", item, re.ASCII):
            raise _bad(f"{name}={value!r} is not a list of whole numbers")
        n = int(item)
        if not low <= abs(n) <= high or (not signed and n < low):
            raise _bad(f"{name}: {item} is out of range ({'±' if signed else ''}{low}..{high})")
        out.append(n)
    return tuple(out)


def _until(value: str) -> date | datetime:
    m = _UNTIL.fullmatch(value)
    try:
        if m is None:
            raise ValueError(value)
        day = datetime.strptime(m[1], "%Y%m%d")
        if m[2] is None:
            return day.date()
        at = datetime.strptime(m[1] + m[2], "%Y%m%d%H%M%S")
    except ValueError:
        raise _bad(
            f"UNTIL={value!r} is not YYYYMMDD, YYYYMMDDTHHMMSS (local) or YYYYMMDDTHHMMSSZ"
        ) from None
    return at.replace(tzinfo=UTC) if m[3] else at


def parse_rule(text: str) -> Rule:
    """Parse and check an RRULE value (``FREQ=MONTHLY;BYDAY=2TH``; an ``RRULE:`` prefix is
    allowed). Part names and values are case-insensitive.

    Raises:
        InvalidInput: for ``recurrence.rrule``, naming the part: an unsupported part or
            ``FREQ``, a repeated part, a bad value, ``COUNT`` with ``UNTIL``, an ordinal
            ``BYDAY`` outside MONTHLY/YEARLY, ``BYMONTHDAY`` with WEEKLY, ``BYSETPOS`` alone.
    """
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    parts: dict[str, str] = {}
    for part in body.split(";"):
        name, eq, value = part.partition("=")
        name, value = name.strip().upper(), value.strip().upper()
        if not eq or not name or not value:
            raise _bad(f"{part!r} is not NAME=VALUE")
        if name not in PARTS:
            raise _bad(f"{name} is not supported (supported: {', '.join(PARTS)})")
        if name in parts:
            raise _bad(f"{name} is given twice")
        parts[name] = value
    freq = parts.get("FREQ")
    if freq is None:
        raise _bad("FREQ is required")
    if freq not in FREQS:
        raise _bad(f"FREQ={freq} is not supported (supported: {', '.join(FREQS)})")
    if "COUNT" in parts and "UNTIL" in parts:
        raise _bad("COUNT and UNTIL cannot both be given (RFC 5545 3.3.10)")
    byday = _byday(parts["BYDAY"], freq) if "BYDAY" in parts else ()
    bymonthday = (
        _ints("BYMONTHDAY", parts["BYMONTHDAY"], 1, 31, True) if "BYMONTHDAY" in parts else ()
    )
    if bymonthday and freq == "WEEKLY":
        raise _bad("BYMONTHDAY cannot be used with FREQ=WEEKLY (RFC 5545 3.3.10)")
    bysetpos = _ints("BYSETPOS", parts["BYSETPOS"], 1, 366, True) if "BYSETPOS" in parts else ()
    if bysetpos and not (byday or bymonthday):
        raise _bad("BYSETPOS needs BYDAY or BYMONTHDAY (RFC 5545 3.3.10)")
    interval = _ints("INTERVAL", parts.get("INTERVAL", "1"), 1, MAX_INTERVAL, False)[0]
    count = _ints("COUNT", parts["COUNT"], 1, MAX_COUNT, False)[0] if "COUNT" in parts else None
    return Rule(
        text=text,
        freq=freq,
        interval=interval,
        byday=byday,
        bymonthday=bymonthday,
        bysetpos=bysetpos,
        count=count,
        until=_until(parts["UNTIL"]) if "UNTIL" in parts else None,
    )


def _byday(value: str, freq: str) -> tuple[tuple[int | None, int], ...]:
    """A ``BYDAY`` value (``MO,WE``, ``2TH``, ``-1FR``) as (ordinal or None, weekday 0-6)
    pairs.

    Raises:
        InvalidInput: an item that is not a weekday, an ordinal outside MONTHLY/YEARLY, or
            one out of range (1-5 monthly, 1-53 yearly, either sign).
    """
    byday: list[tuple[int | None, int]] = []
    for item in value.split(","):
        m = _BYDAY.fullmatch(item)
        if m is None:
            raise _bad(f"BYDAY: {item!r} is not a weekday (MO..SU, optionally with 2TH, -1FR)")
        if m[2] is None:
            byday.append((None, WEEKDAYS.index(m[3])))
            continue
        if freq not in ("MONTHLY", "YEARLY"):
            raise _bad(f"BYDAY: {item} has an ordinal, allowed only with MONTHLY or YEARLY")
        n = int(m[2]) * (-1 if m[1] == "-" else 1)
        if not 1 <= abs(n) <= (5 if freq == "MONTHLY" else 53):
            raise _bad(f"BYDAY: {item} is out of range")
        byday.append((n, WEEKDAYS.index(m[3])))
    return tuple(byday)


def localize(local: datetime, zone: ZoneInfo) -> datetime:
    """The aware UTC instant of the naive wall time ``local`` in ``zone``.

    A time that exists once maps to that instant. In a fall-back fold (the time exists
    twice) the first, earlier instant is taken. In a spring-forward gap (the time does not
    exist) it moves forward by the gap's length: 02:30 in America/Chicago on 2021-03-14 is
    03:30 CDT. (Both agree with PEP 495's ``fold=0``; they are spelled out here because
    they are the contract, docs/api.md "Recurrence".)
    """
    first = local.replace(tzinfo=zone, fold=0)
    second = local.replace(tzinfo=zone, fold=1)
    before, after = first.utcoffset(), second.utcoffset()
    if before is None or after is None or before == after:
        return first.astimezone(UTC)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local:
        return first.astimezone(UTC)  # a fold: fold=0 is the earlier instant
    # a gap: fold=0 reads the offset in force before it, fold=1 the one after
    return (local + (after - before)).replace(tzinfo=zone).astimezone(UTC)


def _wall(value: str, zone: ZoneInfo) -> datetime:
    """An exdate as a naive local wall time: as written, or (with an offset) converted."""
    if _OFFSET.search(value.strip()):
        return parse_instant(value, field="exdate", zone=None).astimezone(zone).replace(tzinfo=None)
    return parse_instant(value, field="exdate", zone="UTC").replace(tzinfo=None)


def _dateutil_rule(rule: Rule, dtstart: datetime) -> du.rrule:
    days = [du.weekday(d, n) if n is not None else du.weekday(d) for n, d in rule.byday]
    return du.rrule(
        FREQS[rule.freq],
        dtstart=dtstart,
        interval=rule.interval,
        count=rule.count,
        byweekday=days or None,
        bymonthday=list(rule.bymonthday) or None,
        bysetpos=list(rule.bysetpos) or None,
    )


def _before_until(rule: Rule, local: datetime, start: datetime) -> bool:
    u = rule.until
    if u is None:
        return True
    if isinstance(u, datetime):
        return start <= u if u.tzinfo is not None else local <= u
    return local.date() <= u


def first_local(rule: Rule | str, local: datetime, zone: str) -> datetime | None:
    """The first wall time the rule generates from DTSTART ``local`` (naive, in ``zone``), or
    None when it generates nothing (an ``UNTIL`` before it). A DTSTART that does not match
    the rule is not generated (dateutil; RFC 5545 leaves that case undefined), so
    ``first_local(r, x, z) == x`` says that ``x`` is an occurrence of ``r``."""
    r = parse_rule(rule) if isinstance(rule, str) else rule
    for value in _dateutil_rule(r, local.replace(microsecond=0)):
        value = value.replace(microsecond=local.microsecond)
        return value if _before_until(r, value, localize(value, ZoneInfo(zone))) else None
    return None


def occurrences(
    rule: Rule | str,
    first_start: datetime,
    first_end: datetime,
    zone: str,
    *,
    after: datetime,
    horizon: datetime,
    exdates: Iterable[str] = (),
    limit: int | None = None,
) -> list[Occurrence]:
    """The occurrences not over at ``after`` (``ends_at > after``) that start before
    ``horizon``, soonest first, at most ``limit``.

    ``first_start``/``first_end`` (aware) are the first occurrence: its wall time in
    ``zone`` is DTSTART, its exact length every occurrence's length. ``exdates`` (local
    date-times like ``2021-09-09T01:00``, or instants with an offset) remove the
    occurrences whose wall time they name. See the module docstring for the gap/fold rules.

    Raises:
        InvalidInput: a bad rule (``recurrence.rrule``).
        InvalidTime: a bad exdate.
    """
    r = parse_rule(rule) if isinstance(rule, str) else rule
    z = ZoneInfo(zone)
    local0 = first_start.astimezone(z).replace(tzinfo=None)
    length = first_end - first_start
    skip = {_wall(x, z) for x in exdates}
    # the search runs on wall times: widen it by a day on each side (offsets differ by hours)
    low = (after - length).astimezone(z).replace(tzinfo=None) - timedelta(days=1)
    high = horizon.astimezone(z).replace(tzinfo=None) + timedelta(days=1)
    out: list[Occurrence] = []
    for value in _dateutil_rule(r, local0.replace(microsecond=0)).xafter(low, inc=True):
        if value > high:
            break
        local = value.replace(microsecond=local0.microsecond)
        start = localize(local, z)
        if not _before_until(r, local, start):
            break
        if local in skip or start + length <= after or start >= horizon:
            continue
        out.append(Occurrence(local, start, start + length))
        if limit is not None and len(out) >= limit:
            break
    return out
