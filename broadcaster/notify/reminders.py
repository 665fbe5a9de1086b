"""Reminders (pure): which ``maintenance.reminder`` messages a window has, when they are due,
and the boundary instants they add to the worker's plan.

A window's reminders are at ``starts_at - d`` for each offset ``d`` of its ``reminders``
(ISO 8601 durations), or of ``MAINTCAST_REMINDERS`` (default ``P7D,P1D,PT1H``) when the
window has none of its own (``[]``: no reminder). A reminder exists only if its instant is
after the window was announced (a window announced two days ahead sends no 7-day
reminder), never for a cancelled window, and it is due at its instant for the misfire
grace only: a reminder nobody could send in time is dropped, never sent late. A reschedule
moves ``starts_at``, hence every instant and every id
(``rem_<window>_<offset s>_<starts_at epoch>``, docs/api.md "Notifications"), so the
reminders are planned anew. They are boundaries like a window's start or end: the worker
plans one job per instant (:func:`boundaries_with_reminders`) and the leader queues the
due ones (:mod:`broadcaster.store.remind`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from broadcaster.domain import InvalidInput, Override, Window
from broadcaster.status import boundaries_after
from broadcaster.timeparse import InvalidTime, parse_duration

REMINDER = "maintenance.reminder"
"""The event type of a reminder message."""
DEFAULT_OFFSETS = "P7D,P1D,PT1H"


def parse_offsets(text: str) -> tuple[timedelta, ...]:
    """``"P7D,P1D,PT1H"`` -> the offsets (``MAINTCAST_REMINDERS``); ``""`` -> none.

    Raises:
        InvalidInput: an item that is not an ISO 8601 duration of weeks to seconds (field
            ``reminders.<i>``, quoting it), or a repeated one.
    """
    out: list[timedelta] = []
    for i, item in enumerate(t.strip() for t in text.split(",") if t.strip()):
        try:
            span = parse_duration(item, field=f"reminders.{i}")
        except InvalidTime as exc:
            raise InvalidInput(exc.field, exc.message) from exc
        if span in out:
            raise InvalidInput(f"reminders.{i}", f"reminders.{i}: {item!r} is given twice")
        out.append(span)
    return tuple(out)


@dataclass(frozen=True, order=True)
class Reminder:
    """One reminder of one window: due ``at`` (UTC), ``before_s`` seconds before the
    window's ``starts_at`` (as planned: a reschedule makes other reminders)."""

    at: datetime
    window_id: str
    before_s: int
    starts_at: datetime

    @property
    def id(self) -> str:
        """``rem_<window>_<offset s>_<starts_at epoch>``: the message id and ``webhook-id``,
        one per window, offset and start (stable across retries and processes)."""
        return f"rem_{self.window_id}_{self.before_s}_{int(self.starts_at.timestamp())}"


def offsets_of(window: Window, default: Sequence[timedelta]) -> tuple[timedelta, ...]:
    """The window's own offsets (validated on input), else ``default``."""
    if window.reminders is None:
        return tuple(default)
    return tuple(parse_duration(t, field="reminders") for t in window.reminders)


def reminders_of(window: Window, default: Sequence[timedelta]) -> list[Reminder]:
    """The window's reminders, earliest first: none for a cancelled window or for a recurring
    series (each occurrence is a window of its own, with its own reminders), and only those
    whose instant is strictly after ``announce_at``."""
    if window.cancelled or window.recurrence is not None:
        return []
    out = []
    for d in offsets_of(window, default):
        at = window.starts_at - d
        if at > window.announce_at:
            out.append(Reminder(at, window.id, int(d.total_seconds()), window.starts_at))
    return sorted(out)


def due(
    windows: Iterable[Window], default: Sequence[timedelta], now: datetime, grace_s: float
) -> list[Reminder]:
    """The reminders due at ``now``: ``at <= now <= at + grace_s`` (clock seconds; an
    older one was missed and is dropped), earliest first."""
    late = timedelta(seconds=grace_s)
    return sorted(
        r for w in windows for r in reminders_of(w, default) if r.at <= now <= r.at + late
    )


def boundaries_with_reminders(
    windows: Iterable[Window],
    override: Override | None,
    now: datetime,
    default: Sequence[timedelta],
) -> list[datetime]:
    """:func:`broadcaster.status.boundaries_after` plus every reminder instant after
    ``now``: the instants the worker plans a job for. Sorted, without duplicates."""
    windows = list(windows)
    out = set(boundaries_after(windows, override, now))
    out.update(r.at for w in windows for r in reminders_of(w, default) if r.at > now)
    return sorted(out)
