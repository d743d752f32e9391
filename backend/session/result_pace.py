"""A per-session cap on results per second (`CVSTACK_MAX_RESULTS_PER_S`).

The session waits before it takes its next frame, so the frame it then processes is the
newest one that arrived meanwhile (latest frame wins, nothing extra is dropped), and only this
session's streamer sleeps: other sessions run on. Production use: cap each session's share of
the GPU; the overlay benchmark uses it to run the page at 2, 5 and 15 results/s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class ResultPace:
    """Spaces the starts of frame processing at least `1 / per_s` seconds apart (0: no cap)."""

    def __init__(
        self,
        per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_s < 0:
            raise ValueError(f"results per second must be 0 (no cap) or positive, got {per_s}")
        self.interval_s = 1 / per_s if per_s else 0.0
        self._clock = clock
        self._sleep = sleep
        self._last_start: float | None = None

    async def wait(self) -> None:
        """Sleep until the next frame may be taken (at once when uncapped or overdue)."""
        if self._last_start is None or not self.interval_s:
            return
        delay = self._last_start + self.interval_s - self._clock()
        if delay > 0:
            await self._sleep(delay)

    def started(self) -> None:
        """Mark that processing of a frame starts now."""
        self._last_start = self._clock()
