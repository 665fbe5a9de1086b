"""Pure parts of notifications: the view of a status within a subscription's scope, the
retry schedule, secrets and their rotation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from broadcaster import codec
from broadcaster.notify.messages import after_failure, parse_retry_s
from broadcaster.notify.subscriptions import (
    ROTATION_OVERLAP_S,
    Secret,
    Subscription,
    new_secret,
    rotated,
)
from broadcaster.status import compute_status
from broadcaster.validation import parse_schedule
from tests.support import DEFAULTS, EXAMPLE, jst

DURING = jst(2021, 8, 9, 2)


def example_status(now: datetime) -> tuple[Any, codec.Doc]:
    """The catalog and the full status of the example at ``now``."""
    schedule = parse_schedule(
        EXAMPLE.read_text(encoding="utf-8"), source="example", defaults=DEFAULTS, now=now
    )
    core = compute_status(
        schedule.catalog, schedule.windows, None, now, default_error_code="Z010000000"
    )
    doc = codec.status_doc(core, seq=3, now=now, cause=None, zone="Asia/Tokyo")
    return schedule.catalog, doc


def view(doc: codec.Doc, catalog: Any, within: set[tuple[str, str]]) -> codec.Doc:
    return codec.view_doc(
        doc,
        catalog,
        service=None,
        method=None,
        default_error_code="Z010000000",
        zone="Asia/Tokyo",
        within=frozenset(within),
    )


def test_a_view_within_components_is_down_if_any_of_them_is() -> None:
    catalog, doc = example_status(DURING)
    mixed = view(doc, catalog, {("atobarai", "bank_transfer"), ("webcollect", "credit_card")})
    assert mixed["state"] == "maintenance"
    assert mixed["until"] == "2021-08-09T06:00:00+09:00"
    assert mixed["components"] == {
        "webcollect": {"credit_card": "under_maintenance"},
        "atobarai": {"bank_transfer": "operational"},
    }
    assert [w["id"] for w in mixed["active"]] == ["webcollect-2021-08"]
    assert mixed["seq"] == 3
    assert mixed["error_code"] == "Z010000000"


def test_a_view_the_window_leaves_up_is_normal_and_shows_no_window() -> None:
    catalog, doc = example_status(DURING)
    bank = view(doc, catalog, {("atobarai", "bank_transfer")})
    assert bank["state"] == "normal"
    assert bank["until"] is None
    assert bank["active"] == []
    assert bank["components"] == {"atobarai": {"bank_transfer": "operational"}}
    before = view(example_status(jst(2021, 8, 1))[1], catalog, {("atobarai", "bank_transfer")})
    assert before["upcoming"] == []


def test_a_view_within_one_service_equals_the_service_scope() -> None:
    catalog, doc = example_status(DURING)
    everything_of = frozenset(("atobarai", m) for m in catalog.services["atobarai"].methods)
    scoped = codec.view_doc(
        doc,
        catalog,
        service="atobarai",
        method=None,
        default_error_code="Z010000000",
        zone="Asia/Tokyo",
    )
    assert view(doc, catalog, set(everything_of)) == scoped


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5,300,1800,7200,18000,36000,36000", (5, 300, 1800, 7200, 18000, 36000, 36000)),
        (" 0.2 , 1", (0.2, 1.0)),
        ("0", (0.0,)),
    ],
)
def test_retry_schedule_parses(text: str, expected: tuple[float, ...]) -> None:
    assert parse_retry_s(text) == expected


@pytest.mark.parametrize("text", ["", ",", "5,x", "-1", "nan", "inf", "1e9", ",".join(["1"] * 21)])
def test_bad_retry_schedules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"seconds"):
        parse_retry_s(text)


def test_after_failure_walks_the_schedule_then_gives_up() -> None:
    schedule = (5.0, 300.0, 1800.0)
    assert [after_failure(n, schedule) for n in (1, 2, 3, 4, 9)] == [5, 300, 1800, None, None]


def sub(**kw: Any) -> Subscription:
    return Subscription(
        id="acme",
        kind="webhook",
        url="https://x.example/h",
        created_at=jst(2021, 6, 1),
        created_seq=0,
        actor="boss",
        **kw,
    )


def test_rotation_keeps_one_previous_secret_for_a_day() -> None:
    first = new_secret()
    s1, second = rotated(sub(secrets=(Secret(value=first),)), 1000.0)
    assert s1.signing_secrets(1000.0) == [second, first]
    assert s1.signing_secrets(1000.0 + ROTATION_OVERLAP_S) == [second]
    s2, third = rotated(s1, 2000.0)
    assert s2.signing_secrets(2000.0) == [third, second]
    assert len({first, second, third}) == 3


@pytest.mark.parametrize(
    ("events", "event_type", "wanted"),
    [
        (("*",), "maintenance.started", True),
        (("*",), "reconciled", True),
        (("*",), "resync", False),
        (("*",), "preview", False),
        (("maintenance.*",), "override.set", False),
        (("maintenance.*", "override.set"), "override.set", True),
        (("maintenance.st*",), "maintenance.started", True),
        (("maintenance.st*",), "maintenance.ended", False),
    ],
)
def test_event_globs(events: tuple[str, ...], event_type: str, wanted: bool) -> None:
    assert sub(events=events).wants(event_type) is wanted
