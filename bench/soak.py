"""Soak: a fast rehearsal of a long random schedule while workers and Redis are killed.

What it does, in one run (everything on 127.0.0.1, every process its own, all stopped on exit):

1. generates a seeded random schedule (``--windows``, default 380): random lengths, gaps,
   overlaps, windows that share a start, back-to-back windows that meet at one instant,
   several services and methods, every window announced (at import or at a random lead
   before its start, so announcements are boundaries too), about a third with a drain of
   one to three ticks (drain starts are boundaries: ``maintenance.draining``) and a third
   with a reserve (``latest_end``). Times sit on a grid of 5-minute ticks, so two distinct
   boundaries are at least ``--tick-real`` real seconds apart;
2. starts a private ``redis-server --appendonly yes`` on a free port and imports the file
   with ``maintcast windows import``;
3. starts two ``maintcast worker`` processes with the same ``--clock/--speed/--clock-wall``
   (one shared rehearsal clock) and one ``maintcast api`` (the API relays stored statuses and
   needs no clock), an SSE client that records every status with its real arrival time
   (reconnecting with ``Last-Event-ID`` like a browser), and a poller of ``/v1/status`` and
   ``/readyz`` (stale / not-ready periods);
4. injects faults at seeded random moments, bounded in count and spaced apart: SIGKILL of
   the leading worker and of the other worker (each restarted after a short random delay),
   SIGKILL of Redis (restarted on the same port and AOF directory after a short delay),
   SIGSTOP/SIGCONT of Redis, and SIGKILL of the API (restarted after a short delay; the
   client resumes with ``Last-Event-ID``). The fail-safe faults: SIGKILL of *every* worker
   at once (the API's standby publisher must take the lock and publish; the workers are
   restarted 4.5–8 s later and take the lock back), SIGSTOP of the lock-holding worker for
   2 to 2.7 times the lock TTL (6–8 s) then SIGCONT (another process takes over; the woken one must
   publish nothing), and ``FLUSHALL`` (a store reset: every process runs with
   ``MAINTCAST_SCHEDULE_FILE`` pointing at the soak's schedule, so the leader re-imports it;
   the log read in the same ``MULTI`` as the flush is kept as the epoch it ends). With
   ``--sentinel`` Redis is a master, one
   replica and three sentinels (``tests/sentinels.py``), every process uses
   ``redis+sentinel://…``, and the Redis fault is a *failover*: SIGKILL of the current master,
   the sentinels promote the replica, and the killed node comes back as a replica after a
   short delay (so the next failover has a replica to promote);
5. plays an operator (``--ops``, default 8): once every ``FLUSHALL`` is done (a re-import
   would undo its changes) and away from Redis faults, it extends a window in progress by
   one to three ticks (past its reserve too: an admin token) or ends one early, through
   ``POST /v1/windows/{id}/extend|end`` of the API; refusals (409: the window ended
   meanwhile, the API killed) are counted, not errors;
6. compares the event log (XRANGE) and what the client saw with the ground truth computed by
   the pure domain function (``compute_status`` at every instant of ``boundaries_after``
   over the windows read back from the store), collapsing boundaries that change nothing.
   With operator changes the truth is piecewise: each window as it was at each instant
   (its ``extended``/``ended_early`` history entries applied from their ``at`` on), and each
   change's instant is a change of the truth, published by the change itself.

Epochs (``redis_flush``). A FLUSHALL starts a new *epoch* of the store: seq restarts at 1,
the event log starts again, open streams are ended and clients reconnect and get a
``resync``. The log is judged epoch by epoch and the rules below run across the epochs in
order. An epoch after a flush must begin with the re-import (events whose actor is
``import:<file>``, one ``maintenance.scheduled`` per window, seq 1…N): those events are *not*
transitions (each carries the status over the windows imported so far, so a window already
past is no INVENTED change) and are not judged one by one; only the status after the last of
them is, and it must equal the ground truth at its ``as_of`` (``compute_status`` at that
instant), else RESET-WRONG. That status counts as the publication of the change it states
if nobody had published it before the flush, and is never a DUPLICATE of one published
before. The changes between the flush and the re-import cannot be published (empty store)
and count as ``superseded``. On the client a new epoch begins with the first status of a new
connection after a flush whose seq is not above what it had (or a ``resync``); seqs,
redeliveries and gaps are counted per epoch; a status of a later epoch that is no state of
the schedule but is in that epoch's log (a re-import half way) or has no components (the
emptied store, adopted by the API's 5 s audit before the re-import) is not INVENTED, but
the client's view is wrong until the next true one. A flush's time-to-correct is at least
the time until the client holds a status of the new epoch equal to the truth (``resync_s``).

Counts (all must be 0):
  MISSED        an expected change never published, although no fault touched the time it
                held, or it held for at least ``--settle`` real seconds outside every fault's
                effect window (changes that came and went entirely inside an outage cannot be
                published by anyone and are counted as ``superseded``, not missed: the next
                publish carries the state that holds then, typed ``reconciled`` when later
                than the misfire grace)
  DUPLICATE     one expected change published by two events (or the same status twice)
  OUT-OF-ORDER  a published change older than one published before it (or ``as_of`` going
                back, or a seq going back on the client's stream)
  INVENTED      a published time-driven status that is no state of the schedule
  RESET-WRONG   an epoch after a flush without a re-import, or whose re-imported status is
                not the ground truth at its ``as_of``
  REGRESSED     the client received a status of the re-import block (seq below the healed
                one) after it had received the healed status or a later one of that epoch

Time-to-correct, per fault: from the fault to the end of the last period (longer than
``--attr-min`` s) in which the client's view differed from the ground truth, or in which
``/v1/status`` answered ``stale: true``, that overlaps the fault (until 15 s after it was
undone); 0 when the view never went wrong (no boundary passed while the fault lasted).

Run (from the repository root, in the venv)::

    python bench/soak.py                                  # seed 1, 380 windows, ~8 min
    python bench/soak.py --seed 7 --json /tmp/soak.json
    python bench/soak.py --windows 80 --spacing 8 --leader-kills 1 --other-kills 0 \
        --redis-kills 1 --redis-freezes 0 --api-kills 1 --workers-kill-all 0 \
        --leader-freezes 0 --redis-flushes 1              # a ~2-minute smoke run, 4 faults
    python bench/soak.py --sentinel                       # failovers instead of Redis kills
    python bench/soak.py --windows 100 --leader-kills 0 --other-kills 0 --redis-kills 0 \
        --redis-freezes 0 --api-kills 0 --workers-kill-all 1 --leader-freezes 1 \
        --redis-flushes 1                                 # only the fail-safe faults, ~2 min

Exit status 0 when every count is 0, no seq was left undelivered on an open stream, and the
final state converged, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
import yaml

from broadcaster import codec
from broadcaster.auth import entry_line, new_token
from broadcaster.domain import Catalog, Window
from broadcaster.status import boundaries_after, compute_status
from worker.scheduler import KEEPALIVE_S, LEADER_TTL_S

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/: the processes, Redis and Sentinel set the tests use too
from tests.sentinels import SentinelSet  # noqa: E402
from tests.support import (  # noqa: E402
    Client,
    Proc,
    RedisServer,
    env_for,
    free_port,
    poll_until_async,
    run_cli,
    wait_ready,
)

TICK = timedelta(minutes=5)
"""The schedule's grid: every instant is T0 + n ticks."""
ZONE = "Asia/Tokyo"
PREFIX = "soak"
TIME_DRIVEN = {
    "maintenance.draining",
    "maintenance.started",
    "maintenance.ended",
    "maintenance.announced",
    "override.expired",
    "reconciled",
}
OPS_TYPES = {"maintenance.extended"}
"""Events of the operator's writes that are not time-driven (an early end is typed
``maintenance.ended``, like an end that came by itself)."""
OPS_CHANGES = ("extended", "ended_early")
CATALOG: dict[str, Any] = {
    "services": {
        "webcollect": {
            "name": {"ja": "クロネコwebコレクト", "en": "Kuroneko Web Collect"},
            "methods": {
                m: {"name": {"en": m}}
                for m in ("credit_card", "cvs_online", "carrier", "kuroneko_pay", "au_easy")
            },
        },
        "atobarai": {
            "name": {"ja": "クロネコ代金後払いサービス", "en": "Kuroneko Deferred Payment"},
            "methods": {
                m: {"name": {"en": m}}
                for m in ("credit_card", "cvs_online", "kuroneko_pay", "bank_transfer")
            },
        },
    }
}
EARLY_ANNOUNCE = datetime(2020, 1, 1, tzinfo=UTC)
"""``announce_at`` of windows public from the start: before both the real import time and
the rehearsal's T0, so the import's status and the status at T0 agree."""


# -- the schedule --------------------------------------------------------------------------


