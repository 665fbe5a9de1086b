"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile: top self and inclusive frames.

Run: ``python bench/hotframes.py /tmp/prof/maintcast-10000.raw [--top 25]``
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"\s*\(([^)]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    m = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    name, path = m.groups()
    parts = Path(path).parts
    tail = "/".join(parts[-2:]) if "site-packages" in path or "broadcaster" in path else parts[-1]
    return f"{name} ({tail})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("raw")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in Path(a.raw).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    print(f"{total} samples")
    print("\nself:")
    for f, c in self_c.most_common(a.top):
        print(f"  {100 * c / total:5.1f}%  {f}")
    print("\ninclusive:")
    for f, c in incl.most_common(a.top):
        print(f"  {100 * c / total:5.1f}%  {f}")


if __name__ == "__main__":
    main()
