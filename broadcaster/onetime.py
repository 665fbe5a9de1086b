"""The one-time admin token of ``maintcast serve`` (no ``MAINTCAST_TOKENS`` configured).

The token is valid for the life of the process only. It is shown when standard output is a
terminal, where the person who started the process reads it. Anywhere else (a service
manager, a container, CI) standard output goes to a log that others read and keep, so the
token is written instead to a new file only its owner can read (mode 0600, created with
``O_EXCL`` in ``$TMPDIR``), whose path is logged and which is removed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger(__name__)

Cleanup = Callable[[Any, Any], AbstractAsyncContextManager[None]]
"""A companion of the app's lifespan (``create_app(background=…)``: called with the store
and the clock) that removes the token file when the app stops."""


def hand_over(token: str, out: TextIO) -> tuple[Cleanup, ...]:
    """Give ``token`` to whoever started the process: written to ``out`` when it is a
    terminal, else to a private file whose path is logged at WARNING (the token itself is
    never logged). Returns what removes that file at shutdown, for the app's lifespan
    (empty on a terminal): uvicorn ends a process stopped by SIGTERM by raising the signal
    again, which skips ``atexit`` (registered too, for the other exits).

    Raises:
        OSError: the file cannot be created.
    """
    intro = "No MAINTCAST_TOKENS configured: a one-time admin token for this process"
    if out.isatty():
        out.write(f"{intro} (shown once, gone at exit):\n  MAINTCAST_TOKEN={token}\n")
        out.flush()
        return ()
    fd, name = tempfile.mkstemp(prefix="maintcast-admin-token-", suffix=".txt")  # mode 0600
    path = Path(name)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"MAINTCAST_TOKEN={token}\n")
    atexit.register(_remove, path)
    log.warning(
        "%s is in %s (mode 0600, removed at exit): standard output is not a terminal, "
        "so it is not printed",
        intro,
        path,
    )

    @contextlib.asynccontextmanager
    async def removed_at_shutdown(store: Any, clock: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            _remove(path)

    return (removed_at_shutdown,)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
