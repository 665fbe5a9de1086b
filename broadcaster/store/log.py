"""The event log's reads: the entries of ``/v1/events`` (as the reader may see them) and
the status payloads a reconnecting stream is replayed from.

Each publish appends one stream entry with id ``<seq>-0`` (:mod:`broadcaster.store.core`):
``e`` is the log entry with the whole cause, ``s`` the status payload as published (whose
cause is already what anyone may read at that instant: :func:`broadcaster.domain.public_cause`).
"""

from __future__ import annotations

from datetime import datetime

from broadcaster import codec
from broadcaster.domain import Cause, public_cause
from broadcaster.store.coordination import Coordination

MAX_REPLAY = 500
"""Most events replayed to one reconnecting client; a longer gap gets a resync."""


class EventLog(Coordination):
    """Read the event log (the store's stream under ``keys.events``)."""

    async def events(
        self, after: int, limit: int, *, public_at: datetime | None = None
    ) -> list[codec.Doc]:
        """Event-log entries with seq > ``after``, oldest first, at most ``limit``.

        With ``public_at``, as a reader without a token sees them at that instant: an entry
        of a window (or series) not announced by then has ``window_id`` and ``reason`` null (the
        windows are read as they are now, so an entry shows them once its window is
        announced). Without it, as recorded (ops).
        """
        rows = await self.redis.xrange(self.keys.events, min=f"{after + 1}-0", count=limit)
        entries = [codec.loads(fields[b"e"]) for _, fields in rows]
        if public_at is None:
            return entries
        ids = sorted({e["window_id"] for e in entries if e.get("window_id") is not None})
        if not ids:
            return entries
        found = await self.redis.hmget(self.keys.windows, ids)
        series = await self.redis.hmget(self.keys.series, ids)  # an entry may name a series
        windows = {
            i: codec.window_from_doc(codec.loads(raw or other))
            for i, raw, other in zip(ids, found, series, strict=True)
            if (raw or other) is not None
        }
        shown = []
        for e in entries:
            cause = Cause(e["type"], e.get("window_id"), e.get("actor"), e.get("reason"))
            public = public_cause(cause, windows, public_at)
            shown.append({**e, "window_id": public.window_id, "reason": public.reason})
        return shown

    async def replay(self, after: int) -> list[bytes] | None:
        """Status payloads published after seq ``after``, oldest first.

        Returns None when they cannot all be replayed (the gap is beyond the log's
        retention or longer than ``MAX_REPLAY``, or ``after`` is above the current seq
        because the store was reset): the caller then sends a ``resync``, one status, which
        is also cheaper than thousands of events to a client that was away that long.
        """
        seq = await self.stored_seq()
        if after > seq or after < 0 or seq - after > MAX_REPLAY:
            return None
        if after == seq:
            return []
        rows = await self.redis.xrange(self.keys.events, min=f"{after + 1}-0", count=MAX_REPLAY)
        if not rows or int(rows[0][0].split(b"-")[0]) != after + 1:
            return None
        return [fields[b"s"] for _, fields in rows]
