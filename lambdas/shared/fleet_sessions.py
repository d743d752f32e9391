"""Fleet mode: the sessions on the group's instances, from their heartbeats in CloudWatch.

Each instance publishes `ActiveSessions` (live) and `WaitingSessions` (queued for a slot) once
a minute. A full instance's extra sessions wait, so live sessions alone stop at the capacity
and hide the demand beyond it: the fleet's load is live + waiting. An instance that publishes
no `WaitingSessions` (an older backend) has none waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.aws_errors import aws_call_error
from lambdas.shared.metrics import ACTIVE_SESSIONS, DIMENSION, NAMESPACE, WAITING_SESSIONS

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

SESSION_METRICS = (ACTIVE_SESSIONS, WAITING_SESSIONS)
# At most this many instances per GetMetricData call (AWS's limit is 500 queries, one per
# instance and metric).
MAX_INSTANCES_PER_CALL = 500 // len(SESSION_METRICS)
# Series of one metric: instance -> minute (its start) -> the minute's Maximum.
Series = dict[str, dict[datetime, float]]


@dataclass(frozen=True)
class FleetSessions:
    """The sessions of some instances by their latest heartbeats: live, waiting, and how many
    instances reported (an instance still booting has published nothing)."""

    active: int = 0
    waiting: int = 0
    reported_by: int = 0

    @property
    def total(self) -> int:
        """Live plus waiting: what the fleet must hold."""
        return self.active + self.waiting

    def slots(self, in_service: int, sessions_per_instance: int) -> dict[str, int]:
        """Sessions, capacity and free slots as /start and /status report them; waiting
        sessions take slots too (they get the next ones), so free slots never go below 0."""
        capacity = in_service * sessions_per_instance
        return {
            "sessions": self.total,
            "waiting": self.waiting,
            "sessions_reported_by": self.reported_by,
            "capacity": capacity,
            "free_slots": max(0, capacity - self.total),
        }


def latest_sessions(
    cloudwatch: CloudWatchClient, instance_ids: tuple[str, ...], now: datetime, *, minutes: int = 5
) -> FleetSessions:
    """The sum of each instance's latest `ActiveSessions` and `WaitingSessions` datapoints of
    the last `minutes`; no instance, no call."""
    if not instance_ids:
        return FleetSessions()
    active, waiting = _series(cloudwatch, instance_ids, now - timedelta(minutes=minutes), now)
    return FleetSessions(
        active=round(sum(_latest(points) for points in active.values())),
        waiting=round(sum(_latest(points) for points in waiting.values())),
        reported_by=sum(bool(points) for points in active.values()),
    )


def fleet_session_minutes(
    cloudwatch: CloudWatchClient, instance_ids: tuple[str, ...], start: datetime, end: datetime
) -> dict[datetime, float]:
    """Per minute (keyed by its start), the sessions live or waiting across the instances: the
    sum of each instance's per-minute maxima of both metrics."""
    totals: dict[datetime, float] = {}
    for series in _series(cloudwatch, instance_ids, start, end):
        for points in series.values():
            for minute, value in points.items():
                totals[minute] = totals.get(minute, 0.0) + value
    return totals


def _latest(points: dict[datetime, float]) -> float:
    return points[max(points)] if points else 0.0


def _series(
    cloudwatch: CloudWatchClient, instance_ids: tuple[str, ...], start: datetime, end: datetime
) -> tuple[Series, Series]:
    """`ActiveSessions` and `WaitingSessions` (Maximum per minute) of each instance, with one
    GetMetricData call per `MAX_INSTANCES_PER_CALL` instances."""
    series: tuple[Series, Series] = ({i: {} for i in instance_ids}, {i: {} for i in instance_ids})
    for first in range(0, len(instance_ids), MAX_INSTANCES_PER_CALL):
        batch = instance_ids[first : first + MAX_INSTANCES_PER_CALL]
        queries: list[Any] = [
            {
                "Id": f"m{m}i{n}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": metric,
                        "Dimensions": [{"Name": DIMENSION, "Value": iid}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
            for m, metric in enumerate(SESSION_METRICS)
            for n, iid in enumerate(batch)
        ]
        try:
            pages = cloudwatch.get_paginator("get_metric_data").paginate(
                MetricDataQueries=queries, StartTime=start, EndTime=end
            )
            for page in pages:
                for result in page["MetricDataResults"]:
                    metric_index, instance_index = result["Id"][1:].split("i")
                    points = series[int(metric_index)][batch[int(instance_index)]]
                    points.update(zip(result["Timestamps"], result["Values"], strict=True))
        except (ClientError, BotoCoreError) as error:
            raise aws_call_error(error, "cloudwatch:GetMetricData") from error
    return series
