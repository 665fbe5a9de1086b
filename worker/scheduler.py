"""The only module that imports APScheduler: boundary jobs, the safety tick, re-planning."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from broadcaster.aio import stop_task
from broadcaster.clock import Clock
from broadcaster.metrics import REDIS_UP
from broadcaster.notify.messages import DeliveryConfig
from broadcaster.notify.reminders import boundaries_with_reminders
from broadcaster.store import RECONNECT_ERRORS, STANDBY_SUFFIX, Lease, Store
from broadcaster.store.notify import NotifyStore
from worker.deliveries import Deliveries
from worker.jobs import reconcile, reconcile_until_done

log = logging.getLogger(__name__)

BOUNDARY_PREFIX = "boundary:"
MAX_PLANNED = 1000
"""Boundary jobs kept at once; later ones are planned as earlier ones fire (re-plan)."""
TICK_S = 30.0
"""Real seconds between safety reconciles (a missed job or lost message is caught here)."""
KEEPALIVE_S = 1.0
"""Real seconds between heartbeats and leader-lock renewals."""
LEADER_TTL_S = 3.0
"""The leader lock's TTL: a crashed leader is replaced within about this long (plus one
keepalive), inside the 5 s misfire grace, so its boundary is still typed as on time."""

MAX_CLOCK_SKEW_S = 2.0
"""Largest difference between this host's clock and Redis's (``TIME``) a publisher accepts."""
BENCH_S = 30.0
"""Real seconds a publisher with an unfit clock stays out of the lead (then checks again)."""
HEAL_RETRY_S = 30.0
"""Real seconds between re-imports of a schedule file that failed to import."""

Role = Literal["worker", "standby"]
"""``worker``: a ``maintcast worker`` process (heartbeat, preferred leader). ``standby``: the
publisher inside every ``maintcast api`` process, leading only while no worker does."""
Heal = Callable[[], Awaitable[object]]
"""Re-imports the schedule file (``MAINTCAST_SCHEDULE_FILE``) into a store without a catalog."""


def ended_quietly(job: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """``job`` as APScheduler runs it, except that being cancelled ends it quietly.

    ``AsyncIOScheduler.shutdown`` cancels the jobs still running (a keepalive waiting on an
    unreachable Redis, a boundary retrying its publish); APScheduler 3.x would log each as
    a job that "raised an exception", with a traceback, on every clean stop.
    """

    @functools.wraps(job)
    async def run(*args: Any) -> None:
        try:
            await job(*args)
        except asyncio.CancelledError:
            log.debug("%s cancelled (scheduler shut down)", job.__name__)

    return run


class Worker:
    """Schedules one DateTrigger job per upcoming boundary and re-plans on every change.

    Jobs run however late they fire (``misfire_grace_time=None``: APScheduler's default of
    1 s would silently skip a late job) and coalesce (one run for several missed fire times).
    Under a rehearsal clock each job is set at the wall-clock instant the clock reaches the
    boundary (``Clock.wall_time_of``), since APScheduler 3.x reads the real wall clock.

    Every process plans the same jobs; only the leader-lock holder publishes (fenced).
    ``role="standby"`` (API processes) writes no worker heartbeat and yields the lock to any
    worker. ``heal``, when given, is awaited by the leader whenever the store has no catalog.
    With ``notify`` the leader also delivers notifications (:mod:`worker.deliveries`), and
    reminder instants are boundaries too: at each, the leader queues the reminders due.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        tick_s: float = TICK_S,
        role: Role = "worker",
        heal: Heal | None = None,
        notify: DeliveryConfig | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.tick_s = tick_s
        self.role = role
        self.heal = heal
        suffix = STANDBY_SUFFIX if role == "standby" else ""
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}{suffix}"
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._planned: dict[str, datetime] = {}
        self.leader = False
        self._listener: asyncio.Task[None] | None = None
        self._benched_until = 0.0  # time.monotonic() until which this process does not lead
        self._heal_after = 0.0  # time.monotonic() before which no re-import is tried
        self.deliveries = (
            None
            if notify is None
            else Deliveries(
                NotifyStore.of(store), clock, notify, fence=self.worker_id, leads=self._leads
            )
        )

    def _leads(self) -> bool:
        return self.leader

    async def start(self) -> None:
        """Start the scheduler and the listener; returns at once, also while Redis is down.

        On every (re)subscription the listener plans and then reconciles: a boundary that
        passed while the worker was away (or disconnected) is published then, typed
        ``reconciled`` when later than the misfire grace.
        """
        self.scheduler.start()
        common: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        self.scheduler.add_job(
            ended_quietly(self._tick), IntervalTrigger(seconds=self.tick_s), id="tick", **common
        )
        self.scheduler.add_job(
            ended_quietly(self._keepalive),
            IntervalTrigger(seconds=KEEPALIVE_S),
            id="keepalive",
            next_run_time=datetime.now(UTC),
            **common,
        )
        self._listener = asyncio.create_task(self._listen(), name="maintcast-worker-listen")
        if self.deliveries is not None:
            self.deliveries.start()

    async def stop(self) -> None:
        """Stop listening, give the lead up, and shut the scheduler down (running jobs are
        cancelled, not awaited)."""
        await stop_task(self._listener, "worker listener")
        if self.deliveries is not None:
            await self.deliveries.stop()
        if self.leader:
            await self._resign()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            # AsyncIOScheduler.shutdown only queues the real shutdown (call_soon_threadsafe,
            # APScheduler 3.11): let it run, so no timer or boundary job outlives stop().
            async with asyncio.timeout(5):
                while self.scheduler.running:  # noqa: ASYNC110 -- APScheduler offers no event
                    await asyncio.sleep(0)

    async def plan(self) -> None:
        """(Re)place one job per boundary after now; drop jobs of boundaries that vanished."""
        st = await self.store.state()
        now = self.clock.now()
        offsets = self.deliveries.config.reminders if self.deliveries is not None else ()
        wanted = boundaries_with_reminders(st.windows.values(), st.override, now, offsets)
        wanted = wanted[:MAX_PLANNED]
        ids = {f"{BOUNDARY_PREFIX}{b.isoformat()}": b for b in wanted}
        # a job whose boundary just passed but that has not run yet (the loop was busy,
        # e.g. in this very re-plan) stays: removing it would leave the boundary to the tick
        due = {j: b for j, b in self._planned.items() if b <= now and j not in ids}
        for job_id in self._planned.keys() - ids.keys() - due.keys():
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(job_id)
        for job_id, b in ids.items():
            if job_id in self._planned:
                continue
            try:
                run_date = self.clock.wall_time_of(b)
            except (OverflowError, ValueError):
                log.warning("boundary %s cannot be scheduled (out of range); skipped", b)
                continue
            self.scheduler.add_job(
                ended_quietly(self._boundary),
                DateTrigger(run_date=run_date),
                args=[b],
                id=job_id,
                replace_existing=True,
                coalesce=True,
                misfire_grace_time=None,
            )
        if ids.keys() != self._planned.keys() - due.keys():
            log.info(
                "planned %d boundary jobs; next at %s", len(ids), wanted[0] if wanted else None
            )
        self._planned = {**due, **ids}

    async def _boundary(self, boundary: datetime) -> None:
        self._planned.pop(f"{BOUNDARY_PREFIX}{boundary.isoformat()}", None)
        await reconcile_until_done(self.store, self.clock, boundary, fence=self.worker_id)
        await self._remind(boundary)

    async def _remind(self, boundary: datetime | None = None) -> None:
        """Queue the reminders due now (at ``max(now, boundary)``, like a reconcile)."""
        if self.deliveries is None:
            return
        now = self.clock.now()
        try:
            await self.deliveries.remind(max(now, boundary) if boundary is not None else now)
        except RECONNECT_ERRORS as exc:  # the next tick, or whoever leads next, tries again
            log.warning("queueing reminders failed: %s", exc)

    async def _tick(self) -> None:
        await reconcile_until_done(
            self.store, self.clock, deadline_s=self.tick_s, fence=self.worker_id
        )
        await self._remind()
        try:
            await self.plan()
        except RECONNECT_ERRORS as exc:
            log.warning("re-plan failed: %s", exc)

    async def _keepalive(self) -> None:
        """Heartbeat (workers), take or renew the leader lock, heal an empty store.

        Whoever takes the lock anew reconciles at once, also a leader whose own lock lapsed
        while it was frozen (GC pause, SIGSTOP, VM freeze): its fenced boundary job published
        nothing, and the 30 s tick is too late for a boundary.
        """
        try:
            if self.role == "worker":
                await self.store.heartbeat(self.clock.now(), self.worker_id)
            if time.monotonic() < self._benched_until:
                return
            lease = await self.store.lead(
                self.worker_id, LEADER_TTL_S, preempt_standby=self.role == "worker"
            )
            unfit = await self._unfit_clock() if lease is not Lease.REFUSED else None
        except RECONNECT_ERRORS as exc:
            REDIS_UP.set(0.0)
            log.debug("keepalive failed: %s", exc)
            return
        REDIS_UP.set(1.0)
        if unfit is not None:
            await self._bench(unfit)
            return
        leads = lease is not Lease.REFUSED
        if not leads and self.leader:
            log.info("%s %s lost the lead", self.role, self.worker_id)
        elif lease is Lease.ACQUIRED:
            lapsed = " (its own lock had lapsed)" if self.leader else ""
            log.info("%s %s leads%s", self.role, self.worker_id, lapsed)
        self.leader = leads
        if leads and self.heal is not None:
            await self._heal()
        if lease is Lease.ACQUIRED:
            await reconcile_until_done(
                self.store, self.clock, deadline_s=LEADER_TTL_S, fence=self.worker_id
            )
            await self._remind()

    async def _unfit_clock(self) -> str | None:
        """Why this process must not publish time-driven changes, or None.

        A host clock off Redis's by more than :data:`MAX_CLOCK_SKEW_S` (broken NTP) would
        publish boundaries early or late; a clock behind the stored status by more than the
        misfire grace (a rehearsal started behind the store, a host clock far behind) would
        publish nothing while holding the lock, so every boundary would wait for it.
        """
        skew = await self.store.clock_skew_s()
        if abs(skew) > MAX_CLOCK_SKEW_S:
            return f"this host's clock is {skew:+.1f} s off Redis's (TIME)"
        behind = await self.store.status_ahead_s(self.clock.now())
        if behind > self.store.grace_s:
            return f"the stored status is {behind:.0f} s ahead of this process's clock"
        return None

    async def _bench(self, why: str) -> None:
        """Give the lock up and stay out of the lead for :data:`BENCH_S` seconds."""
        log.error("%s %s will not publish: %s", self.role, self.worker_id, why)
        self._benched_until = time.monotonic() + BENCH_S
        await self._resign()

    async def _resign(self) -> None:
        """Give the leader lock up now (within 2 s), or let it expire if Redis does not answer."""
        self.leader = False
        try:
            await asyncio.wait_for(self.store.resign(self.worker_id), 2.0)
        except (*RECONNECT_ERRORS, TimeoutError):
            log.warning("could not give the lead up; it expires in %.0f s", LEADER_TTL_S)

    async def _heal(self) -> None:
        """Re-import the schedule file if the store lost its catalog (Redis restarted empty)."""
        assert self.heal is not None
        if time.monotonic() < self._heal_after:
            return
        try:
            if await self.store.has_catalog():
                return
            log.warning("the store has no catalog (Redis restarted empty?): re-importing")
            await self.heal()
        except RECONNECT_ERRORS as exc:
            log.warning("healing the store failed: %s", exc)
        except ValueError as exc:  # the file became unreadable or invalid meanwhile
            log.error("healing the store failed (next try in %.0f s): %s", HEAL_RETRY_S, exc)
            self._heal_after = time.monotonic() + HEAL_RETRY_S

    async def _listen(self) -> None:
        """Re-plan on every published change and after every (re)subscription."""

        async def replan(payload: bytes | None) -> None:
            if self.deliveries is not None:
                self.deliveries.nudge()
            await self.plan()
            if payload is None:  # (re)subscribed: whatever passed meanwhile is due now
                await reconcile(self.store, self.clock, fence=self.worker_id)

        def lost(exc: BaseException) -> None:
            log.warning("worker subscription lost (%s); retrying", exc)

        await self.store.follow(replan, lost)


@contextlib.asynccontextmanager
async def running_worker(
    store: Store,
    clock: Clock,
    *,
    role: Role = "worker",
    heal: Heal | None = None,
    notify: DeliveryConfig | None = None,
) -> AsyncIterator[Worker]:
    """Run a worker (or an API's standby publisher) for the duration of the block; with
    ``notify`` it delivers notifications while it leads."""
    w = Worker(store, clock, role=role, heal=heal, notify=notify)
    await w.start()
    try:
        yield w
    finally:
        await w.stop()
