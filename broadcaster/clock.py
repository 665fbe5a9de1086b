"""Clocks: the one source of "now" for every process (injected, never read ad hoc)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of UTC instants that can also say when, in real time, it will read an instant."""

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        ...

    def wall_time_of(self, instant: datetime) -> datetime:
        """The real (wall-clock, UTC) instant at which ``now()`` will reach ``instant``."""
        ...

    @property
    def speed(self) -> float:
        """How many clock seconds pass per real second (1.0 for the system clock)."""
        ...


class SystemClock:
    """The machine's wall clock."""

    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wall_time_of(self, instant: datetime) -> datetime:
        return instant


class RehearsalClock:
    """A clock that starts at ``start`` and runs ``speed`` times faster than real time.

    Used by ``serve --clock ISO --speed X`` and by tests to rehearse a real schedule.
    """

    def __init__(self, start: datetime, speed: float = 1.0, *, real_start: float | None = None):
        if start.tzinfo is None:
            raise ValueError("clock start must be timezone-aware")
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self._start = start.astimezone(UTC)
        self._speed = float(speed)
        self._real_start = time.time() if real_start is None else real_start

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def anchor(self) -> tuple[datetime, float]:
        """``(start, real_start)``: the clock reads ``start`` (UTC) at Unix time ``real_start``;
        another process given both reads the same time."""
        return self._start, self._real_start

    def restart(self) -> None:
        """Read ``start`` again from this real moment on (``serve`` calls it once the store
        is ready, so a fast rehearsal does not spend its first seconds on start-up)."""
        self._real_start = time.time()

    def now(self) -> datetime:
        elapsed = (time.time() - self._real_start) * self._speed
        return self._start + timedelta(seconds=elapsed)

    def wall_time_of(self, instant: datetime) -> datetime:
        real = self._real_start + (instant - self._start).total_seconds() / self._speed
        return datetime.fromtimestamp(real, UTC)
