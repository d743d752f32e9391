"""A token bucket for one connection's control messages.

A page sends a handful of text messages per minute (`init`, `start`, `stop`, `ocr`, `pong`);
a client that sends hundreds per second only makes the server parse and answer errors, on
the event loop every session shares.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class MessageRate:
    """Allows `burst` messages at once and `per_s` per second after that."""

    def __init__(
        self, per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_s <= 0 or burst < 1:
            raise ValueError("per_s must be positive and burst at least 1")
        self.per_s = per_s
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def allow(self) -> bool:
        """Take one token; False when the client is over its rate."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_s)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
