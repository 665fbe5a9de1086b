"""What the gate decides, without ASGI: rules, their check against the catalog, and the
refusal a guarded request gets from the status of its view (pure: no I/O, ``now`` given).

:mod:`broadcaster.gate` applies it per request; the names here are re-exported there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from broadcaster import codec
from broadcaster.domain import DEFAULT_MESSAGES, Catalog


@dataclass(frozen=True)
class Rule:
    """Guard requests whose path starts with ``path`` (and, if given, whose HTTP method is
    in ``http_methods``) by the status of the view ``service`` [+ ``method``]; ``channel`` picks the
    message (``api``, ``token_embedded``, ``token_modal``, ``link``, ``admin``).

    ``on_drain``: the route opens a new payment session, so it is refused while the view
    drains too (``state: "draining"``, before a window with ``drain_s``); other rules let
    requests through until the window starts, so payments under way can finish.
    """

    path: str
    service: str
    method: str | None = None
    channel: str = "api"
    http_methods: tuple[str, ...] = ()
    on_drain: bool = False

    def matches(self, path: str, http_method: str) -> bool:
        """Whether the rule guards this request."""
        return path.startswith(self.path) and (
            not self.http_methods or http_method in self.http_methods
        )


class UnknownScope(LookupError):
    """Gate rules name a service, method or channel that does not exist; the message names
    each such rule and lists the known names."""


def validate_rules(rules: Iterable[Rule], catalog: Catalog) -> None:
    """Check that every rule names a service (and method) of ``catalog`` and a known channel.

    Pure. Raises:
        UnknownScope: e.g. ``gate rule '/api/token': unknown service 'webcolect' (known:
            atobarai, webcollect)``; several problems are joined with ``"; "``.
    """
    problems: list[str] = []
    for rule in rules:
        where = f"gate rule {rule.path!r}"
        svc = catalog.services.get(rule.service)
        if svc is None:
            known = ", ".join(sorted(catalog.services)) or "none"
            problems.append(f"{where}: unknown service {rule.service!r} (known: {known})")
        elif rule.method is not None and rule.method not in svc.methods:
            known = ", ".join(sorted(svc.methods)) or "none"
            problems.append(
                f"{where}: unknown method {rule.method!r} of service {rule.service!r} "
                f"(known: {known})"
            )
        if rule.channel not in DEFAULT_MESSAGES:  # every channel has its built-in text
            known = ", ".join(DEFAULT_MESSAGES)
            problems.append(f"{where}: unknown channel {rule.channel!r} (known: {known})")
    if problems:
        raise UnknownScope("; ".join(problems))


@dataclass(frozen=True)
class Refusal:
    """What a guarded request is refused with; handed to a custom body renderer."""

    error_code: str
    message: str
    until: str | None
    retry_after_s: int | None
    rule: Rule
    lang: str
    latest_end: str | None = None


def json_body(refusal: Refusal) -> tuple[bytes, str]:
    """The default body: ``{"errorCode", "message", "until", "latest_end", "processed":
    false}``."""
    doc = {
        "errorCode": refusal.error_code,
        "message": refusal.message,
        "until": refusal.until,
        "latest_end": refusal.latest_end,
        "processed": False,
    }
    return codec.dumps(doc), "application/json"


def _instant(text: str) -> datetime:
    return codec.parse_wire_instant(text)


def draining_windows(doc: codec.Doc) -> list[codec.Doc]:
    """The windows of a status object's ``upcoming`` whose drain had begun at its ``as_of``
    (soonest first): ``starts_at - drain_s <= as_of`` (an upcoming window is announced, so
    its drain is not held back by ``announce_at``)."""
    if not any(w.get("drain_s") for w in doc["upcoming"]):
        return []
    at = _instant(doc["as_of"])
    return [
        w
        for w in doc["upcoming"]
        if w.get("drain_s") and _instant(w["starts_at"]) - timedelta(seconds=w["drain_s"]) <= at
    ]


def latest_end_of(windows: list[codec.Doc], until: str | None) -> str | None:
    """The reserve of a refusal: the latest ``latest_end`` (or ``ends_at``, for a window
    without reserve) among ``windows`` starting before ``until``, as written; None when none
    of them has a ``latest_end`` or ``until`` is None."""
    if until is None:
        return None
    end = _instant(until)
    chain = [w for w in windows if _instant(w["starts_at"]) < end]
    if not any(w.get("latest_end") for w in chain):
        return None
    return max(
        (w.get("latest_end") or w["ends_at"] for w in chain),
        key=_instant,
        default=None,
    )


def refusal_for(
    doc: codec.Doc, rule: Rule, lang: str, now: datetime, retry_after_min_s: int
) -> Refusal | None:
    """The refusal for ``rule`` given the status of its view (``doc``) at ``now``, or None.

    Refused: the view in ``maintenance``, or ``draining`` when ``rule.on_drain``.
    ``Retry-After`` is whole seconds to ``until`` (RFC 9110 10.2.3; while draining that is
    the end of the coming maintenance), never below ``retry_after_min_s`` nor 1; None when
    ``until`` is null. The message is the rule's channel text of the first window holding
    the view (active, or draining), else the built-in text.
    """
    state = doc["state"]
    if state == "maintenance":
        holding = doc["active"]
    elif state == "draining" and rule.on_drain:
        holding = draining_windows(doc)
    else:
        return None
    until = doc["until"]
    retry = None
    if until is not None:
        left = (_instant(until) - now).total_seconds()
        retry = max(retry_after_min_s, 1, math.ceil(left))
    message = DEFAULT_MESSAGES[rule.channel].pick(lang)
    for w in holding:
        texts = w.get("messages", {}).get(rule.channel)
        if texts:
            message = texts.get(lang) or texts.get("ja") or texts.get("en") or message
            break
    latest_end = latest_end_of([*doc["active"], *doc["upcoming"]], until)
    return Refusal(doc["error_code"], message, until, retry, rule, lang, latest_end)