def make_schedule(
    rng: random.Random, n: int, t0: datetime, extras: random.Random | None = None
) -> tuple[dict[str, Any], int]:
    """A schedule file (as a dict) of ``n`` windows on the tick grid after ``t0``.

    ``extras`` (default: ``rng``) draws the drains and reserves, so a seed keeps the
    schedule's shape (and its faults' moments) whatever they add.

    Returns ``(schedule, last_tick)``. Shapes: a gap after the latest start, back-to-back
    (starts where an earlier window ends: one instant where one ends and the other starts),
    overlapping (starts inside an earlier window), same start as an earlier window.
    """
    services = {s: list(d["methods"]) for s, d in CATALOG["services"].items()}
    windows: list[dict[str, Any]] = []
    spans: list[tuple[int, int]] = []
    cursor, last = 4, 0
    for i in range(n):
        shape = rng.choices(["gap", "back_to_back", "overlap", "same_start"], [5, 3, 3, 1])[0]
        recent = spans[-4:]
        if shape == "back_to_back" and recent:
            start = rng.choice(recent)[1]
        elif shape == "overlap" and recent:
            lo, hi = rng.choice(recent)
            start = rng.randint(lo, hi - 1) if hi - lo > 1 else lo
        elif shape == "same_start" and recent:
            start = rng.choice(recent)[0]
        else:
            start = cursor + rng.randint(1, 4)
        length = rng.randint(1, 8) if rng.random() < 0.7 else rng.randint(9, 36)
        start = max(start, 4)
        cursor = max(cursor, start)
        spans.append((start, start + length))
        last = max(last, start + length)
        picked = rng.sample(sorted(services), rng.choice([1, 1, 1, 2]))
        affected: dict[str, list[str]] = {}
        for svc in picked:
            if rng.random() < 0.35:
                affected[svc] = ["*"]
            else:
                methods = services[svc]
                affected[svc] = sorted(rng.sample(methods, rng.randint(1, len(methods))))
        lead = rng.randint(1, 30)
        announce = (
            EARLY_ANNOUNCE
            if start - lead <= 0 or rng.random() < 0.15
            else t0 + (start - lead) * TICK
        )
        window: dict[str, Any] = {
            "id": f"soak-{i:04d}",
            "title": {"en": f"soak window {i}"},
            "starts_at": (t0 + start * TICK).isoformat(),
            "ends_at": (t0 + (start + length) * TICK).isoformat(),
            "timezone": ZONE,
            "announce_at": announce.isoformat(),
            "affected": affected,
            "error_code": f"Z01{i:07d}",
        }
        more = extras or rng
        if more.random() < 0.35:  # a drain of 1-3 ticks: its start is a boundary on the grid
            window["drain_s"] = int(TICK.total_seconds()) * more.randint(1, 3)
        if more.random() < 0.35:
            window["latest_end"] = (t0 + (start + length + more.randint(1, 4)) * TICK).isoformat()
        windows.append(window)
    return {"catalog": CATALOG, "windows": windows}, last


@dataclass
class Expected:
    """One distinct status of the ground truth: holds from ``at`` (clock) / ``wall`` (real)."""

    index: int
    at: datetime
    wall: float
    key: bytes
    state: str
    components: dict[str, dict[str, str]]
    boundaries: int = 1
    """How many boundary instants collapse into this change (meeting/no-op boundaries)."""


def status_key(doc: dict[str, Any]) -> bytes:
    """A status without ``seq``, ``as_of``, ``cause``, ``stale`` (what makes it a change)."""
    core = {k: v for k, v in doc.items() if k not in ("seq", "as_of", "cause", "stale")}
    return orjson.dumps(core, option=orjson.OPT_SORT_KEYS)


def versions(original: list[Window], final: list[Window], t0: datetime) -> dict[str, list[Window]]:
    """Each window as it was after each operator change: ``original`` (as imported) then its
    ``extended`` / ``ended_early`` history entries of ``final`` made after ``t0``, applied in
    order (a new end; an extension past ``latest_end`` moves it, as the API does). Each
    version's ``history`` holds the entries up to it (``at`` of the last = from when)."""
    now_of = {w.id: w for w in final}
    out: dict[str, list[Window]] = {}
    for w in original:
        chain = [w]
        done = list(w.history)
        ops = [h for h in now_of.get(w.id, w).history if h.change in OPS_CHANGES and h.at >= t0]
        for h in sorted(ops, key=lambda h: h.at):
            assert h.to is not None
            last = chain[-1]
            latest = last.latest_end
            if h.change == "extended" and latest is not None:
                latest = max(latest, h.to.ends_at)
            done.append(h)
            chain.append(
                last.model_copy(
                    update={"ends_at": h.to.ends_at, "latest_end": latest, "history": tuple(done)}
                )
            )
        out[w.id] = chain
    return out


def windows_at(chains: dict[str, list[Window]], at: datetime) -> list[Window]:
    """Every window as it was at ``at`` (its latest version whose change is at or before)."""
    out = []
    for chain in chains.values():
        now = chain[0]
        for v in chain[1:]:
            if v.history[-1].at <= at:
                now = v
        out.append(now)
    return out


def ground_truth(
    catalog: Catalog,
    windows: list[Any],
    t0: datetime,
    wall0: float,
    speed: float,
    error: str,
    final: list[Any] | None = None,
) -> tuple[list[Expected], int]:
    """The distinct statuses, in order, from ``t0`` on, by the pure domain function.

    Returns ``(changes, boundaries)``: ``changes[0]`` is the status at ``t0``; each later one
    is a boundary (from ``boundaries_after``) whose status differs from the one before.
    With ``final`` (the windows read back at the end) the operator's changes are applied
    from their instants on (:func:`versions`), and each change's instant is a boundary.
    """
    chains = versions(windows, final or windows, t0)
    changes = sorted(v.history[-1].at for c in chains.values() for v in c[1:])

    def doc_at(now: datetime) -> dict[str, Any]:
        ws = windows_at(chains, now)
        core = compute_status(catalog, ws, None, now, default_error_code=error)
        return codec.status_doc(core, seq=0, now=now, cause=None, zone=ZONE)

    first = doc_at(t0)
    out = [Expected(0, t0, wall0, status_key(first), first["state"], first["components"])]
    every = {b for c in chains.values() for b in boundaries_after(c, None, t0)}
    instants = sorted(every | {t for t in changes if t > t0})
    for b in instants:
        d = doc_at(b)
        key = status_key(d)
        if key == out[-1].key:
            out[-1].boundaries += 1
            continue
        wall = wall0 + (b - t0).total_seconds() / speed
        out.append(Expected(len(out), b, wall, key, d["state"], d["components"]))
    return out, len(instants)


# -- processes -----------------------------------------------------------------------------


class SingleBackend:
    """One private redis-server (AOF on) that the soak kills, freezes and restarts on the
    same port and directory; ``url`` and ``data_url`` are the same."""

    def __init__(self, workdir: Path) -> None:
        self.server = RedisServer(workdir / "redis", appendonly=True)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def data_url(self) -> str:
        """Where the data is now (the soak's own reads)."""
        return self.server.url

    def start(self) -> None:
        self.server.start(timeout=20)  # an AOF to reload

    def kill(self) -> None:
        self.server.kill()


class SentinelBackend:
    """Redis as a master, one replica and three sentinels; ``url`` is ``redis+sentinel://``."""

    def __init__(self, workdir: Path) -> None:
        self.set = SentinelSet(workdir / "redis")

    @property
    def url(self) -> str:
        return self.set.url

    @property
    def data_url(self) -> str:
        """The current master (the soak's own reads)."""
        return f"redis://127.0.0.1:{self.set.master_port()}/0"

    def start(self) -> None:
        self.set.start()

    def kill(self) -> None:
        self.set.stop()


Backend = SingleBackend | SentinelBackend


# -- the client and the poller -------------------------------------------------------------


@dataclass
class Seen:
    """One status the client received: when (Unix seconds), on which connection, and what."""

    t: float
    conn: int
    seq: int
    as_of: str
    cause: str | None
    state: str
    stale: bool
    key: bytes
    components: dict[str, dict[str, str]]


def seen_by(client: Client) -> list[Seen]:
    """What ``client`` recorded, in arrival order."""
    return [
        Seen(
            t,
            conn,
            d["seq"],
            d["as_of"],
            (d.get("cause") or {}).get("type"),
            d["state"],
            bool(d.get("stale")),
            status_key(d),
            d["components"],
        )
        for d, t, conn in zip(client.seen, client.arrived, client.connection_of, strict=True)
    ]


Sample = tuple[float, bool | None, int | None]
"""A poller sample: (Unix time, ``stale`` or None if no answer, ``/readyz`` code or None)."""


@dataclass
class Poller:
    """Polls ``/v1/status`` (stale) and ``/readyz`` every ``every`` seconds."""

    base: str
    every: float = 0.25
    samples: list[Sample] = field(default_factory=list)

    async def run(self, until: float) -> None:
        async with httpx.AsyncClient(timeout=1.0) as http:
            for _ in range(int((until - time.time()) / self.every) + 10):
                if time.time() >= until:
                    return
                stale: bool | None = None
                ready: int | None = None
                try:
                    r = await http.get(f"{self.base}/v1/status")
                    stale = bool(r.json().get("stale")) if r.status_code == 200 else None
                    ready = (await http.get(f"{self.base}/readyz")).status_code
                except (httpx.HTTPError, OSError, ValueError):
                    pass
                self.samples.append((time.time(), stale, ready))
                await asyncio.sleep(self.every)


