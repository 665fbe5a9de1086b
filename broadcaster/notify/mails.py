"""E-mail notices (pure): a queued message rendered as a multipart/alternative mail (text and
HTML, jinja2 templates in ``templates/``) in the subscriber's language.

The mail is made from the message's stored payload (the webhook body: type, timestamp,
window, scoped status, reminder) plus the catalog's names, the contact block and links under
``MAINTCAST_PUBLIC_URL``; phrases and time formats are in :mod:`mailtexts`.

Threading (RFC 5322 3.6.4): the first mail about a window (``maintenance.scheduled`` or
``maintenance.announced``) has ``Message-ID: <window id.subscription id@domain>``, derived
from the window's id alone, so every later mail about it names it in ``In-Reply-To`` and
``References`` whatever happened in between; each other mail's own id is
``<message id.subscription id@domain>``, the same on every retry (a receiver drops a
repeat). Every mail carries ``List-Unsubscribe`` with its one-click URL and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), and ``Auto-Submitted:
auto-generated`` (RFC 3834: no vacation replies).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import orjson

from broadcaster.codec import parse_wire_instant
from broadcaster.domain import DEFAULT_MESSAGES, Catalog, LocalText
from broadcaster.notify import mailtexts as mt
from broadcaster.notify.mailconfig import MailConfig
from broadcaster.notify.messages import CONFIRM, Message
from broadcaster.notify.subscriptions import Subscription
from broadcaster.validation import Contact

ROOT_TYPES = ("maintenance.scheduled", "maintenance.announced")
"""Event types whose mail starts a window's thread."""
TEMPLATES = Path(__file__).parent / "templates"
Doc = dict[str, Any]


@dataclass(frozen=True)
class MailContext:
    """What a mail needs beyond its message: the catalog (names), the contact block, and the
    zone status-level instants are shown in (``MAINTCAST_TIMEZONE``)."""

    catalog: Catalog
    contact: Contact | None
    zone: str


@dataclass(frozen=True)
class Row:
    """One row of the 対象サービス / 決済方法 / 影響の有無 table (``service`` empty on the
    rows after a service's first, as the notice writes it)."""

    service: str
    method: str
    down: bool


@dataclass(frozen=True)
class Notice:
    """Everything the templates show, in one language (None/empty: not shown)."""

    lang: str
    kind: str
    subject: str
    lead: str | None
    title: str
    when: str | None = None
    zone: str | None = None
    change: str | None = None
    latest_end: str | None = None
    until: str | None = None
    reason: str | None = None
    rows: list[Row] = field(default_factory=list)
    channels: list[tuple[str, str]] = field(default_factory=list)
    error_code: str | None = None
    description: str | None = None
    notes: list[str] = field(default_factory=list)
    contact: Contact | None = None
    status_url: str = ""
    unsubscribe_url: str = ""
    confirm_url: str | None = None
    confirm_hours: int = 0


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _pick(texts: Any, lang: str) -> str:
    return LocalText.model_validate(texts or {}).pick(lang)


