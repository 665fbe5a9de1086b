"""Every Redis key and channel name, under one configurable, hash-tagged prefix.

Keys are ``{<prefix>}:<name>``: the braces are a Redis Cluster hash tag, so every key
lives in one slot and MULTI/EXEC over them is allowed (Redis Cluster spec, "Hash tags").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names for one deployment (``prefix`` = ``MAINTCAST_KEY_PREFIX``)."""

    prefix: str = "maintcast"

    def _k(self, name: str) -> str:
        return f"{{{self.prefix}}}:{name}"

    @property
    def windows(self) -> str:
        """Hash: window id -> window JSON."""
        return self._k("windows")

    @property
    def series(self) -> str:
        """Hash: series id -> the recurring series (a window object with ``recurrence``)."""
        return self._k("series")

    @property
    def catalog(self) -> str:
        """String: catalog JSON."""
        return self._k("catalog")

    @property
    def contact(self) -> str:
        """String: contact JSON (optional)."""
        return self._k("contact")

    @property
    def override(self) -> str:
        """String: override JSON; absent when no override holds."""
        return self._k("override")

    @property
    def status(self) -> str:
        """String: the last published full status JSON."""
        return self._k("status")

    @property
    def seq(self) -> str:
        """Integer: the last published seq (absent = 0)."""
        return self._k("seq")

    @property
    def events(self) -> str:
        """Stream: one entry per published event, entry id ``<seq>-0``, capped."""
        return self._k("events")

    @property
    def channel(self) -> str:
        """Pub/sub channel: every published status JSON."""
        return self._k("changes")

    @property
    def worker_heartbeat(self) -> str:
        """String with TTL: the last worker heartbeat (UTC instant)."""
        return self._k("worker:heartbeat")

    @property
    def worker_leader(self) -> str:
        """String with TTL: the id of the worker that may publish time-driven changes."""
        return self._k("worker:leader")

    @property
    def subscriptions(self) -> str:
        """Hash: subscription id -> subscription JSON (with its secrets)."""
        return self._k("subscriptions")

    @property
    def notify_cursor(self) -> str:
        """Integer: the last event seq fanned out to subscriptions (absent: none yet)."""
        return self._k("notify:cursor")

    @property
    def notify_ready(self) -> str:
        """Sorted set: subscription id -> earliest due time (Unix s) of its pending messages."""
        return self._k("notify:ready")

    def notify_messages(self, sub_id: str) -> str:
        """Hash: message id -> message JSON, for one subscription."""
        return self._k(f"notify:msgs:{sub_id}")

    def notify_due(self, sub_id: str) -> str:
        """Sorted set: message id -> due time (Unix s) of one subscription's pending messages."""
        return self._k(f"notify:due:{sub_id}")

    def notify_log(self, sub_id: str) -> str:
        """Sorted set: message id -> when it was queued (Unix s), for listing newest first."""
        return self._k(f"notify:log:{sub_id}")

    @property
    def notify_reminded(self) -> str:
        """Sorted set: reminder id -> its instant (Unix s), for each reminder already queued
        (so a reminder is queued once across processes; old ones are trimmed)."""
        return self._k("notify:reminded")

    def signup(self, token_hash: str) -> str:
        """String with TTL: a self-subscription awaiting confirmation, by the SHA-256 (hex)
        of its token (the token itself is only in the confirmation mail)."""
        return self._k(f"signup:{token_hash}")

    def signup_sent(self, address_hash: str) -> str:
        """String with TTL: a confirmation mail was queued for this address (SHA-256 hex of
        the lower-cased address) recently; no other until it expires."""
        return self._k(f"signup:sent:{address_hash}")

    @property
    def inputs(self) -> tuple[str, ...]:
        """The keys a status computation reads; WATCHed by every publish."""
        return (self.windows, self.catalog, self.override, self.status, self.seq)


WORKER_HEARTBEAT_TTL_S = 15
"""Seconds a worker heartbeat stays fresh (``maintcast worker check``)."""
