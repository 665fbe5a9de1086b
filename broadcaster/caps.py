"""Size caps on what the status carries, so that one status frame stays below 1 MiB
(issue 12, item 4). Pure.

A status frame carries every scheduled and in-progress announced window (without its
history), and each client gets every frame: one window with a megabyte of text, or
thousands of windows, would make every change cost megabytes per subscriber. Three caps,
each refused before anything is stored:

- a window's texts (``title``, ``description``, ``messages``: every language and channel,
  the built-in messages included), as JSON, at most :data:`WINDOW_TEXT_MAX` bytes
  (422 ``invalid`` naming the largest of the three);
- at most ``MAINTCAST_MAX_WINDOWS`` (default 500) windows scheduled or in progress at once,
  announced or not (409 ``conflict``, field ``windows``); cancelled and completed ones do
  not count;
- their objects, as a status frame carries them, at most :data:`LIVE_WINDOWS_MAX_BYTES`
  together (409, field ``windows``).

A write is refused only when it grows a measure past its cap, so lowering the setting
never blocks edits that do not add.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import orjson

from broadcaster import codec
from broadcaster.domain import Conflict, InvalidInput, Window, lifecycle

WINDOW_TEXT_MAX = 16 * 1024
"""Bytes of one window's texts as JSON (title, description, messages)."""
LIVE_WINDOWS_MAX_BYTES = 768 * 1024
"""Bytes of every scheduled and in-progress window's object as JSON, together: with the
components and the override, a status frame stays below 1 MiB."""
MAX_WINDOWS = 500
"""Default of ``MAINTCAST_MAX_WINDOWS``."""


def text_bytes(w: Window) -> dict[str, int]:
    """Bytes of each text field of ``w`` as JSON: ``title``, ``description``, ``messages``."""
    return {
        "title": len(orjson.dumps(w.title.model_dump())),
        "description": len(orjson.dumps(w.description.model_dump())),
        "messages": len(orjson.dumps({c: t.model_dump() for c, t in w.messages.items()})),
    }


def check_window_text(w: Window) -> None:
    """Refuse a window whose texts exceed :data:`WINDOW_TEXT_MAX`.

    Raises:
        InvalidInput: naming the largest text field, with every field's size.
    """
    sizes = text_bytes(w)
    total = sum(sizes.values())
    if total <= WINDOW_TEXT_MAX:
        return
    field = max(sizes, key=lambda k: sizes[k])
    parts = ", ".join(f"{k} {v}" for k, v in sizes.items())
    raise InvalidInput(
        field,
        f"{field}: the window's texts take {total} bytes as JSON ({parts}), "
        f"more than {WINDOW_TEXT_MAX}",
    )


def _live(windows: Mapping[str, Window], now: datetime) -> list[Window]:
    return [w for w in windows.values() if lifecycle(w, now) in ("scheduled", "in_progress")]


def _frame_bytes(windows: list[Window], now: datetime) -> int:
    return sum(len(codec.dumps(codec.window_doc(w, now, history=False))) for w in windows)


def check_live_windows(
    before: Mapping[str, Window],
    after: Mapping[str, Window],
    now: datetime,
    *,
    max_windows: int,
) -> None:
    """Refuse a write that takes the scheduled and in-progress windows (``before`` ->
    ``after``, by id) past ``max_windows`` or past :data:`LIVE_WINDOWS_MAX_BYTES`, when it
    grows that measure.

    Raises:
        Conflict: field ``windows``; the message names the cap and its setting.
    """
    old, new = _live(before, now), _live(after, now)
    if len(new) > max_windows and len(new) > len(old):
        raise Conflict(
            "windows",
            f"windows: at most {max_windows} windows may be scheduled or in progress at once "
            f"(MAINTCAST_MAX_WINDOWS); this write would make {len(new)}: cancel one, or wait "
            "until one completes",
        )
    live_ids = {w.id for w in new}
    if not any(i in live_ids and before.get(i) != w for i, w in after.items()):
        return  # no scheduled or in-progress window changed
    size = _frame_bytes(new, now)
    if size > LIVE_WINDOWS_MAX_BYTES and size > _frame_bytes(old, now):
        raise Conflict(
            "windows",
            f"windows: the scheduled and in-progress windows would take {size} bytes in "
            f"every status frame, more than {LIVE_WINDOWS_MAX_BYTES}: shorten texts, or "
            "cancel a window",
        )
