"""Records every full garbage collection of a benchmarked server's processes (bench_serving.py).

Python imports ``sitecustomize`` at start-up from the path: bench_serving.py puts this folder on
the servers' ``PYTHONPATH`` and names a file in ``MODELOPS_BENCH_GC_LOG``. Each process then
appends one line per full (generation 2) collection: ``pid unix_time pause_ms``. A full collection
stops the process's threads, so its pause is added to the requests it holds. Only
``gc.callbacks`` is used; the servers' own code is unchanged.
"""

import gc
import os
import time

_LOG = os.environ.get("MODELOPS_BENCH_GC_LOG")

if _LOG:
    _started: list[float] = []

    def _on_gc(phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            _started[:] = [time.perf_counter()]
        elif _started:
            pause_ms = (time.perf_counter() - _started[0]) * 1000
            with open(_LOG, "a") as fh:
                fh.write(f"{os.getpid()} {time.time():.3f} {pause_ms:.2f}\n")

    gc.callbacks.append(_on_gc)
