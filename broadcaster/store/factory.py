"""``make_store(settings, redis)``: the store a process's settings describe.

Kept in the store package (not in ``app``) so the gate and the CLI build a store without
importing FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broadcaster.keys import Keys
from broadcaster.store.client import Redis
from broadcaster.store.core import Store

if TYPE_CHECKING:
    from broadcaster.settings import Settings


def make_store(settings: Settings, redis: Redis, *, clock_speed: float = 1.0) -> Store:
    """The store for ``settings`` over a client the caller owns.

    The misfire grace is real seconds: under a rehearsal clock running ``clock_speed`` times
    faster it spans that many more clock seconds.
    """
    return Store(
        redis,
        keys=Keys(settings.key_prefix),
        defaults=settings.defaults,
        grace_s=settings.misfire_grace_s * clock_speed,
        retention=settings.event_retention,
    )
