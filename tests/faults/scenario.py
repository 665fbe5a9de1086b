"""What the fault scenarios share: a schedule with one window a few seconds ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
import yaml

CATALOG: dict[str, Any] = {
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


def leader_of(r: redis.Redis, prefix: str) -> str | None:
    """Who holds the leader lock (``host:pid:…``; an API standby's ends in ``:standby``),
    or None when nobody does."""
    holder = r.get(f"{{{prefix}}}:worker:leader")
    return (holder.decode() if isinstance(holder, bytes) else holder) or None


def worker_leader(r: redis.Redis, prefix: str) -> str | None:
    """The leader lock's holder when a worker holds it (not an API standby), else None."""
    holder = leader_of(r, prefix)
    return None if holder is None or holder.endswith(":standby") else holder


def pid_of(holder: str) -> int:
    """The process id in a leader lock holder (``host:pid:…``)."""
    return int(holder.split(":")[1])
