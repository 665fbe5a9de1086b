"""What the tests share, each helper once: paths and constants, bounded polling
(:func:`eventually`), the seed store, a running hub, a live uvicorn server, ASGI calls,
real processes (``maintcast`` subprocesses and ``redis-server``) and a recording SSE client.

``conftest.py`` holds the fixtures and imports from here; no test module imports another's
helpers. ``bench/`` reuses the processes, Redis, polling and the SSE client from here
(``bench/fanout.py``, ``bench/soak.py``, ``bench/status.py``).

Outside CI a test whose ``redis-server`` or browser is missing skips (:func:`need`); with
``CI=true`` it fails instead (nothing may be skipped in CI).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

import httpx
import orjson
import uvicorn
from httpx_sse import aconnect_sse

from broadcaster.aio import stop_task
from broadcaster.clock import Clock
from broadcaster.domain import Cause, Override
from broadcaster.gate import Rule
from broadcaster.hub import Hub
from broadcaster.keys import Keys
from broadcaster.metrics import REGISTRY
from broadcaster.settings import Settings
from broadcaster.store import Change, State, Store
from broadcaster.validation import Defaults, parse_schedule

T = TypeVar("T")
Doc = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "examples" / "webcollect-2021.yaml"
"""The seed notice (「クロネコwebコレクト」, 2021-08-09 01:00–06:00 JST)."""
ARTIFACTS = ROOT / "test-artifacts"
JST = timezone(timedelta(hours=9))
DEFAULTS = Defaults("Asia/Tokyo", "Z010000000", 604_800)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MAINTCAST = str(Path(sys.executable).parent / "maintcast")
"""The console script next to this interpreter (the venv's)."""
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def need(what: str, ok: bool) -> None:
    """Skip (outside CI) or fail (in CI) when a required service or binary is missing."""
    import pytest  # here, not at the top: bench/ imports this module and needs no pytest

    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is missing")
    pytest.skip(f"{what} not available")


# -- polling ---------------------------------------------------------------------------------


class _Poll:
    """One bounded poll of ``check``: the last value and the last ignored error, for the
    failure message."""

    def __init__(
        self,
        check: Callable[[], Any],
        timeout: float,
        interval: float,
        ignoring: tuple[type[BaseException], ...],
    ) -> None:
        self.check = check
        self.timeout = timeout
        self.interval = interval
        self.ignoring = ignoring
        self.last: Any = None
        self.error: BaseException | None = None

    def run(self) -> Any:
        """The first truthy value of ``check()``, or None once ``timeout`` passed."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                got = self.check()
            except self.ignoring as exc:
                self.error = exc
            else:
                if got:
                    return got
                self.last = got
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(self.interval, left))

    async def run_async(self) -> Any:
        """:meth:`run` on the event loop; ``check`` may return an awaitable. A check still
        running at the deadline is cancelled."""
        try:
            async with asyncio.timeout(self.timeout) as scope:
                while True:
                    try:
                        got = self.check()
                        if inspect.isawaitable(got):
                            got = await got
                    except self.ignoring as exc:
                        self.error = exc
                    else:
                        if got:
                            return got
                        self.last = got
                    await asyncio.sleep(self.interval)
        except TimeoutError:
            if not scope.expired():
                raise  # the check's own timeout, not ours
            return None

    def failure(self, what: str | None, detail: Callable[[], str] | str | None) -> AssertionError:
        text = f"timed out after {self.timeout:g} s waiting for {what or _describe(self.check)}"
        if self.error is not None:
            text += f" (last error: {self.error!r})"
        elif self.last not in (None, False):
            text += f" (last: {self.last!r:.200})"
        if detail is not None:
            text += "\n" + (detail() if callable(detail) else detail)
        return AssertionError(text)


def _describe(check: Callable[[], Any]) -> str:
    """A name for what ``check`` waits for: its qualified name, or a lambda's source."""
    name = getattr(check, "__qualname__", "")
    if name and "<lambda>" not in name:
        return name
    try:
        src = textwrap.dedent(inspect.getsource(check))
    except (OSError, TypeError):
        return repr(check)
    # the lambda's own text, when its lines parse on their own
    with contextlib.suppress(SyntaxError, StopIteration):
        node = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Lambda))
        src = ast.get_source_segment(src, node) or src
    return " ".join(src.split())[:160]


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T | None:
    """Call ``check`` every ``interval`` seconds until it returns something truthy and
    return that; None when it did not within ``timeout`` seconds (the last call starts
    before the deadline). An exception of the ``ignoring`` types counts as "not yet"; any
    other propagates."""
    got: T | None = _Poll(check, timeout, interval, ignoring).run()
    return got


