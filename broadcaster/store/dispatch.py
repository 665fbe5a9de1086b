"""The dispatcher's side of the notification queue: find subscriptions with a message due,
claim one message for an attempt, settle its outcome, trim the delivery list.

``notify:ready`` (each subscription's earliest due time) is kept exact by every change made
here under WATCH of the subscription's due set, and lowered with ``ZADD … LT`` by every
enqueue (:mod:`broadcaster.store.notify`). A claim moves the message's due time past the
attempt's timeout and gives it a token: a process killed mid-attempt leaves it due again
after that lease, and a settle whose token is stale (another process took the message
over) changes nothing.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import WatchError

from broadcaster.keys import Keys
from broadcaster.notify.messages import CONFIRM, Attempt, Message, Outcome, after_failure
from broadcaster.notify.subscriptions import Subscription
from broadcaster.store.coordination import MAX_ATTEMPTS

HISTORY = 1000
"""Finished messages kept per subscription for the delivery list (pending ones are kept)."""
Settled = str
"""What a settle did: ``delivered``, ``retry``, ``failed`` (no retry left) or ``gone``."""


def _sendable(sub: Subscription, msg: Message) -> bool:
    """Whether ``msg`` may go to ``sub`` now: an active subscription gets anything, a pending
    one (awaiting its double opt-in) only its confirmation mail."""
    return sub.active or (sub.pending and sub.disabled_at is None and msg.type == CONFIRM)


def _gone_reason(sub: Subscription, outcome: Outcome, msg_id: str) -> str:
    """Why a subscription was disabled: its endpoint's 410, or its mailbox refused for good."""
    if sub.kind == "email":
        why = f": {outcome.error}" if outcome.error else ""
        return f"{outcome.status_code} from the mail server{why} (message {msg_id})"
    return f"{outcome.status_code} Gone from the endpoint (message {msg_id})"


