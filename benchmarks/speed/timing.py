"""Timing helper shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeats: int, warmup: bool = True,
            sync: Callable[[], None] | None = None) -> float:
    """Seconds of the fastest of ``repeats`` calls (after one warm-up call, by default).

    ``sync`` waits for queued device work (``torch.cuda.synchronize``): CUDA calls return before the
    GPU has finished, so without it the clock would stop early.
    """
    sync = sync or (lambda: None)
    if warmup:
        fn()  # allocations, oneDNN/cuDNN kernel choice, file caches
        sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best
