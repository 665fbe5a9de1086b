"""Reads and the atomic publish (the store package is the only Redis user; the event log is
read by :mod:`broadcaster.store.log`).

Every publish is one WATCH/MULTI transaction over the keys the status is computed from
(``Keys.inputs``): the status, its event-log entry and its pub/sub message carry the same
``seq``, and a concurrent writer makes the loser retry on fresh data, so a time-driven change
that another process already published is found equal and publishes nothing. WATCH/MULTI
was chosen over Lua because it behaves the same on real Redis and on fakeredis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from redis.exceptions import WatchError

from broadcaster import codec
from broadcaster.caps import check_live_windows
from broadcaster.domain import Catalog, Cause, Window, public_cause
from broadcaster.keys import Keys
from broadcaster.metrics import EVENTS_PUBLISHED, TRANSITIONS
from broadcaster.ops import merge_imported
from broadcaster.series import top_up
from broadcaster.series_ops import import_series
from broadcaster.status import StatusCore, compute_status, time_driven_cause
from broadcaster.store.client import Redis
from broadcaster.store.coordination import MAX_ATTEMPTS
from broadcaster.store.log import EventLog
from broadcaster.store.plans import Change, Plan, State
from broadcaster.validation import Contact, Defaults, Schedule

log = logging.getLogger(__name__)


def _windows(raw: dict[bytes, bytes]) -> dict[str, Window]:
    return {w.id: w for w in (codec.window_from_doc(codec.loads(v)) for v in raw.values())}


class Store(EventLog):
    """Maintcast's data in Redis under one key prefix (see :mod:`broadcaster.keys`).

    The store does not own ``redis``: whoever created the client closes it.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        keys: Keys,
        defaults: Defaults,
        grace_s: float = 5.0,
        retention: int = 10_000,
    ) -> None:
        # redis-py's async annotations mix sync and async return types; treat it as Any here
        self.redis: Any = redis
        self.keys = keys
        self.defaults = defaults
        self.grace_s = grace_s
        self.retention = retention

    # -- reads ---------------------------------------------------------------------------

    @staticmethod
    def _parse(raw: list[Any]) -> State:
        raw_windows, raw_catalog, raw_override, raw_status, raw_seq, raw_series = raw
        return State(
            catalog=Catalog.model_validate_json(raw_catalog) if raw_catalog else Catalog(),
            windows=_windows(raw_windows),
            override=codec.override_from_doc(codec.loads(raw_override)) if raw_override else None,
            status=codec.loads(raw_status) if raw_status else None,
            seq=int(raw_seq or 0),
            series=_windows(raw_series),
        )

    async def state(self) -> State:
        """A consistent read of all inputs (one MULTI, no WATCH)."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(k.windows).get(k.catalog).get(k.override).get(k.status).get(k.seq)
            pipe.hgetall(k.series)
            return self._parse(await pipe.execute())

    async def status(self, now: datetime) -> codec.Doc:
        """The last published status, or (``seq`` 0) the one computed at ``now`` if none was."""
        raw = await self.redis.get(self.keys.status)
        if raw:
            return codec.loads(raw)  # type: ignore[no-any-return]
        st = await self.state()
        return self._doc(st, 0, now, None)

    async def catalog(self) -> Catalog:
        """The stored catalog (empty before any import)."""
        raw = await self.redis.get(self.keys.catalog)
        return Catalog.model_validate_json(raw) if raw else Catalog()

    async def contact(self) -> Contact | None:
        """The stored contact block, if any."""
        raw = await self.redis.get(self.keys.contact)
        return Contact.model_validate_json(raw) if raw else None

    async def windows(self) -> dict[str, Window]:
        """Every stored window by id (occurrences of a series included, the series not)."""
        return _windows(await self.redis.hgetall(self.keys.windows))

    async def series(self) -> dict[str, Window]:
        """Every stored recurring series by id (:mod:`broadcaster.series`)."""
        return _windows(await self.redis.hgetall(self.keys.series))

    async def ping(self) -> bool:
        """Whether Redis answers."""
        return bool(await self.redis.ping())

    # -- writes --------------------------------------------------------------------------

    def _core(self, st: State, now: datetime) -> StatusCore:
        return compute_status(
            st.catalog,
            st.windows.values(),
            st.override,
            now,
            default_error_code=self.defaults.error_code,
        )

    def _doc(self, st: State, seq: int, now: datetime, cause: Cause | None) -> codec.Doc:
        core = self._core(st, now)
        return codec.status_doc(core, seq=seq, now=now, cause=cause, zone=self.defaults.timezone)

    def add_due_event(self, st: State, now: datetime, plan: Plan) -> State:
        """Append the time-driven change due at ``now`` that is not yet published, if any.

        An expired override is dropped with it. Returns the state later steps build on.
        Nothing is due when the stored status is newer than ``now``: ``now`` was read before a
        slow round trip (a stalled Redis released several writers at once), and publishing
        the state at ``now`` would move the status back in time (bench/soak.py finding A).
        """
        expired = st.override is not None and not st.override.holds_at(now)
        base = replace(st, override=None) if expired else st
        if expired:
            plan.override, plan.set_override = None, True
        if st.status is None:
            return base
        ahead_s = (codec.status_instant(st.status) - now).total_seconds()
        if ahead_s > 0:
            # a few ms is a race; more is a clock behind the store's (a rehearsal started
            # earlier than the imports it follows): say so, or nothing ever publishes silently
            (log.warning if ahead_s > self.grace_s else log.debug)(
                "the stored status is %.1f s ahead of this clock: nothing published", ahead_s
            )
            return base
        core = self._core(st, now)
        new = codec.status_doc(core, seq=0, now=now, cause=None, zone=self.defaults.timezone)
        if not codec.same_status(new, st.status):
            cause = time_driven_cause(
                codec.summary_of(st.status), core, st.windows, now, self.grace_s
            )
            plan.events.append((cause, base))
        return base

    async def transact(
        self, now: datetime, build: Callable[[State], Plan], *, fence: str | None = None
    ) -> list[codec.Doc]:
        """Run ``build`` on a fresh read and apply its plan atomically; retry on conflict.

        Returns the published status objects, in seq order (empty if nothing changed).
        ``build`` may raise to abort: nothing is written. With ``fence`` (a worker id) the
        leader lock is WATCHed too and nothing is published unless it is held by ``fence``:
        a worker that lost its lock (paused, partitioned) cannot publish late.
        """
        k = self.keys
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    fenced = [k.worker_leader] if fence else []
                    await pipe.watch(*k.inputs, k.contact, k.series, *fenced)
                    if fence is not None and await pipe.get(k.worker_leader) != fence.encode():
                        await pipe.reset()
                        log.debug("not the leader (%s): publishing nothing", fence)
                        return []
                    st = self._parse(
                        [
                            await pipe.hgetall(k.windows),
                            await pipe.get(k.catalog),
                            await pipe.get(k.override),
                            await pipe.get(k.status),
                            await pipe.get(k.seq),
                            await pipe.hgetall(k.series),
                        ]
                    )
                    plan = build(st)
                    if (
                        not plan.events
                        and plan.catalog is None
                        and plan.contact is None
                        and not plan.set_override
                    ):
                        await pipe.reset()
                        return []
                    pipe.multi()
                    docs = self._write(pipe, st, plan, now)
                    await pipe.execute()
                except WatchError:
                    continue
            previous = st.status["state"] if st.status else None
            for d, (cause, _) in zip(docs, plan.events, strict=True):
                EVENTS_PUBLISHED.labels(cause.type).inc()
                if previous is not None and d["state"] != previous:
                    TRANSITIONS.inc()
                previous = d["state"]
                log.info(  # the whole cause: the log is the operators'
                    "published seq=%s cause=%s window=%s state=%s",
                    d["seq"],
                    cause.type,
                    cause.window_id,
                    d["state"],
                    extra={
                        "seq": d["seq"],
                        "cause": cause.type,
                        "window_id": cause.window_id,
                        "state": d["state"],
                    },
                )
            return docs
        raise RuntimeError(f"could not publish after {MAX_ATTEMPTS} conflicting attempts")

    def _write(self, pipe: Any, st: State, plan: Plan, now: datetime) -> list[codec.Doc]:
        k = self.keys
        for w in plan.windows.values():
            pipe.hset(k.windows, w.id, codec.dumps(codec.window_doc(w, now)))
        for w in plan.series.values():
            pipe.hset(k.series, w.id, codec.dumps(codec.window_doc(w, now)))
        if plan.catalog is not None:
            pipe.set(k.catalog, plan.catalog.model_dump_json())
        if plan.contact is not None:
            pipe.set(k.contact, plan.contact.model_dump_json(by_alias=True))
        if plan.set_override:
            if plan.override is None:
                pipe.delete(k.override)
            else:
                pipe.set(k.override, codec.dumps(codec.override_doc(plan.override, "UTC")))
        docs: list[codec.Doc] = []
        seq = st.seq
        series = {**st.series, **plan.series}  # an event may name a series
        for cause, after in plan.events:
            seq += 1
            # the status goes to everyone, once: an unannounced window's id and reason stay
            # out of it (the log entry keeps them for ops; EventLog.events)
            public = public_cause(cause, {**series, **after.windows}, now)
            doc = self._doc(after, seq, now, public)
            payload = codec.dumps(doc)
            entry = {
                "seq": seq,
                "at": doc["as_of"],
                "type": cause.type,
                "window_id": cause.window_id,
                "actor": cause.actor,
                "reason": cause.reason,
                "state": doc["state"],
            }
            pipe.xadd(
                k.events,
                {"e": codec.dumps(entry), "s": payload},
                id=f"{seq}-0",
                maxlen=self.retention,
                approximate=False,
            )
            pipe.publish(k.channel, payload)
            docs.append(doc)
        if docs:
            pipe.set(k.status, codec.dumps(docs[-1]))
            pipe.set(k.seq, seq)
        return docs

    async def reconcile(self, now: datetime, *, fence: str | None = None) -> list[codec.Doc]:
        """Publish the time-driven change due at ``now``, if any (the worker's job).

        Two processes reconciling the same boundary publish one event between them. With
        ``fence`` only the holder of the leader lock publishes (see :meth:`transact`).
        Occurrences of recurring series that came within the horizon are stored with it,
        one ``maintenance.scheduled`` event each (:func:`broadcaster.series.top_up`).
        """

        def build(st: State) -> Plan:
            plan = Plan()
            base = self.add_due_event(st, now, plan)
            new = top_up(base.series, base.windows, now)
            if new:  # occurrences come within the horizon as time passes: one event each
                plan.windows.update(new)
                after = replace(base, windows={**base.windows, **new})
                plan.events += [(Cause("maintenance.scheduled", wid), after) for wid in new]
            return plan

        return await self.transact(now, build, fence=fence)

    async def apply(self, now: datetime, change: Callable[[State], Change]) -> list[codec.Doc]:
        """Apply one ops write atomically and publish its event (always: an accepted write
        is an event). A time-driven change due at ``now`` is published first, as its own
        event, in the same transaction (ARCHITECTURE.md "The publish").

        ``change`` sees the state after that due change and may raise to abort (nothing is
        written). Returns the published status objects; the last is the write's own.

        Raises:
            Conflict: the write would take the scheduled and in-progress windows past a cap
                (:func:`broadcaster.caps.check_live_windows`); nothing is written.
        """

        def build(st: State) -> Plan:
            plan = Plan()
            base = self.add_due_event(st, now, plan)
            ch = change(base)
            windows = {**base.windows, **ch.windows}
            check_live_windows(base.windows, windows, now, max_windows=self.defaults.max_windows)
            plan.windows.update(ch.windows)
            plan.series.update(ch.series)
            override = base.override
            if ch.set_override:
                override = plan.override = ch.override
                plan.set_override = True
            plan.events.append((ch.cause, State(base.catalog, windows, override, None, 0)))
            return plan

        return await self.transact(now, build)

    async def import_schedule(
        self, schedule: Schedule, now: datetime, *, actor: str = "import"
    ) -> list[codec.Doc]:
        """Store catalog, contact and windows all-or-nothing; idempotent by window id. A
        window with ``recurrence`` is a series: stored with its occurrences, one event.

        One event per window created (``maintenance.scheduled``) or changed
        (``rescheduled``/``updated``/``cancelled``); none if nothing changed. History the
        server already has is kept; a change of times not in the file's history is recorded.

        Raises:
            Conflict: past a cap of :func:`broadcaster.caps.check_live_windows`; nothing
                is stored.
        """

        def build(st: State) -> Plan:
            plan = Plan()
            override = self.add_due_event(st, now, plan).override
            windows = dict(st.windows)
            if schedule.catalog != st.catalog:
                plan.catalog = schedule.catalog
            plan.contact = schedule.contact
            causes: list[Cause] = []
            for w in schedule.windows:
                if w.recurrence is not None or w.id in st.series:  # a series (or was one)
                    sc = import_series(st.series.get(w.id), w, windows, now=now, actor=actor)
                    if sc is not None:
                        plan.series[w.id] = sc.series
                        windows.update(sc.windows)
                        plan.windows.update(sc.windows)
                        causes.append(sc.cause)
                    continue
                merged, cause = merge_imported(windows.get(w.id), w, now, actor)
                if cause is not None:
                    windows[w.id] = plan.windows[w.id] = merged
                    causes.append(cause)
            check_live_windows(st.windows, windows, now, max_windows=self.defaults.max_windows)
            # one transaction: every event of it carries the status of the whole import, so
            # no reader ever sees a half-imported calendar (a window in progress shown as
            # normal because the events before its own came first: bench/soak.py finding H)
            after = State(schedule.catalog, windows, override, None, 0)
            plan.events += [(cause, after) for cause in causes]
            if (
                plan.catalog is not None
                and not plan.windows
                and (
                    st.status is None
                    or not codec.same_status(self._doc(after, 0, now, None), st.status)
                )
            ):
                plan.events.append((Cause("maintenance.updated", None, actor), after))
            return plan

        return await self.transact(now, build)
