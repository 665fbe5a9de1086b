"""Shared pieces of the ``maintcast`` CLI: the typer apps, settings, one-line failures."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NoReturn

import typer

from broadcaster import codec
from broadcaster.auth import TokenConfigError, Tokens
from broadcaster.clock import Clock, RehearsalClock, SystemClock
from broadcaster.settings import Settings
from broadcaster.store import Store
from broadcaster.timeparse import InvalidTime, parse_instant

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


def clock_or_fail(start: str | None, speed: float, wall: float | None = None) -> Clock:
    """The process clock: the system clock, or a rehearsal clock reading ``start`` at the
    real instant ``wall`` (Unix seconds; default: now) and running ``speed`` times faster.
    Several processes given the same three values share one rehearsal clock."""
    if speed <= 0:
        fail(f"--speed must be > 0, got {speed}")
    if start is None:
        if wall is not None:
            fail("--clock-wall needs --clock")
        return SystemClock() if speed == 1 else RehearsalClock(SystemClock().now(), speed)
    try:
        instant = parse_instant(start, field="--clock", zone=None)
    except InvalidTime as exc:
        fail(exc.message)
    return RehearsalClock(instant, speed, real_start=wall)


def store_for(settings: Settings, redis: Any, clock: Clock | None = None) -> Store:
    """The store for ``settings`` over ``redis`` (the caller closes ``redis``)."""
    from broadcaster.store import make_store

    return make_store(settings, redis, clock_speed=clock.speed if clock else 1.0)


async def import_file(store: Store, path: Path, clock: Clock) -> list[codec.Doc]:
    from broadcaster.validation import parse_schedule

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc
    now = clock.now()
    schedule = parse_schedule(
        text, source=str(path), defaults=store.defaults, now=now, existing=await store.windows()
    )
    return await store.import_schedule(schedule, now, actor=f"import:{path.name}")


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
