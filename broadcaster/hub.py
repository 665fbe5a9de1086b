"""One Redis subscription per process, fanned out in memory to every SSE stream and the gate.

Each published status is decoded once and its SSE frame encoded once (per view) for all
streams; :class:`broadcaster.sse.Streams` writes it to each. The last events are kept in
memory, so a client reconnecting with a recent ``Last-Event-ID`` is served without a Redis
call (a reconnect storm costs Redis nothing per client).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import datetime, timedelta

from broadcaster import codec
from broadcaster.clock import Clock
from broadcaster.codec import View
from broadcaster.domain import Catalog
from broadcaster.events import Event
from broadcaster.sse import Streams
from broadcaster.store import Store

log = logging.getLogger(__name__)

RECENT = 256
"""How many of the latest events the hub keeps for replay from memory."""
REWRITES_KEPT = 16
"""How many rewritten seq ranges (store resets, failovers) the hub remembers."""
AUDIT_S = 5.0
"""Seconds between checks of the stored seq against memory. Pub/sub says nothing when Redis
is flushed or restarted empty with nobody publishing after it, and drops what it could not
deliver: one GET per process every few seconds finds both (a reset, a gap)."""


def expected_change_at(doc: codec.Doc) -> datetime | None:
    """The earliest instant at which ``doc`` says the status will change (``until``, the
    first upcoming start or drain start still ahead of its ``as_of``, the override's
    expiry), or None when it names none."""
    instants = [doc.get("until")]
    instants += [w["starts_at"] for w in doc.get("upcoming", ())]
    override = doc.get("override")
    if override:
        instants.append(override.get("expires_at"))
    parsed = [codec.parse_wire_instant(t) for t in instants if t]
    drains = [
        codec.parse_wire_instant(w["starts_at"]) - timedelta(seconds=w["drain_s"])
        for w in doc.get("upcoming", ())
        if w.get("drain_s")
    ]
    if drains:  # a drain already begun is no change to come
        as_of = codec.status_instant(doc)
        parsed += [t for t in drains if t > as_of]
    return min(parsed, default=None)


class Hub:
    """Keeps the current status in memory and fans every change out to the open streams.

    ``client_queue`` (``MAINTCAST_CLIENT_QUEUE``) bounds the events held for one stream
    whose send is pending.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        client_queue: int = 64,
        zone: str = "Asia/Tokyo",
    ) -> None:
        self.store = store
        self.clock = clock
        self.zone = zone
        self.current: Event | None = None
        self.catalog = Catalog()
        self.stale = False
        self.streams = Streams(self.view_of, client_queue=client_queue)
        self._recent: deque[Event] = deque(maxlen=RECENT)
        self._rewritten: deque[tuple[int, int]] = deque(maxlen=REWRITES_KEPT)
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()  # a resync and a delivery never interleave

    @property
    def clients(self) -> int:
        """How many streams are open."""
        return len(self.streams)

    def view_of(self, doc: codec.Doc, view: View) -> codec.Doc:
        """``doc`` restricted to ``view`` (see :func:`codec.view_doc`)."""
        return codec.view_doc(
            doc,
            self.catalog,
            service=view[0],
            method=view[1],
            default_error_code=self.store.defaults.error_code,
            zone=self.zone,
        )

    async def snapshot(self) -> Event:
        """The current status: from memory when known, else read (and remembered)."""
        if self.current is None:
            await self._resync()
        assert self.current is not None  # _resync sets it or raises
        return self.current

    def recent_after(self, seq: int) -> list[Event] | None:
        """The events after ``seq`` from memory, oldest first; None when memory does not
        hold all of them (the caller asks the store's log)."""
        current = self.current
        if current is None or seq > current.seq or seq < 0:
            return None
        if seq == current.seq:
            return []
        recent = self._recent
        if not recent or recent[0].seq > seq + 1:
            return None
        return [ev for ev in recent if ev.seq > seq]

    def rewritten(self, seq: int) -> bool:
        """Whether this process delivered ``seq`` with a status the store no longer holds
        (the seq went back, or came again with another status: a store reset, or a Sentinel
        failover that lost the last writes). A client holding such a seq needs a ``resync``:
        its ``Last-Event-ID`` would otherwise look current."""
        return any(lo <= seq <= hi for lo, hi in self._rewritten)

    def event_at(self, seq: int) -> Event | None:
        """The event with ``seq`` if memory holds it (the current one or a recent one)."""
        if self.current is not None and self.current.seq == seq:
            return self.current
        return next((ev for ev in self._recent if ev.seq == seq), None)

    def _deliver(self, event: Event) -> None:
        current = self.current
        if current is not None and event.seq <= current.seq:
            if event.seq == 0 and current.seq == 0:
                self.current = event  # before any publish: refresh the computed snapshot
                return
            held = self.event_at(event.seq)
            if held is not None and held.doc == event.doc:
                return  # a resync or an audit re-read what pub/sub delivers (or did)
            self._reset(event)  # went back, or the same seq with another status
            return
        if current is None or event.seq != current.seq + 1:
            self._recent.clear()  # keep memory's log gapless
        if self._rewritten and event.seq:
            # from now on this seq names the new history's status, which streams get here
            self._rewritten = deque(
                ((max(lo, event.seq + 1), hi) for lo, hi in self._rewritten if hi > event.seq),
                maxlen=REWRITES_KEPT,
            )
        self.current = event
        if event.seq:
            self._recent.append(event)
        self.streams.deliver(event)

    def _reset(self, event: Event) -> None:
        """The store's history changed under us: its seq went back (Redis restarted empty or
        was flushed; a failover lost the last writes) or a seq came again with another
        status (a lost write was re-published differently before we re-read). Adopt the new
        status, remember the rewritten seqs (:meth:`rewritten`) and end every stream, so
        clients reconnect and get a ``resync`` (docs/api.md "Built")."""
        assert self.current is not None
        log.warning(
            "store seq went back from %s to %s (store reset or failover); resyncing %d client(s)",
            self.current.seq,
            event.seq,
            len(self.streams),
        )
        same = event.seq == self.current.seq  # the same seq, another status
        self._rewritten.append((event.seq if same else event.seq + 1, self.current.seq))
        self.current = event
        self._recent.clear()
        self.streams.end_all()

    async def _resync(self) -> None:
        """Re-read catalog and status: after every (re)subscribe, pub/sub may have lost some.

        The catalog is replaced together with the status (no await between the two): a gate
        deciding in between would otherwise pair the new catalog with the old status and its
        cached views (a flushed store kept refusing by the old status)."""
        catalog = await self.store.catalog()
        current = self.current
        # pub/sub dropped what was published while away: deliver it from the event log, in
        # order, so open streams see one event per change (no seq gap); a gap the log cannot
        # fill or a store reset (replay None) falls back to the stored status.
        # (also from seq 0: after a flush the re-import's events are 1, 2, … and a client
        # that got the empty status must get each of them, not a jump to the last one)
        missed = await self.store.replay(current.seq) if current is not None else None
        if missed:
            if self.stale:
                log.info("redis reachable again; replaying %d missed event(s)", len(missed))
            self.stale = False
            self.catalog = catalog
            for payload in missed:
                self._deliver(Event(codec.loads(payload), payload))
            return
        doc = await self.store.status(self.clock.now())
        if self.stale:
            log.info("redis reachable again; status seq=%s", doc["seq"])
        self.stale = False
        self.catalog = catalog
        self._deliver(Event(doc))

    # -- the listener --------------------------------------------------------------------

    async def run(self, *, audit_s: float = AUDIT_S) -> None:
        """Follow the store's change channel forever (see :meth:`Store.follow`), and, while
        it is idle, every ``audit_s`` seconds compare the stored seq with memory
        (see :data:`AUDIT_S`)."""
        await self.store.follow(self._on_feed, self._on_lost, audit=self.audit, audit_s=audit_s)

    async def _on_feed(self, payload: bytes | None) -> None:
        async with self._lock:
            if payload is None:
                await self._resync()
                self._ready.set()
                return
            catalog = await self.store.catalog()  # an import may have brought a new one
            event = Event(codec.loads(payload), payload)
            current = self.current
            if current is not None and event.seq < current.seq and self.event_at(event.seq) is None:
                # a lower seq than memory's is a store reset only if the store says so: it
                # may be a copy that waited in the socket while a resync read past it (a
                # re-import publishes hundreds at once: bench/soak.py finding H)
                if await self.store.stored_seq() < current.seq:
                    await self._resync()
                return
            self.catalog = catalog  # with its event, as in _resync
            self._deliver(event)

    async def audit(self) -> None:
        """Resync when the stored seq differs from the one in memory (a flush or an empty
        restart makes it lower, a lost message higher).

        Raises:
            RECONNECT_ERRORS: Redis is unreachable (the follower reconnects).
        """
        async with self._lock:
            current = self.current
            if current is None or self.stale:
                return
            if await self.store.stored_seq() != current.seq:
                await self._resync()

    def overdue_s(self, now: datetime, grace_s: float) -> float:
        """Seconds by which the held status is past the change it announced (``until``, an
        upcoming start, an override expiry), when more than ``grace_s``; else 0.0. Nothing
        newer arrived in time: no publisher is alive, or this process lost the feed."""
        current = self.current
        due = expected_change_at(current.doc) if current is not None else None
        late = (now - due).total_seconds() if due is not None else 0.0
        return late if late > grace_s else 0.0

    def _on_lost(self, exc: BaseException) -> None:
        if not self.stale:
            log.warning("redis unreachable (%s); serving last known status", exc)
        self.stale = True

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the first subscription is confirmed and the snapshot read."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True