# -- faults --------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str  # worker_kill_leader | worker_kill_other | workers_kill_all | leader_freeze
    # | redis_kill | redis_freeze | redis_flush | api_kill | failover
    at: float  # planned real time
    hold: float  # seconds until restart / SIGCONT
    started: float = 0.0
    undone: float = 0.0
    detail: str = ""
    takeover_s: float | None = None
    """Leader kill / freeze, every worker killed: until another process holds the lock;
    failover: until a new master; flush: until the schedule file was re-imported."""
    ttc_s: float = 0.0
    wrong_s: float = 0.0
    stale_s: float = 0.0
    superseded: int = 0
    log_rows: list[Any] | None = None
    """redis_flush: the event log (XRANGE) read in the same MULTI as the FLUSHALL: the epoch
    it ends."""
    resync_s: float | None = None
    """redis_flush: until the client held a status of the new epoch equal to the truth."""


HOLD_S = {
    "worker_kill_leader": (0.5, 4.0),
    "worker_kill_other": (0.5, 4.0),
    "workers_kill_all": (LEADER_TTL_S + 1.5, LEADER_TTL_S + 5.0),
    "leader_freeze": (2 * LEADER_TTL_S, 2 * LEADER_TTL_S + 2.0),
    "redis_flush": (0.0, 0.0),
}
"""Real seconds a fault lasts (uniform in the range); other kinds 1–5 s."""


def plan_faults(
    rng: random.Random, begin: float, end: float, counts: dict[str, int], spacing: float
) -> list[Fault]:
    """Seeded fault moments in ``[begin, end]``, at least ``spacing`` seconds apart."""
    kinds = [k for k, n in counts.items() for _ in range(n)]
    rng.shuffle(kinds)
    if not kinds:
        return []
    slot = (end - begin) / len(kinds)
    if slot < spacing:
        raise SystemExit(
            f"{len(kinds)} faults do not fit {end - begin:.0f} s {spacing} s apart"
            " (more --windows, or fewer faults)"
        )
    out = []
    for i, kind in enumerate(kinds):
        at = begin + i * slot + rng.uniform(0, slot - spacing * 0.8)
        hold = rng.uniform(*HOLD_S.get(kind, (1.0, 5.0)))
        out.append(Fault(kind, at, hold))
    return out


async def lock_holder(url: str) -> str | None:
    """The leader lock's holder id (``host:pid:hex`` or ``host:pid:hex:standby``)."""
    r: Any = redis.asyncio.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        holder = await asyncio.wait_for(r.get(f"{{{PREFIX}}}:worker:leader"), 2)
        return holder.decode() if holder else None
    except (redis.RedisError, OSError, TimeoutError, UnicodeDecodeError):
        return None
    finally:
        await r.aclose()


def pid_of(holder: str | None) -> int | None:
    try:
        return int(holder.split(":")[1]) if holder else None
    except (ValueError, IndexError):
        return None


async def leader_pid(url: str) -> int | None:
    return pid_of(await lock_holder(url))


async def wait_holder(
    server: Backend, ok: Callable[[str | None], bool], timeout: float = 15.0
) -> str | None:
    """Poll the lock every 50 ms until ``ok(holder)``; the holder, or None on timeout."""

    async def holder_if_ok() -> str | None:
        holder = await lock_holder(await asyncio.to_thread(lambda: server.data_url))
        return holder if ok(holder) else None

    return await poll_until_async(holder_if_ok, timeout=timeout)


def flush_all(url: str) -> list[Any]:
    """XRANGE the event log and FLUSHALL in one MULTI: the log of the epoch that ends."""
    r: Any = redis.Redis.from_url(url, socket_timeout=10)
    try:
        pipe = r.pipeline(transaction=True)
        pipe.xrange(f"{{{PREFIX}}}:events")
        pipe.flushall()
        rows, _ = pipe.execute()
        return list(rows)
    finally:
        r.close()


def healed(url: str) -> bool:
    """Whether the store has a catalog and a published status again (the re-import)."""
    r: Any = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(r.exists(f"{{{PREFIX}}}:catalog")) and bool(r.get(f"{{{PREFIX}}}:seq"))
    except (redis.RedisError, OSError):
        return False
    finally:
        r.close()


async def healed_async(url: str) -> bool:
    """:func:`healed`, off the event loop."""
    return await asyncio.to_thread(healed, url)


def held_by_none_of(pids: Collection[int | None]) -> Callable[[str | None], bool]:
    """A test of the lock's holder: held, by a process whose pid is not in ``pids``."""

    def ok(holder: str | None) -> bool:
        return (pid := pid_of(holder)) is not None and pid not in pids

    return ok


def held_by_one_of(pids: Collection[int]) -> Callable[[str | None], bool]:
    """A test of the lock's holder: held by a process whose pid is in ``pids``."""
    return lambda holder: pid_of(holder) in pids


@dataclass
class Targets:
    """What the faults act on: the Redis backend, the worker processes and the API process."""

    server: Backend
    workers: list[Proc]
    api: Proc


async def kill_worker(f: Fault, t: Targets) -> None:
    """SIGKILL the lock-holding worker (``worker_kill_leader``; the other one when nobody
    holds the lock, the fault then renamed ``worker_kill_other``) or a non-leader, and
    restart it after the hold; ``takeover_s``: until another process holds the lock."""
    lead = await leader_pid(await asyncio.to_thread(lambda: t.server.data_url))
    leader = next((w for w in t.workers if w.pid == lead), None)
    target = leader if f.kind == "worker_kill_leader" else None
    if target is None:
        target = next((w for w in t.workers if w.pid != lead), t.workers[0])
        if f.kind == "worker_kill_leader":
            f.kind = "worker_kill_other"  # nobody held the lock at that moment
    f.detail = f"{target.name} pid {target.pid}" + (" (leader)" if target is leader else "")
    f.started = time.time()
    await asyncio.to_thread(target.kill)
    # the other worker takes the lock over: how fast
    if target is leader and await wait_holder(t.server, held_by_none_of([lead]), 10.0):
        f.takeover_s = time.time() - f.started
    await asyncio.sleep(max(0.0, f.started + f.hold - time.time()))
    target.start()
    f.undone = time.time()


async def kill_all_workers(f: Fault, t: Targets) -> None:
    """SIGKILL every worker, restart them after the hold; ``takeover_s``: until the API's
    standby holds the lock (once the workers' lapses)."""
    pids = [w.pid for w in t.workers]
    f.started = time.time()
    await asyncio.gather(*(asyncio.to_thread(w.kill) for w in t.workers))
    # the API's standby publisher takes the lock once it lapses: how fast
    holder = await wait_holder(t.server, held_by_none_of(pids), timeout=f.hold)
    if holder is not None:
        f.takeover_s = time.time() - f.started
    await asyncio.sleep(max(0.0, f.started + f.hold - time.time()))
    for w in t.workers:
        w.start()
    f.undone = time.time()
    who = "api standby" if holder and holder.endswith(":standby") else holder
    f.detail = (
        f"workers pid {', '.join(map(str, pids))} killed; {who} leads;"
        f" restarted after {f.undone - f.started:.1f} s"
    )


async def freeze_leader(f: Fault, t: Targets) -> None:
    """SIGSTOP the lock-holding worker (the first worker when none leads within 6 s), SIGCONT
    after the hold; ``takeover_s``: until another process holds the lock."""
    # the lock holder should be a worker (one leads whenever one runs): wait for it
    by_pid = {w.pid: w for w in t.workers}
    holder = await wait_holder(t.server, held_by_one_of(by_pid), timeout=6.0)
    holder_pid = pid_of(holder)
    target = by_pid.get(holder_pid) if holder_pid is not None else None
    note = " (leader)"
    if target is None:
        target, note = t.workers[0], " (no worker led: a non-leader)"
    frozen_pid = target.pid
    f.started = time.time()
    await asyncio.to_thread(target.freeze)
    got = await wait_holder(t.server, held_by_none_of([frozen_pid]), timeout=f.hold)
    if got is not None:
        f.takeover_s = time.time() - f.started
    await asyncio.sleep(max(0.0, f.started + f.hold - time.time()))
    await asyncio.to_thread(target.thaw)
    f.undone = time.time()
    by = "" if got is None else " by api standby" if got.endswith(":standby") else ""
    if got is not None and not by:
        other = by_pid.get(pid) if (pid := pid_of(got)) is not None else None
        by = f" by {other.name}" if other is not None else ""
    f.detail = f"SIGSTOP {target.name} pid {frozen_pid}{note} {f.undone - f.started:.1f} s;" + (
        " lock taken" + by if got is not None else " lock not taken"
    )


async def flush_redis(f: Fault, t: Targets) -> None:
    """FLUSHALL (keeping the event log it ends in ``log_rows``); ``takeover_s``: until the
    leader re-imported the schedule file (at most 15 s)."""
    url = await asyncio.to_thread(lambda: t.server.data_url)
    f.started = time.time()
    f.log_rows = await asyncio.to_thread(flush_all, url)
    # the leader re-imports MAINTCAST_SCHEDULE_FILE: how fast
    if await poll_until_async(functools.partial(healed_async, url), timeout=15.0):
        f.takeover_s = time.time() - f.started
    f.undone = time.time()
    last = int(f.log_rows[-1][0].split(b"-")[0]) if f.log_rows else 0
    f.detail = f"FLUSHALL at seq {last};" + (
        f" re-imported after {f.takeover_s:.2f} s"
        if f.takeover_s is not None
        else " NOT re-imported within 15 s"
    )


