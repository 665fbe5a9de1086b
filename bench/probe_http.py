"""Issue 12 checked from outside, as a user would with curl: starts ``maintcast serve --demo``
on a free port (the example schedule, a rehearsal clock before its window, an admin token,
``MAINTCAST_MAX_WINDOWS=4``) and talks to it over raw sockets and httpx only.

    python bench/probe_http.py            # prints one line per check, exits 1 on a failure

Items: 1 open redirect, 2 embargoed causes, 4 limits, 5 HTTP conformance.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/: the poll helper the tests use too

from broadcaster.auth import entry_line, new_token  # noqa: E402
from tests.support import eventually  # noqa: E402

MAINTCAST = str(Path(sys.executable).parent / "maintcast")
RESULTS: list[tuple[bool, str]] = []


def check(ok: bool, what: str) -> None:
    RESULTS.append((ok, what))
    print(f"{'PASS' if ok else 'FAIL'}  {what}", flush=True)


def raw(
    port: int,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    chunks: list[bytes] | None = None,
    wait_s: float = 3.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request over a fresh socket, exactly as written (``target`` unnormalised);
    answers status, headers (lower-case names, last wins) and every byte after them."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if chunks is not None:
        lines.append("Transfer-Encoding: chunked")
    elif body or method in ("POST", "PUT", "PATCH", "DELETE"):
        lines.append(f"Content-Length: {len(body)}")
    s = socket.create_connection(("127.0.0.1", port), timeout=wait_s)
    got = b""
    try:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            if chunks is not None:
                for c in chunks:
                    s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
                s.sendall(b"0\r\n\r\n")
            elif body:
                s.sendall(body)
        except OSError:
            pass  # the server answered and stopped reading: read what it said
        while True:
            try:
                part = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not part:
                break
            got += part
    finally:
        s.close()
    head, _, rest = got.partition(b"\r\n\r\n")
    first, *fields = head.decode("latin-1").split("\r\n")
    status = int(first.split()[1]) if first.startswith("HTTP/") else 0
    hdrs = {}
    for f in fields:
        k, _, v = f.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, rest


def main() -> int:
    port = 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = new_token()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTCAST_")}
    env.update(MAINTCAST_TOKENS=entry_line("probe", "admin", token), MAINTCAST_MAX_WINDOWS="4")
    fd, log_path = tempfile.mkstemp(prefix="probe-serve-", suffix=".log")
    args = [MAINTCAST, "serve", "--demo", "--port", str(port)]
    args += ["--schedule", str(ROOT / "deploy/examples/webcollect-2021.yaml")]
    args += ["--clock", "2021-06-01T10:00:00+09:00"]
    server = subprocess.Popen(args, env=env, stdout=fd, stderr=subprocess.STDOUT, cwd=ROOT)
    os.close(fd)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    try:
        eventually(
            lambda: httpx.get(f"{base}/readyz", timeout=1).status_code == 200,
            "serve ready",
            timeout=20,
            interval=0.1,
            ignoring=(httpx.HTTPError,),
        )
        print(f"maintcast serve --demo on {base} (log {log_path})")
        with httpx.Client(base_url=base, timeout=10) as http:
            probe(port, http, auth)
    finally:
        server.terminate()
        server.wait(10)
    log_text = Path(log_path).read_text(errors="replace")
    check("Traceback" not in log_text, "no traceback in the server's log")
    failed = [w for ok, w in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def href_of(page: bytes) -> str:
    m = re.search(rb'id="mt-ended"[^>]*><a href="([^"]*)"', page)
    return m.group(1).decode() if m else "<none>"


def probe(port: int, http: httpx.Client, auth: dict[str, str]) -> None:
    # -- 1. open redirect ------------------------------------------------------------------
    for q in (
        "/%5Cevil.example",
        "/%09/evil.example",
        "%2F%2Fevil.example",
        "/%0A/evil.example",
        "%5C%5Cevil.example",
        "https%3A%2F%2Fevil.example",
        "/%E3%80%80/evil.example",
        "/%255Cevil.example",
    ):
        status, _, body = raw(port, "GET", f"/maintenance?return={q}")
        check(status == 200 and href_of(body) == "/status", f"1 return={q} -> href {href_of(body)}")
    status, _, body = raw(port, "GET", "/maintenance?return=/demo/checkout")
    check(href_of(body) == "/demo/checkout", "1 return=/demo/checkout kept")

    # -- 2. embargo ------------------------------------------------------------------------
    secret = {
        "id": "probe-secret",
        "title": {"en": "Embargoed"},
        "starts_at": "2021-07-01T01:00:00+09:00",
        "ends_at": "2021-07-01T02:00:00+09:00",
        "announce_at": "2021-06-20T00:00:00+09:00",
        "affected": {"atobarai": ["au_easy"]},
        "reason": "confidential merger",
    }
    r = http.post("/v1/windows", json=secret, headers=auth)
    seq = int(
        http.get("/v1/events", params={"after": 0, "limit": 1000}).json()["events"][-1]["seq"]
    )
    st = eventually(
        lambda: (doc := http.get("/v1/status").json())["seq"] >= seq and doc,
        f"/v1/status at seq {seq}",
    )
    check(
        r.status_code == 201 and st["cause"]["window_id"] is None and st["cause"]["reason"] is None,
        f"2 /v1/status cause {st['cause']}",
    )
    ev = http.get("/v1/events", params={"after": seq - 1}).json()["events"][0]
    check(
        ev["window_id"] is None and ev["reason"] is None,
        f"2 /v1/events public: window_id={ev['window_id']} reason={ev['reason']}",
    )
    ev = http.get("/v1/events", params={"after": seq - 1}, headers=auth).json()["events"][0]
    check(ev["window_id"] == "probe-secret", f"2 /v1/events with token: {ev['window_id']}")
    status, _, body = raw(port, "GET", "/v1/stream", {"Last-Event-ID": str(seq - 1)}, wait_s=1.5)
    check(
        status == 200
        and b"probe-secret" not in body
        and b"confidential" not in body
        and f"id: {seq}".encode() in body,
        f"2 /v1/stream replay of seq {seq}: no id, no reason ({len(body)} bytes read)",
    )

    # -- 4. limits -------------------------------------------------------------------------
    big = json.dumps({**secret, "id": "big", "description": {"en": " " * 300_000}}).encode()
    status, h, body = raw(
        port, "POST", "/v1/windows", {**auth, "Content-Type": "application/json"}, big
    )
    check(
        status == 413 and json.loads(body)["error"]["code"] == "body_too_large",
        f"4 300 KB body with Content-Length -> {status} {body[:80]!r}",
    )
    status, h, body = raw(
        port,
        "POST",
        "/v1/windows",
        {**auth, "Content-Type": "application/json"},
        chunks=[b" " * 65536] * 16,
    )
    check(status == 413, f"4 1 MiB chunked body -> {status} {body[:60]!r}")
    for field, value in (
        ("title", {"en": "bell\x07"}),
        ("reason", "esc\x1b[2J"),
        ("description", {"ja": "nul\x00"}),
        ("title", {"en": "c1\x85"}),
    ):
        r = http.post("/v1/windows", json={**secret, "id": "cc", field: value}, headers=auth)
        err = r.json()["error"]
        check(
            r.status_code == 422 and err["field"].startswith(field),
            f"4 control char in {field} -> {r.status_code} field={err['field']}",
        )
    r = http.post(
        "/v1/windows",
        headers=auth,
        json={**secret, "id": "huge", "description": {"ja": "あ" * 4000, "en": "x" * 4000}},
    )
    check(
        r.status_code == 422, f"4 17 KiB of texts -> {r.status_code} {r.json()['error']['field']}"
    )
    codes = []
    for i in range(3):
        body4 = {**secret, "id": f"n{i}", "announce_at": None, "reason": None}
        body4 = {k: v for k, v in body4.items() if v is not None}
        codes.append(http.post("/v1/windows", json=body4, headers=auth).status_code)
    r = http.post("/v1/windows", json={**secret, "id": "n9"}, headers=auth)
    check(
        codes[:2] == [201, 201] and 409 in [*codes, r.status_code],
        f"4 MAINTCAST_MAX_WINDOWS=4: creates -> {[*codes, r.status_code]} "
        f"({r.json().get('error', {}).get('field')})",
    )

    # -- 5. HTTP conformance ---------------------------------------------------------------
    for method, path in (
        ("POST", "/v1/status"),
        ("POST", "/v1/stream"),
        ("DELETE", "/v1/windows"),
        ("PUT", "/v1/windows/webcollect-2021-08"),
        ("GET", "/v1/override"),
        ("POST", "/healthz"),
        ("POST", "/static/maintcast.js"),
        ("POST", "/status"),
        ("PATCH", "/v1/events"),
        ("GET", "/demo/api/token"),
    ):
        status, h, _ = raw(port, method, path)
        check(
            status == 405 and "allow" in h, f"5 {method} {path} -> {status} Allow: {h.get('allow')}"
        )
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/events",
        "/v1/windows",
        "/v1/stream",
        "/v1/windows.ics",
        "/status",
        "/static/maintcast.js",
    ):
        t = time.monotonic()
        status, h, body = raw(port, "HEAD", path, wait_s=3)
        check(
            status == 200 and body == b"" and time.monotonic() - t < 2,
            f"5 HEAD {path} -> {status}, {len(body)} body bytes, "
            f"content-type {h.get('content-type')}, {time.monotonic() - t:.2f} s",
        )
    missing = []
    for method, path in (
        ("GET", "/v1/status"),
        ("GET", "/v1/windows.ics"),
        ("GET", "/status"),
        ("GET", "/static/maintcast.js"),
        ("GET", "/nope"),
        ("DELETE", "/v1/status"),
        ("GET", "/v1/events?after=x"),
        ("POST", "/v1/windows"),
        ("GET", "/v1/stream?service=nope"),
        ("GET", "/metrics"),
    ):
        status, h, _ = raw(port, method, path)
        if h.get("x-content-type-options") != "nosniff":
            missing.append(f"{method} {path} ({status})")
    status, h, _ = raw(port, "GET", "/v1/stream", wait_s=1)
    if h.get("x-content-type-options") != "nosniff":
        missing.append("GET /v1/stream")
    check(not missing, f"5 nosniff on every probed response (missing: {missing or 'none'})")
    sizes = []
    for target in (
        f"/v1/events?after={'9' * 60000}",
        f"/v1/windows/{'w' * 60000}",
        f"/v1/events?limit={'x' * 60000}",
    ):
        status, _, body = raw(port, "GET", target)
        sizes.append((status, len(body)))
    r = http.put("/v1/override", json={"mode": "m" * 60000, "reason": "r"}, headers=auth)
    sizes.append((r.status_code, len(r.content)))
    check(all(n < 1024 for _, n in sizes), f"5 60 KB inputs -> error sizes {sizes}")
    for body5 in (b"[1]", b'"x"', b"1"):
        status, _, body = raw(
            port, "DELETE", "/v1/override", {**auth, "Content-Type": "application/json"}, body5
        )
        named = json.loads(body)["error"]["field"] if body else None
        check(
            status == 422 and named == "body",
            f"5 DELETE /v1/override {body5!r} -> {status} {named}",
        )


if __name__ == "__main__":
    sys.exit(main())
