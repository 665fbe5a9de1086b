"""Table tests for the pure decisions of extend, end and notes (broadcaster.window_ops):
by role past ``latest_end``, on windows completed or cancelled (409), and what each stores."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from broadcaster import ops, window_ops
from broadcaster.domain import Catalog, Conflict, InvalidInput, Window
from broadcaster.validation import build_window
from tests.support import DEFAULTS, jst

CAT = Catalog.model_validate({"services": {"webcollect": {"methods": {"credit_card": {}}}}})
BEFORE, DURING, AFTER = jst(2021, 8, 1), jst(2021, 8, 9, 2), jst(2021, 8, 9, 8)
MAX_S = DEFAULTS.max_window_s


def window(**patch: Any) -> Window:
    raw = {
        "id": "w1",
        "title": {"ja": "メンテナンス"},
        "starts_at": "2021-08-09T01:00:00+09:00",
        "ends_at": "2021-08-09T03:30:00+09:00",
        "latest_end": "2021-08-09T04:30:00+09:00",
        "announce_at": "2021-05-14T10:00:00+09:00",
        "affected": {"webcollect": ["*"]},
        **patch,
    }
    return build_window(
        {k: v for k, v in raw.items() if v is not None},
        catalog=CAT,
        defaults=DEFAULTS,
        now=BEFORE,
    )


W = window()
NO_RESERVE = window(latest_end=None)
CANCELLED = W.model_copy(update={"cancelled": True})


def extend(w: Window, body: Any, *, admin: bool = False, now: datetime = DURING) -> Window:
    change = window_ops.extend_window(
        w, body, now=now, actor="ops", may_pass_reserve=admin, max_window_s=MAX_S
    )
    assert change.cause.type == "maintenance.extended"
    assert (change.cause.window_id, change.cause.actor) == ("w1", "ops")
    return change.window


@pytest.mark.parametrize(
    ("w", "body", "admin", "ends_at", "latest_end"),
    [
        # within the reserve: the operator role suffices, latest_end stays
        (W, {"by_s": 1800}, False, jst(2021, 8, 9, 4), jst(2021, 8, 9, 4, 30)),
        (W, {"ends_at": "2021-08-09T04:30:00+09:00"}, False, jst(2021, 8, 9, 4, 30), None),
        (W, {"ends_at": "2021-08-09T04:00"}, False, jst(2021, 8, 9, 4), None),  # window zone
        # past it: admin only, and the reserve moves to the new end
        (W, {"by_s": 3601}, True, jst(2021, 8, 9, 4, 30, 1), jst(2021, 8, 9, 4, 30, 1)),
        (W, {"by_s": 0.5}, False, jst(2021, 8, 9, 3, 30) + timedelta(milliseconds=500), None),
        # without a reserve only admin extends; latest_end stays unset
        (NO_RESERVE, {"by_s": 60}, True, jst(2021, 8, 9, 3, 31), "none"),
    ],
)
def test_extend(
    w: Window, body: Any, admin: bool, ends_at: datetime, latest_end: datetime | str | None
) -> None:
    new = extend(w, {**body, "reason": "overrun"}, admin=admin)
    assert new.ends_at == ends_at
    if latest_end == "none":
        assert new.latest_end is None
    else:
        assert new.latest_end == (latest_end or w.latest_end)
    h = new.history[-1]
    assert (h.change, h.actor, h.reason, h.at) == ("extended", "ops", "overrun", DURING)
    assert h.from_ is not None
    assert h.to is not None
    assert (h.from_.ends_at, h.to.ends_at, h.to.starts_at) == (w.ends_at, ends_at, w.starts_at)


def test_extend_a_scheduled_window() -> None:
    assert extend(W, {"by_s": 600}, now=BEFORE).ends_at == jst(2021, 8, 9, 3, 40)


@pytest.mark.parametrize(
    ("w", "body", "field"),
    [
        (W, {"by_s": 3600.001}, "by_s"),
        (W, {"ends_at": "2021-08-09T04:30:00.001+09:00"}, "ends_at"),
        (NO_RESERVE, {"by_s": 1}, "by_s"),
    ],
)
def test_extend_past_the_reserve_needs_admin(w: Window, body: Any, field: str) -> None:
    with pytest.raises(window_ops.BeyondReserve) as info:
        extend(w, body)
    assert info.value.field == field
    assert "admin" in info.value.message
    assert "latest_end" in info.value.message
    assert isinstance(info.value, PermissionError)  # auth.Forbidden: answered 403


@pytest.mark.parametrize(
    ("body", "field", "named"),
    [
        ({}, "ends_at", "exactly one"),
        ({"reason": "x"}, "ends_at", "exactly one"),
        ({"ends_at": "2021-08-09T05:00:00+09:00", "by_s": 60}, "by_s", "exactly one"),
        ({"ends_at": "2021-08-09T03:30:00+09:00"}, "ends_at", "not later"),
        ({"ends_at": "2021-08-09T03:29:59.999+09:00"}, "ends_at", "not later"),
        ({"ends_at": "soon"}, "ends_at", "'soon'"),
        ({"by_s": 0}, "by_s", "> 0"),
        ({"by_s": -60}, "by_s", "> 0"),
        ({"by_s": "60"}, "by_s", "'60'"),
        ({"by_s": True}, "by_s", "True"),
        ({"by_s": 10**12}, "by_s", "> 0"),
        ({"by_s": 7 * 86_400}, "by_s", "MAINTCAST_MAX_WINDOW_S"),
        ({"by_s": 60, "reason": 5}, "reason", "text"),
        ({"by_s": 60, "until": "x"}, "until", "unknown field"),
        ([], "body", "object"),
    ],
)
def test_extend_rejects(body: Any, field: str, named: str) -> None:
    with pytest.raises(InvalidInput) as info:
        extend(W, body, admin=True)
    assert info.value.field == field
    assert named in info.value.message


def test_end_now() -> None:
    change = window_ops.end_window(W, {"reason": "done early"}, now=DURING, actor="ops")
    assert (change.cause.type, change.cause.reason) == ("maintenance.ended", "done early")
    new = change.window
    assert new.ends_at == DURING
    assert new.latest_end == W.latest_end
    h = new.history[-1]
    assert h.change == "ended_early"
    assert h.to is not None
    assert h.to.ends_at == DURING
    assert window_ops.end_window(W, {}, now=DURING, actor="ops").cause.reason is None


def test_note() -> None:
    change = window_ops.add_note(
        W, {"message": {"ja": "順調です", "en": "On track"}}, now=DURING, actor="ops"
    )
    assert (change.cause.type, change.cause.window_id) == ("maintenance.note", "w1")
    (note,) = change.window.notes
    assert (note.at, note.actor, note.message.en) == (DURING, "ops", "On track")
    assert change.window.history == W.history
    assert change.cause.reason is None
    why = window_ops.add_note(W, {"message": {"en": "x"}, "reason": "r"}, now=DURING, actor="o")
    assert why.cause.reason == "r"
    again = window_ops.add_note(change.window, {"message": {"en": "2"}}, now=DURING, actor="x")
    assert [n.message.en for n in again.window.notes] == ["On track", "2"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "message"),
        ({"message": {}}, "message"),
        ({"message": {"ja": "  "}}, "message"),
        ({"message": "text"}, "message"),
        ({"message": {"fr": "x"}}, "message.fr"),
        ({"message": {"en": "x" * 4001}}, "message.en"),
        ({"message": {"en": "x"}, "reason": 5}, "reason"),
        ({"message": {"en": "x"}, "at": "now"}, "at"),
    ],
)
def test_note_rejects(body: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        window_ops.add_note(W, body, now=DURING, actor="ops")
    assert info.value.field == field


def test_notes_are_bounded() -> None:
    w = W
    for i in range(100):
        w = window_ops.add_note(w, {"message": {"en": str(i)}}, now=DURING, actor="o").window
    with pytest.raises(Conflict) as info:
        window_ops.add_note(w, {"message": {"en": "one more"}}, now=DURING, actor="o")
    assert info.value.field == "notes"


def _extend(w: Window, now: datetime) -> object:
    return window_ops.extend_window(
        w, {"by_s": 60}, now=now, actor="o", may_pass_reserve=True, max_window_s=MAX_S
    )


def _end(w: Window, now: datetime) -> object:
    return window_ops.end_window(w, {}, now=now, actor="o")


def _note(w: Window, now: datetime) -> object:
    return window_ops.add_note(w, {"message": {"en": "x"}}, now=now, actor="o")


@pytest.mark.parametrize("act", [_extend, _end, _note])
@pytest.mark.parametrize(
    ("w", "now", "state"), [(W, AFTER, "completed"), (CANCELLED, DURING, "cancelled")]
)
def test_closed_windows_conflict(act: Any, w: Window, now: datetime, state: str) -> None:
    with pytest.raises(Conflict) as info:
        act(w, now)
    assert info.value.field == "status"
    assert state in info.value.message


def test_end_of_a_scheduled_window_conflicts() -> None:
    with pytest.raises(Conflict) as info:
        _end(W, BEFORE)
    assert "scheduled" in info.value.message
    assert "in progress" in info.value.message


def test_the_end_instant_is_completed() -> None:
    """Half-open: at ``ends_at`` the window is completed, no longer extendable."""
    with pytest.raises(Conflict):
        _extend(W, W.ends_at)
    assert _extend(W, W.ends_at - timedelta(milliseconds=1)) is not None


@pytest.mark.parametrize(
    ("patch", "ends_at", "latest_end"),
    [
        # the reserve keeps its length when a patch moves the end or the whole window
        ({"ends_at": "2021-08-09T04:00:00+09:00"}, jst(2021, 8, 9, 4), jst(2021, 8, 9, 5)),
        (
            {"starts_at": "2021-08-10T01:00:00+09:00", "ends_at": "2021-08-10T03:30:00+09:00"},
            jst(2021, 8, 10, 3, 30),
            jst(2021, 8, 10, 4, 30),
        ),
        # a latest_end in the patch is taken as given
        (
            {"ends_at": "2021-08-09T04:00:00+09:00", "latest_end": "2021-08-09T04:00:00+09:00"},
            jst(2021, 8, 9, 4),
            jst(2021, 8, 9, 4),
        ),
        ({"latest_end": None}, jst(2021, 8, 9, 3, 30), None),
    ],
)
def test_patch_moves_the_reserve(
    patch: dict[str, Any], ends_at: datetime, latest_end: datetime | None
) -> None:
    new = ops.patch_window(W, patch, catalog=CAT, defaults=DEFAULTS, now=BEFORE, actor="a")
    assert (new.window.ends_at, new.window.latest_end) == (ends_at, latest_end)
