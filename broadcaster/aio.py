"""Small asyncio helpers shared by the app and the worker."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def stop_task(task: asyncio.Task[None] | None, name: str) -> None:
    """Cancel ``task`` and wait until it is really done.

    A read inside a client can swallow a cancellation that races with its own completion
    (``asyncio.wait_for`` on Python 3.11: python/cpython#86296; fakeredis uses it), and the
    task would then run on forever: so cancel until done.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        log.error("%s had failed: %r", name, task.exception())
