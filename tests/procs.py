"""Real ``maintcast`` subprocesses for end-to-end and fault tests (logs under tmp_path)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from tests.conftest import ROOT

MAINTCAST = str(Path(sys.executable).parent / "maintcast")


def tail_of(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"<{path.name}: unreadable>"
    return f"--- {path.name} (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


class Proc:
    """A ``maintcast`` subprocess with stdout+stderr in one log file under ``tmp_path``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], tmp_path: Path) -> None:
        self.name = name
        self.log = tmp_path / f"{name}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [MAINTCAST, *args],
            env=env,
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        return tail_of(self.log)

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            self._out.close()


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


def env_for(**extra: str) -> dict[str, str]:
    """The test's environment without any ``MAINTCAST_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTCAST_")}
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAINTCAST, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


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
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for p in procs:
            assert p.alive(), f"{p.name} exited\n{p.tail()}"
        try:
            r = await client.get(f"{base}/readyz", timeout=1)
            if r.status_code == 200:
                return
            if empty_store and r.status_code == 503 and "catalog_missing" in r.text:
                return
            last = f"{r.status_code} {r.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        await asyncio.sleep(0.1)
    pytest.fail(f"{base} not ready within {timeout} s ({last})\n{tails(procs)}")


class Client:
    """One SSE client that records every status it receives (seq, cause type, state) and
    when (Unix seconds, ``time.time()``, in ``arrived``).

    With ``resume`` a stream that ends or fails is reopened (at most ``max_connections``
    times, 0.2 s apart) with ``Last-Event-ID`` like a browser; without it one stream only.
    """

    def __init__(self, base: str, *, resume: bool = False, max_connections: int = 20) -> None:
        self.base = base
        self.resume = resume
        self.max_connections = max_connections
        self.seen: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self.connections = 0

    async def run(self) -> None:
        timeout = httpx.Timeout(5, read=None)
        last_id: str | None = None
        async with httpx.AsyncClient(timeout=timeout) as http:
            while self.connections < self.max_connections:
                headers = {"Last-Event-ID": last_id} if last_id is not None else {}
                try:
                    async with aconnect_sse(
                        http, "GET", f"{self.base}/v1/stream", headers=headers
                    ) as source:
                        self.connections += 1
                        async for ev in source.aiter_sse():
                            if ev.data:
                                self.seen.append(orjson.loads(ev.data))
                                self.arrived.append(time.time())
                            if ev.id:
                                last_id = ev.id
                except (httpx.HTTPError, OSError):
                    if not self.resume:
                        raise
                if not self.resume:
                    return
                await asyncio.sleep(0.2)

    async def wait_for_cause(self, cause_type: str, timeout: float, logs: str) -> None:
        """Wait (bounded) until a status caused by ``cause_type`` has arrived."""
        await self.wait_for(
            lambda d: (d["cause"] or {}).get("type") == cause_type, timeout, cause_type, logs
        )

    def arrival_of(self, cause_type: str) -> float:
        """When the first status of ``cause_type`` arrived (Unix seconds)."""
        i = next(i for i, d in enumerate(self.seen) if (d["cause"] or {}).get("type") == cause_type)
        return self.arrived[i]

    def summary(self) -> list[tuple[int, str | None, str]]:
        return [(d["seq"], (d["cause"] or {}).get("type"), d["state"]) for d in self.seen]

    async def wait_for(self, predicate: Any, timeout: float, what: str, logs: str) -> None:
        deadline = time.monotonic() + timeout
        while not any(predicate(d) for d in self.seen):
            assert time.monotonic() < deadline, (
                f"no {what} within {timeout} s: {self.summary()}\n{logs}"
            )
            await asyncio.sleep(0.05)


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
