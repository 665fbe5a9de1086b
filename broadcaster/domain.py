"""The pure domain objects: catalog, window, override, lifecycle, causes and errors.

No I/O and no clock here: every function that depends on time takes ``now`` (an aware
UTC ``datetime``). Windows are half-open ``[starts_at, ends_at)`` (docs/operations.md
"2. Schedule a window").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["link", "token_embedded", "token_modal", "api", "admin"]
Lifecycle = Literal["scheduled", "in_progress", "completed", "cancelled"]
ComponentStatus = Literal["operational", "draining", "under_maintenance"]
OPERATIONAL: ComponentStatus = "operational"
DRAINING: ComponentStatus = "draining"
UNDER_MAINTENANCE: ComponentStatus = "under_maintenance"
HistoryChange = Literal["rescheduled", "updated", "cancelled", "ended_early", "extended"]
"""The kinds of ``history[].change`` (docs/api.md "Window object")."""
MAX_DRAIN_S = 7200
"""The longest drain (``drain_s``) before a window, in seconds."""
ALL_METHODS = "*"
ECHO_MAX = 64
"""Names from input echoed in an error message are cut to this many characters."""

MODAL_TEXT_JA = "メンテナンス中です。時間をおいて再度アクセスしてください。"
"""The card modal's text, verbatim from the 2021 notice's table (docs/api.md)."""


class FieldError(Exception):
    """An error about one input field: ``field`` names it (a dotted path, or what was looked
    up) and ``message`` says why; ``str(exc)`` is ``message``. The base of the domain's errors,
    each also on the builtin that fits it (mapped to HTTP in :mod:`broadcaster.errors`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidInput(FieldError, ValueError):
    """Bad input; ``field`` names the offending field (dotted path), ``message`` says why."""


class NotFound(FieldError, LookupError):
    """An unknown window, service or method; ``field`` names what was looked up."""


class Conflict(FieldError, RuntimeError):
    """A write that the current state forbids (id exists, window completed, ...)."""


class LocalText(BaseModel):
    """A text in Japanese and/or English (``{"ja": ..., "en": ...}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ja: str | None = Field(None, max_length=4000)
    en: str | None = Field(None, max_length=4000)

    def pick(self, lang: str) -> str:
        """The text in ``lang``, falling back to the other language, else ``""``."""
        first, second = (self.en, self.ja) if lang == "en" else (self.ja, self.en)
        return first or second or ""


DEFAULT_MESSAGES: dict[str, LocalText] = {
    "link": LocalText(
        ja="クロネコwebコレクト メンテナンスのお知らせ: ただいまメンテナンス中のため、"
        "お支払い手続きができません。メンテナンス終了後に再度お手続きください。",
        en="Scheduled maintenance: payment cannot be completed right now. "
        "Please try again after the maintenance.",
    ),
    "token_embedded": LocalText(
        ja="メンテナンス中です(エラーコード Z010000000)。時間をおいて再度アクセスしてください。",
        en="Under maintenance (error code Z010000000). Please try again later.",
    ),
    "token_modal": LocalText(ja=MODAL_TEXT_JA, en="Under maintenance. Please try again later."),
    "api": LocalText(
        ja="メンテナンス中です(エラーコード Z010000000)。時間をおいて再度アクセスしてください。",
        en="Under maintenance (error code Z010000000). Please try again later.",
    ),
    "admin": LocalText(
        ja="クロネコwebコレクト メンテナンスのお知らせ", en="Scheduled maintenance notice"
    ),
}
"""Built-in ja/en text per channel, worded after the notice; used for channels a window omits."""


class Method(BaseModel):
    """A payment method inside a service."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: LocalText = LocalText()


class Service(BaseModel):
    """A product line with its payment methods (method id -> Method), in display order."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: LocalText = LocalText()
    methods: dict[str, Method]


class Catalog(BaseModel):
    """Every service and method known to the deployment (service id -> Service)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    services: dict[str, Service] = {}

    def components(self) -> list[tuple[str, str]]:
        """Every (service, method) pair, in catalog order."""
        return [(s, m) for s, svc in self.services.items() for m in svc.methods]

    def expand(self, affected: Mapping[str, Iterable[str]] | None) -> frozenset[tuple[str, str]]:
        """The components named by an ``affected`` map (``["*"]`` = every method; None = all).

        Names not in the catalog are ignored here; validation rejects them on input.
        """
        if affected is None:
            return frozenset(self.components())
        out: set[tuple[str, str]] = set()
        for service, methods in affected.items():
            svc = self.services.get(service)
            if svc is None:
                continue
            names = list(methods)
            if ALL_METHODS in names:
                out.update((service, m) for m in svc.methods)
            else:
                out.update((service, m) for m in names if m in svc.methods)
        return frozenset(out)

    def components_in(self, service: str | None, method: str | None) -> frozenset[tuple[str, str]]:
        """The components in the view ``service`` [+ ``method``] (None: the whole catalog).

        Raises:
            NotFound: unknown ``service`` or ``method`` (named).
            InvalidInput: ``method`` without ``service``.
        """
        if service is None:
            if method is not None:
                raise InvalidInput("method", "method needs service")
            return frozenset(self.components())
        svc = self.services.get(service)
        if svc is None:
            raise NotFound("service", f"unknown service {service[:ECHO_MAX]!r}")
        if method is None:
            return frozenset((service, m) for m in svc.methods)
        if method not in svc.methods:
            raise NotFound("method", f"unknown method {method[:ECHO_MAX]!r} of service {service!r}")
        return frozenset({(service, method)})


class Span(BaseModel):
    """A start/end pair as recorded in history (UTC instants)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    starts_at: datetime
    ends_at: datetime


class HistoryEntry(BaseModel):
    """One recorded change of a window (docs/api.md ``history[]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    at: datetime
    change: HistoryChange
    from_: Span | None = Field(None, alias="from")
    to: Span | None = None
    actor: str | None = Field(None, max_length=200)
    reason: str | None = Field(None, max_length=2000)


class Note(BaseModel):
    """One timeline post about a window (docs/api.md ``notes[]``, Statuspage's "updates"):
    when (UTC), the text in ja/en, and who posted it (a token name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    at: datetime
    message: LocalText
    actor: str | None = Field(None, max_length=200)


class Recurrence(BaseModel):
    """A window's repetition: an RFC 5545 RRULE on local wall time in the window's zone and
    the local start times it skips (``exdates``, ``YYYY-MM-DDTHH:MM[:SS]`` without offset)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rrule: str
    exdates: tuple[str, ...] = ()


class Window(BaseModel):
    """A scheduled maintenance, validated: instants are aware UTC, ``affected`` is in the catalog.

    ``cancelled`` is the only stored lifecycle fact; the rest follows from ``now``
    (see :func:`lifecycle`). ``latest_end`` (>= ``ends_at``, or None) is the reserve: the
    window still ends at ``ends_at``, it may be extended up to ``latest_end`` by an operator.
    ``drain_s`` seconds before ``starts_at`` the affected components drain (see
    :attr:`drain_starts_at`). ``reminders`` are ISO 8601 durations before ``starts_at``
    (None: the deployment's default). ``notes`` are server-owned, oldest first.
    """

    model_config = ConfigDict(frozen=True)
    id: str
    title: LocalText
    description: LocalText = LocalText()
    starts_at: datetime
    ends_at: datetime
    timezone: str
    announce_at: datetime
    affected: dict[str, tuple[str, ...]]
    error_code: str
    messages: dict[str, LocalText]
    cancelled: bool = False
    history: tuple[HistoryEntry, ...] = ()
    latest_end: datetime | None = None
    drain_s: int = Field(0, ge=0, le=MAX_DRAIN_S)
    reminders: tuple[str, ...] | None = None
    recurrence: Recurrence | None = None
    series_id: str | None = None
    notes: tuple[Note, ...] = ()

    @property
    def drain_starts_at(self) -> datetime:
        """When the drain begins: ``drain_s`` before ``starts_at``, never before
        ``announce_at`` (a window drains only once it is public); ``starts_at`` when
        ``drain_s`` is 0."""
        return max(self.starts_at - timedelta(seconds=self.drain_s), self.announce_at)

    def covers(self, catalog: Catalog) -> frozenset[tuple[str, str]]:
        """The components this window puts under maintenance."""
        return catalog.expand(self.affected)

    def reschedules(self) -> int:
        """How many times the window was rescheduled (iCalendar SEQUENCE, RFC 5545 3.8.7.4)."""
        return sum(1 for h in self.history if h.change == "rescheduled")


def lifecycle(window: Window, now: datetime) -> Lifecycle:
    """``scheduled`` -> ``in_progress`` (at ``starts_at``) -> ``completed`` (at ``ends_at``).

    Cancelled windows stay ``cancelled`` whatever ``now`` is.
    """
    if window.cancelled:
        return "cancelled"
    if now < window.starts_at:
        return "scheduled"
    if now < window.ends_at:
        return "in_progress"
    return "completed"


def is_public(window: Window, now: datetime) -> bool:
    """Whether the window is announced (``announce_at <= now``)."""
    return window.announce_at <= now


def touches(
    affected: Mapping[str, Iterable[str]] | None, service: str | None, method: str | None
) -> bool:
    """Whether an ``affected`` map (a window's or an override's; None = every component)
    names anything in the view ``service`` [+ ``method``] (None = the whole catalog): what
    decides which windows and which override a view shows."""
    if affected is None or service is None:
        return True
    methods = affected.get(service)
    if not methods:
        return False
    return method is None or method in methods or ALL_METHODS in methods


class Override(BaseModel):
    """A manual ops decision that beats the schedule until cleared or ``expires_at`` (UTC).

    ``affected`` None means every component.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["maintenance", "normal"]
    affected: dict[str, tuple[str, ...]] | None = None
    reason: str = Field(max_length=2000)
    actor: str | None = None
    set_at: datetime
    expires_at: datetime | None = None

    def holds_at(self, now: datetime) -> bool:
        """Whether the override is still in force at ``now`` (half-open like windows)."""
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class Cause:
    """Why a status was published (docs/api.md ``cause``); ``type`` is an event type."""

    type: str
    window_id: str | None = None
    actor: str | None = None
    reason: str | None = None


def public_cause(cause: Cause, windows: Mapping[str, Window], now: datetime) -> Cause:
    """``cause`` as anyone may read it at ``now``: a change to a window that is not announced
    then (``announce_at`` > ``now``, or a window no longer known) names neither the window
    nor the reason (``window_id`` and ``reason`` None; issue 12, item 2). The type, actor and
    every other cause are kept."""
    if cause.window_id is None:
        return cause
    window = windows.get(cause.window_id)
    if window is not None and is_public(window, now):
        return cause
    return replace(cause, window_id=None, reason=None)
