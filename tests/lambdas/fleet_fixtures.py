"""A GPU fleet on moto: a launch template, an Auto Scaling group (min 0) with a warm pool, the
backend's ActiveSessions and WaitingSessions datapoints per instance, and the demand table."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3

from lambdas.shared.metrics import ACTIVE_SESSIONS, DIMENSION, NAMESPACE
from lambdas.start_server.fleet import FleetStartConfig
from lambdas.start_server.fleet_demand import DemandSettings
from tests.lambdas.conftest import MOTO_IMAGE, REGION

GROUP = "cvstack-gpu-fleet"
DEMAND_TABLE = "cvstack-demand"


def make_fleet(*, max_size: int = 5, desired: int = 0, group: str = GROUP) -> str:
    """An Auto Scaling group of g4dn.xlarge stand-ins, warm pool of stopped instances reused
    on scale-in; moto puts the desired instances in service at once."""
    ec2 = boto3.client("ec2", region_name=REGION)
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    ec2.create_launch_template(
        LaunchTemplateName=f"{group}-template",
        LaunchTemplateData={"ImageId": MOTO_IMAGE, "InstanceType": "g4dn.xlarge"},
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group,
        MinSize=0,
        MaxSize=max_size,
        DesiredCapacity=desired,
        LaunchTemplate={"LaunchTemplateName": f"{group}-template"},
        AvailabilityZones=[f"{REGION}a"],
    )
    autoscaling.put_warm_pool(
        AutoScalingGroupName=group,
        PoolState="Stopped",
        InstanceReusePolicy={"ReuseOnScaleIn": True},
    )
    return group


def member_ids(group: str = GROUP) -> list[str]:
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return sorted(i["InstanceId"] for i in found["AutoScalingGroups"][0]["Instances"])


def desired_capacity(group: str = GROUP) -> int:
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return int(found["AutoScalingGroups"][0]["DesiredCapacity"])


def publish_sessions(
    instance_id: str, at: datetime, sessions: float, metric: str = ACTIVE_SESSIONS
) -> None:
    """One heartbeat datapoint (live sessions, or `metric` WAITING_SESSIONS), as
    backend/instance/heartbeat.py publishes it."""
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": DIMENSION, "Value": instance_id}],
                "Value": sessions,
                "Unit": "Count",
                "Timestamp": at,
            }
        ],
    )


def make_demand_table(name: str = DEMAND_TABLE) -> str:
    """The /start demand table as the CDK stack makes it: on demand, partition key `minute`
    (string), TTL on `expires_at`."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "minute", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "minute", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    return name


class SerialClient:
    """A boto3 client whose calls run one at a time, with `before(operation, arguments)` run
    first (outside the lock) when given.

    moto's in-process backends are not thread-safe (an `UpdateItem ADD` can lose a count,
    `SetDesiredCapacity` can launch twice), while AWS applies each call atomically: the lock
    restores that, and the calls of concurrent callers still interleave between one another,
    which is what the code under test must survive. `before` lets a test play another caller
    at an exact point.
    """

    def __init__(
        self,
        client: Any,
        lock: threading.Lock | None = None,
        before: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._client = client
        self._lock = lock or threading.Lock()
        self._before = before

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name.startswith("_") or name in {"meta", "exceptions"} or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._before is not None:
                self._before(name, kwargs)
            with self._lock:
                return attribute(*args, **kwargs)

        return call


def start_config(budget_h: float = 4.0) -> FleetStartConfig:
    """start_server's fleet settings as the stack gives them, over GROUP and DEMAND_TABLE."""
    return FleetStartConfig(
        group_name=GROUP,
        endpoint_host="gpu.example.com",
        daily_budget_gpu_hours=budget_h,
        boot_estimate_s=120,
        launch_estimate_s=330,
        token_ttl_s=900,
        demand=DemandSettings(table=DEMAND_TABLE, window_s=600, sessions_per_instance=4),
    )


def start_clients() -> tuple[Any, Any, Any]:
    """Auto Scaling, CloudWatch and DynamoDB clients in the tests' region."""
    return (
        boto3.client("autoscaling", region_name=REGION),
        boto3.client("cloudwatch", region_name=REGION),
        boto3.client("dynamodb", region_name=REGION),
    )
