"""E-mail test support: a real SMTP server (aiosmtpd, in the test's event loop, on a
loopback port) that captures every mail it accepts and parses it back with the ``email``
package, refuses recipients on request, offers STARTTLS or speaks TLS from the start with a
throw-away certificate, and may require AUTH; plus readers for the captured mails (parts,
headers, the HTML tables' rows)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email
import email.policy
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from broadcaster.notify.mailconfig import MailConfig
from broadcaster.notify.messages import DeliveryConfig
from broadcaster.notify.subscriptions import SubscriptionIn, new_subscription
from broadcaster.store import Store
from broadcaster.store.notify import NotifyStore
from tests.notify_support import FAST
from tests.support import jst, need

FROM = "Maintcast <noreply@status.example.com>"
PUBLIC = "https://status.example.com"


@dataclass
class Captured:
    """One accepted mail: the envelope, the parsed message, whether it came over TLS and
    as whom it authenticated (None: no AUTH)."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: str | None

    @property
    def subject(self) -> str:
        """The decoded subject; CPython folds a long one right after ``Subject:`` and keeps
        the fold's space on parsing, which mail readers drop: so is it here."""
        return str(self.message["Subject"]).strip()

    def text(self) -> str:
        """The text/plain part's content."""
        part = self.message.get_body(("plain",))
        assert part is not None, "no text/plain part"
        return str(part.get_content())

    def html(self) -> str:
        """The text/html part's content."""
        part = self.message.get_body(("html",))
        assert part is not None, "no text/html part"
        return str(part.get_content())

    def table(self, name: str) -> list[list[str]]:
        """The rows (cell texts) of the HTML table ``data-table=name``, header row first."""
        parser = _Tables()
        parser.feed(self.html())
        return parser.tables[name]


@dataclass
class Mailbox:
    """What the server accepted, and how it answers: ``refuse`` maps a recipient to the
    reply its RCPT gets (e.g. ``"550 5.1.1 no such user"``), ``users`` the AUTH logins
    it accepts (empty: no AUTH offered... or any)."""

    mails: list[Captured] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    connections: int = 0

    def to(self, address: str) -> list[Captured]:
        """Mails for ``address``, in arrival order."""
        return [m for m in self.mails if address in m.rcpt_tos]


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        reply = self.box.refuse.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        login = session.auth_data.login.decode() if session.authenticated else None
        self.box.mails.append(
            Captured(envelope.mail_from, list(envelope.rcpt_tos), msg, _tls(server, session), login)
        )
        return "250 2.0.0 OK: queued"


def _tls(server: Any, session: Any) -> bool:
    """Whether the mail came over TLS: upgraded by STARTTLS, or TLS from the start."""
    transport = server.transport
    return session.ssl is not None or (
        transport is not None and transport.get_extra_info("ssl_object") is not None
    )


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("data-table") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def certificate(tmp: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for ``localhost`` and ``127.0.0.1`` (openssl);
    returns ``(cert, key)``."""
    need("openssl", shutil.which("openssl") is not None)
    cert, key = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context that trusts only ``cert``."""
    return ssl.create_default_context(cafile=str(cert))


@contextlib.asynccontextmanager
async def smtp_server(
    box: Mailbox,
    *,
    tls: tuple[Path, Path] | None = None,
    implicit_tls: bool = False,
    port: int = 0,
) -> AsyncIterator[int]:
    """Serve ``box`` on a loopback port (default ephemeral); yields the port. With ``tls``
    (cert, key) the server offers STARTTLS, or with ``implicit_tls`` speaks TLS at once;
    with ``box.users`` it offers AUTH (over TLS only when TLS is there)."""
    server_ctx = None
    if tls is not None:
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(str(tls[0]), str(tls[1]))

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and box.users.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok, auth_data=data if ok else None)

    def factory() -> SMTP:
        box.connections += 1
        return SMTP(
            _Handler(box),
            hostname="localhost",
            tls_context=None if implicit_tls else server_ctx,
            authenticator=authenticate if box.users else None,
            auth_require_tls=tls is not None,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, "127.0.0.1", port, ssl=server_ctx if implicit_tls else None
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await server.wait_closed()


def mailing(port: int, config: DeliveryConfig = FAST) -> DeliveryConfig:
    """``config`` (default: the quick test retries) sending mail to the SMTP server on
    ``port`` (From :data:`FROM`, links under :data:`PUBLIC`)."""
    return dataclasses.replace(config, mail=MailConfig.of(f"smtp://127.0.0.1:{port}", FROM, PUBLIC))


async def add_email(store: Store, sub_id: str, address: str, lang: str = "ja", **body: Any) -> None:
    """Add an e-mail subscription (active at once, as the admin API makes it)."""

    def make(seq: int, catalog: Any) -> Any:
        req = SubscriptionIn(id=sub_id, kind="email", email=address, lang=lang, **body)
        return new_subscription(
            req, catalog=catalog, now=jst(2021, 5, 1), seq=seq, actor="t", new_id=sub_id,
            allow_http=False,
        )[0]  # fmt: skip

    await NotifyStore.of(store).add_subscription(make)
