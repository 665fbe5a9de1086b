"""Subscriptions (pure): the request and stored models, their validation and their secrets.

A subscription is a webhook URL or an e-mail address with a language, a scope (the
``affected`` shape of windows: ``{service: ["*"] | [method, …]}``, None = everything) and
event-type globs (docs/api.md "Notifications"). Webhook secrets are ``whsec_`` + base64 of
32 random bytes (Standard Webhooks 1.0, "Signature scheme"); a rotated secret keeps signing
for :data:`ROTATION_OVERLAP_S` seconds, so two signatures travel meanwhile.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from broadcaster.domain import Catalog, InvalidInput
from broadcaster.timeparse import format_instant
from broadcaster.validation import check_affected

Kind = Literal["webhook", "email"]
Lang = Literal["ja", "en"]
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
GLOB_PATTERN = r"^[a-z0-9._*?-]{1,64}$"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
ROTATION_OVERLAP_S = 86_400.0
"""Seconds a rotated-out secret still signs (Unix seconds, real time)."""
MAX_URL = 2048
EVENT_TYPES = (
    "maintenance.scheduled",
    "maintenance.updated",
    "maintenance.rescheduled",
    "maintenance.cancelled",
    "maintenance.announced",
    "maintenance.started",
    "maintenance.ended",
    "maintenance.extended",
    "maintenance.note",
    "maintenance.draining",
    "maintenance.reminder",
    "override.set",
    "override.cleared",
    "override.expired",
    "reconciled",
)
"""Event types a subscription may ask for (``events`` globs must match one of them)."""
_EMAIL = re.compile(  # local part: RFC 5322 atext and dots (no control character, no space)
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
    re.ASCII,
)


def notifiable(event_type: str) -> bool:
    """Whether events of this type are sent to subscribers at all (``maintenance.*``,
    ``override.*``, ``reconciled``)."""
    return event_type.startswith(("maintenance.", "override.")) or event_type == "reconciled"


class SubscriptionIn(BaseModel):
    """``POST /v1/subscriptions``: a webhook (``url``) or an e-mail address (``email``)."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, pattern=ID_PATTERN, description="Default: generated.")
    kind: Kind
    url: str | None = Field(None, max_length=MAX_URL, description="kind webhook: https://…")
    email: str | None = Field(None, max_length=254, description="kind email: the address")
    lang: Lang = "ja"
    scope: dict[str, list[str]] | None = Field(
        None, description='Like a window\'s "affected"; omitted = every component.'
    )
    events: list[Annotated[str, Field(pattern=GLOB_PATTERN)]] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=32,
        description='Event-type globs, e.g. ["maintenance.*"]; default ["*"].',
    )


class Secret(BaseModel):
    """A signing secret; ``expires_s`` (Unix seconds) is set once it was rotated out."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: str
    expires_s: float | None = None


class Subscription(BaseModel):
    """A stored subscription (with its secrets: never sent back but at creation and rotation).

    ``created_seq`` is the seq current at creation: only later events are sent unless
    replayed. ``disabled_at`` is set when a webhook answered 410 Gone (or a mail server
    refused the mailbox for good). ``pending`` marks a self-subscription awaiting its
    double opt-in; ``unsubscribe_key`` is the secret half of an e-mail subscription's
    ``List-Unsubscribe`` token (never shown by the API).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    kind: Kind
    url: str | None = None
    email: str | None = None
    lang: Lang = "ja"
    scope: dict[str, tuple[str, ...]] | None = None
    events: tuple[str, ...] = ("*",)
    created_at: datetime
    created_seq: int
    actor: str
    secrets: tuple[Secret, ...] = ()
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    pending: bool = False
    unsubscribe_key: str | None = None

    @property
    def active(self) -> bool:
        """Gets messages: neither disabled (410 Gone, a refused mailbox) nor ``pending`` (a
        self-subscription whose address has not confirmed yet: it gets only its
        confirmation mail)."""
        return self.disabled_at is None and not self.pending

    @property
    def unsubscribe_token(self) -> str | None:
        """The one-click unsubscribe token (``<id>.<key>``, e-mail only), once it has a key."""
        return f"{self.id}.{self.unsubscribe_key}" if self.unsubscribe_key else None

    def wants(self, event_type: str) -> bool:
        """Whether an event of this type is sent: notifiable and matching an ``events`` glob."""
        return notifiable(event_type) and any(fnmatchcase(event_type, g) for g in self.events)

    def components(self, catalog: Catalog) -> frozenset[tuple[str, str]] | None:
        """The components of the scope in ``catalog`` (None: every component)."""
        return None if self.scope is None else catalog.expand(self.scope)

    def signing_secrets(self, now_s: float) -> list[str]:
        """The secrets that sign at Unix time ``now_s``: the current one first."""
        return [s.value for s in self.secrets if s.expires_s is None or s.expires_s > now_s]


