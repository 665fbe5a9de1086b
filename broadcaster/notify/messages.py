"""Messages (pure): which logged events a subscription gets, their payload, the retry
schedule, and what a sender is.

A message is made from one event-log entry (``msg_<seq>``), a test ping (``ping_<random>``),
a reminder (``rem_<window>_<offset s>_<starts_at epoch>``) or a self-subscription's
confirmation (``confirm_<random>``, e-mail only); its id is its ``webhook-id``, stable
across retries. Its body is rendered once, when it is queued, and
every attempt sends the same bytes (docs/notifications.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from broadcaster import codec
from broadcaster.domain import Catalog, Window, is_public
from broadcaster.notify.mailconfig import MailConfig
from broadcaster.notify.reminders import DEFAULT_OFFSETS, REMINDER, Reminder, parse_offsets
from broadcaster.notify.subscriptions import Kind, Subscription
from broadcaster.timeparse import format_instant

if TYPE_CHECKING:
    from broadcaster.settings import Settings

DEFAULT_RETRY_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Seconds before each retry (``MAINTCAST_WEBHOOK_RETRY_S``): 5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 10 h; after the last one a message is ``failed``."""
CONFIRM = "subscription.confirm"
"""The type of a double opt-in confirmation mail (not an event: only a pending e-mail
subscription gets it, and it is the only message a pending one gets)."""
State = Literal["pending", "delivered", "failed"]
Result = Literal["delivered", "retry", "gone", "failed"]


def parse_retry_s(text: str) -> tuple[float, ...]:
    """``"5,300,1800"`` -> ``(5.0, 300.0, 1800.0)``: 1-20 finite numbers of seconds ≥ 0.

    Raises:
        ValueError: anything else (the message quotes the bad item).
    """
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not 1 <= len(items) <= 20:
        raise ValueError("give 1 to 20 comma-separated numbers of seconds")
    out: list[float] = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"{item!r} is not a number of seconds") from None
        if not 0 <= value <= 7 * 86400:  # also refuses nan and inf
            raise ValueError(f"{item!r}: each delay must be 0 to 604800 seconds")
        out.append(value)
    return tuple(out)


def user_agent() -> str:
    """``Maintcast/<version>`` (the installed package's version)."""
    try:
        return f"Maintcast/{version('maintcast')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "Maintcast/0"


@dataclass(frozen=True)
class DeliveryConfig:
    """How messages are delivered: the retry schedule (seconds), the per-attempt timeout
    (seconds, webhooks and mails), how many attempts run at once (at most one per
    subscription), the ``User-Agent``, the default reminder offsets, and where mail goes
    (None: no e-mail sender in this process)."""

    retry_s: tuple[float, ...] = DEFAULT_RETRY_S
    timeout_s: float = 10.0
    concurrency: int = 64
    user_agent: str = field(default_factory=user_agent)
    reminders: tuple[timedelta, ...] = field(default_factory=lambda: parse_offsets(DEFAULT_OFFSETS))
    mail: MailConfig | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        """From ``MAINTCAST_WEBHOOK_RETRY_S``, ``_WEBHOOK_TIMEOUT_S``, ``_NOTIFY_CONCURRENCY``,
        ``_REMINDERS`` and ``_SMTP_URL``/``_MAIL_FROM``/``_PUBLIC_URL``."""
        return cls(
            retry_s=parse_retry_s(settings.webhook_retry_s),
            timeout_s=settings.webhook_timeout_s,
            concurrency=settings.notify_concurrency,
            reminders=parse_offsets(settings.reminders),
            mail=MailConfig.of(settings.smtp_url, settings.mail_from, settings.public_url),
        )


def after_failure(attempt: int, retry_s: tuple[float, ...]) -> float | None:
    """Seconds until the next attempt after attempt number ``attempt`` (1-based) failed, or
    None: no retry is left, the message is ``failed``."""
    return retry_s[attempt - 1] if attempt <= len(retry_s) else None


