"""Where e-mail goes and how it is addressed (pure): ``MAINTCAST_SMTP_URL``,
``MAINTCAST_MAIL_FROM`` and ``MAINTCAST_PUBLIC_URL`` parsed and checked once, at start-up.

``smtp://[user:pass@]host[:port]`` talks plain SMTP (port 25 by default) and upgrades with
STARTTLS whenever the server offers it (RFC 3207); ``smtps://…`` is TLS from the first byte
(port 465 by default, RFC 8314 "implicit TLS"). User and password are percent-decoded
(RFC 3986), so a password may hold ``@`` or ``:`` as ``%40``/``%3A``. Error messages never
quote the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


@dataclass(frozen=True)
class SmtpTarget:
    """One SMTP server: ``host``, ``port``, credentials (both or neither) and TLS mode:
    ``implicit_tls`` (smtps) or STARTTLS when offered (smtp)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    implicit_tls: bool = False

    def __repr__(self) -> str:  # never show the password (logs, tracebacks)
        auth = f"{self.username}:***@" if self.username else ""
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"SmtpTarget({scheme}://{auth}{self.host}:{self.port})"


def smtp_target(url: str) -> SmtpTarget:
    """``MAINTCAST_SMTP_URL`` as a :class:`SmtpTarget`.

    Raises:
        ValueError: another scheme, no host, a bad port, a user without a password (or the
            reverse), a path, query or fragment; the message never holds the password.
    """
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError("must start with smtp:// (STARTTLS when offered) or smtps:// (TLS)")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if not host:
        raise ValueError("names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("takes no path, query or fragment: smtp://[user:pass@]host[:port]")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if (user is None) != (password is None):
        raise ValueError("give both a user and a password, or neither")
    return SmtpTarget(
        host=host,
        port=port or DEFAULT_PORTS[parts.scheme],
        username=user,
        password=password,
        implicit_tls=parts.scheme == "smtps",
    )


def mail_domain(mail_from: str) -> str:
    """The domain of ``MAINTCAST_MAIL_FROM`` (``Name <user@domain>`` or ``user@domain``):
    the right-hand side of every ``Message-ID`` (RFC 5322 3.6.4).

    Raises:
        ValueError: no address with a domain, or control characters (header injection).
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in mail_from):
        raise ValueError("MAINTCAST_MAIL_FROM: must not contain control characters")
    _, address = parseaddr(mail_from)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "." not in domain:
        raise ValueError(
            "MAINTCAST_MAIL_FROM: give an address, e.g. 'Maintcast <noreply@example.com>'"
        )
    return domain.lower()


def check_public_url(url: str) -> str:
    """``MAINTCAST_PUBLIC_URL`` without a trailing ``/``: ``http(s)://host[:port][/path]``.

    Raises:
        ValueError: another scheme, no host, a query, fragment, credentials or whitespace.
    """
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("MAINTCAST_PUBLIC_URL: must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("MAINTCAST_PUBLIC_URL: give https://host[/path] (the public address)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("MAINTCAST_PUBLIC_URL: no query, fragment or credentials")
    return url.rstrip("/")


@dataclass(frozen=True)
class MailConfig:
    """What the e-mail sender needs: the server, the ``From`` and the public base URL."""

    smtp: SmtpTarget
    mail_from: str
    public_url: str

    @property
    def domain(self) -> str:
        """The ``Message-ID`` domain (the ``From`` address's)."""
        return mail_domain(self.mail_from)

    @classmethod
    def of(
        cls, smtp_url: str | None, mail_from: str | None, public_url: str | None
    ) -> MailConfig | None:
        """The configuration, or None when any of the three is unset (no mail is sent).

        Raises:
            ValueError: one of them is malformed.
        """
        if not (smtp_url and mail_from and public_url):
            return None
        mail_domain(mail_from)
        return cls(smtp_target(smtp_url), mail_from, check_public_url(public_url))
