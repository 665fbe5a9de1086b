"""Validation of a window's lifecycle fields: the reserve (``latest_end``), ``reminders``,
``recurrence`` and ``notes`` (``drain_s`` and ``series_id`` are plain pydantic fields of
:class:`broadcaster.validation.WindowIn`).

Pure, like :mod:`broadcaster.validation`, which calls these while it builds a window: every
rejection is an ``InvalidInput`` naming the field (a dotted path) and quoting the bad value.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from broadcaster.domain import InvalidInput, LocalText, Note, Recurrence
from broadcaster.texts import shown
from broadcaster.timeparse import InvalidTime, parse_duration, parse_instant

MAX_REMINDERS = 10
"""Most reminder offsets one window may carry."""
MAX_NOTES = 100
"""Most notes one window may carry (each status event carries them)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NoteIn(_Strict):
    """A note as a schedule file may carry it (the HTTP API appends notes itself)."""

    at: Any
    message: LocalText
    actor: str | None = Field(None, max_length=200)


class RecurrenceIn(_Strict):
    """``{"rrule", "exdates"}`` as given."""

    rrule: str = Field(min_length=1, max_length=500)
    exdates: list[Any] = Field([], max_length=400)


def instant(value: Any, field: str, zone: str | None) -> datetime:
    """:func:`broadcaster.timeparse.parse_instant`, its error as ``InvalidInput``."""
    try:
        return parse_instant(value, field=field, zone=zone)
    except InvalidTime as exc:
        raise InvalidInput(exc.field, exc.message) from exc


def announce_at_of(
    given: Any, starts: datetime, zone: str | None, now: datetime, previous: datetime | None
) -> datetime:
    """When a window is announced (UTC): ``given``, else the ``previous`` version's (a
    re-import or a patch keeps it), else ``now``; never after ``starts``.

    Raises:
        InvalidInput: ``announce_at`` unparseable or after ``starts_at``.
    """
    if given is not None:
        announce = instant(given, "announce_at", zone)
        if announce > starts:
            raise InvalidInput(
                "announce_at", f"announce_at: must be at or before starts_at ({shown(given)})"
            )
        return announce
    return min(previous if previous is not None else now, starts)


def latest_end_of(
    given: Any, zone: str | None, starts: datetime, ends: datetime, max_window_s: int
) -> datetime | None:
    """The reserve's end (UTC), or None when not given.

    Raises:
        InvalidInput: ``latest_end`` before ``ends``, or making the window last more than
            ``max_window_s`` seconds from ``starts``.
    """
    if given is None:
        return None
    latest = instant(given, "latest_end", zone)
    if latest < ends:
        raise InvalidInput(
            "latest_end",
            f"latest_end: must be at or after ends_at ({given!s} < {ends.isoformat()})",
        )
    if (latest - starts) > timedelta(seconds=max_window_s):
        raise InvalidInput(
            "latest_end",
            f"latest_end: {given!s} makes the window last up to "
            f"{(latest - starts).total_seconds():.0f} s, longer than the maximum "
            f"{max_window_s} s (MAINTCAST_MAX_WINDOW_S)",
        )
    return latest


def reminders_of(given: list[str] | None) -> tuple[str, ...] | None:
    """The reminder offsets as given (None = the deployment's default, ``[]`` = none).

    Raises:
        InvalidInput: ``reminders.<i>`` not a positive ISO 8601 duration, or repeating an
            earlier one.
    """
    if given is None:
        return None
    seen: set[timedelta] = set()
    for i, text in enumerate(given):
        field = f"reminders.{i}"
        try:
            span = parse_duration(text, field=field)
        except InvalidTime as exc:
            raise InvalidInput(exc.field, exc.message) from exc
        if span in seen:
            raise InvalidInput(field, f"{field}: {text!r} repeats an earlier reminder")
        seen.add(span)
    return tuple(given)


def recurrence_of(given: RecurrenceIn | None) -> Recurrence | None:
    """The recurrence as given; each exdate must read as a date-time and is kept as written
    (YAML timestamps as ISO text): it names an occurrence's local start, matched later.

    Raises:
        InvalidInput: ``recurrence.exdates.<i>`` is not a date-time.
    """
    if given is None:
        return None
    exdates = []
    for i, value in enumerate(given.exdates):
        # the format only: a local exdate may fall in a gap or fold of the window's zone
        instant(value, f"recurrence.exdates.{i}", "UTC")
        exdates.append(value.isoformat() if isinstance(value, datetime) else str(value))
    return Recurrence(rrule=given.rrule, exdates=tuple(exdates))


def notes_of(given: list[NoteIn] | None, zone: str | None) -> tuple[Note, ...]:
    """The notes of a schedule file, instants resolved (local ones in ``zone``).

    Raises:
        InvalidInput: ``notes.<i>.at`` is not a time.
    """
    return tuple(
        Note(at=instant(n.at, f"notes.{i}.at", zone), message=n.message, actor=n.actor)
        for i, n in enumerate(given or [])
    )
