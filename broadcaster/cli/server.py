"""``maintcast`` commands that run processes or touch the store: serve, api, worker, import."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer

from broadcaster import codec
from broadcaster.auth import Tokens, entry_line, new_token
from broadcaster.cli.base import (
    ClockOption,
    ClockWallOption,
    SpeedOption,
    app,
    clock_or_fail,
    fail,
    healer,
    import_file,
    log,
    settings_or_fail,
    setup_logging,
    store_for,
    tokens_or_fail,
    validate_schedule_file,
    windows_app,
    worker_app,
)
from broadcaster.clock import Clock, RehearsalClock
from broadcaster.notify.messages import DeliveryConfig
from broadcaster.onetime import Cleanup, hand_over
from broadcaster.serving import configure, uvicorn_options
from broadcaster.settings import Settings
from broadcaster.store import RECONNECT_ERRORS, Store, connect

LISTEN_BACKLOG = 4096
"""Pending connections the listening socket queues (uvicorn's default is 2048; Linux caps it
at net.core.somaxconn, 4096 by default). A full queue drops SYNs and the client retries
only after 1 s, then 3 s: after a deploy or a Redis reset every browser reconnects at once
(docs/performance.md, reconnect storm)."""
SHUTDOWN_GRACE_S = 5
"""After SIGTERM uvicorn waits at most this long for connections to close, then cancels
what is left. Streams end within a second (the keepalive timer ends them; stuck ones are
reset); this only bounds what nothing else would."""


def run_server(app: Any, host: str, port: int, settings: Settings, **options: Any) -> None:
    """``uvicorn.run(app, ...)`` until the server exits, with the listen backlog
    (:data:`LISTEN_BACKLOG`), the shutdown grace (:data:`SHUTDOWN_GRACE_S`), the trusted
    proxies and request-head limits of ``settings`` (:func:`~broadcaster.serving.uvicorn_options`)
    and uvicorn's loggers going through ours (``log_config=None``: one format, JSON if
    asked); ``options`` are further ``uvicorn.run`` arguments."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        log_config=None,
        backlog=LISTEN_BACKLOG,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        **uvicorn_options(settings),
        **options,
    )


@app.command()
def serve(
    schedule: Annotated[
        Path | None, typer.Option(help="Schedule file (YAML) to import first.")
    ] = None,
    clock: ClockOption = None,
    speed: SpeedOption = None,
    demo: Annotated[bool, typer.Option(help="Mount the demo checkout.")] = False,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """API and worker in one process (embedded in-memory store without MAINTCAST_REDIS_URL)."""
    from broadcaster.app import create_app
    from worker.scheduler import running_worker

    settings = settings_or_fail()
    setup_logging(settings.log_format)
    the_clock = clock_or_fail(settings, clock, speed)
    if schedule is not None:
        validate_schedule_file(schedule, settings, the_clock)
    redis, embedded = connect(settings.redis_url)
    if embedded:
        log.warning(
            "MAINTCAST_REDIS_URL is not set: using an embedded in-memory store "
            "(one process only, nothing kept)"
        )

    @contextlib.asynccontextmanager
    async def imported(store: Store, clk: Clock) -> AsyncIterator[None]:
        if isinstance(clk, RehearsalClock):
            clk.restart()
        if schedule is not None:
            docs = await import_file(store, schedule, clk)
            log.info("imported %s: %d event(s)", schedule, len(docs))
        yield

    if isinstance(the_clock, RehearsalClock):
        log.info(
            "rehearsal clock: starts %s, speed x%s", the_clock.now().isoformat(), the_clock.speed
        )
    tokens = tokens_or_fail(settings)
    cleanup: tuple[Cleanup, ...] = ()
    if not tokens.configured:
        token = new_token()
        tokens = Tokens.parse(entry_line("serve-admin", "admin", token))
        try:
            cleanup = hand_over(token, sys.stdout)  # shown on a terminal, else a 0600 file
        except OSError as exc:
            fail(f"cannot write the one-time admin token to a private file: {exc}")

    notify = DeliveryConfig.from_settings(settings)

    def worker(store: Store, clk: Clock) -> contextlib.AbstractAsyncContextManager[Any]:
        return running_worker(store, clk, heal=healer(settings, store, clk), notify=notify)

    web = create_app(
        settings,
        redis=redis,
        clock=the_clock,
        background=(imported, worker, *cleanup),
        tokens=tokens,
        demo=demo,
    )
    try:
        run_server(web, host, port, settings)
    finally:
        asyncio.run(redis.aclose())


def api_factory() -> Any:
    """``uvicorn --factory`` entry: the API from environment settings, with its standby
    publisher (leads time-driven changes only while no ``maintcast worker`` does)."""
    from broadcaster.app import create_app
    from worker.scheduler import running_worker

    settings = Settings()
    setup_logging(settings.log_format)  # in each uvicorn worker process too
    configure(settings)  # the request-head limits of this worker process
    the_clock = clock_or_fail(settings, None, None)

    def standby(store: Store, clk: Clock) -> contextlib.AbstractAsyncContextManager[Any]:
        return running_worker(
            store,
            clk,
            role="standby",
            heal=healer(settings, store, clk),
            notify=DeliveryConfig.from_settings(settings),
        )

    return create_app(settings, clock=the_clock, background=(standby,))


@app.command()
def api(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (off behind a proxy that logs them).")
    ] = True,
    clock: ClockOption = None,
    speed: SpeedOption = None,
    clock_wall: ClockWallOption = None,
) -> None:
    """The API alone, on a shared Redis (MAINTCAST_REDIS_URL); also a standby publisher."""
    settings = settings_or_fail()
    setup_logging(settings.log_format)
    if not settings.redis_url:
        fail("maintcast api needs MAINTCAST_REDIS_URL (use `maintcast serve` for one process)")
    tokens_or_fail(settings)  # fail here, in one line, rather than in each uvicorn worker
    the_clock = clock_or_fail(settings, clock, speed, clock_wall)
    if settings.schedule_file is not None:
        validate_schedule_file(settings.schedule_file, settings, the_clock)
    if isinstance(the_clock, RehearsalClock):
        # uvicorn's worker processes build the app from the environment: hand them this
        # process's rehearsal clock, pinned to one wall instant so they all share it
        start, wall = the_clock.anchor
        os.environ["MAINTCAST_CLOCK"] = start.isoformat()
        os.environ["MAINTCAST_CLOCK_SPEED"] = repr(the_clock.speed)
        os.environ["MAINTCAST_CLOCK_WALL"] = repr(wall)
    run_server(
        "broadcaster.cli:api_factory",
        host,
        port,
        settings,
        factory=True,
        workers=workers,
        access_log=access_log,
    )


