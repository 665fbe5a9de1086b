"""A real ``maintcast serve`` stopped with SIGTERM ends its open streams cleanly (final
chunk), so browsers reconnect at once (to another replica), and the process exits."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from tests.support import EXAMPLE, Proc, env_for, free_port, processes, wait_ready


async def test_sigterm_ends_open_streams_cleanly_and_exits(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes() as procs:
        serve = Proc(
            "serve", ["serve", "--schedule", str(EXAMPLE), "--port", str(port)], env_for(), tmp_path
        )
        procs.append(serve)
        async with httpx.AsyncClient(timeout=10) as client:
            await wait_ready(client, base, procs)
            streams = [client.stream("GET", f"{base}/v1/stream") for _ in range(3)]
            opened = [await s.__aenter__() for s in streams]
            try:
                for r in opened:
                    assert r.status_code == 200
                t0 = time.monotonic()
                serve.proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(3):
                    for r in opened:
                        body = b"".join([chunk async for chunk in r.aiter_bytes()])
                        assert body.startswith(b"retry: ")  # ended by the final chunk
                ended_s = time.monotonic() - t0
            finally:
                for s in streams:
                    await s.__aexit__(None, None, None)
        assert ended_s < 2.0, serve.tail()  # the keepalive timer polls every 0.5 s
        # uvicorn re-raises the signal it caught once shut down: killed by SIGTERM, cleanly
        assert serve.proc.wait(5) in (0, -signal.SIGTERM), serve.tail()
