"""/start in fleet mode: count the call as demand, raise the Auto Scaling group to what the
demand needs (budget permitting, never lowering it), and hand out a session token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from backend.security.session_token import issue_token
from lambdas.shared.api_response import ApiAnswer
from lambdas.shared.demand import DynamoDBClient, record_start
from lambdas.shared.fleet import (
    AutoScalingClient,
    FleetState,
    check_can_start,
    describe_fleet,
    fleet_gpu_hours_today,
    record_fleet_start,
)
from lambdas.shared.fleet_sessions import latest_sessions
from lambdas.start_server.fleet_demand import DemandSettings, ScaleOut, scale_for_demand
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
    demand: DemandSettings


def start_fleet(
    autoscaling: AutoScalingClient,
    cloudwatch: CloudWatchClient,
    dynamodb: DynamoDBClient,
    config: FleetStartConfig,
    *,
    secret: str,
    now: datetime,
) -> ApiAnswer:
    """Raise the group to what the fleet's sessions and the window's /start calls need.

    Budget: a group at zero stays there once today's fleet GPU hours reach the budget (429,
    nothing recorded); a running group still serves, but gets no instance beyond its desired
    capacity. Every /start that leaves the fleet up is recorded on the group's last-start tag
    first, so idle_stop cannot take the fleet to zero right after it.
    """
    fleet = describe_fleet(autoscaling, config.group_name)
    check_can_start(fleet)

    @cache
    def used_h() -> float:
        return fleet_gpu_hours_today(cloudwatch, config.group_name, now)

    if fleet.desired == 0 and used_h() >= config.daily_budget_gpu_hours:
        return budget_refusal(used_h(), config.daily_budget_gpu_hours, now)
    record_fleet_start(autoscaling, config.group_name, now)
    record_start(dynamodb, config.demand.table, now)
    sessions = latest_sessions(cloudwatch, fleet.in_service, now)
    scale = scale_for_demand(
        autoscaling,
        dynamodb,
        fleet,
        config.demand,
        sessions=sessions.total,
        may_add=lambda: used_h() < config.daily_budget_gpu_hours,
        now=now,
    )
    load = max(sessions.total, scale.recent_starts)
    state, wait_s = _arrival(fleet, scale, load, config)
    token = issue_token(secret, now=now.timestamp(), ttl_s=config.token_ttl_s)
    body: dict[str, object] = {
        "state": state,
        "endpoint": f"wss://{config.endpoint_host}/ws/inference",
        "estimated_wait_s": wait_s,
        "token": token,
        "token_expires_at": int(now.timestamp()) + config.token_ttl_s,
        "fleet": {
            **fleet.summary(),
            "desired": scale.desired,
            **sessions.slots(len(fleet.in_service), config.demand.sessions_per_instance),
            "demand": scale.recent_starts,
            "scale_out_withheld": scale.withheld,
        },
    }
    if scale.withheld:
        body["message"] = (
            f"today's GPU budget is spent ({used_h():.2f} of {config.daily_budget_gpu_hours:g} h):"
            f" the fleet serves on with its {scale.desired} instance(s) but adds none until "
            "00:00 UTC, so a session may wait for a free slot"
        )
    return ApiAnswer(200, body)


def _arrival(
    fleet: FleetState, scale: ScaleOut, load: int, config: FleetStartConfig
) -> tuple[str, int]:
    """The fleet's state in single mode's words and the wait this visitor can expect.

    No wait while the instances in service hold the load (sessions, or the window's /start
    calls when more, this one included). Otherwise the visitor waits for an instance on its
    way (the warm-pool boot estimate) or for those the group still has to bring: from the warm
    pool while it has enough stopped instances, else fresh launches (the launch estimate). A
    full fleet that can add nothing (at its maximum, or over the budget) promises no wait it
    cannot know: the backend's queue_status tells the visitor once connected.
    """
    in_service = len(fleet.in_service)
    state = "running" if in_service else "pending"
    if in_service and load <= in_service * config.demand.sessions_per_instance:
        return state, 0
    to_bring = scale.desired - in_service - len(fleet.arriving)
    if to_bring > fleet.warm_stopped:
        return state, config.launch_estimate_s
    if to_bring > 0 or fleet.arriving:
        return state, config.boot_estimate_s
    return state, 0
