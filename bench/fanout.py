"""SSE fan-out benchmark: Maintcast side by side with a naive baseline and nginx + nchan.

For each server under test, in one run, on the same machine state and with the same events:

1. start it in its own processes on a loopback port (real uvicorn / real nginx), on a
   private ``redis-server`` (``--save '' --appendonly no``) the bench starts on a free port;
2. open N SSE subscribers from separate load processes (raw asyncio protocol per socket,
   uvloop when installed, at most ``--per-proc`` sockets per process; or, with
   ``--client c``, ``bench/sseload.c``: one epoll loop per process, compiled with ``cc``),
   and wait until every one has received the initial status;
3. trigger K changes ``--spacing`` seconds apart, taking ``time.time()`` just before each
   trigger; every load process timestamps the arrival of each change (the ``"seq":N`` of
   its frame) on every socket;
4. report per change and pooled: trigger -> arrival p50 / p99 / max over all subscribers,
   connect rate, server RSS per subscriber (VmRSS summed over the server's process tree,
   after minus before connecting), server CPU per delivery (utime+stime of that tree over
   the trigger phase / deliveries), and full-GC pauses inside a broadcast (Python servers).

Servers:
  maintcast    ``maintcast api --port P`` (1 uvicorn worker); changes are alternating
               ``PUT /v1/override`` (maintenance) / ``DELETE /v1/override`` with an ops token.
  maintcast-w2 the same with ``--workers 2`` (``--workers2``).
  naive        ``bench/naive_server.py``: sse-starlette, one Redis pub/sub connection per
               subscriber, changes are ``PUBLISH`` of the same status payloads Maintcast sent.
               Bounded to ``--naive-max`` subscribers (default 2000: each is a Redis client).
  nchan        nginx + nchan (Debian ``nginx``, ``libnginx-mod-nchan``), own config under a
               temp prefix, ``daemon off``; changes are POSTs to an ``nchan_publisher``.
               Skipped, with the reason printed, when the module cannot be loaded.

Run (from the repository root, in the venv)::

    python bench/fanout.py                       # N=1000, K=5, all servers
    python bench/fanout.py --subscribers 5000 --json /tmp/fanout-5k.json
    python bench/fanout.py --subscribers 10000 --only maintcast,nchan
    python bench/fanout.py --only maintcast --profile /tmp/prof   # py-spy during the broadcasts

Every wait is bounded in time and every loop in count; everything listens on 127.0.0.1;
every process the bench starts is stopped (process group) on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.client
import json
import math
import multiprocessing as mp
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support: the processes and Redis the tests use too
from tests.support import MAINTCAST, Proc, RedisServer, free_port, poll_until  # noqa: E402

BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
SEQ_RE = re.compile(rb'"seq":\s*(\d+)')
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"


# -- small utilities ------------------------------------------------------------------------


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def http_ok(port: int, path: str) -> bool:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", path)
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc/*/stat ppid)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    for _ in range(10_000):  # bounded walk
        if not todo:
            break
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def cpu_s(pids: list[int], *, kernel_only: bool = False) -> float:
    """CPU seconds of ``pids``: utime + stime, or stime alone (time in the kernel)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += (0 if kernel_only else int(fields[11])) + int(fields[12])  # fields 14, 15
    return total / CLK_TCK


def pct(sorted_vals: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return math.nan
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[k]


# -- the load processes ---------------------------------------------------------------------


class _Stats:
    __slots__ = ("arrivals", "failed", "lost", "ready")

    def __init__(self) -> None:
        self.arrivals: dict[int, array[float]] = {}
        self.ready = 0
        self.failed = 0
        self.lost = 0


class _Sub(asyncio.Protocol):
    """One SSE subscriber socket: send the GET, skip the headers, timestamp each new seq."""

    __slots__ = ("buf", "head", "last", "request", "resumed", "st", "started", "transport")

    def __init__(
        self, st: _Stats, request: bytes, started: asyncio.Future[None], last: int = -1
    ) -> None:
        self.st, self.request, self.started = st, request, started
        self.buf = b""
        self.head = False
        self.last = last
        self.resumed = last >= 0  # reconnected with Last-Event-ID: ready at its first frame
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf + data
        if not self.head:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                self.buf = buf[-65536:]
                return
            if b" 200 " not in buf[: buf.find(b"\r\n")]:
                if not self.started.done():
                    self.started.set_exception(RuntimeError(buf[:80].decode("latin1")))
                assert self.transport is not None
                self.transport.close()
                return
            self.head = True
            buf = buf[i + 4 :]
        if self.resumed and not self.started.done() and b"\n\n" in buf:
            self.started.set_result(None)  # the opening `retry:` (and any replay) arrived
        a, b = buf.rfind(b"\n\n"), buf.rfind(b"\n\r\n")  # a frame ends on a blank line
        j = max(a + 2 if a >= 0 else -1, b + 3 if b >= 0 else -1)
        if j < 0:
            self.buf = buf[-65536:]
            return
        self.buf = buf[j:]
        for m in SEQ_RE.finditer(buf, 0, j):
            seq = int(m.group(1))
            if seq <= self.last:
                continue
            self.last = seq
            got = self.st.arrivals.get(seq)
            if got is None:
                got = self.st.arrivals[seq] = array("d")
            got.append(now)
            if not self.started.done():
                self.started.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.st.lost += 1
        if not self.started.done():
            self.started.set_exception(ConnectionError("closed before the first event"))


def load_main(conn: Any, port: int, path: str, count: int, concurrency: int) -> None:
    """Entry of one load process: commands arrive on ``conn`` (go, progress, collect, close)."""
    raise_nofile()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_load(conn, port, path, count, concurrency))


