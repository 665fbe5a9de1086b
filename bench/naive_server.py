"""The naive SSE baseline of ``bench/fanout.py``: what tutorials do.

One sse-starlette endpoint; every subscriber opens its OWN Redis pub/sub connection,
reads the current status once (GET), then forwards each published message as it comes.
Run: ``python bench/naive_server.py --port 8101 --redis redis://127.0.0.1:6399/0``
(uvicorn picks uvloop and httptools when installed, as for Maintcast).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

CHANNEL = "naive:status"
KEY = "naive:status"


def make_app(redis_url: str) -> Starlette:
    pool = aioredis.ConnectionPool.from_url(redis_url, max_connections=100_000)
    r = aioredis.Redis(connection_pool=pool)

    async def stream(request: Request) -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, object]]:
            pubsub: Any = r.pubsub()  # one Redis connection per subscriber
            try:
                await pubsub.subscribe(CHANNEL)
                current = await r.get(KEY)
                if current is not None:
                    text = current.decode() if isinstance(current, bytes) else current
                    yield {"id": str(json.loads(text)["seq"]), "event": "status", "data": text}
                async for msg in pubsub.listen():
                    if msg["type"] != "message":
                        continue
                    text = msg["data"].decode()
                    yield {"id": str(json.loads(text)["seq"]), "event": "status", "data": text}
            finally:
                await pubsub.aclose()

        return EventSourceResponse(events(), ping=15, send_timeout=10)

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/stream", stream), Route("/healthz", healthz)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=8101)
    p.add_argument("--redis", required=True)
    a = p.parse_args()
    uvicorn.run(make_app(a.redis), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
