"""Pure ops decisions: create, patch, cancel a window; set and clear the override.

Each function takes the current inputs and ``now`` (UTC) and returns what to store and the
event cause, or raises ``InvalidInput`` (422), ``NotFound`` (404) or ``Conflict`` (409)
before anything is written (docs/api.md "Built", the ops routes and the error table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broadcaster import codec
from broadcaster.domain import (
    Catalog,
    Cause,
    Conflict,
    HistoryEntry,
    InvalidInput,
    NotFound,
    Override,
    Span,
    Window,
    lifecycle,
)
from broadcaster.texts import shown
from broadcaster.timeparse import InvalidTime, parse_instant
from broadcaster.validation import Defaults, build_window, check_affected, from_validation_error


@dataclass(frozen=True)
class WindowChange:
    """The window to store and the event it publishes."""

    window: Window
    cause: Cause


def _entry(
    change: str, now: datetime, actor: str, reason: str | None, **spans: Span
) -> HistoryEntry:
    return HistoryEntry.model_validate(
        {"at": now, "change": change, "actor": actor, "reason": reason, **spans}
    )


def _reason(raw: Mapping[str, Any], field: str = "reason") -> str | None:
    reason = raw.get(field)
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > 2000:
        raise InvalidInput(field, f"{field}: must be a text of at most 2000 characters")
    return reason


def create_window(
    raw: Any,
    windows: Mapping[str, Window],
    *,
    catalog: Catalog,
    defaults: Defaults,
    now: datetime,
    actor: str,
    new_id: str,
) -> WindowChange:
    """A new window from a POST body; ``new_id`` is used when the body has no ``id``.

    An optional ``reason`` (as in a PATCH) is recorded with the event.

    Raises:
        InvalidInput: see ``build_window``; also a window that already ended.
        Conflict: the id exists.
    """
    reason = None
    if isinstance(raw, Mapping) and "reason" in raw:  # like PATCH: recorded with the event
        reason = _reason(raw)
        raw = {k: v for k, v in raw.items() if k != "reason"}
    w = build_window(raw, catalog=catalog, defaults=defaults, now=now, window_id=new_id)
    if w.id in windows:
        raise Conflict("id", f"id: window {w.id!r} exists")
    if w.ends_at <= now:
        raise InvalidInput("ends_at", "ends_at: the window would already be over")
    return WindowChange(w, Cause("maintenance.scheduled", w.id, actor, reason))


def _ends_now(merged: dict[str, Any], now: datetime) -> bool:
    """Whether the patched end of a window in progress is at or before ``now`` ("an end at
    or before now ends it now"); if so ``merged["ends_at"]`` becomes ``now``. Judged before
    :func:`build_window` would reject it as not after the (past) start or the like.

    Raises:
        InvalidInput: ``ends_at`` unparseable.
    """
    try:
        new_end = parse_instant(merged["ends_at"], field="ends_at", zone=merged.get("timezone"))
    except InvalidTime as exc:
        raise InvalidInput(exc.field, exc.message) from exc
    if new_end > now:
        return False
    merged["ends_at"] = now.isoformat()
    return True


def patch_window(
    old: Window,
    raw: Any,
    *,
    catalog: Catalog,
    defaults: Defaults,
    now: datetime,
    actor: str,
) -> WindowChange:
    """Apply a PATCH: top-level fields replace (nested objects whole), plus ``reason``.

    A new start or end is a reschedule; a window in progress may move its end, not its
    start; an end at or before ``now`` ends it now (``ended_early``). Local times in the
    patch use the window's zone after the patch. Without ``latest_end`` in the patch, the
    reserve keeps its length (``latest_end`` moves with ``ends_at``).

    Raises:
        InvalidInput: a bad field (named), or ``id``/``status``/``history`` sent.
        Conflict: the window is completed or cancelled, or in progress and its start moves.
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput("body", "a patch must be an object")
    state = lifecycle(old, now)
    if state in ("completed", "cancelled"):
        raise Conflict("status", f"window {old.id!r} is {state} and cannot change")
    for field in ("id", "status", "history", "notes"):
        if field in raw and not (field == "id" and raw[field] == old.id):
            raise InvalidInput(field, f"{field}: cannot be changed")
    reason = _reason(raw)
    base = codec.window_doc(old, now, history=False)
    del base["status"], base["notes"]  # server-owned: carried over below
    if "announce_at" not in raw:
        # not given: kept, or moved back with an earlier start (build_window's ``previous``),
        # rather than rejecting a field the patch never sent
        del base["announce_at"]
    merged = {**base, **{k: v for k, v in raw.items() if k != "reason"}}
    keep_reserve = "latest_end" not in raw and old.latest_end is not None
    if keep_reserve:
        merged["latest_end"] = None  # re-derived below from the new end
    ends_early = state == "in_progress" and "ends_at" in raw and _ends_now(merged, now)
    new = build_window(merged, catalog=catalog, defaults=defaults, now=now, previous=old)
    if keep_reserve and old.latest_end is not None:
        new = _keep_reserve(new, old.latest_end - old.ends_at, defaults.max_window_s)
    if state == "in_progress" and new.starts_at != old.starts_at:
        raise Conflict(
            "starts_at",
            f"starts_at: window {old.id!r} is in progress; its start cannot move "
            "(move its end, or cancel it)",
        )
    if state == "scheduled" and new.ends_at <= now:
        raise InvalidInput("ends_at", "ends_at: the window would already be over")
    new = new.model_copy(update={"notes": old.notes})
    if new == old.model_copy(update={"history": new.history}):
        raise InvalidInput("body", "body: changes nothing (send the fields to change)")
    entry, kind = _patch_entry(old, new, ends_early, now, actor, reason)
    stored = new.model_copy(update={"history": (*old.history, entry)})
    return WindowChange(stored, Cause(kind, old.id, actor, reason))


def _patch_entry(
    old: Window, new: Window, ends_early: bool, now: datetime, actor: str, reason: str | None
) -> tuple[HistoryEntry, str]:
    """The history entry a patch adds and the event type it publishes: ``ended_early``
    (``maintenance.ended``) when the patch ends the window now, ``rescheduled``
    (``maintenance.rescheduled``, with the spans) when its start or end moved, else
    ``updated`` (``maintenance.updated``)."""
    frm = Span(starts_at=old.starts_at, ends_at=old.ends_at)
    to = Span(starts_at=new.starts_at, ends_at=new.ends_at)
    if ends_early:
        return (
            _entry("ended_early", now, actor, reason, **{"from": frm, "to": to}),
            "maintenance.ended",
        )
    if frm != to:
        return (
            _entry("rescheduled", now, actor, reason, **{"from": frm, "to": to}),
            "maintenance.rescheduled",
        )
    return _entry("updated", now, actor, reason), "maintenance.updated"


def _keep_reserve(new: Window, reserve: timedelta, max_window_s: int) -> Window:
    """``new`` with its reserve as long as before (``latest_end - ends_at``): a patch that
    moves the end and says nothing of ``latest_end`` moves the reserve with it.

    Raises:
        InvalidInput: the reserve would then pass ``max_window_s``.
    """
    latest = new.ends_at + reserve
    if (latest - new.starts_at).total_seconds() > max_window_s:
        raise InvalidInput(
            "latest_end",
            f"latest_end: keeping the reserve makes the window last up to "
            f"{(latest - new.starts_at).total_seconds():.0f} s, longer than the maximum "
            f"{max_window_s} s (MAINTCAST_MAX_WINDOW_S); send a latest_end",
        )
    return new.model_copy(update={"latest_end": latest})


def cancel_window(old: Window, raw: Any, *, now: datetime, actor: str) -> WindowChange:
    """Cancel a window; one in progress ends now.

    Raises:
        Conflict: already completed or cancelled.
        InvalidInput: a bad ``reason``.
    """
    state = lifecycle(old, now)
    if state in ("completed", "cancelled"):
        raise Conflict("status", f"window {old.id!r} is {state} and cannot be cancelled")
    reason = _reason(raw if isinstance(raw, Mapping) else {})
    update: dict[str, Any] = {"cancelled": True}
    spans: dict[str, Span] = {}
    if state == "in_progress":
        update["ends_at"] = now
        spans = {
            "from": Span(starts_at=old.starts_at, ends_at=old.ends_at),
            "to": Span(starts_at=old.starts_at, ends_at=now),
        }
    entry = _entry("cancelled", now, actor, reason, **spans)
    update["history"] = (*old.history, entry)
    return WindowChange(
        old.model_copy(update=update), Cause("maintenance.cancelled", old.id, actor, reason)
    )


class OverrideIn(BaseModel):
    """The ``PUT /v1/override`` body."""

    model_config = ConfigDict(extra="forbid")
    mode: Any
    affected: dict[str, list[str]] | None = None
    reason: str = Field(min_length=1, max_length=2000)
    expires_at: str | None = None
    ttl_s: float | None = Field(None, gt=0, strict=True)


def set_override(
    raw: Any, *, catalog: Catalog, now: datetime, actor: str, max_s: int
) -> tuple[Override, Cause]:
    """Validate an override; at most one of ``expires_at`` and ``ttl_s`` (seconds).

    Raises:
        InvalidInput: a bad mode, affected, reason or expiry (named), both expiries, an expiry
            not after ``now`` or further than ``max_s`` seconds away.
    """
    try:
        body = OverrideIn.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc) from exc
    if not body.reason.strip():
        raise InvalidInput("reason", "reason: must not be blank (it is shown to merchants)")
    if body.mode not in ("maintenance", "normal"):
        raise InvalidInput("mode", f"mode: must be maintenance or normal (got {shown(body.mode)})")
    if body.expires_at is not None and body.ttl_s is not None:
        raise InvalidInput("ttl_s", "ttl_s: give expires_at or ttl_s, not both")
    if body.affected is not None:
        check_affected(catalog, body.affected, "affected")
    expires = _override_expiry(body, now, max_s)
    ov = Override(
        mode=body.mode,
        affected=None if body.affected is None else {s: tuple(m) for s, m in body.affected.items()},
        reason=body.reason,
        actor=actor,
        set_at=now,
        expires_at=expires,
    )
    return ov, Cause("override.set", None, actor, body.reason)


