"""The gate's bypass header (``MAINTCAST_GATE_BYPASS_SECRET``): ops test a guarded API
during maintenance by sending the secret in ``X-Maintcast-Bypass``.

- The presented value and the secret are compared as SHA-256 digests with
  ``hmac.compare_digest``: the comparison takes the same time whatever the presented
  value's length or content, so timing tells nothing about the secret.
- Every accepted use is logged at WARNING (method, path, client address; never the value).
- The header is taken out of every request before it reaches the guarded app, accepted or
  not, so the secret never reaches the platform's handlers, their logs or their upstreams.

Imports neither FastAPI nor sse-starlette (the gate is used in the platform's own apps).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]


class Bypass:
    """The bypass secret (None: no bypass) and the header that carries it."""

    __slots__ = ("digest", "header")

    def __init__(self, secret: str | None, header: str = "x-maintcast-bypass") -> None:
        self.header = header.lower().encode("latin-1")
        self.digest = hashlib.sha256(secret.encode()).digest() if secret else None

    def granted(self, scope: Scope) -> bool:
        """Whether this request carries the secret (logged when it does)."""
        if self.digest is None:
            return False
        given = next((v for k, v in scope.get("headers", ()) if k == self.header), None)
        if given is None:
            return False
        if not hmac.compare_digest(hashlib.sha256(given).digest(), self.digest):
            return False
        client = scope.get("client")
        log.warning(
            "gate: bypass secret accepted for %s %s from %s",
            scope.get("method", "?"),
            scope.get("path", "?"),
            client[0] if client else "an unknown client",
        )
        return True

    def stripped(self, scope: Scope) -> Scope:
        """``scope`` without the bypass header: the same object when it has none, else a
        copy (the server's scope and its header list are left as they are)."""
        headers = scope.get("headers")
        if not headers or not any(k == self.header for k, _ in headers):
            return scope
        copy = dict(scope)
        copy["headers"] = [(k, v) for k, v in headers if k != self.header]
        return copy
