"""One table from exception classes to HTTP answers, for every route that answers errors.

The FastAPI exception handlers (:mod:`broadcaster.app`: the public, ops and page routes)
and the plain-ASGI live routes (:mod:`broadcaster.live`) both answer from :data:`TABLE`, so
an exception means the same status and body everywhere. No FastAPI import here.

Every store error (:data:`broadcaster.store.STORE_ERRORS`: Redis unreachable, timed out,
``LOADING``, ``READONLY``, any other reply error) is 503 ``store_unavailable`` with a fixed
message: the exception's text (which names the Redis address) is logged at WARNING, one
line, never sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from broadcaster import codec
from broadcaster.auth import Forbidden, Unauthorized
from broadcaster.domain import Conflict, InvalidInput, NotFound
from broadcaster.limits import RETRY_AFTER_S, BodyTooLarge, TooManyRequests, TooManyStreams
from broadcaster.store import STORE_ERRORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpError:
    """How one exception class is answered: HTTP ``status``, error ``code`` and a fixed
    ``message``, or None to use the exception's own ``message`` (else ``str(exc)``) and
    ``field``; ``headers`` are added to the response (and ``Retry-After`` when the
    exception carries ``retry_after_s``); ``log`` logs the exception at WARNING (one line)
    since its text is not sent."""

    status: int
    code: str
    message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    log: bool = False


STORE_UNAVAILABLE = HttpError(503, "store_unavailable", "store unavailable", log=True)
"""The answer to every store error (the client may retry; the process stays up)."""

TABLE: dict[type[Exception], HttpError] = {
    InvalidInput: HttpError(422, "invalid"),
    NotFound: HttpError(404, "not_found"),
    Unauthorized: HttpError(
        401, "unauthorized", headers=(("WWW-Authenticate", 'Bearer realm="maintcast"'),)
    ),
    Forbidden: HttpError(403, "forbidden"),
    Conflict: HttpError(409, "conflict"),
    TooManyStreams: HttpError(
        429, "too_many_streams", headers=(("Retry-After", str(RETRY_AFTER_S)),)
    ),
    TooManyRequests: HttpError(429, "too_many_requests"),
    BodyTooLarge: HttpError(413, "body_too_large"),
    **dict.fromkeys(STORE_ERRORS, STORE_UNAVAILABLE),
}
"""Exception class -> answer. A raised exception takes the entry of the first class of its
MRO found here (as Starlette looks handlers up), so ``Unauthorized`` (a ``PermissionError``,
hence an ``OSError``) is 401, not a store error."""

HANDLED: tuple[type[Exception], ...] = tuple(TABLE)
"""The classes of :data:`TABLE`, for ``except`` clauses and handler registration."""


@dataclass(frozen=True)
class Answer:
    """An error response: ``status``, extra ``headers`` and the body ``doc``
    (``{"error": {"code", "message", "field"}}``, :func:`codec.error_doc`)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    doc: codec.Doc

    @property
    def code(self) -> str:
        """The error code of the body."""
        return str(self.doc["error"]["code"])

    def body(self) -> bytes:
        """The JSON body."""
        return codec.dumps(self.doc)

    def raw_headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        """ASGI headers for ``body`` (this answer's :meth:`body`): type, length, extras."""
        return [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers),
        ]


def http_error_of(exc: BaseException) -> HttpError | None:
    """The table entry for ``exc`` (first class of its MRO in :data:`TABLE`), or None."""
    for cls in type(exc).__mro__:
        found = TABLE.get(cls)
        if found is not None:
            return found
    return None


def answer_for(exc: BaseException, where: str = "") -> Answer | None:
    """The answer to ``exc``, or None when the table does not know it (a bug: the caller
    re-raises, a 500). ``where`` (e.g. ``"GET /v1/windows"``) goes into the log line of an
    entry that logs."""
    spec = http_error_of(exc)
    if spec is None:
        return None
    if spec.log:
        log.warning("%s: %s (%s: %s)", where or "request", spec.message, type(exc).__name__, exc)
    if spec.message is not None:
        message, field = spec.message, None
    else:
        message = getattr(exc, "message", None) or str(exc)
        field = getattr(exc, "field", None)
    headers = spec.headers
    retry_after = getattr(exc, "retry_after_s", None)
    if isinstance(retry_after, int):  # a wait the exception computed (a rate limit)
        headers = (*headers, ("Retry-After", str(retry_after)))
    return Answer(spec.status, headers, codec.error_doc(spec.code, message, field))
