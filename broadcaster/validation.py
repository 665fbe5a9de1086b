"""Input validation: raw window objects and schedule files -> domain objects.

Pure (no I/O beyond parsing text handed in). Every rejection is an ``InvalidInput`` whose
``field`` is the dotted path of the offending field and whose message quotes the bad value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broadcaster.caps import MAX_WINDOWS, check_window_text
from broadcaster.domain import (
    ALL_METHODS,
    DEFAULT_MESSAGES,
    ECHO_MAX,
    MAX_DRAIN_S,
    Catalog,
    Channel,
    HistoryChange,
    HistoryEntry,
    InvalidInput,
    LocalText,
    Span,
    Window,
)
from broadcaster.texts import CONTROL, check_texts, shown
from broadcaster.timeparse import InvalidTime, zone_named
from broadcaster.window_fields import (
    MAX_NOTES,
    MAX_REMINDERS,
    NoteIn,
    RecurrenceIn,
    announce_at_of,
    instant,
    latest_end_of,
    notes_of,
    recurrence_of,
    reminders_of,
)

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
Instant = Any
"""An instant as given (text, or a ``datetime`` from a YAML timestamp), checked only by
:func:`broadcaster.timeparse.parse_instant`: a pydantic ``str | datetime`` union would
silently coerce numbers (Unix time) and dates (midnight) and name the field ``starts_at.str``."""
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits on


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SpanIn(_Strict):
    starts_at: Instant
    ends_at: Instant


class HistoryIn(_Strict):
    at: Instant
    change: HistoryChange
    from_: SpanIn | None = Field(None, alias="from")
    to: SpanIn | None = None
    actor: str | None = Field(None, max_length=200)
    reason: str | None = Field(None, max_length=2000)


class WindowIn(_Strict):
    """A window as written by people (docs/operations.md "2. Schedule a window"), before time
    resolution."""

    id: str | None = Field(None, pattern=ID_PATTERN)
    title: LocalText
    description: LocalText | None = None
    starts_at: Instant
    ends_at: Instant
    timezone: str | None = None
    announce_at: Instant | None = None
    affected: dict[str, list[str]]
    error_code: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    messages: dict[Channel, LocalText] = {}
    status: Literal["scheduled", "in_progress", "completed", "cancelled"] | None = None
    history: list[HistoryIn] | None = None
    latest_end: Instant | None = None
    drain_s: int | None = Field(None, ge=0, le=MAX_DRAIN_S, strict=True)
    reminders: list[str] | None = Field(None, max_length=MAX_REMINDERS)
    recurrence: RecurrenceIn | None = None
    series_id: str | None = Field(None, pattern=ID_PATTERN)
    notes: list[NoteIn] | None = Field(None, max_length=MAX_NOTES)


SERVER_OWNED = ("status", "history", "notes")
"""Window fields only the server writes (422 if sent on the HTTP API; a schedule file may
carry them)."""


class Contact(_Strict):
    """Who merchants call; shown on pages."""

    name: LocalText | None = None
    email: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=50)
    hours: LocalText | None = None


@dataclass(frozen=True)
class Defaults:
    """Deployment defaults applied to input (``MAINTCAST_TIMEZONE``, ``ERROR_CODE``, ...)
    and the cap on scheduled and in-progress windows (``MAINTCAST_MAX_WINDOWS``,
    :mod:`broadcaster.caps`)."""

    timezone: str
    error_code: str
    max_window_s: int
    max_windows: int = MAX_WINDOWS


def from_validation_error(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """The first pydantic error as an ``InvalidInput`` naming the field and the bad value."""
    err = exc.errors()[0]
    # "[key]" is pydantic's marker for a bad dict key (an unknown channel): the field is the key
    path = ".".join(str(p)[:ECHO_MAX] for p in err["loc"] if p not in ("from_", "[key]")) or "body"
    if prefix:
        path = f"{prefix}.{path}" if path != "body" else prefix
    given = err.get("input")
    got = "" if isinstance(given, Mapping | list) else f" (got {shown(given)})"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return InvalidInput(path, f"{path}: {msg}{got}")


def check_affected(catalog: Catalog, affected: Mapping[str, list[str]], field: str) -> None:
    """Reject an empty map, an empty list, unknown services and unknown methods."""
    if not affected:
        raise InvalidInput(field, f"{field}: must name at least one service")
    for service, methods in affected.items():
        svc = catalog.services.get(service)
        at = f"{field}.{service[:ECHO_MAX]}"  # names from input are echoed, capped
        if svc is None:
            known = ", ".join(catalog.services) or "none"
            raise InvalidInput(
                at, f"{field}: unknown service {service[:ECHO_MAX]!r} (known: {known})"
            )
        if not methods:
            raise InvalidInput(at, f"{at}: empty list of methods")
        for m in methods:
            if m != ALL_METHODS and m not in svc.methods:
                raise InvalidInput(
                    at,
                    f"{at}: unknown method {m[:ECHO_MAX]!r} (known: {', '.join(svc.methods)})",
                )


def build_window(
    raw: Any,
    *,
    catalog: Catalog,
    defaults: Defaults,
    now: datetime,
    window_id: str | None = None,
    from_file: bool = False,
    previous: Window | None = None,
) -> Window:
    """Validate a raw window object and resolve its times to UTC.

    ``now`` (UTC) fills ``announce_at`` when absent (kept from ``previous`` on re-import).
    ``status``, ``history`` and ``notes`` are accepted only ``from_file`` (server-owned on
    the API). ``window_id`` is used when the object has no ``id``.

    Raises:
        InvalidInput: naming the field, e.g. ``ends_at`` not after ``starts_at``, a naive
            time without ``timezone``, a nonexistent/ambiguous local time, an unknown zone,
            service, method or channel, an empty ``affected``, a window (up to its
            ``latest_end``) longer than ``max_window_s``, ``latest_end`` before ``ends_at``,
            ``drain_s`` outside 0..7200, a reminder that is not a positive ISO 8601
            duration (or repeated), an unknown field, texts larger than
            :data:`broadcaster.caps.WINDOW_TEXT_MAX` (naming the largest).
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput("body", "a window must be an object")
    try:
        win = WindowIn.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc) from exc
    if not from_file:
        for field in SERVER_OWNED:
            if field in raw:
                raise InvalidInput(field, f"{field}: is server-owned and cannot be sent")
    if not (win.title.ja or win.title.en):
        raise InvalidInput("title", "title: needs ja or en text")
    zone = win.timezone
    if zone is not None:
        try:
            zone_named(zone)
        except InvalidTime as exc:
            raise InvalidInput("timezone", exc.message) from exc
    starts = instant(win.starts_at, "starts_at", zone)
    ends = instant(win.ends_at, "ends_at", zone)
    if ends <= starts:
        raise InvalidInput(
            "ends_at",
            f"ends_at: must be after starts_at ({shown(win.ends_at)} <= {shown(win.starts_at)})",
        )
    if (ends - starts) > timedelta(seconds=defaults.max_window_s):
        raise InvalidInput(
            "ends_at",
            f"ends_at: {shown(win.ends_at)} makes the window last "
            f"{(ends - starts).total_seconds():.0f} s, longer than the maximum "
            f"{defaults.max_window_s} s (MAINTCAST_MAX_WINDOW_S)",
        )
    latest_end = latest_end_of(win.latest_end, zone, starts, ends, defaults.max_window_s)
    announce = announce_at_of(
        win.announce_at, starts, zone, now, None if previous is None else previous.announce_at
    )
    check_affected(catalog, win.affected, "affected")
    wid = win.id or window_id
    if wid is None:
        raise InvalidInput("id", "id: missing")
    history = tuple(_history(h, i, zone) for i, h in enumerate(win.history or []))
    messages: dict[str, LocalText] = dict(DEFAULT_MESSAGES)
    messages.update({str(c): t for c, t in win.messages.items()})
    window = Window(
        id=wid,
        title=win.title,
        description=win.description or LocalText(),
        starts_at=starts,
        ends_at=ends,
        timezone=zone or defaults.timezone,
        announce_at=announce,
        affected={s: tuple(ms) for s, ms in win.affected.items()},
        error_code=win.error_code or defaults.error_code,
        messages=messages,
        cancelled=win.status == "cancelled",
        history=history,
        latest_end=latest_end,
        drain_s=win.drain_s or 0,
        reminders=reminders_of(win.reminders),
        recurrence=recurrence_of(win.recurrence),
        series_id=win.series_id,
        notes=notes_of(win.notes, zone),
    )
    check_window_text(window)
    return window


