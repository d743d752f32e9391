"""A GPU fleet on moto: a launch template, an Auto Scaling group (min 0) with a warm pool, and
the backend's ActiveSessions datapoints per instance."""

from __future__ import annotations

from datetime import datetime

import boto3

from lambdas.shared.metrics import ACTIVE_SESSIONS, DIMENSION, NAMESPACE
from tests.lambdas.conftest import MOTO_IMAGE, REGION

GROUP = "cvstack-gpu-fleet"


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


def publish_sessions(instance_id: str, at: datetime, sessions: float) -> None:
    """One heartbeat datapoint, as backend/instance/heartbeat.py publishes it."""
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": ACTIVE_SESSIONS,
                "Dimensions": [{"Name": DIMENSION, "Value": instance_id}],
                "Value": sessions,
                "Unit": "Count",
                "Timestamp": at,
            }
        ],
    )
