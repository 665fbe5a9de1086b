"""Self-service e-mail subscriptions in Redis: requests, confirmations, one-click
unsubscribes, unsubscribe keys, and the sweep of requests never confirmed
(:mod:`broadcaster.notify.optin` has the rules).

A request for an address no subscription has stores a ``pending`` subscription at once, so
its confirmation mail travels through the same durable queue as every other message
(claimed only for that mail); a request for a known address leaves its subscription as it
is until the link is opened.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from redis.exceptions import WatchError

from broadcaster.domain import Catalog, NotFound
from broadcaster.notify.mails import MailContext
from broadcaster.notify.optin import (
    ACTOR,
    CONFIRM_TTL_S,
    RESEND_S,
    Signup,
    address_hash,
    confirm_message,
    new_token,
    token_hash,
)
from broadcaster.notify.subscriptions import Lang, Subscription, new_key
from broadcaster.store.coordination import MAX_ATTEMPTS
from broadcaster.store.notify import NotifyStore
from broadcaster.validation import Contact

log = logging.getLogger(__name__)


class OptInStore:
    """The self-service side of a :class:`NotifyStore` (does not own its client)."""

    def __init__(self, notify: NotifyStore) -> None:
        self.notify = notify
        self.redis = notify.redis
        self.keys = notify.keys

    async def request(
        self,
        email: str,
        lang: Lang,
        scope: dict[str, tuple[str, ...]] | None,
        now: datetime,
        now_s: float,
        new_id: Callable[[], str],
    ) -> bool:
        """Queue a confirmation mail for ``email`` (a pending subscription is stored first
        when no e-mail subscription has that address); returns False, doing nothing, when
        one was queued for it less than :data:`RESEND_S` seconds ago."""
        k = self.keys
        if not await self.redis.set(k.signup_sent(address_hash(email)), "1", nx=True, ex=RESEND_S):
            return False
        token, wanted = new_token(), email.strip().lower()
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(k.subscriptions, k.seq)
                    subs = [
                        Subscription.model_validate_json(v)
                        for v in (await pipe.hgetall(k.subscriptions)).values()
                    ]
                    known = [
                        s for s in subs if s.kind == "email" and (s.email or "").lower() == wanted
                    ]
                    seq = int(await pipe.get(k.seq) or 0)
                    sub = known[0] if known else None
                    if sub is None:
                        sub = Subscription(
                            id=new_id(),
                            kind="email",
                            email=email,
                            lang=lang,
                            scope=scope,
                            created_at=now,
                            created_seq=seq,
                            actor=ACTOR,
                            pending=True,
                            unsubscribe_key=new_key(),
                        )
                    record = Signup(sub_id=sub.id, email=email, lang=lang, scope=scope)
                    msg = confirm_message(token, now, self.notify.defaults.timezone, now_s)
                    pipe.multi()
                    if not known:
                        pipe.hset(k.subscriptions, sub.id, sub.model_dump_json())
                        pipe.set(k.notify_cursor, seq, nx=True)
                    pipe.set(
                        k.signup(token_hash(token)), record.model_dump_json(), ex=CONFIRM_TTL_S
                    )
                    self.notify._queue(pipe, sub.id, [msg])
                    await pipe.execute()
                    log.info(
                        "self-subscription request for %s: confirmation %s queued", sub.id, msg.id
                    )
                    return True
                except WatchError:
                    continue
        raise RuntimeError("could not store the subscription request (conflicting writes)")

    async def confirm(self, token: str, now: datetime) -> Subscription | None:
        """Apply the request ``token`` stands for (once): the address's subscription becomes
        active with the requested language and scope, created anew if it was removed
        meanwhile. None when the token is unknown, used or expired."""
        k = self.keys
        raw = await self.redis.getdel(k.signup(token_hash(token)))
        if raw is None:
            return None
        rec = Signup.model_validate_json(raw)
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(k.subscriptions, k.seq)
                    old = await pipe.hget(k.subscriptions, rec.sub_id)
                    seq = int(await pipe.get(k.seq) or 0)
                    sub = Subscription.model_validate_json(old) if old else None
                    if sub is not None and (sub.email or "").lower() == rec.email.lower():
                        new = sub.model_copy(
                            update={
                                "pending": False,
                                "lang": rec.lang,
                                "scope": rec.scope,
                                "created_seq": seq if sub.pending else sub.created_seq,
                                "unsubscribe_key": sub.unsubscribe_key or new_key(),
                            }
                        )
                    else:
                        new = Subscription(
                            id=rec.sub_id,
                            kind="email",
                            email=rec.email,
                            lang=rec.lang,
                            scope=rec.scope,
                            created_at=now,
                            created_seq=seq,
                            actor=ACTOR,
                            unsubscribe_key=new_key(),
                        )
                    pipe.multi()
                    pipe.hset(k.subscriptions, new.id, new.model_dump_json())
                    pipe.set(k.notify_cursor, seq, nx=True)
                    await pipe.execute()
                    log.info("self-subscription %s confirmed", new.id)
                    return new
                except WatchError:
                    continue
        raise RuntimeError("could not confirm the subscription (conflicting writes)")

    async def holder(self, token: str) -> Subscription | None:
        """The subscription a ``List-Unsubscribe`` token (``<id>.<key>``) belongs to, or
        None (unknown id, no key, another key: compared in constant time)."""
        sub_id, dot, key = token.partition(".")
        if not dot or not key or not sub_id:
            return None
        raw = await self.redis.hget(self.keys.subscriptions, sub_id)
        sub = Subscription.model_validate_json(raw) if raw else None
        if sub is None or not sub.unsubscribe_key:
            return None
        if not secrets.compare_digest(key.encode(), sub.unsubscribe_key.encode()):
            return None
        return sub

    async def unsubscribe(self, token: str) -> Subscription | None:
        """Remove the subscription a ``List-Unsubscribe`` token names (with its messages);
        None when the token matches none (unknown, or already unsubscribed)."""
        sub = await self.holder(token)
        if sub is None:
            return None
        with contextlib.suppress(NotFound):  # removed meanwhile: the same result
            await self.notify.remove_subscription(sub.id)
        log.info("subscription %s unsubscribed by its recipient", sub.id)
        return sub

    async def unsubscribe_token(self, sub: Subscription) -> str:
        """``sub``'s unsubscribe token, giving it a key first if it has none (subscriptions
        made before keys existed)."""
        if sub.unsubscribe_token:
            return sub.unsubscribe_token

        def keyed(s: Subscription) -> Subscription:
            return s if s.unsubscribe_key else s.model_copy(update={"unsubscribe_key": new_key()})

        token = (await self.notify.update_subscription(sub.id, keyed)).unsubscribe_token
        assert token is not None  # keyed() gave it a key
        return token

    async def sweep(self, now: datetime) -> list[str]:
        """Remove pending subscriptions older than :data:`CONFIRM_TTL_S` (their link
        expired); returns their ids."""
        limit = now - timedelta(seconds=CONFIRM_TTL_S)
        old = [
            s.id for s in await self.notify.subscriptions() if s.pending and s.created_at < limit
        ]
        gone: list[str] = []
        for sub_id in old:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:  # confirmed meanwhile: keep it
                    await pipe.watch(self.keys.subscriptions)
                    raw = await pipe.hget(self.keys.subscriptions, sub_id)
                    if raw is None or not Subscription.model_validate_json(raw).pending:
                        continue
                    pipe.multi()
                    pipe.hdel(self.keys.subscriptions, sub_id)
                    k = self.keys
                    pipe.delete(
                        k.notify_messages(sub_id), k.notify_due(sub_id), k.notify_log(sub_id)
                    )
                    pipe.zrem(k.notify_ready, sub_id)
                    await pipe.execute()
                    gone.append(sub_id)
                except WatchError:
                    continue
        if gone:
            log.info("removed %d self-subscriptions never confirmed", len(gone))
        return gone

    async def mail_context(self) -> MailContext:
        """The catalog, the contact block and the deployment's zone, for a mail."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.catalog).get(self.keys.contact)
            raw_catalog, raw_contact = await pipe.execute()
        return MailContext(
            Catalog.model_validate_json(raw_catalog) if raw_catalog else Catalog(),
            Contact.model_validate_json(raw_contact) if raw_contact else None,
            self.notify.defaults.timezone,
        )