async def kill_api(f: Fault, t: Targets) -> None:
    """SIGKILL the API process and restart it after the hold (the client resumes)."""
    f.started = time.time()
    await asyncio.to_thread(t.api.kill)
    await asyncio.sleep(f.hold)
    t.api.start()
    f.undone = time.time()
    f.detail = f"api down {f.undone - f.started:.1f} s; client resumes (Last-Event-ID)"


async def fail_over(f: Fault, t: Targets) -> None:
    """Kill the Sentinel set's master; ``takeover_s``: until a replica is promoted; the old
    master comes back as a replica after the hold."""
    server = t.server
    assert isinstance(server, SentinelBackend)
    old = await asyncio.to_thread(server.set.master)
    f.started = time.time()
    await asyncio.to_thread(old.kill)
    new = await asyncio.to_thread(server.set.wait_failover, old.port)
    f.undone = time.time()
    f.takeover_s = f.undone - f.started
    await asyncio.sleep(f.hold)
    await asyncio.to_thread(server.set.restart_as_replica, old)
    f.detail = (
        f"master :{old.port} killed, :{new} promoted after {f.takeover_s:.1f} s;"
        f" old back as replica after {f.hold:.1f} s"
    )


async def kill_redis(f: Fault, t: Targets) -> None:
    """SIGKILL the single redis-server and restart it after the hold (its AOF reloaded)."""
    server = t.server
    assert isinstance(server, SingleBackend)
    f.started = time.time()
    await asyncio.to_thread(server.kill)
    await asyncio.sleep(f.hold)
    await asyncio.to_thread(server.start)
    f.undone = time.time()
    f.detail = f"down {f.undone - f.started:.1f} s (AOF reload)"


async def freeze_redis(f: Fault, t: Targets) -> None:
    """SIGSTOP the single redis-server, SIGCONT after the hold."""
    server = t.server
    assert isinstance(server, SingleBackend)
    f.started = time.time()
    server.server.freeze()
    await asyncio.sleep(f.hold)
    server.server.thaw()
    f.undone = time.time()
    f.detail = f"SIGSTOP {f.undone - f.started:.1f} s"


INJECTORS: dict[str, Callable[[Fault, Targets], Awaitable[None]]] = {
    "worker_kill_leader": kill_worker,
    "worker_kill_other": kill_worker,
    "workers_kill_all": kill_all_workers,
    "leader_freeze": freeze_leader,
    "redis_flush": flush_redis,
    "api_kill": kill_api,
    "failover": fail_over,
    "redis_kill": kill_redis,
    "redis_freeze": freeze_redis,
}
"""How each fault kind is injected (and undone); each fills the fault's times and detail."""


async def inject(
    faults: list[Fault],
    server: Backend,
    workers: list[Proc],
    api: Proc,
    log: list[str],
) -> None:
    """Run the planned faults at their moments (sequentially, each undone before the next)."""
    targets = Targets(server, workers, api)
    for f in faults:
        await asyncio.sleep(max(0.0, f.at - time.time()))
        await INJECTORS[f.kind](f, targets)
        log.append(f"{f.started:.3f} {f.kind} {f.detail} hold {f.hold:.1f}s")


# -- analysis ------------------------------------------------------------------------------


REDIS_FAULTS = ("redis_kill", "redis_freeze", "failover", "redis_flush")


def redis_fault_near(faults: list[Fault], now: float) -> bool:
    """Whether a Redis fault is under way or due within 3 s (a write then could be lost
    with the AOF's last second, or undone by a re-import)."""
    return any(
        f.kind in REDIS_FAULTS
        and ((f.started and not f.undone) or (-1.0 <= f.at - now <= 3.0 and not f.started))
        for f in faults
    )


async def operate(
    rng: random.Random,
    wanted: int,
    base: str,
    token: str,
    faults: list[Fault],
    windows: list[Window],
    clock: Callable[[float], datetime],
    stop_at: float,
    log: list[dict[str, Any]],
) -> None:
    """The operator: until ``wanted`` changes were accepted or ``stop_at`` (Unix seconds),
    every 2-6 s extend (by 1-3 ticks, an admin token: past the reserve too) or end early a
    window in progress with more than a tick left, through the API. Waits while a FLUSHALL
    is still to come (its re-import would undo the change) or a Redis fault is near.
    Appends one entry per attempt to ``log`` (``status`` an HTTP status or an error name)."""
    current = {w.id: w for w in windows}
    headers = {"Authorization": f"Bearer {token}"}
    accepted = 0
    async with httpx.AsyncClient(timeout=2) as http:
        while accepted < wanted and time.time() < stop_at:
            await asyncio.sleep(rng.uniform(2.0, 6.0))
            real = time.time()
            pending_flush = any(f.kind == "redis_flush" and not f.undone for f in faults)
            if pending_flush or redis_fault_near(faults, real):
                continue
            now = clock(real)
            live = sorted(
                (w for w in current.values() if w.starts_at <= now and w.ends_at - now > TICK),
                key=lambda w: w.id,
            )
            if not live:
                continue
            w = rng.choice(live)
            if rng.random() < 0.6:
                op, body = "extend", {"by_s": TICK.total_seconds() * rng.randint(1, 3)}
            else:
                op, body = "end", {}
            entry: dict[str, Any] = {"window": w.id, "op": op, **body}
            try:
                r = await http.post(
                    f"{base}/v1/windows/{w.id}/{op}",
                    json={**body, "reason": "soak"},
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                log.append({**entry, "status": type(exc).__name__})
                continue
            log.append({**entry, "status": r.status_code})
            if r.status_code == 200:
                accepted += 1
                current[w.id] = codec.window_from_doc(r.json())


def effect_window(f: Fault) -> tuple[float, float]:
    """Real time during which this fault may keep anyone from publishing (plus recovery)."""
    if f.kind in ("worker_kill_other", "api_kill"):
        return (f.started, f.started)
    if f.kind in ("worker_kill_leader", "workers_kill_all", "leader_freeze"):
        return (f.started, f.started + LEADER_TTL_S + 2 * KEEPALIVE_S + 1.0)
    if f.kind == "redis_flush":  # nothing to publish from until the re-import
        return (f.started, f.started + (15.0 if f.takeover_s is None else f.takeover_s) + 1.0)
    return (f.started, f.undone + 7.0)  # reconnect backoff (5 s) + re-subscribe + reconcile


def outside(a: float, b: float, windows: list[tuple[float, float]]) -> float:
    """Length of ``[a, b)`` not covered by ``windows``."""
    covered = 0.0
    for s, e in sorted(windows):
        lo, hi = max(a, s), min(b, e)
        if hi > lo:
            covered += hi - lo
    return max(0.0, (b - a) - covered)


def intervals_where(flags: list[tuple[float, bool]], end: float) -> list[tuple[float, float]]:
    """The periods ``[start, stop)`` in which ``flags`` (time-ordered ``(t, on)``) are on;
    one still on at the last flag lasts until ``end``."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for t, on in flags:
        if on and start is None:
            start = t
        elif not on and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, end))
    return out


def truth_at(exp: list[Expected], at: datetime) -> int:
    """The index of the ground-truth status that holds at clock instant ``at``."""
    idx = 0
    for x in exp:
        if x.at > at:
            break
        idx = x.index
    return idx


Interval = tuple[float, float]


@dataclass
class Run:
    """What :func:`analyse` judges: the ground truth (``exp``), the store's event log epoch by
    epoch (``epochs``: the first up to the first FLUSHALL, …, the last read at the end; the
    initial import ends at ``import_seq``), what the client received, what the poller
    sampled, the faults, the run's real instants (Unix seconds: the clock's T0 ``origin``,
    the ``end``) and thresholds (real seconds: ``--settle``, ``--attr-min``)."""

    exp: list[Expected]
    epochs: list[list[dict[str, Any]]]
    import_seq: int
    seen: list[Seen]
    connections: int
    client_errors: list[str]
    samples: list[Sample]
    faults: list[Fault]
    end: float
    settle: float
    attr_min: float
    origin: float
    key_index: dict[bytes, int] = field(init=False)
    """A status key -> the index of that ground-truth status."""

    def __post_init__(self) -> None:
        self.key_index = {e.key: e.index for e in self.exp}

    def flushes(self) -> list[float]:
        """When each FLUSHALL happened (Unix seconds), in order."""
        return sorted(f.started for f in self.faults if f.kind == "redis_flush")


# -- the rules on the event log --


@dataclass
class LogEvent:
    """One time-driven event of the log as the rules see it."""

    epoch: int
    doc: dict[str, Any]
    index: int | None
    """The ground-truth index of its status; None: no state of the schedule."""
    repeated: bool
    """The same status as the event before it."""
    went_back: bool
    """Its ``as_of`` is before one published before it."""


@dataclass
class LogReading:
    """The event log judged epoch by epoch (:func:`read_log`)."""

    published: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Ground-truth index -> the event that published it first (``healed``: a re-import)."""
    duplicate: list[dict[str, Any]] = field(default_factory=list)
    invented: list[dict[str, Any]] = field(default_factory=list)
    out_of_order: list[dict[str, Any]] = field(default_factory=list)
    reset_wrong: list[dict[str, Any]] = field(default_factory=list)
    heals: list[dict[str, Any]] = field(default_factory=list)
    """Each re-import: its epoch, the seq of its last event, its index and the one wanted."""
    not_time_driven: list[int] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)
    seq_gaps: int = 0
    reimport_events: int = 0
    judged: int = 0
    last: dict[str, Any] | None = None
    """The store's last status (for convergence)."""
    highest: int = 0
    """The highest ground-truth index published in order so far."""
    last_as_of: datetime | None = None
    last_key: bytes | None = None

    def advance(self, as_of: datetime) -> bool:
        """Note a published ``as_of``; whether it goes back before the latest one."""
        went_back = self.last_as_of is not None and as_of < self.last_as_of
        self.last_as_of = as_of if self.last_as_of is None else max(as_of, self.last_as_of)
        return went_back


