"""Latency statistics over repeated timed calls."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Percentiles in milliseconds over `samples` timed calls."""

    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> LatencyStats:
        ms = np.asarray(seconds) * 1000.0
        p50, p95, p99 = (float(np.percentile(ms, q)) for q in (50, 95, 99))
        return cls(len(ms), p50, p95, p99)


def time_calls(call: Callable[[], object], repeats: int, warmup: int) -> LatencyStats:
    """Time `call` after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return LatencyStats.of(seconds)


async def time_async_calls(
    call: Callable[[], Awaitable[object]], repeats: int, warmup: int
) -> LatencyStats:
    """Time an async `call` after `warmup` untimed calls."""
    for _ in range(warmup):
        await call()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - started)
    return LatencyStats.of(seconds)
