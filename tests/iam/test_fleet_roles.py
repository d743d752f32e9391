"""Fleet mode's roles under moto's enforcement, with the policies of the fleet template: the
Lambdas' real code and the fleet agent's calls work under their roles, and calls outside them
are denied (and allowed to admin)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from backend.instance import fleet_member
from lambdas.idle_stop import handler as idle_handler
from lambdas.idle_stop.fleet import check_fleet_idle
from lambdas.idle_stop.policy import IdlePolicy
from lambdas.shared.instance import LAST_START_TAG
from lambdas.start_server import handler as start_handler
from lambdas.status import handler as status_handler
from tests.iam.conftest import Cloud
from tests.iam.helpers import DENIED_CODES, as_lambda, assert_denied_but_admin_allowed, error_code
from tests.iam.test_lambda_roles import SCHEDULED, api_event, body_of


def described(cloud: Cloud, name: str | None = None) -> dict[str, Any]:
    """The group as admin sees it."""
    groups = cloud.admin.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[name or cloud.group_name]
    )
    group: dict[str, Any] = groups["AutoScalingGroups"][0]
    return group


def scale_to_one(cloud: Cloud) -> str:
    """Desired 1 as admin (moto launches the instance at once); its id."""
    cloud.admin.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName=cloud.group_name, DesiredCapacity=1
    )
    (instance,) = described(cloud)["Instances"]
    return str(instance["InstanceId"])


def test_start_server_takes_the_group_from_zero_and_counts_the_start(
    fleet_cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DescribeAutoScalingGroups, DescribeWarmPool, GetMetricStatistics and GetMetricData,
    the demand table's UpdateItem and BatchGetItem, CreateOrUpdateTags (last start),
    SetDesiredCapacity and GetSecretValue are all allowed."""
    cloud = fleet_cloud
    as_lambda(monkeypatch, cloud, "start_server")
    start_handler._session_secret.cache_clear()
    response = start_handler.handler(api_event("POST", "/start"), None)
    start_handler._session_secret.cache_clear()
    assert response["statusCode"] == 200, response
    assert body_of(response)["state"] == "pending"
    group = described(cloud)
    assert group["DesiredCapacity"] == 1
    assert LAST_START_TAG in {tag["Key"] for tag in group["Tags"]}
    table = cloud.lambda_environment("start_server")["DEMAND_TABLE_NAME"]
    (item,) = cloud.admin.client("dynamodb").scan(TableName=table)["Items"]
    assert item["starts"] == {"N": "1"}


