"""What the fault scenarios share: a schedule a few seconds ahead, an SSE client that records
every status it receives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from httpx_sse import aconnect_sse

CATALOG = {
    "services": {
        "webcollect": {"methods": {"credit_card": {}, "cvs_online": {}}},
        "atobarai": {"methods": {"bank_transfer": {}}},
    }
}


def write_schedule(path: Path, starts_in_s: float, lasts_s: float) -> datetime:
    """A schedule with one window for webcollect starting ``starts_in_s`` from now."""
    starts = datetime.now(UTC) + timedelta(seconds=starts_in_s)
    window = {
        "id": "fault-window",
        "title": {"en": "fault drill"},
        "starts_at": starts.isoformat(timespec="milliseconds"),
        "ends_at": (starts + timedelta(seconds=lasts_s)).isoformat(timespec="milliseconds"),
        "affected": {"webcollect": ["*"]},
    }
    path.write_text(yaml.safe_dump({"catalog": CATALOG, "windows": [window]}), encoding="utf-8")
    return starts


class Client:
    """One SSE client that records every status it receives (seq, cause type, state)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.seen: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # Unix time each status arrived
        self.connections = 0

    async def run(self) -> None:
        timeout = httpx.Timeout(5, read=None)
        async with (
            httpx.AsyncClient(timeout=timeout) as http,
            aconnect_sse(http, "GET", f"{self.base}/v1/stream") as source,
        ):
            self.connections += 1
            async for ev in source.aiter_sse():
                if ev.data:
                    self.seen.append(orjson.loads(ev.data))
                    self.arrived.append(time.time())

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


@asynccontextmanager
async def client_of(base: str) -> AsyncIterator[Client]:
    client = Client(base)
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
