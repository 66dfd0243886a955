"""Microbenchmark timing on the real clock."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["per_call_us"]


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    """Mean µs per call of ``fn(i)`` for i in 0..n-1, loop included."""
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6
