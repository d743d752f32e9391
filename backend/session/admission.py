"""A global, first-come-first-served limit on concurrently running sessions."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class AdmissionTimeoutError(Exception):
    """A session waited longer than the configured maximum for a slot."""


WaitUpdate = Callable[[int], Awaitable[None]]  # called with the 1-based queue position


class AdmissionGate:
    """At most `limit` sessions hold a slot; the others wait in arrival order."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, on_wait: WaitUpdate, *, max_wait_s: float, update_s: float) -> None:
        """Take a slot, calling `on_wait(position)` every `update_s` while queued."""
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(ticket)
        deadline = time.monotonic() + max_wait_s
        try:
            while not ticket.done():
                await on_wait(self._waiters.index(ticket) + 1)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AdmissionTimeoutError
                await asyncio.wait([ticket], timeout=min(update_s, remaining))
        except BaseException:
            if ticket in self._waiters:
                self._waiters.remove(ticket)
            elif ticket.done():  # the slot was handed over just as this session gave up
                self.release()
            ticket.cancel()
            raise

    def release(self) -> None:
        """Give the slot to the longest-waiting session, or free it."""
        while self._waiters:
            ticket = self._waiters.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return
        self.active = max(0, self.active - 1)
