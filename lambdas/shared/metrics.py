"""The CloudWatch metric contract shared by the backend, the Lambdas and the dashboard."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.aws_errors import aws_call_error

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

NAMESPACE = "cvstack"
DIMENSION = "InstanceId"
# Fleet mode: metrics about the whole Auto Scaling group carry this dimension instead.
FLEET_DIMENSION = "AutoScalingGroupName"
# Published by the backend every minute: WebSocket inference sessions open now.
ACTIVE_SESSIONS = "ActiveSessions"
# Published by the backend every minute: sessions waiting in its admission queue (a full
# instance's extra sessions).
WAITING_SESSIONS = "WaitingSessions"
# Fleet mode, published by each instance every minute with the group's dimension: its active
# plus waiting sessions. Target tracking scales the group on its Average.
SESSION_LOAD = "SessionLoad"
# Published by idle_stop every minute: 1 while the instance is running, else 0.
INSTANCE_RUNNING = "InstanceRunning"
# Fleet mode, published by idle_stop every minute: how many of the group's instances run
# (serving, draining or being initialised for the warm pool: all billed).
INSTANCES_RUNNING = "InstancesRunning"


def put_count(
    cloudwatch: CloudWatchClient,
    instance_id: str,
    name: str,
    value: float,
    *,
    dimension: str = DIMENSION,
) -> None:
    """Publish one datapoint of `name` for the instance (or the group, by `dimension`)."""
    try:
        cloudwatch.put_metric_data(
            Namespace=NAMESPACE,
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": dimension, "Value": instance_id}],
                    "Value": value,
                    "Unit": "Count",
                }
            ],
        )
    except (ClientError, BotoCoreError) as error:
        raise aws_call_error(error, "cloudwatch:PutMetricData") from error


def minute_values(
    cloudwatch: CloudWatchClient,
    instance_id: str,
    name: str,
    *,
    statistic: Literal["Sum", "Maximum"],
    start: datetime,
    end: datetime,
    period_s: int = 60,
    dimension: str = DIMENSION,
) -> dict[datetime, float]:
    """`statistic` of `name` per `period_s` bucket (keyed by its start) from `start` to `end`,
    for the instance (or the group, by `dimension`)."""
    try:
        points = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=name,
            Dimensions=[{"Name": dimension, "Value": instance_id}],
            StartTime=start,
            EndTime=end,
            Period=period_s,
            Statistics=[statistic],
        )["Datapoints"]
    except (ClientError, BotoCoreError) as error:
        raise aws_call_error(error, "cloudwatch:GetMetricStatistics") from error
    if statistic == "Sum":
        return {p["Timestamp"]: p.get("Sum", 0.0) for p in points}
    return {p["Timestamp"]: p.get("Maximum", 0.0) for p in points}