def seq_gaps(n: int, events: list[dict[str, Any]]) -> int:
    """Seqs of epoch ``n`` that do not follow the one before (an epoch after a flush starts
    at seq 1)."""
    seqs = [e["seq"] for e in events]
    gaps = sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
    return gaps + (1 if n and seqs and seqs[0] != 1 else 0)


def split_reimport(
    n: int, events: list[dict[str, Any]], import_seq: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Epoch ``n``'s events as (the re-import of MAINTCAST_SCHEDULE_FILE: its leading events
    of actor ``import:<file>``, the rest). The first epoch has no re-import; its events up
    to ``import_seq`` are the initial import, not judged."""
    if n == 0:
        return [], [e for e in events if e["seq"] > import_seq]
    k = next(
        (i for i, e in enumerate(events) if not str(e["actor"]).startswith("import:")),
        len(events),
    )
    return events[:k], events[k:]


def judge_reimport(run: Run, log: LogReading, n: int, block: list[dict[str, Any]]) -> None:
    """RESET-WRONG: epoch ``n`` (after a flush) must begin with a re-import whose last
    status is the ground truth at its ``as_of``. A right one publishes that change if
    nobody did before the flush, and is never a duplicate."""
    log.reimport_events += len(block)
    if not block:
        log.reset_wrong.append({"epoch": n, "why": "no re-import after the flush"})
        return
    healed = block[-1]
    as_of = codec.parse_wire_instant(healed["as_of"])
    want = truth_at(run.exp, as_of)
    got = run.key_index.get(healed["key"])
    log.heals.append({"epoch": n, "seq": healed["seq"], "index": got, "want": want})
    if got != want:
        log.reset_wrong.append(
            {"epoch": n, "seq": healed["seq"], "as_of": healed["as_of"], "index": got, "want": want}
        )
    else:
        log.published.setdefault(want, {**healed, "healed": True})
        log.highest = max(log.highest, want)
        log.advance(as_of)
    log.last_key = healed["key"]
    log.last = healed


def duplicate(log: LogReading, ev: LogEvent) -> dict[str, Any] | None:
    """DUPLICATE: the same status as the event before, or a change already published
    (other than by a re-import)."""
    where = {"epoch": ev.epoch, "seq": ev.doc["seq"]}
    if ev.repeated:
        return {**where, "why": "same status as the event before"}
    first = log.published.get(ev.index) if ev.index is not None else None
    if first is not None and not first.get("healed"):
        return {**where, "index": ev.index, "first_seq": first["seq"]}
    return None


def invented(ev: LogEvent) -> dict[str, Any] | None:
    """INVENTED: a published time-driven status that is no state of the schedule."""
    if ev.index is not None:
        return None
    return {
        "epoch": ev.epoch,
        "seq": ev.doc["seq"],
        "type": ev.doc["type"],
        "as_of": ev.doc["as_of"],
    }


def out_of_order(log: LogReading, ev: LogEvent) -> dict[str, Any] | None:
    """OUT-OF-ORDER: a change older than one published before it, or ``as_of`` going back."""
    if ev.index is None or (ev.index >= log.highest and not ev.went_back):
        return None
    return {
        "epoch": ev.epoch,
        "seq": ev.doc["seq"],
        "index": ev.index,
        "after_index": log.highest,
        "as_of": ev.doc["as_of"],
    }


def judge_event(run: Run, log: LogReading, n: int, e: dict[str, Any]) -> None:
    """One time-driven event of epoch ``n``, counted under the first rule it breaks
    (:func:`duplicate`, :func:`invented`, :func:`out_of_order`); else it publishes the next
    change of the ground truth."""
    log.judged += 1
    log.last = e
    log.by_type[e["type"]] = log.by_type.get(e["type"], 0) + 1
    if e["type"] not in TIME_DRIVEN | OPS_TYPES:
        log.not_time_driven.append(e["seq"])
    went_back = log.advance(codec.parse_wire_instant(e["as_of"]))
    ev = LogEvent(n, e, run.key_index.get(e["key"]), e["key"] == log.last_key, went_back)
    log.last_key = e["key"]
    if (found := duplicate(log, ev)) is not None:
        log.duplicate.append(found)
    elif (found := invented(ev)) is not None:
        log.invented.append(found)
    elif (found := out_of_order(log, ev)) is not None:
        log.out_of_order.append(found)
        log.published.setdefault(found["index"], e)  # published, late
    else:
        assert ev.index is not None
        log.highest = ev.index
        log.published[ev.index] = e


def read_log(run: Run) -> LogReading:
    """The event log judged epoch by epoch, in order: its seq gaps, each re-import
    (:func:`judge_reimport`) and each time-driven event (:func:`judge_event`)."""
    log = LogReading()
    for n, events in enumerate(run.epochs):
        log.seq_gaps += seq_gaps(n, events)
        block, rest = split_reimport(n, events, run.import_seq)
        if n:
            judge_reimport(run, log, n, block)
        for e in rest:
            judge_event(run, log, n, e)
    return log


def missed(
    run: Run, published: dict[int, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """MISSED: changes of the ground truth nobody published although they held ``settle``
    seconds outside every fault's effect window (or no fault touched them). Returns
    ``(missed, superseded, optional)``: superseded changes held only inside faults (nobody
    could publish them); optional ones held outside them for less than ``settle``."""
    effects = [effect_window(f) for f in run.faults]
    out: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]] = ([], [], [])
    missing, superseded, optional = out
    for i, x in enumerate(run.exp[1:], start=1):
        if i in published:
            continue
        hold_end = run.exp[i + 1].wall if i + 1 < len(run.exp) else run.end
        free = outside(x.wall, hold_end, effects)
        info = {
            "index": i,
            "at": x.at.isoformat(),
            "held_s": round(hold_end - x.wall, 3),
            "outside_faults_s": round(free, 3),
        }
        if free >= run.settle or free >= hold_end - x.wall - 1e-6:  # or untouched by any fault
            missing.append(info)
        elif free <= 0:
            superseded.append(info)
        else:
            optional.append(info)
    return out


def count_superseded(run: Run, superseded: list[dict[str, Any]]) -> None:
    """Each fault's ``superseded``: the unpublishable changes inside its effect window."""
    for f in run.faults:
        lo, hi = effect_window(f)
        f.superseded = sum(1 for s in superseded if lo <= run.exp[s["index"]].wall <= hi)


# -- the rules on the client --


@dataclass
class ClientReading:
    """The client's statuses, deduplicated, epoch by epoch (:func:`client_epochs`)."""

    epochs: list[list[Seen]]
    redelivered: int
    """Statuses whose seq the client already had in that epoch (dropped from ``epochs``)."""
    went_back: int
    """Statuses whose seq is below one received before in that epoch."""


def client_epochs(run: Run) -> ClientReading:
    """REDELIVERED and OUT-OF-ORDER on the client, epoch by epoch. A new epoch starts with
    the first status of a new connection, after a FLUSHALL not yet accounted for, whose seq
    is not above what the client had (or that is a resync)."""
    pending = run.flushes()
    epochs: list[list[Seen]] = [[]]
    redelivered = went_back = 0
    seen_seqs: set[int] = set()
    prev: Seen | None = None
    for got in run.seen:
        cur = epochs[-1]
        top = max((g.seq for g in cur), default=-1)
        new_conn = prev is not None and got.conn != prev.conn
        prev = got
        if (
            new_conn
            and pending
            and pending[0] < got.t
            and (got.seq <= top or got.cause == "resync")
        ):
            pending.pop(0)
            epochs.append([])
            cur = epochs[-1]
            seen_seqs = set()
            top = -1
        if got.seq in seen_seqs:
            redelivered += 1
            continue
        if got.seq < top:
            went_back += 1
        seen_seqs.add(got.seq)
        cur.append(got)
    return ClientReading(epochs, redelivered, went_back)


