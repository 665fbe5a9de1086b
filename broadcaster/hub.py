"""One Redis subscription per process, fanned out in memory to every SSE client and the gate.

Each published status is decoded once and its SSE frame encoded once (per scope) for all
clients. Per-client queues are bounded: a client whose queue fills is dropped and
reconnects to a fresh snapshot (as mercure's subscriber does).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable

from broadcaster import codec
from broadcaster.clock import Clock
from broadcaster.domain import Catalog
from broadcaster.metrics import SLOW_CLIENTS_DROPPED
from broadcaster.store import Store

log = logging.getLogger(__name__)

Scope = tuple[str | None, str | None]
FREEZE_EVERY = 500
"""Freeze the heap after this many new subscriptions (see :func:`freeze_heap`)."""


def freeze_heap(*, collect: bool = False) -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    Thousands of long-lived connection objects otherwise make each full collection take
    over a second (measured: 1.2-1.5 s at 5k-10k subscribers), and one falling inside a
    broadcast delays every client by that much (docs/performance.md). Frozen objects are
    still freed by reference counting when a connection ends. ``collect`` first (only at
    start-up: a full collection among thousands of connections is the very pause avoided).
    """
    if collect:
        gc.collect()
    gc.freeze()


class Event:
    """One published status: the decoded object, its payload and frames, built once."""

    __slots__ = ("_frame", "_views", "doc", "payload", "seq")

    def __init__(self, doc: codec.Doc, payload: bytes | None = None) -> None:
        self.doc = doc
        self.seq: int = doc["seq"]
        self.payload = payload if payload is not None else codec.dumps(doc)
        self._frame: bytes | None = None
        self._views: dict[Scope, tuple[codec.Doc, bytes]] = {}

    def frame(self) -> bytes:
        """The unscoped SSE frame."""
        if self._frame is None:
            self._frame = codec.sse_frame(self.seq, self.payload)
        return self._frame

    def view(
        self, scope: Scope, scoper: Callable[[codec.Doc, Scope], codec.Doc]
    ) -> tuple[codec.Doc, bytes]:
        """The scoped status and its SSE frame, computed once per scope."""
        if scope == (None, None):
            return self.doc, self.frame()
        got = self._views.get(scope)
        if got is None:
            doc = scoper(self.doc, scope)
            got = self._views[scope] = (doc, codec.sse_frame(self.seq, codec.dumps(doc)))
        return got


class Subscription:
    """One client's bounded queue of events; ``dropped`` once it overflowed."""

    __slots__ = ("dropped", "queue")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(size)  # None: stream ends
        self.dropped = False


class Hub:
    """Keeps the current status in memory and fans every change out to subscriptions."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        queue_size: int = 64,
        zone: str = "Asia/Tokyo",
    ) -> None:
        self.store = store
        self.clock = clock
        self.queue_size = queue_size
        self.zone = zone
        self.current: Event | None = None
        self.catalog = Catalog()
        self.stale = False
        self._subs: set[Subscription] = set()
        self._since_freeze = 0
        self._ready = asyncio.Event()

    # -- clients -------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """Register a client before it reads the snapshot, so no event falls in between."""
        sub = Subscription(self.queue_size)
        self._subs.add(sub)
        self._since_freeze += 1
        if self._since_freeze >= FREEZE_EVERY:
            freeze_heap()
            self._since_freeze = 0
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a client (idempotent)."""
        self._subs.discard(sub)

    @property
    def clients(self) -> int:
        """How many subscriptions are open."""
        return len(self._subs)

    def scope_view(self, doc: codec.Doc, scope: Scope) -> codec.Doc:
        """``doc`` restricted to ``scope`` (see :func:`codec.scoped_doc`)."""
        return codec.scoped_doc(
            doc,
            self.catalog,
            service=scope[0],
            method=scope[1],
            default_error_code=self.store.defaults.error_code,
            zone=self.zone,
        )

    async def snapshot(self) -> Event:
        """The current status: from memory when known, else read (and remembered)."""
        if self.current is None:
            await self._resync()
        assert self.current is not None  # _resync sets it or raises
        return self.current

    def _deliver(self, event: Event) -> None:
        current = self.current
        if current is not None and event.seq <= current.seq:
            if event.seq == current.seq or (event.seq == 0 and current.seq == 0):
                if event.seq == 0:
                    self.current = event  # before any publish: refresh the computed snapshot
                return  # a resync re-read what pub/sub already delivered
            self._reset(event)
            return
        self.current = event
        for sub in tuple(self._subs):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(sub)
                SLOW_CLIENTS_DROPPED.inc()
                log.warning("dropped a slow SSE client at seq=%s", event.seq)

    def _reset(self, event: Event) -> None:
        """The store's seq went back (Redis restarted empty, or was flushed): adopt the new
        status and end every stream, so clients reconnect with a Last-Event-ID above the
        new seq and get a ``resync`` (CONTRACT.md "SSE")."""
        assert self.current is not None
        log.warning(
            "store seq went back from %s to %s (store reset); resyncing %d client(s)",
            self.current.seq,
            event.seq,
            len(self._subs),
        )
        self.current = event
        for sub in tuple(self._subs):
            self._drop(sub)

    def end(self, sub: Subscription) -> None:
        """End one client's stream (server shutdown); it reconnects elsewhere."""
        self._drop(sub)

    def _drop(self, sub: Subscription) -> None:
        sub.dropped = True
        self._subs.discard(sub)
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait(None)  # wake a stream waiting on an empty queue

    async def _resync(self) -> None:
        """Re-read catalog and status: after every (re)subscribe, pub/sub may have lost some."""
        self.catalog = await self.store.catalog()
        current = self.current
        # pub/sub dropped what was published while away: deliver it from the event log, in
        # order, so open streams see one event per change (no seq gap); a gap the log cannot
        # fill or a store reset (replay None) falls back to the stored status.
        missed = await self.store.replay(current.seq) if current and current.seq else None
        if missed:
            if self.stale:
                log.info("redis reachable again; replaying %d missed event(s)", len(missed))
            self.stale = False
            for payload in missed:
                self._deliver(Event(codec.loads(payload), payload))
            return
        doc = await self.store.status(self.clock.now())
        if self.stale:
            log.info("redis reachable again; status seq=%s", doc["seq"])
        self.stale = False
        self._deliver(Event(doc))

    # -- the listener --------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the store's change channel forever (see :meth:`Store.follow`)."""
        await self.store.follow(self._on_feed, self._on_lost)

    async def _on_feed(self, payload: bytes | None) -> None:
        if payload is None:
            await self._resync()
            self._ready.set()
            return
        self.catalog = await self.store.catalog()  # an import may have brought a new one
        self._deliver(Event(codec.loads(payload), payload))

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
