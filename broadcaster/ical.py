"""The iCalendar feed (RFC 5545): one VEVENT per announced window, built with ``icalendar``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from broadcaster.domain import Window


def calendar_of(windows: Iterable[Window], now: datetime) -> bytes:
    """The ``text/calendar`` body for ``windows`` at ``now`` (UTC, for DTSTAMP).

    UID is ``<id>@maintcast`` (stable across reschedules); SEQUENCE counts reschedules
    (RFC 5545 3.8.7.4); cancelled windows have ``STATUS:CANCELLED`` (3.8.1.11); times carry
    the window's zone as TZID with a VTIMEZONE (3.2.19, 3.6.5).
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
    """``instant`` in ``zone``, or in UTC when it is the second occurrence of a repeated
    local time (fall-back): RFC 5545 3.3.5 reads an ambiguous TZID time as the first."""
    local = instant.astimezone(zone)
    if local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset():
        return instant.astimezone(UTC)
    return local
