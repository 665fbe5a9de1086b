"""A real nginx in front of the API, running the committed ``deploy/nginx/maintcast.conf``.

The committed file is rendered with this test's ports by replacing only the lines between
its ``@maintcast:`` markers (tests/nginx_site.py; ``deploy/compose.yaml`` renders it the
same way), wrapped in a minimal main config whose every path is under a private
directory, and run by Debian's ``/usr/sbin/nginx`` as ``nginx -p <dir> -c <conf> -g
'daemon off; pid …; error_log stderr;'`` on a free loopback port. Checks:

- ``nginx -t`` accepts the committed file unchanged;
- an SSE event arrives through nginx within 100 ms of the ops write that published it
  (measured beside a direct connection to the replica), while a buffering variant of the
  same file misses that bound, so the check can fail;
- a stream through nginx outlives 2 x the ping interval (``MAINTCAST_PING_S=1``, held 3 s):
  ``: ping`` comments arrive, the stream stays open and still carries the next event;
- ``Last-Event-ID`` reaches the replica (replay through nginx);
- the gate's 503 (``maintcast serve --demo``, the only process that mounts the gate)
  passes through unchanged;
- hygiene (issue 12): an unknown ``Host`` is closed without an answer, ``Server`` names no
  version, ``Strict-Transport-Security`` goes out over TLS only (a self-signed certificate
  in the committed TLS lines), and of 40 streams opened at once from one address 32 open
  and 8 get nginx's 429 (the replica's own cap is off in that test).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.nginx_site import SITE, render_site, replace_region
from tests.support import (
    EXAMPLE,
    Proc,
    env_for,
    eventually,
    eventually_async,
    free_ports,
    need,
    processes,
    run_cli,
    start_redis,
    tail_of,
    tails,
    wait_ready,
)

pytestmark = pytest.mark.slow

NGINX = "/usr/sbin/nginx"
TOKEN = "nginx-test-" + secrets.token_hex(16)
TOKENS = f"nginx-test:admin:{hashlib.sha256(TOKEN.encode()).hexdigest()}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOST = "127.0.0.1"  # the server_name the rendered site answers (the tests' URLs use it)
BOUND_S = 0.100  # trigger -> arrival of one event on the subscriber's socket
TRIGGERS = 6


def need_nginx() -> None:
    need(f"nginx at {NGINX} (apt-get install nginx)", os.access(NGINX, os.X_OK))


# -- nginx on a private prefix -----------------------------------------------------------


def main_conf(prefix: Path, site: Path) -> str:
    """A main nginx.conf around ``site`` whose every path is under ``prefix``."""
    temp = "".join(
        f"    {d}_temp_path {prefix / d};\n"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "worker_processes 1;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"{temp}"
        f"    access_log {prefix / 'access.log'};\n"
        f"    include {site};\n"
        "}\n"
    )


def nginx_args(prefix: Path) -> list[str]:
    # -e: the error log nginx opens before it reads -g (else its compiled-in /var/log path)
    return [
        NGINX,
        "-e",
        "stderr",
        "-p",
        f"{prefix}/",
        "-c",
        str(prefix / "nginx.conf"),
        "-g",
        f"daemon off; pid {prefix / 'nginx.pid'}; error_log stderr;",
    ]


@contextlib.contextmanager
def nginx_prefix(site_text: str) -> Iterator[Path]:
    """A fresh prefix holding nginx.conf around ``site_text``. World-enterable: run as root,
    nginx's workers are ``nobody``, and pytest's tmp_path is private to root."""
    prefix = Path(tempfile.mkdtemp(prefix="maintcast-nginx-"))
    prefix.chmod(0o755)
    try:
        site = prefix / "maintcast.conf"
        site.write_text(site_text, encoding="utf-8")
        (prefix / "nginx.conf").write_text(main_conf(prefix, site), encoding="utf-8")
        yield prefix
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def nginx_t(prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*nginx_args(prefix), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def running_nginx(site_text: str, log: Path) -> Iterator[str]:
    """nginx serving ``site_text`` (which listens on 127.0.0.1:<port>), output in ``log``;
    yields its base URL."""
    listen = re.search(r"listen 127\.0\.0\.1:(\d+);", site_text)
    assert listen, "the rendered site must listen on 127.0.0.1:<port>"
    port = int(listen.group(1))
    with nginx_prefix(site_text) as prefix:
        checked = nginx_t(prefix)
        assert checked.returncode == 0, f"nginx -t failed:\n{checked.stderr}"
        exe, *args = nginx_args(prefix)
        proc = Proc(log.stem, args, None, log.parent, exe=exe)
        try:

            def listening() -> bool:
                assert proc.alive(), f"nginx exited\n{tail_of(log)}"
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True

            eventually(
                listening,
                "nginx listening",
                timeout=10,
                ignoring=(OSError,),
                detail=lambda: tail_of(log),
            )
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.stop(10)  # SIGTERM, nginx's fast shutdown: open streams are cut


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class Stream:
    """What one SSE connection received, with ``time.perf_counter()`` arrival instants."""

    events: list[tuple[int, float, dict[str, Any]]] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)
    response: httpx.Response | None = None
    ended: bool = False

    def arrival(self, seq: int) -> float | None:
        return next((t for s, t, _ in self.events if s == seq), None)

    def types(self) -> list[tuple[int, str]]:
        return [(s, d["cause"]["type"]) for s, _, d in self.events]


async def read_stream(
    client: httpx.AsyncClient, url: str, out: Stream, headers: dict[str, str] | None
) -> None:
    """Read ``url`` as SSE into ``out`` line by line (comments included) until it ends."""
    async with client.stream("GET", url, headers=headers) as r:
        out.response = r
        event_id: str | None = None
        async for line in r.aiter_lines():
            now = time.perf_counter()
            if line.startswith(": ping"):
                out.pings.append(now)
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                doc = orjson.loads(line[5:].strip())
                assert event_id == str(doc["seq"]), (event_id, doc["seq"])
                out.events.append((doc["seq"], now, doc))
    out.ended = True


@contextlib.asynccontextmanager
async def streaming(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Stream]:
    out = Stream()
    task = asyncio.create_task(read_stream(client, url, out, headers))
    try:
        yield out
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def ops_write(client: httpx.AsyncClient, base: str, i: int) -> tuple[int, float]:
    """One ops write that publishes (override set, then cleared, alternately); returns the
    seq it published and the instant just before the request was sent."""
    t0 = time.perf_counter()
    if i % 2 == 0:
        body = {"mode": "maintenance", "reason": f"nginx test {i}", "ttl_s": 600}
        r = await client.put(f"{base}/v1/override", headers=AUTH, json=body)
    else:
        body = {"reason": f"nginx test {i}"}
        r = await client.request("DELETE", f"{base}/v1/override", headers=AUTH, json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["seq"]), t0


# -- the tests -------------------------------------------------------------------------------


def test_committed_config_passes_nginx_t() -> None:
    need_nginx()
    with nginx_prefix(SITE.read_text(encoding="utf-8")) as prefix:
        res = nginx_t(prefix)
    assert res.returncode == 0, res.stderr
    assert "test is successful" in res.stderr, res.stderr


async def test_sse_through_nginx(tmp_path: Path) -> None:
    """Unbuffered (100 ms), long-lived (pings, 3 s at PING_S=1) and resumable
    (Last-Event-ID) through nginx, with one worker and one API on a private Redis."""
    need_nginx()
    server = start_redis()
    try:
        env = env_for(
            MAINTCAST_REDIS_URL=server.url,
            MAINTCAST_KEY_PREFIX=f"ngx{uuid.uuid4().hex[:10]}",
            MAINTCAST_TOKENS=TOKENS,
            MAINTCAST_PING_S="1",
        )
        imported = await asyncio.to_thread(run_cli, ["windows", "import", str(EXAMPLE)], env, 60)
        assert imported.returncode == 0, imported.stdout + imported.stderr

        api_port, nginx_port, control_port = free_ports(3)
        api = f"http://127.0.0.1:{api_port}"
        upstream = [f"127.0.0.1:{api_port}"]
        site = render_site(upstream, f"127.0.0.1:{nginx_port}", server_name=HOST)
        # The control: the same file with buffering on and the stream gzipped. With nginx
        # 1.22 neither change alone delayed these small frames (nginx still writes what it
        # has read, flushed, while the client keeps up); together they hold every event
        # for seconds. It shows that the 100 ms check can fail.
        control = render_site(
            upstream,
            f"127.0.0.1:{control_port}",
            {
                "gzip off;": "gzip on; gzip_types text/event-stream;",
                "proxy_buffering off;": "proxy_buffering on; "
                "proxy_ignore_headers X-Accel-Buffering;",
            },
            server_name=HOST,
        )
        with processes() as procs:
            procs.append(Proc("worker", ["worker"], env, tmp_path))
            args = ["api", "--host", "127.0.0.1", "--port", str(api_port)]
            procs.append(Proc("api", args, env, tmp_path))
            timeout = httpx.Timeout(5, read=None)
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                httpx.AsyncClient(timeout=timeout) as ops,
            ):
                await wait_ready(client, api, procs)
                with (
                    running_nginx(site, tmp_path / "nginx.log") as proxy,
                    running_nginx(control, tmp_path / "nginx-control.log") as buffered,
                ):
                    await wait_ready(client, proxy, procs)
                    await _check_routes(client, api, proxy)
                    await ops.get(f"{api}/healthz")  # the ops connection is open before t0
                    await _check_streams(client, ops, api, proxy, buffered, procs, tmp_path)
            for p in procs:
                assert p.alive(), f"{p.name} died\n{p.tail()}"
    finally:
        server.close()


async def _check_routes(client: httpx.AsyncClient, api: str, proxy: str) -> None:
    assert (await client.get(f"{proxy}/healthz")).status_code == 200
    status = await client.get(f"{proxy}/v1/status")
    assert status.status_code == 200, status.text
    assert status.headers["etag"], status.text
    # metrics are per replica: scraped from each, not served through the proxy
    assert (await client.get(f"{proxy}/metrics")).status_code == 404
    assert (await client.get(f"{api}/metrics")).status_code == 200


async def _check_streams(
    client: httpx.AsyncClient,
    ops: httpx.AsyncClient,
    api: str,
    proxy: str,
    buffered: str,
    procs: list[Proc],
    tmp_path: Path,
) -> None:
    async with (
        streaming(client, f"{api}/v1/stream") as direct,
        streaming(client, f"{proxy}/v1/stream") as via,
        streaming(client, f"{buffered}/v1/stream") as held,
    ):
        # (the readers take the arrival instants: polling every 2 ms only ends the waits early)
        await eventually_async(
            lambda: direct.events and via.events, "the initial status", timeout=10, interval=0.002
        )
        opened = time.perf_counter()
        assert via.response is not None
        assert via.response.status_code == 200
        headers = via.response.headers
        assert headers["content-type"].startswith("text/event-stream"), headers
        assert headers["cache-control"] in ("no-cache", "no-store"), headers
        assert headers.get("transfer-encoding") == "chunked", headers
        assert via.events[0][0] == direct.events[0][0]

        # 1. unbuffered: trigger -> arrival through nginx within 100 ms, beside direct
        rows: list[tuple[int, float]] = []  # (seq, trigger instant)

        def on_both(seq: int) -> Callable[[], float | None]:
            """``seq``'s arrival through nginx, once both streams have it."""
            return lambda: direct.arrival(seq) and via.arrival(seq)

        for i in range(TRIGGERS):
            seq, t0 = await ops_write(ops, api, i)
            await eventually_async(
                on_both(seq),
                f"seq {seq}, direct and through nginx\n{tails(procs)}",
                timeout=5,
                interval=0.002,
            )
            rows.append((seq, t0))
            await asyncio.sleep(0.1)

        def after(stream: Stream, seq: int, t0: float) -> float:
            t = stream.arrival(seq)
            return math.inf if t is None else t - t0

        def ms(stream: Stream, seq: int, t0: float) -> str:
            dt = after(stream, seq, t0)
            return "not arrived" if dt == math.inf else f"{dt * 1000:.1f} ms"

        table = "\n".join(
            f"seq {s}: direct {ms(direct, s, t0)}, nginx {ms(via, s, t0)}, "
            f"buffering control {ms(held, s, t0)}"
            for s, t0 in rows
        )
        print(f"trigger -> arrival\n{table}")
        for seq, t0 in rows:
            assert after(via, seq, t0) < BOUND_S, f"seq {seq} too late through nginx\n{table}"
        missed = [s for s, t0 in rows if after(held, s, t0) >= BOUND_S]
        assert missed, f"the buffering control met the bound too: not a test\n{table}"

        # 2. the stream outlives 2 x the ping interval: 3 s quiet at PING_S=1
        quiet_from = time.perf_counter()
        await asyncio.sleep(3.0)
        assert not via.ended, f"the stream through nginx ended\n{tail_of(tmp_path / 'nginx.log')}"
        pings = [t for t in via.pings if t > quiet_from]
        assert len(pings) >= 2, f"{len(pings)} pings through nginx in 3 s at PING_S=1"
        seq, _ = await ops_write(ops, api, TRIGGERS)
        await eventually_async(
            lambda: via.arrival(seq), "the next event on the same stream", timeout=1, interval=0.002
        )
        assert time.perf_counter() - opened > 3.0
        live = [(s, d["cause"]["type"]) for s, _, d in via.events[1:]]

    # 3. Last-Event-ID reaches the replica: the events after it are replayed
    first = rows[0][0]
    async with streaming(client, f"{proxy}/v1/stream", {"Last-Event-ID": str(first - 1)}) as r:
        await eventually_async(
            lambda: len(r.events) >= len(live), f"replay of {live}", timeout=5, interval=0.002
        )
    assert r.types()[: len(live)] == live
    assert live[0] == (first, "override.set")


