"""E-mail delivery over SMTP: the only ``aiosmtplib`` user.

One attempt renders the message (:mod:`broadcaster.notify.mails`) and hands it to the
server of ``MAINTCAST_SMTP_URL`` on a fresh connection (STARTTLS when the server offers it
on ``smtp://``, TLS from the start on ``smtps://``, AUTH when credentials are given),
within the attempt timeout. A mail the server accepted is delivered; a recipient refused
with a permanent 5xx (RFC 5321 4.2.1: the mailbox does not exist) is ``gone`` and disables
the subscription, like a webhook's 410; anything else (a 4xx, a refused connection, a
timeout, a TLS or AUTH failure) is retried on the queue's schedule.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable

import aiosmtplib

from broadcaster.notify.mailconfig import MailConfig
from broadcaster.notify.mails import MailContext, render
from broadcaster.notify.messages import Message, Outcome
from broadcaster.notify.subscriptions import Subscription

log = logging.getLogger(__name__)

CONNECTIONS = 8
"""SMTP connections open at once from one process (a relay limits them per client)."""

Context = Callable[[], Awaitable[MailContext]]
"""Reads what every mail needs (catalog, contact, zone) from the store."""
Tokens = Callable[[Subscription], Awaitable[str]]
"""The subscription's one-click unsubscribe token (made on first use)."""


class EmailSender:
    """Sends e-mail messages to ``config.smtp``; ``timeout_s`` bounds each attempt as a
    whole. ``tls_context`` overrides the system's trust store (tests, a private CA)."""

    def __init__(
        self,
        config: MailConfig,
        *,
        timeout_s: float,
        context: Context,
        tokens: Tokens,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self.context = context
        self.tokens = tokens
        self.tls_context = tls_context
        self._slots = asyncio.Semaphore(CONNECTIONS)

    async def send(self, sub: Subscription, msg: Message, now_s: float) -> Outcome:
        """One attempt: ``delivered`` (the server took it: its reply code), ``gone`` (the
        recipient was refused for good), else ``retry`` with what went wrong."""
        if not sub.email:
            return Outcome("failed", error="no e-mail address")
        smtp = self.config.smtp
        try:
            async with asyncio.timeout(self.timeout_s), self._slots:
                mail = render(
                    msg, sub, await self.context(), self.config, await self.tokens(sub), now_s
                )
                await aiosmtplib.send(
                    mail,
                    hostname=smtp.host,
                    port=smtp.port,
                    username=smtp.username,
                    password=smtp.password,
                    use_tls=smtp.implicit_tls,
                    start_tls=False if smtp.implicit_tls else None,  # None: when offered
                    tls_context=self.tls_context,
                    timeout=self.timeout_s,
                )
        except TimeoutError:
            return Outcome("retry", error=f"timeout after {self.timeout_s:g} s")
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if codes and all(500 <= c < 600 for c in codes):
                return Outcome("gone", status_code=codes[0], error=_short(exc.recipients[0]))
            return Outcome("retry", status_code=codes[0] if codes else None, error=_short(exc))
        except aiosmtplib.SMTPResponseException as exc:
            return Outcome("retry", status_code=exc.code, error=_short(exc.message))
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Outcome("retry", error=f"{type(exc).__name__}: {_short(exc)}")
        return Outcome("delivered", status_code=250)  # the server took it (RFC 5321 4.2.2)

    async def aclose(self) -> None:
        """Nothing to release: every attempt opens and closes its own connection."""


def _short(exc: object) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
