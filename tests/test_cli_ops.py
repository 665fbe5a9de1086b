"""The ops CLI against a real ``maintcast serve`` process: windows, override, tokens, errors.

One ``serve`` process per module (embedded store, rehearsal clock at 2021-08-09 00:55 JST,
five minutes before the example window) with an operator and an admin token configured;
every CLI call is a subprocess with ``MAINTCAST_URL``/``MAINTCAST_TOKEN`` in its environment.
Every wait is bounded and the server is stopped in a ``finally`` block.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from broadcaster.auth import Principal, Tokens, entry_line, new_token
from broadcaster.cli.client import parse_duration
from tests.support import (
    EXAMPLE,
    MAINTCAST,
    ROOT,
    Proc,
    env_for,
    eventually,
    free_port,
    run_cli,
)

CLOCK = "2021-08-09T00:55:00+09:00"
EXAMPLE_ID = "webcollect-2021-08"
ADMIN = "ops-admin"
OPERATOR = "ops-operator"


@dataclass
class Server:
    url: str
    admin_token: str
    operator_token: str
    proc: Proc

    @property
    def log(self) -> Path:
        return self.proc.log

    def tail(self) -> str:
        return self.proc.tail()

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def cli(
        self, *args: str, token: str | None = None, url: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``maintcast ARGS`` with MAINTCAST_URL (this server unless ``url``) and
        MAINTCAST_TOKEN (none unless ``token``)."""
        extra = {"MAINTCAST_URL": url or self.url}
        if token is not None:
            extra["MAINTCAST_TOKEN"] = token
        return run_cli(list(args), env_for(**extra))


