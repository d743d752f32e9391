"""Decide what /start does for each instance state, under the daily GPU-hours budget."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from backend.security.session_token import issue_token
from lambdas.shared.api_response import ApiAnswer
from lambdas.shared.aws_errors import AwsCallError, aws_call_error
from lambdas.shared.instance import describe_instance, record_start
from lambdas.shared.metrics import INSTANCE_RUNNING, minute_values

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ec2 import EC2Client

STOPPING_RETRY_S = 30


@dataclass(frozen=True)
class StartConfig:
    """What the stack tells start_server."""

    instance_id: str
    endpoint_host: str
    daily_budget_gpu_hours: float
    boot_estimate_s: int
    token_ttl_s: int


def start_server(
    ec2: EC2Client,
    cloudwatch: CloudWatchClient,
    config: StartConfig,
    *,
    secret: str,
    now: datetime,
) -> ApiAnswer:
    """Start the instance if stopped (budget permitting); report it if up; never start twice.

    Every /start that leaves the instance up is recorded on the instance's last-start tag
    first, which idle_stop reads back at once: a start just before the idle limit keeps it up.
    """
    info = describe_instance(ec2, config.instance_id)
    if info.state == "stopping":
        return ApiAnswer(
            409,
            {
                "state": "stopping",
                "error": "instance_stopping",
                "message": f"the server is stopping; call /start again in {STOPPING_RETRY_S} s",
                "retryable": True,
                "retry_after_s": STOPPING_RETRY_S,
            },
            STOPPING_RETRY_S,
        )
    state, uptime_s = info.state, (now - info.launched_at).total_seconds()
    if state == "stopped":
        used_h = gpu_hours_today(cloudwatch, config.instance_id, now)
        if used_h >= config.daily_budget_gpu_hours:
            return budget_refusal(used_h, config.daily_budget_gpu_hours, now)
        record_start(ec2, config.instance_id, now, boot=True)
        state, uptime_s = _start(ec2, config.instance_id), 0.0
    elif state in {"pending", "running"}:
        record_start(ec2, config.instance_id, now)
    else:
        raise AwsCallError("unexpected_state", f"the instance is in an unknown state {state!r}")
    token = issue_token(secret, now=now.timestamp(), ttl_s=config.token_ttl_s)
    return ApiAnswer(
        200,
        {
            "state": state,
            "endpoint": f"wss://{config.endpoint_host}/ws/inference",
            "estimated_wait_s": max(0, round(config.boot_estimate_s - uptime_s)),
            "token": token,
            "token_expires_at": int(now.timestamp()) + config.token_ttl_s,
        },
    )


def gpu_hours_today(cloudwatch: CloudWatchClient, instance_id: str, now: datetime) -> float:
    """Hours the instance ran since 00:00 UTC: the sum of idle_stop's per-minute running flag."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sums = minute_values(
        cloudwatch,
        instance_id,
        INSTANCE_RUNNING,
        statistic="Sum",
        start=midnight,
        end=now,
        period_s=86400,
    )
    return sum(sums.values()) / 60


def _start(ec2: EC2Client, instance_id: str) -> str:
    try:
        changes = ec2.start_instances(InstanceIds=[instance_id])["StartingInstances"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "IncorrectInstanceState":
            raise AwsCallError(
                "instance_busy",
                "the server is changing state; call /start again in a few seconds",
                STOPPING_RETRY_S,
            ) from error
        raise aws_call_error(error, "ec2:StartInstances") from error
    except BotoCoreError as error:
        raise aws_call_error(error, "ec2:StartInstances") from error
    return changes[0]["CurrentState"]["Name"] if changes else "pending"


def budget_refusal(used_h: float, budget_h: float, now: datetime) -> ApiAnswer:
    """429 until 00:00 UTC: today's GPU hours reached the budget."""
    tomorrow = (now.astimezone(UTC) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    wait_s = int((tomorrow - now).total_seconds()) + 1
    return ApiAnswer(
        429,
        {
            "state": "stopped",
            "error": "gpu_budget_reached",
            "message": f"today's GPU budget is spent ({used_h:.2f} of {budget_h:g} h); "
            "the server can start again after 00:00 UTC",
            "retryable": True,
            "retry_after_s": wait_s,
        },
        wait_s,
    )
