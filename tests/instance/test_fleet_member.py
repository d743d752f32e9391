"""The instance's scale-in protection and drain decision (pure), and its Auto Scaling calls:
SetInstanceProtection on moto, the lifecycle-hook calls on a botocore Stubber (moto 5 does
not implement CompleteLifecycleAction or RecordLifecycleActionHeartbeat)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from backend.instance.fleet_member import (
    Action,
    complete_drain,
    decide,
    keep_draining,
    set_protection,
)

REGION = "eu-west-1"
GROUP = "cvstack-gpu-fleet"
HOOK = "cvstack-drain"
LIMIT_S = 600.0


@pytest.mark.parametrize(
    "case",
    [
        ("InService", 2, False, None, Action.PROTECT, True),
        ("InService", 2, True, None, Action.NOTHING, True),
        ("InService", 0, True, None, Action.UNPROTECT, True),
        ("InService", 0, False, None, Action.NOTHING, True),
        ("Terminated", 0, False, 0.0, Action.COMPLETE, False),
        ("Terminated", 3, True, 900.0, Action.KEEP_DRAINING, False),
        ("Terminated", 3, True, 1000.0 - LIMIT_S, Action.COMPLETE, False),
        ("Warmed:Stopped", 1, False, 900.0, Action.KEEP_DRAINING, False),
        ("Warmed:Stopped", 0, False, None, Action.COMPLETE, False),
        ("Warmed:Hibernated", 0, False, None, Action.COMPLETE, False),
        (None, 0, False, None, Action.NOTHING, False),
        ("Standby", 1, True, None, Action.NOTHING, False),
    ],
)
def test_decide(case: tuple[str | None, int, bool, float | None, Action, bool]) -> None:
    """(target state, live sessions, protected, draining since, action, admit), at t=1000 s."""
    target, sessions, protected, since, action, admit = case
    decision = decide(
        target_state=target,
        live_sessions=sessions,
        protected=protected,
        draining_since=since,
        now=1000.0,
        drain_limit_s=LIMIT_S,
    )
    assert (decision.action, decision.admit_sessions) == (action, admit)
    assert decision.reason


def test_the_drain_limit_says_how_many_sessions_it_ends() -> None:
    decision = decide(
        target_state="Terminated",
        live_sessions=2,
        protected=True,
        draining_since=0.0,
        now=LIMIT_S,
        drain_limit_s=LIMIT_S,
    )
    assert decision.reason == "drain limit reached with 2 sessions open"


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
    assert complete_drain(autoscaling, GROUP, HOOK, "i-1")


def test_no_pending_lifecycle_action_is_not_an_error(stubbed: tuple[Any, Stubber]) -> None:
    autoscaling, stubber = stubbed
    message = "No active Lifecycle Action found with instance ID i-1"
    stubber.add_client_error("complete_lifecycle_action", "ValidationError", message)
    stubber.add_client_error("record_lifecycle_action_heartbeat", "ValidationError", message)
    assert not complete_drain(autoscaling, GROUP, HOOK, "i-1")
    assert not keep_draining(autoscaling, GROUP, HOOK, "i-1")


def test_other_errors_are_raised(stubbed: tuple[Any, Stubber]) -> None:
    autoscaling, stubber = stubbed
    stubber.add_client_error("complete_lifecycle_action", "AccessDenied", "not allowed")
    with pytest.raises(ClientError, match="AccessDenied"):
        complete_drain(autoscaling, GROUP, HOOK, "i-1")