async def test_gate_503_passes_through_nginx(tmp_path: Path) -> None:
    """``serve --demo`` (the gate guards ``POST /demo/api/token``) behind the same file."""
    need_nginx()
    serve_port, nginx_port = free_ports(2)
    direct = f"http://127.0.0.1:{serve_port}"
    site = render_site([f"127.0.0.1:{serve_port}"], f"127.0.0.1:{nginx_port}", server_name=HOST)
    env = env_for(MAINTCAST_TOKENS=TOKENS)  # embedded store: serve needs no Redis
    with processes() as procs:
        args = ["serve", "--demo", "--schedule", str(EXAMPLE), "--port", str(serve_port)]
        procs.append(Proc("serve", args, env, tmp_path))
        async with httpx.AsyncClient(timeout=5) as client:
            await wait_ready(client, direct, procs)
            with running_nginx(site, tmp_path / "nginx.log") as proxy:
                ok = await client.post(f"{proxy}/demo/api/token", json={})
                assert ok.status_code == 200, ok.text
                assert ok.json()["processed"] is True, ok.text

                body = {"mode": "maintenance", "reason": "nginx gate test", "ttl_s": 600}
                r = await client.put(f"{proxy}/v1/override", headers=AUTH, json=body)
                assert r.status_code == 200, r.text

                async def refused() -> httpx.Response | None:
                    r = await client.post(f"{proxy}/demo/api/token", json={})
                    return r if r.status_code != 200 else None

                via = await eventually_async(refused, "the gate to refuse through nginx")
                plain = await client.post(f"{direct}/demo/api/token", json={})
        assert procs[0].alive(), procs[0].tail()

    assert via.status_code == 503, via.text
    assert plain.status_code == 503, plain.text
    assert via.headers["content-type"].startswith("application/json")
    assert via.headers["cache-control"] == "no-store"
    retry_after = int(via.headers["retry-after"])
    assert 590 <= retry_after <= 600, retry_after
    assert abs(retry_after - int(plain.headers["retry-after"])) <= 1
    doc = via.json()
    assert doc["errorCode"] == "Z010000000"
    assert doc["processed"] is False
    assert "メンテナンス中です" in doc["message"], doc  # ja: no Accept-Language sent
    assert doc["until"] is not None
    assert doc == plain.json(), "nginx changed the gate's body"


