"""What a text given to Maintcast may hold, and how much of a bad value an error echoes.

:func:`check_texts` is the one check for control characters, run on every ops and
subscription request body (:func:`broadcaster.ops_api.json_body`) and every schedule file
(:mod:`broadcaster.validation`); :func:`shown` cuts every echoed value (issue 12, items 4
and 5). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from broadcaster.domain import ECHO_MAX, InvalidInput

MAX_SHOWN = 80
"""Characters of a bad value's repr echoed back in a message."""
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
"""C0 controls (line breaks and tabs too), DEL and C1 controls: never accepted in a
one-line text (ids, titles, reasons, actors, keys)."""
CONTROL_MULTILINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
"""The same less the line feed, for the texts that may run over several lines."""
MULTILINE = frozenset({"description", "messages", "message"})
"""Field names whose texts may hold line feeds (``\n``; a YAML ``|`` block ends with one):
a window's description and per-channel messages, a note's message."""


def shown(value: Any) -> str:
    """``value``'s repr for an error message, cut to 80 characters (never echo a whole
    oversized input: a 1 MB title)."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def check_texts(raw: Any, field: str = "") -> None:
    """Refuse a control character (C0, including line breaks and tabs; DEL; C1) in any text
    of ``raw``, a decoded JSON or YAML value: its strings, the keys of its objects, at any
    depth; a line feed is allowed under a :data:`MULTILINE` field (``description.ja``,
    ``messages.hosted_page.en``, ``windows.0.description.ja``). The one check of every ops
    request body and schedule file (issue 12, item 4): such characters went raw into the
    iCalendar feed, the pages and the logs.

    Raises:
        InvalidInput: naming the field (dotted path under ``field``; ``body`` at the top),
            the character's code point and the text (escaped, cut by :func:`shown`).
    """
    stack: list[tuple[str, Any]] = [(field, raw)]
    while stack:  # not recursive: a deeply nested body must not reach the recursion limit
        at, value = stack.pop()
        if isinstance(value, str):
            multiline = not MULTILINE.isdisjoint(at.split("."))
            bad = (CONTROL_MULTILINE if multiline else CONTROL).search(value)
            if bad is not None:
                name = at or "body"
                raise InvalidInput(
                    name,
                    f"{name}: control character U+{ord(bad.group()):04X} at position "
                    f"{bad.start()} of {shown(value)}; texts may not contain any (tabs and "
                    "carriage returns included; line feeds only in descriptions and messages)",
                )
        elif isinstance(value, Mapping):
            for key, item in reversed(list(value.items())):
                name = str(key)[:ECHO_MAX]
                stack.append((f"{at}.{name}" if at else name, item))
                stack.append((at, str(key)))
        elif isinstance(value, list):
            stack.extend(
                (f"{at}.{i}" if at else str(i), v) for i, v in reversed(list(enumerate(value)))
            )