@overload
async def poll_until_async(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    interval: float = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
) -> T | None: ...
@overload
async def poll_until_async(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
) -> T | None: ...
async def poll_until_async(
    check: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """:func:`poll_until` on the event loop: ``check`` may be a coroutine function (or
    return an awaitable); a check still running at the deadline is cancelled."""
    return await _Poll(check, timeout, interval, ignoring).run_async()


def eventually(
    check: Callable[[], T | None],
    what: str | None = None,
    *,
    timeout: float = 5.0,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
    detail: Callable[[], str] | str | None = None,
) -> T:
    """Poll ``check`` (a predicate or any callable) every ``interval`` seconds until it
    returns something truthy; return that value.

    Raises:
        AssertionError: not within ``timeout`` seconds. The message names ``what`` (default:
            the callable's name, or a lambda's source), the last value or ignored error,
            and ``detail`` (a string, or a callable called then: logs, what was seen).
    """
    poll = _Poll(check, timeout, interval, ignoring)
    got: T | None = poll.run()
    if got is None:
        raise poll.failure(what, detail)
    return got


@overload
async def eventually_async(
    check: Callable[[], Awaitable[T | None]],
    what: str | None = ...,
    *,
    timeout: float = ...,
    interval: float = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
    detail: Callable[[], str] | str | None = ...,
) -> T: ...
@overload
async def eventually_async(
    check: Callable[[], T | None],
    what: str | None = ...,
    *,
    timeout: float = ...,
    interval: float = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
    detail: Callable[[], str] | str | None = ...,
) -> T: ...
async def eventually_async(
    check: Callable[[], Any],
    what: str | None = None,
    *,
    timeout: float = 5.0,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
    detail: Callable[[], str] | str | None = None,
) -> Any:
    """:func:`eventually` on the event loop: ``check`` may be a coroutine function (or return
    an awaitable); a check still running at the deadline is cancelled.

    Raises:
        AssertionError: as :func:`eventually`.
    """
    poll = _Poll(check, timeout, interval, ignoring)
    got = await poll.run_async()
    if got is None:
        raise poll.failure(what, detail)
    return got


# -- time, stores, settings, metrics ---------------------------------------------------------


def jst(*args: int) -> datetime:
    """A JST wall time as an aware UTC instant: ``jst(2021, 8, 9, 1)``."""
    return datetime(*args).replace(tzinfo=JST).astimezone(UTC)  # type: ignore[arg-type]


class FixedClock:
    """A clock standing still at ``t`` (tests move it by assignment)."""

    speed = 1.0

    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t

    def wall_time_of(self, instant: datetime) -> datetime:
        return instant


def make_store(client: Any, prefix: str, *, grace_s: float = 5.0, retention: int = 10_000) -> Store:
    """A store over ``client`` under ``prefix`` with the seed's defaults."""
    return Store(client, keys=Keys(prefix), defaults=DEFAULTS, grace_s=grace_s, retention=retention)


async def import_example(store: Store, at: datetime) -> list[Doc]:
    """Import the seed notice (:data:`EXAMPLE`) into ``store`` as read at ``at``; returns the
    published statuses (``[seq 1]`` into an empty store)."""
    schedule = parse_schedule(EXAMPLE.read_text(), source="x", defaults=DEFAULTS, now=at)
    return await store.import_schedule(schedule, at)


def settings_for(redis_url: str | None, prefix: str, **kw: Any) -> Settings:
    """Settings pointing at ``redis_url`` under ``prefix`` (environment ignored)."""
    return Settings(redis_url=redis_url, key_prefix=prefix, **kw)


def metric_value(name: str, labels: dict[str, str] | None = None) -> float:
    """A sample of this process's metrics registry (``broadcaster.metrics.REGISTRY``) by its
    exposed name (a counter's ends in ``_total``); 0.0 when not exposed yet."""
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def set_override(st: State) -> Change:
    """A change for ``store.apply``: a maintenance override on everything (reason "drill")."""
    ov = Override(mode="maintenance", reason="drill", actor="t", set_at=jst(2021, 7, 1))
    return Change(Cause("override.set", None, "t", "drill"), override=ov, set_override=True)


def clear_override(st: State) -> Change:
    """A change for ``store.apply``: the override cleared."""
    return Change(Cause("override.cleared", None, "t", None), override=None, set_override=True)


# -- a running hub, a live server ------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_hub(
    store: Store, clock: Clock, *, audit_s: float | None = None, **hub_kw: Any
) -> AsyncIterator[Hub]:
    """A :class:`Hub` over ``store`` following its subscription for the block: ready (the
    first subscription confirmed and the snapshot read, within 5 s) when the block starts,
    cancelled after it. ``audit_s``: the seq audit's period (the hub's default if None);
    ``hub_kw`` go to :class:`Hub`.

    Raises:
        AssertionError: not ready in time, or ``run`` ended by itself during the block (an
            exception of ``run`` propagates).
    """
    hub = Hub(store, clock, **hub_kw)
    task = asyncio.create_task(hub.run() if audit_s is None else hub.run(audit_s=audit_s))
    try:
        assert await hub.wait_ready(5.0), "the hub was not ready within 5 s"
        yield hub
    finally:
        ended_by_itself = task.done()
        await stop_task(task, "hub")  # cancel until done: a read may swallow one cancel
    assert not ended_by_itself, "the hub's run() ended by itself"


