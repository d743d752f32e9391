"""When is a running instance idle long enough to stop? A pure function of times."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class IdleDecision:
    """Whether to stop now, why, and how long the instance has counted as idle."""

    stop: bool
    reason: str
    idle_s: float


@dataclass(frozen=True)
class Activity:
    """What idle_stop knows of recent use.

    `last_active_at`: the end of the latest minute with an open session, or the latest /start
    (read back from the instance tag, so never late). `observed_until`: the start of the
    latest minute the heartbeat has published (0 included); None when it published nothing.
    """

    last_active_at: datetime | None = None
    observed_until: datetime | None = None

    def with_start(self, started_at: datetime) -> Activity:
        """This activity plus a /start at `started_at`."""
        latest = max(started_at, self.last_active_at or started_at)
        return replace(self, last_active_at=latest)


@dataclass(frozen=True)
class IdlePolicy:
    """Stop after `idle_minutes` without activity; never within `boot_grace_minutes` of launch.

    The idle clock starts at the later of the end of the boot grace period and the last
    activity (an open session or a /start call), so missing data while the instance boots
    never counts as idleness. It runs only up to what the heartbeat has published: CloudWatch
    shows datapoints 1-3 minutes late, so the newest minutes could still hold a session that
    opened just before the limit. That allowance is capped at `metric_lag_minutes`: a heartbeat
    silent for longer counts as idle (a backend that never reports serves nobody).
    """

    idle_minutes: float
    boot_grace_minutes: float
    metric_lag_minutes: float = 3

    def __post_init__(self) -> None:
        if self.idle_minutes <= 0 or self.boot_grace_minutes < 0 or self.metric_lag_minutes < 0:
            raise ValueError(
                "idle_minutes must be positive and boot_grace_minutes, metric_lag_minutes not "
                f"negative, got {self.idle_minutes}, {self.boot_grace_minutes} and "
                f"{self.metric_lag_minutes}"
            )

    def decide(
        self, *, now: datetime, launched_at: datetime, activity: Activity = Activity()
    ) -> IdleDecision:
        """Decide for a running instance launched at `launched_at`."""
        grace_ends = launched_at + timedelta(minutes=self.boot_grace_minutes)
        if now < grace_ends:
            return IdleDecision(False, "boot_grace", 0.0)
        idle_since = max(grace_ends, activity.last_active_at or grace_ends)
        judged_at = now
        if activity.observed_until is not None:
            oldest = now - timedelta(minutes=self.metric_lag_minutes)
            judged_at = min(now, max(activity.observed_until, oldest))
        idle_s = max(0.0, (judged_at - idle_since).total_seconds())
        if idle_s >= self.idle_minutes * 60:
            return IdleDecision(True, "idle", idle_s)
        return IdleDecision(False, "recently_active" if idle_since > grace_ends else "idle", idle_s)
