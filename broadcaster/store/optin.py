"""E-mail subscriptions' side of the notification store: the one-click unsubscribe keys
and what a mail reads besides its message (catalog, contact block, zone)."""

from __future__ import annotations

from broadcaster.domain import Catalog
from broadcaster.notify.mails import MailContext
from broadcaster.notify.subscriptions import Subscription, new_key
from broadcaster.store.notify import NotifyStore
from broadcaster.validation import Contact


class OptInStore:
    """The e-mail side of a :class:`NotifyStore` (does not own its client)."""

    def __init__(self, notify: NotifyStore) -> None:
        self.notify = notify
        self.redis = notify.redis
        self.keys = notify.keys

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
