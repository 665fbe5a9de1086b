"""The iCalendar feed (RFC 5545): one VEVENT per announced window, built with ``icalendar``."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event
from icalendar.cal import Timezone

from broadcaster.domain import Window


def calendar_of(windows: Iterable[Window], now: datetime) -> bytes:
    """The ``text/calendar`` body for ``windows`` at ``now`` (UTC, for DTSTAMP).

    UID is ``<id>@maintcast`` (stable across reschedules); SEQUENCE counts reschedules
    (RFC 5545 3.8.7.4); cancelled windows have ``STATUS:CANCELLED`` (3.8.1.11); times are
    in UTC, or in a zone with one offset with its TZID and a VTIMEZONE (see :func:`_local`).
    Each occurrence of a recurring series is a window (the series is none, so not listed).
    """
    cal = Calendar()
    cal.add("prodid", "-//Maintcast//maintenance windows//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", "Maintenance")
    for w in sorted(windows, key=lambda w: (w.starts_at, w.id)):
        zone = ZoneInfo(w.timezone)
        ev = Event()
        ev.add("uid", f"{w.id}@maintcast")
        ev.add("dtstamp", now)
        ev.add("dtstart", _local(w.starts_at, zone))
        ev.add("dtend", _local(w.ends_at, zone))
        ev.add("summary", " / ".join(t for t in (w.title.ja, w.title.en) if t))
        description = "\n\n".join(t for t in (w.description.ja, w.description.en) if t)
        if description:
            ev.add("description", description)
        ev.add("sequence", w.reschedules())
        ev.add("status", "CANCELLED" if w.cancelled else "CONFIRMED")
        ev.add("transp", "TRANSPARENT")
        cal.add_component(ev)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


def _local(instant: datetime, zone: ZoneInfo) -> datetime:
    """``instant`` as the feed writes it: local time with TZID (and a VTIMEZONE, RFC 5545
    3.2.19) in a zone that keeps one offset (Asia/Tokyo), else UTC (``...Z``, 3.3.5 form #2).

    In a zone with DST the parsers do not agree on local times: ``ical.js`` and
    ``node-ical`` read a time in a fall-back fold as its second instant where RFC 5545
    3.3.5 says the first, and ``ical.js`` reads only the first date of each RDATE list of a
    VTIMEZONE observance, which is how ``icalendar`` writes the zone's transitions, so it
    puts even an unambiguous local time an hour off (``vobject`` misreads such zones too).
    UTC reads the same in ``icalendar``, ``vobject``, ``ical.js`` and ``node-ical``
    (tests/test_ical_interop.py).
    """
    if _one_offset(zone.key):
        return instant.astimezone(zone)
    return instant.astimezone(UTC)


@functools.lru_cache(maxsize=256)
def _one_offset(zone: str) -> bool:
    """Whether ``zone``'s VTIMEZONE has one observance (no transition from 1970 to 2038)
    with an offset other than zero (UTC itself is written as UTC)."""
    if ZoneInfo(zone).utcoffset(datetime(2000, 1, 1)) == timedelta(0):
        return False
    return len(Timezone.from_tzid(zone).subcomponents) == 1