def _commands(conn: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[Any]:
    """The commands arriving on ``conn``, queued by the event loop's reader; ``conn.send``
    is made blocking again for each reply (the loop made the pipe non-blocking; results are
    big)."""
    cmds: asyncio.Queue[Any] = asyncio.Queue()

    def on_cmd() -> None:
        with contextlib.suppress(EOFError, OSError):
            while conn.poll():
                cmds.put_nowait(conn.recv())

    loop.add_reader(conn.fileno(), on_cmd)
    send_raw = conn.send

    def send(obj: Any) -> None:
        os.set_blocking(conn.fileno(), True)
        send_raw(obj)

    conn.send = send
    return cmds


class _Loader:
    """One load process's subscribers: opened under a concurrency gate with bounded retries,
    all closed and reopened (resuming with ``Last-Event-ID``) on command."""

    def __init__(self, port: int, path: str, concurrency: int) -> None:
        self.port = port
        self.st = _Stats()
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        ).encode()
        self.subs: list[_Sub] = []
        self.gate = asyncio.Semaphore(concurrency)

    async def _connect(self, req: bytes, last: int) -> _Sub | None:
        """One attempt: a subscriber that connected (10 s) and got its first event (20 s),
        else None."""
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        try:
            _, sub = await asyncio.wait_for(
                loop.create_connection(
                    functools.partial(_Sub, self.st, req, started, last),
                    "127.0.0.1",
                    self.port,
                ),
                10,
            )
        except (OSError, TimeoutError):
            return None
        try:
            await asyncio.wait_for(started, 20)
        except (OSError, TimeoutError, RuntimeError, ConnectionError):
            if sub.transport is not None:
                sub.transport.close()
            return None
        return sub

    async def subscribe(self, last: int = -1) -> None:
        """Open one subscriber (resuming after ``last`` when it is at least 0): three
        attempts, 0.2 s after each failure; counted as ready or failed."""
        req = self.request
        if last >= 0:
            req = self.request[:-2] + b"Last-Event-ID: %d\r\n\r\n" % last
        async with self.gate:
            for _attempt in range(3):  # bounded retries
                sub = await self._connect(req, last)
                if sub is not None:
                    self.subs.append(sub)
                    self.st.ready += 1
                    return
                await asyncio.sleep(0.2)
            self.st.failed += 1

    def close_all(self) -> None:
        """Close every subscriber's socket."""
        for sub in self.subs:
            if sub.transport is not None:
                sub.transport.close()

    async def reconnect(self) -> tuple[str, int, int, float, float]:
        """Every socket closes, then all reconnect at once, resuming; the reply to send."""
        lasts = [sub.last for sub in self.subs]
        t0 = time.time()
        self.close_all()
        self.subs.clear()
        self.st.ready = self.st.failed = 0
        self.gate = asyncio.Semaphore(len(lasts) or 1)
        await asyncio.gather(*(self.subscribe(last) for last in lasts))
        return ("reconnected", self.st.ready, self.st.failed, t0, time.time())

    async def answer(self, cmd: Any) -> Any:
        """The reply to ``progress``, ``collect`` or ``reconnect``; None (no reply) to
        anything else."""
        if cmd == "progress":
            return {s: len(a) for s, a in self.st.arrivals.items()}
        if cmd == "collect":
            return ({s: a.tolist() for s, a in self.st.arrivals.items()}, self.st.lost)
        if cmd == "reconnect":
            return await self.reconnect()
        return None


