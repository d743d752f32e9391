"""/start in fleet mode: bring the Auto Scaling group to at least one instance, budget
permitting, and hand out a session token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from backend.security.session_token import issue_token
from lambdas.shared.api_response import ApiAnswer
from lambdas.shared.fleet import (
    AutoScalingClient,
    describe_fleet,
    fleet_gpu_hours_today,
    record_fleet_start,
    scale_from_zero,
)
from lambdas.start_server.logic import budget_refusal

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient


@dataclass(frozen=True)
class FleetStartConfig:
    """What the stack tells start_server in fleet mode."""

    group_name: str
    endpoint_host: str
    daily_budget_gpu_hours: float
    boot_estimate_s: int
    launch_estimate_s: int
    token_ttl_s: int


def start_fleet(
    autoscaling: AutoScalingClient,
    cloudwatch: CloudWatchClient,
    config: FleetStartConfig,
    *,
    secret: str,
    now: datetime,
) -> ApiAnswer:
    """Scale a group at zero to one (budget permitting); otherwise report it; never lower it.

    Every /start that leaves the fleet up is recorded on the group's last-start tag first, so
    idle_stop cannot take the fleet to zero right after it.
    """
    fleet = describe_fleet(autoscaling, config.group_name)
    if fleet.desired == 0:
        used_h = fleet_gpu_hours_today(cloudwatch, config.group_name, now)
        if used_h >= config.daily_budget_gpu_hours:
            return budget_refusal(used_h, config.daily_budget_gpu_hours, now)
    record_fleet_start(autoscaling, config.group_name, now)
    desired = scale_from_zero(autoscaling, fleet)
    if fleet.in_service:
        state, wait_s = "running", 0
    elif fleet.warm_stopped or fleet.arriving:
        state, wait_s = "pending", config.boot_estimate_s
    else:
        state, wait_s = "pending", config.launch_estimate_s
    token = issue_token(secret, now=now.timestamp(), ttl_s=config.token_ttl_s)
    return ApiAnswer(
        200,
        {
            "state": state,
            "endpoint": f"wss://{config.endpoint_host}/ws/inference",
            "estimated_wait_s": wait_s,
            "token": token,
            "token_expires_at": int(now.timestamp()) + config.token_ttl_s,
            "fleet": {**fleet.summary(), "desired": desired},
        },
    )
