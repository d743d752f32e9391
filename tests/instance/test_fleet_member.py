"""The instance's launch, scale-in protection and drain decision (pure), and its Auto Scaling calls:
SetInstanceProtection on moto, the lifecycle-hook calls on a botocore Stubber (moto 5 does
not implement CompleteLifecycleAction or RecordLifecycleActionHeartbeat)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from backend.instance.fleet_member import (
    Action,
    MemberDecision,
    complete_lifecycle_action,
    decide,
    drains,
    keep_draining,
    set_protection,
)

REGION = "eu-west-1"
GROUP = "cvstack-gpu-fleet"
HOOK = "cvstack-drain"
LIMIT_S = 600.0


class Case(NamedTuple):
    """One poll's inputs (at t=1000 s) and the decision expected; the defaults are a launched
    instance that has been in service."""

    target: str | None
    action: Action
    admit: bool
    sessions: int = 0
    protected: bool = False
    since: float | None = None
    served: bool = True
    launch_pending: bool = False
    ready: bool = True


CASES = {
    # In service: protection follows the sessions.
    "protect": Case("InService", Action.PROTECT, True, sessions=2),
    "stay protected": Case("InService", Action.NOTHING, True, sessions=2, protected=True),
    "unprotect": Case("InService", Action.UNPROTECT, True, protected=True),
    "stay unprotected": Case("InService", Action.NOTHING, True),
    "first poll in service": Case("InService", Action.PROTECT, True, sessions=1, served=False),
    # Launching into service with a launch hook: wait for the backend, then complete the hook.
    "warm start, not ready": Case(
        "InService", Action.NOTHING, False, served=False, launch_pending=True, ready=False
    ),
    "warm start, ready": Case(
        "InService", Action.COMPLETE_LAUNCH, True, served=False, launch_pending=True
    ),
    "back from a running pool, ready": Case(
        "InService", Action.COMPLETE_LAUNCH, True, launch_pending=True
    ),
    # Launching into the warm pool: initialise, complete the hook, never drain.
    "pool launch, not ready": Case(
        "Warmed:Stopped", Action.NOTHING, False, served=False, launch_pending=True, ready=False
    ),
    "pool launch, ready": Case(
        "Warmed:Stopped", Action.COMPLETE_LAUNCH, False, served=False, launch_pending=True
    ),
    "pool launch, hook done": Case("Warmed:Stopped", Action.NOTHING, False, served=False),
    "pool launch, no hook, not ready": Case(
        "Warmed:Stopped", Action.NOTHING, False, served=False, ready=False
    ),
    "running pool launch, ready": Case(
        "Warmed:Running", Action.COMPLETE_LAUNCH, False, served=False, launch_pending=True
    ),
    # Terminated before this boot served: nothing to drain, whatever the backend says.
    "terminated while launching": Case(
        "Terminated", Action.COMPLETE, False, served=False, launch_pending=True, ready=False
    ),
    "terminated, launched, never served": Case("Terminated", Action.COMPLETE, False, served=False),
    # Leaving after service: drain, keep the hook alive, complete when drained or at the limit.
    "terminated, drained": Case("Terminated", Action.COMPLETE, False, since=0.0),
    "terminated, sessions": Case(
        "Terminated", Action.KEEP_DRAINING, False, sessions=3, protected=True, since=900.0
    ),
    "terminated, limit": Case(
        "Terminated", Action.COMPLETE, False, sessions=3, protected=True, since=1000.0 - LIMIT_S
    ),
    "terminated, sessions, first poll": Case("Terminated", Action.KEEP_DRAINING, False, sessions=1),
    "back to the pool, sessions": Case("Warmed:Stopped", Action.KEEP_DRAINING, False, sessions=1),
    "back to the pool, drained": Case("Warmed:Stopped", Action.COMPLETE, False),
    "back to a hibernated pool": Case("Warmed:Hibernated", Action.COMPLETE, False),
    "back to the pool, hook pending": Case(
        "Warmed:Stopped", Action.KEEP_DRAINING, False, sessions=2, launch_pending=True
    ),
    # Live sessions prove this boot served, whatever the agent remembers.
    "sessions, not remembered, pool": Case(
        "Warmed:Stopped", Action.KEEP_DRAINING, False, sessions=2, served=False
    ),
    "sessions, not remembered, terminated": Case(
        "Terminated", Action.KEEP_DRAINING, False, sessions=2, served=False
    ),
    # Outside a group, or in a state the agent leaves alone.
    "no target state": Case(None, Action.NOTHING, False),
    "no target state, launching": Case(None, Action.NOTHING, False, launch_pending=True),
    "standby": Case("Standby", Action.NOTHING, False, sessions=1, protected=True),
}


def decision_for(case: Case) -> MemberDecision:
    return decide(
        target_state=case.target,
        served=case.served,
        launch_hook_pending=case.launch_pending,
        backend_ready=case.ready,
        live_sessions=case.sessions,
        protected=case.protected,
        draining_since=case.since,
        now=1000.0,
        drain_limit_s=LIMIT_S,
    )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide(case: Case) -> None:
    decision = decision_for(case)
    assert (decision.action, decision.admit_sessions) == (case.action, case.admit)
    assert decision.reason


TARGETS = [None, "InService", "Warmed:Stopped", "Warmed:Running", "Terminated", "Standby"]
BOTH = (False, True)
EVERY_CASE = [
    Case(target, Action.NOTHING, False, sessions, protected, since, served, pending, ready)
    for target in TARGETS
    for sessions in (0, 2)
    for protected in BOTH
    for since in (None, 900.0, 0.0)
    for served in BOTH
    for pending in BOTH
    for ready in BOTH
]


def test_what_holds_for_every_combination() -> None:
    """Every input combination (`action` and `admit` unused): the rules that must never bend."""
    for case in EVERY_CASE:
        try:
            holds_for(case)
        except AssertionError as broken:
            raise AssertionError(f"{case}: {decision_for(case)}") from broken


def holds_for(case: Case) -> None:
    decision = decision_for(case)
    action, target = decision.action, case.target or ""
    served = case.served or case.sessions > 0
    # Sessions are admitted only in service.
    assert not decision.admit_sessions or target == "InService"
    # The launch hook is completed only while it may hold the boot, and only once ready.
    if action is Action.COMPLETE_LAUNCH:
        assert case.launch_pending and case.ready
        assert target == "InService" or (target.startswith("Warmed:") and not served)
    # A launch into the warm pool is never drained; a launching instance never is either.
    if target.startswith("Warmed:") and not served:
        assert action in (Action.NOTHING, Action.COMPLETE_LAUNCH)
    # Live sessions are never let go before the drain limit.
    if action is Action.COMPLETE and case.sessions:
        assert case.since is not None and 1000.0 - case.since >= LIMIT_S
    # The termination hook is kept or completed only on a leave.
    if action in (Action.KEEP_DRAINING, Action.COMPLETE):
        assert target == "Terminated" or (target.startswith("Warmed:") and served)
    # Protection is changed only in service, once the launch hook no longer holds the boot.
    if action in (Action.PROTECT, Action.UNPROTECT):
        assert target == "InService" and not case.launch_pending
    # Readiness matters only while the launch hook may hold the boot.
    if not case.launch_pending:
        assert decision == decision_for(case._replace(ready=not case.ready))
    # `drains` agrees with the decision.
    if drains(case.target, served=served):
        assert action in (Action.KEEP_DRAINING, Action.COMPLETE)


@pytest.fixture
def fleet_of_one() -> Iterator[tuple[Any, str]]:
    """An Auto Scaling group with one instance in service, on moto."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        autoscaling = boto3.client("autoscaling", region_name=REGION)
        ec2.create_launch_template(
            LaunchTemplateName="gpu-template",
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g4dn.xlarge"},
        )
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=GROUP,
            MinSize=0,
            MaxSize=3,
            DesiredCapacity=1,
            LaunchTemplate={"LaunchTemplateName": "gpu-template"},
            AvailabilityZones=[f"{REGION}a"],
        )
        found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
        yield autoscaling, found["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]


def protected_now(autoscaling: Any, instance_id: str) -> bool:
    found = autoscaling.describe_auto_scaling_instances(InstanceIds=[instance_id])
    return bool(found["AutoScalingInstances"][0]["ProtectedFromScaleIn"])


def test_a_protected_instance_survives_the_fleet_going_to_zero(
    fleet_of_one: tuple[Any, str],
) -> None:
    autoscaling, instance_id = fleet_of_one
    set_protection(autoscaling, GROUP, instance_id, protected=True)
    assert protected_now(autoscaling, instance_id)
    autoscaling.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=0)
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    assert [i["InstanceId"] for i in found["AutoScalingGroups"][0]["Instances"]] == [instance_id]
    set_protection(autoscaling, GROUP, instance_id, protected=False)
    assert not protected_now(autoscaling, instance_id)


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    autoscaling = boto3.client(
        "autoscaling",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(autoscaling) as stubber:
        yield autoscaling, stubber
        stubber.assert_no_pending_responses()


def test_complete_and_heartbeat_name_the_hook(stubbed: tuple[Any, Stubber]) -> None:
    autoscaling, stubber = stubbed
    target = {"AutoScalingGroupName": GROUP, "LifecycleHookName": HOOK, "InstanceId": "i-1"}
    stubber.add_response("record_lifecycle_action_heartbeat", {}, target)
    stubber.add_response(
        "complete_lifecycle_action", {}, {**target, "LifecycleActionResult": "CONTINUE"}
    )
    assert keep_draining(autoscaling, GROUP, HOOK, "i-1")
    assert complete_lifecycle_action(autoscaling, GROUP, HOOK, "i-1")


def test_no_pending_lifecycle_action_is_not_an_error(stubbed: tuple[Any, Stubber]) -> None:
    autoscaling, stubber = stubbed
    message = "No active Lifecycle Action found with instance ID i-1"
    stubber.add_client_error("complete_lifecycle_action", "ValidationError", message)
    stubber.add_client_error("record_lifecycle_action_heartbeat", "ValidationError", message)
    assert not complete_lifecycle_action(autoscaling, GROUP, HOOK, "i-1")
    assert not keep_draining(autoscaling, GROUP, HOOK, "i-1")


def test_other_errors_are_raised(stubbed: tuple[Any, Stubber]) -> None:
    autoscaling, stubber = stubbed
    stubber.add_client_error("complete_lifecycle_action", "AccessDenied", "not allowed")
    with pytest.raises(ClientError, match="AccessDenied"):
        complete_lifecycle_action(autoscaling, GROUP, HOOK, "i-1")
