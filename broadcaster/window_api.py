"""The ops routes on a window under way: extend it, end it now, post a note (operator).

The decisions are pure (:mod:`broadcaster.window_ops`); each route is one store transaction
publishing its own event (``maintenance.extended``, ``maintenance.ended``,
``maintenance.note``) through :func:`broadcaster.ops_api.write_window`, and answers the
window (docs/api.md "Extend, end, notes").
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from broadcaster import window_ops
from broadcaster.auth import Principal
from broadcaster.deps import settings_of
from broadcaster.domain import LocalText
from broadcaster.ops_api import (
    REASON_BODY,
    existing,
    json_body,
    openapi_body,
    operator,
    write_window,
)

router = APIRouter()
"""``POST /v1/windows/{id}/extend``, ``…/end`` and ``…/notes``."""


class ExtendIn(BaseModel):
    """``POST /v1/windows/{id}/extend`` (documentation: :mod:`window_ops` validates it)."""

    model_config = ConfigDict(extra="forbid")
    ends_at: str | None = Field(
        None, description="The new end (RFC 3339, or local in the window's zone); or by_s."
    )
    by_s: float | None = Field(None, gt=0, description="Seconds added to the current end.")


class NoteIn(BaseModel):
    """``POST /v1/windows/{id}/notes``: the note's text, ja and/or en."""

    model_config = ConfigDict(extra="forbid")
    message: LocalText


EXTEND_BODY = openapi_body(ExtendIn)
NOTE_BODY = openapi_body(NoteIn)


@router.post(
    "/v1/windows/{window_id}/extend",
    summary="Extend a window (operator; past latest_end, admin)",
    openapi_extra=EXTEND_BODY,
)
async def extend(window_id: str, request: Request, who: Principal = operator) -> Response:
    """Move a window's end later (``ends_at`` or ``by_s``); past ``latest_end`` needs admin."""
    raw = await json_body(request)
    max_s = settings_of(request).max_window_s
    return await write_window(
        request,
        lambda st, now: window_ops.extend_window(
            existing(st, window_id),
            raw,
            now=now,
            actor=who.name,
            may_pass_reserve=who.may("admin"),
            max_window_s=max_s,
        ),
    )


@router.post(
    "/v1/windows/{window_id}/end",
    summary="End a window in progress now (operator)",
    openapi_extra=REASON_BODY,
)
async def end(window_id: str, request: Request, who: Principal = operator) -> Response:
    """End a window in progress now."""
    raw = await json_body(request, optional=True)
    return await write_window(
        request,
        lambda st, now: window_ops.end_window(
            existing(st, window_id), raw, now=now, actor=who.name
        ),
    )


@router.post(
    "/v1/windows/{window_id}/notes",
    summary="Post a note on a window (operator)",
    openapi_extra=NOTE_BODY,
)
async def note(window_id: str, request: Request, who: Principal = operator) -> Response:
    """Post a note (``{"message": {"ja", "en"}}``) on a window; event ``maintenance.note``."""
    raw = await json_body(request)
    return await write_window(
        request,
        lambda st, now: window_ops.add_note(existing(st, window_id), raw, now=now, actor=who.name),
    )
