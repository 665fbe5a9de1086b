"""Deliveries: fan the event log out to subscriptions and send what is due, in the process
that holds the leader lock (a ``maintcast worker``, or an API standby when no worker runs).

Every publisher runs a :class:`Deliveries` beside its :class:`~worker.scheduler.Worker`;
it acts only while that worker leads. Each round it fans out the new events (the cursor
moves in the same fenced transaction that queues their messages) and starts an attempt for
every subscription with a message due, at most one per subscription and
``DeliveryConfig.concurrency`` in all, so a slow or dead endpoint holds one slot and
delays no one else's messages. Everything lives in Redis (:mod:`broadcaster.store.notify`):
a process killed mid-attempt leaves its message claimed until the attempt's timeout plus
:data:`CLAIM_MARGIN_S` has passed, then whoever leads sends it again (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from broadcaster.aio import stop_task
from broadcaster.clock import Clock
from broadcaster.metrics import NOTIFICATION_LAG, NOTIFICATION_QUEUE, NOTIFICATIONS
from broadcaster.notify.email import EmailSender
from broadcaster.notify.messages import DeliveryConfig, Message, Outcome, Sender
from broadcaster.notify.subscriptions import Subscription
from broadcaster.notify.webhook import WebhookSender
from broadcaster.store import RECONNECT_ERRORS
from broadcaster.store.notify import NotifyStore
from broadcaster.store.optin import OptInStore

log = logging.getLogger(__name__)

POLL_S = 0.25
"""Real seconds between rounds when nothing nudges the loop (a publish nudges it)."""
CLAIM_MARGIN_S = 5.0
"""Seconds a claimed message stays claimed beyond the attempt's timeout."""
FAN_OUT_ROUNDS = 20
"""Fan-out transactions per round at most (each takes up to 50 events)."""
GAUGE_S = 5.0
"""Real seconds between reads of the queue sizes (``maintcast_notification_queue``)."""
KINDS = ("webhook", "email")
SWEEP_S = 60.0
"""Real seconds between sweeps of self-subscriptions never confirmed (by the leader)."""


def default_senders(config: DeliveryConfig, optin: OptInStore) -> dict[str, Sender]:
    """A webhook sender, and an e-mail sender when mail is configured (``config.mail``)."""
    senders: dict[str, Sender] = {
        "webhook": WebhookSender(timeout_s=config.timeout_s, user_agent=config.user_agent)
    }
    if config.mail is not None:
        senders["email"] = EmailSender(
            config.mail,
            timeout_s=config.timeout_s,
            context=optin.mail_context,
            tokens=optin.unsubscribe_token,
        )
    return senders


