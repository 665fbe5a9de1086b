"""docs/security.md (issue 12, item 8) is one page that is found (README, operations.md),
covers what the issue asks, and states the defaults the code and the nginx file have."""

from __future__ import annotations

import re

import pytest

from broadcaster.limits import RETRY_AFTER_S
from broadcaster.settings import Settings
from tests.nginx_site import SITE
from tests.support import ROOT

DOC = ROOT / "docs" / "security.md"
LIMITS = {
    # setting: how docs/security.md writes its default
    "streams_per_client": "32",
    "forwarded_allow_ips": "`127.0.0.1`",
    "max_header_bytes": "64 KiB",
    "header_timeout_s": "10 s",
    "client_queue": "64",
    "max_window_s": "7 days",
    "event_retention": "10,000",
}
AS_VALUE = {"64 KiB": 65_536, "10 s": 10.0, "7 days": 7 * 86_400, "10,000": 10_000}


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_it_is_linked_and_one_page() -> None:
    for page in (ROOT / "README.md", ROOT / "docs" / "operations.md"):
        assert re.search(r"\]\((docs/)?security\.md", page.read_text(encoding="utf-8")), page
    assert len(_text().splitlines()) <= 150, "the threat model on one page"


@pytest.mark.parametrize(
    "heading",
    ["## Who may do what", "**A stolen operator token**", "## Limits and their defaults",
     "## Rotating", "**The gate bypass secret**", "**An ops token**"],
)  # fmt: skip
def test_it_covers(heading: str) -> None:
    assert heading in _text()


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_each_limit_row_states_the_code_default(name: str) -> None:
    shown = LIMITS[name]
    default = Settings.model_fields[name].default
    expected = AS_VALUE.get(shown, shown.strip("`"))
    assert str(default) == str(expected) or default == expected, (name, default, shown)
    variable = f"MAINTCAST_{name.upper()}"
    rows = [ln for ln in _text().splitlines() if ln.startswith("|") and variable in ln]
    assert rows, f"no row for {variable}"
    assert any(shown in row for row in rows), f"{variable}: the row does not say {shown}"


def test_the_nginx_numbers_and_retry_after_match() -> None:
    site, text = SITE.read_text(encoding="utf-8"), _text()
    conn = re.search(r"limit_conn maintcast_streams (\d+);", site)
    opens = re.search(r"zone=maintcast_stream_opens:\w+ rate=(\d+)r/s", site)
    burst = re.search(r"limit_req zone=maintcast_stream_opens burst=(\d+)", site)
    rate = re.search(r"zone=maintcast_requests:\w+ rate=(\d+)r/s", site)
    rest = re.search(r"limit_req zone=maintcast_requests burst=(\d+)", site)
    assert conn
    assert opens
    assert burst
    assert rate
    assert rest
    row = f"{conn[1]} open; new ones {opens[1]}/s after a burst of {burst[1]}"
    assert row in text, row
    assert f"{rate[1]}/s after a burst of {rest[1]}" in text
    assert f"`Retry-After: {RETRY_AFTER_S}`" in text
