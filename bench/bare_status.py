"""The baseline of ``bench/status.py``: a bare Starlette app with one handler returning the
same status JSON bytes (read once at start from ``BARE_STATUS_BODY``, a file path)."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = Path(os.environ["BARE_STATUS_BODY"]).read_bytes()


async def status(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/v1/status", status)])
