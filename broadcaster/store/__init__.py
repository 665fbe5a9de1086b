"""The only package that talks to Redis.

:mod:`client` connects (and names the errors that mean "the store is unavailable"),
:mod:`core` reads and publishes atomically (:mod:`plans`: what a transaction reads and
writes), :mod:`log` reads the event log, :mod:`coordination` follows the change feed and
holds the leader lock, :mod:`factory` builds a store from the settings.
"""

from broadcaster.store.client import (
    RECONNECT_ERRORS,
    SOCKET_TIMEOUT_S,
    STORE_ERRORS,
    Redis,
    connect,
)
from broadcaster.store.coordination import STANDBY_SUFFIX, Lease
from broadcaster.store.core import Store
from broadcaster.store.factory import make_store
from broadcaster.store.log import MAX_REPLAY
from broadcaster.store.plans import Change, Plan, State

__all__ = [
    "MAX_REPLAY",
    "RECONNECT_ERRORS",
    "SOCKET_TIMEOUT_S",
    "STANDBY_SUFFIX",
    "STORE_ERRORS",
    "Change",
    "Lease",
    "Plan",
    "Redis",
    "State",
    "Store",
    "connect",
    "make_store",
]