def _override_expiry(body: OverrideIn, now: datetime, max_s: int) -> datetime | None:
    """When an override ends (UTC): its ``expires_at``, or ``now`` plus ``ttl_s`` seconds;
    None when neither is given (it holds until cleared).

    Raises:
        InvalidInput: an unparseable ``expires_at``, or an expiry not after ``now`` or further
            than ``max_s`` seconds away (naming the field given).
    """
    expires = None
    if body.expires_at is not None:
        try:
            expires = parse_instant(body.expires_at, field="expires_at", zone=None)
        except InvalidTime as exc:
            raise InvalidInput(exc.field, exc.message) from exc
    elif body.ttl_s is not None:
        if body.ttl_s > max_s:  # before timedelta, which overflows on absurd values
            raise InvalidInput("ttl_s", f"ttl_s: further than {max_s} s away")
        expires = now + timedelta(seconds=body.ttl_s)
    if expires is not None:
        field = "expires_at" if body.expires_at is not None else "ttl_s"
        if expires <= now:
            raise InvalidInput(field, f"{field}: must be in the future")
        if (expires - now).total_seconds() > max_s:
            raise InvalidInput(field, f"{field}: further than {max_s} s away")
    return expires


def clear_override(current: Override | None, raw: Any, *, actor: str) -> Cause:
    """The cause of clearing the override (a no-op clear still publishes, as an ops write).

    Raises:
        NotFound: no override is set.
    """
    if current is None:
        raise NotFound("override", "no override is set")
    return Cause("override.cleared", None, actor, _reason(raw if isinstance(raw, Mapping) else {}))


