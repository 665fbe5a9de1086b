"""Pure ops decisions on recurring series: create, series-wide patch and cancel, import.

Each returns a :class:`~broadcaster.series.SeriesChange` (the series, the occurrence
windows to store, one event naming the series) or raises ``InvalidInput`` (422),
``Conflict`` (409) before anything is written. Occurrences themselves are ordinary windows:
:mod:`broadcaster.ops` patches and cancels them one at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from broadcaster import codec, ops
from broadcaster.domain import (
    Catalog,
    Cause,
    Conflict,
    FieldError,
    HistoryEntry,
    InvalidInput,
    NotFound,
    Span,
    Window,
)
from broadcaster.series import HORIZON, SeriesChange, check_series, follow, missing, status_of
from broadcaster.validation import Defaults, build_window

SCOPE_SERIES = "series"
"""The ``scope`` query value that makes a PATCH or cancel act on a whole series."""


def _reason(raw: Mapping[str, Any]) -> str | None:
    reason = raw.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
        raise InvalidInput("reason", "reason: must be a text of at most 2000 characters")
    return reason


def _entry(
    change: str, now: datetime, actor: str, reason: str | None, **spans: Span
) -> HistoryEntry:
    return HistoryEntry.model_validate(
        {"at": now, "change": change, "actor": actor, "reason": reason, **spans}
    )


def recurring(raw: Any) -> bool:
    """Whether a POST body creates a series (it has a non-null ``recurrence``)."""
    return isinstance(raw, Mapping) and raw.get("recurrence") is not None


def one_off(raw: Any) -> Any:
    """``raw``, a window body or patch, checked not to touch what only series have.

    Raises:
        InvalidInput: a ``recurrence`` (a window does not become a series) or a
            ``series_id`` (the server sets it on occurrences) other than null.
    """
    if isinstance(raw, Mapping):
        if raw.get("recurrence") is not None:
            raise InvalidInput(
                "recurrence",
                "recurrence: a window cannot become a series (create one with POST "
                "/v1/windows; change a series with ?scope=series)",
            )
        if raw.get("series_id") is not None:
            raise InvalidInput("series_id", "series_id: set by the server on occurrences")
    return raw


def check_scope(scope: str | None) -> bool:
    """Whether a route acts on a whole series (``?scope=series``).

    Raises:
        InvalidInput: another ``scope`` value.
    """
    if scope is None:
        return False
    if scope != SCOPE_SERIES:
        raise InvalidInput("scope", f"scope: must be {SCOPE_SERIES!r} (got {scope[:64]!r})")
    return True


def is_a_series(series_id: str) -> InvalidInput:
    """The error for a window route given a series id without ``?scope=series``."""
    return InvalidInput(
        "scope",
        f"scope: {series_id!r} is a recurring series, not a window: add ?scope=series to "
        f"change its future occurrences, or name one occurrence ({series_id}--YYYYMMDD)",
    )


def not_a_series(window_id: str, windows: Mapping[str, Window]) -> FieldError:
    """The error for ``?scope=series`` on an id that is no series."""
    w = windows.get(window_id)
    if w is not None:
        of = f" (it is an occurrence of {w.series_id!r})" if w.series_id else ""
        return InvalidInput("scope", f"scope: window {window_id!r} is not a series{of}")
    return NotFound("id", f"unknown series {window_id!r}")


def create_series(
    raw: Any,
    windows: Mapping[str, Window],
    series: Mapping[str, Window],
    *,
    catalog: Catalog,
    defaults: Defaults,
    now: datetime,
    actor: str,
    new_id: str,
) -> SeriesChange:
    """A new series from a POST body with ``recurrence``, and its first occurrences.

    Raises:
        InvalidInput: see ``build_window`` and :func:`broadcaster.series.check_series`; a
            first occurrence already over; no occurrence within the horizon.
        Conflict: the id exists (a window or a series).
    """
    reason = None
    if isinstance(raw, Mapping) and "reason" in raw:
        reason = _reason(raw)
        raw = {k: v for k, v in raw.items() if k != "reason"}
    w = build_window(raw, catalog=catalog, defaults=defaults, now=now, window_id=new_id)
    if w.id in series:
        raise Conflict("id", f"id: series {w.id!r} exists")
    check_series(w, windows)
    if w.ends_at <= now:
        raise InvalidInput("ends_at", "ends_at: the first occurrence would already be over")
    stored = w.model_copy(update={"series_id": w.id})
    made = missing(stored, windows, now)
    if not made:
        days = HORIZON.days
        raise InvalidInput("recurrence", f"recurrence: no occurrence within {days} days")
    return SeriesChange(stored, made, Cause("maintenance.scheduled", w.id, actor, reason))


def patch_series(
    old: Window,
    raw: Any,
    windows: Mapping[str, Window],
    *,
    catalog: Catalog,
    defaults: Defaults,
    now: datetime,
    actor: str,
) -> SeriesChange:
    """A series-wide PATCH (``?scope=series``): top-level fields replace, plus ``reason``.

    ``starts_at``/``ends_at`` are the (new) first occurrence. Without ``announce_at`` the
    announce lead is kept, without ``latest_end`` the reserve. The future occurrences follow
    (:func:`broadcaster.series.follow`); started ones are left as they are.

    Raises:
        InvalidInput: a bad field (named); ``id``, ``status``, ``history``, ``notes`` or
            ``series_id`` changed; ``recurrence`` removed; nothing changed.
        Conflict: the series is cancelled.
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput("body", "a patch must be an object")
    if old.cancelled:
        raise Conflict("status", f"series {old.id!r} is cancelled and cannot change")
    for field in ("id", "status", "history", "notes", "series_id"):
        if field in raw and not (field in ("id", "series_id") and raw[field] == old.id):
            raise InvalidInput(field, f"{field}: cannot be changed")
    if "recurrence" in raw and raw["recurrence"] is None:
        raise InvalidInput(
            "recurrence", "recurrence: a series keeps its rule (cancel it with scope=series)"
        )
    reason = _reason(raw)
    base = codec.window_doc(old, now, history=False)
    del base["status"], base["notes"], base["announce_at"]
    keep_reserve = "latest_end" not in raw and old.latest_end is not None
    merged = {**base, **{k: v for k, v in raw.items() if k != "reason"}}
    if keep_reserve:
        merged["latest_end"] = None  # re-derived below from the new end
    new = build_window(merged, catalog=catalog, defaults=defaults, now=now, previous=old)
    update: dict[str, Any] = {"series_id": old.id, "notes": old.notes, "history": old.history}
    if "announce_at" not in raw:
        update["announce_at"] = new.starts_at - (old.starts_at - old.announce_at)
    if keep_reserve and old.latest_end is not None:
        update["latest_end"] = new.ends_at + (old.latest_end - old.ends_at)
        if update["latest_end"] - new.starts_at > timedelta(seconds=defaults.max_window_s):
            raise InvalidInput(
                "ends_at",
                f"ends_at: with its reserve the window would last longer than "
                f"{defaults.max_window_s} s (MAINTCAST_MAX_WINDOW_S)",
            )
    new = new.model_copy(update=update)
    check_series(new)
    if new == old:
        raise InvalidInput("body", "body: changes nothing (send the fields to change)")
    frm = Span(starts_at=old.starts_at, ends_at=old.ends_at)
    to = Span(starts_at=new.starts_at, ends_at=new.ends_at)
    timing = frm != to or (old.timezone, old.recurrence) != (new.timezone, new.recurrence)
    entry = (
        _entry("rescheduled", now, actor, reason, **{"from": frm, "to": to})
        if frm != to
        else _entry("updated", now, actor, reason)
    )
    new = new.model_copy(update={"history": (*old.history, entry)})
    made = follow(old, new, windows, now=now, actor=actor, reason=reason)
    kind = "maintenance.rescheduled" if timing else "maintenance.updated"
    return SeriesChange(new, made, Cause(kind, old.id, actor, reason))


