"""JSON <-> domain, and SSE frames encoded once per event.

Wire instants are RFC 3339 with an offset: a window's in its own zone, status-level ones
(``as_of``, ``until``, override times) in ``MAINTCAST_TIMEZONE`` (README.md "Configuration").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from broadcaster.domain import (
    Catalog,
    Cause,
    HistoryEntry,
    Note,
    Override,
    Recurrence,
    Window,
    lifecycle,
)
from broadcaster.status import StatusCore, Summary, compute_status
from broadcaster.timeparse import format_instant, parse_instant

Doc = dict[str, Any]
View = tuple[str | None, str | None]
"""A view of the status: ``(service, method)``, either None for all (the ``service`` and
``method`` query parameters of ``/v1/status`` and ``/v1/stream``, docs/api.md "Built")."""
Viewer = Callable[[Doc, View], Doc]
"""Restricts a full status object to a view."""

dumps = orjson.dumps
loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError


def error_doc(code: str, message: str, field: str | None = None) -> Doc:
    """The JSON error shape of docs/api.md: ``{"error": {"code", "message", "field"}}``."""
    return {"error": {"code": code, "message": message, "field": field}}


def pretty(doc: Any) -> str:
    """Indented JSON text for people (the CLI)."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


_VOLATILE = ("seq", "as_of", "cause", "stale")


def _iso(t: datetime | None, zone: str) -> str | None:
    return None if t is None else format_instant(t, zone)


