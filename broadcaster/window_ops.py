"""Pure ops decisions on a window under way: extend it, end it now, post a note.

Like :mod:`broadcaster.ops`, each function takes the stored window, the request body and
``now`` (UTC) and returns the window to store with its event cause, or raises before
anything is written: ``InvalidInput`` (422), ``Conflict`` (409, the window is completed or
cancelled, or not in progress for an end), ``BeyondReserve`` (403). docs/api.md
"Extend, end, notes".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from broadcaster.auth import Forbidden
from broadcaster.domain import (
    Cause,
    Conflict,
    HistoryEntry,
    InvalidInput,
    LocalText,
    Note,
    Span,
    Window,
    lifecycle,
)
from broadcaster.ops import WindowChange
from broadcaster.timeparse import InvalidTime, parse_instant
from broadcaster.validation import from_validation_error
from broadcaster.window_fields import MAX_NOTES

MAX_EXTEND_S = 10 * 365 * 86_400
"""``by_s`` above this is refused before any arithmetic (the window maximum refuses far
less; this only keeps ``timedelta`` from overflowing)."""


class BeyondReserve(Forbidden):
    """An extension past ``latest_end`` asked with the operator role (403); ``field``
    names the field that asked for it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _body(raw: Any, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput("body", "body: must be a JSON object")
    for key in raw:
        if key not in allowed:
            shown = str(key)[:64]
            raise InvalidInput(shown, f"{shown}: unknown field (expected {', '.join(allowed)})")
    return raw


def _reason(raw: Mapping[str, Any]) -> str | None:
    reason = raw.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
        raise InvalidInput("reason", "reason: must be a text of at most 2000 characters")
    return reason


def _open(old: Window, now: datetime, what: str) -> str:
    """The window's lifecycle at ``now``; a completed or cancelled one cannot change (409)."""
    state = lifecycle(old, now)
    if state in ("completed", "cancelled"):
        raise Conflict("status", f"window {old.id!r} is {state}: it cannot {what}")
    return state


def _spans(old: Window, new_end: datetime) -> dict[str, Span]:
    return {
        "from": Span(starts_at=old.starts_at, ends_at=old.ends_at),
        "to": Span(starts_at=old.starts_at, ends_at=new_end),
    }


def _entry(change: str, now: datetime, actor: str, reason: str | None, **kw: Any) -> HistoryEntry:
    return HistoryEntry.model_validate(
        {"at": now, "change": change, "actor": actor, "reason": reason, **kw}
    )


def _new_end(old: Window, raw: Mapping[str, Any]) -> tuple[datetime, str]:
    """The asked end and the field that asked it (``ends_at`` or ``by_s``)."""
    if ("ends_at" in raw) == ("by_s" in raw):
        field = "by_s" if "ends_at" in raw else "ends_at"
        raise InvalidInput(field, f"{field}: give exactly one of ends_at and by_s")
    if "ends_at" in raw:
        try:  # a local time is in the window's zone
            return parse_instant(raw["ends_at"], field="ends_at", zone=old.timezone), "ends_at"
        except InvalidTime as exc:
            raise InvalidInput(exc.field, exc.message) from exc
    by = raw["by_s"]
    if isinstance(by, bool) or not isinstance(by, int | float) or not 0 < by <= MAX_EXTEND_S:
        raise InvalidInput("by_s", f"by_s: must be a number of seconds > 0 (got {by!r})")
    return old.ends_at + timedelta(seconds=by), "by_s"


def extend_window(
    old: Window, raw: Any, *, now: datetime, actor: str, may_pass_reserve: bool, max_window_s: int
) -> WindowChange:
    """Move the end of a scheduled or in-progress window later: body ``{"ends_at": T}`` or
    ``{"by_s": N}`` (seconds added to the current end), and an optional ``reason``.

    Up to ``latest_end`` the operator role suffices; past it (or at all when the window has
    no ``latest_end``: its reserve is zero) only ``may_pass_reserve`` (admin), and
    ``latest_end`` then moves to the new end. History ``extended``, event
    ``maintenance.extended``.

    Raises:
        InvalidInput: neither or both of ``ends_at`` and ``by_s``, a bad value, an end not
            later than the current one, a window longer than ``max_window_s`` seconds.
        Conflict: the window is completed or cancelled.
        BeyondReserve: past ``latest_end`` without ``may_pass_reserve``.
    """
    body = _body(raw, ("ends_at", "by_s", "reason"))
    _open(old, now, "be extended")
    reason = _reason(body)
    new_end, field = _new_end(old, body)
    if new_end <= old.ends_at:
        raise InvalidInput(
            field,
            f"{field}: the new end {new_end.isoformat()} is not later than the current end "
            f"{old.ends_at.isoformat()}",
        )
    if (new_end - old.starts_at).total_seconds() > max_window_s:
        raise InvalidInput(
            field,
            f"{field}: the window would last {(new_end - old.starts_at).total_seconds():.0f} s, "
            f"longer than the maximum {max_window_s} s (MAINTCAST_MAX_WINDOW_S)",
        )
    reserve = old.latest_end or old.ends_at
    if new_end > reserve and not may_pass_reserve:
        raise BeyondReserve(
            field,
            f"{field}: the new end {new_end.isoformat()} is past latest_end "
            f"{reserve.isoformat()}; extending beyond the reserve needs the admin role",
        )
    entry = _entry("extended", now, actor, reason, **_spans(old, new_end))
    stored = old.model_copy(
        update={
            "ends_at": new_end,
            "latest_end": None if old.latest_end is None else max(old.latest_end, new_end),
            "history": (*old.history, entry),
        }
    )
    return WindowChange(stored, Cause("maintenance.extended", old.id, actor, reason))


def end_window(old: Window, raw: Any, *, now: datetime, actor: str) -> WindowChange:
    """End an in-progress window now (``ends_at`` = ``now``): body ``{"reason"?}``.
    History ``ended_early``, event ``maintenance.ended``.

    Raises:
        Conflict: the window is not in progress (scheduled, completed or cancelled).
        InvalidInput: a bad ``reason`` or an unknown field.
    """
    body = _body(raw, ("reason",))
    state = _open(old, now, "be ended")
    if state != "in_progress":
        raise Conflict(
            "status", f"window {old.id!r} is {state}: only a window in progress can be ended"
        )
    reason = _reason(body)
    entry = _entry("ended_early", now, actor, reason, **_spans(old, now))
    stored = old.model_copy(update={"ends_at": now, "history": (*old.history, entry)})
    return WindowChange(stored, Cause("maintenance.ended", old.id, actor, reason))


def add_note(old: Window, raw: Any, *, now: datetime, actor: str) -> WindowChange:
    """Append a note ``{"message": {"ja"?, "en"?}, "reason"?}`` (at least one text) to a
    scheduled or in-progress window; event ``maintenance.note`` (with the reason, like every
    ops write; no history entry: the note is its own record, with its time and actor).

    Raises:
        InvalidInput: no message, an empty one, an unknown field.
        Conflict: the window is completed or cancelled, or has ``MAX_NOTES`` notes.
    """
    body = _body(raw, ("message", "reason"))
    _open(old, now, "take notes")
    reason = _reason(body)
    if "message" not in body:
        raise InvalidInput("message", 'message: missing ({"ja": ..., "en": ...})')
    try:
        message = LocalText.model_validate(body["message"])
    except ValidationError as exc:
        raise from_validation_error(exc, "message") from exc
    if not ((message.ja or "").strip() or (message.en or "").strip()):
        raise InvalidInput("message", "message: needs ja or en text")
    if len(old.notes) >= MAX_NOTES:
        raise Conflict("notes", f"notes: window {old.id!r} has {MAX_NOTES} notes, the most")
    note = Note(at=now, message=message, actor=actor)
    stored = old.model_copy(update={"notes": (*old.notes, note)})
    return WindowChange(stored, Cause("maintenance.note", old.id, actor, reason))
