"""What the fault scenarios share: a schedule with one window a few seconds ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

CATALOG = {
    "services": {
        "webcollect": {"methods": {"credit_card": {}, "cvs_online": {}}},
        "atobarai": {"methods": {"bank_transfer": {}}},
    }
}


def write_schedule(path: Path, starts_in_s: float, lasts_s: float) -> datetime:
    """A schedule with one window for webcollect starting ``starts_in_s`` from now."""
    starts = datetime.now(UTC) + timedelta(seconds=starts_in_s)
    window = {
        "id": "fault-window",
        "title": {"en": "fault drill"},
        "starts_at": starts.isoformat(timespec="milliseconds"),
        "ends_at": (starts + timedelta(seconds=lasts_s)).isoformat(timespec="milliseconds"),
        "affected": {"webcollect": ["*"]},
    }
    path.write_text(yaml.safe_dump({"catalog": CATALOG, "windows": [window]}), encoding="utf-8")
    return starts
