"""Paces a session whose frames cost more CPU than its fair share of the machine.

Decoding and motion run in worker threads on the same cores for every session. A session
that sends the costliest legal frames (Full HD, many scans) would otherwise take cores from
the others at whatever rate it sends. After each frame, its CPU stages' time `t` books the
session's next start `t / share` seconds after this one started: a session within its share
is never delayed, one beyond it is slowed to its share, and newer frames replace the queued
one meanwhile (latest frame wins), exactly as when the server is busy.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

SHARE_DIVISOR = 4  # a quarter of an even split: the rest stays with inference, the loop, OCR


def fair_share(max_sessions: int, cpu_count: int | None = None) -> float:
    """Cores of decode + motion per session: 0.125 on 2 cores with 4 slots, 0.25 on a
    g4dn.xlarge. The page's 320 px frames at 30 fps use about 0.02 core, 640x480 with motion
    about 0.1; three sessions of back-to-back Full HD frames then cost another session no
    more than three normal ones do (docs/security.md)."""
    return (cpu_count or os.cpu_count() or 1) / (SHARE_DIVISOR * max_sessions)


class CpuShare:
    """One session's pacing: `wait` before a frame, `charge` its CPU seconds after."""

    def __init__(self, share: float, clock: Callable[[], float] = time.monotonic) -> None:
        if share <= 0:
            raise ValueError("share must be positive")
        self.share = share
        self.clock = clock
        self.delayed_s = 0.0  # total pacing, for tests and metrics
        self._next_start = 0.0
        self._started = 0.0
        self._frame_cpu_s = 0.0

    async def wait(self) -> None:
        """Sleep until this session may start its next frame."""
        delay = self._next_start - self.clock()
        if delay > 0:
            self.delayed_s += delay
            await asyncio.sleep(delay)
        self._started = self.clock()
        self._frame_cpu_s = 0.0

    def charge(self, cpu_s: float) -> None:
        """Add `cpu_s` seconds of worker time spent on the frame started by `wait`."""
        self._frame_cpu_s += cpu_s
        self._next_start = self._started + self._frame_cpu_s / self.share
