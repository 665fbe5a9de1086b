"""Webhook deliveries per second, and the lag from an event to its first attempt, from one
``maintcast worker`` to ``--endpoints`` (100) local webhook endpoints.

- a private ``redis-server`` (``tests/support.py``), the seed notice imported;
- a receiver process (this script with ``--receiver``): one loopback port per endpoint, each
  a minimal HTTP/1.1 server that answers ``204`` at once on a kept-alive connection and
  records the arrival time (``time.time()``) and the ``webhook-id`` of every request (it
  does not verify signatures: the receiver must not be what is measured);
- one webhook subscription per endpoint (every event, no scope), then the real ``maintcast
  worker`` with the default settings (``MAINTCAST_NOTIFY_CONCURRENCY`` 64: at most one
  attempt per subscription, 64 in all);
- **paced**: ``--paced`` events (an override set, then cleared, alternately) ``--interval``
  seconds apart; each is fanned out to every subscription. Lag = arrival at the endpoint
  minus the event's instant (its ``as_of``, the same machine clock): p50 / p99 / max over
  every delivery;
- **burst**: ``--burst`` events published back to back: deliveries per second = all their
  deliveries / (last arrival - first event), and the lag under that backlog;
- the worker's CPU time (user + system, ``/proc``) per delivery in each phase: the figure
  that depends least on what else the machine runs.

Run: ``python bench/notify.py`` (about 30 s; ``-h`` for the flags). Results:
docs/performance.md "Notifications".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/: the processes and Redis the tests use too
from broadcaster import ops  # noqa: E402
from broadcaster.notify.subscriptions import SubscriptionIn, new_subscription  # noqa: E402
from broadcaster.store import Change, State, Store  # noqa: E402
from broadcaster.store.notify import NotifyStore  # noqa: E402
from tests.support import (  # noqa: E402
    Proc,
    env_for,
    import_example,
    make_store,
    poll_until,
    poll_until_async,
    start_redis,
)

PREFIX = "benchnotify"
_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")
_ID = re.compile(rb"(?im)^webhook-id:\s*(\S+)")


# -- the receiver process ---------------------------------------------------------------------


class Endpoint(asyncio.Protocol):
    """One connection to one endpoint: requests in, ``204`` out, one line per request."""

    def __init__(self, port: int, out: Any) -> None:
        self.port, self.out = port, out
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end]
            length = _LENGTH.search(head)
            total = end + 4 + (int(length[1]) if length else 0)
            if len(self.buf) < total:
                return
            found = _ID.search(head)
            wid = found[1].decode() if found else "-"
            self.out.write(f"{time.time():.6f} {self.port} {wid}\n")
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            self.buf = self.buf[total:]


async def receive(n: int, ports_file: Path, out_file: Path) -> None:
    """Serve ``n`` endpoints until SIGTERM; their ports go to ``ports_file`` (JSON)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    with out_file.open("w", buffering=1) as out:
        servers = []
        for _ in range(n):
            holder: dict[str, int] = {}
            server = await loop.create_server(
                lambda h=holder: Endpoint(h["port"], out),  # type: ignore[misc]
                "127.0.0.1",
                0,
                backlog=128,
            )
            holder["port"] = server.sockets[0].getsockname()[1]
            servers.append((holder["port"], server))
        tmp = ports_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([p for p, _ in servers]))
        tmp.rename(ports_file)
        await stop.wait()
        for _, server in servers:
            server.close()


# -- the run ----------------------------------------------------------------------------------


async def publish(store: Store, mode: str) -> tuple[int, float]:
    """Set (``maintenance``) or clear (``normal``) an override now; returns the event's seq
    and instant (Unix seconds)."""
    from broadcaster.clock import SystemClock

    now = SystemClock().now()

    def change(st: State) -> Change:
        if mode == "normal":
            return Change(ops.clear_override(st.override, {}, actor="bench"), set_override=True)
        raw = {"mode": "maintenance", "reason": "bench"}
        ov, cause = ops.set_override(raw, catalog=st.catalog, now=now, actor="bench", max_s=86400)
        return Change(cause, override=ov, set_override=True)

    doc = (await store.apply(now, change))[-1]
    return int(doc["seq"]), now.timestamp()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def arrivals(out_file: Path) -> list[tuple[float, int, str]]:
    rows = []
    for line in out_file.read_text().splitlines():
        t, port, wid = line.split()
        rows.append((float(t), int(port), wid))
    return rows


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(name: str, lags: list[float], cpu: float, rate: float | None = None) -> str:
    ms = [v * 1000 for v in lags]
    rate_text = f"{rate:10.0f}" if rate is not None else f"{'-':>10}"
    return (
        f"| {name:<7} | {len(ms):>10} | {rate_text} | {statistics.median(ms):8.1f} "
        f"| {pct(ms, 99):8.1f} | {max(ms):8.1f} | {cpu / len(ms) * 1000:6.2f} |"
    )


