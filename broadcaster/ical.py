"""The iCalendar feed (RFC 5545): one VEVENT per announced window, built with ``icalendar``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vDatetime

from broadcaster import codec
from broadcaster.domain import Window


def calendar_of(windows: Iterable[Window], now: datetime) -> bytes:
    """The ``text/calendar`` body for ``windows`` at ``now`` (UTC, for DTSTAMP).

    UID is ``<id>@maintcast`` (stable across reschedules); SEQUENCE counts reschedules,
    extensions and early ends (RFC 5545 3.8.7.4); cancelled windows have
    ``STATUS:CANCELLED`` (3.8.1.11); times carry the window's zone as TZID with a VTIMEZONE
    (3.2.19, 3.6.5). A window with a reserve carries ``X-MAINTCAST-LATEST-END`` (UTC, an
    experimental property, 3.8.8.2) and the reserve's line (ja / en) first in DESCRIPTION.
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
        texts = [t for t in (w.description.ja, w.description.en) if t]
        if w.latest_end is not None:
            doc = codec.window_doc(w, now, history=False)
            texts.insert(0, " / ".join(codec.reserve_text(doc, lang) for lang in ("ja", "en")))
            # an x-property is TEXT unless VALUE says otherwise (RFC 5545 3.2.20)
            ev.add(
                "x-maintcast-latest-end",
                vDatetime(w.latest_end.astimezone(UTC)),
                parameters={"VALUE": "DATE-TIME"},
            )
        if texts:
            ev.add("description", "\n\n".join(texts))
        ev.add("sequence", w.revisions())
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
