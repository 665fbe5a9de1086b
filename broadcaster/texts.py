"""What a text given to Maintcast may hold, and how much of a bad value an error echoes.

:func:`check_texts` is the one check for control characters, run on every ops request body
(:mod:`broadcaster.ops_api`) and every schedule file (:mod:`broadcaster.validation`);
:func:`shown` cuts every echoed value (issue 12, items 4 and 5). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from broadcaster.domain import ECHO_MAX, InvalidInput

MAX_SHOWN = 80
"""Characters of a bad value's repr echoed back in a message."""
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
"""C0 controls (line breaks and tabs too), DEL and C1 controls: never accepted in a text."""


def shown(value: Any) -> str:
    """``value``'s repr for an error message, cut to 80 characters (never echo a whole
    oversized input: a 1 MB title)."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def check_texts(raw: Any, field: str = "") -> None:
    """Refuse a control character (C0, including line breaks and tabs; DEL; C1) in any text
    of ``raw``, a decoded JSON or YAML value: its strings, the keys of its objects, at any
    depth. The one check of every ops request body and schedule file (issue 12, item 4):
    such characters went raw into the iCalendar feed, the pages and the logs.

    Raises:
        InvalidInput: naming the field (dotted path under ``field``; ``body`` at the top),
            the character's code point and the text (escaped, cut by :func:`shown`).
    """
    stack: list[tuple[str, Any]] = [(field, raw)]
    while stack:  # not recursive: a deeply nested body must not reach the recursion limit
        at, value = stack.pop()
        if isinstance(value, str):
            bad = CONTROL.search(value)
            if bad is not None:
                name = at or "body"
                raise InvalidInput(
                    name,
                    f"{name}: control character U+{ord(bad.group()):04X} at position "
                    f"{bad.start()} of {shown(value)}; texts may not contain any (line breaks "
                    "and tabs included)",
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
