"""One scheduled idle check: publish the running flag, read activity, stop when idle."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.idle_stop.policy import IdlePolicy
from lambdas.shared.aws_errors import aws_call_error
from lambdas.shared.instance import describe_instance
from lambdas.shared.metrics import (
    ACTIVE_SESSIONS,
    INSTANCE_RUNNING,
    START_REQUESTS,
    minute_values,
    put_count,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ec2 import EC2Client

MINUTE = timedelta(minutes=1)


def check_idle(
    ec2: EC2Client,
    cloudwatch: CloudWatchClient,
    instance_id: str,
    policy: IdlePolicy,
    *,
    now: datetime,
) -> dict[str, object]:
    """Run one check and report what was seen and done."""
    info = describe_instance(ec2, instance_id)
    running = info.state == "running"
    put_count(cloudwatch, instance_id, INSTANCE_RUNNING, 1 if running else 0)
    if not running:
        return {"state": info.state, "action": "none", "reason": "not_running"}
    last_activity = last_activity_at(
        cloudwatch, instance_id, now - timedelta(minutes=policy.idle_minutes) - 2 * MINUTE, now
    )
    decision = policy.decide(now=now, launched_at=info.launched_at, last_activity_at=last_activity)
    report: dict[str, object] = {
        "state": info.state,
        "action": "stop" if decision.stop else "none",
        "reason": decision.reason,
        "idle_s": round(decision.idle_s),
        "last_activity_at": last_activity.isoformat() if last_activity else None,
    }
    if decision.stop:
        _stop(ec2, instance_id)
    return report


def last_activity_at(
    cloudwatch: CloudWatchClient, instance_id: str, start: datetime, end: datetime
) -> datetime | None:
    """The end of the latest minute with an open session or a /start call, if any."""
    sessions = minute_values(
        cloudwatch, instance_id, ACTIVE_SESSIONS, statistic="Maximum", start=start, end=end
    )
    starts = minute_values(
        cloudwatch, instance_id, START_REQUESTS, statistic="Sum", start=start, end=end
    )
    active = [t for t, v in (*sessions.items(), *starts.items()) if v > 0]
    return max(active) + MINUTE if active else None


def _stop(ec2: EC2Client, instance_id: str) -> None:
    try:
        ec2.stop_instances(InstanceIds=[instance_id])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "IncorrectInstanceState":
            raise aws_call_error(error, "ec2:StopInstances") from error
    except BotoCoreError as error:
        raise aws_call_error(error, "ec2:StopInstances") from error