@contextlib.asynccontextmanager
async def live_server(app: Any, port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a loopback port (default: ephemeral); yields its
    base URL. A fixed ``port`` lets a test restart a server on the same address."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    def started() -> bool:
        if task.done():
            task.result()  # start-up failed: its error
        return bool(server.started)

    await eventually_async(started, "uvicorn to start", timeout=10, interval=0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


# -- ASGI calls (the gate's tests) -----------------------------------------------------------


CARD = Rule("/api/token", "webcollect", "credit_card")
"""A gate rule on the seed notice's ``webcollect``/``credit_card``."""


async def ok_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """The guarded app: 200 "ok" for http; records every other scope it is handed."""
    if scope["type"] != "http":
        scope.setdefault("state", {})["reached"] = True
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


class Reply:
    """An HTTP answer read off the ASGI messages (header names lower-cased)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return orjson.loads(self.body)


async def call(
    app: Any, path: str = "/api/token", method: str = "POST", headers: dict[str, str] | None = None
) -> Reply:
    """One HTTP request straight through the ASGI interface."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    assert start["type"] == "http.response.start"
    hdrs = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return Reply(start["status"], hdrs, body)


async def at_instant(store: Store, hub: Hub, clock: FixedClock, t: datetime) -> None:
    """Move to ``t``: the worker's reconcile at ``t``, then the hub reads it."""
    clock.t = t
    await store.reconcile(t)
    await hub._resync()


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports from :func:`free_port`."""
    ports: list[int] = []
    while len(ports) < n:
        if (p := free_port()) not in ports:
            ports.append(p)
    return ports


def env_for(**extra: str) -> dict[str, str]:
    """This process's environment without any ``MAINTCAST_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTCAST_")}
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``maintcast ARGS`` to completion (stdout and stderr captured as text, stdin closed).

    Raises:
        subprocess.TimeoutExpired: it ran longer than ``timeout`` seconds.
    """
    return subprocess.run(
        [MAINTCAST, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def tail_of(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file under a header, for assertion messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"<{path.name}: unreadable>"
    return f"--- {path.name} (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


class Proc:
    """A subprocess owned by a test or a bench run: ``maintcast ARGS``, or ``exe ARGS``.

    Its stdout and stderr go to ``<logdir>/<name>.log`` (the n-th start's to
    ``<name>.<n>.log``; :attr:`log` is the current one), stdin is closed, and it runs in its
    own session: signals go to its whole process group (uvicorn's or nginx's workers too)
    and a Ctrl-C of the runner does not reach it. Started at once unless ``start=False``;
    :meth:`start` again after :meth:`kill` restarts it with the same arguments. ``env``
    None inherits this process's environment.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str] | None,
        logdir: Path,
        *,
        exe: str = MAINTCAST,
        start: bool = True,
        preexec_fn: Callable[[], object] | None = None,
    ) -> None:
        self.name, self.args, self.env, self.logdir = name, list(args), env, logdir
        self.exe, self.preexec_fn = exe, preexec_fn
        self.runs = 0
        self.frozen = False
        self._popen: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    @property
    def log(self) -> Path:
        n = max(1, self.runs)
        return self.logdir / (f"{self.name}.log" if n == 1 else f"{self.name}.{n}.log")

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The running (or last) process. Raises RuntimeError if never started."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> None:
        self.runs += 1
        self.frozen = False
        with self.log.open("wb") as out:  # the child holds its own copy of the descriptor
            self._popen = subprocess.Popen(
                [self.exe, *self.args],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=self.preexec_fn,
            )

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        return tail_of(self.log, lines)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL and reap (a crash); nothing when it is not running."""
        if self.alive():
            self._signal(signal.SIGKILL)
            self.proc.wait(10)
        self.frozen = False

    def freeze(self) -> None:
        """SIGSTOP (a GC pause, a VM freeze): it holds its sockets and does nothing."""
        self._signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.frozen and self.alive():
            self._signal(signal.SIGCONT)
        self.frozen = False

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (a frozen one is thawed first: it
        would not see SIGTERM); then whatever is left of its process group is killed."""
        if self.alive():
            self.thaw()
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(5)
        if self._popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    """Collects started processes; stops every one of them on exit."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in started:
            with contextlib.suppress(Exception):
                p.stop()


def tails(procs: list[Proc]) -> str:
    """The log tails of ``procs``, for assertion messages."""
    return "\n".join(p.tail() for p in procs)


async def wait_ready(
    client: httpx.AsyncClient,
    base: str,
    procs: list[Proc],
    timeout: float = 20,
    *,
    empty_store: bool = False,
) -> None:
    """Poll ``base``/readyz until 200 (bounded); fail with the logs if a process died.

    ``empty_store``: the test imports only after the processes are up, so a 503
    ``catalog_missing`` (ready but for the catalog) counts as up too.

    Raises:
        AssertionError: a process exited, or not ready within ``timeout`` seconds.
    """
    last = "no answer"

    async def ready() -> bool:
        nonlocal last
        for p in procs:
            assert p.alive(), f"{p.name} exited\n{p.tail()}"
        r = await client.get(f"{base}/readyz", timeout=1)
        last = f"{r.status_code} {r.text}"
        return r.status_code == 200 or (
            empty_store and r.status_code == 503 and "catalog_missing" in r.text
        )

    await eventually_async(
        ready,
        f"{base}/readyz",
        timeout=timeout,
        interval=0.1,
        ignoring=(httpx.HTTPError,),
        detail=lambda: f"last answer: {last}\n{tails(procs)}",
    )


# -- redis-server ----------------------------------------------------------------------------


def _pong(port: int) -> bool:
    """Whether a Redis on 127.0.0.1:``port`` answers PING (not while it loads its AOF)."""
    with (
        contextlib.suppress(OSError),
        socket.create_connection(("127.0.0.1", port), timeout=0.5) as s,
    ):
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


class RedisServer:
    """A ``redis-server`` on 127.0.0.1:``port`` (default: a free one) with its files and log
    under ``dir``, that its owner starts, kills, freezes and restarts on the same port and
    directory (with ``appendonly`` the data survives a kill). ``args``: more options (e.g.
    ``--maxclients``). :meth:`close` (or leaving a ``with`` block) kills it and removes
    ``dir``."""

    def __init__(
        self,
        dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = False,
        args: Sequence[str] = (),
    ) -> None:
        self.dir = dir
        self.port = free_port() if port is None else port
        self.dir.mkdir(parents=True, exist_ok=True)
        options = [
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if appendonly else "no", "--dir", str(self.dir),
            "--daemonize", "no", "--loglevel", "notice", *args,
        ]  # fmt: skip
        self.proc = Proc("redis", options, None, self.dir, exe="redis-server", start=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) it and wait until it answers PING.

        Raises:
            RuntimeError: it exited, or did not answer within ``timeout`` seconds.
        """
        self.proc.start()

        def up() -> bool:
            if not self.proc.alive():
                raise RuntimeError(f"redis-server on port {self.port} exited\n{self.proc.tail()}")
            return _pong(self.port)

        if not poll_until(up, timeout=timeout):
            raise RuntimeError(
                f"redis-server on port {self.port} did not start within {timeout:g} s\n"
                + self.proc.tail()
            )

    def kill(self) -> None:
        """SIGKILL (a crash); a frozen one too."""
        self.proc.kill()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        self.proc.freeze()

    def thaw(self) -> None:
        self.proc.thaw()

    def close(self) -> None:
        """Kill it and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_redis(appendonly: bool = False) -> RedisServer:
    """A started private redis-server in a fresh temporary directory (the caller closes it);
    skips or fails as :func:`need` when ``redis-server`` is not installed."""
    need("redis-server", shutil.which("redis-server") is not None)
    server = RedisServer(Path(tempfile.mkdtemp(prefix="maintcast-redis-")), appendonly=appendonly)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


# -- a recording SSE client ------------------------------------------------------------------


@dataclass
class Client:
    """An SSE client of ``base``/v1/stream that records every status it receives: the
    document in ``seen``, its arrival (Unix seconds, ``time.time()``) in ``arrived`` and the
    number of the connection it came on (1, 2, …) in ``connection_of``.

    With ``resume`` a stream that ends or fails is reopened with ``Last-Event-ID`` like a
    browser, after a pause drawn uniformly from ``retry_s`` (seconds), at most
    ``max_connections`` times; without it one stream only, whose error is raised. Errors
    are kept in ``errors`` (``"<unix time> <type>: <message>"``).
    """

    base: str
    resume: bool = False
    max_connections: int = 20
    retry_s: tuple[float, float] = (0.2, 0.2)
    seen: list[Doc] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    connection_of: list[int] = field(default_factory=list)
    connections: int = 0
    errors: list[str] = field(default_factory=list)

    async def run(self, until: float | None = None) -> None:
        """Read (and with ``resume`` reopen) the stream; with ``until`` (Unix seconds) no
        stream is opened after that instant."""
        timeout = httpx.Timeout(5, read=None)
        last_id: str | None = None
        async with httpx.AsyncClient(timeout=timeout) as http:
            while self.connections < self.max_connections and (
                until is None or time.time() < until
            ):
                headers = {"Last-Event-ID": last_id} if last_id is not None else {}
                try:
                    async with aconnect_sse(
                        http, "GET", f"{self.base}/v1/stream", headers=headers
                    ) as source:
                        self.connections += 1
                        async for ev in source.aiter_sse():
                            if ev.data:  # the opening `retry:` block dispatches nothing
                                self.seen.append(orjson.loads(ev.data))
                                self.arrived.append(time.time())
                                self.connection_of.append(self.connections)
                            if ev.id:
                                last_id = ev.id
                except (httpx.HTTPError, OSError) as exc:
                    self.errors.append(f"{time.time():.3f} {type(exc).__name__}: {exc}")
                    if not self.resume:
                        raise
                if not self.resume:
                    return
                await asyncio.sleep(random.uniform(*self.retry_s))

    def summary(self) -> list[tuple[int, str | None, str]]:
        """``(seq, cause type, state)`` of every status received."""
        return [(d["seq"], (d["cause"] or {}).get("type"), d["state"]) for d in self.seen]

    async def wait_for(
        self, predicate: Callable[[Doc], bool], timeout: float, what: str, logs: str
    ) -> None:
        """Wait (bounded) until a received status satisfies ``predicate``.

        Raises:
            AssertionError: none within ``timeout`` seconds (with the summary and ``logs``).
        """
        await eventually_async(
            lambda: any(predicate(d) for d in self.seen),
            what,
            timeout=timeout,
            detail=lambda: f"{self.summary()}\n{logs}",
        )

    async def wait_for_cause(self, cause_type: str, timeout: float, logs: str) -> None:
        """Wait (bounded) until a status caused by ``cause_type`` has arrived."""
        await self.wait_for(
            lambda d: (d["cause"] or {}).get("type") == cause_type, timeout, cause_type, logs
        )

    def arrival_of(self, cause_type: str) -> float:
        """When the first status of ``cause_type`` arrived (Unix seconds)."""
        i = next(i for i, d in enumerate(self.seen) if (d["cause"] or {}).get("type") == cause_type)
        return self.arrived[i]


@contextlib.asynccontextmanager
async def client_of(base: str, *, resume: bool = False) -> AsyncIterator[Client]:
    """A running :class:`Client` of ``base`` for the block (cancelled on exit)."""
    client = Client(base, resume=resume)
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def assert_clean_sequence(client: Client) -> None:
    """Seqs strictly increase by one (nothing lost, nothing twice) after the first status."""
    seqs = [d["seq"] for d in client.seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), client.summary()
