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
# Published by the backend every minute: WebSocket inference sessions open now.
ACTIVE_SESSIONS = "ActiveSessions"
# Published by idle_stop every minute: 1 while the instance is running, else 0.
INSTANCE_RUNNING = "InstanceRunning"


def put_count(cloudwatch: CloudWatchClient, instance_id: str, name: str, value: float) -> None:
    """Publish one datapoint of `name` for the instance."""
    try:
        cloudwatch.put_metric_data(
            Namespace=NAMESPACE,
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": DIMENSION, "Value": instance_id}],
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
) -> dict[datetime, float]:
    """`statistic` of `name` per `period_s` bucket (keyed by its start) from `start` to `end`."""
    try:
        points = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=name,
            Dimensions=[{"Name": DIMENSION, "Value": instance_id}],
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
