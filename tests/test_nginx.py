"""A real nginx in front of the API, running the committed ``deploy/nginx/maintcast.conf``.

The committed file is rendered with this test's ports by replacing only the lines between
its ``@maintcast:`` markers (the same rendering ``deploy/compose.yaml`` does), wrapped in a
minimal main config whose every path is under a private directory, and run by Debian's
``/usr/sbin/nginx`` as ``nginx -p <dir> -c <conf> -g 'daemon off; pid …; error_log
stderr;'`` on a free loopback port. Checks:

- ``nginx -t`` accepts the committed file unchanged;
- an SSE event arrives through nginx within 100 ms of the ops write that published it
  (measured next to a direct connection to the replica), and a deliberately buffering
  variant of the same file fails that bound, so the check can fail;
- a stream through nginx outlives 2 x the ping interval (``MAINTCAST_PING_S=1``, held 3 s):
  ``: ping`` comments arrive, the stream stays open and still carries the next event;
- ``Last-Event-ID`` reaches the replica (replay through nginx);
- the gate's 503 (``maintcast serve --demo``) passes through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import EXAMPLE, ROOT, free_port, need, start_redis

pytestmark = pytest.mark.slow

NGINX = "/usr/sbin/nginx"
SITE = ROOT / "deploy" / "nginx" / "maintcast.conf"
MAINTCAST = str(Path(sys.executable).parent / "maintcast")
TOKEN = "nginx-test-" + secrets.token_hex(16)
TOKENS = f"nginx-test:admin:{hashlib.sha256(TOKEN.encode()).hexdigest()}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODAL_JA = "メンテナンス中です。時間をおいて再度アクセスしてください。"

# The contract's bound for one event, trigger to arrival on the subscriber's socket.
BOUND_S = 0.100


def need_nginx() -> None:
    need(f"nginx at {NGINX} (apt-get install nginx)", os.access(NGINX, os.X_OK))


# -- rendering the committed file --------------------------------------------------------


def _replace_region(text: str, name: str, lines: list[str]) -> str:
    """Replace what lies between ``# @maintcast:<name>-begin`` and ``-end`` with ``lines``
    (indented like the begin marker); each marker must occur exactly once."""
    begin, end = f"# @maintcast:{name}-begin", f"# @maintcast:{name}-end"
    assert text.count(begin) == 1 and text.count(end) == 1, (
        f"{SITE} must keep the markers {begin!r} and {end!r} exactly once each"
    )
    pattern = re.compile(
        rf"^([ \t]*){re.escape(begin)}\n.*?^[ \t]*{re.escape(end)}\n", re.M | re.S
    )
    m = pattern.search(text)
    assert m, f"{begin} must come before {end} in {SITE}"
    indent = m.group(1)
    body = "".join(f"{indent}{line}\n" for line in lines)
    return text[: m.start()] + body + text[m.end() :]


def render_site(
    upstreams: list[str], listen: str, replace: dict[str, str] | None = None
) -> str:
    """The committed site file with this test's upstream servers and listen address;
    ``replace`` swaps further exact snippets (each must occur exactly once)."""
    text = SITE.read_text(encoding="utf-8")
    text = _replace_region(text, "upstream", [f"server {u} max_fails=0;" for u in upstreams])
    text = _replace_region(text, "listen", [f"listen {listen};"])
    for old, new in (replace or {}).items():
        assert text.count(old) == 1, f"{old!r} must occur exactly once in {SITE}"
        text = text.replace(old, new)
    return text


def main_conf(prefix: Path, site: Path) -> str:
    """A main nginx.conf around ``site`` whose every path is under ``prefix``."""
    temp = "\n".join(
        f"    {d}_temp_path {prefix / d};"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "worker_processes 1;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"{temp}\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"    include {site};\n"
        "}\n"
    )


def nginx_args(prefix: Path, conf: Path) -> list[str]:
    # -e: the error log nginx opens before it reads -g (else its compiled-in default path)
    return [
        NGINX,
        "-e",
        "stderr",
        "-p",
        f"{prefix}/",
        "-c",
        str(conf),
        "-g",
        f"daemon off; pid {prefix / 'nginx.pid'}; error_log stderr;",
    ]


@contextlib.contextmanager
def private_dir() -> Iterator[Path]:
    """A fresh directory nginx's unprivileged worker can enter (when run as root, nginx
    workers run as ``nobody``; pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="maintcast-nginx-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def nginx_t(prefix: Path, site_text: str) -> subprocess.CompletedProcess[str]:
    site = prefix / "maintcast.conf"
    site.write_text(site_text, encoding="utf-8")
    conf = prefix / "nginx.conf"
    conf.write_text(main_conf(prefix, site), encoding="utf-8")
    return subprocess.run(
        [*nginx_args(prefix, conf), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def running_nginx(site_text: str) -> Iterator[tuple[str, Path]]:
    """Run nginx with ``site_text``; yields (base URL, its log file). ``site_text`` must
    listen on 127.0.0.1:<port>."""
    port = int(re.search(r"listen 127\.0\.0\.1:(\d+);", site_text).group(1))  # type: ignore[union-attr]
    with private_dir() as prefix:
        checked = nginx_t(prefix, site_text)
        assert checked.returncode == 0, f"nginx -t failed:\n{checked.stderr}"
        log = prefix / "nginx.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                nginx_args(prefix, prefix / "nginx.conf"),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 10
                while True:
                    assert proc.poll() is None, f"nginx exited: {log.read_text()}"
                    with contextlib.suppress(OSError):
                        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                        break
                    assert time.monotonic() < deadline, f"nginx not listening: {log.read_text()}"
                    time.sleep(0.05)
                yield f"http://127.0.0.1:{port}", log
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)  # fast shutdown: open streams are cut
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)