def test_status_reports_the_fleet(fleet_cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """The group, its warm pool, each in-service instance's sessions and the group's boot
    history (GetMetricData)."""
    scale_to_one(fleet_cloud)
    as_lambda(monkeypatch, fleet_cloud, "status")
    response = status_handler.handler(api_event("GET", "/status"), None)
    assert response["statusCode"] == 200, response
    body = body_of(response)
    fleet = body["fleet"]
    assert isinstance(fleet, dict) and (fleet["desired"], fleet["in_service"]) == (1, 1)
    assert "boot_estimate_problem" not in body, "the group's boot history is readable"
    assert (body["boot_samples"], body["boot_elapsed_s"]) == (0, None)


def test_idle_stop_takes_an_idle_fleet_to_zero(
    fleet_cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduled check publishes InstancesRunning and reads the sessions; past the idle
    limit it sets the desired capacity to 0."""
    cloud = fleet_cloud
    scale_to_one(cloud)
    as_lambda(monkeypatch, cloud, "idle_stop")
    assert idle_handler.handler(SCHEDULED, None)["reason"] == "boot_grace"  # just launched
    role = cloud.lambda_session("idle_stop")
    environment = cloud.lambda_environment("idle_stop")
    report = check_fleet_idle(
        role.client("autoscaling"),
        role.client("ec2"),
        role.client("cloudwatch"),
        cloud.group_name,
        IdlePolicy(
            idle_minutes=float(environment["IDLE_MINUTES"]),
            boot_grace_minutes=float(environment["BOOT_GRACE_MINUTES"]),
        ),
        now=datetime.now(UTC) + timedelta(hours=2),
    )
    assert report["action"] == "scale_to_zero", report
    assert described(cloud)["DesiredCapacity"] == 0


def test_the_fleet_agent_protects_its_instance_and_may_drain_it(fleet_cloud: Cloud) -> None:
    """SetInstanceProtection works under the instance role; the lifecycle calls (the
    termination hook's heartbeat and completion, the launch hook's completion) pass IAM (moto
    has no lifecycle actions: past IAM, it raises NotImplementedError) on the group and are
    denied on another."""
    cloud = fleet_cloud
    instance = scale_to_one(cloud)
    autoscaling = cloud.instance_session.client("autoscaling")
    fleet_member.set_protection(autoscaling, cloud.group_name, instance, protected=True)
    assert described(cloud)["Instances"][0]["ProtectedFromScaleIn"] is True
    for call, hook in (
        (fleet_member.keep_draining, "cvstack-drain"),
        (fleet_member.complete_lifecycle_action, "cvstack-drain"),
        (fleet_member.complete_lifecycle_action, "cvstack-ready"),
    ):
        with pytest.raises(NotImplementedError):
            call(autoscaling, cloud.group_name, hook, instance)
        with pytest.raises(ClientError) as denied:
            call(autoscaling, cloud.other_group_name, hook, instance)
        assert error_code(denied.value) in DENIED_CODES


Call = Callable[[boto3.Session, Cloud], object]


def desired(name: Callable[[Cloud], str], capacity: int = 1) -> Call:
    return lambda s, c: s.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName=name(c), DesiredCapacity=capacity
    )


def tag(name: Callable[[Cloud], str], key: str) -> Call:
    return lambda s, c: s.client("autoscaling").create_or_update_tags(
        Tags=[
            {
                "ResourceId": name(c),
                "ResourceType": "auto-scaling-group",
                "Key": key,
                "Value": "x",
                "PropagateAtLaunch": False,
            }
        ]
    )


def count_in(table: Callable[[Cloud], str]) -> Call:
    return lambda s, c: s.client("dynamodb").update_item(
        TableName=table(c),
        Key={"minute": {"S": "2026-12-02T09:14"}},
        UpdateExpression="ADD starts :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )


def own_group(cloud: Cloud) -> str:
    return cloud.group_name


def other_group(cloud: Cloud) -> str:
    return cloud.other_group_name


def own_table(cloud: Cloud) -> str:
    return cloud.lambda_environment("start_server")["DEMAND_TABLE_NAME"]


def other_table(cloud: Cloud) -> str:
    return cloud.other_table_name


DENIALS: dict[str, tuple[str, Call]] = {
    "start_server cannot size another group": ("start_server", desired(other_group)),
    "start_server cannot tag another group": ("start_server", tag(other_group, LAST_START_TAG)),
    "start_server cannot write another tag key": ("start_server", tag(own_group, "Name")),
    "start_server cannot count in another table": ("start_server", count_in(other_table)),
    "start_server cannot start EC2 instances": (
        "start_server",
        lambda s, c: s.client("ec2").start_instances(InstanceIds=[c.other_instance_id]),
    ),
    "status cannot size the group": ("status", desired(own_group)),
    "status cannot count in the demand table": ("status", count_in(own_table)),
    "idle_stop cannot size another group": ("idle_stop", desired(other_group, 0)),
    "idle_stop cannot tag the group": ("idle_stop", tag(own_group, LAST_START_TAG)),
    "idle_stop cannot count in the demand table": ("idle_stop", count_in(own_table)),
    "the instance cannot size its group": ("instance", desired(own_group, 4)),
    "the instance cannot protect instances of another group": (
        "instance",
        lambda s, c: s.client("autoscaling").set_instance_protection(
            AutoScalingGroupName=c.other_group_name,
            InstanceIds=[c.other_instance_id],
            ProtectedFromScaleIn=True,
        ),
    ),
}


@pytest.mark.parametrize("name", DENIALS)
def test_calls_outside_the_fleet_roles_are_denied(fleet_cloud: Cloud, name: str) -> None:
    principal, call = DENIALS[name]
    role = (
        fleet_cloud.instance_session
        if principal == "instance"
        else fleet_cloud.lambda_session(principal)
    )
    assert_denied_but_admin_allowed(role, fleet_cloud.admin, lambda s: call(s, fleet_cloud))
