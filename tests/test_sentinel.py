"""Redis Sentinel: a failover in the middle of a run of boundaries, with real processes.

A master, one replica and three sentinels (``tests/sentinels.py``), one ``maintcast worker``
and two ``maintcast api`` on ``redis+sentinel://…/m/0``, one SSE client per API. The master
is SIGKILLed right after one boundary and the next boundary falls inside the failover; the
clients must see every boundary's change exactly once, in order.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from tests.sentinels import SentinelSet
from tests.support import (
    Client,
    Proc,
    client_of,
    env_for,
    free_ports,
    need,
    processes,
    run_cli,
    tails,
    wait_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]

CATALOG: dict[str, Any] = {
    "services": {
        "webcollect": {"methods": {"credit_card": {}, "cvs_online": {}}},
        "atobarai": {"methods": {"bank_transfer": {}}},
    }
}
# (id, affected, start, end) in seconds after the import. The master is killed right after
# w1 ends (~+5.5 s); w2 starts inside the failover (down-after 1 s + election + reconnect)
# and ends long after it; w3 shows the new master carrying on.
WINDOWS: list[tuple[str, dict[str, list[str]], float, float]] = [
    ("w1", {"webcollect": ["credit_card"]}, 3.0, 5.5),
    ("w2", {"webcollect": ["*"]}, 7.0, 21.0),
    ("w3", {"atobarai": ["bank_transfer"]}, 23.0, 25.0),
]
OP, UM = "operational", "under_maintenance"
EXPECTED = [  # (state, webcollect credit_card, webcollect cvs_online, atobarai bank_transfer)
    ("maintenance", UM, OP, OP),  # w1 starts
    ("normal", OP, OP, OP),  # w1 ends; the master is killed
    ("maintenance", UM, UM, OP),  # w2 starts during the failover
    ("normal", OP, OP, OP),
    ("maintenance", OP, OP, UM),  # w3
    ("normal", OP, OP, OP),
]


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    """A master, one replica and three sentinels on loopback (every process killed after)."""
    need("redis-server", shutil.which("redis-server") is not None)
    s = SentinelSet(tmp_path / "redis")
    try:
        s.start()
        yield s
    finally:
        s.stop()


def write_schedule(path: Path) -> datetime:
    """The schedule of ``WINDOWS`` relative to now; returns the instant they count from."""
    t0 = datetime.now(UTC)
    windows = [
        {
            "id": wid,
            "title": {"en": f"sentinel drill {wid}"},
            "starts_at": (t0 + timedelta(seconds=a)).isoformat(timespec="milliseconds"),
            "ends_at": (t0 + timedelta(seconds=b)).isoformat(timespec="milliseconds"),
            "affected": affected,
        }
        for wid, affected, a, b in WINDOWS
    ]
    path.write_text(yaml.safe_dump({"catalog": CATALOG, "windows": windows}), encoding="utf-8")
    return t0


def ended(window_id: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a status is the end of ``window_id`` (on time or ``reconciled``)."""

    def check(d: dict[str, Any]) -> bool:
        cause = d["cause"] or {}
        return cause.get("window_id") == window_id and cause.get("type") in (
            "maintenance.ended",
            "reconciled",
        )

    return check


def view(d: dict[str, Any]) -> tuple[str, str, str, str]:
    wc, ab = d["components"]["webcollect"], d["components"]["atobarai"]
    return (d["state"], wc["credit_card"], wc["cvs_online"], ab["bank_transfer"])


def changes(client: Client) -> list[tuple[int, str | None, tuple[str, str, str, str]]]:
    """Time-driven events after the import, in arrival order (snapshots and the import's
    ``maintenance.scheduled`` left out; a ``resync`` kept: it must hold the right state)."""
    out = []
    for d in client.seen:
        kind = (d["cause"] or {}).get("type")
        if kind in (None, "maintenance.scheduled"):
            continue
        out.append((d["seq"], kind, view(d)))
    return out


