"""One published status as every consumer needs it, built once per process.

The hub makes one :class:`Event` per published status and hands the same object to every
stream (:mod:`broadcaster.sse`), the live routes and the gate, so its JSON and SSE frame
are encoded once, not once per client.
"""

from __future__ import annotations

from broadcaster import codec
from broadcaster.codec import View, Viewer


class Event:
    """One published status: the decoded object, its payload and frames, built once."""

    __slots__ = ("_frame", "_views", "doc", "payload", "seq")

    def __init__(self, doc: codec.Doc, payload: bytes | None = None) -> None:
        self.doc = doc
        self.seq: int = doc["seq"]
        self.payload = payload if payload is not None else codec.dumps(doc)
        self._frame: bytes | None = None
        self._views: dict[View, tuple[codec.Doc, bytes, bytes]] = {}

    def frame(self) -> bytes:
        """The SSE frame of the whole status."""
        if self._frame is None:
            self._frame = codec.sse_frame(self.seq, self.payload)
        return self._frame

    def _viewed(self, view: View, viewer: Viewer) -> tuple[codec.Doc, bytes, bytes]:
        got = self._views.get(view)
        if got is None:
            doc = viewer(self.doc, view)
            payload = codec.dumps(doc)
            got = self._views[view] = (doc, payload, codec.sse_frame(self.seq, payload))
        return got

    def view(self, view: View, viewer: Viewer) -> tuple[codec.Doc, bytes]:
        """The status restricted to ``view`` (by ``viewer``) and its SSE frame, computed once
        per view."""
        if view == (None, None):
            return self.doc, self.frame()
        doc, _, frame = self._viewed(view, viewer)
        return doc, frame

    def json(self, view: View, viewer: Viewer) -> bytes:
        """The status restricted to ``view`` as JSON bytes, computed once per view."""
        if view == (None, None):
            return self.payload
        return self._viewed(view, viewer)[1]