async def run(a: argparse.Namespace, redis_url: str, ports: list[int], out_file: Path) -> None:
    client: Any = aioredis.Redis.from_url(redis_url)
    store = make_store(client, PREFIX)
    notify = NotifyStore.of(store)
    from broadcaster.clock import SystemClock

    await import_example(store, SystemClock().now())
    for i, port in enumerate(ports):

        def make(seq: int, catalog: Any, i: int = i, port: int = port) -> Any:
            body = SubscriptionIn(
                id=f"e{i:03d}", kind="webhook", url=f"http://127.0.0.1:{port}/hook"
            )
            return new_subscription(
                body,
                catalog=catalog,
                now=SystemClock().now(),
                seq=seq,
                actor="bench",
                new_id=f"e{i:03d}",
                allow_http=False,
            )[0]

        await notify.add_subscription(make)
    env = env_for(MAINTCAST_REDIS_URL=redis_url, MAINTCAST_KEY_PREFIX=PREFIX)
    worker = Proc("worker", ["worker"], env, a.tmp)
    try:

        async def leads() -> bool:
            return bool(await client.get(store.keys.worker_leader))

        if not await poll_until_async(leads, timeout=30):
            raise RuntimeError("the worker did not take the lead:\n" + worker.tail())
        n = len(ports)
        events: dict[int, float] = {}
        cpu = [cpu_s(worker.pid)]

        async def delivered(count: int) -> bool:
            return len(arrivals(out_file)) >= count

        for i in range(a.paced):
            seq, at = await publish(store, "normal" if i % 2 else "maintenance")
            events[seq] = at
            await asyncio.sleep(a.interval)  # the pacing itself, not a wait for a result
        if not await poll_until_async(lambda: delivered(n * a.paced), timeout=120):
            raise RuntimeError(f"paced: {len(arrivals(out_file))} of {n * a.paced} arrived")
        cpu.append(cpu_s(worker.pid))
        burst: dict[int, float] = {}
        for i in range(a.burst):
            seq, at = await publish(store, "normal" if (a.paced + i) % 2 else "maintenance")
            burst[seq] = at
        total = n * (a.paced + a.burst)
        if not await poll_until_async(lambda: delivered(total), timeout=300):
            raise RuntimeError(f"burst: {len(arrivals(out_file))} of {total} arrived")
        cpu.append(cpu_s(worker.pid))
    finally:
        worker.stop()
        await client.aclose()
    report(a, n, out_file, events, burst, cpu)


def report(
    a: argparse.Namespace,
    n: int,
    out_file: Path,
    events: dict[int, float],
    burst: dict[int, float],
    cpu: list[float],
) -> None:
    """Print the lags from each event (publish instant, by seq: ``events`` paced, ``burst``)
    to its first arrival at each of the ``n`` endpoints, the burst's deliveries per second and
    the worker's CPU per delivery in each phase (``cpu``: its CPU seconds before, between and
    after the phases)."""
    paced = set(events)
    first: dict[tuple[int, str], float] = {}
    for t, port, wid in arrivals(out_file):
        first.setdefault((port, wid), t)
    lag_paced, lag_burst, burst_last = [], [], 0.0
    for (_, wid), t in first.items():
        seq = int(wid.removeprefix("msg_"))
        if seq in paced:
            lag_paced.append(t - events[seq])
        elif seq in burst:
            lag_burst.append(t - burst[seq])
            burst_last = max(burst_last, t)
    rate = len(lag_burst) / (burst_last - min(burst.values()))
    duplicates = len(arrivals(out_file)) - len(first)
    print(f"\n{n} endpoints, {a.paced} paced events ({a.interval:g} s apart), {a.burst} in a burst")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f}; duplicates: {duplicates}\n")
    if a.verbose:
        for seq in sorted(events):
            lags = [t - events[seq] for (_, wid), t in first.items() if wid == f"msg_{seq}"]
            print(f"event {seq}: lag p50 {statistics.median(lags) * 1000:.1f} ms")
    print(
        "| phase   | deliveries | per second | lag p50 ms | lag p99 ms | lag max ms "
        "| worker CPU ms per delivery |"
    )
    print("|---|---|---|---|---|---|---|")
    print(summary("paced", lag_paced, cpu[1] - cpu[0]))
    print(summary("burst", lag_burst, cpu[2] - cpu[1], rate))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoints", type=int, default=100)
    p.add_argument("--paced", type=int, default=10, help="events, --interval apart")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between paced events")
    p.add_argument("--burst", type=int, default=30, help="events published back to back")
    p.add_argument("--verbose", action="store_true", help="the lag of each paced event")
    p.add_argument("--keep-tmp", action="store_true", help="keep the logs and arrivals file")
    p.add_argument("--receiver", nargs=3, metavar=("N", "PORTS", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.receiver:
        n, ports_file, out_file = a.receiver
        asyncio.run(receive(int(n), Path(ports_file), Path(out_file)))
        return 0
    a.tmp = Path(tempfile.mkdtemp(prefix="maintcast-notify-"))
    ports_file, out_file = a.tmp / "ports.json", a.tmp / "arrivals.txt"
    with start_redis() as redis_server:
        script = str(Path(__file__).resolve())
        args = [script, "--receiver", str(a.endpoints), str(ports_file), str(out_file)]
        receiver = Proc("receiver", args, None, a.tmp, exe=sys.executable)
        try:
            if not poll_until(ports_file.exists, timeout=30):
                raise RuntimeError("the receiver did not start:\n" + receiver.tail())
            ports = json.loads(ports_file.read_text())
            asyncio.run(run(a, redis_server.url, ports, out_file))
        finally:
            receiver.stop()
    if a.keep_tmp:
        print(f"logs and arrivals: {a.tmp}")
    else:
        shutil.rmtree(a.tmp, ignore_errors=True)  # kept when the run failed, for its logs
    return 0


if __name__ == "__main__":
    sys.exit(main())