def delivery_gaps(run: Run, epochs: list[list[Seen]]) -> list[tuple[int, int]]:
    """DELIVERY GAPS: ``(epoch, seq)`` of each seq of an epoch's log, from the client's
    first status of that epoch on, that never reached the client."""
    gaps: list[tuple[int, int]] = []
    for n, (mine, events) in enumerate(zip(epochs, run.epochs, strict=False)):
        if mine and events:
            have = {g.seq for g in mine}
            lost = set(range(mine[0].seq, events[-1]["seq"] + 1)) - have
            gaps += sorted((n, q) for q in lost)
    return gaps


def judged_statuses(
    run: Run, epochs: list[list[Seen]], heal_seq: dict[int, int]
) -> Iterator[tuple[int, Seen, bool]]:
    """``(epoch, status, half_way)`` of the client's statuses after the initial import;
    ``half_way``: of a re-import half way (a seq below the healed one of its epoch), no
    state of the schedule whatever it says."""
    for n, mine in enumerate(epochs):
        for g in mine:
            if n == 0 and g.seq < run.import_seq:
                continue
            yield n, g, bool(n) and g.seq < heal_seq.get(n, 0)


def client_view(
    run: Run, epochs: list[list[Seen]], heal_seq: dict[int, int]
) -> list[tuple[float, int | None]]:
    """``(arrival, ground-truth index)`` of each status the client received; None for a
    status of an epoch after a flush that is no state of the schedule (the emptied store,
    a re-import half way): the client's view is wrong until the next known one."""
    return [
        (g.t, None if half_way else run.key_index.get(g.key))
        for _, g, half_way in judged_statuses(run, epochs, heal_seq)
    ]


def client_invented(
    run: Run, epochs: list[list[Seen]], heal_seq: dict[int, int]
) -> tuple[int, int]:
    """INVENTED on the client: ``(statuses that are no state of the schedule and not in the
    log, statuses of the emptied store)``; the latter (no components, adopted by the API's
    audit before the re-import) are not invented."""
    log_keys = {e["key"] for events in run.epochs for e in events}
    invented_n = empty = 0
    for _, g, half_way in judged_statuses(run, epochs, heal_seq):
        if half_way or g.key in run.key_index:
            continue
        if not g.components:
            empty += 1
        elif g.key not in log_keys:
            invented_n += 1
    return invented_n, empty


def regressed(run: Run, epochs: list[list[Seen]], heal_seq: dict[int, int]) -> list[dict[str, Any]]:
    """REGRESSED: a status of the re-import block (seq below the healed one) that the client
    received after it had the healed status or a later one of that epoch."""
    out: list[dict[str, Any]] = []
    top: dict[int, int] = {}
    for n, g, half_way in judged_statuses(run, epochs, heal_seq):
        if half_way and top.get(n, 0) >= heal_seq.get(n, 0):
            out.append({"epoch": n, "seq": g.seq, "after_seq": top.get(n, 0)})
        top[n] = max(top.get(n, 0), g.seq)
    return out


def resync_times(run: Run, epochs: list[list[Seen]]) -> None:
    """Each flush's ``resync_s``: until the client held a status of the new epoch equal to
    the ground truth (None: never)."""
    flushes = run.flushes()
    for f in run.faults:
        if f.kind != "redis_flush":
            continue
        n = 1 + sum(1 for t in flushes if t < f.started)
        for g in epochs[n] if n < len(epochs) else []:
            idx = run.key_index.get(g.key)
            if idx is not None and idx == max(x.index for x in run.exp if x.wall <= g.t):
                f.resync_s = g.t - f.started
                break


def lags(run: Run, view: list[tuple[float, int | None]]) -> list[tuple[int, float]]:
    """``(index, lag s)``: the first arrival of a status at or past each change of the
    ground truth, minus the change's real time (until the first change never reached)."""
    out: list[tuple[int, float]] = []
    arrivals = [(t, i) for t, i in view if i is not None]
    j, best = 0, -1
    for x in run.exp[1:]:
        while best < x.index and j < len(arrivals):
            best = max(best, arrivals[j][1])
            j += 1
        if best < x.index:
            break
        out.append((x.index, arrivals[j - 1][0] - x.wall))
    return out


