"""What one store transaction reads (:class:`State`) and writes (:class:`Plan`, built from an
ops write's :class:`Change`): plain data, no Redis."""

from __future__ import annotations

from dataclasses import dataclass, field

from broadcaster import codec
from broadcaster.domain import Catalog, Cause, Override, Window
from broadcaster.validation import Contact


@dataclass
class State:
    """Everything a status is computed from, as read inside one transaction, and the
    recurring series (``series``: id -> the series, a window with ``recurrence``), which
    are no windows of their own: their occurrences are (:mod:`broadcaster.series`)."""

    catalog: Catalog
    windows: dict[str, Window]
    override: Override | None
    status: codec.Doc | None
    seq: int
    series: dict[str, Window] = field(default_factory=dict)


@dataclass
class Plan:
    """What one transaction writes: changed inputs and the events to publish, in order.

    Each event is a cause plus the state to compute its status from (windows, override,
    catalog after that step).
    """

    windows: dict[str, Window] = field(default_factory=dict)
    catalog: Catalog | None = None
    contact: Contact | None = None
    override: Override | None = None
    set_override: bool = False
    events: list[tuple[Cause, State]] = field(default_factory=list)
    series: dict[str, Window] = field(default_factory=dict)


@dataclass
class Change:
    """One ops write: windows (and series) to store, maybe a new override (None = clear),
    the cause."""

    cause: Cause
    windows: dict[str, Window] = field(default_factory=dict)
    override: Override | None = None
    set_override: bool = False
    series: dict[str, Window] = field(default_factory=dict)
