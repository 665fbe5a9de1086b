"""The composition root: ``maintcast`` parses arguments, loads settings, calls one function."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broadcaster import codec
from broadcaster.clock import Clock, RehearsalClock, SystemClock
from broadcaster.settings import Settings
from broadcaster.store import Store, connect
from broadcaster.timeparse import InvalidTime, parse_instant

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Maintcast: maintenance status.")
windows_app = typer.Typer(no_args_is_help=True, help="Maintenance windows.")
worker_app = typer.Typer(help="The scheduler worker.")
app.add_typer(windows_app, name="windows")
app.add_typer(worker_app, name="worker")
log = logging.getLogger("maintcast")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit non-zero."""
    typer.echo(f"maintcast: {message}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        fail(f"bad setting MAINTCAST_{str(err['loc'][0]).upper()}: {err['msg']}")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _clock(start: str | None, speed: float) -> Clock:
    if speed <= 0:
        fail(f"--speed must be > 0, got {speed}")
    if start is None:
        return SystemClock() if speed == 1 else RehearsalClock(SystemClock().now(), speed)
    try:
        return RehearsalClock(parse_instant(start, field="--clock", zone=None), speed)
    except InvalidTime as exc:
        fail(exc.message)


def _store(settings: Settings, redis: Any) -> Store:
    from broadcaster.app import make_store

    return make_store(settings, redis)


async def _import(store: Store, path: Path, clock: Clock) -> list[codec.Doc]:
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


def _validate_schedule(path: Path, settings: Settings, clock: Clock) -> None:
    """Fail fast, before anything starts, on a schedule file that cannot be imported."""
    from broadcaster.validation import Defaults, parse_schedule

    try:
        text = path.read_text(encoding="utf-8")
        defaults = Defaults(settings.timezone, settings.error_code, settings.max_window_s)
        parse_schedule(text, source=str(path), defaults=defaults, now=clock.now())
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror}")
    except ValueError as exc:
        fail(str(exc))


