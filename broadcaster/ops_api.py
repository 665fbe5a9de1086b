"""The ops routes: windows lifecycle and the override, behind bearer tokens with roles.

Every accepted write is one store transaction that publishes its own event (actor = the
token's name, with the given reason); the decisions themselves live in :mod:`ops` (pure).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broadcaster import codec, ops
from broadcaster.auth import Forbidden, Principal, Role, Tokens, Unauthorized
from broadcaster.deps import clock_of, settings_of, store_of, tokens_of
from broadcaster.domain import ECHO_MAX, InvalidInput, NotFound, Window
from broadcaster.ops import OverrideIn
from broadcaster.series import SeriesChange, series_doc
from broadcaster.series_ops import (
    cancel_series,
    check_scope,
    create_series,
    is_a_series,
    not_a_series,
    one_off,
    patch_series,
    recurring,
)
from broadcaster.store import Change, State
from broadcaster.texts import check_texts
from broadcaster.validation import WindowIn, from_validation_error

M = TypeVar("M", bound=BaseModel)


def json_response(doc: Any, status: int = 200) -> Response:
    """A JSON response encoded with orjson."""
    return Response(codec.dumps(doc), status_code=status, media_type="application/json")


async def json_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body, a JSON object; an empty body is ``{}`` when ``optional``. Every
    text in it is checked for control characters (:func:`broadcaster.texts.check_texts`).
    Its size is bounded before this reads it (:mod:`broadcaster.hygiene`: 413).

    Raises:
        InvalidInput: ``body`` is not valid JSON, not an object (or missing when required);
            a text holds a control character (named).
    """
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise InvalidInput("body", "body: a JSON object is required")
    try:
        doc = codec.loads(raw)
    except codec.JSONDecodeError as exc:
        raise InvalidInput("body", f"body: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InvalidInput("body", f"body: must be a JSON object (got {type(doc).__name__})")
    check_texts(doc)
    return doc


def checked(raw: Mapping[str, Any], model: type[M]) -> M:
    """``raw`` (a body :func:`json_body` read) validated as ``model``, whose ``extra="forbid"``
    refuses a field it does not know rather than ignoring it (a typo is not a no-op).

    Raises:
        InvalidInput: naming the first field ``model`` refuses (``unknown field``, a wrong
            type, a bound), with the value cut as every echoed value is.
    """
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc) from exc


async def model_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """The request body read by :func:`json_body` (control characters refused, ``422
    invalid`` for invalid JSON or a non-object) and validated by :func:`checked`.

    Raises:
        InvalidInput: as :func:`json_body` and :func:`checked`.
    """
    return checked(await json_body(request, optional=optional), model)


BODY_MODELS: dict[str, type[BaseModel]] = {}
"""Models of the bodies routes read with :func:`model_body` and document by reference
(:func:`ref_body`); :func:`add_body_schemas` puts them into ``/openapi.json``'s components."""


def ref_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body of ``model`` as
    ``#/components/schemas/<model name>`` (FastAPI itself only documents bodies it parses,
    and it parses them before the token is checked, answering invalid UTF-8 with 400)."""
    BODY_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


def add_body_schemas(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (an OpenAPI document) with the schema of every model of :data:`BODY_MODELS`
    (and the models they use) in its components."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, model in BODY_MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    return doc


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


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``#/$defs/X`` reference replaced by ``X`` itself (OpenAPI resolves
    a ``$ref`` against the whole document, where pydantic's ``$defs`` are not)."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def openapi_body(
    model: type[BaseModel], *, drop: tuple[str, ...] = (), partial: bool = False
) -> Any:
    """``openapi_extra`` documenting a JSON body shaped like ``model`` (its fields but
    ``drop``, plus an optional ``reason``; none required when ``partial``). Documentation
    and fuzzing only: the route validates the body itself (:mod:`ops`, :mod:`validation`)."""
    schema = model.model_json_schema()
    schema = _inline(schema, schema.get("$defs", {}))
    props = {k: v for k, v in schema["properties"].items() if k not in drop}
    props.setdefault("reason", {"type": "string", "maxLength": 2000})
    for name in ("starts_at", "ends_at", "announce_at"):
        if name in props:  # any text the server parses (RFC 3339, or local with timezone)
            props[name] = {"type": "string"}
    if "mode" in props:
        props["mode"] = {"type": "string", "enum": ["maintenance", "normal"]}
    schema["properties"] = props
    schema["required"] = [] if partial else [r for r in schema.get("required", []) if r in props]
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": not partial, "content": content}}


class _Reason(BaseModel):
    """The body of a cancel and of clearing the override: a ``reason`` only."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=2000)


WINDOW_BODY = openapi_body(WindowIn, drop=("status", "history"))
PATCH_BODY = openapi_body(WindowIn, drop=("status", "history"), partial=True)
REASON_BODY = openapi_body(_Reason, partial=True)
OVERRIDE_BODY = openapi_body(OverrideIn)


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


