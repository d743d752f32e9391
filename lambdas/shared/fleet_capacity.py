"""Fleet mode: how many instances the demand needs (pure; /start and the simulated day use it).

A /start call is a visitor about to open a session, so a burst of visitors is seen at once in
the /start calls, minutes before any heartbeat metric could show it. The fleet is sized for the
larger of what it holds (live + waiting sessions) and the /start calls of the last boot window,
so a burst of 20 visitors starts 5 instances together instead of one, then another.
"""

from __future__ import annotations

import math


def instances_needed(*, sessions: int, recent_starts: int, sessions_per_instance: int) -> int:
    """Instances for the larger of the fleet's sessions and the recent /start calls."""
    if sessions_per_instance < 1:
        raise ValueError("sessions_per_instance must be at least 1")
    return math.ceil(max(sessions, recent_starts, 0) / sessions_per_instance)


def desired_after_start(*, current_desired: int, needed: int, max_size: int) -> int:
    """The desired capacity after a /start: at least one instance and what the demand needs,
    never lower than now (scale-in is Auto Scaling's, never a /start's), never above max."""
    return min(max_size, max(current_desired, needed, 1))
