"""The one place the status is computed: components, state, ``until``, boundaries, causes.

Pure: every function takes ``now`` (an aware UTC ``datetime``). Windows are half-open
``[starts_at, ends_at)`` (docs/operations.md "2. Schedule a window").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from broadcaster.domain import (
    DRAINING,
    OPERATIONAL,
    UNDER_MAINTENANCE,
    Catalog,
    Cause,
    ComponentStatus,
    Override,
    Window,
    is_public,
    touches,
)


@dataclass(frozen=True)
class StatusCore:
    """The computed part of a status (everything but ``seq``, ``as_of``, ``cause``, ``stale``).

    ``components`` maps service -> method -> status; ``active`` and ``upcoming`` are ordered
    by ``starts_at``; ``until`` and ``error_code`` are None when ``state`` is normal.
    ``draining`` are the windows of ``upcoming`` whose drain has begun (not on the wire: each
    reader derives it from ``upcoming``, ``drain_s`` and ``as_of``).
    """

    state: ViewState
    until: datetime | None
    error_code: str | None
    components: dict[str, dict[str, ComponentStatus]]
    active: tuple[Window, ...]
    upcoming: tuple[Window, ...]
    override: Override | None
    draining: tuple[Window, ...] = ()


ViewState = Literal["normal", "draining", "maintenance"]
"""A view's state: ``maintenance`` if a component in it is under maintenance, else
``draining`` if one is draining, else ``normal`` (docs/api.md "Drain")."""


def in_drain(window: Window, at: datetime) -> bool:
    """Whether ``window`` drains at ``at``: ``drain_starts_at <= at < starts_at`` and not
    cancelled (half-open like the window itself)."""
    return not window.cancelled and window.drain_starts_at <= at < window.starts_at


def _under_maintenance(
    catalog: Catalog,
    windows: Iterable[Window],
    override: Override | None,
    at: datetime,
) -> frozenset[tuple[str, str]]:
    """Components under maintenance at ``at``: windows in progress, then the override on top."""
    down: set[tuple[str, str]] = set()
    for w in windows:
        if not w.cancelled and w.starts_at <= at < w.ends_at:
            down |= w.covers(catalog)
    if override is not None and override.holds_at(at):
        covered = catalog.expand(override.affected)
        down = down | covered if override.mode == "maintenance" else down - covered
    return frozenset(down)


def _draining(
    catalog: Catalog,
    windows: Iterable[Window],
    override: Override | None,
    at: datetime,
    down: frozenset[tuple[str, str]],
) -> frozenset[tuple[str, str]]:
    """Components draining at ``at``: covered by a window in drain, not under maintenance
    (``down``) and not forced normal by the override."""
    drained: set[tuple[str, str]] = set()
    for w in windows:
        if in_drain(w, at):
            drained |= w.covers(catalog)
    if override is not None and override.holds_at(at) and override.mode == "normal":
        drained -= catalog.expand(override.affected)
    return frozenset(drained - down)


def compute_status(
    catalog: Catalog,
    windows: Iterable[Window],
    override: Override | None,
    now: datetime,
    *,
    default_error_code: str,
    service: str | None = None,
    method: str | None = None,
    within: frozenset[tuple[str, str]] | None = None,
) -> StatusCore:
    """The status at ``now`` for the whole catalog or a view (``service`` [+ ``method``]).

    ``within`` (a set of components, e.g. a subscription's scope) is the view instead of
    ``service``/``method``: windows and the override are shown when they cover one of them.

    A component is ``under_maintenance`` inside a window (or by the override), else
    ``draining`` from the window's ``drain_starts_at`` until its ``starts_at`` (unless the
    override forces it normal), else ``operational``. ``until`` chains overlapping and
    back-to-back windows, drains and the override's expiry: it is the earliest instant
    >= ``now`` at which the view would be normal (neither under maintenance nor draining);
    None when normal or while an override without expiry holds maintenance. While
    draining, ``until`` is thus the end of the coming maintenance and ``error_code`` that of
    the earliest window draining.

    Raises:
        NotFound: unknown ``service`` or ``method``.
    """
    shown = within if within is not None else catalog.components_in(service, method)
    live = [w for w in windows if not w.cancelled]

    def in_view(affected: Mapping[str, Iterable[str]] | None) -> bool:
        if within is None:
            return touches(affected, service, method)
        return bool(catalog.expand(affected) & within)

    if override is not None and not override.holds_at(now):
        override = None
    down = _under_maintenance(catalog, live, override, now) & shown
    drained = _draining(catalog, live, override, now, down) & shown

    components: dict[str, dict[str, ComponentStatus]] = {}
    for s, m in catalog.components():
        if (s, m) in shown:
            components.setdefault(s, {})[m] = (
                UNDER_MAINTENANCE
                if (s, m) in down
                else DRAINING
                if (s, m) in drained
                else OPERATIONAL
            )

    active = tuple(
        sorted(
            (w for w in live if w.starts_at <= now < w.ends_at and in_view(w.affected)),
            key=lambda w: (w.starts_at, w.id),
        )
    )
    upcoming = tuple(
        sorted(
            (w for w in live if is_public(w, now) and now < w.starts_at and in_view(w.affected)),
            key=lambda w: (w.starts_at, w.id),
        )
    )
    shown_override = override if override is not None and in_view(override.affected) else None
    draining = tuple(w for w in upcoming if in_drain(w, now))

    if not down and not drained:
        return StatusCore(
            "normal", None, None, components, active, upcoming, shown_override, draining
        )

    error_code = default_error_code
    # the earliest-started window that really holds a component down (or draining) wins
    for w in active if down else draining:
        if w.covers(catalog) & (down or drained):
            error_code = w.error_code
            break
    until = _until(catalog, active + upcoming, override, now, shown)
    return StatusCore(
        "maintenance" if down else "draining",
        until,
        error_code,
        components,
        active,
        upcoming,
        shown_override,
        draining,
    )


def _until(
    catalog: Catalog,
    windows: tuple[Window, ...],
    override: Override | None,
    now: datetime,
    shown: frozenset[tuple[str, str]],
) -> datetime | None:
    """The first end-type boundary after ``now`` at which nothing in ``shown`` is down or
    draining."""
    candidates = {w.ends_at for w in windows if w.ends_at > now}
    if override is not None and override.expires_at is not None and override.expires_at > now:
        candidates.add(override.expires_at)
    for t in sorted(candidates):
        down = _under_maintenance(catalog, windows, override, t)
        if not (down | _draining(catalog, windows, override, t, down)) & shown:
            return t
    return None


def boundaries_after(
    windows: Iterable[Window], override: Override | None, now: datetime
) -> list[datetime]:
    """Every instant > ``now`` at which the status may change (announce, drain start, start,
    end, override expiry).

    Sorted, without duplicates; the worker schedules one job per instant.
    """
    out: set[datetime] = set()
    for w in windows:
        if w.cancelled:
            continue
        instants = (w.announce_at, w.drain_starts_at, w.starts_at, w.ends_at)
        out.update(t for t in instants if t > now)
    if override is not None and override.expires_at is not None and override.expires_at > now:
        out.add(override.expires_at)
    return sorted(out)


@dataclass(frozen=True)
class Summary:
    """What a time-driven classification needs of the stored status: window ids and the
    override (read by :func:`broadcaster.codec.summary_of`)."""

    active: frozenset[str]
    upcoming: frozenset[str]
    override_expires_at: datetime | None
    has_override: bool
    draining: frozenset[str] = frozenset()


def time_driven_cause(
    old: Summary,
    new: StatusCore,
    windows: Mapping[str, Window],
    now: datetime,
    grace_s: float,
) -> Cause:
    """Classify a change that time alone made, from the old and new status.

    A window starting wins over one ending at the same instant (one event per boundary,
    typed after the window that starts); then a drain beginning (``maintenance.draining``,
    also a start), ended, announced, override expired. When the
    boundary lies more than ``grace_s`` seconds before ``now`` nobody published it in time
    and the type is ``reconciled`` (docs/operations.md "7. Event types").
    """
    new_active = {w.id for w in new.active}
    new_upcoming = {w.id for w in new.upcoming}
    started = sorted(new_active - old.active, key=lambda i: (windows[i].starts_at, i))
    ended = sorted(old.active - new_active, key=lambda i: (_end_of(windows.get(i)), i))
    announced = sorted(new_upcoming - old.upcoming - new_active)
    drains = sorted(
        {w.id for w in new.draining} - old.draining,
        key=lambda i: (windows[i].drain_starts_at, i),
    )
    kind: str
    window_id: str | None = None
    boundary: datetime | None = None
    if started:
        kind, window_id = "maintenance.started", started[0]
        boundary = windows[window_id].starts_at
    elif drains:
        kind, window_id = "maintenance.draining", drains[0]
        boundary = windows[window_id].drain_starts_at
    elif ended:
        kind, window_id = "maintenance.ended", ended[-1]
        w = windows.get(window_id)
        boundary = min(w.ends_at, now) if w is not None else None
    elif announced:
        kind, window_id = "maintenance.announced", announced[0]
        boundary = windows[window_id].announce_at
    elif old.has_override and new.override is None and old.override_expires_at is not None:
        kind, boundary = "override.expired", old.override_expires_at
    else:
        kind = "reconciled"
    if boundary is not None and (now - boundary).total_seconds() > grace_s:
        kind = "reconciled"
    return Cause(kind, window_id)


def _end_of(window: Window | None) -> datetime:
    return window.ends_at if window is not None else datetime.max.replace(tzinfo=UTC)
