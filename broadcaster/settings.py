"""Process configuration from the environment (prefix ``MAINTCAST_``), built once at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcaster.caps import MAX_WINDOWS
from broadcaster.notify.mailconfig import check_public_url, mail_domain, smtp_target
from broadcaster.notify.messages import parse_retry_s
from broadcaster.notify.reminders import parse_offsets
from broadcaster.store.client import validate_url
from broadcaster.validation import Defaults

MAX_SPEED = 1_000_000.0
"""Fastest rehearsal clock (clock seconds per real second)."""
MAX_WALL = 7_258_118_400.0
"""Latest ``clock_wall`` accepted: 2200-01-01T00:00:00Z in Unix seconds (instants end there)."""


class Settings(BaseSettings):
    """Every setting of README.md "Configuration"; lists are comma-separated strings.

    Durations are in seconds (``ping_s``, ``max_window_s``, ``misfire_grace_s``,
    ``retry_after_min_s``, ``header_timeout_s``) or milliseconds (``retry_ms``) as their
    names say. The limits are in docs/security.md.
    ``schedule_file`` is re-imported by the leading publisher whenever the store has no
    catalog. ``clock`` (an RFC 3339 instant), ``clock_speed`` and ``clock_wall`` (Unix seconds
    at which the clock reads ``clock``) make a rehearsal clock shared by every process given
    the same three (``--clock`` flags win).
    """

    # hide_input_in_errors: a rejected URL or token may carry a password; never echo it
    model_config = SettingsConfigDict(
        env_prefix="MAINTCAST_", extra="ignore", hide_input_in_errors=True
    )

    redis_url: str | None = None
    key_prefix: str = Field("maintcast", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    timezone: str = "Asia/Tokyo"
    error_code: str = Field("Z010000000", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    tokens: str = ""
    tokens_file: str | None = None
    cors_origins: str = ""
    ping_s: float = Field(15.0, gt=0)
    retry_ms: int = Field(3000, ge=0)
    event_retention: int = Field(10_000, ge=10)
    max_window_s: int = Field(604_800, gt=0)
    max_windows: int = Field(MAX_WINDOWS, ge=1)
    """Windows scheduled or in progress at once (:mod:`broadcaster.caps`)."""
    misfire_grace_s: float = Field(5.0, ge=0)
    client_queue: int = Field(64, ge=1)
    gate_bypass_secret: str | None = None
    retry_after_min_s: int = Field(30, ge=0)
    """The gate's ``Retry-After`` is never below this (whole seconds)."""
    streams_per_client: int = Field(32, ge=0)
    """Open ``/v1/stream`` responses per client address in this process (0: no cap)."""
    forwarded_allow_ips: str = "127.0.0.1"
    """Peers (addresses or networks, comma-separated, ``*`` = any) whose
    ``X-Forwarded-For``/``-Proto`` uvicorn believes: the client address is theirs to say."""
    max_header_bytes: int = Field(65_536, ge=1024)
    """Largest request head (request line and headers) a server process reads."""
    header_timeout_s: float = Field(10.0, gt=0, allow_inf_nan=False)
    """A connection must deliver a complete request head within this many seconds."""
    log_format: Literal["text", "json"] = "text"
    schedule_file: Path | None = None
    clock: str | None = None
    clock_speed: float = Field(1.0, gt=0, le=MAX_SPEED, allow_inf_nan=False)
    clock_wall: float | None = Field(None, ge=0, le=MAX_WALL, allow_inf_nan=False)
    url: str = "http://127.0.0.1:8000"
    token: str | None = None
    webhook_timeout_s: float = Field(10.0, gt=0, le=300, allow_inf_nan=False)
    webhook_retry_s: str = "5,300,1800,7200,18000,36000,36000"
    """Seconds before each retry of a failed delivery, comma-separated."""
    webhook_allow_http: bool = False
    notify_concurrency: int = Field(64, ge=1, le=10_000)
    """Delivery attempts under way at once (at most one per subscription)."""
    reminders: str = "P7D,P1D,PT1H"
    """ISO 8601 durations before a window's start at which ``maintenance.reminder`` is sent
    (a window's own ``reminders`` replace them), comma-separated; empty = none."""
    smtp_url: str | None = None
    """``smtp://[user:pass@]host[:port]`` (STARTTLS when offered) or ``smtps://…`` (implicit
    TLS): where e-mail notifications go. Unset: no mail is sent."""
    mail_from: str | None = Field(None, max_length=254)
    """The ``From`` of every mail, e.g. ``Maintcast <noreply@status.example.com>``."""
    public_url: str | None = None
    """The public base URL of this deployment (``https://status.example.com``): the links
    in mails (confirm, unsubscribe, status page) start with it."""
    subscribe_per_hour: int = Field(10, ge=0, le=100_000)
    """``POST /v1/subscribe`` requests per client address per hour in this process (0: no
    cap)."""

    @field_validator("webhook_retry_s")
    @classmethod
    def _retry_list(cls, text: str) -> str:
        parse_retry_s(text)  # its ValueError names the bad item
        return text

    @field_validator("reminders")
    @classmethod
    def _reminder_list(cls, text: str) -> str:
        parse_offsets(text)  # its InvalidInput names the bad item
        return text

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, url: str | None) -> str | None:
        if url:
            try:
                smtp_target(url)
            except ValueError as exc:  # never echoes the password
                raise ValueError(f"MAINTCAST_SMTP_URL: {exc}") from None
        return url or None

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, text: str | None) -> str | None:
        if text:
            mail_domain(text)
        return text or None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str | None) -> str | None:
        return check_public_url(url) if url else None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url:
            try:
                validate_url(url)
            except ValueError as exc:  # pydantic names the field; say the variable too
                raise ValueError(f"MAINTCAST_REDIS_URL: {exc}") from None
        return url or None

    @property
    def defaults(self) -> Defaults:
        """What input validation fills in: zone, error code, longest window; the cap on
        scheduled and in-progress windows."""
        return Defaults(self.timezone, self.error_code, self.max_window_s, self.max_windows)

    @property
    def cors_origin_list(self) -> list[str]:
        """``cors_origins`` split on commas, blanks dropped."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