# -- hygiene: hosts, version, HSTS, per-address limits ---------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key) made by ``openssl``."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def raw_get(port: int, host: str, path: str = "/healthz") -> bytes:
    """Everything the server sends back to one ``GET`` with ``Host: host`` (until it closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


def status_line(s: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = s.recv(1)
        assert chunk, f"closed after {line!r}"
        line += chunk
    return line


async def test_hosts_version_hsts_and_stream_limits(tmp_path: Path) -> None:
    need_nginx()
    need("openssl (apt-get install openssl)", shutil.which("openssl") is not None)
    serve_port, plain_port, tls_port = free_ports(3)
    cert, key = self_signed(tmp_path)
    site = render_site([f"127.0.0.1:{serve_port}"], server_name=HOST)
    site = replace_region(
        site, "listen", [f"listen 127.0.0.1:{plain_port};", f"listen 127.0.0.1:{tls_port} ssl;"]
    )
    tls = [f"ssl_certificate {cert};", f"ssl_certificate_key {key};"]
    site = replace_region(
        site,
        "default-listen",
        [
            f"listen 127.0.0.1:{plain_port} default_server;",
            f"listen 127.0.0.1:{tls_port} ssl default_server;",
            *tls,
        ],
    )
    site = replace_region(site, "tls", tls)
    env = env_for(MAINTCAST_TOKENS=TOKENS, MAINTCAST_STREAMS_PER_CLIENT="0")  # nginx's cap only
    plain, secure = f"http://127.0.0.1:{plain_port}", f"https://127.0.0.1:{tls_port}"
    with processes() as procs:
        args = ["serve", "--schedule", str(EXAMPLE), "--port", str(serve_port)]
        procs.append(Proc("serve", args, env, tmp_path))
        trust = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(timeout=5, verify=trust) as client:
            await wait_ready(client, f"http://127.0.0.1:{serve_port}", procs)
            with running_nginx(site, tmp_path / "nginx.log"):
                # 1. only the configured name is served; anything else is closed unanswered
                assert raw_get(plain_port, HOST).startswith(b"HTTP/1.1 200 "), "the known name"
                for other in ("evil.example", "127.0.0.2", f"{HOST}.evil.example"):
                    assert raw_get(plain_port, other) == b"", f"Host: {other} got an answer"
                # 2. no version; HSTS over TLS only, on every answer (404 and 429 too)
                for base in (plain, secure):
                    for path in ("/healthz", "/metrics"):
                        r = await client.get(f"{base}{path}")
                        assert r.status_code == (200 if path == "/healthz" else 404), r.text
                        assert r.headers["server"] == "nginx", r.headers
                        hsts = r.headers.get("strict-transport-security")
                        if base == secure:
                            assert hsts == "max-age=63072000; includeSubDomains", r.headers
                        else:
                            assert hsts is None, r.headers
                # 3. 40 streams at once from one address: 32 open, 8 refused by nginx
                socks = [socket.create_connection(("127.0.0.1", plain_port), 5) for _ in range(40)]
                try:
                    for s in socks:
                        s.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                    codes = [status_line(s).split()[1] for s in socks]
                finally:
                    for s in socks:
                        s.close()
        assert procs[0].alive(), procs[0].tail()
    assert (codes.count(b"200"), codes.count(b"429")) == (32, 8), codes
