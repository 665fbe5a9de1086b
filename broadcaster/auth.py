"""Bearer tokens with roles (``operator`` < ``admin``), configured as SHA-256 digests.

``MAINTCAST_TOKENS`` = comma-separated ``name:role:sha256hex`` entries and/or
``MAINTCAST_TOKENS_FILE`` with one entry per line (``#`` starts a comment). Only digests are
configured, never tokens; a presented token is hashed and compared in constant time
(``hmac.compare_digest``) against every entry.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from typing import Literal

Role = Literal["operator", "admin"]
ROLES: dict[str, int] = {"operator": 1, "admin": 2}
NAME_PATTERN = r"[A-Za-z0-9_.@-]{1,64}"
_ENTRY = re.compile(rf"^(?P<name>{NAME_PATTERN}):(?P<role>[a-z]+):(?P<digest>[0-9a-f]{{64}})$")


class Unauthorized(PermissionError):
    """No valid token was presented (HTTP 401 with ``WWW-Authenticate: Bearer``)."""


class Forbidden(PermissionError):
    """The token's role is too low, or no token is configured at all (HTTP 403)."""


class TokenConfigError(ValueError):
    """A malformed token entry; the message names the setting and the entry number."""


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's name (the audit ``actor``) and its role."""

    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        """Whether this role is at least ``needed``."""
        return ROLES[self.role] >= ROLES[needed]


@dataclass(frozen=True)
class _Entry:
    name: str
    role: Role
    digest: bytes


def digest_of(token: str) -> str:
    """Lower-case hex SHA-256 of a token (what the configuration holds)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return "mc_" + secrets.token_urlsafe(32)


def entry_line(name: str, role: Role, token: str) -> str:
    """The configuration entry for a token: ``name:role:sha256hex``.

    Raises:
        TokenConfigError: ``name`` is not 1-64 of ``A-Z a-z 0-9 _ . @ -``.
    """
    if not re.fullmatch(NAME_PATTERN, name):
        raise TokenConfigError(
            f"token name {name!r}: use 1-64 letters, digits and _ . @ - (it is the audit actor)"
        )
    return f"{name}:{role}:{digest_of(token)}"


def _open_directory(file: str) -> tuple[str, int] | None:
    """The first directory above ``file`` (its real path, up to ``/``) that group or others
    may write and that lacks the sticky bit, with its mode; None when there is none.
    Whoever may write such a directory may rename the file away and put another in its
    place (the sticky bit forbids renaming others' entries: ``/tmp``).

    Raises:
        OSError: a directory cannot be examined.
    """
    here = os.path.dirname(os.path.realpath(file))
    while True:
        mode = os.stat(here).st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            return here, mode
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _read_tokens_file(file: str) -> str:
    """The text of the tokens file, refused when group or others may write it, or a
    directory above it (:func:`_open_directory`): whoever can write either can add an
    admin token.

    Raises:
        TokenConfigError: unreadable, or writable by group/other, or in a directory they
            may write (the message names the file or the directory, and its mode).
    """
    try:
        with open(file, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode  # of what was opened: no swap in between
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise TokenConfigError(
                    f"MAINTCAST_TOKENS_FILE: {file} is writable by group or others (mode "
                    f"{stat.S_IMODE(mode):04o}), so anyone who can write it can add an admin "
                    f"token: chmod go-w {file}"
                )
            found = _open_directory(file)
            if found is not None:
                where, mode = found
                raise TokenConfigError(
                    f"MAINTCAST_TOKENS_FILE: {file} is in {where}, which group or others may "
                    f"write (mode {stat.S_IMODE(mode):04o}, no sticky bit), so anyone who can "
                    f"write it can replace the file and add an admin token: chmod go-w {where}"
                )
            return f.read().decode("utf-8")
    except OSError as exc:
        raise TokenConfigError(
            f"MAINTCAST_TOKENS_FILE: cannot read {file}: {exc.strerror}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise TokenConfigError(f"MAINTCAST_TOKENS_FILE: {file} is not UTF-8 text") from exc


class Tokens:
    """The configured tokens; :meth:`verify` finds the principal for a presented token."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    @property
    def configured(self) -> bool:
        """Whether any token is configured (ops routes refuse otherwise)."""
        return bool(self._entries)

    @classmethod
    def parse(cls, inline: str, file: str | None = None) -> Tokens:
        """Read ``MAINTCAST_TOKENS`` and ``MAINTCAST_TOKENS_FILE`` (both used when both given).

        Raises:
            TokenConfigError: a malformed entry, an unknown role, a duplicate name, an
                unreadable file or one writable by group or others; the message names the
                setting and the entry (or the file).
        """
        entries: list[_Entry] = []
        sources: list[tuple[str, list[str]]] = [
            ("MAINTCAST_TOKENS", [e for e in inline.split(",") if e.strip()])
        ]
        if file:
            lines = _read_tokens_file(file).splitlines()
            sources.append(
                (
                    f"MAINTCAST_TOKENS_FILE ({file})",
                    [ln.split("#", 1)[0] for ln in lines if ln.split("#", 1)[0].strip()],
                )
            )
        names: set[str] = set()
        for setting, raw in sources:
            for i, text in enumerate(raw, 1):
                m = _ENTRY.match(text.strip())
                if m is None:
                    raise TokenConfigError(
                        f"{setting}: entry {i} is not name:role:sha256hex "
                        "(64 lower-case hex digits of the token's SHA-256)"
                    )
                role = m["role"]
                if role not in ROLES:
                    raise TokenConfigError(
                        f"{setting}: entry {i} has unknown role {role!r} (operator or admin)"
                    )
                if m["name"] in names:
                    raise TokenConfigError(f"{setting}: duplicate token name {m['name']!r}")
                names.add(m["name"])
                entries.append(_Entry(m["name"], role, bytes.fromhex(m["digest"])))  # type: ignore[arg-type]
        return cls(entries)

    def verify(self, token: str) -> Principal | None:
        """The principal of ``token``, or None. Every entry is compared (constant time)."""
        presented = hashlib.sha256(token.encode()).digest()
        found: _Entry | None = None
        for e in self._entries:
            if hmac.compare_digest(presented, e.digest):
                found = e
        return Principal(found.name, found.role) if found else None
