"""Whether the ASGI server is shutting down: the only ``sse_starlette`` importer.

Importing this module installs sse-starlette's patch of uvicorn's exit handler (its
``AppStatus``), so :mod:`broadcaster.app` imports it at start-up, before uvicorn captures
its signals where possible. :mod:`broadcaster.sse` reads it lazily, so importing the hub
(and the gate) does not pull ``sse_starlette`` in or patch uvicorn.
"""

from __future__ import annotations

import signal

from sse_starlette.sse import AppStatus

__all__ = ["AppStatus", "server_exiting"]


def server_exiting() -> bool:
    """Whether uvicorn is shutting down: sse-starlette's patched exit handler sets
    ``AppStatus.should_exit``; where the patch came too late, the server's own flag is
    found through its SIGTERM handler (sysid/sse-starlette#132)."""
    if AppStatus.should_exit:
        return True
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))
