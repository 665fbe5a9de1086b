"""The only package that talks to Redis.

:mod:`client` connects, :mod:`core` reads and publishes atomically, :mod:`coordination`
follows the change feed and holds the leader lock.
"""

from broadcaster.store.client import (
    RECONNECT_ERRORS,
    SOCKET_TIMEOUT_S,
    Redis,
    connect,
)
from broadcaster.store.coordination import STANDBY_SUFFIX, Lease
from broadcaster.store.core import MAX_REPLAY, Change, Plan, State, Store

__all__ = [
    "MAX_REPLAY",
    "RECONNECT_ERRORS",
    "SOCKET_TIMEOUT_S",
    "STANDBY_SUFFIX",
    "Change",
    "Lease",
    "Plan",
    "Redis",
    "State",
    "Store",
    "connect",
]
