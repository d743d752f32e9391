"""How long the GPU took to boot: the contract between the instance that measures each boot and
the /status Lambda that turns recent boots into the page's estimate.

A boot is timed from the moment start_server asked EC2 to start the instance to the backend's
first `/ready` 200. start_server writes that moment on the instance's `cvstack:boot-requested`
tag (lambdas/shared/instance.py) in the same CreateTags call as the last-start tag, only when
it starts a stopped instance (later /start calls must not move it). The instance reads its own
tag through IMDS (instance-metadata tags: no IAM permission, no AWS call) and publishes the
seconds as `BOOT_SECONDS` (backend/instance/boot_report.py) under the instance role's
existing, namespace-bound PutMetricData. Why not EC2's LaunchTime: the instance could read it
only with ec2:DescribeInstances, which IAM cannot narrow to one instance. Why not an SSM
parameter: the instance role would need a write permission it does not have today, and
concurrent fleet boots would race on one value; CloudWatch keeps every boot, needs no new
write permission, and graphs.

Fleet mode: Auto Scaling, not start_server, starts the instances, so nothing tags them and
an instance publishes no boot (it says so in its log); /status reads the group's series (an
instance in a group publishes with the group's dimension) and, while it is empty, answers the
configured estimate with `boot_samples` 0. Timing fleet boots needs the warm-pool start as Auto
Scaling recorded it (autoscaling:DescribeScalingActivities): not done yet.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.aws_errors import AwsCallError, aws_call_error
from lambdas.shared.metrics import NAMESPACE

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

# Seconds from the start request to the backend's first /ready 200, one datapoint per boot.
BOOT_SECONDS = "BootSeconds"
# The estimate is the median of this many most recent boots...
RECENT_BOOTS = 10
# ... of those CloudWatch still holds at one-minute resolution (it keeps those 15 days).
HISTORY = timedelta(days=14)
# A datapoint outside (0, MAX_BOOT_S] is not a boot this estimate should follow.
MAX_BOOT_S = 3600.0


@dataclass(frozen=True)
class BootEstimate:
    """The seconds a boot is expected to take, from how many recent boots (0: the configured
    default), and why the history could not be read, when it could not."""

    seconds: int
    samples: int
    problem: str | None = None

    def fields(self) -> dict[str, object]:
        """The /status body's fields (docs/infrastructure.md, "Boot estimate")."""
        body: dict[str, object] = {"boot_estimate_s": self.seconds, "boot_samples": self.samples}
        if self.problem:
            body["boot_estimate_problem"] = self.problem
        return body


def boot_estimate(
    cloudwatch: CloudWatchClient,
    dimension: tuple[str, str],
    *,
    default_s: int,
    now: datetime,
) -> BootEstimate:
    """The median of the `RECENT_BOOTS` newest plausible boots of the series `dimension`
    (name, value); `default_s` when there is none. A failed read never fails /status: the
    default, with the reason."""
    try:
        boots = recent_boots(cloudwatch, dimension, now)
    except AwsCallError as failure:
        return BootEstimate(default_s, 0, f"boot history unreadable ({failure}); default used")
    if not boots:
        return BootEstimate(default_s, 0)
    return BootEstimate(round(statistics.median(boots)), len(boots))


def recent_boots(
    cloudwatch: CloudWatchClient, dimension: tuple[str, str], now: datetime
) -> list[float]:
    """The newest `RECENT_BOOTS` plausible boot durations (s), newest first; one per minute
    (the minute's longest, if two fleet instances became ready in the same minute)."""
    name, value = dimension
    query: Any = {
        "Id": "boots",
        "MetricStat": {
            "Metric": {
                "Namespace": NAMESPACE,
                "MetricName": BOOT_SECONDS,
                "Dimensions": [{"Name": name, "Value": value}],
            },
            "Period": 60,
            "Stat": "Maximum",
        },
    }
    points: dict[datetime, float] = {}
    try:
        pages = cloudwatch.get_paginator("get_metric_data").paginate(
            MetricDataQueries=[query], StartTime=now - HISTORY, EndTime=now
        )
        for page in pages:
            for result in page["MetricDataResults"]:
                points.update(zip(result["Timestamps"], result["Values"], strict=True))
    except (ClientError, BotoCoreError) as error:
        raise aws_call_error(error, "cloudwatch:GetMetricData") from error
    newest_first = [points[t] for t in sorted(points, reverse=True)]
    return [s for s in newest_first if math.isfinite(s) and 0 < s <= MAX_BOOT_S][:RECENT_BOOTS]


def boot_elapsed_s(requested_at: datetime | None, now: datetime) -> int | None:
    """Whole seconds since the boot was requested; None when unknown or in the future (a
    clock or a hand-edited tag the page must not count down from)."""
    if requested_at is None or requested_at > now:
        return None
    return int((now - requested_at).total_seconds())