async def _load(conn: Any, port: int, path: str, count: int, concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    cmds = _commands(conn, loop)
    loader = _Loader(port, path, concurrency)
    conn.send(("up", os.getpid()))
    cmd = await asyncio.wait_for(cmds.get(), 120)
    assert cmd == "go", cmd
    t0 = time.time()
    await asyncio.gather(*(loader.subscribe() for _ in range(count)))
    conn.send(("ready", loader.st.ready, loader.st.failed, t0, time.time()))
    for _ in range(100_000):  # bounded command loop
        try:
            cmd = await asyncio.wait_for(cmds.get(), 300)
        except TimeoutError:
            break
        if cmd == "close":
            break
        reply = await loader.answer(cmd)
        if reply is not None:
            conn.send(reply)
    loader.close_all()
    await asyncio.sleep(0.2)
    loop.remove_reader(conn.fileno())
    conn.send("closed")


class LoadFleet:
    """N subscribers over ``procs`` load processes."""

    def __init__(self, port: int, path: str, n: int, per_proc: int, concurrency: int) -> None:
        procs = max(2, math.ceil(n / per_proc)) if n >= 2 else 1
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        base, extra = divmod(n, procs)
        for i in range(procs):
            parent, child = ctx.Pipe()
            count = base + (1 if i < extra else 0)
            p = ctx.Process(
                target=load_main, args=(child, port, path, count, concurrency), daemon=True
            )
            p.start()
            self.conns.append(parent)
            self.procs.append(p)
        for c in self.conns:
            if not c.poll(60):
                raise RuntimeError("a load process did not start")
            c.recv()

    def connect(self, timeout: float) -> tuple[int, int, float]:
        """Open every subscriber; return (ready, failed, seconds from go to all ready)."""
        t_go = time.time()
        for c in self.conns:
            c.send("go")
        ready = failed = 0
        t_end = t_go
        for c in self.conns:
            if not c.poll(max(0.1, timeout - (time.time() - t_go))):
                raise RuntimeError("subscribers did not connect in time")
            _, r, f, _t0, t1 = c.recv()
            ready, failed, t_end = ready + r, failed + f, max(t_end, t1)
        return ready, failed, t_end - t_go

    def reconnect(self, timeout: float) -> tuple[int, int, float]:
        """Every subscriber closes and reconnects at once with ``Last-Event-ID``; return
        (ready, failed, seconds from the first close to the last one resynced)."""
        for c in self.conns:
            c.send("reconnect")
        ready = failed = 0
        t_first, t_end = math.inf, 0.0
        for c in self.conns:
            if not c.poll(timeout):
                raise RuntimeError("subscribers did not reconnect in time")
            _, r, f, t0, t1 = c.recv()
            ready, failed = ready + r, failed + f
            t_first, t_end = min(t_first, t0), max(t_end, t1)
        return ready, failed, t_end - t_first

    def progress(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for c in self.conns:
            c.send("progress")
        for c in self.conns:
            if c.poll(10):
                for s, k in c.recv().items():
                    total[s] = total.get(s, 0) + k
        return total

    def collect(self) -> tuple[dict[int, list[float]], int]:
        out: dict[int, list[float]] = {}
        lost = 0
        for c in self.conns:
            c.send("collect")
        for c in self.conns:
            if c.poll(60):
                arrivals, lo = c.recv()
                lost += lo
                for s, a in arrivals.items():
                    out.setdefault(s, []).extend(a)
        return out, lost

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.send("close")
        for c in self.conns:
            with contextlib.suppress(OSError, EOFError):
                if c.poll(15):
                    c.recv()
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)


class CLoadFleet:
    """The same subscribers driven by ``bench/sseload.c`` (one epoll loop per process, no
    Python per read): ``--client c``. Same commands and results as :class:`LoadFleet`."""

    def __init__(self, port: int, path: str, n: int, per_proc: int, concurrency: int) -> None:
        exe = build_sseload()
        procs = max(2, math.ceil(n / per_proc)) if n >= 2 else 1
        base, extra = divmod(n, procs)
        self.procs = []
        for i in range(procs):
            count = base + (1 if i < extra else 0)
            self.procs.append(
                subprocess.Popen(
                    [str(exe), str(port), path, str(count), str(concurrency)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    preexec_fn=raise_nofile,
                )
            )
        for p in self.procs:
            self._expect(p, "up")

    @staticmethod
    def _expect(p: subprocess.Popen[str], word: str) -> list[str]:
        assert p.stdout is not None
        line = p.stdout.readline().split()  # bounded: sseload's own waits are bounded
        if not line or line[0] != word:
            raise RuntimeError(f"sseload: expected {word!r}, got {line!r}")
        return line[1:]

    def _all(self, cmd: str, word: str) -> list[list[str]]:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write(cmd + "\n")
            p.stdin.flush()
        return [self._expect(p, word) for p in self.procs]

    def _connected(self, word: str, cmd: str) -> tuple[int, int, float]:
        ready = failed = 0
        t_first, t_end = math.inf, 0.0
        for r, f, t0, t1 in self._all(cmd, word):
            ready, failed = ready + int(r), failed + int(f)
            t_first, t_end = min(t_first, float(t0)), max(t_end, float(t1))
        return ready, failed, t_end - t_first

    def connect(self, timeout: float) -> tuple[int, int, float]:
        return self._connected("ready", "go")

    def reconnect(self, timeout: float) -> tuple[int, int, float]:
        return self._connected("reconnected", "reconnect")

    def progress(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for pairs in self._all("progress", "progress"):
            for pair in pairs:
                seq, k = pair.split(":")
                total[int(seq)] = total.get(int(seq), 0) + int(k)
        return total

    def collect(self) -> tuple[dict[int, list[float]], int]:
        out: dict[int, list[float]] = {}
        lost = 0
        for p in self.procs:  # one at a time: each writes its arrivals, then waits
            assert p.stdin is not None
            assert p.stdout is not None
            p.stdin.write("collect\n")
            p.stdin.flush()
            (n_arrivals,) = self._expect(p, "arrivals")
            for _ in range(int(n_arrivals)):
                seq, t = p.stdout.readline().split()
                out.setdefault(int(seq), []).append(float(t))
            lost += int(self._expect(p, "lost")[0])
        return out, lost

    def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(OSError, ValueError):
                assert p.stdin is not None
                p.stdin.write("close\n")
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def build_sseload() -> Path:
    """Compile ``bench/sseload.c`` (cc -O2) into a temp dir once per run."""
    out = Path(tempfile.gettempdir()) / f"maintcast-sseload-{os.getpid()}"
    if not out.exists():
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise RuntimeError("--client c needs a C compiler (cc)")
        subprocess.run([cc, "-O2", "-o", str(out), str(BENCH / "sseload.c")], check=True)
    return out


# -- servers under test ---------------------------------------------------------------------


class Redis:
    """The bench's private redis-server (``--save '' --appendonly no``, room for 20,000
    clients: the naive baseline opens one per subscriber) and a client of it."""

    def __init__(self, tmp: Path) -> None:
        self.server = RedisServer(tmp / "redis", args=["--maxclients", "20000"])
        self.server.start()
        self.url = self.server.url
        self.pid = self.server.proc.pid
        self.client = redis.Redis(port=self.server.port)

    def commands(self) -> int:
        """Redis's ``total_commands_processed`` (this INFO call included)."""
        return int(self.client.info("stats")["total_commands_processed"])

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        self.server.kill()


@dataclass
class Server:
    """What the bench needs from a server under test."""

    name: str
    port: int
    path: str
    proc: Proc
    trigger: Callable[[int], int]  # k -> the seq this change carries
    python: bool = True
    note: str = ""
    redis_cpu: bool = False  # does the fan-out itself run in redis (naive)?
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        closer = self.extra.get("close")
        if closer:
            with contextlib.suppress(Exception):
                closer()
        self.proc.stop(10)


def _server_env(tmp: Path, name: str, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH / "_gcprobe"), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["MAINTCAST_BENCH_GCLOG"] = str(tmp / f"gc-{name}.log")
    return env


class Payloads:
    """The status payloads every server sends: Maintcast's own, re-numbered for the others."""

    def __init__(self) -> None:
        self.docs: list[bytes] = []

    def for_seq(self, k: int, seq: int) -> bytes:
        if not self.docs:  # Maintcast not run: a status-like document of similar size
            self.docs = [_synthetic(mode) for mode in ("maintenance", "normal")]
        doc = self.docs[k % len(self.docs)]
        return SEQ_RE.sub(b'"seq":%d' % seq, doc, count=1)


def _synthetic(mode: str) -> bytes:
    svc = {"service": "webcollect", "method": "credit_card", "state": mode}
    doc = {
        "seq": 0,
        "state": mode,
        "as_of": "2025-01-01T01:00:00.000+09:00",
        "stale": False,
        "cause": {"type": "override.set", "window_id": None, "actor": "bench", "reason": "b"},
        "message": {"ja": "ただいまメンテナンス中です", "en": "Under maintenance"},
        "error_code": "Z010000000",
        "affected": [svc],
        "until": None,
        "next": None,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def start_maintcast(
    tmp: Path, redis: Redis, payloads: Payloads, workers: int, api_args: list[str]
) -> Server:
    from broadcaster.auth import entry_line, new_token

    token = new_token()
    name = "maintcast" if workers == 1 else f"maintcast-w{workers}"
    port = free_port()
    redis.client.flushall()
    env = _server_env(
        tmp,
        name,
        {
            "MAINTCAST_REDIS_URL": redis.url,
            "MAINTCAST_TOKENS": entry_line("bench", "operator", token),
            "MAINTCAST_CLIENT_QUEUE": "64",
            # every subscriber connects from 127.0.0.1: no per-client cap on open streams
            "MAINTCAST_STREAMS_PER_CLIENT": "0",
        },
    )
    args = ["api", "--port", str(port), "--workers", str(workers), *api_args]
    proc = Proc(name, args, env, tmp, exe=MAINTCAST, preexec_fn=raise_nofile)
    if (
        not poll_until(lambda: http_ok(port, "/healthz") or not proc.alive(), timeout=30)
        or not proc.alive()
    ):
        proc.stop(10)
        raise RuntimeError(f"{name} did not start:\n" + proc.tail())
    poll_until(lambda: http_ok(port, "/readyz"), timeout=10)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def trigger(k: int) -> int:
        if k % 2 == 0:
            body = json.dumps({"mode": "maintenance", "reason": f"bench change {k}"})
            conn.request("PUT", "/v1/override", body=body, headers=auth)
        else:
            conn.request("DELETE", "/v1/override", headers=auth)
        r = conn.getresponse()
        raw = r.read()
        if r.status != 200:
            raise RuntimeError(f"trigger {k}: HTTP {r.status} {raw[:200]!r}")
        if len(payloads.docs) < 2:
            payloads.docs.append(raw)
        return int(json.loads(raw)["seq"])

    return Server(name, port, "/v1/stream", proc, trigger, extra={"close": conn.close})


def start_naive(tmp: Path, redis: Redis, payloads: Payloads) -> Server:
    port = free_port()
    redis.client.flushall()
    seq0 = 1_000_000
    redis.client.set("naive:status", payloads.for_seq(1, seq0))
    env = _server_env(tmp, "naive", {})
    args = [str(BENCH / "naive_server.py"), "--port", str(port), "--redis", redis.url]
    proc = Proc("naive", args, env, tmp, exe=sys.executable, preexec_fn=raise_nofile)
    if (
        not poll_until(lambda: http_ok(port, "/healthz") or not proc.alive(), timeout=30)
        or not proc.alive()
    ):
        proc.stop(10)
        raise RuntimeError("naive server did not start:\n" + proc.tail())

    def trigger(k: int) -> int:
        seq = seq0 + 1 + k
        redis.client.publish("naive:status", payloads.for_seq(k, seq))
        return seq

    return Server(
        "naive",
        port,
        "/stream",
        proc,
        trigger,
        redis_cpu=True,
        note="sse-starlette + 1 Redis pub/sub connection per subscriber",
    )


NGINX_CONF = """
load_module {module};
worker_processes {workers};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {nofile}; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_timeout 600s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /sub {{
      nchan_subscriber eventsource;
      nchan_channel_id maintcast;
      nchan_subscriber_first_message -1;
      nchan_eventsource_event status;
      nchan_subscriber_timeout 0;
    }}
    location = /pub {{
      nchan_publisher;
      nchan_channel_id maintcast;
      nchan_message_buffer_length 16;
      nchan_message_timeout 1h;
    }}
  }}
}}
"""


def _nchan_nginx(tmp: Path, workers: int) -> tuple[str, list[str], int]:
    """nginx's path, its arguments and its port for an nchan server configured in a fresh
    directory under ``tmp`` (:data:`NGINX_CONF`) and checked with ``nginx -t``.

    Raises:
        SkipServer: nginx or the nchan module is missing, or ``nginx -t`` refused the file.
    """
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SkipServer("nginx is not installed (apt-get install nginx libnginx-mod-nchan)")
    if not Path(NCHAN_MODULE).exists():
        raise SkipServer(f"{NCHAN_MODULE} missing (apt-get install libnginx-mod-nchan)")
    port = free_port()
    d = tmp / f"nginx-{port}"
    d.mkdir()
    conf = d / "nginx.conf"
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    conf.write_text(
        NGINX_CONF.format(module=NCHAN_MODULE, workers=workers, tmp=d, port=port, nofile=nofile)
    )
    test = subprocess.run(
        [nginx, "-t", "-p", str(d), "-c", str(conf), "-e", str(d / "nginx-error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if test.returncode != 0:
        raise SkipServer("nginx -t failed: " + (test.stderr or test.stdout).strip()[-300:])
    return nginx, ["-p", str(d), "-c", str(conf), "-e", str(d / "nginx-error.log")], port


def start_nchan(tmp: Path, payloads: Payloads, workers: int = 1) -> Server:
    nginx, args, port = _nchan_nginx(tmp, workers)
    proc = Proc("nginx", args, None, tmp, exe=nginx, preexec_fn=raise_nofile)
    conn_box: list[http.client.HTTPConnection] = []

    def publish(body: bytes) -> None:
        if not conn_box:
            conn_box.append(http.client.HTTPConnection("127.0.0.1", port, timeout=30))
        c = conn_box[0]
        c.request("POST", "/pub", body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status not in (200, 201, 202):
            raise RuntimeError(f"nchan publish: HTTP {r.status}")

    def up() -> bool:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/pub")
            c.getresponse().read()
            return True
        except OSError:
            return False

    if not poll_until(lambda: up() or not proc.alive(), timeout=15) or not proc.alive():
        proc.stop(10)
        raise SkipServer("nginx with nchan did not start: " + proc.tail(5))
    seq0 = 2_000_000
    publish(payloads.for_seq(1, seq0))  # the "initial status" (nchan_subscriber_first_message)

    def trigger(k: int) -> int:
        seq = seq0 + 1 + k
        publish(payloads.for_seq(k, seq))
        return seq

    def close() -> None:
        for c in conn_box:
            c.close()

    name = "nchan" if workers == 1 else f"nchan-w{workers}"
    return Server(name, port, "/sub", proc, trigger, python=False, extra={"close": close})


class SkipServer(Exception):
    pass


# -- one trial ------------------------------------------------------------------------------


def gc_pauses(tmp: Path, name: str) -> list[tuple[int, float, float, int]]:
    path = tmp / f"gc-{name}.log"
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            pid, start, dur, gen = line.split()
            out.append((int(pid), float(start), float(dur), int(gen)))
    return out


def run_trial(
    srv: Server, redis: Redis, args: argparse.Namespace, n: int, tmp: Path
) -> dict[str, Any]:
    pids = tree_pids(srv.proc.pid)
    time.sleep(0.5)
    rss0 = rss_kb(pids)
    redis_rss0 = rss_kb([redis.pid])
    fleet_class = CLoadFleet if args.client == "c" else LoadFleet
    fleet = fleet_class(srv.port, srv.path, n, args.per_proc, args.concurrency)
    try:
        phases: dict[str, list[tuple[float, float]]] = {"connect": [], "storm": []}
        t_go = time.time()
        ready, failed, connect_s = fleet.connect(args.connect_timeout)
        phases["connect"].append((t_go, time.time()))
        time.sleep(1.0)  # let the server settle (and allocate) after the burst
        pids = tree_pids(srv.proc.pid)
        rss1 = rss_kb(pids)
        redis_rss1 = rss_kb([redis.pid])
        profiler = None
        if args.profile and srv.python:
            profiler = start_profiler(srv, args, tmp)
        load_pids = [p.pid for p in fleet.procs if p.pid is not None]
        cpu0, rcpu0, lcpu0 = cpu_s(pids), cpu_s([redis.pid]), cpu_s(load_pids)
        sys0 = cpu_s(pids, kernel_only=True)
        triggers: dict[int, float] = {}
        t_start = time.time()
        for k in range(args.changes):
            target = t_start + k * args.spacing
            time.sleep(max(0.0, target - time.time()))
            t0 = time.time()
            seq = srv.trigger(k)
            triggers[seq] = t0
        last = max(triggers)
        for _ in range(int(args.drain_timeout / 0.2) + 1):  # until all got the last change
            if fleet.progress().get(last, 0) >= ready:
                break
            time.sleep(0.2)
        cpu1, rcpu1, lcpu1 = cpu_s(pids), cpu_s([redis.pid]), cpu_s(load_pids)
        sys1 = cpu_s(pids, kernel_only=True)
        t_end = time.time()
        arrivals, lost = fleet.collect()
        rss2 = rss_kb(pids)
        if profiler is not None:
            stop_profiler(profiler)
        storm: dict[str, Any] = {}
        if args.reconnect and srv.name.startswith("maintcast"):
            cmds0 = redis.commands()
            t_storm = time.time()
            r_ready, r_failed, r_s = fleet.reconnect(args.connect_timeout)
            phases["storm"].append((t_storm, time.time()))
            time.sleep(1.0)
            storm = {
                "reconnect_ready": r_ready,
                "reconnect_failed": r_failed,
                "reconnect_s": r_s,
                "redis_cmds_per_reconnect": (redis.commands() - cmds0 - 1) / max(1, r_ready),
                "rss_kb_per_sub_after_storm": (rss_kb(tree_pids(srv.proc.pid)) - rss0)
                / max(1, r_ready),
            }
    finally:
        fleet.close()
    per_change = []
    pooled: list[float] = []
    delivered = 0
    windows = []
    for seq, t0 in sorted(triggers.items()):
        got = sorted((a - t0) * 1000 for a in arrivals.get(seq, []))
        delivered += len(got)
        pooled.extend(got)
        windows.append((t0, t0 + (got[-1] / 1000 if got else 0)))
        per_change.append(
            {
                "seq": seq,
                "received": len(got),
                "missing": ready - len(got),
                "p50_ms": pct(got, 0.5),
                "p99_ms": pct(got, 0.99),
                "max_ms": got[-1] if got else math.nan,
            }
        )
    pooled.sort()
    gcs = gc_pauses(tmp, srv.name) if srv.python else []
    phases["broadcast"] = windows
    gc_over_50ms = _gc_over_50ms_by_phase(gcs, phases)
    in_broadcast = [
        (p, s, d, g) for p, s, d, g in gcs if any(s < w1 and s + d > w0 for w0, w1 in windows)
    ]
    sub_n = max(1, ready)
    res = {
        "server": srv.name,
        "note": srv.note,
        "subscribers": n,
        "ready": ready,
        "failed": failed,
        "connect_s": connect_s,
        "connect_rate": ready / connect_s if connect_s else 0,
        "changes": len(triggers),
        "delivered": delivered,
        "missing": ready * len(triggers) - delivered,
        "lost_connections": lost,
        "p50_ms": pct(pooled, 0.5),
        "p99_ms": pct(pooled, 0.99),
        "max_ms": pooled[-1] if pooled else math.nan,
        "per_change": per_change,
        "rss_kb_before": rss0,
        "rss_kb_connected": rss1,
        "rss_kb_after_events": rss2,
        "rss_kb_per_sub": (rss1 - rss0) / sub_n,
        "rss_kb_per_sub_after_events": (rss2 - rss0) / sub_n,
        "redis_rss_kb_per_sub": (redis_rss1 - redis_rss0) / sub_n,
        "cpu_s": cpu1 - cpu0,
        "redis_cpu_s": rcpu1 - rcpu0,
        "cpu_us_per_delivery": (cpu1 - cpu0) * 1e6 / max(1, delivered),
        "cpu_kernel_us_per_delivery": (sys1 - sys0) * 1e6 / max(1, delivered),
        "redis_cpu_us_per_delivery": (rcpu1 - rcpu0) * 1e6 / max(1, delivered),
        "load_cpu_us_per_delivery": (lcpu1 - lcpu0) * 1e6 / max(1, delivered),
        "trigger_phase_s": t_end - t_start,
        "gc_full_collections": sum(1 for g in gcs if g[3] == 2),
        "gc_max_pause_ms": max((g[2] for g in gcs), default=0.0) * 1000,
        "gc_pauses_in_broadcast_ms": [round(g[2] * 1000, 1) for g in in_broadcast],
        "gc_pauses_over_50ms_by_phase": gc_over_50ms,
        "server_pids": len(pids),
        **storm,
    }
    return res


def _gc_over_50ms_by_phase(
    gcs: list[tuple[int, float, float, int]], phases: dict[str, list[tuple[float, float]]]
) -> dict[str, list[float]]:
    """The GC pauses longer than 50 ms (ms, to 0.1) by the phase they overlap: ``start-up``
    (before the first connect), a phase of ``phases`` (its spans: real-time intervals), or
    ``idle``."""

    def phase_of(start: float, dur: float) -> str:
        if start < phases["connect"][0][0]:
            return "start-up"  # the server's own start (imports, the collect before freezing)
        for name, spans in phases.items():
            if any(start < w1 and start + dur > w0 for w0, w1 in spans):
                return name
        return "idle"

    gc_over_50ms: dict[str, list[float]] = {}
    for _p, start, dur, _g in gcs:
        if dur > 0.05:
            gc_over_50ms.setdefault(phase_of(start, dur), []).append(round(dur * 1000, 1))
    return gc_over_50ms


def start_profiler(srv: Server, args: argparse.Namespace, tmp: Path) -> Proc | None:
    spy = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
    if not spy:
        print("  (py-spy not found: no profile)")
        return None
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    duration = int(args.changes * args.spacing + 3)
    spy_args = [
        "record",
        "--pid",
        str(srv.proc.pid),
        "--subprocesses",
        "--rate",
        "250",
        "--nonblocking",
        "--duration",
        str(duration),
        "--format",
        args.profile_format,
        "-o",
        str(out / f"{srv.name}-{args.subscribers}.{args.profile_format}"),
    ]
    p = Proc(f"py-spy-{srv.name}", spy_args, None, tmp, exe=spy, preexec_fn=raise_nofile)
    time.sleep(1.5)  # attach
    return p


def stop_profiler(p: Proc) -> None:
    try:
        p.proc.wait(30)
    except subprocess.TimeoutExpired:
        p.stop(10)


# -- the run --------------------------------------------------------------------------------


def fmt(v: float, nd: int = 0) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.{nd}f}"


def table(results: list[dict[str, Any]]) -> str:
    ref = {r["subscribers"]: r for r in results if r["server"] == "nchan"}
    head = (
        f"{'server':<13} {'N':>6} {'ready':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'conn/s':>7} {'RSS/sub KB':>10} {'CPU µs/del':>10} {'in kernel':>9} {'redis µs':>8} "
        f"{'load µs':>7} "
        f"{'p99xnchan':>9} {'CPUxnchan':>9} {'RSSxnchan':>9} {'miss':>5} {'GC>50ms':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        n = r["subscribers"]
        base = ref.get(n)

        def ratio(key: str, r: dict[str, Any] = r, base: dict[str, Any] | None = base) -> str:
            if base is None or not base.get(key) or math.isnan(base[key]) or math.isnan(r[key]):
                return "-"
            return f"{r[key] / base[key]:.1f}x"

        big_gc = [p for p in r["gc_pauses_in_broadcast_ms"] if p > 50]
        lines.append(
            f"{r['server']:<13} {n:>6} {r['ready']:>6} {fmt(r['p50_ms'], 1):>7} "
            f"{fmt(r['p99_ms'], 1):>7} {fmt(r['max_ms'], 1):>7} {fmt(r['connect_rate']):>7} "
            f"{fmt(r['rss_kb_per_sub'], 1):>10} {fmt(r['cpu_us_per_delivery'], 1):>10} "
            f"{fmt(r.get('cpu_kernel_us_per_delivery', math.nan), 1):>9} "
            f"{fmt(r['redis_cpu_us_per_delivery'], 1):>8} "
            f"{fmt(r.get('load_cpu_us_per_delivery', math.nan), 1):>7} {ratio('p99_ms'):>9} "
            f"{ratio('cpu_us_per_delivery'):>9} {ratio('rss_kb_per_sub'):>9} "
            f"{r['missing']:>5} {('-' if r['server'].startswith('nchan') else len(big_gc)):>7}"
        )
    for r in results:
        if r.get("gc_pauses_over_50ms_by_phase"):
            by = "; ".join(f"{k} {v}" for k, v in r["gc_pauses_over_50ms_by_phase"].items())
            lines.append(f"GC pauses > 50 ms (ms), {r['server']} N={r['subscribers']}: {by}")
    for r in results:
        if "reconnect_s" in r:
            lines.append(
                f"reconnect storm, {r['server']} N={r['subscribers']}: "
                f"{r['reconnect_ready']} resynced, {r['reconnect_failed']} failed, "
                f"in {r['reconnect_s']:.2f} s; "
                f"RSS/sub after it {r['rss_kb_per_sub_after_storm']:.1f} KB; "
                f"{r['redis_cmds_per_reconnect']:.3f} Redis commands per client"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="SSE fan-out: Maintcast vs naive sse-starlette+Redis vs nginx+nchan.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--subscribers", "-n", type=int, default=1000)
    p.add_argument("--changes", "-k", type=int, default=5)
    p.add_argument("--spacing", type=float, default=1.0, help="seconds between changes")
    p.add_argument("--only", default="", help="comma list of maintcast, maintcast-w2, naive, nchan")
    p.add_argument("--workers2", action="store_true", help="also run maintcast --workers 2")
    p.add_argument("--nchan-workers2", action="store_true", help="also run nchan with 2 workers")
    p.add_argument(
        "--naive-max",
        type=int,
        default=2000,
        help="skip the naive baseline above this N (one Redis connection each)",
    )
    p.add_argument("--per-proc", type=int, default=15000, help="subscribers per load process")
    p.add_argument("--concurrency", type=int, default=200, help="connects in flight per process")
    p.add_argument("--connect-timeout", type=float, default=180)
    p.add_argument(
        "--client",
        choices=["python", "c"],
        default="python",
        help="load client: Python asyncio (default) or bench/sseload.c (epoll, compiled with cc)",
    )
    p.add_argument(
        "--api-args",
        default="",
        help="extra arguments for `maintcast api`, e.g. '--no-access-log' (split on spaces)",
    )
    p.add_argument(
        "--no-reconnect",
        dest="reconnect",
        action="store_false",
        help="skip the reconnect storm (every maintcast subscriber reconnects at once)",
    )
    p.add_argument("--drain-timeout", type=float, default=20)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--profile", help="py-spy the Python servers during the broadcasts into DIR")
    p.add_argument("--profile-format", default="raw", choices=["raw", "flamegraph", "speedscope"])
    p.add_argument("--keep-tmp", action="store_true")
    a = p.parse_args(argv)
    if a.subscribers < 1 or a.changes < 1:
        p.error("--subscribers and --changes must be >= 1")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nofile = raise_nofile()
    wanted = [s.strip() for s in args.only.split(",") if s.strip()] or (
        ["maintcast"]
        + (["maintcast-w2"] if args.workers2 else [])
        + ["naive", "nchan"]
        + (["nchan-w2"] if args.nchan_workers2 else [])
    )
    unknown = set(wanted) - {"maintcast", "maintcast-w2", "naive", "nchan", "nchan-w2"}
    if unknown:
        print(f"unknown server(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    n = args.subscribers
    need = n + 200
    if need > nofile * max(2, math.ceil(n / args.per_proc)):
        print(f"warning: RLIMIT_NOFILE {nofile} may be too low for {n} subscribers")
    tmp = Path(tempfile.mkdtemp(prefix="maintcast-fanout-"))
    print(
        f"fan-out bench: N={n} K={args.changes} spacing={args.spacing}s "
        f"nproc={os.cpu_count()} nofile={nofile} tmp={tmp}"
    )
    results: list[dict[str, Any]] = []
    payloads = Payloads()
    redis = Redis(tmp)
    try:
        for name in wanted:
            if name == "naive" and n > args.naive_max:
                print(
                    f"- naive: skipped at N={n} (> --naive-max {args.naive_max}: "
                    "one Redis connection per subscriber)"
                )
                continue
            try:
                if name.startswith("maintcast"):
                    srv = start_maintcast(
                        tmp, redis, payloads, 2 if name.endswith("w2") else 1, args.api_args.split()
                    )
                elif name == "naive":
                    srv = start_naive(tmp, redis, payloads)
                else:
                    srv = start_nchan(tmp, payloads, 2 if name.endswith("w2") else 1)
            except SkipServer as exc:
                print(f"- {name}: skipped: {exc}")
                continue
            print(
                f"- {srv.name}: pid {srv.proc.pid} port {srv.port}; connecting {n} ...", flush=True
            )
            try:
                r = run_trial(srv, redis, args, n, tmp)
            except Exception as exc:
                print(f"- {srv.name}: FAILED: {exc}\n{srv.proc.tail()}")
                continue
            finally:
                srv.stop()
            r["payload_bytes"] = [len(d) for d in payloads.docs]
            results.append(r)
            print(
                f"  ready {r['ready']}/{n} in {r['connect_s']:.1f}s; per change p99 ms: "
                + ", ".join(fmt(c["p99_ms"], 1) for c in r["per_change"])
                + (
                    f"; GC pauses in broadcast: {r['gc_pauses_in_broadcast_ms']}"
                    if r["gc_pauses_in_broadcast_ms"]
                    else ""
                ),
                flush=True,
            )
            time.sleep(1.0)
    finally:
        redis.stop()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(table(results))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": {"nproc": os.cpu_count(), "time": time.time()},
                    "args": vars(args),
                    "results": results,
                },
                indent=2,
            )
        )
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
