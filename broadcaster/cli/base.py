"""Shared pieces of the ``maintcast`` CLI: the typer apps, settings, one-line failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from broadcaster import codec
from broadcaster.auth import TokenConfigError, Tokens
from broadcaster.clock import Clock, RehearsalClock, SystemClock
from broadcaster.settings import MAX_SPEED, MAX_WALL, Settings
from broadcaster.store import Store
from broadcaster.timeparse import EARLIEST, LATEST, InvalidTime, parse_instant

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Maintcast: maintenance status.")
windows_app = typer.Typer(no_args_is_help=True, help="Maintenance windows.")
worker_app = typer.Typer(help="The scheduler worker.")
override_app = typer.Typer(no_args_is_help=True, help="The manual override (operator role).")
token_app = typer.Typer(no_args_is_help=True, help="Ops tokens.")
app.add_typer(windows_app, name="windows")
app.add_typer(worker_app, name="worker")
app.add_typer(override_app, name="override")
app.add_typer(token_app, name="token")
log = logging.getLogger("maintcast")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit non-zero."""
    typer.echo(f"maintcast: {message}", err=True)
    raise typer.Exit(code)


def settings_or_fail() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        fail(f"bad setting MAINTCAST_{str(err['loc'][0]).upper()}: {err['msg']}")


def tokens_or_fail(settings: Settings) -> Tokens:
    try:
        return Tokens.parse(settings.tokens, settings.tokens_file)
    except TokenConfigError as exc:
        fail(str(exc))


def setup_logging(log_format: str = "text") -> None:
    """One line per record; ``json`` (MAINTCAST_LOG_FORMAT) for log shippers: publishes carry
    ``seq``, ``cause``, ``window_id`` and ``state`` as fields."""
    handler = logging.StreamHandler()
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", timestamp=True)
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # httpx logs every request at INFO: one line per webhook attempt, besides the
    # delivery's own (worker.deliveries)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached", once a second while a
    # keepalive waits on a frozen Redis: the keepalive itself says what is wrong
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)


def clock_or_fail(
    settings: Settings, start: str | None, speed: float | None, wall: float | None = None
) -> Clock:
    """The process clock: the system clock, or a rehearsal clock reading ``start`` at the
    real instant ``wall`` (Unix seconds; default: now) and running ``speed`` times faster.
    Flags win over ``MAINTCAST_CLOCK``/``_CLOCK_SPEED``/``_CLOCK_WALL``. Several processes
    given the same three values share one rehearsal clock."""
    start = start if start is not None else settings.clock
    speed = speed if speed is not None else settings.clock_speed
    wall = wall if wall is not None else settings.clock_wall
    if not 0 < speed <= MAX_SPEED:  # also refuses nan and inf
        fail(f"--speed must be > 0 and at most {MAX_SPEED:.0f}, got {speed}")
    if wall is not None and not 0 <= wall <= MAX_WALL:
        fail(f"--clock-wall must be Unix seconds between 0 and {MAX_WALL:.0f}, got {wall}")
    if start is None:
        if wall is not None:
            fail("--clock-wall needs --clock")
        return SystemClock() if speed == 1 else RehearsalClock(SystemClock().now(), speed)
    try:
        instant = parse_instant(start, field="--clock", zone=None)
    except InvalidTime as exc:
        fail(exc.message)
    clock = RehearsalClock(instant, speed, real_start=wall)
    try:
        reads = clock.now()
    except OverflowError:
        reads = None
    if reads is None or not EARLIEST <= reads < LATEST - timedelta(days=366):
        # fine one by one, a far --clock-wall and a high --speed can still put the clock
        # outside the instants anything accepts (years 1970-2199)
        fail(
            f"the rehearsal clock would read {reads.isoformat() if reads else 'out of range'} "
            "now, outside the years 1970 to 2198: check --clock-wall and --speed"
        )
    return clock


ClockOption = Annotated[
    str | None,
    typer.Option(help="Rehearsal: start the clock at this RFC 3339 instant (MAINTCAST_CLOCK)."),
]
SpeedOption = Annotated[
    float | None,
    typer.Option(help="Rehearsal: clock seconds per real second (MAINTCAST_CLOCK_SPEED)."),
]
ClockWallOption = Annotated[
    float | None,
    typer.Option(
        help="Rehearsal: the Unix time at which the clock reads --clock (MAINTCAST_CLOCK_WALL); "
        "processes given the same three share one rehearsal time."
    ),
]


def store_for(settings: Settings, redis: Any, clock: Clock | None = None) -> Store:
    """The store for ``settings`` over ``redis`` (the caller closes ``redis``)."""
    from broadcaster.store import make_store

    return make_store(settings, redis, clock_speed=clock.speed if clock else 1.0)


async def import_file(store: Store, path: Path, clock: Clock) -> list[codec.Doc]:
    """Import the schedule file at ``path`` at ``clock.now()`` (event actor ``import:<name>``).

    Raises:
        ValueError: the file cannot be read or is invalid (the message names the field), its
            name holds a control character (it is the actor), or it would take the windows
            past a cap (:mod:`broadcaster.caps`).
    """
    from broadcaster.domain import Conflict
    from broadcaster.texts import check_texts
    from broadcaster.validation import parse_schedule

    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc
    check_texts(path.name, "file name")
    now = clock.now()
    schedule = parse_schedule(
        text,
        source=str(path),
        defaults=store.defaults,
        now=now,
        existing={**await store.series(), **await store.windows()},
    )
    try:
        return await store.import_schedule(schedule, now, actor=f"import:{path.name}")
    except Conflict as exc:
        raise ValueError(f"{path}: {exc.message}") from exc


def healer(settings: Settings, store: Store, clock: Clock) -> Callable[[], Awaitable[None]] | None:
    """What re-imports ``MAINTCAST_SCHEDULE_FILE`` into a store that lost its catalog (None
    when the setting is unset); awaited by the leading worker or API standby."""
    path = settings.schedule_file
    if path is None:
        return None

    async def heal() -> None:
        docs = await import_file(store, path, clock)
        log.warning("re-imported %s into the empty store: %d event(s)", path, len(docs))

    return heal


def validate_schedule_file(path: Path, settings: Settings, clock: Clock) -> None:
    """Fail fast, before anything starts, on a schedule file that cannot be imported."""
    from broadcaster.validation import parse_schedule

    try:
        text = path.read_text(encoding="utf-8")
        parse_schedule(text, source=str(path), defaults=settings.defaults, now=clock.now())
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror}")
    except ValueError as exc:
        fail(str(exc))
