"""Recurring series and their occurrences: pure decisions, published by the store.

A series is a window with ``recurrence`` whose ``starts_at``/``ends_at`` are its first
occurrence. It is not a window of its own: each occurrence becomes an ordinary window
``<series_id>--YYYYMMDD`` (the local date the rule gave it) with ``series_id`` set, for the
occurrences not over and starting within :data:`HORIZON`, at most :data:`MAX_AHEAD` of
them; every reconcile tops that up as time passes (:func:`top_up`). An occurrence is
announced as long before its start as the first one is (``starts_at - announce_at`` of the
series) and keeps the series' reserve (``latest_end - ends_at``).

Every function takes ``now`` (aware UTC) and raises ``InvalidInput`` (422), ``Conflict``
(409) before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from broadcaster import codec, recurrence
from broadcaster.domain import Cause, Conflict, HistoryEntry, InvalidInput, Span, Window, lifecycle
from broadcaster.recurrence import Occurrence

HORIZON = timedelta(days=400)
"""How far ahead occurrences become windows."""
MAX_AHEAD = 100
"""Most occurrences not over that exist as windows at once, per series."""
MAX_SERIES_ID = 54
"""A series id's longest length, so that ``<id>--YYYYMMDD`` is a valid window id (64)."""
FOLLOWED = (
    "title",
    "description",
    "timezone",
    "affected",
    "error_code",
    "messages",
    "drain_s",
    "reminders",
)
"""Fields an occurrence takes from its series; a series-wide PATCH of one of them changes
it on the future occurrences (times, announce lead and reserve are derived separately)."""
SeriesStatus = Literal["scheduled", "completed", "cancelled"]


@dataclass(frozen=True)
class SeriesChange:
    """The series to store, the occurrence windows to store, and the one event."""

    series: Window
    windows: dict[str, Window]
    cause: Cause


def occurrence_id(series_id: str, occ: Occurrence) -> str:
    """``<series_id>--YYYYMMDD``, the local date the rule gave the occurrence."""
    return f"{series_id}--{occ.local:%Y%m%d}"


def expand(series: Window, now: datetime, limit: int | None = MAX_AHEAD) -> list[Occurrence]:
    """The series' occurrences not over at ``now`` that start within :data:`HORIZON`."""
    rec = series.recurrence
    if rec is None or series.cancelled:
        return []
    return recurrence.occurrences(
        rec.rrule,
        series.starts_at,
        series.ends_at,
        series.timezone,
        after=now,
        horizon=now + HORIZON,
        exdates=rec.exdates,
        limit=limit,
    )


def occurrence_of(series: Window, occ: Occurrence) -> Window:
    """The window of one occurrence: the series' fields at the occurrence's times, its
    announce lead and reserve kept, no history, notes or recurrence."""
    reserve = _reserve(series)
    return series.model_copy(
        update={
            "id": occurrence_id(series.id, occ),
            "starts_at": occ.starts_at,
            "ends_at": occ.ends_at,
            "announce_at": occ.starts_at - (series.starts_at - series.announce_at),
            "latest_end": None if reserve is None else occ.ends_at + reserve,
            "recurrence": None,
            "series_id": series.id,
            "history": (),
            "notes": (),
            "cancelled": False,
        }
    )


def missing(series: Window, windows: Mapping[str, Window], now: datetime) -> dict[str, Window]:
    """The occurrence windows due to exist that do not (an id already taken is skipped:
    a cancelled or moved occurrence keeps its id and is never made again)."""
    out = {}
    for occ in expand(series, now):
        w = occurrence_of(series, occ)
        if w.id not in windows:
            out[w.id] = w
    return out


def top_up(
    series: Mapping[str, Window], windows: Mapping[str, Window], now: datetime
) -> dict[str, Window]:
    """Every series' missing occurrences (see :func:`missing`), soonest first."""
    out: dict[str, Window] = {}
    for s in series.values():
        out.update(missing(s, windows, now))
    return dict(sorted(out.items(), key=lambda kv: (kv[1].starts_at, kv[0])))


def status_of(series: Window, now: datetime) -> SeriesStatus:
    """``cancelled``; ``completed`` once the rule has no occurrence left that is not over;
    else ``scheduled``."""
    if series.cancelled:
        return "cancelled"
    rec = series.recurrence
    if rec is None:
        return "completed"
    left = recurrence.occurrences(
        rec.rrule,
        series.starts_at,
        series.ends_at,
        series.timezone,
        after=now,
        horizon=datetime.max.replace(tzinfo=now.tzinfo) - timedelta(days=2),
        exdates=rec.exdates,
        limit=1,
    )
    return "scheduled" if left else "completed"


def series_doc(series: Window, now: datetime) -> codec.Doc:
    """The series object: the window object of its definition (``recurrence`` set) whose
    ``status`` is :func:`status_of`."""
    return {**codec.window_doc(series, now), "status": status_of(series, now)}