def merge_imported(
    old: Window | None, new: Window, now: datetime, actor: str
) -> tuple[Window, Cause | None]:
    """The window to store when a schedule file brings ``new`` over ``old``, and the cause.

    None as cause means nothing changed. History and notes the server has are kept, the
    file's entries are added, a move of times that no entry records is recorded as
    ``rescheduled``, and a cancellation that none records as ``cancelled`` (when it was
    cancelled decides whether it was ever public: :func:`broadcaster.domain.is_public`).
    """
    unrecorded = not any(h.change == "cancelled" for h in new.history)
    if new.cancelled and unrecorded and (old is None or not old.cancelled):
        cancel = _entry("cancelled", now, actor, None)
        new = new.model_copy(update={"history": (*new.history, cancel)})
    if old is None:
        return new, Cause("maintenance.scheduled", new.id, actor)
    have = {(h.at, h.change) for h in old.history}
    history = list(old.history) + [h for h in new.history if (h.at, h.change) not in have]
    moved = (old.starts_at, old.ends_at) != (new.starts_at, new.ends_at)
    if moved and not any(
        h.to is not None and (h.to.starts_at, h.to.ends_at) == (new.starts_at, new.ends_at)
        for h in history
    ):
        history.append(
            HistoryEntry.model_validate(
                {
                    "at": now,
                    "change": "rescheduled",
                    "from": Span(starts_at=old.starts_at, ends_at=old.ends_at),
                    "to": Span(starts_at=new.starts_at, ends_at=new.ends_at),
                    "actor": actor,
                }
            )
        )
    history.sort(key=lambda h: h.at)
    seen = set(old.notes)
    notes = sorted((*old.notes, *(n for n in new.notes if n not in seen)), key=lambda n: n.at)
    merged = new.model_copy(update={"history": tuple(history), "notes": tuple(notes)})
    if merged == old:
        return old, None
    if merged.cancelled and not old.cancelled:
        kind = "maintenance.cancelled"
    elif moved:
        kind = "maintenance.rescheduled"
    else:
        kind = "maintenance.updated"
    return merged, Cause(kind, new.id, actor)
