"""The subscription routes (admin): webhooks and e-mail subscribers, their secrets, test
pings, deliveries and replays (docs/api.md "Notifications").

Module-level handlers: the store, clock and settings come from the request's app
(:mod:`broadcaster.deps`), the admin check from :func:`broadcaster.ops_api.needs`.
Messages are only queued here; whichever process holds the leader lock sends them.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from broadcaster.auth import Principal
from broadcaster.clock import Clock
from broadcaster.deps import clock_of, settings_of, store_of
from broadcaster.domain import Conflict, InvalidInput
from broadcaster.notify.messages import DeliveryOut, Selector, delivery_out
from broadcaster.notify.subscriptions import (
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionWithSecret,
    inactive,
    new_subscription,
    rotated,
    subscription_out,
    with_secret,
)
from broadcaster.ops_api import needs
from broadcaster.store import Store
from broadcaster.store.notify import NotifyStore

MAX_SEQ = 10**18 - 1
MAX_REPLAY_EVENTS = 10_000
"""Most events one replay reads (the event log keeps ``MAINTCAST_EVENT_RETENTION``)."""


@dataclass(frozen=True)
class Admin:
    """An admin request: who made it, and what the routes use."""

    who: Principal
    store: Store
    notify: NotifyStore
    clock: Clock
    allow_http: bool
    zone: str


async def admin(request: Request, who: Annotated[Principal, Depends(needs("admin"))]) -> Admin:
    """The admin request's context (the role subscriptions need).

    Raises:
        Unauthorized: no valid token. Forbidden: the role is below admin, or no token is
            configured.
    """
    store, settings = store_of(request), settings_of(request)
    return Admin(
        who,
        store,
        NotifyStore.of(store),
        clock_of(request),
        allow_http=settings.webhook_allow_http,
        zone=settings.timezone,
    )


class ErrorBody(BaseModel):
    """``{"error": {"code", "message", "field"}}``."""

    error: dict[str, str | None]


class SubscriptionRow(SubscriptionOut):
    """A subscription as listed: plus its latest message and how many are pending."""

    last_delivery: DeliveryOut | None = Field(
        description="Its latest message (pending, delivered or failed); null before any."
    )
    pending_messages: int = Field(description="Messages waiting for an attempt or a retry.")


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionRow]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after_seq: int = Field(ge=0, le=MAX_SEQ, description="Queue the events after this seq.")


class ReplayOut(BaseModel):
    queued: int = Field(description="Messages queued (events this subscription gets).")
    first_seq: int | None = Field(description="The first event read (None: none after).")
    last_seq: int | None


class PingOut(BaseModel):
    message_id: str
    state: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in (
        (401, "No valid bearer token"),
        (403, "The token's role is below admin"),
        (503, "The store is unavailable"),
    )
}
ONE = {**ERRORS, 404: {"model": ErrorBody, "description": "Unknown subscription"}}
router = APIRouter(tags=["subscriptions"])
AdminDep = Annotated[Admin, Depends(admin)]


def _now_s() -> float:
    return time.time()


@router.post(
    "/v1/subscriptions",
    status_code=201,
    response_model=SubscriptionWithSecret,
    responses={**ERRORS, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def create_subscription(body: SubscriptionIn, a: AdminDep) -> SubscriptionWithSecret:
    """Subscribe a webhook URL or an e-mail address; a webhook's secret is shown only here."""
    now = a.clock.now()
    secret: list[str | None] = []

    def make(seq: int, catalog: Any) -> Any:
        sub, s = new_subscription(
            body,
            catalog=catalog,
            now=now,
            seq=seq,
            actor=a.who.name,
            new_id=f"s-{secrets.token_hex(5)}",
            allow_http=a.allow_http,
        )
        secret.append(s)
        return sub

    sub = await a.notify.add_subscription(make)
    return with_secret(subscription_out(sub, zone=a.zone, now_s=_now_s()), secret[-1])


