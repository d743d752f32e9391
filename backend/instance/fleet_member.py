"""Fleet mode, on each instance: never let a scale-in cut a session.

While the instance is in service it keeps itself protected from scale-in whenever it has live
sessions (SetInstanceProtection). When Auto Scaling takes it out anyway (idle-to-zero, a
protection that came too late, a rebalance), the termination lifecycle hook holds it: the
instance reads its target lifecycle state from IMDS (`autoscaling/target-lifecycle-state`),
stops admitting sessions, waits for the live ones up to a limit, keeps the hook alive
meanwhile (RecordLifecycleActionHeartbeat), then lets it go (CompleteLifecycleAction).

`decide` is pure; the three calls below it are thin. `FleetAgent` (fleet_agent.py) applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

IN_SERVICE = "InService"
# Target states that take the instance out of service: terminated, or back to the warm pool
# (ReuseOnScaleIn), where it is stopped.
LEAVING_PREFIXES = ("Terminated", "Warmed:")


class Action(StrEnum):
    """What the instance does on this poll."""

    NOTHING = "nothing"
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


def decide(
    *,
    target_state: str | None,
    live_sessions: int,
    protected: bool,
    draining_since: float | None,
    now: float,
    drain_limit_s: float,
) -> MemberDecision:
    """The decision for one poll.

    `target_state`: IMDS's target lifecycle state (None before IMDS has one, e.g. outside a
    group); `draining_since`: when this instance first saw a leaving state (None before);
    times in seconds on one clock.
    """
    if target_state == IN_SERVICE:
        if live_sessions > 0 and not protected:
            return MemberDecision(Action.PROTECT, True, "sessions open")
        if live_sessions == 0 and protected:
            return MemberDecision(Action.UNPROTECT, True, "no session open")
        return MemberDecision(Action.NOTHING, True, "protection matches the sessions")
    if target_state is None or not target_state.startswith(LEAVING_PREFIXES):
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


def complete_drain(autoscaling: Any, group_name: str, hook_name: str, instance_id: str) -> bool:
    """Let Auto Scaling carry on (CONTINUE); False when no lifecycle action is pending."""
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