def of_series(windows: Iterable[Window], series_id: str) -> list[Window]:
    """The occurrence windows of ``series_id``, soonest first."""
    return sorted(
        (w for w in windows if w.series_id == series_id), key=lambda w: (w.starts_at, w.id)
    )


def check_series(series: Window, taken: Iterable[str] = ()) -> None:
    """Check what :func:`broadcaster.validation.build_window` cannot: the rule itself, the
    id's length, ``series_id`` (none, or the id), and that ``starts_at`` is an occurrence.

    Raises:
        InvalidInput: naming ``recurrence.rrule``, ``id``, ``series_id`` or ``starts_at``.
        Conflict: the id is ``taken`` (by a window).
    """
    rec = series.recurrence
    if rec is None:
        raise InvalidInput("recurrence", "recurrence: missing")
    rule = recurrence.parse_rule(rec.rrule)
    if len(series.id) > MAX_SERIES_ID:
        raise InvalidInput(
            "id",
            f"id: a series id has at most {MAX_SERIES_ID} characters (its occurrences "
            "add --YYYYMMDD)",
        )
    if series.id in set(taken):
        raise Conflict("id", f"id: window {series.id!r} exists")
    if series.series_id not in (None, series.id):
        raise InvalidInput("series_id", "series_id: a series' series_id is its own id")
    local = series.starts_at.astimezone(ZoneInfo(series.timezone)).replace(tzinfo=None)
    first = recurrence.first_local(rule, local, series.timezone)
    if first != local:
        then = "it gives no occurrence" if first is None else f"its first is {first.isoformat()}"
        raise InvalidInput(
            "starts_at",
            f"starts_at: {local.isoformat()} ({series.timezone}) is not an occurrence of "
            f"{rec.rrule!r} ({then}); starts_at/ends_at are the first occurrence",
        )


def _entry(
    change: str, now: datetime, actor: str | None, reason: str | None, **spans: Any
) -> HistoryEntry:
    return HistoryEntry.model_validate(
        {"at": now, "change": change, "actor": actor, "reason": reason, **spans}
    )


def follow(
    old: Window,
    new: Window,
    windows: Mapping[str, Window],
    *,
    now: datetime,
    actor: str | None,
    reason: str | None,
) -> dict[str, Window]:
    """The occurrence windows to store when series ``old`` becomes ``new``.

    Only occurrences not started yet (and not cancelled) change. A new time, zone, length
    or rule re-times each of them to the new rule (an occurrence moved alone included) and
    cancels those the new rule no longer has (an added exdate); other fields change on them
    only where the series changed. Occurrences the new rule adds are created. Each changed
    occurrence records history (``rescheduled``, ``updated`` or ``cancelled``).
    """
    timing = (old.starts_at, old.ends_at, old.timezone, old.recurrence) != (
        new.starts_at,
        new.ends_at,
        new.timezone,
        new.recurrence,
    )
    # every occurrence the new rule has within the horizon decides what is kept; only the
    # first MAX_AHEAD are created
    wanted = {w.id: w for w in (occurrence_of(new, o) for o in expand(new, now, None))}
    fields = [f for f in FOLLOWED if getattr(old, f) != getattr(new, f)]
    lead, new_lead = old.starts_at - old.announce_at, new.starts_at - new.announce_at
    out: dict[str, Window] = {}
    for w in of_series(windows.values(), old.id):
        if lifecycle(w, now) != "scheduled":
            continue
        frm = Span(starts_at=w.starts_at, ends_at=w.ends_at)
        if new.cancelled or (timing and w.id not in wanted):
            entry = _entry("cancelled", now, actor, reason)
            out[w.id] = w.model_copy(update={"cancelled": True, "history": (*w.history, entry)})
            continue
        update: dict[str, Any] = {f: getattr(new, f) for f in fields}
        if timing:
            target = wanted[w.id]
            update.update(starts_at=target.starts_at, ends_at=target.ends_at)
        start, end = update.get("starts_at", w.starts_at), update.get("ends_at", w.ends_at)
        if timing or lead != new_lead:
            update["announce_at"] = start - new_lead
        if timing or _reserve(old) != _reserve(new):
            r = _reserve(new)
            update["latest_end"] = None if r is None else end + r
        changed = w.model_copy(update=update)
        if changed == w:
            continue
        to = Span(starts_at=changed.starts_at, ends_at=changed.ends_at)
        entry = (
            _entry("rescheduled", now, actor, reason, **{"from": frm, "to": to})
            if frm != to
            else _entry("updated", now, actor, reason)
        )
        out[w.id] = changed.model_copy(update={"history": (*w.history, entry)})
    for wid, w in list(wanted.items())[:MAX_AHEAD]:
        if wid not in windows:
            out[wid] = w
    return out


def _reserve(w: Window) -> timedelta | None:
    return None if w.latest_end is None else w.latest_end - w.ends_at
