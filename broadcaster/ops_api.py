"""The ops routes: windows lifecycle and the override, behind bearer tokens with roles.

Every accepted write is one store transaction that publishes its own event (actor = the
token's name, with the given reason); the decisions themselves live in :mod:`ops` (pure).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from broadcaster import codec, ops, window_ops
from broadcaster.auth import Forbidden, Principal, Role, Tokens, Unauthorized
from broadcaster.deps import clock_of, settings_of, store_of, tokens_of
from broadcaster.domain import InvalidInput, NotFound, Window
from broadcaster.store import Change, State


def json_response(doc: Any, status: int = 200) -> Response:
    """A JSON response encoded with orjson."""
    return Response(codec.dumps(doc), status_code=status, media_type="application/json")


async def json_body(request: Request, *, optional: bool = False) -> Any:
    """The request body as JSON; an empty body is ``{}`` when ``optional``.

    Raises:
        InvalidInput: ``body`` is not valid JSON (or missing when required).
    """
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise InvalidInput("body", "body: a JSON object is required")
    try:
        return codec.loads(raw)
    except codec.JSONDecodeError as exc:
        raise InvalidInput("body", f"body: not valid JSON ({exc})") from exc


def principal_of(tokens: Tokens, authorization: str | None) -> Principal:
    """The principal of an ``Authorization: Bearer`` header.

    Raises:
        Forbidden: no token is configured at all (names ``MAINTCAST_TOKENS``).
        Unauthorized: the header is missing, not Bearer, or the token is unknown.
    """
    if not tokens.configured:
        raise Forbidden(
            "ops routes are disabled: no token is configured "
            "(set MAINTCAST_TOKENS or MAINTCAST_TOKENS_FILE; see `maintcast token create`)"
        )
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required (Authorization: Bearer TOKEN)")
    found = tokens.verify(token.strip())
    if found is None:
        raise Unauthorized("unknown token")
    return found


router = APIRouter()
"""The ops routes of docs/api.md "Built" (Ops), over the app's store."""