def calm_lags(run: Run, lag: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The lags of changes away from every fault (from 1 s before it to 15 s after it was
    undone)."""
    return [
        (idx, s)
        for idx, s in lag
        if not any(
            f.started - 1.0 <= run.exp[idx].wall <= (f.undone or f.started) + 15.0
            for f in run.faults
        )
    ]


def wrong_periods(run: Run, view: list[tuple[float, int | None]]) -> list[Interval]:
    """Periods longer than ``attr_min`` in which the client's view (the latest change it
    received) differed from the ground truth."""
    points: list[tuple[float, int, int]] = [(x.wall, 0, x.index) for x in run.exp]
    points += [(t, 1, -2 if i is None else i) for t, i in view]
    points.sort()
    truth = seen = -1
    flags: list[tuple[float, bool]] = []
    for t, what, i in points:
        if what == 0:
            truth = i
        else:
            seen = -2 if i == -2 else max(seen, i)
        flags.append((t, truth != seen and truth >= 0))
    return [w for w in intervals_where(flags, run.end) if w[1] - w[0] > run.attr_min]


def time_to_correct(run: Run, wrong: list[Interval], stale: list[Interval]) -> None:
    """Each fault's ``ttc_s`` (to the end of the last wrong or stale period overlapping it,
    until 15 s after it was undone or the next fault; a flush: at least its ``resync_s``),
    ``wrong_s`` and ``stale_s``."""
    starts = sorted(f.started for f in run.faults)
    for f in run.faults:
        lo, hi = f.started, (f.undone or f.started) + 15.0
        hi = min([hi, *(t for t in starts if t > f.started)])  # the next fault's are its own
        mine = [w for w in wrong if w[1] > lo and w[0] < hi]
        mine_stale = [w for w in stale if w[1] > lo and w[0] < hi]
        ends = [w[1] for w in mine + mine_stale]
        f.ttc_s = max(0.0, max(ends) - f.started) if ends else 0.0
        if f.kind == "redis_flush":  # the new epoch's first right status counts too
            f.ttc_s = max(f.ttc_s, 1e9 if f.resync_s is None else f.resync_s)
        f.wrong_s = sum(b - a for a, b in mine)
        f.stale_s = sum(b - a for a, b in mine_stale)


def converged(
    run: Run, last: dict[str, Any] | None, view: list[tuple[float, int | None]]
) -> dict[str, bool]:
    """Whether the store's last status and the client's last one are the final truth."""
    final_truth = max(x.index for x in run.exp if x.wall <= run.end)
    return {
        "log": last is not None and run.key_index.get(last["key"]) == final_truth,
        "client": bool(view) and view[-1][1] == final_truth,
    }


def percentile(xs: list[float], p: float) -> float | None:
    """The ``p`` quantile of sorted ``xs`` (rounded to ms); None when empty."""
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 3) if xs else None


def analyse(run: Run) -> dict[str, Any]:
    """The soak's report: the counts (all must be 0, see the module docstring) and their
    details, the client's and the log's numbers, lags and stale periods. Sets each fault's
    ``superseded``, ``resync_s``, ``ttc_s``, ``wrong_s`` and ``stale_s``."""
    assert len(run.key_index) == len(run.exp), "ground-truth statuses must be distinct"
    log = read_log(run)
    missing, superseded, optional = missed(run, log.published)
    count_superseded(run, superseded)

    client = client_epochs(run)
    gaps = delivery_gaps(run, client.epochs)
    heal_seq = {h["epoch"]: h["seq"] for h in log.heals}
    view = client_view(run, client.epochs, heal_seq)
    invented_on_client, empty_seen = client_invented(run, client.epochs, heal_seq)
    went_back_to_heal = regressed(run, client.epochs, heal_seq)
    resync_times(run, client.epochs)

    calm_pairs = calm_lags(run, lags(run, view))
    calm = sorted(s for _, s in calm_pairs)
    stale = intervals_where([(t, bool(st)) for t, st, _ in run.samples], run.end)
    unready = intervals_where([(t, rd != 200) for t, _, rd in run.samples], run.end)
    time_to_correct(run, wrong_periods(run, view), stale)
    dedup = [g for mine in client.epochs for g in mine]
    return {
        "counts": {
            "missed": len(missing),
            "duplicate": len(log.duplicate),
            "out_of_order": len(log.out_of_order) + client.went_back,
            "invented": len(log.invented) + invented_on_client,
            "reset_wrong": len(log.reset_wrong),
            "regressed": len(went_back_to_heal),
        },
        "log": {
            "epochs": len(run.epochs),
            "events_total": sum(len(e) for e in run.epochs),
            "import_events": run.import_seq,
            "reimport_events": log.reimport_events,
            "reimports": log.heals,
            "time_driven_events": log.judged,
            "by_type": log.by_type,
            "seq_gaps": log.seq_gaps,
            "not_time_driven_after_import": log.not_time_driven,
        },
        "client": {
            "statuses_received": len(run.seen),
            "distinct_seqs": len(dedup),
            "redelivered_deduplicated": client.redelivered,
            "seqs_missing": len(gaps),
            "seqs_missing_list": gaps[:50],
            "component_changes": sum(
                1 for a, b in itertools.pairwise(dedup) if a.components != b.components
            ),
            "connections": run.connections,
            "went_back": client.went_back,
            "epochs": len(client.epochs),
            "empty_store_statuses": empty_seen,
            "errors": run.client_errors[-5:],
        },
        "superseded_in_faults": len(superseded),
        "optional_unpublished": len(optional),
        "optional_detail": optional[:20],
        "missed_detail": missing[:20],
        "duplicate_detail": log.duplicate[:20],
        "out_of_order_detail": log.out_of_order[:20],
        "invented_detail": log.invented[:20],
        "reset_wrong_detail": log.reset_wrong[:20],
        "regressed_detail": went_back_to_heal[:20],
        "lag_calm_s": {
            "n": len(calm),
            "p50": percentile(calm, 0.5),
            "p99": percentile(calm, 0.99),
            "max": round(calm[-1], 3) if calm else None,
        },
        "expected_component_changes": sum(
            1 for a, b in itertools.pairwise(run.exp) if a.components != b.components
        ),
        "lag_outliers": [
            {"index": idx, "at_s": round(run.exp[idx].wall - run.origin, 2), "lag_s": round(s, 3)}
            for idx, s in calm_pairs
            if s > run.attr_min
        ][:20],
        "stale_periods": [
            {"at_s": round(a - run.origin, 2), "s": round(b - a, 2)} for a, b in stale
        ],
        "unready_periods": [
            {"at_s": round(a - run.origin, 2), "s": round(b - a, 2)} for a, b in unready
        ],
        "converged": converged(run, log.last, view),
    }


# -- the run -------------------------------------------------------------------------------


def read_rows(url: str) -> list[Any]:
    r: Any = redis.Redis.from_url(url, socket_timeout=10)
    try:
        return list(r.xrange(f"{{{PREFIX}}}:events"))
    finally:
        r.close()


def parse_log(rows: list[Any]) -> list[dict[str, Any]]:
    out = []
    for _, fields in rows:
        entry = orjson.loads(fields[b"e"])
        status = orjson.loads(fields[b"s"])
        out.append(
            {
                "seq": entry["seq"],
                "type": entry["type"],
                "window_id": entry["window_id"],
                "actor": entry.get("actor"),
                "as_of": status["as_of"],
                "state": status["state"],
                "key": status_key(status),
            }
        )
    return out


def read_store(url: str) -> tuple[Catalog, list[Any], int]:
    r: Any = redis.Redis.from_url(url, socket_timeout=10)
    try:
        raw = r.hgetall(f"{{{PREFIX}}}:windows")
        cat = r.get(f"{{{PREFIX}}}:catalog")
        seq = int(r.get(f"{{{PREFIX}}}:seq") or 0)
    finally:
        r.close()
    windows = [codec.window_from_doc(orjson.loads(v)) for v in raw.values()]
    return Catalog.model_validate_json(cat), windows, seq


async def run_until(
    end: float, injector: asyncio.Task[None], client: Client, faults: list[Fault]
) -> None:
    """Wait until the real instant ``end`` (bounded), one progress line per 30 s; a failed
    fault injector is raised at once."""
    shown = int(end - time.time()) // 30
    for _ in range(int(end - time.time()) + 5):
        if time.time() >= end:
            break
        if injector.done() and injector.exception():
            raise injector.exception()  # type: ignore[misc]
        await asyncio.sleep(1)
        left = end - time.time()
        if int(left) // 30 < shown:
            shown = int(left) // 30
            print(
                f"  … {left:.0f} s left, client has {len(client.seen)} statuses, "
                f"faults done: {sum(1 for f in faults if f.undone)}",
                flush=True,
            )


async def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    t0 = datetime(2030, 1, 7, 0, 0, tzinfo=UTC)  # after the real import time: all upcoming
    speed = TICK.total_seconds() / args.tick_real
    schedule, last_tick = make_schedule(rng, args.windows, t0, random.Random(args.seed + 2))
    path = workdir / "schedule.yaml"
    path.write_text(yaml.safe_dump(schedule, allow_unicode=True, sort_keys=False), "utf-8")

    server: Backend = SentinelBackend(workdir) if args.sentinel else SingleBackend(workdir)
    token = new_token()
    ops_rng = random.Random(args.seed + 1)  # the faults' moments stay as without operator
    ops_log: list[dict[str, Any]] = []
    procs: list[Proc] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        server.start()
        env = env_for(
            MAINTCAST_REDIS_URL=server.url,
            MAINTCAST_KEY_PREFIX=PREFIX,
            MAINTCAST_TIMEZONE=ZONE,
            MAINTCAST_SCHEDULE_FILE=str(path),  # the leader re-imports it after a FLUSHALL
            MAINTCAST_TOKENS=entry_line("soak-ops", "admin", token),  # the operator's
        )
        done = run_cli(["windows", "import", str(path)], env, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"import failed: {done.stdout}{done.stderr}")
        catalog, windows, import_seq = read_store(server.data_url)
        if {w.id for w in windows} != {w["id"] for w in schedule["windows"]}:
            raise RuntimeError("the store does not hold the generated windows")
        await asyncio.sleep(1.2)  # appendfsync everysec: let the AOF cover the import

        wall0 = time.time() + args.lead
        clock_args = [
            "--clock",
            t0.isoformat(),
            "--speed",
            repr(speed),
            "--clock-wall",
            repr(wall0),
        ]
        exp, n_boundaries = ground_truth(catalog, windows, t0, wall0, speed, "Z010000000")
        # an operator's extension (at most 3 ticks) may end the last window that much later
        end = wall0 + (last_tick + (3 if args.ops else 0)) * args.tick_real + args.tail
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        workers = [
            Proc(f"worker{i}", ["worker", *clock_args], env, workdir, start=False) for i in (1, 2)
        ]
        api = Proc("api", ["api", "--port", str(port), *clock_args], env, workdir, start=False)
        procs += [*workers, api]
        for p in procs:
            p.start()
        async with httpx.AsyncClient(timeout=2) as http:
            await wait_ready(http, base, procs, 30)
        # reconnecting like a browser, its retry jittered
        client = Client(base, resume=True, max_connections=500, retry_s=(0.2, 0.5))
        poller = Poller(base)
        tasks.append(asyncio.create_task(client.run(end)))
        tasks.append(asyncio.create_task(poller.run(end)))
        counts = {
            "worker_kill_leader": args.leader_kills,
            "worker_kill_other": args.other_kills,
            "redis_kill": args.redis_kills,
            "redis_freeze": args.redis_freezes,
            "api_kill": args.api_kills,
            "failover": args.failovers,
            "workers_kill_all": args.workers_kill_all,
            "leader_freeze": args.leader_freezes,
            "redis_flush": args.redis_flushes,
        }
        run_s = last_tick * args.tick_real
        faults = plan_faults(rng, wall0 + 0.08 * run_s, wall0 + 0.88 * run_s, counts, args.spacing)
        fault_log: list[str] = []
        print(
            f"soak: {len(schedule['windows'])} windows, {n_boundaries} boundaries, "
            f"{len(exp) - 1} expected changes, speed x{speed:g}, "
            f"{run_s:.0f} s of schedule, {len(faults)} faults; logs in {workdir}",
            flush=True,
        )
        injector = asyncio.create_task(inject(faults, server, workers, api, fault_log))
        tasks.append(injector)
        if args.ops:

            def clock_at(real: float) -> datetime:
                return t0 + timedelta(seconds=(real - wall0) * speed)

            operator = operate(
                ops_rng, args.ops, base, token, faults, windows, clock_at,
                wall0 + 0.92 * run_s, ops_log,
            )  # fmt: skip
            tasks.append(asyncio.create_task(operator))
        await run_until(end, injector, client, faults)
        await asyncio.wait_for(injector, 30)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        epochs = [parse_log(f.log_rows) for f in faults if f.log_rows is not None]
        epochs.append(parse_log(read_rows(server.data_url)))
        if any(o["status"] == 200 for o in ops_log):  # the truth as the operator changed it
            final = read_store(server.data_url)[1]
            exp, n_boundaries = ground_truth(
                catalog, windows, t0, wall0, speed, "Z010000000", final
            )
        report = analyse(
            Run(
                exp,
                epochs,
                import_seq,
                seen_by(client),
                client.connections,
                client.errors,
                poller.samples,
                faults,
                end,
                args.settle,
                args.attr_min,
                wall0,
            )
        )
        report["faults"] = [
            {
                "kind": f.kind,
                "at_s": round(f.started - wall0, 2),
                "clock_at": (t0 + timedelta(seconds=(f.started - wall0) * speed)).isoformat(),
                "held_s": round((f.undone or f.started) - f.started, 2),
                "detail": f.detail,
                "takeover_s": None if f.takeover_s is None else round(f.takeover_s, 2),
                "superseded": f.superseded,
                "wrong_s": round(f.wrong_s, 2),
                "stale_s": round(f.stale_s, 2),
                "time_to_correct_s": round(f.ttc_s, 2),
                "resync_s": None if f.resync_s is None else round(f.resync_s, 2),
            }
            for f in faults
        ]
        report["run"] = {
            "command": " ".join(["python bench/soak.py", *sys.argv[1:]]),
            "seed": args.seed,
            "windows": len(schedule["windows"]),
            "boundaries": n_boundaries,
            "expected_changes": len(exp) - 1,
            "meeting_or_noop_boundaries": n_boundaries - (len(exp) - 1),
            "meeting_instants": len({w.starts_at for w in windows} & {w.ends_at for w in windows}),
            "shared_starts": len(windows) - len({w.starts_at for w in windows}),
            "speed": speed,
            "tick_real_s": args.tick_real,
            "schedule_span": f"{t0.isoformat()} .. {(t0 + last_tick * TICK).isoformat()}",
            "real_s": round(end - wall0, 1),
            "faults": len(faults),
            "redis": "sentinel (master + replica + 3 sentinels)" if args.sentinel else "single",
        }
        report["worst_time_to_correct_s"] = max((f.ttc_s for f in faults), default=0.0)
        report["ops"] = {
            "accepted": sum(1 for o in ops_log if o["status"] == 200),
            "refused": sum(1 for o in ops_log if o["status"] != 200),
            "detail": ops_log[:40],
        }
        report["run"]["drains"] = sum(1 for w in windows if w.drain_s)
        report["run"]["reserves"] = sum(1 for w in windows if w.latest_end is not None)
        return report
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.stop(8)
        with contextlib.suppress(Exception):
            server.kill()


def print_report(rep: dict[str, Any]) -> None:
    run, c, lg, cl = rep["run"], rep["counts"], rep["log"], rep["client"]
    rows = [
        ("seed", run["seed"]),
        ("windows", run["windows"]),
        ("boundaries in the schedule", run["boundaries"]),
        ("expected changes (ground truth)", run["expected_changes"]),
        ("  boundaries collapsed (no change)", run["meeting_or_noop_boundaries"]),
        ("  instants where one window ends as another starts", run["meeting_instants"]),
        ("  windows sharing a start with another", run["shared_starts"]),
        ("  windows with a drain / a reserve", f"{run['drains']} / {run['reserves']}"),
        ("speed / real seconds", f"x{run['speed']:g} / {run['real_s']}"),
        (
            "operator extensions and early ends accepted / refused",
            f"{rep['ops']['accepted']} / {rep['ops']['refused']}",
        ),
        (
            "events in the log (XRANGE), after import",
            f"{lg['time_driven_events']} "
            f"(+{lg['import_events']} import), seq gaps {lg['seq_gaps']}",
        ),
        (
            "store epochs (FLUSHALL) / re-import events",
            f"{lg['epochs']} / {lg['reimport_events']}",
        ),
        ("  by type", ", ".join(f"{k} {v}" for k, v in sorted(lg["by_type"].items()))),
        (
            "statuses seen by the client",
            f"{cl['statuses_received']} "
            f"({cl['distinct_seqs']} distinct seqs, {cl['redelivered_deduplicated']} redelivered, "
            f"{cl['seqs_missing']} missing, {cl['connections']} connection(s), "
            f"{cl['epochs']} epoch(s), {cl['empty_store_statuses']} empty-store status(es))",
        ),
        (
            "component-map changes expected / seen by the client",
            f"{rep['expected_component_changes']} / {cl['component_changes']}",
        ),
        ("superseded inside a fault (not publishable)", rep["superseded_in_faults"]),
        ("DELIVERY GAPS (in the log, never sent to the open stream)", cl["seqs_missing"]),
        ("MISSED", c["missed"]),
        ("DUPLICATE", c["duplicate"]),
        ("OUT-OF-ORDER", c["out_of_order"]),
        ("INVENTED", c["invented"]),
        ("RESET-WRONG (re-import missing or not the truth)", c["reset_wrong"]),
        ("REGRESSED (client sent a half re-import after the healed status)", c["regressed"]),
        ("converged (log / client)", f"{rep['converged']['log']} / {rep['converged']['client']}"),
        (
            "client lag outside faults p50/p99/max s",
            "{p50} / {p99} / {max}".format(**rep["lag_calm_s"]),
        ),
        ("worst time-to-correct after a fault (s)", round(rep["worst_time_to_correct_s"], 2)),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print()
    print(
        f"{'fault':<20} {'at s':>6} {'held s':>6} {'takeover':>8} {'supersd':>7} "
        f"{'wrong s':>7} {'stale s':>7} {'TTC s':>6}  detail"
    )
    for f in rep["faults"]:
        tk = "" if f["takeover_s"] is None else f"{f['takeover_s']:.2f}"
        print(
            f"{f['kind']:<20} {f['at_s']:>6.1f} {f['held_s']:>6.1f} {tk:>8} "
            f"{f['superseded']:>7} {f['wrong_s']:>7.2f} {f['stale_s']:>7.2f} "
            f"{f['time_to_correct_s']:>6.2f}  {f['detail']}"
        )
    if rep["client"]["seqs_missing_list"]:
        print(f"seqs never delivered to the client: {rep['client']['seqs_missing_list']}")
    if rep["lag_outliers"]:
        print(f"lag outliers outside faults: {rep['lag_outliers']}")
    by_kind: dict[str, list[float]] = {}
    for f in rep["faults"]:
        by_kind.setdefault(f["kind"], []).append(f["time_to_correct_s"])
    print()
    print(
        "worst time-to-correct by kind: "
        + ", ".join(f"{k} {max(v):.2f} s ({len(v)})" for k, v in sorted(by_kind.items()))
    )
    for name in ("missed", "duplicate", "out_of_order", "invented", "reset_wrong", "regressed"):
        if rep[f"{name}_detail"]:
            print(f"{name}: {rep[f'{name}_detail']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--windows", type=int, default=380, help="(240 before the fail-safe faults: 409 boundaries)"
    )
    ap.add_argument(
        "--tick-real",
        type=float,
        default=0.35,
        help="real seconds per 5-minute tick of the schedule (sets --speed)",
    )
    ap.add_argument("--leader-kills", type=int, default=3)
    ap.add_argument("--other-kills", type=int, default=2)
    ap.add_argument("--redis-kills", type=int, help="default 2; 0 with --sentinel")
    ap.add_argument("--redis-freezes", type=int, help="default 2; 0 with --sentinel")
    ap.add_argument("--api-kills", type=int, default=1)
    ap.add_argument(
        "--workers-kill-all",
        type=int,
        default=2,
        help="SIGKILL every worker at once (the API standby publishes), restart after 4.5-8 s",
    )
    ap.add_argument(
        "--leader-freezes",
        type=int,
        default=2,
        help="SIGSTOP the lock-holding worker for 2-2.7x the lock TTL, then SIGCONT",
    )
    ap.add_argument(
        "--redis-flushes",
        type=int,
        default=2,
        help="FLUSHALL (store reset): the leader re-imports MAINTCAST_SCHEDULE_FILE",
    )
    ap.add_argument(
        "--spacing", type=float, default=20.0, help="real seconds between fault moments (min)"
    )
    ap.add_argument(
        "--sentinel",
        action="store_true",
        help="run on a master + replica + 3 sentinels (redis+sentinel:// URL), with failovers",
    )
    ap.add_argument(
        "--failovers", type=int, help="SIGKILL the master (needs --sentinel); default 3 with it"
    )
    ap.add_argument(
        "--lead",
        type=float,
        default=6.0,
        help="real seconds between start-up and the clock reaching T0",
    )
    ap.add_argument(
        "--tail",
        type=float,
        default=12.0,
        help="real seconds to keep watching after the last boundary",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=0.3,
        help="a change held this long outside faults must have been published",
    )
    ap.add_argument(
        "--attr-min",
        type=float,
        default=0.5,
        help="wrong periods shorter than this are normal publish lag",
    )
    ap.add_argument(
        "--ops",
        type=int,
        default=8,
        help="operator changes to make (extend or end early a window in progress); 0: none",
    )
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--keep", type=Path, help="keep the logs and schedule in this directory")
    args = ap.parse_args()
    single = 0 if args.sentinel else 2
    args.redis_kills = single if args.redis_kills is None else args.redis_kills
    args.redis_freezes = single if args.redis_freezes is None else args.redis_freezes
    args.failovers = (3 if args.sentinel else 0) if args.failovers is None else args.failovers
    if args.sentinel and (args.redis_kills or args.redis_freezes):
        ap.error("--sentinel replaces Redis kills and freezes by --failovers")
    if args.failovers and not args.sentinel:
        ap.error("--failovers needs --sentinel")

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (&)
    workdir = Path(tempfile.mkdtemp(prefix="maintcast-soak-"))
    ok = False
    try:
        rep = asyncio.run(soak(args, workdir))
        print()
        print_report(rep)
        ok = all(v == 0 for v in rep["counts"].values()) and all(rep["converged"].values())
        ok = ok and rep["client"]["seqs_missing"] == 0
        rep["ok"] = ok
        if args.json:
            args.json.write_text(json.dumps(rep, indent=2, default=str) + "\n", "utf-8")
            print(f"\nreport written to {args.json}")
    except KeyboardInterrupt:
        print("interrupted; processes stopped", file=sys.stderr)
    finally:
        if args.keep:
            shutil.copytree(workdir, args.keep, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
