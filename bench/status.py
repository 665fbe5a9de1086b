"""``GET /v1/status`` throughput: Maintcast against a bare Starlette handler, with wrk.

Both run under uvicorn (1 worker, uvloop + httptools, access log off) on loopback and
answer the same JSON bytes (the seed notice's status, imported into a private Redis):

- ``maintcast``: ``maintcast api --no-access-log`` (status from the hub's memory, plus the
  ``ETag``; the full middleware stack of the app);
- ``bare starlette``: ``bench/bare_status.py``, one ``Route`` returning a ``Response``.

wrk (Debian package ``wrk``) runs ``--rounds`` times per server, alternating, ``-t1 -c50``
for ``--duration`` seconds; the best round of each is compared (the load generator shares the
two cores). Run: ``python bench/status.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support: the processes the tests use too
from fanout import VENV_BIN, Redis, http_ok  # noqa: E402

from tests.support import EXAMPLE, MAINTCAST, Proc, free_port, poll_until  # noqa: E402


def wrk(port: int, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}/v1/status"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None or "Non-2xx" in out:
        raise RuntimeError("wrk: " + out)
    return float(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk round")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="maintcast-status-"))
    redis = Redis(tmp)
    procs: list[Proc] = []
    try:
        env = {"MAINTCAST_REDIS_URL": redis.url, "MAINTCAST_KEY_PREFIX": "bench"}
        subprocess.run(
            [MAINTCAST, "windows", "import", str(EXAMPLE)],
            env={**_environ(), **env},
            check=True,
            capture_output=True,
            timeout=60,
        )
        ports = {"maintcast": free_port(), "bare starlette": free_port()}
        args = ["api", "--port", str(ports["maintcast"]), "--no-access-log"]
        procs.append(Proc("maintcast", args, {**_environ(), **env}, tmp))
        if not poll_until(lambda: http_ok(ports["maintcast"], "/v1/status"), timeout=30):
            raise RuntimeError("maintcast api did not start:\n" + procs[0].tail())
        url = f"http://127.0.0.1:{ports['maintcast']}/v1/status"
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read()
        (tmp / "body.json").write_bytes(body)
        args = [
            "bare_status:app",
            "--app-dir",
            str(ROOT / "bench"),
            "--port",
            str(ports["bare starlette"]),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        env_bare = {**_environ(), "BARE_STATUS_BODY": str(tmp / "body.json")}
        procs.append(Proc("bare", args, env_bare, tmp, exe=str(VENV_BIN / "uvicorn")))
        if not poll_until(lambda: http_ok(ports["bare starlette"], "/v1/status"), timeout=30):
            raise RuntimeError("bare starlette did not start:\n" + procs[1].tail())
        best = dict.fromkeys(ports, 0.0)
        for _ in range(a.rounds):
            for name, port in ports.items():
                best[name] = max(best[name], wrk(port, a.duration))
                time.sleep(0.5)
        print(
            f"GET /v1/status, {len(body)}-byte body, wrk -t1 -c50, "
            f"best of {a.rounds} x {a.duration} s"
        )
        for name, rps in best.items():
            print(f"  {name:<15} {rps:>10,.0f} req/s")
        ratio = best["bare starlette"] / best["maintcast"]
        print(f"  bare / maintcast = {ratio:.2f} (target: <= 1.5)")
    finally:
        for proc in procs:
            proc.stop(10)
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _environ() -> dict[str, str]:
    return dict(os.environ)


if __name__ == "__main__":
    sys.exit(main())