class Attempt(BaseModel):
    """What the last attempt got: an HTTP status, or an error (timeout, refused…)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    at_s: float
    status_code: int | None = None
    error: str | None = None


class Message(BaseModel):
    """One message to one subscription, as queued (times are Unix seconds, real time).

    ``origin_s`` is when its event happened (for the lag metric; None for a replay).
    ``claim`` identifies the attempt under way (see :mod:`broadcaster.store.notify`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    kind: Kind
    type: str
    seq: int | None
    body: str
    queued_s: float
    origin_s: float | None = None
    state: State = "pending"
    attempt: int = 0
    next_s: float | None = None
    last: Attempt | None = None
    claim: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What an endpoint did with one attempt: ``delivered`` (2xx), ``gone`` (410: disable
    the subscription), ``retry`` (anything else, a timeout, a refused connection) or
    ``failed`` (no attempt can succeed, e.g. no sender for the kind: no retry)."""

    result: Result
    status_code: int | None = None
    error: str | None = None


class Sender(Protocol):
    """Delivers messages of one kind (``webhook``, ``email``)."""

    async def send(self, sub: Subscription, msg: Message, now_s: float) -> Outcome:
        """One attempt at Unix time ``now_s``; never raises for the endpoint's failures."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class DeliveryOut(BaseModel):
    """One message as ``GET /v1/subscriptions/{id}/deliveries`` lists it."""

    message_id: str
    type: str
    seq: int | None
    attempt: int
    at: str | None
    status_code: int | None
    error: str | None
    state: State
    next_at: str | None
    queued_at: str


def _at(s: float | None, zone: str) -> str | None:
    return None if s is None else format_instant(datetime.fromtimestamp(s, UTC), zone)


def delivery_out(msg: Message, zone: str) -> DeliveryOut:
    """``msg`` as listed: ``at`` is its last attempt (None before the first)."""
    last = msg.last
    return DeliveryOut(
        message_id=msg.id,
        type=msg.type,
        seq=msg.seq,
        attempt=msg.attempt,
        at=_at(last.at_s if last else None, zone),
        status_code=last.status_code if last else None,
        error=last.error if last else None,
        state=msg.state,
        next_at=_at(msg.next_s if msg.state == "pending" else None, zone),
        queued_at=_at(msg.queued_s, zone) or "",
    )


@dataclass(frozen=True)
class LoggedEvent:
    """One event-log entry: its ``entry`` (``seq``, ``at``, ``type``, ``window_id``, …) and
    the full status object published with it."""

    seq: int
    entry: codec.Doc
    status: codec.Doc


def body_of(event_type: str, timestamp: str, data: codec.Doc) -> str:
    """The webhook body ``{"type", "timestamp", "data"}`` as compact JSON text."""
    return codec.dumps({"type": event_type, "timestamp": timestamp, "data": data}).decode()


class Selector:
    """Decides which events a subscription gets and renders their messages, for one batch
    of events over one read of the catalog and windows (views are cached per seq and scope).

    ``origin_of(at)`` converts an event instant (clock time) into the real Unix time it
    happened (``clock.wall_time_of(at).timestamp()``).
    """

    def __init__(
        self,
        catalog: Catalog,
        windows: Mapping[str, Window],
        *,
        default_error_code: str,
        zone: str,
        origin_of: Callable[[datetime], float],
    ) -> None:
        self.catalog = catalog
        self.windows = windows
        self.default_error_code = default_error_code
        self.zone = zone
        self.origin_of = origin_of
        self._views: dict[tuple[int, frozenset[tuple[str, str]] | None], codec.Doc] = {}

    def view(self, status: codec.Doc, within: frozenset[tuple[str, str]] | None) -> codec.Doc:
        """``status`` restricted to the components ``within`` (None: the whole status):
        ``codec.view_doc``, so the state is maintenance if any of them is down."""
        if within is None:
            return status
        key = (int(status["seq"]), within)
        found = self._views.get(key)
        if found is None:
            found = self._views[key] = codec.view_doc(
                status,
                self.catalog,
                service=None,
                method=None,
                default_error_code=self.default_error_code,
                zone=self.zone,
                within=within,
            )
        return found

    def touches(self, sub: Subscription, ev: LoggedEvent, previous: LoggedEvent | None) -> bool:
        """Whether ``ev`` is sent to ``sub`` (``previous``: the event before it, if known).

        Its type must be notifiable and match the subscription's globs; an event about a
        window not yet announced at the event's time is never sent. Then, with a scope: the
        event's window covers a component of the scope, or the scoped view differs from the
        one after the previous event (an override, an end, a window moved out of the
        scope). Without the previous event, an event naming no window is sent.
        """
        if not sub.wants(ev.entry["type"]):
            return False
        w = self.windows.get(ev.entry.get("window_id") or "")
        at = codec.parse_wire_instant(ev.entry["at"])
        if w is not None and not is_public(w, at):
            return False
        within = sub.components(self.catalog)
        if within is None:
            return True
        if w is not None and w.covers(self.catalog) & within:
            return True
        if previous is None:
            return w is None
        return not codec.same_status(
            self.view(previous.status, within), self.view(ev.status, within)
        )

    def event_message(
        self, sub: Subscription, ev: LoggedEvent, now_s: float, *, replay: bool
    ) -> Message:
        """The message ``msg_<seq>`` for ``ev`` (``data``: seq, the window as stored, its
        lifecycle at the event's time, and the status scoped to the subscription)."""
        at = codec.parse_wire_instant(ev.entry["at"])
        w = self.windows.get(ev.entry.get("window_id") or "")
        data = {
            "seq": ev.seq,
            "window": None if w is None else codec.window_doc(w, at),
            "status": self.view(ev.status, sub.components(self.catalog)),
        }
        return Message(
            id=f"msg_{ev.seq}",
            kind=sub.kind,
            type=ev.entry["type"],
            seq=ev.seq,
            body=body_of(ev.entry["type"], ev.entry["at"], data),
            queued_s=now_s,
            origin_s=None if replay else self.origin_of(at),
            next_s=now_s,
        )

    def messages(
        self,
        subs: Iterable[Subscription],
        events: list[LoggedEvent],
        previous: LoggedEvent | None,
        now_s: float,
        *,
        replay: bool = False,
    ) -> list[tuple[str, Message]]:
        """``(subscription id, message)`` for every event of ``events`` (oldest first,
        consecutive seqs after ``previous``) each active subscription gets; without
        ``replay`` only events after a subscription's ``created_seq``."""
        out: list[tuple[str, Message]] = []
        subs = [s for s in subs if s.active]
        for i, ev in enumerate(events):
            before = events[i - 1] if i else previous
            for sub in subs:
                if (replay or ev.seq > sub.created_seq) and self.touches(sub, ev, before):
                    out.append((sub.id, self.event_message(sub, ev, now_s, replay=replay)))
        return out

    def reminder_messages(
        self, subs: Iterable[Subscription], due: list[Reminder], status: codec.Doc, now_s: float
    ) -> list[tuple[str, Message]]:
        """``(subscription id, message)`` for each reminder of ``due`` and each active
        subscription that wants ``maintenance.reminder`` and whose scope the window covers:
        ``data`` is the current ``seq``, the window at the reminder's instant, the status
        scoped to the subscription and ``reminder: {before_s}``; ``timestamp`` is the
        reminder's instant."""
        out: list[tuple[str, Message]] = []
        subs = [s for s in subs if s.active and s.wants(REMINDER)]
        for r in due:
            w = self.windows.get(r.window_id)
            if w is None:
                continue
            covered = w.covers(self.catalog)
            for sub in subs:
                within = sub.components(self.catalog)
                if within is not None and not covered & within:
                    continue
                data = {
                    "seq": status["seq"],
                    "window": codec.window_doc(w, r.at),
                    "status": self.view(status, within),
                    "reminder": {"before_s": r.before_s},
                }
                body = body_of(REMINDER, format_instant(r.at, w.timezone), data)
                msg = Message(
                    id=r.id,
                    kind=sub.kind,
                    type=REMINDER,
                    seq=None,
                    body=body,
                    queued_s=now_s,
                    origin_s=self.origin_of(r.at),
                    next_s=now_s,
                )
                out.append((sub.id, msg))
        return out

    def ping(self, sub: Subscription, status: codec.Doc, now: datetime, now_s: float) -> Message:
        """A test message ``ping_<random>`` of type ``ping`` with the current status in the
        subscription's scope."""
        data = {
            "seq": status["seq"],
            "window": None,
            "status": self.view(status, sub.components(self.catalog)),
        }
        return Message(
            id=f"ping_{secrets.token_hex(8)}",
            kind=sub.kind,
            type="ping",
            seq=None,
            body=body_of("ping", format_instant(now, self.zone), data),
            queued_s=now_s,
            origin_s=now_s,
            next_s=now_s,
        )
