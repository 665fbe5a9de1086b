"""Loaded (via PYTHONPATH) into the server processes ``bench/fanout.py`` starts when
MAINTCAST_BENCH_GCLOG is set: logs every full (generation 2) collection and every
collection of 5 ms or more as ``pid start_wall_s duration_s generation`` lines."""

import os
from typing import Any

_path = os.environ.get("MAINTCAST_BENCH_GCLOG")
if _path:
    import gc
    import time

    _t = [0.0, 0.0]
    _log: str = _path

    def _probe(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _t[0], _t[1] = time.perf_counter(), time.time()
            return
        dur = time.perf_counter() - _t[0]
        gen = info.get("generation", -1)
        if gen == 2 or dur >= 0.005:
            with open(_log, "a") as f:
                f.write(f"{os.getpid()} {_t[1]:.6f} {dur:.6f} {gen}\n")

    gc.callbacks.append(_probe)