def _texts(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def history_doc(h: HistoryEntry, zone: str) -> Doc:
    """One history entry, instants in ``zone``."""

    def span(s: Any) -> Doc | None:
        if s is None:
            return None
        return {"starts_at": _iso(s.starts_at, zone), "ends_at": _iso(s.ends_at, zone)}

    return {
        "at": _iso(h.at, zone),
        "change": h.change,
        "from": span(h.from_),
        "to": span(h.to),
        "actor": h.actor,
        "reason": h.reason,
    }


def note_doc(n: Note, zone: str) -> Doc:
    """One note (``{"at", "message", "actor"}``), its instant in ``zone``."""
    return {"at": _iso(n.at, zone), "message": _texts(n.message.model_dump()), "actor": n.actor}


def recurrence_doc(r: Recurrence | None) -> Doc | None:
    """``{"rrule", "exdates"}`` or None."""
    return None if r is None else {"rrule": r.rrule, "exdates": list(r.exdates)}


def window_doc(w: Window, now: datetime, *, history: bool = True) -> Doc:
    """The window object (docs/api.md) at ``now`` (``status`` is the lifecycle at ``now``).

    Every field is present: ``latest_end``, ``reminders``, ``recurrence`` and
    ``series_id`` are null when unset, ``drain_s`` 0, ``notes`` ``[]``.
    """
    z = w.timezone
    doc: Doc = {
        "id": w.id,
        "title": _texts(w.title.model_dump()),
        "description": _texts(w.description.model_dump()),
        "starts_at": _iso(w.starts_at, z),
        "ends_at": _iso(w.ends_at, z),
        "timezone": z,
        "announce_at": _iso(w.announce_at, z),
        "affected": {s: list(ms) for s, ms in w.affected.items()},
        "error_code": w.error_code,
        "messages": {c: _texts(t.model_dump()) for c, t in w.messages.items()},
        "status": lifecycle(w, now),
        "latest_end": _iso(w.latest_end, z),
        "drain_s": w.drain_s,
        "reminders": None if w.reminders is None else list(w.reminders),
        "recurrence": recurrence_doc(w.recurrence),
        "series_id": w.series_id,
        "notes": [note_doc(n, z) for n in w.notes],
    }
    if history:
        doc["history"] = [history_doc(h, z) for h in w.history]
    return doc


def window_from_doc(doc: Doc) -> Window:
    """Parse a window object written by :func:`window_doc` (trusted: from our own store)."""
    z = doc["timezone"]

    def t(v: str) -> datetime:
        return parse_instant(v, field="instant", zone=z)

    hist = []
    for h in doc.get("history") or []:
        hist.append(
            {
                **h,
                "at": t(h["at"]),
                "from": {k: t(v) for k, v in h["from"].items()} if h.get("from") else None,
                "to": {k: t(v) for k, v in h["to"].items()} if h.get("to") else None,
            }
        )
    return Window(
        id=doc["id"],
        title=doc["title"],
        description=doc.get("description") or {},
        starts_at=t(doc["starts_at"]),
        ends_at=t(doc["ends_at"]),
        timezone=z,
        announce_at=t(doc["announce_at"]),
        affected={s: tuple(ms) for s, ms in doc["affected"].items()},
        error_code=doc["error_code"],
        messages=doc.get("messages") or {},
        cancelled=doc.get("status") == "cancelled",
        history=tuple(HistoryEntry.model_validate(h) for h in hist),
        # .get: windows stored before these fields existed still load
        latest_end=t(doc["latest_end"]) if doc.get("latest_end") else None,
        drain_s=doc.get("drain_s") or 0,
        reminders=doc.get("reminders"),
        recurrence=doc.get("recurrence"),
        series_id=doc.get("series_id"),
        notes=tuple(
            Note(at=t(n["at"]), message=n["message"], actor=n.get("actor"))
            for n in doc.get("notes") or []
        ),
    )


def override_doc(o: Override, zone: str) -> Doc:
    """The override object (docs/api.md), instants in ``zone``."""
    return {
        "mode": o.mode,
        "affected": None if o.affected is None else {s: list(m) for s, m in o.affected.items()},
        "reason": o.reason,
        "actor": o.actor,
        "set_at": _iso(o.set_at, zone),
        "expires_at": _iso(o.expires_at, zone),
    }


def override_from_doc(doc: Doc) -> Override:
    """Parse an override object written by :func:`override_doc`."""
    return Override.model_validate(doc)


def core_doc(core: StatusCore, now: datetime, zone: str) -> Doc:
    """The computed fields of a status object (no seq, as_of, cause, stale)."""
    return {
        "state": core.state,
        "until": _iso(core.until, zone),
        "error_code": core.error_code,
        "components": core.components,
        "active": [window_doc(w, now, history=False) for w in core.active],
        "upcoming": [window_doc(w, now, history=False) for w in core.upcoming],
        "override": None if core.override is None else override_doc(core.override, zone),
    }


def status_doc(
    core: StatusCore,
    *,
    seq: int,
    now: datetime,
    cause: Cause | None,
    zone: str,
    stale: bool = False,
) -> Doc:
    """The whole status object (docs/api.md)."""
    return {
        "seq": seq,
        "as_of": _iso(now, zone),
        "state": core.state,
        "cause": None if cause is None else cause_doc(cause),
        **{k: v for k, v in core_doc(core, now, zone).items() if k != "state"},
        "stale": stale,
    }


def cause_doc(cause: Cause) -> Doc:
    """``{"type", "window_id", "actor", "reason"}``."""
    return {
        "type": cause.type,
        "window_id": cause.window_id,
        "actor": cause.actor,
        "reason": cause.reason,
    }


def same_status(a: Doc, b: Doc) -> bool:
    """Equal ignoring ``seq``, ``as_of``, ``cause`` and ``stale``: a status that is not
    different is not published (docs/reliability.md "Guarantees")."""
    return {k: v for k, v in a.items() if k not in _VOLATILE} == {
        k: v for k, v in b.items() if k not in _VOLATILE
    }


def summary_of(doc: Doc) -> Summary:
    """The window ids and override of a stored status object."""
    ov = doc.get("override")
    return Summary(
        frozenset(w["id"] for w in doc.get("active", [])),
        frozenset(w["id"] for w in doc.get("upcoming", [])),
        parse_instant(ov["expires_at"], field="expires_at", zone=None)
        if ov and ov.get("expires_at")
        else None,
        ov is not None,
    )


def parse_wire_instant(text: str) -> datetime:
    """An RFC 3339 instant with offset, as written by this module, as aware UTC."""
    return parse_instant(text, field="instant", zone=None)


def status_instant(doc: Doc) -> datetime:
    """The ``as_of`` of a status object as an aware UTC datetime."""
    return parse_wire_instant(doc["as_of"])


def sse_frame(seq: int, payload: bytes) -> bytes:
    """One ``event: status`` frame (WHATWG HTML, "Server-sent events"); ``payload`` is the
    compact one-line JSON, so no ``data:`` line splitting is needed."""
    return b"id: %d\nevent: status\ndata: %s\n\n" % (seq, payload)


def retry_frame(retry_ms: int) -> bytes:
    """The ``retry:`` line that opens every stream (reconnection time, milliseconds)."""
    return b"retry: %d\n\n" % retry_ms


def view_doc(
    doc: Doc,
    catalog: Catalog,
    *,
    service: str | None,
    method: str | None,
    default_error_code: str,
    zone: str,
    within: frozenset[tuple[str, str]] | None = None,
) -> Doc:
    """A full status object restricted to the view ``service`` [+ ``method``], or to the
    components ``within`` (a subscription's scope; ``service``/``method`` are then None).

    Computed from the full status alone (its ``active``, ``upcoming`` and ``override`` at
    its ``as_of``), so every process derives the same view (docs/api.md "Built").

    Raises:
        NotFound: unknown service or method.
    """
    if service is None and within is None:
        catalog.components_in(None, method)
        return doc
    now = status_instant(doc)
    windows = [window_from_doc(w) for w in (*doc["active"], *doc["upcoming"])]
    ov = doc.get("override")
    core = compute_status(
        catalog,
        windows,
        override_from_doc(ov) if ov else None,
        now,
        default_error_code=default_error_code,
        service=service,
        method=method,
        within=within,
    )
    computed = core_doc(core, now, zone)
    return {
        "seq": doc["seq"],
        "as_of": doc["as_of"],
        "state": core.state,
        "cause": doc["cause"],
        **{k: v for k, v in computed.items() if k != "state"},
        "stale": doc.get("stale", False),
    }
