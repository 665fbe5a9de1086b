"""Table tests of drain and reserve in the one status computation (broadcaster.status), at
the millisecond edges: component and view states, ``until``, ``error_code``, boundaries,
the time-driven cause, views computed from the full status, and the gate's decision."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from broadcaster import codec
from broadcaster.domain import Catalog, Override, Window
from broadcaster.hub import expected_change_at
from broadcaster.refusal import Rule, refusal_for
from broadcaster.status import (
    StatusCore,
    boundaries_after,
    compute_status,
    in_drain,
    time_driven_cause,
)
from broadcaster.validation import build_window
from tests.support import DEFAULTS, jst

MS = timedelta(milliseconds=1)
ZONE = "Asia/Tokyo"
CAT = Catalog.model_validate(
    {
        "services": {
            "webcollect": {"methods": {"credit_card": {}, "cvs_online": {}}},
            "atobarai": {"methods": {"au_easy": {}}},
        }
    }
)


def window(wid: str = "a", **fields: Any) -> Window:
    """A window 01:00-03:30 JST on 2021-08-09, reserve to 04:30, 10 min drain, on webcollect."""
    raw = {
        "id": wid,
        "title": {"en": wid},
        "starts_at": "2021-08-09T01:00:00+09:00",
        "ends_at": "2021-08-09T03:30:00+09:00",
        "latest_end": "2021-08-09T04:30:00+09:00",
        "drain_s": 600,
        "announce_at": "2021-08-01T00:00:00+09:00",
        "affected": {"webcollect": ["*"]},
        "error_code": f"E-{wid}",
        **fields,
    }
    clean = {k: v for k, v in raw.items() if v is not None}
    return build_window(clean, catalog=CAT, defaults=DEFAULTS, now=jst(2021, 7, 1))


A = window()
DRAIN, START, END = jst(2021, 8, 9, 0, 50), jst(2021, 8, 9, 1), jst(2021, 8, 9, 3, 30)


def status(
    windows: list[Window],
    now: datetime,
    override: Override | None = None,
    service: str | None = None,
    method: str | None = None,
) -> StatusCore:
    return compute_status(
        CAT, windows, override, now, default_error_code="Z0", service=service, method=method
    )


@pytest.mark.parametrize(
    ("now", "state", "card", "au", "until", "error_code", "draining"),
    [
        (DRAIN - MS, "normal", "operational", "operational", None, None, []),
        (DRAIN, "draining", "draining", "operational", END, "E-a", ["a"]),
        (START - MS, "draining", "draining", "operational", END, "E-a", ["a"]),
        (START, "maintenance", "under_maintenance", "operational", END, "E-a", []),
        (END - MS, "maintenance", "under_maintenance", "operational", END, "E-a", []),
        # the reserve is not maintenance: the window ends at ends_at
        (END, "normal", "operational", "operational", None, None, []),
        (jst(2021, 8, 9, 4, 29), "normal", "operational", "operational", None, None, []),
    ],
)
def test_drain_and_reserve_at_the_edges(
    now: datetime,
    state: str,
    card: str,
    au: str,
    until: datetime | None,
    error_code: str | None,
    draining: list[str],
) -> None:
    core = status([A], now)
    assert core.state == state
    assert core.components["webcollect"] == {"credit_card": card, "cvs_online": card}
    assert core.components["atobarai"] == {"au_easy": au}
    assert (core.until, core.error_code) == (until, error_code)
    assert [w.id for w in core.draining] == draining
    if state == "draining":  # the window draining is still upcoming, not active
        assert [w.id for w in core.upcoming] == ["a"]
        assert core.active == ()


@pytest.mark.parametrize(
    ("service", "method", "state"),
    [
        ("webcollect", None, "draining"),
        ("webcollect", "credit_card", "draining"),
        ("atobarai", None, "normal"),
        ("atobarai", "au_easy", "normal"),
    ],
)
def test_views_while_draining(service: str, method: str | None, state: str) -> None:
    core = status([A], DRAIN, service=service, method=method)
    assert core.state == state
    assert core.until == (END if state == "draining" else None)
    # the same view computed from the published full status (every process does this)
    full = codec.status_doc(status([A], DRAIN), seq=3, now=DRAIN, cause=None, zone=ZONE)
    view = codec.view_doc(
        full, CAT, service=service, method=method, default_error_code="Z0", zone=ZONE
    )
    assert view["state"] == state
    assert view == codec.status_doc(core, seq=3, now=DRAIN, cause=None, zone=ZONE) | {
        "as_of": full["as_of"]
    }


def test_no_drain_means_no_draining_state() -> None:
    w = window(drain_s=0)
    assert status([w], START - MS).state == "normal"
    assert w.drain_starts_at == START


def test_a_drain_never_starts_before_the_announcement() -> None:
    w = window(announce_at="2021-08-09T00:55:00+09:00")
    assert status([w], jst(2021, 8, 9, 0, 55) - MS).state == "normal"
    assert status([w], jst(2021, 8, 9, 0, 55)).state == "draining"


def test_a_cancelled_window_does_not_drain() -> None:
    w = A.model_copy(update={"cancelled": True})
    assert status([w], DRAIN).state == "normal"
    assert not in_drain(w, DRAIN)


def test_maintenance_beats_draining_and_until_chains_through_the_drain() -> None:
    """B holds credit_card down 00:00-00:55 while A drains from 00:50: credit_card is
    under maintenance, cvs_online drains; the view is normal only once A has ended."""
    b = window(
        "b",
        starts_at="2021-08-09T00:00:00+09:00",
        ends_at="2021-08-09T00:55:00+09:00",
        latest_end=None,
        drain_s=0,
        affected={"webcollect": ["credit_card"]},
    )
    core = status([A, b], jst(2021, 8, 9, 0, 52))
    assert core.state == "maintenance"
    assert core.components["webcollect"] == {
        "credit_card": "under_maintenance",
        "cvs_online": "draining",
    }
    assert (core.until, core.error_code) == (END, "E-b")
    after_b = status([A, b], jst(2021, 8, 9, 0, 55))
    assert (after_b.state, after_b.until, after_b.error_code) == ("draining", END, "E-a")


def ov(mode: str, affected: dict[str, tuple[str, ...]] | None = None) -> Override:
    return Override.model_validate(
        {"mode": mode, "affected": affected, "reason": "r", "set_at": jst(2021, 8, 9)}
    )


def test_an_override_normal_stops_the_drain() -> None:
    assert status([A], DRAIN, ov("normal")).state == "normal"
    part = status([A], DRAIN, ov("normal", {"webcollect": ("credit_card",)}))
    assert part.components["webcollect"] == {"credit_card": "operational", "cvs_online": "draining"}


def test_an_override_maintenance_beats_the_drain() -> None:
    core = status([A], DRAIN, ov("maintenance", {"webcollect": ("credit_card",)}))
    assert core.state == "maintenance"
    assert core.components["webcollect"]["cvs_online"] == "draining"
    assert core.until is None  # an override without expiry holds maintenance


@pytest.mark.parametrize(
    ("windows", "now", "expected"),
    [
        ([A], jst(2021, 8, 1), [DRAIN, START, END]),
        ([A], DRAIN - MS, [DRAIN, START, END]),
        ([A], DRAIN, [START, END]),
        ([window(drain_s=0)], jst(2021, 8, 1), [START, END]),
        # the drain starts at the announcement, so both are one boundary
        (
            [window(announce_at="2021-08-09T00:55:00+09:00")],
            jst(2021, 8, 1),
            [jst(2021, 8, 9, 0, 55), START, END],
        ),
        ([A.model_copy(update={"cancelled": True})], jst(2021, 8, 1), []),
    ],
)
def test_boundaries_include_drain_starts(
    windows: list[Window], now: datetime, expected: list[datetime]
) -> None:
    assert boundaries_after(windows, None, now) == expected


B = window(
    "b", starts_at="2021-08-09T03:40:00+09:00", ends_at="2021-08-09T04:00:00+09:00", latest_end=None
)  # drains from 03:30, as A ends
TD = {w.id: w for w in (A, B)}


@pytest.mark.parametrize(
    ("before", "now", "type_", "window_id"),
    [
        (DRAIN - MS, DRAIN, "maintenance.draining", "a"),
        (DRAIN - MS, DRAIN + 5000 * MS, "maintenance.draining", "a"),
        (DRAIN - MS, DRAIN + 5001 * MS, "reconciled", "a"),
        (START - MS, START, "maintenance.started", "a"),
        # A ends as B's drain starts: one event, typed after what starts
        (END - MS, END, "maintenance.draining", "b"),
        (jst(2021, 8, 9, 3, 40) - MS, jst(2021, 8, 9, 3, 40), "maintenance.started", "b"),
        (jst(2021, 8, 9, 4) - MS, jst(2021, 8, 9, 4), "maintenance.ended", "b"),
    ],
)
def test_time_driven_cause_of_a_drain(
    before: datetime, now: datetime, type_: str, window_id: str
) -> None:
    old_doc = codec.status_doc(status([A, B], before), seq=1, now=before, cause=None, zone=ZONE)
    old = codec.summary_of(old_doc)
    cause = time_driven_cause(old, status([A, B], now), TD, now, 5.0)
    assert (cause.type, cause.window_id) == (type_, window_id)


def test_summary_of_reads_the_drain_back() -> None:
    doc = codec.status_doc(status([A], DRAIN), seq=1, now=DRAIN, cause=None, zone=ZONE)
    assert codec.summary_of(doc).draining == {"a"}
    doc = codec.status_doc(status([A], DRAIN - MS), seq=1, now=DRAIN - MS, cause=None, zone=ZONE)
    assert codec.summary_of(doc).draining == frozenset()


def view(now: datetime, service: str = "webcollect") -> codec.Doc:
    return codec.status_doc(
        status([A], now, service=service), seq=1, now=now, cause=None, zone=ZONE
    )


CARD = Rule("/api/token", "webcollect", "credit_card", on_drain=True)
CAPTURE = Rule("/api/capture", "webcollect", "credit_card")


@pytest.mark.parametrize(
    ("now", "rule", "refused", "retry_after"),
    [
        (DRAIN - MS, CARD, False, None),
        (DRAIN, CARD, True, 9600),  # to the window's end: 2 h 40 min
        (START - MS, CARD, True, 9001),
        (DRAIN, CAPTURE, False, None),  # payments under way finish
        (START - MS, CAPTURE, False, None),
        (START, CAPTURE, True, 9000),
        (START, CARD, True, 9000),
        (END, CARD, False, None),
    ],
)
def test_the_gate_refuses_on_drain_rules_only(
    now: datetime, rule: Rule, refused: bool, retry_after: int | None
) -> None:
    got = refusal_for(view(now), rule, "ja", now, 0)
    assert (got is not None) == refused
    if got is not None:
        assert got.retry_after_s == retry_after
        assert (got.until, got.latest_end) == (
            "2021-08-09T03:30:00+09:00",
            "2021-08-09T04:30:00+09:00",
        )
        assert got.error_code == "E-a"


def test_latest_end_of_a_chain_without_reserve_is_null() -> None:
    w = window(latest_end=None)
    doc = codec.status_doc(status([w], START), seq=1, now=START, cause=None, zone=ZONE)
    got = refusal_for(doc, CARD, "en", START, 0)
    assert got is not None
    assert got.latest_end is None
    assert got.until is not None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (DRAIN - MS, DRAIN),  # the drain start is the next change
        (DRAIN, START),  # once draining, the start (a drain begun is no change to come)
        (START, END),
    ],
)
def test_an_overdue_drain_start_is_noticed(now: datetime, expected: datetime) -> None:
    doc = codec.status_doc(status([A], now), seq=1, now=now, cause=None, zone=ZONE)
    assert expected_change_at(doc) == expected