class Deliveries:
    """The delivery loop of one process; ``leads()`` says whether it may act now and
    ``fence`` (the worker's id) fences its writes by the leader lock.

    ``senders`` maps a subscription kind to its :class:`Sender` (default: webhooks, and
    e-mail when ``config.mail`` is set); a message of a kind without a sender fails at
    once, with the reason in its deliveries.
    """

    def __init__(
        self,
        store: NotifyStore,
        clock: Clock,
        config: DeliveryConfig,
        *,
        fence: str,
        leads: Callable[[], bool],
        senders: Mapping[str, Sender] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.fence = fence
        self.leads = leads
        self.optin = OptInStore(store)
        self.senders: Mapping[str, Sender] = (
            senders if senders is not None else default_senders(config, self.optin)
        )
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._gauged = 0.0
        self._swept = 0.0

    def nudge(self) -> None:
        """Run the next round now (an event was published, an attempt finished)."""
        self._wake.set()

    def start(self) -> None:
        """Start the loop (returns at once)."""
        self._task = asyncio.create_task(self.run(), name="maintcast-deliveries")

    async def stop(self) -> None:
        """Stop the loop and the attempts under way (their messages stay claimed until the
        lease ends, then are sent again) and close the senders."""
        await stop_task(self._task, "deliveries")
        for task in list(self._inflight.values()):
            await stop_task(task, "delivery attempt")
        for sender in self.senders.values():
            with contextlib.suppress(Exception):
                await sender.aclose()

    async def run(self) -> None:
        """Rounds forever (cancel to stop); a store error skips a round."""
        while True:
            try:
                await self._gauge()
                await self.round()
            except RECONNECT_ERRORS as exc:
                log.debug("delivery round failed: %s", exc)
            except Exception:  # a bug must not end deliveries for good
                log.exception("delivery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()

    async def round(self) -> int:
        """Fan out, then start an attempt for each subscription with a message due (none
        while not leading). Returns how many attempts were started."""
        if not self.leads():
            return 0
        if time.time() - self._swept >= SWEEP_S:
            self._swept = time.time()
            await self.optin.sweep(self.clock.now())
        for _ in range(FAN_OUT_ROUNDS):
            if not await self.store.fan_out(time.time(), self._origin_of, fence=self.fence):
                break
        free = self.config.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        ready = await self.store.ready(time.time(), self.config.concurrency * 2 + 100)
        started = 0
        for sub_id in ready:
            if started >= free:
                break
            if sub_id in self._inflight:
                continue
            task = asyncio.create_task(self._attempt(sub_id), name=f"maintcast-deliver-{sub_id}")
            self._inflight[sub_id] = task
            started += 1
        return started

    async def remind(self, at: datetime) -> list[str]:
        """Queue the reminders due at clock time ``at`` (none while not leading; each once
        across processes, and never later than the store's misfire grace); returns their
        ids. Called by the worker at each boundary, when it takes the lead, and each tick."""
        if not self.leads():
            return []
        queued = await self.store.remind(
            at, self.config.reminders, time.time(), self._origin_of, fence=self.fence
        )
        if queued:
            self.nudge()
        return queued

    def _origin_of(self, at: datetime) -> float:
        """The real Unix time at which the clock read ``at``."""
        return self.clock.wall_time_of(at).timestamp()

    async def _attempt(self, sub_id: str) -> None:
        try:
            lease = self.config.timeout_s + CLAIM_MARGIN_S
            claimed = await self.store.claim(sub_id, time.time(), lease, fence=self.fence)
            if claimed is None:
                return
            sub, msg = claimed
            if msg.attempt == 1 and msg.origin_s is not None:
                NOTIFICATION_LAG.observe(max(0.0, time.time() - msg.origin_s))
            outcome = await self._send(sub, msg)
            result = await self.store.settle(sub_id, msg, outcome, time.time(), self.config.retry_s)
            if result is not None:
                NOTIFICATIONS.labels(sub.kind, result).inc()
                (log.info if result == "delivered" else log.warning)(
                    "notification %s to %s (attempt %d): %s%s",
                    msg.id,
                    sub_id,
                    msg.attempt,
                    result,
                    f" ({outcome.status_code or outcome.error})" if result != "delivered" else "",
                )
            if result in ("delivered", "failed", "gone"):
                await self.store.trim(sub_id)
        except RECONNECT_ERRORS as exc:  # the claim lease brings the message back
            log.warning("delivery to %s interrupted: %s", sub_id, exc)
        except Exception:
            log.exception("delivery to %s failed", sub_id)
        finally:
            self._inflight.pop(sub_id, None)
            self.nudge()

    async def _send(self, sub: Subscription, msg: Message) -> Outcome:
        sender = self.senders.get(sub.kind)
        if sender is None:  # e.g. e-mail without MAINTCAST_SMTP_URL: say so, do not spin
            why = f"no sender for kind {sub.kind} in this process"
            if sub.kind == "email":
                why += " (set MAINTCAST_SMTP_URL, MAINTCAST_MAIL_FROM and MAINTCAST_PUBLIC_URL)"
            return Outcome("failed", error=why)
        try:
            return await sender.send(sub, msg, time.time())
        except Exception as exc:  # a sender's bug is a failed attempt, retried
            log.exception("sender %s raised", sub.kind)
            return Outcome("retry", error=f"{type(exc).__name__}: {exc}"[:200])

    async def _gauge(self) -> None:
        """Refresh ``maintcast_notification_queue`` (pending messages by kind) every
        :data:`GAUGE_S` seconds, leading or not, so every process's ``/metrics`` shows it."""
        now_s = time.time()
        if now_s - self._gauged < GAUGE_S:
            return
        self._gauged = now_s
        sizes = await self.store.queue_sizes()
        for kind in {*KINDS, *sizes}:
            NOTIFICATION_QUEUE.labels(kind).set(sizes.get(kind, 0))
