"""/start in fleet mode: raise the group for the demand, never lower it, under concurrency.

The demand is the larger of the fleet's sessions (live + waiting) and the /start calls of the
window (this one included), one instance per `sessions_per_instance`
(lambdas/shared/fleet_capacity.py).

Concurrent calls: Auto Scaling has no compare-and-set on the desired capacity, so a call that
read an older desired and an older count could write a lower value just after another call
wrote a higher one. Each call therefore writes only a value above the desired it has just read,
then reads the desired and the window's count again and writes again while the demand needs
more. The last call to write always checks afterwards with a count that holds every /start
recorded before that check, and every later call checks after its own start was recorded, so
once the calls are done the group holds what the counts need. Left: a lower value may stand
for the moment between a stale write and its writer's next check (milliseconds), or for good
if a call used its `MAX_WRITES` under contention, until the next /start or target tracking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from lambdas.shared.demand import DynamoDBClient, recent_starts
from lambdas.shared.fleet import AutoScalingClient, FleetState, read_desired, set_desired_capacity
from lambdas.shared.fleet_capacity import desired_after_start, instances_needed

# Writes of one /start, each followed by a read of the group and of the window's count;
# contention with other calls costs a write each time it makes one lose.
MAX_WRITES = 4


@dataclass(frozen=True)
class DemandSettings:
    """Where the demand is counted and what one instance serves."""

    table: str
    window_s: int
    sessions_per_instance: int


@dataclass(frozen=True)
class ScaleOut:
    """What a /start did to the group: the desired capacity it read first and the one it left,
    the /start calls of the window, and whether the budget kept instances the demand needs."""

    desired_before: int
    desired: int
    recent_starts: int
    withheld: bool = False


def scale_for_demand(
    autoscaling: AutoScalingClient,
    dynamodb: DynamoDBClient,
    fleet: FleetState,
    demand: DemandSettings,
    *,
    sessions: int,
    may_add: Callable[[], bool],
    now: datetime,
) -> ScaleOut:
    """Raise the group to what the demand needs (at least 1, at most its maximum), never lower
    it; a running group that `may_add` refuses (the budget) keeps its desired capacity."""
    desired = fleet.desired
    recent = 0
    for writes in range(MAX_WRITES + 1):
        recent = recent_starts(dynamodb, demand.table, now, demand.window_s)
        needed = instances_needed(
            sessions=sessions,
            recent_starts=recent,
            sessions_per_instance=demand.sessions_per_instance,
        )
        target = desired_after_start(
            current_desired=desired, needed=needed, max_size=fleet.max_size
        )
        if target <= desired or writes == MAX_WRITES:
            break
        if desired > 0 and not may_add():
            return ScaleOut(fleet.desired, desired, recent, withheld=True)
        set_desired_capacity(autoscaling, fleet.group_name, target)
        desired = read_desired(autoscaling, fleet.group_name)
    return ScaleOut(fleet.desired, desired, recent)
