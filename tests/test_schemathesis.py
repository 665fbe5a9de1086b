"""Third-party HTTP tools against the API (issue 12): ``/openapi.json`` is a valid OpenAPI
document (``openapi-spec-validator``), and ``schemathesis`` run against a real
``maintcast serve --demo`` (every operation, with an admin token, a bounded number of
examples) finds no server error: no 5xx and no traceback in the server's log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from broadcaster.app import create_app
from broadcaster.auth import entry_line, new_token
from tests.ops_support import WID
from tests.support import (
    EXAMPLE,
    Proc,
    env_for,
    free_port,
    processes,
    settings_for,
    tail_of,
    wait_ready,
)

ST = str(Path(sys.executable).parent / "st")
CLOCK = "2021-06-01T10:00:00+09:00"  # the example's window is announced and scheduled
EXAMPLES = 60
"""Test cases per operation and phase: about 40 s on one CPU."""
SEED = 12


def test_openapi_document_is_valid(key_prefix: str) -> None:
    spec: dict[str, Any] = create_app(settings_for(None, key_prefix), demo=True).openapi()
    validate(spec)  # raises OpenAPIValidationError naming the offending part
    ops = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert {
        ("GET", "/v1/windows"),
        ("POST", "/v1/windows"),
        ("PATCH", "/v1/windows/{window_id}"),
        ("POST", "/v1/windows/{window_id}/cancel"),
        ("PUT", "/v1/override"),
        ("DELETE", "/v1/override"),
        ("GET", "/v1/events"),
        ("GET", "/maintenance"),
    } <= ops
    # the ops bodies are described, so a fuzzer sends windows and overrides
    body = spec["paths"]["/v1/windows"]["post"]["requestBody"]["content"]["application/json"]
    assert {"title", "starts_at", "ends_at", "affected"} <= set(body["schema"]["required"])


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    port, token = free_port(), new_token()
    base = f"http://127.0.0.1:{port}"
    env = env_for(MAINTCAST_TOKENS=entry_line("fuzz", "admin", token))
    config = tmp_path / "schemathesis.toml"
    # a window that exists, so its PATCH, cancel and GET reach the real logic
    config.write_text(f'[parameters]\n"path.window_id" = "{WID}"\n', encoding="utf-8")
    args = ["serve", "--demo", "--port", str(port), "--schedule", str(EXAMPLE), "--clock", CLOCK]
    with processes() as procs:
        serve = Proc("serve", args, env, tmp_path)
        procs.append(serve)
        async with httpx.AsyncClient() as client:
            await wait_ready(client, base, procs)
            r = await client.get(f"{base}/openapi.json")
            assert r.status_code == 200
            validate(r.json())
        st = [
            ST,
            "--no-color",
            "--config-file",
            str(config),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",  # one: hypothesis's lambda-source cache is not thread-safe (an
            "1",  # "AST constructor recursion depth mismatch" error with two)
            "--request-timeout",
            "10",
            "--header",
            f"Authorization: Bearer {token}",
        ]
        done = await asyncio.to_thread(
            subprocess.run,
            st,
            cwd=tmp_path,  # its example database stays out of the repository
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        (tmp_path / "schemathesis.out").write_text(done.stdout + done.stderr, encoding="utf-8")
        report = tail_of(tmp_path / "schemathesis.out", 80)
        assert done.returncode == 0, f"{report}\n{serve.tail()}"
        assert " passed" in done.stdout, report
        assert "generated" in done.stdout, report
        assert serve.alive(), serve.tail()
    server_log = serve.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in server_log, serve.tail()
    assert "Exception in ASGI application" not in server_log, serve.tail()