@worker_app.callback(invoke_without_command=True)
def worker(
    ctx: typer.Context,
    clock: ClockOption = None,
    speed: SpeedOption = None,
    clock_wall: ClockWallOption = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this port.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Run the scheduler worker on MAINTCAST_REDIS_URL until SIGTERM/SIGINT."""
    if ctx.invoked_subcommand is not None:
        return
    from worker.scheduler import running_worker

    settings = settings_or_fail()
    setup_logging(settings.log_format)
    if not settings.redis_url:
        fail("maintcast worker needs MAINTCAST_REDIS_URL")
    the_clock = clock_or_fail(settings, clock, speed, clock_wall)
    if settings.schedule_file is not None:
        validate_schedule_file(settings.schedule_file, settings, the_clock)
    if metrics_port is not None:
        from broadcaster.metrics import serve_metrics

        try:
            serve_metrics(metrics_port, metrics_host)
        except OSError as exc:
            fail(f"--metrics-port {metrics_port}: {exc.strerror}")

    async def run() -> None:
        redis, _ = connect(settings.redis_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            store = store_for(settings, redis, the_clock)
            async with running_worker(
                store,
                the_clock,
                heal=healer(settings, store, the_clock),
                notify=DeliveryConfig.from_settings(settings),
            ):
                log.info("worker running")
                await stop.wait()
        finally:
            await redis.aclose()
        log.info("worker stopped")

    asyncio.run(run())


@worker_app.command("check")
def worker_check() -> None:
    """Exit 0 if a worker heartbeat is fresh and the store has a catalog, else 1."""
    settings = settings_or_fail()

    async def run() -> tuple[bool, bool]:
        redis, _ = connect(settings.redis_url)
        try:
            store = store_for(settings, redis)
            return await store.worker_alive(), await store.has_catalog()
        finally:
            await redis.aclose()

    if not settings.redis_url:
        fail("needs MAINTCAST_REDIS_URL")
    try:
        alive, catalog = asyncio.run(run())
    except Exception as exc:
        fail(f"redis unreachable: {exc}")
    if not catalog:
        typer.echo("no catalog in the store (Redis restarted empty? import the schedule file)")
    typer.echo("worker alive" if alive else "no fresh worker heartbeat")
    raise typer.Exit(0 if alive and catalog else 1)


@windows_app.command("import")
def windows_import(
    file: Path,
    clock: ClockOption = None,
    speed: SpeedOption = None,
    clock_wall: ClockWallOption = None,
) -> None:
    """Import a schedule file straight into the store (all or nothing, idempotent by id),
    stamped at the process clock (a rehearsal's with --clock)."""
    settings = settings_or_fail()
    if not settings.redis_url:
        fail("windows import needs MAINTCAST_REDIS_URL (or use `maintcast serve --schedule`)")
    the_clock = clock_or_fail(settings, clock, speed, clock_wall)

    async def run() -> list[codec.Doc]:
        redis, _ = connect(settings.redis_url)
        try:
            return await import_file(store_for(settings, redis, the_clock), file, the_clock)
        finally:
            await redis.aclose()

    try:
        docs = asyncio.run(run())
    except ValueError as exc:
        fail(str(exc))
    except RECONNECT_ERRORS as exc:
        fail(f"redis unreachable: {exc}")
    for d in docs:
        typer.echo(f"seq {d['seq']}: {d['cause']['type']} {d['cause']['window_id'] or ''}".rstrip())
    typer.echo(f"imported {file}: {len(docs)} event(s)")
