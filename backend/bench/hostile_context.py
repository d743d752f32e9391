"""What every attack gets: the target, its knobs, and a tally of what it sent and saw."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from backend.bench.hostile_target import Target, describe_failure


@dataclass(frozen=True)
class AttackOptions:
    """Sizes of the attacks (the time they run is the bench's to decide)."""

    workers: int = 4  # concurrent connections of the flood attacks
    slowloris: int = 2000  # half-open connections held at once
    fps: float = 10.0  # frame rate of attack sessions that stream like a client


@dataclass
class AttackContext:
    target: Target
    options: AttackOptions
    counts: Counter[str] = field(default_factory=Counter)

    def count(self, key: str, amount: int = 1) -> None:
        self.counts[key] += amount

    async def repeat(self, attempt: Callable[[], Awaitable[None]], pause_s: float = 0.1) -> None:
        """Run `attempt` again and again until cancelled; how each one ended is tallied,
        never raised, so a server that defends itself never stops the attack."""
        while True:
            try:
                await attempt()
            except Exception as exc:
                self.count(describe_failure(exc))
            await asyncio.sleep(pause_s)

    async def swarm(
        self, attempts: Sequence[Callable[[], Awaitable[None]]], pause_s: float = 0.1
    ) -> None:
        """`repeat` each attempt concurrently."""
        await asyncio.gather(*(self.repeat(attempt, pause_s) for attempt in attempts))
