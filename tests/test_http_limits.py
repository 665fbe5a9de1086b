"""HTTP limits of a real ``maintcast api`` process, probed with raw sockets (issue 12, items
3 and 4): the per-client stream cap (429 + ``Retry-After`` + the JSON error shape), the
client address as uvicorn's proxy-header handling leaves it (``X-Forwarded-For`` believed
from ``MAINTCAST_FORWARDED_ALLOW_IPS`` only), and the request-head bounds of
``broadcaster.serving.HeadGuard`` (431 past ``MAINTCAST_MAX_HEADER_BYTES``, 408 or a silent
close past ``MAINTCAST_HEADER_TIMEOUT_S``) that leave a long-lived stream alone, and its
request-body handling (408 past ``MAINTCAST_BODY_TIMEOUT_S``, a close after an early answer,
``nosniff`` on what it answers itself)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from broadcaster.auth import entry_line
from broadcaster.serving import BODY_WHOLE_FACTOR
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


BODY_TIMEOUT_S = 1.0
ADMIN_TOKEN = "admin-token-http-limits"


def answer_of(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """A whole answer with a ``Content-Length``: status, headers, body."""
    status, headers, body = head_of(s)
    while len(body) < int(headers["content-length"]):
        chunk = s.recv(65536)
        assert chunk, f"closed after {body!r}"
        body += chunk
    return status, headers, body


def keeps_reading(s: socket.socket, limit_s: float = 3.0, cap: int = 256 * 2**20) -> int:
    """Send body bytes until the server's close stops us; returns how many went out. Fails
    when ``cap`` bytes went out, or ``limit_s`` passed, with the connection still taking
    them (the server drains the body instead of closing)."""
    s.settimeout(limit_s)
    sent, t0 = 0, time.monotonic()
    chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
    try:
        while sent < cap and time.monotonic() - t0 < limit_s:
            sent += s.send(chunk)
    except (ConnectionResetError, BrokenPipeError):
        return sent
    except TimeoutError:
        pytest.fail(f"the server stopped reading but kept the connection open ({sent} B sent)")
    pytest.fail(f"the server kept reading the body: {sent} B in {time.monotonic() - t0:.1f} s")


def drip(port: int, head: bytes, whole: float) -> tuple[bytes, float]:
    """Send ``head``, then a byte of body every 0.4 s until the server answers and closes
    (bounded: 3 times ``whole``); what came back and the seconds it took."""
    with connect(port) as s:
        s.sendall(head)
        t0 = time.monotonic()
        got = b""
        for _ in range(int(3 * whole / 0.4)):
            try:
                s.sendall(b" ")
            except OSError:  # closed by the server after its answer
                break
            s.settimeout(0.4)
            with contextlib.suppress(TimeoutError):
                chunk = s.recv(65536)
                got += chunk
                if not chunk:
                    break
        return got, time.monotonic() - t0


def test_request_body_bounds(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    """An answer given before the body was read (401, 405, 413) says ``Connection: close``
    and the connection is closed, not drained (the rest of the body is dropped only for a
    short while, so the client reads the answer); a body that stalls for
    ``MAINTCAST_BODY_TIMEOUT_S`` gets 408 and a close, one that keeps coming is served;
    every answer made before the app runs (400, 408, 431) carries ``nosniff``."""
    tokens = entry_line("boss", "admin", ADMIN_TOKEN)
    with api(
        tmp_path, redis_url, key_prefix, "api",
        MAINTCAST_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S), MAINTCAST_HEADER_TIMEOUT_S="1",
        MAINTCAST_TOKENS=tokens,
    ) as port:  # fmt: skip
        bound = BODY_TIMEOUT_S + 3  # generous: the machine is shared
        auth = f"Authorization: Bearer {ADMIN_TOKEN}\r\n"
        chunked = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"

        # 1. answered before the body: 401 (no token), 405 (live route), 413 (declared or
        #    streamed past 256 KiB) close the connection instead of reading an endless body
        for head, expected in (
            (f"POST /v1/windows HTTP/1.1\r\nHost: x\r\n{chunked}\r\n", 401),
            (f"POST /v1/status HTTP/1.1\r\nHost: x\r\n{chunked}\r\n", 405),
            (f"POST /v1/windows HTTP/1.1\r\nHost: x\r\n{auth}{chunked}\r\n", 413),
            (
                f"POST /v1/windows HTTP/1.1\r\nHost: x\r\n{auth}"
                "Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n",
                413,
            ),
        ):
            with connect(port) as s:
                s.sendall(head.encode() + b"10\r\n" + b"{" * 16 + b"\r\n")
                if expected == 413 and "chunked" in head:  # past the bound: then answered
                    with contextlib.suppress(OSError):
                        for _ in range(8):
                            s.sendall(b"10000\r\n" + b"a" * 0x10000 + b"\r\n")
                status, headers, _ = answer_of(s)
                assert (status, headers.get("connection")) == (expected, "close"), head
                assert headers["x-content-type-options"] == "nosniff"
                keeps_reading(s)

        # 1b. a client that reads only once its whole body is sent (httpx) gets the early
        #     answer all the same: the rest of a body is read and dropped before the close
        #     (closing at once would reset the connection under the client's sends)
        with connect(port) as s:
            s.sendall(f"POST /v1/windows HTTP/1.1\r\nHost: x\r\n{chunked}\r\n".encode())
            s.sendall(b"1\r\n{\r\n")
            status, headers, _ = answer_of(s)
            assert (status, headers["connection"]) == (401, "close")
            for _ in range(16):  # 1 MiB more after the answer: taken, not reset
                s.sendall(b"10000\r\n" + b" " * 0x10000 + b"\r\n")
                time.sleep(0.01)
            s.shutdown(socket.SHUT_WR)
            got, _ = until_closed(s, bound)
            assert got == b"", got[:100]

        def megabyte() -> Iterator[bytes]:
            yield b"{"
            for _ in range(16):
                yield b" " * 0x10000

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            json = {"Content-Type": "application/json"}
            r = client.post("/v1/windows", content=b"{" + b" " * 2**20 + b"}", headers=json)
            assert r.status_code == 401, r.headers
            assert r.headers["connection"] == "close", r.headers
            r = client.post(
                "/v1/windows",
                content=megabyte(),
                headers={**json, "Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert r.status_code == 413, r.headers
            assert r.headers["connection"] == "close", r.headers
            assert r.json()["error"]["code"] == "body_too_large"

        # 1c. a body trickling on after the early answer is dropped only for a while
        with connect(port) as s:
            s.sendall(f"POST /v1/windows HTTP/1.1\r\nHost: x\r\n{chunked}\r\n".encode())
            s.sendall(b"1\r\n{\r\n")
            status, headers, _ = answer_of(s)
            assert status == 401
            t0, closed = time.monotonic(), False
            while not closed and time.monotonic() - t0 < bound:
                try:
                    s.sendall(b"1\r\n \r\n")  # a byte every 0.2 s: "progress"
                except (ConnectionResetError, BrokenPipeError):
                    closed = True  # the server closed: our next bytes were refused
                time.sleep(0.2)
            took = time.monotonic() - t0
        assert closed, f"a trickling body kept the connection {took:.1f} s"

        # 2. an answer after the whole body keeps the connection (no needless close)
        with connect(port) as s:
            for _ in range(2):
                s.sendall(
                    f"DELETE /v1/override HTTP/1.1\r\nHost: x\r\n{auth}"
                    "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".encode()
                )
                status, headers, _ = answer_of(s)
                assert status == 404, headers
                assert "connection" not in headers, headers

        # 3. a body that stalls: 408 and closed, after the body timeout
        start = f"POST /v1/windows HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100\r\n\r\n"
        with connect(port) as s:
            s.sendall(start.encode() + b'{"title"')
            got, took = until_closed(s, bound)
        assert got.startswith(b"HTTP/1.1 408 "), got
        assert b"x-content-type-options: nosniff\r\n" in got.lower(), got
        assert took >= BODY_TIMEOUT_S - 0.2, took

        # 4. a body that keeps coming, slower than the timeout in all, is read and answered
        body = b'{"reason": "' + b"x" * 8 + b'"}'
        head = f"POST /v1/windows HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len(body)}\r\n"
        with connect(port) as s:
            s.sendall(head.encode() + b"\r\n")
            t0 = time.monotonic()
            for i in range(len(body)):  # a byte every 0.15 s: 3 s in all
                s.sendall(body[i : i + 1])
                time.sleep(0.15)
            status, headers, answer = answer_of(s)
        assert time.monotonic() - t0 > 2 * BODY_TIMEOUT_S
        assert status == 422, answer
        assert b"title" in answer, answer

        # 4b. a drip that never stalls for the timeout but goes on and on: 408 once the body
        #     is not whole within BODY_WHOLE_FACTOR timeouts
        whole = BODY_WHOLE_FACTOR * BODY_TIMEOUT_S
        head = f"POST /v1/windows HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1000\r\n\r\n"
        dripped, took = drip(port, head.encode(), whole)
        assert dripped.startswith(b"HTTP/1.1 408 "), dripped
        assert whole - 0.5 <= took <= whole + 3, took

        # 5. answers given before the app runs carry nosniff: a malformed request (400), a
        #    late head (408), an oversized head (431)
        for raw, status_line in (
            (b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400 "),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1", b"HTTP/1.1 408 "),
            (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b"HTTP/1.1 431 "),
        ):
            with connect(port) as s:
                s.sendall(raw)
                got, _ = until_closed(s, bound)
            assert got.startswith(status_line), got[:100]
            head_lines = got.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
            assert b"x-content-type-options: nosniff" in head_lines, got[:300]
            assert b"connection: close" in head_lines, got[:300]