def cancel_series(
    old: Window, raw: Any, windows: Mapping[str, Window], *, now: datetime, actor: str
) -> SeriesChange:
    """Cancel a series (``?scope=series``) and every occurrence of it not started yet; one
    in progress is left to end (or to be ended or cancelled alone).

    Raises:
        Conflict: the series is cancelled already or has no occurrence left.
        InvalidInput: a bad ``reason``.
    """
    state = status_of(old, now)
    if state != "scheduled":
        raise Conflict("status", f"series {old.id!r} is {state} and cannot be cancelled")
    reason = _reason(raw if isinstance(raw, Mapping) else {})
    entry = _entry("cancelled", now, actor, reason)
    new = old.model_copy(update={"cancelled": True, "history": (*old.history, entry)})
    made = follow(old, new, windows, now=now, actor=actor, reason=reason)
    return SeriesChange(new, made, Cause("maintenance.cancelled", old.id, actor, reason))


def import_series(
    old: Window | None, new: Window, windows: Mapping[str, Window], *, now: datetime, actor: str
) -> SeriesChange | None:
    """What a schedule file's series (a window with ``recurrence``) changes; None: nothing.

    A new series gets its occurrences; a changed one is merged like a window
    (:func:`broadcaster.ops.merge_imported`: history kept, a move recorded) and its future
    occurrences follow.

    Raises:
        InvalidInput: the series is invalid (see :func:`broadcaster.series.check_series`)
            or its id is a window's; the message names the series.
    """
    try:
        check_series(new, windows)
    except FieldError as exc:
        raise InvalidInput(exc.field, f"series {new.id}: {exc.message}") from exc
    new = new.model_copy(update={"series_id": new.id})
    if old is None:
        made = missing(new, windows, now)
        return SeriesChange(new, made, Cause("maintenance.scheduled", new.id, actor))
    merged, cause = ops.merge_imported(old, new, now, actor)
    if cause is None:
        return None
    return SeriesChange(
        merged, follow(old, merged, windows, now=now, actor=actor, reason=None), cause
    )