async def write_series(
    request: Request, decide: Callable[[State, datetime], SeriesChange], status: int = 200
) -> Response:
    """Like :func:`write_window` for a recurring series: the series and its occurrences in
    one transaction, one event; answers the series object."""
    now = clock_of(request).now()
    made: list[Window] = []

    def change(st: State) -> Change:
        sc = decide(st, now)
        made.append(sc.series)
        return Change(sc.cause, sc.windows, series={sc.series.id: sc.series})

    await store_of(request).apply(now, change)
    return json_response(series_doc(made[-1], now), status)


def existing_series(st: State, series_id: str) -> Window:
    """The series ``series_id`` of the store's state.

    Raises:
        NotFound: no such series; InvalidInput: it is a window (``scope``).
    """
    found = st.series.get(series_id)
    if found is None:
        raise not_a_series(series_id, st.windows)
    return found


def existing(st: State, window_id: str) -> Window:
    """The window ``window_id`` of the store's state.

    Raises:
        NotFound: no such window.
        InvalidInput: ``window_id`` is a series (``scope``: the route needs ``?scope=series``).
    """
    if window_id in st.series:
        raise is_a_series(window_id)
    w = st.windows.get(window_id)
    if w is None:
        raise NotFound("id", f"unknown window {window_id[:ECHO_MAX]!r}")
    return w


@router.post("/v1/windows", openapi_extra=WINDOW_BODY)
async def create(request: Request, who: Principal = admin) -> Response:
    """Schedule a new window, or a recurring series when the body has ``recurrence`` (201)."""
    raw = await json_body(request)
    new_id = f"w-{secrets.token_hex(5)}"
    defaults = store_of(request).defaults
    if recurring(raw):
        return await write_series(
            request,
            lambda st, now: create_series(
                raw,
                st.windows,
                st.series,
                catalog=st.catalog,
                defaults=defaults,
                now=now,
                actor=who.name,
                new_id=new_id,
            ),
            201,
        )
    return await write_window(
        request,
        lambda st, now: ops.create_window(
            one_off(raw),
            {**st.windows, **st.series},
            catalog=st.catalog,
            defaults=defaults,
            now=now,
            actor=who.name,
            new_id=new_id,
        ),
        201,
    )


@router.patch("/v1/windows/{window_id}", openapi_extra=PATCH_BODY)
async def patch(
    window_id: str, request: Request, who: Principal = admin, scope: str | None = None
) -> Response:
    """Reschedule or edit a window; ``?scope=series``: a series and its future occurrences."""
    raw = await json_body(request)
    defaults = store_of(request).defaults
    if check_scope(scope):
        return await write_series(
            request,
            lambda st, now: patch_series(
                existing_series(st, window_id),
                raw,
                st.windows,
                catalog=st.catalog,
                defaults=defaults,
                now=now,
                actor=who.name,
            ),
        )
    return await write_window(
        request,
        lambda st, now: ops.patch_window(
            existing(st, window_id),
            one_off(raw),
            catalog=st.catalog,
            defaults=defaults,
            now=now,
            actor=who.name,
        ),
    )


@router.post("/v1/windows/{window_id}/cancel", openapi_extra=REASON_BODY)
async def cancel(
    window_id: str, request: Request, who: Principal = admin, scope: str | None = None
) -> Response:
    """Cancel a window (one in progress ends now); with ``?scope=series`` a series and its
    occurrences not started yet."""
    raw = await json_body(request, optional=True)

    def reason() -> Mapping[str, Any]:  # checked once the target is known (scope first)
        checked(raw, _Reason)
        return raw

    if check_scope(scope):
        return await write_series(
            request,
            lambda st, now: cancel_series(
                existing_series(st, window_id), reason(), st.windows, now=now, actor=who.name
            ),
        )
    return await write_window(
        request,
        lambda st, now: ops.cancel_window(
            existing(st, window_id), reason(), now=now, actor=who.name
        ),
    )


@router.put("/v1/override", openapi_extra=OVERRIDE_BODY)
async def put_override(request: Request, who: Principal = operator) -> Response:
    """Set the override; it expires after at most ``MAINTCAST_MAX_WINDOW_S``."""
    raw = await json_body(request)
    now = clock_of(request).now()
    max_s = settings_of(request).max_window_s

    def change(st: State) -> Change:
        ov, cause = ops.set_override(raw, catalog=st.catalog, now=now, actor=who.name, max_s=max_s)
        return Change(cause, override=ov, set_override=True)

    return json_response((await store_of(request).apply(now, change))[-1])


@router.delete("/v1/override", openapi_extra=REASON_BODY)
async def delete_override(request: Request, who: Principal = operator) -> Response:
    """Clear the override."""
    raw = await json_body(request, optional=True)
    checked(raw, _Reason)
    now = clock_of(request).now()

    def change(st: State) -> Change:
        cause = ops.clear_override(st.override, raw, actor=who.name)
        return Change(cause, override=None, set_override=True)

    return json_response((await store_of(request).apply(now, change))[-1])