@pytest.mark.timeout(90)
async def test_failover_during_a_run_of_boundaries(
    tmp_path: Path, sentinel_set: SentinelSet
) -> None:
    env = env_for(MAINTCAST_REDIS_URL=sentinel_set.url, MAINTCAST_KEY_PREFIX="sentinel")
    ports = free_ports(2)
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    schedule = tmp_path / "s.yaml"
    with processes() as procs:
        procs.append(Proc("worker", ["worker"], env, tmp_path))
        procs += [Proc(f"api{i}", ["api", "--port", str(p)], env, tmp_path)
                  for i, p in enumerate(ports, 1)]  # fmt: skip
        async with httpx.AsyncClient() as probe:
            for base in bases:
                await wait_ready(probe, base, procs, empty_store=True)

        def logs() -> str:
            return tails(procs)

        async with client_of(bases[0], resume=True) as c1, client_of(bases[1], resume=True) as c2:
            for c in (c1, c2):
                await c.wait_for(lambda d: d["seq"] >= 0, 5, "snapshot", logs())
            t0 = write_schedule(schedule)
            done = run_cli(["windows", "import", str(schedule)], env)
            assert done.returncode == 0, done.stdout + done.stderr
            await c1.wait_for(ended("w1"), 15, "w1's end", logs())

            old = sentinel_set.master()
            old.kill()
            killed, killed_at = time.time(), datetime.now(UTC)
            w2_start = t0 + timedelta(seconds=WINDOWS[1][2])
            assert killed_at < w2_start, "too slow: w2 started before the kill"
            boundary_s = (w2_start - killed_at).total_seconds()
            new_port = await asyncio.to_thread(sentinel_set.wait_failover, old.port)
            failover_s = time.time() - killed

            for c in (c1, c2):
                await c.wait_for(ended("w3"), 40, "w3's end", logs())

        r = redis.Redis(port=new_port, socket_timeout=2)
        try:
            log_len = r.xlen("{sentinel}:events")
            leader = r.get("{sentinel}:worker:leader")
        finally:
            r.close()
        report = []
        for name, c in (("api1", c1), ("api2", c2)):
            got = changes(c)
            # the first event after the kill that carries w2's start (a resync before it,
            # with the state of its moment, is allowed)
            after = [
                i for i, t in enumerate(c.arrived) if t > killed and view(c.seen[i]) == EXPECTED[2]
            ]
            first_s = c.arrived[after[0]] - killed if after else None
            assert first_s is not None, f"{name}: w2's start never came: {got}\n{logs()}"
            report.append(
                f"{name}: first event after the kill at +{first_s:.2f} s (w2's start was due"
                f" at +{boundary_s:.2f} s: {first_s - boundary_s:.2f} s late),"
                f" {c.connections} connection(s): {got}"
            )
            states = [v for _, kind, v in got if kind != "resync"]
            assert states == EXPECTED, f"{name}: {got}\n{logs()}"
            for k, (seq, kind, v) in enumerate(got):  # a resync, with the state of its moment
                if kind == "resync":
                    around = [w for _, kd, w in got[k - 1 : k] + got[k + 1 : k + 2] if kd != kind]
                    assert v in around, f"{name}: resync {seq} {v} between {around}: {got}"
            seqs = [s for s, kind, _ in got if kind != "resync"]
            assert seqs == sorted(set(seqs)), f"{name}: seqs {seqs}"
            # the start of w2 (due ~1.5 s after the kill) arrives once the worker and the
            # API are on the new master: failover + reconnect backoff (up to 3 s) + margin
            assert first_s < min(20.0, max(failover_s, boundary_s) + 5.0), "\n".join(report)
        print(
            f"\nsentinel failover: master killed, new master {new_port} after {failover_s:.2f} s;",
            *report,
            sep="\n  ",
        )
        # import (3 windows) + 6 time-driven changes, each once in the new master's log
        assert log_len == 3 + len(EXPECTED), log_len
        assert leader is not None
