"""One scheduled idle check in fleet mode: publish how many of the group's instances run
(the budget's GPU hours), and take the group to zero once the whole fleet is idle: no
session live or waiting on any instance, and no /start, for the idle limit.

Desired capacity 0 never cuts a session: an instance with live sessions keeps itself
protected from scale-in, and the termination lifecycle hook lets one that is leaving drain
(backend/instance/fleet_member.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.idle_stop.policy import Activity, IdlePolicy
from lambdas.shared.aws_errors import aws_call_error
from lambdas.shared.fleet import AutoScalingClient, describe_fleet, set_desired_capacity
from lambdas.shared.fleet_sessions import fleet_session_minutes
from lambdas.shared.metrics import FLEET_DIMENSION, INSTANCES_RUNNING, put_count

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ec2 import EC2Client

MINUTE = timedelta(minutes=1)
GROUP_TAG = "aws:autoscaling:groupName"  # Auto Scaling tags every instance it launches


def check_fleet_idle(
    autoscaling: AutoScalingClient,
    ec2: EC2Client,
    cloudwatch: CloudWatchClient,
    group_name: str,
    policy: IdlePolicy,
    *,
    now: datetime,
) -> dict[str, object]:
    """Run one check and report what was seen and done."""
    fleet = describe_fleet(autoscaling, group_name)
    launches = running_launch_times(ec2, group_name)
    put_count(cloudwatch, group_name, INSTANCES_RUNNING, len(launches), dimension=FLEET_DIMENSION)
    report: dict[str, object] = {"desired": fleet.desired, "running": len(launches)}
    if fleet.desired == 0:
        return {**report, "action": "none", "reason": "at_zero"}
    members = {m.instance_id for m in fleet.members}
    serving = [at for iid, at in launches.items() if iid in members]
    if not serving:
        return {**report, "action": "none", "reason": "booting"}
    window_start = now - timedelta(minutes=policy.idle_minutes + policy.metric_lag_minutes) - MINUTE
    sessions = fleet_session_minutes(cloudwatch, tuple(sorted(members)), window_start, now)
    active = [minute for minute, total in sessions.items() if total > 0]
    activity = Activity(
        last_active_at=max(active) + MINUTE if active else None,
        observed_until=max(sessions) if sessions else None,
    )
    if fleet.last_start_at is not None:
        activity = activity.with_start(fleet.last_start_at)
    # The newest instance's launch: missing data while it boots is never idleness.
    decision = policy.decide(now=now, launched_at=max(serving), activity=activity)
    report.update(reason=decision.reason, idle_s=round(decision.idle_s))
    if not decision.stop:
        return {**report, "action": "none"}
    if fleet.min_size > 0:
        return {**report, "action": "none", "reason": "min_size_above_zero"}
    set_desired_capacity(autoscaling, group_name, 0)
    return {**report, "action": "scale_to_zero"}


def running_launch_times(ec2: EC2Client, group_name: str) -> dict[str, datetime]:
    """The group's running instances (in service, leaving, or initialising for the warm pool:
    each one billed) and when each was last started."""
    try:
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": f"tag:{GROUP_TAG}", "Values": [group_name]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )
        return {
            instance["InstanceId"]: instance["LaunchTime"]
            for page in pages
            for reservation in page["Reservations"]
            for instance in reservation.get("Instances", [])
        }
    except (ClientError, BotoCoreError) as error:
        raise aws_call_error(error, "ec2:DescribeInstances") from error
