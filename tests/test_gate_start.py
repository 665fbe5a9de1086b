"""``serve --demo`` starts with the gate seeing the catalog it just imported: the app's
start-up lets its hub catch up with what the background companions published (the import)
before it completes, so the gate's start check is not told "no catalog" by a pub/sub
message still on its way."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.clock import Clock
from broadcaster.store import Store
from broadcaster.validation import parse_schedule
from tests.support import DEFAULTS, EXAMPLE, FixedClock, jst, live_server, settings_for

NO_CATALOG = "gate: no catalog at start"


@contextlib.asynccontextmanager
async def imported(store: Store, clock: Clock) -> AsyncIterator[None]:
    """What ``serve --schedule`` runs first: the example imported."""
    text = EXAMPLE.read_text(encoding="utf-8")
    schedule = parse_schedule(text, source="example", defaults=DEFAULTS, now=clock.now())
    await store.import_schedule(schedule, clock.now())
    yield


@pytest.mark.parametrize("schedule", [True, False])
async def test_the_demo_gate_checks_the_imported_catalog_at_start(
    fake_redis: Any, key_prefix: str, caplog: pytest.LogCaptureFixture, schedule: bool
) -> None:
    app = create_app(
        settings_for(None, key_prefix),
        redis=fake_redis,
        clock=FixedClock(jst(2021, 6, 1, 10)),
        background=(imported,) if schedule else (),
        tokens=Tokens.parse(entry_line("boss", "admin", "admin-token-gate-start")),
        demo=True,
    )
    with caplog.at_level(logging.WARNING, logger="broadcaster.gate"):
        async with live_server(app):
            assert bool(app.state.hub.catalog.services) is schedule
    warned = [r.getMessage() for r in caplog.records if NO_CATALOG in r.getMessage()]
    # with the import: no warning; with an empty store it is still said
    assert bool(warned) is not schedule, warned