def ok(r: subprocess.CompletedProcess[str]) -> str:
    """Assert exit 0; return stdout."""
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert a non-zero exit with exactly one non-empty stderr line (no traceback) that
    contains every needle; return that line."""
    assert r.returncode != 0, f"exit 0\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"want one stderr line, got {len(lines)}:\n{r.stderr}"
    assert "Traceback" not in r.stderr
    assert "Traceback" not in r.stdout
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    admin, operator = new_token(), new_token()
    tokens = ",".join(
        [entry_line(ADMIN, "admin", admin), entry_line(OPERATOR, "operator", operator)]
    )
    port = free_port()
    args = ["serve", "--schedule", str(EXAMPLE), "--clock", CLOCK, "--port", str(port)]
    # no MAINTCAST_REDIS_URL: the embedded store
    proc = Proc("serve", args, env_for(MAINTCAST_TOKENS=tokens), tmp_path_factory.mktemp("cli-ops"))
    srv = Server(f"http://127.0.0.1:{port}", admin, operator, proc)
    try:

        def ready() -> bool:
            assert proc.alive(), f"serve exited with {proc.proc.returncode}\n{srv.tail()}"
            return httpx.get(f"{srv.url}/readyz", timeout=1).status_code == 200

        eventually(
            ready,
            f"serve ready at {srv.url}",
            timeout=20,
            interval=0.1,
            ignoring=(httpx.HTTPError,),
            detail=srv.tail,
        )
        yield srv
    finally:
        proc.stop()


# -- windows ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_uses_configured_tokens(server: Server) -> None:
    text = server.log.read_text(encoding="utf-8", errors="replace")
    assert "embedded in-memory store" in text, server.tail()
    assert "one-time admin token" not in text, server.tail()


@pytest.mark.slow
def test_windows_list_shows_the_example(server: Server) -> None:
    out = ok(server.cli("windows", "list"))
    line = next((ln for ln in out.splitlines() if ln.startswith(EXAMPLE_ID + " ")), None)
    assert line is not None, out
    assert "scheduled" in line
    assert "システムメンテナンス" in line


@pytest.mark.slow
def test_windows_add_then_cancel(server: Server) -> None:
    out = ok(
        server.cli(
            "windows", "add",
            "--id", "t1",
            "--title", "テスト",
            "--starts-at", "2021-08-10T01:00",
            "--ends-at", "2021-08-10T02:00",
            "--timezone", "Asia/Tokyo",
            "--affected", "webcollect=credit_card",
            token=server.admin_token,
        )
    )  # fmt: skip
    assert out.strip() == (
        "t1  scheduled    2021-08-10T01:00:00+09:00 → 2021-08-10T02:00:00+09:00  テスト"
    ), out
    w = server.get("/v1/windows/t1").json()
    assert w["affected"] == {"webcollect": ["credit_card"]}
    assert w["timezone"] == "Asia/Tokyo"

    out = ok(server.cli("windows", "cancel", "t1", "--reason", "x", token=server.admin_token))
    assert out.startswith("t1  cancelled"), out
    w = server.get("/v1/windows/t1").json()
    assert w["status"] == "cancelled"
    assert w["history"][-1]["change"] == "cancelled"
    assert (w["history"][-1]["actor"], w["history"][-1]["reason"]) == (ADMIN, "x")

    again = server.cli("windows", "cancel", "t1", "--reason", "x", token=server.admin_token)
    one_line_error(again, "409")


@pytest.mark.slow
def test_windows_add_from_file(server: Server, tmp_path: Path) -> None:
    window: dict[str, Any] = {
        "id": "from-file",
        "title": {"ja": "ファイルから", "en": "From a file"},
        "description": {"ja": "説明", "en": "Description"},
        "starts_at": "2021-08-11T01:00:00+09:00",
        "ends_at": "2021-08-11T03:00:00+09:00",
        "timezone": "Asia/Tokyo",
        "announce_at": "2021-08-09T00:00:00+09:00",
        "affected": {"atobarai": ["credit_card", "cvs_online"]},
        "error_code": "Z010000001",
        "messages": {"token_modal": {"ja": "メンテナンス中です。", "en": "Under maintenance."}},
    }
    path = tmp_path / "window.json"
    path.write_text(json.dumps(window, ensure_ascii=False), encoding="utf-8")
    out = ok(server.cli("windows", "add", "--file", str(path), token=server.admin_token))
    assert out.startswith("from-file  scheduled    2021-08-11T01:00:00+09:00"), out
    assert "ファイルから" in out
    got = server.get("/v1/windows/from-file").json()
    for field in ("title", "description", "starts_at", "ends_at", "timezone", "affected"):
        assert got[field] == window[field], field
    assert got["error_code"] == "Z010000001"
    assert got["messages"]["token_modal"] == window["messages"]["token_modal"]
    assert got["history"] == []

    again = server.cli("windows", "add", "--file", str(path), token=server.admin_token)
    one_line_error(again, "409")


@pytest.mark.slow
def test_windows_reschedule_uses_the_windows_zone(server: Server) -> None:
    before = server.get(f"/v1/windows/{EXAMPLE_ID}").json()
    out = ok(
        server.cli(
            "windows", "reschedule", EXAMPLE_ID,
            "--starts-at", "2021-08-16T01:00",
            "--ends-at", "2021-08-16T06:00",
            "--reason", "postponed",
            token=server.admin_token,
        )
    )  # fmt: skip
    assert "2021-08-16T01:00:00+09:00 → 2021-08-16T06:00:00+09:00" in out, out
    w = server.get(f"/v1/windows/{EXAMPLE_ID}").json()
    assert (w["starts_at"], w["ends_at"]) == (
        "2021-08-16T01:00:00+09:00",
        "2021-08-16T06:00:00+09:00",
    )
    assert len(w["history"]) == len(before["history"]) + 1
    entry = w["history"][-1]
    assert entry["change"] == "rescheduled"
    assert entry["actor"] == ADMIN
    assert entry["reason"] == "postponed"
    assert entry["from"] == {"starts_at": before["starts_at"], "ends_at": before["ends_at"]}
    assert entry["to"] == {
        "starts_at": "2021-08-16T01:00:00+09:00",
        "ends_at": "2021-08-16T06:00:00+09:00",
    }
    events = server.get("/v1/events?after=0&limit=1000").json()["events"]
    last = [e for e in events if e["window_id"] == EXAMPLE_ID][-1]
    assert (last["type"], last["actor"], last["reason"]) == (
        "maintenance.rescheduled",
        ADMIN,
        "postponed",
    )
    # the file's 2021 postponement plus this one
    ics = server.get("/v1/windows.ics").text.replace("\r\n ", "")
    vevent = ics.split(f"UID:{EXAMPLE_ID}@maintcast", 1)[1].split("END:VEVENT", 1)[0]
    assert "SEQUENCE:2" in vevent, vevent


# -- override --------------------------------------------------------------------------------


@pytest.mark.slow
def test_windows_extend_note_and_end(server: Server) -> None:
    """A window in progress (with a reserve and a drain, from the CLI) is noted, extended
    within its reserve by an operator, refused past it, then ended; a second end is 409."""
    out = ok(
        server.cli(
            "windows", "add",
            "--id", "t-life",
            "--title", "ライフサイクル",
            "--starts-at", "2021-08-09T00:00",
            "--ends-at", "2021-08-09T03:30",
            "--latest-end", "2021-08-09T04:30",
            "--drain", "10m",
            "--timezone", "Asia/Tokyo",
            "--affected", "atobarai=au_easy",
            token=server.admin_token,
        )
    )  # fmt: skip
    assert "(latest 2021-08-09T04:30:00+09:00) drain 600s" in out, out
    op = server.operator_token
    try:
        out = ok(
            server.cli(
                "windows", "note", "t-life", "--ja", "順調です", "--en", "On track", token=op
            )
        )
        assert "notes: 1" in out, out
        out = ok(
            server.cli(
                "windows", "extend", "t-life", "--by", "30m", "--reason", "overrun", token=op
            )
        )
        assert "→ 2021-08-09T04:00:00+09:00 (latest 2021-08-09T04:30:00+09:00)" in out, out
        past = server.cli("windows", "extend", "t-life", "--ends-at", "2021-08-09T05:00", token=op)
        one_line_error(past, "403", "latest_end", "admin")
        one_line_error(server.cli("windows", "extend", "t-life", token=op), "--by or --ends-at")
        one_line_error(server.cli("windows", "note", "t-life", token=op), "--ja")
        w = server.get("/v1/windows/t-life").json()
        assert [h["change"] for h in w["history"]] == ["extended"]
        assert w["notes"][0]["message"] == {"ja": "順調です", "en": "On track"}
        out = ok(server.cli("windows", "end", "t-life", "--reason", "done", token=op))
        assert out.startswith("t-life  completed"), out
        one_line_error(server.cli("windows", "end", "t-life", token=op), "409")
        events = server.get("/v1/events?after=0&limit=1000").json()["events"]
        assert [e["type"] for e in events if e["window_id"] == "t-life"] == [
            "maintenance.scheduled",
            "maintenance.note",
            "maintenance.extended",
            "maintenance.ended",
        ]
    finally:  # leave the shared server without this window in progress
        server.cli("windows", "cancel", "t-life", token=server.admin_token)


@pytest.mark.slow
def test_override_set_and_clear(server: Server) -> None:
    try:
        out = ok(
            server.cli(
                "override", "set",
                "--mode", "maintenance",
                "--reason", "incident 42",
                "--ttl", "30m",
                token=server.operator_token,
            )
        )  # fmt: skip
        assert "state maintenance" in out, out
        status = json.loads(ok(server.cli("status")))
        assert status["state"] == "maintenance"
        assert status["cause"]["type"] == "override.set"
        ov = status["override"]
        assert (ov["mode"], ov["reason"], ov["actor"]) == ("maintenance", "incident 42", OPERATOR)
        set_at = datetime.fromisoformat(ov["set_at"])
        expires_at = datetime.fromisoformat(ov["expires_at"])
        assert abs((expires_at - set_at) - timedelta(minutes=30)) < timedelta(milliseconds=2)
        assert status["until"] == ov["expires_at"]
        assert all(
            st == "under_maintenance" for ms in status["components"].values() for st in ms.values()
        )

        out = ok(server.cli("override", "clear", "--reason", "done", token=server.operator_token))
        assert "state normal" in out, out
        status = json.loads(ok(server.cli("status")))
        assert status["state"] == "normal"
        assert status["override"] is None
        assert (status["cause"]["type"], status["cause"]["reason"]) == ("override.cleared", "done")
    finally:  # leave the shared server without an override whatever failed
        httpx.delete(
            server.url + "/v1/override",
            headers={"Authorization": f"Bearer {server.operator_token}"},
            timeout=5,
        )


@pytest.mark.slow
def test_override_clear_without_override_is_one_line(server: Server) -> None:
    r = server.cli("override", "clear", "--reason", "nothing", token=server.operator_token)
    one_line_error(r, "404")


# -- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("90s", 90), ("45", 45), ("1d", 86400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0", "5x"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration(text)


# -- one-line errors -------------------------------------------------------------------------

ADD_T9 = (
    "windows", "add",
    "--id", "t9",
    "--title", "x",
    "--starts-at", "2021-08-12T01:00",
    "--ends-at", "2021-08-12T02:00",
    "--timezone", "Asia/Tokyo",
    "--affected", "webcollect=credit_card",
)  # fmt: skip


@pytest.mark.slow
def test_error_unreachable_server(server: Server) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    one_line_error(server.cli("windows", "list", url=closed), "cannot reach", closed)


@pytest.mark.slow
def test_error_bad_url(server: Server) -> None:
    one_line_error(server.cli("windows", "list", url="http://[::1"), "cannot reach")


@pytest.mark.slow
def test_error_missing_token(server: Server) -> None:
    one_line_error(server.cli(*ADD_T9), "401", "MAINTCAST_TOKEN")


@pytest.mark.slow
def test_error_unknown_token(server: Server) -> None:
    one_line_error(server.cli(*ADD_T9, token=new_token()), "401", "unknown token")


@pytest.mark.slow
def test_error_operator_cannot_add(server: Server) -> None:
    one_line_error(server.cli(*ADD_T9, token=server.operator_token), "403", "admin")
    assert server.get("/v1/windows/t9").status_code == 404


@pytest.mark.slow
def test_error_422_names_the_field(server: Server) -> None:
    r = server.cli(
        "windows", "add",
        "--id", "t9",
        "--title", "x",
        "--starts-at", "2021-08-12T03:00",
        "--ends-at", "2021-08-12T02:00",
        "--timezone", "Asia/Tokyo",
        "--affected", "webcollect=credit_card",
        token=server.admin_token,
    )  # fmt: skip
    one_line_error(r, "422", "ends_at")
    assert server.get("/v1/windows/t9").status_code == 404


@pytest.mark.slow
def test_error_unknown_window(server: Server) -> None:
    r = server.cli("windows", "cancel", "no-such-window", token=server.admin_token)
    one_line_error(r, "404", "no-such-window")


@pytest.mark.slow
def test_error_unreadable_window_file(server: Server, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1,\n2\n", encoding="utf-8")
    one_line_error(server.cli("windows", "add", "--file", str(bad), token=server.admin_token))


# -- tokens and status -----------------------------------------------------------------------


@pytest.mark.slow
def test_token_create() -> None:
    out = ok(run_cli(["token", "create", "--name", "alice", "--role", "operator"], env_for()))
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith("token ")
    assert lines[1].startswith("entry ")
    token = lines[0].rsplit(": ", 1)[1]
    entry = lines[1].rsplit(": ", 1)[1]
    assert entry.startswith("alice:operator:")
    tokens = Tokens.parse(entry)
    assert tokens.verify(token) == Principal("alice", "operator")
    assert tokens.verify(new_token()) is None


@pytest.mark.slow
def test_token_create_bad_role() -> None:
    r = run_cli(["token", "create", "--name", "alice", "--role", "root"], env_for())
    one_line_error(r, "--role", "root")


@pytest.mark.slow
def test_status_scoped(server: Server) -> None:
    doc = json.loads(ok(server.cli("status", "--service", "atobarai", "--method", "bank_transfer")))
    assert doc["state"] == "normal"
    assert doc["components"] == {"atobarai": {"bank_transfer": "operational"}}
    assert doc["until"] is None
    assert doc["error_code"] is None


@pytest.mark.slow
def test_watch_prints_one_line_per_status(server: Server) -> None:
    """`maintcast watch` skips the opening retry block and prints the current status."""
    proc = subprocess.Popen(
        [MAINTCAST, "watch"],
        env=env_for(MAINTCAST_URL=server.url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the first status line (bounded below)
        assert first.startswith("seq "), first
        assert "normal" in first or "maintenance" in first
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err


def test_bad_redis_url_is_one_line() -> None:
    r = run_cli(["worker"], env_for(MAINTCAST_REDIS_URL="garbage"))
    one_line_error(r, "MAINTCAST_REDIS_URL")