# -- maintcast processes -------------------------------------------------------------------


class Proc:
    """A ``maintcast`` subprocess with its output in ``<tmp_path>/<name>.log``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], tmp_path: Path) -> None:
        self.name = name
        self.log = tmp_path / f"{name}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [MAINTCAST, *args],
            env=env,
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            self._out.close()


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in started:
            with contextlib.suppress(Exception):
                p.stop()


def maintcast_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTCAST_")}
    env.update(extra)
    return env


def distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


async def wait_ready(client: httpx.AsyncClient, base: str, procs: list[Proc]) -> None:
    deadline = time.monotonic() + 20
    last = "no answer"
    while time.monotonic() < deadline:
        for p in procs:
            assert p.proc.poll() is None, f"{p.name} exited\n{p.tail()}"
        try:
            r = await client.get(f"{base}/readyz", timeout=1)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        await asyncio.sleep(0.1)
    tails = "\n".join(p.tail() for p in procs)
    pytest.fail(f"{base} not ready within 20 s ({last})\n{tails}")


# -- a raw SSE reader that timestamps arrival ----------------------------------------------


@dataclass
class Stream:
    """What one SSE connection received, with ``time.perf_counter()`` arrival times."""

    name: str
    events: list[tuple[int, float, dict[str, Any]]] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)
    headers: httpx.Headers | None = None
    status_code: int | None = None
    ended: bool = False

    def arrival(self, seq: int) -> float | None:
        return next((t for s, t, _ in self.events if s == seq), None)

    def types(self) -> list[tuple[int, str]]:
        return [(s, d["cause"]["type"]) for s, _, d in self.events]


async def read_stream(
    client: httpx.AsyncClient, url: str, out: Stream, headers: dict[str, str] | None = None
) -> None:
    """Read ``url`` as SSE into ``out`` until the server ends the stream."""
    async with client.stream("GET", url, headers=headers) as r:
        out.status_code, out.headers = r.status_code, r.headers
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
    client: httpx.AsyncClient, url: str, name: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[Stream, asyncio.Task[None]]]:
    out = Stream(name)
    task = asyncio.create_task(read_stream(client, url, out, headers))
    try:
        yield out, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.002)


async def trigger(client: httpx.AsyncClient, base: str, i: int) -> tuple[int, float]:
    """One ops write that publishes (override set / clear alternately); returns its seq
    and the instant just before the request was sent."""
    t0 = time.perf_counter()
    if i % 2 == 0:
        r = await client.put(
            f"{base}/v1/override",
            headers=AUTH,
            json={"mode": "maintenance", "reason": f"nginx test {i}", "ttl_s": 600},
        )
    else:
        r = await client.request(
            "DELETE", f"{base}/v1/override", headers=AUTH, json={"reason": f"nginx test {i}"}
        )
    assert r.status_code == 200, r.text
    return int(r.json()["seq"]), t0


# -- the tests -----------------------------------------------------------------------------


def test_committed_config_passes_nginx_t() -> None:
    need_nginx()
    with private_dir() as prefix:
        res = nginx_t(prefix, SITE.read_text(encoding="utf-8"))
    assert res.returncode == 0, res.stderr
    assert "test is successful" in res.stderr, res.stderr


async def test_sse_through_nginx_unbuffered_long_lived_and_resumable(tmp_path: Path) -> None:
    need_nginx()
    server = start_redis()
    try:
        env = maintcast_env(
            MAINTCAST_REDIS_URL=server.url,
            MAINTCAST_KEY_PREFIX=f"ngx{uuid.uuid4().hex[:10]}",
            MAINTCAST_TOKENS=TOKENS,
            MAINTCAST_PING_S="1",
        )
        imported = await asyncio.to_thread(
            subprocess.run,
            [MAINTCAST, "windows", "import", str(EXAMPLE)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr

        api_port, nginx_port, buffered_port = distinct_ports(3)
        api = f"http://127.0.0.1:{api_port}"
        site = render_site([f"127.0.0.1:{api_port}"], f"127.0.0.1:{nginx_port}")
        # The same file with the stream compressed (gzip buffers small frames), to show
        # that the bound below can fail. (proxy_buffering on alone did not delay small
        # frames in nginx 1.22 here: it still writes what it read while the client keeps up.)
        buffering = render_site(
            [f"127.0.0.1:{api_port}"],
            f"127.0.0.1:{buffered_port}",
            {"gzip off;": "gzip on; gzip_types text/event-stream;"},
        )
        with processes() as procs:
            procs.append(Proc("worker", ["worker"], env, tmp_path))
            procs.append(
                Proc("api", ["api", "--host", "127.0.0.1", "--port", str(api_port)], env, tmp_path)
            )
            tails = lambda: "\n".join(p.tail() for p in procs)  # noqa: E731
            timeout = httpx.Timeout(5, read=None)
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                httpx.AsyncClient(timeout=timeout) as ops,
            ):
                await wait_ready(client, api, procs)
                with (
                    running_nginx(site) as (proxy, nginx_log),
                    running_nginx(buffering) as (buffered, _),
                ):
                    await wait_ready(client, proxy, procs)
                    assert (await client.get(f"{proxy}/healthz")).status_code == 200
                    # metrics are per replica, not served through the proxy
                    assert (await client.get(f"{proxy}/metrics")).status_code == 404
                    assert (await client.get(f"{api}/metrics")).status_code == 200
                    await ops.get(f"{api}/healthz")  # warm the ops connection

                    async with (
                        streaming(client, f"{api}/v1/stream", "direct") as (direct, _),
                        streaming(client, f"{proxy}/v1/stream", "nginx") as (via, via_task),
                        streaming(client, f"{buffered}/v1/stream", "buffered") as (buf, _),
                    ):
                        await until(
                            lambda: direct.events and via.events and buf.events,
                            10,
                            "the initial status on all three streams",
                        )
                        opened = time.perf_counter()
                        assert via.status_code == 200
                        assert via.headers is not None
                        assert via.headers["content-type"].startswith("text/event-stream")
                        assert via.headers["cache-control"] in ("no-cache", "no-store")
                        assert via.headers.get("transfer-encoding") == "chunked"
                        assert via.events[0][2] == direct.events[0][2] or (
                            via.events[0][0] == direct.events[0][0]
                        )

                        # 1. unbuffered: trigger -> arrival through nginx within 100 ms
                        rows = []
                        first_seq = 0
                        for i in range(6):
                            seq, t0 = await trigger(ops, api, i)
                            first_seq = first_seq or seq
                            await until(
                                lambda s=seq: direct.arrival(s) and via.arrival(s),
                                5,
                                f"seq {seq} direct and through nginx\n{tails()}",
                            )
                            rows.append(
                                (seq, direct.arrival(seq) - t0, via.arrival(seq) - t0)  # type: ignore[operator]
                            )
                            await asyncio.sleep(0.1)
                        table = "\n".join(
                            f"seq {s}: direct {d * 1000:.1f} ms, nginx {n * 1000:.1f} ms"
                            for s, d, n in rows
                        )
                        print(f"trigger -> arrival\n{table}")
                        for seq, _, n in rows:
                            assert n < BOUND_S, f"seq {seq} took {n * 1000:.1f} ms\n{table}"

                        # ... and the buffering variant does not meet it: the same events
                        # are still held in nginx (frames are smaller than its buffers)
                        late = [s for s, _, _ in rows if buf.arrival(s) is None]
                        held = [
                            s for s, _, _ in rows
                            if s not in late and buf.arrival(s) - via.arrival(s) > BOUND_S  # type: ignore[operator]
                        ]
                        assert late or held, (
                            "a buffering nginx delivered as fast as the committed config: "
                            f"the check cannot tell them apart ({buf.types()})"
                        )

                        # 2. the stream outlives 2 x the ping interval (PING_S=1, 3 s quiet)
                        hold_from = time.perf_counter()
                        await asyncio.sleep(3.0)
                        assert not via_task.done() and not via.ended, (
                            f"the stream through nginx ended\n{nginx_log.read_text()}"
                        )
                        pings = [t for t in via.pings if t > hold_from]
                        assert len(pings) >= 2, f"pings through nginx during 3 s: {len(pings)}"
                        seq, t0 = await trigger(ops, api, 6)
                        await until(lambda: via.arrival(seq), 1, "an event after the quiet spell")
                        assert time.perf_counter() - opened > 3.0

                        # 3. Last-Event-ID reaches the replica: replay through nginx
                        replay = Stream("replay")
                        resume = {"Last-Event-ID": str(first_seq - 1)}
                        replayer = asyncio.create_task(
                            read_stream(client, f"{proxy}/v1/stream", replay, resume)
                        )
                        try:
                            await until(
                                lambda: len(replay.events) >= 7, 5, "the replayed events"
                            )
                        finally:
                            replayer.cancel()
                            await asyncio.gather(replayer, return_exceptions=True)
                        want = [(s, d["cause"]["type"]) for s, _, d in via.events if s >= first_seq]
                        assert replay.types()[:7] == want[:7], (replay.types(), want)
                        assert replay.types()[0] == (first_seq, "override.set")

            for p in procs:
                assert p.proc.poll() is None, f"{p.name} died\n{p.tail()}"
    finally:
        server.kill()
        shutil.rmtree(server.dir, ignore_errors=True)


async def test_gate_503_passes_through_nginx(tmp_path: Path) -> None:
    """``serve --demo`` (the gate guards ``POST /demo/api/token``) behind the same file."""
    need_nginx()
    serve_port, nginx_port = distinct_ports(2)
    direct = f"http://127.0.0.1:{serve_port}"
    site = render_site([f"127.0.0.1:{serve_port}"], f"127.0.0.1:{nginx_port}")
    env = maintcast_env(MAINTCAST_TOKENS=TOKENS)
    with processes() as procs:
        args = ["serve", "--demo", "--schedule", str(EXAMPLE), "--port", str(serve_port)]
        procs.append(Proc("serve", args, env, tmp_path))
        async with httpx.AsyncClient(timeout=5) as client:
            await wait_ready(client, direct, procs)
            with running_nginx(site) as (proxy, _):
                ok = await client.post(f"{proxy}/demo/api/token", json={})
                assert ok.status_code == 200 and ok.json()["processed"] is True, ok.text

                r = await client.put(
                    f"{proxy}/v1/override",
                    headers=AUTH,
                    json={"mode": "maintenance", "reason": "nginx gate test", "ttl_s": 600},
                )
                assert r.status_code == 200, r.text

                async def refused() -> httpx.Response:
                    deadline = time.monotonic() + 5
                    while True:
                        got = await client.post(f"{proxy}/demo/api/token", json={})
                        if got.status_code != 200 or time.monotonic() > deadline:
                            return got
                        await asyncio.sleep(0.05)

                via = await refused()
                plain = await client.post(f"{direct}/demo/api/token", json={})

        assert procs[0].proc.poll() is None, procs[0].tail()

    assert via.status_code == 503, via.text
    assert plain.status_code == 503, plain.text
    assert via.headers["content-type"].startswith("application/json")
    assert via.headers["cache-control"] == "no-store"
    retry_after = int(via.headers["retry-after"])
    assert 590 <= retry_after <= 600, retry_after
    assert abs(retry_after - int(plain.headers["retry-after"])) <= 1
    body = via.json()
    assert body["errorCode"] == "Z010000000"
    assert body["processed"] is False
    assert body["message"] == MODAL_JA or body["message"], body
    assert body["until"] is not None
    assert body == plain.json(), "nginx changed the gate's body"
