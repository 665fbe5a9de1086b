"""Self-service e-mail subscriptions with double opt-in (pure): the request body, the
record a confirmation token stands for, and the confirmation message.

``POST /v1/subscribe`` answers the same whatever the address's state (unknown, pending,
confirmed), so the answer tells nobody whether an address is subscribed; the only trace is
a confirmation mail to the address itself, whose link applies the request (creating the
subscription, or changing the language and scope of the one the address already has).
Tokens are 32 random bytes (URL-safe base64), kept in Redis only as their SHA-256 for
:data:`CONFIRM_TTL_S` seconds and used once; they are never logged.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from broadcaster.notify.messages import CONFIRM, Message, body_of
from broadcaster.notify.subscriptions import Lang
from broadcaster.timeparse import format_instant

CONFIRM_TTL_S = 48 * 3600
"""Seconds a confirmation link stays valid; an unconfirmed new subscription is removed
after as long."""
RESEND_S = 600
"""Seconds after a confirmation mail during which no other is sent to the same address
(a stranger cannot flood a mailbox through the form, whatever addresses they come from)."""
ACTOR = "self-service"
"""The ``actor`` of subscriptions made through ``POST /v1/subscribe``."""


class SubscribeIn(BaseModel):
    """``POST /v1/subscribe``: an address, the mails' language and, optionally, a scope
    (like a window's ``affected``; omitted = every component)."""

    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=254)
    lang: Lang = "ja"
    scope: dict[str, list[str]] | None = None


class SubscribeOut(BaseModel):
    """The one answer of ``POST /v1/subscribe`` (202), whatever the address."""

    status: str = "accepted"
    message: str = (
        "If this address can receive mail, a confirmation link is on its way; "
        "the subscription starts once it is opened."
    )


class Signup(BaseModel):
    """What a confirmation token stands for: the subscription to create or update."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sub_id: str
    email: str
    lang: Lang
    scope: dict[str, tuple[str, ...]] | None


def new_token() -> str:
    """A fresh confirmation token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The SHA-256 hex of a token: what Redis keys are named after."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def address_hash(email: str) -> str:
    """The SHA-256 hex of the lower-cased address (the resend throttle's key)."""
    return token_hash(email.strip().lower())


def confirm_message(token: str, now: datetime, zone: str, now_s: float) -> Message:
    """The confirmation mail's message (``confirm_<random>``, type ``subscription.confirm``):
    its payload carries the token and how many hours it lasts."""
    data = {"token": token, "hours": CONFIRM_TTL_S // 3600}
    return Message(
        id=f"confirm_{secrets.token_hex(8)}",
        kind="email",
        type=CONFIRM,
        seq=None,
        body=body_of(CONFIRM, format_instant(now, zone), data),
        queued_s=now_s,
        origin_s=now_s,
        next_s=now_s,
    )
