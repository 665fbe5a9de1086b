"""Table tests for broadcaster.domain (pure: no I/O besides reading the example, no sleeps).

Every test is a table of (input, now, expected) at fixed instants (CONVENTIONS.md "Tests").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest

from broadcaster import codec
from broadcaster.domain import (
    Catalog,
    FieldError,
    InvalidInput,
    NotFound,
    Override,
    Window,
    is_public,
    lifecycle,
)
from broadcaster.status import (
    StatusCore,
    Summary,
    boundaries_after,
    compute_status,
    time_driven_cause,
)
from broadcaster.validation import build_window, parse_schedule
from tests.support import DEFAULTS, EXAMPLE, jst

MS = timedelta(milliseconds=1)
US = timedelta(microseconds=1)
ZONE = "Asia/Tokyo"
WID = "webcollect-2021-08"

# -- the 2021 notice ------------------------------------------------------------------------

BEFORE = jst(2021, 8, 9, 0, 59, 59) + 999 * MS
START = jst(2021, 8, 9, 1)
LAST = jst(2021, 8, 9, 5, 59, 59) + 999 * MS
END = jst(2021, 8, 9, 6)
INSTANTS = {"00:59:59.999": BEFORE, "01:00:00": START, "05:59:59.999": LAST, "06:00:00": END}
IN_WINDOW = {"01:00:00", "05:59:59.999"}

_EXAMPLE = parse_schedule(
    EXAMPLE.read_text(encoding="utf-8"),
    source=str(EXAMPLE),
    defaults=DEFAULTS,
    now=jst(2021, 5, 1),
)
EX_CATALOG = _EXAMPLE.catalog
EX_WINDOWS = _EXAMPLE.windows

# (service, method) -> affected by the 2021 window? (the notice: all of webcollect; atobarai
# except au_easy and bank_transfer)
EX_COMPONENTS = [
    ("webcollect", "credit_card", True),
    ("webcollect", "cvs_online", True),
    ("webcollect", "carrier", True),
    ("webcollect", "kuroneko_pay", True),
    ("atobarai", "credit_card", True),
    ("atobarai", "cvs_online", True),
    ("atobarai", "au_easy", False),
    ("atobarai", "bank_transfer", False),
    ("atobarai", "kuroneko_pay", True),
]


def example_status(
    now: datetime,
    service: str | None = None,
    method: str | None = None,
) -> StatusCore:
    return compute_status(
        EX_CATALOG,
        EX_WINDOWS,
        None,
        now,
        default_error_code=DEFAULTS.error_code,
        service=service,
        method=method,
    )


def ids(windows: tuple[Window, ...]) -> list[str]:
    return [w.id for w in windows]


@pytest.mark.parametrize(
    ("label", "service", "method", "affected"),
    [(label, s, m, a) for label in INSTANTS for s, m, a in EX_COMPONENTS],
)
def test_example_component_by_component(
    label: str,
    service: str,
    method: str,
    affected: bool,
) -> None:
    core = example_status(INSTANTS[label])
    down = affected and label in IN_WINDOW
    assert core.components[service][method] == ("under_maintenance" if down else "operational")


@pytest.mark.parametrize(
    ("label", "state", "until", "error_code", "active", "upcoming", "life"),
    [
        ("00:59:59.999", "normal", None, None, [], [WID], "scheduled"),
        ("01:00:00", "maintenance", END, "Z010000000", [WID], [], "in_progress"),
        ("05:59:59.999", "maintenance", END, "Z010000000", [WID], [], "in_progress"),
        ("06:00:00", "normal", None, None, [], [], "completed"),
    ],
)
def test_example_status(
    label: str,
    state: str,
    until: datetime | None,
    error_code: str | None,
    active: list[str],
    upcoming: list[str],
    life: str,
) -> None:
    now = INSTANTS[label]
    core = example_status(now)
    assert core.state == state
    assert core.until == until
    assert core.error_code == error_code
    assert ids(core.active) == active
    assert ids(core.upcoming) == upcoming
    assert core.override is None
    (window,) = EX_WINDOWS
    assert lifecycle(window, now) == life
    # every catalog component is present, in catalog order
    assert [(s, m) for s, ms in core.components.items() for m in ms] == [
        (s, m) for s, m, _ in EX_COMPONENTS
    ]


@pytest.mark.parametrize("label", list(INSTANTS))
def test_example_bank_transfer_scope_stays_normal(label: str) -> None:
    core = example_status(INSTANTS[label], "atobarai", "bank_transfer")
    assert core.components == {"atobarai": {"bank_transfer": "operational"}}
    assert (core.state, core.until, core.error_code) == ("normal", None, None)
    # the window does not name bank_transfer, so it is neither active nor upcoming here
    assert (core.active, core.upcoming) == ((), ())


@pytest.mark.parametrize(
    ("service", "method", "now", "state", "components", "active"),
    [
        (
            "webcollect",
            None,
            START,
            "maintenance",
            {
                "webcollect": dict.fromkeys(
                    ["credit_card", "cvs_online", "carrier", "kuroneko_pay"], "under_maintenance"
                )
            },
            [WID],
        ),
        (
            "atobarai",
            None,
            START,
            "maintenance",
            {
                "atobarai": {
                    "credit_card": "under_maintenance",
                    "cvs_online": "under_maintenance",
                    "au_easy": "operational",
                    "bank_transfer": "operational",
                    "kuroneko_pay": "under_maintenance",
                }
            },
            [WID],
        ),
        ("atobarai", "au_easy", START, "normal", {"atobarai": {"au_easy": "operational"}}, []),
        (
            "atobarai",
            "kuroneko_pay",
            LAST,
            "maintenance",
            {"atobarai": {"kuroneko_pay": "under_maintenance"}},
            [WID],
        ),
        (
            "webcollect",
            "carrier",
            LAST,
            "maintenance",
            {"webcollect": {"carrier": "under_maintenance"}},
            [WID],
        ),
        (
            "webcollect",
            None,
            END,
            "normal",
            {
                "webcollect": dict.fromkeys(
                    ["credit_card", "cvs_online", "carrier", "kuroneko_pay"], "operational"
                )
            },
            [],
        ),
        (
            "atobarai",
            None,
            BEFORE,
            "normal",
            {
                "atobarai": dict.fromkeys(
                    ["credit_card", "cvs_online", "au_easy", "bank_transfer", "kuroneko_pay"],
                    "operational",
                )
            },
            [],
        ),
    ],
)
def test_example_scoped(
    service: str,
    method: str | None,
    now: datetime,
    state: str,
    components: dict[str, dict[str, str]],
    active: list[str],
) -> None:
    core = example_status(now, service, method)
    assert core.state == state
    assert core.components == components
    assert ids(core.active) == active
    assert core.until == (END if state == "maintenance" else None)
    assert core.error_code == ("Z010000000" if state == "maintenance" else None)


@pytest.mark.parametrize(
    ("service", "method", "error", "field", "named"),
    [
        ("nosuch", None, NotFound, "service", "'nosuch'"),
        ("nosuch", "credit_card", NotFound, "service", "'nosuch'"),
        ("webcollect", "au_easy", NotFound, "method", "'au_easy'"),  # au_easy is atobarai's
        ("atobarai", "carrier", NotFound, "method", "'carrier'"),
        (None, "credit_card", InvalidInput, "method", "needs service"),
    ],
)
def test_unknown_scope(
    service: str | None,
    method: str | None,
    error: type[FieldError],
    field: str,
    named: str,
) -> None:
    with pytest.raises(error) as info:
        example_status(START, service, method)
    assert info.value.field == field
    assert named in info.value.message


# -- a small catalog for hand-made schedules --------------------------------------------------

CAT = Catalog.model_validate(
    {
        "services": {
            "webcollect": {"methods": {"credit_card": {}, "cvs_online": {}}},
            "atobarai": {"methods": {"credit_card": {}, "bank_transfer": {}}},
        }
    }
)
EVERYTHING = {"webcollect": ["*"], "atobarai": ["*"]}
WC = {"webcollect": ["*"]}
AT = {"atobarai": ["*"]}
DEFAULT_CODE = "ZDEFAULT00"


def t(hour: int, minute: int = 0, second: int = 0) -> datetime:
    """An instant on 2021-08-09 JST."""
    return jst(2021, 8, 9, hour, minute, second)


def win(
    wid: str,
    start: datetime,
    end: datetime,
    affected: Mapping[str, list[str]] | None = None,
    *,
    announce: datetime | None = None,
    cancelled: bool = False,
    error_code: str | None = None,
) -> Window:
    raw: dict[str, Any] = {
        "id": wid,
        "title": {"en": wid},
        "starts_at": start.isoformat(),
        "ends_at": end.isoformat(),
        "affected": dict(affected or WC),
        "announce_at": (announce or jst(2021, 8, 1)).isoformat(),
    }
    if error_code:
        raw["error_code"] = error_code
    if cancelled:
        raw["status"] = "cancelled"
    return build_window(
        raw, catalog=CAT, defaults=DEFAULTS, now=jst(2021, 7, 1), from_file=cancelled
    )


def ov(
    mode: str,
    expires: datetime | None = None,
    affected: dict[str, tuple[str, ...]] | None = None,
) -> Override:
    return Override(
        mode=mode,
        affected=affected,
        reason="incident 42",
        actor="ops",
        set_at=jst(2021, 8, 9, 0),
        expires_at=expires,
    )


def status(
    windows: list[Window],
    now: datetime,
    override: Override | None = None,
    service: str | None = None,
    method: str | None = None,
) -> StatusCore:
    return compute_status(
        CAT, windows, override, now, default_error_code=DEFAULT_CODE, service=service, method=method
    )


def wc_card(core: StatusCore) -> str:
    return core.components["webcollect"]["credit_card"]


# -- overlapping and back-to-back windows ---------------------------------------------------

BACK_TO_BACK = [win("a", t(1), t(3)), win("b", t(3), t(5))]
OVERLAPPING = [win("a", t(1), t(4)), win("b", t(2), t(5))]
CHAIN3 = [win("a", t(1), t(3)), win("b", t(3), t(4)), win("c", t(3, 30), t(6))]
GAP = [win("a", t(1), t(3)), win("b", t(3, 0, 1), t(5))]
NESTED = [win("a", t(1), t(6)), win("b", t(2), t(3))]


@pytest.mark.parametrize(
    ("windows", "now", "card", "until", "active", "upcoming"),
    [
        (BACK_TO_BACK, t(1) - US, "operational", None, [], ["a", "b"]),
        (BACK_TO_BACK, t(1), "under_maintenance", t(5), ["a"], ["b"]),
        (BACK_TO_BACK, t(3) - US, "under_maintenance", t(5), ["a"], ["b"]),
        # the shared boundary: a has ended (half-open), b has started; no normal blip
        (BACK_TO_BACK, t(3), "under_maintenance", t(5), ["b"], []),
        (BACK_TO_BACK, t(5) - US, "under_maintenance", t(5), ["b"], []),
        (BACK_TO_BACK, t(5), "operational", None, [], []),
        (OVERLAPPING, t(1, 30), "under_maintenance", t(5), ["a"], ["b"]),
        (OVERLAPPING, t(2), "under_maintenance", t(5), ["a", "b"], []),
        (OVERLAPPING, t(4), "under_maintenance", t(5), ["b"], []),
        (OVERLAPPING, t(5), "operational", None, [], []),
        (CHAIN3, t(1), "under_maintenance", t(6), ["a"], ["b", "c"]),
        (CHAIN3, t(3, 45), "under_maintenance", t(6), ["b", "c"], []),
        (NESTED, t(2, 30), "under_maintenance", t(6), ["a", "b"], []),
        (NESTED, t(3), "under_maintenance", t(6), ["a"], []),
        # a one-second gap is a real return to normal: until stops at it
        (GAP, t(1), "under_maintenance", t(3), ["a"], ["b"]),
        (GAP, t(3), "operational", None, [], ["b"]),
        (GAP, t(3, 0, 1), "under_maintenance", t(5), ["b"], []),
    ],
)
def test_overlapping_and_back_to_back(
    windows: list[Window],
    now: datetime,
    card: str,
    until: datetime | None,
    active: list[str],
    upcoming: list[str],
) -> None:
    core = status(windows, now)
    assert wc_card(core) == card
    assert core.state == ("normal" if card == "operational" else "maintenance")
    assert core.until == until
    assert ids(core.active) == active
    assert ids(core.upcoming) == upcoming


@pytest.mark.parametrize(
    ("windows", "now", "service", "state", "until"),
    [
        # a on webcollect then b on atobarai: the whole platform stays in maintenance
        ([win("a", t(1), t(3), WC), win("b", t(3), t(5), AT)], t(2), None, "maintenance", t(5)),
        (
            [win("a", t(1), t(3), WC), win("b", t(3), t(5), AT)],
            t(2),
            "webcollect",
            "maintenance",
            t(3),
        ),
        ([win("a", t(1), t(3), WC), win("b", t(3), t(5), AT)], t(2), "atobarai", "normal", None),
        (
            [win("a", t(1), t(3), WC), win("b", t(3), t(5), AT)],
            t(3),
            "atobarai",
            "maintenance",
            t(5),
        ),
        ([win("a", t(1), t(3), WC), win("b", t(3), t(5), AT)], t(3), "webcollect", "normal", None),
    ],
)
def test_until_is_per_scope(
    windows: list[Window],
    now: datetime,
    service: str | None,
    state: str,
    until: datetime | None,
) -> None:
    core = status(windows, now, service=service)
    assert (core.state, core.until) == (state, until)


@pytest.mark.parametrize(
    ("windows", "now", "error_code"),
    [
        # overlapping windows: the earliest-started active window's code wins
        (
            [win("a", t(1), t(4), error_code="ZA"), win("b", t(2), t(5), error_code="ZB")],
            t(3),
            "ZA",
        ),
        (
            [win("a", t(1), t(4), error_code="ZA"), win("b", t(2), t(5), error_code="ZB")],
            t(4),
            "ZB",
        ),
        ([win("a", t(1), t(4))], t(2), DEFAULTS.error_code),  # the window's default code
    ],
)
def test_error_code_of_earliest_started(
    windows: list[Window],
    now: datetime,
    error_code: str,
) -> None:
    assert status(windows, now).error_code == error_code


def test_error_code_of_scope_skips_windows_outside_it() -> None:
    windows = [win("a", t(1), t(4), WC, error_code="ZA"), win("b", t(2), t(5), AT, error_code="ZB")]
    assert status(windows, t(3)).error_code == "ZA"
    assert status(windows, t(3), service="atobarai").error_code == "ZB"
    assert status(windows, t(3), service="webcollect").error_code == "ZA"


# -- override ------------------------------------------------------------------------------

ONE = [win("a", t(1), t(3))]  # webcollect only


@pytest.mark.parametrize(
    ("windows", "override", "now", "components", "until", "error_code"),
    [
        # maintenance mode beats a normal schedule; no expiry -> until None; the default code
        (
            [],
            ov("maintenance"),
            t(0, 30),
            {
                "webcollect": {
                    "credit_card": "under_maintenance",
                    "cvs_online": "under_maintenance",
                },
                "atobarai": {
                    "credit_card": "under_maintenance",
                    "bank_transfer": "under_maintenance",
                },
            },
            None,
            DEFAULT_CODE,
        ),
        # no expiry holds maintenance: until None even though the window ends
        (
            ONE,
            ov("maintenance"),
            t(2),
            {
                "webcollect": {
                    "credit_card": "under_maintenance",
                    "cvs_online": "under_maintenance",
                },
                "atobarai": {
                    "credit_card": "under_maintenance",
                    "bank_transfer": "under_maintenance",
                },
            },
            None,
            "Z010000000",
        ),
        # expiry alone
        (
            [],
            ov("maintenance", t(0, 45)),
            t(0, 30),
            {
                "webcollect": {
                    "credit_card": "under_maintenance",
                    "cvs_online": "under_maintenance",
                },
                "atobarai": {
                    "credit_card": "under_maintenance",
                    "bank_transfer": "under_maintenance",
                },
            },
            t(0, 45),
            DEFAULT_CODE,
        ),
        # override expires inside a window: until is the window's end
        (
            ONE,
            ov("maintenance", t(2)),
            t(1, 30),
            {
                "webcollect": {
                    "credit_card": "under_maintenance",
                    "cvs_online": "under_maintenance",
                },
                "atobarai": {
                    "credit_card": "under_maintenance",
                    "bank_transfer": "under_maintenance",
                },
            },
            t(3),
            "Z010000000",
        ),
        # override expires after the window: until is the expiry
        (
            ONE,
            ov("maintenance", t(4)),
            t(1, 30),
            {
                "webcollect": {
                    "credit_card": "under_maintenance",
                    "cvs_online": "under_maintenance",
                },
                "atobarai": {
                    "credit_card": "under_maintenance",
                    "bank_transfer": "under_maintenance",
                },
            },
            t(4),
            "Z010000000",
        ),
        # override expires exactly as an announced window starts: chained
        (
            ONE,
            ov("maintenance", t(1)),
            t(0, 30),
            {
                "webcollect": {
                    "credit_card": "under_maintenance",
                    "cvs_online": "under_maintenance",
                },
                "atobarai": {
                    "credit_card": "under_maintenance",
                    "bank_transfer": "under_maintenance",
                },
            },
            t(3),
            DEFAULT_CODE,
        ),
        # normal mode beats an active window
        (
            ONE,
            ov("normal"),
            t(2),
            {
                "webcollect": {"credit_card": "operational", "cvs_online": "operational"},
                "atobarai": {"credit_card": "operational", "bank_transfer": "operational"},
            },
            None,
            None,
        ),
        (
            ONE,
            ov("normal", t(2, 30)),
            t(2),
            {
                "webcollect": {"credit_card": "operational", "cvs_online": "operational"},
                "atobarai": {"credit_card": "operational", "bank_transfer": "operational"},
            },
            None,
            None,
        ),
        # scoped maintenance override: only that component
        (
            [],
            ov("maintenance", None, {"atobarai": ("bank_transfer",)}),
            t(2),
            {
                "webcollect": {"credit_card": "operational", "cvs_online": "operational"},
                "atobarai": {"credit_card": "operational", "bank_transfer": "under_maintenance"},
            },
            None,
            DEFAULT_CODE,
        ),
        # scoped normal override clears webcollect, not atobarai
        (
            [win("a", t(1), t(3), EVERYTHING)],
            ov("normal", None, {"webcollect": ("*",)}),
            t(2),
            {
                "webcollect": {"credit_card": "operational", "cvs_online": "operational"},
                "atobarai": {
                    "credit_card": "under_maintenance",
                    "bank_transfer": "under_maintenance",
                },
            },
            t(3),
            "Z010000000",
        ),
        # scoped normal override expiring at 02:30 gives webcollect back to the window: until 03:00
        (
            [win("a", t(1), t(3), EVERYTHING)],
            ov("normal", t(2, 30), {"webcollect": ("*",)}),
            t(2),
            {
                "webcollect": {"credit_card": "operational", "cvs_online": "operational"},
                "atobarai": {
                    "credit_card": "under_maintenance",
                    "bank_transfer": "under_maintenance",
                },
            },
            t(3),
            "Z010000000",
        ),
        # expired override (half-open): back to the schedule at expires_at
        (
            [],
            ov("maintenance", t(0, 45)),
            t(0, 45),
            {
                "webcollect": {"credit_card": "operational", "cvs_online": "operational"},
                "atobarai": {"credit_card": "operational", "bank_transfer": "operational"},
            },
            None,
            None,
        ),
        (
            ONE,
            ov("normal", t(2)),
            t(2),
            {
                "webcollect": {
                    "credit_card": "under_maintenance",
                    "cvs_online": "under_maintenance",
                },
                "atobarai": {"credit_card": "operational", "bank_transfer": "operational"},
            },
            t(3),
            "Z010000000",
        ),
    ],
)
def test_override(
    windows: list[Window],
    override: Override,
    now: datetime,
    components: dict[str, dict[str, str]],
    until: datetime | None,
    error_code: str | None,
) -> None:
    core = status(windows, now, override)
    assert core.components == components
    down = any(v == "under_maintenance" for ms in components.values() for v in ms.values())
    assert core.state == ("maintenance" if down else "normal")
    assert core.until == until
    assert core.error_code == error_code
    assert core.override == (override if override.holds_at(now) else None)


@pytest.mark.parametrize(
    ("expires", "now", "holds"),
    [
        (None, jst(2030, 1, 1), True),
        (t(3), t(3) - US, True),
        (t(3), t(3), False),
        (t(3), t(4), False),
    ],
)
def test_override_holds_at_half_open(expires: datetime | None, now: datetime, holds: bool) -> None:
    assert ov("maintenance", expires).holds_at(now) is holds


@pytest.mark.parametrize(
    ("service", "method", "shown", "state"),
    [
        (None, None, True, "maintenance"),
        ("atobarai", None, True, "maintenance"),
        ("atobarai", "bank_transfer", True, "maintenance"),
        ("atobarai", "credit_card", False, "normal"),
        ("webcollect", None, False, "normal"),
    ],
)
def test_scoped_override_visibility(
    service: str | None,
    method: str | None,
    shown: bool,
    state: str,
) -> None:
    override = ov("maintenance", None, {"atobarai": ("bank_transfer",)})
    core = status([], t(2), override, service, method)
    assert (core.override is override) is shown
    assert core.state == state


# -- cancelled and unannounced windows --------------------------------------------------------


@pytest.mark.parametrize(
    ("windows", "now", "state", "active", "upcoming"),
    [
        ([win("x", t(1), t(3), cancelled=True)], t(2), "normal", [], []),
        ([win("x", t(1), t(3), cancelled=True)], t(0), "normal", [], []),
        # a cancelled window does not chain until either
        (
            [win("a", t(1), t(3)), win("x", t(3), t(5), cancelled=True)],
            t(2),
            "maintenance",
            ["a"],
            [],
        ),
        # not yet announced: not upcoming
        ([win("a", t(1), t(3), announce=jst(2021, 8, 5))], jst(2021, 8, 5) - US, "normal", [], []),
        # announce_at is inclusive
        ([win("a", t(1), t(3), announce=jst(2021, 8, 5))], jst(2021, 8, 5), "normal", [], ["a"]),
        # announced at its start: in progress and public at once
        ([win("a", t(1), t(3), announce=t(1))], t(1), "maintenance", ["a"], []),
    ],
)
def test_cancelled_and_unannounced(
    windows: list[Window],
    now: datetime,
    state: str,
    active: list[str],
    upcoming: list[str],
) -> None:
    core = status(windows, now)
    assert core.state == state
    assert ids(core.active) == active
    assert ids(core.upcoming) == upcoming


def test_until_does_not_chain_through_an_unannounced_window() -> None:
    # b is announced only as it starts: until (a public promise) cannot count on it before
    windows = [win("a", t(1), t(3)), win("b", t(3), t(5), announce=t(3))]
    assert status(windows, t(2)).until == t(3)
    assert status(windows, t(3)).until == t(5)


@pytest.mark.parametrize(
    ("window", "now", "life", "public"),
    [
        (win("a", t(1), t(3), announce=t(0)), t(0) - US, "scheduled", False),
        (win("a", t(1), t(3), announce=t(0)), t(0), "scheduled", True),
        (win("a", t(1), t(3)), t(1), "in_progress", True),
        (win("a", t(1), t(3)), t(3) - US, "in_progress", True),
        (win("a", t(1), t(3)), t(3), "completed", True),
        (win("a", t(1), t(3), cancelled=True), t(0), "cancelled", True),
        (win("a", t(1), t(3), cancelled=True), t(2), "cancelled", True),
        (win("a", t(1), t(3), cancelled=True), t(4), "cancelled", True),
    ],
)
def test_lifecycle(window: Window, now: datetime, life: str, public: bool) -> None:
    assert lifecycle(window, now) == life
    assert is_public(window, now) is public


# -- boundaries_after -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("windows", "override", "now", "expected"),
    [
        ([], None, t(0), []),
        (BACK_TO_BACK, None, jst(2021, 7, 31), [jst(2021, 8, 1), t(1), t(3), t(5)]),
        # strictly after now: the boundary at now itself is past
        (BACK_TO_BACK, None, t(1), [t(3), t(5)]),
        (BACK_TO_BACK, None, t(3), [t(5)]),
        (BACK_TO_BACK, None, t(5), []),
        # cancelled windows bring no boundaries; the override's expiry does
        (
            [win("a", t(1), t(3)), win("x", t(2), t(4), cancelled=True)],
            ov("maintenance", t(3, 30)),
            t(0),
            [t(1), t(3), t(3, 30)],
        ),
        # an expiry on an existing boundary is listed once; no expiry, nothing
        ([win("a", t(3), t(5), announce=t(2))], ov("normal", t(3)), t(0), [t(2), t(3), t(5)]),
        ([win("a", t(3), t(5))], ov("normal"), t(4), [t(5)]),
        # given out of order
        (
            [win("b", t(4), t(6), announce=t(0, 30)), win("a", t(1), t(2), announce=t(0, 10))],
            None,
            t(0),
            [t(0, 10), t(0, 30), t(1), t(2), t(4), t(6)],
        ),
    ],
)
def test_boundaries_after(
    windows: list[Window],
    override: Override | None,
    now: datetime,
    expected: list[datetime],
) -> None:
    got = boundaries_after(windows, override, now)
    assert got == expected
    assert got == sorted(set(got))


# -- time_driven_cause -----------------------------------------------------------------------

TD_WINDOWS = [
    win("a", t(1), t(3)),
    win("b", t(3), t(5)),
    win("c", t(7), t(8), announce=t(6)),
]
TD_MAP = {w.id: w for w in TD_WINDOWS}
EXPIRING = ov("maintenance", t(0, 10))


def summary_of(core: StatusCore, now: datetime) -> Summary:
    """The summary the store reads back from the published status (``codec.summary_of``)."""
    return codec.summary_of(codec.status_doc(core, seq=1, now=now, cause=None, zone=ZONE))


@pytest.mark.parametrize(
    ("before", "override", "now", "type_", "window_id"),
    [
        (t(1) - US, None, t(1), "maintenance.started", "a"),
        # within the grace (5 s, inclusive) a late publish keeps its type
        (t(1) - US, None, t(1, 0, 5), "maintenance.started", "a"),
        (t(1) - US, None, t(1, 0, 5) + MS, "reconciled", "a"),
        # one ends as another starts: one event, typed after the window that starts
        (t(3) - US, None, t(3), "maintenance.started", "b"),
        (t(3) - US, None, t(3, 0, 6), "reconciled", "b"),
        (t(5) - US, None, t(5), "maintenance.ended", "b"),
        (t(5) - US, None, t(5, 0, 5), "maintenance.ended", "b"),
        (t(5) - US, None, t(5, 1), "reconciled", "b"),
        (t(6) - US, None, t(6), "maintenance.announced", "c"),
        (t(6) - US, None, t(6, 0, 30), "reconciled", "c"),
        (t(0, 10) - US, EXPIRING, t(0, 10), "override.expired", None),
        (t(0, 10) - US, EXPIRING, t(0, 10, 4), "override.expired", None),
        (t(0, 10) - US, EXPIRING, t(0, 11), "reconciled", None),
    ],
)
def test_time_driven_cause(
    before: datetime,
    override: Override | None,
    now: datetime,
    type_: str,
    window_id: str | None,
) -> None:
    old = summary_of(status(TD_WINDOWS, before, override), before)
    new = status(TD_WINDOWS, now, override)
    cause = time_driven_cause(old, new, TD_MAP, now, 5.0)
    assert (cause.type, cause.window_id) == (type_, window_id)
    assert (cause.actor, cause.reason) == (None, None)


def test_summary_of() -> None:
    core = status(TD_WINDOWS, t(0), EXPIRING)
    summary = summary_of(core, t(0))
    assert summary.active == frozenset()
    assert summary.upcoming == {"a", "b"}  # c is announced at 06:00 only
    assert (summary.has_override, summary.override_expires_at) == (True, t(0, 10))
    summary = summary_of(status(TD_WINDOWS, t(4)), t(4))
    assert (summary.active, summary.upcoming) == (frozenset({"b"}), frozenset())
    assert (summary.has_override, summary.override_expires_at) == (False, None)


# -- codec.view_doc agrees with compute_status --------------------------------------------------

SCOPES = [
    (None, None),
    ("webcollect", None),
    ("atobarai", None),
    ("atobarai", "bank_transfer"),
    ("atobarai", "au_easy"),
    ("atobarai", "kuroneko_pay"),
    ("webcollect", "carrier"),
]
EX_INSTANTS = [*INSTANTS.values(), jst(2021, 8, 9, 5, 59, 59) + 999_999 * US]


def _compare(
    catalog: Catalog,
    windows: list[Window] | tuple[Window, ...],
    override: Override | None,
    now: datetime,
    service: str | None,
    method: str | None,
    default_code: str,
) -> None:
    full = compute_status(catalog, windows, override, now, default_error_code=default_code)
    doc = codec.status_doc(full, seq=7, now=now, cause=None, zone=ZONE)
    # through the wire and back, as the hub sees it
    doc = codec.loads(codec.dumps(doc))
    scoped = codec.view_doc(
        doc, catalog, service=service, method=method, default_error_code=default_code, zone=ZONE
    )
    direct = codec.core_doc(
        compute_status(
            catalog,
            windows,
            override,
            now,
            default_error_code=default_code,
            service=service,
            method=method,
        ),
        now,
        ZONE,
    )
    for key in ("state", "components", "until", "error_code", "override"):
        assert scoped[key] == direct[key], key
    assert [w["id"] for w in scoped["active"]] == [w["id"] for w in direct["active"]]
    assert [w["id"] for w in scoped["upcoming"]] == [w["id"] for w in direct["upcoming"]]
    assert (scoped["seq"], scoped["as_of"], scoped["stale"]) == (7, doc["as_of"], False)


@pytest.mark.parametrize("now", EX_INSTANTS)
@pytest.mark.parametrize(("service", "method"), SCOPES)
def test_scoped_doc_matches_compute_status_example(
    now: datetime,
    service: str | None,
    method: str | None,
) -> None:
    _compare(EX_CATALOG, EX_WINDOWS, None, now, service, method, DEFAULTS.error_code)


def test_scoped_doc_example_values() -> None:
    full = example_status(START)
    doc = codec.status_doc(full, seq=1, now=START, cause=None, zone=ZONE)
    scoped = codec.view_doc(
        doc,
        EX_CATALOG,
        service="atobarai",
        method=None,
        default_error_code=DEFAULTS.error_code,
        zone=ZONE,
    )
    assert scoped["until"] == "2021-08-09T06:00:00+09:00"
    assert scoped["error_code"] == "Z010000000"
    assert scoped["components"]["atobarai"]["bank_transfer"] == "operational"
    assert scoped["components"]["atobarai"]["credit_card"] == "under_maintenance"
    assert set(scoped["components"]) == {"atobarai"}


HAND_MADE = [
    (BACK_TO_BACK, None),
    (OVERLAPPING, None),
    ([win("a", t(1), t(3), WC, error_code="ZA"), win("b", t(2), t(5), AT, error_code="ZB")], None),
    (ONE, ov("maintenance", t(2, 30), {"atobarai": ("bank_transfer",)})),
    ([win("a", t(1), t(3), EVERYTHING)], ov("normal", t(2, 30), {"webcollect": ("*",)})),
    (ONE, ov("maintenance")),
]
HAND_SCOPES = [
    (None, None),
    ("webcollect", None),
    ("webcollect", "cvs_online"),
    ("atobarai", None),
    ("atobarai", "bank_transfer"),
]


@pytest.mark.parametrize("now", [t(0, 30), t(1), t(2), t(2, 30), t(3), t(4), t(5)])
@pytest.mark.parametrize(("service", "method"), HAND_SCOPES)
@pytest.mark.parametrize("case", range(len(HAND_MADE)))
def test_scoped_doc_matches_compute_status_hand_made(
    case: int,
    service: str | None,
    method: str | None,
    now: datetime,
) -> None:
    windows, override = HAND_MADE[case]
    _compare(CAT, windows, override, now, service, method, DEFAULT_CODE)


@pytest.mark.parametrize(
    ("service", "method", "field"),
    [
        ("nosuch", None, "service"),
        ("webcollect", "bank_transfer", "method"),
    ],
)
def test_scoped_doc_unknown_scope(service: str, method: str | None, field: str) -> None:
    doc = codec.status_doc(example_status(START), seq=1, now=START, cause=None, zone=ZONE)
    with pytest.raises(NotFound) as info:
        codec.view_doc(
            doc,
            EX_CATALOG,
            service=service,
            method=method,
            default_error_code=DEFAULTS.error_code,
            zone=ZONE,
        )
    assert info.value.field == field
