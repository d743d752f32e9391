"""A bounded per-session frame queue where the latest frame wins."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class QueuedFrame:
    """JPEG bytes as received, with their arrival time (monotonic seconds)."""

    data: bytes
    received_at: float


class LatestFrameQueue:
    """Holds at most `maxsize` frames; a new frame pushes out the oldest, which is counted."""

    def __init__(self, maxsize: int = 1) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._frames: deque[QueuedFrame] = deque()
        self._maxsize = maxsize
        self._available = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: QueuedFrame) -> bool:
        """Add a frame; returns True when an older frame was dropped to make room."""
        dropped = len(self._frames) >= self._maxsize
        if dropped:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._available.set()
        return dropped

    async def get(self) -> QueuedFrame:
        """Wait for the oldest queued frame."""
        while not self._frames:
            self._available.clear()
            await self._available.wait()
        return self._frames.popleft()

    def clear(self) -> int:
        """Discard every queued frame (on stop); returns how many were discarded."""
        discarded = len(self._frames)
        self._frames.clear()
        return discarded