def _history(h: HistoryIn, i: int, zone: str | None) -> HistoryEntry:
    field = f"history.{i}"

    def span(s: SpanIn | None, name: str) -> Span | None:
        if s is None:
            return None
        return Span(
            starts_at=instant(s.starts_at, f"{field}.{name}.starts_at", zone),
            ends_at=instant(s.ends_at, f"{field}.{name}.ends_at", zone),
        )

    return HistoryEntry.model_validate(
        {
            "at": instant(h.at, f"{field}.at", zone),
            "change": h.change,
            "from": span(h.from_, "from"),
            "to": span(h.to, "to"),
            "actor": h.actor,
            "reason": h.reason,
        }
    )


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule file: catalog, windows (validated against it) and contact."""

    catalog: Catalog
    windows: tuple[Window, ...]
    contact: Contact | None


class ScheduleError(ValueError):
    """A schedule file that cannot be imported; the message is one line naming file, window
    id and field (line breaks and other control characters in it are escaped)."""

    def __init__(self, message: str) -> None:
        escaped = (
            c.encode("unicode_escape").decode() if c in _LINE_BREAKS or CONTROL.match(c) else c
            for c in message
        )
        super().__init__("".join(escaped))


def parse_catalog(raw: Any) -> Catalog:
    """Validate a catalog object; ids are ``[a-z0-9][a-z0-9_]*``.

    Raises:
        InvalidInput: naming ``catalog.<path>``.
    """
    try:
        catalog = Catalog.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc, "catalog") from exc
    for s, svc in catalog.services.items():
        if not NAME_PATTERN.match(s):
            raise InvalidInput("catalog.services", f"catalog.services: bad service id {s!r}")
        if not svc.methods:
            field = f"catalog.services.{s}.methods"
            raise InvalidInput(field, f"{field}: service {s!r} has no methods")
        for m in svc.methods:
            if not NAME_PATTERN.match(m):
                field = f"catalog.services.{s}.methods"
                raise InvalidInput(field, f"{field}: bad method id {m!r} of service {s!r}")
    return catalog


def parse_schedule(
    text: str,
    *,
    source: str,
    defaults: Defaults,
    now: datetime,
    existing: Mapping[str, Window] | None = None,
) -> Schedule:
    """Parse and validate a whole schedule file (YAML) before anything is stored.

    ``source`` names the file in messages; ``existing`` windows keep their ``announce_at``
    when the file gives none. YAML timestamps load like strings (naive ones are rejected).

    Raises:
        ScheduleError: one line, ``<source>: window <id>: <field>: <why>``.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScheduleError(f"{source}: malformed YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(doc, dict):
        raise ScheduleError(f"{source}: expected a mapping with catalog and windows")
    unknown = set(doc) - {"catalog", "windows", "contact"}
    if unknown:
        raise ScheduleError(f"{source}: unknown top-level field {sorted(unknown)[0]!r}")
    try:
        check_texts(doc.get("catalog"), "catalog")
        catalog = parse_catalog(doc.get("catalog") or {})
        check_texts(doc.get("contact"), "contact")
    except InvalidInput as exc:
        raise ScheduleError(f"{source}: {exc.message}") from exc
    contact = None
    if doc.get("contact") is not None:
        try:
            contact = Contact.model_validate(doc["contact"])
        except ValidationError as exc:
            raise ScheduleError(f"{source}: {from_validation_error(exc, 'contact')}") from exc
    raw_windows = doc.get("windows") or []
    if not isinstance(raw_windows, list):
        raise ScheduleError(f"{source}: windows must be a list")
    windows: list[Window] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_windows):
        wid = raw.get("id") if isinstance(raw, dict) else None
        label = f"window {wid[:ECHO_MAX]}" if isinstance(wid, str) else f"window #{i + 1}"
        if not isinstance(wid, str):
            raise ScheduleError(f"{source}: {label}: id: missing (needed to re-import by id)")
        if wid in seen:
            raise ScheduleError(f"{source}: {label}: id: duplicate id {wid!r}")
        seen.add(wid)
        try:
            check_texts(raw)
            windows.append(
                build_window(
                    raw,
                    catalog=catalog,
                    defaults=defaults,
                    now=now,
                    from_file=True,
                    previous=(existing or {}).get(wid),
                )
            )
        except InvalidInput as exc:
            raise ScheduleError(f"{source}: {label}: {exc.message}") from exc
    return Schedule(catalog, tuple(windows), contact)
