"""When is a running instance idle long enough to stop? A pure function of times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class IdleDecision:
    """Whether to stop now, why, and how long the instance has counted as idle."""

    stop: bool
    reason: str
    idle_s: float


@dataclass(frozen=True)
class IdlePolicy:
    """Stop after `idle_minutes` without activity; never within `boot_grace_minutes` of launch.

    The idle clock starts at the later of the end of the boot grace period and the end of
    the last minute with activity (an open session or a /start call), so missing data
    while the instance boots never counts as idleness.
    """

    idle_minutes: float
    boot_grace_minutes: float

    def __post_init__(self) -> None:
        if self.idle_minutes <= 0 or self.boot_grace_minutes < 0:
            raise ValueError(
                "idle_minutes must be positive and boot_grace_minutes not negative, "
                f"got {self.idle_minutes} and {self.boot_grace_minutes}"
            )

    def decide(
        self, *, now: datetime, launched_at: datetime, last_activity_at: datetime | None
    ) -> IdleDecision:
        """Decide for a running instance launched at `launched_at`."""
        grace_ends = launched_at + timedelta(minutes=self.boot_grace_minutes)
        if now < grace_ends:
            return IdleDecision(False, "boot_grace", 0.0)
        idle_since = max(grace_ends, last_activity_at or grace_ends)
        idle_s = max(0.0, (now - idle_since).total_seconds())
        if idle_s >= self.idle_minutes * 60:
            return IdleDecision(True, "idle", idle_s)
        return IdleDecision(False, "recently_active" if idle_since > grace_ends else "idle", idle_s)
