"""Notifications: subscriptions, the messages the event log makes for them, and senders.

Pure modules (no I/O): :mod:`subscriptions` (models, validation, secrets) and
:mod:`messages` (which events a subscription gets, the payload, the retry schedule, the
sender protocol). :mod:`webhook` is the only ``standardwebhooks`` user and the only
``httpx`` user on the server side. The queue itself lives in
:mod:`broadcaster.store.notify` (Redis) and is worked by ``worker.deliveries`` in whichever
process holds the leader lock. The event log stays the single source: notifications are a
consumer of it, like the hub.
"""