def needs(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency answering the principal of the request's bearer token when its role is
    at least ``role``.

    Raises:
        Unauthorized: no valid token (see :func:`principal_of`).
        Forbidden: no token configured, or the token's role is too low.
    """

    async def dependency(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Principal:
        who = principal_of(tokens_of(request), authorization)
        if not who.may(role):
            raise Forbidden(f"token {who.name!r} has role {who.role}; this needs {role}")
        return who

    return dependency


# defaults, not Annotated aliases: the routes read as "who: Principal = admin"
admin = Depends(needs("admin"))
operator = Depends(needs("operator"))


async def write_window(
    request: Request, decide: Callable[[State, datetime], ops.WindowChange], status: int = 200
) -> Response:
    """Apply ``decide`` (a window change given the store's state and now) in one store
    transaction and answer the changed window."""
    now = clock_of(request).now()  # one instant for the decision, the due change and the event
    made: list[Window] = []

    def change(st: State) -> Change:
        wc = decide(st, now)
        made.append(wc.window)
        return Change(wc.cause, {wc.window.id: wc.window})

    await store_of(request).apply(now, change)
    return json_response(codec.window_doc(made[-1], now), status)


def existing(st: State, window_id: str) -> Window:
    """The window ``window_id`` of the store's state.

    Raises:
        NotFound: no such window.
    """
    w = st.windows.get(window_id)
    if w is None:
        raise NotFound("id", f"unknown window {window_id!r}")
    return w


@router.post("/v1/windows")
async def create(request: Request, who: Principal = admin) -> Response:
    """Schedule a new window (201)."""
    raw = await json_body(request)
    new_id = f"w-{secrets.token_hex(5)}"
    defaults = store_of(request).defaults
    return await write_window(
        request,
        lambda st, now: ops.create_window(
            raw,
            st.windows,
            catalog=st.catalog,
            defaults=defaults,
            now=now,
            actor=who.name,
            new_id=new_id,
        ),
        201,
    )


@router.patch("/v1/windows/{window_id}")
async def patch(window_id: str, request: Request, who: Principal = admin) -> Response:
    """Reschedule or edit a window."""
    raw = await json_body(request)
    defaults = store_of(request).defaults
    return await write_window(
        request,
        lambda st, now: ops.patch_window(
            existing(st, window_id),
            raw,
            catalog=st.catalog,
            defaults=defaults,
            now=now,
            actor=who.name,
        ),
    )


@router.post("/v1/windows/{window_id}/cancel")
async def cancel(window_id: str, request: Request, who: Principal = admin) -> Response:
    """Cancel a window (one in progress ends now)."""
    raw = await json_body(request, optional=True)
    return await write_window(
        request,
        lambda st, now: ops.cancel_window(existing(st, window_id), raw, now=now, actor=who.name),
    )


def _doc(body: dict[str, Any] | None, *errors: int) -> dict[str, Any]:
    """OpenAPI metadata of a window route whose body the pure ops function validates (so the
    422s name the field): the request body's JSON schema and the error answers."""
    what = {
        401: "No valid bearer token",
        403: "The token's role is too low",
        404: "Unknown window",
        409: "The window's state forbids it",
        422: "A bad field (named in error.field)",
        503: "The store is unavailable",
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    extra: dict[str, Any] = {
        "responses": {
            "200": {"description": "The window object (docs/api.md, Window object)"},
            **{str(c): {"description": what[c], "content": error} for c in errors},
        }
    }
    if body is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return {"openapi_extra": extra}


_TEXT = {"type": "string", "maxLength": 4000}
_REASON = {"type": "string", "maxLength": 2000, "description": "Why (public text)."}
_EXTEND_BODY = {
    "type": "object",
    "additionalProperties": False,
    "description": "Exactly one of ends_at and by_s.",
    "properties": {
        "ends_at": {
            "type": "string",
            "description": "The new end: RFC 3339, or a local time "
            "in the window's zone; later than the current end.",
        },
        "by_s": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Seconds added to the current end.",
        },
        "reason": _REASON,
    },
}
_END_BODY = {"type": "object", "additionalProperties": False, "properties": {"reason": _REASON}}
_NOTE_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["message"],
    "properties": {
        "message": {
            "type": "object",
            "additionalProperties": False,
            "description": "At least one of ja and en.",
            "properties": {"ja": _TEXT, "en": _TEXT},
        }
    },
}


@router.post(
    "/v1/windows/{window_id}/extend",
    summary="Extend a window (operator; past latest_end, admin)",
    **_doc(_EXTEND_BODY, 401, 403, 404, 409, 422, 503),
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
    **_doc(_END_BODY, 401, 403, 404, 409, 422, 503),
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
    **_doc(_NOTE_BODY, 401, 403, 404, 409, 422, 503),
)
async def note(window_id: str, request: Request, who: Principal = operator) -> Response:
    """Post a note (``{"message": {"ja", "en"}}``) on a window; event ``maintenance.note``."""
    raw = await json_body(request)
    return await write_window(
        request,
        lambda st, now: window_ops.add_note(existing(st, window_id), raw, now=now, actor=who.name),
    )


@router.put("/v1/override")
async def put_override(request: Request, who: Principal = operator) -> Response:
    """Set the override; it expires after at most ``MAINTCAST_MAX_WINDOW_S``."""
    raw = await json_body(request)
    now = clock_of(request).now()
    max_s = settings_of(request).max_window_s

    def change(st: State) -> Change:
        ov, cause = ops.set_override(raw, catalog=st.catalog, now=now, actor=who.name, max_s=max_s)
        return Change(cause, override=ov, set_override=True)

    return json_response((await store_of(request).apply(now, change))[-1])


@router.delete("/v1/override")
async def delete_override(request: Request, who: Principal = operator) -> Response:
    """Clear the override."""
    raw = await json_body(request, optional=True)
    now = clock_of(request).now()

    def change(st: State) -> Change:
        cause = ops.clear_override(st.override, raw, actor=who.name)
        return Change(cause, override=None, set_override=True)

    return json_response((await store_of(request).apply(now, change))[-1])