class SubscriptionOut(BaseModel):
    """A subscription as the API shows it (never its secret)."""

    id: str
    kind: Kind
    url: str | None
    email: str | None
    lang: Lang
    scope: dict[str, list[str]] | None
    events: list[str]
    created_at: str
    created_seq: int
    state: Literal["active", "disabled", "pending"]
    disabled_at: str | None
    disabled_reason: str | None
    previous_secret_expires_at: str | None = Field(
        description="While a rotated-out secret still signs (two signatures), until when."
    )


class SubscriptionWithSecret(SubscriptionOut):
    """The answer to a creation or a rotation: the only time the secret is shown."""

    secret: str | None = Field(description="whsec_…: keep it; it is not shown again.")


def new_secret() -> str:
    """A fresh ``whsec_`` secret: base64 of :data:`SECRET_BYTES` random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_key() -> str:
    """A fresh unsubscribe key: 32 random bytes, URL-safe base64 (no padding)."""
    return secrets.token_urlsafe(32)


def check_email(email: str, field: str = "email") -> None:
    """Reject what is not a plain ``local@domain.tld`` address (no display name, comments
    or quoting: the address goes into a header).

    Raises:
        InvalidInput: for ``field``, quoting the value (cut).
    """
    if not _EMAIL.fullmatch(email):
        raise InvalidInput(field, f"{field}: not an e-mail address ({email[:80]!r})")


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761 section 6.3
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_http: bool) -> None:
    """Reject a webhook URL that is not ``https://host…``; ``http://`` passes only for a
    loopback host or with ``allow_http`` (``MAINTCAST_WEBHOOK_ALLOW_HTTP``).

    Raises:
        InvalidInput: field ``url``, naming what is wrong.
    """
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidInput("url", "url: must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise InvalidInput("url", f"url: must start with https:// (got {url[:40]!r})")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidInput("url", f"url: {exc}") from exc
    if not host:
        raise InvalidInput("url", "url: has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "url", "url: must not carry credentials (verify the signature on the receiver)"
        )
    if parts.fragment:
        raise InvalidInput("url", "url: must not have a #fragment")
    if parts.scheme == "http" and not allow_http and not _loopback(host):
        raise InvalidInput(
            "url",
            "url: http:// is refused except for a loopback host; use https:// "
            "(or set MAINTCAST_WEBHOOK_ALLOW_HTTP=true)",
        )


def check_events(events: list[str]) -> None:
    """Every glob must match at least one type of :data:`EVENT_TYPES`.

    Raises:
        InvalidInput: field ``events.<i>``.
    """
    for i, glob in enumerate(events):
        if not any(fnmatchcase(t, glob) for t in EVENT_TYPES):
            raise InvalidInput(
                f"events.{i}",
                f"events.{i}: {glob!r} matches no event type (e.g. maintenance.*, override.*, "
                "reconciled)",
            )


def new_subscription(
    body: SubscriptionIn,
    *,
    catalog: Catalog,
    now: datetime,
    seq: int,
    actor: str,
    new_id: str,
    allow_http: bool,
) -> tuple[Subscription, str | None]:
    """The subscription ``body`` asks for, created at ``now`` (seq ``seq``), and its secret
    (None for e-mail).

    Raises:
        InvalidInput: naming the field: ``url``/``email`` missing or given for the other
            kind, a refused URL (:func:`check_url`), a bad address, a scope naming an unknown
            service or method (``scope.<service>``), a glob matching no event type.
    """
    if body.kind == "webhook":
        if body.email is not None:
            raise InvalidInput("email", "email: only for kind email")
        if body.url is None:
            raise InvalidInput("url", "url: required for kind webhook")
        check_url(body.url, allow_http=allow_http)
    else:
        if body.url is not None:
            raise InvalidInput("url", "url: only for kind webhook")
        if body.email is None:
            raise InvalidInput("email", "email: required for kind email")
        check_email(body.email)
    if body.scope is not None:
        check_affected(catalog, body.scope, "scope")
    check_events(body.events)
    secret = new_secret() if body.kind == "webhook" else None
    sub = Subscription(
        id=body.id or new_id,
        kind=body.kind,
        url=body.url,
        email=body.email,
        lang=body.lang,
        scope=None if body.scope is None else {s: tuple(ms) for s, ms in body.scope.items()},
        events=tuple(dict.fromkeys(body.events)),
        created_at=now,
        created_seq=seq,
        actor=actor,
        secrets=(Secret(value=secret),) if secret else (),
        unsubscribe_key=new_key() if body.kind == "email" else None,
    )
    return sub, secret


def rotated(sub: Subscription, now_s: float) -> tuple[Subscription, str]:
    """``sub`` with a new secret; the current one keeps signing for
    :data:`ROTATION_OVERLAP_S` seconds from ``now_s`` (Unix), older ones are dropped.

    Raises:
        InvalidInput: field ``kind``: an e-mail subscription has no secret.
    """
    if sub.kind != "webhook":
        raise InvalidInput("kind", "kind: only a webhook subscription has a secret")
    current = [s for s in sub.secrets if s.expires_s is None]
    secret = new_secret()
    kept = tuple(Secret(value=s.value, expires_s=now_s + ROTATION_OVERLAP_S) for s in current)
    return sub.model_copy(update={"secrets": (Secret(value=secret), *kept[:1])}), secret


def inactive(sub: Subscription) -> str:
    """Why ``sub`` gets no test ping or replay: disabled (and why), or pending."""
    if sub.pending:
        return f"subscription {sub.id!r} is pending: its address has not confirmed yet"
    return f"subscription {sub.id!r} is disabled ({sub.disabled_reason}); add it again"


def _instant(t: datetime | None, zone: str) -> str | None:
    return None if t is None else format_instant(t, zone)


def subscription_out(sub: Subscription, *, zone: str, now_s: float) -> SubscriptionOut:
    """The public view of ``sub`` (instants in ``zone``; ``now_s`` Unix seconds)."""
    old = [s.expires_s for s in sub.secrets if s.expires_s is not None and s.expires_s > now_s]
    return SubscriptionOut(
        id=sub.id,
        kind=sub.kind,
        url=sub.url,
        email=sub.email,
        lang=sub.lang,
        scope=None if sub.scope is None else {s: list(ms) for s, ms in sub.scope.items()},
        events=list(sub.events),
        created_at=format_instant(sub.created_at, zone),
        created_seq=sub.created_seq,
        state="pending" if sub.pending else "active" if sub.active else "disabled",
        disabled_at=_instant(sub.disabled_at, zone),
        disabled_reason=sub.disabled_reason,
        previous_secret_expires_at=_instant(
            datetime.fromtimestamp(max(old), UTC) if old else None, zone
        ),
    )


def with_secret(out: SubscriptionOut, secret: str | None) -> SubscriptionWithSecret:
    """``out`` plus the secret, for the one answer that shows it."""
    return SubscriptionWithSecret(**out.model_dump(), secret=secret)
