"""Prometheus metrics of this process (``GET /metrics``), names as in docs/api.md "Built".

Counters count what this process did: events it published, clients it dropped. Gauges are
read at scrape time from the hub.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_PUBLISHED = Counter(
    "maintcast_events_published",
    "Events published by this process, by cause type.",
    ["type"],
    registry=REGISTRY,
)
TRANSITIONS = Counter(
    "maintcast_transitions",
    "Published changes of the overall state (normal <-> maintenance) by this process.",
    registry=REGISTRY,
)
PUBLISH_LAG = Histogram(
    "maintcast_publish_lag_seconds",
    "Seconds from a boundary instant to its publish (worker; rehearsal clock seconds).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
SLOW_CLIENTS_DROPPED = Counter(
    "maintcast_slow_clients_dropped",
    "SSE clients disconnected because their bounded buffer filled.",
    registry=REGISTRY,
)
STREAMS_REFUSED = Counter(
    "maintcast_streams_refused",
    "Streams refused with 429 because their client address already held "
    "MAINTCAST_STREAMS_PER_CLIENT open streams in this process.",
    registry=REGISTRY,
)
GATE_UNKNOWN = Counter(
    "maintcast_gate_unknown",
    "Guarded requests the gate decided by when_unknown (allow or block) because the status "
    "of the rule's scope was not known, by reason: no_status (none read yet), scope_gone "
    "(the catalog no longer has the rule's service or method), error (anything else).",
    ["reason"],
    registry=REGISTRY,
)
SSE_CLIENTS = Gauge("maintcast_sse_clients", "Open SSE streams in this process.", registry=REGISTRY)
REDIS_UP = Gauge(
    "maintcast_redis_up",
    "1 while this process's subscription to Redis is live.",
    registry=REGISTRY,
)

STATUS_OVERDUE = Gauge(
    "maintcast_status_overdue_seconds",
    "Seconds the held status is past the change it announced (0 unless more than the "
    "misfire grace): nothing published it.",
    registry=REGISTRY,
)

NOTIFICATIONS = Counter(
    "maintcast_notifications",
    "Notification delivery attempts made by this process, by kind (webhook, email) and "
    "result: delivered, retry (failed, tried again later), failed (no retry left), gone "
    "(410: the subscription is disabled).",
    ["kind", "result"],
    registry=REGISTRY,
)
NOTIFICATION_QUEUE = Gauge(
    "maintcast_notification_queue",
    "Notification messages waiting for delivery (pending, retries included), by kind, as "
    "this process last read them from Redis (every 5 s).",
    ["kind"],
    registry=REGISTRY,
)
NOTIFICATION_LAG = Histogram(
    "maintcast_notification_lag_seconds",
    "Real seconds from an event (or a test ping) to the first delivery attempt of its "
    "message (replayed messages are not counted).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)


def bind_gauges(
    clients: Callable[[], int], redis_up: Callable[[], bool], overdue_s: Callable[[], float]
) -> None:
    """Read the gauges from live values at scrape time."""
    SSE_CLIENTS.set_function(lambda: float(clients()))
    REDIS_UP.set_function(lambda: 1.0 if redis_up() else 0.0)
    STATUS_OVERDUE.set_function(overdue_s)


def exposition() -> tuple[bytes, str]:
    """The text exposition format body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose ``/metrics`` on ``host:port`` from a background thread (the worker has no
    HTTP server of its own)."""
    start_http_server(port, addr=host, registry=REGISTRY)
