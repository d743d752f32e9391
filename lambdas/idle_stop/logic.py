"""One scheduled idle check: publish the running flag, read activity, stop when idle."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.idle_stop.policy import Activity, IdlePolicy
from lambdas.shared.aws_errors import aws_call_error
from lambdas.shared.instance import describe_instance
from lambdas.shared.metrics import ACTIVE_SESSIONS, INSTANCE_RUNNING, minute_values, put_count

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
    window_start = now - timedelta(minutes=policy.idle_minutes + policy.metric_lag_minutes) - MINUTE
    activity = session_activity(cloudwatch, instance_id, window_start, now)
    if info.last_start_at is not None:
        activity = activity.with_start(info.last_start_at)
    decision = policy.decide(now=now, launched_at=info.launched_at, activity=activity)
    report: dict[str, object] = {
        "state": info.state,
        "action": "stop" if decision.stop else "none",
        "reason": decision.reason,
        "idle_s": round(decision.idle_s),
        "last_activity_at": _iso(activity.last_active_at),
        "observed_until": _iso(activity.observed_until),
    }
    if decision.stop:
        _stop(ec2, instance_id)
    return report


def session_activity(
    cloudwatch: CloudWatchClient, instance_id: str, start: datetime, end: datetime
) -> Activity:
    """What the heartbeat's `ActiveSessions` datapoints show: the end of the latest minute
    with an open session, and the start of the latest minute published at all."""
    sessions = minute_values(
        cloudwatch, instance_id, ACTIVE_SESSIONS, statistic="Maximum", start=start, end=end
    )
    active = [t for t, v in sessions.items() if v > 0]
    return Activity(
        last_active_at=max(active) + MINUTE if active else None,
        observed_until=max(sessions) if sessions else None,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _stop(ec2: EC2Client, instance_id: str) -> None:
    try:
        ec2.stop_instances(InstanceIds=[instance_id])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "IncorrectInstanceState":
            raise aws_call_error(error, "ec2:StopInstances") from error
    except BotoCoreError as error:
        raise aws_call_error(error, "ec2:StopInstances") from error