def _services_label(names: list[str], lang: str) -> str:
    if lang == "ja":
        return "".join(f"「{n}」" for n in names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _rows(catalog: Catalog, shown: dict[str, list[str]], down: set[tuple[str, str]]) -> list[Row]:
    """Table rows for the methods ``shown`` per service (catalog order)."""
    out: list[Row] = []
    for s, methods in shown.items():
        for i, m in enumerate(methods):
            out.append(Row(s if i == 0 else "", m, (s, m) in down))
    return out


def _named(rows: list[Row], catalog: Catalog, lang: str) -> list[Row]:
    out, service = [], ""
    for r in rows:
        service = r.service or service
        svc = catalog.services.get(service)
        method = svc.methods.get(r.method) if svc else None
        out.append(
            Row(
                (svc.name.pick(lang) or service) if r.service and svc else r.service,
                (method.name.pick(lang) or r.method) if method else r.method,
                r.down,
            )
        )
    return out


def _history(window: Doc, change: str, at: datetime) -> Doc | None:
    """The history entry of ``change`` recorded with the event at ``at``, else the last."""
    entries: list[Doc] = [h for h in window.get("history") or [] if h["change"] == change]
    for h in reversed(entries):
        if parse_wire_instant(h["at"]) == at:
            return h
    return entries[-1] if entries else None


def _kind(event: str, window: Doc | None, status: Doc, at: datetime) -> str:
    by_type = {
        "maintenance.scheduled": "notice",
        "maintenance.announced": "notice",
        "maintenance.updated": "updated",
        "maintenance.cancelled": "cancelled",
        "maintenance.started": "started",
        "maintenance.extended": "extended",
        "maintenance.note": "note",
        "maintenance.draining": "draining",
        "maintenance.reminder": "reminder",
        "ping": "ping",
    }
    if window is None:
        if event == "ping":
            return "ping"
        return "override" if status.get("state") == "maintenance" else "restored"
    if event == "maintenance.rescheduled":
        h = _history(window, "rescheduled", at)
        moved_later = (
            h is not None
            and h.get("from")
            and h.get("to")
            and parse_wire_instant(h["to"]["starts_at"])
            > parse_wire_instant(h["from"]["starts_at"])
        )
        return "postponed" if moved_later else "moved"
    if event == "maintenance.ended":
        return "ended_early" if _history(window, "ended_early", at) else "ended"
    if event == "reconciled":
        return {"in_progress": "started", "completed": "ended"}.get(window["status"], "status")
    return by_type.get(event, "status")


def _left(before_s: int, lang: str) -> str:
    return mt.span_of(before_s, lang)


def notice_of(
    payload: Doc, sub: Subscription, ctx: MailContext, config: MailConfig, unsubscribe_url: str
) -> Notice:
    """The notice a message's payload (``{"type", "timestamp", "data"}``) makes for ``sub``.

    A window's table lists every method of each service the window touches, down or not (as
    the 2021 notice does); a mail without a window (override, ping) lists the subscriber's
    components from the scoped status.
    """
    lang, event = sub.lang, payload["type"]
    data: Doc = payload["data"]
    at = parse_wire_instant(payload["timestamp"])
    window: Doc | None = data.get("window")
    status: Doc = data.get("status") or {}
    p, catalog = mt.PHRASES[lang], ctx.catalog
    kind = (
        "status"
        if event == "maintenance.updated" and window is None
        else _kind(event, window, status, at)
    )
    status_url = f"{config.public_url}/status?lang={lang}"
    common: dict[str, Any] = {
        "lang": lang,
        "kind": kind,
        "contact": ctx.contact,
        "status_url": status_url,
        "unsubscribe_url": unsubscribe_url,
    }
    subject_kind = "ended" if kind == "ended_early" else kind
    if window is None:
        comps: dict[str, dict[str, str]] = status.get("components") or {}
        shown = {s: list(comps[s]) for s in catalog.services if s in comps}
        down = {
            (s, m) for s, ms in comps.items() for m, st in ms.items() if st == "under_maintenance"
        }
        rows = _rows(catalog, shown, down)
        names = [
            catalog.services[s].name.pick(lang) or s
            for s in shown
            if any((s, m) in down for m in shown[s])
        ] or [catalog.services[s].name.pick(lang) or s for s in shown]
        svc = _services_label(names, lang) if names else ""
        subject = mt.SUBJECTS[lang][subject_kind].format(svc=svc).strip()
        until = status.get("until")
        override = status.get("override") or {}
        cause = status.get("cause") or {}
        return Notice(
            **common,
            subject=subject,
            lead=mt.LEADS[lang].get(kind),
            title=subject,
            zone=mt.zone_label(at, ctx.zone),
            until=mt.clock_time(parse_wire_instant(until), ctx.zone, lang) if until else None,
            reason=cause.get("reason") or override.get("reason"),
            rows=_named(rows, catalog, lang),
        )
    zone = window["timezone"]
    starts, ends = parse_wire_instant(window["starts_at"]), parse_wire_instant(window["ends_at"])
    covered = catalog.expand(window["affected"])
    shown = {
        s: list(svc.methods)
        for s, svc in catalog.services.items()
        if any((s, m) in covered for m in svc.methods)
    }
    names = [
        catalog.services[s].name.pick(lang) or s
        for s in shown
        if all((s, m) in covered for m in shown[s])
    ] or [catalog.services[s].name.pick(lang) or s for s in shown]
    svc = _services_label(names, lang) if names else ""
    fmt: dict[str, str] = {"svc": svc, "date": mt.short_date(starts, zone, lang), "old": ""}
    change = None
    if kind in ("postponed", "moved"):
        h = _history(window, "rescheduled", at)
        if h and h.get("from"):
            old_s = parse_wire_instant(h["from"]["starts_at"])
            old_e = parse_wire_instant(h["from"]["ends_at"])
            fmt["old"] = mt.short_date(old_s, zone, lang)
            change = p[f"{kind}_to"].format(
                old=mt.when(old_s, old_e, zone, lang), new=mt.when(starts, ends, zone, lang)
            )
    elif kind == "extended":
        h = _history(window, "extended", at)
        if h and h.get("from") and h.get("to"):
            change = p["extended_to"].format(
                old=mt.clock_time(
                    parse_wire_instant(h["from"]["ends_at"]), zone, lang, since=starts
                ),
                new=mt.clock_time(parse_wire_instant(h["to"]["ends_at"]), zone, lang, since=starts),
            )
    lead = mt.LEADS[lang].get(kind)
    if lead and kind == "reminder":
        lead = lead.format(left=_left(int((data.get("reminder") or {}).get("before_s", 0)), lang))
    latest = window.get("latest_end")
    messages = window.get("messages") or {}
    channels = [
        (label, _pick(messages.get(c) or DEFAULT_MESSAGES[c].model_dump(), lang))
        for c, label in mt.CHANNELS[lang].items()
    ]
    notes = [_pick(n["message"], lang) for n in window.get("notes") or []]
    return Notice(
        **common,
        subject=mt.SUBJECTS[lang][subject_kind].format(**fmt),
        lead=lead,
        title=_pick(window["title"], lang),
        when=mt.when(starts, ends, zone, lang),
        zone=mt.zone_label(starts, zone),
        change=change,
        latest_end=p["latest_end"].format(
            end=mt.clock_time(ends, zone, lang, since=starts),
            latest=mt.clock_time(parse_wire_instant(latest), zone, lang, since=ends),
        )
        if latest
        else None,
        reason=None,
        rows=_named(_rows(catalog, shown, set(covered)), catalog, lang),
        channels=channels,
        error_code=window.get("error_code"),
        description=_pick(window.get("description"), lang) or None,
        notes=list(reversed(notes)) if kind == "note" else [],
    )


def confirm_of(
    payload: Doc, sub: Subscription, ctx: MailContext, config: MailConfig, unsubscribe_url: str
) -> Notice:
    """The double opt-in mail: its link confirms the subscription (``data.token``) within
    ``data.hours`` hours."""
    data = payload["data"]
    subject = mt.SUBJECTS[sub.lang]["confirm"]
    return Notice(
        lang=sub.lang,
        kind="confirm",
        subject=subject,
        lead=None,
        title=subject,
        contact=ctx.contact,
        status_url=f"{config.public_url}/status?lang={sub.lang}",
        unsubscribe_url=unsubscribe_url,
        confirm_url=f"{config.public_url}/v1/subscribe/confirm?token={quote(data['token'])}",
        confirm_hours=int(data["hours"]),
    )


def thread_ids(
    msg: Message, sub: Subscription, window_id: str | None, domain: str
) -> tuple[str, str | None]:
    """``(Message-ID, parent)``: see the module docstring; the parent is None for a mail
    that starts its thread or has no window."""
    root = f"<{window_id}.{sub.id}@{domain}>" if window_id else None
    if root is not None and msg.type in ROOT_TYPES:
        return root, None
    return f"<{msg.id}.{sub.id}@{domain}>", root


def render(
    msg: Message,
    sub: Subscription,
    ctx: MailContext,
    config: MailConfig,
    unsubscribe_token: str,
    now_s: float,
) -> EmailMessage:
    """The mail for one attempt at Unix time ``now_s`` (its ``Date``); everything else is
    the same on every attempt.

    Raises:
        ValueError: the subscription has no address.
    """
    if not sub.email:
        raise ValueError(f"subscription {sub.id} has no e-mail address")
    payload: Doc = orjson.loads(msg.body)
    unsubscribe_url = f"{config.public_url}/v1/unsubscribe?token={quote(unsubscribe_token)}"
    make = confirm_of if msg.type == CONFIRM else notice_of
    notice = make(payload, sub, ctx, config, unsubscribe_url)
    window = (payload.get("data") or {}).get("window")
    own, parent = thread_ids(msg, sub, window["id"] if window else None, config.domain)
    name = "confirm" if msg.type == CONFIRM else "mail"
    values = {"n": notice, "p": mt.PHRASES[notice.lang]}
    text = _env().get_template(f"{name}.txt").render(values)
    html = _env().get_template(f"{name}.html").render(values)
    mail = EmailMessage()
    mail["Subject"] = notice.subject
    mail["From"] = config.mail_from
    mail["To"] = sub.email
    mail["Date"] = formatdate(now_s, usegmt=True)
    mail["Message-ID"] = own
    if parent is not None:
        mail["In-Reply-To"] = parent
        mail["References"] = parent
    mail["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(text)
    mail.add_alternative(html, subtype="html")
    mail["Content-Language"] = notice.lang  # after the parts: set_content drops Content-*
    return mail
