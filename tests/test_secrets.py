"""Secrets at rest and in logs (issue 12, item 6): the one-time admin token of ``serve``
is printed on a terminal only, else written to a 0600 file whose path is logged (removed at
exit); a tokens file that group or others may write, or in a directory they may write, is
refused, naming the file or the directory; ``MAINTCAST_FORWARDED_ALLOW_IPS='*'`` is warned
of."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pty
import re
import select
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broadcaster.auth import TokenConfigError, Tokens, entry_line
from broadcaster.onetime import hand_over
from broadcaster.serving import uvicorn_options
from broadcaster.settings import Settings
from tests.support import MAINTCAST, ROOT, env_for, eventually, free_port, run_cli

TOKEN = "mc_" + "t" * 43
TOKEN_RE = re.compile(rb"MAINTCAST_TOKEN=(mc_[A-Za-z0-9_-]+)")
FILE_RE = re.compile(r"is in (\S+) \(mode 0600")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_token_is_shown(caplog: pytest.LogCaptureFixture) -> None:
    out = Terminal()
    with caplog.at_level("INFO"):
        assert hand_over(TOKEN, out) == ()
    assert f"MAINTCAST_TOKEN={TOKEN}" in out.getvalue()
    assert TOKEN not in caplog.text


async def test_elsewhere_it_goes_to_a_private_file(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    out = io.StringIO()
    with caplog.at_level("INFO"):
        (cleanup,) = hand_over(TOKEN, out)
    (path,) = tmp_path.glob("maintcast-admin-token-*")
    assert out.getvalue() == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == f"MAINTCAST_TOKEN={TOKEN}\n"
    (record,) = [r for r in caplog.records if r.name == "broadcaster.onetime"]
    assert record.levelno == logging.WARNING
    assert str(path) in record.getMessage()
    assert TOKEN not in caplog.text
    async with cleanup(None, None):  # the app's lifespan: removed when it stops
        assert path.exists()
    assert not path.exists()


@contextlib.contextmanager
def serving(tmp_path: Path, stdout: int, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``maintcast serve`` without tokens on ``port``, its output to ``stdout``; TMPDIR is
    ``tmp_path``. Stopped with SIGTERM (a clean exit) at the end."""
    env = env_for(TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [MAINTCAST, "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=stdout,
        stderr=stdout,
        stdin=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            assert proc.poll() is None, "serve exited"
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success

        eventually(up, "serve up", timeout=20, interval=0.1, ignoring=(httpx.HTTPError,))
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def token_works(port: int, token: str) -> bool:
    r = httpx.put(
        f"http://127.0.0.1:{port}/v1/override",
        json={"mode": "maintenance", "reason": "token check", "ttl_s": 60},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    return r.status_code == 200


@pytest.mark.slow
def test_serve_without_a_terminal_writes_the_token_to_a_file(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    port = free_port()
    with log.open("wb") as out, serving(tmp_path, out.fileno(), port) as proc:
        text = log.read_text(errors="replace")
        found = FILE_RE.search(text)
        assert found, text
        path = Path(found.group(1))
        assert path.parent == tmp_path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip().removeprefix("MAINTCAST_TOKEN=")
        assert token.startswith("mc_")
        assert token not in text
        assert token_works(port, token)
        assert not token_works(port, token + "x")
    # uvicorn ends on SIGTERM by raising it again: killed by it, after a clean shutdown
    assert proc.returncode == -signal.SIGTERM, log.read_text(errors="replace")
    assert "Application shutdown complete" in log.read_text(errors="replace")
    assert not path.exists(), "the file outlived the process (and its token)"
    assert TOKEN_RE.search(log.read_bytes()) is None


@pytest.mark.slow
def test_serve_on_a_terminal_prints_the_token(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    port = free_port()
    got = b""
    try:
        with serving(tmp_path, slave, port):

            def token() -> bytes | None:
                nonlocal got
                if select.select([master], [], [], 0.2)[0]:
                    got += os.read(master, 65536)
                m = TOKEN_RE.search(got)
                return m.group(1) if m else None

            printed = eventually(
                token,
                "the token on the terminal",
                timeout=10,
                detail=lambda: got.decode(errors="replace"),
            )
            assert token_works(port, printed.decode())
    finally:
        os.close(slave)
        os.close(master)
    assert b"mode 0600" not in got
    assert list(tmp_path.glob("maintcast-admin-token-*")) == []


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o622, 0o666])
def test_a_tokens_file_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    f = tmp_path / "tokens"
    f.write_text(entry_line("ops", "admin", TOKEN) + "\n", encoding="utf-8")
    f.chmod(mode)
    with pytest.raises(TokenConfigError, match="MAINTCAST_TOKENS_FILE") as exc:
        Tokens.parse("", str(f))
    assert str(f) in str(exc.value)
    assert f"{mode:04o}" in str(exc.value)
    assert "chmod go-w" in str(exc.value)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o400])
def test_a_tokens_file_only_its_owner_may_write_is_read(tmp_path: Path, mode: int) -> None:
    f = tmp_path / "tokens"
    f.write_text(entry_line("ops", "admin", TOKEN) + "\n", encoding="utf-8")
    f.chmod(mode)
    principal = Tokens.parse("", str(f)).verify(TOKEN)
    assert principal is not None
    assert principal.name == "ops"


def test_the_api_refuses_to_start_with_a_group_writable_tokens_file(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(entry_line("ops", "admin", TOKEN) + "\n", encoding="utf-8")
    f.chmod(0o660)
    env = env_for(MAINTCAST_REDIS_URL="redis://127.0.0.1:1/0", MAINTCAST_TOKENS_FILE=str(f))
    res = run_cli(["api", "--port", str(free_port())], env, 30)
    assert res.returncode == 1, res.stdout + res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("maintcast: MAINTCAST_TOKENS_FILE: "), line
    assert str(f) in line, line
    assert "writable by group or others (mode 0660)" in line


@pytest.mark.parametrize(("mode", "nested"), [(0o777, False), (0o770, False), (0o757, True)])
def test_a_tokens_file_in_a_directory_others_may_write_is_refused(
    tmp_path: Path, mode: int, nested: bool
) -> None:
    """Whoever may write a directory above the file (no sticky bit) may swap the file."""
    opened = tmp_path / "open"
    home = opened / "sub" if nested else opened
    home.mkdir(parents=True)
    f = home / "tokens"
    f.write_text(entry_line("ops", "admin", TOKEN) + "\n", encoding="utf-8")
    f.chmod(0o600)
    opened.chmod(mode)
    try:
        with pytest.raises(TokenConfigError, match="MAINTCAST_TOKENS_FILE") as exc:
            Tokens.parse("", str(f))
    finally:
        opened.chmod(0o700)
    message = str(exc.value)
    assert f"is in {opened}, which group or others may write (mode {mode:04o}" in message
    assert f"chmod go-w {opened}" in message


@pytest.mark.parametrize("mode", [0o1777, 0o1770, 0o755, 0o700])
def test_a_tokens_file_in_a_sticky_or_private_directory_is_read(tmp_path: Path, mode: int) -> None:
    home = tmp_path / "home"
    home.mkdir()
    f = home / "tokens"
    f.write_text(entry_line("ops", "admin", TOKEN) + "\n", encoding="utf-8")
    f.chmod(0o600)
    home.chmod(mode)
    try:
        principal = Tokens.parse("", str(f)).verify(TOKEN)
    finally:
        home.chmod(0o700)
    assert principal is not None
    assert principal.name == "ops"


def test_forwarded_allow_ips_star_is_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    """``*`` lets any client name its own address: a WARNING at start says so."""
    for value, warned in (
        ("*", True),
        ("127.0.0.1, *", True),
        ("0.0.0.0/0", True),
        ("::1, ::/0", True),
        ("127.0.0.1,10.0.0.0/8", False),
    ):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="broadcaster.serving"):
            options = uvicorn_options(Settings(forwarded_allow_ips=value))
        assert options["forwarded_allow_ips"] == value
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        said = any("MAINTCAST_FORWARDED_ALLOW_IPS trusts every address" in ln for ln in lines)
        assert said is warned, lines