class Dispatch:
    """Claims and settles messages (mixed into :class:`~broadcaster.store.notify.NotifyStore`)."""

    redis: Any
    keys: Keys

    async def ready(self, now_s: float, limit: int) -> list[str]:
        """Ids of subscriptions with a message due at ``now_s``, earliest first."""
        ids = await self.redis.zrangebyscore(self.keys.notify_ready, "-inf", now_s, 0, limit)
        return [i.decode() for i in ids]

    def _ready_after(
        self,
        pipe: Any,
        sub_id: str,
        head: list[tuple[bytes, float]],
        msg_id: str,
        new: float | None,
    ) -> None:
        """Set the subscription's ready score from the first two due entries read under
        WATCH (``head``), once ``msg_id`` is due at ``new`` (None: no longer pending)."""
        scores = [s for m, s in head if m.decode() != msg_id][:1]
        if new is not None:
            scores.append(new)
        if scores:
            pipe.zadd(self.keys.notify_ready, {sub_id: min(scores)})
        else:
            pipe.zrem(self.keys.notify_ready, sub_id)

    async def claim(
        self, sub_id: str, now_s: float, lease_s: float, *, fence: str | None
    ) -> tuple[Subscription, Message] | None:
        """Take the subscription's earliest due message for one attempt: its ``attempt``
        grows, it gets a new ``claim`` token, and it is due again after ``lease_s`` seconds
        unless settled. None when nothing is due, the subscription is gone or disabled (a
        pending one's messages other than its confirmation are dropped), or (with
        ``fence``) this process does not hold the leader lock."""
        k = self.keys
        due = k.notify_due(sub_id)
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(due, k.subscriptions, *([k.worker_leader] if fence else []))
                    if fence is not None and await pipe.get(k.worker_leader) != fence.encode():
                        return None
                    head = await pipe.zrange(due, 0, 1, withscores=True)
                    if not head or head[0][1] > now_s:  # a stale ready score: set it right
                        pipe.multi()
                        self._ready_after(pipe, sub_id, head, "", None)
                        await pipe.execute()
                        return None
                    msg_id = head[0][0].decode()
                    raw_sub = await pipe.hget(k.subscriptions, sub_id)
                    raw_msg = await pipe.hget(k.notify_messages(sub_id), msg_id)
                    sub = Subscription.model_validate_json(raw_sub) if raw_sub else None
                    msg = Message.model_validate_json(raw_msg) if raw_msg else None
                    if sub is None or msg is None or not _sendable(sub, msg):
                        pipe.multi()  # an orphan (deleted meanwhile) or a disabled one
                        pipe.zrem(due, msg_id)
                        self._ready_after(pipe, sub_id, head, msg_id, None)
                        await pipe.execute()
                        return None
                    until = now_s + lease_s
                    claimed = msg.model_copy(
                        update={
                            "attempt": msg.attempt + 1,
                            "claim": secrets.token_hex(8),
                            "next_s": until,
                        }
                    )
                    pipe.multi()
                    pipe.hset(k.notify_messages(sub_id), msg_id, claimed.model_dump_json())
                    pipe.zadd(due, {msg_id: until})
                    self._ready_after(pipe, sub_id, head, msg_id, until)
                    await pipe.execute()
                    return sub, claimed
                except WatchError:
                    continue
        return None

    async def settle(
        self,
        sub_id: str,
        claimed: Message,
        outcome: Outcome,
        now_s: float,
        retry_s: tuple[float, ...],
    ) -> Settled | None:
        """Record the outcome of the attempt that ``claimed`` (from :meth:`claim`) made:
        delivered, due again after the retry schedule's next delay, ``failed`` when none is
        left, or ``gone`` (a webhook's 410, a mailbox refused for good: the message fails,
        the subscription is disabled and its other pending messages fail). None when the
        claim is stale (nothing changed)."""
        k = self.keys
        due, msgs = k.notify_due(sub_id), k.notify_messages(sub_id)
        last = Attempt(at_s=now_s, status_code=outcome.status_code, error=outcome.error)
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(due, msgs, k.subscriptions)
                    raw = await pipe.hget(msgs, claimed.id)
                    if raw is None or Message.model_validate_json(raw).claim != claimed.claim:
                        return None
                    head = await pipe.zrange(due, 0, 1, withscores=True)
                    delay = after_failure(claimed.attempt, retry_s)
                    result: Settled = outcome.result
                    if result == "retry" and delay is None:
                        result = "failed"
                    next_s = now_s + delay if result == "retry" and delay is not None else None
                    state = {"delivered": "delivered", "retry": "pending"}.get(result, "failed")
                    done = claimed.model_copy(
                        update={"state": state, "next_s": next_s, "last": last, "claim": None}
                    )
                    others: list[Message] = []
                    raw_sub = await pipe.hget(k.subscriptions, sub_id)
                    if result == "gone" and raw_sub is not None:
                        pending = [
                            m for m in await pipe.zrange(due, 0, -1) if m.decode() != done.id
                        ]
                        raws = await pipe.hmget(msgs, pending) if pending else []
                        others = [Message.model_validate_json(r) for r in raws if r is not None]
                    pipe.multi()
                    pipe.hset(msgs, done.id, done.model_dump_json())
                    if result == "gone" and raw_sub is not None:
                        sub = Subscription.model_validate_json(raw_sub)
                        reason = _gone_reason(sub, outcome, done.id)
                        when = datetime.fromtimestamp(now_s, UTC)
                        pipe.hset(
                            k.subscriptions,
                            sub_id,
                            sub.model_copy(
                                update={"disabled_at": when, "disabled_reason": reason}
                            ).model_dump_json(),
                        )
                        failed = Attempt(
                            at_s=now_s, error=f"subscription disabled ({outcome.status_code})"
                        )
                        for m in others:
                            upd = {"state": "failed", "next_s": None, "claim": None, "last": failed}
                            pipe.hset(msgs, m.id, m.model_copy(update=upd).model_dump_json())
                        pipe.delete(due)
                        pipe.zrem(k.notify_ready, sub_id)
                    else:
                        if next_s is None:
                            pipe.zrem(due, done.id)
                        else:
                            pipe.zadd(due, {done.id: next_s})
                        self._ready_after(pipe, sub_id, head, done.id, next_s)
                    await pipe.execute()
                    return result
                except WatchError:
                    continue
        return None

    async def trim(self, sub_id: str, keep: int = HISTORY) -> int:
        """Drop the oldest finished messages beyond ``keep`` (pending ones stay); returns
        how many were dropped."""
        k = self.keys
        log_key, due = k.notify_log(sub_id), k.notify_due(sub_id)
        if int(await self.redis.zcard(log_key)) <= keep:  # nearly always: one round trip
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(log_key, due)
                excess = int(await pipe.zcard(log_key)) - keep
                if excess <= 0:
                    return 0
                oldest = await pipe.zrange(log_key, 0, excess - 1)
                scores = [await pipe.zscore(due, m) for m in oldest]
                gone = [m for m, s in zip(oldest, scores, strict=True) if s is None]
                if not gone:
                    return 0
                pipe.multi()
                pipe.zrem(log_key, *gone)
                pipe.hdel(k.notify_messages(sub_id), *gone)
                await pipe.execute()
                return len(gone)
            except WatchError:
                return 0  # someone queued meanwhile: the next settle trims
