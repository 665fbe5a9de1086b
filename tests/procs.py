"""Real ``maintcast`` subprocesses for end-to-end and fault tests (logs under tmp_path)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

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
