"""Tried as a new user would, against a real ``maintcast serve``: a monthly second-Thursday
01:00–06:00 JST series created from the CLI (``windows add --rrule --exdate``), one
occurrence postponed (``windows reschedule``); the iCal feed, the event log and
``/v1/windows?series=`` show exactly that. Also the CLI's errors and ``--series`` verbs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from icalendar import Calendar

from broadcaster.auth import entry_line, new_token
from tests.support import EXAMPLE, Proc, env_for, eventually, free_port, jst, run_cli

pytestmark = pytest.mark.slow

CLOCK = "2021-09-01T10:00:00+09:00"  # eight days before the first occurrence
SID = "webcollect-monthly"
SECOND_THURSDAYS = [
    "20210909", "20211014", "20211111", "20211209", "20220210", "20220310",
    "20220414", "20220512", "20220609", "20220714", "20220811", "20220908",
]  # fmt: skip  # 2022-01-13 is an exdate; 2022-10-13 is more than 400 days away


class Serve:
    def __init__(self, proc: Proc, url: str, token: str) -> None:
        self.proc, self.url, self.token = proc, url, token

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = env_for(MAINTCAST_URL=self.url, MAINTCAST_TOKEN=self.token)
        return run_cli(list(args), env)

    def get(self, path: str, **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.get(self.url + path, params=params, headers=headers, timeout=5)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    token = new_token()
    port = free_port()
    args = ["serve", "--schedule", str(EXAMPLE), "--clock", CLOCK, "--port", str(port)]
    env = env_for(MAINTCAST_TOKENS=entry_line("ops-admin", "admin", token))
    proc = Proc("serve", args, env, tmp_path_factory.mktemp("series-cli"))
    srv = Serve(proc, f"http://127.0.0.1:{port}", token)
    try:

        def ready() -> bool:
            assert proc.alive(), proc.tail()
            return httpx.get(f"{srv.url}/readyz", timeout=1).status_code == 200

        eventually(ready, "serve ready", timeout=20, ignoring=(httpx.HTTPError,), detail=proc.tail)
        yield srv
    finally:
        proc.stop()


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def test_a_monthly_series_from_the_cli_with_one_occurrence_postponed(serve: Serve) -> None:
    before = serve.get("/v1/status").json()["seq"]
    out = ok(
        serve.cli(
            "windows", "add",
            "--id", SID,
            "--title", "「クロネコwebコレクト」定期メンテナンス",
            "--title-en", "Kuroneko Web Collect monthly maintenance",
            "--starts-at", "2021-09-09T01:00",
            "--ends-at", "2021-09-09T06:00",
            "--timezone", "Asia/Tokyo",
            "--affected", "webcollect=*",
            "--rrule", "FREQ=MONTHLY;BYDAY=2TH",
            "--exdate", "2022-01-13T01:00",
        )
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0].startswith(f"{SID}  scheduled    2021-09-09T01:00:00+09:00 → "), out
    assert lines[1] == "  every FREQ=MONTHLY;BYDAY=2TH (Asia/Tokyo) except 2022-01-13T01:00", out
    assert lines[2].startswith(f"  occurrences: 12 (12 to come: {SID}--20210909, "), out

    out = ok(
        serve.cli(
            "windows", "reschedule", f"{SID}--20210909",
            "--starts-at", "2021-09-16T01:00",
            "--ends-at", "2021-09-16T06:00",
            "--reason", "延期 (postponed)",
        )
    )  # fmt: skip
    assert out.startswith(
        f"{SID}--20210909  scheduled    2021-09-16T01:00:00+09:00 → 2021-09-16T06:00:00+09:00"
    ), out

    # /v1/windows?series=: the twelve occurrences, one moved, the others untouched
    occ = serve.get("/v1/windows", series=SID).json()["windows"]
    assert [w["id"] for w in occ] == [f"{SID}--{d}" for d in SECOND_THURSDAYS]
    for w, day in zip(occ, SECOND_THURSDAYS, strict=True):
        moved = day == "20210909"
        date = "2021-09-16" if moved else f"{day[:4]}-{day[4:6]}-{day[6:]}"
        assert (w["starts_at"], w["ends_at"]) == (
            f"{date}T01:00:00+09:00",
            f"{date}T06:00:00+09:00",
        )
        assert w["series_id"] == SID
        assert w["status"] == "scheduled"
        assert [(h["change"], h["reason"]) for h in w["history"]] == (
            [("rescheduled", "延期 (postponed)")] if moved else []
        )
    out = ok(serve.cli("windows", "list", "--series", SID))
    assert len(out.splitlines()) == 12
    assert "2021-09-16T01:00:00+09:00" in out.splitlines()[0]
    series = serve.get(f"/v1/windows/{SID}").json()
    assert series["recurrence"] == {
        "rrule": "FREQ=MONTHLY;BYDAY=2TH",
        "exdates": ["2022-01-13T01:00"],
    }

    # the event log: the series scheduled, the occurrence rescheduled, nothing else
    events = serve.get("/v1/events", after=str(before)).json()["events"]
    assert [(e["type"], e["window_id"], e["actor"], e["reason"]) for e in events] == [
        ("maintenance.scheduled", SID, "ops-admin", None),
        ("maintenance.rescheduled", f"{SID}--20210909", "ops-admin", "延期 (postponed)"),
    ]

    # the feed: the announced occurrence (eight days ahead, like the first), postponed; no
    # series; the later ones are announced eight days before each
    cal = Calendar.from_ical(serve.get("/v1/windows.ics").content)
    mine = {str(e["UID"]): e for e in cal.walk("VEVENT") if str(e["UID"]).startswith(SID)}
    assert list(mine) == [f"{SID}--20210909@maintcast"]
    ev = mine[f"{SID}--20210909@maintcast"]
    assert ev.decoded("DTSTART") == jst(2021, 9, 16, 1)
    assert ev.decoded("DTEND") == jst(2021, 9, 16, 6)
    assert ev["DTSTART"].params["TZID"] == "Asia/Tokyo"
    assert ev.decoded("SEQUENCE") == 1
    assert "「クロネコwebコレクト」定期メンテナンス" in str(ev["SUMMARY"])


def one_line(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert all(n in lines[0] for n in needles), lines[0]


def test_cli_errors_are_one_line(serve: Serve, tmp_path: Path) -> None:
    base = ["windows", "add", "--title", "t", "--starts-at", "2021-10-14T01:00"]
    base += ["--ends-at", "2021-10-14T02:00", "--timezone", "Asia/Tokyo"]
    base += ["--affected", "atobarai=au_easy"]
    one_line(serve.cli(*base, "--exdate", "2021-11-11T01:00"), "--exdate needs --rrule")
    one_line(serve.cli(*base, "--rrule", "FREQ=HOURLY"), "422", "recurrence.rrule", "HOURLY")
    one_line(serve.cli(*base, "--rrule", "FREQ=MONTHLY;BYDAY=3TH"), "422", "starts_at")


def test_series_wide_reschedule_and_cancel_from_the_cli(serve: Serve) -> None:
    sid = "atobarai-weekly"
    ok(
        serve.cli(
            "windows", "add", "--id", sid, "--title", "週次",
            "--starts-at", "2021-09-06T02:00", "--ends-at", "2021-09-06T03:00",
            "--timezone", "Asia/Tokyo", "--affected", "atobarai=au_easy",
            "--rrule", "FREQ=WEEKLY;BYDAY=MO;COUNT=3",
        )
    )  # fmt: skip
    out = ok(
        serve.cli(
            "windows", "reschedule", sid, "--series",
            "--starts-at", "2021-09-06T03:00", "--ends-at", "2021-09-06T04:00",
        )
    )  # fmt: skip
    assert out.startswith(f"{sid}  scheduled    2021-09-06T03:00:00+09:00"), out
    starts = [w["starts_at"] for w in serve.get("/v1/windows", series=sid).json()["windows"]]
    assert starts == [f"2021-09-{d}T03:00:00+09:00" for d in ("06", "13", "20")]
    out = ok(serve.cli("windows", "cancel", sid, "--series", "--reason", "x"))
    assert out.startswith(f"{sid}  cancelled"), out
    states = {w["status"] for w in serve.get("/v1/windows", series=sid).json()["windows"]}
    assert states == {"cancelled"}
    one_line(serve.cli("windows", "cancel", sid), "422", "scope=series")
