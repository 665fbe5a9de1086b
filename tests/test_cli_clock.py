"""Rehearsal clock options on the CLI: bad values stop the command with one line."""

from __future__ import annotations

import pytest

from tests.support import EXAMPLE, env_for, run_cli

CLOCK = ["--clock", "2021-08-09T00:59:00+09:00"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--speed", "nan"], "--speed must be > 0"),
        (["--speed", "inf"], "--speed must be > 0"),
        (["--speed", "0"], "--speed must be > 0"),
        (["--clock-wall", "1e20"], "--clock-wall must be Unix seconds"),
        (["--clock-wall", "-1"], "--clock-wall must be Unix seconds"),
        (["--clock-wall", "0", "--speed", "100"], "outside the years 1970 to 2198"),
        (["--clock-wall", "0", "--speed", "1000000"], "outside the years 1970 to 2198"),
    ],
)
def test_bad_rehearsal_options_fail_in_one_line(extra: list[str], message: str) -> None:
    env = env_for(MAINTCAST_REDIS_URL="redis://127.0.0.1:1/0")
    done = run_cli(["windows", "import", str(EXAMPLE), *CLOCK, *extra], env)
    assert done.returncode == 1
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_a_bad_clock_setting_names_the_variable() -> None:
    env = env_for(MAINTCAST_REDIS_URL="redis://127.0.0.1:1/0", MAINTCAST_CLOCK_SPEED="nan")
    done = run_cli(["worker"], env)
    assert done.returncode == 1
    assert "MAINTCAST_CLOCK_SPEED" in done.stderr, done.stderr