@router.get("/v1/subscriptions", response_model=SubscriptionList, responses=ERRORS)
async def list_subscriptions(a: AdminDep) -> SubscriptionList:
    """Every subscription, oldest first (never a secret), with its latest delivery (what
    ``/admin`` shows)."""
    subs = await a.notify.subscriptions()
    last = await a.notify.last_deliveries([s.id for s in subs])
    rows = []
    for s in subs:
        msg, pending = last[s.id]
        rows.append(
            SubscriptionRow(
                **subscription_out(s, zone=a.zone, now_s=_now_s()).model_dump(),
                last_delivery=None if msg is None else delivery_out(msg, a.zone),
                pending_messages=pending,
            )
        )
    return SubscriptionList(subscriptions=rows)


@router.get("/v1/subscriptions/{sub_id}", response_model=SubscriptionOut, responses=ONE)
async def get_subscription(sub_id: str, a: AdminDep) -> SubscriptionOut:
    """One subscription (never its secret)."""
    sub = await a.notify.subscription(sub_id)
    return subscription_out(sub, zone=a.zone, now_s=_now_s())


@router.delete("/v1/subscriptions/{sub_id}", status_code=204, responses=ONE)
async def delete_subscription(sub_id: str, a: AdminDep) -> Response:
    """Remove a subscription and its queued messages."""
    await a.notify.remove_subscription(sub_id)
    return Response(status_code=204)


@router.post(
    "/v1/subscriptions/{sub_id}/rotate-secret",
    response_model=SubscriptionWithSecret,
    responses={**ONE, 422: {"model": ErrorBody}},
)
async def rotate_secret(sub_id: str, a: AdminDep) -> SubscriptionWithSecret:
    """A new secret, shown only here; the current one keeps signing for 24 h."""
    now_s, secret = _now_s(), []

    def change(sub: Any) -> Any:
        new, s = rotated(sub, now_s)
        secret.append(s)
        return new

    sub = await a.notify.update_subscription(sub_id, change)
    return with_secret(subscription_out(sub, zone=a.zone, now_s=now_s), secret[-1])


@router.post(
    "/v1/subscriptions/{sub_id}/test",
    status_code=202,
    response_model=PingOut,
    responses={**ONE, 409: {"model": ErrorBody}},
)
async def test_subscription(sub_id: str, a: AdminDep) -> PingOut:
    """Queue a ``ping`` message now (type ``ping``, id ``ping_<random>``); the leading
    process sends it: see its result in the deliveries."""
    now, now_s = a.clock.now(), _now_s()
    sub = await a.notify.subscription(sub_id)
    if not sub.active:
        raise Conflict("id", inactive(sub))
    status = await a.store.status(now)
    selector = Selector(
        await a.store.catalog(),
        {},
        default_error_code=a.store.defaults.error_code,
        zone=a.zone,
        origin_of=lambda _: now_s,
    )
    msg = selector.ping(sub, status, now, now_s)
    await a.notify.enqueue(sub.id, [msg])
    return PingOut(message_id=msg.id, state=msg.state)


@router.get(
    "/v1/subscriptions/{sub_id}/deliveries",
    response_model=DeliveryList,
    responses={**ONE, 422: {"model": ErrorBody}},
)
async def list_deliveries(
    sub_id: str, a: AdminDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> DeliveryList:
    """The subscription's latest messages, newest first (pending, delivered, failed)."""
    msgs = await a.notify.deliveries(sub_id, limit)
    return DeliveryList(deliveries=[delivery_out(m, a.zone) for m in msgs])


@router.post(
    "/v1/subscriptions/{sub_id}/replay",
    status_code=202,
    response_model=ReplayOut,
    responses={**ONE, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def replay(sub_id: str, body: ReplayIn, a: AdminDep) -> ReplayOut:
    """Queue again, due now, the messages of the events after ``after_seq`` that this
    subscription gets (failed and delivered ones too, and events before it was created)."""
    seq = await a.store.stored_seq()
    if body.after_seq > seq:
        raise InvalidInput("after_seq", f"after_seq: above the current seq {seq}")
    queued, first, last = await a.notify.replay(
        sub_id, body.after_seq, _now_s(), limit=MAX_REPLAY_EVENTS
    )
    return ReplayOut(queued=queued, first_seq=first, last_seq=last)