@app.command()
def serve(
    schedule: Annotated[
        Path | None, typer.Option(help="Schedule file (YAML) to import first.")
    ] = None,
    clock: Annotated[
        str | None, typer.Option(help="Start the process clock at this RFC 3339 instant.")
    ] = None,
    speed: Annotated[float, typer.Option(help="Run the clock this many times faster.")] = 1.0,
    demo: Annotated[bool, typer.Option(help="Mount the demo checkout.")] = False,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """API and worker in one process (embedded in-memory store without MAINTCAST_REDIS_URL)."""
    import uvicorn

    from broadcaster.app import create_app
    from worker.scheduler import running_worker

    _logging()
    settings = _settings()
    the_clock = _clock(clock, speed)
    if schedule is not None:
        _validate_schedule(schedule, settings, the_clock)
    redis, embedded = connect(settings.redis_url)
    if embedded:
        log.warning(
            "MAINTCAST_REDIS_URL is not set: using an embedded in-memory store "
            "(one process only, nothing kept)"
        )

    @contextlib.asynccontextmanager
    async def imported(store: Store, clk: Clock) -> AsyncIterator[None]:
        if schedule is not None:
            docs = await _import(store, schedule, clk)
            log.info("imported %s: %d event(s)", schedule, len(docs))
        yield

    if isinstance(the_clock, RehearsalClock):
        log.info("rehearsal clock: starts %s, speed x%s", the_clock.now().isoformat(), speed)
    web = create_app(settings, redis=redis, clock=the_clock, background=(imported, running_worker))
    try:
        uvicorn.run(web, host=host, port=port, log_level="info")
    finally:
        asyncio.run(redis.aclose())


def api_factory() -> Any:
    """``uvicorn --factory`` entry: the API from environment settings."""
    from broadcaster.app import create_app

    return create_app(Settings())


@app.command()
def api(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
) -> None:
    """The API alone, on a shared Redis (MAINTCAST_REDIS_URL)."""
    import uvicorn

    _logging()
    settings = _settings()
    if not settings.redis_url:
        fail("maintcast api needs MAINTCAST_REDIS_URL (use `maintcast serve` for one process)")
    uvicorn.run(
        "broadcaster.cli:api_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


@worker_app.callback(invoke_without_command=True)
def worker(
    ctx: typer.Context,
    clock: Annotated[str | None, typer.Option(help="Rehearsal: start the clock here.")] = None,
    speed: Annotated[float, typer.Option(help="Rehearsal: clock speed.")] = 1.0,
) -> None:
    """Run the scheduler worker on MAINTCAST_REDIS_URL until SIGTERM/SIGINT."""
    if ctx.invoked_subcommand is not None:
        return
    from worker.scheduler import running_worker

    _logging()
    settings = _settings()
    if not settings.redis_url:
        fail("maintcast worker needs MAINTCAST_REDIS_URL")
    the_clock = _clock(clock, speed)

    async def run() -> None:
        redis, _ = connect(settings.redis_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with running_worker(_store(settings, redis), the_clock):
                log.info("worker running")
                await stop.wait()
        finally:
            await redis.aclose()
        log.info("worker stopped")

    asyncio.run(run())


@worker_app.command("check")
def worker_check() -> None:
    """Exit 0 if a worker heartbeat is fresh, else 1."""
    settings = _settings()

    async def run() -> bool:
        redis, _ = connect(settings.redis_url)
        try:
            return await _store(settings, redis).worker_alive()
        finally:
            await redis.aclose()

    if not settings.redis_url:
        fail("needs MAINTCAST_REDIS_URL")
    try:
        alive = asyncio.run(run())
    except Exception as exc:
        fail(f"redis unreachable: {exc}")
    typer.echo("worker alive" if alive else "no fresh worker heartbeat")
    raise typer.Exit(0 if alive else 1)


@windows_app.command("import")
def windows_import(file: Path) -> None:
    """Import a schedule file straight into the store (all or nothing, idempotent by id)."""
    settings = _settings()
    if not settings.redis_url:
        fail("windows import needs MAINTCAST_REDIS_URL (or use `maintcast serve --schedule`)")

    async def run() -> list[codec.Doc]:
        redis, _ = connect(settings.redis_url)
        try:
            return await _import(_store(settings, redis), file, SystemClock())
        finally:
            await redis.aclose()

    try:
        docs = asyncio.run(run())
    except ValueError as exc:
        fail(str(exc))
    except (ConnectionError, OSError, RedisConnectionError, RedisTimeoutError) as exc:
        fail(f"redis unreachable: {exc}")
    for d in docs:
        typer.echo(f"seq {d['seq']}: {d['cause']['type']} {d['cause']['window_id'] or ''}".rstrip())
    typer.echo(f"imported {file}: {len(docs)} event(s)")


def _get(settings: Settings, path: str, **params: Any) -> Any:
    url = settings.url.rstrip("/") + path
    try:
        r = httpx.get(url, params={k: v for k, v in params.items() if v is not None}, timeout=10)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {settings.url}: {exc}")
    if r.status_code >= 400:
        try:
            fail(f"{r.status_code}: {r.json()['error']['message']}")
        except (ValueError, KeyError):
            fail(f"{r.status_code} from {url}")
    return r.json()


@windows_app.command("list")
def windows_list() -> None:
    """List the announced windows (via the HTTP API, MAINTCAST_URL)."""
    for w in _get(_settings(), "/v1/windows")["windows"]:
        typer.echo(
            f"{w['id']}  {w['status']:<11}  {w['starts_at']} → {w['ends_at']}  "
            f"{w['title'].get('ja') or w['title'].get('en')}"
        )


@app.command()
def status(service: str | None = None, method: str | None = None) -> None:
    """Print the current status (via MAINTCAST_URL)."""
    doc = _get(_settings(), "/v1/status", service=service, method=method)
    typer.echo(codec.pretty(doc))


@app.command()
def watch(service: str | None = None, method: str | None = None) -> None:
    """Tail the live stream: one line per status change (Ctrl-C to stop)."""
    from httpx_sse import connect_sse

    settings = _settings()
    params = {k: v for k, v in {"service": service, "method": method}.items() if v}
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=None)) as client,
            connect_sse(
                client, "GET", settings.url.rstrip("/") + "/v1/stream", params=params
            ) as source,
        ):
            for ev in source.iter_sse():
                d = codec.loads(ev.data)
                cause = d["cause"] or {}
                typer.echo(
                    f"seq {d['seq']}  {d['as_of']}  {d['state']:<11}  "
                    f"{cause.get('type') or '-'}  until={d['until']}"
                )
    except httpx.HTTPError as exc:
        fail(f"stream from {settings.url} failed: {exc}")
    except KeyboardInterrupt:
        pass


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
