"""One published status as every consumer needs it, built once per process.

The hub makes one :class:`Event` per published status and hands the same object to every
stream (:mod:`broadcaster.sse`), the live routes and the gate, so its JSON and SSE frame
are encoded once, not once per client.
"""

from __future__ import annotations

from broadcaster import codec
from broadcaster.codec import Scope


class Event:
    """One published status: the decoded object, its payload and frames, built once."""

    __slots__ = ("_frame", "_views", "doc", "payload", "seq")

    def __init__(self, doc: codec.Doc, payload: bytes | None = None) -> None:
        self.doc = doc
        self.seq: int = doc["seq"]
        self.payload = payload if payload is not None else codec.dumps(doc)
        self._frame: bytes | None = None
        self._views: dict[Scope, tuple[codec.Doc, bytes, bytes]] = {}

    def frame(self) -> bytes:
        """The unscoped SSE frame."""
        if self._frame is None:
            self._frame = codec.sse_frame(self.seq, self.payload)
        return self._frame

    def _scoped(self, scope: Scope, scoper: codec.Scoper) -> tuple[codec.Doc, bytes, bytes]:
        got = self._views.get(scope)
        if got is None:
            doc = scoper(self.doc, scope)
            payload = codec.dumps(doc)
            got = self._views[scope] = (doc, payload, codec.sse_frame(self.seq, payload))
        return got

    def view(self, scope: Scope, scoper: codec.Scoper) -> tuple[codec.Doc, bytes]:
        """The scoped status and its SSE frame, computed once per scope."""
        if scope == (None, None):
            return self.doc, self.frame()
        doc, _, frame = self._scoped(scope, scoper)
        return doc, frame

    def json(self, scope: Scope, scoper: codec.Scoper) -> bytes:
        """The scoped status as JSON bytes, computed once per scope."""
        if scope == (None, None):
            return self.payload
        return self._scoped(scope, scoper)[1]
