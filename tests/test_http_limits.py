"""HTTP limits of a real ``maintcast api`` process, probed with raw sockets (issue 12, items
3 and 4): the per-client stream cap (429 + ``Retry-After`` + the JSON error shape), the
client address as uvicorn's proxy-header handling leaves it (``X-Forwarded-For`` believed
from ``MAINTCAST_FORWARDED_ALLOW_IPS`` only), and the request-head bounds of
``broadcaster.serving.HeadGuard`` (431 past ``MAINTCAST_MAX_HEADER_BYTES``, 408 or a silent
close past ``MAINTCAST_HEADER_TIMEOUT_S``) that leave a long-lived stream alone."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support import EXAMPLE, Proc, env_for, eventually, free_port, processes, run_cli

pytestmark = pytest.mark.slow

HEAD_TIMEOUT_S = 1.0
CAP = 3


@contextlib.contextmanager
def api(tmp_path: Path, redis_url: str, prefix: str, name: str, **env: str) -> Iterator[int]:
    """A ``maintcast api`` on a free port over a store holding the example; yields its port."""
    environment = env_for(MAINTCAST_REDIS_URL=redis_url, MAINTCAST_KEY_PREFIX=prefix, **env)
    imported = run_cli(["windows", "import", str(EXAMPLE)], environment, 60)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    port = free_port()
    with processes() as procs:
        procs.append(Proc(name, ["api", "--port", str(port)], environment, tmp_path))
        with httpx.Client() as probe:

            def ready() -> bool:
                assert procs[0].alive(), procs[0].tail()
                return probe.get(f"http://127.0.0.1:{port}/readyz", timeout=1).is_success

            eventually(
                ready,
                "the api ready",
                timeout=20,
                interval=0.1,
                ignoring=(httpx.HTTPError,),
                detail=procs[0].tail,
            )
        yield port
        assert procs[0].alive(), procs[0].tail()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def head_of(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and whatever body bytes came with them (reads up to the blank line)."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        assert chunk, f"closed after {got!r}"
        got += chunk
    head, _, rest = got.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, rest


def open_stream(port: int, forwarded_for: str | None = None) -> tuple[socket.socket, int, bytes]:
    """A ``GET /v1/stream``: the socket (left open), the status and the body begun."""
    s = connect(port)
    extra = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    s.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    status, headers, rest = head_of(s)
    if status == 429:
        assert headers["content-type"] == "application/json"
        assert headers["retry-after"] == "10", headers
        while len(rest) < int(headers["content-length"]):
            rest += s.recv(65536)
    return s, status, rest


def until_closed(s: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything received until the server closes (seconds it took); fails after
    ``limit_s``."""
    s.settimeout(limit_s)
    t0, got = time.monotonic(), b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except TimeoutError:
        pytest.fail(f"still open after {limit_s} s; got {got[:200]!r}")
    except ConnectionResetError:
        pass
    return got, time.monotonic() - t0


