"""What the worker does at a boundary, without any scheduler: recompute and publish."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from broadcaster.clock import Clock
from broadcaster.metrics import PUBLISH_LAG
from broadcaster.store import RECONNECT_ERRORS, Store

log = logging.getLogger(__name__)


async def reconcile(
    store: Store, clock: Clock, boundary: datetime | None = None, *, fence: str | None = None
) -> int:
    """Publish the time-driven change due now, if any; returns how many events were published.

    At a boundary job the status is evaluated at ``max(clock.now(), boundary)``: APScheduler
    3.x fires by the wall clock, which under a rehearsal clock may read a hair early. With
    ``fence`` (this worker's id) nothing is published unless it holds the leader lock.
    """
    now = clock.now()
    if boundary is not None and boundary > now:
        now = boundary
    published = await store.reconcile(now, fence=fence)
    if published and boundary is not None:
        PUBLISH_LAG.observe(max(0.0, (clock.now() - boundary).total_seconds()))
    return len(published)


async def reconcile_until_done(
    store: Store,
    clock: Clock,
    boundary: datetime | None = None,
    *,
    deadline_s: float = 60.0,
    fence: str | None = None,
) -> int:
    """:func:`reconcile`, retried with backoff while it fails (Redis unreachable, or any
    other error), for up to ``deadline_s`` seconds (the safety tick takes over after that)."""
    delay, waited = 0.2, 0.0
    while True:
        try:
            return await reconcile(store, clock, boundary, fence=fence)
        except Exception as exc:  # not only RECONNECT_ERRORS: a boundary is never dropped
            if not isinstance(exc, RECONNECT_ERRORS):  # redis-py in a state it did not expect
                log.warning("reconcile failed unexpectedly: %r", exc)
            if waited >= deadline_s:
                log.error(
                    "reconcile gave up after %.0f s (the safety tick retries): %s", waited, exc
                )
                return 0
            # the first failure is news; the retries are not
            (log.warning if waited == 0 else log.debug)(
                "reconcile failed (%s); retrying in %.1f s", exc, delay
            )
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)
