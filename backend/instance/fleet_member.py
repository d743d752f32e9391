"""Fleet mode, on each instance: join the fleet only once ready, never let a scale-in cut a
session.

Each boot starts with a launch: into service, or into the warm pool (a target lifecycle state
`Warmed:*`, where Auto Scaling stops the instance once the launch is over). When the group has
a launch lifecycle hook, the instance holds it until its backend is ready (engines built, models
synced) and then completes it, so the warm pool keeps only initialised instances and the load
balancer gets only ready ones.

While the instance is in service it keeps itself protected from scale-in whenever it has live
sessions (SetInstanceProtection). When Auto Scaling takes it out anyway (idle-to-zero, a
protection that came too late, a rebalance), the termination lifecycle hook holds it: the
instance reads its target lifecycle state from IMDS (`autoscaling/target-lifecycle-state`),
stops admitting sessions, waits for the live ones up to a limit, keeps the hook alive
meanwhile (RecordLifecycleActionHeartbeat), then lets it go (CompleteLifecycleAction). A
`Warmed:*` target state is such a leave only once this boot has been in service: during a
launch into the pool it means "initialise".

`decide` is pure; the calls below it are thin. `FleetAgent` (fleet_agent.py) applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

IN_SERVICE = "InService"
TERMINATED = "Terminated"
# The warm pool's target states (Warmed:Stopped, Warmed:Running, Warmed:Hibernated): a launch
# into the pool, or, after this boot has been in service, a return to it (ReuseOnScaleIn).
WARMED_PREFIX = "Warmed:"


class Action(StrEnum):
    """What the instance does on this poll."""

    NOTHING = "nothing"
    COMPLETE_LAUNCH = "complete_launch"
    PROTECT = "protect"
    UNPROTECT = "unprotect"
    KEEP_DRAINING = "keep_draining"
    COMPLETE = "complete"


@dataclass(frozen=True)
class MemberDecision:
    """The action, whether new sessions may be admitted, and why."""

    action: Action
    admit_sessions: bool
    reason: str


def drains(target_state: str | None, *, served: bool) -> bool:
    """Whether `target_state` takes the instance out with sessions to drain: `Terminated` or
    `Warmed:*` once this boot has been in service (`served`). Before that, `Warmed:*` is a
    launch into the warm pool, and `Terminated` has nothing to drain."""
    leaving = target_state == TERMINATED or (target_state or "").startswith(WARMED_PREFIX)
    return leaving and served


def decide(
    *,
    target_state: str | None,
    served: bool,
    launch_hook_pending: bool,
    backend_ready: bool,
    live_sessions: int,
    protected: bool,
    draining_since: float | None,
    now: float,
    drain_limit_s: float,
) -> MemberDecision:
    """The decision for one poll.

    `target_state`: IMDS's target lifecycle state (None before IMDS has one, e.g. outside a
    group); `served`: this boot has been in service (live sessions say so too);
    `launch_hook_pending`: the group's launch hook may still hold this boot (the group has one
    and this boot has not completed it); `backend_ready`: /ready's `ready` (draining or not);
    `draining_since`: when this instance first saw a leaving state (None before); times in
    seconds on one clock.
    """
    served = served or live_sessions > 0
    warmed = (target_state or "").startswith(WARMED_PREFIX)
    launching = target_state == IN_SERVICE or (warmed and not served)
    if launching and launch_hook_pending:
        into_service = target_state == IN_SERVICE
        if not backend_ready:
            return MemberDecision(
                Action.NOTHING, False, f"initialising for {target_state}: backend not ready"
            )
        return MemberDecision(
            Action.COMPLETE_LAUNCH, into_service, f"backend ready: launch into {target_state}"
        )
    if target_state == IN_SERVICE:
        if live_sessions > 0 and not protected:
            return MemberDecision(Action.PROTECT, True, "sessions open")
        if live_sessions == 0 and protected:
            return MemberDecision(Action.UNPROTECT, True, "no session open")
        return MemberDecision(Action.NOTHING, True, "protection matches the sessions")
    if launching:
        return MemberDecision(
            Action.NOTHING, False, f"into the warm pool ({target_state}): nothing to drain"
        )
    if target_state == TERMINATED and not served:
        return MemberDecision(
            Action.COMPLETE, False, "terminated before it served: nothing to drain"
        )
    if not drains(target_state, served=served):
        return MemberDecision(Action.NOTHING, False, f"not in service ({target_state})")
    if live_sessions == 0:
        return MemberDecision(Action.COMPLETE, False, "drained")
    if draining_since is not None and now - draining_since >= drain_limit_s:
        return MemberDecision(
            Action.COMPLETE, False, f"drain limit reached with {live_sessions} sessions open"
        )
    return MemberDecision(Action.KEEP_DRAINING, False, f"{live_sessions} sessions open")


def set_protection(autoscaling: Any, group_name: str, instance_id: str, *, protected: bool) -> None:
    """SetInstanceProtection for this instance (scale-in only; termination for other reasons,
    such as a failed health check, still goes through the lifecycle hook)."""
    autoscaling.set_instance_protection(
        AutoScalingGroupName=group_name,
        InstanceIds=[instance_id],
        ProtectedFromScaleIn=protected,
    )


def keep_draining(autoscaling: Any, group_name: str, hook_name: str, instance_id: str) -> bool:
    """Restart the hook's heartbeat timeout; False when no lifecycle action is pending (a
    return to the warm pool without a hook, or one already completed or timed out)."""
    return _lifecycle_call(
        lambda: autoscaling.record_lifecycle_action_heartbeat(
            AutoScalingGroupName=group_name, LifecycleHookName=hook_name, InstanceId=instance_id
        )
    )


def complete_lifecycle_action(
    autoscaling: Any, group_name: str, hook_name: str, instance_id: str
) -> bool:
    """Let Auto Scaling carry on (CONTINUE) past `hook_name` (the launch or the termination
    hook); False when no lifecycle action of it is pending."""
    return _lifecycle_call(
        lambda: autoscaling.complete_lifecycle_action(
            AutoScalingGroupName=group_name,
            LifecycleHookName=hook_name,
            InstanceId=instance_id,
            LifecycleActionResult="CONTINUE",
        )
    )


def _lifecycle_call(call: Any) -> bool:
    """Auto Scaling answers ValidationError 'No active Lifecycle Action found' when nothing
    waits on this instance; every other error is raised."""
    try:
        call()
    except ClientError as error:
        detail = error.response.get("Error", {})
        if detail.get("Code") == "ValidationError" and "No active Lifecycle Action" in str(
            detail.get("Message", "")
        ):
            return False
        raise
    return True