def test_streams_per_client_address(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    """``CAP`` streams per address; the next gets 429 in the error shape; a closed stream
    frees its place; ``X-Forwarded-For`` names the client only from a trusted peer."""
    opened: list[socket.socket] = []
    settings = {"MAINTCAST_STREAMS_PER_CLIENT": str(CAP), "MAINTCAST_PING_S": "0.5"}
    try:
        with api(
            tmp_path, redis_url, key_prefix, "trusting",
            MAINTCAST_FORWARDED_ALLOW_IPS="127.0.0.1", **settings,
        ) as port:  # fmt: skip
            for client in (None, "203.0.113.7"):  # this address, then one nginx speaks for
                for _ in range(CAP):
                    s, status, _ = open_stream(port, client)
                    opened.append(s)
                    assert status == 200, client
                s, status, body = open_stream(port, client)
                s.close()
                assert status == 429, client
                error = orjson.loads(body)["error"]
                assert error["code"] == "too_many_streams", error
                assert f"at most {CAP}" in error["message"]
                assert error["field"] is None

            opened.pop(0).close()  # the server notices the disconnect, and frees the place

            def reopened() -> socket.socket | None:
                s, status, _ = open_stream(port)
                if status == 200:
                    return s
                s.close()
                return None

            opened.append(eventually(reopened, "a closed stream gives its place back"))
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            refused = next(
                ln
                for ln in metrics.splitlines()
                if ln.startswith("maintcast_streams_refused_total")
            )
            assert float(refused.split()[1]) >= 2, refused

        # a server that does not trust this peer ignores its X-Forwarded-For, also with
        # uvicorn's own FORWARDED_ALLOW_IPS="*" in the environment (no longer read)
        with api(
            tmp_path, redis_url, key_prefix, "distrusting",
            MAINTCAST_FORWARDED_ALLOW_IPS="192.0.2.1", FORWARDED_ALLOW_IPS="*", **settings,
        ) as port:  # fmt: skip
            codes = []
            for i in range(CAP + 1):
                s, status, _ = open_stream(port, f"198.51.100.{i + 1}")
                opened.append(s)
                codes.append(status)
            assert codes == [200] * CAP + [429], codes
    finally:
        for s in opened:
            s.close()


def test_request_head_bounds(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    """Idle and half-sent heads are closed after the head timeout (on a fresh and on a
    kept-alive connection), an oversized head gets 431 without being read to its end, a
    head just under the bound and a stream living past the timeout are served."""
    with api(
        tmp_path, redis_url, key_prefix, "api",
        MAINTCAST_HEADER_TIMEOUT_S=str(HEAD_TIMEOUT_S), MAINTCAST_PING_S="0.5",
    ) as port:  # fmt: skip
        bound = HEAD_TIMEOUT_S + 3  # generous: the machine is shared

        # 1. a connection that sends nothing is closed, without an answer
        with connect(port) as s:
            got, took = until_closed(s, bound)
        assert got == b"", (got, took)
        assert took >= HEAD_TIMEOUT_S - 0.2, (got, took)

        # 2. half a request head: 408, closed
        with connect(port) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
            got, took = until_closed(s, bound)
        assert got.startswith(b"HTTP/1.1 408 "), got
        assert took >= HEAD_TIMEOUT_S - 0.2, took

        # 3. the same on a kept-alive connection, after a complete request was answered
        with connect(port) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = head_of(s)
            assert status == 200
            while len(body) < int(headers["content-length"]):
                body += s.recv(65536)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            got, _ = until_closed(s, bound)
        assert got.startswith(b"HTTP/1.1 408 "), got

        # 4. a head just under 64 KiB is served; over it, 431 whether complete or not
        def head(size: int, end: bool) -> bytes:
            start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
            return start + b"a" * (size - len(start) - 4) + (b"\r\n\r\n" if end else b"")

        for size, end, expected in (
            (60_000, True, b"HTTP/1.1 200 "),
            (70_000, True, b"HTTP/1.1 431 "),
            (70_000, False, b"HTTP/1.1 431 "),
        ):
            with connect(port) as s:
                s.sendall(head(size, end))
                got, _ = until_closed(s, bound)
            assert got.startswith(expected), (size, end, got[:100])

        # 5. a 32 MB header: the server stops reading long before its end
        sent = 0
        with connect(port) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            with contextlib.suppress(OSError):  # reset by the server, or a full window
                while sent < 32 * 2**20:
                    sent += s.send(b"a" * 2**16)
        assert sent < 32 * 2**20, "the whole 32 MB header was read"

        # 6. a stream is not cut by the head timeout: pings still arrive after it
        s, status, _ = open_stream(port)
        with s:
            assert status == 200
            s.settimeout(bound)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2 * HEAD_TIMEOUT_S + 0.5:
                assert s.recv(65536), "the stream was closed"
