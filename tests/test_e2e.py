"""End to end with real processes: ``maintcast worker``, ``api``, ``serve`` and ``windows import``.

Every process is started from the console script next to the test's interpreter, on
loopback, with its output in ``tmp_path``; every wait is bounded and every process is
killed in a ``finally`` block.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import yaml
from httpx_sse import aconnect_sse

from tests.support import (
    EXAMPLE,
    Proc,
    env_for,
    eventually,
    eventually_async,
    free_port,
    free_ports,
    processes,
    run_cli,
    start_redis,
    tails,
    wait_ready,
)

pytestmark = pytest.mark.slow


CATALOG: dict[str, Any] = {
    "services": {
        "webcollect": {
            "name": {"ja": "クロネコwebコレクト", "en": "Kuroneko Web Collect"},
            "methods": {
                m: {"name": {"en": m}}
                for m in ("credit_card", "cvs_online", "carrier", "kuroneko_pay")
            },
        },
        "atobarai": {
            "name": {"ja": "クロネコ代金後払いサービス", "en": "Kuroneko Deferred Payment Service"},
            "methods": {
                m: {"name": {"en": m}}
                for m in ("credit_card", "cvs_online", "au_easy", "bank_transfer", "kuroneko_pay")
            },
        },
    }
}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds")


async def _collect(
    client: httpx.AsyncClient,
    url: str,
    out: list[dict[str, Any]],
    until: str,
    connected: asyncio.Event | None = None,
) -> None:
    """Append every status event of the stream at ``url`` to ``out`` until one whose
    ``cause.type`` is ``until`` arrived."""
    async with aconnect_sse(client, "GET", url) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for ev in source.aiter_sse():
            if not ev.data:  # the opening `retry:` block dispatches nothing (WHATWG SSE)
                continue
            assert ev.event == "status"
            doc = orjson.loads(ev.data)
            assert ev.id == str(doc["seq"])
            out.append(doc)
            if connected is not None:
                connected.set()
            if (doc["cause"] or {}).get("type") == until:
                return


def _types(events: list[dict[str, Any]]) -> list[tuple[int, str | None]]:
    return [(e["seq"], (e["cause"] or {}).get("type")) for e in events]


def _under_maintenance(doc: dict[str, Any]) -> set[str]:
    return {
        f"{s}/{m}"
        for s, methods in doc["components"].items()
        for m, st in methods.items()
        if st == "under_maintenance"
    }


# -- 1. one worker, two APIs, one Redis ------------------------------------------------------


async def test_worker_and_two_apis_deliver_the_same_events(tmp_path: Path) -> None:
    server = start_redis()
    try:
        env = env_for(
            MAINTCAST_REDIS_URL=server.url,
            MAINTCAST_KEY_PREFIX=f"e2e{uuid.uuid4().hex[:10]}",
        )
        expected = {
            "webcollect/credit_card",
            "webcollect/cvs_online",
            "webcollect/carrier",
            "webcollect/kuroneko_pay",
            "atobarai/credit_card",
            "atobarai/kuroneko_pay",
        }
        schedule = tmp_path / "schedule.yaml"

        with processes() as procs:
            procs.append(Proc("worker", ["worker"], env, tmp_path))
            ports = free_ports(2)
            apis = [
                Proc(f"api{i}", ["api", "--host", "127.0.0.1", "--port", str(p)], env, tmp_path)
                for i, p in enumerate(ports)
            ]
            procs.extend(apis)
            bases = [f"http://127.0.0.1:{p}" for p in ports]
            timeout = httpx.Timeout(5, read=None)
            async with (
                httpx.AsyncClient(timeout=timeout) as c1,
                httpx.AsyncClient(timeout=timeout) as c2,
            ):
                for client, base, proc in zip((c1, c2), bases, apis, strict=True):
                    await wait_ready(client, base, [proc], timeout=15, empty_store=True)
                seen: list[list[dict[str, Any]]] = [[], []]
                connected = [asyncio.Event(), asyncio.Event()]
                tasks = [
                    asyncio.create_task(
                        _collect(client, f"{base}/v1/stream", out, "maintenance.ended", ev)
                    )
                    for client, base, out, ev in zip((c1, c2), bases, seen, connected, strict=True)
                ]
                try:
                    async with asyncio.timeout(5):
                        await asyncio.gather(*(e.wait() for e in connected))
                    connected_at = datetime.now(UTC)

                    # the import is the trigger, once everything runs and both clients listen,
                    # so a slow start-up on a loaded machine cannot make the test miss the start
                    now = datetime.now(UTC)
                    starts, ends = now + timedelta(seconds=3), now + timedelta(seconds=6)
                    window = {
                        "id": "e2e-window",
                        "title": {"ja": "テスト", "en": "e2e"},
                        "starts_at": _iso(starts),
                        "ends_at": _iso(ends),
                        "announce_at": _iso(now),
                        "affected": {
                            "webcollect": ["*"],
                            "atobarai": ["credit_card", "kuroneko_pay"],
                        },
                    }
                    schedule.write_text(
                        yaml.safe_dump(
                            {"catalog": CATALOG, "windows": [window]}, allow_unicode=True
                        ),
                        encoding="utf-8",
                    )
                    imported = await asyncio.to_thread(
                        run_cli, ["windows", "import", str(schedule)], env
                    )
                    assert imported.returncode == 0, imported.stdout + imported.stderr
                    assert "maintenance.scheduled e2e-window" in imported.stdout

                    # the worker's heartbeat is fresh while it runs
                    checks: list[subprocess.CompletedProcess[str]] = []

                    async def worker_alive() -> bool:
                        checks.append(
                            await asyncio.to_thread(run_cli, ["worker", "check"], env, 15)
                        )
                        return checks[-1].returncode == 0

                    await eventually_async(
                        worker_alive,
                        "`maintcast worker check` to exit 0",
                        timeout=10,
                        interval=0.2,
                        detail=lambda: f"worker check: {checks[-1:]}\n{tails(procs)}",
                    )

                    try:
                        async with asyncio.timeout(20):
                            await asyncio.gather(*tasks)
                    except TimeoutError:
                        pytest.fail(
                            f"no maintenance.ended within 20 s; seen {[_types(s) for s in seen]}"
                            f"\n{tails(procs)}"
                        )
                finally:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
            for p in procs:
                assert p.alive(), f"{p.name} died\n{p.tail()}"

        info = f"seen {[_types(s) for s in seen]}\n{tails(procs)}"
        assert connected_at < starts, f"clients connected after the window started; {info}"
        for i, events in enumerate(seen):
            assert events[0]["seq"] == 0, info  # the empty store's snapshot on connect
            events = seen[i] = events[1:]
            seqs = [e["seq"] for e in events]
            assert seqs == sorted(set(seqs)), f"not in seq order or duplicated; {info}"
            types = [t for _, t in _types(events)]
            assert types[0] == "maintenance.scheduled", info
            assert events[0]["state"] == "normal", info
            assert types[-2:] == ["maintenance.started", "maintenance.ended"], info
            started, ended = events[-2], events[-1]
            assert started["seq"] + 1 == ended["seq"], info
            assert started["state"] == "maintenance", info
            assert ended["state"] == "normal", info
            assert started["cause"]["window_id"] == ended["cause"]["window_id"] == "e2e-window"
            assert _under_maintenance(started) == expected, info
            assert _under_maintenance(ended) == set(), info
            assert [w["id"] for w in started["active"]] == ["e2e-window"], info
            assert datetime.fromisoformat(started["until"]) == ends.replace(
                microsecond=ends.microsecond // 1000 * 1000
            ), info
        assert _types(seen[0]) == _types(seen[1]), info
        assert seen[0][-2:] == seen[1][-2:], "the two APIs sent different status objects"
    finally:
        server.close()


# -- 2. bad schedule files -------------------------------------------------------------------


def _window(wid: str, **kw: Any) -> dict[str, Any]:
    w: dict[str, Any] = {
        "id": wid,
        "title": {"en": wid},
        "starts_at": "2030-01-10T01:00:00+09:00",
        "ends_at": "2030-01-10T06:00:00+09:00",
        "affected": {"webcollect": ["*"]},
    }
    w.update(kw)
    return w


def _yaml(*windows: dict[str, Any]) -> str:
    return yaml.safe_dump({"catalog": CATALOG, "windows": list(windows)}, allow_unicode=True)


CATALOG_YAML = yaml.safe_dump({"catalog": CATALOG}, allow_unicode=True)

# name -> (file text, words the one stderr line must contain besides the file name)
BAD_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "malformed": (
        CATALOG_YAML + "windows:\n  - id: broken\n    title: {en: [unclosed\n",
        ("malformed YAML",),
    ),
    "unknown-service": (
        _yaml(_window("bad-service", affected={"nosuch": ["*"]})),
        ("window bad-service", "affected", "nosuch"),
    ),
    "ends-before-start": (
        _yaml(_window("bad-order", ends_at="2030-01-10T00:30:00+09:00")),
        ("window bad-order", "ends_at"),
    ),
    "naive-string": (
        _yaml(_window("bad-naive", starts_at="2030-01-10T01:00", ends_at="2030-01-10T06:00")),
        ("window bad-naive", "starts_at", "timezone"),
    ),
    "naive-yaml-timestamp": (
        CATALOG_YAML
        + "windows:\n  - id: bad-timestamp\n    title: {en: x}\n"
        + "    starts_at: 2030-01-10 01:00:00\n    ends_at: 2030-01-10 06:00:00\n"
        + "    affected: {webcollect: ['*']}\n",
        ("window bad-timestamp", "starts_at"),
    ),
    "nonexistent-local": (
        # 2030-03-10 is the second Sunday of March: New York's clocks skip 02:00-03:00
        _yaml(
            _window(
                "bad-gap",
                starts_at="2030-03-10T02:30",
                ends_at="2030-03-10T05:00",
                timezone="America/New_York",
            )
        ),
        ("window bad-gap", "starts_at", "does not exist", "America/New_York"),
    ),
    "second-of-two-bad": (
        _yaml(
            _window("good-second-file"),
            _window("bad-after-good", affected={"webcollect": ["nosuch_method"]}),
        ),
        ("window bad-after-good", "affected"),
    ),
}


def _snapshot(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix`` with its value (the heartbeat excluded)."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"{{{prefix}}}:*"):
        kind = client.type(key)
        if kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"string":
            out[key] = client.get(key)
        elif kind == b"stream":
            out[key] = client.xrange(key)
        else:
            out[key] = kind
    return out


def test_import_bad_file_is_one_line_and_nothing_imported(tmp_path: Path) -> None:
    server = start_redis()
    client = redis.Redis.from_url(server.url)
    try:
        prefix = f"e2e{uuid.uuid4().hex[:10]}"
        env = env_for(MAINTCAST_REDIS_URL=server.url, MAINTCAST_KEY_PREFIX=prefix)
        paths = {}
        for name, (text, _) in BAD_FILES.items():
            paths[name] = tmp_path / f"{name}.yaml"
            paths[name].write_text(text, encoding="utf-8")

        def check_bad(name: str) -> None:
            path, words = paths[name], BAD_FILES[name][1]
            res = run_cli(["windows", "import", str(path)], env)
            info = f"{name}: exit {res.returncode}\nstdout: {res.stdout!r}\nstderr: {res.stderr!r}"
            assert res.returncode != 0, info
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1, info
            assert str(path) in lines[0], info
            for w in words:
                assert w in lines[0], f"{w!r} missing; {info}"
            assert "imported" not in res.stdout, info

        def check_all_bad() -> None:
            # the imports fail independently of each other: run them side by side
            with ThreadPoolExecutor(len(BAD_FILES)) as pool:
                for f in [pool.submit(check_bad, name) for name in BAD_FILES]:
                    f.result(timeout=60)

        # into an empty store: nothing at all is written
        check_all_bad()
        assert _snapshot(client, prefix) == {}, "a bad file wrote something"

        # over a store that holds a window: the store is unchanged
        good = tmp_path / "good.yaml"
        good.write_text(_yaml(_window("good-baseline")), encoding="utf-8")
        res = run_cli(["windows", "import", str(good)], env)
        assert res.returncode == 0, res.stdout + res.stderr
        before = _snapshot(client, prefix)
        assert list(client.hkeys(f"{{{prefix}}}:windows")) == [b"good-baseline"]
        check_all_bad()
        assert _snapshot(client, prefix) == before, "a bad file changed the store"

        # idempotent: the same good file again publishes nothing
        again = run_cli(["windows", "import", str(good)], env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "0 event(s)" in again.stdout, again.stdout
        assert _snapshot(client, prefix) == before

        # an unreachable Redis is one line too, not a traceback
        down = run_cli(
            ["windows", "import", str(good)],
            {**env, "MAINTCAST_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
        )
        assert down.returncode != 0, down.stdout + down.stderr
        assert len(down.stderr.strip().splitlines()) == 1, down.stderr
        assert "redis unreachable" in down.stderr, down.stderr
    finally:
        client.close()
        server.close()


# -- 3. serve: embedded store, rehearsal of the 2021 schedule ---------------------------------


AS_OF_BOUNDARY = re.compile(r"^2021-08-09T01:00:00(\.\d+)?\+09:00$")


async def test_serve_embedded_rehearsal(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = env_for()
    assert "MAINTCAST_REDIS_URL" not in env
    with processes() as procs:
        serve = Proc(
            "serve",
            [
                "serve",
                "--schedule",
                str(EXAMPLE),
                "--clock",
                "2021-08-09T00:59:57+09:00",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env,
            tmp_path,
        )
        procs.append(serve)
        seen: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as client:
            await wait_ready(client, base, [serve], timeout=10)
            try:
                async with asyncio.timeout(10):
                    await _collect(client, f"{base}/v1/stream", seen, "maintenance.started")
            except TimeoutError:
                pytest.fail(
                    f"no maintenance.started within 10 s; seen {_types(seen)}\n{serve.tail()}"
                )

        eventually(
            lambda: "embedded in-memory store" in serve.log.read_text(errors="replace"),
            "the embedded-store notice",
            interval=0.1,
            detail=serve.tail,
        )
        assert serve.alive(), serve.tail()

    info = f"seen {_types(seen)}\n{serve.tail()}"
    assert seen[0]["state"] == "normal", info
    started = seen[-1]
    assert [d["state"] for d in seen[:-1]] == ["normal"] * (len(seen) - 1), info
    assert started["state"] == "maintenance", info
    assert started["cause"]["window_id"] == "webcollect-2021-08", info
    assert AS_OF_BOUNDARY.match(started["as_of"]), info
    comps = started["components"]
    assert set(comps["webcollect"].values()) == {"under_maintenance"}, info
    assert set(comps["webcollect"]) == {"credit_card", "cvs_online", "carrier", "kuroneko_pay"}
    assert comps["atobarai"] == {
        "credit_card": "under_maintenance",
        "cvs_online": "under_maintenance",
        "kuroneko_pay": "under_maintenance",
        "au_easy": "operational",
        "bank_transfer": "operational",
    }, info
    assert started["until"] == "2021-08-09T06:00:00+09:00", info


@pytest.mark.slow
def test_worker_stops_on_sigterm_while_redis_is_down(tmp_path: Path) -> None:
    """The worker starts and stops promptly even when Redis never answers."""
    env = env_for(MAINTCAST_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with processes() as procs:
        worker = Proc("worker", ["worker"], env, tmp_path)
        procs.append(worker)

        def running() -> bool:
            assert worker.alive(), worker.log.read_text()
            return b"worker running" in worker.log.read_bytes()

        eventually(running, "the worker running", timeout=10, detail=worker.tail)
        worker.proc.terminate()
        assert worker.proc.wait(timeout=10) == 0, worker.log.read_text()
    assert b"Traceback" not in worker.log.read_bytes()
